//! End to end: every door goes through one backup lifecycle, so what it
//! records and decides is the same whichever door a request came in by —
//! a local destination, `byteback-server snapshot` and `byteback-server
//! prune` from the command line, as well as a client over ssh.
//!
//! Each is observed as an administrator would: through `byteback-server
//! status --json`, the backup's `--json` summary and the snapshots.

use byteback_testbed as support;
use support::days_ago;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use jiff::Timestamp;
use support::manifest::inside;
use support::world::{World, show, snapshot_names, stdout};
use support::{FsKind, LoopFs, TestArea};

support::world::on_both_backends!(
    a_local_backup_records_its_outcome,
    a_local_backup_runs_incrementally,
    a_snapshot_by_hand_restarts_the_growth_count,
    prune_from_the_command_line_counts_every_deletion,
);

/// A program run as root in a clean environment, with `config_dir` as the
/// client's configuration directory.
fn run(program: &str, config_dir: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("BYTEBACK_CONFIG_DIR", config_dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", show(out));
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("{e}: {}", show(out)))
}

/// One client's entry of `status --json`.
fn client_status(status: &serde_json::Value, client: &str) -> serde_json::Value {
    status["clients"]
        .as_array()
        .unwrap_or_else(|| panic!("no clients in {status}"))
        .iter()
        .find(|c| c["client"] == client)
        .unwrap_or_else(|| panic!("no {client} in {status}"))
        .clone()
}

/// Entries changed just before a walk are sent again by the next backup
/// (they could still change unseen within one timestamp tick; 3 s on a
/// whole-second filesystem): waiting this long makes the next walk trust
/// them.
fn settle() {
    std::thread::sleep(Duration::from_millis(3100));
}

/// A store on this machine (its own loop filesystem), a client directory
/// set up for it, and a source of 50 files.
struct Local {
    store: std::path::PathBuf,
    config: std::path::PathBuf,
    src: std::path::PathBuf,
    _fs: LoopFs,
    _area: TestArea,
}

const CLIENT_BIN: &str = env!("CARGO_BIN_EXE_byteback");
const SERVER_BIN: &str = env!("CARGO_BIN_EXE_byteback-server");

impl Local {
    fn new(label: &str, kind: FsKind) -> Option<Local> {
        if !support::require_root() {
            return None;
        }
        let area = TestArea::new(label);
        let options: &[&str] = match kind {
            FsKind::Btrfs => &["user_subvol_rm_allowed"],
            FsKind::Ext4 => &[],
        };
        let fs = LoopFs::new(&area, kind, 256, options);
        let local = Local {
            store: fs.mount_point.join("backups"),
            config: area.path.join("config"),
            src: area.path.join("src"),
            _fs: fs,
            _area: area,
        };
        std::fs::create_dir_all(local.src.join("data")).unwrap();
        for i in 0..50 {
            std::fs::write(local.src.join(format!("data/f{i:02}")), format!("{i}\n")).unwrap();
        }
        let store = local.store.to_string_lossy().into_owned();
        let out = run(
            CLIENT_BIN,
            &local.config,
            &["setup", &store, "--name", "local.example"],
        );
        assert!(out.status.success(), "{}", show(&out));
        Some(local)
    }

    /// `byteback backup --json` of the source: the summary.
    fn backup(&self) -> serde_json::Value {
        let src = self.src.to_string_lossy().into_owned();
        let summary = json(&run(
            CLIENT_BIN,
            &self.config,
            &["backup", "--json", "--source", &src],
        ));
        assert_eq!(summary["result"], "ok", "{summary}");
        summary
    }

    /// This client's entry in `byteback-server status --store DIR --json`.
    fn status(&self) -> serde_json::Value {
        let store = self.store.to_string_lossy().into_owned();
        let status = json(&run(
            SERVER_BIN,
            &self.config,
            &["status", "--store", &store, "--json"],
        ));
        client_status(&status, "local.example")
    }

    fn snapshots(&self) -> Vec<String> {
        snapshot_names(&self.store.join("local.example"))
    }
}

