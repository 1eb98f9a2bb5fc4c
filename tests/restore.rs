//! End to end: finding every version of a file and restoring it with its
//! true ownership, across real snapshots — and a client that cannot use
//! listing or restore to reach beyond its own backups.

use byteback_testbed as support;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use support::FsKind;
use support::manifest::{self, Reading, inside, os};
use support::world::{World, show, stderr, stdout};

support::world::on_both_backends!(
    list_and_restore_with_true_ownership,
    listing_and_restore_stay_inside_the_clients_backups,
);

fn json_rows(out: &std::process::Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

/// Backs `w.src` up three times with changes in between; returns the snapshot names.
fn three_generations(w: &World, client: &str) -> Vec<String> {
    support::tree::populate(&w.src);
    let notes = w.src.join("home/alice/notes.txt");
    w.backup_ok();
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&notes, "remember the milk and eggs\n").unwrap();
    std::fs::write(w.src.join("etc/hostname"), "second.example\n").unwrap();
    w.backup_ok();
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&notes, "remember the milk, eggs and bread\n").unwrap();
    w.backup_ok();
    let snaps = w.snapshots(client);
    assert_eq!(snaps.len(), 3);
    snaps
}

/// Every version of a file is listed (with its true owner), matched by
/// `**`, `{a,b}` and odd names alike; a restore of one version, of every
/// version or of a whole tree brings back exactly what was backed up,
/// ownership and ACLs included, over one connection, never overwriting
/// without `--overwrite`.
fn list_and_restore_with_true_ownership(kind: FsKind) {
    let Some(w) = World::on("restore", kind) else {
        return;
    };
    let client = w.enroll("restore.example");
    w.server_config("min_snapshot_interval = \"0s\"\n");
    let snaps = three_generations(&w, &client);
    let src = w.src.to_string_lossy().into_owned();
    let notes = format!("{src}/home/alice/notes.txt");

    // Every version of one file, newest first, each once.
    let out = w.client(&["list", "--all", "--json", &notes]);
    assert!(out.status.success(), "{}", show(&out));
    let rows = json_rows(&out);
    let versions: Vec<(&str, u64)> = rows
        .iter()
        .map(|r| (r["snapshot"].as_str().unwrap(), r["size"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        versions,
        [
            (snaps[2].as_str(), 34),
            (snaps[1].as_str(), 27),
            (snaps[0].as_str(), 18)
        ],
        "{}",
        stdout(&out)
    );
    assert_eq!(rows[0]["uid"], 1000);
    assert_eq!(rows[0]["gid"], 100);
    assert_eq!(rows[0]["mode"], "-rw-r--r--");
    assert_eq!(rows[0]["time"], snaps[2].as_str());
    // Without --all: once, from the newest snapshot that has it.
    let out = w.client(&["list", &notes]);
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines().nth(1).unwrap().starts_with(&snaps[2]),
        "{text}"
    );
    // current shows a version only until it is snapshotted; asked for
    // explicitly, btrfs's current still holds it, a plain one (renamed into
    // the snapshot) is empty until the next backup.
    let out = w.client(&["list", "--snapshot", "current", &notes]);
    match kind {
        FsKind::Btrfs => assert!(
            stdout(&out)
                .lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("current ")),
            "{}",
            show(&out)
        ),
        FsKind::Ext4 => assert_eq!(out.status.code(), Some(1), "{}", show(&out)),
    }

    // ** and {a,b} and the dotfile rule; relative patterns start at the current directory.
    let out = w.client(&[
        "list",
        "--snapshot",
        &snaps[0],
        &format!("{src}/**/{{hostname,shadow}}"),
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("/etc/hostname")
            && text.contains("/etc/shadow")
            // 0640 plus an ACL whose mask (rw) shows as the group bits.
            && text.contains("-rw-rw----"),
        "{}",
        show(&out)
    );
    let out = w.client(&[
        "list",
        "--snapshot",
        &snaps[0],
        &format!("{src}/home/alice/*"),
    ]);
    assert!(
        !stdout(&out).contains(".bashrc"),
        "* must not match dotfiles: {}",
        show(&out)
    );
    let out = w.client(&[
        "list",
        "--snapshot",
        &snaps[0],
        &format!("{src}/home/alice/{{*,.*}}"),
    ]);
    assert!(stdout(&out).contains(".bashrc"), "{}", show(&out));
    let out = w.client(&[
        "list",
        "--snapshot",
        &snaps[0],
        &format!("{src}/home/alice/relative-link"),
    ]);
    assert!(
        stdout(&out).contains("lrwxrwxrwx") && stdout(&out).contains("-> ../../etc/hostname"),
        "{}",
        show(&out)
    );
    let out = w
        .client_command(&["list", "--snapshot", &snaps[0], "home/alice/.bashrc"])
        .current_dir(&w.src)
        .output()
        .unwrap();
    assert!(
        out.status.success() && stdout(&out).contains("/home/alice/.bashrc"),
        "{}",
        show(&out)
    );

    // Names with spaces, newlines and invalid UTF-8 round-trip.
    let out = w.client(&["list", "--json", &format!("{src}/name*")]);
    let names: Vec<String> = json_rows(&out)
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names.contains(&format!("{src}/name with spaces"))
            && names.contains(&format!("{src}/name\nwith\nnewlines")),
        "{names:?}"
    );
    let mut latin1 = w.src.as_os_str().as_bytes().to_vec();
    latin1.extend_from_slice(b"/latin1-\xe9t\xe9");
    let out = w
        .client_command(&["list"])
        .arg(os(&latin1))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));

    // No match: one clear line naming the pattern, exit 1.
    let out = w.client(&["list", &format!("{src}/no/such/file")]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("nothing in the backups matches")
            && stderr(&out).contains("no/such/file"),
        "{}",
        show(&out)
    );

    // Restore one file from the oldest snapshot, every version of another,
    // and a directory recursively; compare with what was backed up.
    let into = w.area.path.join("restored");
    let into_s = into.to_string_lossy().into_owned();
    let out = w.client(&[
        "restore",
        "--snapshot",
        &snaps[0],
        "--into",
        &into_s,
        &format!("{src}/etc/hostname"),
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let old = inside(&into.join(&snaps[0]), &w.src).join("etc/hostname");
    assert_eq!(std::fs::read_to_string(&old).unwrap(), "client.example\n");
    let logins = |w: &World| w.sshd.log().matches("Accepted publickey").count();
    let before = logins(&w);
    let out = w.client(&["restore", "--all", "--into", &into_s, &notes]);
    // The listing and the transfer share one connection.
    assert_eq!(logins(&w) - before, 1, "{}", show(&out));
    assert!(out.status.success(), "{}", show(&out));
    for (snap, text) in [
        (&snaps[0], "remember the milk\n"),
        (&snaps[1], "remember the milk and eggs\n"),
        (&snaps[2], "remember the milk, eggs and bread\n"),
    ] {
        let f = inside(&into.join(snap), &w.src).join("home/alice/notes.txt");
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            text,
            "{}",
            f.display()
        );
    }
    let whole = w.area.path.join("whole");
    let out = w.client(&[
        "restore",
        "--snapshot",
        &snaps[2],
        "--into",
        &whole.to_string_lossy(),
        &src,
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let restored = manifest::read(&inside(&whole.join(&snaps[2]), &w.src), Reading::Plain);
    manifest::assert_same(
        "restored tree",
        &manifest::read(&w.src, Reading::Plain),
        &restored,
    );
    // ACLs came back too.
    let acl = |p: &Path| support::run_ok(&["getfacl", "-n", "--omit-header", &p.to_string_lossy()]);
    let original = acl(&w.src.join("etc/shadow"));
    assert!(original.contains("user:1234:r--"), "{original}");
    assert_eq!(
        acl(&inside(&whole.join(&snaps[2]), &w.src).join("etc/shadow")),
        original
    );

    // Never overwrites without --overwrite; --dry-run restores nothing.
    let out = w.client(&[
        "restore",
        "--snapshot",
        &snaps[0],
        "--into",
        &into_s,
        &format!("{src}/etc/hostname"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("--overwrite"), "{}", show(&out));
    let fresh = w.area.path.join("dry");
    let out = w.client(&[
        "restore",
        "--dry-run",
        "--into",
        &fresh.to_string_lossy(),
        &notes,
    ]);
    assert!(
        out.status.success() && stdout(&out).contains("Would restore 1 item"),
        "{}",
        show(&out)
    );
    assert!(!fresh.exists());

    // The administrator's view is the same listing.
    let out = w.server(&["list", "--client", &client, "--all", &notes]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stdout(&out).lines().count(), 4, "{}", show(&out));

    // Streams are one JSON object per line, on both sides.
    let out = w.client(&["snapshots", "--json"]);
    let list: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(list.len(), 3, "{}", show(&out));
    assert_eq!(list[0]["name"], snaps[0].as_str());
    assert_eq!(list[0]["partial"], false);
    let out = w.server(&["snapshots", "--json", "--client", &client]);
    assert!(out.status.success(), "{}", show(&out));
    let list: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(list.len(), 3, "{}", show(&out));
    assert_eq!(list[2]["name"], snaps[2].as_str());
    assert_eq!(list[2]["client"], client.as_str());
}

/// Listing and restore cannot escape the client's backups: patterns with
/// `..` or server paths reveal nothing, symlinks in a backup are listed as
/// what they are and never followed, and hand-written sender or listing
/// requests for anything else are refused.
fn listing_and_restore_stay_inside_the_clients_backups(kind: FsKind) {
    let Some(w) = World::on("restorehostile", kind) else {
        return;
    };
    let client = w.enroll("nosy.example");
    std::fs::write(w.src.join("mine"), "mine\n").unwrap();
    // A symlink in the backup pointing out of it.
    std::os::unix::fs::symlink("/", w.src.join("root-link")).unwrap();
    std::os::unix::fs::symlink("../../victim.example/current", w.src.join("victim-link")).unwrap();
    w.backup_ok();
    let snap = w.snapshots(&client)[0].clone();

    // A victim with a secret.
    let key = support::ssh_keygen(&w.area.path.join("victim-key"));
    let mut args = vec!["new-client", "--name", "victim.example"];
    args.extend(key.split(' '));
    assert!(w.server(&args).status.success());
    let secret = w.store().join("victim.example/current/secret");
    let out = w.user.run_as(&[
        "sh",
        "-c",
        &format!("echo topsecret > '{}'", secret.display()),
    ]);
    assert!(out.status.success());

    let src = w.src.to_string_lossy().into_owned();
    let store = w.store().to_string_lossy().into_owned();
    // Patterns with .. or pointing at the server's paths reveal nothing.
    for pattern in [
        format!("{src}/../../../../victim.example/current/*"),
        "/../victim.example/current/secret".to_owned(),
        format!("{store}/victim.example/current/secret"),
        format!("{src}/root-link/etc/passwd"),
        format!("{src}/victim-link/secret"),
        format!("{src}/victim-link/*"),
    ] {
        let out = w.client(&["list", "--all", &pattern]);
        assert!(!out.status.success(), "{pattern}: {}", show(&out));
        assert!(
            !stdout(&out).contains("secret") && !stdout(&out).contains("root:"),
            "{pattern}: {}",
            show(&out)
        );
    }
    // The symlinks themselves are listed as what they are, never followed.
    let out = w.client(&["list", &format!("{src}/*-link")]);
    assert!(
        stdout(&out).contains("-> /") && stdout(&out).contains("-> ../../victim.example/current"),
        "{}",
        show(&out)
    );

    // Hand-written sender requests for anything outside the client's snapshots.
    let enc = |s: &str| byteback::protocol::encode_arg(s.as_bytes());
    for path in [
        "../victim.example/current/secret".to_owned(),
        "victim.example/current/secret".to_owned(),
        format!("{snap}/../../victim.example/current/secret"),
        format!("{store}/victim.example/current/secret"),
        "/etc/passwd".to_owned(),
        format!("{snap}/{}/victim-link/secret", src.trim_start_matches('/')),
        format!(
            "{snap}/{}/root-link/etc/passwd",
            src.trim_start_matches('/')
        ),
        ".byteback/server.toml".to_owned(),
    ] {
        let loot = w.area.path.join("loot");
        let rsh = format!("ssh {}", w.raw_ssh_options().join(" "));
        let out = support::run(&[
            "rsync",
            "-a",
            "--trust-sender",
            "--rsh",
            &rsh,
            &format!("{}@127.0.0.1:{}", w.user.name, enc(&path)),
            &loot.to_string_lossy(),
        ]);
        assert!(!out.status.success(), "{path}: {}", show(&out));
        let got = support::run(&["grep", "-r", "topsecret", &loot.to_string_lossy()]);
        assert!(!got.status.success(), "{path}: the secret leaked");
        let _ = std::fs::remove_dir_all(&loot);
    }
    // Listing requests naming other snapshot selections or bad encodings are refused.
    for cmd in [
        "byteback list ../victim.example %2Fsecret",
        "byteback list %2A ..%2F..",
        "byteback list %zz %2F",
    ] {
        let out = w.raw_ssh(Some(cmd));
        assert!(!out.status.success(), "{cmd}: {}", show(&out));
        assert!(!stdout(&out).contains("secret"), "{cmd}: {}", show(&out));
    }
    assert!(Path::new(&secret).exists());
}
