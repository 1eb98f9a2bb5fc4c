//! `byteback-server replicate`: a second copy of this store's snapshots on
//! other byteback servers.
//!
//! A replica is an ordinary byteback server, and this server is its client:
//! the replica enrolled this store's replication key with `new-client
//! --replica`, whose forced command accepts only three requests (see
//! [`crate::protocol::ReplicaRequest`]). For each client, oldest first,
//! every snapshot newer than the replica's newest of that client is sent
//! with rsync into the replica's `current` of it — exactly as a backup
//! would be, read through `--fake-super` so the client's own owners and
//! modes travel — and then snapshotted there under the same name.
//!
//! Nothing here deletes or changes anything on either side: an interrupted
//! run leaves a partly filled `current` on the replica, which the next run
//! fills with the same snapshot again (rsync skips what arrived). The
//! replica's answer is the truth about what it holds; the record kept here
//! (`.byteback/replication/`, one file per replica) only serves pruning,
//! which keeps unreplicated snapshots, and `status`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::config::Bwlimit;
use crate::destination::Destination;
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::exec::rsync::{Outcome, ReplicaTransfer, Traffic, describe_exit};
use crate::exec::ssh::{HostKeyPolicy, Master, Ssh};
use crate::names::{ClientName, SnapshotName};
use crate::protocol::call as remote;
use crate::protocol::{Completed, Failure, ReplicaRequest, ReplicaState};
use crate::report;
use crate::store::Store;
use crate::store::replicas::{Record, dir_of};
use crate::sys::fs::{ensure_dir, human_bytes};
use crate::sys::lock::Lock;

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct Args {
    /// Replicas to send to (empty: the config's `[replicate] to`).
    pub to: Vec<String>,
    /// Only these clients (empty: every client with snapshots).
    pub clients: Vec<String>,
    /// Trust a replica's host key seen for the first time.
    pub accept_new_host_key: bool,
    /// List every file as it goes.
    pub verbose: bool,
    /// rsync's `--bwlimit`, over `[replicate] bwlimit`.
    pub bwlimit: Option<Bwlimit>,
}

pub(super) fn key_path(store: &Path) -> PathBuf {
    dir_of(store).join("key")
}

