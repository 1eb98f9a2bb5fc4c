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

/// `--hardened`: what hardened mode needs besides the user.
#[derive(Debug, Clone, Default)]
pub struct Hardening {
    /// The installed helper [default: next to this program].
    pub helper: Option<PathBuf>,
}

/// Runs the root steps, then the user's own setup, then (with `hardened`)
/// hardened mode's; its exit status.
pub fn run(
    name: &str,
    store: Option<&Path>,
    backend: Option<Backend>,
    hardened: Option<Hardening>,
) -> Result<u8> {
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
    let code = run_as_user(&account, &store, backend)?;
    match hardened {
        Some(h) if code == 0 => harden(&account, &store, &h).map(|()| 0),
        _ => Ok(code),
    }
}

/// Hardened mode (see [`crate::server::privileged`]): root's file naming
/// the store, user and policy; the sudo rule; every client's directory
/// root's and sticky, and the snapshots already there root's. Each step
/// looks first, so running it again changes nothing.
fn harden(account: &PasswdEntry, store_root: &Path, h: &Hardening) -> Result<()> {
    use crate::server::privileged::{self, HardenedConfig, Policy};
    let store = crate::lifecycle::open_store(store_root)?;
    if store.config.backend != Backend::Btrfs {
        return Err(Error::Unsupported(format!(
            "hardened mode is for btrfs stores; {} is a {} store",
            store_root.display(),
            store.config.backend.as_str()
        )));
    }
    let helper = match &h.helper {
        Some(p) => std::path::absolute(p).map_err(|e| Error::io("cannot resolve", p, e))?,
        None => std::env::current_exe()
            .map_err(|e| Error::Command(format!("cannot tell where byteback-server is: {e}")))?
            .with_file_name("byteback-privileged"),
    };
    check_helper(&helper)?;
    println!(
        "Hardened: helper {} (root's, writable by root only)",
        helper.display()
    );

    let path = privileged::config_path(&account.name);
    let existing = crate::config::load::<HardenedConfig>(&path)?;
    let cfg = HardenedConfig {
        user: account.name.clone(),
        uid: account.uid,
        gid: account.gid,
        store: store_root.to_owned(),
        helper: helper.clone(),
        // The policy is root's once written: the store's server.toml is the
        // user's, so later edits there do not loosen it.
        policy: existing
            .as_ref()
            .map_or_else(|| Policy::of(&store.config), |c| c.policy),
    };
    if existing.as_ref() == Some(&cfg) {
        println!("Hardened: {} (kept)", path.display());
    } else {
        let dir = Path::new(privileged::CONFIG_DIR);
        ensure_dir(dir.parent().unwrap_or(dir), 0o755)?;
        ensure_dir(dir, 0o755)?;
        let text = format!(
            "# Hardened mode of the backup user {}, written by `byteback-server setup --user {} --hardened`.\n\
             # byteback-privileged serves only this user (uid), only this store, and enforces this\n\
             # policy whatever the store's server.toml says; the server uses it too.\n{}",
            account.name,
            account.name,
            toml::to_string(&cfg).map_err(|e| Error::Command(format!("cannot write TOML: {e}")))?
        );
        crate::sys::fs::write_atomic(&path, text.as_bytes(), 0o644)?;
        println!("Hardened: {} (written)", path.display());
    }
    let p = &cfg.policy;
    println!(
        "Hardened: policy min_free_percent = {}, target_free_percent = {}, min_age = \"{}\", min_snapshot_interval = \"{}\" (edit {} to change it)",
        p.min_free_percent,
        p.target_free_percent,
        p.min_age,
        p.min_snapshot_interval,
        path.display()
    );

    write_sudoers(&account.name, &helper)?;

    let (mut dirs, mut snapshots) = (0, 0);
    let root = rustix::fs::open(
        store_root,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::NOFOLLOW,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Error::io("cannot open", store_root, e.into()))?;
    for client in store.clients()? {
        let dir = rustix::fs::openat(
            &root,
            client.as_str(),
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::NOFOLLOW,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| Error::io("cannot open", &store.client_dir(&client), e.into()))?;
        use std::os::fd::AsFd;
        if privileged::harden_client_dir(dir.as_fd(), &cfg)? {
            dirs += 1;
        }
        snapshots += privileged::adopt_snapshots(dir.as_fd())?;
    }
    println!(
        "Hardened: {} clients; made root's and sticky: {dirs} client directories, {snapshots} snapshots",
        store.clients()?.len()
    );
    println!(
        "Hardened mode is on: {} takes and deletes snapshots only through `sudo -n {}`, which makes them root's and read-only and deletes only what the policy deletes next; `prune --force`, `snapshot --at` and `remove-client` of data are root's business now.",
        account.name,
        helper.display()
    );
    Ok(())
}

