//! A history quota per client, and what its history really holds.
//!
//! One client's growth must not thin everyone's history, so each client
//! may be given a quota (`new-client --quota`, `set-quota`): the bytes its
//! history may hold exclusively. Pruning enforces it on that client alone
//! (see [`crate::prune::thin_to_quota`]).
//!
//! The figure compared with the quota is *measured*, not inferred: the
//! growth baseline ([`crate::prune::growth`]) only ever grows, so it cannot
//! say what deleting a snapshot gave back. No btrfs quota groups either
//! (they cost every write and make snapshot deletion slow on a busy store).
//! Instead:
//!
//! - **btrfs**: `btrfs filesystem du -s --raw CLIENT_DIR`, whose
//!   *Exclusive* plus *Set shared* columns are the union of the extents
//!   under the client's directory, each counted once (*Set shared* is the
//!   shared extents of that one argument, counted once). Clients never
//!   share extents in byteback (each pushes its own data), so that union is
//!   what the client's history holds exclusively. It reads every file's
//!   extent map (`FIEMAP`): its cost grows with files × snapshots.
//! - **plain**: the blocks of every distinct inode under the client's
//!   directory (hard links, which link unchanged files between snapshots,
//!   counted once).
//!
//! The directory includes `current`, which between backups holds exactly
//! the newest snapshot (it adds nothing); while a transfer runs it may
//! hold more, so the quota is only weighed with `current` clean or just
//! snapshotted. The last figure is kept among the client's records, for
//! `status`, which never measures.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use jiff::Timestamp;

use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::names::ClientName;

use super::{Backend, Store};

/// The client's quota in bytes, among its records.
const QUOTA_XATTR: &str = "user.byteback.quota";

/// The client's last measured usage: `v1 <bytes> <unix seconds>`.
const USAGE_XATTR: &str = "user.byteback.usage";

/// Parses a size: bytes, or a number with K, M, G, T (powers of 1024,
/// optionally followed by `iB` or `B`), e.g. `10G`, `512MiB`, `1.5T`.
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let bad = || {
        Error::Usage(format!(
            "invalid size {text:?}: give bytes or a number with K, M, G or T (powers of 1024), e.g. 10G"
        ))
    };
    let upper = t.to_ascii_uppercase();
    let stem = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    let (number, shift) = match stem.chars().last() {
        Some('K') => (&stem[..stem.len() - 1], 10),
        Some('M') => (&stem[..stem.len() - 1], 20),
        Some('G') => (&stem[..stem.len() - 1], 30),
        Some('T') => (&stem[..stem.len() - 1], 40),
        _ => (stem, 0),
    };
    let number = number.trim();
    if number.is_empty() || number.starts_with('-') {
        return Err(bad());
    }
    if let Ok(n) = number.parse::<u64>() {
        return n
            .checked_shl(shift)
            .filter(|v| v >> shift == n)
            .ok_or_else(bad);
    }
    let f: f64 = number.parse().map_err(|_| bad())?;
    let bytes = f * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// The client's quota, if it has one.
pub fn quota(store: &Store, client: &ClientName) -> Option<u64> {
    store.client_mark(client, QUOTA_XATTR)?.trim().parse().ok()
}

/// Sets (or, with `None`, removes) the client's quota.
pub fn set_quota(store: &Store, client: &ClientName, bytes: Option<u64>) -> Result<()> {
    match bytes {
        Some(b) => store.set_client_mark(client, QUOTA_XATTR, &b.to_string()),
        None => {
            store.clear_client_mark(client, QUOTA_XATTR);
            Ok(())
        }
    }
}

/// The client's last measured usage and when it was measured.
pub fn cached_usage(store: &Store, client: &ClientName) -> Option<(u64, Timestamp)> {
    let text = store.client_mark(client, USAGE_XATTR)?;
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["v1", bytes, at] => Some((
            bytes.parse().ok()?,
            Timestamp::from_second(at.parse().ok()?).ok()?,
        )),
        _ => None,
    }
}

/// Measures what the client's directory holds (see the module doc) and
/// keeps the figure for `status`.
pub fn measure_client(store: &Store, client: &ClientName) -> Result<u64> {
    let bytes = measure(store, &store.client_dir(client))?;
    let record = format!("v1 {bytes} {}", Timestamp::now().as_second());
    if let Err(e) = store.set_client_mark(client, USAGE_XATTR, &record) {
        store.log(&format!("{client}: cannot record its usage: {e}"));
    }
    Ok(bytes)
}

/// What the files under `dir` hold on disk, each extent (btrfs) or inode
/// (plain) counted once.
pub fn measure(store: &Store, dir: &Path) -> Result<u64> {
    match store.backend().kind() {
        Backend::Btrfs => btrfs_du(dir),
        _ => distinct_inode_bytes(dir),
    }
}

/// `btrfs filesystem du -s --raw DIR`: Exclusive + Set shared.
fn btrfs_du(dir: &Path) -> Result<u64> {
    let cmd = Cmd::new("btrfs")
        .args(["filesystem", "du", "-s", "--raw"])
        .arg(dir);
    let shown = cmd.display();
    let out = cmd.output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(Error::Command(format!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    parse_du(&text)
        .ok_or_else(|| Error::Command(format!("{shown}: cannot read its output: {}", text.trim())))
}

/// Exclusive + Set shared from `btrfs filesystem du -s --raw`'s one
/// summary line (after its header).
fn parse_du(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| {
        l.split_whitespace()
            .next()
            .is_some_and(|w| w.parse::<u64>().is_ok())
    })?;
    let mut n = line.split_whitespace().map(|w| w.parse::<u64>());
    let (_total, exclusive, shared) = (n.next()?.ok()?, n.next()?.ok()?, n.next()?.ok()?);
    exclusive.checked_add(shared)
}

/// The blocks of every distinct inode under `dir` (not crossing into
/// other filesystems), in bytes.
fn distinct_inode_bytes(dir: &Path) -> Result<u64> {
    let top = std::fs::symlink_metadata(dir).map_err(|e| Error::io("cannot read", dir, e))?;
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let Ok(m) = entry.metadata() else {
                continue;
            };
            if m.dev() != top.dev() {
                continue;
            }
            if seen.insert(m.ino()) {
                total = total.saturating_add(m.blocks().saturating_mul(512));
            }
            if m.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_powers_of_1024() {
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("2TB").unwrap(), 2 << 40);
        for bad in ["", "G", "-1G", "ten", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn du_adds_exclusive_and_set_shared() {
        let text =
            "     Total   Exclusive  Set shared  Filename\n  41943040    20971520    10485760  c\n";
        assert_eq!(parse_du(text), Some(31457280));
        assert_eq!(parse_du("Total Exclusive\n"), None);
    }

    #[test]
    fn plain_counts_hard_links_once() {
        let dir = std::env::temp_dir().join(format!("bb-quota-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::create_dir_all(dir.join("b")).unwrap();
        std::fs::write(dir.join("a/f"), vec![1u8; 64 * 1024]).unwrap();
        let one = distinct_inode_bytes(&dir).unwrap();
        std::fs::hard_link(dir.join("a/f"), dir.join("b/f")).unwrap();
        assert_eq!(distinct_inode_bytes(&dir).unwrap(), one);
        std::fs::write(dir.join("b/g"), vec![1u8; 64 * 1024]).unwrap();
        assert!(distinct_inode_bytes(&dir).unwrap() >= one + 64 * 1024);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
