//! `byteback backup`: push this machine's files, then ask for a snapshot.
//!
//! One backup at a time (flock). Each attempt pings the server, runs rsync
//! into `current`, and on success asks the server to snapshot it. Failures a
//! later attempt can cure are retried after a pause, resuming from what was
//! already sent; anything else stops at once with the reason.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::client::config::{ClientConfig, ConfigDir, check_source};
use crate::client::hooks;
use crate::client::local;
use crate::client::remote;
use crate::client::state;
use crate::destination::Target;
use crate::error::{Error, Result};
use crate::exec::rsync::{
    BackupTransfer, Outcome, Throttle, Traffic, TransferTo, describe_exit, exclude_contents_of,
    failed_file,
};
use crate::exec::ssh::{HostKeyPolicy, Master, Ssh};
use crate::protocol::Failure;
use crate::report;
use crate::store::service::ClientBackups;
use crate::sys::fs::human_bytes;
use crate::sys::lock::Lock;
use crate::sys::mountinfo;

/// The most failed file names reported to the server for a partial snapshot.
const MAX_FAILED_FILES: usize = 1000;

/// What the user asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct BackupArgs {
    /// Replace the configured sources.
    pub sources: Vec<PathBuf>,
    /// Add exclude patterns.
    pub excludes: Vec<String>,
    /// List files as they are sent.
    pub verbose: bool,
    /// Print what would be backed up and stop.
    pub dry_run: bool,
    /// Print nothing on success.
    pub quiet: bool,
    /// Print the summary as JSON.
    pub json: bool,
    /// Back up here instead of the configured destination.
    pub destination: Option<String>,
}

/// The sources and exclusions of one backup.
#[derive(Debug, Clone)]
struct Plan {
    sources: Vec<PathBuf>,
    excludes: Vec<Exclusion>,
}

/// What rsync shows while it runs.
#[derive(Debug, Clone, Copy)]
struct Show {
    /// Every file (`--verbose`).
    verbose: bool,
    /// One progress line (a terminal).
    progress: bool,
}

/// One rsync exclude pattern and why it is there.
#[derive(Debug, Clone)]
struct Exclusion {
    pattern: String,
    why: String,
    /// The person asked for it (config, flag): no need to tell them again.
    requested: bool,
}

impl Exclusion {
    fn automatic(pattern: String, why: String) -> Self {
        Exclusion {
            pattern,
            why,
            requested: false,
        }
    }

    fn requested(pattern: String, why: &str) -> Self {
        Exclusion {
            pattern,
            why: why.to_owned(),
            requested: true,
        }
    }
}

fn plan(
    dir: &ConfigDir,
    configured: &[PathBuf],
    configured_excludes: &[String],
    args: &BackupArgs,
) -> Result<Plan> {
    let requested = if args.sources.is_empty() {
        configured
    } else {
        &args.sources
    };
    let sources = requested
        .iter()
        .map(|s| check_source(s))
        .collect::<Result<Vec<_>>>()?;
    let mut excludes = Vec::new();
    for e in mountinfo::exclusions(&mountinfo::read()?, &sources) {
        excludes.push(Exclusion::automatic(
            exclude_contents_of(&e.mount_point),
            e.reason,
        ));
    }
    for p in configured_excludes {
        excludes.push(Exclusion::requested(p.clone(), "config.toml"));
    }
    for p in dir.file_excludes()? {
        // Listed in a file the person may have forgotten: worth a note.
        excludes.push(Exclusion::automatic(
            p,
            dir.excludes_file().display().to_string(),
        ));
    }
    for p in &args.excludes {
        excludes.push(Exclusion::requested(p.clone(), "--exclude"));
    }
    Ok(Plan { sources, excludes })
}

/// [`plan`], and for a store on this machine inside the sources, the store
/// itself left out.
fn full_plan(
    dir: &ConfigDir,
    config: &ClientConfig,
    args: &BackupArgs,
    target: &Target,
) -> Result<Plan> {
    let mut plan = plan(dir, &config.sources, &config.excludes, args)?;
    if let Target::Local(store) = target {
        // Never back the store up into itself.
        if plan.sources.iter().any(|s| store.starts_with(s)) {
            plan.excludes.push(Exclusion::automatic(
                exclude_contents_of(store),
                "the backup store itself".to_owned(),
            ));
        }
    }
    Ok(plan)
}

