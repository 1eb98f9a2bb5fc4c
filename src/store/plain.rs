//! The plain-directory backend, for stores on any POSIX filesystem.
//!
//! Each backup is received into a fresh `current` with rsync's
//! `--link-dest` pointing at the newest snapshot (and at what an interrupted
//! attempt already transferred): unchanged files — same content *and*
//! metadata — become hard links to the snapshot's, everything else is a new
//! file. rsync never writes into a link-dest file, and nothing is ever
//! written in place, so no byte and no metadata of a snapshot can change.
//! A snapshot is taken by renaming `current` (atomic); a deletion first
//! renames the snapshot to a hidden `.deleting-*` name (atomic, so it is
//! never listed half-deleted) and then removes the tree; leftovers of a
//! crash are finished on the next run.
//!
//! An incremental transfer (the client's change index) sends only what
//! changed, so `current` must hold the rest first: it is made a hard-link
//! tree of the newest snapshot, as rsnapshot does (directories are new,
//! with the snapshot's metadata; every other file is a link), *less* the
//! paths the client said it will send. Those arrive as new files; with
//! `--ignore-existing` rsync never touches a file that is there, and
//! without `--inplace` it never writes into one: so no inode a snapshot
//! holds is ever written.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// Prefix of an interrupted attempt's tree, kept as a `--link-dest` so the
/// next attempt resumes from what it transferred.
const PARTIAL_PREFIX: &str = ".partial-";
/// Prefix of a snapshot being deleted.
const DELETING_PREFIX: &str = ".deleting-";
/// How many interrupted attempts are kept to resume from.
const KEEP_PARTIALS: usize = 3;

