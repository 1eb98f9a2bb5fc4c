//! `byteback backup`: push this machine's files, then ask for a snapshot.
//!
//! One backup at a time on this machine (flock). The pre-backup hooks run
//! once, then the attempts ([`attempts`]) against the destination's
//! [`Backups`] — a server or a store on this machine, through the same
//! steps — then the post-backup hooks, and a summary ([`summary`]). What
//! is sent is planned first ([`plan`]); whether the change index may be
//! used is [`index_policy`]'s decision.

pub mod attempts;
pub mod index_policy;
pub mod plan;
pub mod summary;

use std::path::PathBuf;
use std::time::Duration;

use crate::client::backups::{self, Backups, Opening};
use crate::client::config::ConfigDir;
use crate::client::follow::Following;
use crate::client::hooks;
use crate::client::settings::{Flags, Settings};
use crate::client::state;
use crate::error::{Error, Result};
use crate::report;
use crate::sys::lock::Lock;

use attempts::{Backup, Progress, Sending};
use index_policy::IndexSettings;
use plan::Plan;
use summary::Summary;

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

/// Runs a backup; prints the snapshot's name on success.
pub fn run(dir: &ConfigDir, args: &BackupArgs) -> Result<()> {
    let flags = Flags {
        destination: args.destination.as_deref(),
        sources: &args.sources,
        excludes: &args.excludes,
    };
    let mut settings = Settings::resolve(dir, &flags)?;
    let plan = plan::plan(&settings, &dir.excludes_file())?;
    if args.dry_run {
        return print_plan(dir, &settings, &plan);
    }
    // One backup at a time on this machine (the config directory may not
    // exist for a one-off local backup; the store's own locks cover that).
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
    let destination = settings.destination.to_string();
    let mut recorder = state::Recorder::start(dir, &destination);
    let started = jiff::Timestamp::now();
    let mut hooks = hooks::Context {
        destination: destination.clone(),
        client: settings.name.clone(),
        config_dir: dir.dir.clone(),
        timeout: settings.hook_timeout.to_std(),
    };
    let mut progress = Progress::default();
    // The server may answer that this machine's backups moved to another
    // one (`move-client`): followed once, recorded in the config, and the
    // backup goes on there.
    let mut following = Following::default();
    let result = hooks.before(dir).and_then(|()| {
        loop {
            let backups = backups::open(dir, &settings, Opening::BACKUP)?;
            let attempts = backup(dir, &settings, &plan, args, &*backups);
            match attempts.run(&mut progress, recorder.as_mut()) {
                Err(e @ Error::Moved { .. }) => {
                    let from_config = args.destination.is_none();
                    settings.destination =
                        following.follow(dir, &settings.destination, from_config, e)?;
                    if let Some(r) = recorder.as_mut() {
                        r.destination(&settings.destination.to_string());
                    }
                }
                result => return result,
            }
        }
    });
    // Where it went, if a redirect was followed: the post-backup hooks and
    // the summary say so.
    let destination = settings.destination.to_string();
    hooks.destination = destination.clone();
    if let Some(r) = recorder.as_mut() {
        r.finish(result.as_ref().map(|(s, _)| s.as_str()), progress.traffic);
    }
    let seconds = jiff::Timestamp::now().duration_since(started).as_secs_f64();
    let ending = hooks::Ending::of(result.as_ref().map(|(s, _)| s.as_str()), progress.made);
    let hooks_ok = hooks.after(dir, &ending);
    // Under -q, a failed post-backup hook shows everything held back too.
    match (&result, hooks_ok) {
        (Ok(_), true) => report::discard(),
        _ => report::release(),
    }
    let summary = Summary {
        result: &result,
        destination,
        local_store: settings.destination.local_store(),
        traffic: progress.traffic,
        pass: &progress.pass,
        started,
        seconds,
    };
    if args.json {
        println!("{}", summary.json());
    }
    if let Ok((snapshot, attempts)) = &result {
        if !args.quiet && !args.json {
            println!("{}", summary.line(snapshot, *attempts));
        }
    }
    result.map(drop)
}

/// `backup --dry-run`: what would be backed up, and stop.
fn print_plan(dir: &ConfigDir, settings: &Settings, plan: &Plan) -> Result<()> {
    println!("destination {}", settings.destination);
    for s in &plan.sources {
        println!("source  {}", s.display());
    }
    for e in &plan.excludes {
        println!("exclude {}  ({})", e.pattern, e.why);
    }
    for (phase, hook) in hooks::planned(dir)? {
        println!("{} hook {}", phase.name(), hook.display());
    }
    Ok(())
}

/// The backup of `plan` into `backups`, as the settings and flags say.
fn backup<'a>(
    dir: &ConfigDir,
    settings: &Settings,
    plan: &Plan,
    args: &BackupArgs,
    backups: &'a dyn Backups,
) -> Backup<'a> {
    // rsync's own progress line, only where a person watches a terminal.
    let progress = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && !args.verbose
        && !args.quiet
        && !args.json;
    // A one-off backup (no configuration directory) keeps no index.
    let index_file = dir.dir.is_dir().then(|| dir.index_file());
    Backup {
        backups,
        sending: Sending {
            sources: plan.sources.clone(),
            excludes: plan.excludes.iter().map(|e| e.pattern.clone()).collect(),
            io_timeout_secs: settings.io_timeout.as_secs(),
            verbose: args.verbose,
            progress,
            throttle: settings.throttle(),
        },
        index: IndexSettings::new(index_file, settings, plan, args.full),
        attempts: settings.retry_attempts,
        pause: settings.retry_pause,
        wait_max: settings.retry_after_max,
    }
}
