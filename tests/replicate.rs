//! End to end: a second byteback server holding copies of the first's
//! snapshots — replicated, resumed after a kill, guarded against a hostile
//! primary, and restored from with a client's read-only key. Two worlds:
//! the primary (btrfs, with its client) and the replica (btrfs or plain).

use byteback_testbed as support;

use support::dir_bytes;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::FsKind;
use support::manifest::{self, Reading, inside};
use support::world::{World, show, stderr, stdout};

/// Interval 0 so a test can take several snapshots in a row.
const NO_INTERVAL: &str = "min_snapshot_interval = \"0s\"\n";
/// Quick retries for the primary.
const QUICK: &str = "min_snapshot_interval = \"0s\"\n[replicate]\nretry_pause = \"1s\"\n";
/// The primary's name on the replica.
const PRIMARY: &str = "primary";
const CLIENT: &str = "client.example";

/// A primary with one enrolled client, and a replica that enrolled the
/// primary's replication key.
struct Pair {
    p: World,
    r: World,
    /// The primary's replication key line, as `replicate --setup` printed it.
    key_line: String,
}

impl Pair {
    fn new(label: &str, replica: FsKind) -> Option<Pair> {
        let p = World::new(&format!("{label}-p"))?;
        let r = World::on(&format!("{label}-r"), replica)?;
        p.enroll(CLIENT);
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
        assert_eq!(&args[..4], ["new-client", "--replica", "--name", PRIMARY]);
        let out = r.server(&args);
        assert!(out.status.success(), "new-client --replica: {}", show(&out));
        assert!(
            stdout(&out).contains("Replica setup for primary primary done!"),
            "{}",
            show(&out)
        );
        assert_eq!(&args[4..6], ["--clients", CLIENT], "the primary's clients");
        let key_line = args[6..].join(" ");
        // The replica is configured too (status and pruning look at it).
        p.server_config(&format!("{QUICK}to = [\"{}\"]\n", r.destination()));
        Some(Pair { p, r, key_line })
    }

    /// The replica's name for the primary's client.
    fn mapped(&self) -> String {
        format!("{PRIMARY}__{CLIENT}")
    }

    /// Runs `byteback-server replicate --to <replica>` on the primary.
    fn replicate(&self, extra: &[&str]) -> Output {
        let dest = self.r.destination();
        let mut args = vec!["replicate", "--to", &dest];
        args.extend_from_slice(extra);
        self.p.server(&args)
    }

    fn replicate_ok(&self) -> String {
        let out = self.replicate(&["--accept-new-host-key"]);
        assert!(out.status.success(), "replicate: {}", show(&out));
        stdout(&out)
    }

    /// A snapshot's tree (the backed-up source inside it), on either side.
    fn tree(&self, on_replica: bool, snapshot: &str) -> PathBuf {
        let (w, client) = if on_replica {
            (&self.r, self.mapped())
        } else {
            (&self.p, CLIENT.to_owned())
        };
        inside(&w.store().join(client).join(snapshot), &self.p.src)
    }

    /// Asserts the replica holds exactly the primary's snapshots, each
    /// identical file by file (content, mode, owner, xattrs, hard links).
    fn assert_replicated(&self, what: &str) -> Vec<String> {
        let ours = self.p.snapshots(CLIENT);
        let theirs = self.r.snapshots(&self.mapped());
        assert_eq!(ours, theirs, "{what}: the replica's snapshots");
        for s in &ours {
            manifest::assert_same(
                &format!("{what}: snapshot {s}"),
                &manifest::read(&self.tree(false, s), Reading::FakeSuper),
                &manifest::read(&self.tree(true, s), Reading::FakeSuper),
            );
        }
        ours
    }
}

support::world::on_both_backends!(three_backups_replicate_then_only_the_fourth_is_sent);

