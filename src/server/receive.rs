//! `byteback-server receive`: the forced command behind every client key.
//!
//! It serves one client, named by the administrator in authorized_keys.
//! Whatever the client asked for arrives in `SSH_ORIGINAL_COMMAND` and is
//! parsed by [`crate::protocol`]; anything else is refused with one line on
//! stderr, a log line and a non-zero exit, and changes nothing. Standard
//! output belongs to the client (rsync's data stream), so messages go to
//! stderr only.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use jiff::Timestamp;
use rustix::fs::{Mode, OFlags, openat};

use crate::error::{Error, Result};
use crate::exec::rsync::{self, ServerRole};
use crate::exec::{Cmd, relay};
use crate::names::ClientName;
use crate::protocol::{
    self, Completed, Failure, ReplicaRequest, ReplicaState, Request, SnapshotLine,
};
use crate::prune::growth;
use crate::server::keys::KeyRole;
use crate::store::Store;
use crate::store::service::ClientBackups;
use crate::store::space;
use crate::sys::sandbox::Confinement;

/// Serves one request; returns the exit status for sshd to pass back.
/// `role` is what the key line lets this key do (see [`KeyRole`]).
pub fn run(store_root: &Path, client: &str, role: KeyRole, command: Option<&str>) -> u8 {
    if role == KeyRole::Replica {
        return run_replica(store_root, client, command);
    }
    let store = match Store::open(store_root) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("{}", Failure::of(&e).render());
            return e.exit_code().code();
        }
    };
    let client = match ClientName::new(client) {
        Ok(c) => c,
        Err(e) => {
            store.log(&format!("receive: bad --client in authorized_keys: {e}"));
            let e = Error::Config(format!("server misconfigured: {e}"));
            eprintln!("{}", Failure::of(&e).render());
            return e.exit_code().code();
        }
    };
    let request = protocol::parse(command)
        .map_err(|refusal| Error::Refused(format!("refused: {refusal}")))
        .and_then(|request| match (role, &request) {
            (KeyRole::ReadOnly, Request::Receive { .. } | Request::Complete { .. }) => {
                Err(Error::Refused(
                    "refused: this key may only list, restore and verify (it was enrolled with --read-only), not back up".into(),
                ))
            }
            _ => Ok(request),
        });
    // What status reports as this client's last attempt (not pings, lists;
    // nothing for a read-only key, whose refusals and restores say nothing
    // about the backups of the client it reads).
    let attempt = match &request {
        _ if role != KeyRole::Client => None,
        Ok(Request::Receive { .. }) => Some("receive"),
        Ok(Request::Complete { .. }) => Some("complete"),
        Ok(Request::Send { .. }) => Some("send"),
        Ok(Request::Incremental { .. }) => Some("incremental"),
        Ok(_) => None,
        Err(_) => Some("refused"),
    };
    let result = request.and_then(|request| serve(&store, &client, request));
    let code = match &result {
        Ok(code) => *code,
        Err(e) => {
            store.log(&format!(
                "{client}: {e} (command {:?})",
                command.unwrap_or("")
            ));
            eprintln!("{}", Failure::of(e).render());
            e.exit_code().code()
        }
    };
    if let Some(request) = attempt.filter(|_| store.has_client(&client)) {
        // rsync's 24 (files vanished while sent) is a success.
        let ok = code == 0 || (request == "receive" && code == 24);
        let reason = match &result {
            Err(e) => Some(e.to_string()),
            Ok(_) if !ok => Some(rsync::describe_exit(Some(i32::from(code)))),
            Ok(_) => None,
        };
        store.record_outcome(
            &client,
            &crate::store::outcome::Outcome {
                time: Timestamp::now(),
                request: request.into(),
                ok,
                reason,
            },
        );
    }
    code
}

