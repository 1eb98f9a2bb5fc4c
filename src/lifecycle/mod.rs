//! A client's backups on a store: the backup lifecycle both doors share.
//!
//! The SSH forced command ([`crate::server::receive`]) and local
//! destinations ([`crate::client`]) reach a store through this one module:
//! ready a transfer (making room first), record what it wrote, finish it
//! with a snapshot (or a partial one), list the snapshots, find files in
//! them and name the paths a restore may read. The adapters only move bytes
//! and render replies; every decision about the store is made here.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::catalog;
use crate::error::{Error, Result};
use crate::finder::Pattern;
use crate::finder::digest::Digest;
use crate::names::{ClientName, SnapshotName};
use crate::protocol::{HostKey, PROTOCOL_VERSION, PingReply, Redirect, TransferMode};
use crate::prune::{self, growth};

use crate::store::backend::TransferPlan;
use crate::store::space;
use crate::store::{
    Backend, CLEAN_XATTR, INCREMENTAL_XATTR, PRODUCER_XATTR, Snapshot, Store, no_space,
};
use crate::sys::lock::Lock;
use crate::window::{self, Gate, Windows};

pub mod changelog;
pub mod hardened;
mod suspect;

/// Opens the store at `root` as every command must: in hardened mode if
/// root hardened it for this user (root's file decides, and its policy is
/// the one the helper enforces, so the server uses it too).
pub fn open_store(root: &Path) -> Result<Store> {
    let mut store = Store::open(root)?;
    if store.config.backend == Backend::Btrfs {
        if let Some(config) = hardened::for_store(root)? {
            hardened::harden(&mut store, config);
        }
    }
    Ok(store)
}

/// [`open_store`] for a dry run: its keeper writes nothing, whatever a
/// command asks of it (see [`crate::store::DryRun`]).
pub fn open_store_dry_run(root: &Path) -> Result<Store> {
    let mut store = open_store(root)?;
    store.decorate(|real| Box::new(crate::store::DryRun { real }));
    Ok(store)
}

/// Prunes the store from the command line (or its maintenance timer):
/// `force` deletes the least important deletable snapshot now, which only
/// a keeper that deletes on request can.
pub fn prune(store: &Store, now: Timestamp, mode: prune::Mode) -> Result<prune::Outcome> {
    if mode == prune::Mode::Force && !store.powers().deletes_on_request {
        return Err(Error::Refused(
            "prune --force is not available in hardened mode: the privileged helper deletes only what the policy deletes when space is short".into(),
        ));
    }
    prune::run(store, now, mode, None)
}

/// The incremental mark while `current` is being readied.
const BUILDING: &str = "building";

/// How far in the future a replicated snapshot's name may be (the
/// primary's clock may run a little ahead of the replica's).
pub const CLOCK_SKEW: SignedDuration = SignedDuration::from_secs(300);

/// The most hard-linked inodes a digest remembers (some 60 bytes each, so
/// at most ~16 MiB); past it, another name of an inode is hashed again,
/// within the request's budget. (On a plain store every unchanged file is
/// linked to other snapshots, so it counts here too.)
const MAX_LINKED: usize = 1 << 18;

/// What one read request may spend (see [`ClientBackups::digest`]).
pub struct ReadLimits<'a> {
    /// Bytes of file data a digest may read.
    pub max_bytes: u64,
    /// Asked often (between files, every 64 KiB hashed): an error ends the
    /// request with it (the client went away, the deadline passed).
    pub go_on: &'a dyn Fn() -> Result<()>,
}

impl ReadLimits<'_> {
    /// No limits: for a person reading a store on their own machine.
    pub const NONE: ReadLimits<'static> = ReadLimits {
        max_bytes: u64::MAX,
        go_on: &|| Ok(()),
    };
}

/// What a digest did, for the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DigestStats {
    /// Regular files answered.
    pub files: u64,
    /// Inodes hashed (a hard-linked file's other names reuse its hash).
    pub inodes: u64,
    /// Bytes of data read.
    pub data_bytes: u64,
    /// Bytes of holes hashed as zeros, not read.
    pub hole_bytes: u64,
}

/// The refusal a moved client gets: the redirect (the new server, and
/// the host keys this server's replication trusts for it), and the words.
pub fn moved_error(client: &ClientName, moved: &crate::store::moved::Moved) -> Error {
    let redirect = moved.to.parse().ok().map(|to| Redirect {
        to,
        host_keys: moved
            .host_keys
            .iter()
            .filter_map(|k| k.split_once(' '))
            .filter_map(|(kind, blob)| HostKey::new(kind, blob))
            .collect(),
    });
    Error::Moved {
        redirect: redirect.map(|r| r.render()).unwrap_or_default(),
        message: format!(
            "client {client} has moved to {} (since {}): back up there; `byteback backup` and `byteback test` follow this once and record the new server in the configuration",
            moved.to,
            moved.at.strftime("%Y-%m-%dT%H:%M:%SZ")
        ),
    }
}

/// One client's backups on an opened store.
#[derive(Debug)]
pub struct ClientBackups<'s> {
    pub store: &'s Store,
    pub client: ClientName,
}

impl<'s> ClientBackups<'s> {
    /// The client's backups; refused if it has no space on this store.
    pub fn open(store: &'s Store, client: &ClientName) -> Result<Self> {
        if !store.has_client(client) {
            return Err(no_space(client));
        }
        Ok(ClientBackups {
            store,
            client: client.clone(),
        })
    }

    /// Readies the client's space for a transfer: makes room first (so a
    /// backup that failed for lack of space succeeds on its next attempt
    /// without anyone acting), then readies `current` and says how to
    /// transfer into it. Refused, with the reason, if the client's own
    /// unsnapshotted data had to be discarded to make room. The caller
    /// holds the client's lock.
    pub fn prepare_transfer(&self) -> Result<TransferPlan> {
        Ok(self.prepare_transfer_measured(false)?.0)
    }

    /// [`Self::prepare_transfer`]; on btrfs with `btrfs` set, also the
    /// reading of the store (see [`metadata_reading`]) that the prune took
    /// as its opening figure, if the prune then changed nothing: `current`
    /// readied since then only had its hard links broken (metadata this
    /// transfer may fairly be charged) or a deletion left by a crash
    /// finished (which can only hide some of the charge, as a concurrent
    /// deletion may, see [`space::spent`]). One launch of `btrfs
    /// filesystem usage` instead of two.
    fn prepare_transfer_measured(
        &self,
        btrfs: bool,
    ) -> Result<(TransferPlan, Option<space::Reading>)> {
        let (store, client) = (self.store, &self.client);
        let reading = self.make_room(btrfs)?;
        store.clear_client_mark(client, INCREMENTAL_XATTR);
        store.clear_client_mark(client, CLEAN_XATTR);
        let newest = store.snapshots(client)?.pop().map(|s| s.name);
        let plan = store
            .backend()
            .prepare_current(&store.client_dir(client), newest.as_ref())?;
        Ok((plan, reading))
    }

