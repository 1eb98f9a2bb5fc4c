//! Automatic pruning: when the store runs short of space, delete the least
//! important snapshots, one at a time, until there is room again.
//!
//! The decisions are pure ([`plan`] over the importance [`order`]); the
//! executor ([`run`]) only measures, deletes and waits. Guards: a client's
//! newest snapshot is never deleted; nothing is deleted automatically
//! unless some snapshot is older than `min_age`.
//!
//! While a replica is configured (`[replicate] to`), snapshots it does not
//! hold yet are deleted only when nothing else can be (see
//! [`ReplicationGuard`]); each such deletion is logged and left standing
//! as the store's alert, so `status` shows it.
//!
//! Snapshots a suspect mark pins (see [`crate::store::suspect`]) are never
//! candidates at all while the mark stands ([`Pins`], applied in
//! [`plan_guarded`], where every deletion by pruning, by a quota or by
//! hand is chosen); when only they could make room, the prune fails with
//! [`Error::PinnedBySuspect`] and the backup that wanted the room is
//! refused.
//!
//! Before any history goes, data that no snapshot holds and that is over a
//! limit — its client's, its key's, the store's (see [`growth`]) — is
//! reclaimed, the largest contributors first: each such client's `current`
//! goes back to its newest snapshot and it is told why. Space held that way
//! is never paid for with anyone's history, and while such data is still
//! being written (its client's lock is held) nothing is deleted at all.

#[cfg(test)]
mod executor_tests;
pub mod growth;
pub mod order;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::names::{ClientName, SnapshotName};
use crate::store::Store;
use crate::sys::fs::Space;
use crate::sys::lock::Lock;
use order::{Candidate, Reason};

/// One snapshot in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    pub client: ClientName,
    pub name: SnapshotName,
}

/// A snapshot's place in an ordering, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub snapshot: StoredSnapshot,
    pub reason: Reason,
}

/// How `--list` and the planner order snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OrderKind {
    /// The importance order: what keeps the most useful history.
    Importance,
    /// Newest first.
    Age,
}

/// Every snapshot, most important first (the last is deleted first).
pub fn ordered(snapshots: &[StoredSnapshot], now: Timestamp, kind: OrderKind) -> Vec<Placed> {
    match kind {
        OrderKind::Importance => {
            let candidates: Vec<Candidate<'_>> = snapshots
                .iter()
                .map(|s| Candidate {
                    client: s.client.as_str(),
                    time: s.name.time(),
                })
                .collect();
            order::importance_order(&candidates, now)
                .into_iter()
                .map(|r| Placed {
                    snapshot: snapshots[r.index].clone(),
                    reason: r.reason,
                })
                .collect()
        }
        OrderKind::Age => {
            let mut all: Vec<Placed> = snapshots
                .iter()
                .map(|s| Placed {
                    snapshot: s.clone(),
                    reason: Reason::Remaining,
                })
                .collect();
            all.sort_by(|a, b| {
                (b.snapshot.name.time(), &a.snapshot.client)
                    .cmp(&(a.snapshot.name.time(), &b.snapshot.client))
            });
            all
        }
    }
}

/// A planned deletion and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub snapshot: StoredSnapshot,
    pub why: String,
    /// A configured replica does not hold it yet.
    pub unreplicated: bool,
}

/// What replication asks of pruning: while a replica is configured, a
/// snapshot newer than the newest that every configured replica holds of
/// its client (as this store last heard, see [`crate::store::replicas`])
/// is deleted only when nothing else can be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicationGuard {
    /// Per client, the newest snapshot every configured replica holds
    /// (a client missing here has none replicated).
    pub replicated: BTreeMap<ClientName, SnapshotName>,
}

impl ReplicationGuard {
    /// The guard for `store`; `None` when no replica is configured, and in
    /// hardened mode, whose helper deletes only the policy's own next
    /// snapshot (root's policy knows nothing of the user's replicas).
    pub fn of(store: &Store) -> Option<ReplicationGuard> {
        use crate::store::replicas;
        if !store.powers().deletes_on_request {
            return None;
        }
        let records = replicas::configured_records(store);
        if records.is_empty() {
            return None;
        }
        let replicated = store
            .clients()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| replicas::replicated_everywhere(&records, &c).map(|n| (c, n)))
            .collect();
        Some(ReplicationGuard { replicated })
    }

    /// Whether `s` is not on every replica yet.
    pub fn protects(&self, s: &StoredSnapshot) -> bool {
        self.replicated
            .get(&s.client)
            .is_none_or(|newest| s.name.time() > newest.time())
    }
}

