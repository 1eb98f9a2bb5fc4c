//! Attacks of December 2026 on the day's changes: the hard-link breaking
//! before btrfs transfers (`store/btrfs.rs` `break_hard_links`), the
//! server-side `gone` deletions of protocol 3 (`store/backend.rs`
//! `remove_beneath`), the producer mark, the original client's grammar
//! (`protocol/legacy.rs`) and the replace list's bounds — each by a key
//! holder assumed hostile, on a real sshd, rsync and btrfs/ext4 store.
//!
//! Each attack is a regression test asserting that it is stopped (and
//! that the store did not change). Four of them succeeded when first
//! written (lock names, the link-breaking copy's name, replace lists read
//! before the lock, one client stopping replication); the fixes came with
//! this file, and every test here runs.

use byteback_testbed as support;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::manifest::{self, Entry, Reading, inside};
use support::world::{World, show, stderr};

/// Interval 0 so a test can take several snapshots in a row.
const NO_INTERVAL: &str = "min_snapshot_interval = \"0s\"\n";

/// A full (verbose) backup of the world's source; its output.
fn backup(w: &World) -> Output {
    let src = w.src.to_string_lossy().into_owned();
    w.client(&["backup", "--verbose", "--source", &src])
}

/// The whole store but its state directory (log, locks, probe cache) and
/// the records the server keeps of requests served.
fn store_state(w: &World) -> BTreeMap<PathBuf, Entry> {
    let mut m = manifest::read(w.store(), Reading::Plain);
    m.retain(|p, _| !p.starts_with("./.byteback"));
    for entry in m.values_mut() {
        entry.xattrs.retain(|k, _| k != "user.byteback.last");
    }
    m
}

/// The store without one client's `current` (what an attack by that
/// client may legitimately change).
fn store_but_current_of(w: &World, client: &str) -> BTreeMap<PathBuf, Entry> {
    let mut m = store_state(w);
    let current = PathBuf::from(format!("./{client}/current"));
    m.retain(|p, _| !p.starts_with(&current));
    for entry in m.values_mut() {
        entry.xattrs.retain(|k, _| !k.starts_with("user.byteback."));
    }
    m
}

/// ssh into the server with the key at `key`, running `command` with
/// `input` on its standard input.
fn ssh_key_input(w: &World, key: &Path, command: &str, input: &[u8]) -> Output {
    let mut options = w.raw_ssh_options();
    let at = options.iter().position(|o| o == "-i").unwrap();
    options[at + 1] = key.to_string_lossy().into_owned();
    let mut child = Command::new("ssh")
        .args(options)
        .arg(format!("{}@127.0.0.1", w.user.name))
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ssh");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait for ssh");
    let _ = writer.join();
    out
}

/// The client's own key.
fn own_key(w: &World) -> PathBuf {
    w.client_dir.join("key")
}

/// An xattr of `path` (not following a symlink), if set.
fn xattr(path: &Path, name: &str) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::lgetxattr(path, name, &mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

// ---------------------------------------------------------------------
// break_hard_links: the temporary name `.byteback-unlink-NAME`
// ---------------------------------------------------------------------

/// A client whose tree holds a multiply-linked file with a long (but
/// legal) name: the temporary name `.byteback-unlink-` + NAME is longer
/// than NAME_MAX, so `break_one` fails, and every later full pass of this
/// client on btrfs is refused before its transfer — for good.
/// Stopped: every later pass succeeds, with its snapshot.
#[test]
fn a_long_hard_linked_name_does_not_stop_later_backups() {
    let Some(w) = World::new("atk-longname") else {
        return;
    };
    let client = w.enroll("longname.example");
    w.server_config(NO_INTERVAL);
    // Both names long: whichever the walk meets first fails.
    let long = "n".repeat(250);
    fs::write(w.src.join(&long), "linked\n").unwrap();
    fs::hard_link(w.src.join(&long), w.src.join("m".repeat(250))).unwrap();
    let out = backup(&w);
    assert!(out.status.success(), "first backup: {}", show(&out));
    // Whatever the client sends next, the pass must not be refused.
    fs::write(w.src.join("new"), "new\n").unwrap();
    for attempt in 0..2 {
        let out = w.client(&[
            "backup",
            "--verbose",
            "--full",
            "--source",
            &w.src.to_string_lossy(),
        ]);
        assert!(
            out.status.success(),
            "backup {attempt} after a long hard-linked name: {}",
            show(&out)
        );
    }
    assert_eq!(w.snapshots(&client).len(), 3);
}

/// A directory in the client's tree named `.byteback-unlink-NAME` next to
/// a multiply-linked `NAME`: `break_one` cannot unlink it (EISDIR, ignored)
/// and its O_EXCL create fails, so every later full pass is refused.
/// Stopped: the next full pass succeeds, with its snapshot.
#[test]
fn a_directory_named_like_the_temporary_copy_does_not_stop_backups() {
    let Some(w) = World::new("atk-unlinkdir") else {
        return;
    };
    let client = w.enroll("unlinkdir.example");
    w.server_config(NO_INTERVAL);
    fs::write(w.src.join("a"), "linked\n").unwrap();
    fs::hard_link(w.src.join("a"), w.src.join("b")).unwrap();
    // Whichever name the walk meets first is copied: both are covered.
    for name in [".byteback-unlink-a", ".byteback-unlink-b"] {
        fs::create_dir(w.src.join(name)).unwrap();
        fs::write(w.src.join(name).join("inner"), "inner\n").unwrap();
    }
    let out = backup(&w);
    assert!(out.status.success(), "first backup: {}", show(&out));
    let cur = inside(&w.store().join(&client).join("current"), &w.src);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(cur.join("a")).unwrap().nlink(), 2);
    assert!(cur.join(".byteback-unlink-a").is_dir());
    fs::write(w.src.join("new"), "new\n").unwrap();
    let out = w.client(&[
        "backup",
        "--verbose",
        "--full",
        "--source",
        &w.src.to_string_lossy(),
    ]);
    assert!(out.status.success(), "second backup: {}", show(&out));
    assert_eq!(w.snapshots(&client).len(), 2);
}

