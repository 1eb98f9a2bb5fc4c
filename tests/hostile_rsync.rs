//! What a hostile client can do *inside* the rsync protocol, past the
//! command-line allow-list: filter rules that name server files, silence in
//! the middle of a transfer, pushes that fill the disk, options that would
//! touch snapshot inodes. Each scenario is the attack itself, made with the
//! stock rsync client and the client's own key, through a relay (rsync's
//! `--rsh`) that edits the stream the way a modified client would.
//!
//! `BYTEBACK_TEST_SERVER_BIN=<older byteback-server>` runs them against
//! another build, to see them fail where the attack succeeds.

use byteback_testbed as support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::FsKind;
use support::relay::RELAY;
use support::world::{World, show, stderr};

/// A world with one enrolled attacker and the relay script.
struct Scene {
    w: World,
    attacker: String,
    relay: PathBuf,
}

impl Scene {
    fn new(label: &str, kind: FsKind) -> Option<Scene> {
        let w = World::on(label, kind)?;
        let attacker = w.enroll("attacker.example");
        let relay = w.area.path.join("relay.pl");
        std::fs::write(&relay, RELAY).unwrap();
        Some(Scene { w, attacker, relay })
    }

    /// rsync through the relay; `edits` are RELAY_* variables; `remote`
    /// goes first for a pull (`pull = true`), last for a push.
    fn rsync(&self, args: &[&str], edits: &[(&str, &str)], pull: bool, path: &str) -> Command {
        let rsh = format!(
            "perl {} ssh {}",
            self.relay.display(),
            self.w.raw_ssh_options().join(" ")
        );
        let remote = format!("{}@127.0.0.1:{path}", self.w.user.name);
        let local = self.w.area.path.join("loot");
        let mut cmd = Command::new("rsync");
        cmd.args(args).arg("--rsh").arg(rsh);
        if pull {
            cmd.arg(remote).arg(&local);
        } else {
            cmd.arg(format!("{}/", self.w.src.display())).arg(remote);
        }
        cmd.envs(edits.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn run(&self, args: &[&str], edits: &[(&str, &str)], pull: bool, path: &str) -> Output {
        self.rsync(args, edits, pull, path).output().unwrap()
    }

    /// Starts a transfer in its own process group (so the relay's children
    /// go with it when the test ends it).
    fn spawn(&self, args: &[&str], edits: &[(&str, &str)], pull: bool, path: &str) -> Client {
        let child = self
            .rsync(args, edits, pull, path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        Client(child)
    }

    /// The server user's rsync processes.
    fn server_rsyncs(&self) -> Vec<u32> {
        support::processes_of(self.w.user.uid, "rsync")
    }

    /// Waits (up to `limit`) until the server user runs no rsync; how long it took.
    fn wait_for_no_server_rsync(&self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.server_rsyncs().is_empty() {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Waits (up to 20 s) until the server user runs an rsync.
    fn wait_for_server_rsync(&self) {
        let start = Instant::now();
        while self.server_rsyncs().is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the server never started rsync"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.w.store().join(".byteback/server.log")).unwrap_or_default()
    }
}

/// A client transfer the test started; ended (with its process group) on drop.
struct Client(Child);

impl Drop for Client {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

/// A snapshot name as the forced command wants it in a path (`:` encoded).
fn encoded(snapshot: &str) -> String {
    snapshot.replace(':', "%3A")
}

/// What a restore brought back, relative to `loot`.
fn restored(root: &Path) -> Vec<String> {
    let out = support::run(&["find", &root.to_string_lossy(), "-type", "f"]);
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| Path::new(l).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Filter rules a modified rsync sends (merge rules naming server files,
/// `/dev/zero`) are never opened by the server's rsync, in a restore or a
/// backup with `--delete`: no server file read as rules, no answer telling
/// whether a server path exists, no rsync left spinning.
#[test]
fn filter_rules_cannot_open_server_files() {
    let Some(s) = Scene::new("hostilefilter", FsKind::Btrfs) else {
        return;
    };
    let w = &s.w;
    std::fs::write(w.src.join("root"), "attacker data\n").unwrap();
    std::fs::write(w.src.join("mine"), "attacker data\n").unwrap();
    w.backup_ok();
    let snapshot = w.snapshots(&s.attacker)[0].clone();
    w.add_client_with_file(
        "victim.example",
        "shadow",
        "root\nsecret\n",
        "2026-01-01T12:00:00Z",
    );
    let victim_file = w.store().join("victim.example/current/shadow");
    let loot = w.area.path.join("loot");
    // The stock client sends a dir-merge rule as it is; the relay turns it
    // into a merge rule, which the server's rsync would open itself.
    let merge = [("RELAY_FROM", ":- /"), ("RELAY_TO", ".- /")];

    // Restore: the victim's lines must not become excludes on the
    // attacker's own files ("root" would then be missing).
    let rule = format!(":- {}", victim_file.display());
    let out = s.run(
        &["-r", "--filter", &rule],
        &merge,
        true,
        &format!("{}/", encoded(&snapshot)),
    );
    let got = restored(&loot);
    assert!(
        !(out.status.success() && got == ["mine"]),
        "the victim's file was read as filter rules: {got:?}\n{}",
        show(&out)
    );
    assert!(!stderr(&out).contains("secret"), "{}", show(&out));
    let _ = std::fs::remove_dir_all(&loot);
    // Nor may the answer tell whether a path exists on the server: naming
    // the victim's file and naming nothing must look the same.
    let missing = w.store().join("victim.example/current/no-such-file");
    let probe = |path: &Path| {
        let rule = format!(":- {}", path.display());
        let out = s.run(
            &["-r", "--filter", &rule],
            &merge,
            true,
            &format!("{}/", encoded(&snapshot)),
        );
        let _ = std::fs::remove_dir_all(&loot);
        let text = stderr(&out).replace(&path.display().to_string(), "PATH");
        (out.status.code(), text)
    };
    assert_eq!(
        probe(&victim_file),
        probe(&missing),
        "a restore tells whether a server path exists"
    );

    // Backup with --delete: the receiver takes filter rules too. Excluded
    // files are kept from deletion, so the victim's lines would keep the
    // attacker's "root" in current although the source no longer has it.
    std::fs::remove_file(w.src.join("root")).unwrap();
    let out = s.run(
        &["-r", "--delete", "--filter", &rule],
        &merge,
        false,
        "current/",
    );
    let current = w.store().join(&s.attacker).join("current");
    let kept = support::run(&["find", &current.to_string_lossy(), "-name", "root"]);
    assert!(
        !out.status.success() || kept.stdout.is_empty(),
        "the victim's file was read as filter rules by the receiver\n{}",
        show(&out)
    );

    // A merge rule on /dev/zero used to leave a server rsync spinning at
    // full CPU after the client had gone, deaf to SIGTERM.
    let start = Instant::now();
    let out = s.run(
        &["-r", "--filter", ":- /dev/zero"],
        &merge,
        true,
        &format!("{}/", encoded(&snapshot)),
    );
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "a restore with a merge rule on /dev/zero took {:?}\n{}",
        start.elapsed(),
        show(&out)
    );
    assert!(
        s.wait_for_no_server_rsync(Duration::from_secs(15))
            .is_some(),
        "a server rsync is still running: {:?}",
        s.server_rsyncs()
    );
    // Only the attacker's own files ever came back.
    assert!(!stderr(&out).contains("secret"), "{}", show(&out));
}

/// A client that goes silent during the file list, in the middle of file
/// data, or while restoring cannot hold a server rsync past `io_timeout`
/// (its own `--timeout=0` notwithstanding); a backup's lock goes with it.
#[test]
fn the_servers_rsync_never_outwaits_a_silent_client() {
    let Some(s) = Scene::new("hostilesilent", FsKind::Btrfs) else {
        return;
    };
    let w = &s.w;
    let io_timeout = 3;
    w.server_config(&format!(
        "io_timeout = \"{io_timeout}s\"\nlock_wait = \"1s\"\nmin_snapshot_interval = \"0s\"\n"
    ));
    support::run_ok(&[
        "sh",
        "-c",
        &format!("head -c 24M /dev/urandom > '{}/big'", w.src.display()),
    ]);
    // rsync's own timer does not end a receiver whose client went silent in
    // the middle of file data; the client's --timeout=0 must not switch the
    // server's limit off either.
    let limit = Duration::from_secs(io_timeout + 12);
    for (what, pull, stall) in [
        ("a backup silent during the file list", false, "300"),
        (
            "a backup silent in the middle of file data",
            false,
            "4000000",
        ),
        ("a restore whose client stops asking", true, "2000"),
    ] {
        let path = if pull {
            format!("{}/", encoded(&w.snapshots(&s.attacker)[0]))
        } else {
            "current/".into()
        };
        let client = s.spawn(
            &["-r", "--timeout=0", "--inplace"],
            &[("RELAY_STALL", stall)],
            pull,
            &path,
        );
        s.wait_for_server_rsync();
        let took = s.wait_for_no_server_rsync(limit);
        drop(client);
        eprintln!("{what}: the server's rsync ended {took:?} after it started");
        assert!(
            took.is_some(),
            "{what}: the server's rsync still ran {limit:?} after it started (io_timeout {io_timeout}s)\n{}",
            s.log()
        );
        if !pull {
            // The client's lock went with it: the next backup runs at once.
            w.backup_ok();
        }
    }
    assert!(s.log().contains("the client sent nothing"), "{}", s.log());
}

/// Restores are limited per client: a third while two hang on is refused at
/// once, and the server's rsyncs end within seconds of their clients going
/// away, long before `io_timeout`.
#[test]
fn restores_are_bounded_and_end_with_their_connection() {
    let Some(s) = Scene::new("hostilerestore", FsKind::Btrfs) else {
        return;
    };
    let w = &s.w;
    w.server_config("io_timeout = \"60s\"\n");
    std::fs::write(w.src.join("file"), "data\n").unwrap();
    w.backup_ok();
    let path = format!("{}/", encoded(&w.snapshots(&s.attacker)[0]));
    // Two restores that hang on, connected and silent.
    let first = s.spawn(&["-r"], &[("RELAY_STALL", "0")], true, &path);
    let second = s.spawn(&["-r"], &[("RELAY_STALL", "0")], true, &path);
    let start = Instant::now();
    while s.server_rsyncs().len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(20), "{}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // A third is turned away at once.
    let out = s.run(&["-r"], &[], true, &path);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(stderr(&out).contains("already running"), "{}", show(&out));
    // The clients go away: their server rsyncs end within seconds, long
    // before the 60 s io_timeout.
    drop(first);
    drop(second);
    let took = s.wait_for_no_server_rsync(Duration::from_secs(20));
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(20)),
        "server rsyncs outlived their connections: {:?}\n{}",
        s.server_rsyncs(),
        s.log()
    );
    // And restores work again.
    let out = s.run(&["-r"], &[], true, &path);
    assert!(out.status.success(), "{}", show(&out));
}

/// On a plain store, a push with `-U` (which would set the access time of a
/// snapshot inode linked into `current`) is refused, and a later backup
/// leaves the snapshot's inode unchanged.
#[test]
fn plain_pushes_cannot_change_snapshot_inodes() {
    let Some(s) = Scene::new("hostileatime", FsKind::Ext4) else {
        return;
    };
    let w = &s.w;
    w.server_config("min_snapshot_interval = \"0s\"\n");
    std::fs::write(w.src.join("file"), "data\n").unwrap();
    w.backup_ok();
    let snapshot = w
        .store()
        .join(&s.attacker)
        .join(&w.snapshots(&s.attacker)[0]);
    let stamp = |p: &Path| support::run_ok(&["stat", "-c", "%X %Y %a %i %h", &p.to_string_lossy()]);
    let before = stamp(&snapshot.join(w.src.strip_prefix("/").unwrap()).join("file"));
    // The client puts the file's access time back to 1999 and pushes it
    // with -U: rsync would link the unchanged file from the snapshot and
    // then set the snapshot inode's access time.
    support::run_ok(&[
        "touch",
        "-a",
        "-d",
        "1999-01-01",
        &w.src.join("file").to_string_lossy(),
    ]);
    let options = ["-rltU", "--relative"];
    let src = w.src.to_string_lossy().into_owned();
    let out = Command::new("rsync")
        .args(options)
        .arg("--rsh")
        .arg(format!("ssh {}", w.raw_ssh_options().join(" ")))
        .arg(&src)
        .arg(format!("{}@127.0.0.1:current/", w.user.name))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "-U must be refused: {}", show(&out));
    // A normal backup links the unchanged file, and the snapshot stays as it
    // was. (Snapshots are named by the second: let one pass.)
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(w.src.join("other"), "new\n").unwrap();
    let out = w.client(&["backup", "--source", &src]);
    assert!(out.status.success(), "{}", show(&out));
    let after = stamp(&snapshot.join(w.src.strip_prefix("/").unwrap()).join("file"));
    let (before_words, after_words): (Vec<&str>, Vec<&str>) = (
        before.split_whitespace().collect(),
        after.split_whitespace().collect(),
    );
    assert_eq!(
        before_words[..4],
        after_words[..4],
        "the snapshot's inode changed (atime mtime mode inode)"
    );
}

support::world::on_both_backends!(one_clients_flood_cannot_cost_another_its_history);

/// One client that never snapshots and floods the disk with files is
/// reclaimed before anyone's history is pruned: the victim's next backup
/// succeeds with all of its snapshots kept, and the attacker is told why.
fn one_clients_flood_cannot_cost_another_its_history(kind: FsKind) {
    let Some(w) = World::on("hostileflood", kind) else {
        return;
    };
    let victim = w.enroll("victim.example");
    w.server_config(
        "min_snapshot_interval = \"0s\"\nmin_free_percent = 10.0\ntarget_free_percent = 20.0\nmin_age = \"1s\"\nlock_wait = \"5s\"\n",
    );
    std::fs::write(w.src.join("small"), "victim data\n").unwrap();
    w.backup_ok();
    // The victim's history: a few old snapshots of real data.
    let current = w.store().join(&victim).join("current");
    for (i, at) in [
        "2026-01-01T00:00:00Z",
        "2026-02-01T00:00:00Z",
        "2026-03-01T00:00:00Z",
    ]
    .iter()
    .enumerate()
    {
        let file = current.join(format!("old{i}.bin"));
        let out = w.user.run_as(&[
            "sh",
            "-c",
            &format!("head -c 24M /dev/urandom > '{}' && sync", file.display()),
        ]);
        assert!(out.status.success(), "{}", show(&out));
        let out = w.server(&["snapshot", "--client", &victim, "--at", at]);
        assert!(out.status.success(), "{}", show(&out));
        let _ = std::fs::remove_file(&file);
    }
    let history = w.snapshots(&victim);

    // The attacker: enrolled with its own key, never snapshots, and pushes
    // files until the disk is full (and keeps what was cut short,
    // --partial). Not zeros: a plain store's receiver keeps runs of zeros
    // as holes (`--sparse`), which cost no space.
    let key = w.add_client_with_file("attacker.example", "x", "x\n", "2026-01-01T00:00:00Z");
    let flood = w.area.path.join("flood");
    std::fs::create_dir(&flood).unwrap();
    let bytes = vec![0x5au8; 16 << 20];
    for i in 0..48 {
        std::fs::write(flood.join(format!("f{i}")), &bytes).unwrap();
    }
    let rsh = format!(
        "ssh -F none -T -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile={}/known_hosts -o StrictHostKeyChecking=yes -p {}",
        key.display(),
        w.client_dir.display(),
        w.sshd.port
    );
    let out = Command::new("rsync")
        .args(["-r", "--inplace", "--partial", "--rsh", &rsh])
        .arg(format!("{}/", flood.display()))
        .arg(format!("{}@127.0.0.1:current/", w.user.name))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the flood should not fit: {}",
        show(&out)
    );

    // The victim's next backup succeeds, and its history is all there.
    std::fs::write(w.src.join("more"), "more victim data\n").unwrap();
    w.backup_ok();
    let after = w.snapshots(&victim);
    let log = std::fs::read_to_string(w.store().join(".byteback/server.log")).unwrap_or_default();
    for s in &history {
        assert!(
            after.contains(s),
            "the victim lost {s} to the attacker's flood\n{log}"
        );
    }
    assert_eq!(after.len(), history.len() + 1);
    // The attacker's unsnapshotted data was reclaimed, and it is told why.
    assert!(
        log.contains("attacker.example") && !log.contains("prune: deleted victim"),
        "{log}"
    );
    let attacker_current = w.store().join("attacker.example/current");
    let left = support::run_ok(&["du", "-sm", &attacker_current.to_string_lossy()]);
    let mib: u64 = left.split_whitespace().next().unwrap().parse().unwrap();
    assert!(mib < 100, "{mib} MiB of the flood is still there\n{log}");
    let ping = Command::new("ssh")
        .args(rsh.split(' ').skip(1))
        .arg(format!("{}@127.0.0.1", w.user.name))
        .arg("byteback ping")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&ping.stdout).contains("notice=")
            && String::from_utf8_lossy(&ping.stdout).contains("discarded"),
        "{}",
        show(&ping)
    );
}

/// A compromised rsync's first moves, in perl: signal another process of
/// the backup user (`kill 0`, then SIGTERM unless told not to) and connect
/// to an abstract unix socket; prints each result as `ok` or the errno.
const ESCAPE: &str = r#"
use Socket;
my ($pid, $name, $term) = @ARGV;
my @r;
push @r, "kill0=" . (kill(0, $pid) ? "ok" : $! + 0);
push @r, "term=" . (kill('TERM', $pid) ? "ok" : $! + 0) if $term;
socket(my $s, AF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
push @r, "connect=" . (connect($s, pack_sockaddr_un("\0$name")) ? "ok" : $! + 0);
print join(" ", @r), "\n";
"#;

/// Runs `argv` as the backup user in `dir`'s `current`, confined exactly
/// as the server's rsync for a backup is; its output and how far the
/// kernel confined it. The sandbox is set up from a thread that is the
/// backup user (credentials are per thread in Linux), as the server is.
fn confined_as_user(
    w: &World,
    dir: &Path,
    argv: &[&str],
) -> (Output, byteback::exec::sandbox::Enforcement) {
    use byteback::exec::sandbox::Confinement;
    use rustix::process::{Gid, Uid};
    let jail = Confinement {
        dir: dir.to_owned(),
        writable: true,
        cwd: "current".into(),
        ..Confinement::default()
    };
    let (uid, gid) = (Uid::from_raw(w.user.uid), Gid::from_raw(w.user.gid));
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                rustix::thread::set_thread_groups(&[]).unwrap();
                rustix::thread::set_thread_res_gid(gid, gid, gid).unwrap();
                rustix::thread::set_thread_res_uid(uid, uid, uid).unwrap();
                // A credential change makes the process undumpable, and its
                // /proc/self files root's: the sandbox could not write its
                // user namespace's maps (a server started as the user can).
                rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::Dumpable)
                    .unwrap();
                let (child, enforcement) = jail
                    .spawn(|_view| {
                        byteback::exec::Cmd::new(argv[0])
                            .args(&argv[1..])
                            .configure(|c| {
                                c.env_clear()
                                    .stdin(Stdio::null())
                                    .stdout(Stdio::piped())
                                    .stderr(Stdio::piped());
                            })
                    })
                    .unwrap();
                (child.wait_with_output().unwrap(), enforcement)
            })
            .join()
            .unwrap()
    })
}

