//! `byteback-server status`: one look that says whether anything is wrong —
//! per client (newest snapshot and its age, partial, count, size, running
//! now, the last attempt and its reason, a state) and for the store (free
//! space as pruning sees it, the alert, what was pruned lately) — as text,
//! JSON, a Nagios/Icinga check or a Prometheus textfile.
//!
//! Gathering reads the store; everything else is pure, over [`Status`] and
//! a clock value, so it is unit-tested at a fixed time.

use std::fmt::Write as _;
use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::names::ClientName;
use crate::prune::growth;
use crate::store::outcome::Outcome;
use crate::store::{LogEvent, Store};
use crate::sys::fs::{human_bytes, write_atomic};

/// A client's state, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// A snapshot of it is marked suspect (it changed or deleted far more
    /// of its files than usual: `[suspect]`), and the snapshots before it
    /// are pinned until a person runs `byteback-server ack`.
    Suspect,
    /// Its last attempt was refused or failed.
    Failing,
    /// It has no snapshot yet.
    Never,
    /// Its newest snapshot is older than `stale_after`.
    Stale,
    /// Its newest snapshot left some files out.
    Partial,
    /// All well.
    Ok,
    /// Its backups moved to another server (`move-client`): this copy is
    /// kept until `move-client --retire`, and nothing is expected of it.
    Moved,
}

impl State {
    fn word(self) -> &'static str {
        match self {
            State::Suspect => "suspect",
            State::Failing => "failing",
            State::Never => "never",
            State::Stale => "stale",
            State::Partial => "partial",
            State::Ok => "ok",
            State::Moved => "moved",
        }
    }
}

/// One client, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientStatus {
    pub client: String,
    pub state: State,
    pub snapshots: usize,
    pub newest: Option<String>,
    /// Seconds since the newest snapshot was taken.
    pub newest_age_seconds: Option<i64>,
    pub newest_partial: bool,
    pub oldest: Option<String>,
    /// What its snapshots so far cost on disk (the growth baseline).
    pub size_bytes: u64,
    /// Bytes written since its newest snapshot.
    pub written_since_snapshot_bytes: u64,
    /// What its history holds exclusively, as last measured (see
    /// [`crate::store::quota`]): after each of its snapshots while it has
    /// a quota; `None` if never measured.
    pub usage_bytes: Option<u64>,
    /// When `usage_bytes` was measured.
    pub usage_measured: Option<Timestamp>,
    /// Its history quota (`new-client --quota`, `set-quota`), if any.
    pub quota_bytes: Option<u64>,
    /// Since when a backup of it has been running, if one is.
    pub running_since: Option<Timestamp>,
    pub last_attempt: Option<Outcome>,
    pub notice: Option<String>,
    /// How far each configured replica is behind (as this store last heard).
    pub replicas: Vec<ReplicaLag>,
    /// Where its backups moved (`move-client`), if they did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<String>,
    /// Its standing suspect marks, oldest first (see
    /// [`crate::store::suspect`]).
    pub suspect: Vec<SuspectMark>,
}

/// A standing suspect mark, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SuspectMark {
    /// The suspect snapshot (`-` when the marks cannot be read).
    pub snapshot: String,
    pub reason: String,
    /// The snapshots it keeps from pruning.
    pub pinned: Vec<String>,
}

/// How far one replica is behind with one client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaLag {
    /// The replica, `USER@HOST[:PORT]`.
    pub replica: String,
    /// The newest snapshot of the client it holds.
    pub newest: Option<String>,
    /// This store's snapshots newer than that: what it still lacks.
    pub snapshots_behind: usize,
    /// From its newest to this store's newest, in seconds (0: up to date).
    pub behind_seconds: Option<i64>,
    /// When the replica last answered.
    pub checked: Option<String>,
}

/// The store, as status shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreStatus {
    pub free_bytes: u64,
    pub total_bytes: u64,
    pub free_percent: f64,
    pub alert: Option<String>,
    /// Pruning starts when free space falls below this percentage
    /// (`min_free_percent`): below it for long, pruning cannot keep up.
    pub min_free_percent: f64,
    /// A client is stale when its newest snapshot is older than this
    /// (`stale_after`), in seconds.
    pub stale_after_seconds: i64,
    pub pruned_last_24h: usize,
    /// Of those, the snapshots no configured replica held yet: history
    /// that now exists nowhere.
    pub unreplicated_pruned_last_24h: usize,
    /// On a btrfs store, what is wrong with the running kernel's btrfs
    /// ([`crate::sys::kernel::name_hash_warning`]).
    pub kernel_warning: Option<String>,
    /// The server's rsync as probed in its sandbox (or why it cannot be).
    pub rsync: String,
    /// The sandbox's layers on this kernel, within `[sandbox]`.
    pub sandbox: String,
}