/// A client's own file `.byteback-unlink-a` next to a multiply-linked `a`
/// that changed: the incremental readying unlinks it from `current` (its
/// "stale temporary copy"), and since it did not change it is not sent
/// again — the next snapshot silently lacks it.
/// Stopped: the incremental snapshot holds the changed file and the
/// client's own unchanged `.byteback-unlink-` files.
#[test]
fn a_clients_own_unlink_named_file_survives_an_incremental() {
    let Some(w) = World::new("atk-unlinkfile") else {
        return;
    };
    let client = w.enroll("unlinkfile.example");
    w.server_config(NO_INTERVAL);
    fs::write(w.src.join("a"), "linked\n").unwrap();
    fs::hard_link(w.src.join("a"), w.src.join("b")).unwrap();
    // Whichever linked name is copied first: both are covered.
    fs::write(w.src.join(".byteback-unlink-a"), "precious\n").unwrap();
    fs::write(w.src.join(".byteback-unlink-b"), "precious\n").unwrap();
    let out = backup(&w);
    assert!(out.status.success(), "first backup: {}", show(&out));
    // Let the index trust what it saw, then change the linked file.
    std::thread::sleep(std::time::Duration::from_millis(3100));
    fs::write(w.src.join("a"), "changed\n").unwrap();
    let out = backup(&w);
    assert!(out.status.success(), "second backup: {}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("incremental"),
        "not incremental: {}",
        show(&out)
    );
    let snaps = w.snapshots(&client);
    assert_eq!(snaps.len(), 2);
    let tree = inside(&w.store().join(&client).join(&snaps[1]), &w.src);
    assert_eq!(
        fs::read_to_string(tree.join("a")).unwrap(),
        "changed\n",
        "the changed file"
    );
    for name in [".byteback-unlink-a", ".byteback-unlink-b"] {
        assert_eq!(
            fs::read_to_string(tree.join(name)).ok().as_deref(),
            Some("precious\n"),
            "the client's unchanged {name} is in the new snapshot"
        );
    }
}

// ---------------------------------------------------------------------
// `gone` lines: server-side deletions in `current`
// ---------------------------------------------------------------------

