//! Filesystem facts and atomic writes.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// `f_type` of btrfs, from statfs(2).
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;

/// Space on a filesystem, from statvfs(2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes an unprivileged user can still write.
    pub free_bytes: u64,
    /// Size of the filesystem.
    pub total_bytes: u64,
}

/// How much room the filesystem holding `path` has.
pub fn space(path: &Path) -> Result<Space> {
    let st = rustix::fs::statvfs(path).map_err(|e| Error::io("cannot statvfs", path, e.into()))?;
    Ok(Space {
        free_bytes: st.f_bavail.saturating_mul(st.f_frsize),
        total_bytes: st.f_blocks.saturating_mul(st.f_frsize),
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