/// Everything status reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub clients: Vec<ClientStatus>,
    pub store: StoreStatus,
}

/// A client's state from its facts (pure).
pub fn state_of(
    newest: Option<(Timestamp, bool)>,
    last: Option<&Outcome>,
    now: Timestamp,
    stale_after: SignedDuration,
) -> State {
    if last.is_some_and(|o| !o.ok) {
        return State::Failing;
    }
    match newest {
        None => State::Never,
        Some((time, _)) if now.duration_since(time) > stale_after => State::Stale,
        Some((_, true)) => State::Partial,
        Some(_) => State::Ok,
    }
}

/// Reads the store's status (of one client, or all).
pub fn gather(store: &Store, now: Timestamp, only: Option<&ClientName>) -> Result<Status> {
    let clients = match only {
        Some(c) if store.has_client(c) => vec![c.clone()],
        Some(c) => return Err(crate::store::no_space(c)),
        None => store.clients()?,
    };
    let stale_after = store.config.stale_after.0;
    let records = crate::store::replicas::configured_records(store);
    let mut out = Vec::new();
    for client in clients {
        let snapshots = store.snapshots(&client)?;
        let newest = snapshots.last();
        let last = store.last_outcome(&client);
        let g = growth::load(store, &client);
        let usage = crate::store::quota::cached_usage(store, &client);
        let moved_to = store.moved(&client).map(|m| m.to);
        let suspect: Vec<SuspectMark> = match store.suspect_marks(&client) {
            Ok(marks) => marks
                .into_iter()
                .map(|m| SuspectMark {
                    snapshot: m.snapshot,
                    reason: m.reason,
                    pinned: m.pinned,
                })
                .collect(),
            // Unreadable marks pin everything: as loud as a mark.
            Err(e) => vec![SuspectMark {
                snapshot: "-".into(),
                reason: e.to_string(),
                pinned: vec!["all".into()],
            }],
        };
        out.push(ClientStatus {
            client: client.to_string(),
            // A mark outranks everything: its pins stand here, moved or not.
            state: match (&moved_to, suspect.is_empty()) {
                (_, false) => State::Suspect,
                (Some(_), true) => State::Moved,
                (None, true) => state_of(
                    newest.map(|s| (s.name.time(), s.partial)),
                    last.as_ref(),
                    now,
                    stale_after,
                ),
            },
            moved_to,
            suspect,
            snapshots: snapshots.len(),
            newest: newest.map(|s| s.name.to_string()),
            newest_age_seconds: newest.map(|s| now.duration_since(s.name.time()).as_secs()),
            newest_partial: newest.is_some_and(|s| s.partial),
            oldest: snapshots.first().map(|s| s.name.to_string()),
            size_bytes: g.baseline_bytes,
            written_since_snapshot_bytes: g.written_since_snapshot,
            usage_bytes: usage.map(|u| u.0),
            usage_measured: usage.map(|u| u.1),
            quota_bytes: crate::store::quota::quota(store, &client),
            running_since: store.running_since(&client),
            last_attempt: last,
            notice: store.client_notice(&client),
            replicas: records
                .iter()
                .map(|r| {
                    let theirs = r.newest(&client);
                    let lacking = snapshots
                        .iter()
                        .filter(|s| theirs.as_ref().is_none_or(|t| s.name.time() > t.time()))
                        .count();
                    ReplicaLag {
                        replica: r.replica.clone(),
                        newest: theirs.as_ref().map(ToString::to_string),
                        snapshots_behind: lacking,
                        behind_seconds: match (newest, &theirs) {
                            (Some(ours), Some(t)) => {
                                Some(ours.name.time().duration_since(t.time()).as_secs().max(0))
                            }
                            (None, _) => Some(0),
                            (Some(_), None) => None,
                        },
                        checked: r.checked.clone(),
                    }
                })
                .collect(),
        });
    }
    let space = store
        .space()
        .or_else(|_| crate::sys::fs::space(store.root()))?;
    let log = crate::store::read_log(store.root());
    Ok(Status {
        clients: out,
        store: StoreStatus {
            free_bytes: space.free_bytes,
            total_bytes: space.total_bytes,
            free_percent: space.free_percent(),
            alert: store.space_alert(),
            min_free_percent: store.config.min_free_percent,
            stale_after_seconds: stale_after.as_secs(),
            pruned_last_24h: events_since(
                &log,
                now - SignedDuration::from_hours(24),
                &[
                    LogEvent::SnapshotDeleted,
                    LogEvent::UnreplicatedSnapshotDeleted,
                ],
            ),
            unreplicated_pruned_last_24h: events_since(
                &log,
                now - SignedDuration::from_hours(24),
                &[LogEvent::UnreplicatedSnapshotDeleted],
            ),
            kernel_warning: crate::sys::fs::is_btrfs(store.root())
                .unwrap_or(false)
                .then(crate::sys::kernel::running_name_hash_warning)
                .flatten(),
            rsync: match crate::server::probe::rsync_of_store(store) {
                Ok(facts) => facts.to_string(),
                Err(e) => format!("WARNING: {e}"),
            },
            sandbox: crate::server::probe::layers_line(store),
        },
    })
}

