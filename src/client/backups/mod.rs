//! This machine's backups, wherever they are, behind one trait.
//!
//! A destination is a server (reached over ssh, [`RemoteBackups`]) or a
//! store directory on this machine ([`LocalBackups`], the store opened in
//! process). Every command — `backup`'s attempts, `list`, `restore`,
//! `snapshots`, `verify`, `test` — is written once against [`Backups`];
//! [`open`] is the one place that looks at which kind a destination is.
//! Both kinds go through the same backup lifecycle (on the server, behind
//! its forced command; here, called directly), so a local backup takes the
//! same locks, records the same outcomes and growth, and runs incrementally
//! exactly as a remote one does.

pub mod local;
pub mod remote;

use std::ops::Deref;

use crate::catalog::Row;
use crate::client::config::ConfigDir;
use crate::client::settings::Settings;
use crate::client::transfer::Transferred;
use crate::destination::Target;
use crate::error::Result;
use crate::exec::rsync::{RestoreFrom, TransferTo};
use crate::exec::ssh::HostKeyPolicy;
use crate::names::SnapshotName;
use crate::protocol::{DigestLine, PingReply, ReplaceList, Request, TransferMode};
use crate::store::Snapshot;

pub use local::LocalBackups;
pub use remote::RemoteBackups;

/// What a listing asks for: the fields of [`Request::List`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Find {
    /// Every distinct version of each path, not only the newest.
    pub all: bool,
    /// Modification times to the nanosecond.
    pub nanoseconds: bool,
    /// A glob of snapshot names (`current` is the live copy).
    pub snapshots: Vec<u8>,
    /// Absolute glob patterns of paths.
    pub patterns: Vec<Vec<u8>>,
}

impl Find {
    /// As a request on the wire.
    pub fn request(&self) -> Request {
        Request::List {
            all: self.all,
            nanoseconds: self.nanoseconds,
            snapshots: self.snapshots.clone(),
            patterns: self.patterns.clone(),
        }
    }
}

/// A client's backups: what the commands ask of them.
pub trait Backups {
    /// Where they are, for messages: `server HOST`, `store DIR`.
    fn describe(&self) -> String;

    /// One connection for a run of requests (an ssh master connection that
    /// the requests and rsync share); a local store is its own session.
    fn session(&self) -> Result<Session<'_>>;

    /// The client's space: its snapshots, free space, notices.
    fn ping(&self) -> Result<PingReply>;

    /// The client's snapshots, oldest first.
    fn snapshots(&self) -> Result<Vec<Snapshot>>;

    /// The rows matching `find`, handed to `each` as they come.
    fn find(&self, find: &Find, each: &mut dyn FnMut(Row) -> Result<()>) -> Result<()>;

    /// The content hash of each regular file under `patterns` (at most 64,
    /// in 3,000 bytes) in the snapshot `name`, handed to `each`.
    fn digest(
        &self,
        name: &SnapshotName,
        patterns: &[Vec<u8>],
        each: &mut dyn FnMut(DigestLine) -> Result<()>,
    ) -> Result<()>;

    /// What changed from snapshot `from` to `to` (defaults: the newest but
    /// one, and the newest), as `byteback-server diff` prints it (one JSON
    /// object with `json`), handed to `each` a line at a time.
    fn diff(
        &self,
        from: Option<&SnapshotName>,
        to: Option<&SnapshotName>,
        json: bool,
        each: &mut dyn FnMut(&str) -> Result<()>,
    ) -> Result<()>;

    /// Where a restore's rsync reads from.
    fn restore_from(&self) -> RestoreFrom;

    /// Readies `current` for an incremental transfer: the snapshot
    /// `snapshot` less the paths `list` replaces (and, protocol 3 on, less
    /// those it says are gone). [`crate::error::Error::FullPassNeeded`]: a
    /// full pass will do instead.
    fn incremental(&self, snapshot: &str, list: ReplaceList) -> Result<()>;

    /// One transfer into `current`, of `mode` (an incremental one only into
    /// a `current` readied by [`Backups::incremental`]): the store readies
    /// it, `send` runs rsync as [`Receiving`] says, and the store records
    /// what was written. `sparse`: the run of the files with holes, with
    /// `--sparse`, which leaves an incremental readying for the run of the
    /// rest (a server states both by rsync's own argv).
    fn transfer(
        &self,
        mode: TransferMode,
        sparse: bool,
        send: &mut dyn FnMut(Receiving<'_>) -> Result<Transferred>,
    ) -> Result<Transferred>;

    /// Asks for the snapshot that ends the backup (marked partial, with the
    /// files left out, when `failed_files` is given): its name.
    fn complete(&self, failed_files: Option<&str>) -> Result<String>;
}

/// Where a transfer's rsync sends to, and what may end it early.
pub struct Receiving<'a> {
    pub to: TransferTo,
    /// Why the writer (rsync, by pid) must stop now, if it must: a store's
    /// growth watchdog. (A server watches its own receiver.)
    pub stop: &'a dyn Fn(u32) -> Option<String>,
}

/// One connection's worth of [`Backups`]: the same ones, or new ones that
/// share a connection until dropped.
pub enum Session<'a> {
    Same(&'a dyn Backups),
    Connected(Box<dyn Backups + 'a>),
}

impl<'a> Deref for Session<'a> {
    type Target = dyn Backups + 'a;

    fn deref(&self) -> &Self::Target {
        match self {
            Session::Same(b) => *b,
            Session::Connected(b) => b.as_ref(),
        }
    }
}

/// How to open them.
#[derive(Debug, Clone, Copy)]
pub struct Opening {
    /// What ssh does with the server's host key.
    pub host_keys: HostKeyPolicy,
    /// A local store (and this machine's space in it) is made if missing.
    pub create: bool,
}

impl Opening {
    /// For a command that only reads: a strict host key, nothing made.
    pub const READ: Opening = Opening {
        host_keys: HostKeyPolicy::Strict,
        create: false,
    };

    /// For a backup: a strict host key, a local store made on first use.
    pub const BACKUP: Opening = Opening {
        host_keys: HostKeyPolicy::Strict,
        create: true,
    };
}

/// The backups the settings name.
pub fn open(dir: &ConfigDir, settings: &Settings, how: Opening) -> Result<Box<dyn Backups>> {
    Ok(match &settings.destination {
        Target::Remote(destination) => Box::new(RemoteBackups::new(
            dir,
            destination.clone(),
            settings.connect_timeout,
            how.host_keys,
        )?),
        Target::Local(root) => Box::new(LocalBackups::open(root, &settings.name, how.create)?),
    })
}
