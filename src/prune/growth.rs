//! What each client's data costs on disk, measured cheaply and without
//! quota groups, so that nothing one client does costs another its history.
//!
//! Per client the server keeps, in an xattr of the client's directory:
//!
//! - **written since snapshot**: the bytes the server's rsync really wrote
//!   into the client's area since its newest snapshot, over all attempts:
//!   the write count the kernel keeps per process (`getrusage` of the
//!   finished rsync and everything it forked). Not bytes on the wire, which
//!   compression and delta matching make far smaller than what lands on
//!   disk, and not the sizes the client declares, which holes inflate for
//!   free.
//! - **baseline**: what the client's history cost, which the growth limit
//!   is a share of: the sum of what was written before each of its
//!   snapshots. It only ever grows by bytes that really landed on this
//!   disk and were then kept by a snapshot, so a client cannot earn an
//!   allowance with sparse files or sizes it merely declares. (It does not
//!   shrink when the client deletes files; the store-wide cap below bounds
//!   it whatever it says.)
//!
//! The written count includes what the filesystem spent on metadata for
//! the transfer, not only data bytes (see [`crate::store::space::spent`]):
//! btrfs's metadata used before and after the receive, counted raw (both
//! copies of DUP), or on plain stores the inodes it took, each charged the
//! filesystem's bytes per inode. The figure is the whole filesystem's, so
//! concurrent receives may each be charged some of the other's metadata:
//! that errs on the safe side, since an overcharge only reclaims
//! unsnapshotted data sooner and never costs anyone history, whereas an
//! undercount let 200,000 empty files fill btrfs's metadata unnoticed.
//!
//! Data no snapshot holds is limited three ways ([`over_limits`], pure):
//!
//! - per client ([`limit`]): `max_growth_percent` of its baseline, and in
//!   any case `max_unsnapshotted_percent` of the store (the only limit of
//!   a client without a baseline);
//! - per key ([`Spender`]): every client one key writes to together, also
//!   at most `max_unsnapshotted_percent` of the store. A replicated client
//!   `PRIMARY__CLIENT` is written by the replica key of `PRIMARY`, which
//!   may invent client names at will; any other client is its own key;
//! - per store: all clients together at most
//!   `max_unsnapshotted_store_percent` of the store.
//!
//! When space is short, what is over a limit is reclaimed first, the
//! largest contributors first (see [`crate::prune`]), and nobody's history
//! is deleted for it. (btrfs quota groups would measure exactly, but they
//! make snapshot deletion slow and can stall systems with many snapshots.)

use std::collections::BTreeMap;
use std::fmt;

use crate::error::Result;
use crate::names::ClientName;
use crate::store::{ServerConfig, Store};

/// What the server remembers about a client's size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Growth {
    /// What its snapshots so far cost on disk (0: no baseline yet).
    pub baseline_bytes: u64,
    /// Bytes really written into its area since its newest snapshot.
    pub written_since_snapshot: u64,
}

/// Where the record lives: an xattr on the client's directory (see
/// [`Store::records`]). Setting an
/// xattr needs only btrfs metadata, never data space, so the record can be
/// kept even when a backup has just filled the disk (a file could not be:
/// btrfs reserves data space for any write, however small).
const XATTR: &str = "user.byteback.growth";

/// Reads the client's record (empty if none or unreadable).
pub fn load(store: &Store, client: &ClientName) -> Growth {
    let mut buf = [0u8; 256];
    let Some(len) = store.record(client, XATTR, &mut buf) else {
        return Growth::default();
    };
    parse(&String::from_utf8_lossy(&buf[..len]))
}

/// Reads a record: `v2 <baseline> <written>`, or the first format's
/// `<size at snapshot> <last declared total> <wire bytes since>` (the best
/// figures there are for them).
fn parse(text: &str) -> Growth {
    let words: Vec<&str> = text.split_whitespace().collect();
    let number = |w: &&str| w.parse::<u64>().ok();
    let n: Option<Vec<u64>> = match words.as_slice() {
        ["v2", rest @ ..] => rest.iter().map(number).collect(),
        [size, _declared, received] => [size, received].into_iter().map(number).collect(),
        _ => None,
    };
    match n.as_deref() {
        Some(&[baseline_bytes, written_since_snapshot]) => Growth {
            baseline_bytes,
            written_since_snapshot,
        },
        _ => Growth::default(),
    }
}

fn render(g: &Growth) -> String {
    format!("v2 {} {}", g.baseline_bytes, g.written_since_snapshot)
}

