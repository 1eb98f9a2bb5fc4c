//! Exclusive locks with `flock(2)` on a persistent lock file.
//!
//! The kernel drops a flock when its last holder exits, however it exits, so
//! a crash or `kill -9` can never leave a stale lock behind (unlike PID files).
//!
//! Some locks are also counted by others who must not take them (how many
//! transfers share the server's bandwidth budget). Trying a flock to see
//! whether it is held would take it for an instant, and a transfer starting
//! in that instant would find its slot busy. So such a holder also
//! *announces* its lock ([`Lock::announce`]): an open-file-description (OFD)
//! `fcntl` lock on the same open file (a write lock, as the file is open
//! for writing; only its holder takes one), which lives and dies with the
//! flock (both belong to the open file description, inherited by children
//! alike and dropped when its last descriptor closes), and which
//! [`is_announced`] asks about with `F_OFD_GETLK`, which takes nothing.
//! (On Linux flock and fcntl locks are independent of each other; both are
//! local filesystems' here.)

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, flock};
use rustix::io::{Errno, FdFlags, fcntl_getfd, fcntl_setfd};

use crate::error::{Error, IoContext, Result};

/// A held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    /// Takes the lock at `path`, waiting up to `wait` for another holder to
    /// let go. `Ok(None)` if it is still held after that.
    pub fn acquire(path: &Path, wait: Duration) -> Result<Option<Lock>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .on("cannot open lock file", path)?;
        let deadline = Instant::now() + wait;
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {
                    return Ok(Some(Lock {
                        file,
                        path: path.to_owned(),
                    }));
                }
                Err(Errno::WOULDBLOCK) | Err(Errno::INTR) => {
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(Error::io("cannot lock", path, e.into())),
            }
        }
    }

    /// Lets child processes inherit the lock, so it stays held for as long
    /// as any of them runs (e.g. an rsync that outlives its parent).
    pub fn share_with_children(&self) -> Result<()> {
        let flags = fcntl_getfd(&self.file)
            .map_err(|e| Error::io("cannot share lock", &self.path, e.into()))?;
        fcntl_setfd(&self.file, flags - FdFlags::CLOEXEC)
            .map_err(|e| Error::io("cannot share lock", &self.path, e.into()))
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the held lock visible to [`is_announced`] (see the module
    /// comment), for as long as it is held.
    pub fn announce(&self) -> Result<()> {
        ofd_lock(&self.file, libc::F_OFD_SETLK, libc::F_WRLCK)
            .map(drop)
            .map_err(|e| Error::io("cannot announce lock", &self.path, e))
    }
}

/// Whether someone holds the lock at `path` and announced it
/// ([`Lock::announce`]), asked without taking anything: whether a read
/// lock there would conflict (`F_OFD_GETLK`). A missing file is no lock.
pub fn is_announced(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    matches!(ofd_lock(&file, libc::F_OFD_GETLK, libc::F_RDLCK), Ok(t) if t != libc::F_UNLCK)
}

/// `fcntl(cmd)` with an OFD lock of `kind` on the whole file; the lock type
/// the kernel answers (for `F_OFD_GETLK`: `F_UNLCK` if nothing conflicts).
fn ofd_lock(file: &File, cmd: libc::c_int, kind: libc::c_int) -> std::io::Result<libc::c_int> {
    use std::os::fd::AsRawFd;
    // SAFETY: `flock` is plain data, zeroed is a valid value (whole file
    // from offset 0; l_pid must be 0 for OFD locks), and fcntl writes no
    // more than the struct it is given, on a descriptor we own.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    if unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut lock) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(libc::c_int::from(lock.l_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_waits_then_gives_up() {
        // Removed however the test ends.
        let scratch = crate::ScratchDir::new("lock-test");
        let dir = scratch.path();
        let path = dir.join("lock");
        let first = Lock::acquire(&path, Duration::ZERO)
            .unwrap()
            .expect("free lock");
        let start = Instant::now();
        assert!(
            Lock::acquire(&path, Duration::from_millis(300))
                .unwrap()
                .is_none()
        );
        assert!(start.elapsed() >= Duration::from_millis(300));
        drop(first);
        // Free again. (Briefly, a child another test thread is forking may
        // still share the descriptor until its exec closes it.)
        assert!(
            Lock::acquire(&path, Duration::from_secs(2))
                .unwrap()
                .is_some()
        );
    }

    /// An announced lock is seen, by this process too, without being
    /// taken; it goes with the lock.
    #[test]
    fn announced_locks_are_seen_without_taking_them() {
        // Removed however the test ends.
        let scratch = crate::ScratchDir::new("ofd-test");
        let dir = scratch.path();
        let path = dir.join("slot");
        assert!(!is_announced(&path), "no file, no lock");
        let held = Lock::acquire(&path, Duration::ZERO).unwrap().unwrap();
        assert!(!is_announced(&path), "held, not announced");
        held.announce().unwrap();
        for _ in 0..3 {
            assert!(is_announced(&path));
        }
        // Asking took nothing: a second taker still finds it held, and
        // once free the lock is taken at once.
        assert!(Lock::acquire(&path, Duration::ZERO).unwrap().is_none());
        drop(held);
        // (A child another test thread forks may share the descriptor
        // until its exec closes it: briefly.)
        let deadline = Instant::now() + Duration::from_secs(2);
        while is_announced(&path) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!is_announced(&path));
        assert!(
            Lock::acquire(&path, Duration::from_secs(2))
                .unwrap()
                .is_some()
        );
    }
}
