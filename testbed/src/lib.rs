//! byteback's end-to-end test world, shared by the integration tests in
//! `tests/` and the benchmark (`examples/bench`).
//!
//! byteback pushes backups with rsync over OpenSSH to an unprivileged user whose store is
//! on btrfs, so its end-to-end tests need real loop-mounted file systems, Unix users and an
//! sshd. These are RAII guards: `Drop` cleans up even when the test panics, and never panics
//! itself (failures are printed to stderr). Names are unique (pid + counter + clock), so
//! tests can run in parallel threads and processes. All of this needs root: start each test
//! with `if !require_root() { return; }`.
//!
//! Declare fixtures in the order `TestArea`, `LoopFs`, `TestUser`, `Sshd`. Locals drop in
//! reverse order: sshd stops, then the user is deleted, then the file system is unmounted.
//! `LoopFs` and `Sshd` keep their area alive, so the area directory is removed only after
//! the last of them is gone, whatever the order.

pub mod manifest;
pub mod relay;
pub mod rsync;
pub mod tree;
pub mod world;

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Every [`TestArea`] is created in this directory. It and every directory above it must be
/// root-owned and not group/world writable (sshd's StrictModes checks this for homes).
pub const BASE_DIR: &str = "/var/lib/byteback-tests";
const STD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const TOOLS: &str = "rsync /usr/sbin/sshd ssh ssh-keygen btrfs mkfs.btrfs mkfs.ext4 losetup \
    mount umount useradd userdel unshare truncate kill stat";
const NEED_ROOT: &str = "end-to-end tests need root (loop devices, mounts, users, sshd); \
    CI must run them as root";

/// A binary of the byteback package, built next to the running test or
/// example (cargo puts both under `target/<profile>/`).
pub fn built_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the running test's path");
    exe.ancestors()
        .skip(1)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not built next to {exe:?}: run `cargo build --bins`"))
}

/// Returns true if we run as root and every needed tool and /dev/loop-control exist.
/// Otherwise, when `CI=true` it panics and names what is missing. Outside CI it prints a
/// loud `SKIPPED:` line and returns false, and the test should return early.
pub fn require_root() -> bool {
    let mut problems = Vec::new();
    if euid() != Some(0) {
        problems.push(NEED_ROOT.to_string());
    }
    let missing: Vec<&str> = TOOLS.split(' ').filter(|t| which(t).is_none()).collect();
    if !missing.is_empty() {
        problems.push(format!("missing programs: {}", missing.join(", ")));
    }
    if !Path::new("/dev/loop-control").exists() {
        problems.push("missing /dev/loop-control".to_string());
    }
    if problems.is_empty() {
        return true;
    }
    let msg = problems.join("; ");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("\n\n*** END-TO-END TESTS CANNOT RUN IN CI: {msg} ***\n");
    }
    eprintln!("\n*** SKIPPED: {msg} ***\n");
    false
}

/// Runs `argv` with stdin from /dev/null and returns its output, whatever the exit status.
/// Panics only when it cannot be started. `argv[0]` is looked up in `PATH` and in the usual
/// sbin/bin directories.
pub fn run(argv: &[&str]) -> Output {
    let out = command(argv).output();
    out.unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"))
}