/// A replica (btrfs or plain) holds the primary's snapshots under their
/// names, identical file by file with the client's ownership; with nothing
/// new nothing is sent, and a fourth backup alone is sent, the replica
/// growing by about what changed; the primary records what the replica
/// holds.
fn three_backups_replicate_then_only_the_fourth_is_sent(replica: FsKind) {
    let Some(pair) = Pair::new("repl", replica) else {
        return;
    };
    let p = &pair.p;
    support::tree::populate(&p.src);
    p.backup_ok();
    for change in ["second", "third"] {
        std::thread::sleep(Duration::from_millis(1100));
        std::fs::write(p.src.join("etc/hostname"), format!("{change}.example\n")).unwrap();
        std::fs::write(p.src.join(change), change).unwrap();
        p.backup_ok();
    }
    assert_eq!(p.snapshots(CLIENT).len(), 3);

    let out = pair.replicate_ok();
    assert!(
        out.contains("3 snapshot(s) of 1 client(s)"),
        "first replication: {out}"
    );
    let names = pair.assert_replicated("first replication");
    if replica == FsKind::Btrfs {
        for s in &names {
            let path = pair.r.store().join(pair.mapped()).join(s);
            let ro = support::run_ok(&[
                "btrfs",
                "property",
                "get",
                "-ts",
                &path.to_string_lossy(),
                "ro",
            ]);
            assert_eq!(ro.trim(), "ro=true", "{s} must be read-only on the replica");
        }
    }
    // The client's ownership came through as the client's, not the backup user's.
    let shadow = manifest::read(&pair.tree(true, &names[2]), Reading::FakeSuper);
    let entry = &shadow[Path::new("./etc/shadow")];
    assert_eq!((entry.uid, entry.gid), (0, 42));
    let source = manifest::read(&p.src, Reading::Plain);
    assert_eq!(entry.mode, source[Path::new("./etc/shadow")].mode);

    // Nothing new: nothing sent.
    let out = pair.replicate_ok();
    assert!(out.contains("is up to date"), "{out}");

    // A fourth backup with 4 MiB of new data: only it is sent, and the
    // replica grows by about that much.
    std::thread::sleep(Duration::from_millis(1100));
    let mut seed: u64 = 0x2545f4914f6cdd1d;
    let mut data = vec![0u8; 4 << 20];
    for chunk in data.chunks_mut(8) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        chunk.copy_from_slice(&seed.to_le_bytes());
    }
    std::fs::write(p.src.join("new-4MiB"), &data).unwrap();
    p.backup_ok();
    let used_before = used_bytes(&pair.r, replica);
    let status = stdout(&p.server(&["status"]));
    assert!(
        status.contains(&format!(
            "replica {} 1 snapshot(s) behind",
            pair.r.destination()
        )),
        "{status}"
    );
    // No --to: the configured replica.
    let out = p.server(&["replicate"]);
    assert!(out.status.success(), "{}", show(&out));
    let out = stdout(&out);
    let grew = used_bytes(&pair.r, replica).saturating_sub(used_before);
    assert!(
        out.contains("Replicated to") && out.contains("1 snapshot(s) of 1 client(s)"),
        "{out}"
    );
    let sent: Vec<&str> = out.lines().filter(|l| l.starts_with(CLIENT)).collect();
    assert_eq!(sent.len(), 1, "one snapshot line: {out}");
    let files: u64 = sent[0]
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a file count");
    assert!(files <= 2, "only the new file is sent: {out}");
    println!(
        "figure: a {replica:?} replica grew by {grew} bytes for a snapshot with 4 MiB of new data"
    );
    assert!(
        (3 << 20..16 << 20).contains(&grew),
        "the replica grew by {grew} bytes for 4 MiB of changes"
    );
    pair.assert_replicated("fourth replication");
    let status = stdout(&p.server(&["status"]));
    assert!(
        status.contains(&format!("replica {} up to date", pair.r.destination())),
        "{status}"
    );
    let clients = stdout(&pair.r.server(&["clients"]));
    assert!(
        clients.contains("replica of a primary") && clients.contains("replicated from primary"),
        "{clients}"
    );
    // The primary recorded what the replica holds.
    let record = std::fs::read_dir(p.store().join(".byteback/replication"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("replica-"))
        .expect("a record per replica");
    let text = std::fs::read_to_string(record.path()).unwrap();
    assert!(text.contains(&names[2][..10]), "{text}");
}

