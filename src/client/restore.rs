//! `byteback list`, `restore` and `snapshots`: finding and getting back
//! files from this machine's backups.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use jiff::Timestamp;

use crate::catalog::{self, Row};
use crate::client::backup;
use crate::client::config::ConfigDir;
use crate::client::local::{self, Local};
use crate::client::remote::server_error;
use crate::destination::Target;
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::exec::rsync::{RestoreFrom, RestoreTransfer};
use crate::exec::ssh::{HostKeyPolicy, Master, Ssh, explain_failure};
use crate::lifecycle::ClientBackups;
use crate::protocol::{Request, SnapshotLine};

pub use crate::client::query::Query;
use crate::client::query::{Printer, table_header, table_line};

/// Runs a request whose answer streams back line by line.
pub(crate) fn stream(
    ssh: &Ssh,
    request: &Request,
    mut each_line: impl FnMut(&str) -> Result<()>,
) -> Result<()> {
    let (status, stderr) = ssh.command(&request.render()).stream(&mut each_line)?;
    for warning in stderr
        .lines()
        .filter(|l| l.starts_with("byteback-server: warning: "))
    {
        crate::report::note(warning.trim_start_matches("byteback-server: "));
    }
    match status.code() {
        Some(0) => Ok(()),
        Some(255) | None => Err(explain_failure(&ssh.destination, &ssh.known_hosts, &stderr)),
        Some(code) => Err(server_error(code, &stderr)),
    }
}

/// Where the backups are: a server, or a store on this machine.
pub(crate) enum Backups {
    Remote(Ssh),
    /// Boxed: an opened store (its whole configuration) is large.
    Local(Box<Local>),
}

/// Asks for the rows of `query`, handing each to `each`.
fn query_rows(
    backups: &Backups,
    query: &Query,
    mut each: impl FnMut(Row) -> Result<()>,
) -> Result<u64> {
    let mut count = 0;
    let request = query.request()?;
    match backups {
        Backups::Remote(ssh) => stream(ssh, &request, |line| {
            let row = catalog::Row::parse(line)
                .map_err(|e| Error::Refused(format!("the server sent a bad listing line: {e}")))?;
            count += 1;
            each(row)
        })?,
        Backups::Local(local) => {
            let Request::List {
                all,
                snapshots,
                patterns,
                ..
            } = request
            else {
                unreachable!("Query::request makes a List")
            };
            ClientBackups::open(&local.store, &local.client)?.find(
                all,
                &snapshots,
                &patterns,
                &mut |row| {
                    count += 1;
                    each(row)
                },
            )?;
        }
    }
    Ok(count)
}

/// Where this machine's backups are, as configured or as `--destination` says.
pub(crate) fn connect(dir: &ConfigDir, destination: Option<&str>) -> Result<Backups> {
    let (mut config, target) = backup::resolve(dir, destination)?;
    match target {
        Target::Local(root) => Ok(Backups::Local(Box::new(local::open(
            &root,
            &backup::machine_name(&config),
            false,
        )?))),
        Target::Remote(d) => {
            config.destination = Some(Target::Remote(d));
            Ok(Backups::Remote(dir.ssh(&config, HostKeyPolicy::Strict)?))
        }
    }
}

/// `byteback list`.
pub fn list(dir: &ConfigDir, query: &Query, json: bool, destination: Option<&str>) -> Result<()> {
    let backups = connect(dir, destination)?;
    let mut printer = Printer::new(json);
    query_rows(&backups, query, |row| printer.row(&row))?;
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
    // The listing and every rsync share one SSH connection.
    let mut master = None;
    let backups = match connect(dir, destination)? {
        Backups::Remote(ssh) => {
            let m = Master::open(&ssh, backup::control_socket(dir))?;
            let shared = m.share(&ssh);
            master = Some(m);
            Backups::Remote(shared)
        }
        local => local,
    };
    let into =
        std::path::absolute(&args.into).map_err(|e| Error::io("cannot resolve", &args.into, e))?;
    let mut rows = Vec::new();
    println!("{}", table_header());
    query_rows(&backups, &args.query, |row| {
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
            fetch(&backups, &batch, &into, args.overwrite)?;
            batch.clear();
            size = 0;
        }
        size += remote.len() * 3 + 1;
        batch.push(remote);
    }
    fetch(&backups, &batch, &into, args.overwrite)?;
    drop(master);
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
fn fetch(backups: &Backups, paths: &[&[u8]], into: &Path, overwrite: bool) -> Result<()> {
    let from = match backups {
        Backups::Remote(ssh) => RestoreFrom::Remote {
            rsh: ssh.rsh_string(),
            remote: ssh.rsync_remote(),
        },
        Backups::Local(local) => RestoreFrom::Local {
            client_dir: local.store.client_dir(&local.client),
        },
    };
    let transfer = RestoreTransfer {
        from,
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
    let backups = connect(dir, destination)?;
    let now = Timestamp::now();
    let mut rows = Vec::new();
    let ssh = match &backups {
        Backups::Remote(ssh) => ssh,
        Backups::Local(local) => {
            rows = local
                .store
                .snapshots(&local.client)?
                .into_iter()
                .map(|s| (s.name, s.partial))
                .collect();
            return print_snapshots(&rows, now, json);
        }
    };
    stream(ssh, &Request::Snapshots, |line| {
        let parsed = SnapshotLine::parse(line)
            .and_then(|l| Some((crate::names::SnapshotName::parse(&l.name)?, l.partial)));
        rows.extend(parsed);
        Ok(())
    })?;
    print_snapshots(&rows, now, json)
}

fn print_snapshots(
    rows: &[(crate::names::SnapshotName, bool)],
    now: Timestamp,
    json: bool,
) -> Result<()> {
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

/// One snapshot as a JSON object (both programs' `snapshots --json`).
pub fn snapshot_json(
    client: Option<&str>,
    s: &crate::names::SnapshotName,
    partial: bool,
    now: Timestamp,
) -> serde_json::Value {
    let mut value = serde_json::json!({
        "name": s.as_str(),
        "time": s.time().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "age_seconds": now.duration_since(s.time()).as_secs(),
        "partial": partial,
    });
    if let Some(client) = client {
        value["client"] = client.into();
    }
    value
}
