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
    let Some(w) = World::new("changes") else {
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

    // The log lies beside the snapshot, read-only.
    let snapshots = w.snapshots(&client);
    let log = w
        .store()
        .join(&client)
        .join(format!("{}.changes", snapshots[1]));
    let mode = fs::metadata(&log).unwrap().permissions().mode();
    assert_eq!(mode & 0o222, 0, "{}", log.display());

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
