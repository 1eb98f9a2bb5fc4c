//! End to end: backups run back to back, as fast as they go, on every kind
//! of store — a local btrfs or plain destination, a remote btrfs or plain
//! store over sshd (with no minimum interval), and hardened mode. Snapshot
//! names have one-second resolution, so on a fast machine several backups
//! end within one second: each must still succeed with a snapshot of its
//! own, named in order, never ahead of the clock. And where a minimum
//! interval applies, the refusal says when the next snapshot may be taken.

use byteback_testbed as support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use jiff::Timestamp;
use support::world::{World, show, snapshot_names, stderr, stdout};
use support::{FsKind, LoopFs, TestArea};

const RUNS: usize = 3;

/// The snapshot a backup's output names ("Backup complete: snapshot NAME ...").
fn snapshot_of(out: &Output) -> String {
    assert!(out.status.success(), "{}", show(out));
    let text = stdout(out);
    text.split_whitespace()
        .skip_while(|w| *w != "snapshot")
        .nth(1)
        .unwrap_or_else(|| panic!("no snapshot named: {text}"))
        .to_owned()
}

/// Asserts that `printed` (what each backup said, in order) are `RUNS`
/// distinct snapshots, strictly in order, exactly those in `client_dir`,
/// and none ahead of the clock; prints the figures.
fn assert_distinct(what: &str, printed: &[String], client_dir: &Path, took: f64) {
    let now = Timestamp::now();
    let times: Vec<Timestamp> = printed
        .iter()
        .map(|n| n.parse().unwrap_or_else(|e| panic!("{n}: {e}")))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "{what}: not distinct and in order: {printed:?}"
    );
    assert!(
        times.iter().all(|t| *t <= now),
        "{what}: {printed:?} after {now}"
    );
    assert_eq!(snapshot_names(client_dir), printed, "{what}");
    eprintln!("{what}: {RUNS} backups in {took:.2}s: {printed:?}");
}

/// `byteback backup --destination DIR` `RUNS` times in a row, without a
/// setup, as the README's Quickstart shows (a local store has no minimum interval).
fn local_back_to_back(kind: FsKind) {
    if !support::require_root() {
        return;
    }
    let area = TestArea::new("b2b-local");
    let options: &[&str] = match kind {
        FsKind::Btrfs => &["user_subvol_rm_allowed"],
        FsKind::Ext4 => &[],
    };
    let fs = LoopFs::new(&area, kind, 512, options);
    let store = fs.mount_point.join("backups");
    let config = area.path.join("config");
    let src = area.path.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("file"), "data\n").unwrap();
    let start = Instant::now();
    let printed: Vec<String> = (0..RUNS)
        .map(|_| {
            let out = Command::new(env!("CARGO_BIN_EXE_byteback"))
                .args(["backup", "--source"])
                .arg(&src)
                .arg("--destination")
                .arg(&store)
                .env_clear()
                .env(
                    "PATH",
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                )
                .env("BYTEBACK_CONFIG_DIR", &config)
                .output()
                .unwrap();
            snapshot_of(&out)
        })
        .collect();
    let took = start.elapsed().as_secs_f64();
    let clients: Vec<_> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(clients.len(), 1, "{clients:?}");
    assert_distinct(&format!("local {kind:?}"), &printed, &clients[0], took);
}

/// Three backups in a row into a local btrfs destination, as fast as they
/// go: each succeeds with a snapshot of its own, named in order and never
/// ahead of the clock.
#[test]
fn local_btrfs_backups_back_to_back() {
    local_back_to_back(FsKind::Btrfs);
}

/// The same into a local plain destination (ext4).
#[test]
fn local_plain_backups_back_to_back() {
    local_back_to_back(FsKind::Ext4);
}

/// `RUNS` backups over ssh in a row, to a server without a minimum interval.
fn remote_back_to_back(world: &World, client: &str, what: &str) {
    std::fs::write(world.src.join("file"), "data\n").unwrap();
    let src = world.src.to_string_lossy().into_owned();
    let start = Instant::now();
    let printed: Vec<String> = (0..RUNS)
        .map(|_| snapshot_of(&world.client(&["backup", "--source", &src])))
        .collect();
    let took = start.elapsed().as_secs_f64();
    assert_distinct(what, &printed, &world.store().join(client), took);
}