/// Events of the given kinds (deletions by pruning) logged at or after
/// `since`.
fn events_since(log: &str, since: Timestamp, kinds: &[LogEvent]) -> usize {
    log.lines()
        .filter_map(|l| {
            let (time, text) = l.split_once(' ')?;
            // By the line's tag (its kind), never by its words.
            let wanted = LogEvent::of(text).is_some_and(|e| kinds.contains(&e));
            wanted.then(|| time.parse::<Timestamp>().ok()).flatten()
        })
        .filter(|t| *t >= since)
        .count()
}

/// An age in seconds as status words it: `3d`, `5h`, `12m 3s`.
pub(crate) fn age(secs: i64) -> String {
    let d = SignedDuration::from_secs(secs.max(0));
    match secs {
        s if s >= 2 * 86400 => format!("{}d", s / 86400),
        s if s >= 3600 => format!("{}h", s / 3600),
        _ => format!("{:#}", d),
    }
}

/// The table: one line per client, then the store.
pub fn render_text(status: &Status) -> String {
    let mut o = String::new();
    for c in &status.clients {
        let newest = match (&c.newest, c.newest_age_seconds) {
            (Some(n), Some(a)) => format!(
                "newest {n} ({} ago{})",
                age(a),
                if c.newest_partial { ", partial" } else { "" }
            ),
            _ => "no snapshot yet".to_owned(),
        };
        let _ = write!(
            o,
            "{:<8} {}  {newest}, {} snapshot(s)",
            c.state.word(),
            c.client,
            c.snapshots
        );
        if let Some(oldest) = &c.oldest {
            let _ = write!(o, " since {oldest}");
        }
        let _ = write!(
            o,
            ", {} kept, {} written since",
            human_bytes(c.size_bytes),
            human_bytes(c.written_since_snapshot_bytes)
        );
        match (c.usage_bytes, c.quota_bytes) {
            (Some(u), Some(q)) => {
                let _ = write!(
                    o,
                    ", holds {} of its quota {}",
                    human_bytes(u),
                    human_bytes(q)
                );
            }
            (None, Some(q)) => {
                let _ = write!(o, ", quota {} (not measured yet)", human_bytes(q));
            }
            (Some(u), None) => {
                let _ = write!(o, ", holds {}", human_bytes(u));
            }
            (None, None) => {}
        }
        if let Some(since) = c.running_since {
            let _ = write!(
                o,
                ", backup running since {}",
                since.strftime("%Y-%m-%dT%H:%M:%SZ")
            );
        }
        for r in &c.replicas {
            let _ = match (r.snapshots_behind, &r.newest) {
                (0, _) => write!(o, "; replica {} up to date", r.replica),
                (n, Some(newest)) => write!(
                    o,
                    "; replica {} {n} snapshot(s) behind (has {newest})",
                    r.replica
                ),
                (n, None) => write!(
                    o,
                    "; replica {} {n} snapshot(s) behind (has none)",
                    r.replica
                ),
            };
        }
        if let Some(to) = &c.moved_to {
            let _ = write!(o, "; moved to {to} (kept until move-client --retire)");
        }
        for m in &c.suspect {
            let _ = write!(
                o,
                "; SUSPECT {}: {}; pins {} (look, then `byteback-server ack --client {} {}`)",
                m.snapshot,
                m.reason,
                m.pinned.join(", "),
                c.client,
                m.snapshot
            );
        }
        if let Some(last) = c.last_attempt.as_ref().filter(|l| !l.ok) {
            let _ = write!(
                o,
                "; last {} at {} failed: {}",
                last.request,
                last.time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                // The reason may quote a client's path: kept on its line.
                crate::quote::one_line(last.reason.as_deref().unwrap_or("no reason given"))
            );
        }
        o.push('\n');
    }
    let s = &status.store;
    let _ = writeln!(
        o,
        "store: {} free of {} ({:.1}%), {} snapshot(s) pruned in the last 24 h{}",
        human_bytes(s.free_bytes),
        human_bytes(s.total_bytes),
        s.free_percent,
        s.pruned_last_24h,
        s.alert
            .as_ref()
            .map(|a| format!("; ALERT: {a}"))
            .unwrap_or_default()
    );
    if let Some(w) = &s.kernel_warning {
        let _ = writeln!(o, "store: WARNING: {w}");
    }
    let _ = writeln!(o, "server: rsync {}; sandbox: {}", s.rsync, s.sandbox);
    o
}

