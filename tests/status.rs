//! End to end: `byteback-server status` on a store with clients in every
//! state, as text, JSON, a Nagios check and a Prometheus file.

use byteback_testbed as support;
use support::days_ago;

use std::process::{Command, Stdio};

use support::world::{World, show, stdout};

fn now_minus(minutes: i64) -> String {
    let t = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(minutes);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `status` shows clients in every state (ok, stale, partial, failing with
/// its reason, never backed up, running) as text and JSON; the client of a
/// failing one hears of it (`byteback test` exits 10); the Nagios check
/// prints one line naming the worst clients with exit codes by the book,
/// and the Prometheus file is written atomically, every line parsing and
/// every client named.
#[test]
fn status_reports_every_state() {
    let Some(w) = World::new("status") else {
        return;
    };
    // failing: backs up, then asks for a second snapshot inside the interval.
    let failing = w.enroll("failing.example");
    std::fs::write(w.src.join("f"), "x\n").unwrap();
    w.backup_ok();
    let out = w.raw_ssh(Some("byteback complete"));
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    // The client hears of it: `byteback test` connects, warns and exits 10.
    let out = w.client(&["test"]);
    assert_eq!(out.status.code(), Some(10), "{}", show(&out));
    assert!(
        stdout(&out).contains("the last attempt of this machine failed: not taking a snapshot"),
        "{}",
        show(&out)
    );
    // ok, stale, partial: snapshots taken by hand at chosen times.
    w.add_client_with_file("ok.example", "f", "x\n", &now_minus(30));
    w.add_client_with_file("stale.example", "f", "x\n", &days_ago(3));
    let partial = now_minus(20);
    w.add_client_with_file("partial.example", "f", "x\n", &partial);
    let marker = w.store().join(format!("partial.example/{partial}.partial"));
    std::fs::write(&marker, "/etc/shadow\n").unwrap();
    std::os::unix::fs::chown(&marker, Some(w.user.uid), Some(w.user.gid)).unwrap();
    // never: enrolled, nothing yet.
    let key = support::ssh_keygen(&w.area.path.join("never-key"));
    let mut args = vec!["new-client", "--name", "never.example"];
    args.extend(key.split(' '));
    let out = w.server(&args);
    assert!(out.status.success(), "{}", show(&out));
    // running: ok.example's lock is held, as by a backup in progress (held
    // here, in this process, so it goes with the test whatever happens).
    let lock = w.store().join(".byteback/locks/client/ok.example");
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();

    let out = w.server(&["status"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    for (state, client) in [
        ("failing", failing.as_str()),
        ("ok", "ok.example"),
        ("stale", "stale.example"),
        ("partial", "partial.example"),
        ("never", "never.example"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(state) && l.contains(client)),
            "{state} {client}:\n{text}"
        );
    }
    assert!(text.contains("min_snapshot_interval"), "the reason: {text}");
    assert!(text.contains("backup running since"), "{text}");
    assert!(text.contains("store: "), "{text}");

    let out = w.server(&["status", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let clients = json["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 5);
    let of = |name: &str| {
        clients
            .iter()
            .find(|c| c["client"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(of("stale.example")["state"], "stale");
    assert_eq!(of(&failing)["last_attempt"]["ok"], false);
    assert!(of("ok.example")["running_since"].is_string());
    assert!(json["store"]["free_bytes"].as_u64().unwrap() > 0);

    // The plugin: one line, the worst clients named, exit codes by the book.
    let check = |extra: &[&str]| {
        let mut args = vec!["status", "--check"];
        args.extend_from_slice(extra);
        let out = w.server(&args);
        let line = stdout(&out);
        assert_eq!(line.lines().count(), 1, "{}", show(&out));
        (out.status.code(), line)
    };
    let (code, line) = check(&[]);
    assert_eq!(code, Some(2), "{line}");
    assert!(
        line.starts_with("BYTEBACK CRITICAL - ") && line.contains("failing.example"),
        "{line}"
    );
    assert!(line.contains("| clients=5"), "{line}");
    assert_eq!(check(&["--client", "ok.example"]).0, Some(0));
    let (code, line) = check(&["--client", "stale.example"]);
    assert_eq!(code, Some(1), "{line}");
    assert_eq!(
        check(&["--client", "stale.example", "--crit", "2 days"]).0,
        Some(2)
    );
    assert_eq!(check(&["--client", "never.example"]).0, Some(1));
    let (code, line) = check(&["--client", "nobody.example"]);
    assert_eq!(code, Some(3), "{line}");
    assert!(line.starts_with("BYTEBACK UNKNOWN - "), "{line}");

    // Prometheus: written atomically, every line parses, every client named.
    let prom = w.store().join("metrics.prom");
    let out = w.server(&["status", "--prometheus", &prom.to_string_lossy()]);
    assert!(out.status.success(), "{}", show(&out));
    let text = std::fs::read_to_string(&prom).unwrap();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').expect(line);
        assert!(value.parse::<f64>().is_ok(), "{line}");
        assert!(
            name.chars().next().is_some_and(|c| c.is_ascii_lowercase()),
            "{line}"
        );
    }
    for client in [
        "failing.example",
        "ok.example",
        "stale.example",
        "partial.example",
        "never.example",
    ] {
        assert!(
            text.contains(&format!("byteback_snapshots{{client=\"{client}\"}}")),
            "{client}:\n{text}"
        );
    }
    assert!(
        text.contains("byteback_backup_running{client=\"ok.example\"} 1"),
        "{text}"
    );

    drop(held);
}

/// The client records each backup in its state file: `-q` prints nothing on
/// success, and the record holds the result, snapshot, attempt, files and
/// bytes sent; a refused backup is recorded as failed with the reason, the
/// last success kept, and `byteback status` shows both.
#[test]
fn the_client_records_each_backup() {
    let Some(w) = World::new("clientstate") else {
        return;
    };
    let client = w.enroll("client.example");
    std::fs::write(w.src.join("f"), "x\n").unwrap();
    // -q: nothing at all on success (cron mails only failures).
    let out = w.client(&["backup", "-q", "--source", &w.src.to_string_lossy()]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "{}",
        show(&out)
    );
    let snapshot = w.snapshots(&client)[0].clone();
    let out = w.client(&["status", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let state: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(state["result"], "ok", "{state}");
    assert_eq!(state["snapshot"], snapshot.as_str());
    assert_eq!(state["attempt"], 1);
    assert!(state["last_success"].is_string());
    // What it sent: the one new file, its two bytes, and the wire's bytes.
    assert_eq!(state["files"], 1, "{state}");
    assert_eq!(state["bytes"], 2, "{state}");
    assert!(state["sent"].as_u64().unwrap() > 2, "{state}");
    // A second backup inside the server's interval is refused: recorded as
    // failed, with the reason, and the last success kept.
    let out = w.client(&[
        "backup",
        "--json",
        "-q",
        "--source",
        &w.src.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(summary["result"], "failed", "{summary}");
    assert!(
        summary["error"]
            .as_str()
            .unwrap()
            .contains("min_snapshot_interval"),
        "{summary}"
    );
    assert!(
        !out.stderr.is_empty(),
        "a failure is never silent: {}",
        show(&out)
    );
    let out = w.client(&["status"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains(": failed, started "), "{text}");
    assert!(text.contains("min_snapshot_interval"), "{text}");
    assert!(text.contains("last success: 20"), "{text}");
    let saved = std::fs::read_to_string(w.client_dir.join("state.json")).unwrap();
    assert!(saved.contains("\"result\": \"failed\""), "{saved}");
}

/// Both programs' events reach the system log socket (the server's snapshot
/// taken, the client's result), and a missing socket fails nothing.
#[test]
fn events_reach_the_system_log() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixDatagram;
    let Some(w) = World::new("syslog") else {
        return;
    };
    let client = w.enroll("client.example");
    w.server_config("min_snapshot_interval = \"0s\"\n");
    let path = w.area.path.join("log.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    w.server_config(&format!(
        "min_snapshot_interval = \"0s\"\nlog_socket = \"{}\"\n",
        path.display()
    ));
    std::fs::write(w.src.join("f"), "x\n").unwrap();
    let out = w
        .client_command(&["backup", "--source", &w.src.to_string_lossy()])
        .env("BYTEBACK_LOG_SOCKET", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let mut lines = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let snapshot = w.snapshots(&client)[0].clone();
    assert!(
        lines.iter().any(|l| l.contains("byteback-server[")
            && l.contains(&format!("{client}: snapshot {snapshot} taken"))),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<30>byteback[")
                && l.contains(&format!("ok, snapshot {snapshot}"))),
        "{lines:#?}"
    );
    // No socket at all: nothing fails.
    drop(socket);
    std::fs::remove_file(&path).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = w
        .client_command(&["backup", "--source", &w.src.to_string_lossy()])
        .env("BYTEBACK_LOG_SOCKET", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
}

/// Progress shows on a terminal only: without one, a backup's output has no
/// control characters at all; with one, rsync's own progress line appears.
#[test]
fn progress_shows_on_a_terminal_only() {
    let Some(w) = World::new("progress") else {
        return;
    };
    w.enroll("client.example");
    w.server_config("min_snapshot_interval = \"0s\"\n");
    std::fs::write(w.src.join("f"), "x\n").unwrap();
    // Not a terminal: no progress, no control characters at all.
    let plain = w.backup_ok();
    assert!(
        !plain.chars().any(|c| c.is_control() && c != '\n'),
        "{plain:?}"
    );
    // A terminal (`script` gives it one): rsync's own progress line.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(w.src.join("g"), "y".repeat(100_000)).unwrap();
    let cmd = format!(
        "BYTEBACK_CONFIG_DIR='{}' '{}' backup --source '{}'",
        w.client_dir.display(),
        env!("CARGO_BIN_EXE_byteback"),
        w.src.display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", show(&out));
    assert!(shown.contains("-chk="), "no progress line: {shown:?}");
    assert!(shown.contains("Backup complete"), "{shown:?}");
}
