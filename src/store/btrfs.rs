//! The btrfs operations the store needs, through btrfs-progs.
//!
//! All of them work as the unprivileged owner of the store: creating
//! subvolumes and read-only snapshots of subvolumes one owns needs no
//! privilege, and deleting them needs the mount option
//! `user_subvol_rm_allowed`.

use std::path::Path;
use std::process::Command;

use crate::error::Result;
use crate::exec;

fn btrfs() -> Command {
    Command::new("btrfs")
}

/// Creates an empty subvolume at `path`.
pub fn create_subvolume(path: &Path) -> Result<()> {
    exec::run(btrfs().args(["subvolume", "create"]).arg(path)).map(drop)
}

/// Takes a read-only snapshot of `source` at `dest`, atomically.
pub fn snapshot_readonly(source: &Path, dest: &Path) -> Result<()> {
    exec::run(
        btrfs()
            .args(["subvolume", "snapshot", "-r"])
            .arg(source)
            .arg(dest),
    )
    .map(drop)
}

/// Deletes the subvolume at `path` (its read-only flag must be cleared first).
pub fn delete_subvolume(path: &Path) -> Result<()> {
    exec::run(btrfs().args(["subvolume", "delete"]).arg(path)).map(drop)
}

/// Clears the read-only flag of a snapshot, so its owner may delete it.
pub fn make_writable(path: &Path) -> Result<()> {
    exec::run(
        btrfs()
            .args(["property", "set", "-ts"])
            .arg(path)
            .args(["ro", "false"]),
    )
    .map(drop)
}

/// Whether the snapshot at `path` is read-only.
pub fn is_readonly(path: &Path) -> Result<bool> {
    let out = exec::run(btrfs().args(["property", "get", "-ts"]).arg(path).arg("ro"))?;
    Ok(out.trim() == "ro=true")
}

/// Whether `path` is the root of a subvolume (btrfs gives those inode 256).
pub fn is_subvolume(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir() && m.ino() == 256)
}
