//! Filesystem facts and atomic writes.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// `f_type` of btrfs, from statfs(2).
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;

/// Space on a filesystem, from statvfs(2) (and on btrfs its own figures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes an unprivileged user can still write: the data room, or less
    /// when metadata or inodes are scarcer (then the same share of the
    /// total as what is left of those).
    pub free_bytes: u64,
    /// Size of the filesystem.
    pub total_bytes: u64,
    /// What `free_bytes` is limited by.
    pub scarce: Scarce,
}

/// What runs out first on a filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scarce {
    /// Room for data.
    #[default]
    Data,
    /// btrfs metadata ("metadata cannot be allocated" is no free space).
    Metadata,
    /// Inodes (ext4 and others with a fixed inode table).
    Inodes,
}

/// How much room the filesystem holding `path` has: the smaller share of
/// bytes and inodes left (a filesystem without a fixed inode count, such
/// as btrfs, reports none, and only bytes count).
pub fn space(path: &Path) -> Result<Space> {
    Ok(space_of(&statvfs(path)?))
}

/// The figures of statvfs(2) this module uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct Statvfs {
    pub bavail: u64,
    pub blocks: u64,
    pub frsize: u64,
    pub files: u64,
    pub ffree: u64,
    pub favail: u64,
}

impl Statvfs {
    /// What an inode in use costs, in bytes of the filesystem: its share of
    /// the total (so that using up x% of the inodes costs x% of the store),
    /// and at least 256 bytes, ext4's inode size. 0 without an inode table.
    pub fn bytes_per_inode(&self) -> u64 {
        if self.files == 0 {
            return 0;
        }
        (self.blocks.saturating_mul(self.frsize) / self.files).max(256)
    }

    /// Inodes in use, charged at [`Statvfs::bytes_per_inode`].
    pub fn inode_bytes_used(&self) -> u64 {
        self.files
            .saturating_sub(self.ffree)
            .saturating_mul(self.bytes_per_inode())
    }
}

/// [`space`] from statvfs's figures (pure).
pub fn space_of(st: &Statvfs) -> Space {
    let total_bytes = st.blocks.saturating_mul(st.frsize);
    let free_bytes = st.bavail.saturating_mul(st.frsize);
    if st.files > 0 {
        let by_inodes =
            u128::from(total_bytes) * u128::from(st.favail.min(st.files)) / u128::from(st.files);
        let by_inodes = u64::try_from(by_inodes).unwrap_or(u64::MAX);
        if by_inodes < free_bytes {
            return Space {
                free_bytes: by_inodes,
                total_bytes,
                scarce: Scarce::Inodes,
            };
        }
    }
    Space {
        free_bytes,
        total_bytes,
        scarce: Scarce::Data,
    }
}

/// statvfs's figures for the filesystem holding `path`.
pub fn statvfs(path: &Path) -> Result<Statvfs> {
    let st = rustix::fs::statvfs(path).map_err(|e| Error::io("cannot statvfs", path, e.into()))?;
    Ok(Statvfs {
        bavail: st.f_bavail,
        blocks: st.f_blocks,
        frsize: st.f_frsize,
        files: st.f_files,
        ffree: st.f_ffree,
        favail: st.f_favail,
    })
}

/// Whether `path` lives on btrfs.
pub fn is_btrfs(path: &Path) -> Result<bool> {
    let st = rustix::fs::statfs(path).map_err(|e| Error::io("cannot statfs", path, e.into()))?;
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as i64 == BTRFS_SUPER_MAGIC)
}

/// The mount holding `path` (canonicalised), if the mount table says.
pub fn mount_of(path: &Path) -> Option<crate::sys::mountinfo::Mount> {
    let canonical = std::fs::canonicalize(path).ok()?;
    let mounts = crate::sys::mountinfo::read().ok()?;
    crate::sys::mountinfo::mount_of(&mounts, &canonical).cloned()
}

/// Writes `contents` to `path` atomically: a temporary file in the same
/// directory, fsync, rename, fsync of the directory. Readers see the old
/// file or the new one, never a torn one.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    write_atomic_with(path, mode, |w| w.write_all(contents))
}

/// [`write_atomic`] for contents written piece by piece by `fill` (through
/// a buffer), so they need not be in memory at once.
pub fn write_atomic_with(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .on("cannot create", &tmp)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .on("cannot chmod", &tmp)?;
        let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
        fill(&mut out).on("cannot write", &tmp)?;
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .on("cannot write", &tmp)?;
        file.sync_all().on("cannot fsync", &tmp)?;
        std::fs::rename(&tmp, path).on("cannot rename into place", path)?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .on("cannot fsync", dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir` (and parents) if missing and sets its mode.
pub fn ensure_dir(dir: &Path, mode: u32) -> Result<()> {
    std::fs::create_dir_all(dir).on("cannot create directory", dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).on("cannot chmod", dir)
}

/// `1.5 GiB` and the like.
pub fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

#[cfg(test)]
mod space_tests {
    use super::*;

    #[test]
    fn inodes_count_like_bytes() {
        // 1 GiB, 65536 inodes (16 KiB each), half the bytes free.
        let st = Statvfs {
            bavail: 131072,
            blocks: 262144,
            frsize: 4096,
            files: 65536,
            ffree: 60000,
            favail: 60000,
        };
        let s = space_of(&st);
        assert_eq!((s.free_bytes, s.scarce), (512 << 20, Scarce::Data));
        assert_eq!(st.bytes_per_inode(), 16384);
        assert_eq!(st.inode_bytes_used(), 5536 * 16384);
        // Nearly all inodes taken by empty files: short of space, whatever
        // the bytes say.
        let full = Statvfs {
            ffree: 600,
            favail: 600,
            ..st
        };
        let s = space_of(&full);
        assert_eq!(s.scarce, Scarce::Inodes);
        assert!(s.free_percent() < 1.0, "{s:?}");
        // btrfs reports no inode table: bytes only.
        let none = Statvfs {
            files: 0,
            ffree: 0,
            favail: 0,
            ..st
        };
        assert_eq!(space_of(&none).scarce, Scarce::Data);
        assert_eq!(none.inode_bytes_used(), 0);
    }
}
