//! End to end: the walkthrough, repeated backups, interrupted backups,
//! retries and locks — real sshd, rsync, btrfs and users.

use byteback_testbed as support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::FsKind;
use support::manifest::{self, Reading, inside};
use support::world::{World, show, stderr, stdout};
use support::{child_named, dir_bytes};

support::world::on_both_backends!(
    one_backup_at_a_time_on_client_and_server,
    walkthrough_then_a_second_backup,
    a_snapshot_inside_the_interval_is_refused,
    a_killed_backup_resumes_and_completes,
    retries_until_the_server_is_back,
    unreadable_files_make_a_partial_snapshot,
    a_same_second_same_size_rewrite_is_backed_up,
);

/// Interval 0 so a test can take several snapshots in a row.
const NO_INTERVAL: &str = "min_snapshot_interval = \"0s\"\n";

fn snapshot_path(w: &World, client: &str, snapshot: &str) -> std::path::PathBuf {
    inside(&w.store().join(client).join(snapshot), &w.src)
}

fn is_readonly(path: &Path) -> bool {
    let out = support::run_ok(&[
        "btrfs",
        "property",
        "get",
        "-ts",
        &path.to_string_lossy(),
        "ro",
    ]);
    out.trim() == "ro=true"
}

/// The set-up walkthrough and two backups in a row: each snapshot is
/// identical to its source (sparse files kept sparse; on btrfs read-only;
/// named by its UTC time), the first unchanged by the second, one ssh login
/// per backup, and the server lists and logs both.
fn walkthrough_then_a_second_backup(kind: FsKind) {
    let Some(w) = World::on("walkthrough", kind) else {
        return;
    };
    let client = w.enroll("client.example");
    w.server_config(NO_INTERVAL);
    support::tree::populate(&w.src);
    let source = manifest::read(&w.src, Reading::Plain);

    let out = w.backup_ok();
    let snaps = w.snapshots(&client);
    assert_eq!(snaps.len(), 1, "{out}");
    assert!(
        out.contains(&format!("Backup complete: snapshot {}", snaps[0])),
        "{out}"
    );
    let first = w.store().join(&client).join(&snaps[0]);
    if kind == FsKind::Btrfs {
        assert!(is_readonly(&first), "snapshot must be read-only");
    }
    let first_tree = snapshot_path(&w, &client, &snaps[0]);
    manifest::assert_same(
        "first snapshot",
        &source,
        &manifest::read(&first_tree, Reading::FakeSuper),
    );
    // The sparse file kept its holes on the server.
    let blocks = std::fs::metadata(first_tree.join("disk.img"))
        .unwrap()
        .blocks();
    assert!(
        blocks * 512 < 1 << 20,
        "sparse file takes {} bytes",
        blocks * 512
    );
    // Snapshot names are UTC times.
    assert!(
        snaps[0].len() == 20 && snaps[0].ends_with('Z'),
        "{}",
        snaps[0]
    );

    // Change things and back up again, at once (a snapshot whose second is
    // taken gets the next one).
    std::fs::write(w.src.join("etc/hostname"), "renamed.example\n").unwrap();
    std::fs::remove_file(w.src.join("name with spaces")).unwrap();
    std::fs::write(w.src.join("new file"), "new\n").unwrap();
    std::os::unix::fs::chown(w.src.join("empty"), Some(4242), Some(4242)).unwrap();
    let changed = manifest::read(&w.src, Reading::Plain);
    let logins = |w: &World| w.sshd.log().matches("Accepted publickey").count();
    let before = logins(&w);
    w.backup_ok();
    // ping, rsync and complete share one connection.
    assert_eq!(
        logins(&w) - before,
        1,
        "one SSH login per backup:\n{}",
        w.sshd.log()
    );
    let snaps = w.snapshots(&client);
    assert_eq!(snaps.len(), 2);
    manifest::assert_same(
        "second snapshot",
        &changed,
        &manifest::read(&snapshot_path(&w, &client, &snaps[1]), Reading::FakeSuper),
    );
    manifest::assert_same(
        "first snapshot after the second backup",
        &source,
        &manifest::read(&first_tree, Reading::FakeSuper),
    );

    // The server lists both, and logged the work.
    let out = w.server(&["snapshots"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stdout(&out).lines().count(), 2, "{}", show(&out));
    let log = std::fs::read_to_string(w.store().join(".byteback/server.log")).unwrap();
    assert!(
        log.contains(&format!("{client}: snapshot {} taken", snaps[1])),
        "{log}"
    );
}

/// A backup inside `min_snapshot_interval` of the last snapshot is refused
/// (exit 6) with the time the next snapshot may be taken; no snapshot is
/// taken, and the data is safe in `current`.
fn a_snapshot_inside_the_interval_is_refused(kind: FsKind) {
    let Some(w) = World::on("interval", kind) else {
        return;
    };
    let client = w.enroll("interval.example");
    std::fs::write(w.src.join("file"), "one\n").unwrap();
    w.backup_ok();
    std::fs::write(w.src.join("file"), "two, longer\n").unwrap();
    let out = w.client(&["backup", "--source", &w.src.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    let err = stderr(&out);
    // It says when the next snapshot may be taken: the default 6h after.
    let newest: jiff::Timestamp = w.snapshots(&client)[0].parse().unwrap();
    let next = (newest + jiff::SignedDuration::from_hours(6)).strftime("%Y-%m-%dT%H:%M:%SZ");
    assert!(
        err.contains("min_snapshot_interval")
            && err.contains("safe in current")
            && err.contains(&format!("the next snapshot may be taken from {next}")),
        "{err}"
    );
    assert_eq!(w.snapshots(&client).len(), 1);
    // The data itself arrived in current.
    let current = inside(&w.store().join(&client).join("current"), &w.src);
    assert_eq!(
        std::fs::read_to_string(current.join("file")).unwrap(),
        "two, longer\n"
    );
}

/// A backup whose rsync is killed mid-transfer fails with no snapshot; the
/// next run resumes and completes, with one snapshot identical to the
/// source.
fn a_killed_backup_resumes_and_completes(kind: FsKind) {
    let Some(w) = World::on("killed", kind) else {
        return;
    };
    let client = w.enroll("killed.example");
    w.client_config("retry_attempts = 1\n");
    // ~160 MiB of incompressible data, so the transfer takes a while.
    let big = w.src.join("big");
    std::fs::create_dir(&big).unwrap();
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    for i in 0..40 {
        let mut data = vec![0u8; 4 << 20];
        for chunk in data.chunks_mut(8) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            chunk.copy_from_slice(&seed.to_le_bytes());
        }
        std::fs::write(big.join(format!("blob{i:02}")), &data).unwrap();
    }
    let source = manifest::read(&w.src, Reading::Plain);
    let mut child = w
        .client_command(&["backup", "--source", &w.src.to_string_lossy()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let current = inside(&w.store().join(&client).join("current"), &w.src);
    let deadline = Instant::now() + Duration::from_secs(60);
    // Kill the client's rsync once some, but not all, data has arrived.
    let killed = loop {
        assert!(Instant::now() < deadline, "the transfer never started");
        if let Some(rsync) = child_named(child.id(), "rsync") {
            if dir_bytes(&current) > 8 << 20 {
                rustix::process::kill_process(
                    rustix::process::Pid::from_raw(rsync as i32).unwrap(),
                    rustix::process::Signal::KILL,
                )
                .unwrap();
                break true;
            }
        } else if child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let out = child.wait_with_output().unwrap();
    assert!(
        killed,
        "the backup finished before it could be killed: {}",
        show(&out)
    );
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        w.snapshots(&client).is_empty(),
        "no snapshot after an interrupted backup"
    );
    let partial = dir_bytes(&current);
    assert!(
        partial < 160 << 20,
        "{partial} bytes arrived before the kill"
    );

    // Run again: it resumes (the server's receiver may still be ending) and completes.
    w.client_config("retry_pause = \"1s\"\n");
    let out = w.client(&["backup", "--source", &w.src.to_string_lossy()]);
    assert!(out.status.success(), "{}", show(&out));
    let snaps = w.snapshots(&client);
    assert_eq!(snaps.len(), 1);
    manifest::assert_same(
        "resumed backup",
        &source,
        &manifest::read(&snapshot_path(&w, &client, &snaps[0]), Reading::FakeSuper),
    );
}

/// The child's stderr, line by line as it comes (for waiting on a
/// message), and the whole of it once the child has ended.
fn stderr_lines(
    child: &mut std::process::Child,
) -> (
    std::sync::mpsc::Receiver<String>,
    std::thread::JoinHandle<String>,
) {
    use std::io::BufRead;
    let pipe = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(line);
        }
        all
    });
    (rx, reader)
}

/// A backup started while sshd is down retries until the server is back and
/// succeeds; if it stays down, the backup fails after its last attempt with
/// exit 5 and one line naming the cause.
fn retries_until_the_server_is_back(kind: FsKind) {
    let Some(mut w) = World::on("retries", kind) else {
        return;
    };
    let client = w.enroll("retry.example");
    w.server_config(NO_INTERVAL);
    std::fs::write(w.src.join("file"), "data\n").unwrap();
    w.client_config("retry_attempts = 5\nretry_pause = \"2s\"\n");
    w.sshd.stop();
    let mut child = w
        .client_command(&["backup", "--source", &w.src.to_string_lossy()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // sshd comes back once the first attempt has failed (the client says
    // so), not after a pause that a slow machine could outlast.
    let (lines, reader) = stderr_lines(&mut child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains("attempt 1 of 5 failed") => break,
            Ok(_) => {}
            Err(e) => panic!("the first attempt did not fail within 60s: {e}"),
        }
    }
    w.sshd.start_again();
    let out = child.wait_with_output().unwrap();
    let err = reader.join().unwrap();
    assert!(out.status.success(), "{}{err}", show(&out));
    assert!(
        err.contains("attempt 1 of 5 failed") && err.contains("cannot reach"),
        "{err}"
    );
    assert_eq!(w.snapshots(&client).len(), 1);

    // And when it stays down, a clear failure after the last attempt.
    w.sshd.stop();
    let mut config = std::fs::read_to_string(w.client_dir.join("config.toml")).unwrap();
    config = config
        .replace("retry_attempts = 5", "retry_attempts = 2")
        .replace("retry_pause = \"2s\"", "retry_pause = \"1s\"");
    std::fs::write(w.client_dir.join("config.toml"), config).unwrap();
    let out = w.client(&["backup", "--source", &w.src.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("backup failed after 2 attempts")
            && err.contains("cannot reach the backup server"),
        "{err}"
    );
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("byteback: backup failed"))
            .count(),
        1,
        "{err}"
    );
}

/// One backup at a time per client: a second backup on the client machine
/// is refused (exit 4, another is running), and so is one while the server
/// still holds the client's lock; nothing is snapshotted until the lock is
/// free.
fn one_backup_at_a_time_on_client_and_server(kind: FsKind) {
    let Some(w) = World::on("locks", kind) else {
        return;
    };
    let client = w.enroll("locks.example");
    std::fs::write(w.src.join("file"), "data\n").unwrap();
    w.client_config("retry_attempts = 1\n");
    let src = w.src.to_string_lossy().into_owned();

    // Client side: another backup holds the machine's lock.
    let lock = std::fs::File::create(w.client_dir.join("lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let out = w.client(&["backup", "--source", &src]);
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(
        stderr(&out).contains("another byteback backup is running"),
        "{}",
        show(&out)
    );
    drop(lock);

    // Server side: a receiver of this client is still running.
    w.server_config("lock_wait = \"1s\"\n");
    let lock_dir = w.store().join(".byteback/locks/client");
    std::fs::create_dir_all(&lock_dir).unwrap();
    std::os::unix::fs::chown(&lock_dir, Some(w.user.uid), Some(w.user.gid)).unwrap();
    let lock_path = lock_dir.join(&client);
    let server_lock = std::fs::File::create(&lock_path).unwrap();
    std::os::unix::fs::chown(&lock_path, Some(w.user.uid), Some(w.user.gid)).unwrap();
    rustix::fs::flock(&server_lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let out = w.client(&["backup", "--source", &src]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        stderr(&out).contains("already in progress"),
        "{}",
        show(&out)
    );
    assert!(w.snapshots(&client).is_empty());
    drop(server_lock);
    w.backup_ok();
    assert_eq!(w.snapshots(&client).len(), 1);
}

/// Files the client cannot read give a snapshot marked partial (exit 3)
/// that names them, in its marker and in the last line of output, and the
/// server lists it as partial with the readable files in it.
fn unreadable_files_make_a_partial_snapshot(kind: FsKind) {
    let Some(w) = World::on("partial", kind) else {
        return;
    };
    let client = w.enroll("partial.example");
    w.server_config(NO_INTERVAL);
    std::fs::write(w.src.join("readable"), "fine\n").unwrap();
    let secret = w.src.join("secret");
    std::fs::write(&secret, "root only\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();

    // The client runs as a user who cannot read `secret`, so rsync ends in 23.
    let home = w.area.path.join("client-home");
    std::fs::create_dir(&home).unwrap();
    let runner = support::TestUser::new("bbc", &home);
    let dir = home.join("config");
    support::run_ok(&[
        "cp",
        "-r",
        &w.client_dir.to_string_lossy(),
        &dir.to_string_lossy(),
    ]);
    support::run_ok(&[
        "chown",
        "-R",
        &format!("{}:{}", runner.uid, runner.gid),
        &dir.to_string_lossy(),
    ]);
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "destination = \"{}\"\nretry_attempts = 2\nretry_pause = \"1s\"\n",
            w.destination()
        ),
    )
    .unwrap();
    let bin = w.area.path.join("bin/byteback");
    std::fs::copy(env!("CARGO_BIN_EXE_byteback"), &bin).unwrap();
    support::world::wait_until_executable(&bin);
    let out = runner.run_as(&[
        "env",
        &format!("BYTEBACK_CONFIG_DIR={}", dir.display()),
        &bin.to_string_lossy(),
        "backup",
        "--source",
        &w.src.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("attempt 1 of 2 failed") && err.contains("rsync exit 23"),
        "{err}"
    );
    let last = err.lines().last().unwrap();
    assert!(
        last.contains("marked partial") && last.contains(&secret.to_string_lossy().into_owned()),
        "{last}"
    );

    let snaps = w.snapshots(&client);
    assert_eq!(snaps.len(), 1);
    let marker = w
        .store()
        .join(&client)
        .join(format!("{}.partial", snaps[0]));
    let note = std::fs::read_to_string(&marker).unwrap();
    assert!(note.contains(&*secret.to_string_lossy()), "{note}");
    let listed = stdout(&w.server(&["snapshots", "--client", &client]));
    assert_eq!(listed.trim(), format!("{client} {} partial", snaps[0]));
    let tree = snapshot_path(&w, &client, &snaps[0]);
    assert_eq!(
        std::fs::read_to_string(tree.join("readable")).unwrap(),
        "fine\n"
    );
}

/// Writes `content` to `path` and sets its mtime to `stamp` (for `touch -d`).
fn write_at(path: &Path, content: &str, stamp: &str) {
    std::fs::write(path, content).unwrap();
    support::run_ok(&["touch", "-m", "-d", stamp, &path.to_string_lossy()]);
}

/// A file rewritten with the same size within the same second is backed up.
/// rsync's quick check compares sizes and whole-second mtimes, so such a
/// rewrite was skipped and every later snapshot kept the old content; times
/// are compared to the nanosecond now.
fn a_same_second_same_size_rewrite_is_backed_up(kind: FsKind) {
    let Some(w) = World::on("samesecond", kind) else {
        return;
    };
    let client = w.enroll("client.example");
    w.server_config(NO_INTERVAL);
    let file = w.src.join("ledger");
    write_at(&file, "balance 100\n", "2026-01-01 00:00:00.100");
    w.backup_ok();
    write_at(&file, "balance 999\n", "2026-01-01 00:00:00.900");
    w.backup_ok();
    let snaps = w.snapshots(&client);
    assert_eq!(snaps.len(), 2);
    let kept = snapshot_path(&w, &client, &snaps[1]).join("ledger");
    assert_eq!(
        std::fs::read_to_string(&kept).unwrap(),
        "balance 999\n",
        "the rewrite within the same second was missed"
    );
    let old = snapshot_path(&w, &client, &snaps[0]).join("ledger");
    assert_eq!(std::fs::read_to_string(old).unwrap(), "balance 100\n");
}
