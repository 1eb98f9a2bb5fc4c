//! Hardened mode: history the backup user cannot rewrite.
//!
//! Without it, whoever runs code as the backup user (through a bug in
//! rsync, ssh or byteback) owns every snapshot's subvolume, so can clear its
//! read-only flag, and may delete subvolumes (`user_subvol_rm_allowed`).
//! In hardened mode snapshots are made and deleted only by
//! `byteback-privileged`, a small helper run as root through one narrow
//! sudo rule, which accepts two requests and re-checks each itself:
//!
//! - `snapshot CLIENT [--partial]`: a read-only snapshot of the client's
//!   `current`, named by the helper's own clock, at most one per
//!   `min_snapshot_interval`. For the instant of the snapshot `current`'s
//!   top directory is given to root, so the snapshot is root's and
//!   read-only from its first instant (btrfs lets only a subvolume's owner
//!   clear the flag); with `--partial` the list of files left out comes on
//!   stdin and the helper writes the marker, root's too.
//! - `delete CLIENT SNAPSHOT`: only a snapshot the helper made (root's),
//!   and only if it is exactly what pruning deletes next: free space below
//!   `target_free_percent`, some snapshot older than `min_age`, never a
//!   client's newest, the least important first ([`crate::prune::plan`]).
//!
//! Which store and which policy come from a root-owned file per backup user,
//! `/etc/byteback-server/hardened.d/<user>.toml` (written by `byteback-server
//! setup --user NAME --hardened`), chosen by the caller's `SUDO_UID`; the
//! store's own `server.toml` belongs to the user and is never read here.
//! Paths inside the store are opened one component at a time without
//! following symlinks, and the btrfs ioctls act on those descriptors.
//!
//! Each client's directory is root's, group the backup user's, mode 1775:
//! the user still creates and replaces `current`, its temporary
//! directories and its records (in [`crate::store::RECORDS_DIR`]), but the
//! sticky bit keeps it from renaming or deleting anything root owns.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use jiff::Timestamp;
use rustix::fs::{AtFlags, Mode, OFlags};

use crate::config;
use crate::error::{Error, Result};
use crate::names::{ClientName, SnapshotName};
use crate::prune::{self, StoredSnapshot};
use crate::store::{Backend, RECORDS_DIR, ServerConfig, Store, backend, btrfs};
use crate::sys::user;

pub use crate::lifecycle::hardened::{
    CONFIG_DIR, HardenedConfig, Policy, Request, call, config_path, for_store,
};

/// The mode of a hardened client's directory: root's, group-writable for
/// the backup user, sticky.
pub const CLIENT_DIR_MODE: u32 = 0o1775;

/// The most of a partial note the helper keeps (as the store does).
const MAX_PARTIAL_NOTE: usize = 64 * 1024;

/// One process of the helper at a time (root's own directory).
const LOCK: &str = "/run/byteback-privileged.lock";

const USAGE: &str =
    "usage: byteback-privileged snapshot CLIENT [--partial] | delete CLIENT SNAPSHOT";

/// Parses the helper's arguments (without the program name): exactly one
/// of the two requests, with a valid client name and a snapshot name in
/// its canonical spelling; anything else is refused.
pub fn parse(args: &[OsString]) -> Result<Request> {
    let refuse = |why: String| Err(Error::Usage(format!("refused: {why} ({USAGE})")));
    let words: Option<Vec<&str>> = args.iter().map(|a| a.to_str()).collect();
    let Some(words) = words else {
        return refuse("arguments must be UTF-8".into());
    };
    let client = |name: &str| {
        ClientName::new(name).map_err(|e| Error::Usage(format!("refused: {e} ({USAGE})")))
    };
    match words.as_slice() {
        ["snapshot", name] => Ok(Request::Snapshot {
            client: client(name)?,
            partial: false,
        }),
        ["snapshot", name, "--partial"] => Ok(Request::Snapshot {
            client: client(name)?,
            partial: true,
        }),
        ["delete", name, snapshot] => {
            let client = client(name)?;
            match SnapshotName::parse(snapshot).filter(|s| s.as_str() == *snapshot) {
                Some(snapshot) => Ok(Request::Delete { client, snapshot }),
                None => refuse(format!("{snapshot:?} is not a snapshot name")),
            }
        }
        [] => refuse("no request".into()),
        [first, ..] => refuse(format!(
            "unknown request {:?}",
            first.escape_debug().to_string()
        )),
    }
}

/// The names in a directory opened by the helper (those that are UTF-8).
fn list_names(dir: std::os::fd::BorrowedFd<'_>) -> Result<Vec<String>> {
    let fail = |e| io_err("cannot list a client's directory".to_owned(), e);
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir).map_err(fail)? {
        let entry = entry.map_err(fail)?;
        names.extend(entry.file_name().to_str().ok().map(str::to_owned));
    }
    Ok(names)
}

