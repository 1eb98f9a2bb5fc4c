//! The commands that read and write a store's history from the server's
//! side: `snapshot`, `prune` (with `--dry-run`, `--force`, `--list`),
//! `list` and `snapshots`. Each goes through [`crate::lifecycle`], as a
//! client's backup does.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use jiff::Timestamp;

use crate::error::{Error, Result};
use crate::lifecycle::{self, ClientBackups};
use crate::names::ClientName;
use crate::prune;
use crate::store::Store;

use super::run_as_owner;

/// `byteback-server snapshot`: a snapshot of a client's `current` now (or
/// named for `at`), with all that follows every snapshot.
pub fn snapshot(root: &Path, client: &str, at: Option<Timestamp>) -> Result<u8> {
    let store = lifecycle::open_store(root)?;
    run_as_owner(&store)?;
    let client = ClientName::new(client)?;
    let name = ClientBackups::open(&store, &client)?.snapshot_by_hand(at)?;
    println!("{name}");
    Ok(0)
}

/// `byteback-server prune`: a dry run opens the store with a keeper that
/// writes nothing, whatever the prune asks of it.
pub fn prune(root: &Path, now: Timestamp, mode: prune::Mode) -> Result<u8> {
    let store = match mode {
        prune::Mode::DryRun => lifecycle::open_store_dry_run(root)?,
        prune::Mode::IfNeeded | prune::Mode::Force => {
            let store = lifecycle::open_store(root)?;
            run_as_owner(&store)?;
            store
        }
    };
    prune_run(&store, now, mode)
}

/// `byteback-server prune --list`: every snapshot in the order given.
pub fn prune_list(root: &Path, now: Timestamp, order: prune::OrderKind, json: bool) -> Result<u8> {
    let store = lifecycle::open_store(root)?;
    let placed = prune::ordered(&prune::all_snapshots(&store)?, now, order);
    if json {
        for entry in prune::json_entries(&placed) {
            let text = serde_json::to_string(&entry)
                .map_err(|e| Error::Command(format!("cannot write JSON: {e}")))?;
            println!("{text}");
        }
    } else {
        for line in prune::list_lines(&placed) {
            println!("{line}");
        }
    }
    Ok(0)
}

fn prune_run(store: &Store, now: Timestamp, mode: prune::Mode) -> Result<u8> {
    let c = &store.config;
    let outcome = crate::lifecycle::prune(store, now, mode)?;
    let free = |s: &Option<crate::sys::fs::Space>| {
        s.map_or("?".to_owned(), |s| format!("{:.1}%", s.free_percent()))
    };
    match mode {
        prune::Mode::DryRun if outcome.deleted.is_empty() => {
            println!(
                "Nothing to delete: {} free (pruning starts below {}%).",
                free(&outcome.before),
                c.min_free_percent
            );
        }
        prune::Mode::DryRun => {
            println!(
                "{} free, below {}%: would delete, in this order, until {}% is free:",
                free(&outcome.before),
                c.min_free_percent,
                c.target_free_percent
            );
            for d in &outcome.deleted {
                println!("  {d}");
            }
        }
        _ if outcome.deleted.is_empty() => {
            println!(
                "Nothing to delete: {} free (pruning starts below {}%).",
                free(&outcome.before),
                c.min_free_percent
            );
        }
        _ => {
            for d in &outcome.deleted {
                println!("deleted {d}");
            }
            println!(
                "Free space: {} before, {} now.",
                free(&outcome.before),
                free(&outcome.after)
            );
        }
    }
    Ok(0)
}

/// `byteback-server list`: what a client's `byteback list` would show.
pub fn list(root: &Path, client: &str, query: &crate::listing::Query, json: bool) -> Result<u8> {
    let store = lifecycle::open_store(root)?;
    let client = ClientName::new(client)?;
    if !store.has_client(&client) {
        return Err(crate::store::no_space(&client));
    }
    let patterns: Vec<Vec<u8>> = query
        .patterns
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    let snapshots = query.snapshot.clone().unwrap_or_else(|| "*".into());
    let mut printer = crate::listing::Printer::new(json);
    let backups = ClientBackups::open(&store, &client)?;
    backups.find(query.all, snapshots.as_bytes(), &patterns, &mut |row| {
        printer.row(&row)
    })?;
    if printer.finish() == 0 {
        return Err(query.no_match());
    }
    Ok(0)
}

/// `byteback-server diff`: what changed between two snapshots of a client.
pub fn diff(
    root: &Path,
    client: &str,
    from: Option<&str>,
    to: Option<&str>,
    json: bool,
) -> Result<u8> {
    let store = lifecycle::open_store(root)?;
    let client = ClientName::new(client)?;
    let diff = ClientBackups::open(&store, &client)?.diff(from, to)?;
    for line in diff.render(json) {
        println!("{line}");
    }
    Ok(0)
}

/// `byteback-server snapshots`: every snapshot of one client or all.
pub fn snapshots(root: &Path, client: Option<&str>, json: bool) -> Result<u8> {
    let store = lifecycle::open_store(root)?;
    let clients = match client {
        Some(c) => vec![ClientName::new(c)?],
        None => store.clients()?,
    };
    let now = Timestamp::now();
    for client in clients {
        for s in store.snapshots(&client)? {
            if json {
                let value =
                    crate::listing::snapshot_json(Some(client.as_str()), &s.name, s.partial, now);
                println!("{value}");
                continue;
            }
            let flag = if s.partial { " partial" } else { "" };
            println!("{client} {}{flag}", s.name);
        }
    }
    Ok(0)
}
