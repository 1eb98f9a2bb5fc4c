//! The compatibility matrix, end to end: the rsync users run on each side
//! (3.5.0, this system's, and 3.2.7, Debian 12's and Ubuntu LTS's) and the
//! kernels they run on (user namespaces on or off; Landlock with every
//! layer, ABI 3 without scoping, or none), simulated on this kernel with
//! server.toml's `[sandbox]`, as the server would run where the kernel
//! lacks them.
//!
//! One world per server rsync. Each client rsync gets its own enrolment
//! (the walkthrough), a full backup, a change with a deleted file and a
//! deleted directory, an incremental backup that must really be one and
//! match the source, and a restore identical to the source. Then each
//! `[sandbox]` setting, rewritten in server.toml between cells: a backup
//! and a restore work, the log's WARNING line and `status` name the layers,
//! and the filter-rule attack (a merge rule naming another client's file,
//! as in tests/hostile_rsync.rs) fails; where no layer is left and the
//! rsync has no `--confine-root`, the server refuses in one line naming
//! what to change, and nothing is written.
//!
//! Each cell prints a `compat |` line with its result and seconds.

use byteback_testbed as support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::manifest::{self, Entry, Reading, inside};
use support::relay::RELAY;
use support::world::incremental_paths;
use support::world::{World, show, stderr, stdout};

/// The usual PATH of the client (as `World::client_command` sets it).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// This system's rsync: the server's default and the stock client.
const SYSTEM_RSYNC: &str = "/usr/bin/rsync";

/// The server's rsync in a world.
struct ServerRsync {
    /// What server.toml's `rsync` names.
    path: PathBuf,
    /// Its version as the server reports it.
    version: &'static str,
}

impl ServerRsync {
    fn confine_root(&self) -> bool {
        self.version != "3.2.7"
    }
}

/// One `[sandbox]` setting.
#[derive(Clone, Copy)]
struct Sandbox {
    label: &'static str,
    private_view: bool,
    landlock_max_abi: Option<u32>,
}

const SANDBOXES: &[Sandbox] = &[
    Sandbox {
        label: "default",
        private_view: true,
        landlock_max_abi: None,
    },
    Sandbox {
        label: "private_view = false",
        private_view: false,
        landlock_max_abi: None,
    },
    Sandbox {
        label: "landlock_max_abi = 3",
        private_view: true,
        landlock_max_abi: Some(3),
    },
    Sandbox {
        label: "landlock_max_abi = 0",
        private_view: true,
        landlock_max_abi: Some(0),
    },
    Sandbox {
        label: "private_view = false, landlock_max_abi = 0",
        private_view: false,
        landlock_max_abi: Some(0),
    },
];

impl Sandbox {
    fn toml(&self) -> String {
        let mut t = format!("[sandbox]\nprivate_view = {}\n", self.private_view);
        if let Some(abi) = self.landlock_max_abi {
            t.push_str(&format!("landlock_max_abi = {abi}\n"));
        }
        t
    }
}

/// server.toml: no snapshot interval, `rsync`, and `sandbox`.
fn server_toml(rsync: &ServerRsync, sandbox: &Sandbox) -> String {
    format!(
        "min_snapshot_interval = \"0s\"\nrsync = \"{}\"\n{}",
        rsync.path.display(),
        sandbox.toml()
    )
}

/// A `compat |` line for one cell.
fn report(cell: &str, result: &str, start: Instant) {
    let line = format!(
        "compat | {cell} | {result} | {:.1} s",
        start.elapsed().as_secs_f64()
    );
    println!("{line}");
}

/// The client of `w` with `rsync_dir` (if any) first in its PATH.
fn client(w: &World, rsync_dir: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = w.client_command(args);
    if let Some(dir) = rsync_dir {
        cmd.env("PATH", format!("{}:{PATH}", dir.display()));
    }
    cmd.output().expect("run byteback")
}

/// A verbose backup of `w.src`; stdout and stderr together.
fn backup(w: &World, rsync_dir: Option<&Path>) -> String {
    let src = w.src.to_string_lossy().into_owned();
    let out = client(w, rsync_dir, &["backup", "--verbose", "--source", &src]);
    assert!(out.status.success(), "backup: {}", show(&out));
    format!("{}{}", stdout(&out), stderr(&out))
}

type Manifest = BTreeMap<PathBuf, Entry>;

