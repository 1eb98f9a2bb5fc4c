//! `byteback-server move-client`: a client and its whole history to another
//! byteback server, without re-keying the client by hand.
//!
//! The target is a replica of this server (it enrolled this store's
//! replication key with `new-client --replica --clients ...,NAME`), so the
//! move is replication plus two small steps, each safe to run again:
//!
//! 1. **Copy.** Every snapshot of the client the target lacks goes there
//!    through `replicate`'s own path (into `PRIMARY__NAME`, resumable).
//! 2. **Adopt.** Holding the client's lock here (no backup of it runs
//!    meanwhile), the last snapshots are sent, the target's newest is
//!    checked against ours, and the target is asked (`replica-adopt`) to
//!    make its copy the client NAME, with the client's key as this server's
//!    authorized_keys holds it; the target writes the line itself.
//! 3. **Redirect.** The move is recorded beside the client
//!    ([`crate::store::moved`]), still under its lock: from then on its
//!    ping, transfers and snapshots here are refused with a redirect to the
//!    target and the target's host key (from replication's known_hosts),
//!    which the client's `byteback` follows once and records.
//!
//! The history stays here until `--retire` deletes it (snapshots and key
//! line, as `remove-client`), which it does only once the target says it
//! has taken a backup of the client since the move (`replica-state`'s
//! `adopted=` line): never before the client really backs up there.

use std::path::Path;

use jiff::Timestamp;

use crate::destination::Destination;
use crate::error::{Error, Result};
use crate::exec::ssh::{self, HostKeyPolicy, Master};
use crate::names::{ClientName, SnapshotName};
use crate::protocol::call as remote;
use crate::protocol::{Adopted, ClientKey, MOVES, ReplicaRequest, ReplicaState};
use crate::report;
use crate::server::keys::{self, KeyLine, KeyRole};
use crate::server::replicate;
use crate::store::Store;
use crate::store::moved::Moved;
use crate::store::replicas::{Record, dir_of};
use crate::sys::lock::Lock;

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct Args {
    /// The client, as `byteback-server clients` lists it.
    pub name: String,
    /// The server it moves to, `[USER@]HOST[:PORT]`.
    pub to: String,
    /// Delete the copy here instead (once the target has backed it up).
    pub retire: bool,
    /// Trust the target's host key if seen for the first time.
    pub accept_new_host_key: bool,
    /// List every file as it is sent.
    pub verbose: bool,
}

/// Runs `move-client` (or, with `--retire`, its last step).
pub fn run(store_root: &Path, args: &Args) -> Result<u8> {
    super::refuse_root()?;
    let store = crate::lifecycle::open_store(store_root)?;
    super::run_as_owner(&store)?;
    let client = ClientName::new(&args.name)?;
    if client.split_replicated().is_some() {
        return Err(Error::Usage(format!(
            "{client} is a replica's copy of another server's client: move it from that server"
        )));
    }
    let target: Destination = args.to.parse()?;
    let policy = match args.accept_new_host_key {
        true => HostKeyPolicy::AcceptNew,
        false => HostKeyPolicy::Strict,
    };
    if args.retire {
        return retire(&store, &client, &target, policy);
    }
    let line = key_line(&store, &client)?;
    if let Some(moved) = store.moved(&client) {
        if same_server(&moved.to, &target) {
            println!(
                "Client {client} moved to {target} already (at {}); `byteback-server move-client {client} --to {target} --retire` deletes its copy here once it has backed up there.",
                moved.at.strftime("%Y-%m-%dT%H:%M:%SZ")
            );
            return Ok(0);
        }
        return Err(Error::Refused(format!(
            "client {client} moved to {} already, not to {target}: move it from there",
            moved.to
        )));
    }
    if store.snapshots(&client)?.is_empty() {
        return Err(Error::Refused(format!(
            "client {client} has no snapshot here: there is no history to move; enrol it on {target} with `byteback-server new-client` instead"
        )));
    }
    let key = replicate::key_path(store.root());
    if !key.exists() {
        return Err(Error::Config(format!(
            "this store has no replication key ({} is missing): run `byteback-server replicate --setup --to {target}` here and the line it prints on {target}, then move-client again",
            key.display()
        )));
    }
    // One move or replication of this store at a time.
    let dir = dir_of(store.root());
    let _replicating = Lock::acquire(&dir.join("lock"), store.config.lock_wait.to_std())?
        .ok_or_else(|| {
            Error::Locked(format!(
                "a replication of this store has been running for {}; try again when it has finished",
                store.config.lock_wait
            ))
        })?;
    let hint = |e: Error| enrolment_hint(&store, &target, &client, e);
    // Before anything is sent: can the target take the client over?
    let state = connect(&store, &target, policy)
        .and_then(|(ssh, _master)| state_of(&ssh, &target))
        .map_err(hint)?;
    if state.protocol < MOVES {
        return Err(Error::Unsupported(format!(
            "{target} runs a byteback-server of protocol {}, which cannot take a client over (protocol {MOVES} and later can): upgrade it",
            state.protocol
        )));
    }
    // 1. The history, resumable (a client adopted by an earlier run that
    // lost the answer is not sent again).
    if !state.adopted.contains_key(client.as_str()) {
        let done = replicate::replicate_to(
            &store,
            &target,
            std::slice::from_ref(&client),
            policy,
            args.verbose,
        )
        .map_err(hint)?;
        println!("{}", done.line(&target));
    }
    // 2. The rest, and the adoption, while no backup of it runs here.
    let _client_lock = store.lock_client(&client, store.config.lock_wait.to_std())?;
    let snapshots = adopt(&store, &target, &client, &line, policy, args.verbose)?;
    // 3. The redirect, before the lock goes.
    let known_hosts = dir.join("known_hosts");
    let host_keys = ssh::known_host_keys(&known_hosts, &target)?
        .into_iter()
        .map(|(kind, blob)| format!("{kind} {blob}"))
        .collect();
    let moved = Moved {
        to: target.to_string(),
        at: Timestamp::now(),
        host_keys,
    };
    store.set_moved(&client, &moved).map_err(|e| {
        Error::Command(format!(
            "{target} has taken {client} over, but the redirect could not be recorded here ({e}): run move-client again, before the client's next backup"
        ))
    })?;
    store.log(&format!(
        "{client}: moved to {target} ({snapshots} snapshot(s) there); its backups here are refused with a redirect"
    ));
    println!(
        "Client {client} moved to {target} with its {snapshots} snapshot(s). Its next `byteback backup` (or `byteback test`) follows the redirect and records the new server; its history stays here until `byteback-server move-client {client} --to {target} --retire`, which waits for its first backup there."
    );
    Ok(0)
}

