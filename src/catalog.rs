//! Finding files across a client's snapshots.
//!
//! The server walks every selected snapshot at once (one [`Walk`] each,
//! all in byte-wise path order) and merges them, so each path's versions
//! come together, newest snapshot first, and memory holds only the walks'
//! current positions — never the list of matches. The client receives one
//! line per row and prints it as a table or JSON, again row by row.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::PathBuf;

use jiff::Timestamp;

use crate::error::{Error, Result};
use crate::finder::{self, Found, Pattern, Walk, Warning};
use crate::names::ClientName;
use crate::store::Store;

/// Where versions of files come from: a snapshot, or `current`.
#[derive(Debug, Clone)]
pub struct Source {
    /// The snapshot's name, or `current`.
    pub name: String,
    /// The snapshot's time (`None` for `current`).
    pub time: Option<Timestamp>,
    /// Its directory on the server: the client's `/`.
    pub root: PathBuf,
}

/// The client's snapshots (and `current`) whose names match `glob`, newest
/// first (`current` is newer than every snapshot).
pub fn sources(store: &Store, client: &ClientName, glob: &[u8]) -> Result<Vec<Source>> {
    let mut pattern = b"/".to_vec();
    pattern.extend_from_slice(glob);
    let pattern = Pattern::parse(&pattern).map_err(|e| {
        Error::Usage(format!(
            "invalid snapshot selection {:?}: {e}",
            String::from_utf8_lossy(glob)
        ))
    })?;
    let matches = |name: &str| pattern.matches(format!("/{name}").as_bytes());
    let mut out = Vec::new();
    if matches("current") && store.has_client(client) {
        out.push(Source {
            name: "current".into(),
            time: None,
            root: store.current(client),
        });
    }
    for s in store.snapshots(client)?.into_iter().rev() {
        if matches(s.name.as_str()) {
            out.push(Source {
                name: s.name.to_string(),
                time: Some(s.name.time()),
                root: store.client_dir(client).join(s.name.as_str()),
            });
        }
    }
    Ok(out)
}

pub use crate::protocol::reply::Row;

/// One path's versions, as (index into the sources, metadata), newest first.
type Group = (Vec<u8>, Vec<(usize, finder::Meta)>);

/// What a walking thread sends.
enum Message {
    Group(Group),
    Warning(usize, Warning),
    Failed(Error),
}

/// Walks `sources` (newest first) for `patterns` and emits, per path in
/// byte-wise order, its newest version — or with `all`, each distinct
/// version (size or mtime differ) from the newest snapshot holding it.
/// `current` counts only for a version no snapshot holds.
///
/// The walks are shared out over the machine's cores in contiguous runs of
/// sources, each thread merging its own run into per-path groups; this
/// thread merges the groups. Every channel is bounded, so memory follows
/// the walks' positions, never the number of matches.
pub fn search(
    sources: &[Source],
    patterns: &[Pattern],
    all: bool,
    mut on_warning: impl FnMut(&Source, Warning),
    mut emit: impl FnMut(Row) -> Result<()>,
) -> Result<()> {
    if sources.is_empty() {
        return Ok(());
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        .min(sources.len());
    let per_thread = sources.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut streams = Vec::new();
        for (chunk, run) in sources.chunks(per_thread).enumerate() {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Message>(256);
            let offset = chunk * per_thread;
            scope.spawn(move || merge_run(run, offset, patterns, &tx));
            streams.push(rx.into_iter().peekable());
        }
        let mut failure = None;
        loop {
            // Pass warnings and failures on; find the smallest next path.
            let mut smallest: Option<Vec<u8>> = None;
            for stream in &mut streams {
                while let Some(Message::Warning(..) | Message::Failed(_)) = stream.peek() {
                    match stream.next() {
                        Some(Message::Warning(i, w)) => on_warning(&sources[i], w),
                        Some(Message::Failed(e)) => failure = Some(e),
                        _ => {}
                    }
                }
                if let Some(Message::Group((path, _))) = stream.peek() {
                    if smallest.as_ref().is_none_or(|s| path < s) {
                        smallest = Some(path.clone());
                    }
                }
            }
            if let Some(e) = failure.take() {
                return Err(e);
            }
            let Some(path) = smallest else { return Ok(()) };
            let mut versions = Vec::new();
            for stream in &mut streams {
                if matches!(stream.peek(), Some(Message::Group((p, _))) if *p == path) {
                    if let Some(Message::Group((_, v))) = stream.next() {
                        versions.extend(v);
                    }
                }
            }
            for row in select(sources, path, versions, all) {
                // On an error the receivers drop, and the walking threads stop.
                emit(row)?;
            }
        }
    })
}