/// Runs `argv` and returns its stdout; panics with argv, status, stdout and stderr if it fails.
pub fn run_ok(argv: &[&str]) -> String {
    let out = run(argv);
    assert!(out.status.success(), "{}", describe(argv, &out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Creates an ed25519 key pair without passphrase at `path` and `path.pub` (owned by root,
/// private key mode 0600) and returns the public key as `ssh-ed25519 AAAA...`.
pub fn ssh_keygen(path: &Path) -> String {
    let p = path.to_string_lossy();
    run_ok(&words("ssh-keygen -q -t ed25519 -C x -f", &[&p, "-N", ""]));
    let text = fs::read_to_string(format!("{p}.pub")).expect("read public key");
    let fields: Vec<&str> = text.split_whitespace().collect();
    fields[..2].join(" ")
}

/// A fresh root-owned directory `BASE_DIR/<label>-<unique>` with mode 0755. It is removed
/// recursively once this guard and every fixture created in it have dropped.
pub struct TestArea {
    /// Absolute path of the area directory.
    pub path: PathBuf,
    guard: Arc<AreaGuard>,
}

struct AreaGuard(PathBuf);

impl TestArea {
    /// Creates the area, making `BASE_DIR` root-owned with mode 0755. Panics if a directory
    /// above `BASE_DIR` would fail sshd's StrictModes check.
    pub fn new(label: &str) -> TestArea {
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        assert!(label.chars().all(ok), "bad area label {label:?}");
        let base = Path::new(BASE_DIR);
        fs::create_dir_all(base).expect("create BASE_DIR");
        chown(base, Some(0), Some(0)).expect("chown BASE_DIR");
        set_mode(base, 0o755);
        for dir in base.ancestors() {
            let m = fs::metadata(dir).expect("stat parent of BASE_DIR");
            let safe = m.uid() == 0 && m.mode() & 0o022 == 0;
            assert!(safe, "{dir:?} is not root-owned or is group/world writable");
        }
        let path = base.join(format!("{label}-{}", unique()));
        fs::create_dir(&path).expect("create test area");
        set_mode(&path, 0o755);
        let guard = Arc::new(AreaGuard(path.clone()));
        TestArea { path, guard }
    }
}

impl Drop for AreaGuard {
    fn drop(&mut self) {
        let mounts = mounts_under(&self.0);
        if !mounts.is_empty() {
            eprintln!("support: NOT removing {:?}: {mounts:?} mounted", self.0);
        } else {
            // An ssh master that is still exiting may drop its socket into
            // a directory being removed: try again a few times.
            let mut result = fs::remove_dir_all(&self.0);
            for _ in 0..20 {
                if result.is_ok() || !self.0.exists() {
                    return;
                }
                sleep(Duration::from_millis(100));
                result = fs::remove_dir_all(&self.0);
            }
            if let Err(e) = result {
                eprintln!("support: cannot remove {:?}: {e}", self.0);
            }
        }
    }
}

/// A file-system type that [`LoopFs`] can create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsKind {
    /// btrfs. mkfs.btrfs 6.2 rejects images smaller than 114,294,784 bytes (~109 MiB), so
    /// use at least 128 MiB; 256 to 512 MiB sparse images are typical.
    Btrfs,
    /// ext4, for testing a store that is not btrfs.
    Ext4,
}

/// A sparse image in a [`TestArea`], formatted, attached to a loop device and mounted at
/// `<area>/mnt-<unique>`. Drop unmounts it (retrying, then `umount -l` if still busy),
/// detaches the loop device and removes the image and the mount point.
pub struct LoopFs {
    /// Where the file system is mounted.
    pub mount_point: PathBuf,
    /// The loop device, such as `/dev/loop3`.
    pub device: PathBuf,
    /// The sparse image file behind the loop device.
    pub image: PathBuf,
    /// The file-system type.
    pub kind: FsKind,
    mounted: bool,
    _area: Arc<AreaGuard>,
}

impl LoopFs {
    /// Creates a `size_mib` MiB file system and mounts it with `mount_options` (such as
    /// `&["user_subvol_rm_allowed"]` for btrfs). Panics if any step fails.
    pub fn new(area: &TestArea, kind: FsKind, size_mib: u64, mount_options: &[&str]) -> LoopFs {
        let u = unique();
        let mut lfs = LoopFs {
            mount_point: area.path.join(format!("mnt-{u}")),
            device: PathBuf::new(),
            image: area.path.join(format!("fs-{u}.img")),
            kind,
            mounted: false,
            _area: Arc::clone(&area.guard),
        };
        let image = lfs.image.to_string_lossy().into_owned();
        run_ok(&["truncate", "-s", &format!("{size_mib}M"), &image]);
        match kind {
            FsKind::Btrfs => run_ok(&["mkfs.btrfs", "-q", "-f", &image]),
            FsKind::Ext4 => run_ok(&["mkfs.ext4", "-q", "-F", &image]),
        };
        // Concurrent `losetup --find` calls can pick the same free device; the loser fails
        // with "Device or resource busy" and a new --find fixes it.
        let argv = ["losetup", "--find", "--show", &image];
        for attempt in 1..=10 {
            let out = run(&argv);
            if out.status.success() {
                let dev = String::from_utf8_lossy(&out.stdout);
                lfs.device = PathBuf::from(dev.trim());
                break;
            }
            assert!(attempt < 10, "{}", describe(&argv, &out));
            sleep(Duration::from_millis(30 * attempt));
        }
        fs::create_dir(&lfs.mount_point).expect("create mount point");
        set_mode(&lfs.mount_point, 0o755);
        let dev = lfs.device.to_string_lossy().into_owned();
        let mp = lfs.mount_point.to_string_lossy().into_owned();
        let opts = match mount_options {
            [] => "defaults".to_string(),
            _ => mount_options.join(","),
        };
        run_ok(&["mount", "-o", &opts, &dev, &mp]);
        lfs.mounted = true;
        lfs
    }

    /// Bytes available to unprivileged users: statvfs `f_bavail * f_frsize`.
    pub fn free_bytes(&self) -> u64 {
        let mp = self.mount_point.to_string_lossy();
        let out = run_ok(&["stat", "-f", "-c", "%a %S", &mp]);
        let n: Vec<u64> = out.split_whitespace().flat_map(str::parse).collect();
        n[0] * n[1]
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let mp = self.mount_point.to_string_lossy().into_owned();
        let umount = || try_run(&["umount", &mp]);
        let lazy = self.mounted && retry(10, 100, umount).is_err();
        if lazy {
            eprintln!("support: {mp} busy; unmounting lazily, loop device freed when unused");
            if let Err(e) = try_run(&["umount", "-l", &mp]) {
                eprintln!("support: {e}");
            }
        }
        let dev = self.device.to_string_lossy().into_owned();
        let detached = match dev.is_empty() {
            true => Ok(String::new()),
            false => retry(5, 100, || try_run(&["losetup", "-d", &dev])),
        };
        if let Err(e) = detached {
            eprintln!("support: cannot detach {dev}: {e}");
        }
        // While another process (a parallel `losetup --find`, a btrfs device scan) has the
        // device open, `losetup -d` only schedules the detach. Wait until it is done, unless
        // the lazily unmounted file system still holds it.
        let name = dev.trim_start_matches("/dev/");
        let backing = format!("/sys/block/{name}/loop/backing_file");
        let image = self.image.to_string_lossy();
        let deadline = Instant::now() + Duration::from_secs(if lazy { 0 } else { 5 });
        while fs::read_to_string(&backing).is_ok_and(|b| b.starts_with(&*image)) {
            if Instant::now() > deadline {
                eprintln!("support: {dev} still attached to {image}");
                break;
            }
            sleep(Duration::from_millis(20));
        }
        let removed = [
            fs::remove_file(&self.image),
            fs::remove_dir(&self.mount_point),
        ];
        for e in removed.into_iter().filter_map(Result::err) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("support: cleaning up {mp}: {e}");
            }
        }
    }
}

/// A Unix user `<prefix><unique>` (at most 20 characters) with its own group, shell
/// /bin/sh and password field `*`: no password, but not locked. sshd with `UsePAM no`
/// refuses even key logins to a locked account (`!`, useradd's default). Drop kills the
/// user's processes, then runs `userdel`; the home directory is left alone.
pub struct TestUser {
    /// The login name.
    pub name: String,
    /// The user id.
    pub uid: u32,
    /// The id of the user's own primary group.
    pub gid: u32,
    /// The home directory, which existed before and is now owned by the user.
    pub home: PathBuf,
}

impl TestUser {
    /// Creates the user with the existing directory `home` (typically a [`LoopFs`] mount
    /// point) as home, chowned to the user with mode 0755. `prefix` is 1 to 8 lowercase
    /// letters or digits, starting with a letter.
    pub fn new(prefix: &str, home: &Path) -> TestUser {
        let first = prefix
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase());
        let rest = prefix.chars().all(|c| matches!(c, 'a'..='z' | '0'..='9'));
        assert!(first && rest && prefix.len() <= 8, "bad prefix {prefix:?}");
        let home_s = home.to_string_lossy();
        let useradd = "useradd --no-create-home --shell /bin/sh --user-group --password *";
        let mut attempt = 0;
        let name = loop {
            attempt += 1;
            let name = format!("{prefix}{}", unique());
            let argv = words(useradd, &["--home-dir", &home_s, &name]);
            let out = run(&argv);
            if out.status.success() {
                break name;
            }
            // useradd does not wait for the lock on /etc/passwd held by a parallel useradd.
            let err = String::from_utf8_lossy(&out.stderr);
            let transient = err.contains("lock") || err.contains("already exists");
            assert!(transient && attempt < 100, "{}", describe(&argv, &out));
            sleep(Duration::from_millis(10 * attempt.min(10)));
        };
        let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
        let line = passwd.lines().find(|l| l.starts_with(&format!("{name}:")));
        let fields: Vec<&str> = line.expect("user in /etc/passwd").split(':').collect();
        let uid = fields[2].parse().expect("uid");
        let gid = fields[3].parse().expect("gid");
        let home = home.to_path_buf();
        let user = TestUser {
            name,
            uid,
            gid,
            home,
        };
        chown(&user.home, Some(uid), Some(gid)).expect("chown home");
        set_mode(&user.home, 0o755);
        user
    }

    /// Runs `argv` as this user: its uid and gid, no supplementary groups (std drops them
    /// when a uid is set), only HOME, USER, LOGNAME and PATH in the environment, the home
    /// directory as cwd and stdin from /dev/null. Panics only if it cannot be started.
    pub fn run_as(&self, argv: &[&str]) -> Output {
        let mut cmd = command(argv);
        cmd.uid(self.uid).gid(self.gid).env_clear();
        cmd.current_dir(&self.home).env("HOME", &self.home);
        cmd.env("USER", &self.name).env("LOGNAME", &self.name);
        let out = cmd.env("PATH", STD_PATH).output();
        out.unwrap_or_else(|e| panic!("cannot run {argv:?} as {}: {e}", self.name))
    }

    /// Appends `line` (such as `restrict,command="..." ssh-ed25519 AAAA...`) to
    /// `~/.ssh/authorized_keys` with what StrictModes requires: `.ssh` 0700, the file 0600,
    /// both owned by the user.
    pub fn authorize_key(&self, line: &str) {
        let dir = self.home.join(".ssh");
        let file = dir.join("authorized_keys");
        fs::create_dir_all(&dir).expect("create ~/.ssh");
        let mut text = fs::read_to_string(&file).unwrap_or_default();
        text += &format!("{}\n", line.trim_end());
        fs::write(&file, text).expect("write authorized_keys");
        for (p, mode) in [(&dir, 0o700), (&file, 0o600)] {
            chown(p, Some(self.uid), Some(self.gid)).expect("chown ~/.ssh");
            set_mode(p, mode);
        }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // This machine's PID 1 reaps orphans only after ~2 s. Wait (bounded) for zombies
        // too, so that no process keeps this uid when a later test's user reuses it.
        let mut left = procs_of_uid(self.uid);
        for _ in 0..100 {
            if left.0.is_empty() && left.1.is_empty() {
                break;
            }
            if !left.0.is_empty() {
                let _ = kill_pids(&left.0); // some may have exited meanwhile
            }
            sleep(Duration::from_millis(50));
            left = procs_of_uid(self.uid);
        }
        let name = &self.name;
        if !left.0.is_empty() || !left.1.is_empty() {
            eprintln!("support: processes of {name} left (live, zombie): {left:?}");
        }
        if let Err(e) = retry(50, 100, || try_run(&["userdel", name])) {
            eprintln!("support: cannot delete user {name}: {e}");
        }
    }
}

