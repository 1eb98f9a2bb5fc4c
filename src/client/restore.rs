//! `byteback list`, `restore` and `snapshots`: finding and getting back
//! files from this machine's backups.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use jiff::Timestamp;

use crate::catalog::{self, Row};
use crate::client::backups::{self, Backups, Find, Opening};
use crate::client::config::ConfigDir;
use crate::client::settings::{Flags, Settings};
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::exec::rsync::RestoreTransfer;
use crate::names::SnapshotName;

pub use crate::listing::Query;
use crate::listing::{Printer, snapshot_json, table_header, table_line};

/// What `query` asks the backups for.
fn find(query: &Query) -> Result<Find> {
    Ok(Find {
        all: query.all,
        nanoseconds: false,
        snapshots: query.snapshot_glob(),
        patterns: query.absolute_patterns()?,
    })
}

/// This machine's backups, as configured or as `--destination` says.
pub(crate) fn connect(dir: &ConfigDir, destination: Option<&str>) -> Result<Box<dyn Backups>> {
    let flags = Flags {
        destination,
        ..Flags::default()
    };
    let settings = Settings::resolve(dir, &flags)?;
    backups::open(dir, &settings, Opening::READ)
}

/// `byteback list`.
pub fn list(dir: &ConfigDir, query: &Query, json: bool, destination: Option<&str>) -> Result<()> {
    let backups = connect(dir, destination)?;
    let mut printer = Printer::new(json);
    backups.find(&find(query)?, &mut |row| printer.row(&row))?;
    let count = printer.finish();
    if count == 0 {
        return Err(query.no_match());
    }
    Ok(())
}

/// What to restore, and how.
#[derive(Debug, Clone)]
pub struct RestoreArgs {
    pub query: Query,
    /// Where to restore into (as `DIR/<snapshot>/<original path>`).
    pub into: PathBuf,
    pub dry_run: bool,
    pub overwrite: bool,
}

/// The longest restore command line sent in one go (the server takes 4 KiB).
const MAX_BATCH: usize = 3000;

/// `byteback restore`.
pub fn restore(dir: &ConfigDir, args: &RestoreArgs, destination: Option<&str>) -> Result<()> {
    let backups = connect(dir, destination)?;
    // The listing and every rsync share one connection.
    let backups = backups.session()?;
    let into =
        std::path::absolute(&args.into).map_err(|e| Error::io("cannot resolve", &args.into, e))?;
    let mut rows = Vec::new();
    println!("{}", table_header());
    backups.find(&find(&args.query)?, &mut |row| {
        println!("{}", table_line(&row));
        rows.push(row);
        Ok(())
    })?;
    if rows.is_empty() {
        return Err(args.query.no_match());
    }
    let targets: Vec<(PathBuf, Vec<u8>)> = rows
        .iter()
        .map(|r| remote_and_target(&into, r))
        .collect::<Result<_>>()?;
    if !args.overwrite {
        let existing: Vec<&PathBuf> = targets
            .iter()
            .map(|(t, _)| t)
            .filter(|t| std::fs::symlink_metadata(t).is_ok_and(|m| !m.is_dir()))
            .collect();
        if let Some(first) = existing.first() {
            return Err(Error::Usage(format!(
                "restoring would overwrite {} existing file(s) in {}, e.g. {}: restore into another --into DIR, or pass --overwrite",
                existing.len(),
                into.display(),
                first.display()
            )));
        }
    }
    if args.dry_run {
        println!(
            "Would restore {} item(s) into {}.",
            rows.len(),
            into.display()
        );
        return Ok(());
    }
    std::fs::create_dir_all(&into).map_err(|e| Error::io("cannot create", &into, e))?;
    let mut batch: Vec<&[u8]> = Vec::new();
    let mut size = 0;
    for (_, remote) in &targets {
        if size + remote.len() * 3 > MAX_BATCH && !batch.is_empty() {
            fetch(&*backups, &batch, &into, args.overwrite)?;
            batch.clear();
            size = 0;
        }
        size += remote.len() * 3 + 1;
        batch.push(remote);
    }
    fetch(&*backups, &batch, &into, args.overwrite)?;
    drop(backups);
    println!("Restored {} item(s) into {}.", rows.len(), into.display());
    Ok(())
}

