//! End to end: pre- and post-backup hooks (order, skips, environment,
//! failures, the timeout), the WAN settings, and the shipped database hooks
//! round-tripping real MariaDB and PostgreSQL data through a backup —
//! real sshd, rsync, btrfs, users and database servers.

use byteback_testbed as support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::manifest::{self, Reading, inside};
use support::world::{World, show, stderr};

/// Interval 0 so a test can take several snapshots in a row.
const NO_INTERVAL: &str = "min_snapshot_interval = \"0s\"\n";

/// Writes an executable (unless `mode` says otherwise) shell hook.
fn hook(dir: &Path, name: &str, body: &str, mode: u32) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// A hook body that appends its name and every documented variable to `log`.
fn logging(log: &Path) -> String {
    format!(
        r#"echo "$(basename "$0") phase=$BYTEBACK_PHASE dest=$BYTEBACK_DESTINATION client=$BYTEBACK_CLIENT dir=$BYTEBACK_CONFIG_DIR result=${{BYTEBACK_RESULT-unset}} snapshot=${{BYTEBACK_SNAPSHOT-unset}} attempts=${{BYTEBACK_ATTEMPTS-unset}} exit=${{BYTEBACK_EXIT_CODE-unset}} error=${{BYTEBACK_ERROR-unset}}" >> '{}'
echo "hello from $(basename "$0")""#,
        log.display()
    )
}

fn pre(w: &World) -> PathBuf {
    w.client_dir.join("pre-backup.d")
}

fn post(w: &World) -> PathBuf {
    w.client_dir.join("post-backup.d")
}

fn backup(w: &World, extra: &[&str]) -> Output {
    let src = w.src.to_string_lossy().into_owned();
    let mut args = vec!["backup", "--source", &src];
    args.extend_from_slice(extra);
    w.client(&args)
}

