//! `byteback-server setup` and `new-client`: preparing the store and
//! admitting clients.

use std::path::Path;

use crate::error::{Error, Result};
use crate::names::ClientName;
use crate::protocol::{Adopted, ClientKey};
use crate::server::keys::{self, KeyRole, Plan, PublicKey};
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
    let opened = crate::lifecycle::open_store(store)?;
    println!("Sandbox: {}", crate::server::probe::layers_line(&opened));
    match crate::server::probe::rsync_of_store(&opened) {
        Ok(facts) => println!("rsync: {facts}"),
        Err(e) => println!("WARNING: {e}"),
    }
    if prepared.backend == Backend::Btrfs {
        if let Some(w) = crate::sys::kernel::running_name_hash_warning() {
            println!("WARNING: {w}");
        }
    }
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

/// Admits a client: backup space plus a confined key. With `replace_key`,
/// gives a client already enrolled under that name its new key instead
/// (a reinstalled machine): its line is replaced, its history stays, and
/// its `from=` pattern too unless `from` gives another.
pub fn new_client(
    store_root: &Path,
    name: Option<&str>,
    from: Option<&str>,
    key_words: &[String],
    replace_key: bool,
    role: KeyRole,
    replica_clients: &[String],
) -> Result<()> {
    super::refuse_root()?;
    let key = PublicKey::from_words(key_words)?;
    // A replica key creates only the clients named here (see
    // `roles::ReplicaClients`), so the list is part of its enrolment.
    let replica_clients = match role {
        KeyRole::Replica if replica_clients.is_empty() => {
            return Err(Error::Usage(
                "a replica key needs --clients NAME,... : the primary's clients it may replicate here (its `byteback-server replicate --setup` prints the line with them)".into(),
            ));
        }
        KeyRole::Replica => replica_clients
            .iter()
            .map(|n| ClientName::new(n))
            .collect::<Result<std::collections::BTreeSet<_>>>()?,
        KeyRole::Client | KeyRole::ReadOnly | KeyRole::PushOnly { .. } | KeyRole::Legacy => {
            Default::default()
        }
    };
    let name = match name {
        Some(n) => n,
        None => key.suggested_name().ok_or_else(|| {
            Error::Usage(
                "the key has no comment to take the client's name from: pass --name NAME".into(),
            )
        })?,
    };
    let client = match role {
        // A primary's clients live under `PRIMARY__CLIENT`: its own name
        // must keep that mapping unambiguous.
        KeyRole::Replica => ClientName::primary(name)?,
        KeyRole::Client if name.contains(crate::names::REPLICA_SEPARATOR) => {
            return Err(Error::Usage(format!(
                "invalid client name {name:?}: names with '{}' are a replica's copies of a primary's clients (PRIMARY{}CLIENT); to let a client restore from its copy here, enrol its key with --read-only",
                crate::names::REPLICA_SEPARATOR,
                crate::names::REPLICA_SEPARATOR
            )));
        }
        _ => ClientName::new(name)?,
    };
    let store = crate::lifecycle::open_store(store_root)?;
    // A replica's key line names the primary, which has no space of its
    // own: its clients' spaces are made as their snapshots arrive.
    let add_space = |store: &Store| match role {
        KeyRole::Replica => {
            crate::server::roles::ReplicaClients::save(store, &client, &replica_clients)
        }
        _ => store.add_client(&client),
    };
    let exe = server_exe()?;
    // Checked before anything is written.
    keys::authorized_line(&exe, store.root(), &client, from, &key, role)?;
    let mut authorized_keys = keys::Editing::open(&keys::default_path()?)?;
    match keys::plan(
        authorized_keys.text(),
        authorized_keys.path(),
        &key,
        &client,
        replace_key,
    )? {
        Plan::AlreadyThere => {
            // The same key in another role: switched only on request
            // (`--replace-key`, which replaces the client's line), so that
            // enrolling again never loosens a key by accident.
            let text = authorized_keys.text().to_owned();
            let old = keys::client_lines(&text)
                .into_iter()
                .find(|l| l.key.blob == key.blob && l.client == client.as_str())
                .filter(|l| l.role != role);
            match old {
                None => {
                    add_space(&store)?;
                    println!("Client {client} already has this key; nothing to change.");
                }
                Some(old) if !replace_key => {
                    return Err(Error::Refused(format!(
                        "client {client} already has this key, as {} ({}); to make it {} ({}), run this again with --replace-key",
                        role_words(old.role),
                        old.role.describe(),
                        role_words(role),
                        role.describe()
                    )));
                }
                Some(old) => {
                    let from = from.or(old.from.as_deref());
                    let line =
                        keys::authorized_line(&exe, store.root(), &client, from, &key, role)?;
                    add_space(&store)?;
                    authorized_keys.write(keys::replace_line(&text, old.index, Some(&line)))?;
                    store.log(&format!(
                        "{client}: key {} switched from {} to {}",
                        key.sha256().unwrap_or_default(),
                        role_words(old.role),
                        role_words(role)
                    ));
                    println!(
                        "Client {client}'s key is now {} ({}); it was {}.",
                        role_words(role),
                        role.describe(),
                        role_words(old.role)
                    );
                }
            }
        }
        Plan::Append => {
            let line = keys::authorized_line(&exe, store.root(), &client, from, &key, role)?;
            // Space first: a key that works for a client without space would
            // only produce errors.
            add_space(&store)?;
            let text = keys::with_line(authorized_keys.text(), &line);
            authorized_keys.write(text)?;
            store.log(&format!(
                "{client}: new client, key {}",
                key.sha256().unwrap_or_default()
            ));
        }
        Plan::Replace(old) => {
            if let Some(other) = old.store.as_ref().filter(|_| !old.serves(store.root())) {
                return Err(Error::Refused(format!(
                    "client {client}'s key serves the store {}, not {}: pass --store {}",
                    other.display(),
                    store.root().display(),
                    other.display(),
                )));
            }
            let from = from.or(old.from.as_deref());
            let line = keys::authorized_line(&exe, store.root(), &client, from, &key, role)?;
            add_space(&store)?;
            let text = keys::replace_line(authorized_keys.text(), old.index, Some(&line));
            authorized_keys.write(text)?;
            let fingerprint = |k: &PublicKey| k.sha256().unwrap_or_default();
            store.log(&format!(
                "{client}: key replaced, {} (was {})",
                fingerprint(&key),
                fingerprint(&old.key)
            ));
            println!(
                "Client {client} has a new key ({}); its old key ({}) no longer logs in, and its {} snapshot(s) stay.",
                fingerprint(&key),
                fingerprint(&old.key),
                store.snapshots(&client)?.len()
            );
        }
    }
    match role {
        KeyRole::Replica => println!(
            "Replica setup for primary {client} done! It may replicate {}; their snapshots arrive as {client}{}CLIENT.",
            replica_clients
                .iter()
                .map(ClientName::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            crate::names::REPLICA_SEPARATOR
        ),
        _ => println!("Client setup for {client} done!"),
    }
    Ok(())
}

/// A role as new-client's flags name it, for messages.
fn role_words(role: KeyRole) -> String {
    match role.flag() {
        Some(flag) => format!("a {flag} key"),
        None => "a client key".to_owned(),
    }
}

/// This program, as its key lines name it in their forced command.
fn server_exe() -> Result<std::path::PathBuf> {
    std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| {
            Error::Command(format!(
                "cannot tell where byteback-server is installed: {e}"
            ))
        })
}

