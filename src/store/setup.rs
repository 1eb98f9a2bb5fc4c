//! Preparing a directory to be a store: the checks and the configuration
//! file, shared by `byteback-server setup` and local destinations.

use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::sys::fs::{self, ensure_dir, write_atomic};

use super::{Backend, Store, server_config_template};

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
    // Checked before anything is written, in the store itself (the probes
    // are hidden names no client can have).
    super::backend::for_kind(backend).check_store(store, store)?;
    let state = Store::state_dir_of(store);
    ensure_dir(&state, 0o700)?;
    ensure_dir(&state.join("locks"), 0o700)?;
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
