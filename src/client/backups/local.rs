//! A store on this machine: `byteback backup --destination /var/backups/x`
//! backs up with no SSH and no server user, through the same lifecycle —
//! locks, slots, growth, outcome records, incremental readying, snapshots
//! and the prune that follows — as a server's forced command, called in
//! process. This module is the local door; it decides nothing about the
//! store itself.

use std::path::Path;

use jiff::Timestamp;

use super::{Backups, Find, Receiving, Session};
use crate::catalog::Row;
use crate::client::transfer::Transferred;
use crate::error::{Error, Result};
use crate::exec::rsync::{Outcome, RestoreFrom, TransferTo, describe_exit};
use crate::lifecycle::{ClientBackups, ReadLimits};
use crate::names::{ClientName, SnapshotName};
use crate::protocol::{DigestLine, PingReply, ReplaceList, TransferMode};
use crate::store::{Snapshot, Store};

/// What the local door calls itself where the lifecycle records who did
/// what: the producer of `current`, the transfer lock. (A server's keys are
/// named by [`crate::server::roles::KeyId`]; no key is called this.)
pub const LOCAL_KEY: &str = "local";

/// A local store and this machine's name in it.
#[derive(Debug)]
pub struct LocalBackups {
    pub store: Store,
    pub client: ClientName,
}

impl LocalBackups {
    /// Opens the store at `root` for the machine called `name`. With
    /// `create`, the store (with the backend its filesystem calls for) and
    /// the machine's space in it are made on first use.
    pub fn open(root: &Path, name: &str, create: bool) -> Result<LocalBackups> {
        let client = ClientName::new(name)?;
        if create {
            if !root.exists() {
                std::fs::create_dir_all(root)
                    .map_err(|e| Error::io("cannot create store", root, e))?;
                std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                    .map_err(|e| Error::io("cannot chmod", root, e))?;
            }
            crate::store::setup::prepare(root, None)?;
        } else if !Store::config_path_of(root).exists() {
            return Err(Error::NotFound(format!(
                "there is no byteback store at {} yet: back up into it first",
                root.display()
            )));
        }
        let store = crate::lifecycle::open_store(root)?;
        if create && !store.has_client(&client) {
            store.add_client(&client)?;
        }
        if !store.has_client(&client) {
            return Err(Error::NotFound(format!(
                "the store at {} has no backups of {client}",
                root.display()
            )));
        }
        Ok(LocalBackups { store, client })
    }

    /// The lifecycle of this machine's backups in the store.
    fn lifecycle(&self) -> Result<ClientBackups<'_>> {
        ClientBackups::open(&self.store, &self.client)
    }

    /// Records what `byteback-server status` shows as this machine's last
    /// attempt, as the forced command records a client key's.
    fn record<T>(&self, request: &str, result: &Result<T>, failed: Option<String>) {
        let failure = match result {
            Err(e) => Some(e.to_string()),
            Ok(_) => failed,
        };
        if let Ok(backups) = self.lifecycle() {
            backups.record_attempt(request, failure);
        }
    }

    /// The transfer, from its beginning (locks, slot, readying, producer
    /// mark) to its end (what it wrote charged, the locks released).
    fn transfer_through(
        &self,
        mode: TransferMode,
        sparse: bool,
        send: &mut dyn FnMut(Receiving<'_>) -> Result<Transferred>,
    ) -> Result<Transferred> {
        let store = &self.store;
        let backups = self.lifecycle()?;
        let transfer = backups.begin_transfer(LOCAL_KEY, mode, sparse, &mut |busy| {
            crate::report::note(format_args!(
                "waiting for {busy} other backup(s) to finish (max_concurrent_backups = {})",
                store.config.max_concurrent_backups
            ))
        })?;
        let plan = transfer.plan();
        // The local rsync logs what it changes beside `current`, as the
        // server's receiver does: the snapshot's change log comes from it.
        let token = backups.ready_change_log()?;
        let sent = send(Receiving {
            to: TransferTo::Local {
                current: store.current(&self.client),
                inplace: plan.inplace,
                link_dests: plan.link_dests.clone(),
                log_file: store
                    .client_dir(&self.client)
                    .join(crate::lifecycle::changelog::INCOMING),
                log_format: token.format(),
            },
            stop: &|pid| transfer.over_limit(pid),
        });
        let finished = sent
            .as_ref()
            .is_ok_and(|t| matches!(t.outcome, Outcome::Ok | Outcome::Vanished));
        transfer.wrote_and_removed(backups.fold_change_log(Some(&token), finished));
        let how = match &sent {
            Ok(t) => describe_exit(t.code),
            Err(e) => e.to_string(),
        };
        transfer.end(&how);
        sent
    }
}

impl Backups for LocalBackups {
    fn describe(&self) -> String {
        format!("store {}", self.store.root().display())
    }