/// Whether a client may have a new snapshot now: its newest (root's) is at
/// least `interval` old. If not, why, and from when it may.
pub fn check_interval(
    newest: Option<&SnapshotName>,
    now: Timestamp,
    interval: config::Duration,
) -> std::result::Result<(), String> {
    match newest {
        Some(n) if now.duration_since(n.time()) < interval.0 => {
            let next = n.time().checked_add(interval.0).unwrap_or(n.time());
            Err(format!(
                "the newest snapshot {n} is younger than min_snapshot_interval ({interval}); the next may be taken from {}",
                next.strftime("%Y-%m-%dT%H:%M:%SZ")
            ))
        }
        _ => Ok(()),
    }
}

/// Whether the policy deletes `target` now: free space below the target,
/// some snapshot older than `min_age`, and `target` first in the plan
/// (so never a client's newest, and the least important first). The
/// reason if not.
pub fn check_deletion(
    all: &[StoredSnapshot],
    free_percent: f64,
    policy: &Policy,
    target: &StoredSnapshot,
    now: Timestamp,
) -> std::result::Result<(), String> {
    let what = format!("{} {}", target.client, target.name);
    if !all.contains(target) {
        return Err(format!("{what} is not a snapshot of this store"));
    }
    if free_percent >= policy.target_free_percent {
        return Err(format!(
            "the store has {free_percent:.1}% free, and snapshots are deleted only while it has less than target_free_percent ({}%)",
            policy.target_free_percent
        ));
    }
    if !prune::old_enough(all, now, policy.min_age.0) {
        return Err(format!(
            "no snapshot is older than min_age ({})",
            policy.min_age
        ));
    }
    match prune::plan(all, now).into_iter().next() {
        Some(first) if &first.snapshot == target => Ok(()),
        _ if !all
            .iter()
            .any(|s| s.client == target.client && s.name.time() > target.name.time()) =>
        {
            Err(format!("{what} is {}'s newest snapshot", target.client))
        }
        Some(first) => Err(format!(
            "the policy deletes {} {} first, not {what}",
            first.snapshot.client, first.snapshot.name
        )),
        None => Err("every snapshot is its client's newest".into()),
    }
}

/// `byteback-privileged`: runs one request for the backup user who called
/// it through sudo; what to print on success.
pub fn main(args: &[OsString], stdin: &mut dyn Read) -> Result<String> {
    let request = parse(args)?;
    if !rustix::process::geteuid().is_root() {
        return Err(Error::Usage(
            "byteback-privileged runs as root, through sudo: `sudo -n byteback-privileged ...` as the backup user".into(),
        ));
    }
    let caller = std::env::var("SUDO_UID")
        .ok()
        .and_then(|u| u.parse::<u32>().ok())
        .ok_or_else(|| {
            Error::Refused(
                "refused: SUDO_UID is not set: run it through sudo as the backup user".into(),
            )
        })?;
    let cfg = trusted_config(caller)?;
    let _lock =
        crate::sys::lock::Lock::acquire(Path::new(LOCK), std::time::Duration::from_secs(120))?
            .ok_or_else(|| Error::Locked("another byteback-privileged is still running".into()))?;
    let helper = Helper::open(cfg)?;
    let now = Timestamp::now();
    match request {
        Request::Snapshot { client, partial } => {
            let note = if partial {
                let mut note = Vec::new();
                stdin
                    .take(MAX_PARTIAL_NOTE as u64)
                    .read_to_end(&mut note)
                    .map_err(|e| Error::Command(format!("cannot read the partial note: {e}")))?;
                Some(note)
            } else {
                None
            };
            let name = helper.snapshot(&client, note.as_deref(), now)?;
            helper.log(&format!(
                "{client}: snapshot {name} taken (root's, read-only)"
            ));
            Ok(name.to_string())
        }
        Request::Delete { client, snapshot } => {
            helper.delete(&client, &snapshot, now)?;
            helper.log(&format!("{client}: snapshot {snapshot} deleted"));
            Ok(format!("deleted {client} {snapshot}"))
        }
    }
}

/// The caller's file in [`CONFIG_DIR`], if root's, naming the caller.
fn trusted_config(caller: u32) -> Result<HardenedConfig> {
    let account = user::lookup_uid(caller)
        .ok_or_else(|| Error::Refused(format!("refused: uid {caller} is not in /etc/passwd")))?;
    let path = config_path(&account.name);
    let dir = Path::new(CONFIG_DIR);
    for p in [dir.parent().unwrap_or(dir), dir, path.as_path()] {
        match std::fs::symlink_metadata(p) {
            Ok(m) => check_root_only(p, &m)?,
            Err(_) => {
                return Err(Error::Refused(format!(
                    "refused: {} (uid {caller}) has no hardened store: {} is missing",
                    account.name,
                    path.display()
                )));
            }
        }
    }
    let cfg = config::load::<HardenedConfig>(&path)?
        .ok_or_else(|| Error::Refused(format!("refused: {} is missing", path.display())))?;
    if cfg.uid != caller || cfg.user != account.name {
        return Err(Error::Refused(format!(
            "refused: {} is for {} (uid {}), not the caller {} (uid {caller})",
            path.display(),
            cfg.user,
            cfg.uid,
            account.name
        )));
    }
    Ok(cfg)
}

