//! A byteback installation for end-to-end tests: a server user with a btrfs
//! store behind a real sshd on 127.0.0.1, and a client configuration
//! directory, wired together by the product's own commands.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{FsKind, LoopFs, Sshd, TestArea, TestUser, require_root};

/// Everything one scenario needs. Fields drop top to bottom: sshd first, the
/// area last.
///
/// `BYTEBACK_TEST_HARDENED=1` runs every btrfs scenario that enrols a client in
/// hardened mode ([`World::harden`] right after `new-client`), to see which
/// still hold there (those that name snapshots `--at` a time, or prune by
/// force, are refused by design).
pub struct World {
    /// Root's files [`World::harden`] wrote outside the area.
    pub hardened: HardenedFiles,
    pub sshd: Sshd,
    pub user: TestUser,
    pub fs: LoopFs,
    pub area: TestArea,
    /// The server binary, copied where the server user can run it.
    pub server_bin: PathBuf,
    /// The client binary (the built one; a test may point it elsewhere,
    /// e.g. at an installed package's).
    pub client_bin: PathBuf,
    /// The client's --config-dir.
    pub client_dir: PathBuf,
    /// A directory for the test's source trees.
    pub src: PathBuf,
}

/// Waits out ETXTBSY: while another test thread forks, its child briefly
/// holds our just-written copy open for writing, and exec would fail.
pub fn wait_until_executable(bin: &Path) {
    for _ in 0..200 {
        match Command::new(bin).arg("--version").output() {
            Err(e) if e.raw_os_error() == Some(26) => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            _ => return,
        }
    }
}

