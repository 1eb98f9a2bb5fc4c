//! A small, bounded record of the store's space over time, so that the
//! report can draw how the store and each client grew: nothing else keeps
//! history of it (status measures only now).
//!
//! `<store>/.byteback/space-history.jsonl` holds one JSON object per line,
//! oldest first: `{"version":1,"time":"…Z","total_bytes":…,"free_bytes":…,
//! "clients":{"NAME":size_bytes,…}}` — the store's size and free space as
//! status shows them, and what each client's snapshots cost (status's
//! `size_bytes`). `byteback-server status` (of every client, not
//! `--client`) and `byteback-server report` add a sample, at most one per
//! [`MIN_INTERVAL`]; the maintenance timer's status run every 15 minutes
//! is what usually does. The file never holds more than [`MAX_SAMPLES`]
//! lines: the append that would pass it rewrites the file atomically
//! (temp file, rename) with the newest half, so at one sample per 15
//! minutes it covers between 26 and 52 days.
//!
//! Only the store's owner writes it (a status run by root or by a
//! monitoring user adds nothing, so the file never becomes unwritable for
//! the backup user), one writer at a time (a lock that is busy means
//! another run is sampling: this one adds nothing). A line that does not
//! parse (a torn last line after a crash, a later version's) is skipped.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::server::status::Status;
use crate::store::Store;
use crate::sys::lock::Lock;

/// The record's file name, in the store's `.byteback/`.
pub const FILE: &str = "space-history.jsonl";

/// At most one sample per this interval.
pub const MIN_INTERVAL: SignedDuration = SignedDuration::from_mins(10);

/// At most this many samples are kept.
pub const MAX_SAMPLES: usize = 5000;

/// The version of a sample's fields.
const VERSION: u32 = 1;

/// One measurement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// The version of the fields (1).
    pub version: u32,
    /// When it was taken.
    pub time: Timestamp,
    /// The store's filesystem size.
    pub total_bytes: u64,
    /// What the store can really still take (as pruning sees it).
    pub free_bytes: u64,
    /// Per client, what its snapshots cost on disk.
    pub clients: BTreeMap<String, u64>,
}

impl Sample {
    /// The sample of a status gathered at `now`.
    pub fn of(status: &Status, now: Timestamp) -> Sample {
        Sample {
            version: VERSION,
            time: now,
            total_bytes: status.store.total_bytes,
            free_bytes: status.store.free_bytes,
            clients: status
                .clients
                .iter()
                .map(|c| (c.client.clone(), c.size_bytes))
                .collect(),
        }
    }
}

/// The record's path for the store at `root`.
pub fn path(root: &Path) -> PathBuf {
    Store::state_dir_of(root).join(FILE)
}

/// The samples in a record's text, oldest first; lines that do not parse
/// are skipped (pure).
pub fn parse(text: &str) -> Vec<Sample> {
    let mut samples: Vec<Sample> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Sample>(l).ok())
        .filter(|s| s.version == VERSION)
        .collect();
    samples.sort_by_key(|s| s.time);
    samples
}

/// Whether a sample taken at `now` is due after one taken at `last`: none
/// yet, or [`MIN_INTERVAL`] has passed (or the clock went back, which
/// would otherwise stop sampling until it caught up again).
pub fn due(last: Option<Timestamp>, now: Timestamp) -> bool {
    last.is_none_or(|last| last > now || now.duration_since(last) >= MIN_INTERVAL)
}

/// How the record's text changes to take one more line (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Append this text (a newline first if the file's last line was torn).
    Append(String),
    /// Replace the whole file with this text: the newest half and the new
    /// line, since the file was full.
    Rewrite(String),
}