/// A client whose backup holds symlinks to another client's space (stored
/// as plain files by --fake-super), then names paths through them, and
/// `..` spelled with percent escapes, as `gone` in its replace list: the
/// escapes are refused, the symlink-shaped paths delete nothing, and
/// nothing outside its own `current` changes.
#[test]
fn gone_paths_never_leave_current() {
    let Some(w) = World::new("atk-gone") else {
        return;
    };
    let client = w.enroll("gone.example");
    w.server_config(NO_INTERVAL);
    w.add_client_with_file(
        "victim.example",
        "secret",
        "victim\n",
        "2026-01-01T00:00:00Z",
    );
    let victim_current = w.store().join("victim.example/current");
    fs::write(w.src.join("keep"), "keep\n").unwrap();
    symlink(&victim_current, w.src.join("abs")).unwrap();
    symlink("../../victim.example/current", w.src.join("rel")).unwrap();
    symlink("/", w.src.join("root")).unwrap();
    let out = backup(&w);
    assert!(out.status.success(), "backup: {}", show(&out));
    let snapshot = w.snapshots(&client).pop().unwrap();
    // Every way of naming the victim's file through the stored links.
    let relative_src = w
        .src
        .strip_prefix("/")
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let store_rel = w
        .store()
        .strip_prefix("/")
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let through_links = [
        format!("gone {relative_src}/abs/secret"),
        format!("gone {relative_src}/rel/secret"),
        format!("gone {relative_src}/root/{store_rel}/victim.example/current/secret"),
        format!("gone {relative_src}/abs"),
    ];
    let before = store_but_current_of(&w, &client);
    let victim_before = manifest::read(&w.store().join("victim.example"), Reading::Plain);
    let out = ssh_key_input(
        &w,
        &own_key(&w),
        &format!("byteback incremental {snapshot}"),
        (through_links.join("\n") + "\n").as_bytes(),
    );
    assert!(out.status.success(), "incremental: {}", show(&out));
    // The link itself (a plain file here) is the client's to delete.
    let cur = inside(&w.store().join(&client).join("current"), &w.src);
    assert!(!cur.join("abs").exists());
    assert!(cur.join("rel").exists() && cur.join("keep").exists());
    manifest::assert_same(
        "the victim after gone paths through links",
        &victim_before,
        &manifest::read(&w.store().join("victim.example"), Reading::Plain),
    );
    manifest::assert_same(
        "the store after gone paths through links",
        &before,
        &store_but_current_of(&w, &client),
    );
    // `..` in any spelling is refused before anything is touched.
    for bad in [
        "gone %2E%2E/victim.example".to_owned(),
        "gone x/%2E%2E/%2E%2E/victim.example".to_owned(),
        "gone x/%2e%2e".to_owned(),
        "gone %2F".to_owned(),
        format!("gone %2F{store_rel}/victim.example"),
        "gone a%2F..%2Fb".to_owned(),
        "gone .".to_owned(),
        "gone a%00b".to_owned(),
    ] {
        let all = store_state(&w);
        let out = ssh_key_input(
            &w,
            &own_key(&w),
            &format!("byteback incremental {snapshot}"),
            format!("{bad}\n").as_bytes(),
        );
        assert!(!out.status.success(), "{bad} accepted: {}", show(&out));
        assert!(
            stderr(&out).contains("not a plain relative path"),
            "{bad}: {}",
            show(&out)
        );
        let mut after = store_state(&w);
        // Only the outcome record may differ.
        for m in [&mut after] {
            for e in m.values_mut() {
                e.xattrs.retain(|k, _| !k.starts_with("user.byteback."));
            }
        }
        let mut all = all;
        for e in all.values_mut() {
            e.xattrs.retain(|k, _| !k.starts_with("user.byteback."));
        }
        manifest::assert_same(&format!("the store after {bad}"), &all, &after);
    }
    assert!(victim_current.join("secret").exists());
}

/// A deep nest of directories named as one `gone` path, and a list at the
/// 64 MiB cap of distinct paths: the server answers in bounded time and
/// memory, and changes nothing beyond the client's own `current`.
#[test]
fn a_huge_replace_list_costs_bounded_time_and_memory() {
    let Some(w) = World::new("atk-hugelist") else {
        return;
    };
    let client = w.enroll("huge.example");
    w.server_config(NO_INTERVAL);
    fs::write(w.src.join("f"), "f\n").unwrap();
    let out = backup(&w);
    assert!(out.status.success(), "backup: {}", show(&out));
    let snapshot = w.snapshots(&client).pop().unwrap();
    let before = store_but_current_of(&w, &client);
    // Just under 64 MiB of distinct short paths, every one `gone`.
    let mut list = Vec::with_capacity(64 << 20);
    let mut i = 0u64;
    loop {
        let line = format!("gone d/{i:x}\n");
        if list.len() + line.len() > (64 << 20) {
            break;
        }
        list.extend_from_slice(line.as_bytes());
        i += 1;
    }
    let uid = w.user.uid;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak_kib = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for pid in support::processes_of(uid, "byteback-server") {
                    let status =
                        fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                    for l in status.lines() {
                        if let Some(v) = l.strip_prefix("VmHWM:") {
                            let kib: u64 = v.trim().trim_end_matches(" kB").parse().unwrap_or(0);
                            peak_kib = peak_kib.max(kib);
                        }
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            peak_kib
        })
    };
    let started = std::time::Instant::now();
    let out = ssh_key_input(
        &w,
        &own_key(&w),
        &format!("byteback incremental {snapshot}"),
        &list,
    );
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak_mib = watcher.join().unwrap() / 1024;
    println!(
        "{i} gone paths ({} bytes): {} in {took:?}, server peak RSS {peak_mib} MiB",
        list.len(),
        if out.status.success() {
            "served"
        } else {
            "refused"
        }
    );
    manifest::assert_same(
        "the store after a huge replace list",
        &before,
        &store_but_current_of(&w, &client),
    );
    assert!(
        took < std::time::Duration::from_secs(120),
        "one replace list held the client for {took:?}"
    );
    assert!(
        peak_mib < 1024,
        "one connection made the server hold {peak_mib} MiB"
    );
}

