//! `byteback-server report --output DIR`: a static HTML report of one
//! store, for a person to look at — an overview of every client and the
//! store (`index.html`) and a page per client (its snapshots on a time
//! axis, its space over time, what pruning would take next, its last
//! attempt). No server process and no framework: plain files, their style
//! inline, a few lines of script only to sort the overview's columns, so
//! they open from `file://` and from any web server, and a timer can
//! refresh them (each file is replaced atomically: a reader never sees a
//! half-written page).
//!
//! Gathering reads the store ([`super::status::gather`], the snapshots,
//! the prune plan, [`super::space_history`]); rendering ([`pages`],
//! [`svg`]) is pure over a [`Report`], and escapes everything through
//! [`html::escape`].

pub mod html;
pub mod pages;
pub mod svg;

use std::path::{Path, PathBuf};

use jiff::Timestamp;

use crate::error::{Error, Result};
use crate::prune;
use crate::server::space_history::{self, Sample};
use crate::server::status::{self, ClientStatus, Status, StoreStatus};
use crate::store::Store;
use crate::sys::fs::write_atomic;
use svg::Mark;

/// At most this many of a client's next deletions are listed.
const NEXT_PRUNED_SHOWN: usize = 10;

/// Everything the pages show.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// When it was gathered.
    pub now: Timestamp,
    /// The server's host name, for the titles.
    pub host: String,
    /// The store's directory.
    pub root: String,
    /// The store as status shows it.
    pub store: StoreStatus,
    /// Every client, in the store's order (by name).
    pub clients: Vec<ClientReport>,
    /// The space history, oldest first.
    pub samples: Vec<Sample>,
    /// The store's pruning settings and whether it may prune at all.
    pub pruning: Pruning,
}

/// One client's page.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientReport {
    /// As status shows it.
    pub status: ClientStatus,
    /// Its snapshots, oldest first.
    pub snapshots: Vec<Mark>,
    /// Its first snapshots in the prune plan, first to go first.
    pub next_pruned: Vec<NextDeletion>,
    /// How many more of its snapshots the plan holds after those.
    pub more_pruned: usize,
}

/// A snapshot pruning would delete, were it to run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextDeletion {
    /// Its place in the store's plan: 1 goes first.
    pub place: usize,
    pub snapshot: String,
    /// The reason prune gives.
    pub why: String,
    /// No configured replica holds it yet.
    pub unreplicated: bool,
}

/// What pruning is set to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Pruning {
    pub min_free_percent: f64,
    pub target_free_percent: f64,
    /// `min_age`, as configured.
    pub min_age: String,
    /// Some snapshot is older than `min_age`, so pruning may delete.
    pub old_enough: bool,
    /// How many snapshots the plan holds (all clients).
    pub deletable: usize,
}

/// The report of `store` from its status at `now`, and its samples.
pub fn assemble(
    store: &Store,
    status: Status,
    samples: Vec<Sample>,
    now: Timestamp,
) -> Result<Report> {
    let all = prune::all_snapshots(store)?;
    let guard = prune::ReplicationGuard::of(store);
    let plan = prune::plan_guarded(&all, now, guard.as_ref(), &prune::Pins::of(store));
    let mut clients = Vec::new();
    for c in status.clients {
        let name = crate::names::ClientName::new(&c.client)?;
        let snapshots = store
            .snapshots(&name)?
            .into_iter()
            .map(|s| Mark {
                name: s.name.to_string(),
                time: s.name.time(),
                partial: s.partial,
            })
            .collect();
        let mut next_pruned: Vec<NextDeletion> = plan
            .iter()
            .enumerate()
            .filter(|(_, d)| d.snapshot.client == name)
            .map(|(i, d)| NextDeletion {
                place: i + 1,
                snapshot: d.snapshot.name.to_string(),
                why: d.why.clone(),
                unreplicated: d.unreplicated,
            })
            .collect();
        let more_pruned = next_pruned.len().saturating_sub(NEXT_PRUNED_SHOWN);
        next_pruned.truncate(NEXT_PRUNED_SHOWN);
        clients.push(ClientReport {
            status: c,
            snapshots,
            next_pruned,
            more_pruned,
        });
    }
    let config = &store.config;
    Ok(Report {
        now,
        host: crate::exec::host::this_machines_name(),
        root: store.root().display().to_string(),
        store: status.store,
        clients,
        samples,
        pruning: Pruning {
            min_free_percent: config.min_free_percent,
            target_free_percent: config.target_free_percent,
            min_age: config.min_age.to_string(),
            old_enough: prune::old_enough(&all, now, config.min_age.0),
            deletable: plan.len(),
        },
    })
}

/// Writes the pages into `dir` (made if missing), each atomically: the
/// clients' first, then `index.html`, whose links then lead to pages that
/// exist; then removes the pages of clients no longer in the report (only
/// files named as [`pages::page_name`] names them). The files written.
pub fn write(dir: &Path, report: &Report) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
    let mut written = Vec::new();
    let mut names = Vec::new();
    for c in &report.clients {
        let name = pages::page_name(&c.status.client);
        let path = dir.join(&name);
        write_atomic(&path, pages::client_page(report, c).as_bytes(), 0o644)?;
        written.push(path);
        names.push(name);
    }
    let index = dir.join("index.html");
    write_atomic(&index, pages::index(report).as_bytes(), 0o644)?;
    written.push(index);
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("cannot list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("cannot list", dir, e))?;
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        if pages::is_page_name(file) && !names.iter().any(|n| n == file) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| Error::io("cannot remove", &path, e))?;
        }
    }
    Ok(written)
}

/// Refuses an output directory inside the store: a directory there with a
/// client-like name would be taken for a client.
fn outside_the_store(root: &Path, output: &Path) -> Result<()> {
    // The nearest directory that exists, resolved, and what follows it.
    let mut base = output.to_path_buf();
    let mut rest = Vec::new();
    while !base.exists() {
        match (base.parent(), base.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                base = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut resolved = base.canonicalize().unwrap_or(base);
    resolved.extend(rest.iter().rev());
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    if resolved.starts_with(&root) {
        return Err(Error::Usage(format!(
            "the report's directory {} is inside the store {}: write it elsewhere (a directory in the store would be taken for a client), e.g. /var/www/html/byteback",
            output.display(),
            root.display()
        )));
    }
    Ok(())
}

/// What `byteback-server report` was asked.
pub struct Args {
    /// Where the pages go (absolute).
    pub output: PathBuf,
}

/// `byteback-server report`: gathers status (adding a space sample, as
/// status does), the snapshots and the prune plan, and writes the pages.
pub fn run(root: &Path, args: &Args) -> Result<u8> {
    outside_the_store(root, &args.output)?;
    let store = crate::lifecycle::open_store(root)?;
    let now = Timestamp::now();
    let status = status::gather(&store, now, None)?;
    status::sample_space(&store, &status);
    let samples = space_history::load(store.root());
    let report = assemble(&store, status, samples, now)?;
    write(&args.output, &report)?;
    Ok(0)
}

#[cfg(test)]
mod tests;
