//! End to end: each snapshot's change log, recorded by the server from its
//! own receiver's itemized log — a scripted change (added, deleted,
//! content, mode, owner, symlink target, hard link) is listed exactly, by
//! `byteback-server diff` and its `--json`; real sshd, rsync and btrfs.

use byteback_testbed as support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, chown, symlink};

use support::world::{World, show, stdout};

/// Interval 0 so a test can take several snapshots in a row.
const NO_INTERVAL: &str = "min_snapshot_interval = \"0s\"\n";

/// A full-pass backup of the source.
fn backup(w: &World) {
    let src = w.src.to_string_lossy().into_owned();
    let out = w.client(&["backup", "--full", "--source", &src]);
    assert!(out.status.success(), "backup: {}", show(&out));
}

/// The `diff --json` of `client`'s newest two snapshots, as path (below
/// the source) → kind.
fn diff_json(w: &World, client: &str) -> (serde_json::Value, BTreeMap<String, String>) {
    let out = w.server(&["diff", "--client", client, "--json"]);
    assert!(out.status.success(), "diff: {}", show(&out));
    let value: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let prefix = format!("{}/", w.src.to_string_lossy().trim_start_matches('/'));
    let mut paths = BTreeMap::new();
    for pair in value["paths"].as_array().unwrap() {
        let path = pair[0].as_str().unwrap();
        let kind = pair[1].as_str().unwrap();
        if let Some(rel) = path.strip_prefix(&prefix) {
            paths.insert(rel.to_owned(), kind.to_owned());
        }
    }
    (value, paths)
}

/// Every kind of change in one backup: the snapshot's change log lists
/// exactly the changed paths with what changed, `diff` prints them, and
/// `diff --json` agrees; the log file sits beside the snapshot, read-only.
#[test]
fn a_scripted_change_is_listed_exactly() {
    scripted_change(support::FsKind::Btrfs);
}

/// [`a_scripted_change_is_listed_exactly`] on a plain (ext4) store, whose
/// full pass starts `current` empty, so rsync deletes nothing there: the
/// deleted path is still listed.
#[test]
fn a_scripted_change_is_listed_exactly_plain() {
    scripted_change(support::FsKind::Ext4);
}

fn scripted_change(kind: support::FsKind) {
    let Some(w) = World::on("changes", kind) else {
        return;
    };
    let client = w.enroll("changes");
    w.server_config(NO_INTERVAL);
    let s = &w.src;
    fs::create_dir(s.join("dir")).unwrap();
    for name in [
        "content",
        "mode",
        "owner",
        "gone",
        "same",
        "dir/inner",
        "linked",
    ] {
        fs::write(s.join(name), format!("{name}\n")).unwrap();
    }
    symlink("same", s.join("link")).unwrap();
    backup(&w);
    // One of each.
    fs::write(s.join("added"), "new\n").unwrap();
    fs::remove_file(s.join("gone")).unwrap();
    fs::write(s.join("content"), "CONTENT, longer\n").unwrap();
    fs::set_permissions(s.join("mode"), fs::Permissions::from_mode(0o600)).unwrap();
    chown(s.join("owner"), Some(4321), Some(4321)).unwrap();
    fs::remove_file(s.join("link")).unwrap();
    symlink("mode", s.join("link")).unwrap();
    fs::hard_link(s.join("linked"), s.join("dir/hardlink")).unwrap();
    backup(&w);

    let (value, paths) = diff_json(&w, &client);
    let want: BTreeMap<String, String> = [
        ("added", "added"),
        ("gone", "deleted"),
        ("content", "content"),
        ("mode", "metadata"),
        ("owner", "metadata"),
        ("link", "content"),
        ("dir/hardlink", "added"),
    ]
    .iter()
    .map(|(p, k)| (p.to_string(), k.to_string()))
    .collect();
    assert_eq!(paths, want, "{value}");
    assert_eq!(value["method"], "log");
    assert_eq!(value["complete"], true);
    // Nothing outside the source changed but directories' times (left out).
    assert_eq!(
        value["paths"].as_array().unwrap().len(),
        want.len(),
        "{value}"
    );

    // The text form lists the same paths.
    let out = w.server(&["diff", "--client", &client]);
    assert!(out.status.success(), "diff: {}", show(&out));
    let text = stdout(&out);
    assert!(
        text.lines().next().unwrap().contains("2 added, 1 deleted"),
        "{text}"
    );
    for (mark, path) in [
        ("+", "added"),
        ("-", "gone"),
        ("c", "content"),
        ("m", "mode"),
    ] {
        let src = w.src.to_string_lossy();
        let line = format!("{mark} {}/{path}", src.trim_start_matches('/'));
        assert!(text.lines().any(|l| l == line), "{line:?} in {text}");
    }

    // The log lies in the store's own directory, out of the receiver's
    // reach, read-only; nothing of it beside `current`.
    let snapshots = w.snapshots(&client);
    let log = w
        .store()
        .join(".byteback/changes")
        .join(&client)
        .join(format!("{}.changes", snapshots[1]));
    let mode = fs::metadata(&log).unwrap().permissions().mode();
    assert_eq!(mode & 0o222, 0, "{}", log.display());
    let beside: Vec<String> = fs::read_dir(w.store().join(&client))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("changes"))
        .collect();
    assert!(beside.is_empty(), "{beside:?}");

    // Snapshots without a log are compared tree against tree, and it says so.
    fs::remove_file(&log).unwrap();
    let (value, paths) = diff_json(&w, &client);
    assert_eq!(value["method"], "trees");
    for p in [
        "added",
        "gone",
        "content",
        "mode",
        "owner",
        "link",
        "dir/hardlink",
    ] {
        assert!(paths.contains_key(p), "{p} in {value}");
    }
}