/// The snapshots suspect marks pin, with the mark that pins each: never a
/// candidate for deletion while the mark stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins {
    /// Each pinned snapshot and the suspect snapshot whose mark pins it.
    pinned: Vec<(StoredSnapshot, SnapshotName)>,
    /// Clients whose marks cannot be read: every snapshot of theirs is
    /// pinned (a mark that cannot be read must not lift its pins).
    unreadable: Vec<ClientName>,
}

impl Pins {
    /// The pins standing in `store`; a client whose marks cannot be read
    /// has all its snapshots pinned, and the store's log says why.
    pub fn of(store: &Store) -> Pins {
        let mut pins = Pins::default();
        for client in store.clients().unwrap_or_default() {
            match store.suspect_marks(&client) {
                Ok(marks) => {
                    for mark in marks {
                        let Some(suspect) = SnapshotName::parse(&mark.snapshot) else {
                            continue;
                        };
                        for name in mark.pinned.iter().filter_map(|n| SnapshotName::parse(n)) {
                            pins.pin(client.clone(), name, suspect.clone());
                        }
                    }
                }
                Err(e) => {
                    store.warn(&format!("prune: {client}: every snapshot kept: {e}"));
                    pins.unreadable.push(client);
                }
            }
        }
        pins
    }

    /// Pins `name` of `client` for the mark of `suspect`.
    pub fn pin(&mut self, client: ClientName, name: SnapshotName, suspect: SnapshotName) {
        self.pinned.push((StoredSnapshot { client, name }, suspect));
    }

    /// The suspect snapshot whose mark pins `s`, if one does (for a client
    /// whose marks cannot be read, `s` itself).
    pub fn pinned_by(&self, s: &StoredSnapshot) -> Option<SnapshotName> {
        if self.unreadable.contains(&s.client) {
            return Some(s.name.clone());
        }
        self.pinned
            .iter()
            .find(|(p, _)| p == s)
            .map(|(_, by)| by.clone())
    }

    /// The line that says which pins, among `left`, kept space from being
    /// made, and what a person can do; `None` if none of them is pinned.
    pub fn refusal(&self, left: &[StoredSnapshot]) -> Option<String> {
        let mut by: BTreeMap<(&ClientName, String), Vec<&SnapshotName>> = BTreeMap::new();
        for s in left {
            if let Some(suspect) = self.pinned_by(s) {
                let key = match self.unreadable.contains(&s.client) {
                    true => String::new(),
                    false => suspect.to_string(),
                };
                by.entry((&s.client, key)).or_default().push(&s.name);
            }
        }
        if by.is_empty() {
            return None;
        }
        let marks: Vec<String> = by
            .iter()
            .map(|((client, suspect), pinned)| {
                let pinned: Vec<String> = pinned.iter().map(ToString::to_string).collect();
                if self.unreadable.contains(client) {
                    format!("{client}: its suspect marks cannot be read, so all its snapshots are kept (see the log)")
                } else {
                    format!(
                        "{client}: snapshot {suspect} is suspect and pins {} (look at it, then `byteback-server ack --client {client} {suspect}`)",
                        pinned.join(", ")
                    )
                }
            })
            .collect();
        Some(format!(
            "the space could only be made by deleting snapshots a suspect mark pins, which pruning never does: {}; or add disk space",
            marks.join("; ")
        ))
    }
}

