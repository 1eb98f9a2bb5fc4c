//! End to end: hardened mode on a real btrfs with real sudo. Snapshots are
//! root's and read-only, the backup user can neither clear the flag nor
//! delete, rename or move one, and the privileged helper deletes only what
//! the prune policy deletes next.

use byteback_testbed as support;
use support::days_ago;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

use support::world::{World, show, stderr, stdout};

use support::world::HARDENED_DIR as CONFIG_DIR;

/// sudo must be here: the test installs nothing itself, but fails under CI
/// (where install.sh installs it) and says so loudly elsewhere.
fn require_sudo() -> bool {
    let found = ["/usr/bin/sudo", "/bin/sudo"]
        .iter()
        .any(|p| Path::new(p).is_file())
        && Path::new("/usr/sbin/visudo").is_file();
    if found {
        return true;
    }
    let msg = "hardened-mode tests need sudo and visudo: apt-get install sudo (install.sh does)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("\n\n*** {msg} ***\n");
    }
    eprintln!("\n*** SKIPPED: {msg} ***\n");
    false
}

/// Turns hardened mode on (as root), checks what it says, and again: all
/// kept.
fn harden(w: &World) {
    let out = w.harden();
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("Hardened mode is on"), "{text}");
    assert!(text.contains("visudo -cf: ok"), "{text}");
    let out = w.harden();
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert_eq!(text.matches("(kept)").count(), 3, "{text}");
    assert!(
        text.contains("made root's and sticky: 0 client directories, 0 snapshots"),
        "{text}"
    );
}

/// Asserts a refusal: exit `code`, one line on stderr containing `why`.
fn refused(out: &Output, code: i32, why: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", show(out));
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "{}", show(out));
    assert!(err.contains(why), "{why}: {}", show(out));
}

