//! `byteback-server clients`, `remove-client`, `rename-client` and
//! `grant-restore`: a client's life on the server after `new-client`
//! (whose `--replace-key` is in [`super::setup`]).
//!
//! A client is two things kept apart: its line in authorized_keys (which
//! key may act as it) and its directory in the store (its history). Each
//! command changes both under the same locks — the authorized_keys edit
//! lock, then the client's own locks (so no backup, snapshot or restore of
//! it runs meanwhile, and one that is running makes the command refuse),
//! then the prune lock (so no prune moves its snapshots meanwhile) — and in
//! the order that fails safe: the key goes first, so a client being removed
//! can never log in to half-deleted data, and a rename undoes its
//! directory move if the key cannot follow.

use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::names::ClientName;
use crate::prune;
use crate::server::keys::{self, KeyLine};
use crate::store::Store;
use crate::sys::lock::Lock;

/// One row of `clients`: an enrolled client, or data without a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientRow {
    /// The client's name.
    pub client: String,
    /// Whether the store holds data for it but no key may act as it.
    pub orphaned: bool,
    /// The key's type, e.g. `ssh-ed25519`.
    pub key_type: Option<String>,
    /// The key's SHA256 fingerprint, as `ssh-keygen -l` prints it.
    pub fingerprint: Option<String>,
    /// The key's comment.
    pub comment: Option<String>,
    /// The addresses the key is accepted from (`from="..."`), if limited.
    pub from: Option<String>,
    /// Whether the line has `restrict` (no forwarding, pty or rc files).
    pub restrict: bool,
    /// Whether the key can only run `byteback-server receive` for this
    /// client (the forced command new-client writes).
    pub receive_only: bool,
    /// What its key may do: `client`, `replica` (a primary replicating
    /// here), `read-only` or `push-only`; for data without a key line of its own, the
    /// replica key it arrived through (`replicated from PRIMARY`).
    pub role: String,
    /// Whether the store holds a directory for it.
    pub data: bool,
    /// How many snapshots it has.
    pub snapshots: usize,
}

impl ClientRow {
    /// What limits the key, in words: `restrict`, `receive only`, `from=...`.
    fn restrictions(&self) -> String {
        if self.orphaned {
            return "orphaned: data without a key line".into();
        }
        if self.key_type.is_none() {
            return self.role.clone();
        }
        let mut words = Vec::new();
        words.push(if self.restrict {
            "restrict"
        } else {
            "NOT restricted (no `restrict`)"
        });
        words.push(match (self.receive_only, self.role.as_str()) {
            (false, _) => "NOT byteback's own forced command",
            (true, "replica") => keys::KeyRole::Replica.describe(),
            (true, "read-only") => keys::KeyRole::ReadOnly.describe(),
            (true, "push-only") => keys::KeyRole::PushOnly { granted: false }.describe(),
            (true, "legacy") => keys::KeyRole::Legacy.describe(),
            (true, _) => keys::KeyRole::Client.describe(),
        });
        let from = self.from.as_ref().map(|f| format!("from={f}"));
        let mut text = words.join(", ");
        if let Some(f) = from {
            text.push_str(", ");
            text.push_str(&f);
        }
        text
    }

    fn data_words(&self) -> String {
        match (self.data, self.snapshots) {
            (false, _) => "no data".into(),
            (true, 1) => "1 snapshot".into(),
            (true, n) => format!("{n} snapshots"),
        }
    }
}

/// The key lines of this store's clients (names that are not valid client
/// names are listed as they are written).
fn lines_of_store(text: &str, store: &Store) -> Vec<KeyLine> {
    keys::client_lines(text)
        .into_iter()
        .filter(|l| l.serves(store.root()))
        .collect()
}

