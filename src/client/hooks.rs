//! Hooks: the administrator's own programs, run before and after each
//! `byteback backup` — a database dump before, a notification after.
//!
//! They live in `pre-backup.d/` and `post-backup.d/` of the configuration
//! directory and are chosen as Debian's `run-parts` chooses: executable
//! regular files (or symlinks to them) whose names hold only `[A-Za-z0-9_-]`,
//! run one after another in bytewise name order. So `10-mariadb` runs, and
//! `10-mariadb.sh`, `x.dpkg-old` and a non-executable `README` do not — an
//! executable left out for its name gets a note, unless the name is a
//! package manager's leftover, since a forgotten `.sh` would otherwise mean
//! a backup without its database.
//!
//! Each hook gets argv only (its path), stdin from /dev/null, `/` as its
//! working directory, our environment plus the documented `BYTEBACK_*`
//! variables, and its own process group, so that a hook still running after
//! `hook_timeout` is ended with everything it started (SIGTERM, then SIGKILL
//! five seconds later). Its stdout and stderr both reach our stderr, line by
//! line, prefixed with `pre-backup.d/NAME: `: stdout is kept for the summary
//! (`--json` prints one object there), and under `-q` the lines are held
//! back with every other message, printed only if something failed.
//!
//! Pre-backup hooks run once per backup, before the first attempt (never per
//! retry); the first that fails stops the backup before anything reaches the
//! server ([`Error::Hook`], exit status 11). Post-backup hooks run once after
//! the last attempt, whatever happened — also after a failed pre-backup hook —
//! and each failure is a warning that changes neither the result nor the
//! exit status.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

use crate::client::config::ConfigDir;
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::report;

/// When hooks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before the first attempt.
    Pre,
    /// After the last attempt.
    Post,
}

impl Phase {
    /// `pre-backup` or `post-backup` (also `$BYTEBACK_PHASE`).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Pre => "pre-backup",
            Phase::Post => "post-backup",
        }
    }

    /// The directory of this phase's hooks.
    pub fn dir(self, config: &ConfigDir) -> PathBuf {
        match self {
            Phase::Pre => config.pre_backup_hooks(),
            Phase::Post => config.post_backup_hooks(),
        }
    }
}

/// run-parts' rule for names: only ASCII letters, digits, `_` and `-`.
pub fn is_hook_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

/// Names that package managers and editors leave beside a file they
/// replaced: skipped without a word.
fn is_leftover(name: &[u8]) -> bool {
    const SUFFIXES: &[&[u8]] = &[
        b".dpkg-old",
        b".dpkg-new",
        b".dpkg-dist",
        b".dpkg-tmp",
        b".dpkg-bak",
        b".dpkg-remove",
        b".ucf-old",
        b".ucf-new",
        b".ucf-dist",
        b".rpmsave",
        b".rpmnew",
        b".rpmorig",
        b".disabled",
        b".orig",
        b".bak",
        b".swp",
        b"~",
    ];
    name.starts_with(b".") || SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// The hooks to run from `dir`, in order (none if it does not exist).
pub fn find(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("cannot read the hooks in", dir, e)),
    };
    let mut names: Vec<OsString> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("cannot read the hooks in", dir, e))?;
        let name = entry.file_name();
        let path = entry.path();
        // Following symlinks, as run-parts does.
        let runnable = std::fs::metadata(&path)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if !runnable {
            continue;
        }
        if is_hook_name(name.as_bytes()) {
            names.push(name);
        } else if !is_leftover(name.as_bytes()) {
            report::note(format_args!(
                "not running {}: hook names may hold only letters, digits, '-' and '_' (as for run-parts)",
                path.display()
            ));
        }
    }
    // OsString orders bytewise, as run-parts does in the C locale.
    names.sort();
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

/// What every hook is told about the backup.
#[derive(Debug, Clone)]
pub struct Context {
    /// The destination, as `byteback show-config` prints it.
    pub destination: String,
    /// This machine's name in the store.
    pub client: String,
    /// The configuration directory.
    pub config_dir: PathBuf,
    /// How long one hook may run.
    pub timeout: Duration,
}

