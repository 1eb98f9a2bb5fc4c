//! Suspect marks: a snapshot whose change log departs far from its
//! client's usual (the rule is [`crate::changes::Suspect`], applied by the
//! lifecycle right after the change log is sealed) is marked *suspect*,
//! and the newest snapshots before it are *pinned*: pruning never deletes
//! them while the mark stands (`crate::prune::Pins`), `status` shows the
//! client critical, and only `byteback-server ack --client NAME SNAPSHOT`,
//! run by a person on the server, clears the mark.
//!
//! Where the marks live, and why there: one file per client,
//! `.byteback/suspect/<client>.json`, in the store's own state directory,
//! not in the client's. The client's receiving rsync sees only its own
//! directory (`exec/sandbox`: a private root holding nothing else), and
//! even there Landlock lets it write into files that already exist beside
//! `current`; here it reaches nothing. No request of any key role
//! (`server/roles.rs`) reads or writes this file: it is written only by
//! the lifecycle's judgement at a snapshot, under the client's lock, and
//! by `ack`, which takes the same lock. Each write is atomic (a temporary
//! file renamed over it). A file that cannot be read is not taken as "no
//! marks": pruning then pins every snapshot of that client (see
//! `crate::prune::Pins::of`) and `status` shows it critical.

use std::path::PathBuf;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::names::{ClientName, SnapshotName};

use super::Store;

/// The version of the marks file.
const VERSION: u32 = 1;

/// The `[suspect]` section: when a snapshot is marked suspect, and what its
/// mark pins (see docs/disk-space.md, "Suspect snapshots").
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, documented::DocumentedFields)]
#[serde(deny_unknown_fields, default)]
pub struct SuspectConfig {
    /// `false`: no snapshot is judged, so none is marked (marks that stand
    /// keep their pins until `byteback-server ack`).
    pub enabled: bool,
    /// A snapshot is suspect only if more than this share (0 to 1) of the
    /// previous snapshot's files were changed in content or deleted by it
    /// (files added do not count: a first backup is all added)...
    pub min_share: f64,
    /// ...and that share is at least this many times the client's baseline:
    /// the median of the same share over its recent snapshots. With no
    /// history yet the baseline is 0, so `min_share` alone decides.
    pub factor: f64,
    /// How many of the client's recent snapshots make the baseline (those
    /// without a change log, and those marked suspect, are skipped).
    pub history: u32,
    /// A mark pins this many of the client's newest snapshots before the
    /// suspect one: pruning never deletes them while the mark stands, and a
    /// backup that could only get space by deleting them is refused.
    pub pin: u32,
}

impl Default for SuspectConfig {
    fn default() -> Self {
        SuspectConfig {
            enabled: true,
            min_share: 0.3,
            factor: 10.0,
            history: 10,
            pin: 3,
        }
    }
}

/// One standing mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// The suspect snapshot.
    pub snapshot: String,
    /// Why, in words (the share and the baseline).
    pub reason: String,
    /// The snapshots it pins, oldest first.
    pub pinned: Vec<String>,
    /// When it was marked.
    pub marked: Timestamp,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct MarksFile {
    version: u32,
    marks: Vec<Mark>,
}

impl Store {
    fn suspect_path(&self, client: &ClientName) -> PathBuf {
        Self::state_dir_of(self.root())
            .join("suspect")
            .join(format!("{client}.json"))
    }

