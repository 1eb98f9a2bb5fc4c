//! The prune executor on the fake backend: what it deletes, what it
//! reclaims first, and what it refuses, with real files on a made-up disk.

use jiff::Timestamp;

use super::{Mode, growth, run};
use crate::error::Error;
use crate::store::ServerConfig;
use crate::store::fake::FakeStore;

const MIB: u64 = 1 << 20;

fn config() -> ServerConfig {
    ServerConfig {
        min_free_percent: 20.0,
        target_free_percent: 40.0,
        min_age: crate::config::Duration::from_secs(3600),
        ..ServerConfig::default()
    }
}

fn now() -> Timestamp {
    "2026-11-28T12:00:00Z".parse().unwrap()
}

/// Records, as a receive would, that `client` wrote `bytes` unsnapshotted.
fn written(fake: &FakeStore, client: &crate::names::ClientName, bytes: u64) {
    growth::record_transfer(&fake.store, client, bytes).unwrap();
}

#[test]
fn deletes_least_important_until_the_target_never_a_newest() {
    let fake = FakeStore::new(90 * MIB, config());
    let a = fake.client("a.example");
    let b = fake.client("b.example");
    for (i, day) in ["2026-01-01", "2026-02-01", "2026-03-01", "2026-11-27"]
        .iter()
        .enumerate()
    {
        fake.old_snapshot(&a, &format!("{day}T00:00:{i:02}Z"), 10 * MIB);
        fake.old_snapshot(&b, &format!("{day}T00:00:{i:02}Z"), 10 * MIB);
    }
    assert!(fake.free_percent() < 20.0);
    let outcome = run(&fake.store, now(), Mode::IfNeeded, None).unwrap();
    assert!(!outcome.deleted.is_empty());
    assert!(fake.free_percent() >= 40.0, "{}", fake.free_percent());
    for client in [&a, &b] {
        let left = fake.store.snapshots(client).unwrap();
        assert_eq!(
            left.last().unwrap().name.as_str(),
            "2026-11-27T00:00:03Z",
            "{client} keeps its newest"
        );
    }
    // The oldest went first.
    assert!(
        outcome
            .deleted
            .iter()
            .all(|d| d.snapshot.name.as_str() != "2026-11-27T00:00:03Z")
    );
}

#[test]
fn a_flood_no_snapshot_holds_is_reclaimed_before_any_history() {
    let fake = FakeStore::new(100 * MIB, config());
    let victim = fake.client("victim.example");
    let attacker = fake.client("attacker.example");
    for day in ["2026-01-01", "2026-02-01", "2026-03-01"] {
        fake.old_snapshot(&victim, &format!("{day}T00:00:00Z"), 8 * MIB);
    }
    let history = fake.store.snapshots(&victim).unwrap();
    // No snapshot, 60% of the store written: over the 50% store cap.
    fake.write(&attacker, "flood", 60 * MIB);
    written(&fake, &attacker, 60 * MIB);
    assert!(fake.free_percent() < 20.0);

    let outcome = run(&fake.store, now(), Mode::IfNeeded, Some(&victim)).unwrap();
    assert!(outcome.deleted.is_empty(), "{:?}", outcome.deleted);
    assert_eq!(outcome.reclaimed.len(), 1);
    assert_eq!(outcome.reclaimed[0].client, attacker);
    assert_eq!(fake.store.snapshots(&victim).unwrap(), history);
    assert!(!fake.store.current(&attacker).join("flood").exists());
    assert_eq!(
        growth::load(&fake.store, &attacker).written_since_snapshot,
        0
    );
    let notice = fake.store.client_notice(&attacker).unwrap();
    assert!(notice.contains("discarded"), "{notice}");
}

