//! End to end: `byteback verify` compares a snapshot with the live files
//! (changed since the backup, or differing although unchanged), and
//! `byteback-server verify` finds writable snapshots, stray names and
//! corrupt fake-super metadata — on btrfs and on plain stores.

use byteback_testbed as support;

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use support::FsKind;
use support::manifest::inside;
use support::world::{World, show, stdout};

support::world::on_both_backends!(client_verify_sorts_differences, server_verify_finds_damage);

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

/// The finding for `path`, if any.
fn finding<'a>(rows: &'a [serde_json::Value], path: &Path) -> Option<&'a serde_json::Value> {
    rows.iter()
        .find(|r| r["path"].as_str() == Some(path.to_str().unwrap()))
}

/// Runs `f` on a snapshot made writable for the while (btrfs), as root.
fn with_writable(kind: FsKind, snapshot: &Path, f: impl FnOnce()) {
    let snap = snapshot.to_string_lossy().into_owned();
    if kind == FsKind::Btrfs {
        support::run_ok(&["btrfs", "property", "set", "-ts", &snap, "ro", "false"]);
    }
    f();
    if kind == FsKind::Btrfs {
        support::run_ok(&["btrfs", "property", "set", "-ts", &snap, "ro", "true"]);
    }
}

/// The newest snapshot's directory for `client`.
fn newest(w: &World, client: &str) -> PathBuf {
    let snaps = w.snapshots(client);
    w.store()
        .join(client)
        .join(snaps.last().expect("a snapshot"))
}

