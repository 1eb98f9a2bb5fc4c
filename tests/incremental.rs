//! End to end: index-mode backups (the client's change index) — every kind
//! of change is in the next snapshot, only changed paths are sent, the
//! index is rebuilt whenever it cannot be trusted, an interrupted attempt
//! never leaves it committed, and plain snapshots are never written —
//! real sshd, rsync, btrfs and ext4.

use byteback_testbed as support;

use support::child_named;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::FsKind;
use support::manifest::{self, Reading, inside};
use support::world::incremental_paths;
use support::world::{World, show, stdout};

support::world::on_both_backends!(
    every_kind_of_change_is_in_the_next_snapshot,
    a_killed_incremental_backup_leaves_the_index_uncommitted,
    files_with_holes_keep_them_in_full_and_incremental_backups,
);

/// Interval 0 so a test can take several snapshots in a row.
const NO_INTERVAL: &str = "min_snapshot_interval = \"0s\"\n";

/// Entries changed just before a walk are sent again by the next backup
/// (they could still change unseen within one timestamp tick; 3 s on a
/// whole-second filesystem, 100 ms else): waiting this long makes the next
/// walk trust them.
fn settle() {
    std::thread::sleep(Duration::from_millis(3100));
}

fn snapshot_tree(w: &World, client: &str, snapshot: &str) -> PathBuf {
    inside(&w.store().join(client).join(snapshot), &w.src)
}

/// Runs a verbose backup of `src` with `extra` arguments; returns stdout
/// and stderr together.
fn backup(w: &World, extra: &[&str]) -> String {
    let src = w.src.to_string_lossy().into_owned();
    let mut args = vec!["backup", "--verbose", "--source", &src];
    args.extend_from_slice(extra);
    let out = w.client(&args);
    assert!(out.status.success(), "backup: {}", show(&out));
    format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr))
}

/// The directories above the source: rsync sends their metadata too, and
/// other tests change them (`/tmp`) at any time.
fn above(w: &World) -> usize {
    w.src.components().count() - 1
}

fn write_at(path: &Path, content: &str, stamp: &str) {
    fs::write(path, content).unwrap();
    support::run_ok(&["touch", "-m", "-d", stamp, &path.to_string_lossy()]);
}

fn setfacl(spec: &str, path: &Path) {
    support::run_ok(&["setfacl", "-m", spec, &path.to_string_lossy()]);
}

type Manifest = std::collections::BTreeMap<PathBuf, manifest::Entry>;

fn check_snapshot(w: &World, client: &str, snapshot: &str, want: &Manifest, what: &str) {
    manifest::assert_same(
        what,
        want,
        &manifest::read(&snapshot_tree(w, client, snapshot), Reading::FakeSuper),
    );
}

/// The ACL rsync stored for a file (fake-super keeps it in an xattr).
fn stored_acl(path: &Path) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::lgetxattr(path, "user.rsync.%aacl", &mut buf).unwrap_or(0);
    buf.truncate(n);
    buf
}

