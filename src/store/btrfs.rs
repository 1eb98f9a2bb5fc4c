//! The btrfs operations the store needs, through btrfs-progs.
//!
//! All of them work as the unprivileged owner of the store: creating
//! subvolumes and read-only snapshots of subvolumes one owns needs no
//! privilege, and deleting them needs the mount option
//! `user_subvol_rm_allowed`.

use std::path::Path;

use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::sys::fs;

/// A btrfs command that changes the filesystem.
fn btrfs() -> Cmd {
    Cmd::new("btrfs")
}

/// Checks that `store` can hold a btrfs store for its unprivileged owner:
/// btrfs, mounted so the owner may delete subvolumes, and a scratch
/// subvolume can be made and deleted in `state_dir`.
pub fn check_store(store: &Path, state_dir: &Path) -> Result<()> {
    check_mount(store)?;
    check_subvolumes(state_dir)
}

/// A btrfs store must be btrfs, and (for an unprivileged owner) mounted so
/// that its owner may delete subvolumes.
fn check_mount(store: &Path) -> Result<()> {
    let mount = fs::mount_of(store);
    if !fs::is_btrfs(store)? {
        let kind = mount.as_ref().map_or("unknown", |m| m.fs_type.as_str());
        return Err(Error::Unsupported(format!(
            "store {} is on {kind}, not btrfs: mount a btrfs filesystem there (mkfs.btrfs, then mount it with -o user_subvol_rm_allowed), or use the plain backend",
            store.display()
        )));
    }
    let rm_allowed = mount.as_ref().is_some_and(|m| {
        m.super_options
            .split(',')
            .any(|o| o == "user_subvol_rm_allowed")
    });
    if !rm_allowed && !rustix::process::geteuid().is_root() {
        let at = mount.as_ref().map_or(store, |m| m.mount_point.as_path());
        return Err(Error::Unsupported(format!(
            "the btrfs at {} is mounted without user_subvol_rm_allowed, so the backup user could never delete old snapshots: add user_subvol_rm_allowed to its options in /etc/fstab (e.g. `UUID=... {} btrfs defaults,user_subvol_rm_allowed 0 0`) and run `mount -o remount {}`",
            at.display(),
            at.display(),
            at.display()
        )));
    }
    Ok(())
}

/// Creates and deletes a scratch subvolume to prove the user may do both.
fn check_subvolumes(state: &Path) -> Result<()> {
    let probe = state.join(format!(".setup-check-{}", std::process::id()));
    create_subvolume(&probe).map_err(|e| {
        Error::Unsupported(format!(
            "cannot create btrfs subvolumes in {}: {e}; the backup user must own the store",
            state.display()
        ))
    })?;
    delete_subvolume(&probe).map_err(|e| {
        Error::Unsupported(format!(
            "cannot delete btrfs subvolumes in {}: {e}; mount the store with -o user_subvol_rm_allowed",
            state.display()
        ))
    })
}

/// Creates an empty subvolume at `path`.
pub fn create_subvolume(path: &Path) -> Result<()> {
    btrfs()
        .args(["subvolume", "create"])
        .arg(path)
        .run()
        .map(drop)
}

/// Takes a read-only snapshot of `source` at `dest`, atomically.
pub fn snapshot_readonly(source: &Path, dest: &Path) -> Result<()> {
    btrfs()
        .args(["subvolume", "snapshot", "-r"])
        .arg(source)
        .arg(dest)
        .run()
        .map(drop)
}

/// Deletes the subvolume at `path` (its read-only flag must be cleared first).
pub fn delete_subvolume(path: &Path) -> Result<()> {
    btrfs()
        .args(["subvolume", "delete"])
        .arg(path)
        .run()
        .map(drop)
}

/// Prefix of a snapshot being deleted: hidden from every listing.
const DELETING_PREFIX: &str = ".deleting-";

/// Deletes a snapshot, hidden first (a rename, which a read-only subvolume
/// allows), so a crash never leaves a listed snapshot made writable: it
/// leaves a hidden one that [`finish_deletions`] removes.
pub fn delete_snapshot(client_dir: &Path, name: &str) -> Result<()> {
    finish_deletions(client_dir)?;
    let path = client_dir.join(name);
    let doomed = client_dir.join(format!("{DELETING_PREFIX}{name}"));
    std::fs::rename(&path, &doomed).map_err(|e| Error::io("cannot delete", &path, e))?;
    crate::sys::crash::point("mid-delete");
    delete_hidden(&doomed)
}

