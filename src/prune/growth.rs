//! How much a client's backup grew, measured cheaply and without quota
//! groups, so the server can refuse to delete other clients' history for a
//! backup that is suddenly much larger than before.
//!
//! The server's rsync receiver writes a log (`--log-file`, one line per
//! transferred file with the bytes received, and a closing line with the
//! total size of the client's files) into a pipe the server reads: nothing
//! is written to a disk that may be full, and the cost is proportional to
//! what changed, not to the tree. Per client the server keeps, in an xattr
//! of the client's directory:
//! the total size at its last snapshot, the total of its last complete
//! transfer, and the bytes received since the last snapshot.
//! (btrfs quota groups would measure exactly, but they make snapshot
//! deletion slow and can stall systems with many snapshots.)

use crate::error::Result;
use crate::names::ClientName;
use crate::store::Store;

/// What the server remembers about a client's size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Growth {
    /// Total size of the client's files when its newest snapshot was taken.
    pub snapshot_size_bytes: u64,
    /// Total size reported by its last complete transfer.
    pub last_transfer_size_bytes: u64,
    /// Bytes received since its newest snapshot, over all attempts.
    pub received_since_snapshot: u64,
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
    let text = String::from_utf8_lossy(&buf[..len]);
    let n: Vec<u64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match n[..] {
        [
            snapshot_size_bytes,
            last_transfer_size_bytes,
            received_since_snapshot,
        ] => Growth {
            snapshot_size_bytes,
            last_transfer_size_bytes,
            received_since_snapshot,
        },
        _ => Growth::default(),
    }
}

fn save(store: &Store, client: &ClientName, g: &Growth) -> Result<()> {
    let dir = store.client_dir(client);
    let text = format!(
        "{} {} {}",
        g.snapshot_size_bytes, g.last_transfer_size_bytes, g.received_since_snapshot
    );
    rustix::fs::setxattr(
        &dir,
        XATTR,
        text.as_bytes(),
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

/// Records a finished receive; `complete` says rsync succeeded.
pub fn record_transfer(
    store: &Store,
    client: &ClientName,
    tally: Tally,
    complete: bool,
) -> Result<Growth> {
    let mut g = load(store, client);
    g.received_since_snapshot = g.received_since_snapshot.saturating_add(tally.received);
    if complete {
        if let Some(total) = tally.total {
            g.last_transfer_size_bytes = total;
        }
    }
    save(store, client, &g)?;
    Ok(g)
}

/// A snapshot was taken: what was received is now history.
pub fn record_snapshot(store: &Store, client: &ClientName) -> Result<()> {
    let mut g = load(store, client);
    if g.last_transfer_size_bytes > 0 {
        g.snapshot_size_bytes = g.last_transfer_size_bytes;
    }
    g.received_since_snapshot = 0;
    save(store, client, &g)
}

/// Why no room may be made for `client`, if its growth is over the limit.
pub fn refusal(store: &Store, client: &ClientName) -> Result<Option<String>> {
    let g = load(store, client);
    Ok(check(&g, store.config.max_growth_percent).map(|percent| {
        format!(
            "backup of {client} grew by {} bytes since its last snapshot, {percent}% of its previous {} bytes, at or over max_growth_percent = {}: the server will not delete other clients' history to make room for it (ask the administrator to add space or raise the limit)",
            g.received_since_snapshot,
            g.snapshot_size_bytes,
            store.config.max_growth_percent
        )
    }))
}

/// The growth in percent if it reaches `limit_percent` (pure): with the
/// default of 100, a backup that doubles is refused.
pub fn check(g: &Growth, limit_percent: u64) -> Option<u64> {
    if g.snapshot_size_bytes == 0 {
        // A first backup (or one from before byteback measured): no baseline.
        return None;
    }
    let percent =
        (u128::from(g.received_since_snapshot) * 100 / u128::from(g.snapshot_size_bytes)) as u64;
    (percent >= limit_percent).then_some(percent)
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
    fn growth_limit() {
        let g = Growth {
            snapshot_size_bytes: 1000,
            last_transfer_size_bytes: 0,
            received_since_snapshot: 1000,
        };
        assert_eq!(check(&g, 100), Some(100), "doubling is refused");
        assert_eq!(
            check(
                &Growth {
                    received_since_snapshot: 999,
                    ..g
                },
                100
            ),
            None
        );
        let g = Growth {
            received_since_snapshot: 1500,
            ..g
        };
        assert_eq!(check(&g, 100), Some(150));
        assert_eq!(check(&g, 200), None);
        assert_eq!(
            check(
                &Growth {
                    snapshot_size_bytes: 0,
                    ..g
                },
                100
            ),
            None
        );
    }
}