/// A file the helper trusts must be root's and writable by root only.
pub fn check_root_only(path: &Path, m: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    if m.file_type().is_symlink() || m.uid() != 0 || m.mode() & 0o022 != 0 {
        return Err(Error::Refused(format!(
            "refused: {} must be root's and writable by root only (it is uid {}, mode {:o})",
            path.display(),
            m.uid(),
            m.mode() & 0o7777
        )));
    }
    Ok(())
}

/// The helper's view of one store: opened safely, its policy root's.
struct Helper {
    cfg: HardenedConfig,
    store: Store,
    root: OwnedFd,
}

fn io_err(what: String, e: rustix::io::Errno) -> Error {
    Error::Io {
        what,
        source: e.into(),
    }
}

impl Helper {
    fn open(cfg: HardenedConfig) -> Result<Helper> {
        // The store's own server.toml is the user's (and could be a symlink
        // to anything): the helper's settings are root's file alone.
        let mut config = ServerConfig {
            backend: Backend::Btrfs,
            ..ServerConfig::default()
        };
        cfg.policy.apply(&mut config);
        let root = rustix::fs::open(
            &cfg.store,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(format!("cannot open store {}", cfg.store.display()), e))?;
        if !crate::sys::fs::is_btrfs(&cfg.store)? {
            return Err(Error::Unsupported(format!(
                "hardened mode is for btrfs stores; {} is not btrfs",
                cfg.store.display()
            )));
        }
        let mut store = Store::with_backend(&cfg.store, config, backend::for_kind(Backend::Btrfs));
        crate::lifecycle::hardened::harden(&mut store, cfg.clone());
        Ok(Helper { cfg, store, root })
    }