/// Every kind of change (same-size same-second rewrite, mtime put back,
/// mode, owner, xattr, ACL, hard link, rename, delete, new tree, type
/// change) is in the next incremental snapshot, identical to the source,
/// with only the changed paths sent; a full pass gives the same snapshot,
/// and older snapshots never change.
fn every_kind_of_change_is_in_the_next_snapshot(kind: FsKind) {
    let Some(w) = World::on("incremental", kind) else {
        return;
    };
    let client = w.enroll("incremental.example");
    w.server_config(NO_INTERVAL);
    support::tree::populate(&w.src);
    let kinds = w.src.join("kinds");
    fs::create_dir_all(kinds.join("dir-to-file/inner")).unwrap();
    fs::write(kinds.join("dir-to-file/inner/x"), "x\n").unwrap();
    fs::write(kinds.join("file-to-link"), "plain\n").unwrap();
    fs::write(kinds.join("file-to-dir"), "plain\n").unwrap();
    fs::write(kinds.join("same-second"), "balance 100\n").unwrap();
    write_at(
        &kinds.join("same-second"),
        "balance 100\n",
        "2026-01-01 00:00:00.100",
    );
    fs::write(kinds.join("mode"), "mode\n").unwrap();
    fs::write(kinds.join("owner"), "owner\n").unwrap();
    fs::write(kinds.join("xattr"), "xattr\n").unwrap();
    fs::write(kinds.join("acl"), "acl\n").unwrap();
    settle();
    let first_source = manifest::read(&w.src, Reading::Plain);

    // The first backup has no index: a full pass, which makes one.
    let out = backup(&w, &[]);
    assert_eq!(incremental_paths(&out), None, "{out}");
    assert!(out.contains("full pass: no change index yet"), "{out}");
    assert!(w.client_dir.join("index").exists());
    let snaps = w.snapshots(&client);
    check_snapshot(&w, &client, &snaps[0], &first_source, "first snapshot");
    let acl_before = stored_acl(&snapshot_tree(&w, &client, &snaps[0]).join("kinds/acl"));

    // Every kind of change.
    let bashrc = w.src.join("home/alice/.bashrc");
    fs::write(&bashrc, "export PS1='# '\n").unwrap(); // same size
    support::run_ok(&[
        "touch",
        "-m",
        "-d",
        "@1500000000",
        &bashrc.to_string_lossy(),
    ]);
    write_at(
        &kinds.join("same-second"),
        "balance 999\n",
        "2026-01-01 00:00:00.900",
    );
    fs::set_permissions(kinds.join("mode"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(kinds.join("owner"), Some(4242), Some(4343)).unwrap();
    rustix::fs::lsetxattr(
        kinds.join("xattr"),
        "user.colour",
        b"blue",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    setfacl("u:1234:rw", &kinds.join("acl"));
    fs::hard_link(
        w.src.join("var/lib/data/f050"),
        w.src.join("var/lib/f050-link"),
    )
    .unwrap();
    fs::rename(
        w.src.join("name with spaces"),
        w.src.join("renamed with spaces"),
    )
    .unwrap();
    fs::remove_file(w.src.join("empty")).unwrap();
    fs::create_dir_all(w.src.join("newdir/a/b")).unwrap();
    fs::write(w.src.join("newdir/a/b/c.txt"), "deep\n").unwrap();
    fs::write(w.src.join("newdir/x"), "x\n").unwrap();
    fs::remove_file(kinds.join("file-to-link")).unwrap();
    symlink("../etc/hostname", kinds.join("file-to-link")).unwrap();
    fs::remove_file(kinds.join("file-to-dir")).unwrap();
    fs::create_dir(kinds.join("file-to-dir")).unwrap();
    fs::write(kinds.join("file-to-dir/inside"), "inside\n").unwrap();
    fs::remove_dir_all(kinds.join("dir-to-file")).unwrap();
    fs::write(kinds.join("dir-to-file"), "now a file\n").unwrap();
    fs::set_permissions(w.src.join("home/alice"), fs::Permissions::from_mode(0o700)).unwrap();
    let second_source = manifest::read(&w.src, Reading::Plain);
    std::thread::sleep(Duration::from_millis(1100)); // snapshot names are per second

    let out = backup(&w, &[]);
    let sent = incremental_paths(&out).unwrap_or_else(|| panic!("not incremental: {out}"));
    // Changed files, the three links of f050, the directories whose
    // entries changed, new ones, the vanished ones: a few dozen, not the
    // 230-odd paths of the tree.
    assert!((15..60).contains(&sent), "{sent} paths sent: {out}");
    for unchanged in ["data/f010", "data/f199", "etc/shadow", "latin1"] {
        assert!(
            !out.lines()
                .any(|l| l.contains(unchanged) && !l.contains("deleting")),
            "{unchanged} was sent: {out}"
        );
    }
    for changed in [
        "same-second",
        ".bashrc",
        "kinds/acl",
        "f050-link",
        "newdir/a/b/c.txt",
    ] {
        assert!(out.contains(changed), "{changed} was not sent: {out}");
    }
    let snaps = w.snapshots(&client);
    assert_eq!(snaps.len(), 2);
    check_snapshot(&w, &client, &snaps[1], &second_source, "second snapshot");
    let second = snapshot_tree(&w, &client, &snaps[1]);
    assert_eq!(
        fs::read_to_string(second.join("kinds/same-second")).unwrap(),
        "balance 999\n"
    );
    assert_eq!(
        fs::read_to_string(second.join("home/alice/.bashrc")).unwrap(),
        "export PS1='# '\n"
    );
    assert_ne!(
        stored_acl(&second.join("kinds/acl")),
        acl_before,
        "the ACL change was missed"
    );

    // Nothing changed: what was changed just before the last walk is sent
    // again (it could have changed unseen in the same tick), then nothing.
    settle();
    let out = backup(&w, &[]);
    assert!(incremental_paths(&out).is_some(), "{out}");
    std::thread::sleep(Duration::from_millis(1100));
    let out = backup(&w, &[]);
    let sent = incremental_paths(&out).unwrap_or_else(|| panic!("{out}"));
    assert!(
        sent <= above(&w),
        "{sent} paths sent after no change: {out}"
    );
    let snaps = w.snapshots(&client);
    assert_eq!(snaps.len(), 4);
    check_snapshot(&w, &client, &snaps[3], &second_source, "no-change snapshot");

    // A full pass over the same tree gives the same snapshot.
    std::thread::sleep(Duration::from_millis(1100));
    let out = backup(&w, &["--full"]);
    assert_eq!(incremental_paths(&out), None, "{out}");
    assert!(out.contains("full pass: --full"), "{out}");
    let snaps = w.snapshots(&client);
    check_snapshot(&w, &client, &snaps[4], &second_source, "--full snapshot");

    // Older snapshots never changed, though later backups linked to their
    // files (plain) or shared their extents (btrfs).
    check_snapshot(
        &w,
        &client,
        &snaps[0],
        &first_source,
        "first snapshot at the end",
    );
    check_snapshot(
        &w,
        &client,
        &snaps[1],
        &second_source,
        "second snapshot at the end",
    );
    assert_eq!(
        stored_acl(&snapshot_tree(&w, &client, &snaps[0]).join("kinds/acl")),
        acl_before
    );
}

/// Bytes no run of zeros a `--sparse` receiver would skip could hide in:
/// every 4 KiB block holds non-zero bytes, and some whole blocks are zero.
fn dense_bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| match (i / 4096) % 7 {
            3 => 0,
            _ => (i as u8).wrapping_mul(31).wrapping_add(seed) | 1,
        })
        .collect()
}

/// What the server logged of its receivers since `from` bytes: one entry
/// per rsync run, whether it kept holes (`--sparse`).
fn receivers_since(w: &World, from: usize) -> Vec<bool> {
    let log = fs::read_to_string(w.store().join(".byteback/server.log")).unwrap_or_default();
    log.get(from..)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(": running ") && l.contains(" --server "))
        .map(|l| l.split(' ').any(|w| w == "--sparse"))
        .collect()
}

