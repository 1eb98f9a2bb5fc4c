//! The client's configuration directory and file.
//!
//! ```text
//! /etc/byteback/config.toml   settings (documented in byteback.toml(5))
//! /etc/byteback/key, key.pub  this machine's SSH key for the server
//! /etc/byteback/known_hosts   the server's host key, trusted by `byteback test`
//! /etc/byteback/excludes      extra exclude patterns, one per line
//! /etc/byteback/lock          one backup at a time
//! /etc/byteback/pre-backup.d  hooks run before a backup (see `hooks`)
//! /etc/byteback/post-backup.d hooks run after it
//! ```

use std::path::{Path, PathBuf};

use documented::DocumentedFields;
use serde::{Deserialize, Deserializer, Serialize};

use crate::config::{self, Bwlimit, Duration};
use crate::destination::{Destination, Target};
use crate::error::{Error, IoContext, Result};
use crate::exec::priority::{IoNice, Priority, check_nice};
use crate::exec::ssh::{HostKeyPolicy, Ssh};

/// Where the client keeps its files unless told otherwise.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/byteback";

/// `config.toml` of the client. Each field's `///` comment is its entry in
/// byteback.toml(5) (see [`crate::config_reference`]), so write it for an
/// administrator: what the key does, and what leaving it unset means.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, DocumentedFields)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Where backups go: a byteback server, `[USER@]HOST[:PORT]` (USER
    /// defaults to `byteback`), or a store directory on this machine (an
    /// absolute path). `byteback setup` writes it; `--destination` overrides
    /// it for any command. When the server says this machine's backups
    /// moved to another one (`byteback-server move-client`), `byteback
    /// backup` and `byteback test` rewrite it, once, and go on there.
    /// Unset: every command that needs it says to run `byteback setup`.
    #[serde(deserialize_with = "destination")]
    pub destination: Option<Target>,
    /// This machine's name: the comment of its key (`root@NAME`), the name
    /// of its local backups and `$BYTEBACK_CLIENT` in hooks. A server knows
    /// a client by its key, whatever this says. Unset: this machine's FQDN.
    pub name: Option<String>,
    /// What to back up (`--source` replaces it). Mounts inside these that
    /// are not local disks (kernel virtual filesystems, tmpfs and ramfs,
    /// network and FUSE filesystems, loop-device mounts) are left out
    /// automatically, their mount points kept as empty directories.
    pub sources: Vec<PathBuf>,
    /// Extra rsync exclude patterns (`--exclude` adds more, and so does the
    /// file `excludes` in the configuration directory, one pattern per line,
    /// `#` comments). With patterns of your own every backup is a full pass:
    /// the change index does not reimplement rsync's pattern language.
    pub excludes: Vec<String>,
    /// How many times a backup is tried before giving up. Only failures a
    /// later attempt can cure are retried (the network, timeouts, protocol
    /// errors, the server's disk, a killed server process); each attempt
    /// resumes where the last one stopped.
    pub retry_attempts: u32,
    /// The pause between attempts.
    pub retry_pause: Duration,
    /// How long a backup may wait for a server that takes backups only at
    /// certain times (its `[limits] windows`). Refused outside them, with
    /// the time the next window opens, the backup waits until then (once,
    /// not counted as a failed attempt) if that is at most this far away,
    /// and otherwise fails at once, exit status 6, saying when the server
    /// takes backups. `"0s"`: never wait.
    pub retry_after_max: Duration,
    /// rsync gives up after this long without any data moving.
    pub io_timeout: Duration,
    /// ssh gives up connecting to the server after this long.
    pub connect_timeout: Duration,
    /// A hook (in `pre-backup.d/` or `post-backup.d/` of the configuration
    /// directory) still running after this long is ended with everything it
    /// started (SIGTERM to its process group, SIGKILL five seconds later),
    /// and counts as failed.
    pub hook_timeout: Duration,
    /// rsync's `--bwlimit`: KiB per second as a number (`500`), or with a
    /// unit, `"2M"`, `"512K"` (powers of 1024); `0` is no limit. Both ends
    /// of rsync pace themselves. Unset: no limit.
    pub bwlimit: Option<Bwlimit>,
    /// Compress file data on the wire to a server (rsync `--compress`;
    /// rsync 3.2 or later on both ends negotiates the strongest algorithm
    /// both have, zstd where built in). Ignored for a local destination.
    pub compress: bool,
    /// The CPU niceness of the client's rsync (and of the ssh it starts),
    /// from -20 (first) to 19 (last). Unset: unchanged.
    #[serde(deserialize_with = "niceness")]
    pub nice: Option<i32>,
    /// The I/O scheduling class of the client's rsync: `"idle"` (disk time
    /// only when nobody else wants it), `"best-effort"` or
    /// `"best-effort:N"`, N from 0 (first) to 7 (last; plain `best-effort`
    /// is 4). Unset: unchanged.
    pub ionice: Option<IoNice>,
    /// One backup in this many is a full rsync pass; the others send only
    /// what the change index found changed since the last snapshot. `1`:
    /// every backup is a full pass. `byteback backup --full` makes one now.
    pub full_scan_every: u32,
}