fn read_log(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Pre- and post-backup hooks run in name order with every documented
/// variable, what a pre hook writes into the sources is in the snapshot,
/// their output reaches ours prefixed, backup files and non-executables are
/// skipped silently and a likely mistake (`c-post.sh`) noted; a dry run
/// names the hooks and runs none.
#[test]
fn hooks_run_in_order_with_their_environment() {
    let Some(w) = World::new("hooks-order") else {
        return;
    };
    let client = w.enroll("hooks.example");
    let log = w.area.path.join("hooks.log");
    fs::write(w.src.join("file"), "data\n").unwrap();
    // A pre hook writes into the sources: the backup must carry it.
    let dumped = w.src.join("dumped");
    hook(
        &pre(&w),
        "20-second",
        &format!("{}\necho fresh > '{}'", logging(&log), dumped.display()),
        0o755,
    );
    hook(&pre(&w), "10-first", &logging(&log), 0o700);
    hook(&pre(&w), "x.dpkg-old", &logging(&log), 0o755);
    hook(&pre(&w), "30-not-executable", &logging(&log), 0o644);
    fs::create_dir_all(pre(&w).join("40-directory")).unwrap();
    hook(&post(&w), "b-post", &logging(&log), 0o755);
    hook(&post(&w), "a-post", &logging(&log), 0o755);
    // A runnable name a person may mean as a hook: noted, not run.
    hook(&post(&w), "c-post.sh", &logging(&log), 0o755);

    let out = backup(&w, &[]);
    assert!(out.status.success(), "{}", show(&out));
    let err = stderr(&out);
    let snaps = w.snapshots(&client);
    assert_eq!(snaps.len(), 1);
    let lines = read_log(&log);
    let names: Vec<&str> = lines.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        names,
        ["10-first", "20-second", "a-post", "b-post"],
        "{err}"
    );
    let dir = w.client_dir.display();
    let dest = w.destination();
    assert_eq!(
        lines[0],
        format!(
            "10-first phase=pre-backup dest={dest} client={client} dir={dir} result=unset snapshot=unset attempts=unset exit=unset error=unset"
        )
    );
    assert_eq!(
        lines[2],
        format!(
            "a-post phase=post-backup dest={dest} client={client} dir={dir} result=success snapshot={} attempts=1 exit=0 error=",
            snaps[0]
        )
    );
    // Output reaches ours, prefixed; skips are silent but for a likely mistake.
    assert!(
        err.contains("pre-backup.d/10-first: hello from 10-first")
            && err.contains("post-backup.d/b-post: hello from b-post"),
        "{err}"
    );
    assert!(
        err.contains("c-post.sh: hook names may hold only letters, digits"),
        "{err}"
    );
    assert!(
        !err.contains("dpkg-old") && !err.contains("30-not"),
        "{err}"
    );
    let tree = inside(&w.store().join(&client).join(&snaps[0]), &w.src);
    assert_eq!(fs::read_to_string(tree.join("dumped")).unwrap(), "fresh\n");

    // A dry run names the hooks and runs none.
    let out = backup(&w, &["--dry-run"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = support::world::stdout(&out);
    assert!(
        text.contains(&format!(
            "pre-backup hook {}",
            pre(&w).join("10-first").display()
        )) && text.contains("post-backup hook"),
        "{text}"
    );
    assert_eq!(read_log(&log).len(), 4);
}

/// A failing pre-backup hook stops the backup (exit 11) naming the hook:
/// the later pre hooks do not run, the post hooks are told of the failure,
/// nothing changes on the server and nobody even logs in; the client's
/// status says it failed.
#[test]
fn a_failing_pre_hook_stops_the_backup_before_the_server() {
    let Some(w) = World::new("hooks-pre-fail") else {
        return;
    };
    let client = w.enroll("prefail.example");
    w.server_config(NO_INTERVAL);
    fs::write(w.src.join("file"), "one\n").unwrap();
    w.backup_ok();
    let current = inside(&w.store().join(&client).join("current"), &w.src);
    let snaps_before = w.snapshots(&client);
    let current_before = manifest::read(&current, Reading::FakeSuper);
    let logins = |w: &World| w.sshd.log().matches("Accepted publickey").count();
    let logins_before = logins(&w);

    fs::write(w.src.join("file"), "two, changed\n").unwrap();
    fs::write(w.src.join("new"), "new\n").unwrap();
    let log = w.area.path.join("hooks.log");
    hook(&pre(&w), "10-ok", &logging(&log), 0o755);
    let failing = hook(&pre(&w), "20-fail", "echo 'cannot dump' >&2; exit 3", 0o755);
    hook(&pre(&w), "30-never", &logging(&log), 0o755);
    hook(&post(&w), "10-post", &logging(&log), 0o755);

    let out = backup(&w, &[]);
    assert_eq!(out.status.code(), Some(11), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "byteback: pre-backup hook {} failed: exit status 3; nothing was backed up",
            failing.display()
        )) && err.contains("pre-backup.d/20-fail: cannot dump"),
        "{err}"
    );
    // Nothing changed on the server, and nobody even logged in.
    assert_eq!(w.snapshots(&client), snaps_before);
    manifest::assert_same(
        "current after a failed pre hook",
        &current_before,
        &manifest::read(&current, Reading::FakeSuper),
    );
    assert_eq!(logins(&w), logins_before, "{}", w.sshd.log());
    let lines = read_log(&log);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("10-ok phase=pre-backup"));
    assert!(
        lines[1].starts_with("10-post phase=post-backup")
            && lines[1]
                .contains(" result=failure snapshot= attempts=0 exit=11 error=pre-backup hook "),
        "{}",
        lines[1]
    );
    // The state file says so too.
    let out = w.client(&["status"]);
    assert!(
        support::world::stdout(&out).contains("failed"),
        "{}",
        show(&out)
    );
}

/// A failing post-backup hook is a warning, shown even with `-q`: the
/// backup succeeds (exit 0) with its snapshot, and the other post hooks
/// still run, told of the success.
#[test]
fn a_failing_post_hook_is_a_warning() {
    let Some(w) = World::new("hooks-post-fail") else {
        return;
    };
    let client = w.enroll("postfail.example");
    fs::write(w.src.join("file"), "one\n").unwrap();
    let log = w.area.path.join("hooks.log");
    let failing = hook(
        &post(&w),
        "10-fail",
        "echo 'webhook down' >&2; exit 2",
        0o755,
    );
    hook(&post(&w), "20-after", &logging(&log), 0o755);
    // Quiet: a failed post hook still shows itself (and what was held back).
    let out = backup(&w, &["-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "byteback: warning: post-backup hook {} failed: exit status 2 (the backup's result stands)",
            failing.display()
        )) && err.contains("post-backup.d/10-fail: webhook down"),
        "{err}"
    );
    assert_eq!(w.snapshots(&client).len(), 1);
    let lines = read_log(&log);
    assert!(
        lines.len() == 1 && lines[0].contains(" result=success "),
        "{lines:?}"
    );
}