/// `replica-adopt`, from `primary`'s replica key at the end of its
/// `move-client`: the copy of `client` this store keeps for `primary`
/// (`PRIMARY__CLIENT`) becomes the client `client` itself, and `key` its
/// key, in a line this server writes with its own code (`restrict`, its
/// own forced command, no `from=`, a comment of its own): nothing of the
/// line comes from the primary but the key's type and blob, which
/// `ssh-keygen` must read.
///
/// Refused unless the administrator stated `client` when enrolling the key
/// (`--clients`), the copy holds history, and neither the name nor the key
/// serves anything here yet — with one exception: the client's own key,
/// enrolled `--read-only` for that very copy (to restore from it), becomes
/// its client key. Under the authorized_keys lock, then the copy's locks
/// and the prune lock, `current` is rolled back to the newest snapshot
/// (nothing the primary sent after it comes along), the directory is
/// renamed, marked as adopted from `primary` (so its `replica-state` can
/// say how the client's backups here go on), and the key line written; if
/// the line cannot be, the directory goes back.
pub fn adopt(
    store: &Store,
    primary: &ClientName,
    client: &ClientName,
    key: &ClientKey,
) -> Result<Adopted> {
    if client.split_replicated().is_some() {
        return Err(Error::Refused(format!(
            "refused: {client} is a replica's name (PRIMARY{}CLIENT), not a client's",
            crate::names::REPLICA_SEPARATOR
        )));
    }
    let allowed = crate::server::roles::ReplicaClients::load(store, primary);
    if !allowed.admits_adoption(client) {
        return Err(allowed.adoption_refusal(primary, client));
    }
    let mapped = ClientName::replicated(primary, client)?;
    let words = [key.kind.clone(), key.blob.clone()];
    let mut key = PublicKey::from_words(&words)
        .map_err(|e| Error::Refused(format!("refused: the key of {client}: {e}")))?;
    key.comment = format!("root@{client} (moved from {primary})");
    let exe = server_exe()?;
    let line = keys::authorized_line(&exe, store.root(), client, None, &key, KeyRole::Client)?;
    let mut authorized_keys = keys::Editing::open(&keys::default_path()?)?;
    let lines = keys::client_lines(authorized_keys.text());
    if lines.iter().any(|l| l.client == client.as_str()) {
        return Err(Error::Refused(format!(
            "refused: client name {client} is already taken by a key on this server"
        )));
    }
    if std::fs::symlink_metadata(store.client_dir(client)).is_ok() {
        return Err(Error::Refused(format!(
            "refused: client name {client} is already taken on this server ({} exists)",
            store.client_dir(client).display()
        )));
    }
    let history = match store.has_client(&mapped) {
        true => store.snapshots(&mapped)?.len(),
        false => 0,
    };
    if history == 0 {
        return Err(Error::Refused(format!(
            "refused: this server holds no snapshot of {client} from {primary} ({mapped}): replicate it here first"
        )));
    }
    // The client's own key, reading its copy here: it becomes its key.
    let reader = lines.iter().find(|l| {
        l.key.blob == key.blob
            && l.role == KeyRole::ReadOnly
            && l.client == mapped.as_str()
            && l.serves(store.root())
    });
    let text = match reader {
        Some(l) => keys::replace_line(authorized_keys.text(), l.index, None),
        None => authorized_keys.text().to_owned(),
    };
    match keys::plan(&text, authorized_keys.path(), &key, client, false) {
        Ok(Plan::Append) => {}
        Ok(_) => {
            return Err(Error::Refused(format!(
                "refused: the key of {client} is already on this server"
            )));
        }
        Err(e) => return Err(Error::Refused(format!("refused: {e}"))),
    }
    let _held = super::clients::hold(store, &[&mapped, client])?;
    store.roll_back_current(&mapped)?;
    if let Err(e) = crate::prune::growth::record_rollback(store, &mapped) {
        store.warn(&format!("{mapped}: cannot record the rollback: {e}"));
    }
    store.rename_client(&mapped, client)?;
    let written = store
        .set_adopted_from(client, primary)
        .and_then(|()| authorized_keys.write(keys::with_line(&text, &line)));
    if let Err(e) = written {
        if let Err(back) = store.rename_client(client, &mapped) {
            return Err(Error::Command(format!(
                "{e}; and moving {} back to {} failed too ({back}): rename it by hand",
                store.client_dir(client).display(),
                store.client_dir(&mapped).display()
            )));
        }
        return Err(e);
    }
    store.log(&format!(
        "{client}: adopted from primary {primary} ({mapped}, {history} snapshot(s)), key {}{}",
        key.sha256().unwrap_or_default(),
        if reader.is_some() {
            ", its read-only key line replaced"
        } else {
            ""
        }
    ));
    Ok(Adopted {
        client: client.to_string(),
        snapshots: history as u64,
    })
}