/// The helper runs as root for the backup user: it, and every directory
/// above it, must be root's and writable by root only, or whoever could
/// replace it would be root.
fn check_helper(helper: &Path) -> Result<()> {
    let ok_chars = helper.to_str().is_some_and(|p| {
        p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._+-".contains(c))
    });
    if !ok_chars {
        return Err(Error::Usage(format!(
            "helper path {} has characters a sudo rule cannot hold: install it under a plain path such as /usr/local/bin/byteback-privileged",
            helper.display()
        )));
    }
    let meta = std::fs::symlink_metadata(helper).map_err(|e| {
        Error::Config(format!(
            "the privileged helper {} is missing ({e}): install it (./install.sh does) or pass --helper PATH",
            helper.display()
        ))
    })?;
    if !meta.is_file() || meta.mode() & 0o111 == 0 {
        return Err(Error::Config(format!(
            "{} is not an executable file (a symlink?): pass the helper's real path with --helper",
            helper.display()
        )));
    }
    for p in helper.ancestors() {
        let m = std::fs::symlink_metadata(p).on("cannot stat", p)?;
        crate::server::privileged::check_root_only(p, &m)
            .map_err(|e| Error::Config(e.to_string().replace("refused: ", "hardened mode: ")))?;
    }
    Ok(())
}

/// `/etc/sudoers.d/byteback-<user>`: the user may run the helper as root,
/// without a password, and nothing else; checked with `visudo -cf` before
/// it is put in place.
fn write_sudoers(name: &str, helper: &Path) -> Result<()> {
    let path = PathBuf::from(format!("/etc/sudoers.d/byteback-{name}"));
    let text = format!(
        "# byteback hardened mode, written by `byteback-server setup --user {name} --hardened`:\n\
         # the backup user {name} may run byteback's privileged helper as root, and nothing else.\n\
         {name} ALL=(root) NOPASSWD: {}\n",
        helper.display()
    );
    if Cmd::new("visudo").arg("--version").run().is_err() {
        return Err(Error::Unsupported(
            "hardened mode needs sudo (and its visudo): apt-get install sudo".into(),
        ));
    }
    if std::fs::read_to_string(&path).is_ok_and(|t| t == text) {
        println!("Hardened: {} (kept)", path.display());
        return Ok(());
    }
    ensure_dir(Path::new("/etc/sudoers.d"), 0o755)?;
    // sudo ignores files in sudoers.d whose names hold a '.', so the
    // candidate can never be read half-written or before it is checked.
    let candidate = PathBuf::from(format!("/etc/sudoers.d/.byteback-{name}.new"));
    crate::sys::fs::write_atomic(&candidate, text.as_bytes(), 0o440)?;
    if let Err(e) = Cmd::new("visudo").arg("-cf").arg(&candidate).run() {
        let _ = std::fs::remove_file(&candidate);
        return Err(Error::Command(format!(
            "the sudo rule did not pass visudo -cf: {e}"
        )));
    }
    std::fs::rename(&candidate, &path).on("cannot put in place", &path)?;
    println!("Hardened: {} (written; visudo -cf: ok)", path.display());
    Ok(())
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
        retry_on_lock(|| Cmd::new("useradd").args(argv))?;
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
        retry_on_lock(|| Cmd::new("usermod").args(["-s", SHELL, name]))?;
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
        retry_on_lock(|| Cmd::new("usermod").args(["-p", "*", name]))?;
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
/// lock on /etc/passwd or /etc/group; a moment later they succeed. They say
/// so by status: 1 ("can't update password file") or 10 ("can't update
/// group file"), as shadow-utils documents.
fn retry_on_lock(mut command: impl FnMut() -> Cmd) -> Result<()> {
    const PASSWD_BUSY: i32 = 1;
    const GROUP_BUSY: i32 = 10;
    let mut attempt = 0;
    loop {
        let cmd = command();
        let line = cmd.display();
        let out = cmd.output()?;
        match out.status.code() {
            Some(0) => return Ok(()),
            Some(PASSWD_BUSY | GROUP_BUSY) if attempt < 50 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            _ => return Err(Error::Command(crate::exec::failure(&line, &out))),
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
    match Cmd::new("systemctl")
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