/// The rsync exclude patterns a backup of `sources` (which must exist)
/// would use — automatic (mounts, the local store) and configured alike —
/// so `verify` leaves out exactly what backups leave out.
pub fn exclude_patterns(
    dir: &ConfigDir,
    config: &ClientConfig,
    sources: &[PathBuf],
    target: &Target,
) -> Result<Vec<String>> {
    let args = BackupArgs {
        sources: sources.to_vec(),
        ..BackupArgs::default()
    };
    let plan = full_plan(dir, config, &args, target)?;
    Ok(plan.excludes.into_iter().map(|e| e.pattern).collect())
}

/// The configuration to back up with, and where to: `--destination`
/// wins over the config file, and makes the file optional.
pub fn resolve(dir: &ConfigDir, flag: Option<&str>) -> Result<(ClientConfig, Target)> {
    let config = match dir.load() {
        Ok(config) => config,
        Err(_) if flag.is_some() && !dir.config_file().exists() => ClientConfig::default(),
        Err(e) => return Err(e),
    };
    let target = match flag {
        Some(text) => text.parse()?,
        None => config.destination.clone().ok_or_else(|| {
            Error::Config(format!(
                "{} names no destination: run `byteback setup [USER@]HOST` (or pass --destination)",
                dir.config_file().display()
            ))
        })?,
    };
    Ok((config, target))
}

/// This machine's name in the store.
pub fn machine_name(config: &ClientConfig) -> String {
    config
        .name
        .clone()
        .unwrap_or_else(crate::client::setup::this_machines_name)
}

/// Runs a backup; prints the snapshot's name on success.
pub fn run(dir: &ConfigDir, args: &BackupArgs) -> Result<()> {
    let (mut config, target) = resolve(dir, args.destination.as_deref())?;
    let plan = full_plan(dir, &config, args, &target)?;
    if args.dry_run {
        println!("destination {target}");
        for s in &plan.sources {
            println!("source  {}", s.display());
        }
        for e in &plan.excludes {
            println!("exclude {}  ({})", e.pattern, e.why);
        }
        for (phase, hook) in hooks::planned(dir)? {
            println!("{} hook {}", phase.name(), hook.display());
        }
        return Ok(());
    }
    // One backup at a time on this machine (the config directory may not
    // exist for a one-off local backup; the store's own lock covers that).
    let _lock = if dir.dir.is_dir() {
        Some(Lock::acquire(&dir.lock_file(), Duration::ZERO)?.ok_or_else(|| {
            Error::Locked(format!(
                "another byteback backup is running on this machine (it holds {}); wait for it to finish",
                dir.lock_file().display()
            ))
        })?)
    } else {
        None
    };
    if args.quiet {
        report::hold();
    }
    for e in plan.excludes.iter().filter(|e| !e.requested) {
        report::note(format_args!("excluding {} ({})", e.pattern, e.why));
    }
    // rsync's own progress line, only where a person watches a terminal.
    let show = Show {
        verbose: args.verbose,
        progress: std::io::IsTerminal::is_terminal(&std::io::stdout())
            && !args.verbose
            && !args.quiet
            && !args.json,
    };
    let mut recorder = state::Recorder::start(dir, &target.to_string());
    let started = jiff::Timestamp::now();
    let mut traffic = Traffic::default();
    let hooks = hooks::Context {
        destination: target.to_string(),
        client: machine_name(&config),
        config_dir: dir.dir.clone(),
        timeout: config.hook_timeout.to_std(),
    };
    // Attempts made so far: 0 while the pre-backup hooks run.
    let mut attempts = 0;
    let result = hooks.before(dir).and_then(|()| match &target {
        Target::Local(root) => {
            attempts = 1;
            local_backup(&config, &plan, root, show, &mut traffic).map(|s| (s, 1))
        }
        Target::Remote(d) => {
            config.destination = Some(Target::Remote(d.clone()));
            remote_backup(
                dir,
                &config,
                &plan,
                show,
                recorder.as_mut(),
                &mut traffic,
                &mut attempts,
            )
        }
    });
    if let Some(r) = recorder.as_mut() {
        r.finish(result.as_ref().map(|(s, _)| s.as_str()), traffic);
    }
    let seconds = jiff::Timestamp::now().duration_since(started).as_secs_f64();
    let ending = hooks::Ending::of(result.as_ref().map(|(s, _)| s.as_str()), attempts);
    let hooks_ok = hooks.after(dir, &ending);
    // Under -q, a failed post-backup hook shows everything held back too.
    match (&result, hooks_ok) {
        (Ok(_), true) => report::discard(),
        _ => report::release(),
    }
    if args.json {
        let summary = serde_json::json!({
            "result": match &result {
                Ok(_) => "ok",
                Err(Error::Partial(_)) => "partial",
                Err(_) => "failed",
            },
            "destination": target.to_string(),
            "snapshot": result.as_ref().ok().map(|(s, _)| s),
            "attempts": result.as_ref().ok().map(|(_, a)| a),
            "files": traffic.files,
            "bytes": traffic.bytes,
            "sent": traffic.sent,
            "started": started.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "duration_seconds": (seconds * 10.0).round() / 10.0,
            "error": result.as_ref().err().map(|e| e.to_string()),
        });
        println!("{summary}");
    }
    let (snapshot, attempts) = result?;
    if !args.quiet && !args.json {
        let place = match &target {
            Target::Local(root) => format!(" in {}", root.display()),
            Target::Remote(_) => String::new(),
        };
        println!(
            "Backup complete: snapshot {snapshot}{place} ({} file(s), {} changed, {} sent, {seconds:.1} s, {attempts} attempt(s))",
            traffic.files,
            human_bytes(traffic.bytes),
            human_bytes(traffic.sent),
        );
    }
    Ok(())
}

