//! End to end: a client's life on the server after new-client — listing
//! the clients, a reinstalled machine's new key (`new-client
//! --replace-key`), `rename-client` and `remove-client` — with real keys
//! through a real sshd, and the refusals while a client is busy or the
//! input is wrong.

use byteback_testbed as support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use support::FsKind;
use support::world::{World, show, stderr, stdout};

/// One client machine: its own configuration directory (key, known_hosts,
/// config), backing up the world's source directory.
struct Machine<'w> {
    w: &'w World,
    dir: PathBuf,
}

impl Machine<'_> {
    fn run(&self, args: &[&str]) -> Output {
        self.w
            .client_command(args)
            .env("BYTEBACK_CONFIG_DIR", &self.dir)
            .output()
            .expect("run byteback")
    }

    fn backup(&self) -> Output {
        self.run(&["backup", "--source", &self.w.src.to_string_lossy()])
    }

    fn backup_ok(&self) {
        let out = self.backup();
        assert!(out.status.success(), "backup: {}", show(&out));
        // Snapshots are named by the second.
        std::thread::sleep(Duration::from_millis(1100));
    }

    /// `byteback setup` for `name` (making a key if there is none); returns
    /// the public key it printed.
    fn setup(&self, name: &str) -> String {
        let out = self.run(&["setup", &self.w.destination(), "--name", name]);
        assert!(out.status.success(), "client setup: {}", show(&out));
        stdout(&out)
            .lines()
            .find_map(|l| l.strip_prefix("Your backup key is "))
            .expect("setup prints the key")
            .to_owned()
    }

    /// The key's fingerprint as ssh-keygen prints it: `SHA256:...`.
    fn fingerprint(&self) -> String {
        let pub_key = self.dir.join("key.pub");
        let line = support::run_ok(&["ssh-keygen", "-lf", &pub_key.to_string_lossy()]);
        line.split_whitespace().nth(1).unwrap().to_owned()
    }
}

/// Runs `new-client` (with `extra` options) for the key `key`.
fn new_client(w: &World, extra: &[&str], key: &str) -> Output {
    let mut args = vec!["new-client"];
    args.extend_from_slice(extra);
    args.extend(key.split(' '));
    w.server(&args)
}

/// A machine set up, enrolled under `name` and tested, in `<area>/<label>`.
fn enroll<'w>(w: &'w World, label: &str, name: &str) -> Machine<'w> {
    let m = Machine {
        w,
        dir: w.area.path.join(label),
    };
    let key = m.setup(name);
    let out = new_client(w, &[], &key);
    assert!(out.status.success(), "new-client: {}", show(&out));
    let out = m.run(&["test", "--accept-new-host-key"]);
    assert!(out.status.success(), "test: {}", show(&out));
    // A refused backup must say so at once, not retry for an hour.
    let config = m.dir.join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("retry_attempts = 1\nretry_pause = \"1s\"\n");
    std::fs::write(&config, text).unwrap();
    m
}

/// One line on stderr and exit status `code`, containing each needle.
fn one_line(out: &Output, code: i32, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(code), "{}", show(out));
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "expected one line: {}", show(out));
    for n in needles {
        assert!(err.contains(n), "missing {n:?}: {}", show(out));
    }
}

/// `clients --json`, one object per line.
fn clients_json(w: &World) -> Vec<serde_json::Value> {
    let out = w.server(&["clients", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn of<'a>(rows: &'a [serde_json::Value], client: &str) -> Option<&'a serde_json::Value> {
    rows.iter().find(|r| r["client"] == client)
}

/// The server's snapshots of `client`, as `byteback-server snapshots` lists them.
fn listed_snapshots(w: &World, client: &str) -> Vec<String> {
    let out = w.server(&["snapshots", "--client", client]);
    assert!(out.status.success(), "{}", show(&out));
    stdout(&out)
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap().to_owned())
        .collect()
}