    /// The client's directory, opened without following a symlink, and made
    /// root's and sticky if it is not yet.
    fn client_dir(&self, client: &ClientName) -> Result<OwnedFd> {
        let fd = rustix::fs::openat(
            &self.root,
            client.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => Error::Refused(format!(
                "refused: {client} in {} is not a real directory (a symlink?)",
                self.cfg.store.display()
            )),
            rustix::io::Errno::NOENT => Error::Refused(format!(
                "refused: no client {client} in {}",
                self.cfg.store.display()
            )),
            e => io_err(format!("cannot open {client}"), e),
        })?;
        harden_client_dir(fd.as_fd(), &self.cfg)?;
        Ok(fd)
    }

    fn snapshot(
        &self,
        client: &ClientName,
        note: Option<&[u8]>,
        now: Timestamp,
    ) -> Result<SnapshotName> {
        let dir = self.client_dir(client)?;
        let newest = self.store.snapshots(client)?.pop().map(|s| s.name);
        check_interval(newest.as_ref(), now, self.cfg.policy.min_snapshot_interval)
            .map_err(|why| Error::Refused(format!("refused: no snapshot of {client}: {why}")))?;
        // Two backups may end within one second: the second waits for the
        // next free name (read through the descriptor, not a path).
        let name = crate::store::wait_for_free_name(client, now, || list_names(dir.as_fd()))
            .map_err(|e| match e {
                Error::Refused(why) => Error::Refused(format!("refused: {why}")),
                e => e,
            })?;
        if rustix::fs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW).is_ok() {
            return Err(Error::Refused(format!(
                "refused: {client} {name} already exists; not replacing it"
            )));
        }
        let current = rustix::fs::openat(
            &dir,
            "current",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(format!("cannot open {client}/current"), e))?;
        let st = rustix::fs::fstat(&current)
            .map_err(|e| io_err(format!("cannot stat {client}/current"), e))?;
        // Root's only if a helper died between handing it to root and back:
        // it is handed back below.
        if st.st_ino != 256 || (st.st_uid != self.cfg.uid && st.st_uid != 0) {
            return Err(Error::Refused(format!(
                "refused: {client}/current is not a subvolume of {}",
                self.cfg.user
            )));
        }
        // The marker goes first, as in the store: a crash in between leaves
        // a marker without a snapshot (ignored), never a partial snapshot
        // that looks complete.
        let marker = format!("{name}.partial");
        if let Some(note) = note {
            write_marker(dir.as_fd(), &marker, note)
                .map_err(|e| io_err(format!("cannot write {client}/{marker}"), e))?;
        }
        // For this instant current's top directory is root's, so the
        // snapshot is root's from its first instant and read-only: nobody
        // else may clear the flag, and there is no moment when it could be
        // written.
        let taken =
            rustix::fs::fchown(&current, Some(rustix::process::Uid::ROOT), None).and_then(|()| {
                btrfs::snapshot_at(dir.as_fd(), name.as_str(), current.as_fd(), true).map_err(|e| {
                    rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO)
                })
            });
        let restored = restore_owner(current.as_fd(), &st, &self.cfg);
        if let Err(e) = taken {
            if note.is_some() {
                let _ = rustix::fs::unlinkat(&dir, &marker, AtFlags::empty());
            }
            return Err(io_err(format!("cannot snapshot {client}/current"), e));
        }
        restored.map_err(|e| io_err(format!("cannot give {client}/current back"), e))?;
        Ok(name)
    }

    /// Deletes `client`'s snapshot `name` if the policy deletes it next.
    ///
    /// The backup user owns the store's top directory, so it may rename
    /// client directories (even swap two, `RENAME_EXCHANGE`) at any moment.
    /// So the plan is computed over one pinned view: every client directory
    /// opened once (without following symlinks) and listed through that
    /// descriptor, the requested client's being the very descriptor the
    /// deletion acts on; and just before deleting, the view is checked
    /// again (each client name still the same directory, the target still
    /// the same subvolume and not its directory's newest). Any change in
    /// between refuses the request: only the user can make one, and the
    /// user is the only caller.
    fn delete(&self, client: &ClientName, name: &SnapshotName, now: Timestamp) -> Result<()> {
        let dir = self.client_dir(client)?;
        let dir_id = dir_id(&dir).map_err(|e| io_err(format!("cannot stat {client}"), e))?;
        let target_dev = target_subvolume(dir.as_fd(), client, name)?;
        pause_point("privileged-delete-opened");
        let view = self.pinned_view()?;
        let changed = |why: String| {
            Error::Refused(format!(
                "refused: not deleting {client} {name}: {why}; the store changed while the helper read it, try again"
            ))
        };
        let all = plan_input(&view, client, dir_id).map_err(changed)?;
        let free = self.store.space()?.free_percent();
        let target = StoredSnapshot {
            client: client.clone(),
            name: name.clone(),
        };
        check_deletion(&all, free, &self.cfg.policy, &target, now).map_err(|why| {
            Error::Refused(format!("refused: not deleting {client} {name}: {why}"))
        })?;
        pause_point("privileged-delete-planned");
        // The last look, through the descriptors the deletion uses.
        let again = self.pinned_view()?;
        if names_and_ids(&again) != names_and_ids(&view) {
            return Err(changed("client directories were renamed".into()));
        }
        if target_subvolume(dir.as_fd(), client, name)? != target_dev {
            return Err(changed(format!("{client}/{name} was replaced")));
        }
        let now_there = list_snapshots_at(dir.as_fd())
            .map_err(|e| io_err(format!("cannot list {client}"), e))?;
        if !now_there.iter().any(|s| s.time() > name.time()) {
            return Err(changed(format!("{name} is {client}'s newest snapshot")));
        }
        btrfs::destroy_at(dir.as_fd(), name.as_str()).map_err(|e| {
            Error::io(
                &format!("cannot delete {client}"),
                Path::new(name.as_str()),
                e,
            )
        })?;
        match rustix::fs::unlinkat(&dir, format!("{name}.partial"), AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(io_err(format!("cannot remove {client}/{name}.partial"), e)),
        }
    }

    /// Every client directory of the store as it is now: opened once from
    /// the store's pinned descriptor, without following symlinks, and its
    /// snapshots (root's) listed through that descriptor.
    fn pinned_view(&self) -> Result<Vec<PinnedClient>> {
        let e = |what: String| move |e| io_err(what, e);
        let mut view = Vec::new();
        let entries = rustix::fs::Dir::read_from(&self.root)
            .map_err(e(format!("cannot list {}", self.cfg.store.display())))?;
        for entry in entries {
            let entry = entry.map_err(e(format!("cannot list {}", self.cfg.store.display())))?;
            let Some(client) = entry
                .file_name()
                .to_str()
                .ok()
                .and_then(|n| ClientName::new(n).ok())
            else {
                continue;
            };
            // Not a directory (or gone already): not a client; a rename in
            // between shows when the view is taken again.
            let Ok(fd) = rustix::fs::openat(
                &self.root,
                client.as_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) else {
                continue;
            };
            let id = dir_id(&fd).map_err(e(format!("cannot stat {client}")))?;
            let snapshots =
                list_snapshots_at(fd.as_fd()).map_err(e(format!("cannot list {client}")))?;
            view.push(PinnedClient {
                client,
                id,
                snapshots,
            });
        }
        view.sort_by(|a, b| a.client.cmp(&b.client));
        Ok(view)
    }

    /// To the system log only: the store's log file is the user's.
    fn log(&self, line: &str) {
        crate::sys::syslog::send(
            Path::new("/dev/log"),
            "byteback-privileged",
            crate::sys::syslog::Severity::Info,
            &format!("{}: {line}", self.cfg.user),
        );
    }
}