/// [`plan`], less the snapshots `pins` hold, with the snapshots `guard`
/// protects moved after all others (and marked): they go only once
/// nothing else is left to delete. Every deletion pruning, a quota or
/// `prune --force` makes is chosen here.
pub fn plan_guarded(
    snapshots: &[StoredSnapshot],
    now: Timestamp,
    guard: Option<&ReplicationGuard>,
    pins: &Pins,
) -> Vec<Deletion> {
    let all: Vec<Deletion> = plan(snapshots, now)
        .into_iter()
        .filter(|d| pins.pinned_by(&d.snapshot).is_none())
        .collect();
    let Some(guard) = guard else {
        return all;
    };
    let (protected, free): (Vec<Deletion>, Vec<Deletion>) =
        all.into_iter().partition(|d| guard.protects(&d.snapshot));
    free.into_iter()
        .chain(protected.into_iter().map(|d| Deletion {
            why: format!(
                "{}; NOT YET REPLICATED, deleted only because nothing else could be",
                d.why
            ),
            unreplicated: true,
            ..d
        }))
        .collect()
}

impl fmt::Display for Deletion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({})",
            self.snapshot.client, self.snapshot.name, self.why
        )
    }
}

/// The snapshots that may be deleted, first to delete first: the
/// importance order read backwards, skipping each client's newest.
pub fn plan(snapshots: &[StoredSnapshot], now: Timestamp) -> Vec<Deletion> {
    let placed = ordered(snapshots, now, OrderKind::Importance);
    let total = placed.len();
    placed
        .into_iter()
        .enumerate()
        .rev()
        .filter(|(_, p)| !is_newest_of_client(snapshots, &p.snapshot))
        .map(|(i, p)| Deletion {
            why: format!("least important left: {} of {total}, {}", i + 1, p.reason),
            snapshot: p.snapshot,
            unreplicated: false,
        })
        .collect()
}

fn is_newest_of_client(all: &[StoredSnapshot], s: &StoredSnapshot) -> bool {
    !all.iter()
        .any(|o| o.client == s.client && o.name.time() > s.name.time())
}

/// Whether automatic pruning may run at all: only once some snapshot is
/// older than `min_age`, so a young store is never thinned out.
pub fn old_enough(
    snapshots: &[StoredSnapshot],
    now: Timestamp,
    min_age: jiff::SignedDuration,
) -> bool {
    snapshots
        .iter()
        .any(|s| now.duration_since(s.name.time()) >= min_age)
}

/// Every snapshot of every client.
pub fn all_snapshots(store: &Store) -> Result<Vec<StoredSnapshot>> {
    let mut all = Vec::new();
    for client in store.clients()? {
        for s in store.snapshots(&client)? {
            all.push(StoredSnapshot {
                client: client.clone(),
                name: s.name,
            });
        }
    }
    Ok(all)
}

/// What [`run`] should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Prune only if free space is below the minimum, up to the target.
    IfNeeded,
    /// Delete the least important deletable snapshot now.
    Force,
    /// Say what `IfNeeded` would delete, deleting nothing.
    DryRun,
}

/// A client whose unsnapshotted data was (or, in a dry run, would be)
/// discarded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reclaim {
    pub client: ClientName,
    pub why: String,
}

impl fmt::Display for Reclaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "data of {} that no snapshot holds ({})",
            self.client, self.why
        )
    }
}

/// What a prune run did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub reclaimed: Vec<Reclaim>,
    pub deleted: Vec<Deletion>,
    pub before: Option<Space>,
    pub after: Option<Space>,
}

/// The line for an [`Outcome`] in logs and on the terminal.
fn space_words(s: &Space) -> String {
    let scarce = match s.scarce {
        crate::sys::fs::Scarce::Data => "",
        crate::sys::fs::Scarce::Metadata => {
            ", limited by btrfs metadata: metadata that cannot be allocated counts as no free space"
        }
        crate::sys::fs::Scarce::Inodes => {
            ", limited by free inodes: a filesystem out of inodes has no free space"
        }
    };
    format!(
        "{:.1}% free ({} bytes){scarce}",
        s.free_percent(),
        s.free_bytes
    )
}

/// Prunes the store per `mode`. `on_behalf` is the client whose backup
/// wants the room; its caller holds that client's lock. If that client's
/// own unsnapshotted data had to be reclaimed, the result is a refusal
/// that says why. One prune runs at a time; others wait for it.
pub fn run(
    store: &Store,
    now: Timestamp,
    mode: Mode,
    on_behalf: Option<&ClientName>,
) -> Result<Outcome> {
    run_measured(store, now, mode, on_behalf, &mut || store.space())
}

