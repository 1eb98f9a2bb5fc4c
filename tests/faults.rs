//! End to end, under faults and load (real sshd, rsync and btrfs):
//!
//! - the fault matrix: a backup cut at seeded points by five different
//!   faults, each time followed by a run that completes with a snapshot
//!   identical to the source;
//! - a source that changes while it is backed up: the backup succeeds and
//!   every file in the snapshot is a version the file really had;
//! - eight clients backing up at once while pruning runs, against the same
//!   eight one after another (the figures are printed for RELIABILITY.md).
//!
//! `BYTEBACK_FAULT_SEED=N` replays another matrix; the seed in use is printed.

use byteback_testbed as support;

use support::children_named;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::FsKind;
use support::manifest::{self, Reading, inside};
use support::world::{World, show, stderr};

/// A small deterministic generator (xorshift64*), so a seed replays a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut data = vec![0u8; len];
        for chunk in data.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        data
    }
}

fn kill(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// The ways a transfer is cut.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The client's rsync dies.
    ClientRsync,
    /// The ssh session rsync runs over dies (its mux client).
    ClientSsh,
    /// The shared ssh master connection dies: the connection drops.
    SshMaster,
    /// The server's rsync dies.
    ServerRsync,
    /// sshd stops, with every session (it is started again afterwards).
    StopSshd,
}

const FAULTS: [Fault; 5] = [
    Fault::ClientRsync,
    Fault::ClientSsh,
    Fault::SshMaster,
    Fault::ServerRsync,
    Fault::StopSshd,
];

/// Applies `fault` to the running backup `client`; whether there was
/// anything to cut.
fn cut(w: &mut World, client: &Child, fault: Fault) -> bool {
    let byteback = client.id();
    let rsync = children_named(byteback, "rsync");
    let targets: Vec<u32> = match fault {
        Fault::ClientRsync => rsync,
        Fault::ClientSsh => rsync
            .iter()
            .flat_map(|&r| children_named(r, "ssh"))
            .collect(),
        Fault::SshMaster => children_named(byteback, "ssh"),
        Fault::ServerRsync => support::processes_of(w.user.uid, "rsync"),
        Fault::StopSshd => {
            if rsync.is_empty() {
                return false;
            }
            w.sshd.stop();
            return true;
        }
    };
    for &pid in &targets {
        kill(pid);
    }
    !targets.is_empty()
}