/// A private sshd on 127.0.0.1; its host key, `sshd_config`, pid file and `sshd.log` are
/// in `<area>/sshd-<unique>/`. sshd runs as PID 1 of its own PID namespace (`unshare --pid
/// --fork`), so stopping it kills and reaps every session and everything they started.
pub struct Sshd {
    /// The TCP port on 127.0.0.1; [`Sshd::start_again`] keeps it.
    pub port: u16,
    /// The host public key, `ssh-ed25519 AAAA...`.
    pub host_public_key: String,
    /// The host private key file.
    pub host_key_path: PathBuf,
    /// The generated sshd_config.
    pub config_path: PathBuf,
    /// sshd's stderr from every run, appended.
    pub log_path: PathBuf,
    allow_users: String,
    /// Extra sshd_config lines (see [`Sshd::restart_with`]).
    extra_config: String,
    child: Option<Child>,
    _area: Arc<AreaGuard>,
}

impl Sshd {
    /// Writes the config and starts sshd on a free port, letting only `allow_users` in, by
    /// public key. Waits until it accepts connections; panics with its log if it fails.
    pub fn start(area: &TestArea, allow_users: &[&str]) -> Sshd {
        assert!(!allow_users.is_empty(), "Sshd::start needs a user");
        let dir = area.path.join(format!("sshd-{}", unique()));
        fs::create_dir(&dir).expect("create sshd dir");
        set_mode(&dir, 0o755);
        fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        set_mode(Path::new("/run/sshd"), 0o755); // privilege separation dir
        let host_key_path = dir.join("ssh_host_ed25519_key");
        let mut sshd = Sshd {
            port: 0,
            host_public_key: ssh_keygen(&host_key_path),
            host_key_path,
            config_path: dir.join("sshd_config"),
            log_path: dir.join("sshd.log"),
            allow_users: allow_users.join(" "),
            extra_config: String::new(),
            child: None,
            _area: Arc::clone(&area.guard),
        };
        sshd.bring_up(5, true);
        sshd
    }