    fn session(&self) -> Result<Session<'_>> {
        Ok(Session::Same(self))
    }

    fn ping(&self) -> Result<PingReply> {
        self.lifecycle()?.ping()
    }

    fn snapshots(&self) -> Result<Vec<Snapshot>> {
        self.lifecycle()?.snapshots()
    }

    fn find(&self, find: &Find, each: &mut dyn FnMut(Row) -> Result<()>) -> Result<()> {
        self.lifecycle()?
            .find(find.all, &find.snapshots, &find.patterns, each)
    }

    fn digest(
        &self,
        name: &SnapshotName,
        patterns: &[Vec<u8>],
        each: &mut dyn FnMut(DigestLine) -> Result<()>,
    ) -> Result<()> {
        self.lifecycle()?
            .digest(name.as_str(), patterns, &ReadLimits::NONE, each)
            .map(drop)
    }

    fn diff(
        &self,
        from: Option<&SnapshotName>,
        to: Option<&SnapshotName>,
        json: bool,
        each: &mut dyn FnMut(&str) -> Result<()>,
    ) -> Result<()> {
        let diff = self
            .lifecycle()?
            .diff(from.map(SnapshotName::as_str), to.map(SnapshotName::as_str))?;
        diff.render(json).iter().try_for_each(|line| each(line))
    }

    fn restore_from(&self) -> RestoreFrom {
        RestoreFrom::Local {
            client_dir: self.store.client_dir(&self.client),
        }
    }

    fn incremental(&self, snapshot: &str, list: ReplaceList) -> Result<()> {
        let result = self
            .lifecycle()
            .and_then(|b| b.prepare_incremental(snapshot, list, LOCAL_KEY));
        self.record("incremental", &result, None);
        result
    }

    fn transfer(
        &self,
        mode: TransferMode,
        sparse: bool,
        send: &mut dyn FnMut(Receiving<'_>) -> Result<Transferred>,
    ) -> Result<Transferred> {
        let result = self.transfer_through(mode, sparse, send);
        // As the server counts a receive: files that vanished are a
        // success, anything else rsync says is not.
        let failed = match &result {
            Ok(t) if !matches!(t.outcome, Outcome::Ok | Outcome::Vanished) => {
                Some(describe_exit(t.code))
            }
            _ => None,
        };
        self.record("receive", &result, failed);
        result
    }

    /// No `min_snapshot_interval` here: the person on this machine decides
    /// how often.
    fn complete(&self, failed_files: Option<&str>) -> Result<String> {
        let result = self
            .lifecycle()
            .and_then(|backups| backups.complete_local(Timestamp::now(), failed_files, LOCAL_KEY));
        self.record("complete", &result, None);
        result.map(|name| name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::rsync::Traffic;
    use crate::store::ServerConfig;
    use crate::store::fake::FakeBackend;

    /// A local store on the fake disk, removed when dropped.
    struct Fake {
        backups: LocalBackups,
        root: std::path::PathBuf,
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    fn fake(label: &str) -> Fake {
        let root = std::env::temp_dir().join(format!(
            "byteback-local-door-{label}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(Store::state_dir_of(&root).join("locks")).unwrap();
        let store = Store::with_backend(
            &root,
            ServerConfig::default(),
            Box::new(FakeBackend { capacity: 1 << 30 }),
        );
        let client = ClientName::new("local.example").unwrap();
        store.add_client(&client).unwrap();
        Fake {
            backups: LocalBackups { store, client },
            root,
        }
    }

    /// A transfer that "writes" `file` into `current`, as rsync would.
    fn writing(file: &'static str) -> impl FnMut(Receiving<'_>) -> Result<Transferred> {
        move |into| {
            let TransferTo::Local { current, .. } = into.to else {
                panic!("a local transfer goes to a local current");
            };
            std::fs::write(current.join(file), file).unwrap();
            Ok(Transferred {
                traffic: Traffic {
                    files: 1,
                    ..Traffic::default()
                },
                ..Transferred::nothing()
            })
        }
    }

    fn last(b: &LocalBackups) -> crate::store::outcome::Outcome {
        b.store
            .last_outcome(&b.client)
            .expect("an outcome recorded")
    }

    #[test]
    fn the_local_door_records_each_step_and_runs_incrementally() {
        let f = fake("steps");
        let b = &f.backups;
        assert_eq!(b.ping().unwrap().snapshots, 0);
        let sent = b
            .transfer(TransferMode::Full, false, &mut writing("a"))
            .unwrap();
        assert_eq!(sent.traffic.files, 1);
        assert_eq!(last(b).request, "receive");
        assert!(last(b).ok);
        let first = b.complete(None).unwrap();
        assert_eq!((last(b).request.as_str(), last(b).ok), ("complete", true));
        // The next backup: `current` readied from the newest snapshot less
        // what changed, then only the change sent.
        b.incremental(
            &first,
            ReplaceList {
                replace: vec![b"b".to_vec()],
                gone: Vec::new(),
            },
        )
        .unwrap();
        assert_eq!(last(b).request, "incremental");
        b.transfer(TransferMode::Incremental, false, &mut writing("b"))
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let second = b.complete(None).unwrap();
        assert_ne!(first, second);
        let snapshots = b.snapshots().unwrap();
        assert_eq!(snapshots.len(), 2);
        let newest = b.store.client_dir(&b.client).join(&second);
        assert!(newest.join("a").exists() && newest.join("b").exists());
    }

    #[test]
    fn the_local_door_refuses_what_the_lifecycle_refuses_and_records_it() {
        let f = fake("refusals");
        let b = &f.backups;
        // An incremental transfer into a `current` nobody readied.
        let e = b
            .transfer(TransferMode::Incremental, false, &mut writing("a"))
            .unwrap_err();
        assert!(matches!(e, Error::FullPassNeeded(_)), "{e}");
        let o = last(b);
        assert_eq!((o.request.as_str(), o.ok), ("receive", false));
        // rsync's own failure is a failed receive too.
        let failing = &mut |_: Receiving<'_>| {
            Ok(Transferred {
                outcome: Outcome::Fatal,
                code: Some(1),
                ..Transferred::nothing()
            })
        };
        b.transfer(TransferMode::Full, false, failing).unwrap();
        let o = last(b);
        assert!(!o.ok && o.reason.unwrap().contains("rsync exit 1"));
        // A snapshot of a `current` another door's key produced is refused.
        b.lifecycle()
            .unwrap()
            .mark_produced_by("client:someone.else")
            .unwrap();
        assert!(b.complete(None).is_err());
        assert_eq!((last(b).request.as_str(), last(b).ok), ("complete", false));
    }
}