/// A backup to a server, retried as configured; the snapshot's name.
fn remote_backup(
    dir: &ConfigDir,
    config: &ClientConfig,
    plan: &Plan,
    show: Show,
    mut recorder: Option<&mut state::Recorder<'_>>,
    traffic: &mut Traffic,
    made: &mut u32,
) -> Result<(String, u32)> {
    let ssh = dir.ssh(config, HostKeyPolicy::Strict)?;
    let transfer = BackupTransfer {
        rsync: PathBuf::from("rsync"),
        to: TransferTo::Remote {
            rsh: ssh.rsh_string(),
            remote: ssh.rsync_remote(),
        },
        sources: plan.sources.clone(),
        excludes: plan.excludes.iter().map(|e| e.pattern.clone()).collect(),
        io_timeout_secs: config.io_timeout.as_secs(),
        verbose: show.verbose,
        progress: show.progress,
        throttle: throttle(config),
    };
    let attempts = config.retry_attempts.max(1);
    let mut attempt = 1;
    let mut unanswered = None;
    loop {
        *made = attempt;
        if let Some(r) = recorder.as_deref_mut() {
            r.attempt(attempt);
        }
        let last = attempt == attempts;
        match try_once(dir, &ssh, &transfer, last, traffic, &mut unanswered) {
            Ok(snapshot) => return Ok((snapshot, attempt)),
            Err(e @ Error::Partial(_)) => return Err(e),
            Err(e) if last || !retryable(&e) => {
                return Err(if attempts > 1 && retryable(&e) {
                    with_attempts(e, attempts)
                } else {
                    e
                });
            }
            Err(e) => {
                report::note(format_args!(
                    "attempt {attempt} of {attempts} failed: {e}; trying again in {}",
                    config.retry_pause
                ));
                std::thread::sleep(config.retry_pause.to_std());
                attempt += 1;
            }
        }
    }
}

