//! Which rsync the server runs, and what it can do: probed in the sandbox
//! it runs in, once per binary.
//!
//! The server decides whether to pass `--confine-root` (rsync 3.5.0+) by
//! what the rsync it will run says of itself — the configured one
//! (`rsync` in server.toml), asked inside the same confinement a transfer
//! gets, so the answer is about the program that runs, never another one
//! first on some PATH. The answer is kept in `.byteback/rsync-probe.json`,
//! keyed by the binary's identity (its path with symlinks resolved, device,
//! inode, size, mtime) and byteback's own version, so a transfer costs no
//! extra launch, and an upgraded rsync (a new inode, size or mtime), a
//! symlink pointed at another one, or a new byteback is probed again.
//!
//! Why the store's state directory rather than the server user's
//! `~/.cache`: it is the one directory every command of this store already
//! writes as that user (hardened mode too, where the user's home may be
//! root's), it goes away with the store, and a store's `server.toml`
//! names the rsync it is about. A cache only: a file that cannot be read
//! or parsed (corrupt, from an older byteback) is probed over and written
//! again, atomically; one that cannot be written costs a probe next time.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::exec::sandbox::Confinement;
use crate::store::Store;

/// What the configured rsync is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RsyncFacts {
    /// The binary (as configured).
    pub path: PathBuf,
    /// Its version, from its own first line of `--help` (e.g. `3.2.7`).
    pub version: String,
    /// Whether it has `--confine-root`.
    pub confine_root: bool,
    /// The binary's identity when probed (see [`Identity`]).
    identity: Identity,
}

/// What makes a cached answer still true: the binary it was about, and
/// the byteback that asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Identity {
    /// The configured path with every symlink resolved.
    resolved: PathBuf,
    device: u64,
    inode: u64,
    size: u64,
    /// Modification time, in nanoseconds since the epoch.
    mtime_ns: i128,
    /// byteback's version (what it asks and how it reads the answer may
    /// change with it).
    byteback: String,
}

impl std::fmt::Display for RsyncFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ({})",
            self.path.display(),
            self.version,
            if self.confine_root {
                "with --confine-root"
            } else {
                "no --confine-root: older than 3.5.0"
            }
        )
    }
}

/// The cache file.
fn cache_path(store: &Store) -> PathBuf {
    Store::state_dir_of(store.root()).join("rsync-probe.json")
}

