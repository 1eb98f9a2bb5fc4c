//! `byteback-server setup --user NAME` run as root: the steps only root can
//! do — the backup user, the filesystem's mount options, ownership, the
//! maintenance timer — then the user's own `setup`, run as that user.
//!
//! Every step looks before it changes anything, so running it again changes
//! nothing; a step it cannot do is one line naming what to do instead.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::exec::Cmd;
use crate::store::Backend;
use crate::sys::fs::{self, ensure_dir};
use crate::sys::user::{self, PasswdEntry};

/// The login shell of a backup user: a shell that reads no start-up files
/// before the forced command runs.
const SHELL: &str = "/bin/sh";

/// Runs the root steps, then the user's own setup; its exit status.
pub fn run(name: &str, store: Option<&Path>, backend: Option<Backend>) -> Result<u8> {
    if !rustix::process::geteuid().is_root() {
        return Err(Error::Usage(
            "--user is for root (it creates the user and fixes ownership); as the backup user, run `byteback-server setup` without it".into(),
        ));
    }
    check_user_name(name)?;
    let existing = user::lookup(name);
    let store = match (store, &existing) {
        (Some(s), _) => std::path::absolute(s).map_err(|e| Error::io("cannot resolve", s, e))?,
        (None, Some(account)) => account.home.clone(),
        (None, None) => PathBuf::from("/home").join(name),
    };
    if !store.exists() {
        ensure_dir(&store, 0o755)?;
        println!("Store: {} (created)", store.display());
    }
    check_filesystem(&store, backend)?;
    let account = ensure_user(name, &store, existing)?;
    fix_ownership(&store, &account)?;
    enable_timer(name);
    run_as_user(&account, &store, backend)
}

/// A name `useradd` takes on every distribution.
fn check_user_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c));
    if first_ok && rest_ok && name.len() <= 32 {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "invalid user name {name:?}: use lowercase letters, digits, '_' and '-', starting with a letter (e.g. byteback)"
        )))
    }
}

/// A btrfs store must let its unprivileged owner delete subvolumes: without
/// `user_subvol_rm_allowed`, stop and give the exact line for /etc/fstab.
fn check_filesystem(store: &Path, backend: Option<Backend>) -> Result<()> {
    let mount = fs::mount_of(store);
    let fs_type = mount.as_ref().map_or("unknown", |m| m.fs_type.as_str());
    if !fs::is_btrfs(store)? || backend == Some(Backend::Plain) {
        println!(
            "Filesystem: {fs_type} at {} (plain directories)",
            mount
                .as_ref()
                .map_or(store, |m| m.mount_point.as_path())
                .display()
        );
        return Ok(());
    }
    let Some(mount) = mount else {
        return Err(Error::Unsupported(format!(
            "cannot find the mount of {} in /proc/self/mountinfo",
            store.display()
        )));
    };
    let allowed = mount
        .super_options
        .split(',')
        .any(|o| o == "user_subvol_rm_allowed");
    if allowed {
        println!(
            "Filesystem: btrfs at {} (user_subvol_rm_allowed)",
            mount.mount_point.display()
        );
        return Ok(());
    }
    let at = mount.mount_point.display();
    Err(Error::Unsupported(format!(
        "the btrfs at {at} is mounted without user_subvol_rm_allowed, so the backup user could never delete old snapshots: {}, run `mount -o remount,user_subvol_rm_allowed {at}`, and run this again",
        fstab_advice(&mount)
    )))
}

