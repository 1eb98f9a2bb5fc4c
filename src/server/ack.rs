//! `byteback-server ack --client NAME SNAPSHOT`: a person has looked at a
//! snapshot marked suspect (see [`crate::store::suspect`]) and clears its
//! mark; the snapshots it pinned may be pruned again as any other. It is an
//! administrator's command, run as the backup user on the server: no key
//! role has a request that reaches it (`server/roles.rs`), so nothing a
//! client sends clears a mark.

use std::path::Path;

use crate::error::{Error, Result};
use crate::names::{ClientName, SnapshotName};

/// Clears the mark of `snapshot` of client `name`. A client with no data
/// here, a name that is no snapshot name, or a snapshot with no mark is a
/// one-line error.
pub fn run(store_root: &Path, name: &str, snapshot: &str) -> Result<()> {
    super::refuse_root()?;
    let store = crate::lifecycle::open_store(store_root)?;
    super::run_as_owner(&store)?;
    let client = ClientName::new(name)?;
    if !store.has_data(&client) {
        return Err(Error::NotFound(format!(
            "no client {client} in {}: `byteback-server clients` lists them",
            store.root().display()
        )));
    }
    let Some(snapshot) = SnapshotName::parse(snapshot) else {
        return Err(Error::Usage(format!(
            "{:?} is not a snapshot name: `byteback-server status --client {client}` names the suspect ones",
            snapshot
        )));
    };
    // The lifecycle adds marks under the client's lock: not in between.
    let _lock = store.lock_client(&client, store.config.lock_wait.to_std())?;
    let marks = store.suspect_marks(&client)?;
    let Some(mark) = store.clear_suspect_mark(&client, &snapshot)? else {
        let standing: Vec<String> = marks.into_iter().map(|m| m.snapshot).collect();
        return Err(Error::NotFound(format!(
            "snapshot {snapshot} of {client} is not marked suspect ({}): nothing to acknowledge",
            match standing.is_empty() {
                true => "it has no suspect marks".to_owned(),
                false => format!("its marks stand on {}", standing.join(", ")),
            }
        )));
    };
    let pinned = match mark.pinned.is_empty() {
        true => "none".to_owned(),
        false => mark.pinned.join(", "),
    };
    store.warn(&format!(
        "{client}: suspect mark of {snapshot} acknowledged by ack ({}); released its pins: {pinned}",
        mark.reason
    ));
    println!(
        "Cleared the suspect mark of {client} {snapshot}; the snapshots it pinned ({pinned}) are pruned again as any other."
    );
    Ok(())
}