/// A Nagios/Icinga plugin's answer (pure): the exit status (0 OK,
/// 1 WARNING, 2 CRITICAL) and its one line with performance data. `warn`
/// and `crit` bound the newest snapshot's age.
pub fn check(status: &Status, warn: SignedDuration, crit: SignedDuration) -> (u8, String) {
    let mut critical = Vec::new();
    let mut warning = Vec::new();
    for c in &status.clients {
        let age = c.newest_age_seconds.map(SignedDuration::from_secs);
        let name = &c.client;
        match c.state {
            // Its backups are another server's to watch now.
            State::Moved => {}
            State::Suspect => {
                let marks: Vec<&str> = c.suspect.iter().map(|m| m.snapshot.as_str()).collect();
                critical.push(format!("{name} suspect snapshot {}", marks.join(", ")));
            }
            State::Failing => critical.push(format!("{name} failing")),
            _ if age.is_some_and(|a| a > crit) => critical.push(format!(
                "{name} {} old",
                self::age(c.newest_age_seconds.unwrap_or(0))
            )),
            State::Never => warning.push(format!("{name} never backed up")),
            _ if age.is_some_and(|a| a > warn) => warning.push(format!(
                "{name} {} old",
                self::age(c.newest_age_seconds.unwrap_or(0))
            )),
            State::Partial => warning.push(format!("{name} partial")),
            _ => {}
        }
    }
    if let Some(alert) = &status.store.alert {
        critical.insert(0, format!("store: {alert}"));
    }
    let (code, word, named) = if !critical.is_empty() {
        (2, "CRITICAL", critical)
    } else if !warning.is_empty() {
        (1, "WARNING", warning)
    } else {
        (0, "OK", Vec::new())
    };
    let count = |s: State| status.clients.iter().filter(|c| c.state == s).count();
    let summary = if named.is_empty() {
        format!("{} client(s) backed up", status.clients.len())
    } else {
        named.join(", ")
    };
    let line = format!(
        "BYTEBACK {word} - {summary} | clients={} ok={} stale={} never={} failing={} partial={} suspect={} free_bytes={}B;;;0;{} free_percent={:.1}%",
        status.clients.len(),
        count(State::Ok),
        count(State::Stale),
        count(State::Never),
        count(State::Failing),
        count(State::Partial),
        count(State::Suspect),
        status.store.free_bytes,
        status.store.total_bytes,
        status.store.free_percent,
    );
    (code, line)
}

