//! End to end: pruning on a small real store (btrfs, and plain on ext4) —
//! by hand, and by itself
//! when backups need room.

use byteback_testbed as support;
use support::days_ago;

use std::path::Path;

use support::FsKind;
use support::world::{World, show, stderr, stdout};

support::world::on_both_backends!(
    listing_dry_run_and_force,
    a_backup_makes_room_for_itself_by_pruning,
    a_backup_that_hits_a_full_disk_succeeds_after_pruning,
    a_backup_that_suddenly_doubles_is_refused_room,
);

/// Adds a client on the server only (its own key), returning its name.
fn add_server_client(w: &World, name: &str) {
    let key = support::ssh_keygen(&w.area.path.join(format!("{name}-key")));
    let mut args = vec!["new-client", "--name", name];
    args.extend(key.split(' '));
    let out = w.server(&args);
    assert!(out.status.success(), "{}", show(&out));
}

/// Takes a snapshot of `client` at `at` holding `mib` MiB that no other
/// snapshot shares (written into current, snapshotted, removed again).
fn old_snapshot(w: &World, client: &str, at: &str, mib: u64) {
    let current = w.store().join(client).join("current");
    let file = current.join("unique.bin");
    let script = format!(
        "head -c {}M /dev/urandom > '{}' && sync",
        mib,
        file.display()
    );
    let out = w.user.run_as(&["sh", "-c", &script]);
    assert!(out.status.success(), "{}", show(&out));
    let out = w.server(&["snapshot", "--client", client, "--at", at]);
    assert!(out.status.success(), "{}", show(&out));
    // On btrfs the file stays in current; a plain snapshot took current along.
    let _ = std::fs::remove_file(&file);
}

fn free_percent(path: &Path) -> f64 {
    byteback::store::Store::open(path)
        .unwrap()
        .space()
        .unwrap()
        .free_percent()
}

/// `prune --list` as (client, snapshot), most important first.
fn importance(w: &World) -> Vec<(String, String)> {
    let out = w.server(&["prune", "--list"]);
    assert!(out.status.success(), "{}", show(&out));
    stdout(&out)
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 3, "{l}");
            assert_eq!(f[0], (i + 1).to_string());
            (f[1].to_owned(), f[2].to_owned())
        })
        .collect()
}

fn all_snapshots(w: &World, clients: &[&str]) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for c in clients {
        for s in w.snapshots(c) {
            all.push((c.to_string(), s));
        }
    }
    all.sort();
    all
}