/// Incremental backups (the change index, no `--full`) on `kind`: the
/// change log lists what each changed, the server's own deletions
/// included; the client's `byteback diff --json` prints exactly what
/// `byteback-server diff --json` prints, for the newest pair and for a
/// range of three snapshots (the logs combined), and its text form too.
fn incremental_changes_on(kind: support::FsKind) {
    let Some(w) = World::on("chg-incr", kind) else {
        return;
    };
    let client = w.enroll("chg-incr");
    w.server_config(NO_INTERVAL);
    let s = &w.src;
    for name in ["keep", "edit", "gone", "chmod", "later"] {
        fs::write(s.join(name), format!("{name}\n")).unwrap();
    }
    w.backup_ok();
    fs::write(s.join("new"), "new\n").unwrap();
    fs::remove_file(s.join("gone")).unwrap();
    fs::write(s.join("edit"), "edited, and longer\n").unwrap();
    fs::set_permissions(s.join("chmod"), fs::Permissions::from_mode(0o600)).unwrap();
    let out = w.backup_ok();
    assert!(
        support::world::incremental_paths(&out).is_some(),
        "the second backup was not incremental: {out}"
    );
    let (value, paths) = diff_json(&w, &client);
    let want: BTreeMap<String, String> = [
        ("new", "added"),
        ("gone", "deleted"),
        ("edit", "content"),
        ("chmod", "metadata"),
    ]
    .iter()
    .map(|(p, k)| (p.to_string(), k.to_string()))
    .collect();
    assert_eq!(paths, want, "{value}");
    assert_eq!(value["method"], "log", "{value}");
    // The snapshot's file count, kept from the changes without a walk.
    assert_eq!(value["files"], 5, "{value}");

    // A third backup; then the range first..third combines both logs.
    fs::remove_file(s.join("later")).unwrap();
    fs::write(s.join("new"), "new, then changed again\n").unwrap();
    w.backup_ok();
    let snaps = w.snapshots(&client);
    assert_eq!(snaps.len(), 3, "{snaps:?}");
    for args in [
        vec!["--json"],
        vec!["--json", snaps[0].as_str(), snaps[2].as_str()],
        vec![],
    ] {
        let mut server_args = vec!["diff", "--client", client.as_str()];
        server_args.extend(&args);
        let server = w.server(&server_args);
        assert!(server.status.success(), "server diff: {}", show(&server));
        let mut client_args = vec!["diff"];
        client_args.extend(&args);
        let mine = w.client(&client_args);
        assert!(mine.status.success(), "client diff: {}", show(&mine));
        assert_eq!(stdout(&mine), stdout(&server), "diff {args:?}");
    }
    let mut server_args = vec!["diff", "--client", client.as_str(), "--json"];
    server_args.extend([snaps[0].as_str(), snaps[2].as_str()]);
    let range: serde_json::Value =
        serde_json::from_str(stdout(&w.server(&server_args)).trim()).unwrap();
    let prefix = format!("{}/", w.src.to_string_lossy().trim_start_matches('/'));
    let combined: BTreeMap<String, String> = range["paths"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| {
            let rel = p[0].as_str()?.strip_prefix(&prefix)?;
            Some((rel.to_owned(), p[1].as_str()?.to_owned()))
        })
        .collect();
    let want: BTreeMap<String, String> = [
        ("new", "added"),
        ("gone", "deleted"),
        ("later", "deleted"),
        ("edit", "content"),
        ("chmod", "metadata"),
    ]
    .iter()
    .map(|(p, k)| (p.to_string(), k.to_string()))
    .collect();
    assert_eq!(combined, want, "{range}");
    assert_eq!(range["files"], 4, "{range}");

    // A name that is not a snapshot's is one clear line, exit non-zero.
    let out = w.client(&["diff", "yesterday"]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        support::world::stderr(&out).contains("not a snapshot name"),
        "{}",
        show(&out)
    );
}

/// Incremental backups on btrfs: see [`incremental_changes_on`].
#[test]
fn incremental_changes_are_logged_and_the_client_diff_agrees_btrfs() {
    incremental_changes_on(support::FsKind::Btrfs);
}

/// Incremental backups on a plain (ext4) store: see
/// [`incremental_changes_on`].
#[test]
fn incremental_changes_are_logged_and_the_client_diff_agrees_plain() {
    incremental_changes_on(support::FsKind::Ext4);
}