fn serve(store: &Store, client: &ClientName, request: Request) -> Result<u8> {
    let backups = ClientBackups::open(store, client)?;
    match request {
        Request::Ping => {
            print!("{}", backups.ping()?.render());
            Ok(0)
        }
        Request::Complete { partial } => {
            let note = if partial {
                let mut text = String::new();
                std::io::stdin()
                    .take(64 * 1024)
                    .read_to_string(&mut text)
                    .map_err(|e| {
                        Error::Refused(format!("cannot read the list of failed files: {e}"))
                    })?;
                Some(text)
            } else {
                None
            };
            let name = backups.complete(Timestamp::now(), note.as_deref())?;
            crate::sys::crash::point("before-reply");
            let reply = Completed {
                snapshot: name.to_string(),
                partial,
            };
            print!("{}", reply.render());
            Ok(0)
        }
        Request::Receive { options } => receive(&backups, &options),
        Request::Incremental { snapshot } => {
            let mut text = Vec::new();
            std::io::stdin()
                .take(protocol::MAX_REPLACE_LIST as u64 + 1)
                .read_to_end(&mut text)
                .map_err(|e| Error::Refused(format!("cannot read the replace list: {e}")))?;
            let replace = protocol::parse_replace_list(&text)
                .map_err(|refusal| Error::Refused(format!("refused: {refusal}")))?;
            backups.prepare_incremental(&snapshot, replace)?;
            Ok(0)
        }
        Request::Snapshots => {
            for s in backups.snapshots()? {
                let line = SnapshotLine {
                    name: s.name.to_string(),
                    partial: s.partial,
                };
                println!("{}", line.render());
            }
            Ok(0)
        }
        Request::List {
            all,
            nanoseconds,
            snapshots,
            patterns,
        } => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            backups.find(all, &snapshots, &patterns, &mut |row| {
                let line = if nanoseconds {
                    row.render_exact()
                } else {
                    row.render()
                };
                writeln!(out, "{line}")
                    .map_err(|e| Error::Connection(format!("the client went away: {e}")))
            })?;
            out.flush()
                .map_err(|e| Error::Connection(format!("the client went away: {e}")))?;
            Ok(0)
        }
        Request::Send { options, paths } => send(&backups, &options, &paths),
        Request::Digest { snapshot, patterns } => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            backups.digest(&snapshot, &patterns, &mut |line| {
                writeln!(out, "{}", line.render())
                    .map_err(|e| Error::Connection(format!("the client went away: {e}")))
            })?;
            out.flush()
                .map_err(|e| Error::Connection(format!("the client went away: {e}")))?;
            Ok(0)
        }
    }
}

/// Serves one request of a primary server (a key enrolled with
/// `new-client --replica`, whose `--client` is the primary's name).
fn run_replica(store_root: &Path, primary: &str, command: Option<&str>) -> u8 {
    let store = match Store::open(store_root) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("{}", Failure::of(&e).render());
            return e.exit_code().code();
        }
    };
    let result = ClientName::primary(primary)
        .map_err(|e| Error::Config(format!("server misconfigured: {e}")))
        .and_then(|primary| {
            let request = protocol::parse_replica(command)
                .map_err(|refusal| Error::Refused(format!("refused: {refusal}")))?;
            serve_replica(&store, &primary, request)
        });
    match result {
        Ok(code) => code,
        Err(e) => {
            store.log(&format!(
                "replica of {primary}: {e} (command {:?})",
                command.unwrap_or("")
            ));
            eprintln!("{}", Failure::of(&e).render());
            e.exit_code().code()
        }
    }
}

fn serve_replica(store: &Store, primary: &ClientName, request: ReplicaRequest) -> Result<u8> {
    match request {
        ReplicaRequest::State => {
            let mut state = ReplicaState {
                protocol: protocol::PROTOCOL_VERSION,
                primary: primary.to_string(),
                free_bytes: store
                    .space()
                    .or_else(|_| crate::sys::fs::space(store.root()))?
                    .free_bytes,
                ..ReplicaState::default()
            };
            for mapped in store.clients()? {
                let Some((of, client)) = mapped.split_replicated() else {
                    continue;
                };
                if of != primary.as_str() || !store.has_client(&mapped) {
                    continue;
                }
                let newest = store.snapshots(&mapped)?.pop().map(|s| s.name.to_string());
                state.clients.insert(client.to_owned(), newest);
            }
            print!("{}", state.render());
            Ok(0)
        }
        ReplicaRequest::Receive { client, options } => {
            let mapped = ClientName::replicated(primary, &client)?;
            if !store.has_client(&mapped) {
                store.add_client(&mapped)?;
                store.log(&format!("{mapped}: new replicated client of {primary}"));
            }
            receive(&ClientBackups::open(store, &mapped)?, &options)
        }
        ReplicaRequest::Snapshot {
            client,
            name,
            partial,
        } => {
            let mapped = ClientName::replicated(primary, &client)?;
            let backups = ClientBackups::open(store, &mapped)?;
            let _lock = store.lock_client(&mapped, store.config.lock_wait.to_std())?;
            let note = partial.then(|| format!("partial on the primary {primary}\n"));
            let name = backups.finish_replicated(name, Timestamp::now(), note.as_deref())?;
            let reply = Completed {
                snapshot: name.to_string(),
                partial,
            };
            print!("{}", reply.render());
            Ok(0)
        }
    }
}