    /// Kills sshd with all its sessions and waits for them to exit. Does nothing if stopped.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // `child` is unshare, whose only child is sshd, PID 1 of the namespace. When sshd
        // dies the kernel kills and reaps the whole namespace, then unshare exits.
        let ns_init = children_of(child.id());
        let killed = match ns_init.is_empty() {
            true => child.kill().map_err(|e| e.to_string()),
            false => kill_pids(&ns_init).map(drop),
        };
        if let Err(e) = killed {
            eprintln!("support: stopping sshd: {e}");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            sleep(Duration::from_millis(10));
        }
        if !matches!(child.try_wait(), Ok(Some(_))) {
            eprintln!("support: sshd still running after 10 s; killing unshare");
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts sshd again on the same port with the same config and host key (stopping it
    /// first if it runs). Retries for ~5 s while the port is still in use.
    pub fn start_again(&mut self) {
        self.stop();
        self.bring_up(20, false);
    }

    /// Restarts sshd on the same port with `extra` appended to its config
    /// (e.g. `SetEnv NAME=value\n` for every session), or none.
    pub fn restart_with(&mut self, extra: &str) {
        self.extra_config = extra.to_owned();
        self.write_config();
        self.start_again();
    }

    /// The whole sshd log, from every run so far.
    pub fn log(&self) -> String {
        let bytes = fs::read(&self.log_path).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The known_hosts line as ssh writes it for a port other than 22:
    /// `[127.0.0.1]:PORT ssh-ed25519 AAAA...`.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_public_key)
    }

    fn write_config(&self) {
        let (port, users) = (self.port, &self.allow_users);
        let key = self.host_key_path.display();
        let pid = self.config_path.with_file_name("sshd.pid");
        let pid = pid.display();
        let mut cfg = format!("Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\n");
        cfg += &format!("PidFile {pid}\nAllowUsers {users}\n");
        cfg += "AuthorizedKeysFile .ssh/authorized_keys\nPasswordAuthentication no\n\
            KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\n\
            HostbasedAuthentication no\nStrictModes yes\nPermitRootLogin no\n\
            LogLevel VERBOSE\nMaxStartups 100\nUseDNS no\nPrintMotd no\nPrintLastLog no\n";
        cfg += &self.extra_config;
        fs::write(&self.config_path, &cfg).expect("write sshd_config");
        let c = self.config_path.to_string_lossy();
        run_ok(&["/usr/sbin/sshd", "-t", "-f", &c]);
        // OpenSSH 9.8+ penalises clients that fail often, which would break retry tests.
        // Older sshd (Debian 12 has 9.2) rejects the keyword: add it only if accepted.
        static PENALTIES: OnceLock<bool> = OnceLock::new();
        let probe = words("/usr/sbin/sshd -t -o PerSourcePenalties=no -f", &[&c]);
        if *PENALTIES.get_or_init(|| run(&probe).status.success()) {
            cfg += "PerSourcePenalties no\n";
            fs::write(&self.config_path, &cfg).expect("write sshd_config");
        }
    }

    /// Launches sshd, on a new free port each try if `new_port`, until it binds its port.
    fn bring_up(&mut self, tries: u32, new_port: bool) {
        for _ in 0..tries {
            if new_port {
                let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0));
                let addr = probe.and_then(|l| l.local_addr());
                self.port = addr.expect("free port").port();
                self.write_config();
            }
            if self.launch() {
                return;
            }
            sleep(Duration::from_millis(250));
        }
        let port = self.port;
        panic!("sshd could not bind port {port}; log:\n{}", self.log());
    }