/// Finishes deletions a crash interrupted.
pub fn finish_deletions(client_dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(client_dir) else {
        return Ok(());
    };
    for entry in entries.filter_map(|e| e.ok()) {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(DELETING_PREFIX)
        {
            delete_hidden(&entry.path())?;
        }
    }
    Ok(())
}

fn delete_hidden(doomed: &Path) -> Result<()> {
    // The owner may only delete writable subvolumes.
    if is_readonly(doomed)? {
        make_writable(doomed)?;
    }
    delete_subvolume(doomed)
}

/// Takes a writable snapshot of `source` at `dest`.
pub fn snapshot_writable(source: &Path, dest: &Path) -> Result<()> {
    btrfs()
        .args(["subvolume", "snapshot"])
        .arg(source)
        .arg(dest)
        .run()
        .map(drop)
}

/// Replaces the subvolume `<client_dir>/current` by a writable snapshot of
/// `newest` (or an empty subvolume), discarding what it held. The new one
/// is made aside and swapped in with one atomic exchange, so `current`
/// never goes missing; if the disk is too full to make it first, the old
/// one is deleted first.
pub fn roll_back(client_dir: &Path, newest: Option<&Path>) -> Result<()> {
    let current = client_dir.join("current");
    let aside = client_dir.join(".rollback-current");
    if std::fs::symlink_metadata(&aside).is_ok() {
        delete_subvolume(&aside)?;
    }
    let make = |at: &Path| match newest {
        Some(snapshot) if owned_by_us(snapshot) => snapshot_writable(snapshot, at),
        // In hardened mode snapshots are root's, and btrfs lets a user
        // snapshot only their own subvolumes: a reflinked copy shares the
        // snapshot's extents just the same, at the cost of walking it.
        Some(snapshot) => {
            create_subvolume(at)?;
            let mut from = snapshot.as_os_str().to_owned();
            from.push("/.");
            Cmd::new("cp")
                .args(["-a", "--reflink=always", "--"])
                .arg(from)
                .arg(at)
                .run()
                .map(drop)
        }
        None => create_subvolume(at),
    };
    match make(&aside) {
        Ok(()) => {
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &aside,
                rustix::fs::CWD,
                &current,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .map_err(|e| crate::error::Error::io("cannot swap in a new", &current, e.into()))?;
            delete_subvolume(&aside)
        }
        Err(_) => {
            delete_subvolume(&current)?;
            make(&current)
        }
    }
}

/// Whether the running user owns `path` (and may snapshot it, if a subvolume).
fn owned_by_us(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.uid() == rustix::process::geteuid().as_raw())
}

/// Removes `dir` and everything in it: each subvolume (`current`, a
/// rollback left aside) with `btrfs subvolume delete` (made writable first
/// if it is read-only), anything else as files and directories.
pub fn remove_tree(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("cannot list", dir, e))? {
        let path = entry.map_err(|e| Error::io("cannot list", dir, e))?.path();
        if is_subvolume(&path) {
            if is_readonly(&path)? {
                make_writable(&path)?;
            }
            delete_subvolume(&path)?;
        } else if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            remove_tree(&path)?;
        } else {
            std::fs::remove_file(&path).map_err(|e| Error::io("cannot remove", &path, e))?;
        }
    }
    std::fs::remove_dir(dir).map_err(|e| Error::io("cannot remove", dir, e))
}

/// Clears the read-only flag of a snapshot, so its owner may delete it.
pub fn make_writable(path: &Path) -> Result<()> {
    btrfs()
        .args(["property", "set", "-ts"])
        .arg(path)
        .args(["ro", "false"])
        .run()
        .map(drop)
}

/// Whether the snapshot at `path` is read-only.
pub fn is_readonly(path: &Path) -> Result<bool> {
    let out = Cmd::new("btrfs")
        .args(["property", "get", "-ts"])
        .arg(path)
        .arg("ro")
        .run()?;
    Ok(out.trim() == "ro=true")
}

/// Whether `path` is the root of a subvolume (btrfs gives those inode 256).
pub fn is_subvolume(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir() && m.ino() == 256)
}

/// `struct btrfs_ioctl_subvol_wait` of linux/btrfs.h (kernel 6.13+).
#[repr(C)]
struct SubvolWait {
    subvolid: u64,
    mode: u32,
    count: u32,
}