fn hidden_dirs(client_dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(client_dir)
        .on("cannot list", client_dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    found.sort();
    Ok(found)
}

/// Readies `current` for a new attempt and returns the `--link-dest`
/// directories (relative to `current`), most useful first. A non-empty
/// `current` is an interrupted attempt (or a backup whose snapshot was
/// refused): it is set aside and linked from, never written into again.
pub fn prepare_current(client_dir: &Path, newest_snapshot: Option<&str>) -> Result<Vec<String>> {
    finish_deletions(client_dir)?;
    let current = client_dir.join("current");
    let used = std::fs::read_dir(&current)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if used {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let aside = client_dir.join(format!("{PARTIAL_PREFIX}{stamp:032}"));
        std::fs::rename(&current, &aside).on("cannot set aside", &current)?;
    }
    if std::fs::symlink_metadata(&current).is_err() {
        std::fs::create_dir(&current).on("cannot create", &current)?;
    }
    let mut partials = hidden_dirs(client_dir, PARTIAL_PREFIX)?;
    while partials.len() > KEEP_PARTIALS {
        remove_tree(&partials.remove(0))?;
    }
    let mut link_dests: Vec<String> = partials
        .iter()
        .rev()
        .filter_map(|p| p.file_name().map(|n| format!("../{}", n.to_string_lossy())))
        .collect();
    if let Some(newest) = newest_snapshot {
        link_dests.push(format!("../{newest}"));
    }
    Ok(link_dests)
}

/// Readies `current` for an incremental transfer: a hard-link tree of the
/// snapshot `newest`, less the paths in `replace` (relative, with all below
/// them). A `current` that holds anything (an interrupted attempt) is set
/// aside first, as for a full transfer.
pub fn prepare_incremental(
    client_dir: &Path,
    newest: &str,
    replace: &HashSet<Vec<u8>>,
) -> Result<()> {
    prepare_current(client_dir, None)?;
    let current = client_dir.join("current");
    link_tree(&client_dir.join(newest), &current, &mut Vec::new(), replace)
}

/// Recreates the directory `from/rel` at `to/rel` (`rel` empty: the roots)
/// with hard links to its files, skipping what `replace` names; then gives
/// the directory the original's mode, owner, xattrs and times.
///
/// A snapshot is a plain tree, so the new one needs an entry of its own for
/// every file: one `linkat` each is the floor (issue 24, see
/// bench/PER-FILE-COSTS.md). Both directories are held open while their
/// files are linked, so each link is resolved from a descriptor instead of
/// walking two full paths from `/`, and a directory's own metadata is read
/// and written through them; only the two descriptors of one directory are
/// open at a time, however deep the tree.
fn link_tree(from: &Path, to: &Path, rel: &mut Vec<u8>, replace: &HashSet<Vec<u8>>) -> Result<()> {
    use rustix::fs::{AtFlags, CWD, Mode, OFlags};
    let join = |root: &Path, rel: &[u8]| -> PathBuf {
        if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(OsStr::from_bytes(rel))
        }
    };
    let (src, dst) = (join(from, rel), join(to, rel));
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let src_fd = rustix::fs::openat(CWD, &src, dir_flags, Mode::empty())
        .map_err(|e| Error::io("cannot open", &src, e.into()))?;
    let meta = rustix::fs::fstat(&src_fd).map_err(|e| Error::io("cannot read", &src, e.into()))?;
    if !rel.is_empty() {
        // Writable while it is filled; the snapshot's mode comes last.
        rustix::fs::mkdirat(CWD, &dst, Mode::from_raw_mode(0o700))
            .map_err(|e| Error::io("cannot create", &dst, e.into()))?;
    }
    let dst_fd = rustix::fs::openat(CWD, &dst, dir_flags, Mode::empty())
        .map_err(|e| Error::io("cannot open", &dst, e.into()))?;
    if rel.is_empty() {
        rustix::fs::fchmod(&dst_fd, Mode::from_raw_mode(0o700))
            .map_err(|e| Error::io("cannot chmod", &dst, e.into()))?;
    }
    copy_dir_xattrs(&src_fd, &src, &dst_fd, &dst)?;
    if rustix::process::geteuid().is_root() {
        rustix::fs::fchown(
            &dst_fd,
            Some(rustix::fs::Uid::from_raw(meta.st_uid)),
            Some(rustix::fs::Gid::from_raw(meta.st_gid)),
        )
        .map_err(|e| Error::io("cannot chown", &dst, e.into()))?;
    }
    let mut subdirs: Vec<Vec<u8>> = Vec::new();
    let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 64 * 1024];
    let mut dir = rustix::fs::RawDir::new(&src_fd, &mut buf);
    while let Some(item) = dir.next() {
        let item = item.map_err(|e| Error::io("cannot list", &src, e.into()))?;
        let name = item.file_name();
        if matches!(name.to_bytes(), b"." | b"..") {
            continue;
        }
        let len = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.to_bytes());
        if !replace.contains(rel.as_slice()) {
            let is_dir = match item.file_type() {
                rustix::fs::FileType::Unknown => {
                    rustix::fs::statat(&src_fd, name, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| Error::io("cannot read", &join(from, rel), e.into()))?
                        .st_mode
                        & 0o170000
                        == 0o040000
                }
                kind => kind == rustix::fs::FileType::Directory,
            };
            if is_dir {
                subdirs.push(name.to_bytes().to_vec());
            } else {
                // Without AT_SYMLINK_FOLLOW: a symlink is linked as itself.
                rustix::fs::linkat(&src_fd, name, &dst_fd, name, AtFlags::empty())
                    .map_err(|e| Error::io("cannot link", &join(to, rel), e.into()))?;
            }
        }
        rel.truncate(len);
    }
    // Closed before going down, so the tree's depth costs no descriptors.
    drop((buf, src_fd, dst_fd));
    for name in subdirs {
        let len = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(&name);
        link_tree(from, to, rel, replace)?;
        rel.truncate(len);
    }
    // Mode and times last: linking and creating changed the times, and the
    // mode may forbid writing.
    rustix::fs::chmodat(
        CWD,
        &dst,
        Mode::from_raw_mode(meta.st_mode & 0o7777),
        AtFlags::empty(),
    )
    .map_err(|e| Error::io("cannot chmod", &dst, e.into()))?;
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: meta.st_atime as _,
            tv_nsec: meta.st_atime_nsec as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: meta.st_mtime as _,
            tv_nsec: meta.st_mtime_nsec as _,
        },
    };
    rustix::fs::utimensat(CWD, &dst, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::io("cannot set the times of", &dst, e.into()))
}