/// Every client of the store: its key lines first, by name, then the
/// directories no key line names.
pub fn gather(store: &Store, authorized_keys: &str) -> Result<Vec<ClientRow>> {
    let snapshots = |name: &str| {
        ClientName::new(name)
            .ok()
            .filter(|c| store.has_data(c))
            .map(|c| store.snapshots(&c).map(|s| s.len()))
            .transpose()
    };
    let mut rows = Vec::new();
    for line in lines_of_store(authorized_keys, store) {
        let count = snapshots(&line.client)?;
        rows.push(ClientRow {
            fingerprint: Some(line.key.sha256()?),
            key_type: Some(line.key.kind.clone()),
            comment: Some(line.key.comment.clone()),
            from: line.from.clone(),
            restrict: line.restrict,
            receive_only: line.receive_only,
            role: match line.role {
                keys::KeyRole::Client => "client",
                keys::KeyRole::Replica => "replica",
                keys::KeyRole::ReadOnly => "read-only",
                keys::KeyRole::PushOnly { .. } => "push-only",
                keys::KeyRole::Legacy => "legacy",
            }
            .to_owned(),
            data: count.is_some(),
            snapshots: count.unwrap_or(0),
            orphaned: false,
            client: line.client,
        });
    }
    rows.sort_by(|a, b| a.client.cmp(&b.client));
    for client in store.clients()? {
        if rows.iter().any(|r| r.client == client.as_str()) {
            continue;
        }
        // A primary's client, replicated here through its replica key.
        let via = client.split_replicated().map(|(p, _)| p).filter(|p| {
            rows.iter()
                .any(|r| r.client == *p && r.role == "replica" && r.key_type.is_some())
        });
        rows.push(ClientRow {
            snapshots: store.snapshots(&client)?.len(),
            client: client.to_string(),
            orphaned: via.is_none(),
            role: via.map_or("client".to_owned(), |p| format!("replicated from {p}")),
            key_type: None,
            fingerprint: None,
            comment: None,
            from: None,
            restrict: false,
            receive_only: false,
            data: true,
        });
    }
    Ok(rows)
}

/// The rows as a table: a header, then one line per client, the comment
/// (which may hold spaces) last.
pub fn render_text(rows: &[ClientRow]) -> String {
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let dash = || "-".to_owned();
            [
                r.client.clone(),
                r.key_type.clone().unwrap_or_else(dash),
                r.fingerprint.clone().unwrap_or_else(dash),
                r.data_words(),
                r.restrictions(),
                r.comment
                    .clone()
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(dash),
            ]
        })
        .collect();
    let header = [
        "client",
        "key",
        "fingerprint",
        "data",
        "restrictions",
        "comment",
    ]
    .map(str::to_owned);
    let mut widths = header.clone().map(|h| h.len());
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&cells) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `byteback-server clients`.
pub fn list(store_root: &Path, json: bool) -> Result<()> {
    // The keys read are the running user's: they must be the store's.
    super::refuse_root()?;
    let store = crate::lifecycle::open_store(store_root)?;
    super::run_as_owner(&store)?;
    let text = keys::read(&keys::default_path()?)?;
    let rows = gather(&store, &text)?;
    if json {
        for row in &rows {
            let line = serde_json::to_string(row)
                .map_err(|e| Error::Command(format!("cannot write JSON: {e}")))?;
            println!("{line}");
        }
    } else if rows.is_empty() {
        println!(
            "No clients in {}: add one with `byteback-server new-client <its key>`.",
            store.root().display()
        );
    } else {
        print!("{}", render_text(&rows));
    }
    Ok(())
}

/// `byteback-server grant-restore`: opens (or with `revoke`, ends) the
/// window in which `name`'s push-only key may read back (see
/// [`crate::store::grant`]); a new window replaces the old one. A client
/// whose key is not push-only reads anyway: said, and recorded all the
/// same (it holds if the key is switched to push-only meanwhile).
pub fn grant_restore(
    store_root: &Path,
    name: &str,
    window: crate::config::Duration,
    revoke: bool,
) -> Result<()> {
    super::refuse_root()?;
    let store = crate::lifecycle::open_store(store_root)?;
    super::run_as_owner(&store)?;
    let client = ClientName::new(name)?;
    let text = keys::read(&keys::default_path()?)?;
    let line = lines_of_store(&text, &store)
        .into_iter()
        .find(|l| l.client == client.as_str());
    if line.is_none() && !store.has_client(&client) {
        return Err(unknown(&client, &store));
    }
    if revoke {
        store.revoke_restore_grant(&client);
        store.log(&format!(
            "{client}: restore window ended by grant-restore --revoke"
        ));
        println!("Client {client}'s key may no longer read back (if it is push-only).");
        return Ok(());
    }
    let now = jiff::Timestamp::now();
    let until = now
        .checked_add(window.0)
        .map_err(|e| Error::Usage(format!("--for {window}: {e}")))?;
    store.set_restore_grant(&client, until)?;
    store.log(&format!(
        "{client}: restore window opened by grant-restore until {until} ({window})"
    ));
    println!(
        "Client {client}'s key may list, restore and verify until {until} (for {window}); `byteback-server grant-restore --client {client} --revoke` ends it sooner."
    );
    match line.map(|l| l.role) {
        Some(keys::KeyRole::PushOnly { .. }) => {}
        Some(role) => println!(
            "Note: {client}'s key is not push-only ({}): it reads back without a window.",
            role.describe()
        ),
        None => println!("Note: {client} has no key line here."),
    }
    Ok(())
}

/// The error for a name that is neither a key line nor data in the store.
fn unknown(client: &ClientName, store: &Store) -> Error {
    Error::NotFound(format!(
        "no client {client} in {}: neither a key line nor data has that name (`byteback-server clients` lists them)",
        store.root().display()
    ))
}

