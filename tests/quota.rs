//! End to end: a history quota per client. One client pushing three times
//! its quota has its own history thinned (its newest kept) and never
//! another client's; a backup bigger than its quota alone fails with the
//! reason and exit 9; `status --json` shows each client's measured usage
//! next to its quota, within 5 % of what `btrfs filesystem du` reports.

use byteback_testbed as support;
use support::{days_ago, random_file};

use std::path::Path;

use support::world::{World, show, stdout};

const MIB: u64 = 1 << 20;

/// What `btrfs filesystem du` says `dir` holds: Exclusive + Set shared.
fn btrfs_du(dir: &Path) -> u64 {
    let out = std::process::Command::new("btrfs")
        .args(["filesystem", "du", "-s", "--raw"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().nth(1).unwrap();
    let n: Vec<u64> = line
        .split_whitespace()
        .take(3)
        .map(|w| w.parse().unwrap())
        .collect();
    n[1] + n[2]
}

/// Two clients with quotas; one pushes three times its quota over nine
/// backups of distinct incompressible data: its history is thinned to its
/// quota (its newest kept), the other's snapshots are untouched, a backup
/// bigger than the quota alone fails with the reason and exit 9, and
/// status shows usage within 5 % of `btrfs filesystem du`.
#[test]
fn a_client_over_its_quota_thins_only_its_own_history() {
    let Some(w) = World::new("quota") else {
        return;
    };
    let pusher = w.enroll("pusher.example");
    w.server_config("min_snapshot_interval = \"0s\"\n");
    // The other client: three snapshots of 8 MiB each, under its quota.
    w.add_client_with_file("other", "hello", "hello", &days_ago(30));
    let out = w.server(&["set-quota", "--client", "other", "100M"]);
    assert!(out.status.success(), "{}", show(&out));
    for (i, days) in [20, 10].into_iter().enumerate() {
        let file = w.store().join("other/current/unique.bin");
        random_file(&file, 8 * MIB, 50 + i as u64);
        std::os::unix::fs::chown(&file, Some(w.user.uid), Some(w.user.gid)).unwrap();
        let out = w.server(&["snapshot", "--client", "other", "--at", &days_ago(days)]);
        assert!(out.status.success(), "{}", show(&out));
    }
    let others = w.snapshots("other");
    assert_eq!(others.len(), 3);

    let quota = 30 * MIB;
    let out = w.server(&["set-quota", "--client", &pusher, "30M"]);
    assert!(out.status.success(), "{}", show(&out));
    // Nine backups of 10 MiB each, nothing shared: 90 MiB, three times
    // its quota.
    let mut newest = String::new();
    for i in 0..9u64 {
        random_file(&w.src.join("big.bin"), 10 * MIB, 1000 + i);
        w.backup_ok();
        newest = w.snapshots(&pusher).pop().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let kept = w.snapshots(&pusher);
    assert!(
        (1..9).contains(&kept.len()),
        "its history is thinned: {kept:?}"
    );
    assert_eq!(kept.last(), Some(&newest), "its newest is kept");
    assert_eq!(
        w.snapshots("other"),
        others,
        "the other client's are untouched"
    );
    let log = std::fs::read_to_string(w.store().join(".byteback/server.log")).unwrap();
    assert!(log.contains("quota: deleted"), "{log}");
    assert!(!log.lines().any(|l| l.contains("deleted other ")), "{log}");

    // A backup bigger than its quota alone: refused, nothing deleted.
    random_file(&w.src.join("big.bin"), 40 * MIB, 7);
    let src = w.src.to_string_lossy().into_owned();
    let out = w.client(&["backup", "--source", &src]);
    assert_eq!(out.status.code(), Some(9), "{}", show(&out));
    assert!(show(&out).contains("history quota"), "{}", show(&out));
    assert_eq!(
        w.snapshots(&pusher),
        kept,
        "a refused backup deletes nothing"
    );
    assert_eq!(w.snapshots("other"), others);

    // status --json: usage next to quota, within 5 % of btrfs's own figure.
    let out = w.server(&["status", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    for (client, limit) in [(pusher.as_str(), quota), ("other", 100 * MIB)] {
        let c = status["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["client"] == client)
            .unwrap();
        assert_eq!(c["quota_bytes"].as_u64(), Some(limit), "{c}");
        let usage = c["usage_bytes"].as_u64().unwrap();
        let du = btrfs_du(&w.store().join(client));
        let off = usage.abs_diff(du) as f64 / du as f64;
        println!(
            "figure: {client}: status says {usage} bytes, btrfs filesystem du {du} ({:.2}% apart), quota {limit}",
            off * 100.0
        );
        assert!(off <= 0.05, "{client}: {usage} vs {du}");
        if client == pusher {
            assert!(usage <= limit, "{usage} over {limit}");
        }
    }
}