/// The Prometheus text exposition of the status (pure), gathered at `now`.
pub fn prometheus(status: &Status, now: Timestamp) -> String {
    let mut o = String::new();
    let metric = |o: &mut String, name: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge");
    };
    let label = |c: &ClientStatus| format!("{{client=\"{}\"}}", c.client);
    // A moved client's backups are another server's: none of its series
    // here (so no alert about its age), only that it moved.
    let (moved, watched): (Vec<&ClientStatus>, Vec<&ClientStatus>) = status
        .clients
        .iter()
        .partition(|c| c.moved_to.is_some() && c.suspect.is_empty());
    metric(
        &mut o,
        "byteback_last_snapshot_timestamp_seconds",
        "Time of the client's newest snapshot.",
    );
    for c in &watched {
        if let Some(newest) = c
            .newest
            .as_deref()
            .and_then(crate::names::SnapshotName::parse)
        {
            let _ = writeln!(
                o,
                "byteback_last_snapshot_timestamp_seconds{} {}",
                label(c),
                newest.time().as_second()
            );
        }
    }
    type Field = fn(&ClientStatus) -> u64;
    let per_client: [(&str, &str, Field); 6] = [
        (
            "byteback_snapshots",
            "Number of the client's snapshots.",
            |c| c.snapshots as u64,
        ),
        (
            "byteback_client_size_bytes",
            "What the client's snapshots cost on disk.",
            |c| c.size_bytes,
        ),
        (
            "byteback_unsnapshotted_bytes",
            "Bytes written since the client's newest snapshot.",
            |c| c.written_since_snapshot_bytes,
        ),
        (
            "byteback_backup_running",
            "1 while a backup of the client runs.",
            |c| u64::from(c.running_since.is_some()),
        ),
        (
            "byteback_client_failing",
            "1 if the client's last attempt was refused or failed.",
            |c| u64::from(c.state == State::Failing),
        ),
        (
            "byteback_client_suspect",
            "Suspect marks standing on the client's snapshots (each pins the snapshots before it until byteback-server ack).",
            |c| c.suspect.len() as u64,
        ),
    ];
    for (name, help, value) in per_client {
        metric(&mut o, name, help);
        for c in &watched {
            let _ = writeln!(o, "{name}{} {}", label(c), value(c));
        }
    }
    if !moved.is_empty() {
        metric(
            &mut o,
            "byteback_client_moved",
            "1 for a client whose backups moved to another server (move-client); its copy here waits for --retire.",
        );
        for c in &moved {
            let _ = writeln!(o, "byteback_client_moved{} 1", label(c));
        }
    }
    let replicated: Vec<(&ClientStatus, &ReplicaLag)> = watched
        .iter()
        .flat_map(|c| c.replicas.iter().map(move |r| (*c, r)))
        .collect();
    if !replicated.is_empty() {
        let name = "byteback_replica_snapshots_behind";
        metric(
            &mut o,
            name,
            "Snapshots of the client a replica does not hold yet.",
        );
        for (c, r) in replicated {
            let _ = writeln!(
                o,
                "{name}{{client=\"{}\",replica=\"{}\"}} {}",
                c.client, r.replica, r.snapshots_behind
            );
        }
    }
    let s = &status.store;
    for (name, help, value) in [
        (
            "byteback_store_free_bytes",
            "Bytes the store can really still take.",
            s.free_bytes.to_string(),
        ),
        (
            "byteback_store_size_bytes",
            "Size of the store's filesystem.",
            s.total_bytes.to_string(),
        ),
        (
            "byteback_store_min_free_percent",
            "Pruning starts when free space falls below this percentage (min_free_percent).",
            s.min_free_percent.to_string(),
        ),
        (
            "byteback_stale_after_seconds",
            "A client is stale when its newest snapshot is older than this (stale_after).",
            s.stale_after_seconds.to_string(),
        ),
        (
            "byteback_prune_alert",
            "1 while pruning's alert stands: space short and nothing may be deleted, or snapshots no replica held were.",
            u8::from(s.alert.is_some()).to_string(),
        ),
        (
            "byteback_pruned_last_24h",
            "Snapshots pruned in the last 24 hours.",
            s.pruned_last_24h.to_string(),
        ),
        (
            "byteback_unreplicated_pruned_last_24h",
            "Snapshots no replica held yet that pruning deleted in the last 24 hours.",
            s.unreplicated_pruned_last_24h.to_string(),
        ),
        (
            "byteback_status_generated_timestamp_seconds",
            "When byteback-server status gathered these figures.",
            now.as_second().to_string(),
        ),
    ] {
        metric(&mut o, name, help);
        let _ = writeln!(o, "{name} {value}");
    }
    o
}

/// Writes the Prometheus file atomically (temp file, then rename), for
/// node_exporter's textfile collector.
pub fn write_prometheus(status: &Status, now: Timestamp, path: &Path) -> Result<()> {
    write_atomic(path, prometheus(status, now).as_bytes(), 0o644)
}

/// `--json`: one object with `clients` and `store`.
pub fn render_json(status: &Status) -> Result<String> {
    serde_json::to_string_pretty(status)
        .map_err(|e| Error::Command(format!("cannot write JSON: {e}")))
}

/// Adds a sample of the store's space to its history for the report's
/// charts (at most one per ten minutes, and only as the store's owner: see
/// [`crate::server::space_history`]); a failure is only a warning.
pub(crate) fn sample_space(store: &Store, status: &Status) {
    if let Err(e) = record_space(store, status) {
        crate::report::warn(format_args!("cannot record a space sample: {e}"));
    }
}

fn record_space(store: &Store, status: &Status) -> Result<bool> {
    use crate::server::space_history;
    space_history::record(store, &space_history::Sample::of(status, Timestamp::now()))
}

/// What `byteback-server status` was asked.
pub struct Args {
    pub client: Option<String>,
    pub json: bool,
    /// One line and a plugin's exit status (Nagios, Icinga).
    pub check: bool,
    pub warn: Option<crate::config::Duration>,
    pub crit: Option<crate::config::Duration>,
    /// Write the metrics to this file (node_exporter's textfile collector).
    pub prometheus: Option<std::path::PathBuf>,
}