/// The snapshot's copy of the source, as stored (fake-super).
fn snapshot_manifest(w: &World, client: &str, snapshot: &str) -> Manifest {
    let tree = inside(&w.store().join(client).join(snapshot), &w.src);
    manifest::read(&tree, Reading::FakeSuper)
}

/// Entries changed within the change index's racy window (100 ms) before
/// a walk are sent again by the next backup: waits until the clock is
/// past it, so an incremental backup sends only what changed.
fn past_racy_window(changed: Instant) {
    let window = Duration::from_millis(150);
    while changed.elapsed() < window {
        std::thread::sleep(window - changed.elapsed());
    }
}

/// Restores `<src>/home` from the newest snapshot and checks it is the
/// source's, attribute by attribute.
fn restore_matches(w: &World, rsync_dir: Option<&Path>, client_name: &str, what: &str) {
    let snapshot = w.snapshots(client_name).pop().unwrap();
    let into = w.area.path.join(format!("restored-{}", support::unique()));
    let home = w.src.join("home");
    let out = client(
        w,
        rsync_dir,
        &[
            "restore",
            "--snapshot",
            &snapshot,
            "--into",
            &into.to_string_lossy(),
            &home.to_string_lossy(),
        ],
    );
    assert!(out.status.success(), "{what}: restore: {}", show(&out));
    let restored = inside(&into.join(&snapshot), &home);
    manifest::assert_same(
        &format!("{what}: restored home"),
        &manifest::read(&home, Reading::Plain),
        &manifest::read(&restored, Reading::Plain),
    );
    fs::remove_dir_all(&into).unwrap();
}

/// The server log from byte `from` on.
fn log_since(w: &World, from: usize) -> String {
    let log = fs::read_to_string(w.store().join(".byteback/server.log")).unwrap_or_default();
    log.get(from..).unwrap_or_default().to_owned()
}

fn log_len(w: &World) -> usize {
    fs::metadata(w.store().join(".byteback/server.log")).map_or(0, |m| m.len() as usize)
}

/// `byteback-server status`'s `server:` line.
fn status_line(w: &World) -> String {
    let out = w.server(&["status"]);
    assert!(out.status.success(), "status: {}", show(&out));
    stdout(&out)
        .lines()
        .find(|l| l.starts_with("server: rsync "))
        .unwrap_or_else(|| panic!("no server line in status: {}", show(&out)))
        .to_owned()
}

/// Sets up a world whose server runs `rsync`: the store and its settings.
fn world(label: &str, rsync: &ServerRsync) -> Option<World> {
    // Room for each client's file of SPLIT_FROM bytes and their changes.
    let w = World::sized(
        label,
        support::FsKind::Btrfs,
        &["user_subvol_rm_allowed"],
        2048,
    )?;
    let out = w.server(&["setup"]);
    assert!(out.status.success(), "setup: {}", show(&out));
    w.server_config(&server_toml(rsync, &SANDBOXES[0]));
    Some(w)
}

/// Points `w` at a client of its own: config directory and source tree.
fn use_client(w: &mut World, label: &str) {
    w.client_dir = w.area.path.join(format!("client-{label}"));
    w.src = w.area.path.join(format!("src-{label}"));
    if !w.src.exists() {
        fs::create_dir(&w.src).unwrap();
    }
}

