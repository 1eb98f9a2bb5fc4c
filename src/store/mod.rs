//! The server's store: one directory per client, each holding `current`
//! (what the client writes into) and its snapshots, named by UTC time.
//!
//! ```text
//! <store>/.byteback/server.toml     configuration
//! <store>/.byteback/server.log      what happened, one line per event (rotated at 1 MiB)
//! <store>/.byteback/locks/client/<client>  one receive or snapshot per client at a time
//! <store>/.byteback/locks/{read,slot,key}/  read slots, transfer slots, one transfer per key
//! <store>/.byteback/changes/<client>/  each snapshot's change log, the pending list
//! <store>/<client>/current          subvolume the client's rsync writes into
//! <store>/<client>/<time>           read-only snapshots
//! <store>/<client>/<time>.partial   marker: that snapshot's transfer left files out
//! <store>/<client>/<time>.changes   that snapshot's change log (crate::changes)
//! ```
//!
//! The layout is the original byteback's, plus the `.byteback` directory
//! (which no client name can collide with, since names never start with `.`).

pub mod backend;
pub mod btrfs;
#[cfg(test)]
pub mod fake;
pub mod grant;
pub mod keeper;
pub mod moved;
pub mod outcome;
pub mod plain;
#[cfg(test)]
mod props;
pub mod quota;
pub mod replicas;
pub mod setup;
pub mod space;
pub mod suspect;

pub use suspect::SuspectConfig;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::config;
use crate::error::{Error, IoContext, Result};
use crate::names::{ClientName, SnapshotName};
use crate::report;
use crate::sys::fs::write_atomic;
use crate::sys::lock::Lock;
use crate::sys::syslog;
use backend::SnapshotBackend;
pub use keeper::{Direct, DryRun, Keeper, Powers};

/// The xattr of the state directory holding the current space alert.
const ALERT_XATTR: &str = "user.byteback.alert";

/// The xattr of a client's directory holding a message for that client.
const NOTICE_XATTR: &str = "user.byteback.notice";

/// The directory of a hardened client's directory whose xattrs hold its
/// records (see [`Store::records`]).
pub const RECORDS_DIR: &str = ".records";

/// An xattr of a client's directory: `current` was readied for an
/// incremental transfer from the snapshot named in it (`building` while
/// that is under way). See [`crate::lifecycle::ClientBackups::prepare_incremental`].
pub const INCREMENTAL_XATTR: &str = "user.byteback.incremental";

/// An xattr of a client's directory: `current` holds exactly its newest
/// snapshot (set when a snapshot is taken or `current` rolled back to it,
/// dropped when a transfer starts).
pub const CLEAN_XATTR: &str = "user.byteback.clean";

/// An xattr of a client's directory: the key whose transfer (or
/// incremental readying) last produced `current`, as
/// [`crate::server::roles::KeyId`] writes it. A snapshot is taken only for
/// the key named here (see [`crate::lifecycle::ClientBackups::complete`]), so no
/// other key can change what the next snapshot holds between a transfer
/// and its snapshot. Dropped when `current` is rolled back.
pub const PRODUCER_XATTR: &str = "user.byteback.producer";

/// The size at which the server log is rotated (one older file is kept).
const LOG_LIMIT: u64 = 1 << 20;

/// The server log's lines, older rotated ones first (for status).
pub fn read_log(root: &Path) -> String {
    let path = Store::state_dir_of(root).join("server.log");
    let old = std::fs::read_to_string(path.with_extension("log.1")).unwrap_or_default();
    old + &std::fs::read_to_string(&path).unwrap_or_default()
}

/// How many reads of one client (restores, listings, digests) may run at
/// once; one more is refused at once.
pub const MAX_READS_PER_CLIENT: u32 = 2;

/// The most a partial marker keeps of the list of failed files.
const MAX_PARTIAL_NOTE: usize = 64 * 1024;

/// How snapshots are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// `current` is a subvolume; snapshots are read-only btrfs snapshots.
    Btrfs,
    /// Plain directories on any filesystem; unchanged files are hard links
    /// to the previous snapshot (see [`plain`]).
    Plain,
}

impl Backend {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Btrfs => "btrfs",
            Backend::Plain => "plain",
        }
    }
}

/// The server configuration, `<store>/.byteback/server.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, documented::DocumentedFields)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// How snapshots are made: `"btrfs"` (`current` is a subvolume,
    /// snapshots are read-only btrfs snapshots) or `"plain"` (any
    /// filesystem: snapshots are directories whose unchanged files are hard
    /// links to the previous snapshot's). `setup` chooses it from the
    /// store's filesystem and writes it.
    pub backend: Backend,
    /// A client's snapshots are at least this far apart, so it cannot flood
    /// the disk with them; a backup inside it is refused with the time from
    /// which the next snapshot may be taken (its data stays in `current`).
    pub min_snapshot_interval: config::Duration,
    /// The server ends its rsync after this long without a byte from the
    /// client, so a dropped connection frees the client's backup space.
    pub io_timeout: config::Duration,
    /// How long a backup waits for an earlier one of the same client that
    /// is still running (e.g. left behind by a dropped connection), or for
    /// a free transfer slot, before refusing; the client retries later.
    pub lock_wait: config::Duration,
    /// Pruning starts when the store's really writable space (btrfs's own
    /// figures, with headroom for metadata; on plain stores the smaller
    /// share of bytes and inodes left) falls below this percentage.
    pub min_free_percent: f64,
    /// Pruning deletes the least important snapshots, one by one, until
    /// free space reaches this percentage.
    pub target_free_percent: f64,
    /// Nothing is pruned automatically until some snapshot is at least this
    /// old.
    pub min_age: config::Duration,
    /// Data no snapshot holds yet (what a client's rsync wrote since its
    /// newest snapshot, measured as bytes really written on this disk,
    /// metadata included) may reach this percentage of what the client's
    /// snapshots cost (100: it doubled). When space runs short, such data
    /// over a limit is discarded first (the client's `current` goes back to
    /// its newest snapshot, and the client is told why): nobody's history is
    /// deleted to make room for it.
    pub max_growth_percent: u64,
    /// And never more than this percentage of the store (the only limit of
    /// a client without a snapshot). The same share bounds all the clients
    /// one key writes to together (a primary's replica key writes every
    /// `PRIMARY__*` client).
    pub max_unsnapshotted_percent: f64,
    /// All clients together may hold no more data that no snapshot holds
    /// than this percentage of the store.
    pub max_unsnapshotted_store_percent: f64,
    /// `byteback-server status` calls a client stale (and its `--check`
    /// warns) when its newest snapshot is older than this.
    pub stale_after: config::Duration,
    /// At most this many backups transfer at once; the others wait their
    /// turn (up to `lock_wait`, and are told so) instead of all competing at
    /// 03:00.
    pub max_concurrent_backups: u32,
    /// A client's listing or digest (`list`, `verify`) ends after this
    /// long, and the client is told why. Each client may run at most 2
    /// reads (listings, restores, verifies) at once; more are refused as
    /// busy.
    pub read_timeout: config::Duration,
    /// A digest (`verify --checksum`) reads at most this many bytes of file
    /// data (64 GiB by default; holes are not read, and a hard-linked file
    /// is read once), then ends, and the client is told why.
    pub max_digest_bytes: u64,
    /// The system log's socket (journald or syslog), which gets every line
    /// of the server's log; `$BYTEBACK_LOG_SOCKET` overrides it, and
    /// nothing fails if it is missing. Unset: `/dev/log`.
    pub log_socket: Option<PathBuf>,
    /// The rsync the server runs for every transfer (an absolute path). It
    /// is made visible in the sandbox and probed there once per binary for
    /// its version and `--confine-root` (3.5.0 or later; cached in
    /// `.byteback/rsync-probe.json`, probed again when the binary its path
    /// resolves to or byteback changes); `setup` and `status` show it.
    pub rsync: PathBuf,
    /// How the server's rsync is confined: a private view of the filesystem
    /// (unprivileged user namespaces) and Landlock, each used where the
    /// kernel has it. These keys switch a layer off as on a kernel without
    /// it (the others stay; with none at all and an rsync without
    /// `--confine-root`, transfers are refused). `setup` and `status` say
    /// which layers are in force.
    pub sandbox: SandboxConfig,
    /// Replication: a second copy of every client's snapshots on other
    /// byteback servers. `byteback-server replicate` with no `--to` sends to
    /// each replica listed here, and the maintenance timer runs it after
    /// pruning. While a replica is listed, pruning keeps the snapshots it
    /// does not hold yet, unless nothing else could be deleted.
    pub replicate: Box<ReplicateConfig>,
    /// Limits the server sets for every client, whatever the client asks:
    /// a bandwidth budget all transfers share, and the times of day at
    /// which backups are taken. Unset: no budget, any time.
    pub limits: LimitsConfig,
    /// Ransomware-aware retention: a snapshot that changed or deleted far
    /// more of its client's files than usual is marked suspect, and the
    /// snapshots before it are kept (pinned) until a person runs
    /// `byteback-server ack --client NAME SNAPSHOT`.
    pub suspect: SuspectConfig,
}