/// [`run`], with the opening figure (the space before anything is done,
/// measured under the prune lock) taken by `measure`: a caller that
/// needs a fuller reading of the store anyway takes it there, and keeps
/// it if the outcome says nothing was deleted or reclaimed, rather than
/// launch a second measurement. Every figure after a deletion is
/// measured here again.
pub fn run_measured(
    store: &Store,
    now: Timestamp,
    mode: Mode,
    on_behalf: Option<&ClientName>,
    measure: &mut dyn FnMut() -> Result<Space>,
) -> Result<Outcome> {
    // A dry run reads what a running prune may be changing, and takes no
    // lock: a lock file made for it would be a write.
    let _lock = match mode {
        Mode::DryRun => None,
        Mode::IfNeeded | Mode::Force => Some(lock(store, Duration::from_secs(600))?),
    };
    let config = &store.config;
    let mut outcome = Outcome::default();
    let mut free = measure()?;
    outcome.before = Some(free);
    let min = config.min_free_percent;
    let target = config.target_free_percent;
    if mode != Mode::Force && free.free_percent() >= min {
        outcome.after = Some(free);
        return Ok(outcome);
    }
    if mode != Mode::Force {
        free = reclaim_over_limit(store, mode, on_behalf, free, &mut outcome)?;
        if let Some(own) = on_behalf.and_then(|c| outcome.reclaimed.iter().find(|r| &r.client == c))
        {
            if mode == Mode::IfNeeded {
                return Err(Error::Refused(format!(
                    "{}: the server discarded it to keep the disk from filling, rather than delete anyone's history; ask the administrator to add space or raise the limit",
                    own.why
                )));
            }
        }
        if mode == Mode::IfNeeded && free.free_percent() >= min {
            store.clear_space_alert();
            outcome.after = Some(free);
            return Ok(outcome);
        }
    }
    let snapshots = all_snapshots(store)?;
    if mode != Mode::Force && !old_enough(&snapshots, now, config.min_age.0) {
        let msg = format!(
            "store {} is short of space ({}, minimum {min}%) but no snapshot is older than min_age ({}), so none is deleted: add disk space",
            store.root().display(),
            space_words(&free),
            config.min_age
        );
        store.record_space_alert(&msg);
        return Err(Error::SpaceExhausted(msg));
    }
    let guard = ReplicationGuard::of(store);
    let pins = Pins::of(store);
    let candidates = plan_guarded(&snapshots, now, guard.as_ref(), &pins);
    if mode == Mode::DryRun {
        outcome.deleted = candidates;
        outcome.after = Some(free);
        return Ok(outcome);
    }
    let mut remaining = snapshots;
    loop {
        let Some(next) = plan_guarded(&remaining, now, guard.as_ref(), &pins)
            .into_iter()
            .next()
        else {
            if let Some(why) = pins.refusal(&remaining) {
                let msg = format!(
                    "store {} is short of space ({}, minimum {min}%): {why}",
                    store.root().display(),
                    space_words(&free)
                );
                store.record_space_alert(&msg);
                return Err(match mode {
                    Mode::Force if outcome.deleted.is_empty() => Error::Refused(format!(
                        "nothing may be deleted: every snapshot is its client's newest or pinned by a suspect mark ({why})"
                    )),
                    _ => Error::PinnedBySuspect(msg),
                });
            }
            let msg = format!(
                "store {} is short of space ({}, minimum {min}%) and every snapshot left is a client's newest: add disk space",
                store.root().display(),
                space_words(&free)
            );
            store.record_space_alert(&msg);
            if mode == Mode::Force && outcome.deleted.is_empty() {
                return Err(Error::Refused(
                    "nothing may be deleted: every snapshot is its client's newest".into(),
                ));
            }
            return Err(Error::SpaceExhausted(msg));
        };
        store.delete_snapshot(&next.snapshot.client, &next.snapshot.name)?;
        let (event, alert) = match next.unreplicated {
            true => (
                crate::store::LogEvent::UnreplicatedSnapshotDeleted,
                "ALERT: ",
            ),
            false => (crate::store::LogEvent::SnapshotDeleted, ""),
        };
        store.log_event(event, &format!("prune: {alert}deleted {next}"));
        remaining.retain(|s| s != &next.snapshot);
        outcome.deleted.push(next);
        free = store.space_after_deletions()?;
        if mode == Mode::Force || free.free_percent() >= target {
            break;
        }
    }
    let lost: Vec<String> = outcome
        .deleted
        .iter()
        .filter(|d| d.unreplicated)
        .map(|d| format!("{} {}", d.snapshot.client, d.snapshot.name))
        .collect();
    if lost.is_empty() {
        store.clear_space_alert();
    } else {
        // Left standing (until a later prune needs nothing of the kind), so
        // status and the clients' pings show it.
        store.record_space_alert(&format!(
            "store {} was short of space and nothing replicated was left to delete: deleted {} snapshot(s) no replica holds yet ({}); add disk space or let replication catch up",
            store.root().display(),
            lost.len(),
            lost.join(", ")
        ));
    }
    outcome.after = Some(free);
    Ok(outcome)
}