fn log_len(w: &World) -> usize {
    fs::metadata(w.store().join(".byteback/server.log")).map_or(0, |m| m.len() as usize)
}

/// Files with holes keep them on the server, in a first (full) and in an
/// incremental backup, sent in a `--sparse` run of their own when 128 MiB
/// or more of files without holes go too (in a run without `--sparse` on
/// btrfs; a plain store keeps holes in every file it writes), in one
/// `--sparse` run when less does, and in a later full pass; every file
/// arrives byte for byte, blocks of zeros included.
fn files_with_holes_keep_them_in_full_and_incremental_backups(kind: FsKind) {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let Some(w) = World::on("holes", kind) else {
        return;
    };
    let client = w.enroll("holes.example");
    w.server_config(NO_INTERVAL);
    fs::create_dir_all(w.src.join("vm")).unwrap();
    // 64 MiB with 1 MiB of data at 8 MiB and 4 KiB at the end.
    let image = w.src.join("vm/disk.img");
    let f = fs::File::create(&image).unwrap();
    f.set_len(64 << 20).unwrap();
    f.write_all_at(&dense_bytes(1 << 20, 7), 8 << 20).unwrap();
    f.write_all_at(&[9u8; 4096], (64 << 20) - 4096).unwrap();
    drop(f);
    // Past the size from which the files without holes get a run of their
    // own (`SPLIT_FROM`, 128 MiB).
    fs::write(w.src.join("dense.bin"), dense_bytes(136 << 20, 1)).unwrap();
    for i in 0..20 {
        fs::write(w.src.join(format!("small-{i}")), format!("small {i}\n")).unwrap();
    }
    // The source as it is now: the two files' bytes and the manifest.
    let source = || {
        let bytes: Vec<Vec<u8>> = ["vm/disk.img", "dense.bin"]
            .iter()
            .map(|n| fs::read(w.src.join(n)).unwrap())
            .collect();
        (bytes, manifest::read(&w.src, Reading::Plain))
    };
    let check = |snapshot: &str, want: &(Vec<Vec<u8>>, Manifest), what: &str| {
        let tree = snapshot_tree(&w, &client, snapshot);
        for (name, bytes) in ["vm/disk.img", "dense.bin"].iter().zip(&want.0) {
            let stored = fs::read(tree.join(name)).unwrap();
            assert!(&stored == bytes, "{what}: {name} differs from its source");
        }
        let allocated = fs::metadata(tree.join("vm/disk.img")).unwrap().blocks() * 512;
        println!(
            "figure: {kind:?} {what}: vm/disk.img (64 MiB) allocates {allocated} bytes on the server"
        );
        assert!(
            allocated < 4 << 20,
            "{what}: vm/disk.img allocates {allocated} bytes"
        );
        manifest::assert_same(what, &want.1, &manifest::read(&tree, Reading::FakeSuper));
    };
    let from = log_len(&w);
    let out = backup(&w, &[]);
    assert_eq!(incremental_paths(&out), None, "{out}");
    let snaps = w.snapshots(&client);
    let first = source();
    check(&snaps[0], &first, "full backup");
    let runs = receivers_since(&w, from);
    let want = match kind {
        FsKind::Btrfs => vec![true, false],
        _ => vec![true, true],
    };
    assert_eq!(runs, want, "full backup's runs (sparse?): {out}");

    // Change both files (data into a hole, and in the middle of the
    // dense one), then an incremental backup.
    settle();
    let f = fs::OpenOptions::new().write(true).open(&image).unwrap();
    f.write_all_at(&[5u8; 8192], 32 << 20).unwrap();
    drop(f);
    let f = fs::OpenOptions::new()
        .write(true)
        .open(w.src.join("dense.bin"))
        .unwrap();
    f.write_all_at(&dense_bytes(64 << 10, 3), 1 << 20).unwrap();
    drop(f);
    settle();
    let from = log_len(&w);
    let out = backup(&w, &[]);
    assert!(incremental_paths(&out).is_some(), "not incremental: {out}");
    let snaps = w.snapshots(&client);
    check(&snaps[1], &source(), "incremental backup");
    assert_eq!(
        receivers_since(&w, from),
        want,
        "incremental's runs (sparse?)"
    );
    assert_eq!(
        changed_below_source(&w, &client),
        [
            ("dense.bin".to_owned(), "content".to_owned()),
            ("vm/disk.img".to_owned(), "content".to_owned())
        ],
        "the split incremental's change log"
    );
    check(&snaps[0], &first, "full backup, after the incremental");

    // The file with holes and a small one changed: too little without
    // holes for a run of its own, so one run, with --sparse.
    settle();
    let f = fs::OpenOptions::new().write(true).open(&image).unwrap();
    f.write_all_at(&[6u8; 4096], 40 << 20).unwrap();
    drop(f);
    fs::write(w.src.join("small-3"), "changed\n").unwrap();
    settle();
    let from = log_len(&w);
    let out = backup(&w, &[]);
    assert!(incremental_paths(&out).is_some(), "not incremental: {out}");
    let snaps = w.snapshots(&client);
    check(
        &snaps[2],
        &source(),
        "incremental backup of the image and a small file",
    );
    assert_eq!(receivers_since(&w, from), [true], "one --sparse run: {out}");

    // Only a small file changed: one run, without --sparse on btrfs.
    settle();
    fs::write(w.src.join("small-4"), "changed too\n").unwrap();
    settle();
    let from = log_len(&w);
    let out = backup(&w, &[]);
    assert!(incremental_paths(&out).is_some(), "not incremental: {out}");
    let snaps = w.snapshots(&client);
    check(&snaps[3], &source(), "incremental backup of a small file");
    assert_eq!(
        receivers_since(&w, from),
        [kind != FsKind::Btrfs],
        "one run, --sparse only into a plain store: {out}"
    );

    // A later full pass is one `--sparse` run (only a first backup, which
    // writes everything, is split), and its change log lists only what
    // changed, the file with holes kept as holes.
    settle();
    fs::write(w.src.join("small-5"), "changed before a full pass\n").unwrap();
    settle();
    let from = log_len(&w);
    let out = backup(&w, &["--full"]);
    assert_eq!(incremental_paths(&out), None, "{out}");
    let snaps = w.snapshots(&client);
    check(&snaps[4], &source(), "full pass after the incremental ones");
    assert_eq!(receivers_since(&w, from), [true], "full pass's runs: {out}");
    assert_eq!(
        changed_below_source(&w, &client),
        [("small-5".to_owned(), "content".to_owned())],
        "the full pass's change log"
    );
}