/// A backup into a store on this machine: the server's steps, in process.
fn local_backup(
    config: &ClientConfig,
    plan: &Plan,
    root: &std::path::Path,
    show: Show,
    traffic: &mut Traffic,
) -> Result<String> {
    let local = local::open(root, &machine_name(config), true)?;
    let (store, client) = (&local.store, &local.client);
    let _lock = store.lock_client(client, Duration::ZERO).map_err(|_| {
        Error::Locked(format!(
            "another backup into {} is running; wait for it to finish",
            root.display()
        ))
    })?;
    let backups = ClientBackups::open(store, client)?;
    let into = backups.prepare_transfer()?;
    let transfer = BackupTransfer {
        rsync: PathBuf::from("rsync"),
        to: TransferTo::Local {
            current: store.current(client),
            inplace: into.inplace,
            link_dests: into.link_dests,
        },
        sources: plan.sources.clone(),
        excludes: plan.excludes.iter().map(|e| e.pattern.clone()).collect(),
        io_timeout_secs: config.io_timeout.as_secs(),
        verbose: show.verbose,
        progress: show.progress,
        throttle: throttle(config),
    };
    let t = transfer_files(&transfer)?;
    traffic.add(t.traffic);
    let now = jiff::Timestamp::now();
    match t.outcome {
        Outcome::Ok | Outcome::Vanished => Ok(backups.finish(now, None)?.to_string()),
        Outcome::SomeFilesFailed => {
            let note = t.failed.join("\n") + "\n";
            let snapshot = backups.finish(now, Some(&note))?;
            Err(partial_error(&snapshot.to_string(), &t.failed))
        }
        _ => Err(Error::Command(format!(
            "{}; see rsync's messages above",
            describe_exit(t.code)
        ))),
    }
}

/// The config's settings for slow or shared links.
fn throttle(config: &ClientConfig) -> Throttle {
    Throttle {
        bwlimit: config.bwlimit.as_ref().map(|b| b.as_str().to_owned()),
        compress: config.compress,
        priority: config.priority(),
    }
}