/// What [`thin_to_quota`] did.
#[derive(Debug, Default)]
pub struct QuotaOutcome {
    /// The client's quota, if it has one (nothing else is filled without).
    pub quota: Option<u64>,
    /// What its history held before and after.
    pub before: u64,
    pub after: u64,
    pub deleted: Vec<Deletion>,
}

impl QuotaOutcome {
    /// Still over the quota: only its newest snapshot is left, and that
    /// holds more.
    pub fn over(&self) -> bool {
        self.quota.is_some_and(|q| self.after > q)
    }
}

/// Enforces `client`'s history quota (see [`crate::store::quota`]): while
/// what its history holds is over it, deletes the client's own least
/// important snapshot (the importance order over the whole store, read
/// backwards and restricted to this client; never its newest nor one a
/// suspect mark pins, and the replication guard as for any pruning), measuring again after each. No
/// other client's snapshot is ever deleted for it, and `min_age` does not
/// apply: the quota is the administrator's explicit limit. In hardened
/// mode (whose helper deletes only by its own policy) nothing is deleted;
/// the figure is measured and reported. The caller holds the client's
/// lock, and `current` holds nothing beyond its newest snapshot.
pub fn thin_to_quota(store: &Store, now: Timestamp, client: &ClientName) -> Result<QuotaOutcome> {
    use crate::store::quota;
    let Some(limit) = quota::quota(store, client) else {
        return Ok(QuotaOutcome::default());
    };
    let before = quota::measure_client(store, client)?;
    let mut outcome = QuotaOutcome {
        quota: Some(limit),
        before,
        after: before,
        deleted: Vec::new(),
    };
    if before <= limit || !store.powers().deletes_on_request {
        return Ok(outcome);
    }
    let _lock = lock(store, Duration::from_secs(600))?;
    let guard = ReplicationGuard::of(store);
    let pins = Pins::of(store);
    let mut remaining = all_snapshots(store)?;
    while outcome.after > limit {
        let Some(next) = plan_guarded(&remaining, now, guard.as_ref(), &pins)
            .into_iter()
            .find(|d| &d.snapshot.client == client)
        else {
            break;
        };
        let next = Deletion {
            why: format!(
                "{client} holds {} bytes, over its quota of {limit}; {}",
                outcome.after, next.why
            ),
            ..next
        };
        store.delete_snapshot(&next.snapshot.client, &next.snapshot.name)?;
        let event = match next.unreplicated {
            true => crate::store::LogEvent::UnreplicatedSnapshotDeleted,
            false => crate::store::LogEvent::SnapshotDeleted,
        };
        store.log_event(event, &format!("quota: deleted {next}"));
        remaining.retain(|s| s != &next.snapshot);
        outcome.deleted.push(next);
        outcome.after = quota::measure_client(store, client)?;
    }
    Ok(outcome)
}