/// Where a row lands (`DIR/<snapshot>/<path>`) and its path on the server
/// (`<snapshot>/<path>`), checked to stay inside DIR.
fn remote_and_target(into: &Path, row: &Row) -> Result<(PathBuf, Vec<u8>)> {
    let path = &row.found.path;
    let relative = path.strip_prefix(b"/").unwrap_or(path);
    if !path.starts_with(b"/")
        || relative
            .split(|&b| b == b'/')
            .any(|c| c == b".." || c == b".")
        || row.snapshot.contains('/')
    {
        return Err(Error::Refused(format!(
            "the server sent an unsafe path {}",
            catalog::display_path(path)
        )));
    }
    let mut remote = row.snapshot.as_bytes().to_vec();
    if !relative.is_empty() {
        remote.push(b'/');
        remote.extend_from_slice(relative);
    }
    let target = into
        .join(&row.snapshot)
        .join(std::ffi::OsStr::from_bytes(relative));
    Ok((target, remote))
}

/// One rsync run fetching `paths` (`<snapshot>/<path>`) into `into`.
fn fetch(backups: &dyn Backups, paths: &[&[u8]], into: &Path, overwrite: bool) -> Result<()> {
    let transfer = RestoreTransfer {
        from: backups.restore_from(),
        paths: paths.iter().map(|p| p.to_vec()).collect(),
        into: into.to_owned(),
        overwrite,
    };
    let status = Cmd::new("rsync")
        .args(transfer.args())
        .configure(|c| {
            c.stdin(Stdio::null());
        })
        .spawn()?
        .wait()
        .map_err(|e| Error::Command(format!("rsync: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Command(format!(
            "restore failed: {}; see rsync's messages above",
            crate::exec::rsync::describe_exit(status.code())
        )))
    }
}

/// `byteback snapshots`.
pub fn snapshots(dir: &ConfigDir, json: bool, destination: Option<&str>) -> Result<()> {
    let rows: Vec<(SnapshotName, bool)> = connect(dir, destination)?
        .snapshots()?
        .into_iter()
        .map(|s| (s.name, s.partial))
        .collect();
    print_snapshots(&rows, Timestamp::now(), json)
}

/// `byteback diff`.
pub fn diff(
    dir: &ConfigDir,
    from: Option<&str>,
    to: Option<&str>,
    json: bool,
    destination: Option<&str>,
) -> Result<()> {
    let name = |n: Option<&str>| {
        n.map(|n| {
            SnapshotName::parse(n).ok_or_else(|| {
                Error::Usage(format!(
                    "{n:?} is not a snapshot name: `byteback snapshots` lists them"
                ))
            })
        })
        .transpose()
    };
    let (from, to) = (name(from)?, name(to)?);
    let mut out = std::io::stdout().lock();
    connect(dir, destination)?.diff(from.as_ref(), to.as_ref(), json, &mut |line| {
        use std::io::Write;
        writeln!(out, "{line}").map_err(|e| Error::io("cannot write", Path::new("stdout"), e))
    })
}

fn print_snapshots(rows: &[(SnapshotName, bool)], now: Timestamp, json: bool) -> Result<()> {
    if json {
        // A stream: one object per line, oldest first.
        for (s, partial) in rows {
            println!("{}", snapshot_json(None, s, *partial, now));
        }
        return Ok(());
    }
    println!("{:<24}  {:<20}  {:>10}", "snapshot", "time", "age");
    for (s, partial) in rows {
        let age = now.duration_since(s.time());
        let flag = if *partial { "  partial" } else { "" };
        println!(
            "{:<24}  {:<20}  {:>10}{flag}",
            s.as_str(),
            s.time().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            human_age(age)
        );
    }
    Ok(())
}

/// `3d 4h`, `5h 2m`, `40s`.
fn human_age(d: jiff::SignedDuration) -> String {
    let s = d.as_secs().max(0);
    let (days, hours, minutes) = (s / 86400, s % 86400 / 3600, s % 3600 / 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m")
    } else {
        format!("{s}s")
    }
}