/// The `[limits]` section: what the server allows every client, whatever
/// the client's own settings say (see docs/server-and-clients.md,
/// "Server-side limits").
#[derive(
    Debug, Clone, PartialEq, Default, Deserialize, Serialize, documented::DocumentedFields,
)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// A bandwidth budget shared by all the transfers into this store that
    /// run at once (backups, and a primary's replication into a replica):
    /// each keeps to the budget divided by how many run, re-counted twice a
    /// second, counting the bytes of the connection both ways. The same
    /// forms as a client's `bwlimit`: KiB per second as a number (`51200`),
    /// or with a unit, `"50M"`, `"512K"` (powers of 1024). A client's own
    /// `bwlimit` can only lower its share. Restores, listings and verifies
    /// are not held to it. Unset (or `0`): no budget.
    pub bandwidth: Option<config::Bwlimit>,
    /// The times of day at which transfers are taken, in the server's local
    /// time (`$TZ` of the forced command, else `/etc/localtime`), each
    /// `"HH:MM-HH:MM"`, which may cross midnight (`"22:00-06:00"`; the end
    /// is not included, `24:00` is midnight). Outside every window a
    /// transfer (and readying `current` for an incremental one) is refused
    /// with the time the next window opens, and the client waits until then
    /// if that is within its `retry_after_max`; a transfer already running
    /// when a window closes finishes, and its snapshot is taken. Applies to
    /// a primary's replication into this store too. Unset: any time.
    pub windows: Option<crate::window::Windows>,
}

/// The `[sandbox]` section: how the server's rsync is confined (see
/// [`crate::exec::sandbox`]). By default every layer the kernel gives is
/// used; these switch one off, as on a kernel without it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, documented::DocumentedFields)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// `false` runs the server's rsync without the private view of the
    /// filesystem, as on a kernel without unprivileged user namespaces.
    pub private_view: bool,
    /// Use at most this Landlock ABI (`0`: none; `3`: no signal or socket
    /// scoping, no truncate rights), as on an older kernel. With no private
    /// view, no Landlock and an rsync without `--confine-root` (older than
    /// 3.5.0), transfers are refused. Unset: the kernel's.
    pub landlock_max_abi: Option<u32>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            private_view: true,
            landlock_max_abi: None,
        }
    }
}

impl SandboxConfig {
    /// The sandbox's limits.
    pub fn limits(&self) -> crate::exec::sandbox::Limits {
        crate::exec::sandbox::Limits {
            no_private_view: !self.private_view,
            max_landlock_abi: self.landlock_max_abi,
        }
    }
}

/// The `[replicate]` section: where `byteback-server replicate` (and the
/// maintenance timer, after pruning) sends this store's snapshots.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, documented::DocumentedFields)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicateConfig {
    /// Replicas, each `[USER@]HOST[:PORT]` of a byteback server that
    /// enrolled this server's replication key with `new-client --replica`.
    pub to: Vec<String>,
    /// Attempts per replica and run before it gives up (each resumes).
    pub retry_attempts: u32,
    /// The pause between attempts.
    pub retry_pause: config::Duration,
    /// rsync's `--bwlimit` for replication: KiB per second as a number
    /// (`500`), or with a unit, `"10M"`, `"512K"` (powers of 1024);
    /// `replicate --bwlimit` overrides it. Unset: no limit (but a replica's
    /// own `[limits] bandwidth` still applies there).
    pub bwlimit: Option<config::Bwlimit>,
}

impl Default for ReplicateConfig {
    fn default() -> Self {
        ReplicateConfig {
            to: Vec::new(),
            retry_attempts: 3,
            retry_pause: config::Duration::from_secs(60),
            bwlimit: None,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            backend: Backend::Btrfs,
            min_snapshot_interval: config::Duration::from_secs(6 * 3600),
            io_timeout: config::Duration::from_secs(600),
            lock_wait: config::Duration::from_secs(120),
            min_free_percent: 5.0,
            target_free_percent: 10.0,
            min_age: config::Duration::from_secs(7 * 86400),
            max_growth_percent: 100,
            max_unsnapshotted_percent: 50.0,
            max_unsnapshotted_store_percent: 50.0,
            stale_after: config::Duration::from_secs(26 * 3600),
            max_concurrent_backups: 4,
            read_timeout: config::Duration::from_secs(3600),
            max_digest_bytes: 64 << 30,
            rsync: PathBuf::from("/usr/bin/rsync"),
            sandbox: SandboxConfig::default(),
            log_socket: None,
            replicate: Box::default(),
            limits: LimitsConfig::default(),
            suspect: SuspectConfig::default(),
        }
    }
}

/// The documented configuration file `byteback-server setup` writes.
pub fn server_config_template(backend: Backend) -> String {
    SERVER_CONFIG_TEMPLATE.replace(
        "backend = \"btrfs\"",
        &format!("backend = \"{}\"", backend.as_str()),
    )
}

const SERVER_CONFIG_TEMPLATE: &str = r#"# byteback server configuration. Every key is shown with its default;
# durations are written like "90s", "10m", "6h" or "7 days".

