//! Exclusive locks with `flock(2)` on a persistent lock file.
//!
//! The kernel drops a flock when its last holder exits, however it exits, so
//! a crash or `kill -9` can never leave a stale lock behind (unlike PID files).

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_waits_then_gives_up() {
        let dir = std::env::temp_dir().join(format!("byteback-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