/// How the backup ended, for the post-backup hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// `success`, `partial` or `failure`.
    pub result: &'static str,
    /// The snapshot taken (also a partial one).
    pub snapshot: Option<String>,
    /// Attempts made (0: a pre-backup hook stopped it).
    pub attempts: u32,
    /// byteback's exit status.
    pub exit_code: u8,
    /// The error's one line, if it failed.
    pub error: Option<String>,
}

impl Ending {
    /// The ending of a backup that returned `result` after `attempts`.
    pub fn of(result: std::result::Result<&str, &Error>, attempts: u32) -> Ending {
        // A partial snapshot is named in its error ("… snapshot NAME was
        // taken and marked partial …"): the first word there that is one.
        let snapshot = |e: &Error| match e {
            Error::Partial(m) => m
                .split(' ')
                .find_map(crate::names::SnapshotName::parse)
                .map(|n| n.as_str().to_owned()),
            _ => None,
        };
        match result {
            Ok(s) => Ending {
                result: "success",
                snapshot: Some(s.to_owned()),
                attempts,
                exit_code: 0,
                error: None,
            },
            Err(e) => Ending {
                result: if matches!(e, Error::Partial(_)) {
                    "partial"
                } else {
                    "failure"
                },
                snapshot: snapshot(e),
                attempts,
                exit_code: e.exit_code().code(),
                error: Some(e.to_string()),
            },
        }
    }
}

impl Context {
    /// The environment of a hook in `phase` (`ending`: post-backup only).
    pub fn environment(&self, phase: Phase, ending: Option<&Ending>) -> Vec<(String, OsString)> {
        let mut env: Vec<(String, OsString)> = vec![
            ("BYTEBACK_PHASE".into(), phase.name().into()),
            (
                "BYTEBACK_DESTINATION".into(),
                self.destination.clone().into(),
            ),
            ("BYTEBACK_CLIENT".into(), self.client.clone().into()),
            (
                "BYTEBACK_CONFIG_DIR".into(),
                self.config_dir.clone().into_os_string(),
            ),
        ];
        if let Some(e) = ending {
            env.extend([
                ("BYTEBACK_RESULT".into(), e.result.into()),
                (
                    "BYTEBACK_SNAPSHOT".into(),
                    e.snapshot.clone().unwrap_or_default().into(),
                ),
                ("BYTEBACK_ATTEMPTS".into(), e.attempts.to_string().into()),
                ("BYTEBACK_EXIT_CODE".into(), e.exit_code.to_string().into()),
                (
                    "BYTEBACK_ERROR".into(),
                    e.error.clone().unwrap_or_default().into(),
                ),
            ]);
        }
        env
    }

    /// Runs the pre-backup hooks; the first failure stops them, and the backup.
    pub fn before(&self, config: &ConfigDir) -> Result<()> {
        let dir = Phase::Pre.dir(config);
        let hooks = find(&dir).map_err(|e| Error::Hook(format!("{e}; nothing was backed up")))?;
        let env = self.environment(Phase::Pre, None);
        for hook in hooks {
            let ended = run_one(&hook, Phase::Pre, &env, self.timeout);
            if !ended.is_success() {
                return Err(Error::Hook(format!(
                    "pre-backup hook {} failed: {}; nothing was backed up",
                    hook.display(),
                    ended.describe(self.timeout)
                )));
            }
        }
        Ok(())
    }

    /// Runs every post-backup hook; returns whether all succeeded (each
    /// failure is a warning).
    pub fn after(&self, config: &ConfigDir, ending: &Ending) -> bool {
        let dir = Phase::Post.dir(config);
        let hooks = match find(&dir) {
            Ok(hooks) => hooks,
            Err(e) => {
                report::warn(format_args!("post-backup hooks not run: {e}"));
                return false;
            }
        };
        let env = self.environment(Phase::Post, Some(ending));
        let mut all_ok = true;
        for hook in hooks {
            let ended = run_one(&hook, Phase::Post, &env, self.timeout);
            if !ended.is_success() {
                all_ok = false;
                report::warn(format_args!(
                    "post-backup hook {} failed: {} (the backup's result stands)",
                    hook.display(),
                    ended.describe(self.timeout)
                ));
            }
        }
        all_ok
    }
}

