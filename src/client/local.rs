//! A store on this machine: `byteback backup --destination /var/backups/x`
//! backs up with no SSH and no server user, through the same store code —
//! naming, snapshots, pruning, listing and restore — as a server.

use std::path::Path;

use crate::error::{Error, Result};
use crate::names::ClientName;
use crate::store::Store;

/// A local store and this machine's name in it.
#[derive(Debug)]
pub struct Local {
    pub store: Store,
    pub client: ClientName,
}

/// Opens the store at `root` for the machine called `name`. With `create`,
/// the store (with the backend its filesystem calls for) and the machine's
/// space in it are made on first use.
pub fn open(root: &Path, name: &str, create: bool) -> Result<Local> {
    let client = ClientName::new(name)?;
    if create {
        if !root.exists() {
            std::fs::create_dir_all(root).map_err(|e| Error::io("cannot create store", root, e))?;
            std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .map_err(|e| Error::io("cannot chmod", root, e))?;
        }
        crate::store::setup::prepare(root, None)?;
    } else if !Store::config_path_of(root).exists() {
        return Err(Error::NotFound(format!(
            "there is no byteback store at {} yet: back up into it first",
            root.display()
        )));
    }
    let store = crate::lifecycle::open_store(root)?;
    if create && !store.has_client(&client) {
        store.add_client(&client)?;
    }
    if !store.has_client(&client) {
        return Err(Error::NotFound(format!(
            "the store at {} has no backups of {client}",
            root.display()
        )));
    }
    Ok(Local { store, client })
}
