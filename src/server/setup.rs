//! `byteback-server setup` and `new-client`: preparing the store and
//! admitting clients.

use std::path::Path;

use crate::error::{Error, Result};
use crate::names::ClientName;
use crate::server::keys::{self, Plan, PublicKey};
use crate::store::{Backend, Store};
use crate::sys::fs::{self, human_bytes};
use crate::sys::user;

/// Checks the store and writes its configuration; safe to run again.
pub fn run(store: &Path, backend: Option<Backend>) -> Result<()> {
    super::refuse_root()?;
    let prepared = crate::store::setup::prepare(store, backend)?;
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
    println!(
        "Backend: {} (checked as {})",
        crate::store::backend::for_kind(prepared.backend).describe(),
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