/// A hook past `hook_timeout` is killed with its background children, and
/// the backup ends at once (exit 11) naming it, with no snapshot.
#[test]
fn a_hook_past_its_timeout_is_killed_with_its_children() {
    let Some(w) = World::new("hooks-timeout") else {
        return;
    };
    let client = w.enroll("timeout.example");
    w.client_config("hook_timeout = \"1s\"\n");
    fs::write(w.src.join("file"), "one\n").unwrap();
    let pid_file = w.area.path.join("child.pid");
    let slow = hook(
        &pre(&w),
        "10-slow",
        &format!("sleep 60 & echo $! > '{}'\nsleep 60", pid_file.display()),
        0o755,
    );
    let started = Instant::now();
    let out = backup(&w, &[]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(11), "{}", show(&out));
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(
        stderr(&out).contains(&format!(
            "pre-backup hook {} failed: still running after 1s (hook_timeout), so it was killed",
            slow.display()
        )),
        "{}",
        show(&out)
    );
    let pid = fs::read_to_string(&pid_file).unwrap().trim().to_owned();
    let alive = fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit(") ").next().unwrap_or("").starts_with('Z'));
    assert!(!alive, "the hook's background child {pid} survived");
    assert!(w.snapshots(&client).is_empty());
}

/// The WAN settings (`bwlimit`, `compress`, `nice`, `ionice`) reach rsync
/// and `show-config`, and the backup made with them is identical to the
/// source.
#[test]
fn wan_settings_back_up_faithfully() {
    let Some(w) = World::new("hooks-wan") else {
        return;
    };
    let client = w.enroll("wan.example");
    w.client_config("bwlimit = \"20M\"\ncompress = true\nnice = 10\nionice = \"best-effort:7\"\n");
    support::tree::populate(&w.src);
    let source = manifest::read(&w.src, Reading::Plain);
    let out = backup(&w, &["--verbose"]);
    assert!(out.status.success(), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--bwlimit=20M --compress"),
        "the rsync line shows them:\n{err}"
    );
    let snaps = w.snapshots(&client);
    assert_eq!(snaps.len(), 1);
    manifest::assert_same(
        "throttled snapshot",
        &source,
        &manifest::read(
            &inside(&w.store().join(&client).join(&snaps[0]), &w.src),
            Reading::FakeSuper,
        ),
    );
    let out = w.client(&["show-config"]);
    let text = support::world::stdout(&out);
    for line in [
        "bwlimit = \"20M\"",
        "compress = true",
        "nice = 10",
        "ionice = \"best-effort:7\"",
        "hook_timeout = \"1h\"",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}

// ---- The shipped database hooks ----

fn contrib(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib/hooks")
        .join(name)
}

/// Whether `tools` exist; if not, says so loudly, and fails under CI.
fn require_tools(what: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| !Path::new(t).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{what} tests need {} (apt-get install mariadb-server mariadb-client postgresql)",
        missing.join(", ")
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("\n\n*** {msg} ***\n");
    }
    eprintln!("\n*** SKIPPED: {msg} ***\n");
    false
}

/// A private database server process in its own directory: stopped by
/// PID (SIGTERM, then SIGKILL) and its directory removed on drop.
struct DbServer {
    child: Child,
    dir: PathBuf,
}

