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
use crate::client::index;
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
use crate::lifecycle::ClientBackups;
use crate::protocol::Failure;
use crate::report;
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
    /// Make a full rsync pass, whatever the change index says.
    pub full: bool,
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
    /// The pattern leaves out everything below this directory and nothing
    /// else (`exclude_contents_of`): the change index's walk can apply it
    /// exactly. `None`: a pattern of the person's, which only rsync reads.
    contents_of: Option<PathBuf>,
}

impl Exclusion {
    fn automatic(pattern: String, why: String) -> Self {
        Exclusion {
            pattern,
            why,
            requested: false,
            contents_of: None,
        }
    }

    /// Everything below `dir`, and nothing else.
    fn contents_of(dir: &std::path::Path, why: String) -> Self {
        Exclusion {
            contents_of: Some(dir.to_path_buf()),
            ..Exclusion::automatic(exclude_contents_of(dir), why)
        }
    }

    fn requested(pattern: String, why: &str) -> Self {
        Exclusion {
            pattern,
            why: why.to_owned(),
            requested: true,
            contents_of: None,
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
        excludes.push(Exclusion::contents_of(&e.mount_point, e.reason));
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
            plan.excludes.push(Exclusion::contents_of(
                store,
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
    // How the last attempt transferred (local backups: always in full).
    let mut pass = Pass::default();
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
                args.full,
                show,
                recorder.as_mut(),
                &mut traffic,
                &mut attempts,
                &mut pass,
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
            "pass": if pass.incremental { "incremental" } else { "full" },
            "pass_reason": pass.reason,
            "paths": pass.incremental.then_some(pass.paths),
        });
        println!("{summary}");
    }
    let (snapshot, attempts) = result?;
    if !args.quiet && !args.json {
        let place = match &target {
            Target::Local(root) => format!(" in {}", root.display()),
            Target::Remote(_) => String::new(),
        };
        let how = if pass.incremental {
            format!("incremental: {} path(s)", pass.paths)
        } else {
            "full pass".to_owned()
        };
        println!(
            "Backup complete: snapshot {snapshot}{place} ({} file(s), {} changed, {} sent, {seconds:.1} s, {attempts} attempt(s), {how})",
            traffic.files,
            human_bytes(traffic.bytes),
            human_bytes(traffic.sent),
        );
    }
    Ok(())
}

/// A backup to a server, retried as configured; the snapshot's name.
// What it reports back (traffic, attempts, pass) goes to the summary.
#[allow(clippy::too_many_arguments)]
fn remote_backup(
    dir: &ConfigDir,
    config: &ClientConfig,
    plan: &Plan,
    full: bool,
    show: Show,
    mut recorder: Option<&mut state::Recorder<'_>>,
    traffic: &mut Traffic,
    made: &mut u32,
    pass: &mut Pass,
) -> Result<(String, u32)> {
    let ssh = dir.ssh(config, HostKeyPolicy::Strict)?;
    let settings = IndexSettings::new(dir, config, plan, full);
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
        files_from: false,
        server_deletes_gone: false,
    };
    let attempts = config.retry_attempts.max(1);
    let mut attempt = 1;
    let mut unanswered = None;
    let mut failed_before = None;
    loop {
        *made = attempt;
        if let Some(r) = recorder.as_deref_mut() {
            r.attempt(attempt);
        }
        let last = attempt == attempts;
        match try_once(
            dir,
            &ssh,
            &transfer,
            &settings,
            last,
            traffic,
            &mut unanswered,
            &mut failed_before,
            pass,
        ) {
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
        files_from: false,
        server_deletes_gone: false,
    };
    let t = transfer_files(&transfer, None)?;
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

/// One attempt: ping, walk, transfer (in full, or what the change index
/// found), snapshot, commit the index — over one shared connection.
// What it reports back (traffic, the unanswered snapshot, the pass) is
// each its own.
#[allow(clippy::too_many_arguments)]
fn try_once(
    dir: &ConfigDir,
    plain: &Ssh,
    transfer: &BackupTransfer,
    settings: &IndexSettings,
    last: bool,
    traffic: &mut Traffic,
    unanswered: &mut Option<UnansweredSnapshot>,
    failed_before: &mut Option<Vec<String>>,
    pass: &mut Pass,
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
    let ping = remote::ping(ssh)?;
    // The last attempt asked for a snapshot and lost the connection before
    // the answer: if the server took it, that is this backup's snapshot —
    // asking again would take a second one (or be refused as too soon).
    if let Some(asked) = unanswered.take() {
        if ping.newest.is_some() && ping.newest != asked.newest_before {
            let snapshot = ping.newest.unwrap_or_default();
            report::note(format_args!(
                "the server took snapshot {snapshot} before the connection dropped"
            ));
            // Its walk is gone with that attempt: the index is not
            // committed, and the next backup makes a full pass.
            return Ok(snapshot);
        }
    }
    // The walk comes first: whatever changes from now on is newer than
    // what the index records, and is sent again next time.
    let (walked, mut old) = settings.walk(&transfer.sources);
    let mut incremental = None;
    *pass = Pass::default();
    match settings.why_full(walked.as_deref(), old.as_ref(), ping.newest.as_deref()) {
        Some(why) => pass.reason = Some(why),
        None => {
            let changes = index::compare(
                old.iter().flat_map(|o| o.entries()),
                walked.as_deref().unwrap_or_default(),
            );
            // Only the old header is needed from now on.
            if let Some(old) = old.as_mut() {
                old.release();
            }
            let snapshot = ping.newest.clone().unwrap_or_default();
            let server_deletes = ping.protocol >= crate::protocol::SERVER_DELETES_GONE;
            match ready_incremental(ssh, &snapshot, &changes, server_deletes) {
                Ok(()) => incremental = Some(changes),
                // Refused as an incremental backup (a stale snapshot, a
                // server without the request): a full pass. Refused as a
                // backup (space, growth, locks): as a full pass would be.
                Err(Error::FullPassNeeded(why)) => {
                    pass.reason = Some(format!("the server refused an incremental backup: {why}"))
                }
                // An older server does not type its refusals (or does not
                // know the request): any refusal of it is one of the mode.
                Err(Error::Refused(why)) if ping.protocol < crate::protocol::TYPED_FULL_PASS => {
                    pass.reason = Some(format!("the server refused an incremental backup: {why}"))
                }
                Err(e) => return Err(e),
            }
        }
    }
    let transferred = match &incremental {
        Some(changes) => {
            pass.incremental = true;
            pass.paths = changes.send.len();
            if transfer.verbose {
                report::note(format_args!(
                    "incremental backup: {} path(s) changed since snapshot {} ({} vanished)",
                    changes.send.len(),
                    ping.newest.as_deref().unwrap_or("-"),
                    changes.vanished
                ));
            }
            // A protocol 3 server deleted what vanished when it readied
            // `current`; rsync is given only what exists.
            let server_deletes = ping.protocol >= crate::protocol::SERVER_DELETES_GONE;
            let gone: std::collections::HashSet<&[u8]> = if server_deletes {
                changes.gone.iter().map(Vec::as_slice).collect()
            } else {
                Default::default()
            };
            let listed: Vec<&Vec<u8>> = changes
                .send
                .iter()
                .filter(|p| !gone.contains(p.as_slice()))
                .collect();
            if listed.is_empty() {
                // Nothing (left) to send: `current` is ready as it is.
                Transferred::nothing()
            } else {
                let mut list = Vec::new();
                for p in listed {
                    list.extend_from_slice(index::files_from_entry(p));
                    list.push(0);
                }
                let by_list = BackupTransfer {
                    sources: vec![PathBuf::from("/")],
                    files_from: true,
                    server_deletes_gone: server_deletes,
                    ..transfer.clone()
                };
                transfer_files(&by_list, Some(list))?
            }
        }
        None => {
            if let Some(why) = &pass.reason {
                report::note(format_args!("full pass: {why}"));
            }
            transfer_files(transfer, None)?
        }
    };
    let Transferred {
        outcome,
        code,
        failed,
        server_said,
        traffic: sent,
    } = transferred;
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
                    newest_before: ping.newest.clone(),
                });
            }
            let snapshot = result?;
            settings.commit(
                walked,
                old.as_ref(),
                incremental.is_some(),
                ping.newest.as_deref(),
                &snapshot,
            );
            Ok(snapshot)
        }
        // The same files failed as on the attempt before: not a passing
        // problem (a name the server's filesystem refuses, say), so trying
        // again would only fail again; the snapshot is taken now.
        Outcome::SomeFilesFailed
            if last || (!failed.is_empty() && same(failed_before, &failed)) =>
        {
            // A partial snapshot: the index (which would say the failed
            // files were sent) is not committed; the next backup is full.
            let note = if failed.is_empty() {
                "(rsync named no files)\n".to_owned()
            } else {
                failed.join("\n") + "\n"
            };
            let snapshot = remote::complete(ssh, Some(&note))?;
            Err(partial_error(&snapshot, &failed))
        }
        // Exit 23 may be a transient I/O problem: try again first.
        Outcome::SomeFilesFailed => {
            let mut sorted = failed;
            sorted.sort();
            *failed_before = Some(sorted);
            Err(Error::Connection(describe_exit(code)))
        }
        Outcome::Retryable => Err(Error::Connection(describe_exit(code))),
        Outcome::Fatal => Err(Error::Command(format!(
            "{}; see rsync's messages above",
            describe_exit(code)
        ))),
    }
}