/// Which of one path's versions (newest first) are shown.
fn select(
    sources: &[Source],
    path: Vec<u8>,
    mut versions: Vec<(usize, finder::Meta)>,
    all: bool,
) -> Vec<Row> {
    // `current` is the live copy: a version it shares with a snapshot is
    // shown from the snapshot, so it only appears when not yet snapshotted.
    if versions.len() > 1 && sources[versions[0].0].time.is_none() {
        let live = &versions[0].1;
        if versions[1..]
            .iter()
            .any(|(_, m)| (m.size, m.mtime) == (live.size, live.mtime))
        {
            versions.remove(0);
        }
    }
    let keep = if all {
        finder::distinct_versions(versions)
    } else {
        versions.into_iter().take(1).collect()
    };
    keep.into_iter()
        .map(|(j, meta)| Row {
            snapshot: sources[j].name.clone(),
            time: sources[j].time,
            found: Found {
                path: path.clone(),
                meta,
            },
        })
        .collect()
}

/// Merges the walks of one run of sources into per-path groups, sent in
/// path order. Stops when the receiver is gone.
fn merge_run(
    run: &[Source],
    offset: usize,
    patterns: &[Pattern],
    tx: &std::sync::mpsc::SyncSender<Message>,
) {
    let mut walks = Vec::with_capacity(run.len());
    let cache = finder::DirCache::shared();
    for s in run {
        // Only snapshots share listings: they never change, while `current`
        // may be written to while it is read.
        let shared = s.time.is_some().then(|| cache.clone());
        match Walk::with_cache(&s.root, patterns, shared) {
            Ok(walk) => walks.push(walk),
            Err(e) => {
                let _ = tx.send(Message::Failed(Error::io(
                    "cannot read snapshot",
                    &s.root,
                    e,
                )));
                return;
            }
        }
    }
    // Heads of every walk, smallest path first, then newest source first.
    let mut heads: BinaryHeap<Reverse<(Vec<u8>, usize, HeadMeta)>> = BinaryHeap::new();
    let advance = |i: usize,
                   walks: &mut Vec<Walk<'_>>,
                   heads: &mut BinaryHeap<Reverse<(Vec<u8>, usize, HeadMeta)>>| {
        for item in walks[i].by_ref() {
            match item {
                Ok(found) => {
                    heads.push(Reverse((found.path, i, HeadMeta(found.meta))));
                    return true;
                }
                Err(w) => {
                    if tx.send(Message::Warning(offset + i, w)).is_err() {
                        return false;
                    }
                }
            }
        }
        true
    };
    for i in 0..walks.len() {
        if !advance(i, &mut walks, &mut heads) {
            return;
        }
    }
    while let Some(Reverse((path, i, HeadMeta(meta)))) = heads.pop() {
        let mut versions = vec![(offset + i, meta)];
        let mut advanced = vec![i];
        while heads.peek().is_some_and(|Reverse((p, _, _))| *p == path) {
            let Some(Reverse((_, j, HeadMeta(m)))) = heads.pop() else {
                break;
            };
            versions.push((offset + j, m));
            advanced.push(j);
        }
        for j in advanced {
            if !advance(j, &mut walks, &mut heads) {
                return;
            }
        }
        if tx.send(Message::Group((path, versions))).is_err() {
            return;
        }
    }
}

/// `Meta` in the heap, compared by nothing (the path and source decide).
#[derive(Debug)]
struct HeadMeta(finder::Meta);

impl PartialEq for HeadMeta {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for HeadMeta {}
impl PartialOrd for HeadMeta {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for HeadMeta {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

/// Shows a client path on one line: invalid UTF-8 lossily, control
/// characters (newlines!) escaped, so a name cannot forge table rows.
pub fn display_path(bytes: &[u8]) -> String {
    crate::quote::one_line(&String::from_utf8_lossy(bytes)).into_owned()
}