/// A backup into a store on this machine records its outcome where
/// `byteback-server status` reads it, as a backup over ssh does: after
/// each backup, `last_attempt` is that backup's, successful.
fn a_local_backup_records_its_outcome(kind: FsKind) {
    let Some(local) = Local::new("lifeoutcome", kind) else {
        return;
    };
    for round in 1..=2 {
        if round == 2 {
            std::fs::write(local.src.join("data/f07"), "changed\n").unwrap();
            std::thread::sleep(Duration::from_millis(1100)); // snapshot names are per second
        }
        let summary = local.backup();
        let me = local.status();
        assert!(
            !me["last_attempt"].is_null(),
            "backup {round}: a local backup recorded no outcome: {me}"
        );
        assert_eq!(me["last_attempt"]["ok"], true, "backup {round}: {me}");
        assert_eq!(me["state"], "ok", "backup {round}: {me}");
        let started: Timestamp = summary["started"].as_str().unwrap().parse().unwrap();
        let recorded: Timestamp = me["last_attempt"]["time"]
            .as_str()
            .unwrap_or_else(|| panic!("no time in {me}"))
            .parse()
            .unwrap();
        assert!(
            recorded >= started,
            "backup {round}: the recorded attempt ({recorded}) is older than the backup ({started})"
        );
    }
    assert_eq!(local.snapshots().len(), 2);
}

/// A backup into a store on this machine uses the change index as a
/// backup over ssh does: after one file changed, the next backup sends
/// only what the index found (the `--json` summary's `pass` is
/// `incremental`, `paths` a handful), and its snapshot holds the change
/// and everything unchanged.
fn a_local_backup_runs_incrementally(kind: FsKind) {
    let Some(local) = Local::new("lifeincr", kind) else {
        return;
    };
    settle();
    let first = local.backup();
    assert_eq!(first["pass"], "full", "{first}");
    settle();
    std::fs::write(local.src.join("data/f07"), "changed\n").unwrap();
    std::thread::sleep(Duration::from_millis(1100)); // snapshot names are per second
    let second = local.backup();
    assert_eq!(
        second["pass"], "incremental",
        "a local backup after one change made a full pass: {second}"
    );
    // The changed file, its directory and the directories above the
    // source: a handful, not the 50-odd paths of the tree.
    let above = local.src.components().count() - 1;
    let paths = second["paths"].as_u64().unwrap_or(0) as usize;
    assert!(
        (1..=above + 3).contains(&paths),
        "{paths} paths sent for one changed file: {second}"
    );
    let snapshots = local.snapshots();
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    let newest = inside(
        &local.store.join("local.example").join(&snapshots[1]),
        &local.src,
    );
    assert_eq!(
        std::fs::read_to_string(newest.join("data/f07")).unwrap(),
        "changed\n"
    );
    for i in (0..50).filter(|&i| i != 7) {
        assert_eq!(
            std::fs::read_to_string(newest.join(format!("data/f{i:02}"))).unwrap(),
            format!("{i}\n")
        );
    }
}

