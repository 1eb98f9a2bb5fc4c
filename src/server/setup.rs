//! `byteback-server setup` and `new-client`: preparing the store and
//! admitting clients.

use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::names::ClientName;
use crate::server::keys::{self, Plan, PublicKey};
use crate::store::{SERVER_CONFIG_TEMPLATE, Store, btrfs};
use crate::sys::fs::{self, ensure_dir, write_atomic};
use crate::sys::user;

/// Checks the store and writes its configuration; safe to run again.
pub fn run(store: &Path) -> Result<()> {
    super::refuse_root()?;
    let meta = std::fs::metadata(store).on("cannot use store", store)?;
    if !meta.is_dir() {
        return Err(Error::Usage(format!(
            "store {} is not a directory",
            store.display()
        )));
    }
    let mount = fs::mount_of(store);
    if !fs::is_btrfs(store)? {
        let kind = mount.as_ref().map_or("unknown", |m| m.fs_type.as_str());
        return Err(Error::Unsupported(format!(
            "store {} is on {kind}, not btrfs: byteback needs btrfs for its snapshots; mount a btrfs filesystem there (mkfs.btrfs, then mount it with -o user_subvol_rm_allowed)",
            store.display()
        )));
    }
    let rm_allowed = mount.as_ref().is_some_and(|m| {
        m.super_options
            .split(',')
            .any(|o| o == "user_subvol_rm_allowed")
    });
    if !rm_allowed {
        let at = mount.as_ref().map_or(store, |m| m.mount_point.as_path());
        return Err(Error::Unsupported(format!(
            "the btrfs at {} is mounted without user_subvol_rm_allowed, so the backup user could never delete old snapshots: add user_subvol_rm_allowed to its options in /etc/fstab (e.g. `UUID=... {} btrfs defaults,user_subvol_rm_allowed 0 0`) and run `mount -o remount {}`",
            at.display(),
            at.display(),
            at.display()
        )));
    }
    let state = Store::state_dir_of(store);
    ensure_dir(&state, 0o700)?;
    ensure_dir(&state.join("locks"), 0o700)?;
    check_subvolumes(&state)?;
    let config_path = Store::config_path_of(store);
    let config_note = if config_path.exists() {
        // Re-running keeps the administrator's settings, but they must parse.
        Store::open(store)?;
        "kept"
    } else {
        write_atomic(&config_path, SERVER_CONFIG_TEMPLATE.as_bytes(), 0o644)?;
        "written"
    };
    let space = fs::space(store)?;
    let account = user::current();
    println!(
        "Store: {} (btrfs, {} free of {})",
        store.display(),
        human_bytes(space.free_bytes),
        human_bytes(space.total_bytes)
    );
    println!(
        "Subvolumes: the user {} can create and delete them",
        account.name
    );
    println!("Config: {} ({config_note})", config_path.display());
    match account.shell.as_deref() {
        Some("/bin/sh") | Some("/usr/bin/sh") | Some("/bin/dash") | None => {}
        Some(shell) => println!(
            "Note: {}'s login shell is {shell}; /bin/sh is recommended, since shells like bash read start-up files before the forced command runs (chsh -s /bin/sh {})",
            account.name, account.name
        ),
    }
    println!(
        "Ready: add each client with `byteback-server new-client <the key its byteback setup printed>`."
    );
    Ok(())
}

/// Creates and deletes a scratch subvolume to prove the user may do both.
fn check_subvolumes(state: &Path) -> Result<()> {
    let probe = state.join(format!("setup-check-{}", std::process::id()));
    btrfs::create_subvolume(&probe).map_err(|e| {
        Error::Unsupported(format!(
            "cannot create btrfs subvolumes in {}: {e}; the backup user must own the store",
            state.display()
        ))
    })?;
    btrfs::delete_subvolume(&probe).map_err(|e| {
        Error::Unsupported(format!(
            "cannot delete btrfs subvolumes in {}: {e}; mount the store with -o user_subvol_rm_allowed",
            state.display()
        ))
    })
}

/// Admits a client: backup space plus a confined key.
pub fn new_client(
    store_root: &Path,
    name: Option<&str>,
    from: Option<&str>,
    key_words: &[String],
) -> Result<()> {
    super::refuse_root()?;
    let key = PublicKey::from_words(key_words)?;
    let name = match name {
        Some(n) => n,
        None => key.suggested_name().ok_or_else(|| {
            Error::Usage(
                "the key has no comment to take the client's name from: pass --name NAME".into(),
            )
        })?,
    };
    let client = ClientName::new(name)?;
    let store = Store::open(store_root)?;
    let home = user::current().home.ok_or_else(|| {
        Error::Usage("cannot tell the backup user's home (for ~/.ssh/authorized_keys)".into())
    })?;
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| {
            Error::Command(format!(
                "cannot tell where byteback-server is installed: {e}"
            ))
        })?;
    let line = keys::authorized_line(&exe, store.root(), &client, from, &key)?;
    let authorized_keys = home.join(".ssh").join("authorized_keys");
    match keys::plan(&authorized_keys, &key, &client)? {
        Plan::AlreadyThere => {
            store.add_client(&client)?;
            println!("Client {client} already has this key; nothing to change.");
        }
        Plan::Append(existing) => {
            // Space first: a key that works for a client without space would
            // only produce errors.
            store.add_client(&client)?;
            keys::append(&authorized_keys, &existing, &line)?;
            store.log(&format!(
                "{client}: new client, key {}",
                key.fingerprint().unwrap_or_default()
            ));
        }
    }
    println!("Client setup for {client} done!");
    Ok(())
}

/// `1.5 GiB` and the like.
pub fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}