/// A replication killed mid-transfer resumes and completes identically; a
/// full replica prunes by itself while the primary keeps everything.
#[test]
fn a_killed_replication_resumes_and_completes() {
    let Some(pair) = Pair::new("repl-kill", FsKind::Btrfs) else {
        return;
    };
    let p = &pair.p;
    // 32 MiB of incompressible data, sent at 4 MiB/s: about 8 s.
    let big = p.src.join("big");
    std::fs::create_dir(&big).unwrap();
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    for i in 0..8 {
        let mut data = vec![0u8; 4 << 20];
        for chunk in data.chunks_mut(8) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            chunk.copy_from_slice(&seed.to_le_bytes());
        }
        std::fs::write(big.join(format!("blob{i}")), &data).unwrap();
    }
    p.backup_ok();
    p.server_config(&format!(
        "{NO_INTERVAL}[replicate]\nbwlimit = \"4m\"\nretry_attempts = 1\n"
    ));
    let dest = pair.r.destination();
    let mut child = Command::new(&p.server_bin)
        .args(["replicate", "--to", &dest, "--accept-new-host-key"])
        .uid(p.user.uid)
        .gid(p.user.gid)
        .env_clear()
        .env("HOME", &p.user.home)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .current_dir(&p.user.home)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let current = inside(&pair.r.store().join(pair.mapped()).join("current"), &p.src);
    let deadline = Instant::now() + Duration::from_secs(60);
    let killed = loop {
        assert!(Instant::now() < deadline, "the transfer never started");
        if dir_bytes(&current) > 6 << 20 {
            // The whole run: replicate, its rsync and its ssh connection.
            rustix::process::kill_process_group(
                rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
                rustix::process::Signal::KILL,
            )
            .unwrap();
            break true;
        }
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let killed_pid = child.id();
    let out = child.wait_with_output().unwrap();
    // A killed replication cannot remove its ssh master's socket; where the
    // store's path is too long for one (as here), it is in the temporary
    // directory, named by the process (`replicate::control_socket`).
    let _ = std::fs::remove_file(
        std::env::temp_dir().join(format!("byteback-replication-ssh-{killed_pid}")),
    );
    assert!(
        killed,
        "replication ended before it could be killed: {}",
        show(&out)
    );
    assert!(
        pair.r.snapshots(&pair.mapped()).is_empty(),
        "no snapshot on the replica after an interrupted replication"
    );
    let partial = dir_bytes(&current);
    assert!(
        partial < 32 << 20,
        "{partial} bytes arrived before the kill"
    );

    // Again, faster: it resumes into the partly filled current and completes.
    p.server_config(QUICK);
    let out = pair.replicate_ok();
    assert!(out.contains("1 snapshot(s)"), "{out}");
    pair.assert_replicated("resumed replication");

    // A full replica prunes by itself, while the primary keeps everything.
    pair.r
        .server_config("min_free_percent = 99.0\ntarget_free_percent = 99.5\nmin_age = \"0s\"\n");
    for change in ["second", "third"] {
        std::thread::sleep(Duration::from_millis(1100));
        std::fs::write(p.src.join(change), change).unwrap();
        p.backup_ok();
    }
    pair.replicate_ok();
    let ours = p.snapshots(CLIENT);
    let theirs = pair.r.snapshots(&pair.mapped());
    assert_eq!(ours.len(), 3, "the primary keeps its history");
    assert!(
        theirs.len() < ours.len() && theirs.last() == ours.last(),
        "the replica pruned by itself, never its newest: {theirs:?} of {ours:?}"
    );
    let log = std::fs::read_to_string(pair.r.store().join(".byteback/server.log")).unwrap();
    assert!(log.contains("prune: deleted"), "{log}");
}

