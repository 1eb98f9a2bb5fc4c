//! Hardened mode, the backup user's side: a [`Keeper`] decorator that has
//! root's helper (`byteback-privileged`, see `crate::server::privileged`)
//! take and delete snapshots, and the file that says a store is hardened.
//! Everything else (the log, the records, `current`) the user still writes
//! itself, through the keeper it decorates.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::config;
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::names::{ClientName, SnapshotName};
use crate::store::{Keeper, Powers, ServerConfig, Store};
use crate::sys::syslog::Severity;
use crate::sys::user;

/// The most of a partial note sent to the helper (as the store keeps).
pub const MAX_PARTIAL_NOTE: usize = 64 * 1024;

/// Where root keeps one file per hardened backup user.
/// (Not `/etc/byteback`, the client's directory, which is root's alone: the
/// backup user must read its own file to know the store is hardened.)
pub const CONFIG_DIR: &str = "/etc/byteback-server/hardened.d";

/// `/etc/byteback-server/hardened.d/<user>.toml`: which store the user's helper
/// requests act on, where the helper is, and the policy it enforces.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HardenedConfig {
    /// The backup user's name.
    pub user: String,
    /// Its uid: the only caller (`SUDO_UID`) served.
    pub uid: u32,
    /// Its group: the group of every client's directory.
    pub gid: u32,
    /// The store.
    pub store: PathBuf,
    /// The helper, as the sudo rule names it.
    pub helper: PathBuf,
    /// What the helper allows, whatever the store's own config says.
    #[serde(default)]
    pub policy: Policy,
}

/// The part of the prune and snapshot policy the helper enforces. Kept by
/// root: the store's `server.toml` is the backup user's to edit.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Pruning starts when free space falls below this percentage.
    pub min_free_percent: f64,
    /// The helper deletes only while free space is below this percentage.
    pub target_free_percent: f64,
    /// Nothing is deleted unless some snapshot is at least this old.
    pub min_age: config::Duration,
    /// A client's snapshots are at least this far apart.
    pub min_snapshot_interval: config::Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::of(&ServerConfig::default())
    }
}

impl Policy {
    /// The policy a store's configuration states.
    pub fn of(c: &ServerConfig) -> Policy {
        Policy {
            min_free_percent: c.min_free_percent,
            target_free_percent: c.target_free_percent,
            min_age: c.min_age,
            min_snapshot_interval: c.min_snapshot_interval,
        }
    }

    /// Makes a store's configuration state this policy, so the server asks
    /// for exactly what the helper grants.
    pub fn apply(&self, c: &mut ServerConfig) {
        c.min_free_percent = self.min_free_percent;
        c.target_free_percent = self.target_free_percent;
        c.min_age = self.min_age;
        c.min_snapshot_interval = self.min_snapshot_interval;
    }
}

/// The hardened-mode file of the backup user `name`.
pub fn config_path(name: &str) -> PathBuf {
    Path::new(CONFIG_DIR).join(format!("{name}.toml"))
}

/// The running user's hardened-mode settings, if root has hardened the
/// store at `root` for them (how the server finds out it must go through
/// the helper).
pub fn for_store(root: &Path) -> Result<Option<HardenedConfig>> {
    let me = user::current();
    let Some(cfg) = config::load::<HardenedConfig>(&config_path(&me.name))? else {
        return Ok(None);
    };
    let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    Ok((cfg.uid == me.uid && same(&cfg.store, root)).then_some(cfg))
}

/// A request to the helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Snapshot the client's `current` now; `partial`: the files left out
    /// come on stdin.
    Snapshot { client: ClientName, partial: bool },
    /// Delete this snapshot if the policy deletes it next.
    Delete {
        client: ClientName,
        snapshot: SnapshotName,
    },
}

impl Request {
    /// The helper's arguments for this request.
    pub fn to_args(&self) -> Vec<String> {
        match self {
            Request::Snapshot { client, partial } => {
                let mut args = vec!["snapshot".to_owned(), client.to_string()];
                if *partial {
                    args.push("--partial".to_owned());
                }
                args
            }
            Request::Delete { client, snapshot } => {
                vec!["delete".into(), client.to_string(), snapshot.to_string()]
            }
        }
    }
}