/// The locks a change to a client holds besides the authorized_keys edit:
/// the client's own (and, for a rename, the new name's), then the prune
/// lock. Fields drop in order: the prune lock goes first.
pub(super) struct Held {
    _prune: Lock,
    _client: Vec<Lock>,
}

/// Takes the client's locks (refused at once if it is busy) and then the
/// prune lock (waiting up to `lock_wait` for a running prune).
pub(super) fn hold(store: &Store, clients: &[&ClientName]) -> Result<Held> {
    let mut locks = Vec::new();
    for client in clients {
        locks.extend(store.lock_client_idle(client)?);
    }
    let prune = prune::lock(store, store.config.lock_wait.to_std())?;
    Ok(Held {
        _prune: prune,
        _client: locks,
    })
}

/// `byteback-server remove-client`: the key line goes (at once: sshd reads
/// the file on every login), then, unless `keep_snapshots`, the client's
/// data, each snapshot deleted as pruning deletes one.
pub fn remove(store_root: &Path, name: &str, keep_snapshots: bool) -> Result<()> {
    super::refuse_root()?;
    let store = crate::lifecycle::open_store(store_root)?;
    super::run_as_owner(&store)?;
    let client = ClientName::new(name)?;
    if !store.powers().deletes_on_request && !keep_snapshots && store.has_data(&client) {
        return Err(Error::Refused(format!(
            "in hardened mode the backup user cannot delete history: `remove-client --keep-snapshots {client}` removes the key, and root deletes the data (btrfs subvolume delete)"
        )));
    }
    let mut authorized_keys = keys::Editing::open(&keys::default_path()?)?;
    let line = lines_of_store(authorized_keys.text(), &store)
        .into_iter()
        .find(|l| l.client == client.as_str());
    let data = store.has_data(&client);
    if line.is_none() && !data {
        return Err(unknown(&client, &store));
    }
    let _held = hold(&store, &[&client])?;
    if let Some(line) = &line {
        let text = keys::replace_line(authorized_keys.text(), line.index, None);
        authorized_keys.write(text)?;
        store.log(&format!(
            "{client}: key {} removed by remove-client",
            line.key.sha256().unwrap_or_default()
        ));
    }
    let key_words = if line.is_some() {
        "its key no longer logs in"
    } else {
        "it had no key line"
    };
    if !data {
        println!("Client {client} removed: {key_words}; it had no data in the store.");
        return Ok(());
    }
    let dir = store.client_dir(&client);
    if keep_snapshots {
        let count = store.snapshots(&client)?.len();
        store.log(&format!(
            "{client}: removed, data kept in {} (--keep-snapshots)",
            dir.display()
        ));
        println!(
            "Client {client} removed: {key_words}; its data stays in {} ({count} snapshot(s)). `byteback-server new-client --name {client} KEY` takes it up again; `byteback-server remove-client {client}` deletes it.",
            dir.display()
        );
        return Ok(());
    }
    let deleted = store.remove_client(&client)?;
    store.log(&format!(
        "{client}: removed with its {deleted} snapshot(s) and current"
    ));
    println!(
        "Client {client} removed: {key_words}, and its {deleted} snapshot(s) and current were deleted."
    );
    Ok(())
}