/// The client's key line in this server's authorized_keys: a client key's
/// (a read-only, replica, push-only or original client's key cannot be
/// moved: the target enrols a client key, and an original client could
/// not follow the redirect).
fn key_line(store: &Store, client: &ClientName) -> Result<KeyLine> {
    let text = keys::read(&keys::default_path()?)?;
    let line = keys::client_lines(&text)
        .into_iter()
        .find(|l| l.client == client.as_str() && l.serves(store.root()))
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no key line for client {client} in this server's authorized_keys (`byteback-server clients` lists them)"
            ))
        })?;
    match line.role {
        KeyRole::Client => Ok(line),
        KeyRole::Legacy => Err(Error::Refused(format!(
            "client {client} is an original byteback client (import-keys), which cannot follow a redirect: install this byteback on it first (`byteback setup`), then move it"
        ))),
        // The target writes a client key's line for it: moving would
        // loosen the key behind the administrator's back.
        KeyRole::PushOnly { .. } => Err(Error::Refused(format!(
            "client {client}'s key is push-only, and the server it moves to would enrol it as a client key: switch it here first (`byteback-server new-client --name {client} --replace-key KEY`), move it, then switch it back there (`new-client --push-only --replace-key`)"
        ))),
        KeyRole::ReadOnly | KeyRole::Replica => Err(Error::Refused(format!(
            "{client}'s key line is a {} key's, not a client's: only a client moves",
            line.role.describe()
        ))),
    }
}

/// Whether `recorded` (a move record's `to`) names `target`.
fn same_server(recorded: &str, target: &Destination) -> bool {
    recorded.parse::<Destination>().ok().as_ref() == Some(target)
}

/// One connection to the target with this store's replication key.
fn connect(
    store: &Store,
    target: &Destination,
    policy: HostKeyPolicy,
) -> Result<(ssh::Ssh, Master)> {
    let plain = replicate::ssh_for(store, target, policy)?;
    let master = Master::open(&plain, replicate::control_socket(store))?;
    Ok((master.share(&plain), master))
}

/// What the target holds of this server's clients.
fn state_of(ssh: &ssh::Ssh, target: &Destination) -> Result<ReplicaState> {
    let reply = remote::call_line(ssh, &ReplicaRequest::State.render(), None)?;
    ReplicaState::parse(&reply).ok_or_else(|| {
        Error::Refused(format!(
            "{} answered, but not as a byteback replica: enrol this store's replication key there with `byteback-server new-client --replica`",
            target.host_and_port()
        ))
    })
}