    /// Begins a transfer into `current` for `key`, whichever door it
    /// comes through: takes the client's lock, the key's transfer lock
    /// (one transfer per key at a time, whatever client names it writes
    /// under) and one of the store's `max_concurrent_backups` slots
    /// (calling `waiting` with how many others run while it queues), each
    /// shared with the child that will write (so a killed door leaves them
    /// held until the writer ends); readies `current` for `mode` (an
    /// incremental one must have been readied by
    /// [`Self::prepare_incremental`]; a `sparse` one, the run of a backup's
    /// files with holes, leaves it readied for the run of the rest); and
    /// marks `key` as what produced `current`. End it with [`Transfer::end`].
    pub fn begin_transfer(
        &self,
        key: &str,
        mode: TransferMode,
        sparse: bool,
        waiting: &mut dyn FnMut(u32),
    ) -> Result<Transfer<'_, 's>> {
        let (store, client) = (self.store, &self.client);
        self.check_window(Timestamp::now())?;
        let client_lock = store.lock_client(client, store.config.lock_wait.to_std())?;
        // Under the lock: a move finishes while holding it.
        self.check_not_moved()?;
        client_lock.share_with_children()?;
        let key_lock = store.lock_key_transfer(key, client)?;
        key_lock.share_with_children()?;
        let slot = store.backup_slot(client, waiting)?;
        slot.share_with_children()?;
        let btrfs = store.backend().kind() == Backend::Btrfs;
        let (plan, reading) = match mode {
            TransferMode::Incremental => (self.start_incremental(sparse)?, None),
            TransferMode::Full => self.prepare_transfer_measured(btrfs)?,
        };
        if mode == TransferMode::Full && !plan.inplace {
            // A plain full pass starts `current` empty: what it does not
            // send is gone, though rsync deletes (and logs) nothing.
            self.note_fresh_current();
        }
        // From here on `current` is this key's work, whatever it held before.
        self.mark_produced_by(key)?;
        // What the filesystem spends on metadata is charged too (see
        // `store::space::spent`): read before and after the transfer.
        let reading_before = reading.or_else(|| metadata_reading(store, btrfs));
        Ok(Transfer {
            backups: self,
            plan,
            btrfs,
            written_before: growth::written_by_children(),
            not_data: std::cell::Cell::new(0),
            reading_before,
            // The store was just measured (by the prune or the reading
            // above) and nothing is written yet: the first look at the
            // limits can wait its turn.
            next_check: std::cell::Cell::new(std::time::Instant::now() + OVER_LIMIT_EVERY),
            _locks: [client_lock, key_lock, slot],
        })
    }

    /// Records what status shows as the client's last attempt: `request`
    /// (`receive`, `complete`, `send`, `incremental`, `refused`) and why it
    /// failed, if it did.
    pub fn record_attempt(&self, request: &str, failure: Option<String>) {
        self.store.record_outcome(
            &self.client,
            &crate::store::outcome::Outcome {
                time: Timestamp::now(),
                request: request.into(),
                ok: failure.is_none(),
                reason: failure,
            },
        );
    }

    /// Prunes if space is short, before a transfer; refused (with the
    /// reason) if this client's own unsnapshotted data had to go. With
    /// `reading`, the prune's opening figure is a [`metadata_reading`],
    /// returned if nothing was deleted or reclaimed after it (see
    /// [`Self::prepare_transfer_measured`]).
    fn make_room(&self, reading: bool) -> Result<Option<space::Reading>> {
        let (store, client) = (self.store, &self.client);
        // Over its history quota (lowered, say, since its last snapshot):
        // its own history is thinned first, while nothing unsnapshotted
        // is counted with it.
        if growth::load(store, client).written_since_snapshot == 0 {
            if let Err(e) = prune::thin_to_quota(store, Timestamp::now(), client) {
                store.warn(&format!("{client}: quota before receiving: {e}"));
            }
        }
        let mut kept = None;
        let mut measure = || match reading.then(|| metadata_reading(store, true)).flatten() {
            Some(r) => {
                kept = Some(r);
                Ok(r.space)
            }
            None => store.space(),
        };
        let now = Timestamp::now();
        match prune::run_measured(
            store,
            now,
            prune::Mode::IfNeeded,
            Some(client),
            &mut measure,
        ) {
            Ok(o) if o.deleted.is_empty() && o.reclaimed.is_empty() => Ok(kept),
            Ok(_) => Ok(None),
            // Only pinned snapshots could make room: refused rather than
            // lose them (see `store::suspect`).
            Err(e @ (Error::Refused(_) | Error::PinnedBySuspect(_))) => {
                if matches!(e, Error::PinnedBySuspect(_)) {
                    store.warn(&format!("{client}: backup refused: {e}"));
                }
                Err(e)
            }
            Err(e) => {
                store.warn(&format!("{client}: prune before receiving: {e}"));
                crate::report::warn(&e);
                Ok(None)
            }
        }
    }

    /// Readies `current` for an incremental transfer (the client's change
    /// index found what changed since `snapshot`): refused unless
    /// `snapshot` is the client's newest. Afterwards `current` holds that
    /// snapshot less the `replace` paths (see
    /// [`crate::store::backend::SnapshotBackend::prepare_incremental`]), and the
    /// next receive may be incremental, and `key` (the requesting key, see
    /// [`Self::mark_produced_by`]) is what produced `current`.
    pub fn prepare_incremental(
        &self,
        snapshot: &str,
        list: crate::protocol::ReplaceList,
        key: &str,
    ) -> Result<()> {
        let store = self.store;
        let _lock = store.lock_client(&self.client, store.config.lock_wait.to_std())?;
        self.prepare_incremental_locked(snapshot, list, key)
    }

    /// Refuses a transfer (or readying `current` for one) outside the
    /// store's backup windows, with the time the next opens (see
    /// [`window_refusal`]). Nothing is locked or changed before it.
    pub fn check_window(&self, now: Timestamp) -> Result<()> {
        check_window(self.store, now)
    }

    /// [`Self::prepare_incremental`], for a caller that holds the client's
    /// lock (the forced command takes it before it reads the list, so one
    /// client holds at most one list in memory).
    pub fn prepare_incremental_locked(
        &self,
        snapshot: &str,
        list: crate::protocol::ReplaceList,
        key: &str,
    ) -> Result<()> {
        let (store, client) = (self.store, &self.client);
        self.check_not_moved()?;
        self.check_window(Timestamp::now())?;
        // Whatever happens below, `current` is no longer what another
        // key's transfer left there.
        self.mark_produced_by(key)?;
        self.make_room(false)?;
        let Some(newest) = store.snapshots(client)?.pop() else {
            return Err(Error::FullPassNeeded(format!(
                "{client} has no snapshot for an incremental backup to start from: make a full pass"
            )));
        };
        if newest.name.as_str() != snapshot {
            return Err(Error::FullPassNeeded(format!(
                "the newest snapshot of {client} is {}, not {snapshot}: make a full pass",
                newest.name
            )));
        }
        let clean = store.client_mark(client, CLEAN_XATTR).as_deref() == Some(snapshot);
        // A half-built `current` is never snapshotted (see `complete`).
        store.set_client_mark(client, INCREMENTAL_XATTR, BUILDING)?;
        let count = list.replace.len();
        let replace: std::collections::HashSet<Vec<u8>> = list.replace.into_iter().collect();
        // Deleting what vanished changes `current`: from then on it is no
        // longer the snapshot, whatever happens to this transfer.
        if !list.gone.is_empty() {
            store.clear_client_mark(client, CLEAN_XATTR);
        }
        store
            .backend()
            .prepare_incremental(
                &store.client_dir(client),
                &newest.name,
                &replace,
                &list.gone,
                clean,
            )
            .map_err(|e| {
                Error::FullPassNeeded(format!(
                    "cannot ready current of {client} for an incremental backup ({e}): make a full pass"
                ))
            })?;
        // The server's own deletions are part of the snapshot's change log.
        self.note_deleted(&list.gone);
        if store.backend().kind() == Backend::Btrfs && list.gone.is_empty() {
            store.set_client_mark(client, CLEAN_XATTR, snapshot)?;
        }
        store.set_client_mark(client, INCREMENTAL_XATTR, snapshot)?;
        store.log(&format!(
            "{client}: current readied from {snapshot} for an incremental backup ({count} path(s) to replace)"
        ));
        Ok(())
    }

