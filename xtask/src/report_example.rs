//! `cargo run -p xtask -- report-example [DIR]`: the report of a made-up
//! store at a fixed time (six clients in every state, eight months of
//! snapshots thinned as pruning thins them, two months of space samples),
//! written to DIR (default `target/report-example`) by the product's own
//! renderer, and the screenshots the documentation shows,
//! `docs/images/report.png` (the overview) and
//! `docs/images/report-client.png` (a client's page), taken by headless
//! Chromium at 1200×800 (Debian's `chromium` package).
//!
//! The data are fixed, so the pages are the same on every run; the
//! pictures differ only as the installed fonts do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use byteback::names::{ClientName, SnapshotName};
use byteback::prune::{self, StoredSnapshot};
use byteback::server::report::{self, ClientReport, NextDeletion, Pruning, Report, svg::Mark};
use byteback::server::space_history::Sample;
use byteback::server::status::{ClientStatus, State, StoreStatus};
use byteback::store::outcome::Outcome;
use jiff::{SignedDuration, Timestamp};

const NOW: &str = "2026-11-28T09:30:00Z";
const GIB: u64 = 1 << 30;

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn hours(h: i64) -> SignedDuration {
    SignedDuration::from_hours(h)
}

/// A history as pruning leaves it: daily for two weeks, weekly for two
/// months, then every four weeks, back `months` months; the newest
/// `newest_hours` hours ago (at 03:00-ish), `partial` snapshots (by age in
/// days) marked.
fn history(newest_hours: i64, months: i64, partial: &[i64]) -> Vec<Mark> {
    let newest = now() - hours(newest_hours);
    let mut days: Vec<i64> = (0..14).collect();
    days.extend((3..9).map(|w| w * 7));
    days.extend((3..=months).map(|m| m * 28));
    let mut marks: Vec<Mark> = days
        .into_iter()
        .map(|d| {
            let t = newest - hours(24 * d) + SignedDuration::from_secs(d * 37 % 900);
            let name = SnapshotName::parse(&t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap();
            Mark {
                name: name.to_string(),
                time: name.time(),
                partial: partial.contains(&d),
            }
        })
        .collect();
    marks.sort_by_key(|m| m.time);
    marks
}

struct Example {
    name: &'static str,
    state: State,
    snapshots: Vec<Mark>,
    /// GiB held now, and per day before.
    size: (f64, f64),
    attempt: Option<(i64, &'static str, bool, Option<&'static str>)>,
    notice: Option<&'static str>,
    running: bool,
}

fn examples() -> Vec<Example> {
    vec![
        Example {
            name: "db1.example.net",
            state: State::Ok,
            snapshots: history(6, 8, &[9]),
            size: (412.0, 1.6),
            attempt: Some((6, "complete", true, None)),
            notice: None,
            running: false,
        },
        Example {
            name: "mail.example.net",
            state: State::Ok,
            snapshots: history(7, 6, &[]),
            size: (186.0, 0.9),
            attempt: Some((7, "complete", true, None)),
            notice: None,
            running: true,
        },
        Example {
            name: "web2.example.net",
            state: State::Stale,
            snapshots: history(76, 5, &[]),
            size: (64.0, 0.2),
            attempt: Some((76, "complete", true, None)),
            notice: None,
            running: false,
        },
        Example {
            name: "laptop-anna",
            state: State::Partial,
            snapshots: history(20, 3, &[0, 4]),
            size: (97.0, 0.7),
            attempt: Some((20, "complete", true, None)),
            notice: None,
            running: false,
        },
        Example {
            name: "build.example.net",
            state: State::Failing,
            snapshots: history(30, 4, &[]),
            size: (233.0, 2.4),
            attempt: Some((
                5,
                "receive",
                false,
                Some(
                    "rsync exit 12: error in the rsync protocol data stream (the connection broke or the client went away)",
                ),
            )),
            notice: Some(
                "its unsnapshotted data passed its limit (max_growth_percent = 50%): on 2026-11-27T03:41:12Z the server discarded it (current is back at the newest snapshot) to keep the disk from filling, rather than delete anyone's history",
            ),
            running: false,
        },
        Example {
            name: "new.example.net",
            state: State::Never,
            snapshots: Vec::new(),
            size: (0.0, 0.0),
            attempt: None,
            notice: None,
            running: false,
        },
    ]
}

/// The example report.
pub fn report() -> Report {
    let now = now();
    let examples = examples();
    let total = 2048 * GIB;
    let all: Vec<StoredSnapshot> = examples
        .iter()
        .flat_map(|e| {
            let client = ClientName::new(e.name).unwrap();
            e.snapshots.iter().map(move |m| StoredSnapshot {
                client: client.clone(),
                name: SnapshotName::parse(&m.name).unwrap(),
            })
        })
        .collect();
    let plan = prune::plan(&all, now);
    // Samples every six hours for sixty days.
    let samples: Vec<Sample> = (0..240)
        .rev()
        .map(|i: i64| {
            let days = i as f64 / 4.0;
            let clients: BTreeMap<String, u64> = examples
                .iter()
                .filter(|e| {
                    e.snapshots
                        .first()
                        .is_some_and(|m| now.duration_since(m.time).as_hours() as f64 / 24.0 > days)
                })
                .map(|e| {
                    // Growth, with a weekly swell that pruning takes back.
                    let swell = 0.03 * e.size.0 * (days * std::f64::consts::TAU / 7.0).sin();
                    let gib = (e.size.0 - e.size.1 * days + swell).max(1.0);
                    (e.name.to_owned(), (gib * GIB as f64) as u64)
                })
                .collect();
            let used: u64 = clients.values().sum::<u64>() + 40 * GIB;
            Sample {
                version: 1,
                time: now - hours(6 * i),
                total_bytes: total,
                free_bytes: total - used,
                clients,
            }
        })
        .collect();
    let last = samples.last().unwrap();
    let clients = examples
        .iter()
        .map(|e| {
            let newest = e.snapshots.last();
            let place_of = |name: &str| {
                plan.iter().position(|d| {
                    d.snapshot.name.to_string() == name && d.snapshot.client.as_str() == e.name
                })
            };
            let next_pruned: Vec<NextDeletion> = plan
                .iter()
                .enumerate()
                .filter(|(_, d)| d.snapshot.client.as_str() == e.name)
                .take(10)
                .map(|(i, d)| NextDeletion {
                    place: i + 1,
                    snapshot: d.snapshot.name.to_string(),
                    why: d.why.clone(),
                    unreplicated: false,
                })
                .collect();
            let in_plan = e
                .snapshots
                .iter()
                .filter(|m| place_of(&m.name).is_some())
                .count();
            ClientReport {
                status: ClientStatus {
                    client: e.name.to_owned(),
                    state: e.state,
                    snapshots: e.snapshots.len(),
                    newest: newest.map(|m| m.name.clone()),
                    newest_age_seconds: newest.map(|m| now.duration_since(m.time).as_secs()),
                    newest_partial: newest.is_some_and(|m| m.partial),
                    oldest: e.snapshots.first().map(|m| m.name.clone()),
                    size_bytes: last.clients.get(e.name).copied().unwrap_or(0),
                    written_since_snapshot_bytes: if e.running { 3 * GIB / 2 } else { 0 },
                    usage_bytes: None,
                    usage_measured: None,
                    quota_bytes: None,
                    running_since: e.running.then(|| now - SignedDuration::from_mins(12)),
                    last_attempt: e.attempt.map(|(ago, request, ok, reason)| Outcome {
                        time: now - hours(ago),
                        request: request.to_owned(),
                        ok,
                        reason: reason.map(str::to_owned),
                    }),
                    notice: e.notice.map(str::to_owned),
                    replicas: Vec::new(),
                    moved_to: None,
                    suspect: Vec::new(),
                },
                snapshots: e.snapshots.clone(),
                more_pruned: in_plan.saturating_sub(next_pruned.len()),
                next_pruned,
            }
        })
        .collect();
    Report {
        now,
        host: "backup1.example.net".into(),
        root: "/srv/byteback".into(),
        store: StoreStatus {
            free_bytes: last.free_bytes,
            total_bytes: total,
            free_percent: last.free_bytes as f64 * 100.0 / total as f64,
            alert: None,
            pruned_last_24h: 2,
            min_free_percent: 10.0,
            stale_after_seconds: 26 * 3600,
            unreplicated_pruned_last_24h: 0,
            kernel_warning: None,
            rsync: "/usr/bin/rsync 3.2.7".into(),
            sandbox: "private root, Landlock ABI 6".into(),
        },
        clients,
        samples,
        pruning: Pruning {
            min_free_percent: 10.0,
            target_free_percent: 20.0,
            min_age: "7 days".into(),
            old_enough: true,
            deletable: plan.len(),
        },
    }
}

/// Writes the pages to `dir` and the screenshots to `docs/images/`.
pub fn run(root: &Path, dir: &Path) -> Result<(), String> {
    let report = report();
    report::write(dir, &report).map_err(|e| e.to_string())?;
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let images = root.join("docs/images");
    std::fs::create_dir_all(&images).map_err(|e| e.to_string())?;
    for (page, image) in [
        ("index.html", "report.png"),
        (
            report::pages::page_name("db1.example.net").as_str(),
            "report-client.png",
        ),
    ] {
        screenshot(&dir.join(page), &images.join(image))?;
        println!("{}", images.join(image).display());
    }
    Ok(())
}

/// Headless Chromium's picture of `page`, 1200×800.
fn screenshot(page: &Path, png: &Path) -> Result<(), String> {
    let profile: PathBuf =
        std::env::temp_dir().join(format!("xtask-chromium-{}", std::process::id()));
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,800",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .map_err(|e| format!("cannot run chromium (apt-get install chromium): {e}"))?;
    let _ = std::fs::remove_dir_all(&profile);
    if !out.status.success() || !png.is_file() {
        return Err(format!(
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}