/// What `prune --dry-run` would delete, in order, as `CLIENT SNAPSHOT`.
fn dry_run(w: &World) -> Vec<String> {
    let out = w.server(&["prune", "--dry-run"]);
    assert!(out.status.success(), "{}", show(&out));
    stdout(&out)
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter_map(|l| l.split(" (").next())
        .map(str::to_owned)
        .collect()
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Hardened mode: a backup's snapshot is root's and read-only, and the
/// backup user cannot clear the flag, delete, remove, move or write it;
/// backups go on (`current` is the user's again, verify passes), a killed
/// helper's `current` is given back, and without the sudo rule the server
/// says so and takes no snapshot.
#[test]
fn backups_make_root_owned_snapshots_the_user_cannot_touch() {
    if !require_sudo() {
        return;
    }
    let Some(w) = World::new("hardened") else {
        return;
    };
    let client = w.enroll("hard.example");
    w.server_config("min_snapshot_interval = \"0s\"\n");
    harden(&w);
    let dir = w.store().join(&client);
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (0, w.user.gid, 0o1775),
        "the client's directory is root's, the user's group, sticky"
    );

    std::fs::write(w.src.join("file"), "one\n").unwrap();
    w.backup_ok();
    let names = w.snapshots(&client);
    assert_eq!(names.len(), 1, "{names:?}");
    let snap = dir.join(&names[0]);
    let meta = std::fs::symlink_metadata(&snap).unwrap();
    assert_eq!((meta.uid(), meta.ino()), (0, 256), "a root-owned subvolume");
    let ro = support::run_ok(&["btrfs", "property", "get", "-ts", &path(&snap), "ro"]);
    assert_eq!(ro.trim(), "ro=true");
    let file = snap.join(w.src.strip_prefix("/").unwrap()).join("file");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "one\n");

    // The backup user can neither clear the flag, nor delete, nor move it.
    let s = path(&snap);
    for argv in [
        vec!["btrfs", "property", "set", "-ts", &s, "ro", "false"],
        vec!["btrfs", "subvolume", "delete", &s],
        vec!["rm", "-rf", &s],
        vec!["mv", &s, &path(&dir.join("moved"))],
        vec!["mv", &s, &path(&w.store().join("moved"))],
        vec!["sh", "-c", &format!("echo x > '{}'", file.display())],
    ] {
        let out = w.user.run_as(&argv);
        assert!(!out.status.success(), "{argv:?} succeeded: {}", show(&out));
    }
    assert_eq!(w.snapshots(&client), names);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "one\n");
    let ro = support::run_ok(&["btrfs", "property", "get", "-ts", &s, "ro"]);
    assert_eq!(ro.trim(), "ro=true");

    // Backups go on: current, the records and the next snapshot work.
    std::fs::write(w.src.join("file"), "two\n").unwrap();
    w.backup_ok();
    let names = w.snapshots(&client);
    assert_eq!(names.len(), 2, "{names:?}");
    let second = std::fs::symlink_metadata(dir.join(&names[1])).unwrap();
    assert_eq!(second.uid(), 0);
    let current = std::fs::symlink_metadata(dir.join("current")).unwrap();
    assert_eq!(current.uid(), w.user.uid, "current is the user's again");
    let growth = support::run(&[
        "getfattr",
        "-n",
        "user.byteback.growth",
        &path(&dir.join(".records")),
    ]);
    assert!(growth.status.success(), "{}", show(&growth));
    let out = w.client(&["test"]);
    assert!(out.status.success(), "{}", show(&out));
    // Root's snapshots and the records' directory are what verify expects.
    let out = w.server(&["verify"]);
    assert!(out.status.success(), "{}", show(&out));

    // A helper killed while current was root's: the next snapshot gives it
    // back. A partial one's marker is root's too.
    std::os::unix::fs::chown(dir.join("current"), Some(0), Some(0)).unwrap();
    let out = w.helper_as_user(&["snapshot", &client, "--partial"]);
    assert!(out.status.success(), "{}", show(&out));
    let name = stdout(&out).trim().to_owned();
    let current = std::fs::symlink_metadata(dir.join("current")).unwrap();
    assert_eq!((current.uid(), current.gid()), (w.user.uid, w.user.gid));
    let marker = std::fs::symlink_metadata(dir.join(format!("{name}.partial"))).unwrap();
    assert_eq!(marker.uid(), 0);
    let out = w.server(&["snapshots", "--client", &client]);
    assert!(
        stdout(&out).contains(&format!("{client} {name} partial")),
        "{}",
        show(&out)
    );

    // Without the sudo rule the server says so in one line, and takes no
    // snapshot itself.
    std::fs::remove_file(format!("/etc/sudoers.d/byteback-{}", w.user.name)).unwrap();
    let out = w.server(&["snapshot", "--client", &client]);
    refused(&out, 1, "hardened mode: sudo: ");
    assert_eq!(w.snapshots(&client).len(), 3);
}