    /// Starts an incremental transfer: refused unless `current` was readied
    /// for one from the client's newest snapshot (and nothing changed it
    /// since but a `sparse` incremental transfer). A `sparse` one (a
    /// backup's files with holes, sent first in a `--sparse` run of their
    /// own, protocol 8) leaves `current` readied for the run of the rest;
    /// any other uses the readying up. Either way `current` is what this
    /// key's readying and its transfers made of the snapshot, and a
    /// snapshot, rollback or whole pass in between clears the mark. The
    /// caller holds the client's lock.
    pub fn start_incremental(&self, sparse: bool) -> Result<TransferPlan> {
        let (store, client) = (self.store, &self.client);
        let readied = store.client_mark(client, INCREMENTAL_XATTR);
        if !sparse {
            store.clear_client_mark(client, INCREMENTAL_XATTR);
        }
        store.clear_client_mark(client, CLEAN_XATTR);
        let newest = store.snapshots(client)?.pop().map(|s| s.name.to_string());
        if readied.is_none() || readied != newest {
            return Err(Error::FullPassNeeded(format!(
                "current of {client} was not readied for an incremental backup from its newest snapshot (byteback incremental): make a full pass"
            )));
        }
        // No `--link-dest` on plain stores: with `--ignore-times` rsync
        // would read each changed file's old version there as a delta
        // basis, and reading changes the atime of a snapshot's inode. The
        // changed files are sent whole instead.
        Ok(TransferPlan {
            inplace: store.backend().kind() == Backend::Btrfs,
            link_dests: Vec::new(),
        })
    }

    /// Records that `key` (a [`crate::server::roles::KeyId`]) is producing
    /// `current`: set when its transfer starts or it readies `current`
    /// for an incremental one, before anything is written. The caller
    /// holds the client's lock.
    pub fn mark_produced_by(&self, key: &str) -> Result<()> {
        self.store
            .set_client_mark(&self.client, PRODUCER_XATTR, key)
    }

    /// Refuses a snapshot for `key` unless its own transfer (or
    /// incremental readying) was the last to produce `current`: whatever
    /// another key did in between, it cannot put its data under this key's
    /// snapshot.
    fn check_produced_by(&self, key: &str) -> Result<()> {
        let mark = self.store.client_mark(&self.client, PRODUCER_XATTR);
        if mark.as_deref() == Some(key) {
            return Ok(());
        }
        Err(Error::Refused(format!(
            "not taking a snapshot of {}: its current was not produced by this key's own last transfer ({}); run the backup again",
            self.client,
            match mark {
                Some(_) => "another key's request changed it since",
                None => "none since it was last rolled back or made",
            }
        )))
    }

    /// Records that a transfer wrote `written` bytes into the client's space.
    pub fn record_transfer(&self, written: u64) {
        if let Err(e) = growth::record_transfer(self.store, &self.client, written) {
            self.store.log(&format!(
                "{}: cannot record the transfer's size: {e}",
                self.client
            ));
        }
    }

    /// A client asks for the snapshot that ends its backup: taken unless
    /// one was taken less than `min_snapshot_interval` ago, or `key` is not
    /// what produced `current`.
    pub fn complete(&self, now: Timestamp, note: Option<&str>, key: &str) -> Result<SnapshotName> {
        let store = self.store;
        let _lock = store.lock_client(&self.client, store.config.lock_wait.to_std())?;
        self.check_produced_by(key)?;
        self.check_readied()?;
        self.check_interval(now)?;
        self.finish(now, note)
    }

    /// The local door's end of a backup (`byteback backup` into a store
    /// on its own machine): the snapshot of what `key`'s transfer
    /// produced, as [`Self::complete`] takes it but with no
    /// `min_snapshot_interval`, which keeps a remote client from flooding
    /// a server; the local door's user owns the store.
    pub fn complete_local(
        &self,
        now: Timestamp,
        note: Option<&str>,
        key: &str,
    ) -> Result<SnapshotName> {
        let store = self.store;
        let _lock = store.lock_client(&self.client, store.config.lock_wait.to_std())?;
        self.check_produced_by(key)?;
        self.check_readied()?;
        self.finish(now, note)
    }

    /// Ends a backup whose transfer is in `current`: takes the snapshot
    /// (marked partial with `note`, the files left out), restarts the
    /// client's growth count, then prunes if space is short. The caller
    /// holds the client's lock.
    pub fn finish(&self, now: Timestamp, note: Option<&str>) -> Result<SnapshotName> {
        self.finish_as(None, now, note)
    }

    /// A replica's snapshot of a primary's client: `name` is the primary's
    /// name for it, accepted only if it is newer than every snapshot of the
    /// client here and not in the future (beyond [`CLOCK_SKEW`]), so a
    /// primary can only add history after what the replica holds — never
    /// replace, reorder or pre-empt it — and only of a `current` that
    /// `key`'s own transfer produced. The caller holds the client's lock.
    pub fn finish_replicated(
        &self,
        name: SnapshotName,
        now: Timestamp,
        note: Option<&str>,
        key: &str,
    ) -> Result<SnapshotName> {
        let client = &self.client;
        self.check_produced_by(key)?;
        if let Some(newest) = self.snapshots()?.pop() {
            if name.time() <= newest.name.time() {
                return Err(Error::Refused(format!(
                    "snapshot {name} of {client} is not newer than its newest here, {}: a replica only adds newer history",
                    newest.name
                )));
            }
        }
        let latest = now.checked_add(CLOCK_SKEW).unwrap_or(now);
        if name.time() > latest {
            return Err(Error::Refused(format!(
                "snapshot {name} of {client} is in the future (this server's time is {}): check the primary's clock",
                now.strftime("%Y-%m-%dT%H:%M:%SZ")
            )));
        }
        self.finish_as(Some(name), now, note)
    }

