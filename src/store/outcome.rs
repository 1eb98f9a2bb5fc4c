//! The outcome of each client's last request that mattered (a transfer, a
//! snapshot, a restore, or a refusal): when, which, and why it failed.
//! Kept in an xattr of the client's directory, which needs no data space,
//! so it is recorded even on a full disk; read by `byteback-server status`.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::names::ClientName;

use super::Store;

const XATTR: &str = "user.byteback.last";

/// What happened the last time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// When it ended, RFC 3339 UTC.
    pub time: Timestamp,
    /// The request: `receive`, `complete`, `incremental`, `send`, `refused`,
    /// or `snapshot` (one taken by hand on the server).
    pub request: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// Why not, if it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Store {
    /// Records a client's last outcome (failing to is only a warning).
    pub fn record_outcome(&self, client: &ClientName, outcome: &Outcome) {
        let Ok(mut text) = serde_json::to_string(outcome) else {
            return;
        };
        // Keep within what an xattr comfortably holds.
        if text.len() > 3000 {
            let mut short = outcome.clone();
            short.reason = short
                .reason
                .map(|r| r.chars().take(1000).collect::<String>());
            text = serde_json::to_string(&short).unwrap_or_default();
        }
        if let Err(e) = self.set_record(client, XATTR, text.as_bytes()) {
            crate::report::warn(format_args!("cannot record the outcome: {e}"));
        }
    }

    /// The client's last recorded outcome, if any.
    pub fn last_outcome(&self, client: &ClientName) -> Option<Outcome> {
        let mut buf = vec![0u8; 4096];
        let len = self.record(client, XATTR, &mut buf)?;
        serde_json::from_slice(&buf[..len]).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ServerConfig;
    use crate::store::fake::FakeStore;

    #[test]
    fn outcomes_round_trip() {
        let fake = FakeStore::new(1 << 30, ServerConfig::default());
        let client = fake.client("host.example");
        assert_eq!(fake.store.last_outcome(&client), None);
        let failed = Outcome {
            time: "2026-11-28T03:00:00Z".parse().unwrap(),
            request: "receive".into(),
            ok: false,
            reason: Some("rsync exit 11".into()),
        };
        fake.store.record_outcome(&client, &failed);
        assert_eq!(fake.store.last_outcome(&client), Some(failed));
        let huge = Outcome {
            reason: Some("x".repeat(10_000)),
            time: "2026-11-28T03:00:00Z".parse().unwrap(),
            request: "refused".into(),
            ok: false,
        };
        fake.store.record_outcome(&client, &huge);
        assert_eq!(
            fake.store
                .last_outcome(&client)
                .unwrap()
                .reason
                .unwrap()
                .len(),
            1000
        );
    }
}