/// `BTRFS_SUBVOL_SYNC_WAIT_FOR_QUEUED`: wait for every deletion queued now.
const WAIT_FOR_QUEUED: u32 = 1;
const BTRFS_IOC_SYNC: rustix::ioctl::Opcode = rustix::ioctl::opcode::none(0x94, 8);
const SUBVOL_SYNC_WAIT: rustix::ioctl::Opcode =
    rustix::ioctl::opcode::write::<SubvolWait>(0x94, 65);

/// Waits until btrfs has cleaned up every deleted subvolume of the
/// filesystem holding `dir`, so their space is really free. `Ok(false)` if
/// the kernel cannot do that for this user (older than 6.13): the caller
/// then polls free space instead.
pub fn wait_for_deletions(dir: &Path) -> Result<bool> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| crate::error::Error::io("cannot open", dir, e.into()))?;
    // btrfs's cleaner thread drops deleted subvolumes after a transaction
    // commit, by default every 30 seconds. BTRFS_IOC_SYNC (no privilege
    // needed) commits now and wakes the cleaner, so the wait is short.
    // SAFETY: BTRFS_IOC_SYNC takes no argument.
    let synced =
        unsafe { rustix::ioctl::ioctl(&fd, rustix::ioctl::NoArg::<BTRFS_IOC_SYNC>::new()) };
    if let Err(e) = synced {
        return Err(crate::error::Error::io(
            "cannot sync btrfs at",
            dir,
            e.into(),
        ));
    }
    let args = SubvolWait {
        subvolid: 0,
        mode: WAIT_FOR_QUEUED,
        count: 0,
    };
    // SAFETY: the opcode is BTRFS_IOC_SUBVOL_SYNC_WAIT, whose argument is
    // exactly `struct btrfs_ioctl_subvol_wait`, mirrored by `SubvolWait`.
    let result = unsafe {
        rustix::ioctl::ioctl(
            &fd,
            rustix::ioctl::Setter::<SUBVOL_SYNC_WAIT, SubvolWait>::new(args),
        )
    };
    match result {
        Ok(()) => Ok(true),
        Err(
            rustix::io::Errno::NOTTY
            | rustix::io::Errno::INVAL
            | rustix::io::Errno::PERM
            | rustix::io::Errno::OPNOTSUPP,
        ) => Ok(false),
        // Nothing queued any more is success too.
        Err(rustix::io::Errno::NOENT) => Ok(true),
        Err(e) => Err(crate::error::Error::io(
            "cannot wait for btrfs cleanup in",
            dir,
            e.into(),
        )),
    }
}

// The ioctls the privileged helper uses on directories it has opened
// without following symlinks (see `crate::server::privileged`): acting on a
// file descriptor and a single name leaves no path for anyone to swap.

/// `BTRFS_SUBVOL_NAME_MAX` of linux/btrfs.h.
const SUBVOL_NAME_MAX: usize = 4039;
/// `BTRFS_PATH_NAME_MAX` of linux/btrfs.h.
const PATH_NAME_MAX: usize = 4087;
/// `BTRFS_SUBVOL_RDONLY`.
const SUBVOL_RDONLY: u64 = 1 << 1;

/// `struct btrfs_ioctl_vol_args_v2` (the name variant of its last union).
#[repr(C)]
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; SUBVOL_NAME_MAX + 1],
}

/// `struct btrfs_ioctl_vol_args`.
#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; PATH_NAME_MAX + 1],
}

const SNAP_CREATE_V2: rustix::ioctl::Opcode = rustix::ioctl::opcode::write::<VolArgsV2>(0x94, 23);
const SNAP_DESTROY: rustix::ioctl::Opcode = rustix::ioctl::opcode::write::<VolArgs>(0x94, 15);
const SUBVOL_GETFLAGS: rustix::ioctl::Opcode = rustix::ioctl::opcode::read::<u64>(0x94, 25);
const SUBVOL_SETFLAGS: rustix::ioctl::Opcode = rustix::ioctl::opcode::write::<u64>(0x94, 26);

/// A name for the ioctls: one path component, NUL-terminated within `N`.
fn component<const N: usize>(name: &str) -> std::io::Result<[u8; N]> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= N || bytes.contains(&b'/') || bytes.contains(&0) {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    let mut out = [0u8; N];
    out[..bytes.len()].copy_from_slice(bytes);
    Ok(out)
}