/// One client directory as the helper saw it through its own descriptor:
/// the name it had, which directory it was (device, inode) and the
/// snapshots in it (root's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedClient {
    pub client: ClientName,
    pub id: (u64, u64),
    pub snapshots: Vec<SnapshotName>,
}

/// The snapshots the deletion plan is computed over, from a pinned view
/// of the store, if that view is one consistent store: no directory under
/// two names, and the requested client's name naming the directory the
/// deletion acts on (`target_id`). Why not, otherwise.
pub fn plan_input(
    view: &[PinnedClient],
    client: &ClientName,
    target_id: (u64, u64),
) -> std::result::Result<Vec<StoredSnapshot>, String> {
    for (i, a) in view.iter().enumerate() {
        if let Some(b) = view[i + 1..].iter().find(|b| b.id == a.id) {
            return Err(format!(
                "{} and {} are the same directory",
                a.client, b.client
            ));
        }
    }
    match view.iter().find(|c| &c.client == client) {
        Some(c) if c.id == target_id => {}
        Some(_) => return Err(format!("{client} names another directory now")),
        None => return Err(format!("{client} is gone from the store")),
    }
    Ok(view
        .iter()
        .flat_map(|c| {
            c.snapshots.iter().map(|name| StoredSnapshot {
                client: c.client.clone(),
                name: name.clone(),
            })
        })
        .collect())
}

fn names_and_ids(view: &[PinnedClient]) -> Vec<(&ClientName, (u64, u64))> {
    view.iter().map(|c| (&c.client, c.id)).collect()
}

/// Which directory `fd` is: its device and inode.
fn dir_id(fd: &OwnedFd) -> rustix::io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// The snapshots in a client's directory, listed through its descriptor:
/// directories named as snapshots and root's (in hardened mode, only the
/// helper's count, as in [`Store::snapshots`]), oldest first.
fn list_snapshots_at(dir: std::os::fd::BorrowedFd<'_>) -> rustix::io::Result<Vec<SnapshotName>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().to_str() else {
            continue;
        };
        let Some(snapshot) = SnapshotName::parse(name) else {
            continue;
        };
        let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
        if kind == rustix::fs::FileType::Directory && st.st_uid == 0 {
            names.push(snapshot);
        }
    }
    names.sort_by_key(|s| s.time());
    Ok(names)
}

/// The device of `client`'s snapshot `name`, seen through its directory's
/// descriptor, if it is one the helper made (a root-owned subvolume).
fn target_subvolume(
    dir: std::os::fd::BorrowedFd<'_>,
    client: &ClientName,
    name: &SnapshotName,
) -> Result<u64> {
    let st = rustix::fs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|_| Error::Refused(format!("refused: {client} has no snapshot {name}")))?;
    let is_dir = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory;
    if !is_dir || st.st_ino != 256 || st.st_uid != 0 {
        return Err(Error::Refused(format!(
            "refused: {client} {name} is not a snapshot taken in hardened mode (root's subvolume)"
        )));
    }
    Ok(st.st_dev)
}

/// For the race tests: in debug builds, `BYTEBACK_PAUSE_AT=<point>:<fifo>`
/// makes the helper wait at that point until the test has opened `<fifo>`
/// for writing and closed it again (so the test acts, say swaps two client
/// directories, at exactly that instant). Release builds compile it away,
/// and sudo passes the caller's environment to no helper.
fn pause_point(name: &str) {
    #[cfg(debug_assertions)]
    if let Some(asked) = std::env::var_os("BYTEBACK_PAUSE_AT") {
        if let Some((at, fifo)) = asked.to_str().and_then(|a| a.split_once(':')) {
            if at == name {
                if let Ok(mut f) = std::fs::File::open(fifo) {
                    let _ = std::io::copy(&mut f, &mut std::io::sink());
                }
            }
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// Gives `current` back to the backup user, as it was (or, after a crash
/// left it root's, with the user's group).
fn restore_owner(
    fd: std::os::fd::BorrowedFd<'_>,
    st: &rustix::fs::Stat,
    cfg: &HardenedConfig,
) -> rustix::io::Result<()> {
    let gid = if st.st_uid == cfg.uid {
        st.st_gid
    } else {
        cfg.gid
    };
    rustix::fs::fchown(
        fd,
        Some(rustix::process::Uid::from_raw(cfg.uid)),
        Some(rustix::process::Gid::from_raw(gid)),
    )?;
    // chown may drop set-id bits; put the mode back as it was.
    rustix::fs::fchmod(fd, Mode::from_raw_mode(st.st_mode & 0o7777))
}

/// Writes a partial marker, root's, replacing whatever has its name.
fn write_marker(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &str,
    note: &[u8],
) -> rustix::io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e),
    }
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    let mut rest = note;
    while !rest.is_empty() {
        let n = rustix::io::write(&fd, rest)?;
        rest = &rest[n..];
    }
    rustix::fs::fsync(&fd)
}