/// What to put in /etc/fstab: the existing line with the option added, or a
/// new line naming the filesystem by UUID.
fn fstab_advice(mount: &crate::sys::mountinfo::Mount) -> String {
    let fstab = std::fs::read_to_string("/etc/fstab").unwrap_or_default();
    let existing = fstab.lines().find(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        !line.trim_start().starts_with('#')
            && fields.get(1).map(Path::new) == Some(mount.mount_point.as_path())
    });
    if let Some(line) = existing {
        let mut fields: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        if let Some(options) = fields.get_mut(3) {
            options.push_str(",user_subvol_rm_allowed");
        }
        return format!("change its line in /etc/fstab to `{}`", fields.join(" "));
    }
    let device = Cmd::new("blkid")
        .args(["-s", "UUID", "-o", "value", &mount.source])
        .run()
        .ok()
        .map(|uuid| uuid.trim().to_owned())
        .filter(|uuid| !uuid.is_empty())
        .map_or(mount.source.clone(), |uuid| format!("UUID={uuid}"));
    format!(
        "add `{device} {} btrfs defaults,user_subvol_rm_allowed 0 0` to /etc/fstab",
        mount.mount_point.display()
    )
}

/// Creates the backup user if missing; makes an existing one able to log
/// in with a key and run the forced command.
fn ensure_user(name: &str, store: &Path, existing: Option<PasswdEntry>) -> Result<PasswdEntry> {
    let Some(account) = existing else {
        let home = store.to_string_lossy();
        let argv = [
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            &home,
            "--shell",
            SHELL,
            // No password, but not locked: sshd refuses keys of a locked account.
            "--password",
            "*",
            name,
        ];
        retry_on_lock(|| Cmd::destructive("useradd").args(argv).run())?;
        let account = user::lookup(name).ok_or_else(|| {
            Error::Command(format!(
                "useradd succeeded but {name} is not in /etc/passwd"
            ))
        })?;
        println!(
            "User: {name} (created: system user, home {}, shell {SHELL}, no password)",
            store.display()
        );
        return Ok(account);
    };
    let mut changed = Vec::new();
    // sshd runs the forced command with the login shell: nologin would
    // refuse every backup.
    if account.shell.ends_with("nologin") || account.shell.ends_with("false") {
        retry_on_lock(|| Cmd::destructive("usermod").args(["-s", SHELL, name]).run())?;
        changed.push(format!("shell {} → {SHELL}", account.shell));
    } else if !matches!(
        account.shell.as_str(),
        "/bin/sh" | "/usr/bin/sh" | "/bin/dash"
    ) {
        println!(
            "Note: {name}'s login shell is {}; {SHELL} is recommended, since shells like bash read start-up files before the forced command runs (usermod -s {SHELL} {name})",
            account.shell
        );
    }
    let password = user::shadow_password(name).unwrap_or_default();
    if password.is_empty() || password.starts_with('!') {
        retry_on_lock(|| Cmd::destructive("usermod").args(["-p", "*", name]).run())?;
        changed.push("unlocked for key logins (password *)".to_owned());
    }
    if account.home != store {
        println!(
            "Note: {name}'s home is {}, not the store {}: new-client writes keys to the home's .ssh and the maintenance timer uses the home as the store; pass --store {} or run `usermod -d {} {name}`",
            account.home.display(),
            store.display(),
            account.home.display(),
            store.display()
        );
    }
    if changed.is_empty() {
        println!("User: {name} (exists)");
    } else {
        println!("User: {name} (exists; {})", changed.join(", "));
    }
    Ok(user::lookup(name).unwrap_or(account))
}