fn save(store: &Store, client: &ClientName, g: &Growth) -> Result<()> {
    store.set_record(client, XATTR, render(g).as_bytes())
}

/// Records a finished receive that wrote `written` bytes on disk.
pub fn record_transfer(store: &Store, client: &ClientName, written: u64) -> Result<Growth> {
    let mut g = load(store, client);
    g.written_since_snapshot = g.written_since_snapshot.saturating_add(written);
    save(store, client, &g)?;
    Ok(g)
}

/// A snapshot was taken: what was written is now history.
pub fn record_snapshot(store: &Store, client: &ClientName) -> Result<()> {
    let g = after_snapshot(&load(store, client));
    save(store, client, &g)
}

/// The record after a snapshot (pure): what was written is history now.
pub fn after_snapshot(g: &Growth) -> Growth {
    Growth {
        baseline_bytes: g.baseline_bytes.saturating_add(g.written_since_snapshot),
        written_since_snapshot: 0,
    }
}

/// The client's data since its newest snapshot was discarded.
pub fn record_rollback(store: &Store, client: &ClientName) -> Result<()> {
    let mut g = load(store, client);
    g.written_since_snapshot = 0;
    save(store, client, &g)
}

/// How much data no snapshot holds a client may have (pure): a share of
/// its baseline, and never more than a share of the store.
pub fn limit(g: &Growth, max_growth_percent: u64, store_cap_bytes: u64) -> u64 {
    if g.baseline_bytes == 0 {
        return store_cap_bytes;
    }
    let by_growth = u128::from(g.baseline_bytes) * u128::from(max_growth_percent) / 100;
    store_cap_bytes.min(u64::try_from(by_growth).unwrap_or(u64::MAX))
}

/// Whether `written` bytes are at or over the limit (pure).
pub fn over_limit(written: u64, limit: u64) -> bool {
    written > 0 && written >= limit
}

/// The store-wide cap on one client's (and one key's) unsnapshotted data,
/// in bytes.
pub fn store_cap(store: &Store, total_bytes: u64) -> u64 {
    Limits::of(&store.config, total_bytes).key_cap()
}

/// Who spends a client's allowance: the key that writes into its area.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Spender {
    /// An ordinary client's own key.
    Client(String),
    /// The replica key of a primary, which writes every `PRIMARY__*` client.
    Replica(String),
}

impl Spender {
    /// The key that writes into `client`'s area (see
    /// [`ClientName::split_replicated`]).
    pub fn of(client: &ClientName) -> Spender {
        match client.split_replicated() {
            Some((primary, _)) => Spender::Replica(primary.to_owned()),
            None => Spender::Client(client.as_str().to_owned()),
        }
    }
}

impl fmt::Display for Spender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Spender::Client(c) => write!(f, "the key of {c}"),
            Spender::Replica(p) => write!(f, "the replica key of primary {p}"),
        }
    }
}

/// The limits on unsnapshotted data for a store of `total_bytes`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub total_bytes: u64,
    pub max_growth_percent: u64,
    pub max_unsnapshotted_percent: f64,
    pub max_unsnapshotted_store_percent: f64,
}

impl Limits {
    pub fn of(config: &ServerConfig, total_bytes: u64) -> Limits {
        Limits {
            total_bytes,
            max_growth_percent: config.max_growth_percent,
            max_unsnapshotted_percent: config.max_unsnapshotted_percent,
            max_unsnapshotted_store_percent: config.max_unsnapshotted_store_percent,
        }
    }

    fn share(&self, percent: f64) -> u64 {
        (self.total_bytes as f64 * percent / 100.0) as u64
    }

    /// What one key's clients may hold together (and one client at most).
    pub fn key_cap(&self) -> u64 {
        self.share(self.max_unsnapshotted_percent)
    }

    /// What all clients may hold together.
    pub fn store_cap(&self) -> u64 {
        self.share(self.max_unsnapshotted_store_percent)
    }

    /// One client's own limit.
    pub fn client_limit(&self, g: &Growth) -> u64 {
        limit(g, self.max_growth_percent, self.key_cap())
    }
}

/// A client whose unsnapshotted data is to be reclaimed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excess {
    pub client: ClientName,
    /// Its unsnapshotted bytes.
    pub bytes: u64,
    pub why: String,
}

/// A client and its record, as [`over_limits`] weighs them.
type Entry<'a> = (&'a ClientName, &'a Growth);

