//! End to end: many clients at once. With `max_concurrent_backups = 2`,
//! four clients starting together all succeed, and at no moment do more
//! than two server-side transfers run.

use byteback_testbed as support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::world::{World, show};

/// The process groups of the server user's rsyncs: one per transfer (the
/// forced command starts each rsync in a group of its own).
fn transfers(uid: u32) -> BTreeSet<String> {
    support::processes_of(uid, "rsync")
        .into_iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // pid (comm) state ppid pgrp ...
            let after = stat.rsplit_once(") ")?.1;
            after.split(' ').nth(2).map(str::to_owned)
        })
        .collect()
}

/// With `max_concurrent_backups = 2`, four clients starting together all
/// succeed, and at no moment do more than two server-side transfers run.
#[test]
fn backups_beyond_the_limit_wait_their_turn() {
    let Some(w) = World::new("concurrent") else {
        return;
    };
    w.enroll("first.example");
    w.server_config("max_concurrent_backups = 2\nlock_wait = \"90s\"\n");
    let names = ["a.example", "b.example", "c.example", "d.example"];
    let mut keys = Vec::new();
    for name in names {
        keys.push(w.add_client_with_file(name, "seed", "x\n", "2026-01-01T00:00:00Z"));
    }
    // 8 MiB each, sent at 4 MB/s: about two seconds per transfer.
    let data = w.area.path.join("data");
    std::fs::create_dir(&data).unwrap();
    support::run_ok(&[
        "sh",
        "-c",
        &format!("head -c 8M /dev/urandom > '{}/blob'", data.display()),
    ]);

    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(Mutex::new(0usize));
    let watcher = {
        let (stop, peak, uid) = (Arc::clone(&stop), Arc::clone(&peak), w.user.uid);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let now = transfers(uid).len();
                let mut p = peak.lock().unwrap();
                *p = (*p).max(now);
                drop(p);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let children: Vec<_> = keys
        .iter()
        .map(|key| {
            let rsh = format!(
                "ssh -F none -T -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile={}/known_hosts -o StrictHostKeyChecking=yes -p {}",
                key.display(),
                w.client_dir.display(),
                w.sshd.port
            );
            Command::new("rsync")
                .args(["-r", "--inplace", "--bwlimit=4000", "--rsh", &rsh])
                .arg(format!("{}/", data.display()))
                .arg(format!("{}@127.0.0.1:current/", w.user.name))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    for out in &outputs {
        assert!(out.status.success(), "{}", show(out));
    }
    let peak = *peak.lock().unwrap();
    assert!(peak >= 1, "the watcher never saw a transfer");
    assert!(peak <= 2, "{peak} transfers ran at once");
    let told = outputs
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stderr).contains("waiting for 2 other backup(s)"))
        .count();
    assert!(told >= 1, "nobody was told to wait");
    for name in names {
        let blob = w.store().join(name).join("current/blob");
        assert_eq!(std::fs::metadata(&blob).unwrap().len(), 8 << 20, "{name}");
    }
}