/// Takes a snapshot of the subvolume open as `source`, named `name` in the
/// directory open as `dir` — read-only from its first instant if `readonly`.
pub fn snapshot_at(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &str,
    source: std::os::fd::BorrowedFd<'_>,
    readonly: bool,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let args = VolArgsV2 {
        fd: i64::from(source.as_raw_fd()),
        transid: 0,
        flags: if readonly { SUBVOL_RDONLY } else { 0 },
        unused: [0; 4],
        name: component(name)?,
    };
    // SAFETY: the opcode is BTRFS_IOC_SNAP_CREATE_V2, whose argument is
    // `struct btrfs_ioctl_vol_args_v2`, mirrored by `VolArgsV2`.
    unsafe {
        rustix::ioctl::ioctl(
            dir,
            rustix::ioctl::Setter::<SNAP_CREATE_V2, VolArgsV2>::new(args),
        )
    }
    .map_err(Into::into)
}

/// Deletes the subvolume `name` in the directory open as `dir` (as root:
/// read-only or not).
pub fn destroy_at(dir: std::os::fd::BorrowedFd<'_>, name: &str) -> std::io::Result<()> {
    let args = VolArgs {
        fd: 0,
        name: component(name)?,
    };
    // SAFETY: the opcode is BTRFS_IOC_SNAP_DESTROY, whose argument is
    // `struct btrfs_ioctl_vol_args`, mirrored by `VolArgs`.
    unsafe {
        rustix::ioctl::ioctl(
            dir,
            rustix::ioctl::Setter::<SNAP_DESTROY, VolArgs>::new(args),
        )
    }
    .map_err(Into::into)
}

/// Whether the subvolume open as `subvol` is read-only.
pub fn readonly_at(subvol: std::os::fd::BorrowedFd<'_>) -> std::io::Result<bool> {
    // SAFETY: BTRFS_IOC_SUBVOL_GETFLAGS writes one u64.
    let flags = unsafe {
        rustix::ioctl::ioctl(subvol, rustix::ioctl::Getter::<SUBVOL_GETFLAGS, u64>::new())
    }?;
    Ok(flags & SUBVOL_RDONLY != 0)
}

/// Sets or clears the read-only flag of the subvolume open as `subvol`.
pub fn set_readonly_at(subvol: std::os::fd::BorrowedFd<'_>, readonly: bool) -> std::io::Result<()> {
    // SAFETY: BTRFS_IOC_SUBVOL_GETFLAGS writes one u64.
    let flags = unsafe {
        rustix::ioctl::ioctl(subvol, rustix::ioctl::Getter::<SUBVOL_GETFLAGS, u64>::new())
    }?;
    let flags = if readonly {
        flags | SUBVOL_RDONLY
    } else {
        flags & !SUBVOL_RDONLY
    };
    // SAFETY: BTRFS_IOC_SUBVOL_SETFLAGS reads one u64.
    unsafe {
        rustix::ioctl::ioctl(
            subvol,
            rustix::ioctl::Setter::<SUBVOL_SETFLAGS, u64>::new(flags),
        )
    }
    .map_err(Into::into)
}

/// Gives every multiply-linked regular file under `current` (or, with
/// `only`, at those relative paths) an inode of its own, before an
/// in-place transfer.
///
/// Why: rsync `--inplace` writes into the file that is there, and "hard
/// links are not broken" — so when a link is broken in the source (one
/// name replaced by a new file), writing the new content into `current`
/// would also change every other name of the old inode, whose files did
/// not change and are not sent again: the next snapshot would hold wrong
/// content under them. Each name here becomes a reflink copy (its data
/// shared, copy-on-write, so nothing is read or written but metadata) with
/// the same xattrs (where `--fake-super` keeps owner, mode and ACLs), mode
/// and times, renamed over it; rsync's `--hard-links` then links again the
/// names that are still one file in the source. Returns how many names
/// were given their own inode.
pub fn break_hard_links(
    current: &Path,
    only: Option<&std::collections::HashSet<Vec<u8>>>,
) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let mut broken = 0;
    match only {
        Some(paths) => {
            for rel in paths {
                let path = current.join(std::ffi::OsStr::from_bytes(rel));
                let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                    continue;
                };
                if !parent.starts_with(current) {
                    continue;
                }
                broken += break_one(parent, name)?;
            }
        }
        None => {
            let mut dirs = vec![current.to_path_buf()];
            while let Some(dir) = dirs.pop() {
                let entries =
                    std::fs::read_dir(&dir).map_err(|e| Error::io("cannot read", &dir, e))?;
                for entry in entries {
                    let entry = entry.map_err(|e| Error::io("cannot read", &dir, e))?;
                    let Ok(kind) = entry.file_type() else {
                        continue;
                    };
                    if kind.is_dir() {
                        dirs.push(entry.path());
                    } else if kind.is_file() {
                        broken += break_one(&dir, &entry.file_name())?;
                    }
                }
            }
        }
    }
    Ok(broken)
}

