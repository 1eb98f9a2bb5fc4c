//! How much a btrfs store can really still take.
//!
//! `statvfs` can show plenty free while btrfs has no unallocated space left
//! and its metadata is full, at which point every write (and even deleting
//! a snapshot) fails. So the free figure combines statvfs with btrfs's own
//! accounting — data and metadata allocated and used, unallocated space,
//! the global reserve — and keeps headroom for metadata. The figures come
//! from `btrfs filesystem usage -b`, which works for the unprivileged owner.

use std::path::Path;

use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::sys::fs::{Scarce, Space};

/// btrfs's own accounting of a filesystem, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BtrfsUsage {
    /// Raw size of all devices.
    pub device_size: u64,
    /// Raw space not yet allocated to any chunk.
    pub unallocated: u64,
    /// Data chunks: allocated and used (logical bytes).
    pub data_size: u64,
    pub data_used: u64,
    /// Metadata chunks: allocated and used (logical bytes).
    pub metadata_size: u64,
    pub metadata_used: u64,
    /// Raw bytes per logical byte (2 for DUP or RAID1).
    pub data_ratio: f64,
    pub metadata_ratio: f64,
    /// Metadata kept back for emergencies (e.g. deleting).
    pub global_reserve: u64,
}

/// Reads btrfs's accounting for the filesystem holding `path`.
pub fn usage(path: &Path) -> Result<BtrfsUsage> {
    let out = Cmd::new("btrfs")
        .args(["filesystem", "usage", "-b"])
        .arg(path)
        .run()?;
    parse_usage(&out).ok_or_else(|| {
        Error::Command(format!(
            "cannot understand `btrfs filesystem usage -b {}`",
            path.display()
        ))
    })
}

/// Parses the output of `btrfs filesystem usage -b`.
pub fn parse_usage(text: &str) -> Option<BtrfsUsage> {
    let mut u = BtrfsUsage::default();
    let number = |s: &str| s.split_whitespace().next()?.parse::<f64>().ok();
    let (mut seen_size, mut seen_unalloc) = (false, false);
    for line in text.lines().map(str::trim) {
        if let Some((key, value)) = line.split_once(':') {
            match key {
                "Device size" => {
                    u.device_size = number(value)? as u64;
                    seen_size = true;
                }
                "Device unallocated" => {
                    u.unallocated = number(value)? as u64;
                    seen_unalloc = true;
                }
                "Data ratio" => u.data_ratio = number(value)?,
                "Metadata ratio" => u.metadata_ratio = number(value)?,
                "Global reserve" => u.global_reserve = number(value)? as u64,
                _ => {}
            }
        }
        // "Data,single: Size:8388608, Used:0 (0.00%)"
        let chunk = |prefix: &str| -> Option<(u64, u64)> {
            let rest = line.strip_prefix(prefix)?;
            let size = rest
                .split("Size:")
                .nth(1)?
                .split(',')
                .next()?
                .trim()
                .parse()
                .ok()?;
            let used = rest
                .split("Used:")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some((size, used))
        };
        if let Some((size, used)) = chunk("Data,") {
            u.data_size += size;
            u.data_used += used;
        }
        if let Some((size, used)) = chunk("Metadata,") {
            u.metadata_size += size;
            u.metadata_used += used;
        }
    }
    if u.data_ratio <= 0.0 {
        u.data_ratio = 1.0;
    }
    if u.metadata_ratio <= 0.0 {
        u.metadata_ratio = 1.0;
    }
    (seen_size && seen_unalloc).then_some(u)
}

/// Metadata to keep free beyond the global reserve: 0.5% of the device, at
/// least 4 MiB, and an eighth of the metadata allocated (btrfs reserves
/// for a transaction's worst case, so writes fail with ENOSPC while some
/// metadata still reads as free), so writes and snapshot deletion never
/// starve.
pub fn metadata_headroom(u: &BtrfsUsage) -> u64 {
    (u.device_size / 200).max(4 << 20).max(u.metadata_size / 8)
}

/// The share of the metadata this filesystem can hold that is still free
/// (0 to 1): the room left (allocated metadata not yet used, less the
/// global reserve, plus the unallocated space that could still become
/// metadata, scaled by the metadata ratio), less the headroom that must
/// stay free ([`metadata_headroom`]), over that room and what is used.
/// Relative to metadata rather than to the device, so a large store whose
/// metadata is a small but healthy part of it is not read as full.
pub fn metadata_free_fraction(u: &BtrfsUsage) -> f64 {
    let meta_free = u
        .metadata_size
        .saturating_sub(u.metadata_used)
        .saturating_sub(u.global_reserve);
    let ratio = if u.metadata_ratio > 0.0 {
        u.metadata_ratio
    } else {
        1.0
    };
    let room = meta_free as f64 + u.unallocated as f64 / ratio;
    let possible = room + u.metadata_used as f64;
    if possible <= 0.0 {
        return 1.0;
    }
    ((room - metadata_headroom(u) as f64) / possible).max(0.0)
}

