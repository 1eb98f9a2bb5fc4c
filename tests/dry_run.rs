//! End to end: `--dry-run` of every command that has one and writes leaves
//! every store byte-identical, on btrfs and on plain directories (ext4).
//!
//! "Byte-identical" is a manifest of the whole tree taken before and after
//! ([`Reading::Raw`]): every file's type, mode, owner, size, mtime and
//! content, every directory's mtime, and every xattr verbatim — the store's
//! own state included: `.byteback/` (its configuration, the log, the
//! locks), the space alert and the clients' records (xattrs of the state
//! directory and of the client directories), `current` and every snapshot.
//!
//! The stores are used before the dry run as they would be in life (a
//! backup, a listing, a prune with room to spare), so the lock files that
//! any command leaves behind already exist. Each test then shows that the
//! same command without `--dry-run` does change what was compared, so a
//! comparison that passed was able to fail.

use byteback_testbed as support;
use support::days_ago;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::manifest::{self, Reading, inside};
use support::world::{World, show, snapshot_names, stderr, stdout};
use support::{FsKind, LoopFs, TestArea};

support::world::on_both_backends!(
    prune_dry_run_with_deletable_snapshots_writes_nothing,
    prune_dry_run_with_nothing_old_enough_records_no_alert,
    backup_dry_run_to_a_server_writes_nothing,
    backup_dry_run_to_a_local_store_writes_nothing,
    restore_dry_run_writes_nothing,
);

type Manifest = BTreeMap<PathBuf, manifest::Entry>;

/// Everything below `root`, every xattr included.
fn tree(root: &Path) -> Manifest {
    manifest::read(root, Reading::Raw)
}

