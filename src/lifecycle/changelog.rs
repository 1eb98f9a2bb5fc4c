//! Where a client's change logs live and when they are written (see
//! [`crate::changes`] for what they hold and why the client cannot forge
//! them):
//!
//! ```text
//! <client>/.changes-incoming                the receiver's rsync log of the running transfer
//! .byteback/changes/<client>/.changes-pending  touched paths since the last snapshot
//! .byteback/changes/<client>/.changes-next     the classified log of the snapshot being taken
//! .byteback/changes/<client>/<time>.changes    a snapshot's change log (read-only, 0444)
//! ```
//!
//! Only the incoming log lies beside `current`, where the confined
//! receiver can write it (and could write any existing file: see
//! `exec::sandbox`); what the server keeps lies in the store's own
//! directory, out of its reach.
//!
//! ```text
//! ```
//!
//! The incoming file is made by the server before each transfer (the
//! confined receiver may write into existing files beside `current`, but
//! make none) and folded into the pending list when it ends. The log of a
//! snapshot is classified and written before the snapshot is taken, then
//! renamed to its name: a crash in between leaves a `.changes-next` that the
//! next snapshot replaces, never a log under the wrong snapshot.

use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::changes::{self, ChangeLog, Hint};
use crate::error::{Error, Result};
use crate::names::SnapshotName;

use super::ClientBackups;

/// The receiver's log of the running transfer.
pub const INCOMING: &str = ".changes-incoming";
const PENDING: &str = ".changes-pending";
const NEXT: &str = ".changes-next";

/// The most of a receiver's log read (a larger one, far beyond
/// [`changes::MAX_PATHS`] lines, is cut).
const MAX_INCOMING: u64 = 1 << 30;