/// A primary's key on the replica gets no shell, no other command and none
/// of a client's requests; it cannot alter, delete or pre-date replica
/// snapshots (only newer, never in the future), nor reach another primary's
/// or a client's area, nor a client it was not enrolled for.
#[test]
fn a_hostile_primary_can_only_add_newer_history() {
    let Some(pair) = Pair::new("repl-hostile", FsKind::Btrfs) else {
        return;
    };
    let (p, r) = (&pair.p, &pair.r);
    support::tree::populate(&p.src);
    p.backup_ok();
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(p.src.join("etc/hostname"), "second.example\n").unwrap();
    p.backup_ok();
    pair.replicate_ok();
    let names = pair.assert_replicated("before the attacks");
    // Someone else's areas on the replica: an ordinary client, and another
    // primary's client (its data put there by hand).
    r.add_client_with_file(
        "victim.example",
        "secret",
        "victim's\n",
        "2026-01-01T00:00:00Z",
    );
    let other_key = r.area.path.join("other-key");
    let key = support::ssh_keygen(&other_key);
    let mut args = vec!["new-client", "--read-only", "--name", "other__c"];
    args.extend(key.split(' '));
    let out = r.server(&args);
    assert!(out.status.success(), "{}", show(&out));
    let other_file = r.store().join("other__c/current/theirs");
    std::fs::write(&other_file, "other primary's\n").unwrap();
    std::os::unix::fs::chown(&other_file, Some(r.user.uid), Some(r.user.gid)).unwrap();
    let out = r.server(&[
        "snapshot",
        "--client",
        "other__c",
        "--at",
        "2026-01-01T00:00:00Z",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let state = |dir: &str| manifest::read(&r.store().join(dir), Reading::FakeSuper);
    let before: Vec<_> = ["victim.example", "other__c", &pair.mapped()]
        .iter()
        .map(|d| state(d))
        .collect();

    // The attacker holds the primary's key (and its known_hosts).
    let key = r.area.path.join("primary-key");
    std::fs::copy(p.store().join(".byteback/replication/key"), &key).unwrap();
    let known = p.store().join(".byteback/replication/known_hosts");
    let ssh_opts = format!(
        "ssh -F none -T -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -p {}",
        key.display(),
        known.display(),
        r.sshd.port
    );
    let host = format!("{}@127.0.0.1", r.user.name);
    let ssh = |command: Option<&str>| {
        let mut argv: Vec<String> = ssh_opts.split(' ').map(str::to_owned).collect();
        argv.push(host.clone());
        argv.extend(command.map(str::to_owned));
        Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let rsync = |args: &[&str], remote: &str| {
        Command::new("rsync")
            .args(args)
            .arg("--rsh")
            .arg(&ssh_opts)
            .arg(format!("{host}:{remote}"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let refused = |out: &Output, why: &str| {
        assert!(!out.status.success(), "must fail: {}", show(out));
        assert!(stderr(out).contains(why), "expected {why:?}: {}", show(out));
    };

    // No shell, no other command, none of a client's requests.
    refused(&ssh(None), "no command given");
    for command in [
        "sh -c id",
        "/bin/sh",
        "byteback ping",
        "byteback complete",
        "byteback snapshots",
        "byteback list %2A /",
        "rm -rf .",
        "byteback-server prune --force",
    ] {
        refused(&ssh(Some(command)), "not allowed");
    }
    // Snapshots only newer than the newest, and not in the future.
    let newest = &names[1];
    for name in [newest.as_str(), &names[0], "2000-01-01T00:00:00Z"] {
        refused(
            &ssh(Some(&format!("byteback replica-snapshot {CLIENT} {name}"))),
            "not newer",
        );
    }
    refused(
        &ssh(Some(&format!(
            "byteback replica-snapshot {CLIENT} 2999-01-01T00:00:00Z"
        ))),
        "in the future",
    );
    // Names that are not a client or a snapshot.
    refused(
        &ssh(Some(
            "byteback replica-snapshot ../victim.example 2026-11-30T00:00:00Z",
        )),
        "invalid client name",
    );
    refused(
        &ssh(Some(&format!("byteback replica-snapshot {CLIENT} current"))),
        "not a snapshot name",
    );
    // rsync: reading, deleting through options, other destinations.
    let scratch = r.area.path.join("attacker");
    std::fs::create_dir(&scratch).unwrap();
    let scratch_s = format!("{}/", scratch.display());
    let out = Command::new("rsync")
        .args(["-a", "--rsh", &ssh_opts])
        .arg(format!("{host}:{CLIENT}/{newest}/"))
        .arg(&scratch)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    refused(&out, "--sender");
    for (args, remote, why) in [
        (
            vec!["-a", "--remove-source-files"],
            format!("{CLIENT}/current/"),
            "--remove-source-files",
        ),
        (
            vec!["-a", "--link-dest=../../victim.example/current"],
            format!("{CLIENT}/current/"),
            "--link-dest",
        ),
        (
            vec!["-a", "--delete", "--backup-dir=../x"],
            format!("{CLIENT}/current/"),
            "not allowed",
        ),
        // Not a replica's destination: read as a client's transfer, which
        // the role table refuses a replica key.
        (
            vec!["-a"],
            format!("{CLIENT}/{newest}/"),
            "not allowed for this key",
        ),
        (
            vec!["-a"],
            "../victim.example/current/".to_owned(),
            "not allowed for this key",
        ),
        (
            vec!["-a"],
            "victim.example/../x/current/".to_owned(),
            "not allowed for this key",
        ),
        (
            vec!["-a"],
            "current/".to_owned(),
            "not allowed for this key",
        ),
    ] {
        let mut a = args.clone();
        a.push(&scratch_s);
        refused(&rsync(&a, &remote), why);
    }
    // What it may do — empty its own client's current — lands in that
    // client's mapped area only; a client it was not enrolled for
    // ("victim.example", "other__c") is refused before anything is made.
    let out = rsync(
        &["-a", "--delete", &scratch_s],
        &format!("{CLIENT}/current/"),
    );
    assert!(out.status.success(), "{CLIENT}: {}", show(&out));
    for target in ["victim.example", "other__c"] {
        let out = rsync(
            &["-a", "--delete", &scratch_s],
            &format!("{target}/current/"),
        );
        refused(&out, "may not replicate client");
        assert!(!r.store().join(format!("primary__{target}")).exists());
    }
    manifest::assert_same("a client's area", &before[0], &state("victim.example"));
    manifest::assert_same("another primary's area", &before[1], &state("other__c"));
    let history = |mut m: std::collections::BTreeMap<PathBuf, manifest::Entry>| {
        // Its own staging area (and the count of what was written into
        // it, and whether it still equals the newest snapshot: xattrs of
        // the directory; and the directory's own time, which the
        // receiver's change log coming and going beside `current` moves)
        // may change; its history may not.
        m.retain(|path, _| !path.starts_with("./current"));
        if let Some(dir) = m.get_mut(Path::new(".")) {
            dir.mtime = None;
            dir.xattrs.remove("user.byteback.growth");
            dir.xattrs.remove("user.byteback.clean");
            dir.xattrs.remove("user.byteback.incremental");
            dir.xattrs.remove("user.byteback.producer");
        }
        m
    };
    manifest::assert_same(
        "its own history",
        &history(before[2].clone()),
        &history(state(&pair.mapped())),
    );
    assert_eq!(
        r.snapshots(&pair.mapped()),
        names,
        "no snapshot added or removed"
    );
}

/// A client restores from the replica with its own key enrolled there
/// read-only, getting the same files as from the primary, and cannot back
/// up with that key.
#[test]
fn restore_from_the_replica_with_a_read_only_key() {
    let Some(pair) = Pair::new("repl-restore", FsKind::Btrfs) else {
        return;
    };
    let (p, r) = (&pair.p, &pair.r);
    support::tree::populate(&p.src);
    p.backup_ok();
    pair.replicate_ok();
    let names = pair.assert_replicated("replicated");
    // The client's own key, enrolled on the replica for reading only.
    let public = std::fs::read_to_string(p.client_dir.join("key.pub")).unwrap();
    let mut args = vec![
        "new-client",
        "--read-only",
        "--name",
        "primary__client.example",
    ];
    args.extend(public.split_whitespace());
    let out = r.server(&args);
    assert!(out.status.success(), "{}", show(&out));
    let replica = r.destination();
    let out = p.client(&["test", "--destination", &replica, "--accept-new-host-key"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("1 snapshots"), "{}", show(&out));
    let src = p.src.to_string_lossy().into_owned();
    let out = p.client(&[
        "list",
        "--destination",
        &replica,
        "--all",
        &format!("{src}/etc/shadow"),
    ]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains(&names[0]), "{}", show(&out));
    // The same restore from either server gives the same files.
    let restore = |from: &str, into: &Path| {
        let out = p.client(&[
            "restore",
            "--destination",
            from,
            "--snapshot",
            &names[0],
            "--into",
            &into.to_string_lossy(),
            &src,
        ]);
        assert!(out.status.success(), "restore from {from}: {}", show(&out));
        manifest::read(&inside(&into.join(&names[0]), &p.src), Reading::Plain)
    };
    let from_primary = restore(&p.destination(), &p.area.path.join("from-primary"));
    let from_replica = restore(&replica, &p.area.path.join("from-replica"));
    manifest::assert_same("restore from the replica", &from_primary, &from_replica);
    manifest::assert_same(
        "restore from the replica",
        &manifest::read(&p.src, Reading::Plain),
        &from_replica,
    );
    // That key cannot back up.
    let current = r.store().join(pair.mapped()).join("current");
    let before = manifest::read(&current, Reading::FakeSuper);
    let out = p.client(&["backup", "--destination", &replica, "--source", &src]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(stderr(&out).contains("read-only"), "{}", show(&out));
    assert_eq!(r.snapshots(&pair.mapped()), names);
    manifest::assert_same(
        "current after a refused backup",
        &before,
        &manifest::read(&current, Reading::FakeSuper),
    );
    let _ = &pair.key_line;
}

/// Bytes in use on a world's store: btrfs's own data figure (its free
/// space moves in whole chunks), or what statfs says for ext4.
fn used_bytes(w: &World, kind: FsKind) -> u64 {
    let mp = w.fs.mount_point.to_string_lossy().into_owned();
    support::run_ok(&["sync"]);
    if kind == FsKind::Btrfs {
        let out = support::run_ok(&["btrfs", "filesystem", "df", "-b", &mp]);
        let line = out
            .lines()
            .find(|l| l.starts_with("Data"))
            .expect("btrfs df");
        return line
            .split("used=")
            .nth(1)
            .and_then(|v| v.trim().parse().ok())
            .expect("used=");
    }
    let out = support::run_ok(&["stat", "-f", "-c", "%b %f %S", &mp]);
    let n: Vec<u64> = out.split_whitespace().flat_map(str::parse).collect();
    (n[0] - n[1]) * n[2]
}