/// What differs between two manifests, one line each, xattrs shown as
/// text (the space alert and the clients' records are xattrs).
fn changes(before: &Manifest, after: &Manifest) -> Vec<String> {
    let mut out = Vec::new();
    for (path, b) in before {
        match after.get(path) {
            None => out.push(format!("{}: removed", path.display())),
            Some(a) if a != b => {
                let mut what = Vec::new();
                let names: std::collections::BTreeSet<&String> =
                    b.xattrs.keys().chain(a.xattrs.keys()).collect();
                for name in names {
                    let (was, is) = (b.xattrs.get(name), a.xattrs.get(name));
                    if was != is {
                        let text = |v: Option<&Vec<u8>>| {
                            v.map_or("(none)".to_owned(), |v| {
                                format!("{:?}", String::from_utf8_lossy(v))
                            })
                        };
                        what.push(format!("xattr {name}: {} -> {}", text(was), text(is)));
                    }
                }
                let (mut b, mut a) = (b.clone(), a.clone());
                b.xattrs.clear();
                a.xattrs.clear();
                if a != b {
                    what.push(format!("was {b:?}, is {a:?}"));
                }
                out.push(format!("{}: {}", path.display(), what.join("; ")));
            }
            Some(_) => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        out.push(format!("{}: new", path.display()));
    }
    out
}

/// Asserts that nothing changed, naming every change.
fn assert_unchanged(what: &str, before: &Manifest, after: &Manifest) {
    let changed = changes(before, after);
    assert!(
        changed.is_empty(),
        "{what}: {} change(s):\n{}",
        changed.len(),
        changed.join("\n")
    );
}

/// Space short (pruning starts below 99.5% free) and every snapshot old
/// enough to be deleted.
const SHORT_AND_OLD: &str =
    "min_free_percent = 99.5\ntarget_free_percent = 99.9\nmin_age = \"1s\"\n";
/// Space short, and no snapshot old enough to be deleted.
const SHORT_AND_YOUNG: &str =
    "min_free_percent = 99.5\ntarget_free_percent = 99.9\nmin_age = \"3650 days\"\n";

/// Adds a client on the server only (its own key).
fn add_server_client(w: &World, name: &str) {
    let key = support::ssh_keygen(&w.area.path.join(format!("{name}-key")));
    let mut args = vec!["new-client", "--name", name];
    args.extend(key.split(' '));
    let out = w.server(&args);
    assert!(out.status.success(), "{}", show(&out));
}

/// A snapshot of `client` at `at` holding 1 MiB that no other snapshot
/// shares (written into current as the store's owner, snapshotted by hand,
/// removed from current again).
fn old_snapshot(w: &World, client: &str, at: &str) {
    let file = w.store().join(client).join("current/unique.bin");
    let script = format!("head -c 1M /dev/urandom > '{}' && sync", file.display());
    let out = w.user.run_as(&["sh", "-c", &script]);
    assert!(out.status.success(), "{}", show(&out));
    let out = w.server(&["snapshot", "--client", client, "--at", at]);
    assert!(out.status.success(), "{}", show(&out));
    let _ = std::fs::remove_file(&file);
}

/// `byteback-server status --json`, parsed.
fn status_json(w: &World) -> serde_json::Value {
    let out = w.server(&["status", "--json"]);
    assert!(out.status.success(), "status: {}", show(&out));
    serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", show(&out)))
}

/// A server with an enrolled client that has backed up once (so it can
/// ask `byteback test`), and another client with three old snapshots of
/// 1 MiB each; a prune with room to spare has run. Returns the world and
/// the enrolled client's name.
fn store_with_history(label: &str, kind: FsKind) -> Option<(World, String)> {
    let w = World::on(label, kind)?;
    let client = w.enroll("dry.example");
    std::fs::write(w.src.join("f"), "x\n").unwrap();
    w.backup_ok();
    add_server_client(&w, "old.example");
    for days in [400, 300, 200] {
        old_snapshot(&w, "old.example", &days_ago(days));
    }
    let out = w.server(&["prune"]);
    assert!(
        out.status.success() && stdout(&out).contains("Nothing to delete"),
        "{}",
        show(&out)
    );
    // status adds a space sample for the report (at most one per ten
    // minutes): taken now, so the status runs below add none, and every
    // change between two manifests is the command's under test.
    status_json(&w);
    Some((w, client))
}

/// After a dry run: status shows no alert, and the client's `byteback
/// test` is not told its backups need attention (exit 10).
fn no_alert_anywhere(w: &World, what: &str) {
    let status = status_json(w);
    assert!(
        status["store"]["alert"].is_null(),
        "{what}: status shows an alert: {}",
        status["store"]["alert"]
    );
    let out = w.client(&["test"]);
    assert!(
        out.status.success(),
        "{what}: `byteback test` afterwards: {}",
        show(&out)
    );
}

/// `prune --dry-run` when space is short and snapshots may go: it says
/// what it would delete, and the store (snapshots, log, alert, records)
/// stays byte-identical.
fn prune_dry_run_with_deletable_snapshots_writes_nothing(kind: FsKind) {
    let Some((w, _client)) = store_with_history("dryprune", kind) else {
        return;
    };
    w.server_config(SHORT_AND_OLD);
    let before = tree(w.store());
    let out = w.server(&["prune", "--dry-run"]);
    let after = tree(w.store());
    assert!(
        out.status.success() && stdout(&out).contains("would delete"),
        "{}",
        show(&out)
    );
    assert!(stdout(&out).contains("old.example"), "{}", show(&out));
    assert_unchanged("the store after prune --dry-run", &before, &after);
    no_alert_anywhere(&w, "prune --dry-run with deletable snapshots");

    // The same prune for real changes what was compared.
    let out = w.server(&["prune"]);
    assert!(
        !changes(&before, &tree(w.store())).is_empty(),
        "a real prune changed nothing the manifest sees: {}",
        show(&out)
    );
}

/// `prune --dry-run` when space is short but no snapshot is older than
/// `min_age`: nothing can be deleted, and a dry run says so without
/// recording the space alert (which status would show, and every client's
/// `byteback test` would answer with exit 10).
fn prune_dry_run_with_nothing_old_enough_records_no_alert(kind: FsKind) {
    let Some((w, _client)) = store_with_history("dryyoung", kind) else {
        return;
    };
    w.server_config(SHORT_AND_YOUNG);
    assert!(
        status_json(&w)["store"]["alert"].is_null(),
        "an alert before the dry run"
    );
    let before = tree(w.store());
    let out = w.server(&["prune", "--dry-run"]);
    let after = tree(w.store());
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("min_age"), "it says why: {}", show(&out));
    // Every consequence at once: the store, status, the client.
    let mut problems: Vec<String> = changes(&before, &after)
        .into_iter()
        .map(|c| format!("the store changed: {c}"))
        .collect();
    let alert = &status_json(&w)["store"]["alert"];
    if !alert.is_null() {
        problems.push(format!("status shows an alert: {alert}"));
    }
    let test = w.client(&["test"]);
    if !test.status.success() {
        problems.push(format!("`byteback test` afterwards: {}", show(&test)));
    }
    assert!(
        problems.is_empty(),
        "prune --dry-run with nothing old enough to delete ({}):\n{}",
        show(&out),
        problems.join("\n")
    );

    // The same prune for real records the alert where the manifest looks.
    let out = w.server(&["prune"]);
    assert!(
        !changes(&before, &tree(w.store())).is_empty(),
        "a real prune recorded nothing the manifest sees: {}",
        show(&out)
    );
}