/// The rsync cell: server `rsync` × client `client_rsync` (its directory
/// first on the PATH, or this system's rsync).
fn rsync_cell(w: &mut World, rsync: &ServerRsync, client_rsync: Option<&Path>, label: &str) {
    let start = Instant::now();
    let client_version = if client_rsync.is_some() {
        "3.2.7"
    } else {
        "3.5.0"
    };
    let cell = format!(
        "server rsync {} × client rsync {client_version}",
        rsync.version
    );
    use_client(w, label);
    let log_from = log_len(w);
    let name = w.enroll(&format!("{label}.example"));
    // The tree, a file and a directory that will go, and the racy window
    // passed so the next walk trusts them.
    support::tree::populate(&w.src);
    fs::create_dir_all(w.src.join("going/deep")).unwrap();
    fs::write(w.src.join("going/deep/f"), "going\n").unwrap();
    fs::write(w.src.join("going-file"), "going too\n").unwrap();
    // A file with holes and enough without them for the two runs of a
    // backup (`--sparse` for the first only), each rsync on each side.
    write_holes_and_dense(&w.src, 1);
    past_racy_window(Instant::now());
    let first = manifest::read(&w.src, Reading::Plain);

    let from = log_len(w);
    let out = backup(w, client_rsync);
    assert_eq!(incremental_paths(&out), None, "{cell}: {out}");
    assert_eq!(receivers_sparse(w, from), [true, false], "{cell}: {out}");
    let snaps = w.snapshots(&name);
    assert_eq!(snaps.len(), 1, "{cell}");
    manifest::assert_same(
        &format!("{cell}: full snapshot"),
        &first,
        &snapshot_manifest(w, &name, &snaps[0]),
    );

    fs::remove_file(w.src.join("going-file")).unwrap();
    fs::remove_dir_all(w.src.join("going")).unwrap();
    fs::write(w.src.join("etc/hostname"), "renamed.example\n").unwrap();
    fs::write(w.src.join("new-file"), "new\n").unwrap();
    write_holes_and_dense(&w.src, 2);
    let second = manifest::read(&w.src, Reading::Plain);
    let from = log_len(w);
    let out = backup(w, client_rsync);
    assert_eq!(receivers_sparse(w, from), [true, false], "{cell}: {out}");
    let sent = incremental_paths(&out).unwrap_or_else(|| panic!("{cell}: not incremental: {out}"));
    assert!(
        sent < first.len() / 2,
        "{cell}: {sent} of {} paths sent: {out}",
        first.len()
    );
    for unchanged in ["notes.txt", "etc/shadow"] {
        assert!(
            !out.lines().any(|l| l.contains(unchanged)),
            "{cell}: {unchanged} was sent: {out}"
        );
    }
    let snaps = w.snapshots(&name);
    assert_eq!(snaps.len(), 2, "{cell}");
    let stored = snapshot_manifest(w, &name, &snaps[1]);
    manifest::assert_same(&format!("{cell}: incremental snapshot"), &second, &stored);
    assert!(!stored.keys().any(|p| p.starts_with("going")), "{cell}");
    for snapshot in &snaps {
        let image = inside(&w.store().join(&name).join(snapshot), &w.src).join("holes.img");
        let allocated =
            std::os::unix::fs::MetadataExt::blocks(&fs::metadata(&image).unwrap()) * 512;
        assert!(
            allocated < HOLES_LEN / 4,
            "{cell}: {snapshot}'s holes.img allocates {allocated} of {HOLES_LEN} bytes"
        );
    }

    restore_matches(w, client_rsync, &name, &cell);

    // Which rsync ran, in the log and in status.
    let log = log_since(w, log_from);
    let ran = format!("(rsync {} {} (", rsync.path.display(), rsync.version);
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("{name}: running ")) && l.contains(&ran)),
        "{cell}: the log does not say {ran}:\n{log}"
    );
    let status = status_line(w);
    assert!(
        status.starts_with(&format!(
            "server: rsync {} {} (",
            rsync.path.display(),
            rsync.version
        )),
        "{cell}: {status}"
    );
    report(&cell, "ok: enroll, full, incremental, restore", start);
}

/// The length of `holes.img`, most of it holes.
const HOLES_LEN: u64 = 16 << 20;

/// `holes.img` (data at one more place of [`HOLES_LEN`] each
/// `generation`, the rest holes) and `dense.bin` (no run of zeros, just
/// past the size from which the files without holes get an rsync run of
/// their own; 64 KiB of it changed from the second `generation`).
fn write_holes_and_dense(src: &Path, generation: u8) {
    use std::os::unix::fs::FileExt;
    let image = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(src.join("holes.img"))
        .unwrap();
    image.set_len(HOLES_LEN).unwrap();
    let at = u64::from(generation) << 20;
    image.write_all_at(&[generation; 64 << 10], at).unwrap();
    // Written whole the first time; then 64 KiB of it changes in place,
    // which an incremental backup sends as the whole file's length.
    let dense = src.join("dense.bin");
    let bytes = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(7).wrapping_add(generation) | 1)
            .collect()
    };
    if generation == 1 {
        let len = byteback::client::backup::attempts::SPLIT_FROM as usize + (1 << 20);
        fs::write(&dense, bytes(len)).unwrap();
    } else {
        let file = fs::OpenOptions::new().write(true).open(&dense).unwrap();
        file.write_all_at(&bytes(64 << 10), at).unwrap();
    }
}