/// The snapshot directories (UTC names) in a client's directory, oldest
/// first; hidden names (a deletion in progress) are not snapshots.
pub fn snapshot_names(client_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(client_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with('Z') && !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// Prints a command's output for a failing assertion.
pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// How many paths an index-mode backup sent (from its summary line);
/// `None` for a full pass. Panics when `out` has no summary.
pub fn incremental_paths(out: &str) -> Option<usize> {
    let line = out
        .lines()
        .find(|l| l.starts_with("Backup complete"))
        .unwrap_or_else(|| panic!("no summary in {out}"));
    if line.ends_with(", full pass)") {
        return None;
    }
    let n = line.split("incremental: ").nth(1)?.split(' ').next()?;
    Some(n.parse().unwrap())
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl World {
    /// A server with a btrfs store (`user_subvol_rm_allowed`) and an sshd,
    /// or `None` when end-to-end tests cannot run here (said loudly).
    pub fn new(label: &str) -> Option<World> {
        Self::with_fs(label, FsKind::Btrfs, &["user_subvol_rm_allowed"])
    }

    /// A world whose store is on `kind`: btrfs (mounted with
    /// `user_subvol_rm_allowed`) or ext4 (the plain backend).
    pub fn on(label: &str, kind: FsKind) -> Option<World> {
        match kind {
            FsKind::Btrfs => Self::with_fs(label, kind, &["user_subvol_rm_allowed"]),
            FsKind::Ext4 => Self::with_fs(label, kind, &[]),
        }
    }

    /// Like [`World::new`] with another store filesystem.
    pub fn with_fs(label: &str, kind: FsKind, options: &[&str]) -> Option<World> {
        Self::sized(label, kind, options, 512)
    }

    /// Like [`World::with_fs`] with a store filesystem of `mib` MiB (a
    /// sparse image: the benchmark's stores hold far more than a test's).
    pub fn sized(label: &str, kind: FsKind, options: &[&str], mib: u64) -> Option<World> {
        if !require_root() {
            return None;
        }
        let area = TestArea::new(label);
        let fs = LoopFs::new(&area, kind, mib, options);
        let user = TestUser::new("bbt", &fs.mount_point);
        let sshd = Sshd::start(&area, &[&user.name]);
        let bin_dir = area.path.join("bin");
        fs::create_dir(&bin_dir).unwrap();
        fs::set_permissions(&bin_dir, fs::Permissions::from_mode(0o755)).unwrap();
        let server_bin = bin_dir.join("byteback-server");
        // BYTEBACK_TEST_SERVER_BIN runs the scenarios against another build
        // of the server, e.g. to show that a test fails before its fix.
        let built = std::env::var_os("BYTEBACK_TEST_SERVER_BIN")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| super::built_binary("byteback-server"));
        fs::copy(&built, &server_bin).unwrap();
        fs::set_permissions(&server_bin, fs::Permissions::from_mode(0o755)).unwrap();
        wait_until_executable(&server_bin);
        let src = area.path.join("src");
        fs::create_dir(&src).unwrap();
        let client_dir = area.path.join("client");
        Some(World {
            hardened: HardenedFiles::default(),
            sshd,
            user,
            fs,
            area,
            server_bin,
            client_bin: super::built_binary("byteback"),
            client_dir,
            src,
        })
    }

    /// The store: the server user's home.
    pub fn store(&self) -> &Path {
        &self.user.home
    }

    /// Runs byteback-server as the server user.
    pub fn server(&self, args: &[&str]) -> Output {
        let bin = self.server_bin.to_string_lossy().into_owned();
        let mut argv = vec![bin.as_str()];
        argv.extend_from_slice(args);
        self.user.run_as(&argv)
    }

    /// Runs the client as root with this world's config dir and a clean environment.
    pub fn client(&self, args: &[&str]) -> Output {
        self.client_command(args).output().expect("run byteback")
    }

    /// The client command, for tests that spawn it.
    pub fn client_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.client_bin);
        cmd.args(args)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("BYTEBACK_CONFIG_DIR", &self.client_dir)
            .stdin(std::process::Stdio::null());
        cmd
    }

    /// The client's destination string.
    pub fn destination(&self) -> String {
        format!("{}@127.0.0.1:{}", self.user.name, self.sshd.port)
    }

    /// The whole walkthrough: server setup, client setup, new-client, test.
    /// Returns the client's name.
    pub fn enroll(&self, name: &str) -> String {
        let out = self.server(&["setup"]);
        assert!(out.status.success(), "server setup: {}", show(&out));
        let out = self.client(&["setup", &self.destination(), "--name", name]);
        assert!(out.status.success(), "client setup: {}", show(&out));
        let printed = stdout(&out);
        let key_line = printed
            .lines()
            .find_map(|l| l.strip_prefix("Your backup key is "))
            .expect("setup prints the key")
            .to_owned();
        let new_client = printed
            .lines()
            .find_map(|l| l.trim().strip_prefix("byteback-server new-client "))
            .expect("setup prints the new-client line")
            .to_owned();
        assert_eq!(new_client, key_line);
        // Unquoted words, exactly as an administrator would paste them.
        let mut args = vec!["new-client"];
        args.extend(key_line.split(' '));
        let out = self.server(&args);
        assert!(out.status.success(), "new-client: {}", show(&out));
        assert!(
            stdout(&out).contains(&format!("Client setup for {name} done!")),
            "{}",
            show(&out)
        );
        if self.fs.kind == FsKind::Btrfs
            && std::env::var_os("BYTEBACK_TEST_HARDENED").is_some_and(|v| v == "1")
        {
            let out = self.harden();
            assert!(out.status.success(), "harden: {}", show(&out));
        }
        let out = self.client(&["test", "--accept-new-host-key"]);
        assert!(out.status.success(), "test: {}", show(&out));
        assert!(
            stdout(&out).contains("Successfully connected and found backup space, ready to go."),
            "{}",
            show(&out)
        );
        name.to_owned()
    }

    /// Replaces the server's settings with `toml`, keeping the backend
    /// that setup chose. In hardened mode root's policy follows (the file
    /// is written again from the new settings).
    pub fn server_config(&self, toml: &str) {
        let path = self.store().join(".byteback/server.toml");
        let old = fs::read_to_string(&path).unwrap();
        let backend = old.lines().find(|l| l.starts_with("backend")).unwrap_or("");
        fs::write(&path, format!("{backend}\n{toml}")).unwrap();
        let policy = self.hardened_config();
        if policy.exists() {
            fs::remove_file(&policy).unwrap();
            let out = self.harden();
            assert!(out.status.success(), "harden: {}", show(&out));
        }
    }

    /// The privileged helper, installed next to the server binary (root's,
    /// as hardened mode requires).
    pub fn helper(&self) -> PathBuf {
        let helper = self.server_bin.with_file_name("byteback-privileged");
        if !helper.exists() {
            fs::copy(super::built_binary("byteback-privileged"), &helper).unwrap();
            fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
            wait_until_executable(&helper);
        }
        helper
    }

    /// Root's hardened-mode file of this world's backup user.
    pub fn hardened_config(&self) -> PathBuf {
        Path::new(HARDENED_DIR).join(format!("{}.toml", self.user.name))
    }

    /// Turns on hardened mode: `setup --user NAME --hardened` as root, with
    /// the helper next to the server binary. Its output; what it writes
    /// outside the area goes when the world does.
    pub fn harden(&self) -> Output {
        let helper = self.helper();
        self.hardened.add(self.hardened_config());
        self.hardened.add(PathBuf::from(format!(
            "/etc/sudoers.d/byteback-{}",
            self.user.name
        )));
        Command::new(&self.server_bin)
            .args(["setup", "--user", &self.user.name, "--store"])
            .arg(self.store())
            .arg("--hardened")
            .arg("--helper")
            .arg(helper)
            .env("BYTEBACK_LOG_SOCKET", "/nonexistent")
            .output()
            .unwrap()
    }

    /// Runs `sudo -n HELPER ARGS` as the backup user.
    pub fn helper_as_user(&self, args: &[&str]) -> Output {
        let helper = self.helper().to_string_lossy().into_owned();
        let mut argv = vec!["sudo", "-n", "--", &helper];
        argv.extend_from_slice(args);
        self.user.run_as(&argv)
    }

    /// Appends settings to the client's config file.
    pub fn client_config(&self, toml: &str) {
        let path = self.client_dir.join("config.toml");
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str(toml);
        fs::write(&path, text).unwrap();
    }

    /// The client's snapshot directories, oldest first.
    pub fn snapshots(&self, client: &str) -> Vec<String> {
        snapshot_names(&self.store().join(client))
    }

    /// Runs a backup of `src` and asserts it succeeded; returns stdout.
    pub fn backup_ok(&self) -> String {
        let src = self.src.to_string_lossy().into_owned();
        let out = self.client(&["backup", "--source", &src]);
        assert!(out.status.success(), "backup: {}", show(&out));
        stdout(&out)
    }
}

