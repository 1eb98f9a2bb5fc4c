//! A window in which a push-only client's key may read its history back.
//!
//! A key enrolled `--push-only` backs up but cannot list, restore or
//! verify, so that whoever takes the client machine over cannot read the
//! old versions of its files either. When its owner does need a restore,
//! the administrator opens a window on the server (`byteback-server
//! grant-restore --client NAME --for 1h`); it is recorded here, beside the
//! client, as the time it ends (RFC 3339, an xattr among the client's
//! records, like the other records of `store`). Only that command, run as
//! the backup user, sets or clears it: nothing a key sends writes it, and
//! rsync's receiver writes inside `current/` only. The forced command
//! reads it before it consults the role table (`server::roles::in_effect`).
//! A record that cannot be read, or has ended, grants nothing.

use jiff::Timestamp;

use crate::error::Result;
use crate::names::ClientName;

use super::Store;

/// The record: the end of the window, as RFC 3339.
const GRANT_XATTR: &str = "user.byteback.restore-grant";

impl Store {
    /// Allows `client`'s push-only key to read until `until` (by
    /// `grant-restore` only).
    pub fn set_restore_grant(&self, client: &ClientName, until: Timestamp) -> Result<()> {
        self.set_client_mark(client, GRANT_XATTR, &until.to_string())
    }

    /// The end of `client`'s restore window, if one was recorded (it may
    /// have passed: compare with the time).
    pub fn restore_grant(&self, client: &ClientName) -> Option<Timestamp> {
        self.client_mark(client, GRANT_XATTR)?.parse().ok()
    }

    /// Whether `client`'s restore window is open at `now`.
    pub fn restore_granted(&self, client: &ClientName, now: Timestamp) -> bool {
        self.restore_grant(client).is_some_and(|until| now < until)
    }

    /// Ends `client`'s restore window (`grant-restore --revoke`).
    pub fn revoke_restore_grant(&self, client: &ClientName) {
        self.clear_client_mark(client, GRANT_XATTR);
    }
}

#[cfg(test)]
mod tests {
    use crate::store::ServerConfig;
    use crate::store::fake::FakeStore;

    #[test]
    fn a_grant_is_open_until_it_ends_or_is_revoked() {
        let fake = FakeStore::new(1 << 30, ServerConfig::default());
        let client = fake.client("host.example");
        let at = |t: &str| t.parse::<jiff::Timestamp>().unwrap();
        assert!(
            !fake
                .store
                .restore_granted(&client, at("2026-01-01T00:00:00Z"))
        );
        let until = at("2026-01-01T01:00:00Z");
        fake.store.set_restore_grant(&client, until).unwrap();
        assert_eq!(fake.store.restore_grant(&client), Some(until));
        assert!(
            fake.store
                .restore_granted(&client, at("2026-01-01T00:59:59Z"))
        );
        assert!(!fake.store.restore_granted(&client, until));
        fake.store.revoke_restore_grant(&client);
        assert_eq!(fake.store.restore_grant(&client), None);
        assert!(
            !fake
                .store
                .restore_granted(&client, at("2026-01-01T00:00:00Z"))
        );
    }
}