/// How one hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Exited with this status.
    Exit(i32),
    /// Killed by this signal (not by us).
    Signal(i32),
    /// Still running at the timeout, so its process group was ended.
    TimedOut,
    /// It could not be started (e.g. a script without a `#!` line).
    NotStarted(String),
}

impl Ended {
    /// Exit status 0.
    pub fn is_success(&self) -> bool {
        *self == Ended::Exit(0)
    }

    /// For messages: "exit status 3", "killed by signal 9 (SIGKILL)", ...
    pub fn describe(&self, timeout: Duration) -> String {
        match self {
            Ended::Exit(n) => format!("exit status {n}"),
            Ended::Signal(n) => {
                let name = match *n {
                    libc::SIGHUP => " (SIGHUP)",
                    libc::SIGINT => " (SIGINT)",
                    libc::SIGKILL => " (SIGKILL)",
                    libc::SIGTERM => " (SIGTERM)",
                    libc::SIGSEGV => " (SIGSEGV)",
                    libc::SIGABRT => " (SIGABRT)",
                    libc::SIGPIPE => " (SIGPIPE)",
                    _ => "",
                };
                format!("killed by signal {n}{name}")
            }
            Ended::TimedOut => format!(
                "still running after {} (hook_timeout), so it was killed with everything it started",
                crate::config::Duration(
                    jiff::SignedDuration::try_from(timeout).unwrap_or_default()
                )
            ),
            Ended::NotStarted(why) => format!("could not be started: {why}"),
        }
    }
}

/// How long a hook's processes get between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// How long we still read output a hook's leftover children hold open
/// after the hook itself exited.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Runs one hook to its end, relaying its output.
pub fn run_one(hook: &Path, phase: Phase, env: &[(String, OsString)], timeout: Duration) -> Ended {
    let label = format!(
        "{}.d/{}",
        phase.name(),
        hook.file_name().unwrap_or_default().to_string_lossy()
    );
    let spawned = Cmd::new(hook)
        .configure(|c| {
            c.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .current_dir("/")
                .envs(env.iter().map(|(k, v)| (k, v)))
                .process_group(0);
        })
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return Ended::NotStarted(e.to_string()),
    };
    // Each stream's lines arrive over one channel (`None`: it closed), so
    // one loop can relay them, watch the clock and reap the hook.
    let (tx, rx) = mpsc::channel::<Option<String>>();
    let mut open = 0;
    let streams: [Option<Box<dyn Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ];
    for stream in streams.into_iter().flatten() {
        open += 1;
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).split(b'\n').map_while(|l| l.ok()) {
                let line = String::from_utf8_lossy(&line).trim_end().to_owned();
                if tx.send(Some(line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(None);
        });
    }
    drop(tx);
    let group = Pid::from_child(&child);
    let started = Instant::now();
    let mut status = None;
    let mut exited_at = None;
    let mut termed_at: Option<Instant> = None;
    let mut killed = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Some(line)) => report::relay(format_args!("{label}: {line}")),
            Ok(None) => open -= 1,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = 0,
        }
        let now = Instant::now();
        if status.is_none() {
            if let Ok(Some(s)) = child.try_wait() {
                status = Some(s);
                exited_at = Some(now);
            }
        }
        match (exited_at, termed_at) {
            // Done when its output is, or soon after it exited if
            // something it left running keeps the pipes open.
            (Some(at), _) if open == 0 || now - at > OUTPUT_GRACE => break,
            (Some(_), _) => {}
            (None, None) if now - started >= timeout => {
                let _ = kill_process_group(group, Signal::TERM);
                termed_at = Some(now);
            }
            (None, Some(at)) if !killed && now - at >= KILL_GRACE => {
                let _ = kill_process_group(group, Signal::KILL);
                killed = true;
            }
            (None, _) => {}
        }
    }
    if termed_at.is_some() {
        // Whatever it started goes with it, even if the hook itself
        // ended on SIGTERM at once.
        let _ = kill_process_group(group, Signal::KILL);
        return Ended::TimedOut;
    }
    match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => Ended::Exit(code),
            (None, Some(signal)) => Ended::Signal(signal),
            (None, None) => Ended::Exit(-1),
        },
        None => Ended::Exit(-1),
    }
}