    /// Takes the snapshot (named `name`, else for `now`) and does what
    /// follows every snapshot.
    fn finish_as(
        &self,
        name: Option<SnapshotName>,
        now: Timestamp,
        note: Option<&str>,
    ) -> Result<SnapshotName> {
        let (store, client) = (self.store, &self.client);
        // History here ends with the move: every snapshot comes this way.
        self.check_not_moved()?;
        self.check_quota()?;
        // The change log is classified while `current` is still writable
        // and the previous snapshot is the newest.
        let log = self.seal_change_log();
        // Judged against the history before it, while that is all there is.
        let verdict = log.as_ref().and_then(|log| self.judge_suspect(log, now));
        let name = match name {
            Some(name) => store.take_snapshot_named(client, name, note)?,
            // (In hardened mode the helper names it, by its own clock.)
            None => store.take_snapshot(client, now, note)?,
        };
        let what = if note.is_some() {
            "partial snapshot"
        } else {
            "snapshot"
        };
        store.log(&format!("{client}: {what} {name} taken"));
        if let Some(log) = &log {
            self.place_change_log(&name);
            store.log(&format!(
                "{client}: {name}: {} added, {} deleted, {} changed in content, {} in metadata",
                log.added, log.deleted, log.content, log.metadata
            ));
        }
        // Marked before anything is pruned, so the prune below keeps its pins.
        if let Some(verdict) = verdict {
            self.mark_suspect(&name, verdict);
        }
        // What was written is history now, before pruning weighs it.
        growth::record_snapshot(store, client)?;
        store.clear_client_notice(client);
        // Its history quota first: only its own snapshots pay for it.
        match prune::thin_to_quota(store, now, client) {
            Ok(q) if q.over() => store.warn(&format!(
                "{client}: holds {} bytes, over its quota of {} bytes, with only its newest snapshot (and any a suspect mark pins) left",
                q.after,
                q.quota.unwrap_or_default()
            )),
            Ok(_) => {}
            Err(e) => store.warn(&format!("{client}: quota after snapshot: {e}")),
        }
        // Make room for the next backups now, while nobody is waiting on a
        // transfer.
        if let Err(e) = prune::run(store, now, prune::Mode::IfNeeded, Some(client)) {
            store.warn(&format!("{client}: prune after snapshot: {e}"));
        }
        Ok(name)
    }

    /// Refuses the backups of a client that moved to another server
    /// (`byteback-server move-client`, [`crate::store::moved`]): its ping,
    /// transfers, incremental readying and snapshots all get the redirect
    /// to the new server, which its `byteback` follows once. Reads of the
    /// history kept here (listings, restores) are still served.
    pub fn check_not_moved(&self) -> Result<()> {
        match self.store.moved(&self.client) {
            Some(moved) => Err(moved_error(&self.client, &moved)),
            None => Ok(()),
        }
    }

    /// Refuses a snapshot that alone would hold more than the client's
    /// history quota (see [`crate::store::quota`]): no thinning of older
    /// history could make it fit. `current` goes back to the newest
    /// snapshot (its data would otherwise stay, unsnapshotted), the client
    /// is told why, and the backup fails with [`Error::SpaceExhausted`]
    /// (exit 9). The caller holds the client's lock.
    fn check_quota(&self) -> Result<()> {
        use crate::store::quota;
        let (store, client) = (self.store, &self.client);
        let Some(limit) = quota::quota(store, client) else {
            return Ok(());
        };
        let current = store.client_dir(client).join("current");
        let holds = match quota::measure(store, &current) {
            Ok(bytes) => bytes,
            Err(e) => {
                store.warn(&format!(
                    "{client}: cannot weigh current against its quota: {e}"
                ));
                return Ok(());
            }
        };
        if holds <= limit {
            return Ok(());
        }
        let msg = format!(
            "this backup of {client} alone holds {holds} bytes, more than its history quota of {limit} bytes: no snapshot was taken and the data was discarded (current is back at the newest snapshot); back up less, or ask the administrator to raise the quota (byteback-server set-quota)"
        );
        store.roll_back_current(client)?;
        growth::record_rollback(store, client)?;
        store.set_client_notice(client, &msg);
        store.log(&format!("quota: refused a snapshot: {msg}"));
        Err(Error::SpaceExhausted(msg))
    }

    /// Refuses a snapshot of a `current` half readied for an incremental
    /// transfer.
    fn check_readied(&self) -> Result<()> {
        let mark = self.store.client_mark(&self.client, INCREMENTAL_XATTR);
        if mark.as_deref() == Some(BUILDING) {
            return Err(Error::Refused(format!(
                "current of {} is half readied for an incremental backup; not taking a snapshot of it",
                self.client
            )));
        }
        Ok(())
    }

    /// Refuses a snapshot sooner than `min_snapshot_interval` after the
    /// client's newest, so a client cannot flood the disk.
    fn check_interval(&self, now: Timestamp) -> Result<()> {
        let client = &self.client;
        let interval = self.store.config.min_snapshot_interval;
        let Some(newest) = self.store.snapshots(client)?.pop() else {
            return Ok(());
        };
        let age = now.duration_since(newest.name.time());
        if age >= interval.0 {
            return Ok(());
        }
        let next = newest
            .name
            .time()
            .checked_add(interval.0)
            .unwrap_or(newest.name.time());
        Err(Error::Refused(format!(
            "not taking a snapshot of {client}: the last one ({}) is only {} old and the server allows one every {interval} (min_snapshot_interval); the data is safe in current, and the next snapshot may be taken from {} (the first backup from then on is snapshotted)",
            newest.name,
            round(age),
            next.strftime("%Y-%m-%dT%H:%M:%SZ")
        )))
    }

    /// `byteback-server snapshot`: a snapshot of `current` taken by hand
    /// (named for `at`, else now), followed by all that follows every
    /// snapshot: the growth count restarts and pruning makes room.
    pub fn snapshot_by_hand(&self, at: Option<Timestamp>) -> Result<SnapshotName> {
        let store = self.store;
        if at.is_some() && !store.powers().names_as_asked {
            return Err(Error::Usage(
                "--at is not available in hardened mode: the privileged helper names snapshots by its own clock".into(),
            ));
        }
        let _lock = store.lock_client(&self.client, store.config.lock_wait.to_std())?;
        let name = self.finish(at.unwrap_or_else(Timestamp::now), None)?;
        store.log(&format!("{}: snapshot {name} taken by hand", self.client));
        // What `current` held is history now: the backup that left it
        // there has ended, as a `complete` would have ended it.
        self.record_attempt("snapshot", None);
        Ok(name)
    }

    /// The client's snapshots, oldest first.
    pub fn snapshots(&self) -> Result<Vec<Snapshot>> {
        self.store.snapshots(&self.client)
    }

