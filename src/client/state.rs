//! What the last backup attempt did, kept on the client so that
//! `byteback status` (and monitoring) can tell without asking the server:
//! when it started and ended, how it ended, on which attempt, the snapshot
//! it made and the last error. Written atomically after every attempt.
//!
//! It lives in `/var/lib/byteback/state.json` beside the default
//! configuration directory, and inside any other configuration directory
//! (`--config-dir`, `$BYTEBACK_CONFIG_DIR`), so that separate set-ups on one
//! machine keep separate states.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::exec::rsync::Traffic;
use crate::sys::fs::{ensure_dir, write_atomic};

use super::config::{ConfigDir, DEFAULT_CONFIG_DIR};

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ended {
    /// Still running (or killed before it could say).
    Running,
    /// A complete snapshot was taken.
    Ok,
    /// A snapshot was taken, but some files were left out.
    Partial,
    /// No snapshot.
    Failed,
}

/// The state file's content (versioned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub destination: String,
    pub started: Timestamp,
    pub ended: Option<Timestamp>,
    pub result: Ended,
    pub attempt: u32,
    pub snapshot: Option<String>,
    pub error: Option<String>,
    /// Regular files sent by this run (all its attempts).
    #[serde(default)]
    pub files: u64,
    /// Their size.
    #[serde(default)]
    pub bytes: u64,
    /// Bytes that went over the wire.
    #[serde(default)]
    pub sent: u64,
    /// When a backup last succeeded (kept across failed ones).
    pub last_success: Option<Timestamp>,
}

/// Where the state of this configuration directory lives.
pub fn path(dir: &ConfigDir) -> PathBuf {
    if dir.dir == Path::new(DEFAULT_CONFIG_DIR) {
        PathBuf::from("/var/lib/byteback/state.json")
    } else {
        dir.dir.join("state.json")
    }
}

