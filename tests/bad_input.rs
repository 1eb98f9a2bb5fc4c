//! Bad input gets one line naming the problem and the fix, a non-zero exit,
//! and changes nothing.

use byteback_testbed as support;

use std::path::Path;
use std::process::{Command, Output};

use support::FsKind;
use support::world::{World, show, stderr, stdout};

fn byteback(config_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_byteback"))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("BYTEBACK_CONFIG_DIR", config_dir)
        .output()
        .unwrap()
}

/// Exactly one line on stderr, containing every `needle`.
fn one_line(out: &Output, code: i32, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(code), "{}", show(out));
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "expected one line: {}", show(out));
    for n in needles {
        assert!(err.contains(n), "missing {n:?}: {}", show(out));
    }
}

fn scratch(label: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("byteback-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `byteback setup` refuses bad destinations (no host, port 0, a relative
/// path, a leading `-`), bad client names and a misplaced `--destination`
/// in one line with exit 2, creating nothing.
#[test]
fn client_setup_rejects_bad_destinations_and_names() {
    let dir = scratch("badsetup");
    for (dest, needle) in [
        ("byteback@", "host is missing"),
        ("host:0", "port"),
        ("relative/dir", "or an absolute directory"),
        ("-oProxyCommand=sh", "must not start with '-'"),
    ] {
        one_line(
            &byteback(&dir, &["setup", "--", dest]),
            2,
            &["invalid destination", needle],
        );
    }
    one_line(
        &byteback(&dir, &["setup", "backup.example", "--name", "a/b"]),
        2,
        &["invalid client name", "'/'"],
    );
    one_line(
        &byteback(&dir, &["setup", "backup.example", "--name", "a..b"]),
        2,
        &["'..'"],
    );
    // The global --destination is not silently ignored by setup.
    one_line(
        &byteback(&dir, &["--destination", "a.example", "setup", "b.example"]),
        2,
        &["setup takes its destination as an argument"],
    );
    assert!(!dir.exists(), "nothing may be created for bad input");
    // A wrong flag: clap's usage error, exit 2.
    let out = byteback(&dir, &["backup", "--bogus"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}

/// A missing configuration, or one with an unknown key or a bad value, is
/// one line naming the file, line and key (exit 7); setup refuses to
/// rewrite a broken configuration.
#[test]
fn broken_client_config_names_file_line_and_key() {
    let dir = scratch("badconfig");
    one_line(
        &byteback(&dir, &["backup"]),
        7,
        &["no configuration", "byteback setup"],
    );
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(&config, "destination = \"bb@host\"\nretry_atempts = 3\n").unwrap();
    one_line(
        &byteback(&dir, &["backup", "--dry-run"]),
        7,
        &[
            &format!("{} line 2, key retry_atempts", config.display()),
            "unknown field",
        ],
    );
    std::fs::write(
        &config,
        "destination = \"bb@host\"\nretry_attempts = \"many\"\n",
    )
    .unwrap();
    one_line(
        &byteback(&dir, &["backup", "--dry-run"]),
        7,
        &["line 2, key retry_attempts", "invalid type"],
    );
    std::fs::write(
        &config,
        "destination = \"bb@host\"\nretry_pause = \"soon\"\n",
    )
    .unwrap();
    one_line(
        &byteback(&dir, &["backup", "--dry-run"]),
        7,
        &["line 2, key retry_pause", "not a duration"],
    );
    // Setup refuses to rewrite a broken config.
    let before = std::fs::read_to_string(&config).unwrap();
    one_line(
        &byteback(&dir, &["setup", "other.example", "--name", "x.example"]),
        7,
        &["retry_pause"],
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `backup --dry-run` lists the sources and every exclusion with its reason
/// (virtual filesystems, the excludes file, `--exclude`), and the effective
/// settings from file, defaults and flags together.
#[test]
fn dry_run_lists_sources_and_automatic_exclusions() {
    let dir = scratch("dryrun");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), "destination = \"bb@host\"\n").unwrap();
    std::fs::write(dir.join("excludes"), "# comment\n/var/cache/*\n").unwrap();
    let out = byteback(&dir, &["backup", "--dry-run", "--exclude", "*.tmp"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("source  /\n"), "{text}");
    assert!(
        text.contains("exclude /proc/*  (virtual filesystem proc"),
        "{text}"
    );
    assert!(
        text.contains("exclude /sys/*  (virtual filesystem sysfs"),
        "{text}"
    );
    assert!(text.contains("exclude /var/cache/*"), "{text}");
    assert!(text.contains("exclude *.tmp  (--exclude)"), "{text}");
    // The effective settings: file, defaults and flags together.
    let out = byteback(&dir, &["show-config", "--destination", "/var/backups/x"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("destination = \"/var/backups/x\"\n"),
        "{text}"
    );
    assert!(
        text.contains("retry_attempts = 5\nretry_pause = \"10m\"\n"),
        "{text}"
    );
    assert!(text.contains("excludes = [\"/var/cache/*\"]"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `new-client` refuses malformed keys and names in one line, changing
/// nothing; a key already enrolled under another name, or a name taken by
/// another key, is refused, and `authorized_keys` keeps one line, mode
/// 0600.
#[test]
fn server_rejects_bad_keys_and_names_changing_nothing() {
    let Some(w) = World::new("badkeys") else {
        return;
    };
    let out = w.server(&["setup"]);
    assert!(out.status.success(), "{}", show(&out));
    let authorized = w.store().join(".ssh/authorized_keys");
    let key = support::ssh_keygen(&w.area.path.join("k"));
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["new-client", "not-a-key"], 2, "not an SSH public key"),
        (
            vec!["new-client", "ssh-ed25519", "AAAAnotbase64!!", "root@h"],
            2,
            "not base64",
        ),
        (
            vec![
                "new-client",
                "ssh-ed25519",
                "AAAAC3NzaC1lZDI1NTE5AAAAIGarbage",
                "root@h",
            ],
            2,
            "not an SSH public key",
        ),
        (
            vec![
                "new-client",
                "--name",
                "a/b",
                "ssh-ed25519",
                key.split(' ').nth(1).unwrap(),
            ],
            2,
            "invalid client name",
        ),
        (
            vec![
                "new-client",
                "--name",
                "..",
                "ssh-ed25519",
                key.split(' ').nth(1).unwrap(),
            ],
            2,
            "invalid client name",
        ),
        (
            vec!["new-client", "ssh-ed25519", key.split(' ').nth(1).unwrap()],
            2,
            "pass --name",
        ),
        (
            vec![
                "new-client",
                "--name",
                "ok.example",
                "--from",
                "1.2.3.4\" evil",
                "ssh-ed25519",
                key.split(' ').nth(1).unwrap(),
            ],
            2,
            "invalid --from",
        ),
    ];
    for (args, code, needle) in cases {
        one_line(&w.server(&args), code, &[needle]);
    }
    assert!(
        !authorized.exists(),
        "authorized_keys must not be created by refused requests"
    );
    let clients: Vec<_> = std::fs::read_dir(w.store())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| !n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(clients.is_empty(), "{clients:?}");

    // The same key for another name, or another key for a taken name: refused.
    let mut args = vec!["new-client", "--name", "one.example"];
    args.extend(key.split(' '));
    assert!(w.server(&args).status.success());
    let again = w.server(&args);
    assert!(
        again.status.success()
            && String::from_utf8_lossy(&again.stdout).contains("already has this key"),
        "{}",
        show(&again)
    );
    let mut args = vec!["new-client", "--name", "two.example"];
    args.extend(key.split(' '));
    one_line(
        &w.server(&args),
        6,
        &["already authorised for client one.example"],
    );
    let other = support::ssh_keygen(&w.area.path.join("k2"));
    let mut args = vec!["new-client", "--name", "one.example"];
    args.extend(other.split(' '));
    one_line(&w.server(&args), 6, &["already taken by another key"]);
    assert_eq!(
        std::fs::read_to_string(&authorized)
            .unwrap()
            .lines()
            .count(),
        1
    );
    assert!(!w.store().join("two.example").exists());
    let meta = std::fs::metadata(&authorized).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(w.store().join(".ssh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
}

/// Server setup refuses btrfs on ext4 and a btrfs without
/// `user_subvol_rm_allowed` (naming the fstab fix), picks plain directories
/// on ext4 and sticks to them, and tells root to run it as the backup user;
/// nothing written when refused.
#[test]
fn store_backend_follows_the_filesystem() {
    let Some(w) = World::with_fs("ext4store", FsKind::Ext4, &[]) else {
        return;
    };
    // btrfs asked for on ext4: refused, nothing written.
    one_line(
        &w.server(&["setup", "--backend", "btrfs"]),
        8,
        &["is on ext4, not btrfs"],
    );
    assert!(!w.store().join(".byteback").exists());
    // By default ext4 gets plain directories, recorded in the config.
    let out = w.server(&["setup"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("Backend: plain directories"),
        "{}",
        show(&out)
    );
    let config = std::fs::read_to_string(w.store().join(".byteback/server.toml")).unwrap();
    assert!(config.contains("\nbackend = \"plain\"\n"), "{config}");
    // And it sticks: asking for another backend later is refused.
    one_line(
        &w.server(&["setup", "--backend", "btrfs"]),
        2,
        &["already uses the plain backend"],
    );
    drop(w);
    let Some(w) = World::with_fs("normopt", FsKind::Btrfs, &[]) else {
        return;
    };
    one_line(
        &w.server(&["setup"]),
        8,
        &["user_subvol_rm_allowed", "/etc/fstab"],
    );
    assert!(!w.store().join(".byteback").exists());
    // Root is told to use the backup user.
    let out = Command::new(&w.server_bin)
        .args(["setup", "--store"])
        .arg(w.store())
        .output()
        .unwrap();
    one_line(&out, 2, &["run this as the backup user"]);
}

/// Each connection problem is one line with its own exit code: an unknown
/// host key (asked on a terminal, refused unattended), a changed host key
/// (never accepted), a client with no backup space, a key the server does
/// not know, an unreadable key, nothing listening.
#[test]
fn connection_problems_are_named() {
    let Some(w) = World::new("connfail") else {
        return;
    };
    let client = w.enroll("conn.example");
    let known_hosts = w.client_dir.join("known_hosts");
    let trusted = std::fs::read_to_string(&known_hosts).unwrap();

    // Unknown host key on a terminal: ssh asks; "no" trusts nothing, "yes"
    // records the key in byteback's own known_hosts. (`script` gives the
    // client a terminal; the answer is typed once the question is seen.)
    let on_terminal = |answer: &str| {
        use std::io::{Read, Write};
        let cmd = format!(
            "BYTEBACK_CONFIG_DIR='{}' '{}' test",
            w.client_dir.display(),
            env!("CARGO_BIN_EXE_byteback")
        );
        let mut script = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = script.stdin.take().unwrap();
        let mut stdout = script.stdout.take().unwrap();
        // Read what the terminal shows until ssh asks (or the client ends).
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let (mut all, mut buf) = (Vec::new(), [0u8; 4096]);
            let mut told = false;
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&buf[..n]);
                if !told && String::from_utf8_lossy(&all).contains("continue connecting") {
                    let _ = seen_tx.send(());
                    told = true;
                }
            }
            all
        });
        let asked = seen_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .is_ok();
        if asked {
            stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
        } else {
            // Never asked within a minute: end it (the assertions say why).
            let _ = script.kill();
        }
        let status = script.wait().unwrap();
        drop(stdin);
        let mut stderr = Vec::new();
        if let Some(mut e) = script.stderr.take() {
            let _ = e.read_to_end(&mut stderr);
        }
        std::process::Output {
            status,
            stdout: reader.join().unwrap(),
            stderr,
        }
    };
    std::fs::write(&known_hosts, "").unwrap();
    let out = on_terminal("no");
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("Are you sure you want to continue connecting"),
        "{}",
        show(&out)
    );
    assert!(std::fs::read_to_string(&known_hosts).unwrap().is_empty());
    let out = on_terminal("yes");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Trusted the server's host key"),
        "{}",
        show(&out)
    );
    assert!(
        std::fs::read_to_string(&known_hosts)
            .unwrap()
            .contains(&w.sshd.host_public_key)
    );

    // Unknown host key, unattended.
    std::fs::write(&known_hosts, "").unwrap();
    one_line(
        &w.client(&["test"]),
        5,
        &["not trusted yet", "--accept-new-host-key"],
    );
    // Changed host key: never accepted, even with --accept-new-host-key.
    let impostor = support::ssh_keygen(&w.area.path.join("impostor"));
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{} {impostor}\n", w.sshd.port),
    )
    .unwrap();
    for args in [&["test"][..], &["test", "--accept-new-host-key"][..]] {
        one_line(&w.client(args), 5, &["CHANGED"]);
    }
    std::fs::write(&known_hosts, &trusted).unwrap();

    // No backup space for this client any more.
    let current = w.store().join(&client).join("current");
    let out = w
        .user
        .run_as(&["btrfs", "subvolume", "delete", &current.to_string_lossy()]);
    assert!(out.status.success(), "{}", show(&out));
    one_line(
        &w.client(&["test"]),
        6,
        &["no backup space for client conn.example"],
    );

    // A key the server does not know.
    let key = w.client_dir.join("key");
    std::fs::rename(&key, w.area.path.join("saved-key")).unwrap();
    support::ssh_keygen(&key);
    one_line(
        &w.client(&["test"]),
        6,
        &["refused this machine's key", "byteback-server new-client"],
    );
    // An unreadable key.
    std::fs::write(&key, "garbage\n").unwrap();
    one_line(
        &w.client(&["test"]),
        7,
        &["cannot use this machine's backup key"],
    );
    // Nothing listening.
    std::fs::rename(w.area.path.join("saved-key"), &key).unwrap();
    let mut w = w;
    w.sshd.stop();
    one_line(
        &w.client(&["test"]),
        5,
        &["cannot reach the backup server 127.0.0.1"],
    );
}
