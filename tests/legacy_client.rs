//! A fleet of original byteback clients against this server: an original
//! store (`<home>/<host>/current` and a snapshot named the original's way)
//! and the original's authorized_keys line are imported with `import-keys`,
//! then the original client's steps run against the server — a ping, the
//! transfer, `--complete`, the older `byteback-snapshot --snapshot`, a
//! listing and restores — and its key's hostile variants are refused.
//!
//! The original's client scripts are not packaged anywhere a test can
//! reach (no Debian package, and nothing is vendored here), so this sends
//! exactly what they send, with the stock `ssh` and `rsync` and the
//! original's own options: the ssh arguments of `byteback-backup` and
//! `byteback-restore` (`ssh … byteback-receive --ping ''`), and their rsync
//! command lines with `--rsync-path "rsync --fake-super"` and
//! `--rsync-path "byteback-restore --fake-super --snapshot SNAP"`, so that
//! rsync itself writes the `SSH_ORIGINAL_COMMAND` the server parses.

use byteback_testbed as support;

use std::fs;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::manifest::{self, Reading};
use support::world::{World, show, stderr, stdout};

const HOST: &str = "web1.example";
/// A snapshot as the original named it.
const OLD: &str = "2014-01-01T00:00+0000";

/// An original client: its key, and the ssh options the original's
/// scripts pass (plus what this test's sshd needs: port, known hosts).
struct Original<'a> {
    w: &'a World,
    key: PathBuf,
}

impl Original<'_> {
    /// `byteback-backup`'s and `byteback-restore`'s ssh options.
    fn ssh_options(&self) -> Vec<String> {
        let area = self.w.area.path.display();
        let mut o: Vec<String> = [
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectionAttempts=5",
            "-o",
            "ConnectTimeout=30",
            "-o",
            "ServerAliveInterval=60",
            "-o",
            "TCPKeepAlive=yes",
            "-x",
            "-a",
        ]
        .map(String::from)
        .to_vec();
        o.extend([
            "-F".into(),
            "none".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "StrictHostKeyChecking=accept-new".into(),
            "-o".into(),
            format!("UserKnownHostsFile={area}/known_hosts"),
            "-p".into(),
            self.w.sshd.port.to_string(),
            "-i".into(),
            self.key.display().to_string(),
            "-l".into(),
            self.w.user.name.clone(),
        ]);
        o
    }

    /// `ssh(*args)` of the original's scripts: a `nil` argument (no
    /// `--verbose`) is passed as an empty word.
    fn ssh(&self, words: &[&str]) -> Output {
        Command::new("ssh")
            .args(self.ssh_options())
            .arg("127.0.0.1")
            .args(words)
            .stdin(Stdio::null())
            .output()
            .expect("run ssh")
    }

    /// rsync with the original's `--rsh` and `--rsync-path`; `args` are its
    /// options, then the sources and the destination.
    fn rsync(&self, options: &[&str], rsync_path: &str, paths: &[String], cwd: &Path) -> Output {
        Command::new("rsync")
            .args(options)
            .arg("--rsh")
            .arg(format!("ssh {}", self.ssh_options().join(" ")))
            .arg("--rsync-path")
            .arg(rsync_path)
            .args(paths)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .output()
            .expect("run rsync")
    }

    /// `byteback-backup`'s transfer of `source` to `DEST:` (the path
    /// `byteback-setup-client` writes is empty).
    fn backup(&self, source: &Path) -> Output {
        let options = [
            "--archive",
            "--xattrs",
            "--numeric-ids",
            "--delete-excluded",
            "--delete-during",
            "--inplace",
            "--relative",
            "--timeout",
            "10800",
            "--exclude",
            "/tmp/",
        ];
        self.rsync(
            &options,
            "rsync --fake-super",
            &[
                source.display().to_string(),
                format!("{}@127.0.0.1:", self.w.user.name),
            ],
            &self.w.area.path,
        )
    }

    /// `byteback-restore --restore [--snapshot SNAP] PATH…` run in `into`.
    fn restore(&self, snapshot: &str, paths: &[&str], into: &Path) -> Output {
        let options = [
            "--archive",
            "--numeric-ids",
            "--inplace",
            "--relative",
            "--compress",
            "--timeout",
            "300",
            // The client's /etc/byteback/rsync_flags, which the original
            // reads for this: rsync 3.2.5 and later reject file-list names
            // they did not ask for, and the original's restore sends
            // SNAPSHOT/PATH for PATH (against its own server too).
            "--trust-sender",
        ];
        let mut remote = Vec::new();
        let mut prefix = format!("{}@127.0.0.1:", self.w.user.name);
        for p in paths {
            remote.push(format!(
                "{prefix}{}",
                byteback::protocol::legacy::encode_qp(p.as_bytes())
            ));
            prefix = ":".into();
        }
        remote.push(".".into());
        self.rsync(
            &options,
            &format!("byteback-restore --fake-super --snapshot {snapshot}"),
            &remote,
            into,
        )
    }
}