/// Takes the store's prune lock, waiting up to `wait` for a running prune
/// (or another command that deletes or moves snapshots) to end.
pub fn lock(store: &Store, wait: Duration) -> Result<Lock> {
    let path = Store::state_dir_of(store.root()).join("prune.lock");
    Lock::acquire(&path, wait)?.ok_or_else(|| {
        Error::Locked(format!(
            "a prune of {} has been running for {} s; try again when it has finished",
            store.root().display(),
            wait.as_secs()
        ))
    })
}

/// Discards the unsnapshotted data of every client over a limit — its
/// own, its key's, the store's (see [`growth::over_limits`]) — largest
/// contributors first, until free space reaches the target. Refuses to go
/// on to deleting history while data over a limit is still being written.
fn reclaim_over_limit(
    store: &Store,
    mode: Mode,
    on_behalf: Option<&ClientName>,
    mut free: Space,
    outcome: &mut Outcome,
) -> Result<Space> {
    let mut busy = Vec::new();
    let limits = growth::Limits::of(&store.config, free.total_bytes);
    let plan = growth::over_limits(&growth::load_all(store)?, &limits);
    for growth::Excess { client, why, .. } in plan {
        if mode == Mode::DryRun {
            outcome.reclaimed.push(Reclaim { client, why });
            continue;
        }
        // The caller holds the lock of the client it prunes for.
        let _lock = if on_behalf == Some(&client) {
            None
        } else {
            match store.try_lock_client(&client)? {
                Some(lock) => Some(lock),
                None => {
                    busy.push(why);
                    continue;
                }
            }
        };
        if let Err(e) = store.roll_back_current(&client) {
            // (A filesystem out of metadata can refuse even the new
            // `current`.) Its data stays, and no history goes for it.
            let msg = format!(
                "store {} is short of space ({}); discarding {client}'s data no snapshot holds failed ({e}); no history is deleted for data no snapshot holds",
                store.root().display(),
                space_words(&free),
            );
            store.record_space_alert(&msg);
            return Err(Error::SpaceExhausted(msg));
        }
        growth::record_rollback(store, &client)?;
        let notice = format!(
            "{why}: on {} the server discarded it (current is back at the newest snapshot) to keep the disk from filling, rather than delete anyone's history",
            Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ")
        );
        store.set_client_notice(&client, &notice);
        store.log(&format!("prune: reclaimed {notice}"));
        outcome.reclaimed.push(Reclaim { client, why });
        // btrfs hands emptied chunks back some time after the deletion
        // itself: measure once the figure has settled, or the space just
        // reclaimed would look short and history would go for nothing.
        free = store.space_settled()?;
        if free.free_percent() >= store.config.target_free_percent {
            break;
        }
    }
    if !busy.is_empty() && free.free_percent() < store.config.min_free_percent {
        let msg = format!(
            "store {} is short of space ({}) while a transfer over its limit is still running ({}); no history is deleted for data no snapshot holds: it is discarded once that transfer ends",
            store.root().display(),
            space_words(&free),
            busy.join("; ")
        );
        store.record_space_alert(&msg);
        return Err(Error::SpaceExhausted(msg));
    }
    Ok(free)
}

/// One line per snapshot for `--list`: `INDEX CLIENT SNAPSHOT`.
pub fn list_lines(placed: &[Placed]) -> Vec<String> {
    placed
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{} {} {}", i + 1, p.snapshot.client, p.snapshot.name))
        .collect()
}

/// One entry of `--list --json`.
#[derive(Debug, Serialize)]
pub struct JsonEntry {
    /// 1 for the most important (as in the text listing).
    pub index: usize,
    pub client: String,
    pub snapshot: String,
    pub time: String,
}

