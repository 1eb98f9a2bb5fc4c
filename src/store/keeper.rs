//! Who writes a store's history: one trait, the store's own implementation
//! ([`Direct`]), and the dry run ([`DryRun`]), a decorator that writes
//! nothing at all.
//!
//! Every write that makes or loses history (a snapshot taken or deleted,
//! `current` rolled back) and every record a person reads (the log, the
//! space alert) goes through the store's keeper, so the store never asks
//! which mode it is in: a dry run is honest because its keeper cannot
//! write, and hardened mode (`crate::lifecycle::hardened`, a decorator
//! above this layer) is a keeper that asks root's helper instead.

use std::fmt;

use jiff::Timestamp;

use crate::error::Result;
use crate::names::{ClientName, SnapshotName};
use crate::sys::syslog::Severity;

use super::Store;

/// What writes a store's history and its records.
pub trait Keeper: fmt::Debug + Send + Sync {
    /// Takes a read-only snapshot of the client's `current` named for
    /// `at`, or the first free second after it. The caller holds the
    /// client's lock.
    fn take(
        &self,
        store: &Store,
        client: &ClientName,
        at: Timestamp,
        partial: Option<&str>,
    ) -> Result<SnapshotName>;
    /// Takes one named `name` (a replica keeps its primary's names).
    fn take_named(
        &self,
        store: &Store,
        client: &ClientName,
        name: SnapshotName,
        partial: Option<&str>,
    ) -> Result<SnapshotName>;
    /// Deletes a snapshot and its partial marker.
    fn delete(&self, store: &Store, client: &ClientName, name: &SnapshotName) -> Result<()>;
    /// Discards what `current` holds beyond the newest snapshot.
    fn roll_back(&self, store: &Store, client: &ClientName) -> Result<()>;
    /// Appends a line to the store's log (and the system log).
    fn log(&self, store: &Store, severity: Severity, line: &str);
    /// Records the space alert (`Some`) or clears it (`None`).
    fn set_alert(&self, store: &Store, message: Option<&str>);
    /// Whether an entry of a client's directory named like a snapshot is
    /// one (hardened mode counts only the helper's, root's).
    fn admits(&self, _entry: &std::fs::DirEntry) -> bool {
        true
    }
    /// What this keeper can do, for the commands that depend on it.
    fn powers(&self) -> Powers {
        Powers::ALL
    }
}

/// What a keeper can do beyond the [`Keeper`] calls every keeper serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Powers {
    /// It names a snapshot for the time it is asked for (else by its own
    /// clock: no `snapshot --at`, no replica keeping a primary's names).
    pub names_as_asked: bool,
    /// It deletes any snapshot it is asked to (else only what the prune
    /// policy deletes next: no `prune --force`, no removing a client's
    /// history, and no replication guard reordering pruning).
    pub deletes_on_request: bool,
}

impl Powers {
    /// The store's own keeper can do everything.
    pub const ALL: Powers = Powers {
        names_as_asked: true,
        deletes_on_request: true,
    };
}

/// The store's own keeper: its backend makes and deletes snapshots, and
/// the store's files hold its records.
#[derive(Debug, Default)]
pub struct Direct;

impl Keeper for Direct {
    fn take(
        &self,
        store: &Store,
        client: &ClientName,
        at: Timestamp,
        partial: Option<&str>,
    ) -> Result<SnapshotName> {
        store.take_snapshot_directly(client, at, partial)
    }

    fn take_named(
        &self,
        store: &Store,
        client: &ClientName,
        name: SnapshotName,
        partial: Option<&str>,
    ) -> Result<SnapshotName> {
        store.snapshot_as(client, name, partial)
    }

    fn delete(&self, store: &Store, client: &ClientName, name: &SnapshotName) -> Result<()> {
        store.delete_snapshot_directly(client, name)
    }

    fn roll_back(&self, store: &Store, client: &ClientName) -> Result<()> {
        store.roll_back_directly(client)
    }

    fn log(&self, store: &Store, severity: Severity, line: &str) {
        store.append_log(severity, line);
    }

    fn set_alert(&self, store: &Store, message: Option<&str>) {
        store.write_alert(message);
    }
}

/// A dry run: reads go to the store as ever, and nothing is written —
/// not a snapshot, not a deletion, not a log line, not an alert. What
/// would be deleted is the caller's to print (from its plan): a keeper
/// that cannot write cannot be talked into writing.
#[derive(Debug)]
pub struct DryRun {
    /// The keeper a real run would have, for what it could do.
    pub real: Box<dyn Keeper>,
}

impl Keeper for DryRun {
    fn take(
        &self,
        _store: &Store,
        client: &ClientName,
        at: Timestamp,
        _partial: Option<&str>,
    ) -> Result<SnapshotName> {
        let _ = client;
        Ok(SnapshotName::for_time(at))
    }

    fn take_named(
        &self,
        _store: &Store,
        _client: &ClientName,
        name: SnapshotName,
        _partial: Option<&str>,
    ) -> Result<SnapshotName> {
        Ok(name)
    }

    fn delete(&self, _store: &Store, _client: &ClientName, _name: &SnapshotName) -> Result<()> {
        Ok(())
    }

    fn roll_back(&self, _store: &Store, _client: &ClientName) -> Result<()> {
        Ok(())
    }

    fn log(&self, _store: &Store, _severity: Severity, _line: &str) {}

    fn set_alert(&self, _store: &Store, _message: Option<&str>) {}

    fn admits(&self, entry: &std::fs::DirEntry) -> bool {
        self.real.admits(entry)
    }

    fn powers(&self) -> Powers {
        self.real.powers()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ServerConfig;
    use crate::store::fake::FakeStore;

    /// Whatever a command asks of a dry run's store, nothing is written:
    /// no deletion, no rollback, no log line, no alert set or cleared.
    #[test]
    fn a_dry_runs_keeper_writes_nothing() {
        let mut fake = FakeStore::new(1 << 30, ServerConfig::default());
        let client = fake.client("a.example");
        let old = fake.old_snapshot(&client, "2026-01-01T00:00:00Z", 1024);
        fake.write(&client, "unsnapshotted", 1024);
        fake.store.record_space_alert("before");
        let log = Store::state_dir_of(fake.store.root()).join("server.log");
        let log_before = std::fs::read(&log).unwrap();
        fake.store
            .decorate(|real| Box::new(DryRun { real }) as Box<dyn Keeper>);
        fake.store.delete_snapshot(&client, &old).unwrap();
        fake.store.roll_back_current(&client).unwrap();
        fake.store
            .take_snapshot(&client, Timestamp::now(), None)
            .unwrap();
        fake.store.clear_space_alert();
        fake.store.record_space_alert("after");
        fake.store.log("a line");
        let names: Vec<_> = fake.store.snapshots(&client).unwrap();
        assert_eq!(names.len(), 1);
        assert_eq!(names[0].name, old);
        assert!(fake.store.current(&client).join("unsnapshotted").exists());
        assert_eq!(fake.store.space_alert().as_deref(), Some("before"));
        assert_eq!(std::fs::read(&log).unwrap(), log_before);
        assert_eq!(fake.store.powers(), Powers::ALL);
    }
}