/// The hooks a backup would run, for `--dry-run`.
pub fn planned(config: &ConfigDir) -> Result<Vec<(Phase, PathBuf)>> {
    let mut all = Vec::new();
    for phase in [Phase::Pre, Phase::Post] {
        all.extend(find(&phase.dir(config))?.into_iter().map(|h| (phase, h)));
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn temp_dir(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "byteback-hooks-{label}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn script(path: &Path, body: &str, mode: u32) {
        std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn names_follow_run_parts() {
        for ok in ["10-mariadb", "a", "Z_9-x", "-"] {
            assert!(is_hook_name(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "10-mariadb.sh",
            "x.dpkg-old",
            "a b",
            "é",
            "a~",
            ".hidden",
        ] {
            assert!(!is_hook_name(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn find_skips_and_sorts_bytewise() {
        let dir = temp_dir("find");
        for (name, mode) in [
            ("b", 0o755),
            ("B", 0o755),
            ("a-1", 0o700),
            ("a_1", 0o755),
            ("10", 0o755),
            ("x.dpkg-old", 0o755),
            ("plain", 0o644),
        ] {
            script(&dir.join(name), "true", mode);
        }
        std::fs::create_dir(dir.join("subdir")).unwrap();
        symlink(dir.join("b"), dir.join("link")).unwrap();
        symlink(dir.join("missing"), dir.join("dangling")).unwrap();
        let found: Vec<String> = find(&dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(found, ["10", "B", "a-1", "a_1", "b", "link"]);
        assert!(find(&dir.join("absent")).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn endings_are_told_apart() {
        let dir = temp_dir("run");
        let run = |body: &str, timeout: Duration| {
            let hook = dir.join("hook");
            script(&hook, body, 0o755);
            run_one(&hook, Phase::Pre, &[], timeout)
        };
        let long = Duration::from_secs(60);
        assert_eq!(run("echo out; echo err >&2", long), Ended::Exit(0));
        assert_eq!(run("exit 3", long), Ended::Exit(3));
        assert_eq!(run("kill -9 $$", long), Ended::Signal(9));
        // The hook's own child goes too: nothing holds the pipes open.
        let started = Instant::now();
        assert_eq!(
            run("sleep 30 & sleep 30", Duration::from_millis(300)),
            Ended::TimedOut
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        // A hook that exits leaving a child with its output open.
        let started = Instant::now();
        assert_eq!(run("sleep 30 &", long), Ended::Exit(0));
        assert!(started.elapsed() < Duration::from_secs(5));
        std::fs::write(dir.join("noshebang"), "true\n").unwrap();
        std::fs::set_permissions(
            dir.join("noshebang"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert!(matches!(
            run_one(&dir.join("noshebang"), Phase::Post, &[], long),
            Ended::NotStarted(_)
        ));
        assert_eq!(
            Ended::TimedOut.describe(Duration::from_secs(3600)),
            "still running after 1h (hook_timeout), so it was killed with everything it started"
        );
        assert_eq!(
            Ended::Signal(9).describe(long),
            "killed by signal 9 (SIGKILL)"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn endings_tell_the_post_hooks() {
        let ok = Ending::of(Ok("2026-11-28T03:00:00Z"), 2);
        assert_eq!(
            (ok.result, ok.snapshot.as_deref(), ok.exit_code),
            ("success", Some("2026-11-28T03:00:00Z"), 0)
        );
        let partial = Error::Partial(
            "backup incomplete: snapshot 2026-11-28T03:00:00Z was taken and marked partial, but 1 file(s) ..."
                .into(),
        );
        let p = Ending::of(Err(&partial), 5);
        assert_eq!(
            (p.result, p.snapshot.as_deref(), p.exit_code),
            ("partial", Some("2026-11-28T03:00:00Z"), 3)
        );
        let f = Ending::of(Err(&Error::Hook("x".into())), 0);
        assert_eq!((f.result, f.snapshot, f.exit_code), ("failure", None, 11));
    }
}