/// The newest snapshot's change log (`byteback-server diff --json`), the
/// paths below the source with what changed in each.
fn changed_below_source(w: &World, client: &str) -> Vec<(String, String)> {
    let out = w.server(&["diff", "--client", client, "--json"]);
    assert!(out.status.success(), "diff: {}", show(&out));
    let value: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let prefix = format!("{}/", w.src.to_string_lossy().trim_start_matches('/'));
    value["paths"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|pair| {
            let rel = pair[0].as_str()?.strip_prefix(&prefix)?;
            Some((rel.to_owned(), pair[1].as_str()?.to_owned()))
        })
        .collect()
}

/// An index that cannot be trusted makes a full pass: after a snapshot it
/// does not describe (taken by hand), changed excludes or sources, a
/// corrupt index, and every `full_scan_every`; and a receiver that was not
/// readied refuses an incremental transfer.
#[test]
fn the_index_is_rebuilt_when_it_cannot_be_trusted() {
    let Some(w) = World::on("untrusted", FsKind::Btrfs) else {
        return;
    };
    let client = w.enroll("untrusted.example");
    w.server_config(NO_INTERVAL);
    fs::create_dir_all(w.src.join("d")).unwrap();
    for i in 0..20 {
        fs::write(w.src.join(format!("d/f{i}")), format!("{i}\n")).unwrap();
    }
    settle();
    let pause = || std::thread::sleep(Duration::from_millis(1100));
    let out = backup(&w, &[]);
    assert_eq!(incremental_paths(&out), None, "{out}");
    pause();
    let out = backup(&w, &[]);
    assert!(
        incremental_paths(&out).is_some_and(|n| n <= above(&w)),
        "{out}"
    );

    // A snapshot taken by hand on the server: the index no longer
    // describes the newest snapshot.
    pause();
    fs::write(w.src.join("d/f1"), "changed\n").unwrap();
    let out = w.server(&["snapshot", "--client", &client]);
    assert!(out.status.success(), "{}", show(&out));
    pause();
    let out = backup(&w, &[]);
    assert_eq!(incremental_paths(&out), None, "{out}");
    assert!(out.contains("which the change index describes"), "{out}");
    let check = |w: &World| {
        let snaps = w.snapshots(&client);
        manifest::assert_same(
            "snapshot",
            &manifest::read(&w.src, Reading::Plain),
            &manifest::read(
                &snapshot_tree(w, &client, snaps.last().unwrap()),
                Reading::FakeSuper,
            ),
        );
    };
    check(&w);

    // A corrupt index is no index.
    let index = w.client_dir.join("index");
    let mut bytes = fs::read(&index).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    fs::write(&index, &bytes).unwrap();
    pause();
    let out = backup(&w, &[]);
    assert!(
        out.contains("no change index yet (or it was unreadable)"),
        "{out}"
    );
    check(&w);
    fs::write(&index, b"").unwrap();
    pause();
    let out = backup(&w, &[]);
    assert_eq!(incremental_paths(&out), None, "{out}");

    // Changed sources or excludes.
    settle();
    let out = backup(&w, &[]);
    assert!(incremental_paths(&out).is_some(), "{out}");
    let d = w.src.join("d").to_string_lossy().into_owned();
    for extra in [&["--source", d.as_str()][..], &[]] {
        pause();
        let out = backup(&w, extra);
        assert!(
            out.contains("the sources, exclusions or destination changed"),
            "{out}"
        );
    }
    pause();
    let out = backup(&w, &["--exclude", "/nothing/*"]);
    assert!(out.contains("the exclude pattern \"/nothing/*\""), "{out}");
    // That pass could not walk: the index describes the snapshot before.
    pause();
    let out = backup(&w, &[]);
    assert!(out.contains("which the change index describes"), "{out}");
    check(&w);

    // One backup in full_scan_every is a full pass.
    w.client_config("full_scan_every = 3\n");
    for want_full in [false, false, true, false] {
        pause();
        let out = backup(&w, &[]);
        assert_eq!(incremental_paths(&out).is_none(), want_full, "{out}");
    }
    check(&w);

    // A receiver that was not readied refuses an incremental transfer.
    let file = format!("{}/d/f1", w.src.display());
    let out = w.raw_rsync(&["-a", "--delete-missing-args", &file], "current/");
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not readied for an incremental backup"),
        "{}",
        show(&out)
    );
}

