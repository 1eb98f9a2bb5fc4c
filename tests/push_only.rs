//! End to end: a client whose key is push-only (`new-client --push-only`,
//! or switched with `--replace-key`) backs up as usual, full and
//! incremental, but its `list`, `restore`, `verify` and `diff` are refused (exit
//! 6, the remedy named) until the administrator opens a window with
//! `byteback-server grant-restore`, and refused again when the window ends
//! or is revoked — with real sshd and btrfs.

use byteback_testbed as support;

use std::process::Output;

use support::world::{World, show, stderr};

const CLIENT: &str = "push.example";

/// The client's four reads: a listing, a restore, a verify, a diff.
fn reads(w: &World) -> [(&'static str, Output); 4] {
    let src = w.src.to_string_lossy().into_owned();
    let into = w.area.path.join("restored");
    let into = into.to_string_lossy().into_owned();
    [
        ("list", w.client(&["list", &format!("{src}/*")])),
        (
            "restore",
            w.client(&["restore", "--into", &into, &format!("{src}/file")]),
        ),
        ("verify", w.client(&["verify", &src])),
        ("diff", w.client(&["diff"])),
    ]
}

/// Every read refused by the role table, with the remedy, exit 6.
fn assert_refused(w: &World, when: &str) {
    for (what, out) in reads(w) {
        assert_eq!(out.status.code(), Some(6), "{when}: {what}: {}", show(&out));
        let text = stderr(&out);
        assert!(
            text.contains("this key may only push"),
            "{when}: {what}: {}",
            show(&out)
        );
        assert!(
            text.contains(&format!(
                "byteback-server grant-restore --client {CLIENT} --for 1h"
            )),
            "{when}: {what}: {}",
            show(&out)
        );
        assert!(
            text.contains(&format!("byteback-server list --client {CLIENT}")),
            "{when}: {what}: {}",
            show(&out)
        );
    }
}

/// A push-only client backs up (full, then incremental) without a window;
/// its list, restore, verify and diff are refused with the remedy and
/// exit 6; within `grant-restore --for 30s` all four work; after `--revoke`, and
/// after a short window has run out, they are refused again; and a
/// second backup still works throughout.
#[test]
fn a_push_only_key_reads_only_within_a_granted_window() {
    let Some(w) = World::new("push-only") else {
        return;
    };
    w.enroll(CLIENT);
    w.server_config("min_snapshot_interval = \"0s\"\n");
    // Switched to push-only: the same key, with --replace-key.
    let public = std::fs::read_to_string(w.client_dir.join("key.pub")).unwrap();
    let mut args = vec![
        "new-client",
        "--name",
        CLIENT,
        "--push-only",
        "--replace-key",
    ];
    args.extend(public.split_whitespace());
    let out = w.server(&args);
    assert!(out.status.success(), "{}", show(&out));
    let out = w.server(&["clients"]);
    assert!(
        support::world::stdout(&out).contains("push only"),
        "{}",
        show(&out)
    );

    std::fs::write(w.src.join("file"), "first\n").unwrap();
    w.backup_ok();
    std::fs::write(w.src.join("file"), "second\n").unwrap();
    w.backup_ok();
    assert_eq!(w.snapshots(CLIENT).len(), 2);
    assert_refused(&w, "before any window");

    let out = w.server(&["grant-restore", "--client", CLIENT, "--for", "30s"]);
    assert!(out.status.success(), "{}", show(&out));
    for (what, out) in reads(&w) {
        assert_eq!(
            out.status.code(),
            Some(0),
            "granted: {what}: {}",
            show(&out)
        );
    }
    let restored = std::fs::read_dir(w.area.path.join("restored"))
        .unwrap()
        .count();
    assert!(restored > 0, "nothing restored");

    let out = w.server(&["grant-restore", "--client", CLIENT, "--revoke"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_refused(&w, "after --revoke");

    let out = w.server(&["grant-restore", "--client", CLIENT, "--for", "2s"]);
    assert!(out.status.success(), "{}", show(&out));
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_refused(&w, "after the window ran out");

    // Backups went on regardless.
    std::fs::write(w.src.join("file"), "third\n").unwrap();
    w.backup_ok();
    assert_eq!(w.snapshots(CLIENT).len(), 3);
    println!("push-only: 3 backups, 12 reads refused outside windows, 4 served within one");
}