    /// The marks standing for `client`, oldest first; an error if its
    /// file exists but cannot be read (callers treat that as marked).
    pub fn suspect_marks(&self, client: &ClientName) -> Result<Vec<Mark>> {
        let path = self.suspect_path(client);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("cannot read the suspect marks", &path, e)),
        };
        let file: MarksFile = serde_json::from_slice(&text).map_err(|e| {
            Error::Config(format!(
                "{}: {e}: fix or remove it (its marks pin all of the client's snapshots meanwhile)",
                path.display()
            ))
        })?;
        if file.version != VERSION {
            return Err(Error::Config(format!(
                "{}: version {} is not {VERSION}: written by another byteback",
                path.display(),
                file.version
            )));
        }
        Ok(file.marks)
    }

    fn write_suspect_marks(&self, client: &ClientName, marks: Vec<Mark>) -> Result<()> {
        let path = self.suspect_path(client);
        if marks.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::io("cannot remove", &path, e))
                }
                _ => Ok(()),
            };
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
        }
        let text = serde_json::to_vec_pretty(&MarksFile {
            version: VERSION,
            marks,
        })
        .map_err(|e| Error::Command(format!("cannot write the suspect marks: {e}")))?;
        crate::sys::fs::write_atomic(&path, &text, 0o600)
    }

    /// Adds a mark for `client` (the lifecycle's judgement at a snapshot;
    /// the caller holds the client's lock). A mark for the same snapshot
    /// is replaced.
    pub fn add_suspect_mark(&self, client: &ClientName, mark: Mark) -> Result<()> {
        let mut marks = self.suspect_marks(client)?;
        marks.retain(|m| m.snapshot != mark.snapshot);
        marks.push(mark);
        self.write_suspect_marks(client, marks)
    }

    /// Clears the mark of `snapshot` (`ack`; the caller holds the client's
    /// lock): the mark it was, or `None` if there was none.
    pub fn clear_suspect_mark(
        &self,
        client: &ClientName,
        snapshot: &SnapshotName,
    ) -> Result<Option<Mark>> {
        let mut marks = self.suspect_marks(client)?;
        let Some(at) = marks.iter().position(|m| m.snapshot == snapshot.as_str()) else {
            return Ok(None);
        };
        let mark = marks.remove(at);
        self.write_suspect_marks(client, marks)?;
        Ok(Some(mark))
    }

    /// The client's marks go with it (`rename-client`; the caller holds
    /// both names' locks).
    pub(super) fn rename_suspect_marks(&self, from: &ClientName, to: &ClientName) -> Result<()> {
        let (old, new) = (self.suspect_path(from), self.suspect_path(to));
        match std::fs::rename(&old, &new) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(
                &format!("cannot rename {} to", old.display()),
                &new,
                e,
            )),
            _ => Ok(()),
        }
    }

    /// A removed client's marks go with it.
    pub(super) fn remove_suspect_marks(&self, client: &ClientName) {
        let _ = std::fs::remove_file(self.suspect_path(client));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ServerConfig;
    use crate::store::fake::FakeStore;

    fn mark(snapshot: &str) -> Mark {
        Mark {
            snapshot: snapshot.into(),
            reason: "90 % of files changed or deleted".into(),
            pinned: vec!["2026-12-01T03:00:00Z".into()],
            marked: "2026-12-02T03:00:00Z".parse().unwrap(),
        }
    }

    /// Marks add up, replace their own snapshot's, clear one by one, and
    /// an unreadable file is an error, never "no marks".
    #[test]
    fn marks_round_trip() {
        let fake = FakeStore::new(1 << 30, ServerConfig::default());
        let client = fake.client("host.example");
        assert_eq!(fake.store.suspect_marks(&client).unwrap(), []);
        let (a, b) = ("2026-12-02T03:00:00Z", "2026-12-03T03:00:00Z");
        fake.store.add_suspect_mark(&client, mark(a)).unwrap();
        fake.store.add_suspect_mark(&client, mark(b)).unwrap();
        fake.store.add_suspect_mark(&client, mark(a)).unwrap();
        let names = |s: &Store| -> Vec<String> {
            s.suspect_marks(&client)
                .unwrap()
                .into_iter()
                .map(|m| m.snapshot)
                .collect()
        };
        assert_eq!(names(&fake.store), [b, a]);
        let none = SnapshotName::parse("2026-12-04T03:00:00Z").unwrap();
        assert_eq!(fake.store.clear_suspect_mark(&client, &none).unwrap(), None);
        let b_name = SnapshotName::parse(b).unwrap();
        assert!(
            fake.store
                .clear_suspect_mark(&client, &b_name)
                .unwrap()
                .is_some()
        );
        assert_eq!(names(&fake.store), [a]);
        let a_name = SnapshotName::parse(a).unwrap();
        assert!(
            fake.store
                .clear_suspect_mark(&client, &a_name)
                .unwrap()
                .is_some()
        );
        assert!(!fake.store.suspect_path(&client).exists());
        std::fs::create_dir_all(fake.store.suspect_path(&client).parent().unwrap()).unwrap();
        std::fs::write(fake.store.suspect_path(&client), "garbage").unwrap();
        assert!(fake.store.suspect_marks(&client).is_err());
    }
}