/// `byteback-server rename-client`: the directory (history, `current`, its
/// records) moves to the new name, then the key line's forced command
/// names it; if the key line cannot be written, the directory moves back.
pub fn rename(store_root: &Path, old: &str, new: &str) -> Result<()> {
    super::refuse_root()?;
    let store = crate::lifecycle::open_store(store_root)?;
    super::run_as_owner(&store)?;
    let old = ClientName::new(old)?;
    let new = ClientName::new(new)?;
    if old == new {
        return Err(Error::Usage(format!(
            "the client is already called {old}: give a new name"
        )));
    }
    let mut authorized_keys = keys::Editing::open(&keys::default_path()?)?;
    let lines = keys::client_lines(authorized_keys.text());
    let line = lines
        .iter()
        .find(|l| l.client == old.as_str() && l.serves(store.root()));
    let data = store.has_data(&old);
    if line.is_none() && !data {
        return Err(unknown(&old, &store));
    }
    match line.map(|l| l.role) {
        // Its name is the prefix of every copy it sent: renaming the key
        // alone would orphan them.
        Some(keys::KeyRole::Replica) => {
            return Err(Error::Refused(format!(
                "{old} is a replica key (a primary server): its name is part of its clients' names here ({old}{}CLIENT), so it is not renamed",
                crate::names::REPLICA_SEPARATOR
            )));
        }
        Some(keys::KeyRole::Client | keys::KeyRole::PushOnly { .. })
            if new.split_replicated().is_some() =>
        {
            return Err(Error::Usage(format!(
                "invalid client name {new}: names with '{}' are a replica's copies of a primary's clients",
                crate::names::REPLICA_SEPARATOR
            )));
        }
        _ => {}
    }
    // Names are unique over the whole file, as new-client keeps them.
    if lines.iter().any(|l| l.client == new.as_str()) {
        return Err(Error::Refused(format!(
            "client name {new} is already taken by a key in {}: choose another, or remove that client first",
            authorized_keys.path().display()
        )));
    }
    if std::fs::symlink_metadata(store.client_dir(&new)).is_ok() {
        return Err(Error::Refused(format!(
            "client name {new} is already taken: {} exists (`byteback-server clients` lists it)",
            store.client_dir(&new).display()
        )));
    }
    let _held = hold(&store, &[&old, &new])?;
    if data {
        store.rename_client(&old, &new)?;
    }
    if let Some(line) = line {
        let text = authorized_keys
            .text()
            .lines()
            .nth(line.index)
            .ok_or_else(|| Error::Command("authorized_keys changed while read".into()))
            .and_then(|l| keys::renamed_line(l, &old, &new))
            .map(|l| keys::replace_line(authorized_keys.text(), line.index, Some(&l)))
            .and_then(|text| authorized_keys.write(text));
        if let Err(e) = text {
            if data {
                // Put the directory back where the unchanged key expects it.
                if let Err(back) = store.rename_client(&new, &old) {
                    return Err(Error::Command(format!(
                        "{e}; and moving {} back to {} failed too ({back}): rename it by hand",
                        store.client_dir(&new).display(),
                        store.client_dir(&old).display()
                    )));
                }
            }
            return Err(e);
        }
    }
    let count = if data {
        store.snapshots(&new)?.len()
    } else {
        0
    };
    store.log(&format!("{old}: renamed {new} ({count} snapshot(s) moved)"));
    println!(
        "Client {old} is now {new}: {}, with its {count} snapshot(s). The client itself needs no change (the server names it); its `name` setting matters only to local backups.",
        if line.is_some() {
            "its key now backs up as the new name"
        } else {
            "it has no key line (orphaned data); enrol a key with `byteback-server new-client --name NEW KEY`"
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(client: &str) -> ClientRow {
        ClientRow {
            client: client.into(),
            orphaned: false,
            key_type: Some("ssh-ed25519".into()),
            fingerprint: Some("SHA256:abc".into()),
            comment: Some("root@a b".into()),
            from: Some("192.0.2.0/24".into()),
            restrict: true,
            receive_only: true,
            role: "client".into(),
            data: true,
            snapshots: 2,
        }
    }

    #[test]
    fn text_rows() {
        let orphan = ClientRow {
            client: "gone.example".into(),
            orphaned: true,
            key_type: None,
            fingerprint: None,
            comment: None,
            from: None,
            restrict: false,
            receive_only: false,
            role: "client".into(),
            data: true,
            snapshots: 1,
        };
        let replica = ClientRow {
            role: "replica".into(),
            data: false,
            ..row("primary")
        };
        let copy = ClientRow {
            client: "primary__c".into(),
            orphaned: false,
            role: "replicated from primary".into(),
            key_type: None,
            snapshots: 1,
            ..orphan.clone()
        };
        let text = render_text(&[replica, copy]);
        assert!(
            text.contains("restrict, replica of a primary, from=")
                && text.contains("replicated from primary"),
            "{text}"
        );
        let text = render_text(&[row("a.example"), orphan]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("client "), "{text}");
        assert!(
            lines[1].starts_with("a.example ")
                && lines[1].contains(" SHA256:abc ")
                && lines[1].contains("restrict, receive only, from=192.0.2.0/24")
                && lines[1].contains(" 2 snapshots ")
                && lines[1].ends_with(" root@a b"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("gone.example ")
                && lines[2].contains("orphaned: data without a key line")
                && lines[2].contains(" 1 snapshot "),
            "{text}"
        );
        let loose = ClientRow {
            restrict: false,
            receive_only: false,
            from: None,
            data: false,
            ..row("b.example")
        };
        let text = render_text(&[loose]);
        assert!(text.contains("NOT restricted"), "{text}");
        assert!(text.contains("no data"), "{text}");
    }

    #[test]
    fn json_rows_are_one_object_each() {
        let text = serde_json::to_string(&row("a.example")).unwrap();
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["client"], "a.example");
        assert_eq!(back["fingerprint"], "SHA256:abc");
        assert_eq!(back["receive_only"], true);
        assert_eq!(back["orphaned"], false);
        assert!(!text.contains('\n'));
    }
}
