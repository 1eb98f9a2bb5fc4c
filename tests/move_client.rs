//! End to end: `byteback-server move-client` between two real servers
//! (two btrfs stores, two sshds on 127.0.0.1). A client with several
//! snapshots on server A moves to server B: its history is copied and
//! adopted there with its own key, A answers its next backup with a
//! redirect that its `byteback` follows once (config.toml and known_hosts
//! rewritten, no hand edit), the backup lands on B, every old snapshot is
//! restorable from B, and A's copy is retired only after that backup.
//! Then what a hostile primary can try with `replica-adopt`.

use byteback_testbed as support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::manifest::{self, Reading, inside};
use support::world::{World, show, stderr, stdout};

const NO_INTERVAL: &str = "min_snapshot_interval = \"0s\"\n";
/// Server A's name on B (its replication key's).
const PRIMARY: &str = "old-server";
const CLIENT: &str = "client.example";
/// A replicated snapshot's name (the primary's, in the past).
const SNAPSHOT: &str = "2026-01-01T00:00:00Z";

/// The line `replicate --setup` prints for B, as arguments.
fn enrolment_args(a: &World, b: &World) -> Vec<String> {
    let out = a.server(&[
        "replicate",
        "--setup",
        "--name",
        PRIMARY,
        "--to",
        &b.destination(),
    ]);
    assert!(out.status.success(), "replicate --setup: {}", show(&out));
    let line = stdout(&out)
        .lines()
        .find_map(|l| l.trim().strip_prefix("byteback-server ").map(str::to_owned))
        .expect("setup prints the new-client line");
    line.split(' ').map(str::to_owned).collect()
}

fn move_client(a: &World, b: &World, extra: &[&str]) -> Output {
    let to = b.destination();
    let mut args = vec!["move-client", CLIENT, "--to", &to];
    args.extend_from_slice(extra);
    a.server(&args)
}