// ---------------------------------------------------------------------
// The producer mark
// ---------------------------------------------------------------------

/// A client's own rsync sets `user.byteback.producer` (and the other marks)
/// on the top of its transfer with -X: they land on its `current` (its own
/// data), never on its client directory, where the server keeps them.
#[test]
fn a_client_cannot_forge_the_marks_of_its_directory() {
    let Some(w) = World::new("atk-producer") else {
        return;
    };
    let client = w.enroll("producer.example");
    w.server_config(NO_INTERVAL);
    let top = w.area.path.join("forge");
    fs::create_dir(&top).unwrap();
    fs::write(top.join("f"), "f\n").unwrap();
    for (name, value) in [
        ("user.byteback.producer", "replica:evil"),
        ("user.byteback.incremental", "building"),
        ("user.byteback.clean", "2020-01-01T00:00:00Z"),
        ("user.byteback.notice", "forged"),
    ] {
        rustix::fs::setxattr(
            &top,
            name,
            value.as_bytes(),
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    }
    let top_arg = format!("{}/", top.display());
    let out = w.raw_rsync(&["-rlptX", &top_arg], "current/");
    // Whether or not rsync could write the xattrs, the client dir's are
    // the server's own.
    let dir = w.store().join(&client);
    assert_eq!(
        xattr(&dir, "user.byteback.producer").as_deref(),
        Some(format!("client:{client}").as_str()),
        "{}",
        show(&out)
    );
    assert_eq!(xattr(&dir, "user.byteback.notice"), None);
    assert_eq!(xattr(&dir, "user.byteback.incremental"), None);
    assert_ne!(
        xattr(&dir, "user.byteback.clean").as_deref(),
        Some("2020-01-01T00:00:00Z")
    );
    // Nor through a destination that names the client directory.
    for dest in [".", "..", "../", "./..", "/"] {
        let _ = w.raw_rsync(&["-rlptX", &top_arg], dest);
        assert_eq!(
            xattr(&dir, "user.byteback.producer").as_deref(),
            Some(format!("client:{client}").as_str()),
            "destination {dest}"
        );
        assert_eq!(xattr(&dir, "user.byteback.notice"), None, "{dest}");
    }
}

// ---------------------------------------------------------------------
// The original client's grammar (legacy keys)
// ---------------------------------------------------------------------

/// An original byteback client's key, imported; its private key's path.
fn legacy_key(w: &World, host: &str) -> PathBuf {
    let path = w.area.path.join("legacy-key");
    let public = support::ssh_keygen(&path);
    w.user.authorize_key(&format!(
        r#"command="byteback-receive",from="127.0.0.1",environment="BYTEBACK_HOST={host}" {public} byteback client key"#
    ));
    let out = w.server(&["import-keys"]);
    assert!(out.status.success(), "{}", show(&out));
    path
}

/// A legacy key tries to run its own rsync options (paths on the server,
/// programs), name another host's snapshots or paths, or reach the shell:
/// every line refused, the store unchanged, no file made outside it.
#[test]
fn a_legacy_key_runs_no_options_of_its_own_and_reaches_no_other_host() {
    let Some(w) = World::new("atk-legacy") else {
        return;
    };
    w.enroll("other.example");
    fs::write(w.src.join("secret"), "other's\n").unwrap();
    w.backup_ok();
    let key = legacy_key(&w, "old.example");
    // The legacy client's space exists after import-keys.
    let marker = w.area.path.join("pwned");
    let m = marker.display().to_string();
    let rsync_opts = [
        format!("--log-file={m}"),
        format!("--temp-dir={m}"),
        format!("--partial-dir={m}"),
        format!("--backup-dir={m}"),
        "-b".into(),
        format!("--rsync-path={m}"),
        format!("-T{m}"),
        "-L".into(),
        "-K".into(),
        "-s".into(),
        format!("--files-from={m}"),
        format!("--exclude-from={m}"),
        format!("--filter=merge {m}"),
        format!("--link-dest={m}"),
        format!("--compare-dest={m}"),
        format!("--write-batch={m}"),
        "--no-fake-super".into(),
        "--super".into(),
        "--copy-links".into(),
        "-e.iLsfxCIvu --log-file=/tmp/x".into(),
    ];
    let secret = inside(Path::new("/"), &w.src.join("secret"));
    let secret = secret.to_string_lossy();
    let mut lines = Vec::new();
    for o in &rsync_opts {
        lines.push(format!(
            "rsync --fake-super --server -logDtpXrRe.iLsfxCIvu {o} --numeric-ids --inplace . ."
        ));
        lines.push(format!(
            "byteback-restore --fake-super --snapshot * --server --sender -logDtprRze.iLsfxCIvu {o} --numeric-ids . /etc/hostname"
        ));
    }
    lines.extend([
        // Another host's directory, by snapshot glob or path.
        "byteback-receive --snapshot ../other.example/* --list /etc".to_owned(),
        "byteback-receive --snapshot *%2F.. --list /etc".to_owned(),
        format!("byteback-receive --list /../other.example/*{secret}"),
        format!("byteback-receive --list /=2E=2E/other.example{secret}"),
        format!("byteback-restore --fake-super --snapshot * --server --sender -logDtprRze.iLsfxCIvu . /../../other.example/current{secret}"),
        format!("byteback-restore --fake-super --snapshot ../other.example --server --sender -logDtprRze.iLsfxCIvu . {secret}"),
        format!("byteback-restore --fake-super --root /srv --snapshot * --server --sender -logDtprRze.iLsfxCIvu . {secret}"),
        // Our own sender's language, with a path into the other host.
        format!("rsync --server --sender -logDtprRze.iLsfxCIvu . ../other.example/current{secret}"),
        "byteback-snapshot --snapshot --root /srv/other.example".to_owned(),
        "byteback-receive --ping; touch /tmp/x".to_owned(),
        "byteback-receive --ping\ntouch /tmp/x".to_owned(),
        "rsync --fake-super --server --sender -logDtprRze.iLsfxCIvu . .".to_owned(),
    ]);
    let option_lines = 2 * rsync_opts.len();
    for (at, line) in lines.iter().enumerate() {
        let before = store_state(&w);
        let out = ssh_key_input(&w, &key, line, b"");
        assert!(!out.status.success(), "{line}: served: {}", show(&out));
        if at < option_lines {
            assert!(
                stderr(&out).contains("not allowed") || stderr(&out).contains("malformed"),
                "{line}: not refused by the allow-list: {}",
                show(&out)
            );
        }
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("other's"),
            "{line}: {}",
            show(&out)
        );
        let mut after = store_state(&w);
        let mut before = before;
        for m in [&mut before, &mut after] {
            for e in m.values_mut() {
                e.xattrs.retain(|k, _| !k.starts_with("user.byteback."));
            }
        }
        manifest::assert_same(&format!("the store after {line:?}"), &before, &after);
        assert!(!marker.exists(), "{line} made {m}");
    }
}