/// Where root keeps hardened mode's files (as `byteback-server` does).
pub const HARDENED_DIR: &str = "/etc/byteback-server/hardened.d";

/// Files outside the test area that a test wrote as root, removed on drop.
#[derive(Default)]
pub struct HardenedFiles(std::sync::Mutex<Vec<PathBuf>>);

impl HardenedFiles {
    /// Removes `path` when this drops.
    pub fn add(&self, path: PathBuf) {
        let mut files = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !files.contains(&path) {
            files.push(path);
        }
    }
}

impl Drop for HardenedFiles {
    fn drop(&mut self) {
        let files = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for f in files.iter() {
            if let Err(e) = fs::remove_file(f) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    eprintln!("support: cannot remove {f:?}: {e}");
                }
            }
        }
    }
}

impl World {
    /// ssh as the client, with its key and known_hosts, running `command`
    /// (or none) — what a hostile client could type by hand.
    pub fn raw_ssh(&self, command: Option<&str>) -> Output {
        let mut cmd = Command::new("ssh");
        cmd.args(self.raw_ssh_options());
        cmd.arg(format!("{}@127.0.0.1", self.user.name));
        if let Some(c) = command {
            cmd.arg(c);
        }
        cmd.stdin(std::process::Stdio::null())
            .output()
            .expect("run ssh")
    }

    /// ssh options that log in as the client.
    pub fn raw_ssh_options(&self) -> Vec<String> {
        let dir = self.client_dir.display();
        vec![
            "-F".into(),
            "none".into(),
            "-T".into(),
            "-i".into(),
            format!("{dir}/key"),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={dir}/known_hosts"),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-p".into(),
            self.sshd.port.to_string(),
        ]
    }

    /// rsync as the client would run it by hand, with `args` before the
    /// `--rsh` option and the remote path.
    pub fn raw_rsync(&self, args: &[&str], remote_path: &str) -> Output {
        self.raw_rsync_command(args, remote_path)
            .output()
            .expect("run rsync")
    }

    /// rsync with the client's own key: `args`, `--rsh`, then `remote_path`
    /// on the server (the caller may add a local destination).
    fn raw_rsync_command(&self, args: &[&str], remote_path: &str) -> Command {
        let rsh = format!("ssh {}", self.raw_ssh_options().join(" "));
        let mut cmd = Command::new("rsync");
        cmd.args(args)
            .arg("--rsh")
            .arg(rsh)
            .arg(format!("{}@127.0.0.1:{remote_path}", self.user.name))
            .stdin(std::process::Stdio::null());
        cmd
    }
}

impl World {
    /// rsync pulling `remote_path` from the server into `local`, as a
    /// client would run it by hand, with `args` first.
    pub fn raw_rsync_pull(&self, args: &[&str], remote_path: &str, local: &Path) -> Output {
        self.raw_rsync_command(args, remote_path)
            .arg(local)
            .output()
            .expect("run rsync")
    }

    /// Adds a client with its own key (`<area>/<name>-key`) and one file in
    /// its `current`, snapshotted by hand at `at`; returns the key file.
    pub fn add_client_with_file(&self, name: &str, file: &str, content: &str, at: &str) -> PathBuf {
        let key_path = self.area.path.join(format!("{name}-key"));
        let key = super::ssh_keygen(&key_path);
        let mut args = vec!["new-client", "--name", name];
        args.extend(key.split(' '));
        let out = self.server(&args);
        assert!(out.status.success(), "{}", show(&out));
        let current = self.store().join(name).join("current");
        let path = current.join(file);
        fs::write(&path, content).unwrap();
        std::os::unix::fs::chown(&path, Some(self.user.uid), Some(self.user.gid)).unwrap();
        let out = self.server(&["snapshot", "--client", name, "--at", at]);
        assert!(out.status.success(), "{}", show(&out));
        key_path
    }
}

/// Runs each scenario on both backends: btrfs, and plain directories on ext4.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn btrfs() {
                super::$name($crate::FsKind::Btrfs)
            }
            #[test]
            fn ext4_plain() {
                super::$name($crate::FsKind::Ext4)
            }
        }
    )*};
}

pub use crate::on_both_backends;
