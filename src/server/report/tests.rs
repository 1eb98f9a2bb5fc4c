//! The report on a fake store, at a fixed time: what is gathered, what the
//! pages hold (hostile strings escaped), what `write` leaves in the
//! directory. The pages in a real browser: `tests/report.rs`.

use super::*;
use crate::server::status::State;
use crate::store::ServerConfig;
use crate::store::fake::FakeStore;
use crate::store::outcome::Outcome;

fn at(t: &str) -> Timestamp {
    t.parse().unwrap()
}

const NOW: &str = "2026-11-28T12:00:00Z";

/// What a reason or notice quoting a hostile client's words may hold.
const HOSTILE: &str =
    "</td></tr><script>alert(1)</script><img src=x onerror=\"alert(2)\"> & 'q' \u{1b}[2J";

fn client_status(name: &str, state: State, snapshots: usize) -> ClientStatus {
    ClientStatus {
        client: name.into(),
        state,
        snapshots,
        newest: None,
        newest_age_seconds: None,
        newest_partial: false,
        oldest: None,
        size_bytes: 4096,
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

fn store_status() -> StoreStatus {
    StoreStatus {
        free_bytes: 600 << 20,
        total_bytes: 1 << 30,
        free_percent: 58.6,
        alert: None,
        pruned_last_24h: 0,
        min_free_percent: 5.0,
        stale_after_seconds: 26 * 3600,
        unreplicated_pruned_last_24h: 0,
        kernel_warning: None,
        rsync: "/usr/bin/rsync 3.2.7".into(),
        sandbox: "Landlock ABI 4".into(),
    }
}

/// A store with `a.example` (three snapshots, the middle one partial) and
/// `b.example` (none, its last attempt refused for a hostile reason).
fn example() -> (FakeStore, Report) {
    let fake = FakeStore::new(1 << 30, ServerConfig::default());
    let a = fake.client("a.example");
    fake.client("b.example");
    for t in [
        "2026-10-01T03:00:00Z",
        "2026-11-20T03:00:00Z",
        "2026-11-27T03:00:00Z",
    ] {
        fake.old_snapshot(&a, t, 1000);
    }
    std::fs::write(
        fake.store
            .client_dir(&a)
            .join("2026-11-20T03:00:00Z.partial"),
        "/x\n",
    )
    .unwrap();
    let mut b = client_status("b.example", State::Failing, 0);
    b.last_attempt = Some(Outcome {
        time: at("2026-11-28T11:00:00Z"),
        request: "refused".into(),
        ok: false,
        reason: Some(HOSTILE.into()),
    });
    b.notice = Some(HOSTILE.into());
    let status = Status {
        clients: vec![client_status("a.example", State::Ok, 3), b],
        store: store_status(),
    };
    let samples = vec![Sample {
        version: 1,
        time: at("2026-11-28T11:50:00Z"),
        total_bytes: 1 << 30,
        free_bytes: 600 << 20,
        clients: [("a.example".to_owned(), 3000)].into(),
    }];
    let report = assemble(&fake.store, status, samples, at(NOW)).unwrap();
    (fake, report)
}

#[test]
fn assembles_snapshots_and_the_prune_plan() {
    let (_fake, report) = example();
    let a = &report.clients[0];
    assert_eq!(a.status.client, "a.example");
    let marks: Vec<(&str, bool)> = a
        .snapshots
        .iter()
        .map(|m| (m.name.as_str(), m.partial))
        .collect();
    assert_eq!(
        marks,
        vec![
            ("2026-10-01T03:00:00Z", false),
            ("2026-11-20T03:00:00Z", true),
            ("2026-11-27T03:00:00Z", false),
        ]
    );
    // The newest is never pruned; the two others are, with prune's reasons.
    let next: Vec<&str> = a.next_pruned.iter().map(|d| d.snapshot.as_str()).collect();
    assert_eq!(next.len(), 2, "{:?}", a.next_pruned);
    assert!(!next.contains(&"2026-11-27T03:00:00Z"));
    assert_eq!(a.next_pruned[0].place, 1);
    assert!(a.next_pruned[0].why.starts_with("least important left: "));
    assert_eq!(report.pruning.deletable, 2);
    assert!(report.pruning.old_enough);
    assert!(report.clients[1].snapshots.is_empty());
}

#[test]
fn hostile_strings_stay_text() {
    let (_fake, report) = example();
    let escaped = html::escape(HOSTILE);
    for page in [
        pages::index(&report),
        pages::client_page(&report, &report.clients[1]),
    ] {
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains('\u{1b}'), "{page}");
        assert!(page.contains(&escaped), "{page}");
        // The only script is the overview's own sorter.
        assert!(page.matches("<script>").count() <= 1);
    }
}

#[test]
fn the_overview_lists_every_client_worst_first() {
    let (_fake, report) = example();
    let index = pages::index(&report);
    let b = index.find("<tr data-client=\"b.example\" data-state=\"failing\">");
    let a = index.find("<tr data-client=\"a.example\" data-state=\"ok\">");
    assert!(b.is_some() && a.is_some() && b < a, "{index}");
    assert!(index.contains("href=\"client-a.example.html\""));
    assert!(index.contains("1 failing, 1 ok"), "{index}");
    // The store's chart, with its one sample said so.
    assert!(index.contains("<polyline class=\"series\""), "{index}");
    assert!(index.contains("Only one sample so far"), "{index}");
}

#[test]
fn a_client_page_draws_its_snapshots_and_space() {
    let (_fake, report) = example();
    let page = pages::client_page(&report, &report.clients[0]);
    assert_eq!(page.matches("<circle class=\"mark").count(), 3, "{page}");
    assert_eq!(page.matches("<circle class=\"mark partial\"").count(), 1);
    assert!(
        page.contains("<polyline class=\"series\" points=\""),
        "{page}"
    );
    assert!(page.contains("<td class=\"num\">1</td>"), "{page}");
    let empty = pages::client_page(&report, &report.clients[1]);
    assert!(empty.contains("No snapshot yet."), "{empty}");
    assert!(empty.contains("No samples of this client"), "{empty}");
}

#[test]
fn write_replaces_pages_and_drops_those_of_gone_clients() {
    let (fake, report) = example();
    let dir = fake.store.root().with_extension("report");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("client-gone.example.html"), "old").unwrap();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let written = write(&dir, &report).unwrap();
    assert_eq!(written.len(), 3);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "client-a.example.html",
            "client-b.example.html",
            "index.html",
            "notes.txt"
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_output_must_be_outside_the_store() {
    let fake = FakeStore::new(1 << 20, ServerConfig::default());
    let root = fake.store.root();
    assert!(outside_the_store(root, &root.join("report")).is_err());
    assert!(outside_the_store(root, &root.join("a/b/../c")).is_err());
    assert!(outside_the_store(root, root).is_err());
    assert!(outside_the_store(root, &root.with_extension("report")).is_ok());
}
