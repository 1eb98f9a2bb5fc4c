//! How snapshots are made: one trait, and the code that picks its
//! implementation for a store.
//!
//! A store's `current` and its snapshots are kept either as btrfs
//! subvolumes ([`super::btrfs`]: constant-time read-only snapshots sharing
//! unchanged extents) or as plain directories ([`super::plain`]: hard links
//! between snapshots, any filesystem). Everything above this trait — the
//! store service, pruning, the forced command — is the same for both; this
//! file is the only place that looks at which one a store uses.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::names::SnapshotName;
use crate::sys::fs::Space;

use super::{Backend, btrfs, plain, space};

/// How a transfer into `current` must be made.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransferPlan {
    /// Files may be updated in place (btrfs, whose snapshots are separate
    /// copies-on-write). Never on plain stores, whose files may be hard
    /// links into snapshots.
    pub inplace: bool,
    /// `--link-dest` directories, relative to `current`, most useful first.
    pub link_dests: Vec<String>,
}

/// The operations a store needs from its snapshot mechanism. Paths are the
/// client's directory (`<store>/<client>`) and names inside it.
pub trait SnapshotBackend: fmt::Debug + Send + Sync {
    /// The kind, as written in `server.toml`.
    fn kind(&self) -> Backend;
    /// One line for `byteback-server setup` saying what this backend does.
    fn describe(&self) -> &'static str;
    /// Checks that the filesystem of `store` can hold this backend's
    /// snapshots; `state_dir` is a directory in it the check may write in.
    fn check_store(&self, store: &Path, state_dir: &Path) -> Result<()>;
    /// Creates an empty `current` at `current`.
    fn create_current(&self, current: &Path) -> Result<()>;
    /// Readies the client's `current` for a transfer (finishing what a
    /// crash left) and says how to transfer into it.
    fn prepare_current(
        &self,
        client_dir: &Path,
        newest: Option<&SnapshotName>,
    ) -> Result<TransferPlan>;
    /// Readies `current` for an incremental transfer: afterwards it holds
    /// the snapshot `newest`, except the paths in `replace` (relative to
    /// `current`, with everything below them), which the transfer sends
    /// fresh. `clean`: `current` is known to hold exactly `newest` already.
    /// Nothing a snapshot holds is written, then or by the transfer.
    fn prepare_incremental(
        &self,
        client_dir: &Path,
        newest: &SnapshotName,
        replace: &HashSet<Vec<u8>>,
        gone: &[Vec<u8>],
        clean: bool,
    ) -> Result<()>;
    /// Takes the snapshot `name` of the client's `current`, atomically:
    /// afterwards it is complete and never written again.
    fn snapshot(&self, client_dir: &Path, name: &SnapshotName) -> Result<()>;
    /// Deletes a snapshot; it is never seen half-deleted.
    fn delete(&self, client_dir: &Path, name: &SnapshotName) -> Result<()>;
    /// Removes a client's directory and everything left in it once its
    /// snapshots are deleted: `current`, interrupted attempts, markers.
    fn remove_client_dir(&self, client_dir: &Path) -> Result<()>;
    /// Discards what `current` holds beyond `newest` (data no snapshot holds).
    fn roll_back(&self, client_dir: &Path, newest: Option<&SnapshotName>) -> Result<()>;
    /// What the store at `root` can really still take.
    fn space(&self, root: &Path) -> Result<Space>;
    /// Returns once the space of deleted snapshots is really free.
    fn wait_for_reclaim(&self, root: &Path) -> Result<()>;
}

/// Removes `rel` (a relative path whose components are plain names, as
/// `protocol::parse_replace_list` checked) from beneath `dir`, whatever it
/// is, never following a symlink on the way: each directory is opened with
/// `O_NOFOLLOW` from the one before. A path that is not there is no error.
pub fn remove_beneath(dir: &Path, rel: &[u8]) -> Result<()> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    use std::os::unix::ffi::OsStrExt;
    let failed = |what: &str, e: rustix::io::Errno| {
        crate::error::Error::io(what, &dir.join(std::ffi::OsStr::from_bytes(rel)), e.into())
    };
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut at =
        rustix::fs::open(dir, flags, Mode::empty()).map_err(|e| failed("cannot open", e))?;
    let mut parts = rel.split(|&b| b == b'/').peekable();
    while let Some(name) = parts.next() {
        let name = std::ffi::OsStr::from_bytes(name);
        if parts.peek().is_some() {
            at = match rustix::fs::openat(&at, name, flags, Mode::empty()) {
                Ok(fd) => fd,
                // Not there, or not a directory: nothing below it to remove.
                Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(()),
                Err(e) => return Err(failed("cannot open", e)),
            };
            continue;
        }
        let stat = match rustix::fs::statat(&at, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(failed("cannot stat", e)),
        };
        if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            // std's remove_dir_all works by descriptors below the directory
            // and never follows a symlink inside it; the directory itself
            // is named through the pinned descriptor of its parent.
            use std::os::fd::AsRawFd;
            let mut pinned = std::path::PathBuf::from(format!("/proc/self/fd/{}", at.as_raw_fd()));
            pinned.push(name);
            std::fs::remove_dir_all(&pinned).map_err(|e| {
                crate::error::Error::io(
                    "cannot remove",
                    &dir.join(std::ffi::OsStr::from_bytes(rel)),
                    e,
                )
            })?;
        } else {
            rustix::fs::unlinkat(&at, name, AtFlags::empty())
                .map_err(|e| failed("cannot remove", e))?;
        }
    }
    Ok(())
}