# How snapshots are made, chosen by setup from the filesystem: "btrfs"
# (current is a subvolume, snapshots are read-only btrfs snapshots) or
# "plain" (any filesystem: snapshots are directories whose unchanged files
# are hard links to the previous snapshot's).
backend = "btrfs"

# A client cannot snapshot more often than this, so it cannot flood the disk.
min_snapshot_interval = "6h"

# The server's rsync gives up after this long without any data moving, so a
# dropped connection frees the client's backup space.
io_timeout = "10m"

# How long a new backup waits for an earlier one of the same client that is
# still running (e.g. left behind by a dropped connection), or for a free
# transfer slot (below), before refusing; the client retries later.
lock_wait = "2m"

# At most this many backups transfer at once; the others wait their turn
# (up to lock_wait, and are told so) instead of all competing at 03:00.
max_concurrent_backups = 4

# Reads: each client may run at most 2 listings, restores or verifies at
# once (more are refused: busy, try again). A listing or a digest (`verify
# --checksum`) ends after read_timeout, and a digest after reading
# max_digest_bytes of file data (64 GiB; holes are not read, a hard-linked
# file is read once); the client is told which limit it reached.
read_timeout = "1h"
max_digest_bytes = 68719476736

# Every event also goes to the system log (journald or syslog) through this
# socket; nothing fails if it is missing.
# log_socket = "/dev/log"

# The rsync the server runs for every transfer (the distribution's by
# default). Its version, and whether it has --confine-root (3.5.0+), are
# probed in the same sandbox it runs in; `setup` and `status` show them.
rsync = "/usr/bin/rsync"

# Pruning: when the store's really writable space (btrfs's own figures, with
# headroom for metadata) falls below min_free_percent, the least important
# snapshots are deleted one by one until it reaches target_free_percent.
# A client's newest snapshot is never deleted.
min_free_percent = 5.0
target_free_percent = 10.0

# Nothing is pruned automatically until some snapshot is at least this old.
min_age = "7 days"

# Data that no snapshot holds yet (what a client's rsync wrote since its
# newest snapshot, measured as bytes really written on this disk) may reach
# max_growth_percent of the client's size at that snapshot (100 = it
# doubled), and never more than max_unsnapshotted_percent of the store (the
# only limit of a client that has no snapshot yet). The same share bounds
# all the clients one key writes to together (a primary's replica key
# writes every PRIMARY__* client), and all clients together may hold at
# most max_unsnapshotted_store_percent of the store. Written bytes include
# what the filesystem spent on metadata (btrfs metadata, both copies; on
# plain stores the inodes taken). When space runs short, such data over a
# limit is discarded first, the largest first (the client's current goes
# back to its newest snapshot, and the client is told why): nobody's
# history is ever deleted to make room for it.
max_growth_percent = 100
max_unsnapshotted_percent = 50.0
max_unsnapshotted_store_percent = 50.0

# `byteback-server status` calls a client stale (and its --check warns)
# when its newest snapshot is older than this.
stale_after = "26h"

# How the server's rsync is confined: a private view of the filesystem
# (unprivileged user namespaces) and Landlock, each used where the kernel
# has it. These switch a layer off as on a kernel without it (the others
# stay; with none at all and an rsync without --confine-root, transfers are
# refused). `setup` and `status` say which layers are in force.
[sandbox]
private_view = true
# landlock_max_abi = 3

# Replication: a second copy of every client's snapshots on other byteback
# servers (see docs/replication.md). `byteback-server replicate` with no
# --to sends to each replica listed here, and the maintenance timer runs it
# after pruning. While a replica is listed, pruning keeps snapshots it does
# not hold yet, unless nothing else could be deleted.
[replicate]
# to = ["byteback@replica.example.net"]
to = []
retry_attempts = 3
retry_pause = "1m"
# bwlimit = "10M"

# Limits the server sets whatever its clients ask (see
# byteback-server.toml(5)): a bandwidth budget all transfers running at once
# share (KiB per second, or e.g. "50M"; each client's own bwlimit can only
# lower its share), and the times of day, in this server's local time, at
# which backups are taken (outside them a backup is refused with the time
# the next window opens, and the client waits until then). Unset: no
# budget, any time.
[limits]
# bandwidth = "50M"
# windows = ["22:00-06:00", "12:00-13:00"]

# Ransomware-aware retention (see docs/disk-space.md): a snapshot that
# changed in content or deleted more than min_share of the previous
# snapshot's files, and at least factor times the client's usual share (the
# median over its last `history` snapshots), is marked suspect; the `pin`
# newest snapshots before it are never pruned until a person runs
# `byteback-server ack --client NAME SNAPSHOT`. enabled = false judges none.
[suspect]
enabled = true
min_share = 0.3
factor = 10.0
history = 10
pin = 3
"#;

/// A log line that something reads back (`status`): its kind is a tag
/// right after the time (`[snapshot-deleted]`), written and read by this
/// one type, never found by matching the English words around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogEvent {
    /// Pruning deleted a snapshot.
    SnapshotDeleted,
    /// Pruning deleted a snapshot no configured replica held yet.
    UnreplicatedSnapshotDeleted,
}

impl LogEvent {
    const ALL: [LogEvent; 2] = [
        LogEvent::SnapshotDeleted,
        LogEvent::UnreplicatedSnapshotDeleted,
    ];

    /// The tag in the log.
    pub fn tag(self) -> &'static str {
        match self {
            LogEvent::SnapshotDeleted => "[snapshot-deleted]",
            LogEvent::UnreplicatedSnapshotDeleted => "[unreplicated-snapshot-deleted]",
        }
    }

    /// How the system log files it.
    fn severity(self) -> syslog::Severity {
        match self {
            LogEvent::SnapshotDeleted => syslog::Severity::Info,
            LogEvent::UnreplicatedSnapshotDeleted => syslog::Severity::Warning,
        }
    }

    /// The event of a log line's text (after its time), if it has one.
    pub fn of(text: &str) -> Option<LogEvent> {
        let word = text.split(' ').next()?;
        LogEvent::ALL.into_iter().find(|e| e.tag() == word)
    }
}

/// The store's locks, each kind in its own namespace (see
/// [`Store::lock_path`]).
#[derive(Debug, Clone, Copy)]
enum LockName<'a> {
    /// A client's backups: one transfer, snapshot or prune of it at a time.
    Client(&'a ClientName),
    /// One of a client's read slots (1 to [`MAX_READS_PER_CLIENT`]).
    Read(&'a ClientName, u32),
    /// One of the store's `max_concurrent_backups` transfer slots.
    Slot(u32),
    /// One key's transfers ([`crate::server::roles::KeyId`]).
    Key(&'a str),
}

/// One snapshot of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Its name and time.
    pub name: SnapshotName,
    /// Whether its transfer left some files out.
    pub partial: bool,
}

/// An opened store.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    /// The store's configuration.
    pub config: ServerConfig,
    /// How its snapshots are made (picked from `config.backend`).
    backend: Box<dyn SnapshotBackend>,
    /// Who writes its history and records (see [`keeper`]).
    keeper: Box<dyn Keeper>,
}