/// What adding `line` (one JSON object, no newline) to `text` takes, for a
/// record of at most `max` lines.
pub fn change(text: &str, line: &str, max: usize) -> Change {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() < max {
        let sep = if text.is_empty() || text.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        return Change::Append(format!("{sep}{line}\n"));
    }
    let keep = (max / 2).saturating_sub(1);
    let mut out = String::new();
    for l in &lines[lines.len() - keep..] {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(line);
    out.push('\n');
    Change::Rewrite(out)
}

/// Adds `sample` to the store's record if one is due and this process may
/// write it (it runs as the owner of the store's `.byteback/`, and no
/// other run is sampling). Whether a sample was added.
pub fn record(store: &Store, sample: &Sample) -> Result<bool> {
    let state = Store::state_dir_of(store.root());
    let owner = std::fs::metadata(&state)
        .map_err(|e| Error::io("cannot stat", &state, e))?
        .uid();
    if owner != rustix::process::geteuid().as_raw() {
        return Ok(false);
    }
    let Some(_lock) = Lock::acquire(&state.join("space-history.lock"), std::time::Duration::ZERO)?
    else {
        return Ok(false);
    };
    let path = path(store.root());
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io("cannot read", &path, e)),
    };
    if !due(parse(&text).last().map(|s| s.time), sample.time) {
        return Ok(false);
    }
    let line = serde_json::to_string(sample)
        .map_err(|e| Error::Command(format!("cannot write a space sample: {e}")))?;
    match change(&text, &line, MAX_SAMPLES) {
        // One write(2) in append mode: a reader sees the line whole or not.
        Change::Append(more) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(&path)
            .and_then(|mut f| f.write_all(more.as_bytes()))
            .map_err(|e| Error::io("cannot append to", &path, e))?,
        Change::Rewrite(all) => crate::sys::fs::write_atomic(&path, all.as_bytes(), 0o644)?,
    }
    Ok(true)
}

/// The store's samples, oldest first (none if there is no record yet, or
/// it cannot be read).
pub fn load(root: &Path) -> Vec<Sample> {
    std::fs::read_to_string(path(root))
        .map(|t| parse(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ServerConfig;
    use crate::store::fake::FakeStore;

    fn at(t: &str) -> Timestamp {
        t.parse().unwrap()
    }

    fn sample(time: &str, a: u64) -> Sample {
        Sample {
            version: VERSION,
            time: at(time),
            total_bytes: 1000,
            free_bytes: 1000 - a,
            clients: [("a.example".to_owned(), a)].into(),
        }
    }

    #[test]
    fn a_sample_is_due_every_ten_minutes() {
        let now = at("2026-11-28T12:00:00Z");
        assert!(due(None, now));
        assert!(!due(Some(at("2026-11-28T11:55:00Z")), now));
        assert!(due(Some(at("2026-11-28T11:50:00Z")), now));
        // A clock that went back does not stop sampling.
        assert!(due(Some(at("2026-11-29T12:00:00Z")), now));
    }

    #[test]
    fn parse_skips_what_it_cannot_read_and_sorts() {
        let a = serde_json::to_string(&sample("2026-11-28T12:00:00Z", 1)).unwrap();
        let b = serde_json::to_string(&sample("2026-11-28T11:00:00Z", 2)).unwrap();
        let later = a.replace("\"version\":1", "\"version\":2");
        let text = format!("{a}\n{{\"torn\n{b}\n{later}\nnot json\n");
        let got = parse(&text);
        assert_eq!(
            got,
            vec![
                sample("2026-11-28T11:00:00Z", 2),
                sample("2026-11-28T12:00:00Z", 1)
            ]
        );
    }

    #[test]
    fn a_full_record_keeps_its_newest_half() {
        assert_eq!(change("", "x", 4), Change::Append("x\n".into()));
        assert_eq!(change("a\n", "x", 4), Change::Append("x\n".into()));
        // A torn last line is ended first, so the new line stays whole.
        assert_eq!(change("a\n{\"to", "x", 4), Change::Append("\nx\n".into()));
        assert_eq!(change("a\nb\nc\n", "x", 4), Change::Append("x\n".into()));
        assert_eq!(
            change("a\nb\nc\nd\n", "x", 4),
            Change::Rewrite("d\nx\n".into())
        );
        // The bound holds whatever the line count before.
        let text: String = (0..5003).map(|i| format!("{i}\n")).collect();
        let Change::Rewrite(out) = change(&text, "new", MAX_SAMPLES) else {
            panic!("not rewritten");
        };
        assert_eq!(out.lines().count(), MAX_SAMPLES / 2);
        assert_eq!(out.lines().next(), Some("2504"));
        assert_eq!(out.lines().last(), Some("new"));
    }

    #[test]
    fn samples_are_recorded_at_most_every_ten_minutes() {
        let fake = FakeStore::new(1 << 30, ServerConfig::default());
        let store = &fake.store;
        assert_eq!(load(store.root()), vec![]);
        let first = sample("2026-11-28T12:00:00Z", 1);
        assert!(record(store, &first).unwrap());
        assert!(!record(store, &sample("2026-11-28T12:05:00Z", 2)).unwrap());
        let second = sample("2026-11-28T12:10:00Z", 3);
        assert!(record(store, &second).unwrap());
        assert_eq!(load(store.root()), vec![first, second]);
        let text = std::fs::read_to_string(path(store.root())).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.starts_with("{\"version\":1,\"time\":\"2026-11-28T12:00:00Z\","));
    }
}