fn partial_error(snapshot: &str, failed: &[String]) -> Error {
    let shown: Vec<&str> = failed.iter().take(5).map(String::as_str).collect();
    let more = failed.len().saturating_sub(shown.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    Error::Partial(format!(
        "backup incomplete: snapshot {snapshot} was taken and marked partial, but {} file(s) could not be transferred: {}{more}",
        failed.len(),
        shown.join(", ")
    ))
}

fn retryable(e: &Error) -> bool {
    matches!(e, Error::Connection(_) | Error::Locked(_))
}

fn with_attempts(e: Error, attempts: u32) -> Error {
    let msg = format!("backup failed after {attempts} attempts: {e}");
    match e {
        Error::Locked(_) => Error::Locked(msg),
        _ => Error::Connection(msg),
    }
}

/// One attempt: ping, transfer, snapshot — over one shared connection.
fn try_once(
    dir: &ConfigDir,
    plain: &Ssh,
    transfer: &BackupTransfer,
    last: bool,
    traffic: &mut Traffic,
    unanswered: &mut Option<UnansweredSnapshot>,
) -> Result<String> {
    let master = Master::open(plain, control_socket(dir))?;
    let ssh = &master.share(plain);
    let transfer = &BackupTransfer {
        to: TransferTo::Remote {
            rsh: ssh.rsh_string(),
            remote: ssh.rsync_remote(),
        },
        ..transfer.clone()
    };
    let pinged = remote::ping(ssh)?;
    // The last attempt asked for a snapshot and lost the connection before
    // the answer: if the server took it, that is this backup's snapshot —
    // asking again would take a second one (or be refused as too soon).
    if let Some(asked) = unanswered.take() {
        if pinged.newest.is_some() && pinged.newest != asked.newest_before {
            let snapshot = pinged.newest.unwrap_or_default();
            report::note(format_args!(
                "the server took snapshot {snapshot} before the connection dropped"
            ));
            return Ok(snapshot);
        }
    }
    let Transferred {
        outcome,
        code,
        failed,
        server_said,
        traffic: sent,
    } = transfer_files(transfer)?;
    traffic.add(sent);
    if let (false, Some(failure)) = (outcome.is_success(), server_said) {
        // The server refused the transfer (its words came through rsync's
        // stderr); rsync only knows the connection closed.
        return Err(failure.into_error());
    }
    match outcome {
        Outcome::Ok | Outcome::Vanished => {
            let result = remote::complete(ssh, None);
            if matches!(result, Err(Error::Connection(_))) {
                *unanswered = Some(UnansweredSnapshot {
                    newest_before: pinged.newest,
                });
            }
            result
        }
        Outcome::SomeFilesFailed if last => {
            let note = if failed.is_empty() {
                "(rsync named no files)\n".to_owned()
            } else {
                failed.join("\n") + "\n"
            };
            let snapshot = remote::complete(ssh, Some(&note))?;
            Err(partial_error(&snapshot, &failed))
        }
        // Exit 23 may be a transient I/O problem: try again first.
        Outcome::SomeFilesFailed | Outcome::Retryable => {
            Err(Error::Connection(describe_exit(code)))
        }
        Outcome::Fatal => Err(Error::Command(format!(
            "{}; see rsync's messages above",
            describe_exit(code)
        ))),
    }
}

/// A snapshot request whose answer was lost with the connection.
#[derive(Debug)]
struct UnansweredSnapshot {
    /// The client's newest snapshot before the request.
    newest_before: Option<String>,
}

/// Where the shared connection's socket lives: in the config directory
/// (root's own), unless that path is too long for a Unix socket.
pub fn control_socket(dir: &ConfigDir) -> std::path::PathBuf {
    let name = format!("ssh-{}", std::process::id());
    let path = dir.dir.join(&name);
    if path.as_os_str().len() < 100 {
        path
    } else {
        std::env::temp_dir().join(format!("byteback-{name}"))
    }
}

/// Runs rsync, passing its output through and collecting failed file names,
/// the server's own error if it gave one, and the `--stats` figures.
fn transfer_files(transfer: &BackupTransfer) -> Result<Transferred> {
    let mut child = transfer
        .command()
        .configure(|c| {
            c.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        })
        .spawn()?;
    let verbose = transfer.verbose;
    let stdout = child.stdout.take();
    let relay = std::thread::spawn(move || stdout.map(|o| relay_stdout(o, verbose)));
    let mut failed = Vec::new();
    let mut server_said = None;
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).split(b'\n').map_while(|l| l.ok()) {
            let line = String::from_utf8_lossy(&line);
            report::relay(&line);
            if let Some(failure) = Failure::parse(&line) {
                server_said = Some(failure);
            }
            if let Some(name) = failed_file(&line) {
                if failed.len() < MAX_FAILED_FILES {
                    failed.push(name.to_owned());
                }
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| Error::Command(format!("rsync: {e}")))?;
    let traffic = relay.join().ok().flatten().unwrap_or_default();
    Ok(Transferred {
        outcome: Outcome::of_exit(status.code()),
        code: status.code(),
        failed,
        server_said,
        traffic,
    })
}

/// Passes rsync's standard output through as it comes (a progress line ends
/// in `\r`, so pieces end at either `\r` or `\n`), keeping the `--stats`
/// block for the summary unless the user asked to see everything.
fn relay_stdout(stdout: impl std::io::Read, verbose: bool) -> Traffic {
    use std::io::Write;
    let (mut traffic, mut in_stats) = (Traffic::default(), false);
    let mut reader = BufReader::new(stdout);
    let mut piece = Vec::new();
    let out = std::io::stdout();
    loop {
        piece.clear();
        // Read up to whichever of '\r' or '\n' comes first.
        let got = loop {
            let buf = match reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break piece.len(),
            };
            if buf.is_empty() {
                break piece.len();
            }
            match buf.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => {
                    piece.extend_from_slice(&buf[..=i]);
                    reader.consume(i + 1);
                    break piece.len();
                }
                None => {
                    let n = buf.len();
                    piece.extend_from_slice(buf);
                    reader.consume(n);
                }
            }
        };
        if got == 0 {
            return traffic;
        }
        let text = String::from_utf8_lossy(&piece);
        let line = text.trim_end_matches(['\r', '\n']);
        let stats = traffic.take_stats_line(line, &mut in_stats);
        // Unless verbose, rsync's standard output is only its progress: the
        // blank line it puts before its statistics goes with them.
        if verbose || !(stats || line.is_empty()) {
            let mut out = out.lock();
            let _ = out.write_all(&piece).and_then(|()| out.flush());
        }
    }
}

/// How one rsync run ended.
struct Transferred {
    outcome: Outcome,
    /// rsync's exit status (`None`: killed by a signal).
    code: Option<i32>,
    /// Files rsync named as failed.
    failed: Vec<String>,
    /// The server's own failure, if it refused.
    server_said: Option<Failure>,
    /// What was sent.
    traffic: Traffic,
}