/// [`break_hard_links`] for one name in `dir`: 1 if it was given its own
/// inode, 0 if it had one already (or is not a regular file, or is gone).
fn break_one(dir: &Path, name: &std::ffi::OsStr) -> Result<u64> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timestamps};
    let failed = |what: &str, e: rustix::io::Errno| Error::io(what, &dir.join(name), e.into());
    let parent = match rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
            return Ok(0);
        }
        Err(e) => return Err(Error::io("cannot open", dir, e.into())),
    };
    let source = match rustix::fs::openat(
        &parent,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::LOOP | rustix::io::Errno::NXIO) => {
            return Ok(0);
        }
        Err(e) => return Err(failed("cannot open", e)),
    };
    let st = rustix::fs::fstat(&source).map_err(|e| failed("cannot stat", e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || st.st_nlink < 2 {
        return Ok(0);
    }
    // The copy is made unnamed (O_TMPFILE): no name of the client's is ever
    // taken, replaced or removed but `name` itself, and a name too long
    // for a prefix is no problem.
    let copy = rustix::fs::openat(
        &parent,
        ".",
        OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| failed("cannot make a copy of", e))?;
    let filled = (|| -> rustix::io::Result<()> {
        rustix::fs::ioctl_ficlone(&copy, &source)?;
        copy_xattrs(&source, &copy)?;
        rustix::fs::fchmod(&copy, Mode::from_raw_mode(st.st_mode & 0o7777))?;
        rustix::fs::futimens(
            &copy,
            &Timestamps {
                last_access: rustix::fs::Timespec {
                    tv_sec: st.st_atime,
                    tv_nsec: st.st_atime_nsec as _,
                },
                last_modification: rustix::fs::Timespec {
                    tv_sec: st.st_mtime,
                    tv_nsec: st.st_mtime_nsec as _,
                },
            },
        )
    })();
    filled.map_err(|e| failed("cannot copy", e))?;
    // Named under a fresh short name of its own (never one that exists),
    // then renamed over `name` in one step.
    use std::os::fd::AsRawFd;
    let unnamed = format!("/proc/self/fd/{}", copy.as_raw_fd());
    let mut temp;
    let mut tries = 0u32;
    loop {
        tries += 1;
        temp = fresh_name();
        match rustix::fs::linkat(
            rustix::fs::CWD,
            unnamed.as_str(),
            &parent,
            temp.as_str(),
            AtFlags::SYMLINK_FOLLOW,
        ) {
            Ok(()) => break,
            Err(rustix::io::Errno::EXIST) if tries < 100 => continue,
            Err(e) => return Err(failed("cannot name the copy of", e)),
        }
    }
    if let Err(e) = rustix::fs::renameat(&parent, temp.as_str(), &parent, name) {
        let _ = rustix::fs::unlinkat(&parent, temp.as_str(), AtFlags::empty());
        return Err(failed("cannot give its own inode to", e));
    }
    Ok(1)
}

/// A short name no client file is likely to have (and if one has, it is
/// never touched: the link that would take it fails, and another is tried).
fn fresh_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        ".bb{:x}{:x}{:x}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Copies every xattr of `from` onto `to` (a fresh file of the same owner).
fn copy_xattrs(from: &std::os::fd::OwnedFd, to: &std::os::fd::OwnedFd) -> rustix::io::Result<()> {
    // As large as the list is (a file may carry more than 64 KiB of names).
    let size = rustix::fs::flistxattr(from, &mut [0u8; 0][..])?;
    let mut names = vec![0u8; size];
    let len = rustix::fs::flistxattr(from, &mut names)?;
    let mut value = vec![0u8; 64 * 1024];
    for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = std::ffi::CString::new(name) else {
            continue;
        };
        let n = match rustix::fs::fgetxattr(from, name.as_c_str(), &mut value) {
            Ok(n) => n,
            Err(rustix::io::Errno::NODATA) => continue,
            Err(e) => return Err(e),
        };
        rustix::fs::fsetxattr(
            to,
            name.as_c_str(),
            &value[..n],
            rustix::fs::XattrFlags::empty(),
        )?;
    }
    Ok(())
}