/// What the store can really still take, as a [`Space`]: the smaller of
/// statvfs's figure, btrfs's data room, and the share of the store that
/// is the share of metadata still free ([`metadata_free_fraction`]), so a
/// store whose metadata is nearly full reads as short of space even with
/// data chunks to spare; nothing at all when metadata has less than its
/// headroom left.
pub fn writable(u: &BtrfsUsage, statvfs: Space) -> Space {
    let headroom = metadata_headroom(u);
    let meta_free = u
        .metadata_size
        .saturating_sub(u.metadata_used)
        .saturating_sub(u.global_reserve);
    let meta_room = meta_free + (u.unallocated as f64 / u.metadata_ratio) as u64;
    let total = ((u.device_size as f64 / u.data_ratio) as u64).max(1);
    if meta_room < headroom {
        return Space {
            free_bytes: 0,
            total_bytes: total,
            scarce: Scarce::Metadata,
        };
    }
    // Unallocated space also has to provide the metadata headroom not yet allocated.
    let meta_to_allocate = headroom.saturating_sub(meta_free);
    let unalloc_for_data = u
        .unallocated
        .saturating_sub((meta_to_allocate as f64 * u.metadata_ratio) as u64);
    let data_room =
        u.data_size.saturating_sub(u.data_used) + (unalloc_for_data as f64 / u.data_ratio) as u64;
    let meta_share = (total as f64 * metadata_free_fraction(u)) as u64;
    let data = data_room.min(statvfs.free_bytes);
    if meta_share < data {
        Space {
            free_bytes: meta_share,
            total_bytes: total,
            scarce: Scarce::Metadata,
        }
    } else {
        Space {
            free_bytes: data,
            total_bytes: total,
            scarce: Scarce::Data,
        }
    }
}

/// The store's really writable space.
pub fn measure(path: &Path) -> Result<Space> {
    Ok(read(path, true)?.space)
}

/// A store's space and what its filesystem has spent on metadata so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub space: Space,
    /// Metadata in use, in bytes the store pays for: on btrfs the metadata
    /// used times its ratio (both copies of DUP); elsewhere the inodes in
    /// use, each at the filesystem's bytes per inode (see
    /// [`crate::sys::fs::Statvfs::bytes_per_inode`]).
    pub metadata_spent: u64,
}

/// Reads the store at `path` (through btrfs's own figures if `btrfs`).
pub fn read(path: &Path, btrfs: bool) -> Result<Reading> {
    let st = crate::sys::fs::statvfs(path)?;
    let statvfs = crate::sys::fs::space_of(&st);
    if !btrfs {
        return Ok(Reading {
            space: statvfs,
            metadata_spent: st.inode_bytes_used(),
        });
    }
    let u = usage(path)?;
    Ok(Reading {
        space: writable(&u, statvfs),
        metadata_spent: (u.metadata_used as f64 * u.metadata_ratio) as u64,
    })
}

/// What a transfer spent on metadata between two readings (pure): the
/// growth of the filesystem's figure, never less than nothing. The figure
/// is the whole filesystem's, so a concurrent receive's metadata may be
/// counted too (an overcharge only reclaims unsnapshotted data sooner; it
/// never costs history), and a concurrent deletion may hide some (which
/// frees at least as much as it hides).
pub fn spent(before: Option<Reading>, after: Option<Reading>) -> u64 {
    match (before, after) {
        (Some(b), Some(a)) => a.metadata_spent.saturating_sub(b.metadata_spent),
        _ => 0,
    }
}