/// Whether each rsync receiver the server ran since `from` bytes of its
/// log kept holes (`--sparse`).
fn receivers_sparse(w: &World, from: usize) -> Vec<bool> {
    log_since(w, from)
        .lines()
        .filter(|l| l.contains(": running ") && l.contains(" --server "))
        .map(|l| l.split(' ').any(|word| word == "--sparse"))
        .collect()
}

/// The filter-rule attack of tests/hostile_rsync.rs: a merge rule naming
/// the victim's file, sent through the relay, on a restore and on a backup
/// with `--delete`. Neither may read the victim's lines as rules.
/// `refused`: the server runs no rsync in this cell.
fn filter_attack(w: &World, client_name: &str, victim_file: &Path, cell: &str, refused: bool) {
    let relay = w.area.path.join("relay.pl");
    if !relay.exists() {
        fs::write(&relay, RELAY).unwrap();
    }
    let loot = w.area.path.join("loot");
    let _ = fs::remove_dir_all(&loot);
    let rsync = |args: &[&str], pull: bool, path: &str| -> Output {
        let rsh = format!(
            "perl {} ssh {}",
            relay.display(),
            w.raw_ssh_options().join(" ")
        );
        let remote = format!("{}@127.0.0.1:{path}", w.user.name);
        let mut cmd = Command::new(SYSTEM_RSYNC);
        cmd.args(args).arg("--rsh").arg(rsh);
        if pull {
            cmd.arg(remote).arg(&loot);
        } else {
            cmd.arg(format!("{}/", w.src.display())).arg(remote);
        }
        cmd.env("RELAY_FROM", ":- /")
            .env("RELAY_TO", ".- /")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let rule = format!(":- {}", victim_file.display());
    let snapshot = w.snapshots(client_name).pop().unwrap();
    let from_snapshot = format!("{}/", snapshot.replace(':', "%3A"));
    let found_root = || {
        let found = support::run(&["find", &loot.to_string_lossy(), "-name", "root"]);
        !found.stdout.is_empty()
    };
    // The control: without the rule, the same pull through the relay
    // brings "root" back, wherever the server runs rsync at all.
    let out = rsync(&["-r"], true, &from_snapshot);
    assert_eq!(
        out.status.success() && found_root(),
        !refused,
        "{cell}: the control pull\n{}",
        show(&out)
    );
    let _ = fs::remove_dir_all(&loot);
    // The victim's lines ("root", "secret") as excludes would hide the
    // attacker's own "root".
    let out = rsync(&["-r", "--filter", &rule], true, &from_snapshot);
    assert!(
        !out.status.success() || found_root(),
        "{cell}: the victim's file was read as filter rules by the sender\n{}",
        show(&out)
    );
    assert!(!stderr(&out).contains("secret"), "{cell}: {}", show(&out));
    let _ = fs::remove_dir_all(&loot);
    // The receiver: excluded files are kept from deletion.
    fs::remove_file(w.src.join("root")).unwrap();
    let out = rsync(&["-r", "--delete", "--filter", &rule], false, "current/");
    let current = w.store().join(client_name).join("current");
    let kept = support::run(&["find", &current.to_string_lossy(), "-name", "root"]);
    assert!(
        !out.status.success() || kept.stdout.is_empty(),
        "{cell}: the victim's file was read as filter rules by the receiver\n{}",
        show(&out)
    );
    assert!(!stderr(&out).contains("secret"), "{cell}: {}", show(&out));
    fs::write(w.src.join("root"), "attacker data\n").unwrap();
}

/// The sandbox cell: a backup and a restore work (or are refused where no
/// layer is left), the log and status name the layers, the attack fails.
fn sandbox_cell(
    w: &World,
    rsync: &ServerRsync,
    sandbox: &Sandbox,
    client_name: &str,
    victim_file: &Path,
    kernel_abi: i32,
) {
    let start = Instant::now();
    let cell = format!(
        "server rsync {} × [sandbox] {}",
        rsync.version, sandbox.label
    );
    w.server_config(&server_toml(rsync, sandbox));
    let log_from = log_len(w);
    let landlock_abi = match sandbox.landlock_max_abi {
        Some(cap) => kernel_abi.min(cap as i32),
        None => kernel_abi,
    };
    let landlock = landlock_abi >= 2;
    let scoped = landlock_abi >= 6;
    let refused = !landlock && !sandbox.private_view && !rsync.confine_root();

    // status says which layers are in force.
    let status = status_line(w);
    let want_landlock = match (landlock, scoped) {
        (true, true) => format!("Landlock ABI {landlock_abi}: filesystem rules, signal and"),
        (true, false) => format!("Landlock ABI {landlock_abi}: filesystem rules; no signal"),
        (false, _) => "no Landlock".to_owned(),
    };
    let want_view = match sandbox.private_view {
        true => "; private view (if the kernel allows",
        false => "; no private view (switched off: [sandbox] private_view = false)",
    };
    assert!(
        status.contains(&format!("sandbox: {want_landlock}")) && status.contains(want_view),
        "{cell}: status says {status}"
    );

    fs::write(
        w.src.join(format!("cell-{}", support::unique())),
        sandbox.label,
    )
    .unwrap();
    if refused {
        let before = w.snapshots(client_name);
        let current = w.store().join(client_name).join("current");
        let current_before = manifest::read(&current, Reading::FakeSuper);
        let src = w.src.to_string_lossy().into_owned();
        let out = w.client(&["backup", "--source", &src]);
        let want = format!(
            "refusing to run rsync unconfined: no Landlock and no private view ([sandbox] landlock_max_abi = 0, private_view = false in server.toml), and {} (rsync 3.2.7) has no --confine-root; remove landlock_max_abi = 0 and private_view = false from [sandbox] in server.toml, or set `rsync` there to rsync 3.5.0 or later",
            rsync.path.display()
        );
        let text = stderr(&out);
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(&want)).collect();
        assert!(!lines.is_empty(), "{cell}: {}", show(&out));
        assert_eq!(out.status.code(), Some(8), "{cell}: {}", show(&out));
        assert_eq!(
            w.snapshots(client_name),
            before,
            "{cell}: a snapshot was taken"
        );
        manifest::assert_same(
            &format!("{cell}: current after the refusal"),
            &current_before,
            &manifest::read(&current, Reading::FakeSuper),
        );
        // A restore is refused the same way, and brings nothing.
        let into = w.area.path.join(format!("refused-{}", support::unique()));
        let out = w.client(&[
            "restore",
            "--into",
            &into.to_string_lossy(),
            &w.src.join("home").to_string_lossy(),
        ]);
        assert!(!out.status.success(), "{cell}: {}", show(&out));
        assert!(stderr(&out).contains(&want), "{cell}: {}", show(&out));
        let restored = support::run(&["find", &into.to_string_lossy(), "-type", "f"]);
        assert!(
            restored.stdout.is_empty(),
            "{cell}: a refused restore wrote {}",
            stdout(&restored)
        );
        let log = log_since(w, log_from);
        assert!(log.contains(&want), "{cell}: the log says\n{log}");
        assert!(!log.contains(": running "), "{cell}: rsync ran:\n{log}");
        filter_attack(w, client_name, victim_file, &cell, true);
        report(
            &cell,
            &format!("refused (exit 8): {}", lines[0].trim()),
            start,
        );
        return;
    }

    let before = w.snapshots(client_name).len();
    let source = manifest::read(&w.src, Reading::Plain);
    backup(w, None);
    let snaps = w.snapshots(client_name);
    assert_eq!(snaps.len(), before + 1, "{cell}");
    manifest::assert_same(
        &format!("{cell}: snapshot"),
        &source,
        &snapshot_manifest(w, client_name, snaps.last().unwrap()),
    );
    restore_matches(w, None, client_name, &cell);

    // The log names the missing layers in one WARNING line per transfer.
    let log = log_since(w, log_from);
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARNING: rsync"))
        .collect();
    let mut missing = Vec::new();
    if !landlock {
        missing.push("no Landlock (kernel too old, Landlock disabled or capped in [sandbox])");
    } else if !scoped {
        missing.push("Landlock without signal and socket scoping");
    }
    if !sandbox.private_view {
        missing.push("no private view (unprivileged user namespaces not allowed, or [sandbox] private_view = false)");
    }
    if missing.is_empty() {
        assert!(warnings.is_empty(), "{cell}: {warnings:?}");
    } else {
        if !rsync.confine_root() {
            missing.push("no --confine-root (rsync older than 3.5.0)");
        }
        // The backup's receiver and the restore's sender.
        assert!(warnings.len() >= 2, "{cell}: the log says\n{log}");
        for line in &warnings {
            for m in &missing {
                assert!(line.contains(m), "{cell}: {line:?} does not say {m:?}");
            }
            assert!(
                line.contains(&format!("WARNING: rsync {} runs with", rsync.version)),
                "{cell}: {line}"
            );
        }
    }
    filter_attack(w, client_name, victim_file, &cell, false);
    let layers = match (landlock, scoped) {
        (true, true) => format!("Landlock ABI {landlock_abi} scoped"),
        (true, false) => format!("Landlock ABI {landlock_abi}"),
        (false, _) => "no Landlock".to_owned(),
    };
    report(
        &cell,
        &format!(
            "ok: backup, restore, attack fails; {layers}, {}, {}",
            match sandbox.private_view {
                true => "private view",
                false => "no private view",
            },
            match rsync.confine_root() {
                true => "--confine-root",
                false => "no --confine-root",
            }
        ),
        start,
    );
}