impl Drop for DbServer {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: a plain kill(2) of our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("hooks test: cannot remove {:?}: {e}", self.dir);
        }
    }
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().expect("start");
    assert!(out.status.success(), "{cmd:?}: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `ready` says so, or panics after `secs` with `what`.
fn wait_for(what: &str, secs: u64, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start in {secs} s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const MARIADB: &str = "/usr/sbin/mariadbd";
const MARIADB_CLIENT: &str = "/usr/bin/mariadb";
const MARIADB_INSTALL: &str = "/usr/bin/mariadb-install-db";

/// A fresh mariadbd in `dir`, on a socket only, as root.
fn mariadb(dir: &Path) -> DbServer {
    fs::create_dir_all(dir).unwrap();
    let data = dir.join("data");
    run_ok(Command::new(MARIADB_INSTALL).args([
        "--no-defaults",
        &format!("--datadir={}", data.display()),
        "--user=root",
        "--auth-root-authentication-method=socket",
        "--skip-test-db",
    ]));
    let sock = dir.join("sock");
    let child = Command::new(MARIADB)
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", sock.display()))
        .arg(format!("--pid-file={}", dir.join("pid").display()))
        .arg(format!("--log-error={}", dir.join("error.log").display()))
        .args([
            "--skip-networking",
            "--user=root",
            "--innodb-flush-log-at-trx-commit=0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mariadbd");
    let server = DbServer {
        child,
        dir: dir.to_owned(),
    };
    wait_for("mariadbd", 30, || {
        Command::new(MARIADB_CLIENT)
            .args([
                "--no-defaults",
                &format!("--socket={}", sock.display()),
                "-e",
                "select 1",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    server
}

fn mariadb_sql(dir: &Path, sql: &str) -> String {
    run_ok(Command::new(MARIADB_CLIENT).args([
        "--no-defaults",
        &format!("--socket={}", dir.join("sock").display()),
        "-N",
        "-e",
        sql,
    ]))
}

/// The shipped MariaDB hook dumps a real server's databases into the
/// sources (no temporary file left), and the dump, taken from the snapshot,
/// loads into a fresh server with the same data.
#[test]
fn the_mariadb_hook_round_trips_through_a_backup() {
    if !require_tools(
        "MariaDB",
        &[
            MARIADB,
            MARIADB_CLIENT,
            MARIADB_INSTALL,
            "/usr/bin/mariadb-dump",
        ],
    ) {
        return;
    }
    let Some(w) = World::new("hooks-mariadb") else {
        return;
    };
    let client = w.enroll("mariadb.example");
    let first_dir = w.area.path.join("db1");
    let first = mariadb(&first_dir);
    mariadb_sql(
        &first_dir,
        "create database shop; create table shop.items (id int primary key, name varchar(40)) engine=InnoDB; \
         insert into shop.items values (1, 'apple'), (2, 'pear ''quoted''');",
    );
    let installed = pre(&w).join("10-mariadb");
    fs::create_dir_all(pre(&w)).unwrap();
    fs::copy(contrib("mariadb-dump"), &installed).unwrap();
    fs::set_permissions(&installed, fs::Permissions::from_mode(0o755)).unwrap();
    let dump_dir = w.src.join("var/backups/mysql");
    let src = w.src.to_string_lossy().into_owned();
    let out = w
        .client_command(&["backup", "--source", &src])
        .env("BYTEBACK_MYSQL_DIR", &dump_dir)
        .env(
            "BYTEBACK_MYSQL_OPTS",
            format!(
                "--no-defaults --socket={}",
                first_dir.join("sock").display()
            ),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    drop(first);
    let names: Vec<String> = fs::read_dir(&dump_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["all-databases.sql"], "no temporary file is left");

    // The dump as the server holds it, into a fresh server.
    let snaps = w.snapshots(&client);
    let dump = inside(&w.store().join(&client).join(&snaps[0]), &w.src)
        .join("var/backups/mysql/all-databases.sql");
    let second_dir = w.area.path.join("db2");
    let _second = mariadb(&second_dir);
    let loaded = Command::new(MARIADB_CLIENT)
        .args([
            "--no-defaults",
            &format!("--socket={}", second_dir.join("sock").display()),
        ])
        .stdin(fs::File::open(&dump).unwrap())
        .output()
        .unwrap();
    assert!(loaded.status.success(), "{}", show(&loaded));
    assert_eq!(
        mariadb_sql(&second_dir, "select id, name from shop.items order by id"),
        "1\tapple\n2\tpear 'quoted'\n"
    );
}

const PG_BIN: &str = "/usr/lib/postgresql";

/// The newest installed PostgreSQL's bin directory.
fn pg_bin() -> Option<PathBuf> {
    let mut versions: Vec<u32> = fs::read_dir(PG_BIN)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort();
    let bin = Path::new(PG_BIN)
        .join(versions.last()?.to_string())
        .join("bin");
    bin.join("postgres").exists().then_some(bin)
}

/// The postgres system user's uid and gid.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
}

const PG_PORT: &str = "5432";

/// A fresh PostgreSQL cluster in `dir`, run by the postgres user, on a
/// socket in `dir` only.
fn postgresql(bin: &Path, (uid, gid): (u32, u32), dir: &Path) -> DbServer {
    fs::create_dir_all(dir).unwrap();
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
    let data = dir.join("data");
    run_ok(
        Command::new(bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .uid(uid)
            .gid(gid)
            .current_dir(dir),
    );
    let child = Command::new(bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .arg("-k")
        .arg(dir)
        .args(["-p", PG_PORT, "-c", "listen_addresses=", "-c", "fsync=off"])
        .uid(uid)
        .gid(gid)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .expect("start postgres");
    let server = DbServer {
        child,
        dir: dir.to_owned(),
    };
    wait_for("postgres", 30, || {
        psql(bin, (uid, gid), dir, "postgres", &["-c", "select 1"])
            .status
            .success()
    });
    server
}

fn psql(bin: &Path, (uid, gid): (u32, u32), dir: &Path, db: &str, args: &[&str]) -> Output {
    Command::new(bin.join("psql"))
        .args(["-X", "-q", "-t", "-A", "-h"])
        .arg(dir)
        .args(["-p", PG_PORT, "-d", db])
        .args(args)
        .uid(uid)
        .gid(gid)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The shipped PostgreSQL hook dumps a real cluster into the sources (no
/// temporary file left), and the dump, taken from the snapshot, loads into
/// a fresh cluster with the same data.
#[test]
fn the_postgresql_hook_round_trips_through_a_backup() {
    let (bin, user) = match (pg_bin(), postgres_user()) {
        (Some(bin), Some(user)) if Path::new("/usr/bin/pg_dumpall").exists() => (bin, user),
        _ => {
            require_tools(
                "PostgreSQL",
                &[
                    "/usr/lib/postgresql/*/bin/postgres",
                    "/usr/bin/pg_dumpall",
                    "the postgres user",
                ],
            );
            return;
        }
    };
    let Some(w) = World::new("hooks-postgresql") else {
        return;
    };
    let client = w.enroll("postgresql.example");
    let first_dir = w.area.path.join("pg1");
    let first = postgresql(&bin, user, &first_dir);
    let out = psql(
        &bin,
        user,
        &first_dir,
        "postgres",
        &["-c", "create database shop"],
    );
    assert!(out.status.success(), "{}", show(&out));
    let out = psql(
        &bin,
        user,
        &first_dir,
        "shop",
        &[
            "-c",
            "create table items (id int primary key, name text); \
             insert into items values (1, 'apple'), (2, 'pear ''quoted''');",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let installed = pre(&w).join("10-postgresql");
    fs::create_dir_all(pre(&w)).unwrap();
    fs::copy(contrib("postgresql-dump"), &installed).unwrap();
    fs::set_permissions(&installed, fs::Permissions::from_mode(0o755)).unwrap();
    let dump_dir = w.src.join("var/backups/postgresql");
    let src = w.src.to_string_lossy().into_owned();
    let out = w
        .client_command(&["backup", "--source", &src])
        .env("BYTEBACK_PG_DIR", &dump_dir)
        .env("PGHOST", &first_dir)
        .env("PGPORT", PG_PORT)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    drop(first);
    let names: Vec<String> = fs::read_dir(&dump_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["all-databases.sql"], "no temporary file is left");

    // The dump as the server holds it, into a fresh cluster.
    let snaps = w.snapshots(&client);
    let dump = inside(&w.store().join(&client).join(&snaps[0]), &w.src)
        .join("var/backups/postgresql/all-databases.sql");
    let second_dir = w.area.path.join("pg2");
    let _second = postgresql(&bin, user, &second_dir);
    let copy = second_dir.join("restore.sql");
    fs::copy(&dump, &copy).unwrap();
    std::os::unix::fs::chown(&copy, Some(user.0), Some(user.1)).unwrap();
    let out = psql(
        &bin,
        user,
        &second_dir,
        "postgres",
        &["-f", &copy.to_string_lossy()],
    );
    assert!(out.status.success(), "{}", show(&out));
    let out = psql(
        &bin,
        user,
        &second_dir,
        "shop",
        &["-c", "select id, name from items order by id"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1|apple\n2|pear 'quoted'\n",
        "{}",
        show(&out)
    );
}

/// Each shipped hook, run where its tool is not on PATH: one line, exit 0,
/// nothing created.
#[test]
fn the_database_hooks_skip_cleanly_without_their_tools() {
    let empty = std::env::temp_dir().join(format!("byteback-nopath-{}", std::process::id()));
    fs::create_dir_all(&empty).unwrap();
    for (hook, dir_var, said) in [
        (
            "mariadb-dump",
            "BYTEBACK_MYSQL_DIR",
            "skipping: MariaDB/MySQL not installed\n",
        ),
        (
            "postgresql-dump",
            "BYTEBACK_PG_DIR",
            "skipping: PostgreSQL not installed\n",
        ),
    ] {
        let target = empty.join("dumps");
        let out = Command::new("/bin/sh")
            .arg(contrib(hook))
            .env_clear()
            .env("PATH", &empty)
            .env(dir_var, &target)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{hook}: {}", show(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), said, "{hook}");
        assert!(out.stderr.is_empty(), "{hook}: {}", show(&out));
        assert!(!target.exists(), "{hook} made its directory");
    }
    fs::remove_dir_all(&empty).unwrap();
}