impl ClientConfig {
    /// The priority the client's rsync runs at.
    pub fn priority(&self) -> Priority {
        Priority {
            nice: self.nice,
            io: self.ionice,
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            destination: None,
            name: None,
            sources: vec![PathBuf::from("/")],
            excludes: Vec::new(),
            retry_attempts: 5,
            retry_pause: Duration::from_secs(600),
            retry_after_max: Duration::from_secs(12 * 3600),
            io_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(30),
            hook_timeout: Duration::from_secs(3600),
            bwlimit: None,
            compress: false,
            nice: None,
            ionice: None,
            full_scan_every: 7,
        }
    }
}

fn niceness<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    check_nice(i32::deserialize(d)?)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn destination<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Target>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map(Some).map_err(serde::de::Error::custom)
}

/// The documented config file `byteback setup` writes.
pub fn template(destination: &Target, name: &str) -> String {
    format!(
        r#"# byteback client configuration. Keys that are commented out show
# their defaults; durations are written like "90s", "10m", "6h".

# Where backups go: a server, [USER@]HOST[:PORT] (USER defaults to
# byteback), or a store directory on this machine, /absolute/path.
destination = "{destination}"

# This machine's name on the server; also the comment of its key (root@NAME).
name = "{name}"

# What to back up. Mounts inside these that are not local disks (proc, sysfs,
# tmpfs, NFS, SMB, FUSE, loop devices, ...) are left out automatically.
# sources = ["/"]

# Extra rsync exclude patterns (see also the file "excludes" in this directory).
# excludes = []

# A failed backup is tried again, resuming where it stopped.
# retry_attempts = 5
# retry_pause = "10m"

# A server that takes backups only at certain times says when its next
# window opens; the backup waits until then if that is at most this far away.
# retry_after_max = "12h"

# rsync gives up after this long without any data moving.
# io_timeout = "10m"

# ssh gives up connecting to the server after this long.
# connect_timeout = "30s"

# Executables in pre-backup.d/ and post-backup.d/ in this directory run
# before and after each backup; one still running after this long is killed.
# hook_timeout = "1h"

# For slow or shared links: rsync's bandwidth limit (KiB per second, or
# e.g. "2M"), compression on the wire (zstd when both ends have it), and
# the CPU niceness (-20 to 19) and I/O class ("idle", "best-effort:0" to
# "best-effort:7") of the client's rsync. Unset: no limit, no compression,
# normal priority.
# bwlimit = "2M"
# compress = false
# nice = 10
# ionice = "idle"

# Backups walk the sources and send only what changed since the last
# snapshot (by size, times, inode; see byteback.toml(5)); one in this many is a
# full rsync pass instead (1: always). `byteback backup --full` makes one now.
# full_scan_every = 7
"#
    )
}

/// The client's configuration directory and what is in it.
#[derive(Debug, Clone)]
pub struct ConfigDir {
    /// The directory.
    pub dir: PathBuf,
}

impl ConfigDir {
    /// `--config-dir`, else `$BYTEBACK_CONFIG_DIR`, else `/etc/byteback`.
    pub fn resolve(flag: Option<PathBuf>) -> Result<ConfigDir> {
        let dir = flag
            .or_else(|| {
                std::env::var_os("BYTEBACK_CONFIG_DIR")
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_DIR));
        let dir = std::path::absolute(&dir).on("cannot resolve", &dir)?;
        Ok(ConfigDir { dir })
    }

    /// `config.toml`.
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// The private key.
    pub fn key(&self) -> PathBuf {
        self.dir.join("key")
    }

    /// The public key.
    pub fn public_key(&self) -> PathBuf {
        self.dir.join("key.pub")
    }

    /// byteback's own known_hosts.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// Extra exclude patterns.
    pub fn excludes_file(&self) -> PathBuf {
        self.dir.join("excludes")
    }

    /// The backup lock.
    pub fn lock_file(&self) -> PathBuf {
        self.dir.join("lock")
    }

    /// The change index: what the sources looked like at the last snapshot.
    pub fn index_file(&self) -> PathBuf {
        self.dir.join("index")
    }

    /// The hooks run before each backup.
    pub fn pre_backup_hooks(&self) -> PathBuf {
        self.dir.join("pre-backup.d")
    }