/// The summed resident memory of the server user's `byteback-server`
/// processes, in MiB.
fn server_rss_mib(uid: u32) -> u64 {
    let mut kib = 0u64;
    for pid in support::processes_of(uid, "byteback-server") {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        for l in status.lines() {
            if let Some(v) = l.strip_prefix("VmRSS:") {
                kib += v.trim().trim_end_matches(" kB").parse::<u64>().unwrap_or(0);
            }
        }
    }
    kib / 1024
}

/// Several replace lists at the cap sent at once by one client key: each
/// is read and parsed (≈ 12 times its size in memory) before the client's
/// lock is taken, and then held for up to `lock_wait` while waiting for
/// it, so one key makes the server hold gigabytes.
/// Stopped: the server's peak memory stays under 1 GiB.
#[test]
fn concurrent_replace_lists_of_one_key_hold_bounded_memory() {
    let Some(w) = World::new("atk-manylists") else {
        return;
    };
    let client = w.enroll("manylists.example");
    w.server_config(NO_INTERVAL);
    fs::write(w.src.join("f"), "f\n").unwrap();
    let out = backup(&w);
    assert!(out.status.success(), "backup: {}", show(&out));
    let snapshot = w.snapshots(&client).pop().unwrap();
    let mut list = Vec::with_capacity(64 << 20);
    let mut i = 0u64;
    loop {
        let line = format!("gone d/{i:x}\n");
        if list.len() + line.len() > (64 << 20) {
            break;
        }
        list.extend_from_slice(line.as_bytes());
        i += 1;
    }
    let list = std::sync::Arc::new(list);
    let mut options = w.raw_ssh_options();
    options.push(format!("{}@127.0.0.1", w.user.name));
    options.push(format!("byteback incremental {snapshot}"));
    let mut children = Vec::new();
    for _ in 0..3 {
        let mut child = Command::new("ssh")
            .args(&options)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run ssh");
        let mut stdin = child.stdin.take().unwrap();
        let list = list.clone();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&list);
        });
        children.push(child);
    }
    let started = std::time::Instant::now();
    let mut peak = 0;
    while started.elapsed() < std::time::Duration::from_secs(60) && peak < 2048 {
        peak = peak.max(server_rss_mib(w.user.uid));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    // The server processes these requests started, by their ids.
    for pid in support::processes_of(w.user.uid, "byteback-server") {
        let _ = support::run(&["kill", "-KILL", &pid.to_string()]);
    }
    println!("3 concurrent replace lists of one key: server peak RSS {peak} MiB");
    assert!(
        peak < 1024,
        "one key's concurrent replace lists made the server hold {peak} MiB"
    );
}