/// The whole row of one server rsync: both client rsyncs, then every
/// `[sandbox]` setting.
fn matrix(label: &str, rsync: ServerRsync, rsync_3_2_7: Option<&Path>) {
    let Some(mut w) = world(label, &rsync) else {
        return;
    };
    let start = Instant::now();
    rsync_cell(&mut w, &rsync, None, "c350");
    match rsync_3_2_7 {
        Some(dir) => rsync_cell(&mut w, &rsync, Some(&dir.join("bin")), "c327"),
        None => report(
            &format!("server rsync {} × client rsync 3.2.7", rsync.version),
            "SKIPPED: rsync 3.2.7 could not be fetched",
            Instant::now(),
        ),
    }

    // The sandbox cells, with the first client (this system's rsync).
    use_client(&mut w, "c350");
    let client_name = "c350.example";
    fs::write(w.src.join("root"), "attacker data\n").unwrap();
    fs::write(w.src.join("mine"), "attacker data\n").unwrap();
    w.add_client_with_file(
        "victim.example",
        "shadow",
        "root\nsecret\n",
        "2026-01-01T12:00:00Z",
    );
    let victim_file = w.store().join("victim.example/current/shadow");
    let kernel_abi = byteback::exec::sandbox::landlock_abi();
    for sandbox in SANDBOXES {
        sandbox_cell(&w, &rsync, sandbox, client_name, &victim_file, kernel_abi);
    }
    report(
        &format!("server rsync {}: the whole row", rsync.version),
        "ok",
        start,
    );
}