/// Waits for `child` (a backup), at most `limit`.
fn wait(mut child: Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the backup did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn snapshot_of(w: &World, client: &str, src: &Path) -> PathBuf {
    let snaps = w.snapshots(client);
    inside(&w.store().join(client).join(snaps.last().unwrap()), src)
}

/// A backup cut at 10 seeded points of its transfer, twice by each of five
/// faults (the client's rsync, its ssh or the ssh master killed, the
/// server's rsync killed, sshd stopped): each next run completes with
/// exactly one new snapshot, identical to the source.
#[test]
fn a_backup_cut_anywhere_completes_on_the_next_run() {
    let Some(mut w) = World::new("faults") else {
        return;
    };
    let seed: u64 = std::env::var("BYTEBACK_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261128);
    println!("fault matrix seed: {seed} (BYTEBACK_FAULT_SEED replays it)");
    let mut rng = Rng(seed | 1);
    let client = w.enroll("faults.example");
    w.server_config("min_snapshot_interval = \"0s\"\nlock_wait = \"60s\"\n");
    // 8 MB/s: a round's 12 MiB of new data takes about 1.5 s to send.
    w.client_config("retry_attempts = 1\nbwlimit = \"8M\"\n");
    let src = w.src.clone();
    std::fs::create_dir(src.join("keep")).unwrap();
    for i in 0..20 {
        std::fs::write(src.join(format!("keep/small{i}")), rng.bytes(3000)).unwrap();
    }
    std::fs::hard_link(src.join("keep/small0"), src.join("keep/link0")).unwrap();

    let mut landed = 0;
    for round in 0..10 {
        // New content for this round, so there is something to cut.
        for i in 0..3 {
            std::fs::write(src.join(format!("blob{i}")), rng.bytes(4 << 20)).unwrap();
        }
        std::fs::write(src.join("keep/round"), format!("{round}\n")).unwrap();
        let source = manifest::read(&src, Reading::Plain);
        // Every fault twice; where in the transfer it strikes is seeded.
        let fault = FAULTS[round % FAULTS.len()];
        let delay = Duration::from_millis(150 + rng.below(1200));

        let child = w
            .client_command(&["backup", "--source", &src.to_string_lossy()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The cut comes `delay` after the transfer starts.
        let started = Instant::now() + Duration::from_secs(30);
        let mut cut_done = false;
        let mut transfer_seen: Option<Instant> = None;
        loop {
            let now = Instant::now();
            assert!(now < started, "round {round}: the transfer never started");
            if transfer_seen.is_none() && !children_named(child.id(), "rsync").is_empty() {
                transfer_seen = Some(now);
            }
            if transfer_seen.is_some_and(|t| now >= t + delay) {
                cut_done = cut(&mut w, &child, fault);
                break;
            }
            if children_named(child.id(), "rsync").is_empty() && transfer_seen.is_some() {
                break; // finished before the cut
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = wait(child, Duration::from_secs(120));
        if matches!(fault, Fault::StopSshd) {
            w.sshd.start_again();
        }
        let snapshots_before = w.snapshots(&client).len();
        if cut_done && !out.status.success() {
            landed += 1;
        }
        println!(
            "round {round}: {fault:?} after {delay:?}: {}",
            if out.status.success() {
                "the backup had already finished"
            } else {
                "cut"
            }
        );

        // The next run completes, and the snapshot is the source.
        let out = w.client(&["backup", "--source", &src.to_string_lossy()]);
        assert!(
            out.status.success(),
            "round {round} ({fault:?}): {}",
            show(&out)
        );
        assert_eq!(
            w.snapshots(&client).len(),
            snapshots_before + 1,
            "round {round}: one new snapshot"
        );
        manifest::assert_same(
            &format!("round {round} ({fault:?})"),
            &source,
            &manifest::read(&snapshot_of(&w, &client, &src), Reading::FakeSuper),
        );
    }
    println!(
        "figure: fault matrix: {landed} of 10 cuts landed mid-transfer (seed {seed}); all 10 next runs complete and identical"
    );
    assert!(landed >= 7, "only {landed} of 10 cuts landed mid-transfer");
}

/// A source growing, losing files and renaming them while it is backed up:
/// the backup succeeds, and every file in the snapshot is a version that
/// file really had.
#[test]
fn a_source_changing_during_the_backup_gives_real_versions() {
    let Some(w) = World::new("changing") else {
        return;
    };
    let client = w.enroll("changing.example");
    w.client_config("bwlimit = \"6M\"\n");
    let src = w.src.clone();
    let mut rng = Rng(7);
    // Enough data that the changes below happen while rsync runs.
    for i in 0..3 {
        std::fs::write(src.join(format!("blob{i}")), rng.bytes(4 << 20)).unwrap();
    }
    for dir in ["vanish", "rename", "grow"] {
        std::fs::create_dir(src.join(dir)).unwrap();
    }
    let original = |i: usize| format!("file {i}\n").repeat(100 + i);
    for i in 0..200 {
        std::fs::write(src.join(format!("vanish/f{i:03}")), original(i)).unwrap();
        std::fs::write(src.join(format!("rename/a{i:03}")), original(i)).unwrap();
    }
    std::fs::write(src.join("grow/log"), "").unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let changer = {
        let (stop, src) = (Arc::clone(&stop), src.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut log = std::fs::OpenOptions::new()
                .append(true)
                .open(src.join("grow/log"))
                .unwrap();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                // One write per line: every size the file has is a line boundary.
                log.write_all(format!("line {i:08}\n").as_bytes()).unwrap();
                if i < 200 {
                    let _ = std::fs::remove_file(src.join(format!("vanish/f{i:03}")));
                    let _ = std::fs::rename(
                        src.join(format!("rename/a{i:03}")),
                        src.join(format!("rename/b{i:03}")),
                    );
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            i
        })
    };
    let out = w.client(&["backup", "--source", &src.to_string_lossy()]);
    stop.store(true, Ordering::Relaxed);
    let lines = changer.join().unwrap();
    assert!(
        out.status.success(),
        "rsync's 24 counts as success: {}",
        show(&out)
    );
    assert!(
        lines > 20,
        "the changes ran during the backup ({lines} lines)"
    );

    let snap = snapshot_of(&w, &client, &src);
    // The log is a prefix of its final content, ending at a line boundary.
    let final_log = std::fs::read_to_string(src.join("grow/log")).unwrap();
    let saved_log = std::fs::read_to_string(snap.join("grow/log")).unwrap();
    assert!(
        final_log.starts_with(&saved_log) && (saved_log.is_empty() || saved_log.ends_with('\n')),
        "the log in the snapshot is a version it had ({} bytes)",
        saved_log.len()
    );
    // Vanished and renamed files: whatever was saved is the file's one content.
    let mut saved = 0;
    for dir in ["vanish", "rename"] {
        for entry in std::fs::read_dir(snap.join(dir)).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            let i: usize = name[1..].parse().unwrap();
            let content = std::fs::read_to_string(entry.path()).unwrap();
            assert_eq!(content, original(i), "{dir}/{name}");
            saved += 1;
        }
    }
    println!(
        "figure: a changing source: {lines} log lines written during the backup, {saved} moving files saved, each a real version"
    );
}

/// Eight clients, each with its own key, back up at once while `prune` runs
/// over and over: all succeed, and each snapshot is its own source. The
/// time against the same eight one after another is printed as a figure.
#[test]
fn eight_clients_at_once_while_pruning() {
    let Some(w) = World::new("load") else {
        return;
    };
    let first = w.enroll("load0.example");
    w.server_config("min_snapshot_interval = \"0s\"\nlock_wait = \"5m\"\n");
    let mut rng = Rng(8);
    // Eight clients, each with its own key, configuration and source tree.
    let mut clients = vec![(first, w.client_dir.clone(), w.src.clone())];
    for n in 1..8 {
        let name = format!("load{n}.example");
        let dir = w.area.path.join(format!("client{n}"));
        let out = w.client(&[
            "--config-dir",
            &dir.to_string_lossy(),
            "setup",
            &w.destination(),
            "--name",
            &name,
        ]);
        assert!(out.status.success(), "{}", show(&out));
        let key = std::fs::read_to_string(dir.join("key.pub")).unwrap();
        let mut args = vec!["new-client", "--name", &name];
        args.extend(key.split_whitespace());
        let out = w.server(&args);
        assert!(out.status.success(), "{}", show(&out));
        let out = w.client(&[
            "--config-dir",
            &dir.to_string_lossy(),
            "test",
            "--accept-new-host-key",
        ]);
        assert!(out.status.success(), "{}", show(&out));
        let src = w.area.path.join(format!("src{n}"));
        std::fs::create_dir(&src).unwrap();
        clients.push((name, dir, src));
    }
    for (name, _, src) in &clients {
        std::fs::write(src.join("owner"), name).unwrap();
        for i in 0..50 {
            std::fs::write(src.join(format!("small{i}")), rng.bytes(2000)).unwrap();
        }
    }
    let backup = |(_, dir, src): &(String, PathBuf, PathBuf)| {
        w.client_command(&[
            "--config-dir",
            &dir.to_string_lossy(),
            "backup",
            "-q",
            "--source",
            &src.to_string_lossy(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let fresh_data = |rng: &mut Rng| {
        for (_, _, src) in &clients {
            std::fs::write(src.join("blob"), rng.bytes(16 << 20)).unwrap();
        }
    };
    // The first backups, untimed.
    fresh_data(&mut rng);
    for c in &clients {
        let out = wait(backup(c), Duration::from_secs(300));
        assert!(out.status.success(), "{}", show(&out));
    }

    // One after another.
    fresh_data(&mut rng);
    let t = Instant::now();
    for c in &clients {
        let out = wait(backup(c), Duration::from_secs(300));
        assert!(out.status.success(), "{}", show(&out));
    }
    let one_by_one = t.elapsed();

    // All at once, while pruning runs over and over.
    fresh_data(&mut rng);
    let sources: Vec<_> = clients
        .iter()
        .map(|(_, _, src)| manifest::read(src, Reading::Plain))
        .collect();
    let t = Instant::now();
    let children: Vec<Child> = clients.iter().map(backup).collect();
    let mut prunes = 0;
    let mut running: Vec<Option<Child>> = children.into_iter().map(Some).collect();
    let mut outputs = Vec::new();
    while running.iter().any(Option::is_some) {
        let out = w.server(&["prune"]);
        assert!(out.status.success(), "prune during backups: {}", show(&out));
        prunes += 1;
        for slot in running.iter_mut() {
            let ended = slot
                .as_mut()
                .is_some_and(|child| child.try_wait().unwrap().is_some());
            if ended {
                outputs.push(slot.take().unwrap().wait_with_output().unwrap());
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "the backups did not end"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let at_once = t.elapsed();
    for out in &outputs {
        assert!(out.status.success(), "{}", show(out));
    }
    for ((name, _, src), source) in clients.iter().zip(&sources) {
        assert_eq!(w.snapshots(name).len(), 3, "{name}");
        let snap = snapshot_of(&w, name, src);
        manifest::assert_same(name, source, &manifest::read(&snap, Reading::FakeSuper));
        assert_eq!(std::fs::read_to_string(snap.join("owner")).unwrap(), *name);
    }
    println!(
        "figure: load: 8 clients × 16 MiB one after another {:.1} s; all at once (max_concurrent_backups 4) with {prunes} prunes meanwhile {:.1} s ({:.2}×)",
        one_by_one.as_secs_f64(),
        at_once.as_secs_f64(),
        one_by_one.as_secs_f64() / at_once.as_secs_f64()
    );
}

/// Runs byteback-server as the server user with a crash point set.
fn server_crashing_at(w: &World, point: &str, args: &[&str]) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(&w.server_bin)
        .args(args)
        .uid(w.user.uid)
        .gid(w.user.gid)
        .env_clear()
        .env("HOME", w.store())
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("BYTEBACK_CRASH_AT", point)
        .current_dir(w.store())
        .output()
        .unwrap()
}

/// The server killed between the marker and the snapshot, after the
/// snapshot before the reply, and in the middle of deleting a snapshot: the
/// retry makes exactly one snapshot, identical to the source; a
/// half-deleted snapshot is never listed, the others stay whole, and the
/// next run finishes the deletion.
fn the_server_killed_while_completing_or_pruning(kind: FsKind) {
    let Some(mut w) = World::on("crashes", kind) else {
        return;
    };
    let client = w.enroll("crashes.example");
    w.server_config("min_snapshot_interval = \"0s\"\n");
    w.client_config("retry_attempts = 2\nretry_pause = \"1s\"\n");
    let src = w.src.clone();
    std::fs::write(src.join("first"), "first\n").unwrap();
    w.backup_ok();

    // Killed between the marker and the snapshot, then after the snapshot
    // before the reply: the retry makes exactly one snapshot, identical.
    for point in ["before-snapshot", "before-reply"] {
        // Snapshot names have whole seconds: one backup per second.
        std::thread::sleep(Duration::from_millis(1100));
        std::fs::write(src.join(point), point).unwrap();
        let source = manifest::read(&src, Reading::Plain);
        let before = w.snapshots(&client).len();
        let once = w.store().join(format!(".crash-{point}"));
        w.sshd.restart_with(&format!(
            "SetEnv BYTEBACK_CRASH_AT={point}:{}\n",
            once.display()
        ));
        let out = w.client(&["backup", "--source", &src.to_string_lossy()]);
        w.sshd.restart_with("");
        assert!(out.status.success(), "{point}: {}", show(&out));
        assert!(once.exists(), "{point}: the server never crashed");
        assert!(
            stderr(&out).contains("attempt 1 of 2 failed"),
            "{point}: {}",
            show(&out)
        );
        if point == "before-reply" {
            assert!(
                stderr(&out).contains(" took snapshot ")
                    && stderr(&out).contains("before the connection dropped"),
                "{}",
                show(&out)
            );
        }
        assert_eq!(
            w.snapshots(&client).len(),
            before + 1,
            "{point}: one snapshot"
        );
        manifest::assert_same(
            point,
            &source,
            &manifest::read(&snapshot_of(&w, &client, &src), Reading::FakeSuper),
        );
    }

    // Killed in the middle of deleting a snapshot: it is no longer listed,
    // the others are whole, and the next run finishes the deletion.
    let listed = w.snapshots(&client);
    let out = server_crashing_at(&w, "mid-delete", &["prune", "--force"]);
    assert_eq!(out.status.code(), None, "killed: {}", show(&out));
    let after = w.snapshots(&client);
    assert_eq!(after.len(), listed.len() - 1, "{listed:?} → {after:?}");
    let hidden = |w: &World| {
        std::fs::read_dir(w.store().join(&client))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".deleting-")
            })
            .count()
    };
    assert_eq!(hidden(&w), 1, "the half-deleted snapshot is hidden");
    let out = w.server(&["snapshots", "--client", &client]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        after.len(),
        "{}",
        show(&out)
    );
    if kind == FsKind::Btrfs {
        for name in &after {
            let path = w.store().join(&client).join(name);
            let ro = support::run_ok(&[
                "btrfs",
                "property",
                "get",
                "-ts",
                &path.to_string_lossy(),
                "ro",
            ]);
            assert_eq!(ro.trim(), "ro=true", "{name} is still read-only");
        }
    }
    std::fs::write(src.join("after"), "after\n").unwrap();
    let source = manifest::read(&src, Reading::Plain);
    std::thread::sleep(Duration::from_millis(1100));
    w.backup_ok();
    assert_eq!(hidden(&w), 0, "the next run finished the deletion");
    manifest::assert_same(
        "after a crash while pruning",
        &source,
        &manifest::read(&snapshot_of(&w, &client, &src), Reading::FakeSuper),
    );
}

support::on_both_backends!(the_server_killed_while_completing_or_pruning);
