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
//! - **baseline**: the client's size at its newest snapshot, which the
//!   growth limit is a share of. It is the declared total of the last
//!   complete transfer, but it can never rise by more than what was really
//!   written: a client cannot earn a large allowance with sparse files.
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
    /// The client's size at its newest snapshot (0: no baseline yet).
    pub baseline_bytes: u64,
    /// Total size declared by its last complete transfer.
    pub last_transfer_size_bytes: u64,
    /// Bytes really written into its area since its newest snapshot.
    pub written_since_snapshot: u64,
}

/// Where the record lives: an xattr on the client's directory. Setting an
/// xattr needs only btrfs metadata, never data space, so the record can be
/// kept even when a backup has just filled the disk (a file could not be:
/// btrfs reserves data space for any write, however small).
const XATTR: &str = "user.byteback.growth";

/// Reads the client's record (empty if none or unreadable).
pub fn load(store: &Store, client: &ClientName) -> Growth {
    let mut buf = [0u8; 256];
    let Ok(len) = rustix::fs::getxattr(store.client_dir(client), XATTR, &mut buf) else {
        return Growth::default();
    };
    parse(&String::from_utf8_lossy(&buf[..len]))
}

/// Reads a record: `v2 <baseline> <last total> <written>`, or the three
/// numbers of the first format (whose third counted wire bytes, the best
/// figure there is for it).
fn parse(text: &str) -> Growth {
    let words: Vec<&str> = text.split_whitespace().collect();
    let numbers = match words.as_slice() {
        ["v2", rest @ ..] => rest,
        rest => rest,
    };
    let n: Vec<u64> = numbers.iter().filter_map(|w| w.parse().ok()).collect();
    match n[..] {
        [
            baseline_bytes,
            last_transfer_size_bytes,
            written_since_snapshot,
        ] => Growth {
            baseline_bytes,
            last_transfer_size_bytes,
            written_since_snapshot,
        },
        _ => Growth::default(),
    }
}

fn render(g: &Growth) -> String {
    format!(
        "v2 {} {} {}",
        g.baseline_bytes, g.last_transfer_size_bytes, g.written_since_snapshot
    )
}

fn save(store: &Store, client: &ClientName, g: &Growth) -> Result<()> {
    let dir = store.client_dir(client);
    rustix::fs::setxattr(
        &dir,
        XATTR,
        render(g).as_bytes(),
        rustix::fs::XattrFlags::empty(),
    )
    .map_err(|e| crate::error::Error::io("cannot record the backup's size on", &dir, e.into()))
}

/// What a receiver log written with `--log-file-format=%b` says: the
/// bytes received, and the total size from rsync's closing line if it got there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub received: u64,
    pub total: Option<u64>,
}

impl Tally {
    /// Counts one log line (`2026/11/26 05:09:05 [17984] <message>`).
    pub fn add_line(&mut self, line: &str) {
        let Some((_, message)) = line.split_once("] ") else {
            return;
        };
        if let Ok(bytes) = message.trim().parse::<u64>() {
            self.received = self.received.saturating_add(bytes);
        } else if let Some(rest) = message.split("total size ").nth(1) {
            self.total = rest.trim().parse().ok();
        }
    }

    /// Reads a whole log as it streams in, line by line.
    pub fn read(log: impl std::io::Read) -> Tally {
        use std::io::BufRead;
        let mut tally = Tally::default();
        for line in std::io::BufReader::new(log)
            .split(b'\n')
            .map_while(|l| l.ok())
        {
            tally.add_line(&String::from_utf8_lossy(&line));
        }
        tally
    }
}

/// Records a finished receive: `written` bytes landed on disk; `complete`
/// says rsync succeeded.
pub fn record_transfer(
    store: &Store,
    client: &ClientName,
    tally: Tally,
    written: u64,
    complete: bool,
) -> Result<Growth> {
    let mut g = load(store, client);
    g.written_since_snapshot = g.written_since_snapshot.saturating_add(written);
    if complete {
        if let Some(total) = tally.total {
            g.last_transfer_size_bytes = total;
        }
    }
    save(store, client, &g)?;
    Ok(g)
}

/// A snapshot was taken: what was written is now history.
pub fn record_snapshot(store: &Store, client: &ClientName) -> Result<()> {
    let g = after_snapshot(&load(store, client));
    save(store, client, &g)
}

/// The record after a snapshot (pure): the baseline follows the declared
/// size, but rises by no more than what was really written.
pub fn after_snapshot(g: &Growth) -> Growth {
    let ceiling = g.baseline_bytes.saturating_add(g.written_since_snapshot);
    let baseline_bytes = match g.last_transfer_size_bytes {
        0 => ceiling,
        declared => declared.min(ceiling),
    };
    Growth {
        baseline_bytes,
        last_transfer_size_bytes: g.last_transfer_size_bytes,
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
    fn parses_a_receiver_log() {
        let log = "2026/11/26 05:09:05 [17984] receiving file list\n\
                   2026/11/26 05:09:05 [17984] 300076\n\
                   2026/11/26 05:09:05 [17984] 43\n\
                   2026/11/26 05:09:05 [17984] sent 59 bytes  received 300242 bytes  total size 300003\n";
        assert_eq!(
            Tally::read(log.as_bytes()),
            Tally {
                received: 300119,
                total: Some(300003)
            }
        );
        assert_eq!(
            Tally::read(&b"2026/11/26 05:09:05 [1] 10\n\xff\xfe\n"[..]),
            Tally {
                received: 10,
                total: None
            }
        );
        assert_eq!(Tally::read(&b""[..]), Tally::default());
    }

    #[test]
    fn records_round_trip_and_read_the_first_format() {
        let g = Growth {
            baseline_bytes: 1,
            last_transfer_size_bytes: 2,
            written_since_snapshot: 3,
        };
        assert_eq!(parse(&render(&g)), g);
        assert_eq!(parse("1 2 3"), g);
        assert_eq!(parse("garbage"), Growth::default());
    }

    #[test]
    fn the_baseline_rises_only_by_real_writes() {
        // A first backup that declared 1 TB of (sparse) data but wrote 1 MB.
        let g = Growth {
            baseline_bytes: 0,
            last_transfer_size_bytes: 1 << 40,
            written_since_snapshot: 1 << 20,
        };
        let after = after_snapshot(&g);
        assert_eq!(after.baseline_bytes, 1 << 20);
        assert_eq!(after.written_since_snapshot, 0);
        // Files deleted on the client: the declared size wins when smaller.
        let g = Growth {
            baseline_bytes: 1000,
            last_transfer_size_bytes: 600,
            written_since_snapshot: 50,
        };
        assert_eq!(after_snapshot(&g).baseline_bytes, 600);
        // Nothing declared (no complete transfer): what was written.
        let g = Growth {
            last_transfer_size_bytes: 0,
            ..g
        };
        assert_eq!(after_snapshot(&g).baseline_bytes, 1050);
    }

    #[test]
    fn limits() {
        let g = Growth {
            baseline_bytes: 1000,
            last_transfer_size_bytes: 0,
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
        let status = std::process::Command::new("dd")
            .args([
                "if=/dev/zero",
                "bs=1M",
                "count=4",
                "status=none",
                "conv=fsync",
            ])
            .arg(format!("of={}", dir.join("f").display()))
            .status()
            .unwrap();
        assert!(status.success());
        let written = written_by_children() - before;
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            written >= 4 << 20,
            "{written} bytes counted (is the temp dir a tmpfs?)"
        );
    }
}