fn authorized_keys(w: &World) -> String {
    std::fs::read_to_string(w.store().join(".ssh/authorized_keys")).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// `clients` lists every client with ssh-keygen's fingerprints; a
/// reinstalled machine's new key needs `--replace-key`, after which the old
/// key is refused at once and the history kept; a renamed client keeps its
/// history and key; a removed one is refused at once and its data gone, the
/// other client untouched.
#[test]
fn clients_are_listed_rekeyed_renamed_and_removed() {
    let Some(w) = World::new("clients") else {
        return;
    };
    let out = w.server(&["setup"]);
    assert!(out.status.success(), "{}", show(&out));
    w.server_config("min_snapshot_interval = \"0s\"\n");
    std::fs::write(w.src.join("f"), "one\n").unwrap();
    let a = enroll(&w, "machine-a", "a.example");
    let b = enroll(&w, "machine-b", "b.example");
    a.backup_ok();
    b.backup_ok();

    // Both listed, with ssh-keygen's own fingerprints.
    let out = w.server(&["clients"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    for (m, name) in [(&a, "a.example"), (&b, "b.example")] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not listed:\n{text}"));
        for needle in [
            "ssh-ed25519",
            &m.fingerprint(),
            "1 snapshot",
            "restrict, receive only",
            &format!("root@{name}"),
        ] {
            assert!(line.contains(needle), "{needle:?} missing:\n{text}");
        }
    }
    let rows = clients_json(&w);
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (m, name) in [(&a, "a.example"), (&b, "b.example")] {
        let row = of(&rows, name).unwrap();
        assert_eq!(row["fingerprint"], m.fingerprint().as_str(), "{row}");
        assert_eq!(row["key_type"], "ssh-ed25519", "{row}");
        assert_eq!(row["comment"], format!("root@{name}"), "{row}");
        assert_eq!(row["receive_only"], true, "{row}");
        assert_eq!(row["restrict"], true, "{row}");
        assert_eq!(row["data"], true, "{row}");
        assert_eq!(row["snapshots"], 1, "{row}");
        assert_eq!(row["orphaned"], false, "{row}");
    }

    // A reinstalled machine: a new key for a.example. Without
    // --replace-key that is refused, as ever, and changes nothing.
    let before = authorized_keys(&w);
    let old_a = Machine {
        w: &w,
        dir: w.area.path.join("machine-a-old"),
    };
    copy_dir(&a.dir, &old_a.dir);
    std::fs::remove_file(a.dir.join("key")).unwrap();
    std::fs::remove_file(a.dir.join("key.pub")).unwrap();
    let new_key = a.setup("a.example");
    assert_ne!(a.fingerprint(), old_a.fingerprint());
    one_line(
        &new_client(&w, &[], &new_key),
        6,
        &["already taken by another key", "--replace-key"],
    );
    assert_eq!(authorized_keys(&w), before);
    let out = new_client(&w, &["--replace-key"], &new_key);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("no longer logs in"), "{}", show(&out));
    // The old key is refused at once; the new one backs up, history kept.
    one_line(&old_a.backup(), 6, &["refused this machine's key"]);
    let old_snapshots = listed_snapshots(&w, "a.example");
    assert_eq!(old_snapshots.len(), 1);
    a.backup_ok();
    let snapshots = listed_snapshots(&w, "a.example");
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    assert_eq!(snapshots[0], old_snapshots[0]);
    let row = of(&clients_json(&w), "a.example").unwrap().clone();
    assert_eq!(row["fingerprint"], a.fingerprint().as_str(), "{row}");
    assert_eq!(authorized_keys(&w).lines().count(), 2);

    // Renamed: history and key follow; the machine calls itself c.example
    // too (the server needs no more than its key to know it).
    let out = w.server(&["rename-client", "a.example", "c.example"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(!w.store().join("a.example").exists());
    assert_eq!(listed_snapshots(&w, "c.example"), snapshots);
    assert!(
        authorized_keys(&w).contains("--client c.example\""),
        "{}",
        authorized_keys(&w)
    );
    a.setup("c.example");
    let out = a.run(&["test"]);
    assert!(
        out.status.success() && stdout(&out).contains("Backup space for c.example: 2 snapshots"),
        "{}",
        show(&out)
    );
    a.backup_ok();
    assert_eq!(listed_snapshots(&w, "c.example").len(), 3);
    let rows = clients_json(&w);
    assert!(of(&rows, "a.example").is_none(), "{rows:?}");
    assert_eq!(of(&rows, "c.example").unwrap()["snapshots"], 3);

    // Removed: the key is refused at once and the data is gone.
    let out = w.server(&["remove-client", "b.example"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("its 1 snapshot(s) and current were deleted"),
        "{}",
        show(&out)
    );
    one_line(&b.backup(), 6, &["refused this machine's key"]);
    assert!(!w.store().join("b.example").exists());
    assert!(!w.store().join(".byteback/locks/client/b.example").exists());
    let rows = clients_json(&w);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(!authorized_keys(&w).contains("b.example"));
    // The other client is untouched.
    a.backup_ok();
}

/// `remove-client --keep-snapshots` takes only the key (refused at once);
/// enrolling the name again takes the data up; removing it then deletes
/// every snapshot the way pruning does on this backend.
fn removal_keeps_snapshots_when_asked(kind: FsKind) {
    let Some(w) = World::on("keepsnaps", kind) else {
        return;
    };
    let out = w.server(&["setup"]);
    assert!(out.status.success(), "{}", show(&out));
    w.server_config("min_snapshot_interval = \"0s\"\n");
    std::fs::write(w.src.join("f"), "one\n").unwrap();
    let k = enroll(&w, "machine-k", "k.example");
    k.backup_ok();
    std::fs::write(w.src.join("g"), "two\n").unwrap();
    k.backup_ok();
    let snapshots = listed_snapshots(&w, "k.example");
    assert_eq!(snapshots.len(), 2);

    let out = w.server(&["remove-client", "--keep-snapshots", "k.example"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("its data stays in"), "{}", show(&out));
    one_line(&k.backup(), 6, &["refused this machine's key"]);
    assert_eq!(listed_snapshots(&w, "k.example"), snapshots);
    let rows = clients_json(&w);
    let row = of(&rows, "k.example").unwrap();
    assert_eq!(row["orphaned"], true, "{row}");
    assert_eq!(row["snapshots"], 2, "{row}");
    assert!(row["fingerprint"].is_null(), "{row}");
    let out = w.server(&["clients"]);
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("k.example ") && l.contains("orphaned")),
        "{}",
        show(&out)
    );

    // The same key enrolled again: the history is its own again.
    let key = std::fs::read_to_string(k.dir.join("key.pub")).unwrap();
    let out = new_client(&w, &[], key.trim());
    assert!(out.status.success(), "{}", show(&out));
    k.backup_ok();
    assert_eq!(listed_snapshots(&w, "k.example").len(), 3);

    // Removed for good.
    let out = w.server(&["remove-client", "k.example"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("its 3 snapshot(s) and current were deleted"),
        "{}",
        show(&out)
    );
    assert!(!w.store().join("k.example").exists());
    assert!(clients_json(&w).is_empty());
    let log = std::fs::read_to_string(w.store().join(".byteback/server.log")).unwrap();
    assert!(
        log.contains("k.example: removed with its 3 snapshot(s)"),
        "{log}"
    );
    if kind == FsKind::Btrfs {
        let out = support::run_ok(&["btrfs", "subvolume", "list", &w.store().to_string_lossy()]);
        assert!(!out.contains("k.example"), "{out}");
    }
}

support::world::on_both_backends!(removal_keeps_snapshots_when_asked);

/// Takes a lock file of the store in this process, as a running backup or
/// restore holds it (released when the file drops).
fn hold(w: &World, name: &str) -> std::fs::File {
    let path = w.store().join(".byteback/locks").join(name);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
        std::os::unix::fs::chown(dir, Some(w.user.uid), Some(w.user.gid)).unwrap();
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap();
    std::os::unix::fs::chown(&path, Some(w.user.uid), Some(w.user.gid)).unwrap();
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    file
}

/// While a backup or a read of a client runs, `remove-client` (with or
/// without `--keep-snapshots`) and `rename-client` refuse it in one line
/// (exit 4), changing neither keys nor snapshots; once free, it is renamed
/// and removed.
#[test]
fn a_busy_client_is_neither_removed_nor_renamed() {
    let Some(w) = World::new("busyclient") else {
        return;
    };
    let out = w.server(&["setup"]);
    assert!(out.status.success(), "{}", show(&out));
    std::fs::write(w.src.join("f"), "one\n").unwrap();
    let m = enroll(&w, "machine", "busy.example");
    m.backup_ok();
    let keys = authorized_keys(&w);
    let snapshots = listed_snapshots(&w, "busy.example");
    for (lock, what) in [
        ("client/busy.example", "a backup of busy.example is running"),
        (
            "read/busy.example.2",
            "a read (list, restore or verify) of busy.example is running",
        ),
    ] {
        let held = hold(&w, lock);
        one_line(&w.server(&["remove-client", "busy.example"]), 4, &[what]);
        one_line(
            &w.server(&["remove-client", "--keep-snapshots", "busy.example"]),
            4,
            &[what],
        );
        one_line(
            &w.server(&["rename-client", "busy.example", "other.example"]),
            4,
            &[what],
        );
        drop(held);
        assert_eq!(authorized_keys(&w), keys);
        assert_eq!(listed_snapshots(&w, "busy.example"), snapshots);
        assert!(!w.store().join("other.example").exists());
    }
    // Free again: it goes.
    let out = w.server(&["rename-client", "busy.example", "other.example"]);
    assert!(out.status.success(), "{}", show(&out));
    let out = w.server(&["remove-client", "other.example"]);
    assert!(out.status.success(), "{}", show(&out));
}

/// Client management refuses unknown clients, bad or taken names, another
/// client's key and root editing the backup user's keys, each in one line
/// with its exit code, changing no key and no directory.
#[test]
fn bad_client_commands_are_one_line_and_change_nothing() {
    let Some(w) = World::new("badclients") else {
        return;
    };
    let out = w.server(&["setup"]);
    assert!(out.status.success(), "{}", show(&out));
    let one = enroll(&w, "machine-one", "one.example");
    enroll(&w, "machine-two", "two.example");
    // Orphaned data: a third client removed with --keep-snapshots.
    let gone = enroll(&w, "machine-gone", "gone.example");
    let out = w.server(&["remove-client", "--keep-snapshots", "gone.example"]);
    assert!(out.status.success(), "{}", show(&out));
    let keys = authorized_keys(&w);
    let dirs = || {
        let mut names: Vec<String> = std::fs::read_dir(w.store())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = dirs();
    let fresh = support::ssh_keygen(&w.area.path.join("fresh-key"));
    let unknown = ["no client nobody.example", "byteback-server clients"];
    let cases: Vec<(Vec<&str>, i32, Vec<&str>)> = vec![
        (vec!["remove-client", "nobody.example"], 1, unknown.to_vec()),
        (
            vec!["remove-client", "--keep-snapshots", "nobody.example"],
            1,
            unknown.to_vec(),
        ),
        (
            vec!["rename-client", "nobody.example", "new.example"],
            1,
            unknown.to_vec(),
        ),
        (vec!["remove-client", "a/b"], 2, vec!["invalid client name"]),
        (
            vec!["rename-client", "one.example", "bad/name"],
            2,
            vec!["invalid client name \"bad/name\""],
        ),
        (
            vec!["rename-client", "one.example", ".hidden"],
            2,
            vec!["invalid client name"],
        ),
        (
            vec!["rename-client", "one.example", "one.example"],
            2,
            vec!["already called one.example"],
        ),
        (
            vec!["rename-client", "one.example", "two.example"],
            6,
            vec!["client name two.example is already taken"],
        ),
        (
            vec!["rename-client", "one.example", "gone.example"],
            6,
            vec!["client name gone.example is already taken"],
        ),
        (
            vec!["rename-client", "gone.example", "two.example"],
            6,
            vec!["client name two.example is already taken"],
        ),
    ];
    for (args, code, needles) in &cases {
        one_line(&w.server(args), *code, needles);
    }
    let mut args = vec!["new-client", "--replace-key", "--name", "nobody.example"];
    args.extend(fresh.split(' '));
    one_line(
        &w.server(&args),
        1,
        &["no client nobody.example", "without --replace-key"],
    );
    // Another client's key is never taken over, with --replace-key or not.
    let theirs = std::fs::read_to_string(one.dir.join("key.pub")).unwrap();
    let out = new_client(
        &w,
        &["--replace-key", "--name", "two.example"],
        theirs.trim(),
    );
    one_line(&out, 6, &["already authorised for client one.example"]);
    // Root may not edit (or read) the backup user's keys.
    let store = w.store().to_string_lossy().into_owned();
    let bin = w.server_bin.to_string_lossy().into_owned();
    for args in [
        &["remove-client", "--store", &store, "one.example"][..],
        &[
            "rename-client",
            "--store",
            &store,
            "one.example",
            "x.example",
        ],
        &["clients", "--store", &store],
    ] {
        let mut argv = vec![bin.as_str()];
        argv.extend_from_slice(args);
        one_line(&support::run(&argv), 2, &["not root"]);
    }
    assert_eq!(authorized_keys(&w), keys);
    assert_eq!(dirs(), before);
    one_line(&gone.backup(), 6, &["refused this machine's key"]);
    assert!(one.backup().status.success());
}
