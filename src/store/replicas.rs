//! What this store's replicas hold, as it last heard from them: one small
//! JSON file per replica in `.byteback/replication/`, written atomically
//! by `byteback-server replicate` after each snapshot it sends. The
//! replica's own answer is the truth for replication itself; this record
//! serves pruning (which keeps snapshots not yet replicated) and `status`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::destination::Destination;
use crate::error::{Error, Result};
use crate::names::{ClientName, SnapshotName};
use crate::sys::fs::write_atomic;

use super::Store;

/// Where replication keeps its key, known hosts, records and lock.
pub fn dir_of(store: &Path) -> PathBuf {
    Store::state_dir_of(store).join("replication")
}

/// What one replica holds, as this store last heard: per client, the
/// newest snapshot it holds. Written atomically after every snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    /// The replica, `USER@HOST[:PORT]`.
    pub replica: String,
    /// When it last answered.
    pub checked: Option<String>,
    /// Client → its newest snapshot on the replica.
    pub clients: BTreeMap<String, String>,
}

impl Record {
    fn path(store: &Store, target: &Destination) -> PathBuf {
        let name: String = target
            .to_string()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        dir_of(store.root()).join(format!("replica-{name}.json"))
    }

    /// The record of `target` (empty if there is none or it is unreadable).
    pub fn load(store: &Store, target: &Destination) -> Record {
        std::fs::read_to_string(Self::path(store, target))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_else(|| Record {
                version: 1,
                replica: target.to_string(),
                ..Record::default()
            })
    }

    pub fn set(&mut self, client: &ClientName, newest: Option<&SnapshotName>) {
        self.checked = Some(Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
        match newest {
            Some(n) => self.clients.insert(client.to_string(), n.to_string()),
            None => self.clients.remove(client.as_str()),
        };
    }

    pub fn save(&self, store: &Store, target: &Destination) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Command(format!("cannot write JSON: {e}")))?;
        write_atomic(&Self::path(store, target), text.as_bytes(), 0o600)
    }

    /// The newest snapshot of `client` this replica holds, as last heard.
    pub fn newest(&self, client: &ClientName) -> Option<SnapshotName> {
        self.clients
            .get(client.as_str())
            .and_then(|n| SnapshotName::parse(n))
    }
}

/// Per configured replica, what it holds as last heard (for pruning and
/// status); empty when no replica is configured.
pub fn configured_records(store: &Store) -> Vec<Record> {
    store
        .config
        .replicate
        .to
        .iter()
        .filter_map(|t| t.parse::<Destination>().ok())
        .map(|t| Record::load(store, &t))
        .collect()
}

/// The newest snapshot of `client` that every configured replica holds
/// (`None` if some holds none); only meaningful when `records` is not empty.
pub fn replicated_everywhere(records: &[Record], client: &ClientName) -> Option<SnapshotName> {
    let mut newest: Option<SnapshotName> = None;
    for record in records {
        let theirs = record.newest(client)?;
        if newest.as_ref().is_none_or(|n| theirs.time() < n.time()) {
            newest = Some(theirs);
        }
    }
    newest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(clients: &[(&str, &str)]) -> Record {
        Record {
            version: 1,
            replica: "r".into(),
            checked: None,
            clients: clients
                .iter()
                .map(|(c, n)| (c.to_string(), n.to_string()))
                .collect(),
        }
    }

    #[test]
    fn replicated_everywhere_is_the_oldest_of_the_replicas_newest() {
        let a = ClientName::new("a").unwrap();
        let b = ClientName::new("b").unwrap();
        let one = record(&[("a", "2026-11-26T03:00:00Z"), ("b", "2026-11-26T03:00:00Z")]);
        let two = record(&[("a", "2026-11-25T03:00:00Z")]);
        assert_eq!(
            replicated_everywhere(std::slice::from_ref(&one), &a)
                .unwrap()
                .as_str(),
            "2026-11-26T03:00:00Z"
        );
        assert_eq!(
            replicated_everywhere(&[one.clone(), two.clone()], &a)
                .unwrap()
                .as_str(),
            "2026-11-25T03:00:00Z"
        );
        assert_eq!(replicated_everywhere(&[one, two], &b), None);
    }
}
