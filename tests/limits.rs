//! End to end: the limits a server sets whatever its clients ask
//! (`[limits]` in server.toml) — a bandwidth budget three clients backing
//! up at once share, and backup windows a client waits for — and
//! `replicate --bwlimit`, with real sshd, rsync, btrfs and users.

use byteback_testbed as support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use support::world::{World, show, stderr, stdout};

/// Enrols another client with a configuration directory of its own
/// (`byteback setup`, `new-client`, `byteback test`), as [`World::enroll`]
/// does the world's own; returns that directory.
fn enroll_another(w: &World, name: &str) -> PathBuf {
    let dir = w.area.path.join(format!("client-{name}"));
    let client = |args: &[&str]| -> Output {
        w.client_command(args)
            .env("BYTEBACK_CONFIG_DIR", &dir)
            .output()
            .expect("run byteback")
    };
    let out = client(&["setup", &w.destination(), "--name", name]);
    assert!(out.status.success(), "setup: {}", show(&out));
    let key_line = stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix("Your backup key is "))
        .expect("setup prints the key")
        .to_owned();
    let mut args = vec!["new-client"];
    args.extend(key_line.split(' '));
    let out = w.server(&args);
    assert!(out.status.success(), "new-client: {}", show(&out));
    let out = client(&["test", "--accept-new-host-key"]);
    assert!(out.status.success(), "test: {}", show(&out));
    dir
}

/// `bytes` of random data (incompressible) in `dir/blob`.
fn random_file(dir: &Path, bytes: usize) {
    std::fs::create_dir_all(dir).unwrap();
    support::run_ok(&[
        "sh",
        "-c",
        &format!("head -c {bytes} /dev/urandom > '{}/blob'", dir.display()),
    ]);
}

/// The budget, in bytes per second ("2M").
const BUDGET: f64 = 2.0 * 1024.0 * 1024.0;
/// What each client sends: six seconds of the whole budget for three, so
/// the few tenths of a second of ssh, ping and snapshot around the
/// transfers weigh little.
const EACH: usize = 8 << 20;