// ---------------------------------------------------------------------
// --fake-super: nothing in `current` is ever followed
// ---------------------------------------------------------------------

/// Every entry below `root` that is not a directory or a regular file
/// (a symlink, device, fifo or socket the server's rsync made for real).
fn special_entries(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if !kind.is_file() {
                found.push(entry.path());
            }
        }
    }
    found
}

/// A client's own rsync sends symlinks (absolute, relative, into another
/// client's space), hard links between symlinks, devices, fifos and
/// sockets, with every creating option the server allows (--inplace,
/// --partial, -H, -D, --delete, --force, later changing a file into a
/// symlink in place): the server's `current` holds regular files and
/// directories only, so no path the server walks later (hard-link
/// breaking, `gone` deletions) can follow anything out of it.
#[test]
fn every_way_of_sending_a_link_or_device_stores_a_plain_file() {
    use std::os::unix::fs::MetadataExt;
    let Some(w) = World::new("atk-fakesuper") else {
        return;
    };
    let client = w.enroll("fakesuper.example");
    w.server_config(NO_INTERVAL);
    w.add_client_with_file(
        "victim.example",
        "secret",
        "victim\n",
        "2026-01-01T00:00:00Z",
    );
    let victim = w.store().join("victim.example");
    let top = w.area.path.join("specials");
    fs::create_dir(&top).unwrap();
    fs::write(top.join("file"), "file\n").unwrap();
    fs::write(top.join("becomes-link"), "plain\n").unwrap();
    symlink(victim.join("current"), top.join("abs")).unwrap();
    symlink("../../victim.example/current", top.join("rel")).unwrap();
    symlink("/", top.join("root")).unwrap();
    // Two names of one symlink (ln without -L links the symlink itself).
    support::run_ok(&[
        "ln",
        "-P",
        &top.join("abs").to_string_lossy(),
        &top.join("abs-link").to_string_lossy(),
    ]);
    support::run_ok(&["mknod", &top.join("null").to_string_lossy(), "c", "1", "3"]);
    support::run_ok(&["mknod", &top.join("disk").to_string_lossy(), "b", "7", "0"]);
    support::run_ok(&["mkfifo", &top.join("fifo").to_string_lossy()]);
    let sock = top.join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let src = format!("{}/", top.display());
    let rounds: [&[&str]; 4] = [
        &["-aHDX", "--numeric-ids", "--inplace"],
        &["-aHD", "--partial", "--delete", "--force"],
        &["-rlHD", "--inplace", "--delete-during", "-I"],
        &["-aHDX", "--inplace", "--delete"],
    ];
    let before = manifest::read(&victim, Reading::Plain);
    for (round, args) in rounds.iter().enumerate() {
        if round == 2 {
            // A file becomes a symlink, and a symlink a directory, in place.
            fs::remove_file(top.join("becomes-link")).unwrap();
            symlink(victim.join("current/secret"), top.join("becomes-link")).unwrap();
            fs::remove_file(top.join("rel")).unwrap();
            fs::create_dir(top.join("rel")).unwrap();
            fs::write(top.join("rel/inside"), "inside\n").unwrap();
        }
        let mut args = args.to_vec();
        args.push(&src);
        let out = w.raw_rsync(&args, "current/");
        assert!(
            out.status.success() || out.status.code() == Some(23),
            "round {round}: {}",
            show(&out)
        );
        let current = w.store().join(&client).join("current");
        let specials = special_entries(&current);
        assert!(
            specials.is_empty(),
            "round {round} made real special files: {specials:?}"
        );
        // The stored symlink holds its target as data.
        let abs = current.join("abs");
        if abs.exists() {
            assert!(fs::symlink_metadata(&abs).unwrap().is_file());
            assert_eq!(
                fs::read(&abs).unwrap(),
                victim.join("current").to_string_lossy().as_bytes()
            );
            assert_eq!(fs::symlink_metadata(&abs).unwrap().uid(), w.user.uid);
        }
        let out = w.raw_ssh(Some("byteback complete"));
        assert!(out.status.success(), "complete {round}: {}", show(&out));
    }
    // Then a full pass breaks hard links and an incremental deletes
    // `gone` paths through the stored links: the victim never changes.
    let snapshot = w.snapshots(&client).pop().unwrap();
    let list = "gone abs/secret\ngone abs-link/secret\nabs-link\nabs\ngone rel/inside\ngone root/etc/hostname\nnull\nfifo\n";
    let out = ssh_key_input(
        &w,
        &own_key(&w),
        &format!("byteback incremental {snapshot}"),
        list.as_bytes(),
    );
    assert!(out.status.success(), "incremental: {}", show(&out));
    manifest::assert_same(
        "the victim's space",
        &before,
        &manifest::read(&victim, Reading::Plain),
    );
    assert!(special_entries(w.store()).is_empty());
}