    fn running(&mut self) -> bool {
        let child = self.child.as_mut();
        child.is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Returns true once sshd is ready, and false if the port was already in use.
    fn launch(&mut self) -> bool {
        let offset = fs::metadata(&self.log_path).map_or(0, |m| m.len()) as usize;
        let log = File::options()
            .append(true)
            .create(true)
            .open(&self.log_path);
        let cfg = self.config_path.to_string_lossy().into_owned();
        let unshare = "unshare --pid --fork --kill-child -- /usr/sbin/sshd -D -e -f";
        let mut cmd = command(&words(unshare, &[&cfg]));
        cmd.stdout(Stdio::null())
            .stderr(log.expect("open sshd.log"));
        let child = cmd.spawn().expect("start unshare + sshd");
        self.child = Some(child);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let listening = format!("Server listening on 127.0.0.1 port {}.", self.port);
        let deadline = Instant::now() + Duration::from_secs(10);
        let log_path = self.log_path.clone();
        let new_log = || {
            let all = fs::read(&log_path).unwrap_or_default();
            let new = all.get(offset..).unwrap_or_default();
            String::from_utf8_lossy(new).into_owned()
        };
        let connect = || TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        loop {
            if !self.running() {
                self.child = None;
                if new_log().contains("Address already in use") {
                    return false;
                }
                panic!("sshd exited while starting; log:\n{}", new_log());
            }
            if new_log().contains(&listening) && connect().is_ok() && self.running() {
                return true;
            }
            if Instant::now() > deadline {
                self.stop();
                panic!("sshd not ready in 10 s; log:\n{}", new_log());
            }
            sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `fixed` split at spaces, followed by `rest`.
fn words<'a>(fixed: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    fixed.split(' ').chain(rest.iter().copied()).collect()
}

fn command(argv: &[&str]) -> Command {
    let program = which(argv[0]).unwrap_or_else(|| PathBuf::from(argv[0]));
    let mut cmd = Command::new(program);
    cmd.args(&argv[1..]).stdin(Stdio::null());
    cmd
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path.split(':').chain(STD_PATH.split(':'));
    let mut found = dirs.map(|d| Path::new(d).join(name)); // join keeps an absolute name
    found.find(|p| p.is_absolute() && p.is_file())
}

fn describe(argv: &[&str], out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let status = out.status;
    format!("{argv:?} failed: {status}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}")
}

/// Like [`run_ok`], but returns errors instead of panicking (for use in Drop).
fn try_run(argv: &[&str]) -> Result<String, String> {
    match command(argv).output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => Err(describe(argv, &o)),
        Err(e) => Err(format!("cannot run {argv:?}: {e}")),
    }
}

fn retry(tries: u32, ms: u64, f: impl Fn() -> Result<String, String>) -> Result<String, String> {
    let mut result = f();
    for _ in 1..tries {
        if result.is_ok() {
            break;
        }
        sleep(Duration::from_millis(ms));
        result = f();
    }
    result
}

fn set_mode(path: &Path, mode: u32) {
    let r = fs::set_permissions(path, fs::Permissions::from_mode(mode));
    r.unwrap_or_else(|e| panic!("chmod {mode:o} {path:?}: {e}"));
}

/// ssh options that log in to 127.0.0.1's sshd on `port` with the key at
/// `key` and nothing else, trusting any host key (for keys a test plays a
/// hostile holder with).
pub fn ssh_options_for_key(key: &Path, port: u16) -> Vec<String> {
    let key = key.to_string_lossy();
    [
        "-F",
        "none",
        "-T",
        "-i",
        &key,
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-p",
        &port.to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The snapshot name (UTC, whole seconds) of the time `days` days ago, for
/// history made by hand with `byteback-server snapshot --at`.
pub fn days_ago(days: i64) -> String {
    let t = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * days);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Writes `bytes` of incompressible data to `path`, the same for the same
/// `seed` (xorshift: no compression or deduplication shrinks it).
pub fn random_file(path: &Path, bytes: u64, seed: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(fs::File::create(path).unwrap());
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut block = vec![0u8; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

/// A name part unique to this process and call: pid, a counter and microseconds, in hex.
pub fn unique() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xfff;
    let now = SystemTime::now().duration_since(UNIX_EPOCH);
    let t = now.map_or(0, |d| d.subsec_micros()) & 0xfff;
    format!("{:06x}{n:03x}{t:03x}", std::process::id())
}

fn euid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let uids = status_field(&status, "Uid:");
    uids.split_whitespace().nth(1)?.parse().ok()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let points = info.lines().filter_map(|l| l.split(' ').nth(4));
    let inside = points.filter(|m| Path::new(m).starts_with(dir));
    inside.map(String::from).collect()
}

fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    let value = status.lines().find_map(|l| l.strip_prefix(key));
    value.unwrap_or("").trim()
}

fn children_of(pid: u32) -> Vec<u32> {
    let kids = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"));
    let kids = kids.unwrap_or_default();
    kids.split_whitespace().flat_map(str::parse).collect()
}

/// Processes having `uid` as real, effective, saved or fs uid: (live ones, zombies).
fn procs_of_uid(uid: u32) -> (Vec<u32>, Vec<u32>) {
    let uid = uid.to_string();
    let (mut live, mut zombies) = (Vec::new(), Vec::new());
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_str().and_then(|p| p.parse().ok());
        let status = fs::read_to_string(entry.path().join("status"));
        let (Some(pid), Ok(s)) = (pid, status) else {
            continue;
        };
        if status_field(&s, "Uid:")
            .split(['\t', ' '])
            .any(|u| u == uid)
        {
            let zombie = status_field(&s, "State:").starts_with('Z');
            if zombie { &mut zombies } else { &mut live }.push(pid);
        }
    }
    (live, zombies)
}

/// Live processes of `uid` whose command name (`comm`) is `name`.
pub fn processes_of(uid: u32, name: &str) -> Vec<u32> {
    procs_of_uid(uid)
        .0
        .into_iter()
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .collect()
}

fn kill_pids(pids: &[u32]) -> Result<String, String> {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let pids: Vec<&str> = pids.iter().map(String::as_str).collect();
    try_run(&words("kill -s KILL", &pids))
}

/// The pids of the direct children of `parent` whose program is `program`.
pub fn children_named(parent: u32, program: &str) -> Vec<u32> {
    let children =
        fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|pid: &u32| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == program)
        })
        .collect()
}

/// The pid of a child of `parent` running `program`, if any.
pub fn child_named(parent: u32, program: &str) -> Option<u32> {
    children_named(parent, program).into_iter().next()
}

/// The bytes of the regular files below `path` (what a transfer has written
/// so far); entries vanishing meanwhile are skipped.
pub fn dir_bytes(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = fs::read_dir(path) {
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            };
        }
    }
    total
}

/// Waits until files written just now are older than the change index's
/// racy window (`client::index::RACY_NS`, 100 ms): the index sends again
/// whatever changed that close to its walk, which starts as soon as the
/// backup does, so a test that counts what the *next* backup sends lets
/// its freshly written tree settle first.
pub fn let_changes_settle() {
    std::thread::sleep(std::time::Duration::from_millis(250));
}