/// `import-keys`: rewrites every original byteback client's line of the
/// authorized_keys file at `path` into this server's `--legacy` forced
/// command for the client its `BYTEBACK_HOST` names (key, comment and
/// `from=` kept), under the lock every key edit takes, in one atomic write,
/// after making each client's space if missing (an original store's
/// `<store>/<host>/current` and its snapshots stay as they are). Prints one
/// line per key; running it again changes nothing.
pub fn import_keys(store_root: &Path, path: &Path) -> Result<()> {
    super::refuse_root()?;
    let store = crate::lifecycle::open_store(store_root)?;
    let exe = server_exe()?;
    let mut authorized_keys = keys::Editing::open(path)?;
    let make_line = |client: &ClientName, from: Option<&str>, key: &PublicKey| {
        keys::authorized_line(&exe, store.root(), client, from, key, KeyRole::Legacy)
    };
    let planned = keys::plan_import(authorized_keys.text(), &make_line);
    let mut text = authorized_keys.text().to_owned();
    // Lines dropped below this one, so indices are taken from the end.
    let mut changes: Vec<(usize, Option<String>)> = Vec::new();
    let mut imported = 0;
    for step in planned {
        match step {
            keys::Import::Rewrite {
                index,
                client,
                key,
                line,
            } => {
                // Space first: a key that works for a client without space
                // would only produce errors.
                let had = store.has_client(&client);
                if let Err(e) = store.add_client(&client) {
                    println!("skipped line {}: {e}", index + 1);
                    continue;
                }
                let snapshots = store.snapshots(&client).map(|s| s.len()).unwrap_or(0);
                println!(
                    "imported {client} (line {}, {}): {} {}, {snapshots} snapshot(s)",
                    index + 1,
                    key.sha256().unwrap_or_else(|_| key.kind.clone()),
                    if had { "its space" } else { "new space" },
                    store.client_dir(&client).display(),
                );
                store.log(&format!(
                    "{client}: original byteback key imported, {}",
                    key.sha256().unwrap_or_default()
                ));
                changes.push((index, Some(line)));
                imported += 1;
            }
            keys::Import::Drop { index, client } => {
                println!(
                    "removed line {}: its key already has {client}'s line here",
                    index + 1
                );
                changes.push((index, None));
            }
            keys::Import::Already { index, client } => {
                println!("already imported: {client} (line {})", index + 1);
            }
            keys::Import::Skip { index, why } => {
                println!("skipped line {}: {why}", index + 1);
            }
        }
    }
    if changes.is_empty() {
        println!(
            "Nothing to change in {} ({imported} key(s) imported).",
            authorized_keys.path().display()
        );
        return Ok(());
    }
    for (index, line) in changes.iter().rev() {
        text = keys::replace_line(&text, *index, line.as_deref());
    }
    authorized_keys.write(text)?;
    println!(
        "{imported} key(s) imported into {}; their clients back up, snapshot and restore as before.",
        authorized_keys.path().display()
    );
    Ok(())
}

/// `byteback-server show-config`: the store's settings as in effect
/// (defaults filled in, and in hardened mode root's policy), as TOML that
/// reads back.
pub fn show_config(root: &Path) -> Result<u8> {
    let store = crate::lifecycle::open_store(root)?;
    let text = toml::to_string(&store.config)
        .map_err(|e| Error::Command(format!("cannot write TOML: {e}")))?;
    println!(
        "# effective settings of {}",
        Store::config_path_of(store.root()).display()
    );
    print!("{text}");
    Ok(0)
}