/// The identity of the binary at `path`.
fn identity(path: &Path) -> Result<Identity> {
    let unusable = |e: std::io::Error| {
        Error::Config(format!(
            "the server's rsync {} cannot be used ({e}): install rsync, or set `rsync` in server.toml to its absolute path",
            path.display()
        ))
    };
    let resolved = std::fs::canonicalize(path).map_err(unusable)?;
    let m = std::fs::metadata(&resolved).map_err(unusable)?;
    Ok(Identity {
        resolved,
        device: m.dev(),
        inode: m.ino(),
        size: m.size(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        byteback: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

/// The cached answer in `bytes`, if it is about the binary `path` is now.
fn cached(bytes: &[u8], path: &Path, identity: &Identity) -> Option<RsyncFacts> {
    serde_json::from_slice::<RsyncFacts>(bytes)
        .ok()
        .filter(|k| k.path == path && &k.identity == identity)
}

/// What the configured rsync is, probed in `jail` (a transfer's own
/// confinement, or any directory of the store's) unless already known.
pub fn rsync(store: &Store, jail: &Confinement) -> Result<RsyncFacts> {
    let path = store.config.rsync.clone();
    if !path.is_absolute() {
        return Err(Error::Config(format!(
            "`rsync` in server.toml must be an absolute path, not {}",
            path.display()
        )));
    }
    let identity = identity(&path)?;
    let cache = cache_path(store);
    if let Some(known) = std::fs::read(&cache)
        .ok()
        .and_then(|b| cached(&b, &path, &identity))
    {
        return Ok(known);
    }
    let probe = Confinement {
        dir: jail.dir.clone(),
        writable: false,
        cwd: PathBuf::new(),
        program: Some(path.clone()),
        limits: jail.limits,
    };
    let (child, _) = probe.spawn(|view| {
        Cmd::new(view.program.unwrap_or(&path))
            .arg("--help")
            .configure(|c| {
                c.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
            })
    })?;
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Command(format!("cannot run {} --help: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = parse_version(&text) else {
        return Err(Error::Command(format!(
            "{} --help did not say which rsync it is (exit {:?}: {}); set `rsync` in server.toml to a working rsync",
            path.display(),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    };
    let facts = RsyncFacts {
        path,
        version,
        confine_root: text.contains("--confine-root"),
        identity,
    };
    if let Ok(json) = serde_json::to_vec(&facts) {
        // A cache only: if it cannot be written, the next transfer probes again.
        let _ = crate::sys::fs::write_atomic(&cache, &json, 0o600);
    }
    Ok(facts)
}

/// The rsync as probed in a read-only view of the store's state directory
/// (for `setup` and `status`, which have no client at hand).
pub fn rsync_of_store(store: &Store) -> Result<RsyncFacts> {
    let jail = Confinement {
        dir: Store::state_dir_of(store.root()),
        limits: store.config.sandbox.limits(),
        ..Confinement::default()
    };
    rsync(store, &jail)
}

/// The version in rsync's first line: `rsync  version 3.2.7  protocol version 31`.
pub fn parse_version(text: &str) -> Option<String> {
    let line = text.lines().next()?;
    let mut words = line.split_whitespace();
    (words.next()? == "rsync").then_some(())?;
    (words.next()? == "version").then_some(())?;
    let version = words.next()?.trim_start_matches('v');
    version
        .starts_with(|c: char| c.is_ascii_digit())
        .then(|| version.to_owned())
}

/// The sandbox's layers for `store`, in words (for `setup` and `status`).
pub fn layers_line(store: &Store) -> String {
    let jail = Confinement {
        limits: store.config.sandbox.limits(),
        ..Confinement::default()
    };
    let mut words = vec![jail.layers().to_string()];
    words.push(match store.config.sandbox.private_view {
        true => "private view (if the kernel allows unprivileged user namespaces)".to_owned(),
        false => "no private view (switched off: [sandbox] private_view = false)".to_owned(),
    });
    words.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cached answer holds only for the same binary, path and byteback;
    /// anything unreadable is no answer.
    #[test]
    fn the_cache_is_keyed_by_the_binary() {
        let identity = Identity {
            resolved: "/usr/bin/rsync".into(),
            device: 1,
            inode: 2,
            size: 3,
            mtime_ns: 4,
            byteback: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let facts = RsyncFacts {
            path: "/usr/bin/rsync".into(),
            version: "3.5.0".into(),
            confine_root: true,
            identity: identity.clone(),
        };
        let bytes = serde_json::to_vec(&facts).unwrap();
        let path = Path::new("/usr/bin/rsync");
        assert_eq!(cached(&bytes, path, &identity), Some(facts));
        for changed in [
            Identity {
                resolved: "/opt/rsync/bin/rsync".into(),
                ..identity.clone()
            },
            Identity {
                inode: 9,
                ..identity.clone()
            },
            Identity {
                size: 9,
                ..identity.clone()
            },
            Identity {
                mtime_ns: 9,
                ..identity.clone()
            },
            Identity {
                byteback: "0.0.0-older".into(),
                ..identity.clone()
            },
        ] {
            assert_eq!(cached(&bytes, path, &changed), None, "{changed:?}");
        }
        assert_eq!(cached(&bytes, Path::new("/bin/rsync"), &identity), None);
        for corrupt in [&b""[..], b"{", b"\0\0\0", &bytes[..bytes.len() / 2]] {
            assert_eq!(cached(corrupt, path, &identity), None);
        }
        // A file from before the identity had its path and version.
        let old = br#"{"path":"/usr/bin/rsync","version":"3.5.0","confine_root":true,"identity":[1,2,3,4]}"#;
        assert_eq!(cached(old, path, &identity), None);
    }

    #[test]
    fn versions_from_the_first_line() {
        assert_eq!(
            parse_version("rsync  version 3.2.7  protocol version 31\nCopyright"),
            Some("3.2.7".into())
        );
        assert_eq!(
            parse_version("rsync  version v3.5.0  protocol version 32\n"),
            Some("3.5.0".into())
        );
        for bad in [
            "",
            "openrsync: protocol version 29",
            "rsync version",
            "rsync  version x",
        ] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
    }
}