impl Store {
    /// Where the store keeps its own files.
    pub fn state_dir_of(root: &Path) -> PathBuf {
        root.join(".byteback")
    }

    /// The config file of the store at `root`.
    pub fn config_path_of(root: &Path) -> PathBuf {
        Self::state_dir_of(root).join("server.toml")
    }

    /// Opens a store that `byteback-server setup` has prepared.
    pub fn open(root: &Path) -> Result<Store> {
        let store = Self::open_unchecked(root)?;
        let c = &store.config;
        for (key, value) in [
            ("max_unsnapshotted_percent", c.max_unsnapshotted_percent),
            (
                "max_unsnapshotted_store_percent",
                c.max_unsnapshotted_store_percent,
            ),
        ] {
            if !(0.0..=100.0).contains(&value) {
                return Err(Error::Config(format!(
                    "invalid config {}: {key} must be between 0 and 100 (now {value})",
                    Self::config_path_of(root).display(),
                )));
            }
        }
        if !(0.0..=100.0).contains(&c.min_free_percent)
            || !(c.min_free_percent..=100.0).contains(&c.target_free_percent)
        {
            return Err(Error::Config(format!(
                "invalid config {}: need 0 <= min_free_percent <= target_free_percent <= 100 (now {} and {})",
                Self::config_path_of(root).display(),
                c.min_free_percent,
                c.target_free_percent
            )));
        }
        Ok(store)
    }

    fn open_unchecked(root: &Path) -> Result<Store> {
        let path = Self::config_path_of(root);
        let config = config::load::<ServerConfig>(&path)?.ok_or_else(|| {
            Error::Config(format!(
                "{} is not a byteback store ({} is missing): run `byteback-server setup --store {}` as the backup user",
                root.display(),
                path.display(),
                root.display()
            ))
        })?;
        let backend = backend::for_kind(config.backend);
        Ok(Store::with_backend(root, config, backend))
    }

    /// A store at `root` whose snapshots are made by `backend` (another
    /// than its configuration names only in tests, with a fake).
    pub fn with_backend(
        root: &Path,
        config: ServerConfig,
        backend: Box<dyn SnapshotBackend>,
    ) -> Store {
        Store {
            root: root.to_owned(),
            config,
            backend,
            keeper: Box::new(Direct),
        }
    }

    /// Hands the store's history to another keeper (a decorator of the
    /// one it has: hardened mode's helper, a dry run).
    pub fn decorate(&mut self, wrap: impl FnOnce(Box<dyn Keeper>) -> Box<dyn Keeper>) {
        let keeper = std::mem::replace(&mut self.keeper, Box::new(Direct));
        self.keeper = wrap(keeper);
    }

    /// What the store's keeper can do (see [`Powers`]).
    pub fn powers(&self) -> Powers {
        self.keeper.powers()
    }