/// Runs rsync's sender for a restore, on paths inside the client's own
/// snapshots or `current` only.
fn send(backups: &ClientBackups, options: &[String], paths: &[Vec<u8>]) -> Result<u8> {
    let (store, client) = (backups.store, &backups.client);
    let checked = paths
        .iter()
        .map(|p| backups.restore_source(p))
        .collect::<Result<Vec<_>>>()?;
    let _slot = store.restore_slot(client)?;
    enter_dir(store, client, false)?;
    store.log(&format!("{client}: restore of {} path(s)", paths.len()));
    let confine = rsync::has_confine_root(Path::new(RSYNC));
    let args = |seen: &Path| {
        let side = server_side(store, ServerRole::Sender, confine.then_some(seen));
        rsync::sender_argv(options, &side, &checked)
    };
    let ended = run_confined(store, client, false, confine, args, |_| None)?;
    Ok(exit_code(&ended.status))
}

/// Runs rsync's receiver inside the client's `current` and nowhere else.
fn receive(backups: &ClientBackups, options: &[String]) -> Result<u8> {
    let (store, client) = (backups.store, &backups.client);
    let lock = store.lock_client(client, store.config.lock_wait.to_std())?;
    // The rsync child inherits the lock: if this process is killed, the
    // receiver it started still holds it until it ends.
    lock.share_with_children()?;
    // At most max_concurrent_backups transfers at once; the others queue.
    let slot = store.backup_slot(client, &mut |busy| {
        crate::report::note(format_args!(
            "waiting for {busy} other backup(s) to finish (max_concurrent_backups = {})",
            store.config.max_concurrent_backups
        ))
    })?;
    slot.share_with_children()?;
    if let Some(notice) = store.client_notice(client) {
        crate::report::warn(notice);
    }
    // `--delete-missing-args` marks an index-mode transfer, for which
    // `current` must have been readied (`byteback incremental`).
    let incremental = options.iter().any(|o| o == "--delete-missing-args");
    let plan = if incremental {
        backups.start_incremental()?
    } else {
        backups.prepare_transfer()?
    };
    let inplace = plan.inplace;
    let confine = rsync::has_confine_root(Path::new(RSYNC));
    let args = |seen: &Path| {
        let role = ServerRole::Receiver { inplace };
        // The destination is the working directory, whatever the client named.
        rsync::receiver_argv(
            options,
            &server_side(store, role, confine.then_some(seen)),
            &plan.link_dests,
        )
    };
    enter_current(store, client)?;
    store.log(&format!("{client}: receiving backup"));
    let written_before = growth::written_by_children();
    // What the filesystem spends on metadata is charged too (see
    // `store::space::spent`): read before and after the transfer.
    let btrfs = store.backend().kind() == crate::store::Backend::Btrfs;
    let reading_before = metadata_reading(store, btrfs);
    // A transfer over a limit — its client's, its key's (all the clients
    // one key writes to), the store's — while the disk is short is ended,
    // rather than left to fill the disk for everyone.
    let mut next_check = std::time::Instant::now();
    let over_limit = |pid: u32| {
        if std::time::Instant::now() < next_check {
            return None;
        }
        next_check = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let reading = space::read(store.root(), btrfs).ok()?;
        if reading.space.free_percent() >= store.config.min_free_percent {
            return None;
        }
        let live = growth::written_by_tree(pid)
            .saturating_add(space::spent(reading_before, Some(reading)));
        let records = growth::load_all(store).ok()?;
        let limits = growth::Limits::of(&store.config, reading.space.total_bytes);
        growth::stops(&records, client, live, &limits)
            .map(|why| format!("{why}, while the store is short of space"))
    };
    let ended = run_confined(store, client, true, confine, args, over_limit)?;
    let written = growth::written_by_children().saturating_sub(written_before);
    let metadata = space::spent(reading_before, metadata_reading(store, btrfs));
    let code = exit_code(&ended.status);
    store.log(&format!(
        "{client}: receiver ended ({}{}), {written} bytes written, {metadata} bytes of metadata",
        ended.status,
        ended
            .ended_because
            .as_deref()
            .map(|why| format!(", stopped: {why}"))
            .unwrap_or_default()
    ));
    if let Some(why) = &ended.ended_because {
        crate::report::note(format_args!("transfer stopped: {why}"));
    }
    backups.record_transfer(written.saturating_add(metadata));
    drop(lock);
    Ok(code)
}