/// Three clients backing up 8 MiB of random data each, at once, against
/// `[limits] bandwidth = "2M"`, all succeed and move together within 10 %
/// of the budget, measured from the first server-side rsync's start to the
/// last one's end (prints a `figure: budget 2M:` line).
#[test]
fn three_clients_at_once_share_the_servers_bandwidth_budget() {
    let Some(w) = World::new("budget") else {
        return;
    };
    w.enroll("a.example");
    let dirs = [
        w.client_dir.clone(),
        enroll_another(&w, "b.example"),
        enroll_another(&w, "c.example"),
    ];
    // Far below what loopback, ssh and this disk do (hundreds of MB/s).
    w.server_config("[limits]\nbandwidth = \"2M\"\n");
    let sources: Vec<PathBuf> = (0..3)
        .map(|i| w.area.path.join(format!("src{i}")))
        .collect();
    for s in &sources {
        random_file(s, EACH);
    }

    // The server's rsyncs (one or two processes per transfer): when the
    // first appeared and the last was still there.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, uid) = (Arc::clone(&stop), w.user.uid);
        std::thread::spawn(move || {
            let (mut first, mut last) = (None, None);
            while !stop.load(Ordering::Relaxed) {
                if !support::processes_of(uid, "rsync").is_empty() {
                    let now = Instant::now();
                    first.get_or_insert(now);
                    last = Some(now);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (first, last)
        })
    };
    let first_start = Instant::now();
    let runs: Vec<_> = dirs
        .iter()
        .zip(&sources)
        .map(|(dir, src)| {
            let mut cmd = w.client_command(&["backup", "--source", &src.to_string_lossy()]);
            cmd.env("BYTEBACK_CONFIG_DIR", dir);
            std::thread::spawn(move || {
                let out = cmd.output().expect("run byteback");
                (out, Instant::now())
            })
        })
        .collect();
    let results: Vec<(Output, Instant)> = runs.into_iter().map(|t| t.join().unwrap()).collect();
    let last_end = results.iter().map(|(_, end)| *end).max().unwrap();
    stop.store(true, Ordering::Relaxed);
    let (first_rsync, last_rsync) = watcher.join().unwrap();
    for (out, _) in &results {
        assert!(out.status.success(), "{}", show(out));
    }
    for name in ["a.example", "b.example", "c.example"] {
        assert_eq!(w.snapshots(name).len(), 1, "{name}");
        let blob = w.store().join(name).join("current");
        let sent = std::fs::read_dir(&blob).unwrap().count();
        assert!(sent >= 1, "{name}: nothing in current");
    }
    // What the three moved together, over the span from the first
    // transfer's start to the last one's end: while any server-side rsync
    // ran (the clients' ssh handshakes, pings and snapshots, outside it,
    // are no part of what the budget governs).
    let (Some(first_rsync), Some(last_rsync)) = (first_rsync, last_rsync) else {
        panic!("the watcher never saw the server's rsync");
    };
    let span = last_rsync.duration_since(first_rsync).as_secs_f64();
    let rate = (3 * EACH) as f64 / span;
    let ratio = rate / BUDGET;
    let whole = last_end.duration_since(first_start).as_secs_f64();
    let mib = |bytes_per_s: f64| bytes_per_s / (1024.0 * 1024.0);
    println!(
        "figure: budget 2M: 3 x {} MiB transferred in {span:.2} s = {:.3} MiB/s, {:.1} % of the budget \
         ({whole:.2} s and {:.3} MiB/s from the first client's start to the last one's end; they ended after {:?})",
        EACH >> 20,
        mib(rate),
        ratio * 100.0,
        mib((3 * EACH) as f64 / whole),
        results
            .iter()
            .map(|(_, end)| format!("{:.2} s", end.duration_since(first_start).as_secs_f64()))
            .collect::<Vec<_>>()
    );
    assert!(
        (0.9..=1.1).contains(&ratio),
        "three clients moved {:.3} MiB/s together, not within 10 % of the 2 MiB/s budget",
        mib(rate)
    );
}

/// The server's local time zone, as the forced command (started by sshd,
/// with no `$TZ`) reads it: `/etc/localtime`.
fn server_zone() -> TimeZone {
    match std::fs::read("/etc/localtime") {
        Ok(data) => TimeZone::tzif("localtime", &data).unwrap_or(TimeZone::UTC),
        Err(_) => TimeZone::UTC,
    }
}

fn hh_mm(minute: i64) -> String {
    let m = minute.rem_euclid(24 * 60);
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// Removes `key = ...` lines from the world's client config.
fn drop_client_key(w: &World, key: &str) {
    let path = w.client_dir.join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(&format!("{key} =")))
        .collect();
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
}

/// Outside its `[limits] windows` (one opening 20 to 40 s ahead, in the
/// server's local time): `byteback test` says so; an `incremental` and a
/// transfer are refused `[retry-after] TIME` on the wire; a client whose
/// `retry_after_max` is shorter fails in one line, exit 6, taking nothing;
/// with the default the backup waits for the window and takes one
/// snapshot after it opens. And `replicate --bwlimit 500` and
/// `[replicate] bwlimit = 500` are accepted, `--bwlimit fast` is not (2).
#[test]
fn a_backup_outside_its_window_waits_for_it_and_is_taken() {
    let Some(w) = World::new("windows") else {
        return;
    };
    let client = w.enroll("client.example");
    std::fs::write(w.src.join("file"), "data\n").unwrap();
    // The window opens at the next minute, 20 to 40 s from now: wait, if
    // need be, until the clock is between :20 and :40.
    let tz = server_zone();
    let now = loop {
        let now = Timestamp::now();
        if (20..=40).contains(&tz.to_datetime(now).second()) {
            break now;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let local = tz.to_datetime(now);
    let minute = i64::from(local.hour()) * 60 + i64::from(local.minute());
    let (start, end) = (hh_mm(minute + 1), hh_mm(minute + 61));
    let opens = Timestamp::from_second(now.as_second() - i64::from(local.second()) + 60).unwrap();
    w.server_config(&format!("[limits]\nwindows = [\"{start}-{end}\"]\n"));

    // `byteback test` says so.
    let out = w.client(&["test"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains(&format!("Backup windows of the server: {start}-{end} ("))
            && stdout(&out).contains("closed now: the next opens at"),
        "{}",
        show(&out)
    );

    // On the wire: the refusal is typed, the time its first word.
    let out = w.raw_ssh(Some("byteback incremental 2026-01-01T00:00:00Z"));
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    let line = format!(
        "byteback-server: [retry-after] {} this server takes backups only at {start}-{end}",
        opens.strftime("%Y-%m-%dT%H:%M:%SZ")
    );
    assert!(stderr(&out).contains(&line), "{line}\n{}", show(&out));
    let out = w.raw_rsync(&["-r", &w.src.to_string_lossy()], "current/");
    assert!(!out.status.success(), "{}", show(&out));
    assert!(stderr(&out).contains(&line), "{line}\n{}", show(&out));

    // Further away than the client may wait: one line, exit 6, nothing sent.
    w.client_config("retry_after_max = \"5s\"\n");
    let src = w.src.to_string_lossy().into_owned();
    let out = w.client(&["backup", "--source", &src]);
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    assert!(
        stderr(&out).contains(&format!(
            "byteback: the server allows backups from {start} ({})",
            opens.strftime("%Y-%m-%dT%H:%M:%SZ")
        )) && stderr(&out).contains("more than retry_after_max (5s)"),
        "{}",
        show(&out)
    );
    assert!(w.snapshots(&client).is_empty());
    drop_client_key(&w, "retry_after_max");

    // Within it (the default, 12h): the backup waits, then is taken.
    let asked = Instant::now();
    let out = w.client(&["backup", "--source", &src]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stderr(&out).contains(&format!("waiting until {start}")),
        "{}",
        show(&out)
    );
    let snaps = w.snapshots(&client);
    assert_eq!(snaps.len(), 1, "{}", show(&out));
    let taken: Timestamp = snaps[0].parse().unwrap();
    assert!(
        taken >= opens,
        "snapshot {taken} before the window opened at {opens}"
    );
    println!(
        "figure: window opened at {opens}; the backup asked {:.0} s before it and took {taken}, after {:.1} s",
        opens.duration_since(now).as_secs_f64(),
        asked.elapsed().as_secs_f64()
    );
    assert!(stdout(&out).contains(&format!("Backup complete: snapshot {}", snaps[0])));

    // `replicate --bwlimit` takes a plain number (KiB/s, as rsync's), and
    // so does `[replicate] bwlimit`.
    let out = w.server(&["replicate", "--bwlimit", "500"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("No replica configured"),
        "{}",
        show(&out)
    );
    let out = w.server(&["replicate", "--bwlimit", "fast"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    w.server_config("[replicate]\nbwlimit = 500\n");
    let out = w.server(&["show-config"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("bwlimit = \"500\""), "{}", show(&out));
}