    /// How this store's snapshots are made.
    pub fn backend(&self) -> &dyn SnapshotBackend {
        self.backend.as_ref()
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of one client.
    pub fn client_dir(&self, client: &ClientName) -> PathBuf {
        self.root.join(client.as_str())
    }

    /// Where a client's rsync writes.
    pub fn current(&self, client: &ClientName) -> PathBuf {
        self.client_dir(client).join("current")
    }

    /// Whether the client has backup space here.
    pub fn has_client(&self, client: &ClientName) -> bool {
        std::fs::symlink_metadata(self.current(client)).is_ok_and(|m| m.is_dir())
    }

    /// Creates the client's directory and `current`, if missing.
    pub fn add_client(&self, client: &ClientName) -> Result<()> {
        let dir = self.client_dir(client);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("cannot create", &dir, e)),
        }
        let current = self.current(client);
        if std::fs::symlink_metadata(&current).is_err() {
            self.backend.create_current(&current)?;
        }
        Ok(())
    }

    /// The client's snapshots, oldest first. Reads only the client's
    /// directory listing: nothing inside a snapshot is touched.
    pub fn snapshots(&self, client: &ClientName) -> Result<Vec<Snapshot>> {
        let dir = self.client_dir(client);
        let mut snapshots = Vec::new();
        let mut partial_markers = Vec::new();
        for entry in std::fs::read_dir(&dir).on("cannot list", &dir)? {
            let entry = entry.on("cannot list", &dir)?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else {
                self.warn_stranger(&dir, &file_name.to_string_lossy());
                continue;
            };
            if name == "current" || name.starts_with('.') {
                continue;
            }
            if let Some(snapshot) = name.strip_suffix(".partial").and_then(SnapshotName::parse) {
                partial_markers.push(snapshot);
                continue;
            }
            // A snapshot's change log (see `lifecycle::changelog`).
            if name
                .strip_suffix(".changes")
                .and_then(SnapshotName::parse)
                .is_some()
            {
                continue;
            }
            match SnapshotName::parse(name) {
                // In hardened mode only the helper's snapshots (root's)
                // count: a subvolume the user made is nobody's history.
                Some(_) if !self.keeper.admits(&entry) => {
                    report::warn(format_args!(
                        "ignoring {} in {}: not root's, so not a snapshot in hardened mode",
                        name.escape_debug(),
                        dir.display()
                    ));
                }
                Some(snapshot) if entry.file_type().is_ok_and(|t| t.is_dir()) => {
                    snapshots.push(Snapshot {
                        name: snapshot,
                        partial: false,
                    })
                }
                _ => self.warn_stranger(&dir, name),
            }
        }
        for s in &mut snapshots {
            s.partial = partial_markers.contains(&s.name);
        }
        snapshots.sort_by_key(|s| s.name.time());
        Ok(snapshots)
    }

    fn warn_stranger(&self, dir: &Path, name: &str) {
        report::warn(format_args!(
            "ignoring {} in {}: not a snapshot name",
            name.escape_debug(),
            dir.display()
        ));
    }

    /// Every client with backup space in the store, by name.
    pub fn clients(&self) -> Result<Vec<ClientName>> {
        let mut clients = Vec::new();
        for entry in std::fs::read_dir(&self.root).on("cannot list", &self.root)? {
            let entry = entry.on("cannot list", &self.root)?;
            let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| ClientName::new(n).ok())
            else {
                continue;
            };
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                clients.push(name);
            }
        }
        clients.sort();
        Ok(clients)
    }

    /// Where a lock file lives: each kind in a directory of its own under
    /// `.byteback/locks/`, so no client name (which may look like anything
    /// a client chose: `backup-slot-1`, `other.example.restore-1`) can name
    /// another kind's lock. Made on first use.
    fn lock_path(&self, lock: LockName<'_>) -> Result<PathBuf> {
        let base = Self::state_dir_of(&self.root).join("locks");
        let (dir, name) = match lock {
            LockName::Client(c) => (base.join("client"), c.to_string()),
            LockName::Read(c, slot) => (base.join("read"), format!("{c}.{slot}")),
            LockName::Slot(slot) => (base.join("slot"), slot.to_string()),
            LockName::Key(key) => (base.join("key"), key.to_owned()),
        };
        std::fs::create_dir_all(&dir).on("cannot create", &dir)?;
        Ok(dir.join(name))
    }

    /// Takes the per-client lock, waiting up to `wait`.
    pub fn lock_client(&self, client: &ClientName, wait: Duration) -> Result<Lock> {
        let path = self.lock_path(LockName::Client(client))?;
        let lock = Lock::acquire(&path, wait)?.ok_or_else(|| {
            Error::Locked(format!(
                "a backup of {client} is already in progress on the server (waited {}s); try again when it has finished",
                wait.as_secs()
            ))
        })?;
        // Its modification time says since when it is held (for status).
        let _ = rustix::fs::utimensat(
            rustix::fs::CWD,
            lock.path(),
            &rustix::fs::Timestamps {
                last_access: rustix::fs::Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_NOW,
                },
                last_modification: rustix::fs::Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_NOW,
                },
            },
            rustix::fs::AtFlags::empty(),
        );
        Ok(lock)
    }

    /// Since when a backup of the client has been running, if one is.
    pub fn running_since(&self, client: &ClientName) -> Option<Timestamp> {
        let path = self.lock_path(LockName::Client(client)).ok()?;
        if !path.exists() {
            return None;
        }
        match self.try_lock_client(client) {
            Ok(Some(_free)) => None,
            Ok(None) => {
                let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
                Timestamp::try_from(modified).ok()
            }
            Err(_) => None,
        }
    }

    /// Takes the per-client lock if nobody holds it now.
    pub fn try_lock_client(&self, client: &ClientName) -> Result<Option<Lock>> {
        Lock::acquire(&self.lock_path(LockName::Client(client))?, Duration::ZERO)
    }

    /// Takes the transfer lock of one key (`key` as
    /// [`crate::server::roles::KeyId`] writes it), waiting up to
    /// `lock_wait`: a key runs one transfer at a time, whichever client
    /// names it writes under, so it never holds more than one of the
    /// store's transfer slots.
    pub fn lock_key_transfer(&self, key: &str, client: &ClientName) -> Result<Lock> {
        let wait = self.config.lock_wait.to_std();
        Lock::acquire(&self.lock_path(LockName::Key(key))?, wait)?.ok_or_else(|| {
            Error::Locked(format!(
                "another transfer by the same key ({key}) is still running on the server (waited {}s); the transfer into {client} will try again",
                wait.as_secs()
            ))
        })
    }

    /// Takes one of the store's `max_concurrent_backups` transfer slots,
    /// waiting up to `lock_wait` for one to free; `waiting` is told, once,
    /// how many others run.
    pub fn backup_slot(&self, client: &ClientName, waiting: &mut dyn FnMut(u32)) -> Result<Lock> {
        let slots = self.config.max_concurrent_backups.max(1);
        let deadline = std::time::Instant::now() + self.config.lock_wait.to_std();
        let mut told = false;
        loop {
            for slot in 1..=slots {
                if let Some(lock) =
                    Lock::acquire(&self.lock_path(LockName::Slot(slot))?, Duration::ZERO)?
                {
                    return Ok(lock);
                }
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::Locked(format!(
                    "{slots} other backups are running on the server (max_concurrent_backups) and none ended within lock_wait ({}); the backup of {client} will try again",
                    self.config.lock_wait
                )));
            }
            if !told {
                waiting(slots);
                told = true;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// How many transfers share the bandwidth budget now (`[limits]
    /// bandwidth`): the transfer slots whose holders announced it
    /// ([`Lock::announce`]), counted without taking any, so counting never
    /// makes a starting transfer find its slot busy. Every slot file, not
    /// only the first `max_concurrent_backups`: a transfer that began
    /// before the setting was lowered still runs.
    pub fn bandwidth_shares(&self) -> u32 {
        let dir = Self::state_dir_of(&self.root).join("locks").join("slot");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return 0;
        };
        let held = entries
            .filter_map(|e| e.ok())
            .filter(|e| crate::sys::lock::is_announced(&e.path()))
            .count();
        u32::try_from(held).unwrap_or(u32::MAX)
    }

    /// Takes one of the few read slots of a client (a restore, a listing or
    /// a digest: each takes one, and no client lock, since they only read),
    /// or refuses at once when all are taken.
    pub fn read_slot(&self, client: &ClientName) -> Result<Lock> {
        for slot in 1..=MAX_READS_PER_CLIENT {
            if let Some(lock) = Lock::acquire(
                &self.lock_path(LockName::Read(client, slot))?,
                Duration::ZERO,
            )? {
                return Ok(lock);
            }
        }
        Err(Error::Locked(format!(
            "the server is busy: {MAX_READS_PER_CLIENT} reads (list, restore or verify) of {client} are already running there; try again when one has finished"
        )))
    }

    /// Takes the client's lock and every one of its read slots, at once:
    /// while they are held no backup, snapshot or restore of the client
    /// runs. Refused at once (not waited for) if one is running.
    pub fn lock_client_idle(&self, client: &ClientName) -> Result<Vec<Lock>> {
        let busy = |what: &str| {
            Error::Locked(format!(
                "a {what} of {client} is running on the server; try again when it has finished"
            ))
        };
        let mut held = vec![
            self.try_lock_client(client)?
                .ok_or_else(|| busy("backup"))?,
        ];
        for slot in 1..=MAX_READS_PER_CLIENT {
            let path = self.lock_path(LockName::Read(client, slot))?;
            held.push(
                Lock::acquire(&path, Duration::ZERO)?
                    .ok_or_else(|| busy("read (list, restore or verify)"))?,
            );
        }
        Ok(held)
    }

    /// Removes the client's lock files (its lock and read slots), which
    /// the caller holds, once the client is gone or renamed.
    fn remove_lock_files(&self, client: &ClientName) {
        let names = std::iter::once(LockName::Client(client))
            .chain((1..=MAX_READS_PER_CLIENT).map(|slot| LockName::Read(client, slot)));
        for name in names {
            if let Ok(path) = self.lock_path(name) {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Whether the store holds a directory for the client: its backups, or
    /// what is left of them.
    pub fn has_data(&self, client: &ClientName) -> bool {
        std::fs::symlink_metadata(self.client_dir(client)).is_ok_and(|m| m.is_dir())
    }

    /// Deletes everything the store keeps for a client: each snapshot as
    /// pruning deletes one ([`Store::delete_snapshot`]), oldest first, then
    /// the rest of its directory (`current`, and with the directory the
    /// records kept in its xattrs: growth, last outcome, notice) and its
    /// lock files. Returns how many snapshots went. An interruption leaves
    /// fewer snapshots, each whole, and running it again finishes the job.
    /// The caller holds the client's locks ([`Store::lock_client_idle`])
    /// and the prune lock.
    pub fn remove_client(&self, client: &ClientName) -> Result<usize> {
        let snapshots = self.snapshots(client)?;
        for s in &snapshots {
            self.delete_snapshot(client, &s.name)?;
        }
        self.backend.remove_client_dir(&self.client_dir(client))?;
        self.remove_lock_files(client);
        self.remove_suspect_marks(client);
        let _ = std::fs::remove_dir_all(self.changes_dir(client));
        Ok(snapshots.len())
    }

    /// Gives the client's directory — its snapshots, `current` and the
    /// records kept in its xattrs — the name `to`, in one atomic rename
    /// that never replaces anything (read-only btrfs snapshots may move
    /// with their parent directory). The caller holds both names' locks
    /// and the prune lock.
    pub fn rename_client(&self, from: &ClientName, to: &ClientName) -> Result<()> {
        let (old, new) = (self.client_dir(from), self.client_dir(to));
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &old,
            rustix::fs::CWD,
            &new,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(|e| match e {
            rustix::io::Errno::EXIST => Error::Refused(format!(
                "{} already exists: client name {to} is taken",
                new.display()
            )),
            e => Error::io(
                &format!("cannot rename {} to", old.display()),
                &new,
                e.into(),
            ),
        })?;
        self.remove_lock_files(from);
        // Its suspect marks follow it, or its pinned snapshots would lose
        // their pins under the new name.
        if let Err(e) = self.rename_suspect_marks(from, to) {
            report::warn(format_args!(
                "{e}: move it by hand, or {to}'s suspect marks do not stand"
            ));
        }
        // And its change logs, or `diff` would compare its trees.
        let (old_logs, new_logs) = (self.changes_dir(from), self.changes_dir(to));
        if old_logs.exists() {
            if let Err(e) = std::fs::rename(&old_logs, &new_logs) {
                report::warn(format_args!(
                    "cannot move {} to {}: {e}; move it by hand, or {to}'s diffs compare trees",
                    old_logs.display(),
                    new_logs.display()
                ));
            }
        }
        Ok(())
    }

    /// Discards what the client's `current` holds beyond its newest snapshot
    /// (data no snapshot holds), leaving it as that snapshot (btrfs) or empty
    /// (plain, where each attempt starts empty anyway). The caller holds the
    /// client's lock.
    pub fn roll_back_current(&self, client: &ClientName) -> Result<()> {
        self.keeper.roll_back(self, client)
    }

    /// [`Store::roll_back_current`], done by the store itself.
    fn roll_back_directly(&self, client: &ClientName) -> Result<()> {
        let newest = self.snapshots(client)?.pop();
        // Whatever an incremental transfer was readied for is gone, and
        // so is what any key's transfer produced.
        self.clear_client_mark(client, INCREMENTAL_XATTR);
        self.clear_client_mark(client, CLEAN_XATTR);
        self.clear_client_mark(client, PRODUCER_XATTR);
        self.backend
            .roll_back(&self.client_dir(client), newest.as_ref().map(|s| &s.name))
    }

    /// The inode whose xattrs hold the client's records (growth, last
    /// outcome, notice): its directory — or, in hardened mode, where that
    /// directory is root's and sticky (and the kernel lets only the owner of
    /// a sticky directory set its user xattrs), [`RECORDS_DIR`] inside it.
    pub fn records(&self, client: &ClientName) -> PathBuf {
        use std::os::unix::fs::MetadataExt;
        let dir = self.client_dir(client);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.mode() & 0o1000 != 0 => dir.join(RECORDS_DIR),
            _ => dir,
        }
    }

    /// Sets one of the client's records (see [`Store::records`]), making
    /// the hardened records directory on first use.
    pub fn set_record(&self, client: &ClientName, name: &str, value: &[u8]) -> Result<()> {
        let at = self.records(client);
        let set = || rustix::fs::setxattr(&at, name, value, rustix::fs::XattrFlags::empty());
        let result = match set() {
            Err(rustix::io::Errno::NOENT) if at != self.client_dir(client) => {
                match std::fs::create_dir(&at) {
                    Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                        return Err(Error::io("cannot create", &at, e));
                    }
                    _ => set(),
                }
            }
            other => other,
        };
        result.map_err(|e| Error::io("cannot record on", &at, e.into()))
    }

    /// One of the client's records, into `buf`; its length.
    pub fn record(&self, client: &ClientName, name: &str, buf: &mut [u8]) -> Option<usize> {
        rustix::fs::getxattr(self.records(client), name, buf).ok()
    }

    /// Records a short fact about the client's `current` among its records
    /// (see [`Store::records`]; no data space needed).
    pub fn set_client_mark(&self, client: &ClientName, name: &str, value: &str) -> Result<()> {
        self.set_record(client, name, value.as_bytes())
    }

    /// A fact recorded with [`Store::set_client_mark`], if any.
    pub fn client_mark(&self, client: &ClientName, name: &str) -> Option<String> {
        let mut buf = vec![0u8; 256];
        let len = self.record(client, name, &mut buf)?;
        Some(String::from_utf8_lossy(&buf[..len]).into_owned())
    }

    /// Forgets a fact recorded with [`Store::set_client_mark`].
    pub fn clear_client_mark(&self, client: &ClientName, name: &str) {
        let _ = rustix::fs::removexattr(self.records(client), name);
    }

    /// A message for the client, kept until its next snapshot (e.g. why its
    /// unsnapshotted data was discarded). Stored like the space alert.
    pub fn set_client_notice(&self, client: &ClientName, message: &str) {
        let text = &message.as_bytes()[..message.len().min(2048)];
        if let Err(e) = self.set_record(client, NOTICE_XATTR, text) {
            report::warn(format_args!("cannot record a notice: {e}"));
        }
    }

    /// The client's pending notice, if any.
    pub fn client_notice(&self, client: &ClientName) -> Option<String> {
        let mut buf = vec![0u8; 4096];
        let len = self.record(client, NOTICE_XATTR, &mut buf)?;
        Some(String::from_utf8_lossy(&buf[..len]).into_owned())
    }

    /// The client has a new snapshot: its notice is old news.
    pub fn clear_client_notice(&self, client: &ClientName) {
        let _ = rustix::fs::removexattr(self.records(client), NOTICE_XATTR);
    }

    /// Takes a read-only snapshot of the client's `current` named for `at`, or
    /// for the first free second after it (see [`wait_for_free_name`]).
    /// `partial` is the list of files the transfer left out, if it did.
    /// The caller holds the client's lock.
    pub fn take_snapshot(
        &self,
        client: &ClientName,
        at: Timestamp,
        partial: Option<&str>,
    ) -> Result<SnapshotName> {
        if !self.has_client(client) {
            return Err(no_space(client));
        }
        self.keeper.take(self, client, at, partial)
    }

    /// [`Store::take_snapshot`], done by the store itself.
    fn take_snapshot_directly(
        &self,
        client: &ClientName,
        at: Timestamp,
        partial: Option<&str>,
    ) -> Result<SnapshotName> {
        // Two backups may end within one second: the second waits for the
        // next free name rather than being refused.
        let dir = self.client_dir(client);
        let name = wait_for_free_name(client, at, || {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(&dir).on("cannot list", &dir)? {
                let entry = entry.on("cannot list", &dir)?;
                names.extend(entry.file_name().to_str().map(str::to_owned));
            }
            Ok(names)
        })?;
        self.snapshot_as(client, name, partial)
    }

    /// Takes a read-only snapshot of the client's `current` named `name`
    /// (a replica keeps its primary's names). The caller holds the
    /// client's lock.
    pub fn take_snapshot_named(
        &self,
        client: &ClientName,
        name: SnapshotName,
        partial: Option<&str>,
    ) -> Result<SnapshotName> {
        if !self.has_client(client) {
            return Err(no_space(client));
        }
        self.keeper.take_named(self, client, name, partial)
    }

    /// Takes the snapshot named `name`, which must not exist yet. The
    /// caller holds the client's lock.
    fn snapshot_as(
        &self,
        client: &ClientName,
        name: SnapshotName,
        partial: Option<&str>,
    ) -> Result<SnapshotName> {
        let dest = self.client_dir(client).join(name.as_str());
        if std::fs::symlink_metadata(&dest).is_ok() {
            return Err(Error::Refused(format!(
                "snapshot {name} of {client} already exists; not replacing it"
            )));
        }
        // The marker goes first: a crash in between leaves a marker without a
        // snapshot (ignored), never a partial snapshot that looks complete.
        let marker = self.client_dir(client).join(format!("{name}.partial"));
        if let Some(note) = partial {
            let mut note = note.as_bytes();
            if note.len() > MAX_PARTIAL_NOTE {
                note = &note[..MAX_PARTIAL_NOTE];
            }
            write_atomic(&marker, note, 0o600)?;
        }
        self.clear_client_mark(client, INCREMENTAL_XATTR);
        crate::sys::crash::point("before-snapshot");
        let result = self.backend.snapshot(&self.client_dir(client), &name);
        if result.is_err() && partial.is_some() {
            let _ = std::fs::remove_file(&marker);
        }
        if result.is_ok() && self.backend.kind() == Backend::Btrfs {
            // `current` goes on as a copy of this snapshot.
            let _ = self.set_client_mark(client, CLEAN_XATTR, name.as_str());
        }
        result.map(|()| name)
    }

    /// Deletes a snapshot and drops its partial marker.
    pub fn delete_snapshot(&self, client: &ClientName, name: &SnapshotName) -> Result<()> {
        self.keeper.delete(self, client, name)?;
        // Its change log goes with it (whoever deleted it).
        let _ = std::fs::remove_file(self.changes_dir(client).join(format!("{name}.changes")));
        Ok(())
    }

    /// Where the server keeps a client's change logs and the list of paths
    /// touched since its last snapshot (see `lifecycle::changelog`): in the
    /// store's own directory, which the confined receiver never sees, not
    /// beside `current`, where it may write into existing files.
    pub fn changes_dir(&self, client: &ClientName) -> PathBuf {
        Self::state_dir_of(self.root())
            .join("changes")
            .join(client.as_str())
    }

    /// [`Store::delete_snapshot`], done by the store itself.
    fn delete_snapshot_directly(&self, client: &ClientName, name: &SnapshotName) -> Result<()> {
        let dir = self.client_dir(client);
        self.backend.delete(&dir, name)?;
        let marker = dir.join(format!("{name}.partial"));
        match std::fs::remove_file(&marker) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("cannot remove", &marker, e))
            }
            _ => Ok(()),
        }
    }

    /// Notes that the store is short of space and a person must act: logged,
    /// and shown to clients and in status until pruning succeeds again. Kept
    /// in an xattr of the state directory, which needs no data space, so it
    /// is recorded even on a full disk.
    pub fn record_space_alert(&self, message: &str) {
        self.warn(&format!("ALERT: {message}"));
        self.keeper.set_alert(self, Some(message));
    }

    /// Writes the space alert (`Some`) or removes it.
    fn write_alert(&self, message: Option<&str>) {
        let state = Self::state_dir_of(&self.root);
        let Some(message) = message else {
            let _ = rustix::fs::removexattr(&state, ALERT_XATTR);
            return;
        };
        let state = Self::state_dir_of(&self.root);
        let mut text = message.as_bytes();
        if text.len() > 2048 {
            text = &text[..2048];
        }
        if let Err(e) =
            rustix::fs::setxattr(&state, ALERT_XATTR, text, rustix::fs::XattrFlags::empty())
        {
            report::warn(format_args!(
                "cannot record the alert on {}: {e}",
                state.display()
            ));
        }
    }

    /// The space problem last recorded, if it is still current.
    pub fn space_alert(&self) -> Option<String> {
        let mut buf = vec![0u8; 4096];
        let len =
            rustix::fs::getxattr(Self::state_dir_of(&self.root), ALERT_XATTR, &mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..len]).into_owned())
    }

    /// What the store can really still take (see [`space`]).
    pub fn space(&self) -> Result<crate::sys::fs::Space> {
        self.backend.space(&self.root)
    }

    /// Like [`Store::space_after_deletions`], then measures again until the
    /// figure stops changing (at most 15 s).
    pub fn space_settled(&self) -> Result<crate::sys::fs::Space> {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let mut last = self.space_after_deletions()?;
        while std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
            let now = self.space_after_deletions()?;
            if now == last {
                break;
            }
            last = now;
        }
        Ok(last)
    }

    /// Waits until deleted snapshots' space is free, then measures it.
    pub fn space_after_deletions(&self) -> Result<crate::sys::fs::Space> {
        self.backend.wait_for_reclaim(&self.root)?;
        self.space()
    }

    /// Pruning made room again.
    pub fn clear_space_alert(&self) {
        self.keeper.set_alert(self, None);
    }

    /// Appends one line to the server log (and never fails the caller: a
    /// log that cannot be written is reported on stderr instead).
    pub fn log(&self, line: &str) {
        self.keeper.log(self, syslog::Severity::Info, line);
    }

    /// Logs something a person should look at (a refusal, a failure, an
    /// alert): a warning in the system log.
    pub fn warn(&self, line: &str) {
        self.keeper.log(self, syslog::Severity::Warning, line);
    }

    /// Logs an event that `status` reads back: its tag, then `line`.
    pub fn log_event(&self, event: LogEvent, line: &str) {
        self.keeper
            .log(self, event.severity(), &format!("{} {line}", event.tag()));
    }

    /// Writes one log line (the keeper's to decide whether to).
    fn append_log(&self, severity: syslog::Severity, line: &str) {
        syslog::send(
            &syslog::socket(self.config.log_socket.as_deref()),
            report::program(),
            severity,
            line,
        );
        let path = Self::state_dir_of(&self.root).join("server.log");
        // The log lives on the disk it reports on: it never grows past
        // LOG_LIMIT, the older half kept as server.log.1. (Renames are
        // atomic; two processes rotating at once lose nothing but order.)
        if std::fs::metadata(&path).is_ok_and(|m| m.len() >= LOG_LIMIT) {
            let _ = std::fs::rename(&path, path.with_extension("log.1"));
        }
        let text = format!(
            "{} {}\n",
            Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            line.escape_debug()
        );
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = written {
            report::warn(format_args!("cannot write log {}: {e}", path.display()));
        }
    }
}