    /// The hooks run after each backup.
    pub fn post_backup_hooks(&self) -> PathBuf {
        self.dir.join("post-backup.d")
    }

    /// Reads the config; a missing file means `byteback setup` has not run.
    pub fn load(&self) -> Result<ClientConfig> {
        let path = self.config_file();
        config::load::<ClientConfig>(&path)?.ok_or_else(|| {
            Error::Config(format!(
                "no configuration at {}: run `byteback setup [USER@]HOST` first (or pass --config-dir)",
                path.display()
            ))
        })
    }

    /// The patterns of the excludes file (blank lines and `#` comments skipped).
    pub fn file_excludes(&self) -> Result<Vec<String>> {
        let path = self.excludes_file();
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text
                .lines()
                .map(str::trim_end)
                .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .map(str::to_owned)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io("cannot read", &path, e)),
        }
    }

    /// How to reach the server `destination` with this machine's key.
    pub fn ssh(
        &self,
        destination: Destination,
        connect_timeout: Duration,
        host_keys: HostKeyPolicy,
    ) -> Result<Ssh> {
        let identity = self.key();
        if !identity.exists() {
            return Err(Error::Config(format!(
                "this machine's backup key {} is missing: run `byteback setup {destination}` to make one",
                identity.display()
            )));
        }
        Ok(Ssh {
            program: PathBuf::from("ssh"),
            destination,
            identity,
            known_hosts: self.known_hosts(),
            host_keys,
            keepalive_secs: 15,
            connect_timeout_secs: connect_timeout.as_secs(),
            control_path: None,
        })
    }
}

/// Checks that a path given as a source is absolute and exists.
pub fn check_source(path: &Path) -> Result<PathBuf> {
    if !path.is_absolute() {
        return Err(Error::Usage(format!(
            "source {} is not an absolute path",
            path.display()
        )));
    }
    std::fs::symlink_metadata(path).on("cannot back up source", path)?;
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_to_the_defaults_plus_destination() {
        let d: Target = "bb@backup.example:2222".parse().unwrap();
        let c: ClientConfig =
            config::parse(Path::new("config.toml"), &template(&d, "host.example")).unwrap();
        assert_eq!(
            c,
            ClientConfig {
                destination: Some(d),
                name: Some("host.example".into()),
                ..ClientConfig::default()
            }
        );
    }

    #[test]
    fn transfer_settings_parse_and_are_checked() {
        let c: ClientConfig = config::parse(
            Path::new("config.toml"),
            "bwlimit = \"2M\"\ncompress = true\nnice = 10\nionice = \"best-effort:7\"\nhook_timeout = \"90s\"\n",
        )
        .unwrap();
        assert_eq!(c.bwlimit, Some(Bwlimit::new("2M").unwrap()));
        assert!(c.compress);
        assert_eq!(
            c.priority(),
            Priority {
                nice: Some(10),
                io: Some(IoNice::BestEffort(7))
            }
        );
        assert_eq!(c.hook_timeout, Duration::from_secs(90));
        let c: ClientConfig = config::parse(Path::new("config.toml"), "bwlimit = 500\n").unwrap();
        assert_eq!(c.bwlimit.unwrap().as_str(), "500");
        for ok in ["0", "1.5m", "512K", "2g"] {
            assert!(Bwlimit::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "2MB", "-1", "2 M", "M", "1.", ".5", "2M; rm"] {
            assert!(Bwlimit::new(bad).is_err(), "{bad}");
        }
        for (text, key) in [
            ("bwlimit = \"fast\"\n", "key bwlimit"),
            ("nice = 20\n", "key nice"),
            ("ionice = \"realtime\"\n", "key ionice"),
        ] {
            let e = config::parse::<ClientConfig>(Path::new("config.toml"), text)
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("line 1, {key}")), "{e}");
        }
    }

    #[test]
    fn bad_destination_is_named() {
        let e = config::parse::<ClientConfig>(
            Path::new("/etc/byteback/config.toml"),
            "destination = \"a b\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("line 1, key destination") && e.contains("invalid destination"),
            "{e}"
        );
    }
}

/// Property test of the client's `config.toml` loader: any text never
/// panics, and every error is one line naming the file (the generator is
/// `config::props`, shared with the server's).
#[cfg(test)]
mod props {
    use std::path::Path;

    use proptest::prelude::*;

    use super::ClientConfig;
    use crate::config::props::{check, config_text};

    proptest! {
        #![proptest_config(crate::proptest_config(512))]

        #[test]
        fn client_config_text_never_panics(text in config_text()) {
            check::<ClientConfig>(Path::new("/etc/byteback/config.toml"), &text)?;
        }
    }
}