/// An rsync confined as the server confines it for a backup cannot signal
/// another process of the backup user or connect to an abstract socket
/// (Landlock ABI 6 and later), nor make, remove, rename or write anything
/// in the snapshot beside `current`, while linking from it still works.
#[test]
fn a_compromised_rsync_reaches_no_process_socket_or_snapshot() {
    let Some(w) = World::on("hostilescope", FsKind::Ext4) else {
        return;
    };
    let client = w.enroll("scoped.example");
    std::fs::write(w.src.join("file"), "kept\n").unwrap();
    w.backup_ok();
    let dir = w.store().join(&client);
    let snapshot = w.snapshots(&client)[0].clone();
    let kept = Path::new("..")
        .join(&snapshot)
        .join(w.src.strip_prefix("/").unwrap())
        .join("file");
    let kept = kept.to_string_lossy().into_owned();

    // Another process of the backup user (a prune, another client's
    // receiver), and an abstract socket.
    let mut other = Command::new("sleep")
        .arg("600")
        .uid(w.user.uid)
        .gid(w.user.gid)
        .spawn()
        .unwrap();
    let pid = other.id().to_string();
    let name = format!("byteback-test-{}", std::process::id());
    let addr =
        <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            name.as_bytes(),
        )
        .unwrap();
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();

    // Unconfined, the user reaches both (so the refusals below are the
    // sandbox's).
    let out = w.user.run_as(&["perl", "-e", ESCAPE, &pid, &name, ""]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "kill0=ok connect=ok",
        "{}",
        show(&out)
    );

    let (out, enforcement) = confined_as_user(&w, &dir, &["perl", "-e", ESCAPE, &pid, &name, "1"]);
    let abi = byteback::exec::sandbox::landlock_abi();
    if abi >= 6 {
        assert!(
            enforcement.landlock && enforcement.scoped,
            "{enforcement:?}"
        );
        let eperm = libc::EPERM;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("kill0={eperm} term={eperm} connect={eperm}"),
            "{}",
            show(&out)
        );
    } else {
        eprintln!("*** Landlock ABI {abi} (< 6): signal and socket scoping not tested ***");
    }
    assert!(
        other.try_wait().unwrap().is_none(),
        "the other process was killed"
    );
    let _ = other.kill();
    let _ = other.wait();
    drop(listener);

    // The snapshot beside current, --link-dest's source: nothing made,
    // removed, renamed or replaced in it; linking from it still works.
    let (out, enforcement) = confined_as_user(&w, &dir, &["ln", &kept, "linked"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(enforcement.private_view, "{enforcement:?}");
    if !enforcement.landlock {
        eprintln!("*** no Landlock: the snapshot's protection not tested ***");
        return;
    }
    let in_snapshot = |p: &str| format!("../{snapshot}/{p}");
    for argv in [
        vec!["touch".to_owned(), in_snapshot("new")],
        vec!["rm".to_owned(), kept.clone()],
        vec!["mv".to_owned(), kept.clone(), "stolen".to_owned()],
        vec![
            "sh".to_owned(),
            "-c".to_owned(),
            format!("echo evil > {}", in_snapshot("new")),
        ],
        vec!["cp".to_owned(), "linked".to_owned(), in_snapshot("copy")],
        vec![
            "mv".to_owned(),
            format!("../{snapshot}"),
            "../moved".to_owned(),
        ],
        vec!["rm".to_owned(), "-rf".to_owned(), format!("../{snapshot}")],
    ] {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let (out, _) = confined_as_user(&w, &dir, &argv);
        assert!(!out.status.success(), "{argv:?} succeeded: {}", show(&out));
    }
    assert_eq!(w.snapshots(&client), std::slice::from_ref(&snapshot));
    let file = dir
        .join(&snapshot)
        .join(w.src.strip_prefix("/").unwrap())
        .join("file");
    assert_eq!(std::fs::read_to_string(file).unwrap(), "kept\n");
    let out = w.server(&["verify"]);
    assert!(out.status.success(), "{}", show(&out));
}