/// `byteback-server snapshot --client NAME` after a transfer that was not
/// completed (its snapshot was refused: inside `min_snapshot_interval`)
/// ends it as a backup's own snapshot would: the bytes written since the
/// last snapshot are history now (`written_since_snapshot_bytes` 0, added
/// to `size_bytes`), and the client is no longer `failing`.
fn a_snapshot_by_hand_restarts_the_growth_count(kind: FsKind) {
    let Some(w) = World::on("lifesnap", kind) else {
        return;
    };
    let client = w.enroll("grow.example");
    const INTERVAL: i64 = 20;
    w.server_config(&format!("min_snapshot_interval = \"{INTERVAL}s\"\n"));
    std::fs::write(w.src.join("small"), "x\n").unwrap();
    w.backup_ok();
    let first = w.snapshots(&client)[0].clone();

    // A second backup inside the interval: its transfer lands in current,
    // its snapshot is refused.
    support::run_ok(&[
        "sh",
        "-c",
        &format!(
            "head -c 1M /dev/urandom > '{}'",
            w.src.join("big").display()
        ),
    ]);
    let out = w.client(&["backup", "--source", &w.src.to_string_lossy()]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "the second backup should be refused its snapshot: {}",
        show(&out)
    );
    let status = json(&w.server(&["status", "--json"]));
    let before = client_status(&status, &client);
    assert_eq!(before["state"], "failing", "{before}");
    let written = before["written_since_snapshot_bytes"].as_u64().unwrap();
    let size = before["size_bytes"].as_u64().unwrap();
    assert!(written > 0, "the refused backup wrote nothing: {before}");

    // Past the interval, whatever rule a snapshot by hand follows.
    let ready = first.parse::<Timestamp>().unwrap() + jiff::SignedDuration::from_secs(INTERVAL + 1);
    while Timestamp::now() < ready {
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = w.server(&["snapshot", "--client", &client]);
    assert!(out.status.success(), "{}", show(&out));
    let snapshots = w.snapshots(&client);
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    let tree = inside(&w.store().join(&client).join(&snapshots[1]), &w.src);
    assert!(tree.join("big").exists(), "the snapshot lacks the transfer");

    let status = json(&w.server(&["status", "--json"]));
    let after = client_status(&status, &client);
    let mut problems = Vec::new();
    if after["written_since_snapshot_bytes"] != 0 {
        problems.push(format!(
            "the growth count was not restarted: written_since_snapshot_bytes is {}, not 0",
            after["written_since_snapshot_bytes"]
        ));
    }
    if after["size_bytes"].as_u64() != Some(size + written) {
        problems.push(format!(
            "what was written is not history: size_bytes is {}, not {size} + {written}",
            after["size_bytes"]
        ));
    }
    if after["state"] == "failing" {
        problems.push("the client is still failing after its snapshot".into());
    }
    if !(after["last_attempt"].is_null() || after["last_attempt"]["ok"] == true) {
        problems.push(format!(
            "its last attempt is still the refused one: {}",
            after["last_attempt"]
        ));
    }
    assert!(
        problems.is_empty(),
        "after `byteback-server snapshot --client {client}`:\n{}\nstatus: {after}",
        problems.join("\n")
    );
}

/// `byteback-server prune` from the command line is counted by status's
/// `pruned_last_24h`, every deletion of it: the ordinary ones, and those
/// of snapshots no replica holds yet (which go only when nothing else can,
/// and are alerts).
fn prune_from_the_command_line_counts_every_deletion(kind: FsKind) {
    let Some(w) = World::on("lifeprune", kind) else {
        return;
    };
    let out = w.server(&["setup"]);
    assert!(out.status.success(), "{}", show(&out));
    let client = "hist.example";
    let key = support::ssh_keygen(&w.area.path.join("hist-key"));
    let mut args = vec!["new-client", "--name", client];
    args.extend(key.split(' '));
    let out = w.server(&args);
    assert!(out.status.success(), "{}", show(&out));
    for days in [100, 80, 60, 40, 20] {
        let file = w.store().join(client).join("current/unique.bin");
        let script = format!("head -c 1M /dev/urandom > '{}' && sync", file.display());
        let out = w.user.run_as(&["sh", "-c", &script]);
        assert!(out.status.success(), "{}", show(&out));
        let out = w.server(&["snapshot", "--client", client, "--at", &days_ago(days)]);
        assert!(out.status.success(), "{}", show(&out));
        let _ = std::fs::remove_file(&file);
    }
    let pruned =
        |w: &World| json(&w.server(&["status", "--json"]))["store"]["pruned_last_24h"].clone();
    assert_eq!(pruned(&w), 0);
    assert_eq!(w.snapshots(client).len(), 5);

    // An ordinary deletion: no replica is configured.
    let out = w.server(&["prune", "--force"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(w.snapshots(client).len(), 4);
    assert_eq!(pruned(&w), 1, "after one ordinary deletion");

    // A replica is configured and holds nothing: every snapshot is
    // unreplicated, so each deletion is one of them.
    let replica = "[replicate]\nto = [\"byteback@replica.invalid\"]\n";
    w.server_config(replica);
    let status = json(&w.server(&["status", "--json"]));
    let me = client_status(&status, client);
    assert!(
        me["replicas"][0]["newest"].is_null(),
        "the replica should hold nothing: {me}"
    );
    let out = w.server(&["prune", "--force"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(w.snapshots(client).len(), 3);
    assert!(
        !json(&w.server(&["status", "--json"]))["store"]["alert"].is_null(),
        "deleting an unreplicated snapshot leaves an alert"
    );
    assert_eq!(
        pruned(&w),
        2,
        "after an ordinary and an unreplicated deletion"
    );

    // Short of space: the rest go, down to the newest, all unreplicated.
    w.server_config(&format!(
        "min_free_percent = 99.5\ntarget_free_percent = 99.9\nmin_age = \"1s\"\n{replica}"
    ));
    let out = w.server(&["prune"]);
    assert_eq!(w.snapshots(client).len(), 1, "{}", show(&out));
    assert_eq!(
        pruned(&w),
        4,
        "1 ordinary and 3 unreplicated deletions; status: {}",
        stdout(&w.server(&["status"]))
    );
}