/// Whether `failed` names the same files as the attempt before (sorted).
fn same(before: &Option<Vec<String>>, failed: &[String]) -> bool {
    let mut sorted = failed.to_vec();
    sorted.sort();
    before.as_deref() == Some(sorted.as_slice())
}

/// A snapshot request whose answer was lost with the connection.
#[derive(Debug)]
struct UnansweredSnapshot {
    /// The client's newest snapshot before the request.
    newest_before: Option<String>,
}

/// How an attempt transferred, for the summary.
#[derive(Debug, Clone, Default)]
struct Pass {
    /// Only what the change index found (else a full rsync pass).
    incremental: bool,
    /// How many paths rsync was given (incremental).
    paths: usize,
    /// Why the pass was full, when an index could have been used.
    reason: Option<String>,
}

/// Asks the server to ready `current` for an incremental transfer from
/// `snapshot`, naming the paths it must not take from the snapshot and,
/// where it deletes them itself (`server_deletes`, protocol 3), which of
/// them vanished.
fn ready_incremental(
    ssh: &Ssh,
    snapshot: &str,
    changes: &index::Changes,
    server_deletes: bool,
) -> Result<()> {
    let relative = |paths: &[Vec<u8>]| -> Vec<Vec<u8>> {
        paths
            .iter()
            .filter(|p| p.as_slice() != b"/")
            .map(|p| p.strip_prefix(b"/").unwrap_or(p).to_vec())
            .collect()
    };
    let list = crate::protocol::ReplaceList {
        replace: relative(&changes.replace),
        gone: if server_deletes {
            relative(&changes.gone)
        } else {
            Vec::new()
        },
    };
    let text = crate::protocol::render_replace_list(&list);
    if text.len() > crate::protocol::MAX_REPLACE_LIST {
        return Err(Error::FullPassNeeded(format!(
            "{} changed paths are too many to list: make a full pass",
            list.replace.len()
        )));
    }
    remote::incremental(ssh, snapshot, &text)
}