    /// What a ping reports: the client's snapshots and the store's space.
    pub fn ping(&self) -> Result<PingReply> {
        let store = self.store;
        self.check_not_moved()?;
        let snapshots = self.snapshots()?;
        // What btrfs can really still take; statvfs if that cannot be read.
        let room = match store.space() {
            Ok(room) => room,
            Err(_) => crate::sys::fs::space(store.root())?,
        };
        let (windows, closed_until) = match &store.config.limits.windows {
            None => (None, None),
            Some(windows) => {
                let (now, tz) = (Timestamp::now(), window::server_time_zone());
                let closed_until = match windows.gate(now, &tz) {
                    Gate::Open => None,
                    Gate::ClosedUntil(at, _) => Some(at),
                };
                let zone = window::zone_name(&tz, now);
                (
                    Some(format!("{} ({zone})", windows.describe())),
                    closed_until,
                )
            }
        };
        Ok(PingReply {
            protocol: PROTOCOL_VERSION,
            client: self.client.to_string(),
            free_bytes: room.free_bytes,
            total_bytes: room.total_bytes,
            snapshots: snapshots.len() as u64,
            newest: snapshots.last().map(|s| s.name.to_string()),
            alert: store.space_alert(),
            notice: store.client_notice(&self.client),
            failing: store
                .last_outcome(&self.client)
                .filter(|o| !o.ok)
                .map(|o| o.reason.unwrap_or_else(|| format!("{} failed", o.request))),
            windows,
            closed_until,
        })
    }

    /// Finds files matching `patterns` in the snapshots matching
    /// `snapshots`, for `list` and restore; `emit` gets each row.
    pub fn find(
        &self,
        all: bool,
        snapshots: &[u8],
        patterns: &[Vec<u8>],
        emit: &mut dyn FnMut(catalog::Row) -> Result<()>,
    ) -> Result<()> {
        let patterns = parse_patterns(patterns)?;
        let sources = catalog::sources(self.store, &self.client, snapshots)?;
        raise_open_file_limit();
        catalog::search(
            &sources,
            &patterns,
            all,
            |source, warning| crate::report::warn(format_args!("{}: {warning}", source.name)),
            emit,
        )
    }

    /// The content hash of every regular file matching `patterns` in the
    /// snapshot named `snapshot` (exactly one, never `current`), for
    /// `verify --checksum`; `emit` gets each, in path order. The walk is
    /// the listing's (never follows a symlink nor leaves the snapshot, the
    /// client's file type from its fake-super metadata); each file is
    /// opened again beneath the snapshot by the kernel's `RESOLVE_BENEATH`
    /// without symlinks, and read in 64 KiB pieces, so memory stays small
    /// whatever the client stored. Only data is read (holes are hashed as
    /// zeros without reading them), each inode once (its other hard links
    /// reuse the hash), at most `limits.max_bytes` of it, and `limits.go_on`
    /// is asked between files and pieces: its error ends the request. A
    /// file that cannot be read is sent without a hash, with a warning.
    pub fn digest(
        &self,
        snapshot: &str,
        patterns: &[Vec<u8>],
        limits: &ReadLimits<'_>,
        emit: &mut dyn FnMut(crate::protocol::DigestLine) -> Result<()>,
    ) -> Result<DigestStats> {
        use crate::finder::digest::{DigestError, digest_sparse, open_regular_beneath};
        let name = SnapshotName::parse(snapshot)
            .filter(|name| {
                self.snapshots()
                    .is_ok_and(|all| all.iter().any(|s| s.name == *name))
            })
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "{} has no snapshot {:?}",
                    self.client,
                    snapshot.escape_debug().to_string()
                ))
            })?;
        let patterns = parse_patterns(patterns)?;
        let root = self.store.client_dir(&self.client).join(name.as_str());
        let root_dir = rustix::fs::open(
            &root,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| Error::io("cannot open snapshot", &root, e.into()))?;
        let mut stats = DigestStats::default();
        // Hashes of hard-linked inodes, by (device, inode), for their other
        // names; bounded (past it, a link is hashed again, within budget).
        let mut linked: std::collections::HashMap<(u64, u64), Option<Digest>> =
            std::collections::HashMap::new();
        let mut failure = None;
        crate::finder::walk(
            &root,
            &patterns,
            |warning| crate::report::warn(format_args!("{name}: {warning}")),
            |found| {
                if found.meta.mode & 0o170000 != 0o100000 {
                    return std::ops::ControlFlow::Continue(());
                }
                let mut stopped = |e: Error| {
                    failure = Some(e);
                    std::ops::ControlFlow::Break(())
                };
                if let Err(e) = (limits.go_on)() {
                    return stopped(e);
                }
                stats.files += 1;
                let warn = |e: &dyn std::fmt::Display| {
                    crate::report::warn(format_args!(
                        "{name}: cannot read {}: {e}",
                        catalog::display_path(&found.path)
                    ));
                };
                let digest = match open_regular_beneath(&root_dir, &found.path) {
                    Err(e) => {
                        warn(&e);
                        None
                    }
                    Ok(file) => {
                        let st = rustix::fs::fstat(&file).ok();
                        let key = st
                            .filter(|st| st.st_nlink > 1)
                            .map(|st| (st.st_dev, st.st_ino));
                        match key.and_then(|k| linked.get(&k)) {
                            Some(known) => *known,
                            None => {
                                stats.inodes += 1;
                                let mut progress = |read: u64, holes: u64| {
                                    stats.data_bytes += read;
                                    stats.hole_bytes += holes;
                                    if stats.data_bytes > limits.max_bytes {
                                        return Err(Error::Refused(format!(
                                            "the digest of {name} stopped after reading {} bytes of file data, the server's limit for one request (max_digest_bytes); verify fewer paths at a time, or ask the server's administrator to raise the limit",
                                            limits.max_bytes
                                        )));
                                    }
                                    (limits.go_on)()
                                };
                                let digest = match digest_sparse(&file, &mut progress) {
                                    Ok(d) => Some(d),
                                    Err(DigestError::Stopped(e)) => return stopped(e),
                                    Err(DigestError::Read(e)) => {
                                        warn(&e);
                                        None
                                    }
                                };
                                if let Some(k) = key.filter(|_| linked.len() < MAX_LINKED) {
                                    linked.insert(k, digest);
                                }
                                digest
                            }
                        }
                    }
                };
                match emit(crate::protocol::DigestLine {
                    path: found.path,
                    digest,
                }) {
                    Ok(()) => std::ops::ControlFlow::Continue(()),
                    Err(e) => stopped(e),
                }
            },
        )
        .map_err(|e| Error::io("cannot read snapshot", &root, e))?;
        failure.map_or(Ok(stats), Err)
    }

    /// Checks a path a restore asks for: `<snapshot or current>[/<path
    /// inside>]`, with no `.`, `..` or empty components, and no symlink on
    /// the way. Returns it relative to the client's directory.
    pub fn restore_source(&self, path: &[u8]) -> Result<Vec<u8>> {
        let refuse = |why: &str| {
            Err(Error::Refused(format!(
                "refused restore path {}: {why}",
                catalog::display_path(path)
            )))
        };
        let trimmed = path.strip_suffix(b"/").unwrap_or(path);
        let components: Vec<&[u8]> = trimmed.split(|&b| b == b'/').collect();
        if components
            .iter()
            .any(|c| c.is_empty() || *c == b"." || *c == b"..")
        {
            return refuse("empty, '.' or '..' components are not allowed");
        }
        let top = std::str::from_utf8(components[0]).unwrap_or("");
        if top != "current" && SnapshotName::parse(top).is_none() {
            return refuse("it must start with a snapshot name or current");
        }
        let mut at = self.store.client_dir(&self.client);
        for c in &components {
            at.push(std::ffi::OsStr::from_bytes(c));
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => return refuse("it goes through a symlink"),
                Ok(_) => {}
                Err(_) => return refuse("no such file in the backup"),
            }
        }
        Ok(trimmed.to_vec())
    }
}