impl ClientBackups<'_> {
    /// The receiver's log, beside `current`, where the confined receiver
    /// can write it.
    fn incoming(&self) -> PathBuf {
        self.store.client_dir(&self.client).join(INCOMING)
    }

    /// A file of the server's own: the pending list, the log being sealed,
    /// a snapshot's log ([`crate::store::Store::changes_dir`]).
    fn changes_file(&self, name: &str) -> PathBuf {
        self.store.changes_dir(&self.client).join(name)
    }

    /// Writes one of the server's own files, atomically.
    fn write_own(&self, name: &str, text: &str, mode: u32) -> Result<()> {
        let dir = self.store.changes_dir(&self.client);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
        crate::sys::fs::write_atomic(&dir.join(name), text.as_bytes(), mode)
    }

    /// Readies an empty [`INCOMING`] file for the receiver to log into,
    /// and the token its lines must carry ([`changes::LogToken`]). A log
    /// left by a transfer whose server died before folding it is folded
    /// first, as not to be trusted: its token is gone with that process.
    pub fn ready_change_log(&self) -> Result<changes::LogToken> {
        let path = self.incoming();
        if path.exists() {
            self.fold_change_log(None, false);
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io("cannot create", &path, e))?;
        Ok(changes::LogToken::new())
    }

    /// Folds the receiver's log of a transfer that ended (written with
    /// `token`'s format) into the pending list, and removes it. A transfer
    /// that did not finish (`finished` false: rsync failed or was killed,
    /// or the server could not run it) may have changed a file in place
    /// without logging it, so the snapshot's log will compare the trees.
    /// Returns the log's size: the writer wrote it, and it is gone.
    pub fn fold_change_log(&self, token: Option<&changes::LogToken>, finished: bool) -> u64 {
        let path = self.incoming();
        let size = std::fs::symlink_metadata(&path).map_or(0, |m| m.len());
        self.update_pending(|touched| match (token, std::fs::File::open(&path)) {
            (Some(token), Ok(file)) if finished => {
                touched.read_rsync_log(std::io::BufReader::new(file), token, MAX_INCOMING);
            }
            _ => touched.give_up(),
        });
        let _ = std::fs::remove_file(&path);
        size
    }

    /// Notes paths the server itself deleted from `current` (an
    /// incremental backup's vanished paths).
    pub fn note_deleted(&self, paths: &[Vec<u8>]) {
        self.update_pending(|touched| {
            for p in paths {
                touched.note(p.clone(), Hint::Gone.level());
            }
        });
    }

    /// Notes that `current` was started empty (a plain store's full pass):
    /// the snapshot's log then looks for every path of the previous
    /// snapshot, since what the transfer did not send is deleted.
    pub fn note_fresh_current(&self) {
        self.update_pending(|touched| touched.fresh = true);
    }

    /// Reads the pending list, lets `change` add to it, and writes it back
    /// whole (atomically: one list, each path once, however many
    /// transfers came before the snapshot).
    fn update_pending(&self, change: impl FnOnce(&mut changes::Touched)) {
        let path = self.changes_file(PENDING);
        let mut touched = std::fs::read_to_string(&path)
            .map(|text| changes::Touched::parse(&text))
            .unwrap_or_default();
        change(&mut touched);
        if let Err(e) = self.write_own(PENDING, &touched.render(), 0o600) {
            self.store.warn(&format!(
                "{}: cannot record changes in {}: {e}",
                self.client,
                path.display()
            ));
        }
    }

    /// Before a snapshot: classifies the pending paths against the
    /// previous snapshot and `current` and writes the log to take its
    /// place as the snapshot's. `None` when no transfer logged anything
    /// since the last snapshot (a snapshot by hand of an unlogged
    /// `current`): then there is no log, rather than a wrong one.
    pub(super) fn seal_change_log(&self) -> Option<ChangeLog> {
        let (store, client) = (self.store, &self.client);
        let pending = std::fs::read_to_string(self.changes_file(PENDING)).ok()?;
        let previous = store.snapshots(client).ok()?.pop();
        let before = previous
            .as_ref()
            .map(|s| store.client_dir(client).join(s.name.as_str()));
        let after = store.current(client);
        let touched = changes::Touched::parse(&pending);
        let touched = if touched.whole_trees {
            whole_trees(before.as_deref(), &after)
        } else if let (true, Some(before)) = (touched.fresh, &before) {
            // Every path of the previous snapshot: those not in `current`
            // are deleted, the others judged as logged (or left out).
            let mut paths = touched.paths;
            for p in changes::walk(before) {
                paths.entry(p).or_insert(0);
            }
            paths
        } else {
            touched.paths
        };
        let mut classified = changes::classify(before.as_deref(), &after, &touched);
        changes::add_linked_names(before.as_deref(), &after, &mut classified);
        let previous_files = previous
            .as_ref()
            .and_then(|s| self.change_log(&s.name).ok().flatten())
            .and_then(|log| log.files);
        let files = changes::files_after(previous_files, before.as_deref(), &after, &classified);
        let log = ChangeLog::of(classified, Some(files));
        let _ = std::fs::remove_file(self.changes_file(NEXT));
        if let Err(e) = self.write_own(NEXT, &log.render(), 0o444) {
            store.warn(&format!("{client}: cannot write the change log: {e}"));
            return None;
        }
        Some(log)
    }

    /// After the snapshot `name` was taken: its log takes its name, and
    /// the pending list starts again.
    pub(super) fn place_change_log(&self, name: &SnapshotName) {
        let target = self.changes_file(&format!("{name}.changes"));
        if let Err(e) = std::fs::rename(self.changes_file(NEXT), &target) {
            self.store.warn(&format!(
                "{}: cannot place the change log of {name}: {e}",
                self.client
            ));
        }
        let _ = std::fs::remove_file(self.changes_file(PENDING));
    }

    /// The counts of snapshot `name`'s change log (no paths: only its
    /// head is read), if it has a readable one.
    pub fn change_counts(&self, name: &SnapshotName) -> Option<ChangeLog> {
        use std::io::Read;
        let path = self.changes_file(&format!("{name}.changes"));
        let mut head = Vec::with_capacity(ChangeLog::HEAD_BYTES);
        std::fs::File::open(path)
            .and_then(|f| f.take(ChangeLog::HEAD_BYTES as u64).read_to_end(&mut head))
            .ok()?;
        ChangeLog::parse_head(&String::from_utf8_lossy(&head)).ok()
    }

    /// The change log of snapshot `name`, if it has one.
    pub fn change_log(&self, name: &SnapshotName) -> Result<Option<ChangeLog>> {
        let path = self.changes_file(&format!("{name}.changes"));
        match std::fs::read_to_string(&path) {
            Ok(text) => ChangeLog::parse(&text)
                .map(Some)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("cannot read", &path, e)),
        }
    }
}

/// What changed between two snapshots, and how it was found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Diff {
    pub from: String,
    pub to: String,
    /// `log`: from the change logs; `trees`: a snapshot in the range has
    /// none (taken by the original byteback or before change logs), so the
    /// two trees were compared.
    pub method: &'static str,
    #[serde(flatten)]
    pub log: ChangeLog,
}

