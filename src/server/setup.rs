//! `byteback-server setup` and `new-client`: preparing the store and
//! admitting clients.

use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::names::ClientName;
use crate::server::keys::{self, Plan, PublicKey};
use crate::store::{Backend, Store, btrfs, plain, server_config_template};
use crate::sys::fs::{self, ensure_dir, write_atomic};
use crate::sys::user;

/// What [`prepare`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prepared {
    /// The store's backend.
    pub backend: Backend,
    /// Whether the config file was written now (or kept).
    pub config_written: bool,
}

/// Checks a store directory and writes its configuration if missing: the
/// backend is `requested`, else the one already configured, else btrfs on
/// btrfs and plain directories anywhere else. Safe to run again.
pub fn prepare(store: &Path, requested: Option<Backend>) -> Result<Prepared> {
    let meta = std::fs::metadata(store).on("cannot use store", store)?;
    if !meta.is_dir() {
        return Err(Error::Usage(format!(
            "store {} is not a directory",
            store.display()
        )));
    }
    let config_path = Store::config_path_of(store);
    let configured = if config_path.exists() {
        Some(Store::open(store)?.config.backend)
    } else {
        None
    };
    let backend = match (configured, requested) {
        (Some(have), Some(want)) if have != want => {
            return Err(Error::Usage(format!(
                "store {} already uses the {} backend; change `backend` in {} only for an empty store",
                store.display(),
                have.as_str(),
                config_path.display()
            )));
        }
        (Some(have), _) => have,
        (None, Some(want)) => want,
        (None, None) if fs::is_btrfs(store)? => Backend::Btrfs,
        (None, None) => Backend::Plain,
    };
    let state = Store::state_dir_of(store);
    match backend {
        Backend::Btrfs => check_btrfs(store)?,
        Backend::Plain => {}
    }
    ensure_dir(&state, 0o700)?;
    ensure_dir(&state.join("locks"), 0o700)?;
    match backend {
        Backend::Btrfs => check_subvolumes(&state)?,
        Backend::Plain => plain::check_filesystem(&state)?,
    }
    let config_written = configured.is_none();
    if config_written {
        write_atomic(
            &config_path,
            server_config_template(backend).as_bytes(),
            0o644,
        )?;
    }
    Ok(Prepared {
        backend,
        config_written,
    })
}

/// A btrfs store must be btrfs, and (for an unprivileged owner) mounted so
/// that its owner may delete subvolumes.
fn check_btrfs(store: &Path) -> Result<()> {
    let mount = fs::mount_of(store);
    if !fs::is_btrfs(store)? {
        let kind = mount.as_ref().map_or("unknown", |m| m.fs_type.as_str());
        return Err(Error::Unsupported(format!(
            "store {} is on {kind}, not btrfs: mount a btrfs filesystem there (mkfs.btrfs, then mount it with -o user_subvol_rm_allowed), or use the plain backend",
            store.display()
        )));
    }
    let rm_allowed = mount.as_ref().is_some_and(|m| {
        m.super_options
            .split(',')
            .any(|o| o == "user_subvol_rm_allowed")
    });
    if !rm_allowed && !rustix::process::geteuid().is_root() {
        let at = mount.as_ref().map_or(store, |m| m.mount_point.as_path());
        return Err(Error::Unsupported(format!(
            "the btrfs at {} is mounted without user_subvol_rm_allowed, so the backup user could never delete old snapshots: add user_subvol_rm_allowed to its options in /etc/fstab (e.g. `UUID=... {} btrfs defaults,user_subvol_rm_allowed 0 0`) and run `mount -o remount {}`",
            at.display(),
            at.display(),
            at.display()
        )));
    }
    Ok(())
}

/// Checks the store and writes its configuration; safe to run again.
pub fn run(store: &Path, backend: Option<Backend>) -> Result<()> {
    super::refuse_root()?;
    let prepared = prepare(store, backend)?;
    let config_path = Store::config_path_of(store);
    let config_note = if prepared.config_written {
        "written"
    } else {
        "kept"
    };
    let fs_type = fs::mount_of(store).map_or("unknown".to_owned(), |m| m.fs_type);
    let space = fs::space(store)?;
    let account = user::current();
    println!(
        "Store: {} ({fs_type}, {} free of {})",
        store.display(),
        human_bytes(space.free_bytes),
        human_bytes(space.total_bytes)
    );
    match prepared.backend {
        Backend::Btrfs => println!(
            "Backend: btrfs; the user {} can create and delete subvolumes",
            account.name
        ),
        Backend::Plain => println!(
            "Backend: plain directories; unchanged files are hard links between snapshots (on btrfs, snapshots would be instant and read-only)"
        ),
    }
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