/// The implementation for a store of `kind`.
pub fn for_kind(kind: Backend) -> Box<dyn SnapshotBackend> {
    match kind {
        Backend::Btrfs => Box::new(Btrfs),
        Backend::Plain => Box::new(Plain),
    }
}

/// btrfs subvolumes and read-only snapshots (see [`super::btrfs`]).
#[derive(Debug)]
pub struct Btrfs;

impl SnapshotBackend for Btrfs {
    fn kind(&self) -> Backend {
        Backend::Btrfs
    }

    fn describe(&self) -> &'static str {
        "btrfs: current is a subvolume, snapshots are read-only btrfs snapshots"
    }

    fn check_store(&self, store: &Path, state_dir: &Path) -> Result<()> {
        btrfs::check_store(store, state_dir)
    }

    fn create_current(&self, current: &Path) -> Result<()> {
        btrfs::create_subvolume(current)
    }

    fn prepare_current(&self, client_dir: &Path, _: Option<&SnapshotName>) -> Result<TransferPlan> {
        btrfs::finish_deletions(client_dir)?;
        // A whole pass may re-send any file in place: none may share its
        // inode with a name that rsync leaves alone.
        btrfs::break_hard_links(&client_dir.join("current"), None)?;
        Ok(TransferPlan {
            inplace: true,
            link_dests: Vec::new(),
        })
    }

    fn prepare_incremental(
        &self,
        client_dir: &Path,
        newest: &SnapshotName,
        replace: &HashSet<Vec<u8>>,
        gone: &[Vec<u8>],
        clean: bool,
    ) -> Result<()> {
        // `current` is a writable copy of the newest snapshot after each
        // snapshot; anything since (a failed attempt) is rolled back, in
        // constant time. rsync then updates it in place, copy-on-write.
        if !clean {
            btrfs::roll_back(client_dir, Some(&client_dir.join(newest.as_str())))?;
        }
        // What vanished from the source goes from `current` here, not by
        // rsync's --delete-missing-args (refused with --files-from by
        // some rsync builds; see protocol::PROTOCOL_VERSION).
        let current = client_dir.join("current");
        for path in gone {
            remove_beneath(&current, path)?;
        }
        // The files rsync re-sends in place get inodes of their own first.
        btrfs::break_hard_links(&current, Some(replace))?;
        Ok(())
    }

    fn snapshot(&self, client_dir: &Path, name: &SnapshotName) -> Result<()> {
        btrfs::snapshot_readonly(&client_dir.join("current"), &client_dir.join(name.as_str()))
    }

    fn delete(&self, client_dir: &Path, name: &SnapshotName) -> Result<()> {
        btrfs::delete_snapshot(client_dir, name.as_str())
    }

    fn remove_client_dir(&self, client_dir: &Path) -> Result<()> {
        btrfs::remove_tree(client_dir)
    }

    fn roll_back(&self, client_dir: &Path, newest: Option<&SnapshotName>) -> Result<()> {
        let newest = newest.map(|n| client_dir.join(n.as_str()));
        btrfs::roll_back(client_dir, newest.as_deref())
    }

    fn space(&self, root: &Path) -> Result<Space> {
        space::measure(root)
    }

    fn wait_for_reclaim(&self, root: &Path) -> Result<()> {
        if btrfs::wait_for_deletions(root)? {
            return Ok(());
        }
        // Older kernels: poll until the figure stops changing (bounded).
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = self.space(root)?;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
            let now = self.space(root)?;
            if now == last {
                break;
            }
            last = now;
        }
        Ok(())
    }
}

/// Plain directories with hard links (see [`super::plain`]).
#[derive(Debug)]
pub struct Plain;

impl SnapshotBackend for Plain {
    fn kind(&self) -> Backend {
        Backend::Plain
    }

    fn describe(&self) -> &'static str {
        "plain directories; unchanged files are hard links between snapshots (on btrfs, snapshots would be instant and read-only)"
    }

    fn check_store(&self, _store: &Path, state_dir: &Path) -> Result<()> {
        plain::check_filesystem(state_dir)
    }

    fn create_current(&self, current: &Path) -> Result<()> {
        std::fs::create_dir(current)
            .map_err(|e| crate::error::Error::io("cannot create", current, e))
    }

    fn prepare_current(
        &self,
        client_dir: &Path,
        newest: Option<&SnapshotName>,
    ) -> Result<TransferPlan> {
        Ok(TransferPlan {
            inplace: false,
            link_dests: plain::prepare_current(client_dir, newest.map(SnapshotName::as_str))?,
        })
    }

    fn prepare_incremental(
        &self,
        client_dir: &Path,
        newest: &SnapshotName,
        replace: &HashSet<Vec<u8>>,
        _gone: &[Vec<u8>],
        _clean: bool,
    ) -> Result<()> {
        // Vanished paths are among `replace`: never linked, so gone.
        plain::prepare_incremental(client_dir, newest.as_str(), replace)
    }

    fn snapshot(&self, client_dir: &Path, name: &SnapshotName) -> Result<()> {
        plain::snapshot(client_dir, &client_dir.join(name.as_str()))
    }

    fn delete(&self, client_dir: &Path, name: &SnapshotName) -> Result<()> {
        plain::delete(client_dir, name.as_str())
    }

    fn remove_client_dir(&self, client_dir: &Path) -> Result<()> {
        plain::remove_client_dir(client_dir)
    }

    fn roll_back(&self, client_dir: &Path, _newest: Option<&SnapshotName>) -> Result<()> {
        plain::discard_current(client_dir)
    }

    fn space(&self, root: &Path) -> Result<Space> {
        crate::sys::fs::space(root)
    }

    fn wait_for_reclaim(&self, _root: &Path) -> Result<()> {
        // Plain deletions free their space at once.
        Ok(())
    }
}
