//! End to end: ransomware-aware retention. A backup that overwrites most
//! of a client's files with random bytes, after nights of small changes,
//! is marked suspect; `status --check` goes critical naming the client;
//! nothing the client sends clears the mark; under a forced space shortage
//! the snapshots it pins survive while others go, and a backup that could
//! only get room by deleting them is refused; after `byteback-server ack`
//! they are pruned as any other. Real sshd and rsync, on btrfs and on the
//! plain backend (ext4).

use byteback_testbed as support;
use support::world::{World, on_both_backends, show, stdout};
use support::{FsKind, random_file};

use std::fs;

/// The files in the source: the share of changes is counted over them.
const FILES: usize = 20;

/// Snapshots back to back, and (later) anything may be pruned.
const BASE: &str = "min_snapshot_interval = \"0s\"\nmin_age = \"0s\"\n";

/// The client's standing marks, from `status --json`.
fn marks(w: &World, client: &str) -> Vec<serde_json::Value> {
    let out = w.server(&["status", "--json", "--client", client]);
    assert!(out.status.success(), "status: {}", show(&out));
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    status["clients"][0]["suspect"].as_array().unwrap().clone()
}

/// Changes one file a little (one file in twenty: a 5 % share).
fn small_change(w: &World, i: usize) {
    fs::write(w.src.join("f00"), format!("night {i}: a small edit\n")).unwrap();
}

/// The whole scenario on one backend; see the module's documentation.
fn a_ransomware_night_pins_the_clean_history_until_ack(kind: FsKind) {
    let Some(w) = World::on("suspect", kind) else {
        return;
    };
    let client = w.enroll("suspect.example");
    w.server_config(BASE);
    for i in 0..FILES {
        fs::write(
            w.src.join(format!("f{i:02}")),
            format!("file {i}\n").repeat(100),
        )
        .unwrap();
    }
    // A first backup (all added: never judged), then four nights of small
    // changes: the client's usual is 5 %.
    w.backup_ok();
    for night in 1..=4 {
        small_change(&w, night);
        w.backup_ok();
    }
    let clean = w.snapshots(&client);
    assert_eq!(clean.len(), 5, "{clean:?}");
    assert!(marks(&w, &client).is_empty());

    // The bad night: 90 % of the files overwritten with random bytes.
    for i in 0..FILES * 9 / 10 {
        random_file(&w.src.join(format!("f{i:02}")), 5000, 77 + i as u64);
    }
    w.backup_ok();
    let suspect = w.snapshots(&client).pop().unwrap();
    let standing = marks(&w, &client);
    assert_eq!(standing.len(), 1, "{standing:?}");
    assert_eq!(standing[0]["snapshot"], suspect.as_str());
    let reason = standing[0]["reason"].as_str().unwrap();
    println!("figure: {client}: {suspect} marked: {reason}");
    assert!(
        reason.starts_with("90 % of files changed or deleted, against a usual 5.0 %"),
        "{reason}"
    );
    let pinned: Vec<String> = clean[2..].to_vec();
    let said: Vec<&str> = standing[0]["pinned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(said, pinned);
    // The mark is the server's, outside the client's directory.
    let file = w.store().join(format!(".byteback/suspect/{client}.json"));
    assert!(file.exists(), "{}", file.display());
    let log = fs::read_to_string(w.store().join(".byteback/server.log")).unwrap();
    assert!(
        log.lines().any(
            |l| l.contains(&format!("{client}: snapshot {suspect} is SUSPECT"))
                && l.contains(&format!("byteback-server ack --client {client} {suspect}"))
        ),
        "{log}"
    );

    // status --check: critical, naming the client; the text says what to run.
    let out = w.server(&["status", "--check"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let line = stdout(&out);
    assert!(
        line.starts_with(&format!(
            "BYTEBACK CRITICAL - {client} suspect snapshot {suspect}"
        )),
        "{line}"
    );
    let out = w.server(&["status"]);
    let text = stdout(&out);
    assert!(
        text.lines().any(|l| l.starts_with("suspect")
            && l.contains(&client)
            && l.contains(&format!("SUSPECT {suspect}"))),
        "{text}"
    );
    let prom = w.store().join("suspect-test.prom");
    let out = w.server(&["status", "--prometheus", &prom.to_string_lossy()]);
    assert!(out.status.success(), "{}", show(&out));
    let metrics = fs::read_to_string(&prom).unwrap();
    assert!(
        metrics.contains(&format!("byteback_client_suspect{{client=\"{client}\"}} 1")),
        "{metrics}"
    );

    // Nothing the client sends clears it: a clean backup after the bad one
    // adds a snapshot and leaves the mark; asking for an ack over its key
    // is refused.
    small_change(&w, 5);
    w.backup_ok();
    let newest = w.snapshots(&client).pop().unwrap();
    assert_ne!(newest, suspect);
    for asked in [
        format!("byteback ack {suspect}"),
        format!("byteback-server ack --client {client} {suspect}"),
    ] {
        let out = w.raw_ssh(Some(&asked));
        assert!(!out.status.success(), "{asked}: {}", show(&out));
    }
    assert_eq!(marks(&w, &client).len(), 1, "the mark stands");

    // A space shortage: every snapshot may go but the newest and the pinned.
    w.server_config(&format!(
        "{BASE}min_free_percent = 99\ntarget_free_percent = 99.5\n"
    ));
    let out = w.server(&["prune"]);
    assert_eq!(out.status.code(), Some(9), "{}", show(&out));
    let said = show(&out);
    assert!(
        said.contains(&format!(
            "`byteback-server ack --client {client} {suspect}`"
        )),
        "{said}"
    );
    let left = w.snapshots(&client);
    for p in &pinned {
        assert!(left.contains(p), "pinned {p} was deleted: {left:?}");
    }
    assert!(left.contains(&newest));
    for gone in &clean[..2] {
        assert!(!left.contains(gone), "{gone} should have gone: {left:?}");
    }
    // A backup that only the pinned snapshots could make room for is
    // refused, with the reason, and nothing is deleted.
    small_change(&w, 6);
    let src = w.src.to_string_lossy().into_owned();
    let out = w.client(&["backup", "--source", &src]);
    assert_eq!(out.status.code(), Some(9), "{}", show(&out));
    assert!(show(&out).contains("byteback-server ack"), "{}", show(&out));
    assert_eq!(w.snapshots(&client), left);

    // ack: one line and non-zero for what is not marked.
    for bad in [newest.as_str(), "not-a-snapshot"] {
        let out = w.server(&["ack", "--client", &client, bad]);
        assert!(!out.status.success(), "{}", show(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).lines().count(),
            1,
            "{}",
            show(&out)
        );
    }
    let out = w.server(&["ack", "--client", &client, &suspect]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(marks(&w, &client).is_empty());
    let out = w.server(&["ack", "--client", &client, &suspect]);
    assert!(!out.status.success(), "a second ack: {}", show(&out));

    // Released: pruned as any other; only the newest is left.
    let out = w.server(&["prune"]);
    assert_eq!(out.status.code(), Some(9), "{}", show(&out));
    assert_eq!(w.snapshots(&client), [newest]);
    let out = w.server(&["status", "--check"]);
    assert!(!stdout(&out).contains("suspect snapshot"), "{}", show(&out));
}

on_both_backends!(a_ransomware_night_pins_the_clean_history_until_ack);