#[test]
fn legitimate_growth_still_prunes_by_importance() {
    let fake = FakeStore::new(100 * MIB, config());
    let old = fake.client("old.example");
    let grower = fake.client("grower.example");
    for day in ["2026-01-01", "2026-02-01", "2026-03-01", "2026-04-01"] {
        fake.old_snapshot(&old, &format!("{day}T00:00:00Z"), 15 * MIB);
    }
    // Within its limits: no baseline, 30% of the store.
    fake.write(&grower, "new", 30 * MIB);
    written(&fake, &grower, 30 * MIB);
    let outcome = run(&fake.store, now(), Mode::IfNeeded, Some(&grower)).unwrap();
    assert!(outcome.reclaimed.is_empty());
    assert!(!outcome.deleted.is_empty());
    assert!(fake.store.current(&grower).join("new").exists());
}

#[test]
fn a_client_over_its_limit_is_refused_with_the_reason() {
    let fake = FakeStore::new(100 * MIB, config());
    let other = fake.client("other.example");
    fake.old_snapshot(&other, "2026-01-01T00:00:00Z", 10 * MIB);
    let grower = fake.client("grower.example");
    // A first backup of 5 MiB, received and snapshotted: its baseline.
    written(&fake, &grower, 5 * MIB);
    fake.old_snapshot(&grower, "2026-01-01T00:00:00Z", 5 * MIB);
    growth::record_snapshot(&fake.store, &grower).unwrap();
    fake.write(&grower, "doubled", 70 * MIB);
    written(&fake, &grower, 70 * MIB);
    let err = run(&fake.store, now(), Mode::IfNeeded, Some(&grower)).unwrap_err();
    let Error::Refused(why) = err else {
        panic!("{err:?}")
    };
    assert!(
        why.contains("grew by") && why.contains("max_growth_percent = 100"),
        "{why}"
    );
    assert_eq!(fake.store.snapshots(&other).unwrap().len(), 1);
}

#[test]
fn nothing_is_deleted_while_an_over_limit_transfer_runs() {
    let fake = FakeStore::new(100 * MIB, config());
    let victim = fake.client("victim.example");
    let attacker = fake.client("attacker.example");
    for day in ["2026-01-01", "2026-02-01"] {
        fake.old_snapshot(&victim, &format!("{day}T00:00:00Z"), 10 * MIB);
    }
    fake.write(&attacker, "flood", 70 * MIB);
    written(&fake, &attacker, 70 * MIB);
    let _running = fake
        .store
        .lock_client(&attacker, std::time::Duration::ZERO)
        .unwrap();
    let err = run(&fake.store, now(), Mode::IfNeeded, Some(&victim)).unwrap_err();
    assert!(matches!(err, Error::SpaceExhausted(_)), "{err:?}");
    assert_eq!(err.exit_code(), crate::error::Exit::SpaceExhausted);
    assert_eq!(fake.store.snapshots(&victim).unwrap().len(), 2);
    assert!(fake.store.current(&attacker).join("flood").exists());
    assert!(fake.store.space_alert().is_some());
}

#[test]
fn a_dry_run_changes_nothing() {
    let fake = FakeStore::new(100 * MIB, config());
    let a = fake.client("a.example");
    let b = fake.client("b.example");
    for day in ["2026-01-01", "2026-02-01", "2026-03-01"] {
        fake.old_snapshot(&a, &format!("{day}T00:00:00Z"), 12 * MIB);
    }
    fake.write(&b, "flood", 55 * MIB);
    written(&fake, &b, 55 * MIB);
    let outcome = run(&fake.store, now(), Mode::DryRun, None).unwrap();
    assert_eq!(outcome.reclaimed.len(), 1);
    assert!(!outcome.deleted.is_empty());
    assert_eq!(fake.store.snapshots(&a).unwrap().len(), 3);
    assert!(fake.store.current(&b).join("flood").exists());
}

/// A store replicating to one replica that holds, of each client, up to
/// the given snapshot.
fn replicating(fake: &FakeStore, held: &[(&crate::names::ClientName, &str)]) {
    let replica: crate::destination::Destination = "bb@replica.example".parse().unwrap();
    let mut record = crate::store::replicas::Record::load(&fake.store, &replica);
    for (client, name) in held {
        record.set(client, crate::names::SnapshotName::parse(name).as_ref());
    }
    std::fs::create_dir_all(crate::store::replicas::dir_of(fake.store.root())).unwrap();
    record.save(&fake.store, &replica).unwrap();
}