fn remote(kind: FsKind) {
    let Some(w) = World::on("b2b-remote", kind) else {
        return;
    };
    let client = w.enroll("b2b.example");
    w.server_config("min_snapshot_interval = \"0s\"\n");
    remote_back_to_back(&w, &client, &format!("remote {kind:?}"));

    // A snapshot by hand at a time already taken moves to the next free
    // second, at once (it is in the past), instead of being refused.
    let at = "2026-01-01T00:00:00Z";
    let names: Vec<String> = (0..2)
        .map(|_| {
            let out = w.server(&["snapshot", "--client", &client, "--at", at]);
            assert!(out.status.success(), "{}", show(&out));
            stdout(&out).trim().to_owned()
        })
        .collect();
    assert_eq!(names, ["2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"]);

    // Where an interval applies, the refusal says so and says when.
    w.server_config("min_snapshot_interval = \"6h\"\n");
    let src = w.src.to_string_lossy().into_owned();
    let out = w.client(&["backup", "--source", &src]);
    assert!(!out.status.success(), "{}", show(&out));
    let newest: Timestamp = w.snapshots(&client).last().unwrap().parse().unwrap();
    let next = (newest + jiff::SignedDuration::from_hours(6)).strftime("%Y-%m-%dT%H:%M:%SZ");
    let err = stderr(&out);
    assert!(
        err.contains("min_snapshot_interval")
            && err.contains(&format!("the next snapshot may be taken from {next}")),
        "{}",
        show(&out)
    );
}

/// Three backups in a row to a btrfs store over ssh with no minimum
/// interval: each gets a snapshot of its own, in order, never ahead of the
/// clock; a snapshot by hand at a time already taken moves to the next free
/// second; where an interval applies, the refusal says when the next
/// snapshot may be taken.
#[test]
fn remote_btrfs_backups_back_to_back() {
    remote(FsKind::Btrfs);
}

/// The same to a plain store (ext4) over ssh.
#[test]
fn remote_plain_backups_back_to_back() {
    remote(FsKind::Ext4);
}

/// Hardened mode: backups in a row, and the privileged helper's snapshots
/// twice in a row, each get a snapshot of their own in order (the helper
/// names them by its own clock, and waits for a free name the same way);
/// root's interval refuses and says when the next may be taken.
#[test]
fn hardened_backups_back_to_back() {
    if !Path::new("/usr/sbin/visudo").is_file() {
        // tests/hardened.rs says how loudly; here it is only skipped.
        eprintln!("*** SKIPPED: hardened mode needs sudo ***");
        return;
    }
    let Some(w) = World::new("b2b-hardened") else {
        return;
    };
    let client = w.enroll("b2b-hard.example");
    w.server_config("min_snapshot_interval = \"0s\"\n");
    let out = w.harden();
    assert!(out.status.success(), "{}", show(&out));
    remote_back_to_back(&w, &client, "hardened");

    // The helper itself, twice in a row.
    let names: Vec<String> = (0..2)
        .map(|_| {
            let out = w.helper_as_user(&["snapshot", &client]);
            assert!(out.status.success(), "{}", show(&out));
            stdout(&out).trim().to_owned()
        })
        .collect();
    assert!(names[0] < names[1], "{names:?}");
    assert_eq!(w.snapshots(&client).len(), RUNS + 2);

    // Root's interval refuses, and says when the next snapshot may be taken.
    w.server_config("min_snapshot_interval = \"6h\"\n");
    let out = w.helper_as_user(&["snapshot", &client]);
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    let newest: Timestamp = names[1].parse().unwrap();
    let next = (newest + jiff::SignedDuration::from_hours(6)).strftime("%Y-%m-%dT%H:%M:%SZ");
    assert!(
        stderr(&out).contains(&format!(
            "younger than min_snapshot_interval (6h); the next may be taken from {next}"
        )),
        "{}",
        show(&out)
    );
    assert_eq!(w.snapshots(&client).len(), RUNS + 2);
}