impl Diff {
    /// The lines `byteback diff` prints: a heading, then `+`, `-`, `c`
    /// (content) or `m` (metadata only) and the path, one a line.
    pub fn lines(&self) -> Vec<String> {
        let l = &self.log;
        let mut out = vec![format!(
            "{} -> {}: {} added, {} deleted, {} changed in content, {} in metadata only{}",
            self.from,
            self.to,
            l.added,
            l.deleted,
            l.content,
            l.metadata,
            match (self.method, l.complete) {
                ("trees", _) => " (no change log for these snapshots: compared the trees)",
                (_, false) => " (too many to list: counts only)",
                _ => "",
            }
        )];
        for (path, kind) in &l.paths {
            let mark = match kind {
                changes::Kind::Added => '+',
                changes::Kind::Deleted => '-',
                changes::Kind::Content => 'c',
                changes::Kind::Metadata => 'm',
            };
            out.push(format!("{mark} {}", crate::catalog::display_path(path)));
        }
        out
    }

    /// What `diff` prints: one JSON object with `json`, else [`Self::lines`].
    pub fn render(&self, json: bool) -> Vec<String> {
        if json {
            vec![self.json()]
        } else {
            self.lines()
        }
    }

    /// One JSON object: `from`, `to`, `method`, the counts, `files`,
    /// `complete` and `paths` (`[path, kind]` pairs, path as text with
    /// bytes that are not UTF-8 replaced).
    pub fn json(&self) -> String {
        let paths: Vec<(String, changes::Kind)> = self
            .log
            .paths
            .iter()
            .map(|(p, k)| (String::from_utf8_lossy(p).into_owned(), *k))
            .collect();
        let value = serde_json::json!({
            "from": self.from,
            "to": self.to,
            "method": self.method,
            "added": self.log.added,
            "deleted": self.log.deleted,
            "content": self.log.content,
            "metadata": self.log.metadata,
            "files": self.log.files,
            "complete": self.log.complete,
            "paths": paths,
        });
        value.to_string()
    }
}

impl ClientBackups<'_> {
    /// What changed from snapshot `from` to snapshot `to` (defaults: the
    /// newest but one, and the newest): the change logs of the snapshots
    /// after `from` up to `to`, combined; where one is missing, the two
    /// trees compared.
    pub fn diff(&self, from: Option<&str>, to: Option<&str>) -> Result<Diff> {
        let all = self.snapshots()?;
        let find = |name: &str| {
            all.iter()
                .position(|s| s.name.as_str() == name)
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "{} has no snapshot {}: list them with `snapshots`",
                        self.client,
                        crate::catalog::display_path(name.as_bytes())
                    ))
                })
        };
        let to = match to {
            Some(n) => find(n)?,
            None => all
                .len()
                .checked_sub(1)
                .ok_or_else(|| Error::NotFound(format!("{} has no snapshots yet", self.client)))?,
        };
        let from = match from {
            Some(n) => Some(find(n)?),
            None => to.checked_sub(1),
        };
        let Some(from) = from else {
            // The first snapshot: what its own log says (all added).
            let name = &all[to].name;
            let log = self.change_log(name)?;
            return Ok(match log {
                Some(log) => Diff {
                    from: "(nothing)".into(),
                    to: name.to_string(),
                    method: "log",
                    log,
                },
                None => self.compare_trees(None, name)?,
            });
        };
        let (from, to) = (from.min(to), from.max(to));
        let mut logs = Vec::new();
        for s in &all[from + 1..=to] {
            match self.change_log(&s.name)? {
                Some(log) => logs.push(log),
                None => return self.compare_trees(Some(&all[from].name), &all[to].name),
            }
        }
        let log = match changes::combine(&logs) {
            Some(log) => log,
            None if logs.len() == 1 => logs.pop().unwrap_or_default(),
            None => return self.compare_trees(Some(&all[from].name), &all[to].name),
        };
        Ok(Diff {
            from: all[from].name.to_string(),
            to: all[to].name.to_string(),
            method: "log",
            log,
        })
    }

    /// The diff of two snapshots with no logs: both trees walked.
    fn compare_trees(&self, from: Option<&SnapshotName>, to: &SnapshotName) -> Result<Diff> {
        let dir = self.store.client_dir(&self.client);
        let before = from.map(|n| dir.join(n.as_str()));
        let after = dir.join(to.as_str());
        let touched = whole_trees(before.as_deref(), &after);
        let classified = changes::classify(before.as_deref(), &after, &touched);
        Ok(Diff {
            from: from.map_or("(nothing)".into(), ToString::to_string),
            to: to.to_string(),
            method: "trees",
            log: ChangeLog::of(classified, Some(changes::count_files(&after))),
        })
    }
}

/// Every path of both trees, to be judged by the trees' facts alone
/// ([`changes::TREES`]).
fn whole_trees(
    before: Option<&std::path::Path>,
    after: &std::path::Path,
) -> std::collections::BTreeMap<Vec<u8>, changes::Level> {
    let mut paths = changes::walk(after);
    if let Some(b) = before {
        paths.extend(changes::walk(b));
    }
    paths.into_iter().map(|p| (p, changes::TREES)).collect()
}