// ---------------------------------------------------------------------
// Read slots across keys of one client
// ---------------------------------------------------------------------

/// A second key (read-only) for a client that has one would share its
/// read slots (two per client) and could keep its owner from listing or
/// restoring: enrolment refuses it, so every client's read slots are its
/// one key's. A reader of a replicated client is that client's only key.
#[test]
fn no_other_key_can_share_a_clients_read_slots() {
    let Some(w) = World::new("atk-readslots") else {
        return;
    };
    let client = w.enroll("readslots.example");
    fs::write(w.src.join("file"), "data\n").unwrap();
    w.backup_ok();
    let before = store_state(&w);
    let authorized = w.store().join(".ssh/authorized_keys");
    let keys_before = fs::read_to_string(&authorized).unwrap();
    for flags in [&["--read-only"][..], &[][..]] {
        let reader = w.area.path.join(format!("reader{}-key", flags.len()));
        let public = support::ssh_keygen(&reader);
        let mut args = vec!["new-client", "--name", client.as_str()];
        args.extend_from_slice(flags);
        args.extend(public.split(' '));
        let out = w.server(&args);
        assert!(!out.status.success(), "{flags:?}: {}", show(&out));
        assert!(stderr(&out).contains("already taken"), "{}", show(&out));
    }
    assert_eq!(fs::read_to_string(&authorized).unwrap(), keys_before);
    manifest::assert_same("the store", &before, &store_state(&w));
}

// ---------------------------------------------------------------------
// Replication: one client's tree against every other client's copies
// ---------------------------------------------------------------------