fn replicating_config() -> ServerConfig {
    let mut c = config();
    c.replicate.to = vec!["bb@replica.example".into()];
    c
}

#[test]
fn unreplicated_snapshots_are_kept_while_replicated_ones_can_go() {
    let fake = FakeStore::new(90 * MIB, replicating_config());
    let a = fake.client("a.example");
    let b = fake.client("b.example");
    for (i, day) in ["2026-01-01", "2026-02-01", "2026-03-01", "2026-11-27"]
        .iter()
        .enumerate()
    {
        fake.old_snapshot(&a, &format!("{day}T00:00:{i:02}Z"), 10 * MIB);
        fake.old_snapshot(&b, &format!("{day}T00:00:{i:02}Z"), 10 * MIB);
    }
    // The replica holds a up to February and b up to March.
    replicating(
        &fake,
        &[(&a, "2026-02-01T00:00:01Z"), (&b, "2026-03-01T00:00:02Z")],
    );
    assert!(fake.free_percent() < 20.0);
    let outcome = run(&fake.store, now(), Mode::IfNeeded, None).unwrap();
    assert!(fake.free_percent() >= 40.0, "{}", fake.free_percent());
    assert!(
        outcome.deleted.iter().all(|d| !d.unreplicated),
        "{:?}",
        outcome.deleted
    );
    let names = |c| -> Vec<String> {
        fake.store
            .snapshots(c)
            .unwrap()
            .iter()
            .map(|s| s.name.to_string())
            .collect()
    };
    assert!(
        names(&a).contains(&"2026-03-01T00:00:02Z".to_owned()),
        "a's unreplicated March snapshot stays: {:?}",
        names(&a)
    );
    assert_eq!(fake.store.space_alert(), None);
}

#[test]
fn unreplicated_snapshots_go_when_nothing_else_can_and_say_so() {
    let fake = FakeStore::new(90 * MIB, replicating_config());
    let a = fake.client("a.example");
    for (i, day) in [
        "2026-01-01",
        "2026-02-01",
        "2026-03-01",
        "2026-04-01",
        "2026-11-27",
    ]
    .iter()
    .enumerate()
    {
        fake.old_snapshot(&a, &format!("{day}T00:00:{i:02}Z"), 15 * MIB);
    }
    // Nothing replicated yet.
    replicating(&fake, &[]);
    assert!(fake.free_percent() < 20.0);
    let outcome = run(&fake.store, now(), Mode::IfNeeded, None).unwrap();
    assert!(!outcome.deleted.is_empty());
    assert!(outcome.deleted.iter().all(|d| d.unreplicated));
    let alert = fake.store.space_alert().expect("an alert");
    assert!(alert.contains("no replica holds yet"), "{alert}");
    // Without a replica configured, the same store prunes without alarm.
    let plain = FakeStore::new(90 * MIB, config());
    let a = plain.client("a.example");
    for (i, day) in [
        "2026-01-01",
        "2026-02-01",
        "2026-03-01",
        "2026-04-01",
        "2026-11-27",
    ]
    .iter()
    .enumerate()
    {
        plain.old_snapshot(&a, &format!("{day}T00:00:{i:02}Z"), 15 * MIB);
    }
    let outcome = run(&plain.store, now(), Mode::IfNeeded, None).unwrap();
    assert!(outcome.deleted.iter().all(|d| !d.unreplicated));
    assert_eq!(plain.store.space_alert(), None);
}