/// Pruning by hand: `prune --list` gives the importance order (by rule or
/// `--order age`, as text or JSON, an original byteback's snapshot name
/// included, strangers ignored with a warning); with plenty of space
/// nothing goes, a dry run deletes nothing, `--force` deletes exactly the
/// least important deletable snapshot; short of space it deletes down to
/// each client's newest, or says in one line why it cannot (exit 9), and
/// alerts.
fn listing_dry_run_and_force(kind: FsKind) {
    let Some(w) = World::on("prunelist", kind) else {
        return;
    };
    let out = w.server(&["setup"]);
    assert!(out.status.success(), "{}", show(&out));
    add_server_client(&w, "a.example");
    add_server_client(&w, "b.example");
    for at in [
        "2026-11-20T12:00:00Z",
        "2026-11-25T12:00:00Z",
        "2026-10-01T12:00:00Z",
    ] {
        old_snapshot(&w, "a.example", at, 1);
    }
    old_snapshot(&w, "b.example", "2026-11-24T12:00:00Z", 1);
    // A snapshot named by the original byteback, and a stranger.
    let legacy = w.store().join("b.example/2026-11-23T13:00+0100");
    let current = w.store().join("b.example/current");
    let out = match kind {
        FsKind::Btrfs => w.user.run_as(&[
            "btrfs",
            "subvolume",
            "snapshot",
            "-r",
            &current.to_string_lossy(),
            &legacy.to_string_lossy(),
        ]),
        FsKind::Ext4 => w.user.run_as(&["mkdir", &legacy.to_string_lossy()]),
    };
    assert!(out.status.success(), "{}", show(&out));
    let out = w.user.run_as(&[
        "mkdir",
        &w.store().join("b.example/lost+found").to_string_lossy(),
    ]);
    assert!(out.status.success());

    let now = "2026-11-26T08:00:00Z";
    let out = w.server(&["prune", "--list", "--now", now]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        stdout(&out),
        "1 a.example 2026-11-25T12:00:00Z\n\
         2 b.example 2026-11-24T12:00:00Z\n\
         3 a.example 2026-11-20T12:00:00Z\n\
         4 b.example 2026-11-23T13:00+0100\n\
         5 a.example 2026-10-01T12:00:00Z\n"
    );
    assert!(
        stderr(&out).contains("ignoring lost+found"),
        "{}",
        show(&out)
    );
    let out = w.server(&["prune", "--list", "--order", "age", "--now", now]);
    assert_eq!(
        stdout(&out).lines().next(),
        Some("1 a.example 2026-11-25T12:00:00Z")
    );
    assert_eq!(
        stdout(&out).lines().nth(1),
        Some("2 b.example 2026-11-24T12:00:00Z")
    );
    assert_eq!(
        stdout(&out).lines().nth(2),
        Some("3 b.example 2026-11-23T13:00+0100")
    );
    let out = w.server(&["prune", "--list", "--json", "--now", now]);
    let json: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(json[3]["snapshot"], "2026-11-23T13:00+0100");
    assert_eq!(json[3]["time"], "2026-11-23T12:00:00Z");
    assert_eq!(json[3]["client"], "b.example");
    assert_eq!(json[3]["index"], 4);
    assert_eq!(json.len(), 5);

    // Plenty of space: nothing to do, dry run or not.
    let before = all_snapshots(&w, &["a.example", "b.example"]);
    for args in [&["prune", "--dry-run"][..], &["prune"][..]] {
        let out = w.server(args);
        assert!(
            out.status.success() && stdout(&out).contains("Nothing to delete"),
            "{}",
            show(&out)
        );
    }
    // A dry run with the thresholds up says what it would delete, and deletes nothing.
    w.server_config("min_free_percent = 99.5\ntarget_free_percent = 99.9\nmin_age = \"1s\"\n");
    let out = w.server(&["prune", "--dry-run"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("would delete"), "{text}");
    let first = text.lines().nth(1).unwrap().trim();
    assert!(
        first.starts_with("a.example 2026-10-01T12:00:00Z (least important left"),
        "{text}"
    );
    assert!(
        !text.contains("b.example 2026-11-24T12:00:00Z")
            && !text.contains("a.example 2026-11-25T12:00:00Z"),
        "newest snapshots are never offered: {text}"
    );
    assert_eq!(all_snapshots(&w, &["a.example", "b.example"]), before);
    // --force deletes exactly the least important deletable one.
    let out = w.server(&["prune", "--force"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("deleted a.example 2026-10-01T12:00:00Z"),
        "{}",
        show(&out)
    );
    assert_eq!(
        all_snapshots(&w, &["a.example", "b.example"]).len(),
        before.len() - 1
    );
    assert!(!w.store().join("a.example/2026-10-01T12:00:00Z").exists());

    // Short of space but every snapshot young: nothing deleted, one line, non-zero.
    w.server_config(
        "min_free_percent = 99.5\ntarget_free_percent = 99.9\nmin_age = \"3650 days\"\n",
    );
    let out = w.server(&["prune"]);
    assert_eq!(out.status.code(), Some(9), "{}", show(&out));
    let errors: Vec<String> = stderr(&out)
        .lines()
        .filter(|l| !l.contains("warning:"))
        .map(str::to_owned)
        .collect();
    assert!(
        errors.len() == 1 && errors[0].contains("no snapshot is older than min_age (3650 days)"),
        "{}",
        show(&out)
    );
    assert_eq!(
        all_snapshots(&w, &["a.example", "b.example"]).len(),
        before.len() - 1
    );
    // Short of space with old snapshots: they go, down to each client's
    // newest; then it says a person must add disk, and the clients hear of it.
    w.server_config("min_free_percent = 99.5\ntarget_free_percent = 99.9\nmin_age = \"1s\"\n");
    let out = w.server(&["prune"]);
    assert_eq!(out.status.code(), Some(9), "{}", show(&out));
    assert!(
        stderr(&out).contains("every snapshot left is a client's newest: add disk space"),
        "{}",
        show(&out)
    );
    assert_eq!(w.snapshots("a.example"), ["2026-11-25T12:00:00Z"]);
    assert_eq!(w.snapshots("b.example").len(), 1);
    let log = std::fs::read_to_string(w.store().join(".byteback/server.log")).unwrap();
    assert!(log.contains("ALERT: store"), "{log}");
}

/// A backup makes room for itself by pruning: once space is short, the next
/// backup succeeds with no manual step, and what went is the tail of the
/// importance order, never a client's newest.
fn a_backup_makes_room_for_itself_by_pruning(kind: FsKind) {
    let Some(w) = World::on("pruneauto", kind) else {
        return;
    };
    let client = w.enroll("real.example");
    // While history is made, nothing prunes it: every snapshot, one taken
    // by hand included, is followed by a prune when space is short.
    w.server_config(
        "min_snapshot_interval = \"0s\"\nmin_free_percent = 0.0\ntarget_free_percent = 0.0\n",
    );
    let others = ["b.example", "c.example"];
    for c in others {
        add_server_client(&w, c);
    }
    // The real client's first backup, then old history for everyone until
    // free space is below the minimum.
    std::fs::write(w.src.join("small"), "x\n").unwrap();
    w.backup_ok();
    let mut day = 400;
    while free_percent(w.store()) >= 30.0 {
        for c in ["real.example", "b.example", "c.example"] {
            old_snapshot(&w, c, &days_ago(day), 12);
        }
        day -= 9;
        assert!(day > 10, "could not fill the store");
    }
    w.server_config(
        "min_snapshot_interval = \"0s\"\nmin_free_percent = 30.0\ntarget_free_percent = 45.0\n",
    );
    let order = importance(&w);
    let before = all_snapshots(&w, &["real.example", "b.example", "c.example"]);
    let newest_before: Vec<String> = ["real.example", "b.example", "c.example"]
        .iter()
        .map(|c| w.snapshots(c).last().unwrap().clone())
        .collect();

    // A new backup arrives: it succeeds with no manual step.
    std::fs::write(w.src.join("more"), "y\n").unwrap();
    let out = w.backup_ok();
    assert!(out.contains("Backup complete"), "{out}");
    let after = all_snapshots(&w, &["real.example", "b.example", "c.example"]);
    let deleted: Vec<&(String, String)> = before.iter().filter(|s| !after.contains(s)).collect();
    assert!(!deleted.is_empty(), "nothing was pruned");
    // The least important went first: what was deleted is the tail of the
    // importance order, leaving out each client's newest.
    let deletable_tail: Vec<&(String, String)> = order
        .iter()
        .rev()
        .filter(|(c, s)| {
            let i = ["real.example", "b.example", "c.example"]
                .iter()
                .position(|x| x == c)
                .unwrap();
            *s != newest_before[i]
        })
        .take(deleted.len())
        .collect();
    let mut deleted_sorted = deleted.clone();
    deleted_sorted.sort();
    let mut tail_sorted = deletable_tail.clone();
    tail_sorted.sort();
    assert_eq!(
        deleted_sorted, tail_sorted,
        "deleted out of importance order"
    );
    for (i, c) in ["real.example", "b.example", "c.example"]
        .iter()
        .enumerate()
    {
        assert!(
            w.snapshots(c).contains(&newest_before[i]),
            "{c} lost its newest snapshot"
        );
    }
    assert!(
        free_percent(w.store()) >= 45.0,
        "free space {} below the target",
        free_percent(w.store())
    );
    let log = std::fs::read_to_string(w.store().join(".byteback/server.log")).unwrap();
    assert_eq!(
        log.matches("prune: deleted").count(),
        deleted.len(),
        "{log}\n{deleted:?}"
    );
    let newest = w.snapshots(&client).last().unwrap().clone();
    assert!(
        !before.contains(&(client.clone(), newest)),
        "the new backup made a snapshot"
    );
}

/// A first backup bigger than the free space runs out of space half-way,
/// and succeeds after pruning other history, with no human step.
fn a_backup_that_hits_a_full_disk_succeeds_after_pruning(kind: FsKind) {
    let Some(w) = World::on("prunefull", kind) else {
        return;
    };
    let client = w.enroll("full.example");
    w.server_config(
        "min_snapshot_interval = \"0s\"\nmin_free_percent = 5.0\ntarget_free_percent = 60.0\n",
    );
    w.client_config("retry_attempts = 3\nretry_pause = \"1s\"\n");
    add_server_client(&w, "old.example");
    // Old history of another client fills the disk to ~25% free.
    let mut day = 300;
    while free_percent(w.store()) >= 25.0 {
        old_snapshot(&w, "old.example", &days_ago(day), 24);
        day -= 10;
    }
    // A first backup bigger than the free space: it runs out of space half-way.
    let big = w.src.join("big");
    std::fs::create_dir(&big).unwrap();
    let free_bytes = byteback::store::Store::open(w.store())
        .unwrap()
        .space()
        .unwrap()
        .free_bytes;
    let files = (free_bytes * 3 / 2) / (8 << 20) + 1;
    for i in 0..files {
        support::run_ok(&[
            "sh",
            "-c",
            &format!("head -c 8M /dev/urandom > '{}/f{i}'", big.display()),
        ]);
    }
    let out = w.client(&["backup", "--source", &w.src.to_string_lossy()]);
    assert!(out.status.success(), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("attempt 1 of 3 failed"),
        "the first attempt should have run out of space: {err}"
    );
    assert_eq!(w.snapshots(&client).len(), 1);
    assert!(
        !w.snapshots("old.example").is_empty(),
        "old.example keeps its newest"
    );
    let log = std::fs::read_to_string(w.store().join(".byteback/server.log")).unwrap();
    assert!(log.contains("prune: deleted old.example"), "{log}");
}

/// A client whose data suddenly grows far beyond double is refused room
/// (exit 6, naming `max_growth_percent`) instead of costing others their
/// history; the client's `test` shows the server's warning.
fn a_backup_that_suddenly_doubles_is_refused_room(kind: FsKind) {
    let Some(w) = World::on("prunegrowth", kind) else {
        return;
    };
    let client = w.enroll("grow.example");
    w.server_config(
        "min_snapshot_interval = \"0s\"\nmin_free_percent = 10.0\ntarget_free_percent = 60.0\n",
    );
    w.client_config("retry_attempts = 2\nretry_pause = \"1s\"\n");
    add_server_client(&w, "victim.example");
    // A normal first backup of 40 MiB.
    let data = w.src.join("data");
    std::fs::create_dir(&data).unwrap();
    let fill = |n: u64, prefix: &str| {
        for i in 0..n {
            support::run_ok(&[
                "sh",
                "-c",
                &format!("head -c 8M /dev/urandom > '{}/{prefix}{i}'", data.display()),
            ]);
        }
    };
    fill(5, "a");
    w.backup_ok();
    // Other history fills the store to ~30% free.
    let mut day = 300;
    while free_percent(w.store()) >= 30.0 {
        old_snapshot(&w, "victim.example", &days_ago(day), 24);
        day -= 10;
    }
    let victim_before = w.snapshots("victim.example");
    // Now the client's data grows far beyond double, and beyond the free space.
    let free_bytes = byteback::store::Store::open(w.store())
        .unwrap()
        .space()
        .unwrap()
        .free_bytes;
    fill(free_bytes / (8 << 20) + 4, "b");
    let growth_before = support::run(&[
        "getfattr",
        "-n",
        "user.byteback.growth",
        &w.store().join(&client).to_string_lossy(),
    ]);
    let out = w.client(&["backup", "--source", &w.src.to_string_lossy()]);
    let growth_after = support::run(&[
        "getfattr",
        "-n",
        "user.byteback.growth",
        &w.store().join(&client).to_string_lossy(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}\n{}\n{}\n{}",
        show(&out),
        show(&growth_before),
        show(&growth_after),
        std::fs::read_to_string(w.store().join(".byteback/server.log")).unwrap_or_default()
    );
    let last = stderr(&out).lines().last().unwrap_or_default().to_owned();
    assert!(
        last.contains("max_growth_percent = 100") && last.contains("grew by"),
        "{}",
        show(&out)
    );
    assert_eq!(
        w.snapshots("victim.example"),
        victim_before,
        "nobody's history may go for it"
    );
    assert_eq!(w.snapshots(&client).len(), 1);
    // The condition shows to the client and the administrator (the log may
    // not be writable on the full disk; the alert always is).
    let out = w.client(&["test"]);
    assert!(
        stdout(&out).contains("Warning from the server: backup of grow.example grew by"),
        "{}",
        show(&out)
    );
}