/// `byteback backup --dry-run` to a server: the store and the client's
/// own directory (configuration, state, change index) stay byte-identical,
/// though a real backup would have changes to send.
fn backup_dry_run_to_a_server_writes_nothing(kind: FsKind) {
    let Some(w) = World::on("drybackup", kind) else {
        return;
    };
    w.enroll("dry.example");
    w.server_config("min_snapshot_interval = \"0s\"\n");
    std::fs::create_dir(w.src.join("dir")).unwrap();
    for i in 0..20 {
        std::fs::write(w.src.join(format!("dir/f{i}")), format!("{i}\n")).unwrap();
    }
    w.backup_ok();
    std::fs::write(w.src.join("dir/f0"), "changed since\n").unwrap();
    std::fs::write(w.src.join("new"), "new since\n").unwrap();
    // Hooks that leave a mark outside both directories: a dry run lists
    // them and runs none.
    let marks = w.area.path.join("hook-marks");
    for phase in ["pre-backup.d", "post-backup.d"] {
        let dir = w.client_dir.join(phase);
        std::fs::create_dir_all(&dir).unwrap();
        let hook = dir.join("10-mark");
        let script = format!("#!/bin/sh\necho {phase} >> '{}'\n", marks.display());
        std::fs::write(&hook, script).unwrap();
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));

    let store_before = tree(w.store());
    let client_before = tree(&w.client_dir);
    let src = w.src.to_string_lossy().into_owned();
    let out = w.client(&["backup", "--dry-run", "--source", &src]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("10-mark"),
        "the hooks are listed: {}",
        show(&out)
    );
    assert!(!marks.exists(), "a dry run ran a hook: {}", show(&out));
    assert_unchanged(
        "the store after backup --dry-run",
        &store_before,
        &tree(w.store()),
    );
    assert_unchanged(
        "the client's directory after backup --dry-run",
        &client_before,
        &tree(&w.client_dir),
    );

    // A real backup runs the hooks and changes both.
    w.backup_ok();
    assert_eq!(
        std::fs::read_to_string(&marks).unwrap_or_default(),
        "pre-backup.d\npost-backup.d\n"
    );
    assert!(!changes(&store_before, &tree(w.store())).is_empty());
    assert!(!changes(&client_before, &tree(&w.client_dir)).is_empty());
}