/// Copies a directory's xattrs (rsync's `--fake-super` keeps its owner and
/// mode in one), through descriptors.
fn copy_dir_xattrs(
    src_fd: &rustix::fd::OwnedFd,
    src: &Path,
    dst_fd: &rustix::fd::OwnedFd,
    dst: &Path,
) -> Result<()> {
    let mut names = vec![0u8; 64 * 1024];
    let n = rustix::fs::flistxattr(src_fd, &mut names)
        .map_err(|e| Error::io("cannot read xattrs of", src, e.into()))?;
    let mut value = vec![0u8; 64 * 1024];
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = std::ffi::CString::new(name) else {
            continue;
        };
        let len = rustix::fs::fgetxattr(src_fd, name.as_c_str(), &mut value)
            .map_err(|e| Error::io("cannot read xattrs of", src, e.into()))?;
        let set = rustix::fs::fsetxattr(
            dst_fd,
            name.as_c_str(),
            &value[..len],
            rustix::fs::XattrFlags::empty(),
        );
        // security.* labels are the system's own, set on the new directory by it.
        if let Err(e) = set {
            if !name.as_bytes().starts_with(b"security.") {
                return Err(Error::io("cannot set xattrs of", dst, e.into()));
            }
        }
    }
    Ok(())
}

/// Takes the snapshot: `current` becomes `dest` in one rename, and an empty
/// `current` takes its place. The attempts it resumed from are dropped.
pub fn snapshot(client_dir: &Path, dest: &Path) -> Result<()> {
    let current = client_dir.join("current");
    std::fs::rename(&current, dest).on("cannot snapshot", &current)?;
    std::fs::create_dir(&current).on("cannot create", &current)?;
    for partial in hidden_dirs(client_dir, PARTIAL_PREFIX)? {
        remove_tree(&partial)?;
    }
    Ok(())
}

/// Deletes a snapshot: hidden first, so it is never seen half-deleted.
pub fn delete(client_dir: &Path, name: &str) -> Result<()> {
    let path = client_dir.join(name);
    let doomed = client_dir.join(format!("{DELETING_PREFIX}{name}"));
    std::fs::rename(&path, &doomed).on("cannot delete", &path)?;
    crate::sys::crash::point("mid-delete");
    remove_tree(&doomed)
}

/// Discards what no snapshot holds: `current` and the interrupted attempts
/// kept to resume from. `current` is hidden first (atomic) and replaced by
/// an empty one, so a crash leaves only a `.deleting-*` tree to finish.
pub fn discard_current(client_dir: &Path) -> Result<()> {
    let current = client_dir.join("current");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let doomed = client_dir.join(format!("{DELETING_PREFIX}current-{stamp}"));
    std::fs::rename(&current, &doomed).on("cannot set aside", &current)?;
    std::fs::create_dir(&current).on("cannot create", &current)?;
    for partial in hidden_dirs(client_dir, PARTIAL_PREFIX)? {
        remove_tree(&partial)?;
    }
    remove_tree(&doomed)
}

/// Removes a client's directory once its snapshots are deleted: `current`,
/// the interrupted attempts, what a crash left.
pub fn remove_client_dir(client_dir: &Path) -> Result<()> {
    finish_deletions(client_dir)?;
    remove_tree(client_dir)
}

/// Finishes deletions a crash interrupted.
pub fn finish_deletions(client_dir: &Path) -> Result<()> {
    for doomed in hidden_dirs(client_dir, DELETING_PREFIX)? {
        remove_tree(&doomed)?;
    }
    Ok(())
}

/// Removes a tree, first giving its owner write access to directories that
/// rsync stored read-only.
fn remove_tree(path: &Path) -> Result<()> {
    if std::fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    make_dirs_writable(path);
    std::fs::remove_dir_all(path).map_err(|e| Error::io("cannot remove", path, e))
}

fn make_dirs_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            make_dirs_writable(&entry.path());
        }
    }
}

/// Whether hard links and user xattrs (for rsync's `--fake-super`) work in `dir`.
pub fn check_filesystem(dir: &Path) -> Result<()> {
    let probe = dir.join(format!(".setup-check-{}", std::process::id()));
    let link = dir.join(format!(".setup-check-{}-link", std::process::id()));
    let result = (|| {
        std::fs::write(&probe, b"").on("cannot write", &probe)?;
        std::fs::hard_link(&probe, &link).map_err(|e| {
            Error::Unsupported(format!(
                "the filesystem at {} cannot make hard links ({e}), which unchanged files in snapshots need",
                dir.display()
            ))
        })?;
        rustix::fs::setxattr(&probe, "user.byteback.check", b"1", rustix::fs::XattrFlags::empty()).map_err(|e| {
            Error::Unsupported(format!(
                "the filesystem at {} does not store user xattrs ({e}), which keep the clients' owners and modes: mount it with user_xattr",
                dir.display()
            ))
        })
    })();
    let _ = std::fs::remove_file(&link);
    let _ = std::fs::remove_file(&probe);
    result
}