/// The last recorded state, if any (an unreadable file counts as none).
pub fn load(dir: &ConfigDir) -> Option<State> {
    let text = std::fs::read_to_string(path(dir)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Records `state` atomically.
pub fn save(dir: &ConfigDir, state: &State) -> Result<()> {
    let path = path(dir);
    if let Some(parent) = path.parent() {
        ensure_dir(parent, 0o755)?;
    }
    let text = serde_json::to_string_pretty(state)
        .map_err(|e| Error::Command(format!("cannot write JSON: {e}")))?;
    write_atomic(&path, format!("{text}\n").as_bytes(), 0o644)
}

/// Keeps the state file up to date through one backup run.
#[derive(Debug)]
pub struct Recorder<'d> {
    dir: &'d ConfigDir,
    state: State,
}

impl<'d> Recorder<'d> {
    /// A run starts (nothing is recorded for a configuration directory
    /// that does not exist: a one-off backup with `--destination`).
    pub fn start(dir: &'d ConfigDir, destination: &str) -> Option<Self> {
        if !dir.dir.is_dir() {
            return None;
        }
        let recorder = Recorder {
            dir,
            state: State {
                version: 1,
                destination: destination.to_owned(),
                started: Timestamp::now(),
                ended: None,
                result: Ended::Running,
                attempt: 1,
                snapshot: None,
                error: None,
                files: 0,
                bytes: 0,
                sent: 0,
                last_success: load(dir).and_then(|s| s.last_success),
            },
        };
        recorder.save();
        Some(recorder)
    }

    /// The backup goes on at another destination (a followed redirect).
    pub fn destination(&mut self, destination: &str) {
        self.state.destination = destination.to_owned();
        self.save();
    }

    /// Attempt `n` begins.
    pub fn attempt(&mut self, n: u32) {
        self.state.attempt = n;
        self.save();
    }

    /// The run ended: with a snapshot, a partial one, or an error.
    pub fn finish(&mut self, result: std::result::Result<&str, &Error>, traffic: Traffic) {
        use crate::sys::syslog::{Severity, send, socket};
        let (severity, what) = match result {
            Ok(s) => (
                Severity::Info,
                format!("backup to {}: ok, snapshot {s}", self.state.destination),
            ),
            Err(e) => (
                Severity::Error,
                format!("backup to {} failed: {e}", self.state.destination),
            ),
        };
        send(&socket(None), "byteback", severity, &what);
        let now = Timestamp::now();
        self.state.ended = Some(now);
        self.state.files = traffic.files;
        self.state.bytes = traffic.bytes;
        self.state.sent = traffic.sent;
        match result {
            Ok(snapshot) => {
                self.state.result = Ended::Ok;
                self.state.snapshot = Some(snapshot.to_owned());
                self.state.last_success = Some(now);
            }
            Err(e @ Error::Partial(_)) => {
                self.state.result = Ended::Partial;
                self.state.error = Some(e.to_string());
            }
            Err(e) => {
                self.state.result = Ended::Failed;
                self.state.error = Some(e.to_string());
            }
        }
        self.save();
    }

    fn save(&self) {
        if let Err(e) = save(self.dir, &self.state) {
            crate::report::warn(e);
        }
    }
}

/// `byteback status`: the last attempt, and the age of the last success.
pub fn show(dir: &ConfigDir, json: bool, now: Timestamp) -> Result<()> {
    let Some(state) = load(dir) else {
        return Err(Error::NotFound(format!(
            "no backup has run with this configuration yet ({} does not exist)",
            path(dir).display()
        )));
    };
    if json {
        let text = serde_json::to_string(&state)
            .map_err(|e| Error::Command(format!("cannot write JSON: {e}")))?;
        println!("{text}");
        return Ok(());
    }
    let when = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let result = match state.result {
        Ended::Running => "running (or was killed)",
        Ended::Ok => "ok",
        Ended::Partial => "partial",
        Ended::Failed => "failed",
    };
    println!(
        "last backup to {}: {result}, started {}{}, attempt {}",
        state.destination,
        when(state.started),
        state
            .ended
            .map(|t| format!(", ended {}", when(t)))
            .unwrap_or_default(),
        state.attempt
    );
    if let Some(snapshot) = &state.snapshot {
        println!("snapshot: {snapshot}");
    }
    if state.ended.is_some() {
        println!(
            "sent: {} file(s), {} changed, {} over the wire",
            state.files,
            crate::sys::fs::human_bytes(state.bytes),
            crate::sys::fs::human_bytes(state.sent)
        );
    }
    if let Some(error) = &state.error {
        println!("error: {error}");
    }
    match state.last_success {
        Some(t) => {
            let age = now.duration_since(t).as_secs().max(0);
            println!("last success: {} ({} h ago)", when(t), age / 3600);
        }
        None => println!("last success: never"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_lives_beside_its_config() {
        let base = std::env::temp_dir().join(format!("byteback-state-{}", std::process::id()));
        let dir = ConfigDir { dir: base.clone() };
        assert_eq!(path(&dir), base.join("state.json"));
        assert_eq!(
            path(&ConfigDir {
                dir: DEFAULT_CONFIG_DIR.into()
            }),
            Path::new("/var/lib/byteback/state.json")
        );
        assert_eq!(load(&dir), None);
        let state = State {
            version: 1,
            destination: "byteback@backup.example".into(),
            started: "2026-11-28T03:00:00Z".parse().unwrap(),
            ended: Some("2026-11-28T03:10:00Z".parse().unwrap()),
            result: Ended::Partial,
            attempt: 2,
            files: 3,
            bytes: 4096,
            sent: 1200,
            snapshot: Some("2026-11-28T03:10:00Z".into()),
            error: Some("1 file(s) could not be transferred".into()),
            last_success: Some("2026-11-27T03:10:00Z".parse().unwrap()),
        };
        save(&dir, &state).unwrap();
        assert_eq!(load(&dir), Some(state));
        std::fs::write(path(&dir), "{ broken").unwrap();
        assert_eq!(load(&dir), None, "a corrupt state is no state");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