/// Whose unsnapshotted data must go for every limit to hold, in the order
/// to reclaim it (pure): each client over its own limit, largest first;
/// then, for each key still over its cap (largest total first), that key's
/// largest clients until it is under; then, while all clients together are
/// over the store's cap, the largest contributors left. Once all of these
/// are reclaimed, no limit is exceeded; a client not listed is within all.
pub fn over_limits(records: &[(ClientName, Growth)], limits: &Limits) -> Vec<Excess> {
    let mut left: Vec<Entry<'_>> = records
        .iter()
        .filter(|(_, g)| g.written_since_snapshot > 0)
        .map(|(c, g)| (c, g))
        .collect();
    // Largest first, then by name, so the order never depends on listing order.
    left.sort_by(|a, b| (b.1.written_since_snapshot, a.0).cmp(&(a.1.written_since_snapshot, b.0)));
    let mut out = Vec::new();
    left.retain(|(client, g)| {
        let limit = limits.client_limit(g);
        if !over_limit(g.written_since_snapshot, limit) {
            return true;
        }
        out.push(Excess {
            client: (*client).clone(),
            bytes: g.written_since_snapshot,
            why: describe(client, g, limit, limits),
        });
        false
    });
    let mut keys: BTreeMap<Spender, Vec<Entry<'_>>> = BTreeMap::new();
    for entry in &left {
        keys.entry(Spender::of(entry.0)).or_default().push(*entry);
    }
    let cap = limits.key_cap();
    let sum = |clients: &[Entry<'_>]| {
        clients
            .iter()
            .map(|(_, g)| g.written_since_snapshot)
            .fold(0u64, u64::saturating_add)
    };
    let mut over: Vec<(u64, Spender, Vec<Entry<'_>>)> = keys
        .into_iter()
        .map(|(key, clients)| (sum(&clients), key, clients))
        .filter(|(total, _, _)| over_limit(*total, cap))
        .collect();
    over.sort_by(|a, b| (b.0, &a.1).cmp(&(a.0, &b.1)));
    for (total, key, clients) in over {
        let mut remaining = total;
        for (client, g) in clients {
            if !over_limit(remaining, cap) {
                break;
            }
            out.push(Excess {
                client: client.clone(),
                bytes: g.written_since_snapshot,
                why: format!(
                    "{key} wrote {total} bytes that no snapshot holds into its clients' areas, at or over its limit of {cap} bytes (max_unsnapshotted_percent = {} of the store, for all the clients one key writes to together); {client} holds {} of them, the most left",
                    limits.max_unsnapshotted_percent, g.written_since_snapshot
                ),
            });
            remaining -= g.written_since_snapshot;
            left.retain(|(c, _)| *c != client);
        }
    }
    let cap = limits.store_cap();
    let total = sum(&left);
    let mut remaining = total;
    for (client, g) in &left {
        if !over_limit(remaining, cap) {
            break;
        }
        out.push(Excess {
            client: (*client).clone(),
            bytes: g.written_since_snapshot,
            why: format!(
                "all clients together wrote {total} bytes that no snapshot holds, at or over the store's limit of {cap} bytes (max_unsnapshotted_store_percent = {}); {client} holds {} of them, the most left",
                limits.max_unsnapshotted_store_percent, g.written_since_snapshot
            ),
        });
        remaining -= g.written_since_snapshot;
    }
    out
}

/// Why a running transfer of `client` must stop, if it must (pure): with
/// the `live` bytes it has cost so far added to its record, its data is
/// among what [`over_limits`] would reclaim (over its own limit, or among
/// the largest of a key or a store over its cap), or its key's clients
/// together are over the key's cap (the key writing now is the one over,
/// whichever of its names holds the most).
pub fn stops(
    records: &[(ClientName, Growth)],
    client: &ClientName,
    live: u64,
    limits: &Limits,
) -> Option<String> {
    let mut records = records.to_vec();
    for (c, g) in &mut records {
        if c == client {
            g.written_since_snapshot = g.written_since_snapshot.saturating_add(live);
        }
    }
    if let Some(e) = over_limits(&records, limits)
        .into_iter()
        .find(|e| &e.client == client)
    {
        return Some(e.why);
    }
    let key = Spender::of(client);
    let total = records
        .iter()
        .filter(|(c, _)| Spender::of(c) == key)
        .map(|(_, g)| g.written_since_snapshot)
        .fold(0u64, u64::saturating_add);
    let cap = limits.key_cap();
    over_limit(total, cap).then(|| {
        format!(
            "{key} wrote {total} bytes that no snapshot holds into its clients' areas, at or over its limit of {cap} bytes (max_unsnapshotted_percent = {} of the store, for all the clients one key writes to together), {client}'s transfer among them",
            limits.max_unsnapshotted_percent
        )
    })
}

/// Every client's record.
pub fn load_all(store: &Store) -> Result<Vec<(ClientName, Growth)>> {
    Ok(store
        .clients()?
        .into_iter()
        .map(|c| {
            let g = load(store, &c);
            (c, g)
        })
        .collect())
}

/// Why `client`'s unsnapshotted data is over a limit, if it is: its own,
/// its key's, or the store's (see [`over_limits`]).
pub fn excess(store: &Store, client: &ClientName, total_bytes: u64) -> Option<String> {
    let records = load_all(store).ok()?;
    over_limits(&records, &Limits::of(&store.config, total_bytes))
        .into_iter()
        .find(|e| &e.client == client)
        .map(|e| e.why)
}

fn describe(client: &ClientName, g: &Growth, limit: u64, limits: &Limits) -> String {
    if g.baseline_bytes == 0 {
        format!(
            "backup of {client} wrote {} bytes on the server without a snapshot, at or over its limit of {limit} bytes (max_unsnapshotted_percent = {} of the store)",
            g.written_since_snapshot, limits.max_unsnapshotted_percent
        )
    } else {
        let percent = u128::from(g.written_since_snapshot) * 100 / u128::from(g.baseline_bytes);
        format!(
            "backup of {client} grew by {} bytes since its last snapshot, {percent}% of its previous {} bytes, at or over its limit of {limit} bytes (max_growth_percent = {}, max_unsnapshotted_percent = {})",
            g.written_since_snapshot,
            g.baseline_bytes,
            limits.max_growth_percent,
            limits.max_unsnapshotted_percent
        )
    }
}

/// Bytes written so far by a running child of this process (`pid` as
/// this process numbers it) and everything it forked, from `/proc/<pid>/io`
/// (0 where that cannot be read).
pub fn written_by_tree(pid: u32) -> u64 {
    tree_bytes(proc_pid(pid))
}

/// This process's child `pid` as `/proc` numbers it. The same, unless this
/// process runs in a PID namespace of its own under a `/proc` mounted
/// outside it (a container sharing the host's `/proc`, the tests' sshd):
/// then `/proc/<pid>` is some other process, and the child is found among
/// this process's children by the last field of its `NSpid`.
fn proc_pid(pid: u32) -> u32 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return pid;
    };
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace() {
            let status =
                std::fs::read_to_string(format!("/proc/{child}/status")).unwrap_or_default();
            let inner = status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|ids| ids.split_whitespace().last())
                .and_then(|id| id.parse::<u32>().ok());
            if inner == Some(pid) {
                return child.parse().unwrap_or(pid);
            }
        }
    }
    pid
}

