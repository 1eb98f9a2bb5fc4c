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
//! Data no snapshot holds may not exceed the client's limit
//! ([`limit`]): `max_growth_percent` of its baseline, and in any case
//! `max_unsnapshotted_percent` of the store (the only limit of a client
//! without a baseline). When space is short, what is over the limit is
//! reclaimed first (see [`crate::prune`]), and nobody's history is deleted
//! for it. (btrfs quota groups would measure exactly, but they make
//! snapshot deletion slow and can stall systems with many snapshots.)

use crate::error::Result;
use crate::names::ClientName;
use crate::store::Store;

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

/// The store-wide cap on one client's unsnapshotted data, in bytes.
pub fn store_cap(store: &Store, total_bytes: u64) -> u64 {
    (total_bytes as f64 * store.config.max_unsnapshotted_percent / 100.0) as u64
}

/// Why a client's unsnapshotted data is over its limit, if it is.
pub fn excess(store: &Store, client: &ClientName, total_bytes: u64) -> Option<String> {
    let g = load(store, client);
    let limit = limit(
        &g,
        store.config.max_growth_percent,
        store_cap(store, total_bytes),
    );
    over_limit(g.written_since_snapshot, limit).then(|| describe(store, client, &g, limit))
}

fn describe(store: &Store, client: &ClientName, g: &Growth, limit: u64) -> String {
    let c = &store.config;
    if g.baseline_bytes == 0 {
        format!(
            "backup of {client} wrote {} bytes on the server without a snapshot, at or over its limit of {limit} bytes (max_unsnapshotted_percent = {} of the store)",
            g.written_since_snapshot, c.max_unsnapshotted_percent
        )
    } else {
        let percent = u128::from(g.written_since_snapshot) * 100 / u128::from(g.baseline_bytes);
        format!(
            "backup of {client} grew by {} bytes since its last snapshot, {percent}% of its previous {} bytes, at or over its limit of {limit} bytes (max_growth_percent = {}, max_unsnapshotted_percent = {})",
            g.written_since_snapshot,
            g.baseline_bytes,
            c.max_growth_percent,
            c.max_unsnapshotted_percent
        )
    }
}

/// Bytes written so far by a running process and everything it forked,
/// from `/proc/<pid>/io` (0 where that cannot be read).
pub fn written_by_tree(pid: u32) -> u64 {
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
        .map(written_by_tree)
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