fn system_rsync() -> ServerRsync {
    let out = support::run(&[SYSTEM_RSYNC, "--version"]);
    assert!(
        out.stdout.starts_with(b"rsync  version 3.5.0 "),
        "{SYSTEM_RSYNC} is not rsync 3.5.0: {}",
        show(&out)
    );
    ServerRsync {
        path: SYSTEM_RSYNC.into(),
        version: "3.5.0",
    }
}

/// The server running rsync 3.5.0 (this system's), with client rsync 3.5.0
/// and 3.2.7: the walkthrough, a full and a really incremental backup
/// matching the source and a restore identical to it; then every
/// `[sandbox]` setting: backup and restore work, the log and `status` name
/// the layers, the filter-rule attack fails, and the one refused cell says
/// so in one line, writing nothing.
#[test]
fn with_the_servers_rsync_3_5_0() {
    if !support::require_root() {
        return;
    }
    let old = support::rsync::rsync_3_2_7();
    matrix("compat350", system_rsync(), old.as_deref());
}

/// The same row with the server running rsync 3.2.7 (Debian 12's, Ubuntu
/// LTS's); skipped loudly where it cannot be fetched.
#[test]
fn with_the_servers_rsync_3_2_7() {
    if !support::require_root() {
        return;
    }
    let Some(old) = support::rsync::rsync_3_2_7() else {
        report(
            "server rsync 3.2.7",
            "SKIPPED: rsync 3.2.7 could not be fetched",
            Instant::now(),
        );
        return;
    };
    let rsync = ServerRsync {
        path: old.join("bin/rsync"),
        version: "3.2.7",
    };
    matrix("compat327", rsync, Some(&old));
}