/// Makes a client's directory root's, group `cfg.gid`, mode 1775, moving
/// the records kept in its xattrs (which only a sticky directory's owner
/// may set) to [`RECORDS_DIR`] inside it, the user's. Whether it changed.
pub fn harden_client_dir(dir: std::os::fd::BorrowedFd<'_>, cfg: &HardenedConfig) -> Result<bool> {
    let st =
        rustix::fs::fstat(dir).map_err(|e| io_err("cannot stat a client directory".into(), e))?;
    if st.st_uid == 0 && st.st_gid == cfg.gid && st.st_mode & 0o7777 == CLIENT_DIR_MODE {
        return Ok(false);
    }
    let e = |what: &'static str| {
        move |e| io_err(format!("cannot harden a client directory: {what}"), e)
    };
    // The records' directory: made the user's, never through a symlink.
    match rustix::fs::mkdirat(dir, RECORDS_DIR, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(err) => return Err(e("mkdir")(err)),
    }
    let records = rustix::fs::openat(
        dir,
        RECORDS_DIR,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(e("open records"))?;
    rustix::fs::fchown(
        &records,
        Some(rustix::process::Uid::from_raw(cfg.uid)),
        Some(rustix::process::Gid::from_raw(cfg.gid)),
    )
    .map_err(e("chown records"))?;
    let mut names = vec![0u8; 64 * 1024];
    let len = rustix::fs::flistxattr(dir, &mut names).map_err(e("list xattrs"))?;
    for name in names[..len]
        .split(|&b| b == 0)
        .filter(|n| n.starts_with(b"user.byteback."))
    {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        let mut value = vec![0u8; 64 * 1024];
        if let Ok(n) = rustix::fs::fgetxattr(dir, name, &mut value) {
            rustix::fs::fsetxattr(&records, name, &value[..n], rustix::fs::XattrFlags::empty())
                .map_err(e("move records"))?;
            let _ = rustix::fs::fremovexattr(dir, name);
        }
    }
    rustix::fs::fchown(
        dir,
        Some(rustix::process::Uid::ROOT),
        Some(rustix::process::Gid::from_raw(cfg.gid)),
    )
    .map_err(e("chown"))?;
    rustix::fs::fchmod(dir, Mode::from_raw_mode(CLIENT_DIR_MODE)).map_err(e("chmod"))?;
    Ok(true)
}