/// One open directory per level per snapshot: allow as many as we may.
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    if let Some(limit) = getrlimit(Resource::Nofile).maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(limit),
                maximum: Some(limit),
            },
        );
    }
}

/// Refuses a transfer into `store` at `now` outside its backup windows
/// (`[limits] windows`), with the time the next opens; for a door that
/// has no client's backups to ask yet (a replica's first transfer of a
/// client, which creates it).
pub fn check_window(store: &Store, now: Timestamp) -> Result<()> {
    let Some(windows) = &store.config.limits.windows else {
        return Ok(());
    };
    match window_refusal(windows, now, &window::server_time_zone()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Why a transfer at `now` is refused, if it is: outside every one of
/// `windows`, read in the server's time zone `tz`; the refusal carries the
/// instant the next window opens, which the client waits for.
pub fn window_refusal(windows: &Windows, now: Timestamp, tz: &TimeZone) -> Option<Error> {
    let Gate::ClosedUntil(at, window) = windows.gate(now, tz) else {
        return None;
    };
    Some(Error::RetryAfter {
        at,
        message: format!(
            "this server takes backups only at {} (its local time, {}); the next window opens at {} ({}), try again then",
            windows.describe(),
            window::zone_name(tz, now),
            window.start(),
            at.strftime("%Y-%m-%dT%H:%M:%SZ")
        ),
    })
}

fn round(d: SignedDuration) -> String {
    format!("{:#}", SignedDuration::from_secs(d.as_secs()))
}

/// How often a transfer looks at its limits ([`Transfer::over_limit`]):
/// each look measures the store (on btrfs, a launch of `btrfs filesystem
/// usage`).
const OVER_LIMIT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// A transfer into a client's `current` under way (see
/// [`ClientBackups::begin_transfer`]): it holds the locks, and knows what
/// the store looked like when it began, so its end charges what it spent.
#[must_use = "a transfer's end records what it wrote"]
pub struct Transfer<'b, 's> {
    backups: &'b ClientBackups<'s>,
    plan: TransferPlan,
    btrfs: bool,
    written_before: u64,
    /// What the writer wrote that is gone again by its end (its log of
    /// changes, folded and deleted): not the client's data.
    not_data: std::cell::Cell<u64>,
    reading_before: Option<space::Reading>,
    next_check: std::cell::Cell<std::time::Instant>,
    _locks: [Lock; 3],
}

impl Transfer<'_, '_> {
    /// How to transfer into `current`.
    pub fn plan(&self) -> &TransferPlan {
        &self.plan
    }

    /// Counts this transfer among those sharing the server's bandwidth
    /// budget ([`Store::bandwidth_shares`]) for as long as it holds its
    /// slot: for the transfers whose bytes the server relays (a local
    /// door's do not cross the network).
    pub fn share_bandwidth(&self) -> Result<()> {
        let [_, _, slot] = &self._locks;
        slot.announce()
    }

    /// Why the transfer whose writer is `pid` must stop now, if it must:
    /// over a limit — its client's, its key's (all the clients one key
    /// writes to), the store's — while the disk is short. Asked often;
    /// looks at most every 2 s.
    pub fn over_limit(&self, pid: u32) -> Option<String> {
        let now = std::time::Instant::now();
        if now < self.next_check.get() {
            return None;
        }
        self.next_check.set(now + OVER_LIMIT_EVERY);
        let (store, client) = (self.backups.store, &self.backups.client);
        let reading = space::read(store.root(), self.btrfs).ok()?;
        if reading.space.free_percent() >= store.config.min_free_percent {
            return None;
        }
        let live = growth::written_by_tree(pid)
            .saturating_add(space::spent(self.reading_before, Some(reading)));
        let records = growth::load_all(store).ok()?;
        let limits = growth::Limits::of(&store.config, reading.space.total_bytes);
        growth::stops(&records, client, live, &limits)
            .map(|why| format!("{why}, while the store is short of space"))
    }

    /// Notes `bytes` the writer wrote that it did not keep: its log of
    /// changes, folded and deleted ([`ClientBackups::fold_change_log`]).
    /// While the transfer runs they counted against its limits, as they
    /// took space; at its end they are not charged as the client's data.
    pub fn wrote_and_removed(&self, bytes: u64) {
        self.not_data.set(self.not_data.get().saturating_add(bytes));
    }

    /// Ends the transfer once its writer has: charges what the children
    /// wrote and the metadata the filesystem spent on it to the client's
    /// growth, logs `how` it ended, and releases the locks.
    pub fn end(self, how: &str) {
        let (store, client) = (self.backups.store, &self.backups.client);
        let written = growth::written_by_children()
            .saturating_sub(self.written_before)
            .saturating_sub(self.not_data.get());
        let metadata = space::spent(self.reading_before, metadata_reading(store, self.btrfs));
        store.log(&format!(
            "{client}: receiver ended ({how}), {written} bytes written, {metadata} bytes of metadata"
        ));
        self.backups
            .record_transfer(written.saturating_add(metadata));
    }
}

/// A request's search patterns, parsed; the first bad one refused by name.
fn parse_patterns(patterns: &[Vec<u8>]) -> Result<Vec<Pattern>> {
    patterns
        .iter()
        .map(|p| {
            Pattern::parse(p).map_err(|e| {
                Error::Usage(format!("invalid pattern {}: {e}", catalog::display_path(p)))
            })
        })
        .collect()
}

/// The store's metadata figure, once what is pending has reached the disk
/// (btrfs counts metadata as used only when its transaction commits).
fn metadata_reading(store: &Store, btrfs: bool) -> Option<space::Reading> {
    if btrfs {
        use rustix::fs::{Mode, OFlags};
        if let Ok(root) = rustix::fs::open(
            store.root(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            let _ = rustix::fs::syncfs(&root);
        }
    }
    space::read(store.root(), btrfs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ServerConfig;
    use crate::store::fake::FakeStore;

    const KEY: &str = "client:host.example";

    fn at(t: &str) -> Timestamp {
        t.parse().unwrap()
    }

    #[test]
    fn a_backup_ends_in_a_snapshot_that_starts_the_growth_count_again() {
        let fake = FakeStore::new(1 << 30, ServerConfig::default());
        let client = fake.client("host.example");
        let backups = ClientBackups::open(&fake.store, &client).unwrap();
        let plan = backups.prepare_transfer().unwrap();
        assert!(!plan.inplace);
        fake.write(&client, "file", 1000);
        backups.record_transfer(1000);
        fake.store.set_client_notice(&client, "old news");
        let name = backups.finish(at("2026-11-28T03:00:00Z"), None).unwrap();
        assert_eq!(name.as_str(), "2026-11-28T03:00:00Z");
        let snapshots = backups.snapshots().unwrap();
        assert_eq!(snapshots.len(), 1);
        assert!(!snapshots[0].partial);
        let g = growth::load(&fake.store, &client);
        assert_eq!((g.baseline_bytes, g.written_since_snapshot), (1000, 0));
        assert_eq!(fake.store.client_notice(&client), None);
        // A partial one is marked.
        let name = backups
            .finish(at("2026-11-29T03:00:00Z"), Some("/etc/shadow\n"))
            .unwrap();
        assert!(backups.snapshots().unwrap()[1].partial, "{name}");
    }

    #[test]
    fn a_replica_only_adds_newer_history_named_by_the_primary() {
        let fake = FakeStore::new(1 << 30, ServerConfig::default());
        let client = fake.client("p__host.example");
        let backups = ClientBackups::open(&fake.store, &client).unwrap();
        let now = at("2026-11-28T12:00:00Z");
        let name = |s: &str| SnapshotName::parse(s).unwrap();
        // The primary's names, not the replica's time, and no interval.
        for n in ["2026-11-28T03:00:00Z", "2026-11-28T03:00:01Z"] {
            fake.write(&client, n, 10);
            backups.mark_produced_by(KEY).unwrap();
            let taken = backups.finish_replicated(name(n), now, None, KEY).unwrap();
            assert_eq!(taken.as_str(), n);
        }
        for (n, why) in [
            ("2026-11-28T03:00:01Z", "not newer"),
            ("2026-11-28T03:00:00Z", "not newer"),
            ("2020-01-01T00:00:00Z", "not newer"),
            ("2026-11-28T12:05:01Z", "in the future"),
        ] {
            let err = backups
                .finish_replicated(name(n), now, None, KEY)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{n}: {err}");
        }
        // Within the allowed skew, and partial ones keep their mark.
        backups
            .finish_replicated(
                name("2026-11-28T12:04:59Z"),
                now,
                Some("partial on p\n"),
                KEY,
            )
            .unwrap();
        let all = backups.snapshots().unwrap();
        assert_eq!(all.len(), 3);
        assert!(all[2].partial && !all[1].partial);
    }

    /// A moved client's backups here end: its ping, transfers, incremental
    /// readying and snapshots (by hand too) get the redirect, typed; its
    /// history is still there to read.
    #[test]
    fn a_moved_client_gets_the_redirect_and_keeps_its_history_readable() {
        let fake = FakeStore::new(1 << 30, ServerConfig::default());
        let client = fake.client("host.example");
        let backups = ClientBackups::open(&fake.store, &client).unwrap();
        backups.mark_produced_by(KEY).unwrap();
        fake.write(&client, "file", 10);
        let first = backups
            .complete(at("2026-11-28T03:00:00Z"), None, KEY)
            .unwrap();
        let moved = crate::store::moved::Moved {
            to: "bb@new.example:2222".into(),
            at: at("2026-11-28T04:00:00Z"),
            host_keys: vec!["ssh-ed25519 AAAAC3Nz".into(), "bogus".into()],
        };
        fake.store.set_moved(&client, &moved).unwrap();
        let redirected = |r: Result<()>| match r {
            Err(Error::Moved { redirect, message }) => {
                assert_eq!(
                    Redirect::parse(&redirect),
                    Some(Redirect {
                        to: "bb@new.example:2222".parse().unwrap(),
                        host_keys: vec![HostKey::new("ssh-ed25519", "AAAAC3Nz").unwrap()],
                    })
                );
                assert!(
                    message.contains("has moved to bb@new.example:2222"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        };
        redirected(backups.ping().map(drop));
        redirected(
            backups
                .begin_transfer(KEY, TransferMode::Full, false, &mut |_| {})
                .map(drop),
        );
        let list = crate::protocol::ReplaceList {
            replace: Vec::new(),
            gone: Vec::new(),
        };
        redirected(backups.prepare_incremental(first.as_str(), list, KEY));
        backups.mark_produced_by(KEY).unwrap();
        redirected(
            backups
                .complete(at("2026-11-29T03:00:00Z"), None, KEY)
                .map(drop),
        );
        redirected(backups.snapshot_by_hand(None).map(drop));
        assert_eq!(backups.snapshots().unwrap().len(), 1);
        let mut rows = 0;
        backups
            .find(false, b"*", &[b"/**".to_vec()], &mut |_| {
                rows += 1;
                Ok(())
            })
            .unwrap();
        assert!(rows > 0);
    }

    #[test]
    fn outside_its_windows_a_transfer_is_refused_with_the_time_to_retry() {
        // The refusal itself, at a fixed time.
        let windows = Windows::parse(&["22:00-06:00", "12:00-13:00"]).unwrap();
        let utc = TimeZone::UTC;
        assert!(window_refusal(&windows, at("2026-12-07T23:00:00Z"), &utc).is_none());
        match window_refusal(&windows, at("2026-12-07T13:30:00Z"), &utc) {
            Some(Error::RetryAfter { at: when, message }) => {
                assert_eq!(when, at("2026-12-07T22:00:00Z"));
                assert_eq!(
                    message,
                    "this server takes backups only at 22:00-06:00, 12:00-13:00 (its local time, UTC); the next window opens at 22:00 (2026-12-07T22:00:00Z), try again then"
                );
            }
            other => panic!("{other:?}"),
        }
        // Through the door, now: a window starting two minutes from now
        // (in this machine's zone) is closed; one around now is open.
        let tz = window::server_time_zone();
        let now = Timestamp::now();
        let time = tz.to_datetime(now).time();
        let minute = i32::from(time.hour()) * 60 + i32::from(time.minute());
        let hh_mm = |m: i32| {
            let m = m.rem_euclid(24 * 60);
            format!("{:02}:{:02}", m / 60, m % 60)
        };
        let closed = format!("{}-{}", hh_mm(minute + 2), hh_mm(minute + 3));
        let mut config = ServerConfig::default();
        config.limits.windows = Some(Windows::parse(&[closed]).unwrap());
        let fake = FakeStore::new(1 << 30, config);
        let client = fake.client("host.example");
        let backups = ClientBackups::open(&fake.store, &client).unwrap();
        let refused = |r: Result<()>| match r {
            Err(Error::RetryAfter { at, .. }) => assert!(at > now, "{at}"),
            other => panic!("{other:?}"),
        };
        refused(
            backups
                .begin_transfer(KEY, TransferMode::Full, false, &mut |_| {})
                .map(drop),
        );
        refused(backups.prepare_incremental("2026-11-28T03:00:00Z", Default::default(), KEY));
        // Nothing was touched: no producer mark.
        assert_eq!(fake.store.client_mark(&client, PRODUCER_XATTR), None);
        let ping = backups.ping().unwrap();
        assert!(ping.closed_until.is_some_and(|t| t > now));
        assert!(ping.windows.unwrap().starts_with(&hh_mm(minute + 2)));
        // Around now: open.
        let open = format!("{}-{}", hh_mm(minute - 1), hh_mm(minute + 3));
        let mut config = ServerConfig::default();
        config.limits.windows = Some(Windows::parse(&[open]).unwrap());
        let fake = FakeStore::new(1 << 30, config);
        let client = fake.client("host.example");
        let backups = ClientBackups::open(&fake.store, &client).unwrap();
        assert_eq!(backups.ping().unwrap().closed_until, None);
        let transfer = backups
            .begin_transfer(KEY, TransferMode::Full, false, &mut |_| {})
            .unwrap();
        transfer.end("test");
    }

    #[test]
    fn a_client_cannot_snapshot_inside_the_interval() {
        let fake = FakeStore::new(1 << 30, ServerConfig::default());
        let client = fake.client("host.example");
        let backups = ClientBackups::open(&fake.store, &client).unwrap();
        backups.mark_produced_by(KEY).unwrap();
        backups
            .complete(at("2026-11-28T03:00:00Z"), None, KEY)
            .unwrap();
        let err = backups
            .complete(at("2026-11-28T05:00:00Z"), None, KEY)
            .unwrap_err();
        assert!(
            matches!(&err, Error::Refused(m) if m.contains("min_snapshot_interval")
                && m.contains("the next snapshot may be taken from 2026-11-28T09:00:00Z")),
            "{err}"
        );
        backups
            .complete(at("2026-11-28T09:00:01Z"), None, KEY)
            .unwrap();
        assert_eq!(backups.snapshots().unwrap().len(), 2);
    }

    #[test]
    fn only_the_key_that_produced_current_gets_its_snapshot() {
        let fake = FakeStore::new(1 << 30, ServerConfig::default());
        let client = fake.client("p__host.example");
        let backups = ClientBackups::open(&fake.store, &client).unwrap();
        let now = at("2026-11-28T12:00:00Z");
        let name = |s: &str| SnapshotName::parse(s).unwrap();
        let replica = "replica:p";
        // Nothing produced it yet.
        let err = backups
            .finish_replicated(name("2026-11-28T03:00:00Z"), now, None, replica)
            .unwrap_err();
        assert!(
            err.to_string().contains("not produced by this key"),
            "{err}"
        );
        // Another key touched it after the replica's transfer.
        backups.mark_produced_by(replica).unwrap();
        backups.mark_produced_by("client:p__host.example").unwrap();
        let err = backups
            .finish_replicated(name("2026-11-28T03:00:00Z"), now, None, replica)
            .unwrap_err();
        assert!(err.to_string().contains("another key"), "{err}");
        // A rollback (reclaim) forgets every producer.
        backups.mark_produced_by(replica).unwrap();
        fake.store.roll_back_current(&client).unwrap();
        assert!(
            backups
                .finish_replicated(name("2026-11-28T03:00:00Z"), now, None, replica)
                .is_err()
        );
        backups.mark_produced_by(replica).unwrap();
        backups
            .finish_replicated(name("2026-11-28T03:00:00Z"), now, None, replica)
            .unwrap();
        assert!(backups.snapshots().unwrap().len() == 1);
    }

    #[test]
    fn restore_paths_stay_inside_the_clients_backups() {
        let fake = FakeStore::new(1 << 30, ServerConfig::default());
        let client = fake.client("host.example");
        let other = fake.client("other.example");
        fake.write(&client, "file", 10);
        fake.write(&other, "secret", 10);
        let backups = ClientBackups::open(&fake.store, &client).unwrap();
        let name = backups.finish(at("2026-11-28T03:00:00Z"), None).unwrap();
        let ok = format!("{name}/file");
        assert_eq!(
            backups.restore_source(ok.as_bytes()).unwrap(),
            ok.as_bytes()
        );
        assert_eq!(backups.restore_source(b"current/").unwrap(), b"current");
        std::os::unix::fs::symlink(
            "../../other.example/current",
            fake.store.current(&client).join("link"),
        )
        .unwrap();
        for (path, why) in [
            (&b"../other.example/current/secret"[..], "'..'"),
            (b"current/link/secret", "symlink"),
            (b"other.example", "snapshot name or current"),
            (b"current//file", "empty"),
            (b"current/nothing", "no such file"),
        ] {
            let err = backups.restore_source(path).unwrap_err().to_string();
            assert!(
                err.contains(why),
                "{}: {err}",
                String::from_utf8_lossy(path)
            );
        }
        // A client without space is refused before anything else.
        let stranger = ClientName::new("stranger.example").unwrap();
        assert!(matches!(
            ClientBackups::open(&fake.store, &stranger),
            Err(Error::Refused(_))
        ));
    }

    #[test]
    fn an_incremental_backup_starts_from_a_link_tree_of_the_newest_snapshot() {
        use std::os::unix::fs::MetadataExt;
        let fake = FakeStore::new(1 << 30, ServerConfig::default());
        let client = fake.client("host.example");
        let backups = ClientBackups::open(&fake.store, &client).unwrap();
        // Nothing to start from yet.
        assert!(matches!(
            backups.prepare_incremental("2026-11-28T03:00:00Z", Default::default(), KEY),
            Err(Error::FullPassNeeded(_))
        ));
        let current = fake.store.current(&client);
        std::fs::create_dir_all(current.join("d/sub")).unwrap();
        std::fs::write(current.join("d/keep"), "k").unwrap();
        std::fs::write(current.join("d/changed"), "c").unwrap();
        std::fs::write(current.join("d/sub/gone"), "g").unwrap();
        let name = backups.finish(at("2026-11-28T03:00:00Z"), None).unwrap();
        let snap = fake.store.client_dir(&client).join(name.as_str());
        // An incremental receive needs a readied current.
        for sparse in [false, true] {
            let err = backups.start_incremental(sparse).unwrap_err();
            assert!(matches!(err, Error::FullPassNeeded(_)), "{err}");
        }
        // Another snapshot than the newest is refused.
        let err = backups
            .prepare_incremental("2026-11-27T03:00:00Z", Default::default(), KEY)
            .unwrap_err();
        assert!(matches!(err, Error::FullPassNeeded(_)), "{err}");
        backups
            .prepare_incremental(
                name.as_str(),
                crate::protocol::ReplaceList {
                    replace: vec![b"d/changed".to_vec(), b"d/sub".to_vec()],
                    gone: Vec::new(),
                },
                KEY,
            )
            .unwrap();
        let ino = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(ino(&current.join("d/keep")), ino(&snap.join("d/keep")));
        assert!(!current.join("d/changed").exists() && !current.join("d/sub").exists());
        assert_ne!(
            ino(&current.join("d")),
            ino(&snap.join("d")),
            "directories are new"
        );
        // The run of the files with holes leaves it readied for the rest
        // (as often as it comes: each adds to what this readying made).
        for _ in 0..2 {
            let plan = backups.start_incremental(true).unwrap();
            assert!(plan.link_dests.is_empty() && !plan.inplace);
        }
        let plan = backups.start_incremental(false).unwrap();
        assert!(plan.link_dests.is_empty() && !plan.inplace);
        // The rest once only, sparse or not.
        for sparse in [false, true] {
            assert!(backups.start_incremental(sparse).is_err());
        }
        // A snapshot uses any readying up.
        backups
            .prepare_incremental(name.as_str(), Default::default(), KEY)
            .unwrap();
        backups.start_incremental(true).unwrap();
        backups.finish(at("2026-11-28T04:00:00Z"), None).unwrap();
        assert!(backups.start_incremental(true).is_err());
    }
}
