//! End to end: `byteback-server setup --user NAME` as root on a fresh btrfs,
//! from no user at all: the fstab hint, then ready, then idempotent.

use byteback_testbed as support;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use support::world::{show, stderr, stdout};
use support::{FsKind, LoopFs, TestArea};

/// Removes the user byteback created, whatever the test's outcome.
struct CreatedUser(String);

impl Drop for CreatedUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).output();
    }
}

fn server(args: &[&str]) -> Output {
    Command::new(support::built_binary("byteback-server"))
        .args(args)
        .env("BYTEBACK_LOG_SOCKET", "/nonexistent")
        .output()
        .unwrap()
}

fn passwd_entry(name: &str) -> Option<Vec<String>> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .find(|l| l.starts_with(&format!("{name}:")))
        .map(|l| l.split(':').map(str::to_owned).collect())
}

fn shadow_password(name: &str) -> String {
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap();
    let line = shadow
        .lines()
        .find(|l| l.starts_with(&format!("{name}:")))
        .unwrap();
    line.split(':').nth(1).unwrap().to_owned()
}

/// `byteback-server setup --user NAME` as root from nothing: on a btrfs
/// without `user_subvol_rm_allowed` the exact fstab line and nothing done;
/// with it, the user made (home the store, no password), the store theirs
/// and ready; run again, nothing changed; an existing nologin, locked user
/// fixed; bad input one line, exit 2.
#[test]
fn root_setup_from_nothing_then_again() {
    if !support::require_root() {
        return;
    }
    let area = TestArea::new("rootsetup");
    let fs = LoopFs::new(&area, FsKind::Btrfs, 256, &[]);
    let store = fs.mount_point.to_string_lossy().into_owned();
    let name = format!("bbr{}", support::unique());
    let _cleanup = CreatedUser(name.clone());

    // Without user_subvol_rm_allowed: the exact fstab line, and nothing done.
    let out = server(&["setup", "--user", &name, "--store", &store]);
    assert_eq!(out.status.code(), Some(8), "{}", show(&out));
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.contains("UUID=")
            && last.contains(&format!(
                "{store} btrfs defaults,user_subvol_rm_allowed 0 0"
            ))
            && last.contains("/etc/fstab")
            && last.contains("mount -o remount,user_subvol_rm_allowed"),
        "{}",
        show(&out)
    );
    assert!(
        passwd_entry(&name).is_none(),
        "no user before the filesystem is right"
    );

    // With it: the user is made, the store is theirs, the user's setup ran.
    support::run_ok(&["mount", "-o", "remount,user_subvol_rm_allowed", &store]);
    let out = server(&["setup", "--user", &name, "--store", &store]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    let created = format!("User: {name} (created");
    for needle in [
        created.as_str(),
        "Filesystem: btrfs at",
        "Timer: ",
        "Config: ",
        "Ready:",
    ] {
        assert!(text.contains(needle), "{needle}: {}", show(&out));
    }
    let entry = passwd_entry(&name).expect("the user exists");
    assert_eq!(entry[5], store, "home is the store");
    assert_eq!(entry[6], "/bin/sh");
    assert_eq!(shadow_password(&name), "*", "no password, not locked");
    let uid: u32 = entry[2].parse().unwrap();
    let meta = std::fs::metadata(&store).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (uid, 0o755));
    let config = fs.mount_point.join(".byteback/server.toml");
    assert_eq!(std::fs::metadata(&config).unwrap().uid(), uid);
    let written = std::fs::read_to_string(&config).unwrap();

    // Again: nothing to change, the same result.
    let out = server(&["setup", "--user", &name, "--store", &store]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("User: {name} (exists)")), "{text}");
    assert!(text.contains("already right"), "{text}");
    assert!(text.contains("(kept)"), "{text}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), written);

    // An existing account that could not run the forced command is fixed:
    // nologin shell, locked password, the store handed to root.
    support::run_ok(&["usermod", "-s", "/usr/sbin/nologin", "-L", &name]);
    std::os::unix::fs::chown(&store, Some(0), Some(0)).unwrap();
    std::os::unix::fs::chown(&config, Some(0), Some(0)).unwrap();
    let out = server(&["setup", "--user", &name]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("shell /usr/sbin/nologin → /bin/sh"), "{text}");
    assert!(text.contains("unlocked"), "{text}");
    assert!(text.contains("fixed: owner, .byteback"), "{text}");
    assert_eq!(passwd_entry(&name).unwrap()[6], "/bin/sh");
    assert_eq!(shadow_password(&name), "*");
    assert_eq!(std::fs::metadata(&config).unwrap().uid(), uid);

    // Bad input: one line, exit 2, nothing done.
    let out = server(&["setup", "--user", "Not A Name", "--store", &store]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", show(&out));
    // --user is for root only.
    let out = Command::new(support::built_binary("byteback-server"))
        .args(["setup", "--user", &name, "--store", &store])
        .uid(uid)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains("--user is for root"),
        "{}",
        show(&out)
    );
}