#[test]
fn names_invented_by_one_key_share_its_cap_and_no_history_pays() {
    let fake = FakeStore::new(100 * MIB, config());
    let victim = fake.client("victim.example");
    for day in ["2026-01-01", "2026-02-01", "2026-03-01", "2026-04-01"] {
        fake.old_snapshot(&victim, &format!("{day}T00:00:00Z"), 5 * MIB);
    }
    let history = fake.store.snapshots(&victim).unwrap();
    // A replica key of primary "p" invents three clients, each under the
    // per-client cap (50 MiB), together over it.
    let mut evil = Vec::new();
    for (name, mib) in [("p__evil1", 20), ("p__evil2", 26), ("p__evil3", 23)] {
        let c = fake.client(name);
        fake.write(&c, "flood", mib * MIB);
        written(&fake, &c, mib * MIB);
        evil.push(c);
    }
    assert!(fake.free_percent() < 20.0, "{}", fake.free_percent());
    let outcome = run(&fake.store, now(), Mode::IfNeeded, Some(&victim)).unwrap();
    assert!(outcome.deleted.is_empty(), "{:?}", outcome.deleted);
    assert_eq!(fake.store.snapshots(&victim).unwrap(), history);
    let reclaimed: Vec<&str> = outcome
        .reclaimed
        .iter()
        .map(|r| r.client.as_str())
        .collect();
    assert_eq!(reclaimed[0], "p__evil2", "the largest first: {reclaimed:?}");
    assert!(
        reclaimed.iter().all(|c| c.starts_with("p__")),
        "{reclaimed:?}"
    );
    assert!(
        outcome.reclaimed[0]
            .why
            .contains("replica key of primary p"),
        "{}",
        outcome.reclaimed[0].why
    );
    // Only what was over the key's cap went: room again, above the minimum.
    assert_eq!(reclaimed, ["p__evil2"]);
    assert!(fake.free_percent() >= 20.0, "{}", fake.free_percent());
}

#[test]
fn the_store_wide_cap_reclaims_the_largest_before_any_history() {
    let fake = FakeStore::new(100 * MIB, config());
    let victim = fake.client("victim.example");
    for day in ["2026-01-01", "2026-02-01", "2026-03-01"] {
        fake.old_snapshot(&victim, &format!("{day}T00:00:00Z"), 8 * MIB);
    }
    let history = fake.store.snapshots(&victim).unwrap();
    // Three ordinary clients, each within its own and its key's limit,
    // together over the store's 50%.
    for (name, mib) in [("a.example", 18), ("b.example", 25), ("c.example", 15)] {
        let c = fake.client(name);
        fake.write(&c, "data", mib * MIB);
        written(&fake, &c, mib * MIB);
    }
    let outcome = run(&fake.store, now(), Mode::IfNeeded, Some(&victim)).unwrap();
    assert!(outcome.deleted.is_empty(), "{:?}", outcome.deleted);
    assert_eq!(fake.store.snapshots(&victim).unwrap(), history);
    assert_eq!(outcome.reclaimed[0].client.as_str(), "b.example");
    assert!(
        outcome.reclaimed[0]
            .why
            .contains("max_unsnapshotted_store_percent"),
        "{}",
        outcome.reclaimed[0].why
    );
}

#[test]
fn no_history_goes_while_a_keys_largest_client_is_still_writing() {
    let fake = FakeStore::new(100 * MIB, config());
    let victim = fake.client("victim.example");
    for day in ["2026-01-01", "2026-02-01"] {
        fake.old_snapshot(&victim, &format!("{day}T00:00:00Z"), 8 * MIB);
    }
    let mut evil = Vec::new();
    for (name, mib) in [("p__a", 25), ("p__b", 30), ("p__c", 22)] {
        let c = fake.client(name);
        fake.write(&c, "flood", mib * MIB);
        written(&fake, &c, mib * MIB);
        evil.push(c);
    }
    // p__b, the key's largest, is still receiving.
    let _running = fake
        .store
        .lock_client(&evil[1], std::time::Duration::ZERO)
        .unwrap();
    let err = run(&fake.store, now(), Mode::IfNeeded, Some(&victim)).unwrap_err();
    assert!(matches!(err, Error::SpaceExhausted(_)), "{err:?}");
    assert_eq!(fake.store.snapshots(&victim).unwrap().len(), 2);
    assert!(fake.store.current(&evil[1]).join("flood").exists());
    let alert = fake.store.space_alert().unwrap();
    assert!(alert.contains("replica key of primary p"), "{alert}");
}

