//! A hostile client, armed with its own valid key and hand-written ssh and
//! rsync commands, cannot get a shell, run another program, write outside
//! its own `current`, reach another client, or touch any snapshot.

use byteback_testbed as support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use support::manifest::{self, Entry, Reading};
use support::world::{World, show, stderr};

/// Everything in the store except the attacker's `current` (where its data
/// may legitimately land) and the server's own log and lock files.
fn guarded(w: &World, attacker: &str) -> BTreeMap<PathBuf, Entry> {
    let own = Path::new(".").join(attacker).join("current");
    let mut m = manifest::read(w.store(), Reading::Plain);
    m.retain(|p, _| !p.starts_with(&own) && !p.starts_with("./.byteback"));
    // The server's record of the attacker's own transfers changes with them.
    if let Some(dir) = m.get_mut(&Path::new(".").join(attacker)) {
        dir.xattrs.retain(|k, _| !k.starts_with("user.byteback."));
        // So does its directory's mtime: an incremental backup rolls its own
        // `current` back to its newest snapshot (a subvolume swapped in).
        dir.mtime = None;
    }
    m
}

/// A client's own key, with hand-written ssh and rsync commands, gets no
/// shell, no other program and no second snapshot inside the interval;
/// rsync aimed at another client or a snapshot lands in its own `current`;
/// it cannot read with the sender, and a symlink it sends stays inert.
/// Every refusal is logged, and nothing outside its `current` changes.
#[test]
fn hostile_client_is_confined() {
    let Some(w) = World::new("hostile") else {
        return;
    };
    let attacker = w.enroll("attacker.example");
    let src = w.src.to_string_lossy().into_owned();
    std::fs::write(w.src.join("mine"), "attacker data\n").unwrap();
    w.backup_ok();

    // A victim with its own key, data and snapshot.
    let victim_key = support::ssh_keygen(&w.area.path.join("victim-key"));
    let mut args = vec!["new-client", "--name", "victim.example"];
    args.extend(victim_key.split(' '));
    let out = w.server(&args);
    assert!(out.status.success(), "{}", show(&out));
    let victim_current = w.store().join("victim.example/current");
    let out = w.user.run_as(&[
        "sh",
        "-c",
        &format!("echo secret > '{}/secret'", victim_current.display()),
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let out = w.server(&[
        "snapshot",
        "--client",
        "victim.example",
        "--at",
        "2026-01-01T12:00:00Z",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let attacker_snapshot = w.snapshots(&attacker)[0].clone();

    let before = guarded(&w, &attacker);
    let check_unchanged =
        |what: &str| manifest::assert_same(what, &before, &guarded(&w, &attacker));

    // 1. No shell, no other program, nothing but byteback's requests.
    let refused_commands: [Option<&str>; 11] = [
        None,
        Some("sh"),
        Some("/bin/sh -c id"),
        Some("bash -i"),
        Some("cat /etc/passwd"),
        Some("byteback ping; touch /tmp/byteback-pwned"),
        Some("byteback ping && id"),
        Some("byteback-server snapshot --client attacker.example --at 2020-01-01T00:00:00Z"),
        Some("byteback-server receive --store /tmp --client victim.example"),
        Some("rsync --server --sender -vlogDtpre.iLsfxCIvu . ../victim.example/current/"),
        Some("scp -t /tmp"),
    ];
    for command in refused_commands {
        let out = w.raw_ssh(command);
        assert_eq!(
            out.status.code(),
            Some(6),
            "{command:?} must be refused: {}",
            show(&out)
        );
        assert!(
            stderr(&out).contains("refused"),
            "{command:?}: {}",
            show(&out)
        );
        check_unchanged(&format!("after {command:?}"));
    }
    assert!(!Path::new("/tmp/byteback-pwned").exists());

    // 2. rsync into another client's directory or a snapshot lands in the
    //    attacker's own current, and nowhere else.
    let payload = w.area.path.join("payload");
    std::fs::create_dir(&payload).unwrap();
    std::fs::write(payload.join("planted"), "gotcha\n").unwrap();
    let payload_arg = format!("{}/", payload.display());
    for target in [
        "../victim.example/current/".to_owned(),
        format!("../{attacker}/{attacker_snapshot}/"),
        "/tmp/".to_owned(),
        format!("{}/victim.example/current/", w.store().display()),
    ] {
        let out = w.raw_rsync(&["-r", "--delete", &payload_arg], &target);
        assert!(out.status.success(), "{target}: {}", show(&out));
        check_unchanged(&format!("after rsync into {target}"));
    }
    assert!(w.store().join(&attacker).join("current/planted").exists());
    assert!(!Path::new("/tmp/planted").exists());

    // 3. Options that name server paths or change what the server runs.
    for option in [
        "-M--log-file=/tmp/byteback-log",
        "-M--temp-dir=/tmp",
        "-M--partial-dir=../victim.example/current",
        "-M--backup-dir=../victim.example/current",
        "--link-dest=../victim.example/current",
        "--compare-dest=/",
        "--copy-dest=/",
        "-M--write-batch=/tmp/batch",
        "-M--super",
        "-M--copy-links",
        "-M-L",
        "-M--keep-dirlinks",
        "-M--sender",
        "-s",
    ] {
        let out = w.raw_rsync(&["-r", option, &payload_arg], "current/");
        assert!(
            !out.status.success(),
            "{option} must be refused: {}",
            show(&out)
        );
        check_unchanged(&format!("after rsync {option}"));
    }

    // 4. Reading: the sender is not available to a backing-up client.
    let loot = w.area.path.join("loot");
    let out = support::run(&[
        "rsync",
        "-r",
        "--rsh",
        &format!("ssh {}", w.raw_ssh_options().join(" ")),
        &format!("{}@127.0.0.1:../victim.example/current/", w.user.name),
        &loot.to_string_lossy(),
    ]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(!loot.join("secret").exists());

    // 5. A symlink sent by the client is stored inert: a later transfer
    //    through it stays inside current.
    let evil = w.area.path.join("evil");
    std::fs::create_dir(&evil).unwrap();
    std::os::unix::fs::symlink(&victim_current, evil.join("link")).unwrap();
    let out = w.raw_rsync(&["-rl", &format!("{}/", evil.display())], "current/");
    assert!(out.status.success(), "{}", show(&out));
    let through = w.area.path.join("through");
    std::fs::create_dir_all(through.join("link")).unwrap();
    std::fs::write(through.join("link/secret"), "overwritten\n").unwrap();
    let _ = w.raw_rsync(&["-r", &format!("{}/", through.display())], "current/");
    check_unchanged("after writing through a symlink");
    assert_eq!(
        std::fs::read_to_string(victim_current.join("secret")).unwrap(),
        "secret\n"
    );

    // 6. No second snapshot inside the interval, however asked for.
    let out = w.raw_ssh(Some("byteback complete"));
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    assert!(
        stderr(&out).contains("min_snapshot_interval"),
        "{}",
        show(&out)
    );
    let out = w.client(&["backup", "--source", &src]);
    assert!(!out.status.success(), "{}", show(&out));
    assert_eq!(w.snapshots(&attacker).len(), 1);
    check_unchanged("after snapshot attempts");

    // Every refusal was logged.
    let log = std::fs::read_to_string(w.store().join(".byteback/server.log")).unwrap();
    assert!(
        log.lines().filter(|l| l.contains("refused")).count() >= 11,
        "{log}"
    );
}