/// `useradd` and `usermod` give up at once when another process holds the
/// lock on /etc/passwd; a moment later they succeed.
fn retry_on_lock(mut step: impl FnMut() -> Result<String>) -> Result<String> {
    let mut attempt = 0;
    loop {
        match step() {
            Err(e) if attempt < 50 && e.to_string().contains("lock") => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// The store belongs to the backup user (mode 0755, which sshd's
/// StrictModes accepts); so do byteback's state and `.ssh` inside it, in
/// case an earlier step ran as root.
fn fix_ownership(store: &Path, account: &PasswdEntry) -> Result<()> {
    let mut fixed = Vec::new();
    let meta = std::fs::metadata(store).on("cannot use store", store)?;
    if meta.uid() != account.uid || meta.gid() != account.gid {
        std::os::unix::fs::chown(store, Some(account.uid), Some(account.gid))
            .map_err(|e| Error::io("cannot chown", store, e))?;
        fixed.push("owner");
    }
    if meta.mode() & 0o7777 != 0o755 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(store, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("cannot chmod", store, e))?;
        fixed.push("mode");
    }
    for inner in [".byteback", ".ssh"] {
        if chown_tree(&store.join(inner), account)? > 0 {
            fixed.push(inner);
        }
    }
    let what = if fixed.is_empty() {
        "already right".to_owned()
    } else {
        format!("fixed: {}", fixed.join(", "))
    };
    println!(
        "Owner: {} is {}'s, mode 0755 ({what})",
        store.display(),
        account.name
    );
    Ok(())
}

/// Gives whatever in a (small) directory tree is not the user's to the
/// user, never following symlinks; how many entries it changed.
fn chown_tree(path: &Path, account: &PasswdEntry) -> Result<usize> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(0);
    };
    let mut changed = 0;
    if meta.uid() != account.uid || meta.gid() != account.gid {
        std::os::unix::fs::lchown(path, Some(account.uid), Some(account.gid))
            .map_err(|e| Error::io("cannot chown", path, e))?;
        changed += 1;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).on("cannot read", path)? {
            let entry = entry.map_err(|e| Error::io("cannot read", path, e))?;
            changed += chown_tree(&entry.path(), account)?;
        }
    }
    Ok(changed)
}

/// Pruning and metrics every 15 minutes, where systemd runs.
fn enable_timer(name: &str) {
    let timer = format!("byteback-server-maintenance@{name}.timer");
    if !Path::new("/run/systemd/system").is_dir() {
        println!(
            "Timer: systemd is not running here, nothing enabled (where it runs: systemctl enable --now {timer}; or run `byteback-server prune` as {name} every 15 minutes)"
        );
        return;
    }
    match Cmd::destructive("systemctl")
        .args(["enable", "--now", &timer])
        .run()
    {
        Ok(_) => println!("Timer: {timer} enabled"),
        Err(e) => println!(
            "Timer: not enabled ({e}); install contrib/byteback-server-maintenance@.{{service,timer}} into /etc/systemd/system and run systemctl enable --now {timer}"
        ),
    }
}

/// The rest is the user's own `byteback-server setup`, run as that user.
fn run_as_user(account: &PasswdEntry, store: &Path, backend: Option<Backend>) -> Result<u8> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Command(format!("cannot tell where byteback-server is: {e}")))?;
    let mut args = vec![
        "setup".to_owned(),
        "--store".to_owned(),
        store.to_string_lossy().into_owned(),
    ];
    if let Some(b) = backend {
        args.extend(["--backend".to_owned(), b.as_str().to_owned()]);
    }
    let (uid, gid) = (account.uid, account.gid);
    let mut cmd = Cmd::new(exe)
        .args(&args)
        .configure(|c| {
            // std drops the supplementary groups when a uid is set.
            c.uid(uid)
                .gid(gid)
                .current_dir(store)
                .env_clear()
                .env("HOME", &account.home)
                .env("USER", &account.name)
                .env("LOGNAME", &account.name)
                .env("PATH", "/usr/local/bin:/usr/bin:/bin");
            if let Some(socket) = std::env::var_os("BYTEBACK_LOG_SOCKET") {
                c.env("BYTEBACK_LOG_SOCKET", socket);
            }
        })
        .into_command();
    let status = cmd
        .status()
        .map_err(|e| Error::Command(format!("cannot run setup as {}: {e}", account.name)))?;
    // Its own error line was printed; its exit status says which.
    Ok(status.code().map_or(1, |c| u8::try_from(c).unwrap_or(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        for good in ["byteback", "_bb", "backup-2", "b_b"] {
            assert!(check_user_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Byteback", "2bb", "-x", "a b", "a:b", &"x".repeat(33)] {
            assert!(check_user_name(bad).is_err(), "{bad}");
        }
    }
}