/// `replicate --setup`: makes the store's replication key if it has none
/// and prints the line to run on each replica.
pub fn setup(store_root: &Path, name: Option<&str>, to: &[String]) -> Result<()> {
    super::refuse_root()?;
    let store = crate::lifecycle::open_store(store_root)?;
    let name = match name {
        Some(n) => n.to_owned(),
        None => crate::exec::host::this_machines_name(),
    };
    let primary = ClientName::primary(&name)?;
    let dir = dir_of(store.root());
    ensure_dir(&dir, 0o700)?;
    let key = key_path(store.root());
    if !key.exists() {
        let comment = format!("byteback-replication@{primary}");
        let out = Cmd::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", &comment, "-f"])
            .arg(&key)
            .configure(|c| {
                c.stdin(Stdio::null());
            })
            .output()?;
        if !out.status.success() {
            return Err(Error::Command(format!(
                "ssh-keygen failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        store.log(&format!("replication: key {} made", key.display()));
    }
    let public = std::fs::read_to_string(key.with_extension("pub"))
        .map_err(|e| Error::io("cannot read", &key.with_extension("pub"), e))?;
    let public = public.trim();
    println!("Replication key: {}", key.display());
    let where_ = match to {
        [] => "each replica".to_owned(),
        to => to.join(", "),
    };
    println!("On {where_}, as its backup user, run:");
    println!("  {}", enrolment_line(&store, &primary, public)?);
    println!(
        "  (--clients names the clients it may replicate there; run it again with more names when clients are added here)"
    );
    println!(
        "Then here, once: byteback-server replicate --to {} --accept-new-host-key",
        to.first().map_or("USER@REPLICA", String::as_str)
    );
    println!(
        "and list the replica in {} ([replicate] to = [...]) so the maintenance timer replicates by itself.",
        Store::config_path_of(store.root()).display()
    );
    Ok(())
}

/// The command that enrols this store's replication key (`public`) on a
/// replica as `primary`'s, for every client of this store (the replica
/// creates, and takes over, only the clients named at enrolment).
pub(super) fn enrolment_line(store: &Store, primary: &ClientName, public: &str) -> Result<String> {
    let clients: Vec<String> = store
        .clients()?
        .iter()
        .filter(|c| c.split_replicated().is_none())
        .map(ToString::to_string)
        .collect();
    let clients = match clients.as_slice() {
        [] => "CLIENT,...".to_owned(),
        names => names.join(","),
    };
    Ok(format!(
        "byteback-server new-client --replica --name {primary} --clients {clients} {public}"
    ))
}

/// Runs a replication to every replica asked for (or configured).
pub fn run(store_root: &Path, args: &Args) -> Result<u8> {
    let mut store = crate::lifecycle::open_store(store_root)?;
    super::run_as_owner(&store)?;
    // The flag over the file: what follows reads the effective setting.
    if let Some(limit) = &args.bwlimit {
        store.config.replicate.bwlimit = Some(limit.clone());
    }
    let store = store;
    let from_config = args.to.is_empty();
    let targets = if from_config {
        store.config.replicate.to.clone()
    } else {
        args.to.clone()
    };
    if targets.is_empty() {
        println!(
            "No replica configured ([replicate] to in {}): nothing to do.",
            Store::config_path_of(store.root()).display()
        );
        return Ok(0);
    }
    let targets = targets
        .iter()
        .map(|t| t.parse::<Destination>())
        .collect::<Result<Vec<_>>>()?;
    let clients = match args.clients.as_slice() {
        // A client that moved away is the new server's to keep (its copy
        // here waits for `move-client --retire`).
        [] => store
            .clients()?
            .into_iter()
            .filter(|c| store.moved(c).is_none())
            .collect(),
        names => names
            .iter()
            .map(|n| {
                let c = ClientName::new(n)?;
                if store.has_client(&c) {
                    Ok(c)
                } else {
                    Err(crate::store::no_space(&c))
                }
            })
            .collect::<Result<Vec<_>>>()?,
    };
    let dir = dir_of(store.root());
    ensure_dir(&dir, 0o700)?;
    let Some(_lock) = Lock::acquire(&dir.join("lock"), Duration::ZERO)? else {
        // The timer's next run finds it done or carries on.
        println!("Another replication of this store is running; leaving it to finish.");
        return Ok(0);
    };
    let policy = if args.accept_new_host_key {
        HostKeyPolicy::AcceptNew
    } else {
        HostKeyPolicy::Strict
    };
    let mut failed = Vec::new();
    for target in &targets {
        match replicate_to(&store, target, &clients, policy, args.verbose) {
            Ok(done) => println!("{}", done.line(target)),
            Err(e) => {
                store.warn(&format!("replication to {target}: failed: {e}"));
                failed.push((target, e));
            }
        }
    }
    match failed.len() {
        0 => Ok(0),
        1 if targets.len() == 1 => Err(failed.remove(0).1),
        _ => {
            for (target, e) in &failed {
                report::warn(format_args!("replication to {target} failed: {e}"));
            }
            Err(Error::Connection(format!(
                "replication to {} of {} replica(s) failed",
                failed.len(),
                targets.len()
            )))
        }
    }
}

/// What one replication run to one replica did.
#[derive(Debug, Default)]
pub(super) struct Done {
    pub snapshots: usize,
    clients: usize,
    traffic: Traffic,
    attempts: u32,
}

impl Done {
    pub(super) fn line(&self, target: &Destination) -> String {
        if self.snapshots == 0 {
            return format!(
                "Replica {target} is up to date ({} client(s), {} attempt(s)).",
                self.clients, self.attempts
            );
        }
        format!(
            "Replicated to {target}: {} snapshot(s) of {} client(s) ({} file(s), {} changed, {} sent, {} attempt(s)).",
            self.snapshots,
            self.clients,
            self.traffic.files,
            human_bytes(self.traffic.bytes),
            human_bytes(self.traffic.sent),
            self.attempts
        )
    }
}

/// One replica, retried as configured: each attempt asks the replica what
/// it holds and goes on from there.
pub(super) fn replicate_to(
    store: &Store,
    target: &Destination,
    clients: &[ClientName],
    policy: HostKeyPolicy,
    verbose: bool,
) -> Result<Done> {
    let config = &store.config.replicate;
    let attempts = config.retry_attempts.max(1);
    let mut done = Done::default();
    for attempt in 1..=attempts {
        done.attempts = attempt;
        match attempt_once(store, target, clients, policy, verbose, &mut done) {
            Ok(()) => return Ok(done),
            Err(e) if attempt < attempts && retryable(&e) => {
                report::note(format_args!(
                    "replication to {target}, attempt {attempt} of {attempts} failed: {e}; trying again in {}",
                    config.retry_pause
                ));
                std::thread::sleep(config.retry_pause.to_std());
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the last attempt returns")
}

fn retryable(e: &Error) -> bool {
    matches!(e, Error::Connection(_) | Error::Locked(_))
}

/// The ssh settings for a replica: this store's own key and known_hosts,
/// never the backup user's ssh configuration.
pub(super) fn ssh_for(store: &Store, target: &Destination, policy: HostKeyPolicy) -> Result<Ssh> {
    let key = key_path(store.root());
    if !key.exists() {
        return Err(Error::Config(format!(
            "this store has no replication key ({} is missing): run `byteback-server replicate --setup` and enrol the key it prints on the replica",
            key.display()
        )));
    }
    Ok(Ssh {
        program: PathBuf::from("ssh"),
        destination: target.clone(),
        identity: key,
        known_hosts: dir_of(store.root()).join("known_hosts"),
        host_keys: policy,
        keepalive_secs: 15,
        connect_timeout_secs: 30,
        control_path: None,
    })
}

fn attempt_once(
    store: &Store,
    target: &Destination,
    clients: &[ClientName],
    policy: HostKeyPolicy,
    verbose: bool,
    done: &mut Done,
) -> Result<()> {
    let plain = ssh_for(store, target, policy)?;
    let master = Master::open(&plain, control_socket(store))?;
    let ssh = master.share(&plain);
    let reply = remote::call_line(&ssh, &ReplicaRequest::State.render(), None)?;
    let state = ReplicaState::parse(&reply).ok_or_else(|| {
        Error::Refused(format!(
            "{} answered, but not as a byteback replica: enrol this store's key there with `byteback-server new-client --replica`",
            target.host_and_port()
        ))
    })?;
    let mut record = Record::load(store, target);
    done.clients = clients.len();
    // One client's failure (a refusal, a transfer its tree makes fail) is
    // that client's: the others are still sent, and the run fails at the
    // end, naming it. A lost connection ends the attempt (and is retried).
    let mut failed = Vec::new();
    for client in clients {
        let result = send_client(
            store,
            &ssh,
            target,
            client,
            &state,
            &mut record,
            verbose,
            done,
        );
        match result {
            Ok(()) => {}
            // The replica takes nothing now (outside its backup windows):
            // the other clients would be refused alike. The maintenance
            // timer's next run tries again.
            Err(e @ (Error::Connection(_) | Error::RetryAfter { .. })) => {
                record.save(store, target)?;
                return Err(e);
            }
            Err(e) => {
                store.warn(&format!("replication to {target}: {client} failed: {e}"));
                failed.push(format!("{client} ({e})"));
            }
        }
    }
    record.save(store, target)?;
    if failed.is_empty() {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "replication to {target}: {} of {} client(s) failed, the others were sent: {}",
        failed.len(),
        clients.len(),
        failed.join("; ")
    )))
}

/// Sends every snapshot of `client` newer than the replica's newest
/// (`state`), oldest first, recording each in `record`.
#[allow(clippy::too_many_arguments)]
pub(super) fn send_client(
    store: &Store,
    ssh: &crate::exec::ssh::Ssh,
    target: &Destination,
    client: &ClientName,
    state: &ReplicaState,
    record: &mut Record,
    verbose: bool,
    done: &mut Done,
) -> Result<()> {
    // Handed over there (`move-client`): a client of the replica's own
    // now, no copy of ours to fill again.
    if state.adopted.contains_key(client.as_str()) {
        return Ok(());
    }
    let theirs = state
        .clients
        .get(client.as_str())
        .and_then(|n| n.as_deref())
        .and_then(SnapshotName::parse);
    record.set(client, theirs.as_ref());
    let todo: Vec<_> = store
        .snapshots(client)?
        .into_iter()
        .filter(|s| theirs.as_ref().is_none_or(|t| s.name.time() > t.time()))
        .collect();
    for snapshot in todo {
        let traffic = send(store, ssh, client, &snapshot.name, verbose)?;
        let request = ReplicaRequest::Snapshot {
            client: client.clone(),
            name: snapshot.name.clone(),
            partial: snapshot.partial,
        };
        let answer = remote::call_line(ssh, &request.render(), None)?;
        let taken = Completed::parse(&answer).map(|c| c.snapshot);
        if taken.as_deref() != Some(snapshot.name.as_str()) {
            return Err(Error::Refused(format!(
                "the replica did not confirm snapshot {} of {client}",
                snapshot.name
            )));
        }
        record.set(client, Some(&snapshot.name));
        record.save(store, target)?;
        done.snapshots += 1;
        done.traffic.add(traffic);
        store.log(&format!(
            "replication to {target}: {client} {} sent ({} file(s), {} bytes changed, {} bytes sent)",
            snapshot.name, traffic.files, traffic.bytes, traffic.sent
        ));
        println!(
            "{client} {}: {} file(s), {} changed, {} sent",
            snapshot.name,
            traffic.files,
            human_bytes(traffic.bytes),
            human_bytes(traffic.sent)
        );
    }
    Ok(())
}

/// Where the shared connection's socket lives.
pub(super) fn control_socket(store: &Store) -> PathBuf {
    let name = format!("ssh-{}", std::process::id());
    let path = dir_of(store.root()).join(&name);
    // ssh adds ~20 characters while it creates the socket; Unix socket
    // paths end at 108 bytes.
    if path.as_os_str().len() < 80 {
        path
    } else {
        std::env::temp_dir().join(format!("byteback-replication-{name}"))
    }
}

/// Sends one snapshot into the replica's `current` of its client.
fn send(
    store: &Store,
    ssh: &Ssh,
    client: &ClientName,
    name: &SnapshotName,
    verbose: bool,
) -> Result<Traffic> {
    let transfer = ReplicaTransfer {
        rsync: PathBuf::from("rsync"),
        snapshot_dir: store.client_dir(client).join(name.as_str()),
        client: client.to_string(),
        rsh: ssh.rsh_string(),
        remote: ssh.rsync_remote(),
        io_timeout_secs: store.config.io_timeout.as_secs(),
        bwlimit: store
            .config
            .replicate
            .bwlimit
            .as_ref()
            .map(|b| b.as_str().to_owned()),
        verbose,
    };
    let mut child = Cmd::new(&transfer.rsync)
        .args(transfer.args())
        .configure(|c| {
            c.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        })
        .spawn()?;
    let stdout = child.stdout.take();
    let figures = std::thread::spawn(move || {
        let (mut traffic, mut in_stats) = (Traffic::default(), false);
        if let Some(out) = stdout {
            for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                if !traffic.take_stats_line(&line, &mut in_stats) && verbose {
                    println!("{line}");
                }
            }
        }
        traffic
    });
    let mut server_said = None;
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).split(b'\n').map_while(|l| l.ok()) {
            let line = String::from_utf8_lossy(&line);
            report::relay(&line);
            if let Some(failure) = Failure::parse(&line) {
                server_said = Some(failure);
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| Error::Command(format!("rsync: {e}")))?;
    let traffic = figures.join().unwrap_or_default();
    let outcome = Outcome::of_exit(status.code());
    if outcome.is_success() {
        return Ok(traffic);
    }
    if let Some(failure) = server_said {
        return Err(failure.into_error());
    }
    let what = format!("sending {client} {name}: {}", describe_exit(status.code()));
    Err(match outcome {
        Outcome::Retryable | Outcome::SomeFilesFailed => Error::Connection(what),
        _ => Error::Command(what),
    })
}