/// What decides whether a backup may use the change index.
struct IndexSettings {
    /// The index file.
    file: PathBuf,
    /// The sources, exclusions and destination, as the index records them.
    fingerprint: String,
    /// Directories whose contents the plan leaves out.
    skip: Vec<PathBuf>,
    /// Why this plan can never use the index.
    never: Option<String>,
    /// `byteback backup --full`.
    full: bool,
    /// `full_scan_every`.
    every: u32,
}

impl IndexSettings {
    fn new(dir: &ConfigDir, config: &ClientConfig, plan: &Plan, full: bool) -> Self {
        let destination = config
            .destination
            .as_ref()
            .map(|d| d.to_string())
            .unwrap_or_default();
        let mut fingerprint = format!("index 1\ndestination {destination}\n");
        for s in &plan.sources {
            let encoded = crate::protocol::encode_arg(s.as_os_str().as_encoded_bytes());
            fingerprint.push_str(&format!("source {encoded}\n"));
        }
        for e in &plan.excludes {
            let encoded = crate::protocol::encode_arg(e.pattern.as_bytes());
            fingerprint.push_str(&format!("exclude {encoded}\n"));
        }
        let never = if config.full_scan_every <= 1 {
            Some("full_scan_every is 1".to_owned())
        } else if let Some(e) = plan.excludes.iter().find(|e| e.contents_of.is_none()) {
            // rsync's pattern language is not reimplemented here: a walk
            // that left out something else than rsync would miss changes.
            Some(format!(
                "the exclude pattern {:?} ({}) is one the change index cannot apply exactly; every backup is a full rsync pass",
                e.pattern, e.why
            ))
        } else {
            plan.sources.iter().find(|s| !plain_absolute(s)).map(|s| {
                format!(
                    "the source {} is not a plain absolute path (no trailing /, . or ..)",
                    s.display()
                )
            })
        };
        IndexSettings {
            file: dir.index_file(),
            fingerprint,
            skip: plan
                .excludes
                .iter()
                .filter_map(|e| e.contents_of.clone())
                .collect(),
            never,
            full,
            every: config.full_scan_every,
        }
    }