/// Snapshots a suspect mark pins are never deleted, by pruning or a
/// quota: the others go, and when only the pinned ones could make room the
/// prune fails with the typed refusal naming `ack`; after `ack` (the mark
/// cleared) they go as any other.
#[test]
fn pinned_snapshots_stay_until_the_mark_is_cleared() {
    use crate::names::SnapshotName;
    use crate::store::suspect::Mark;
    let fake = FakeStore::new(100 * MIB, config());
    let a = fake.client("a.example");
    let days = [
        "2026-01-01",
        "2026-02-01",
        "2026-03-01",
        "2026-04-01",
        "2026-05-01",
    ];
    for day in days {
        fake.old_snapshot(&a, &format!("{day}T00:00:00Z"), 17 * MIB);
    }
    let name = |day: &str| format!("{day}T00:00:00Z");
    // The newest is suspect; the three before it are pinned.
    let pinned: Vec<String> = days[1..4].iter().map(|d| name(d)).collect();
    fake.store
        .add_suspect_mark(
            &a,
            Mark {
                snapshot: name(days[4]),
                reason: "90 % of files changed or deleted".into(),
                pinned: pinned.clone(),
                marked: now(),
            },
        )
        .unwrap();
    assert!(fake.free_percent() < 20.0);
    let err = run(&fake.store, now(), Mode::IfNeeded, Some(&a)).unwrap_err();
    let Error::PinnedBySuspect(why) = &err else {
        panic!("{err:?}")
    };
    assert!(
        why.contains(&format!(
            "`byteback-server ack --client a.example {}`",
            name(days[4])
        )),
        "{why}"
    );
    assert_eq!(err.exit_code(), crate::error::Exit::SpaceExhausted);
    let left: Vec<String> = fake
        .store
        .snapshots(&a)
        .unwrap()
        .into_iter()
        .map(|s| s.name.to_string())
        .collect();
    // Only the unpinned oldest went.
    assert_eq!(left[..3], pinned[..]);
    assert_eq!(left.len(), 4);
    // Force too skips them, and says why.
    let forced = run(&fake.store, now(), Mode::Force, None).unwrap_err();
    assert!(matches!(forced, Error::Refused(_)), "{forced:?}");
    // The dry run of what pruning would do lists none of them.
    let dry = run(&fake.store, now(), Mode::DryRun, None).unwrap();
    assert!(dry.deleted.is_empty(), "{:?}", dry.deleted);

    let suspect = SnapshotName::parse(&name(days[4])).unwrap();
    assert!(
        fake.store
            .clear_suspect_mark(&a, &suspect)
            .unwrap()
            .is_some()
    );
    // (Above min_free_percent now: only a forced prune deletes.)
    let outcome = run(&fake.store, now(), Mode::Force, None).unwrap();
    assert_eq!(outcome.deleted.len(), 1);
    assert!(pinned.contains(&outcome.deleted[0].snapshot.name.to_string()));
}

/// A marks file that cannot be read pins every snapshot of its client,
/// never none.
#[test]
fn unreadable_marks_pin_everything() {
    let fake = FakeStore::new(100 * MIB, config());
    let a = fake.client("a.example");
    for day in [
        "2026-01-01",
        "2026-02-01",
        "2026-03-01",
        "2026-04-01",
        "2026-05-01",
    ] {
        fake.old_snapshot(&a, &format!("{day}T00:00:00Z"), 17 * MIB);
    }
    let dir = fake.store.root().join(".byteback/suspect");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.example.json"), "{").unwrap();
    let err = run(&fake.store, now(), Mode::IfNeeded, Some(&a)).unwrap_err();
    assert!(matches!(err, Error::PinnedBySuspect(_)), "{err:?}");
    assert_eq!(fake.store.snapshots(&a).unwrap().len(), 5);
}