impl Space {
    /// Free space as a percentage of the total.
    pub fn free_percent(&self) -> f64 {
        self.free_bytes as f64 * 100.0 / self.total_bytes.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str =
        "WARNING: cannot read detailed chunk info, per-device usage will not be shown, run as root
Overall:
    Device size:\t\t         536870912
    Device allocated:\t\t          92274688
    Device unallocated:\t\t         444596224
    Device missing:\t\t                 0
    Used:\t\t\t            360448
    Free (estimated):\t\t         452984832\t(min: 230686720)
    Data ratio:\t\t\t              1.00
    Metadata ratio:\t\t              2.00
    Global reserve:\t\t           5767168\t(used: 0)
    Multiple profiles:\t\t                no

Data,single: Size:8388608, Used:1048576 (12.50%)

Metadata,DUP: Size:33554432, Used:163840 (0.49%)

System,DUP: Size:8388608, Used:16384 (0.20%)
";

    fn statvfs(free: u64) -> Space {
        Space {
            free_bytes: free,
            total_bytes: 536870912,
            scarce: Scarce::Data,
        }
    }

    #[test]
    fn parses_unprivileged_output() {
        let u = parse_usage(SAMPLE).unwrap();
        assert_eq!(u.device_size, 536870912);
        assert_eq!(u.unallocated, 444596224);
        assert_eq!((u.data_size, u.data_used), (8388608, 1048576));
        assert_eq!((u.metadata_size, u.metadata_used), (33554432, 163840));
        assert_eq!((u.data_ratio, u.metadata_ratio), (1.0, 2.0));
        assert_eq!(u.global_reserve, 5767168);
        assert_eq!(parse_usage("garbage"), None);
    }

    #[test]
    fn statvfs_caps_the_estimate() {
        let u = parse_usage(SAMPLE).unwrap();
        let s = writable(&u, statvfs(100 << 20));
        assert_eq!(s.free_bytes, 100 << 20);
        let s = writable(&u, statvfs(u64::MAX));
        // Allocated-but-unused data plus unallocated space.
        assert_eq!(s.free_bytes, 7340032 + 444596224);
    }

    #[test]
    fn full_metadata_means_nothing_is_writable() {
        // No unallocated space, metadata used up to the reserve: statvfs may
        // still claim room in data chunks, but nothing can be written.
        let u = BtrfsUsage {
            device_size: 1 << 30,
            unallocated: 0,
            data_size: 900 << 20,
            data_used: 700 << 20,
            metadata_size: 100 << 20,
            metadata_used: 95 << 20,
            data_ratio: 1.0,
            metadata_ratio: 2.0,
            global_reserve: 4 << 20,
        };
        assert_eq!(writable(&u, statvfs(200 << 20)).free_bytes, 0);
        // With some unallocated space metadata can grow again; it is still
        // the scarcer (95% used, room for about a sixth more), data has
        // over 200 MiB.
        let u = BtrfsUsage {
            unallocated: 64 << 20,
            ..u
        };
        let s = writable(&u, statvfs(u64::MAX));
        assert_eq!(s.scarce, Scarce::Metadata, "{s:?}");
        assert!(s.free_percent() > 10.0 && s.free_percent() < 20.0, "{s:?}");
        // With plenty unallocated, data is the scarcer again.
        let u = BtrfsUsage {
            unallocated: 400 << 20,
            ..u
        };
        let s = writable(&u, statvfs(u64::MAX));
        assert_eq!(s.scarce, Scarce::Data, "{s:?}");
        assert!(
            s.free_bytes > 200 << 20 && s.free_bytes < (200 + 400) << 20,
            "{s:?}"
        );
        assert!(
            (s.free_percent() - s.free_bytes as f64 * 100.0 / (1u64 << 30) as f64).abs() < 1e-9
        );
    }

    #[test]
    fn nearly_full_metadata_reads_as_short_of_space() {
        // The audit's store: 384 MiB, metadata DUP 155 MiB allocated with
        // 146 MiB used, nothing unallocated, data chunks with room to spare.
        let u = BtrfsUsage {
            device_size: 384 << 20,
            unallocated: 0,
            data_size: 64 << 20,
            data_used: 10 << 20,
            metadata_size: 155 << 20,
            metadata_used: 146 << 20,
            data_ratio: 1.0,
            metadata_ratio: 2.0,
            global_reserve: 3 << 20,
        };
        let s = writable(&u, statvfs(54 << 20));
        assert_eq!(s.scarce, Scarce::Metadata);
        assert!(s.free_percent() < 5.0, "{s:?} {}", s.free_percent());
        // The same metadata with room to grow into: healthy again.
        let roomy = BtrfsUsage {
            device_size: 1 << 30,
            unallocated: 600 << 20,
            ..u
        };
        let s = writable(&roomy, statvfs(u64::MAX));
        assert!(s.free_percent() > 30.0, "{s:?}");
        // A large store whose metadata is a small part of it, half used
        // and nothing unallocated, has plenty of room.
        let big = BtrfsUsage {
            device_size: 1 << 40,
            unallocated: 0,
            data_size: (1 << 40) - (32 << 30),
            data_used: 600 << 30,
            metadata_size: 16 << 30,
            metadata_used: 8 << 30,
            data_ratio: 1.0,
            metadata_ratio: 2.0,
            global_reserve: 512 << 20,
        };
        let s = writable(&big, statvfs(u64::MAX));
        assert!(s.free_percent() > 10.0, "{s:?}");
        // What metadata costs is counted with both copies.
        assert_eq!(
            metadata_free_fraction(&BtrfsUsage {
                metadata_ratio: 2.0,
                ..BtrfsUsage::default()
            }),
            1.0
        );
        // What a 512 MiB test store read at ENOSPC: 23.8 of 32 MiB used, the
        // reserve 5.5 MiB: no room at all.
        let enospc = BtrfsUsage {
            device_size: 512 << 20,
            unallocated: 1 << 20,
            data_size: 431 << 20,
            data_used: 208 << 20,
            metadata_size: 32 << 20,
            metadata_used: 23822336,
            data_ratio: 1.0,
            metadata_ratio: 2.0,
            global_reserve: 5767168,
        };
        let s = writable(&enospc, statvfs(u64::MAX));
        assert_eq!(s.scarce, Scarce::Metadata);
        assert!(s.free_percent() < 2.0, "{s:?}");
        let a = Reading {
            space: s,
            metadata_spent: 100,
        };
        let b = Reading {
            metadata_spent: 350,
            ..a
        };
        assert_eq!(spent(Some(a), Some(b)), 250);
        assert_eq!(spent(Some(b), Some(a)), 0, "never less than nothing");
        assert_eq!(spent(None, Some(b)), 0);
    }
}