/// A hostile client on a (plain) primary keeps a multiply-linked file with
/// a long name in its backups. On a btrfs replica every later transfer of
/// that client fails in `break_hard_links` (the temporary name is too
/// long), and `replicate` stops at the first failing client: the copies of
/// every client after it are never made again.
/// Stopped: the next `replicate` still brings the other client's new
/// snapshot to the replica.
#[test]
fn one_clients_tree_cannot_stop_the_replication_of_others() {
    let Some(p) = World::on("atk-repl-p", support::FsKind::Ext4) else {
        return;
    };
    let Some(r) = World::new("atk-repl-r") else {
        return;
    };
    p.enroll("aaa.example");
    p.server_config(NO_INTERVAL);
    p.add_client_with_file("zzz.example", "file", "victim 1\n", "2026-01-01T00:00:00Z");
    let long = "n".repeat(250);
    fs::write(p.src.join(&long), "linked\n").unwrap();
    fs::hard_link(p.src.join(&long), p.src.join("m".repeat(250))).unwrap();
    let out = backup(&p);
    assert!(out.status.success(), "hostile backup 1: {}", show(&out));
    let out = r.server(&["setup"]);
    assert!(out.status.success(), "replica setup: {}", show(&out));
    let out = p.server(&[
        "replicate",
        "--setup",
        "--name",
        "prim",
        "--to",
        &r.destination(),
    ]);
    assert!(out.status.success(), "replicate --setup: {}", show(&out));
    let printed = support::world::stdout(&out);
    let line = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("byteback-server "))
        .expect("setup prints the new-client line")
        .to_owned();
    let args: Vec<&str> = line.split(' ').collect();
    let out = r.server(&args);
    assert!(out.status.success(), "new-client --replica: {}", show(&out));
    p.server_config(&format!(
        "{NO_INTERVAL}[replicate]\nretry_pause = \"1s\"\nretry_attempts = 1\n"
    ));
    let dest = r.destination();
    let out = p.server(&["replicate", "--to", &dest, "--accept-new-host-key"]);
    assert!(out.status.success(), "first replication: {}", show(&out));
    assert_eq!(r.snapshots("prim__zzz.example").len(), 1);
    // The hostile client backs up again; the victim gets a new snapshot.
    fs::write(p.src.join("new"), "new\n").unwrap();
    let out = backup(&p);
    assert!(out.status.success(), "hostile backup 2: {}", show(&out));
    let file = p.store().join("zzz.example/current/file2");
    fs::write(&file, "victim 2\n").unwrap();
    std::os::unix::fs::chown(&file, Some(p.user.uid), Some(p.user.gid)).unwrap();
    let out = p.server(&[
        "snapshot",
        "--client",
        "zzz.example",
        "--at",
        "2026-01-02T00:00:00Z",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let out = p.server(&["replicate", "--to", &dest]);
    assert_eq!(
        r.snapshots("prim__zzz.example").len(),
        2,
        "the victim's new snapshot reached the replica: {}",
        show(&out)
    );
}

// ---------------------------------------------------------------------
// Lock names: a client's lock is `locks/NAME`
// ---------------------------------------------------------------------

/// Starts a transfer with the key at `key` that never speaks (stdin open,
/// nothing sent): the server takes the client's lock and a transfer slot
/// and holds them until `io_timeout` or the hang-up.
fn silent_transfer(w: &World, key: &Path) -> std::process::Child {
    let mut options = w.raw_ssh_options();
    let at = options.iter().position(|o| o == "-i").unwrap();
    options[at + 1] = key.to_string_lossy().into_owned();
    Command::new("ssh")
        .args(options)
        .arg(format!("{}@127.0.0.1", w.user.name))
        .arg("rsync --server -logDtpre.iLsfxCIvu --numeric-ids . current/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run ssh")
}

/// Waits until the store's lock file `name` (under `.byteback/locks/`) is
/// held (by someone).
fn wait_for_lock(w: &World, name: &str) {
    let path = w.store().join(".byteback/locks").join(name);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if let Ok(file) = fs::OpenOptions::new().write(true).open(&path) {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared) {
                Err(_) => return,
                Ok(()) => {
                    let _ = rustix::fs::flock(&file, rustix::fs::FlockOperation::Unlock);
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("nobody took the lock {name}");
}

/// Clients named like another client's read slots (`VICTIM.restore-1`,
/// `VICTIM.restore-2`): their client locks are the victim's read-slot
/// locks, so their transfers (held as long as they like, up to
/// `io_timeout`) keep the victim from listing or restoring its backups.
/// Stopped: the victim lists its backups while both of them transfer.
#[test]
fn a_client_name_cannot_be_another_clients_read_slot() {
    let Some(w) = World::new("atk-locknames") else {
        return;
    };
    let victim = w.enroll("victim.example");
    fs::write(w.src.join("file"), "data\n").unwrap();
    w.backup_ok();
    let mut holders = Vec::new();
    for slot in 1..=2 {
        let name = format!("{victim}.restore-{slot}");
        let key = w.add_client_with_file(&name, "f", "f\n", "2026-01-01T00:00:00Z");
        holders.push(silent_transfer(&w, &key));
        wait_for_lock(&w, &format!("client/{name}"));
    }
    let src = w.src.to_string_lossy().into_owned();
    let list = byteback::protocol::Request::List {
        all: false,
        nanoseconds: false,
        snapshots: b"*".to_vec(),
        patterns: vec![format!("{src}/*").into_bytes()],
    }
    .render();
    let out = w.raw_ssh(Some(&list));
    for mut h in holders {
        let _ = h.kill();
        let _ = h.wait();
    }
    assert!(
        out.status.success(),
        "the victim's own listing while two other clients transfer: {}",
        show(&out)
    );
}

/// A client named `backup-slot-1`: its client lock is the store's first
/// transfer slot, so its one transfer holds two of the store's slots (its
/// lock and the slot it takes), and other clients' backups queue behind
/// one key.
/// Stopped: it holds its own lock and one slot, and another client's backup
/// runs beside it (two slots).
#[test]
fn a_client_name_cannot_be_a_transfer_slot() {
    let Some(w) = World::new("atk-slotname") else {
        return;
    };
    let victim = w.enroll("victim.example");
    w.server_config(
        "min_snapshot_interval = \"0s\"\nmax_concurrent_backups = 2\nlock_wait = \"5s\"\n",
    );
    fs::write(w.src.join("file"), "data\n").unwrap();
    w.backup_ok();
    let key = w.add_client_with_file("backup-slot-1", "f", "f\n", "2026-01-01T00:00:00Z");
    // One attempt: the client would otherwise retry for up to 50 minutes.
    w.client_config("retry_attempts = 1\n");
    let mut holder = silent_transfer(&w, &key);
    // It holds its own client lock and one transfer slot, no more.
    wait_for_lock(&w, "client/backup-slot-1");
    wait_for_lock(&w, "slot/1");
    fs::write(w.src.join("file2"), "more\n").unwrap();
    let out = backup(&w);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        out.status.success(),
        "{victim}'s backup while one other key transfers (2 slots): {}",
        show(&out)
    );
}

// (An original client that named itself after a lock, `backup-slot-1` or
// `VICTIM.restore-1`, and was imported under that name, is the case above:
// lock files live in one namespace per kind, so such a name is harmless.)