fn random_blobs(dir: &Path, seed: u64) {
    let mut seed = seed;
    for i in 0..32 {
        let mut data = vec![0u8; 4 << 20];
        for chunk in data.chunks_mut(8) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            chunk.copy_from_slice(&seed.to_le_bytes());
        }
        fs::write(dir.join(format!("blob{i:02}")), &data).unwrap();
    }
}

/// A crash between transfer and snapshot: the index stays as it was, and
/// the next backup — though what the killed attempt wrote is in `current`,
/// and the source changed again meanwhile — makes an exact snapshot. A
/// file changed while a transfer runs is in the next snapshot.
fn a_killed_incremental_backup_leaves_the_index_uncommitted(kind: FsKind) {
    let Some(w) = World::on("killedinc", kind) else {
        return;
    };
    let client = w.enroll("killedinc.example");
    w.server_config(NO_INTERVAL);
    w.client_config("retry_attempts = 1\n");
    let big = w.src.join("big");
    fs::create_dir(&big).unwrap();
    random_blobs(&big, 0x9e3779b97f4a7c15);
    fs::write(w.src.join("small"), "small one\n").unwrap();
    settle();
    backup(&w, &[]);
    let index = w.client_dir.join("index");
    let committed = fs::read(&index).unwrap();

    // New content everywhere, and a file that the attempt sends and that
    // is gone before the next one.
    random_blobs(&big, 0x1234_5678_9abc_def1);
    fs::write(w.src.join("a-doomed"), "sent, then deleted\n").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let src = w.src.to_string_lossy().into_owned();
    let mut child = w
        .client_command(&["backup", "--source", &src])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let killed = loop {
        assert!(Instant::now() < deadline, "the transfer never started");
        let current = inside(&w.store().join(&client).join("current"), &w.src);
        let sent_first = current.join("a-doomed").exists();
        if let (Some(rsync), true) = (child_named(child.id(), "rsync"), sent_first) {
            rustix::process::kill_process(
                rustix::process::Pid::from_raw(rsync as i32).unwrap(),
                rustix::process::Signal::KILL,
            )
            .unwrap();
            break true;
        } else if child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let out = child.wait_with_output().unwrap();
    assert!(killed, "finished before it could be killed: {}", show(&out));
    assert!(!out.status.success(), "{}", show(&out));
    assert_eq!(
        w.snapshots(&client).len(),
        1,
        "no snapshot after a killed attempt"
    );
    assert_eq!(
        fs::read(&index).unwrap(),
        committed,
        "the index was committed"
    );
    // It was killed once it had sent the first file (in walk order).

    fs::remove_file(w.src.join("a-doomed")).unwrap();
    fs::write(w.src.join("small"), "small two\n").unwrap();
    let want = manifest::read(&w.src, Reading::Plain);
    std::thread::sleep(Duration::from_millis(1100));
    let config = w.client_dir.join("config.toml");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        text.replace(
            "retry_attempts = 1",
            "retry_attempts = 3\nretry_pause = \"1s\"",
        ),
    )
    .unwrap();

    // Meanwhile, a file changed while the transfer runs (same size, mtime
    // put back) is sent by the backup after.
    let small = w.src.join("small");
    let mut child = w
        .client_command(&["backup", "--source", &src])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the transfer never started");
        if child_named(child.id(), "rsync").is_some() || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let stamp = fs::metadata(&small).unwrap().modified().unwrap();
    fs::write(&small, "small 333\n").unwrap();
    fs::File::options()
        .write(true)
        .open(&small)
        .unwrap()
        .set_modified(stamp)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let snaps = w.snapshots(&client);
    assert_eq!(snaps.len(), 2);
    let mut got = manifest::read(&snapshot_tree(&w, &client, &snaps[1]), Reading::FakeSuper);
    // `small` is either version, depending on when rsync read it.
    let key = PathBuf::from("./small");
    let small_in_snapshot = got.remove(&key).unwrap();
    let mut want_rest = want.clone();
    let small_wanted = want_rest.remove(&key).unwrap();
    manifest::assert_same("after the killed attempt", &want_rest, &got);
    assert_eq!(small_in_snapshot.size, small_wanted.size);
    assert_ne!(
        fs::read(&index).unwrap(),
        committed,
        "the index was not committed"
    );

    std::thread::sleep(Duration::from_millis(1100));
    let out = backup(&w, &[]);
    assert!(incremental_paths(&out).is_some(), "{out}");
    let snaps = w.snapshots(&client);
    let third = snapshot_tree(&w, &client, &snaps[2]);
    assert_eq!(
        fs::read_to_string(third.join("small")).unwrap(),
        "small 333\n"
    );
    manifest::assert_same(
        "third snapshot",
        &manifest::read(&w.src, Reading::Plain),
        &manifest::read(&third, Reading::FakeSuper),
    );
}