/// `byteback verify` is clean right after a backup; a server copy damaged
/// with the same size and mtime is seen only with `--checksum` (exit 12);
/// files rewritten, deleted or added since the backup are reported as
/// changes, still clean; an older snapshot is verified by name, and a
/// missing one is an error.
fn client_verify_sorts_differences(kind: FsKind) {
    let Some(w) = World::on("verify", kind) else {
        return;
    };
    let client = w.enroll("verify.example");
    support::tree::populate(&w.src);
    w.backup_ok();
    let src = w.src.to_string_lossy().into_owned();

    // Right after a backup: clean, metadata and contents.
    for args in [vec!["verify", &src], vec!["verify", "--checksum", &src]] {
        let out = w.client(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", show(&out));
        assert!(
            stdout(&out).contains("0 changed since the backup")
                && stdout(&out).contains("0 differ although unchanged"),
            "{}",
            show(&out)
        );
    }

    // The server's copy of a file nobody touched is damaged: same size,
    // same mtime, other bytes. Only --checksum can see it.
    let bashrc = w.src.join("home/alice/.bashrc");
    let stored = inside(&newest(&w, &client), &bashrc);
    let mtime = std::fs::metadata(&stored).unwrap().modified().unwrap();
    with_writable(kind, &newest(&w, &client), || {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&stored)
            .unwrap();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.write_all(b"X").unwrap();
        f.set_modified(mtime).unwrap();
    });
    let out = w.client(&["verify", "--json", &src]);
    assert_eq!(out.status.code(), Some(0), "metadata only: {}", show(&out));
    assert!(
        finding(&json_lines(&out), &bashrc).is_none(),
        "{}",
        show(&out)
    );
    let out = w.client(&["verify", "--checksum", "--json", &src]);
    assert_eq!(out.status.code(), Some(12), "{}", show(&out));
    let rows = json_lines(&out);
    let f = finding(&rows, &bashrc).unwrap_or_else(|| panic!("{}", show(&out)));
    assert_eq!(f["kind"], "differs");
    assert_eq!(f["fields"], serde_json::json!(["content"]));
    assert_eq!(f["changed_since_backup"], false);
    let summary = rows.last().unwrap();
    assert_eq!(summary["kind"], "summary");
    assert_eq!(summary["unexplained"], 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("differ from snapshot"),
        "{}",
        show(&out)
    );
    // The table says the same.
    let out = w.client(&["verify", "--checksum", &src]);
    assert_eq!(out.status.code(), Some(12), "{}", show(&out));
    assert!(
        stdout(&out).lines().any(|l| l.starts_with("differs")
            && l.contains("unchanged since backup")
            && l.contains("content")
            && l.ends_with("/home/alice/.bashrc")),
        "{}",
        show(&out)
    );

    // Life goes on: a rewritten, a deleted and a new file are changes since
    // the backup, reported, and the result is still clean.
    with_writable(kind, &newest(&w, &client), || {
        // Undo the damage so only the changes below remain.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&stored)
            .unwrap();
        f.write_all(b"e").unwrap();
        f.set_modified(mtime).unwrap();
    });
    let hostname = w.src.join("etc/hostname");
    std::fs::write(&hostname, "renamed.example\n").unwrap();
    let gone = w.src.join("home/alice/notes-hardlink.txt");
    std::fs::remove_file(&gone).unwrap();
    let new = w.src.join("home/alice/new.txt");
    std::fs::write(&new, "hello\n").unwrap();
    let out = w.client(&["verify", "--checksum", "--json", &src]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let rows = json_lines(&out);
    for (path, kind) in [(&hostname, "differs"), (&gone, "missing"), (&new, "extra")] {
        let f = finding(&rows, path).unwrap_or_else(|| panic!("{path:?}: {}", show(&out)));
        assert_eq!(f["kind"], kind, "{f}");
        assert_eq!(f["changed_since_backup"], true, "{f}");
    }
    assert!(
        rows.iter().all(|r| r["changed_since_backup"] != false),
        "{}",
        show(&out)
    );
    // An older snapshot by name, and one that does not exist.
    let name = w.snapshots(&client).pop().unwrap();
    let out = w.client(&["verify", "--snapshot", &name, &src]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = w.client(&["verify", "--snapshot", "2001-01-01T00:00:00Z", &src]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().count(),
        1,
        "{}",
        show(&out)
    );
}

/// `byteback-server verify` is clean on a fresh store and finds a stray
/// hidden name beside the snapshots and corrupt fake-super metadata (exit
/// 12, clean again once repaired) and, on btrfs, a snapshot made writable;
/// `--scrub` tells the backup user what to run as root.
fn server_verify_finds_damage(kind: FsKind) {
    let Some(w) = World::on("sverify", kind) else {
        return;
    };
    let client = w.enroll("sverify.example");
    support::tree::populate(&w.src);
    w.backup_ok();
    let out = w.server(&["verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(stdout(&out).contains("0 problem(s)"), "{}", show(&out));

    // A stray hidden directory beside the snapshots.
    let stray = w.store().join(&client).join(".partial-xyz");
    std::fs::create_dir(&stray).unwrap();
    let out = w.server(&["verify", "--client", &client]);
    assert_eq!(out.status.code(), Some(12), "{}", show(&out));
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.contains("stray") && l.contains(".partial-xyz")),
        "{}",
        show(&out)
    );
    std::fs::remove_dir(&stray).unwrap();

    // Corrupt fake-super metadata on one stored file.
    let snapshot = newest(&w, &client);
    let notes = inside(&snapshot, &w.src.join("home/alice/notes.txt"));
    let notes_s = notes.to_string_lossy().into_owned();
    let old = support::run_ok(&[
        "getfattr",
        "--only-values",
        "-n",
        "user.rsync.%stat",
        &notes_s,
    ]);
    with_writable(kind, &snapshot, || {
        support::run_ok(&[
            "setfattr",
            "-n",
            "user.rsync.%stat",
            "-v",
            "garbage",
            &notes_s,
        ]);
    });
    let out = w.server(&["verify", "--json"]);
    assert_eq!(out.status.code(), Some(12), "{}", show(&out));
    let rows = json_lines(&out);
    assert!(
        rows.iter().any(|r| r["kind"] == "metadata"
            && r["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("/home/alice/notes.txt"))),
        "{}",
        show(&out)
    );
    assert_eq!(rows.last().unwrap()["kind"], "summary");
    with_writable(kind, &snapshot, || {
        support::run_ok(&[
            "setfattr",
            "-n",
            "user.rsync.%stat",
            "-v",
            old.trim_end_matches('\n'),
            &notes_s,
        ]);
    });
    let out = w.server(&["verify"]);
    assert_eq!(out.status.code(), Some(0), "repaired: {}", show(&out));

    if kind == FsKind::Btrfs {
        // A snapshot whose read-only flag root cleared.
        let snap = snapshot.to_string_lossy().into_owned();
        support::run_ok(&["btrfs", "property", "set", "-ts", &snap, "ro", "false"]);
        let out = w.server(&["verify"]);
        assert_eq!(out.status.code(), Some(12), "{}", show(&out));
        assert!(
            stdout(&out)
                .lines()
                .any(|l| l.contains("writable") && l.contains(&snap)),
            "{}",
            show(&out)
        );
        support::run_ok(&["btrfs", "property", "set", "-ts", &snap, "ro", "true"]);
        // Scrubbing needs root: the backup user is told what to run.
        let out = w.server(&["verify", "--scrub"]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        assert!(
            stdout(&out).contains("scrub: needs root; as root run: btrfs scrub start -B"),
            "{}",
            show(&out)
        );
    } else {
        let out = w.server(&["verify", "--scrub"]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        assert!(stdout(&out).contains("plain store"), "{}", show(&out));
    }
}