/// A client with three snapshots on A moves to B: refused with the
/// enrolment line until B enrols A's replication key; then B holds the
/// whole history, manifest-identical, as the client itself with its own
/// key; `--retire` is refused before the client backs up on B; a backup
/// with `--destination` is told of the move, not redirected; the next
/// backup follows the redirect once (config.toml changed only in
/// `destination`, B's host key trusted) and lands on B, the one after goes
/// straight there; the oldest snapshot restores alike from B and from A;
/// then `--retire` deletes A's copy and key line.
#[test]
fn a_client_moves_with_its_history_and_its_next_backup_lands_on_the_new_server() {
    let Some(a) = World::new("move-a") else {
        return;
    };
    let Some(b) = World::new("move-b") else {
        return;
    };
    a.enroll(CLIENT);
    a.server_config(NO_INTERVAL);
    let out = b.server(&["setup"]);
    assert!(out.status.success(), "{}", show(&out));
    b.server_config(NO_INTERVAL);
    // Three backups on A, each changing something.
    support::tree::populate(&a.src);
    a.backup_ok();
    for change in ["second", "third"] {
        std::thread::sleep(Duration::from_millis(1100));
        std::fs::write(a.src.join("etc/hostname"), format!("{change}.example\n")).unwrap();
        std::fs::write(a.src.join(change), change).unwrap();
        a.backup_ok();
    }
    let old = a.snapshots(CLIENT);
    assert_eq!(old.len(), 3);

    // Not set up on B yet: refused, with the line to run there.
    let args = enrolment_args(&a, &b);
    let out = move_client(&a, &b, &["--accept-new-host-key"]);
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    let hint = format!(
        "run there, as its backup user: byteback-server {}",
        args.join(" ")
    );
    assert!(stderr(&out).contains(&hint), "{}", show(&out));
    assert!(a.store().join(CLIENT).exists() && !b.store().join(CLIENT).exists());
    // B enrols A's replication key for the client, as printed.
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(
        &args[..6],
        [
            "new-client",
            "--replica",
            "--name",
            PRIMARY,
            "--clients",
            CLIENT
        ]
    );
    let out = b.server(&args);
    assert!(out.status.success(), "{}", show(&out));

    // The move: copy, adopt, redirect.
    let out = move_client(&a, &b, &["--accept-new-host-key"]);
    assert!(out.status.success(), "move-client: {}", show(&out));
    assert!(
        stdout(&out).contains(&format!("Client {CLIENT} moved to {}", b.destination())),
        "{}",
        show(&out)
    );
    assert_eq!(b.snapshots(CLIENT), old, "B holds the whole history");
    assert!(!b.store().join(format!("{PRIMARY}__{CLIENT}")).exists());
    for s in &old {
        manifest::assert_same(
            &format!("snapshot {s} on B"),
            &manifest::read(
                &inside(&a.store().join(CLIENT).join(s), &a.src),
                Reading::FakeSuper,
            ),
            &manifest::read(
                &inside(&b.store().join(CLIENT).join(s), &a.src),
                Reading::FakeSuper,
            ),
        );
    }
    let clients = stdout(&b.server(&["clients"]));
    assert!(
        clients
            .lines()
            .any(|l| l.starts_with(CLIENT) && l.contains("receive only")),
        "B enrolled the client with its own line: {clients}"
    );
    // Again: nothing to do.
    let out = move_client(&a, &b, &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("already"), "{}", show(&out));

    // Not retired before the client has backed up on B.
    let out = move_client(&a, &b, &["--retire"]);
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    assert!(
        stderr(&out).contains("has taken no backup of client.example since the move"),
        "{}",
        show(&out)
    );
    assert_eq!(a.snapshots(CLIENT), old);
    // Meanwhile A's status and check see a moved client, not a stale one.
    let out = a.server(&["status", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.contains("\"state\": \"moved\"") || text.contains("\"state\":\"moved\""),
        "{text}"
    );
    let out = a.server(&["status", "--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // A one-off destination is told, not followed.
    let src = a.src.to_string_lossy().into_owned();
    let a_dest = a.destination();
    let out = a.client(&["backup", "--destination", &a_dest, "--source", &src]);
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    assert!(stderr(&out).contains("not followed"), "{}", show(&out));
    let config = a.client_dir.join("config.toml");
    let before = std::fs::read_to_string(&config).unwrap();
    assert!(
        before.contains(&format!("destination = \"{a_dest}\"")),
        "{before}"
    );

    // The client's next backup: redirected once, recorded, taken on B.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(a.src.join("fourth"), "fourth").unwrap();
    let out = a.client(&["backup", "--source", &src]);
    assert!(out.status.success(), "backup: {}", show(&out));
    assert!(stderr(&out).contains("moved to"), "{}", show(&out));
    let after = std::fs::read_to_string(&config).unwrap();
    assert_eq!(
        after,
        before.replace(&a_dest, &b.destination()),
        "only the destination changed"
    );
    let known = std::fs::read_to_string(a.client_dir.join("known_hosts")).unwrap();
    assert!(
        known.contains(&format!("[127.0.0.1]:{} ", b.sshd.port)),
        "B's host key trusted: {known}"
    );
    let on_b = b.snapshots(CLIENT);
    assert_eq!(on_b.len(), 4, "the backup landed on B: {on_b:?}");
    assert_eq!(&on_b[..3], &old[..]);
    assert_eq!(a.snapshots(CLIENT), old, "nothing more on A");
    // And the next one goes straight there (no redirect any more).
    std::thread::sleep(Duration::from_millis(1100));
    let out = a.client(&["backup", "--source", &src]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(!stderr(&out).contains("moved to"), "{}", show(&out));
    assert_eq!(b.snapshots(CLIENT).len(), 5);

    // The oldest version, restored from B (the configured server now) and
    // from A (whose copy still serves reads): the same files.
    let restore = |extra: &[&str], into: &Path| {
        let mut args = vec!["restore"];
        args.extend_from_slice(extra);
        let into_s = into.to_string_lossy().into_owned();
        args.extend(["--snapshot", &old[0], "--into", &into_s, &src]);
        let out = a.client(&args);
        assert!(out.status.success(), "restore {extra:?}: {}", show(&out));
        manifest::read(&inside(&into.join(&old[0]), &a.src), Reading::Plain)
    };
    let from_b = restore(&[], &a.area.path.join("from-b"));
    let from_a = restore(&["--destination", &a_dest], &a.area.path.join("from-a"));
    manifest::assert_same("the oldest snapshot, restored from B", &from_a, &from_b);
    assert!(from_b.contains_key(Path::new("./etc/shadow")), "{from_b:?}");

    // Now A's copy may go.
    let out = move_client(&a, &b, &["--retire"]);
    assert!(out.status.success(), "retire: {}", show(&out));
    assert!(!a.store().join(CLIENT).exists());
    let clients = stdout(&a.server(&["clients"]));
    assert!(!clients.contains(CLIENT), "{clients}");
    assert_eq!(b.snapshots(CLIENT).len(), 5, "B untouched");
}

/// The primary's replication key, as an attacker holding it would use it.
struct Attacker {
    key: PathBuf,
    port: u16,
    user: String,
}

impl Attacker {
    fn ssh(&self, command: &str) -> Output {
        Command::new("ssh")
            .args(self.options())
            .arg(format!("{}@127.0.0.1", self.user))
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn options(&self) -> Vec<String> {
        support::ssh_options_for_key(&self.key, self.port)
    }

    /// rsync of `dir`'s contents into `remote` on the replica.
    fn rsync(&self, dir: &Path, remote: &str) -> Output {
        Command::new("rsync")
            .args(["-a", "--rsh"])
            .arg(format!("ssh {}", self.options().join(" ")))
            .arg(format!("{}/", dir.display()))
            .arg(format!("{}@127.0.0.1:{remote}", self.user))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn adopt(&self, client: &str, public: &str) -> Output {
        let mut words = public.split_whitespace();
        let (kind, blob) = (words.next().unwrap(), words.next().unwrap());
        self.ssh(&format!("byteback replica-adopt {client} {kind} {blob}"))
    }
}

/// What a hostile primary can try with `replica-adopt` on its replica: a
/// client not stated at enrolment, one it never replicated, an existing
/// client's name, another client's key or its own, anything but a bare
/// key — each refused with authorized_keys unchanged; the one it may adopt
/// becomes a client once, with the line the replica wrote, without what
/// was sent after its last snapshot, and its key logs in as that client.
#[test]
fn a_hostile_primary_adopts_only_what_it_may() {
    let Some(w) = World::new("move-hostile") else {
        return;
    };
    // An ordinary client of the replica, and the primary's replica key
    // for three of its clients.
    w.enroll("victim.example");
    let key = w.area.path.join("primary-key");
    let public = support::ssh_keygen(&key);
    let mut args = vec![
        "new-client",
        "--replica",
        "--name",
        "prim",
        "--clients",
        "web1,victim.example,db1",
    ];
    args.extend(public.split(' '));
    let out = w.server(&args);
    assert!(out.status.success(), "{}", show(&out));
    let attacker = Attacker {
        key,
        port: w.sshd.port,
        user: w.user.name.clone(),
    };
    // Copies of web1 and victim.example with history, sent as a
    // replication sends them.
    let empty = w.area.path.join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("file"), "a primary's copy\n").unwrap();
    for client in ["web1", "victim.example"] {
        let out = attacker.rsync(&empty, &format!("{client}/current/"));
        assert!(out.status.success(), "{}", show(&out));
        let out = attacker.ssh(&format!("byteback replica-snapshot {client} {SNAPSHOT}"));
        assert!(out.status.success(), "{}", show(&out));
    }
    let authorized = w.store().join(".ssh/authorized_keys");
    let keys_before = std::fs::read_to_string(&authorized).unwrap();
    let client_key = std::fs::read_to_string(w.client_dir.join("key.pub")).unwrap();
    let fresh = support::ssh_keygen(&w.area.path.join("fresh-key"));
    let refused = |out: &Output, why: &str| {
        assert_eq!(out.status.code(), Some(6), "{why}: {}", show(out));
        assert!(stderr(out).contains(why), "expected {why:?}: {}", show(out));
        assert_eq!(
            std::fs::read_to_string(&authorized).unwrap(),
            keys_before,
            "authorized_keys after a refused adoption ({why})"
        );
    };
    // A client it was not enrolled for.
    refused(
        &attacker.adopt("evil", &fresh),
        "may not hand client evil over",
    );
    // One it was, but of which it sent nothing here.
    refused(&attacker.adopt("db1", &fresh), "holds no snapshot of db1");
    // An existing client's name: its copy stays a copy.
    refused(
        &attacker.adopt("victim.example", &fresh),
        "client name victim.example is already taken",
    );
    assert!(w.store().join("prim__victim.example").exists());
    // Another client's key, or its own key: a key serves one client.
    refused(
        &attacker.adopt("web1", &client_key),
        "already authorised for client victim.example",
    );
    refused(
        &attacker.adopt("web1", &public),
        "already authorised for client prim",
    );
    // Anything but a bare key never reaches the line.
    for line in [
        "byteback replica-adopt web1 ssh-ed25519",
        "byteback replica-adopt web1 command=\"sh\" AAAA",
        "byteback replica-adopt web1 ssh-ed25519 AAAA x",
        "byteback replica-adopt ../web1 ssh-ed25519 AAAA",
        "byteback replica-adopt prim__web1 ssh-ed25519 AAAA",
    ] {
        let out = attacker.ssh(line);
        assert_eq!(out.status.code(), Some(6), "{line}: {}", show(&out));
    }
    assert_eq!(std::fs::read_to_string(&authorized).unwrap(), keys_before);

    // What it may do: web1 becomes a client, with a line the replica wrote
    // (and nothing it sent after the copy's last snapshot comes along).
    let garbage = w.area.path.join("garbage");
    std::fs::create_dir(&garbage).unwrap();
    std::fs::write(garbage.join("garbage"), "unsnapshotted\n").unwrap();
    let out = attacker.rsync(&garbage, "web1/current/");
    assert!(out.status.success(), "{}", show(&out));
    assert!(w.store().join("prim__web1/current/garbage").exists());
    let out = attacker.adopt("web1", &fresh);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stdout(&out), "adopted=web1\nsnapshots=1\n");
    let keys_after = std::fs::read_to_string(&authorized).unwrap();
    let added: Vec<&str> = keys_after
        .lines()
        .filter(|l| !keys_before.lines().any(|b| b == *l))
        .collect();
    let blob = fresh.split_whitespace().nth(1).unwrap();
    let expected = format!(
        "restrict,command=\"{} receive --store {} --client web1\" ssh-ed25519 {blob} root@web1 (moved from prim)",
        w.server_bin.canonicalize().unwrap().display(),
        w.store().display()
    );
    assert_eq!(added, [expected.as_str()]);
    assert!(!w.store().join("prim__web1").exists());
    assert_eq!(w.snapshots("web1"), [SNAPSHOT]);
    let current = w.store().join("web1/current");
    assert!(current.join("file").exists() && !current.join("garbage").exists());
    // Once only; and its state names what it handed over.
    let again = attacker.adopt("web1", &fresh);
    assert_eq!(again.status.code(), Some(6), "{}", show(&again));
    assert!(
        stderr(&again).contains("client name web1 is already taken"),
        "{}",
        show(&again)
    );
    assert_eq!(std::fs::read_to_string(&authorized).unwrap(), keys_after);
    let out = attacker.ssh("byteback replica-state");
    assert!(out.status.success(), "{}", show(&out));
    let state = stdout(&out);
    assert!(
        state.contains(&format!("adopted=web1 {SNAPSHOT}\n"))
            && state.contains(&format!("client=victim.example {SNAPSHOT}\n"))
            && !state.contains("client=web1"),
        "{state}"
    );
    // The key it gave logs in as the client web1, with web1's history.
    let web1 = Attacker {
        key: w.area.path.join("fresh-key"),
        port: w.sshd.port,
        user: w.user.name.clone(),
    };
    let out = web1.ssh("byteback ping");
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("client=web1\n") && stdout(&out).contains("snapshots=1\n"),
        "{}",
        show(&out)
    );
}