/// The store's metadata figure, once what is pending has reached the disk
/// (btrfs counts metadata as used only when its transaction commits).
fn metadata_reading(store: &Store, btrfs: bool) -> Option<space::Reading> {
    if btrfs {
        if let Ok(root) = rustix::fs::open(
            store.root(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            let _ = rustix::fs::syncfs(&root);
        }
    }
    space::read(store.root(), btrfs).ok()
}

/// The server's side of an rsync; `confine_root` is the client's directory
/// as the child sees it, where rsync can confine itself to it.
fn server_side(store: &Store, role: ServerRole, confine_root: Option<&Path>) -> rsync::ServerSide {
    rsync::ServerSide {
        role,
        io_timeout_secs: store.config.io_timeout.as_secs(),
        confine_root: confine_root.map(Path::to_path_buf),
    }
}

/// The rsync the server runs (found on the backup user's PATH).
const RSYNC: &str = "rsync";

/// rsync's exit status as ours (a signal counts as rsync's 20).
fn exit_code(status: &std::process::ExitStatus) -> u8 {
    u8::try_from(status.code().unwrap_or(20)).unwrap_or(1)
}

/// Runs the server's rsync, with the arguments `args(the client's directory
/// as rsync sees it)`, confined to the client's directory (see
/// [`crate::sys::sandbox`]) and between the connection and pipes (see
/// [`relay`]). The working directory is already the client's directory
/// (a restore) or its `current` (a backup). Refuses to run rsync with no
/// confinement at all: filter rules could then open any file the backup
/// user can read.
fn run_confined(
    store: &Store,
    client: &ClientName,
    writable: bool,
    confine_root: bool,
    args: impl Fn(&Path) -> Vec<std::ffi::OsString>,
    mut check: impl FnMut(u32) -> Option<String>,
) -> Result<relay::Ended> {
    let jail = Confinement {
        dir: store.client_dir(client),
        writable,
        cwd: if writable {
            "current".into()
        } else {
            PathBuf::new()
        },
    };
    let (child, enforcement) = jail.spawn(|seen| {
        let cmd = Cmd::new(RSYNC).args(args(seen)).configure(|c| {
            c.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .process_group(0);
        });
        store.log(&format!("{client}: running {}", cmd.display()));
        cmd
    })?;
    match (enforcement.landlock, enforcement.private_view, confine_root) {
        (false, false, false) => {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Unsupported(
                "refusing to run rsync unconfined: this kernel allows neither Landlock (Linux 5.19 or later, with landlock among its LSMs) nor unprivileged user namespaces, and this rsync has no --confine-root (3.5.0 or later); upgrade one of them".into(),
            ));
        }
        (true, true, _) => {}
        (landlock, private_view, _) => store.log(&format!(
            "{client}: WARNING: rsync runs with {}{}{}",
            if landlock {
                "Landlock"
            } else {
                "no Landlock (kernel too old or Landlock disabled)"
            },
            if private_view {
                ", a private view"
            } else {
                ", no private view (unprivileged user namespaces not allowed)"
            },
            if confine_root {
                ", --confine-root"
            } else {
                ", no --confine-root (rsync older than 3.5.0)"
            },
        )),
    }
    let pid = child.id();
    relay::run(
        child,
        relay::Watch {
            client_silence: store.config.io_timeout.to_std(),
            client_may_just_listen: !writable,
            after_hangup: std::time::Duration::from_secs(5),
        },
        || check(pid),
    )
}

/// Changes into the client's `current` through directory handles opened
/// without following symlinks, so the receiver is pinned to that directory
/// even if names change under it.
fn enter_current(store: &Store, client: &ClientName) -> Result<()> {
    enter_dir(store, client, true)
}

/// Changes into the client's directory (or its `current`), pinned as above.
fn enter_dir(store: &Store, client: &ClientName, current: bool) -> Result<()> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let pin = || -> rustix::io::Result<()> {
        let root = rustix::fs::open(
            store.root(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let dir = openat(&root, client.as_str(), flags, Mode::empty())?;
        if current {
            let current = openat(&dir, "current", flags, Mode::empty())?;
            rustix::process::fchdir(&current)
        } else {
            rustix::process::fchdir(&dir)
        }
    };
    pin().map_err(|e| {
        Error::Refused(format!(
            "cannot enter the backup space of {client} ({}): {e}",
            store.current(client).display()
        ))
    })
}