/// Writes `text` at `path` (its directories made) owned by the backup user.
fn write_as_user(w: &World, path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    chown(path, Some(w.user.uid), Some(w.user.gid)).unwrap();
}

/// The original's store of `HOST`: `current` (a subvolume) holding one
/// file, and one snapshot named the original's way. Returns the file's
/// path on the client.
fn original_store(w: &World) -> String {
    let dir = w.store().join(HOST);
    let current = dir.join("current");
    let out = w.user.run_as(&["mkdir", &dir.to_string_lossy()]);
    assert!(out.status.success(), "{}", show(&out));
    let out = w
        .user
        .run_as(&["btrfs", "subvolume", "create", &current.to_string_lossy()]);
    assert!(out.status.success(), "{}", show(&out));
    let etc = current.join("etc");
    let out = w.user.run_as(&["mkdir", &etc.to_string_lossy()]);
    assert!(out.status.success(), "{}", show(&out));
    write_as_user(w, &etc.join("motd"), "from 2014\n");
    let out = w.user.run_as(&[
        "btrfs",
        "subvolume",
        "snapshot",
        "-r",
        &current.to_string_lossy(),
        &dir.join(OLD).to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", show(&out));
    "/etc/motd".into()
}

/// The line `byteback-setup-client-receive` wrote for a key.
fn original_line(host: &str, public: &str) -> String {
    format!(
        r#"command="byteback-receive",from="127.0.0.1",environment="BYTEBACK_HOST={host}" {public} byteback client key"#
    )
}

/// The client's snapshots as the server counts them (the original's names too), oldest first.
fn snapshots(w: &World) -> Vec<String> {
    let out = w.server(&["snapshots", "--client", HOST]);
    assert!(out.status.success(), "{}", show(&out));
    stdout(&out)
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap().to_owned())
        .collect()
}

fn authorized_keys(w: &World) -> String {
    fs::read_to_string(w.store().join(".ssh/authorized_keys")).unwrap()
}

/// An original byteback store and authorized_keys line are imported
/// (idempotently, a bad `BYTEBACK_HOST` skipped with why, the store
/// untouched); then the original client's own ssh and rsync commands work:
/// ping, backup, `--complete`, the older `byteback-snapshot --snapshot`
/// (interval enforced), `--list`, and restores of the newest version and of
/// the original's own snapshot.
#[test]
fn an_original_client_backs_up_snapshots_and_restores_after_import() {
    let Some(w) = World::new("legacy") else {
        return;
    };
    original_store(&w);
    let out = w.server(&["setup"]);
    assert!(out.status.success(), "setup: {}", show(&out));
    let key = w.area.path.join("original-key");
    let public = support::ssh_keygen(&key);
    let fresh_key = w.area.path.join("fresh-key");
    let fresh_public = support::ssh_keygen(&fresh_key);
    w.user.authorize_key("ssh-ed25519 AAAAadmin admin@laptop");
    w.user.authorize_key(&original_line(HOST, &public));
    w.user
        .authorize_key(&original_line("fresh.example", &fresh_public));
    w.user.authorize_key(&original_line(
        "../etc",
        &fresh_public.replace("AAAA", "AAAB"),
    ));

    // The import: each key one line, why; the original store untouched.
    let out = w.server(&["import-keys"]);
    assert!(out.status.success(), "import-keys: {}", show(&out));
    let said = stdout(&out);
    assert!(said.contains(&format!("imported {HOST} (line 2")), "{said}");
    assert!(said.contains("1 snapshot(s)"), "{said}");
    assert!(said.contains("imported fresh.example (line 3"), "{said}");
    assert!(
        said.contains("skipped line 4: BYTEBACK_HOST=\"../etc\""),
        "{said}"
    );
    let text = authorized_keys(&w);
    let server_bin = w.server_bin.canonicalize().unwrap();
    let expected = format!(
        r#"restrict,command="{} receive --store {} --client {HOST} --legacy",from="127.0.0.1" {public} byteback client key"#,
        server_bin.display(),
        w.store().display()
    );
    assert_eq!(text.lines().nth(1), Some(expected.as_str()), "{text}");
    assert_eq!(
        text.lines().next(),
        Some("ssh-ed25519 AAAAadmin admin@laptop")
    );
    assert!(
        text.lines()
            .nth(3)
            .unwrap()
            .starts_with("command=\"byteback-receive\"")
    );
    assert!(w.store().join("fresh.example/current").is_dir());
    assert_eq!(snapshots(&w), [OLD]);
    // Idempotent: a second run changes nothing.
    let out = w.server(&["import-keys"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains(&format!("already imported: {HOST} (line 2)")),
        "{}",
        show(&out)
    );
    assert!(stdout(&out).contains("Nothing to change"), "{}", show(&out));
    assert_eq!(authorized_keys(&w), text);
    let out = w.server(&["clients"]);
    assert!(
        stdout(&out).contains("original byteback client"),
        "{}",
        show(&out)
    );

    let client = Original { w: &w, key };
    // byteback-backup: ping, transfer, complete.
    let out = client.ssh(&["byteback-receive", "--ping", ""]);
    assert!(out.status.success(), "ping: {}", show(&out));
    write_as_user(&w, &w.src.join("hostname"), "web1\n");
    fs::write(w.src.join("a b=c"), "odd name\n").unwrap();
    let out = client.backup(&w.src);
    assert!(out.status.success(), "backup: {}", show(&out));
    let in_current = w
        .store()
        .join(HOST)
        .join("current")
        .join(w.src.strip_prefix("/").unwrap());
    assert_eq!(
        fs::read_to_string(in_current.join("hostname")).unwrap(),
        "web1\n"
    );
    let out = client.ssh(&["byteback-receive", "--complete", ""]);
    assert!(out.status.success(), "complete: {}", show(&out));
    let taken = snapshots(&w);
    assert_eq!(taken.len(), 2, "{taken:?}");
    assert_eq!(taken[0], OLD, "the original's snapshot stays as it was");
    let first = taken[1].clone();

    // An older client's `byteback-snapshot --snapshot`, after a second
    // transfer; inside min_snapshot_interval first, which refuses it.
    fs::write(w.src.join("hostname"), "web1 again\n").unwrap();
    let out = client.backup(&w.src);
    assert!(out.status.success(), "backup: {}", show(&out));
    let out = client.ssh(&["byteback-snapshot", "--snapshot", ""]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        stderr(&out).contains("min_snapshot_interval"),
        "{}",
        show(&out)
    );
    w.server_config("min_snapshot_interval = \"0s\"\n");
    let out = client.ssh(&["byteback-snapshot", "--snapshot", ""]);
    assert!(out.status.success(), "byteback-snapshot: {}", show(&out));
    assert_eq!(snapshots(&w).len(), 3);

    // byteback-restore --list, as the original's client sends it.
    let src = w.src.display().to_string();
    let pattern = format!("{src}/*");
    let out = client.ssh(&[
        "byteback-receive",
        "--snapshot",
        "*",
        "--list",
        "--all",
        "",
        &byteback::protocol::legacy::encode_qp(pattern.as_bytes()),
    ]);
    assert!(out.status.success(), "list: {}", show(&out));
    let listing = stdout(&out);
    assert!(listing.contains(&format!("{src}/hostname")), "{listing}");
    assert!(listing.contains(&first), "{listing}");

    // byteback-restore --restore: the newest version, at ./SNAPSHOT/PATH as
    // the original restored it, and the original's snapshot by its name.
    let into = w.area.path.join("restored");
    fs::create_dir(&into).unwrap();
    let hostname = format!("{src}/hostname");
    let odd = format!("{src}/a b=c");
    let out = client.restore("*", &[&hostname, &odd], &into);
    assert!(out.status.success(), "restore: {}", show(&out));
    let newest = snapshots(&w).pop().unwrap();
    let at = into.join(&newest).join(w.src.strip_prefix("/").unwrap());
    assert_eq!(
        fs::read_to_string(at.join("hostname")).unwrap(),
        "web1 again\n"
    );
    assert_eq!(fs::read_to_string(at.join("a b=c")).unwrap(), "odd name\n");
    let out = client.restore(OLD, &["/etc/motd"], &into);
    assert!(out.status.success(), "restore of {OLD}: {}", show(&out));
    assert_eq!(
        fs::read_to_string(into.join(OLD).join("etc/motd")).unwrap(),
        "from 2014\n"
    );
    let out = client.restore("*", &["/no/such/file"], &into);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        stderr(&out).contains("nothing in the backups matches"),
        "{}",
        show(&out)
    );
}

/// An imported original client's key gets no shell or program of its own,
/// no other host by name or path, no sender outside its area, no options
/// naming server paths or programs; a transfer naming another client's
/// space lands in its own `current`. Nothing of the other client changes,
/// and every refusal is logged.
#[test]
fn an_original_clients_key_stays_in_its_own_space() {
    let Some(w) = World::new("legacy-hostile") else {
        return;
    };
    original_store(&w);
    let out = w.server(&["setup"]);
    assert!(out.status.success(), "setup: {}", show(&out));
    // Another client, with a secret in a snapshot and in current.
    let _victim_key =
        w.add_client_with_file("victim", "secret", "victim's\n", "2026-01-01T00:00:00Z");
    let key = w.area.path.join("original-key");
    let public = support::ssh_keygen(&key);
    w.user.authorize_key(&original_line(HOST, &public));
    let out = w.server(&["import-keys"]);
    assert!(out.status.success(), "import-keys: {}", show(&out));
    let client = Original { w: &w, key };
    let log = || fs::read_to_string(w.store().join(".byteback/server.log")).unwrap_or_default();
    let victim_dir = w.store().join("victim");
    let victim_before = manifest::read(&victim_dir, Reading::Plain);

    let refused = |words: &[&str], why: &str| {
        let out = client.ssh(words);
        assert!(!out.status.success(), "{words:?}: {}", show(&out));
        assert!(stderr(&out).contains(why), "{words:?}: {}", show(&out));
    };
    // A shell, or a program of its own.
    let out = Command::new("ssh")
        .args(client.ssh_options())
        .arg("-T")
        .arg("127.0.0.1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", show(&out));
    assert!(stderr(&out).contains("not a shell"), "{}", show(&out));
    refused(&["sh", "-c", "id"], "not allowed");
    refused(&["byteback-receive", "--ping;id"], "not allowed");
    refused(
        &["byteback-setup-client-receive", "evil", &public],
        "new-client",
    );
    // Another client's host, by name or path.
    refused(
        &["byteback-snapshot", "--root", "/home/victim"],
        "not allowed",
    );
    refused(
        &[
            "byteback-receive",
            "--snapshot",
            "../victim/*",
            "--list",
            "/secret",
        ],
        "not a snapshot",
    );
    refused(
        &["byteback-receive", "--list", "/../../victim/current/secret"],
        "'..'",
    );
    // A sender outside its area: the original's restore with a climbing
    // path, a plain rsync sender, and our own language's sender.
    refused(
        &[
            "byteback-restore --fake-super --snapshot * --server --sender -logDtprRze.iLsfxCIvu . /../../victim/current/secret",
        ],
        "'..'",
    );
    refused(
        &["rsync --fake-super --server --sender -logDtprRe.iLsfxCIvu . ../victim/current/secret"],
        "--sender is not allowed",
    );
    refused(
        &["rsync --server --sender -logDtprRe.iLsfxCIvu . ../victim/current/secret"],
        "refused restore path",
    );
    // What the original's client never sends, even in our own language.
    refused(&["byteback snapshots"], "enrolled with --legacy");
    refused(
        &["byteback incremental 2026-01-01T00:00:00Z"],
        "enrolled with --legacy",
    );
    // Options that name paths or programs on the server.
    refused(
        &["rsync --fake-super --server -logDtpXrRe.iLsfxCIvu --log-file=/tmp/x . ."],
        "--log-file",
    );
    // A transfer naming the other client's space lands in its own `current`.
    fs::write(w.src.join("mine"), "legacy's\n").unwrap();
    let out = client.rsync(
        &["--archive", "--relative"],
        "rsync --fake-super",
        &[
            w.src.display().to_string(),
            format!("{}@127.0.0.1:victim/current", w.user.name),
        ],
        &w.area.path,
    );
    assert!(out.status.success(), "{}", show(&out));
    let mine = w
        .store()
        .join(HOST)
        .join("current")
        .join(w.src.strip_prefix("/").unwrap())
        .join("mine");
    assert_eq!(fs::read_to_string(mine).unwrap(), "legacy's\n");
    // The restore that names the other client's file finds nothing here.
    let into = w.area.path.join("restored");
    fs::create_dir(&into).unwrap();
    let out = client.restore("*", &["/secret"], &into);
    assert!(!out.status.success(), "{}", show(&out));
    assert_eq!(fs::read_dir(&into).unwrap().count(), 0);
    // Nothing of the other client changed, and every refusal was logged.
    assert_eq!(manifest::read(&victim_dir, Reading::Plain), victim_before);
    assert!(log().contains(&format!("{HOST}: refused")), "{}", log());
}