/// Makes the snapshots and partial markers already in a client's directory
/// root's (for `setup --hardened`, when the store is trusted): each
/// snapshot's flag is cleared, its top directory given to root, and the flag
/// set again. How many snapshots it changed.
pub fn adopt_snapshots(dir: std::os::fd::BorrowedFd<'_>) -> Result<usize> {
    let e = |what: String| move |e| io_err(what, e);
    let mut changed = 0;
    let entries =
        rustix::fs::Dir::read_from(dir).map_err(e("cannot list a client directory".into()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(e("cannot list a client directory".into()))?;
        if let Ok(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    for name in names {
        let Ok(st) = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        if st.st_uid == 0 {
            continue;
        }
        let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
        let marker = name
            .strip_suffix(".partial")
            .is_some_and(|n| SnapshotName::parse(n).is_some());
        if marker && kind == rustix::fs::FileType::RegularFile {
            rustix::fs::chownat(
                dir,
                &name,
                Some(rustix::process::Uid::ROOT),
                None,
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(e(format!("cannot chown {name}")))?;
            continue;
        }
        if SnapshotName::parse(&name).is_none()
            || kind != rustix::fs::FileType::Directory
            || st.st_ino != 256
        {
            continue;
        }
        let snap = rustix::fs::openat(
            dir,
            &name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(e(format!("cannot open {name}")))?;
        let io = |r: std::io::Result<()>| {
            r.map_err(|x| rustix::io::Errno::from_io_error(&x).unwrap_or(rustix::io::Errno::IO))
        };
        io(btrfs::set_readonly_at(snap.as_fd(), false))
            .map_err(e(format!("cannot clear ro on {name}")))?;
        let owned = rustix::fs::fchown(
            &snap,
            Some(rustix::process::Uid::ROOT),
            Some(rustix::process::Gid::ROOT),
        );
        io(btrfs::set_readonly_at(snap.as_fd(), true))
            .map_err(e(format!("cannot set ro on {name}")))?;
        owned.map_err(e(format!("cannot chown {name}")))?;
        changed += 1;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn only_the_two_requests_parse() {
        let c = ClientName::new("host.example").unwrap();
        assert_eq!(
            parse(&args(&["snapshot", "host.example"])).unwrap(),
            Request::Snapshot {
                client: c.clone(),
                partial: false
            }
        );
        assert_eq!(
            parse(&args(&["snapshot", "host.example", "--partial"])).unwrap(),
            Request::Snapshot {
                client: c.clone(),
                partial: true
            }
        );
        let r = parse(&args(&["delete", "host.example", "2026-11-26T03:00:12Z"])).unwrap();
        assert_eq!(
            r,
            Request::Delete {
                client: c,
                snapshot: SnapshotName::parse("2026-11-26T03:00:12Z").unwrap()
            }
        );
        // What the server sends parses back to the same request.
        let back: Vec<OsString> = r.to_args().into_iter().map(OsString::from).collect();
        assert_eq!(parse(&back).unwrap(), r);
        for bad in [
            &[][..],
            &["snapshot"],
            &["snapshot", "a/b"],
            &["snapshot", ".."],
            &["snapshot", "../etc"],
            &["snapshot", "x", "--partial", "y"],
            &["snapshot", "x", "--at=2001-01-01T00:00:00Z"],
            &["delete", "x"],
            &["delete", "x", "current"],
            &["delete", "x", "../y/2026-11-26T03:00:12Z"],
            &["delete", "x", "2026-11-26T03:00:12Z/"],
            &["delete", "x", "2026-11-26T03:00:12Z", "--force"],
            &["delete", "../x", "2026-11-26T03:00:12Z"],
            &["rollback", "x"],
            &["sh", "-c", "id"],
        ] {
            let e = parse(&args(bad)).unwrap_err();
            assert!(matches!(e, Error::Usage(_)), "{bad:?}: {e}");
            let text = e.to_string();
            assert!(
                text.starts_with("refused: ") && !text.contains('\n'),
                "{text}"
            );
        }
        use std::os::unix::ffi::OsStringExt;
        let not_utf8 = vec![OsString::from("snapshot"), OsString::from_vec(vec![0xff])];
        assert!(parse(&not_utf8).is_err());
    }

    fn snap(client: &str, time: &str) -> StoredSnapshot {
        StoredSnapshot {
            client: ClientName::new(client).unwrap(),
            name: SnapshotName::parse(time).unwrap(),
        }
    }

    #[test]
    fn deletion_is_checked_against_the_policy() {
        let now: Timestamp = "2026-11-26T12:00:00Z".parse().unwrap();
        let all = vec![
            snap("a", "2026-10-01T12:00:00Z"),
            snap("a", "2026-11-20T12:00:00Z"),
            snap("a", "2026-11-25T12:00:00Z"),
            snap("b", "2026-11-24T12:00:00Z"),
        ];
        let policy = Policy {
            min_free_percent: 5.0,
            target_free_percent: 10.0,
            min_age: config::Duration::from_secs(7 * 86400),
            min_snapshot_interval: config::Duration::from_secs(0),
        };
        let first = &prune::plan(&all, now)[0].snapshot;
        assert_eq!(first, &all[0]);
        // Short of space: exactly the first of the plan.
        assert_eq!(check_deletion(&all, 3.0, &policy, first, now), Ok(()));
        // Between the minimum and the target still counts (pruning goes on
        // until the target); at the target it does not.
        assert_eq!(check_deletion(&all, 7.0, &policy, first, now), Ok(()));
        let e = check_deletion(&all, 10.0, &policy, first, now).unwrap_err();
        assert!(e.contains("target_free_percent (10%)"), "{e}");
        // Another one than the plan's first, a newest, a stranger.
        let e = check_deletion(&all, 3.0, &policy, &all[1], now).unwrap_err();
        assert!(e.contains("deletes a 2026-10-01T12:00:00Z first"), "{e}");
        let e = check_deletion(&all, 3.0, &policy, &all[2], now).unwrap_err();
        assert!(e.contains("is a's newest"), "{e}");
        let e = check_deletion(&all, 3.0, &policy, &all[3], now).unwrap_err();
        assert!(e.contains("is b's newest"), "{e}");
        let e = check_deletion(&all, 3.0, &policy, &snap("c", "2020-01-01T00:00:00Z"), now)
            .unwrap_err();
        assert!(e.contains("not a snapshot of this store"), "{e}");
        // Too young a store.
        let young = Policy {
            min_age: config::Duration::from_secs(3650 * 86400),
            ..policy
        };
        let e = check_deletion(&all, 3.0, &young, first, now).unwrap_err();
        assert!(e.contains("min_age"), "{e}");
        // Every snapshot its client's newest.
        let lone = vec![snap("a", "2026-10-01T12:00:00Z")];
        let e = check_deletion(&lone, 3.0, &policy, &lone[0], now).unwrap_err();
        assert!(e.contains("newest"), "{e}");
    }

    fn pinned(client: &str, id: u64, times: &[&str]) -> PinnedClient {
        PinnedClient {
            client: ClientName::new(client).unwrap(),
            id: (7, id),
            snapshots: times
                .iter()
                .map(|t| SnapshotName::parse(t).unwrap())
                .collect(),
        }
    }

    #[test]
    fn the_plan_is_over_one_consistent_pinned_view() {
        let now: Timestamp = "2026-11-26T12:00:00Z".parse().unwrap();
        let (old, recent) = ("2026-10-01T12:00:00Z", "2026-11-25T12:00:00Z");
        let policy = Policy {
            min_free_percent: 5.0,
            target_free_percent: 10.0,
            min_age: config::Duration::from_secs(7 * 86400),
            min_snapshot_interval: config::Duration::from_secs(0),
        };
        let a = ClientName::new("a").unwrap();
        let b = ClientName::new("b").unwrap();
        // a (directory 1) has only `old`, its newest; b (directory 2) has
        // `old` and `recent`.
        let view = vec![pinned("a", 1, &[old]), pinned("b", 2, &[old, recent])];
        let all = plan_input(&view, &a, (7, 1)).unwrap();
        assert_eq!(all.len(), 3);
        let a_old = snap("a", old);
        let e = check_deletion(&all, 3.0, &policy, &a_old, now).unwrap_err();
        assert!(e.contains("is a's newest"), "{e}");
        let b_old = snap("b", old);
        let all_b = plan_input(&view, &b, (7, 2)).unwrap();
        assert_eq!(check_deletion(&all_b, 3.0, &policy, &b_old, now), Ok(()));

        // The two directories swapped after the helper opened a's: the
        // name a now lists b's directory (the attack, which by names alone
        // would make a's only snapshot look deletable). Refused.
        let swapped = vec![pinned("a", 2, &[old, recent]), pinned("b", 1, &[old])];
        let e = plan_input(&swapped, &a, (7, 1)).unwrap_err();
        assert!(e.contains("a names another directory"), "{e}");
        // Swapped in the middle of the listing: one directory under two
        // names, the other nowhere.
        let twice = vec![pinned("a", 1, &[old]), pinned("b", 1, &[old])];
        let e = plan_input(&twice, &a, (7, 1)).unwrap_err();
        assert!(e.contains("a and b are the same directory"), "{e}");
        // Renamed away.
        let gone = vec![pinned("b", 2, &[old, recent])];
        let e = plan_input(&gone, &a, (7, 1)).unwrap_err();
        assert!(e.contains("a is gone"), "{e}");
        // Another client's directory, consistent: a's plan still sees its
        // own listing, so its newest is still its newest.
        let renamed = vec![pinned("a", 1, &[old]), pinned("c", 2, &[old, recent])];
        let all = plan_input(&renamed, &a, (7, 1)).unwrap();
        let e = check_deletion(&all, 3.0, &policy, &a_old, now).unwrap_err();
        assert!(e.contains("is a's newest"), "{e}");
    }

    #[test]
    fn snapshots_keep_their_interval() {
        let now: Timestamp = "2026-11-26T12:00:00Z".parse().unwrap();
        let six_hours = config::Duration::from_secs(6 * 3600);
        let recent = SnapshotName::parse("2026-11-26T07:00:00Z").unwrap();
        let old = SnapshotName::parse("2026-11-26T05:59:59Z").unwrap();
        assert!(check_interval(None, now, six_hours).is_ok());
        assert!(check_interval(Some(&old), now, six_hours).is_ok());
        let e = check_interval(Some(&recent), now, six_hours).unwrap_err();
        assert!(e.contains("min_snapshot_interval (6h)"), "{e}");
        assert!(
            e.contains("the next may be taken from 2026-11-26T13:00:00Z"),
            "{e}"
        );
        // No interval: never refused, even within the second.
        let zero = config::Duration::from_secs(0);
        let same = SnapshotName::parse("2026-11-26T12:00:00Z").unwrap();
        assert!(check_interval(Some(&same), now, zero).is_ok());
    }

    #[test]
    fn the_config_reads_back_and_refuses_unknown_keys() {
        let cfg = HardenedConfig {
            user: "byteback".into(),
            uid: 998,
            gid: 998,
            store: "/srv/byteback".into(),
            helper: "/usr/local/bin/byteback-privileged".into(),
            policy: Policy::default(),
        };
        let text = toml::to_string(&cfg).unwrap();
        let back: HardenedConfig = config::parse(Path::new("h.toml"), &text).unwrap();
        assert_eq!(back, cfg);
        let e = config::parse::<HardenedConfig>(
            Path::new("h.toml"),
            &format!("{text}\nforce = true\n"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("h.toml"), "{e}");
    }
}