    /// Walks the sources (unless the index can never be used) and loads
    /// the index; a walk that fails leaves no walk.
    fn walk(&self, sources: &[PathBuf]) -> (Option<Vec<index::Entry>>, Option<index::Stored>) {
        if self.never.is_some() {
            return (None, None);
        }
        match index::walk(sources, &self.skip, index::now_ns()) {
            Ok(entries) => (Some(entries), index::Stored::load(&self.file)),
            Err(index::WalkError(why)) => {
                report::note(format_args!("the change index is not used: {why}"));
                (None, None)
            }
        }
    }

    /// Why this attempt makes a full pass; `None`: the index may be used.
    fn why_full(
        &self,
        walked: Option<&[index::Entry]>,
        old: Option<&index::Stored>,
        newest: Option<&str>,
    ) -> Option<String> {
        if let Some(never) = &self.never {
            return Some(never.clone());
        }
        if walked.is_none() {
            return Some("the walk of the sources failed".into());
        }
        if self.full {
            return Some("--full".into());
        }
        let Some(old) = old else {
            return Some("no change index yet (or it was unreadable)".into());
        };
        if old.header.fingerprint != self.fingerprint {
            return Some("the sources, exclusions or destination changed".into());
        }
        if newest != Some(old.header.snapshot.as_str()) {
            return Some(format!(
                "the server's newest snapshot is {}, not {}, which the change index describes",
                newest.unwrap_or("none"),
                old.header.snapshot
            ));
        }
        if old.header.incrementals + 1 >= self.every {
            return Some(format!(
                "one backup in {} is a full pass (full_scan_every)",
                self.every
            ));
        }
        None
    }

    /// After the snapshot `snapshot` was taken: the walk becomes the index.
    fn commit(
        &self,
        walked: Option<Vec<index::Entry>>,
        old: Option<&index::Stored>,
        incremental: bool,
        newest_before: Option<&str>,
        snapshot: &str,
    ) {
        let Some(mut entries) = walked else {
            return;
        };
        let incrementals = match (incremental, old) {
            (true, Some(old)) => old.header.incrementals + 1,
            _ => 0,
        };
        if let (false, Some(old)) = (incremental, old) {
            // rsync's quick check (size, mtime) may have missed what the
            // old index saw change (an mtime put back): the next
            // incremental sends it again.
            if newest_before == Some(old.header.snapshot.as_str()) {
                index::mark_changed_unsure(old.entries(), &mut entries);
            }
        }
        let new = index::Index {
            header: index::Header {
                snapshot: snapshot.to_owned(),
                fingerprint: self.fingerprint.clone(),
                incrementals,
                entries: entries.len() as u64,
            },
            entries,
        };
        if let Err(e) = new.save(&self.file) {
            report::warn(format_args!(
                "cannot write the change index (the next backup is a full pass): {e}"
            ));
            let _ = std::fs::remove_file(&self.file);
        }
    }
}

/// An absolute path rsync's `--relative` reads as written: no trailing
/// `/`, no empty, `.` or `..` components.
fn plain_absolute(path: &std::path::Path) -> bool {
    let bytes = path.as_os_str().as_encoded_bytes();
    bytes == b"/"
        || (bytes.starts_with(b"/")
            && bytes[1..]
                .split(|&b| b == b'/')
                .all(|c| !c.is_empty() && c != b"." && c != b".."))
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
/// `input`: what rsync reads on its standard input (the `--files-from` list).
fn transfer_files(transfer: &BackupTransfer, input: Option<Vec<u8>>) -> Result<Transferred> {
    let piped = input.is_some();
    let mut child = transfer
        .command()
        .configure(|c| {
            c.stdin(if piped { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        })
        .spawn()?;
    if let (Some(input), Some(mut pipe)) = (input, child.stdin.take()) {
        // rsync reads the list while it builds its file list; an rsync that
        // ends early closes the pipe, and its exit status says why.
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = pipe.write_all(&input);
        });
    }
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

impl Transferred {
    /// No rsync run: nothing to send.
    fn nothing() -> Self {
        Transferred {
            outcome: Outcome::Ok,
            code: Some(0),
            failed: Vec::new(),
            server_said: None,
            traffic: Traffic::default(),
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