/// Hardened mode: history made before hardening is adopted, and the
/// privileged helper refuses what the policy keeps (with plenty of space, a
/// client's newest, anything but the plan's next, a looser policy in the
/// user's `server.toml`); prune deletes through it in plan order and
/// reclaims unsnapshotted data without costing history; bad names,
/// symlinked client directories and other callers are refused.
#[test]
fn the_helper_deletes_only_what_the_policy_deletes_next() {
    if !require_sudo() {
        return;
    }
    let Some(w) = World::new("hardprune") else {
        return;
    };
    let out = w.server(&["setup"]);
    assert!(out.status.success(), "{}", show(&out));
    // History made before hardening is adopted: root's and read-only.
    let (old, mid, recent, b_only) = (days_ago(60), days_ago(8), days_ago(3), days_ago(4));
    w.add_client_with_file("a.example", "f", "a\n", &old);
    for at in [&mid, &recent] {
        let out = w.server(&["snapshot", "--client", "a.example", "--at", at]);
        assert!(out.status.success(), "{}", show(&out));
    }
    w.add_client_with_file("b.example", "g", "b\n", &b_only);
    harden(&w);
    let a = w.store().join("a.example");
    for name in w.snapshots("a.example") {
        let meta = std::fs::symlink_metadata(a.join(&name)).unwrap();
        assert_eq!(meta.uid(), 0, "{name} adopted");
        let ro = support::run_ok(&[
            "btrfs",
            "property",
            "get",
            "-ts",
            &path(&a.join(&name)),
            "ro",
        ]);
        assert_eq!(ro.trim(), "ro=true", "{name}");
    }

    // Plenty of space: nothing may go, the oldest included.
    let out = w.helper_as_user(&["delete", "a.example", &old]);
    refused(&out, 6, "target_free_percent");
    assert!(a.join(&old).exists());

    // The policy is root's: the user's server.toml cannot loosen it.
    let out = w.user.run_as(&[
        "sh",
        "-c",
        "printf 'backend = \"btrfs\"\\nmin_free_percent = 99.5\\ntarget_free_percent = 99.9\\nmin_age = \"1s\"\\n' > .byteback/server.toml",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let out = w.helper_as_user(&["delete", "a.example", &old]);
    refused(&out, 6, "target_free_percent");
    let config = w.hardened_config();
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace("min_free_percent = 5.0", "min_free_percent = 99.5")
        .replace("target_free_percent = 10.0", "target_free_percent = 99.9")
        .replace("min_age = \"7 days\"", "min_age = \"1s\"");
    std::fs::write(&config, text).unwrap();

    // Short of space now: still only the plan's first, never a newest.
    let planned = dry_run(&w);
    assert_eq!(planned.len(), 2, "{planned:?}");
    let second: Vec<&str> = planned[1].split(' ').collect();
    let out = w.helper_as_user(&["delete", second[0], second[1]]);
    refused(&out, 6, &format!("deletes {} first", planned[0]));
    let out = w.helper_as_user(&["delete", "a.example", &recent]);
    refused(&out, 6, "is a.example's newest");
    let out = w.helper_as_user(&["delete", "b.example", &b_only]);
    refused(&out, 6, "is b.example's newest");
    let out = w.server(&["prune", "--force"]);
    refused(&out, 6, "not available in hardened mode");
    let out = w.server(&["snapshot", "--client", "a.example", "--at", &old]);
    refused(&out, 2, "not available in hardened mode");
    let out = w.server(&["remove-client", "b.example"]);
    refused(&out, 6, "--keep-snapshots");

    // A snapshot by hand goes through the helper, and so does the prune
    // that follows every snapshot: it deletes, in the policy's order,
    // every snapshot but each client's newest (the store stays short).
    let out = w.server(&["snapshot", "--client", "a.example"]);
    assert!(out.status.success(), "{}", show(&out));
    let newest = stdout(&out).trim().to_owned();
    assert_eq!(std::fs::symlink_metadata(a.join(&newest)).unwrap().uid(), 0);
    let deleted_by_prune = || -> Vec<String> {
        let log = std::fs::read_to_string(w.store().join(".byteback/server.log")).unwrap();
        log.lines()
            .filter_map(|l| l.split_once("prune: deleted ").map(|(_, d)| d))
            .filter_map(|l| l.split(" (").next())
            .map(str::to_owned)
            .collect()
    };
    let mut deleted = deleted_by_prune();
    let mut expected = [
        format!("a.example {old}"),
        format!("a.example {mid}"),
        format!("a.example {recent}"),
    ];
    expected.sort();
    deleted.sort();
    assert_eq!(deleted, expected, "every snapshot but each client's newest");
    assert_eq!(w.snapshots("a.example"), std::slice::from_ref(&newest));
    assert_eq!(w.snapshots("b.example"), std::slice::from_ref(&b_only));
    assert!(dry_run(&w).is_empty(), "nothing left to delete");

    // Data no snapshot holds, over its limit, is rolled back (a reflinked
    // copy of the newest, root's, snapshot), and no history goes.
    let junk = a.join("current/junk");
    let out = w
        .user
        .run_as(&["sh", "-c", &format!("echo junk > '{}'", junk.display())]);
    assert!(out.status.success(), "{}", show(&out));
    let out = w.user.run_as(&[
        "setfattr",
        "-n",
        "user.byteback.growth",
        "-v",
        "v2 1 999999999",
        &path(&a.join(".records")),
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let out = w.server(&["prune"]);
    assert_eq!(out.status.code(), Some(9), "{}", show(&out));
    let log = std::fs::read_to_string(w.store().join(".byteback/server.log")).unwrap();
    assert!(log.contains("prune: reclaimed"), "{log}");
    assert!(
        stderr(&out).contains("every snapshot left is a client's newest"),
        "{}",
        show(&out)
    );
    assert_eq!(deleted_by_prune().len(), 3, "no history went");
    assert_eq!(w.snapshots("a.example"), std::slice::from_ref(&newest));
    assert_eq!(w.snapshots("b.example"), std::slice::from_ref(&b_only));
    assert!(!junk.exists(), "current was rolled back");
    assert_eq!(std::fs::read_to_string(a.join("current/f")).unwrap(), "a\n");
    let current = std::fs::symlink_metadata(a.join("current")).unwrap();
    assert_eq!((current.uid(), current.ino()), (w.user.uid, 256));

    // Bad requests: one line each, nothing done.
    let evil = w.store().join("evil");
    let out = w.user.run_as(&["ln", "-s", "a.example", &path(&evil)]);
    assert!(out.status.success(), "{}", show(&out));
    let out = w.helper_as_user(&["snapshot", "evil"]);
    refused(&out, 6, "not a real directory");
    let out = w.helper_as_user(&["delete", "evil", &newest]);
    refused(&out, 6, "not a real directory");
    for args in [
        &["snapshot", "a.example/current"][..],
        &["snapshot", ".."],
        &["delete", "../a.example", &newest],
        &["delete", "a.example", "../b.example"],
        &["delete", "a.example", &newest, "--force"],
        &["rollback", "a.example"],
    ] {
        let out = w.helper_as_user(args);
        refused(&out, 2, "refused: ");
    }
    // A caller whose uid the file does not name, or none.
    let helper = &w.helper();
    let direct = |uid: Option<&str>| {
        let mut cmd = Command::new(helper);
        cmd.args(["delete", "a.example", &newest]).env_clear();
        if let Some(uid) = uid {
            cmd.env("SUDO_UID", uid);
        }
        cmd.output().unwrap()
    };
    refused(&direct(None), 6, "SUDO_UID is not set");
    refused(&direct(Some("65534")), 6, "has no hardened store");
    let nobody = Path::new(CONFIG_DIR).join("nobody.toml");
    w.hardened.add(nobody.clone());
    std::fs::copy(&config, &nobody).unwrap();
    refused(
        &direct(Some("65534")),
        6,
        "not the caller nobody (uid 65534)",
    );
    // Run without sudo, as the user: not root.
    let out = w.user.run_as(&[&path(helper), "snapshot", "a.example"]);
    refused(&out, 2, "runs as root, through sudo");
    assert_eq!(w.snapshots("a.example"), [newest]);
}

/// Swaps two directories atomically (`renameat2(RENAME_EXCHANGE)`) as the
/// backup user, as an attacker running code as that user would.
fn exchange_as_user(w: &World, a: &Path, b: &Path) -> Output {
    const EXCHANGE: &str =
        r#"syscall($ARGV[0], -100, $ARGV[1], -100, $ARGV[2], 2) == 0 or die "renameat2: $!\n""#;
    w.user.run_as(&[
        "perl",
        "-e",
        EXCHANGE,
        &libc::SYS_renameat2.to_string(),
        &path(a),
        &path(b),
    ])
}

/// Runs the helper as root for the backup user (as sudo would) with
/// `delete ARGS`, paused at the debug-only point `point` until `act` has
/// run: the helper waits to read a fifo, which this opens (once the helper
/// is there, within a deadline), then runs `act` and closes.
fn delete_paused_at(w: &World, point: &str, args: [&str; 2], act: impl FnOnce()) -> Output {
    use std::os::unix::fs::OpenOptionsExt;
    let fifo = w.area.path.join(format!("pause-{point}"));
    let _ = std::fs::remove_file(&fifo);
    support::run_ok(&["mkfifo", &path(&fifo)]);
    let mut helper = Command::new(w.helper())
        .arg("delete")
        .args(args)
        .env_clear()
        .env("SUDO_UID", w.user.uid.to_string())
        .env("BYTEBACK_PAUSE_AT", format!("{point}:{}", fifo.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Opening for writing without blocking succeeds once the helper has
    // opened it for reading, that is, once it is at the point.
    let writer = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
        {
            Ok(f) => break f,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {}
            Err(e) => panic!("cannot open {}: {e}", fifo.display()),
        }
        if let Some(status) = helper.try_wait().unwrap() {
            let out = helper.wait_with_output().unwrap();
            panic!("the helper ended ({status}) before {point}: {}", show(&out));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the helper did not reach {point} within 60s"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    act();
    drop(writer);
    helper.wait_with_output().unwrap()
}

/// Hardened mode: the backup user swapping two client directories while the
/// helper deletes (after it opened one, or after it planned) cannot make it
/// delete another client's only snapshot: the helper refuses, nothing is
/// deleted, and the same request undisturbed is served.
#[test]
fn swapping_client_directories_cannot_steer_a_deletion() {
    if !require_sudo() {
        return;
    }
    let Some(w) = World::new("hardswap") else {
        return;
    };
    let out = w.server(&["setup"]);
    assert!(out.status.success(), "{}", show(&out));
    // a has one snapshot, its newest; b has one of the same name and a
    // newer one. By names, after a swap, a's only snapshot looks like an
    // old one of a client with two.
    let (old, recent) = (days_ago(30), days_ago(2));
    w.add_client_with_file("a.example", "f", "a\n", &old);
    w.add_client_with_file("b.example", "g", "b\n", &old);
    let out = w.server(&["snapshot", "--client", "b.example", "--at", &recent]);
    assert!(out.status.success(), "{}", show(&out));
    harden(&w);
    let config = w.hardened_config();
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace("min_free_percent = 5.0", "min_free_percent = 99.5")
        .replace("target_free_percent = 10.0", "target_free_percent = 99.9")
        .replace("min_age = \"7 days\"", "min_age = \"1s\"");
    std::fs::write(&config, text).unwrap();
    let (a, b) = (w.store().join("a.example"), w.store().join("b.example"));
    let history = || (w.snapshots("a.example"), w.snapshots("b.example"));
    let before = (vec![old.clone()], vec![old.clone(), recent.clone()]);
    assert_eq!(history(), before);
    let out = w.helper_as_user(&["delete", "a.example", &old]);
    refused(&out, 6, "is a.example's newest");

    // The user may swap the two (it owns the store's top directory).
    let out = exchange_as_user(&w, &a, &b);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(w.snapshots("a.example").len(), 2);
    let out = exchange_as_user(&w, &a, &b);
    assert!(out.status.success(), "{}", show(&out));

    // Swapped after the helper opened a's directory, before it planned:
    // by names the plan would see b's history as a's, and delete a's only
    // snapshot through the descriptor. Refused; nothing deleted.
    let out = delete_paused_at(&w, "privileged-delete-opened", ["a.example", &old], || {
        let out = exchange_as_user(&w, &a, &b);
        assert!(out.status.success(), "{}", show(&out));
    });
    refused(&out, 6, "a.example names another directory now");
    assert!(stderr(&out).contains("try again"), "{}", show(&out));
    let out = exchange_as_user(&w, &a, &b);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(history(), before);

    // Swapped after a rightful plan, before the deletion: the last check
    // sees it and refuses.
    let out = delete_paused_at(&w, "privileged-delete-planned", ["b.example", &old], || {
        let out = exchange_as_user(&w, &a, &b);
        assert!(out.status.success(), "{}", show(&out));
    });
    refused(&out, 6, "client directories were renamed");
    let out = exchange_as_user(&w, &a, &b);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(history(), before);

    // Undisturbed, the same request is served.
    let out = delete_paused_at(&w, "privileged-delete-planned", ["b.example", &old], || {});
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(history(), (vec![old.clone()], vec![recent.clone()]));
}
