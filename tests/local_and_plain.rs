//! End to end: stores on any filesystem (plain directories) and local
//! destinations — no sshd, no server user — and the promises that must
//! hold there too: old snapshots never change, unchanged files cost no
//! space, and a crash never leaves a half snapshot that is listed.

use byteback_testbed as support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::manifest::{self, Reading, inside};
use support::world::{World, show, snapshot_names, stdout};
use support::{FsKind, LoopFs, TestArea};

/// The client run as root against a local store, in a clean environment.
fn byteback(config_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_byteback"))
        .args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("BYTEBACK_CONFIG_DIR", config_dir)
        .output()
        .unwrap()
}

fn server(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_byteback-server"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", show(&out));
    stdout(&out)
}

fn local_destination(kind: FsKind) {
    if !support::require_root() {
        return;
    }
    let area = TestArea::new("local");
    let options: &[&str] = if kind == FsKind::Btrfs {
        &["user_subvol_rm_allowed"]
    } else {
        &[]
    };
    let fs = LoopFs::new(&area, kind, 512, options);
    let store = fs.mount_point.join("backups");
    let store_s = store.to_string_lossy().into_owned();
    let config = area.path.join("config");
    let src = area.path.join("src");
    std::fs::create_dir(&src).unwrap();
    support::tree::populate(&src);
    let src_s = src.to_string_lossy().into_owned();

    // setup DIR records a local destination; no key, no server.
    let out = ok(byteback(
        &config,
        &["setup", &store_s, "--name", "local.example"],
    ));
    assert!(out.contains("on this machine"), "{out}");
    assert!(!config.join("key").exists());
    // The store is made on first use, with the backend its filesystem calls for.
    let out = ok(byteback(&config, &["backup", "--source", &src_s]));
    assert!(out.contains("Backup complete: snapshot"), "{out}");
    let backend = if kind == FsKind::Btrfs {
        "btrfs"
    } else {
        "plain"
    };
    let server_toml = std::fs::read_to_string(store.join(".byteback/server.toml")).unwrap();
    assert!(
        server_toml.contains(&format!("\nbackend = \"{backend}\"\n")),
        "{server_toml}"
    );
    let client_dir = store.join("local.example");
    let first = snapshot_names(&client_dir);
    assert_eq!(first.len(), 1);
    let source = manifest::read(&src, Reading::Plain);
    manifest::assert_same(
        "local snapshot",
        &source,
        &manifest::read(&inside(&client_dir.join(&first[0]), &src), Reading::Plain),
    );

    // A second backup right away (no interval for a local store).
    std::fs::write(src.join("etc/hostname"), "changed.example\n").unwrap();
    ok(byteback(&config, &["backup", "--source", &src_s]));
    let snaps = snapshot_names(&client_dir);
    assert_eq!(snaps.len(), 2);
    manifest::assert_same(
        "first local snapshot after the second",
        &source,
        &manifest::read(&inside(&client_dir.join(&first[0]), &src), Reading::Plain),
    );

    // The local rsync logged its change: `diff` reads it from the log.
    let out = ok(byteback(&config, &["diff", "--json"]));
    let diff: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(diff["method"], "log", "{diff}");
    let hostname = format!("{}/etc/hostname", src_s.trim_start_matches('/'));
    assert_eq!(
        diff["paths"],
        serde_json::json!([[hostname, "content"]]),
        "{diff}"
    );

    // list, snapshots and restore against it.
    let out = ok(byteback(
        &config,
        &["list", "--all", "--json", &format!("{src_s}/etc/hostname")],
    ));
    assert_eq!(out.lines().count(), 2, "{out}");
    let out = ok(byteback(&config, &["snapshots"]));
    assert!(out.contains(&snaps[0]) && out.contains(&snaps[1]), "{out}");
    let into = area.path.join("restored");
    ok(byteback(
        &config,
        &[
            "restore",
            "--snapshot",
            &snaps[0],
            "--into",
            &into.to_string_lossy(),
            &src_s,
        ],
    ));
    manifest::assert_same(
        "restored from local",
        &source,
        &manifest::read(&inside(&into.join(&snaps[0]), &src), Reading::Plain),
    );

    // And pruning: the least important deletable snapshot goes.
    let out = server(&["prune", "--force", "--store", &store_s]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(snapshot_names(&client_dir), [snaps[1].clone()]);

    // A one-off backup with no configuration at all, as in the Quickstart.
    let fresh = area.path.join("no-config");
    let other = fs.mount_point.join("other-store");
    let out = byteback(
        &fresh,
        &[
            "backup",
            "--source",
            &src_s,
            "--destination",
            &other.to_string_lossy(),
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        !fresh.exists(),
        "a one-off local backup writes no configuration"
    );
    let out = byteback(
        &fresh,
        &["snapshots", "--destination", &other.to_string_lossy()],
    );
    assert!(
        out.status.success() && stdout(&out).lines().count() == 2,
        "{}",
        show(&out)
    );

    // A store inside the sources is never backed up into itself.
    let nested = src.join("var/backups");
    let out = byteback(
        &fresh,
        &[
            "backup",
            "--dry-run",
            "--source",
            &src_s,
            "--destination",
            &nested.to_string_lossy(),
        ],
    );
    assert!(
        stdout(&out).contains("(the backup store itself)"),
        "{}",
        show(&out)
    );
}

/// A local destination on btrfs: `setup DIR` needs no key or server, the
/// store is made on first use, backups right after one another are
/// identical to the source, `diff` reads the change the local rsync
/// logged, listing, restore and pruning work on it, a
/// one-off backup needs no configuration, and a store inside the sources is
/// never backed up into itself.
#[test]
fn local_destination_on_btrfs() {
    local_destination(FsKind::Btrfs);
}

/// The same local destination on ext4, where the store is plain
/// directories.
#[test]
fn local_destination_on_ext4() {
    local_destination(FsKind::Ext4);
}

/// Sets the user.note xattr.
fn set_note(path: &Path, value: &str) {
    rustix::fs::lsetxattr(
        path,
        "user.note",
        value.as_bytes(),
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
}

/// Plain snapshots never change when later backups change a file's content
/// (same size and mtime), mode, owner or xattrs, and an untouched file is
/// one inode shared by every snapshot.
#[test]
fn plain_snapshots_never_change() {
    let Some(w) = World::on("immutable", FsKind::Ext4) else {
        return;
    };
    let client = w.enroll("immutable.example");
    w.server_config("min_snapshot_interval = \"0s\"\n");
    let file = w.src.join("file");
    std::fs::write(&file, "original\n").unwrap();
    std::fs::write(w.src.join("other"), "untouched\n").unwrap();
    set_note(&file, "first");
    support::let_changes_settle();
    let mut history: Vec<(String, std::collections::BTreeMap<PathBuf, manifest::Entry>)> =
        Vec::new();
    let mut backup = |w: &World| {
        w.backup_ok();
        let snap = w.snapshots(&client).last().unwrap().clone();
        let tree = inside(&w.store().join(&client).join(&snap), &w.src);
        history.push((snap, manifest::read(&tree, Reading::FakeSuper)));
        // Every older snapshot is exactly as it was.
        for (old, want) in &history {
            let tree = inside(&w.store().join(&client).join(old), &w.src);
            manifest::assert_same(
                &format!("snapshot {old}"),
                want,
                &manifest::read(&tree, Reading::FakeSuper),
            );
        }
    };
    backup(&w);
    // Content only (same size, same mtime: rsync must still not write into the shared inode).
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::write(&file, "ORIGINAL\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime + Duration::from_secs(5))
        .unwrap();
    backup(&w);
    // Mode only.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    backup(&w);
    // Owner only.
    std::os::unix::fs::chown(&file, Some(4321), Some(4321)).unwrap();
    backup(&w);
    // Xattrs only.
    set_note(&file, "second");
    backup(&w);
    assert_eq!(history.len(), 5);
    // The untouched file is one inode shared by every snapshot.
    let inodes: std::collections::BTreeSet<u64> = history
        .iter()
        .map(|(s, _)| {
            std::fs::metadata(inside(&w.store().join(&client).join(s), &w.src).join("other"))
                .unwrap()
                .ino()
        })
        .collect();
    assert_eq!(
        inodes.len(),
        1,
        "unchanged files are hard links between snapshots"
    );
}

/// A plain store grows with the changes only: after 1% of 1,000 files
/// change, the new snapshot costs about those files and its directories.
#[test]
fn plain_space_grows_with_the_changes_only() {
    let Some(w) = World::on("plainspace", FsKind::Ext4) else {
        return;
    };
    let client = w.enroll("space.example");
    w.server_config("min_snapshot_interval = \"0s\"\n");
    // 1,000 files of 64 KiB (62.5 MiB) in 20 directories.
    let mut seed: u64 = 0x243f6a8885a308d3;
    let mut random = |n: usize| {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect::<Vec<u8>>()
    };
    for d in 0..20 {
        let dir = w.src.join(format!("d{d:02}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..50 {
            std::fs::write(dir.join(format!("f{f:02}")), random(64 << 10)).unwrap();
        }
    }
    support::let_changes_settle();
    w.backup_ok();
    let used = |w: &World| {
        support::run_ok(&["sync"]);
        let s = rustix::fs::statvfs(w.store()).unwrap();
        (s.f_blocks - s.f_bfree) * s.f_frsize
    };
    let before = used(&w);
    // Change 1% of the files.
    for d in 0..10 {
        std::fs::write(w.src.join(format!("d{d:02}/f00")), random(64 << 10)).unwrap();
    }
    w.backup_ok();
    let grown = used(&w) - before;
    let changed: u64 = 10 * (64 << 10);
    eprintln!("second backup: {grown} bytes used for {changed} bytes changed");
    // The changed files, plus the new snapshot's 21 directories and a little metadata.
    assert!(
        grown <= changed + (1 << 20),
        "{grown} bytes for {changed} changed bytes"
    );
    assert_eq!(w.snapshots(&client).len(), 2);
}

/// A prune killed part-way through deleting a plain snapshot of 10,000
/// files leaves it whole or unlisted, never half listed, and the next
/// backup finishes the deletion.
#[test]
fn a_crash_while_deleting_a_plain_snapshot_is_repaired() {
    let Some(w) = World::on("plaincrash", FsKind::Ext4) else {
        return;
    };
    let client = w.enroll("crash.example");
    w.server_config("min_snapshot_interval = \"0s\"\n");
    for d in 0..40 {
        let dir = w.src.join(format!("d{d:02}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..250 {
            std::fs::write(dir.join(format!("f{f:03}")), format!("{d} {f}\n")).unwrap();
        }
    }
    w.backup_ok();
    std::fs::write(w.src.join("d00/f000"), "changed\n").unwrap();
    w.backup_ok();
    let snaps = w.snapshots(&client);
    let oldest = w.store().join(&client).join(&snaps[0]);
    let oldest_manifest = manifest::read(&oldest, Reading::FakeSuper);

    // Kill a forced prune of the older snapshot (10,000 files) part-way.
    let bin = w.server_bin.to_string_lossy().into_owned();
    let mut child = Command::new(&bin)
        .args(["prune", "--force"])
        .env_clear()
        .env("HOME", w.store())
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir(w.store())
        .uid(w.user.uid)
        .gid(w.user.gid)
        .spawn()
        .unwrap();
    let doomed = w
        .store()
        .join(&client)
        .join(format!(".deleting-{}", snaps[0]));
    // Until the deletion has begun (or the prune has ended): a deadline,
    // not a number of polls a slow machine could outlast.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !doomed.exists() && child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the prune began no deletion within 60s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // SIGKILL, or nothing if the prune has ended (std knows it was reaped).
    child.kill().unwrap();
    let _ = child.wait();

    // Whatever moment it died at, the snapshot is either whole or not listed.
    let listed = stdout(&w.server(&["snapshots", "--client", &client]));
    eprintln!(
        "after the kill: listed {:?}, half-deleted left: {}",
        listed.trim(),
        doomed.exists()
    );
    if listed.contains(&snaps[0]) {
        manifest::assert_same(
            "surviving snapshot",
            &oldest_manifest,
            &manifest::read(&oldest, Reading::FakeSuper),
        );
    } else {
        assert!(!oldest.exists());
    }
    assert!(listed.contains(&snaps[1]), "{listed}");
    // The next backup finishes the deletion.
    w.backup_ok();
    assert!(!doomed.exists(), "the half-deleted snapshot was cleaned up");
    let names: Vec<String> = std::fs::read_dir(w.store().join(&client))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with(".deleting-") && !n.starts_with(".partial-")),
        "{names:?}"
    );
}

use std::os::unix::process::CommandExt;

/// A same-size rewrite within the same second reaches a local store too
/// (times are compared to the nanosecond).
#[test]
fn a_same_second_rewrite_reaches_a_local_store() {
    if !support::require_root() {
        return;
    }
    let area = TestArea::new("localsame");
    let fs = LoopFs::new(&area, FsKind::Ext4, 256, &[]);
    let store = fs.mount_point.join("backups");
    let config = area.path.join("config");
    let src = area.path.join("src");
    std::fs::create_dir(&src).unwrap();
    let file = src.join("ledger");
    let write_at = |content: &str, stamp: &str| {
        std::fs::write(&file, content).unwrap();
        support::run_ok(&["touch", "-m", "-d", stamp, &file.to_string_lossy()]);
    };
    let store_s = store.to_string_lossy().into_owned();
    let src_s = src.to_string_lossy().into_owned();
    ok(byteback(
        &config,
        &["setup", &store_s, "--name", "local.example"],
    ));
    write_at("balance 100\n", "2026-01-01 00:00:00.100");
    ok(byteback(&config, &["backup", "--source", &src_s]));
    write_at("balance 999\n", "2026-01-01 00:00:00.900");
    ok(byteback(&config, &["backup", "--source", &src_s]));
    let snaps = snapshot_names(&store.join("local.example"));
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    let kept = inside(&store.join("local.example").join(&snaps[1]), &src).join("ledger");
    assert_eq!(std::fs::read_to_string(kept).unwrap(), "balance 999\n");
}
