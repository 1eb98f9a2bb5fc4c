//! Where a client went: `byteback-server move-client` copies a client's
//! history to another server, has that server adopt it, and then records
//! here, beside the client, where it is now. From then on this server
//! keeps the client's history (until `move-client --retire` deletes it)
//! but answers its backups with a redirect (see
//! [`crate::lifecycle::ClientBackups`]). Only `move-client` sets it; it
//! goes with the client's directory.
//!
//! On the server the client moved to, the other half: which primary handed
//! a client over (`replica-adopt`), so that primary's `replica-state` can
//! tell it how far the client's backups there have come.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::names::ClientName;

use super::Store;

/// The record of a moved client, an xattr among its records.
const MOVED_XATTR: &str = "user.byteback.moved";

/// The record of an adopted client: the primary it came from.
const ADOPTED_XATTR: &str = "user.byteback.adopted";

/// Where a moved client's backups are now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    /// The new server, `USER@HOST[:PORT]`, as `move-client --to` named it.
    pub to: String,
    /// When the new server adopted it: its backups there from then on are
    /// what `--retire` waits for.
    pub at: Timestamp,
    /// The new server's host keys, `TYPE BASE64` each, as this server's
    /// replication trusts them (its known_hosts), for the client to trust.
    pub host_keys: Vec<String>,
}

impl Store {
    /// Records that `client` moved (by `move-client` only).
    pub fn set_moved(&self, client: &ClientName, moved: &Moved) -> Result<()> {
        let text = serde_json::to_string(moved)
            .map_err(|e| Error::Command(format!("cannot write the move record: {e}")))?;
        self.set_record(client, MOVED_XATTR, text.as_bytes())
    }

    /// Where `client` moved, if it did.
    pub fn moved(&self, client: &ClientName) -> Option<Moved> {
        let mut buf = vec![0u8; 16 * 1024];
        let len = self.record(client, MOVED_XATTR, &mut buf)?;
        serde_json::from_slice(&buf[..len]).ok()
    }

    /// Records that `client` was handed over by `primary` (`replica-adopt`).
    pub fn set_adopted_from(&self, client: &ClientName, primary: &ClientName) -> Result<()> {
        self.set_client_mark(client, ADOPTED_XATTR, primary.as_str())
    }

    /// The primary that handed `client` over, if one did.
    pub fn adopted_from(&self, client: &ClientName) -> Option<String> {
        self.client_mark(client, ADOPTED_XATTR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ServerConfig;
    use crate::store::fake::FakeStore;

    #[test]
    fn move_records_round_trip() {
        let fake = FakeStore::new(1 << 30, ServerConfig::default());
        let client = fake.client("host.example");
        assert_eq!(fake.store.moved(&client), None);
        let moved = Moved {
            to: "bb@new.example:2222".into(),
            at: "2026-11-28T03:00:00Z".parse().unwrap(),
            host_keys: vec![format!("ssh-rsa {}", "A".repeat(716))],
        };
        fake.store.set_moved(&client, &moved).unwrap();
        assert_eq!(fake.store.moved(&client), Some(moved));
        assert_eq!(fake.store.adopted_from(&client), None);
        let primary = ClientName::new("old").unwrap();
        fake.store.set_adopted_from(&client, &primary).unwrap();
        assert_eq!(fake.store.adopted_from(&client).as_deref(), Some("old"));
    }
}