fn tree_bytes(pid: u32) -> u64 {
    let own = std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .map(tree_bytes)
        .fold(own, u64::saturating_add)
}

/// Bytes written by this process's waited-for children so far.
pub fn written_by_children() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_CHILDREN with a valid pointer cannot fail.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return 0;
    }
    // Linux counts output blocks in 512-byte units of bytes written.
    (usage.ru_oublock.max(0) as u64).saturating_mul(512)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_read_the_first_format() {
        let g = Growth {
            baseline_bytes: 1,
            written_since_snapshot: 3,
        };
        assert_eq!(parse(&render(&g)), g);
        assert_eq!(parse("1 2 3"), g);
        assert_eq!(parse("garbage"), Growth::default());
        assert_eq!(parse("v2 1 x"), Growth::default());
    }

    #[test]
    fn the_baseline_is_what_snapshots_kept() {
        let g = Growth {
            baseline_bytes: 1000,
            written_since_snapshot: 50,
        };
        assert_eq!(
            after_snapshot(&g),
            Growth {
                baseline_bytes: 1050,
                written_since_snapshot: 0
            }
        );
    }

    #[test]
    fn limits() {
        let g = Growth {
            baseline_bytes: 1000,
            written_since_snapshot: 0,
        };
        assert_eq!(limit(&g, 100, u64::MAX), 1000);
        assert_eq!(limit(&g, 250, u64::MAX), 2500);
        assert_eq!(limit(&g, 100, 400), 400, "the store cap bounds everyone");
        let fresh = Growth::default();
        assert_eq!(limit(&fresh, 100, 400), 400, "no baseline: the store cap");
        assert!(over_limit(1000, 1000), "doubling is over");
        assert!(!over_limit(999, 1000));
        assert!(!over_limit(0, 0), "nothing written is never over");
    }

    const MIB: u64 = 1 << 20;

    fn store_limits() -> Limits {
        Limits {
            total_bytes: 100 * MIB,
            max_growth_percent: 100,
            max_unsnapshotted_percent: 50.0,
            max_unsnapshotted_store_percent: 50.0,
        }
    }

    fn rec(name: &str, baseline: u64, written: u64) -> (ClientName, Growth) {
        (
            ClientName::new(name).unwrap(),
            Growth {
                baseline_bytes: baseline,
                written_since_snapshot: written,
            },
        )
    }

    fn names(plan: &[Excess]) -> Vec<&str> {
        plan.iter().map(|e| e.client.as_str()).collect()
    }

    #[test]
    fn the_key_is_the_primary_for_replicated_clients() {
        let n = |s: &str| ClientName::new(s).unwrap();
        assert_eq!(
            Spender::of(&n("p__evil1")),
            Spender::of(&n("p__victim.example"))
        );
        assert_eq!(Spender::of(&n("p__x")), Spender::Replica("p".into()));
        assert_eq!(Spender::of(&n("p")), Spender::Client("p".into()));
        assert_ne!(Spender::of(&n("p")), Spender::of(&n("p__x")));
        assert_ne!(Spender::of(&n("a")), Spender::of(&n("b")));
    }

    #[test]
    fn invented_names_share_their_keys_cap_largest_reclaimed_first() {
        // Three names invented by one replica key, each under the 50 MiB
        // cap of one client, together 66 MiB; the victim has history and
        // writes a little.
        let records = vec![
            rec("victim.example", 40 * MIB, 2 * MIB),
            rec("p__evil1", 0, 20 * MIB),
            rec("p__evil2", 0, 24 * MIB),
            rec("p__evil3", 0, 22 * MIB),
        ];
        let plan = over_limits(&records, &store_limits());
        // 66 - 24 = 42 < 50: the largest alone brings the key under.
        assert_eq!(names(&plan), ["p__evil2"]);
        assert!(
            plan[0].why.contains("the replica key of primary p")
                && plan[0].why.contains("max_unsnapshotted_percent = 50"),
            "{}",
            plan[0].why
        );
        assert_eq!(plan[0].bytes, 24 * MIB);
        // Five of them: the largest go until the key is under its cap.
        let records = vec![
            rec("victim.example", 40 * MIB, 2 * MIB),
            rec("p__e1", 0, 20 * MIB),
            rec("p__e2", 0, 21 * MIB),
            rec("p__e3", 0, 22 * MIB),
            rec("p__e4", 0, 19 * MIB),
            rec("p__e5", 0, 18 * MIB),
        ];
        let plan = over_limits(&records, &store_limits());
        // 100 -> 78 -> 57 -> 37.
        assert_eq!(names(&plan), ["p__e3", "p__e2", "p__e1"]);
        assert!(!names(&plan).contains(&"victim.example"));
    }

    #[test]
    fn separate_keys_each_under_their_caps_still_meet_the_stores_cap() {
        let records = vec![
            rec("a", 0, 20 * MIB),
            rec("b", 0, 30 * MIB),
            rec("c", 0, 10 * MIB),
            rec("victim.example", 400 * MIB, 5 * MIB),
        ];
        // 65 MiB together, over 50: b (30) goes, 35 left.
        let plan = over_limits(&records, &store_limits());
        assert_eq!(names(&plan), ["b"]);
        assert!(
            plan[0].why.contains("max_unsnapshotted_store_percent = 50"),
            "{}",
            plan[0].why
        );
        // A lower store cap takes more, still largest first.
        let tight = Limits {
            max_unsnapshotted_store_percent: 10.0,
            ..store_limits()
        };
        assert_eq!(names(&over_limits(&records, &tight)), ["b", "a", "c"]);
        // Within every limit: nothing.
        let fine = vec![rec("a", 0, 20 * MIB), rec("b", 0, 29 * MIB)];
        assert!(over_limits(&fine, &store_limits()).is_empty());
    }

    #[test]
    fn own_limits_first_then_keys_then_the_store() {
        let records = vec![
            // Over its own growth limit (baseline 10 MiB, doubled).
            rec("grower", 10 * MIB, 12 * MIB),
            // A replica key over its cap.
            rec("p__x", 0, 30 * MIB),
            rec("p__y", 0, 25 * MIB),
            // Another key, fine alone.
            rec("q__z", 0, 10 * MIB),
            rec("idle", 10 * MIB, 0),
        ];
        let tight = Limits {
            max_unsnapshotted_store_percent: 30.0,
            ..store_limits()
        };
        let plan = over_limits(&records, &tight);
        // grower (own), p__x (key: 55 -> 25), then the store: 25 + 10 = 35
        // over 30, so p__y, the largest left.
        assert_eq!(names(&plan), ["grower", "p__x", "p__y"]);
        assert!(plan[0].why.contains("grew by"), "{}", plan[0].why);
        assert!(plan[1].why.contains("replica key"), "{}", plan[1].why);
        assert!(plan[2].why.contains("store"), "{}", plan[2].why);
        // Whatever the listing order, the same plan.
        let mut reversed = records.clone();
        reversed.reverse();
        assert_eq!(over_limits(&reversed, &tight), plan);
    }

    #[test]
    fn a_running_transfer_stops_when_its_key_goes_over() {
        let records = vec![
            rec("victim.example", 40 * MIB, 0),
            rec("p__evil1", 0, 20 * MIB),
            rec("p__evil2", 0, 20 * MIB),
            rec("p__evil3", 0, 0),
        ];
        let l = store_limits();
        let evil3 = ClientName::new("p__evil3").unwrap();
        let victim = ClientName::new("victim.example").unwrap();
        // 40 MiB before it: the third name may write 9 MiB, not 15.
        assert_eq!(stops(&records, &evil3, 9 * MIB, &l), None);
        let why = stops(&records, &evil3, 15 * MIB, &l).expect("over the key's cap");
        assert!(why.contains("replica key of primary p"), "{why}");
        // Its own limit alone (50 MiB) would have let it write 49.
        assert_eq!(stops(&[rec("p__evil3", 0, 0)], &evil3, 49 * MIB, &l), None);
        // The victim's own backup is not stopped for the key's excess.
        assert_eq!(stops(&records, &victim, 5 * MIB, &l), None);
    }

    #[test]
    fn every_limit_holds_after_the_plan() {
        // A small exhaustive sweep: after reclaiming what the plan says,
        // no client, key or store total is over its limit, and nothing
        // more than needed went at the key and store stages.
        let sizes = [0, 5, 12, 26, 51];
        for a in sizes {
            for b in sizes {
                for c in sizes {
                    for d in sizes {
                        let records = vec![
                            rec("p__a", 0, a * MIB),
                            rec("p__b", 0, b * MIB),
                            rec("c", 10 * MIB, c * MIB),
                            rec("d", 0, d * MIB),
                        ];
                        let l = store_limits();
                        let plan = over_limits(&records, &l);
                        let kept: Vec<&(ClientName, Growth)> = records
                            .iter()
                            .filter(|(n, _)| !plan.iter().any(|e| &e.client == n))
                            .collect();
                        let w = |v: &[&(ClientName, Growth)]| -> u64 {
                            v.iter().map(|(_, g)| g.written_since_snapshot).sum()
                        };
                        for (n, g) in &kept {
                            assert!(
                                !over_limit(g.written_since_snapshot, l.client_limit(g)),
                                "{n} {records:?}"
                            );
                        }
                        let p: Vec<_> = kept
                            .iter()
                            .copied()
                            .filter(|(n, _)| n.as_str().starts_with("p__"))
                            .collect();
                        assert!(!over_limit(w(&p), l.key_cap()), "{records:?}");
                        assert!(!over_limit(w(&kept), l.store_cap()), "{records:?}");
                        assert!(plan.iter().all(|e| e.bytes > 0));
                    }
                }
            }
        }
    }

    #[test]
    fn counts_what_children_write() {
        let dir = std::env::temp_dir().join(format!("byteback-growth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let before = written_by_children();
        crate::exec::Cmd::new("dd")
            .args([
                "if=/dev/zero",
                "bs=1M",
                "count=4",
                "status=none",
                "conv=fsync",
            ])
            .arg(format!("of={}", dir.join("f").display()))
            .run()
            .unwrap();
        let written = written_by_children() - before;
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            written >= 4 << 20,
            "{written} bytes counted (is the temp dir a tmpfs?)"
        );
    }
}