/// A refusal by the target (its sshd refusing the key, its forced command
/// refusing the client), with the line that enrols this store's key there
/// for the client, as `replicate --setup` prints it.
fn enrolment_hint(store: &Store, target: &Destination, client: &ClientName, e: Error) -> Error {
    if !matches!(e, Error::Refused(_)) {
        return e;
    }
    let public = std::fs::read_to_string(replicate::key_path(store.root()).with_extension("pub"))
        .unwrap_or_default();
    let public = public.trim();
    let primary = public
        .rsplit_once("byteback-replication@")
        .and_then(|(_, name)| ClientName::primary(name).ok());
    if let Some(line) = primary.and_then(|p| replicate::enrolment_line(store, &p, public).ok()) {
        report::note(format_args!(
            "if {target} has not enrolled this server's replication key for {client}, run there, as its backup user: {line}"
        ));
    }
    e
}

/// Sends what the target still lacks of `client`, checks that its newest
/// is ours, and asks it to adopt the client with its key. The caller holds
/// the client's lock. Returns how many snapshots the target holds.
fn adopt(
    store: &Store,
    target: &Destination,
    client: &ClientName,
    line: &KeyLine,
    policy: HostKeyPolicy,
    verbose: bool,
) -> Result<u64> {
    let (ssh, _master) = connect(store, target, policy)?;
    let state = state_of(&ssh, target)?;
    if let Some(newest) = state.adopted.get(client.as_str()) {
        // An earlier run's adoption whose answer was lost.
        report::note(format_args!(
            "{target} adopted {client} already (its newest there: {})",
            newest.as_deref().unwrap_or("none")
        ));
        return Ok(store.snapshots(client)?.len() as u64);
    }
    let mut record = Record::load(store, target);
    let mut done = replicate::Done::default();
    let sent = replicate::send_client(
        store,
        &ssh,
        target,
        client,
        &state,
        &mut record,
        verbose,
        &mut done,
    );
    record.save(store, target)?;
    sent?;
    let state = state_of(&ssh, target)?;
    let ours = store.snapshots(client)?.pop().map(|s| s.name);
    let theirs = state
        .clients
        .get(client.as_str())
        .and_then(|n| n.as_deref())
        .and_then(SnapshotName::parse);
    if ours.is_none() || theirs != ours {
        return Err(Error::Refused(format!(
            "the copy of {client} on {target} ends with {}, not with its newest here ({}): run move-client again",
            theirs.map_or("nothing".to_owned(), |n| n.to_string()),
            ours.map_or("none".to_owned(), |n| n.to_string())
        )));
    }
    let key = ClientKey::new(&line.key.kind, &line.key.blob).ok_or_else(|| {
        Error::Refused(format!(
            "client {client}'s key in authorized_keys is not one a replica can take ({} ...)",
            line.key.kind
        ))
    })?;
    let request = ReplicaRequest::Adopt {
        client: client.clone(),
        key,
    };
    let reply = remote::call_line(&ssh, &request.render(), None)?;
    let adopted = Adopted::parse(&reply)
        .filter(|a| a.client == client.as_str())
        .ok_or_else(|| {
            Error::Refused(format!(
                "{target} did not confirm that it adopted {client}: run move-client again"
            ))
        })?;
    Ok(adopted.snapshots)
}

/// `--retire`: deletes the client's copy here (its snapshots, `current` and
/// key line, as `remove-client`), once the target says it has taken a
/// backup of the client since the move; refused otherwise, saying why.
fn retire(
    store: &Store,
    client: &ClientName,
    target: &Destination,
    policy: HostKeyPolicy,
) -> Result<u8> {
    let Some(moved) = store.moved(client) else {
        return Err(Error::Refused(format!(
            "refused: client {client} has not moved (`byteback-server move-client {client} --to {target}` moves it); to delete it here, `byteback-server remove-client {client}`"
        )));
    };
    if !same_server(&moved.to, target) {
        return Err(Error::Refused(format!(
            "refused: client {client} moved to {}, not to {target}",
            moved.to
        )));
    }
    let (ssh, master) = connect(store, target, policy)?;
    let state = state_of(&ssh, target)?;
    drop(master);
    let since = moved.at.strftime("%Y-%m-%dT%H:%M:%SZ");
    let newest = match state.adopted.get(client.as_str()) {
        None => {
            return Err(Error::Refused(format!(
                "refused: {target} does not hold {client} as a client it took over from this server; the copy here stays"
            )));
        }
        Some(newest) => newest.as_deref().and_then(SnapshotName::parse),
    };
    match newest {
        Some(n) if n.time() > moved.at => {}
        newest => {
            return Err(Error::Refused(format!(
                "refused: {target} has taken no backup of {client} since the move ({since}; its newest there is {}): retire it here after the client has backed up there (its next `byteback backup` follows the redirect)",
                newest.map_or("none".to_owned(), |n| n.to_string())
            )));
        }
    }
    store.log(&format!(
        "{client}: retiring the copy here, moved to {target} at {since}"
    ));
    super::clients::remove(store.root(), client.as_str(), false)?;
    println!("Client {client} retired here: its backups are on {target}.");
    Ok(0)
}