/// `byteback-server status`.
pub fn run(root: &std::path::Path, args: &Args) -> Result<u8> {
    let now = Timestamp::now();
    let gathered = (|| {
        let store = crate::lifecycle::open_store(root)?;
        let client = args.client.as_deref().map(ClientName::new).transpose()?;
        let warn = args.warn.unwrap_or(store.config.stale_after).0;
        let crit = args.crit.map_or(warn * 3, |c| c.0);
        let status = gather(&store, now, client.as_ref())?;
        Ok::<_, Error>((store, status, warn, crit))
    })();
    if args.check {
        // A plugin always answers in one line; its own failure is UNKNOWN.
        return Ok(match gathered {
            Ok((store, s, warn, crit)) => {
                if args.client.is_none() {
                    // Silently: a plugin's answer is its one line.
                    let _ = record_space(&store, &s);
                }
                let (code, line) = check(&s, warn, crit);
                println!("{line}");
                code
            }
            Err(e) => {
                println!("BYTEBACK UNKNOWN - {e}");
                3
            }
        });
    }
    let (store, s, _, _) = gathered?;
    if args.client.is_none() {
        sample_space(&store, &s);
    }
    if let Some(path) = &args.prometheus {
        write_prometheus(&s, now, path)?;
        return Ok(0);
    }
    if args.json {
        println!("{}", render_json(&s)?);
    } else {
        print!("{}", render_text(&s));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: &str) -> Timestamp {
        t.parse().unwrap()
    }

    fn failed() -> Outcome {
        Outcome {
            time: at("2026-11-28T03:00:00Z"),
            request: "complete".into(),
            ok: false,
            reason: Some("refused".into()),
        }
    }

    /// A reason quoting a hostile client's path stays on its line.
    #[test]
    fn text_escapes_control_characters_of_the_last_reason() {
        let mut c = client("a.example", State::Failing, Some(100));
        c.last_attempt = Some(Outcome {
            reason: Some("cannot read /x\nb.example: ok\u{1b}[2J".into()),
            ..failed()
        });
        let text = render_text(&status(vec![c], None));
        assert!(!text.contains('\u{1b}'), "{text}");
        let line = text
            .lines()
            .find(|l| l.contains("a.example"))
            .unwrap_or_default();
        assert!(
            line.ends_with("failed: cannot read /x\\nb.example: ok\\u{1b}[2J"),
            "{text}"
        );
        assert!(!text.lines().any(|l| l.starts_with("b.example")), "{text}");
    }

    #[test]
    fn states() {
        let now = at("2026-11-28T12:00:00Z");
        let day = SignedDuration::from_hours(26);
        let fresh = Some((at("2026-11-28T03:00:00Z"), false));
        assert_eq!(state_of(fresh, None, now, day), State::Ok);
        assert_eq!(state_of(None, None, now, day), State::Never);
        assert_eq!(
            state_of(Some((at("2026-11-26T03:00:00Z"), false)), None, now, day),
            State::Stale
        );
        assert_eq!(
            state_of(Some((at("2026-11-28T03:00:00Z"), true)), None, now, day),
            State::Partial
        );
        assert_eq!(state_of(fresh, Some(&failed()), now, day), State::Failing);
        let ok = Outcome {
            ok: true,
            reason: None,
            ..failed()
        };
        assert_eq!(state_of(fresh, Some(&ok), now, day), State::Ok);
    }

    fn client(name: &str, state: State, age: Option<i64>) -> ClientStatus {
        ClientStatus {
            client: name.into(),
            state,
            snapshots: usize::from(age.is_some()),
            newest: age.map(|_| "2026-11-28T03:00:00Z".into()),
            newest_age_seconds: age,
            newest_partial: state == State::Partial,
            oldest: age.map(|_| "2026-11-28T03:00:00Z".into()),
            size_bytes: 10,
            written_since_snapshot_bytes: 0,
            usage_bytes: None,
            usage_measured: None,
            quota_bytes: None,
            running_since: None,
            last_attempt: None,
            notice: None,
            replicas: Vec::new(),
            moved_to: None,
            suspect: Vec::new(),
        }
    }

    /// A suspect client: critical in the check, named with its snapshot;
    /// the text says what to run; the metric counts its marks.
    #[test]
    fn a_suspect_client_is_critical_everywhere() {
        let mut c = client("a.example", State::Suspect, Some(60));
        c.suspect = vec![SuspectMark {
            snapshot: "2026-11-28T03:00:00Z".into(),
            reason: "90 % of files changed or deleted".into(),
            pinned: vec!["2026-11-27T03:00:00Z".into()],
        }];
        let s = status(vec![c, client("b", State::Ok, Some(60))], None);
        let day = SignedDuration::from_hours(26);
        let (code, line) = check(&s, day, day * 3);
        assert_eq!(code, 2, "{line}");
        assert!(
            line.starts_with(
                "BYTEBACK CRITICAL - a.example suspect snapshot 2026-11-28T03:00:00Z |"
            ),
            "{line}"
        );
        assert!(line.contains(" suspect=1 "), "{line}");
        let text = render_text(&s);
        assert!(
            text.lines().any(|l| l.starts_with("suspect  a.example")
                && l.contains("; SUSPECT 2026-11-28T03:00:00Z: 90 % of files changed or deleted; pins 2026-11-27T03:00:00Z (look, then `byteback-server ack --client a.example 2026-11-28T03:00:00Z`)")),
            "{text}"
        );
        let metrics = prometheus(&s, at("2026-11-28T12:00:00Z"));
        assert!(
            metrics.contains("byteback_client_suspect{client=\"a.example\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("byteback_client_suspect{client=\"b\"} 0"),
            "{metrics}"
        );
    }

    /// A moved client is nobody's worry here: the check names it not, the
    /// metrics carry only that it moved (so no alert about its age), and
    /// the text says where it went.
    #[test]
    fn a_moved_client_is_not_watched_here() {
        let now = at("2026-11-28T12:00:00Z");
        let mut gone = client("gone.example", State::Moved, Some(30 * 86400));
        gone.moved_to = Some("bb@new.example".into());
        let s = status(vec![gone, client("a.example", State::Ok, Some(3600))], None);
        let day = SignedDuration::from_hours(26);
        let (code, line) = check(&s, day, day * 3);
        assert_eq!(code, 0, "{line}");
        let metrics = prometheus(&s, now);
        assert!(metrics.contains("byteback_client_moved{client=\"gone.example\"} 1"));
        assert!(
            !metrics.contains("byteback_snapshots{client=\"gone.example\"}"),
            "{metrics}"
        );
        assert!(
            metrics.contains("byteback_snapshots{client=\"a.example\"}"),
            "{metrics}"
        );
        let text = render_text(&s);
        assert!(
            text.lines()
                .any(|l| l.starts_with("moved") && l.contains("moved to bb@new.example")),
            "{text}"
        );
    }

    fn status(clients: Vec<ClientStatus>, alert: Option<&str>) -> Status {
        Status {
            clients,
            store: StoreStatus {
                free_bytes: 50,
                total_bytes: 100,
                free_percent: 50.0,
                alert: alert.map(str::to_owned),
                min_free_percent: 10.0,
                stale_after_seconds: 26 * 3600,
                pruned_last_24h: 0,
                unreplicated_pruned_last_24h: 0,
                kernel_warning: None,
                rsync: "/usr/bin/rsync 3.5.0 (with --confine-root)".into(),
                sandbox: "Landlock ABI 7".into(),
            },
        }
    }

    #[test]
    fn replica_lag_shows_in_text_json_and_metrics() {
        let mut c = client("a", State::Ok, Some(3600));
        c.replicas = vec![
            ReplicaLag {
                replica: "bb@r1".into(),
                newest: Some("2026-11-27T03:00:00Z".into()),
                snapshots_behind: 2,
                behind_seconds: Some(86400),
                checked: None,
            },
            ReplicaLag {
                replica: "bb@r2".into(),
                newest: Some("2026-11-28T03:00:00Z".into()),
                snapshots_behind: 0,
                behind_seconds: Some(0),
                checked: None,
            },
        ];
        let s = status(vec![c], None);
        let text = render_text(&s);
        assert!(
            text.contains("; replica bb@r1 2 snapshot(s) behind (has 2026-11-27T03:00:00Z); replica bb@r2 up to date"),
            "{text}"
        );
        let json = render_json(&s).unwrap();
        assert!(json.contains("\"snapshots_behind\": 2"), "{json}");
        let metrics = prometheus(&s, at("2026-11-28T12:00:00Z"));
        assert!(
            metrics.contains("byteback_replica_snapshots_behind{client=\"a\",replica=\"bb@r1\"} 2"),
            "{metrics}"
        );
        // Without replicas, no such metric.
        let plain = prometheus(
            &status(vec![client("a", State::Ok, Some(1))], None),
            at("2026-11-28T12:00:00Z"),
        );
        assert!(!plain.contains("byteback_replica_"), "{plain}");
    }

    #[test]
    fn the_check_names_the_worst() {
        let warn = SignedDuration::from_hours(26);
        let crit = SignedDuration::from_hours(72);
        let ok = status(vec![client("a", State::Ok, Some(3600))], None);
        let (code, line) = check(&ok, warn, crit);
        assert_eq!(code, 0);
        assert!(
            line.starts_with("BYTEBACK OK - 1 client(s) backed up | clients=1 ok=1"),
            "{line}"
        );
        let stale = status(
            vec![
                client("a", State::Ok, Some(3600)),
                client("b", State::Stale, Some(30 * 3600)),
            ],
            None,
        );
        let (code, line) = check(&stale, warn, crit);
        assert_eq!(code, 1);
        assert!(line.starts_with("BYTEBACK WARNING - b 30h old |"), "{line}");
        let dead = status(vec![client("c", State::Stale, Some(5 * 86400))], None);
        assert_eq!(check(&dead, warn, crit).0, 2);
        let never = status(vec![client("n", State::Never, None)], None);
        assert!(check(&never, warn, crit).1.contains("n never backed up"));
        let full = status(vec![client("a", State::Ok, Some(60))], Some("add disk"));
        let (code, line) = check(&full, warn, crit);
        assert_eq!(code, 2);
        assert!(
            line.starts_with("BYTEBACK CRITICAL - store: add disk"),
            "{line}"
        );
        assert_eq!(line.lines().count(), 1);
    }

    #[test]
    fn prometheus_names_every_client() {
        let s = status(
            vec![
                client("a.example", State::Ok, Some(60)),
                client("b", State::Never, None),
            ],
            None,
        );
        let text = prometheus(&s, at("2026-11-28T12:00:00Z"));
        assert!(text.contains("byteback_snapshots{client=\"a.example\"} 1"));
        assert!(text.contains("byteback_snapshots{client=\"b\"} 0"));
        assert!(text.contains("byteback_prune_alert 0"));
        assert!(text.contains("byteback_last_snapshot_timestamp_seconds{client=\"a.example\"} "));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn a_kernel_warning_shows_in_text_and_json() {
        let mut s = status(vec![client("a", State::Ok, Some(60))], None);
        assert!(!render_text(&s).contains("WARNING"));
        let json: serde_json::Value = serde_json::from_str(&render_json(&s).unwrap()).unwrap();
        assert_eq!(json["store"]["kernel_warning"], serde_json::Value::Null);
        let w = crate::sys::kernel::name_hash_warning("6.1.0-28-amd64", "").unwrap();
        s.store.kernel_warning = Some(w.clone());
        let text = render_text(&s);
        assert!(
            text.contains(&format!("store: WARNING: {w}\nserver: rsync ")),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&render_json(&s).unwrap()).unwrap();
        assert_eq!(
            json["store"]["kernel_warning"],
            serde_json::Value::String(w)
        );
    }

    #[test]
    fn pruned_lines_are_counted_by_time() {
        // Tagged events, alerts (unreplicated deletions) included, counted
        // from the given time; untagged words that read like a deletion
        // (a client's, or an older log's) are not events.
        let tagged = "2026-11-27T01:00:00Z [snapshot-deleted] prune: deleted a 2026-01-01T00:00:00Z (x)\n\
                      2026-11-28T01:00:00Z [snapshot-deleted] prune: deleted a 2026-01-01T00:00:00Z (x)\n\
                      2026-11-28T01:00:01Z [unreplicated-snapshot-deleted] prune: ALERT: deleted b 2026-01-01T00:00:00Z (x)\n\
                      2026-11-28T01:00:02Z prune: deleted c 2026-01-01T00:00:00Z (x)\n\
                      2026-11-28T01:00:03Z c: refused: bad option \"[snapshot-deleted]\"\n";
        let since = at("2026-11-27T12:00:00Z");
        let all = [
            LogEvent::SnapshotDeleted,
            LogEvent::UnreplicatedSnapshotDeleted,
        ];
        assert_eq!(events_since(tagged, since, &all), 2);
        // The unreplicated ones alone: history that now exists nowhere.
        let lost = [LogEvent::UnreplicatedSnapshotDeleted];
        assert_eq!(events_since(tagged, since, &lost), 1);
        assert_eq!(events_since(tagged, at("2026-11-28T01:00:02Z"), &lost), 0);
    }

    /// What the shipped alert rules compare against
    /// (packaging/prometheus/byteback.rules.yml): the store's own
    /// thresholds, the unreplicated deletions, and when the figures were
    /// gathered, so a stale file is told from a quiet store.
    #[test]
    fn prometheus_exports_thresholds_losses_and_its_own_time() {
        let mut s = status(vec![client("a", State::Ok, Some(60))], Some("add disk"));
        s.store.min_free_percent = 12.5;
        s.store.pruned_last_24h = 3;
        s.store.unreplicated_pruned_last_24h = 2;
        let now = at("2026-11-28T12:00:00Z");
        let text = prometheus(&s, now);
        for line in [
            "byteback_store_min_free_percent 12.5",
            "byteback_stale_after_seconds 93600",
            "byteback_prune_alert 1",
            "byteback_pruned_last_24h 3",
            "byteback_unreplicated_pruned_last_24h 2",
            &format!(
                "byteback_status_generated_timestamp_seconds {}",
                now.as_second()
            ),
        ] {
            assert!(text.lines().any(|l| l == line), "{line}:\n{text}");
        }
        // Every metric is announced once, as a gauge, before its samples.
        let mut announced = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(kind, "gauge", "{line}");
                assert!(!announced.contains(&name), "{name} twice:\n{text}");
                announced.push(name);
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(announced.last(), Some(&name), "{line}:\n{text}");
            }
        }
        assert!(announced.contains(&"byteback_status_generated_timestamp_seconds"));
    }
}