/// The error for a client without space in this store.
pub fn no_space(client: &ClientName) -> Error {
    Error::Refused(format!(
        "no backup space for client {client} on this server: ask its administrator to run `byteback-server new-client` for this machine's key"
    ))
}

/// The name for a snapshot of `client` asked for at `at`: the decision is
/// [`crate::names::next_free_name`]'s over `list()` (the entries of the
/// client's directory), and when the free name is a second still to come,
/// this sleeps until it and looks again — a few seconds at most. Both the
/// store and the hardened helper name their snapshots through it.
pub fn wait_for_free_name(
    client: &ClientName,
    at: Timestamp,
    mut list: impl FnMut() -> Result<Vec<String>>,
) -> Result<SnapshotName> {
    use crate::names::{MAX_NAME_SHIFT, NextName, next_free_name};
    let deadline =
        std::time::Instant::now() + MAX_NAME_SHIFT.unsigned_abs() + Duration::from_secs(2);
    loop {
        let taken = list()?;
        let now = Timestamp::now();
        match next_free_name(taken.iter().map(String::as_str), at, now) {
            NextName::Take(name) => return Ok(name),
            NextName::WaitUntil(time) if std::time::Instant::now() < deadline => {
                let wait = time.duration_since(now).unsigned_abs();
                std::thread::sleep(wait.min(MAX_NAME_SHIFT.unsigned_abs()));
            }
            NextName::WaitUntil(_) | NextName::Exhausted(_) => {
                let first = SnapshotName::for_time(at);
                return Err(Error::Refused(format!(
                    "no snapshot of {client}: no free name within {}s of {first} (has the clock stepped back?); check the system clock, then back up again",
                    MAX_NAME_SHIFT.as_secs()
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_never_grows_past_its_limit() {
        let fake = fake::FakeStore::new(1 << 30, ServerConfig::default());
        let line = "x".repeat(1000);
        for _ in 0..2500 {
            fake.store.log(&line);
        }
        let state = Store::state_dir_of(fake.store.root());
        let size = |name: &str| std::fs::metadata(state.join(name)).map_or(0, |m| m.len());
        assert!(
            size("server.log") <= LOG_LIMIT + 2000,
            "{}",
            size("server.log")
        );
        assert!(size("server.log.1") >= LOG_LIMIT);
        assert!(read_log(fake.store.root()).lines().count() > 1000);
    }

    #[test]
    fn snapshots_in_one_second_take_the_next_free_names() {
        let fake = fake::FakeStore::new(1 << 30, ServerConfig::default());
        let (store, client) = (&fake.store, fake.client("a.example"));
        // A time by hand, long past: the next seconds, at once.
        let at: Timestamp = "2026-01-01T00:00:00.5Z".parse().unwrap();
        let names: Vec<String> = (0..3)
            .map(|_| store.take_snapshot(&client, at, None).unwrap().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:00:01Z",
                "2026-01-01T00:00:02Z"
            ]
        );
        // Now, twice: the second waits for its second to come, never names
        // a snapshot ahead of the clock.
        let now = Timestamp::now();
        let first = store.take_snapshot(&client, now, Some("a\n")).unwrap();
        let second = store.take_snapshot(&client, now, None).unwrap();
        assert_eq!(first, SnapshotName::for_time(now));
        assert_eq!(
            second.time().as_second(),
            first.time().as_second() + 1,
            "{first} {second}"
        );
        assert!(Timestamp::now() >= second.time());
        let all = store.snapshots(&client).unwrap();
        assert_eq!(all.len(), 5);
        assert!(all[3].partial && !all[4].partial);
        // A replica's name is taken as given, or refused if it exists.
        let err = store
            .take_snapshot_named(&client, first.clone(), None)
            .unwrap_err();
        assert!(
            matches!(&err, Error::Refused(m) if m.contains("already exists")),
            "{err}"
        );
    }

    #[test]
    fn clients_are_renamed_and_removed_whole() {
        let fake = fake::FakeStore::new(1 << 30, ServerConfig::default());
        let store = &fake.store;
        let a = fake.client("a.example");
        let b = fake.client("b.example");
        let c = ClientName::new("c.example").unwrap();
        fake.old_snapshot(&a, "2026-01-01T00:00:00Z", 10);
        fake.old_snapshot(&a, "2026-01-02T00:00:00Z", 10);
        let note = outcome::Outcome {
            time: "2026-01-02T00:00:00Z".parse().unwrap(),
            request: "receive".into(),
            ok: true,
            reason: None,
        };
        store.record_outcome(&a, &note);
        // Busy while a backup or a restore runs.
        let backup = store.lock_client(&a, Duration::ZERO).unwrap();
        let e = store.lock_client_idle(&a).unwrap_err();
        assert!(
            matches!(e, Error::Locked(_)) && e.to_string().contains("backup"),
            "{e}"
        );
        drop(backup);
        let restore = store.read_slot(&a).unwrap();
        // Reads: two at once, a third refused at once (busy, exit 4).
        let second = store.read_slot(&a).unwrap();
        let e = store.read_slot(&a).unwrap_err();
        assert_eq!(e.exit_code(), crate::error::Exit::Locked, "{e}");
        assert!(
            e.to_string().contains("busy") && e.to_string().contains("try again"),
            "{e}"
        );
        drop(second);
        let e = store.lock_client_idle(&a).unwrap_err();
        assert!(
            e.to_string().contains("restore or verify) of a.example"),
            "{e}"
        );
        drop(restore);
        // Renamed: history and records follow; never onto another client.
        let held = store.lock_client_idle(&a).unwrap();
        let e = store.rename_client(&a, &b).unwrap_err();
        assert!(matches!(e, Error::Refused(_)), "{e}");
        store.rename_client(&a, &c).unwrap();
        drop(held);
        assert!(!store.has_data(&a) && store.has_client(&c));
        assert_eq!(store.snapshots(&c).unwrap().len(), 2);
        assert_eq!(store.last_outcome(&c), Some(note));
        let locks = Store::state_dir_of(store.root()).join("locks");
        assert!(!locks.join("client/a.example").exists());
        // Removed: every snapshot, current, the directory, the lock files.
        let _held = store.lock_client_idle(&c).unwrap();
        assert_eq!(store.remove_client(&c).unwrap(), 2);
        assert!(!store.has_data(&c));
        let left: Vec<_> = ["client", "read"]
            .iter()
            .flat_map(|kind| std::fs::read_dir(locks.join(kind)).unwrap())
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(store.clients().unwrap(), [b]);
    }

    #[test]
    fn show_config_prints_toml_that_reads_back() {
        let c = ServerConfig {
            min_age: config::Duration::from_secs(3 * 86400),
            stale_after: config::Duration::from_secs(90 * 60),
            ..ServerConfig::default()
        };
        let text = toml::to_string(&c).unwrap();
        assert!(
            text.contains("min_age = \"3 days\"") && text.contains("backend = \"btrfs\""),
            "{text}"
        );
        let back: ServerConfig = config::parse(Path::new("shown.toml"), &text).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn template_documents_the_defaults() {
        let parsed: ServerConfig =
            config::parse(Path::new("server.toml"), SERVER_CONFIG_TEMPLATE).unwrap();
        assert_eq!(parsed, ServerConfig::default());
        let plain: ServerConfig = config::parse(
            Path::new("server.toml"),
            &server_config_template(Backend::Plain),
        )
        .unwrap();
        assert_eq!(plain.backend, Backend::Plain);
    }
}