/// The client run as root with `config_dir`, in a clean environment.
fn byteback(config_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_byteback"))
        .args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("BYTEBACK_CONFIG_DIR", config_dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// `byteback backup --dry-run` to a local store: the store's filesystem
/// and the client's directory stay byte-identical; a one-off dry run to a
/// store not made yet makes neither the store nor a configuration.
fn backup_dry_run_to_a_local_store_writes_nothing(kind: FsKind) {
    if !support::require_root() {
        return;
    }
    let area = TestArea::new("drylocal");
    let options: &[&str] = match kind {
        FsKind::Btrfs => &["user_subvol_rm_allowed"],
        FsKind::Ext4 => &[],
    };
    let fs = LoopFs::new(&area, kind, 256, options);
    let store = fs.mount_point.join("backups");
    let store_s = store.to_string_lossy().into_owned();
    let config = area.path.join("config");
    let src = area.path.join("src");
    std::fs::create_dir_all(src.join("dir")).unwrap();
    for i in 0..20 {
        std::fs::write(src.join(format!("dir/f{i}")), format!("{i}\n")).unwrap();
    }
    let src_s = src.to_string_lossy().into_owned();
    let out = byteback(&config, &["setup", &store_s, "--name", "local.example"]);
    assert!(out.status.success(), "{}", show(&out));
    let out = byteback(&config, &["backup", "--source", &src_s]);
    assert!(out.status.success(), "{}", show(&out));
    std::fs::write(src.join("dir/f0"), "changed since\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));

    let disk_before = tree(&fs.mount_point);
    let config_before = tree(&config);
    let out = byteback(&config, &["backup", "--dry-run", "--source", &src_s]);
    assert!(out.status.success(), "{}", show(&out));
    assert_unchanged(
        "the local store's filesystem after backup --dry-run",
        &disk_before,
        &tree(&fs.mount_point),
    );
    assert_unchanged(
        "the client's directory after backup --dry-run",
        &config_before,
        &tree(&config),
    );

    // A one-off dry run into a store that does not exist yet.
    let fresh = fs.mount_point.join("not-made-yet");
    let no_config = area.path.join("no-config");
    let out = byteback(
        &no_config,
        &[
            "backup",
            "--dry-run",
            "--source",
            &src_s,
            "--destination",
            &fresh.to_string_lossy(),
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        !fresh.exists(),
        "a dry run made the store {}",
        fresh.display()
    );
    assert!(!no_config.exists(), "a dry run wrote a configuration");
    assert_unchanged(
        "the local store's filesystem after a one-off backup --dry-run",
        &disk_before,
        &tree(&fs.mount_point),
    );

    // A real backup changes both.
    let out = byteback(&config, &["backup", "--source", &src_s]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(!changes(&disk_before, &tree(&fs.mount_point)).is_empty());
    assert!(!changes(&config_before, &tree(&config)).is_empty());
    assert_eq!(snapshot_names(&store.join("local.example")).len(), 2);
}

/// `byteback restore --dry-run`: the store stays byte-identical, and so
/// does the directory restored into — an existing restore edited since is
/// not overwritten even with `--overwrite`, and a new target directory is
/// not made.
fn restore_dry_run_writes_nothing(kind: FsKind) {
    let Some(w) = World::on("dryrestore", kind) else {
        return;
    };
    let client = w.enroll("dry.example");
    std::fs::create_dir(w.src.join("dir")).unwrap();
    std::fs::write(w.src.join("dir/a"), "a as backed up\n").unwrap();
    std::fs::write(w.src.join("dir/b"), "b as backed up\n").unwrap();
    w.backup_ok();
    let snapshot = w.snapshots(&client)[0].clone();
    let src = w.src.to_string_lossy().into_owned();
    let wanted = format!("{src}/dir");

    // A real restore first (it lists, takes a read slot, fetches), then an
    // edit of what it restored.
    let into = w.area.path.join("restored");
    let into_s = into.to_string_lossy().into_owned();
    let out = w.client(&["restore", "--into", &into_s, &wanted]);
    assert!(out.status.success(), "{}", show(&out));
    let restored_a = inside(&into.join(&snapshot), &w.src).join("dir/a");
    assert_eq!(
        std::fs::read_to_string(&restored_a).unwrap(),
        "a as backed up\n"
    );
    std::fs::write(&restored_a, "edited after the restore\n").unwrap();
    std::fs::remove_file(restored_a.with_file_name("b")).unwrap();

    let store_before = tree(w.store());
    let into_before = tree(&into);
    let out = w.client(&[
        "restore",
        "--dry-run",
        "--overwrite",
        "--into",
        &into_s,
        &wanted,
    ]);
    assert!(
        out.status.success() && stdout(&out).contains("Would restore"),
        "{}",
        show(&out)
    );
    let fresh = w.area.path.join("never-made");
    let out = w.client(&[
        "restore",
        "--dry-run",
        "--into",
        &fresh.to_string_lossy(),
        &wanted,
    ]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(!fresh.exists(), "a dry run made {}", fresh.display());
    assert_unchanged(
        "the store after restore --dry-run",
        &store_before,
        &tree(w.store()),
    );
    assert_unchanged(
        "the restore target after restore --dry-run --overwrite",
        &into_before,
        &tree(&into),
    );

    // The same restore for real changes the target.
    let out = w.client(&["restore", "--overwrite", "--into", &into_s, &wanted]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        std::fs::read_to_string(&restored_a).unwrap(),
        "a as backed up\n"
    );
    assert!(!changes(&into_before, &tree(&into)).is_empty());
}