/// Asks the helper, through sudo, to do `request` (the server's side);
/// its stdout. A refusal is one line with exit status 6; sudo's own
/// failure (no rule, a password asked for) is one line too.
pub fn call(cfg: &HardenedConfig, request: &Request, input: &[u8]) -> Result<String> {
    let cmd = Cmd::new("sudo")
        .args(["-n", "--"])
        .arg(&cfg.helper)
        .args(request.to_args());
    let line = cmd.display();
    let out = cmd.output_with_input(input)?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map_or_else(|| format!("{line} failed ({})", out.status), str::to_owned);
    let message = format!("hardened mode: {last}");
    Err(match out.status.code() {
        Some(6) => Error::Refused(message),
        Some(4) => Error::Locked(message),
        _ => Error::Command(message),
    })
}

/// Hardened mode's keeper: snapshots are taken and deleted by root's
/// helper, which names them by its own clock and deletes only what the
/// policy deletes next; everything else goes to the keeper it decorates.
#[derive(Debug)]
pub struct Hardened {
    pub config: HardenedConfig,
    pub inner: Box<dyn Keeper>,
}

impl Keeper for Hardened {
    fn take(
        &self,
        _store: &Store,
        client: &ClientName,
        _at: Timestamp,
        partial: Option<&str>,
    ) -> Result<SnapshotName> {
        // The helper names the snapshot by its own clock and writes the
        // marker itself, root's.
        let request = Request::Snapshot {
            client: client.clone(),
            partial: partial.is_some(),
        };
        let note = partial.map_or(&[][..], |n| &n.as_bytes()[..n.len().min(MAX_PARTIAL_NOTE)]);
        let out = call(&self.config, &request, note)?;
        let printed = out.lines().last().unwrap_or_default().trim();
        SnapshotName::parse(printed).ok_or_else(|| {
            Error::Command(format!(
                "hardened mode: the helper printed {printed:?}, not a snapshot name"
            ))
        })
    }

    fn take_named(
        &self,
        _store: &Store,
        client: &ClientName,
        name: SnapshotName,
        _partial: Option<&str>,
    ) -> Result<SnapshotName> {
        Err(Error::Unsupported(format!(
            "snapshot {name} of {client}: this store is in hardened mode, whose helper names snapshots by its own clock, so it cannot keep a primary's snapshot names as a replica"
        )))
    }

    fn delete(&self, _store: &Store, client: &ClientName, name: &SnapshotName) -> Result<()> {
        // The helper checks the policy, deletes, and drops the marker.
        let request = Request::Delete {
            client: client.clone(),
            snapshot: name.clone(),
        };
        call(&self.config, &request, &[]).map(drop)
    }

    fn roll_back(&self, store: &Store, client: &ClientName) -> Result<()> {
        self.inner.roll_back(store, client)
    }

    fn log(&self, store: &Store, severity: Severity, line: &str) {
        self.inner.log(store, severity, line);
    }

    fn set_alert(&self, store: &Store, message: Option<&str>) {
        self.inner.set_alert(store, message);
    }

    /// Only the helper's snapshots (root's) count: a subvolume the user
    /// made is nobody's history.
    fn admits(&self, entry: &std::fs::DirEntry) -> bool {
        use std::os::unix::fs::MetadataExt;
        entry.metadata().is_ok_and(|m| m.uid() == 0)
    }

    fn powers(&self) -> Powers {
        Powers {
            names_as_asked: false,
            deletes_on_request: false,
        }
    }
}

/// Puts `store` in hardened mode under `config`: root's policy becomes
/// the store's (the server asks for exactly what the helper grants), and
/// the helper keeps its history.
pub fn harden(store: &mut Store, config: HardenedConfig) {
    config.policy.apply(&mut store.config);
    store.decorate(|inner| Box::new(Hardened { config, inner }));
}