/// `--list --json` entries.
pub fn json_entries(placed: &[Placed]) -> Vec<JsonEntry> {
    placed
        .iter()
        .enumerate()
        .map(|(i, p)| JsonEntry {
            index: i + 1,
            client: p.snapshot.client.to_string(),
            snapshot: p.snapshot.name.to_string(),
            time: p
                .snapshot
                .name
                .time()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(client: &str, time: &str) -> StoredSnapshot {
        StoredSnapshot {
            client: ClientName::new(client).unwrap(),
            name: SnapshotName::parse(time).unwrap(),
        }
    }

    #[test]
    fn plan_never_offers_a_clients_newest() {
        let now: Timestamp = "2026-11-26T12:00:00Z".parse().unwrap();
        let all = vec![
            snap("a", "2026-11-26T01:00:00Z"),
            snap("a", "2026-11-20T01:00:00Z"),
            snap("a", "2026-11-25T23:00:00Z"),
            snap("b", "2014-03-02T23:10+0100"),
        ];
        let plan = plan(&all, now);
        let names: Vec<String> = plan
            .iter()
            .map(|d| format!("{} {}", d.snapshot.client, d.snapshot.name))
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n == "a 2026-11-26T01:00:00Z" || n.starts_with("b ")),
            "{names:?}"
        );
        assert_eq!(names.len(), 2);
        assert!(
            plan[0].why.starts_with("least important left"),
            "{}",
            plan[0].why
        );
    }

    #[test]
    fn unreplicated_snapshots_go_last_and_marked() {
        let now: Timestamp = "2026-11-26T12:00:00Z".parse().unwrap();
        let all = vec![
            snap("a", "2026-01-01T00:00:00Z"),
            snap("a", "2026-06-01T00:00:00Z"),
            snap("a", "2026-11-01T00:00:00Z"),
            snap("a", "2026-11-26T00:00:00Z"),
            snap("b", "2026-02-01T00:00:00Z"),
            snap("b", "2026-11-20T00:00:00Z"),
        ];
        let unguarded = plan(&all, now);
        assert_eq!(plan_guarded(&all, now, None, &Pins::default()), unguarded);
        // a is replicated up to June, b not at all.
        let guard = ReplicationGuard {
            replicated: [(
                ClientName::new("a").unwrap(),
                SnapshotName::parse("2026-06-01T00:00:00Z").unwrap(),
            )]
            .into_iter()
            .collect(),
        };
        let guarded = plan_guarded(&all, now, Some(&guard), &Pins::default());
        let shown: Vec<(String, bool)> = guarded
            .iter()
            .map(|d| {
                (
                    format!("{} {}", d.snapshot.client, d.snapshot.name),
                    d.unreplicated,
                )
            })
            .collect();
        let split = shown.iter().position(|(_, u)| *u).unwrap();
        let (free, protected) = shown.split_at(split);
        let mut free: Vec<&str> = free.iter().map(|(n, _)| n.as_str()).collect();
        free.sort();
        assert_eq!(free, ["a 2026-01-01T00:00:00Z", "a 2026-06-01T00:00:00Z"]);
        assert!(protected.iter().all(|(_, u)| *u), "{shown:?}");
        let mut protected: Vec<&str> = protected.iter().map(|(n, _)| n.as_str()).collect();
        protected.sort();
        assert_eq!(
            protected,
            ["a 2026-11-01T00:00:00Z", "b 2026-02-01T00:00:00Z"]
        );
        assert!(
            guarded
                .iter()
                .all(|d| d.unreplicated == d.why.contains("NOT YET REPLICATED"))
        );
        // The same snapshots either way, newest of each client never.
        assert_eq!(guarded.len(), unguarded.len());
    }

    #[test]
    fn min_age_guard() {
        let now: Timestamp = "2026-11-26T12:00:00Z".parse().unwrap();
        let week = jiff::SignedDuration::from_hours(24 * 7);
        assert!(!old_enough(&[snap("a", "2026-11-20T12:00:00Z")], now, week));
        assert!(old_enough(&[snap("a", "2026-11-19T12:00:00Z")], now, week));
    }

    #[test]
    fn age_order_is_newest_first() {
        let now: Timestamp = "2026-11-26T12:00:00Z".parse().unwrap();
        let all = vec![
            snap("a", "2026-11-20T01:00:00Z"),
            snap("b", "2026-11-21T01:00:00Z"),
            snap("a", "2026-11-22T01:00:00Z"),
        ];
        let lines = list_lines(&ordered(&all, now, OrderKind::Age));
        assert_eq!(
            lines,
            [
                "1 a 2026-11-22T01:00:00Z",
                "2 b 2026-11-21T01:00:00Z",
                "3 a 2026-11-20T01:00:00Z"
            ]
        );
    }
}
