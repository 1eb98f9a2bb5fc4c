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

use crate::config::Bwlimit;
use crate::error::{Error, Result};
use crate::exec::rsync::{self, ServerRole};
use crate::exec::sandbox::Confinement;
use crate::exec::{Cmd, relay};
use crate::lifecycle::{ClientBackups, ReadLimits};
use crate::names::ClientName;
use crate::protocol::{
    self, Completed, Failure, LegacyRequest, ReplicaRequest, ReplicaState, Request, SnapshotLine,
};
use crate::server::keys::KeyRole;
use crate::server::probe;
use crate::server::roles::{self, Incoming, KeyId, ReplicaClients};
use crate::server::watch::Watch;
use crate::store::Store;

/// Serves one request; returns the exit status for sshd to pass back.
/// `role` is what the key line lets this key do, and `name` the client (or,
/// for a replica key, the primary) its forced command names. What the key
/// may ask is decided by [`roles::admit`] before anything touches the store.
pub fn run(store_root: &Path, name: &str, role: KeyRole, command: Option<&str>) -> u8 {
    let store = match crate::lifecycle::open_store(store_root) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("{}", Failure::of(&e).render());
            return e.exit_code().code();
        }
    };
    let named = match role {
        KeyRole::Replica => ClientName::primary(name),
        KeyRole::Client | KeyRole::ReadOnly | KeyRole::PushOnly { .. } | KeyRole::Legacy => {
            ClientName::new(name)
        }
    };
    let named = match named {
        Ok(c) => c,
        Err(e) => {
            store.warn(&format!("receive: bad --client in authorized_keys: {e}"));
            let e = Error::Config(format!("server misconfigured: {e}"));
            eprintln!("{}", Failure::of(&e).render());
            return e.exit_code().code();
        }
    };
    // A push-only key's reads hang on the client's restore window: the
    // role in effect now is what the table decides on.
    let role = roles::in_effect(role, &store, &named, Timestamp::now());
    let incoming = roles::admit(role, named.as_str(), command);
    // What status reports as this client's last attempt (not pings, lists;
    // nothing for a read-only or replica key, whose refusals and restores
    // say nothing about the backups of the client it reads).
    let attempt = match &incoming {
        _ if !matches!(
            role,
            KeyRole::Client | KeyRole::PushOnly { .. } | KeyRole::Legacy
        ) =>
        {
            None
        }
        Ok(incoming) => match incoming.ask() {
            roles::Ask::Receive => Some("receive"),
            roles::Ask::Complete => Some("complete"),
            roles::Ask::Send => Some("send"),
            roles::Ask::Incremental => Some("incremental"),
            _ => None,
        },
        Err(_) => Some("refused"),
    };
    let result = incoming.and_then(|incoming| match incoming {
        // The table admits a client's language only from client,
        // push-only and read-only keys, and a primary's only from replica keys.
        Incoming::Client(request) => serve(&store, &named, request),
        Incoming::Replica(request) => serve_replica(&store, &named, request),
        // Only from legacy keys: the original client's requests, as ours.
        Incoming::Legacy(request) => serve_legacy(&store, &named, request),
    });
    let code = match &result {
        Ok(code) => *code,
        Err(e) => {
            let who = match role {
                KeyRole::Replica => format!("replica of {named}"),
                KeyRole::Client
                | KeyRole::ReadOnly
                | KeyRole::PushOnly { .. }
                | KeyRole::Legacy => named.to_string(),
            };
            store.warn(&format!("{who}: {e} (command {:?})", command.unwrap_or("")));
            eprintln!("{}", Failure::of(e).render());
            e.exit_code().code()
        }
    };
    let client = named;
    // A moved client's attempts are the new server's to record.
    let attempt = attempt.filter(|_| !matches!(result, Err(Error::Moved { .. })));
    if let Some(request) = attempt {
        if let Ok(backups) = ClientBackups::open(&store, &client) {
            // rsync's 24 (files vanished while sent) is a success.
            let ok = code == 0 || (request == "receive" && code == 24);
            let failure = match &result {
                Err(e) => Some(e.to_string()),
                Ok(_) if !ok => Some(rsync::describe_exit(Some(i32::from(code)))),
                Ok(_) => None,
            };
            backups.record_attempt(request, failure);
        }
    }
    code
}

/// Serves a request of a client's language (from a client or read-only
/// key: [`roles::allows`] has decided which). Whatever writes is the client
/// key's own.
fn serve(store: &Store, client: &ClientName, request: Request) -> Result<u8> {
    let backups = ClientBackups::open(store, client)?;
    let key = KeyId::client(client);
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
            let name = backups.complete(Timestamp::now(), note.as_deref(), key.as_str())?;
            crate::sys::crash::point("before-reply");
            let reply = Completed {
                snapshot: name.to_string(),
                partial,
            };
            print!("{}", reply.render());
            Ok(0)
        }
        Request::Receive { options, mode } => {
            confinable(store, client, true)?;
            receive(&backups, &options, mode, &key)
        }
        Request::Incremental { snapshot } => {
            // A transfer that could not run is refused before `current`
            // is readied for it, and one outside the backup windows
            // before its list is read. A moved client is told so first,
            // as its ping would: a client that asks this without pinging
            // follows the redirect at once rather than waiting for a
            // window here.
            confinable(store, client, true)?;
            backups.check_not_moved()?;
            backups.check_window(Timestamp::now())?;
            // The lock first: one list of this client in memory at a time.
            let _lock = store.lock_client(client, store.config.lock_wait.to_std())?;
            let mut text = Vec::new();
            std::io::stdin()
                .take(protocol::MAX_REPLACE_LIST as u64 + 1)
                .read_to_end(&mut text)
                .map_err(|e| Error::Refused(format!("cannot read the replace list: {e}")))?;
            let replace = protocol::parse_replace_list(&text)
                .map_err(|refusal| Error::Refused(format!("refused: {refusal}")))?;
            backups.prepare_incremental_locked(&snapshot, replace, key.as_str())?;
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
            let _slot = store.read_slot(client)?;
            let watch = Watch::start(
                format!("the listing of {client}"),
                store.config.read_timeout,
            );
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            backups.find(all, &snapshots, &patterns, &mut |row| {
                watch.check()?;
                let line = if nanoseconds {
                    row.render_exact()
                } else {
                    row.render()
                };
                writeln!(out, "{line}").map_err(went_away)
            })?;
            out.flush().map_err(went_away)?;
            Ok(0)
        }
        Request::Send { options, paths } => send(&backups, &options, &paths),
        Request::Digest { snapshot, patterns } => digest(&backups, &snapshot, &patterns),
        Request::Diff { from, to, json } => {
            // A diff of snapshots without change logs walks both trees:
            // bounded like a listing, by a read slot and the read timeout.
            let _slot = store.read_slot(client)?;
            let _watch = Watch::start(format!("the diff of {client}"), store.config.read_timeout);
            let diff = backups.diff(from.as_deref(), to.as_deref())?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for line in diff.render(json) {
                writeln!(out, "{line}").map_err(went_away)?;
            }
            out.flush().map_err(went_away)?;
            Ok(0)
        }
    }
}

/// Serves an original byteback client's request (from a legacy key) as
/// the request of ours it means: a listing is printed for a person (its
/// client shows what the server says), and a restore's selection is found
/// by the listing's search and sent by our sender, every path checked by
/// `restore_source` as any restore's.
fn serve_legacy(store: &Store, client: &ClientName, request: LegacyRequest) -> Result<u8> {
    let backups = ClientBackups::open(store, client)?;
    match request {
        LegacyRequest::Same(request) => serve(store, client, request),
        LegacyRequest::List(Request::List {
            all,
            snapshots,
            patterns,
            ..
        }) => {
            let mut printer = crate::listing::Printer::new(false);
            {
                let _slot = store.read_slot(client)?;
                let watch = Watch::start(
                    format!("the listing of {client}"),
                    store.config.read_timeout,
                );
                backups.find(all, &snapshots, &patterns, &mut |row| {
                    watch.check()?;
                    printer.row(&row)
                })?;
            }
            if printer.finish() == 0 {
                println!("** Sorry.  There were no files matching:");
                for p in &patterns {
                    println!("--> {}", crate::catalog::display_path(p));
                }
            }
            Ok(0)
        }
        LegacyRequest::List(other) => serve(store, client, other),
        LegacyRequest::Restore {
            options,
            snapshots,
            all,
            patterns,
        } => {
            let mut paths = Vec::new();
            {
                let _slot = store.read_slot(client)?;
                let watch = Watch::start(
                    format!("the restore selection of {client}"),
                    store.config.read_timeout,
                );
                backups.find(all, &snapshots, &patterns, &mut |row| {
                    watch.check()?;
                    let mut path = row.snapshot.into_bytes();
                    path.extend_from_slice(&row.found.path);
                    paths.push(path);
                    Ok(())
                })?;
            }
            if paths.is_empty() {
                let shown: Vec<String> = patterns
                    .iter()
                    .map(|p| crate::catalog::display_path(p))
                    .collect();
                return Err(Error::NotFound(format!(
                    "nothing in the backups matches {}: list them with byteback-restore --list",
                    shown.join(" ")
                )));
            }
            crate::report::note(format_args!("restoring {} path(s)", paths.len()));
            send(&backups, &options, &paths)
        }
    }
}

/// A failed write to the client.
fn went_away(e: std::io::Error) -> Error {
    Error::Connection(format!("the client went away: {e}"))
}

/// Answers `byteback digest` in one of the client's read slots, within the
/// store's limits (see [`ClientBackups::digest`] and [`Watch`]), each line
/// sent as soon as it is known.
fn digest(backups: &ClientBackups, snapshot: &str, patterns: &[Vec<u8>]) -> Result<u8> {
    let (store, client) = (backups.store, &backups.client);
    let _slot = store.read_slot(client)?;
    let watch = Watch::start(
        format!(
            "the digest of {client}'s snapshot {}",
            crate::catalog::display_path(snapshot.as_bytes())
        ),
        store.config.read_timeout,
    );
    let go_on = || watch.check();
    let limits = ReadLimits {
        max_bytes: store.config.max_digest_bytes,
        go_on: &go_on,
    };
    let mut out = std::io::stdout().lock();
    let stats = backups.digest(snapshot, patterns, &limits, &mut |line| {
        writeln!(out, "{}", line.render())
            .and_then(|()| out.flush())
            .map_err(went_away)
    })?;
    store.log(&format!(
        "{client}: digest of {}: {} file(s), {} inode(s) hashed, {} bytes read, {} bytes of holes not read",
        crate::catalog::display_path(snapshot.as_bytes()),
        stats.files,
        stats.inodes,
        stats.data_bytes,
        stats.hole_bytes
    ));
    Ok(0)
}

/// Serves a request of a primary's language (from its replica key).
fn serve_replica(store: &Store, primary: &ClientName, request: ReplicaRequest) -> Result<u8> {
    let key = KeyId::replica(primary);
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
            // The clients it handed over, and how their backups here go
            // on (what its `move-client --retire` waits for).
            for client in store.clients()? {
                if store.adopted_from(&client).as_deref() != Some(primary.as_str()) {
                    continue;
                }
                let newest = store.snapshots(&client)?.pop().map(|s| s.name.to_string());
                state.adopted.insert(client.to_string(), newest);
            }
            print!("{}", state.render());
            Ok(0)
        }
        ReplicaRequest::Adopt { client, key } => {
            let adopted = crate::server::setup::adopt(store, primary, &client, &key)?;
            print!("{}", adopted.render());
            Ok(0)
        }
        ReplicaRequest::Receive { client, options } => {
            // Outside the windows nothing is made, not even the client.
            crate::lifecycle::check_window(store, Timestamp::now())?;
            let mapped = ClientName::replicated(primary, &client)?;
            let exists = store.has_client(&mapped);
            // Checked before anything is written: a primary creates only
            // the clients the administrator said it replicates.
            let allowed = ReplicaClients::load(store, primary);
            if !allowed.admits(&client, exists) {
                return Err(allowed.refusal(primary, &client));
            }
            if !exists {
                store.add_client(&mapped)?;
                store.log(&format!("{mapped}: new replicated client of {primary}"));
            }
            // A replica's transfer is always a whole pass.
            let mode = protocol::TransferMode::Full;
            receive(&ClientBackups::open(store, &mapped)?, &options, mode, &key)
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
            let name =
                backups.finish_replicated(name, Timestamp::now(), note.as_deref(), key.as_str())?;
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
    let _slot = store.read_slot(client)?;
    enter_dir(store, client, false)?;
    store.log(&format!("{client}: restore of {} path(s)", paths.len()));
    let args = |seen: &Path, confine: bool| {
        let side = server_side(store, ServerRole::Sender, confine.then_some(seen));
        rsync::sender_argv(options, &side, &checked)
    };
    // A restore is not held to the bandwidth budget: it is rare, a person
    // waits for it, and it takes no transfer slot.
    let ended = run_confined(store, client, false, args, |_| None, || None)?;
    Ok(exit_code(&ended.status))
}

/// Runs rsync's receiver inside the client's `current` and nowhere else,
/// for `key`, which spends the transfer slot and is recorded as what
/// produced `current`.
fn receive(
    backups: &ClientBackups,
    options: &[String],
    mode: protocol::TransferMode,
    key: &KeyId,
) -> Result<u8> {
    let (store, client) = (backups.store, &backups.client);
    // The client asks for a run that keeps holes (its files with holes, or
    // an older client's every run); granted, by the server's own option.
    let sparse = protocol::asks_sparse(options);
    // At most max_concurrent_backups transfers at once; the others queue.
    let transfer = backups.begin_transfer(key.as_str(), mode, sparse, &mut |busy| {
        crate::report::note(format_args!(
            "waiting for {busy} other backup(s) to finish (max_concurrent_backups = {})",
            store.config.max_concurrent_backups
        ))
    })?;
    if let Some(notice) = store.client_notice(client) {
        crate::report::warn(notice);
    }
    let plan = transfer.plan().clone();
    let token = backups.ready_change_log()?;
    let log_format = token.format();
    let args = |seen: &Path, confine: bool| {
        let role = ServerRole::Receiver {
            inplace: plan.inplace,
        };
        // The destination is the working directory, whatever the client
        // named; the receiver logs what it changes beside `current`.
        let log = seen.join(crate::lifecycle::changelog::INCOMING);
        // A plain store writes every file it gets whole: holes kept in all
        // of them, so a file with holes that changed between a backup's two
        // runs is never written out dense by the second.
        let side = rsync::ServerSide {
            sparse: sparse || !plan.inplace,
            ..server_side(store, role, confine.then_some(seen))
        };
        rsync::receiver_argv_logged(
            options,
            &side,
            &plan.link_dests,
            Some((&log, log_format.as_str())),
        )
    };
    enter_current(store, client)?;
    store.log(&format!("{client}: receiving backup"));
    // Its share of the bandwidth budget: the budget over the transfers
    // running now, this one included (counted from their slots).
    let budget = store
        .config
        .limits
        .bandwidth
        .as_ref()
        .and_then(Bwlimit::bytes_per_second);
    if budget.is_some() {
        if let Err(e) = transfer.share_bandwidth() {
            store.warn(&format!(
                "{client}: others will not count this transfer against the bandwidth budget: {e}"
            ));
        }
    }
    // At least a byte a second: a share of 0 would read as no limit.
    let share = || budget.map(|b| (b / u64::from(store.bandwidth_shares().max(1))).max(1));
    // (No flushing while the transfer runs: `Transfer::end` syncs before
    // the snapshot anyway, and a syncfs every 3 s measured no gain —
    // transfer 22.47 s → 21.83 s, snapshot 2.600 s → 2.601 s on 835 MiB —
    // while commits forced during a near-full transfer moved the writes
    // the growth watchdog sees.)
    // A transfer over a limit while the disk is short is ended, rather
    // than left to fill the disk for everyone.
    let ended = run_confined(
        store,
        client,
        true,
        args,
        |pid| transfer.over_limit(pid),
        share,
    );
    // A transfer that did not finish may have changed a file in place
    // without logging it: its snapshot's log will compare the trees.
    let finished = ended
        .as_ref()
        .is_ok_and(|e| e.ended_because.is_none() && matches!(e.status.code(), Some(0 | 24)));
    transfer.wrote_and_removed(backups.fold_change_log(Some(&token), finished));
    let ended = ended?;
    store.log(&format!(
        "{client}: relayed {} bytes in, {} out ({})",
        ended.relayed_in,
        ended.relayed_out,
        if ended.spliced {
            "spliced"
        } else {
            "copied: splice refused"
        },
    ));
    if let Some(why) = &ended.ended_because {
        crate::report::note(format_args!("transfer stopped: {why}"));
    }
    transfer.end(&match &ended.ended_because {
        Some(why) => format!("{}, stopped: {why}", ended.status),
        None => ended.status.to_string(),
    });
    Ok(exit_code(&ended.status))
}

/// The server's side of an rsync; `confine_root` is the client's directory
/// as the child sees it, where rsync can confine itself to it.
fn server_side(store: &Store, role: ServerRole, confine_root: Option<&Path>) -> rsync::ServerSide {
    rsync::ServerSide {
        role,
        io_timeout_secs: store.config.io_timeout.as_secs(),
        confine_root: confine_root.map(Path::to_path_buf),
        sparse: false,
    }
}

/// rsync's exit status as ours (a signal counts as rsync's 20).
fn exit_code(status: &std::process::ExitStatus) -> u8 {
    u8::try_from(status.code().unwrap_or(20)).unwrap_or(1)
}

/// Runs the server's rsync (the configured one, see [`probe`]), with the
/// arguments `args(the client's directory as rsync sees it, whether rsync
/// has --confine-root)`, confined to the client's directory (see
/// [`crate::exec::sandbox`]) and between the connection and pipes (see
/// [`relay`]), at most `rate()` bytes per second (see [`relay::run`]).
/// The working directory is already the client's directory (a restore) or
/// its `current` (a backup). Refuses to run rsync with no confinement at
/// all: filter rules could then open any file the backup user can read.
fn run_confined(
    store: &Store,
    client: &ClientName,
    writable: bool,
    args: impl Fn(&Path, bool) -> Vec<std::ffi::OsString>,
    mut check: impl FnMut(u32) -> Option<String>,
    rate: impl FnMut() -> Option<u64>,
) -> Result<relay::Ended> {
    let (jail, facts) = confinable(store, client, writable)?;
    let confine_root = facts.confine_root;
    let unconfined = || unconfined(store, &jail, &facts);
    let (child, enforcement) = jail.spawn(|view| {
        let program = view.program.unwrap_or(&facts.path);
        let cmd = Cmd::new(program)
            .args(args(view.dir, confine_root))
            .configure(|c| {
                c.stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .process_group(0);
            });
        store.log(&format!(
            "{client}: running {} (rsync {facts})",
            cmd.display()
        ));
        cmd
    })?;
    match (enforcement.landlock, enforcement.private_view, confine_root) {
        (false, false, false) => {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
            return Err(unconfined());
        }
        (true, true, _) if enforcement.scoped => {}
        (landlock, private_view, _) => store.log(&format!(
            "{client}: WARNING: rsync {} runs with {}{}{}",
            facts.version,
            match (landlock, enforcement.scoped) {
                (true, true) => "Landlock",
                (true, false) => "Landlock without signal and socket scoping (ABI 6, Linux 6.12)",
                (false, _) => "no Landlock (kernel too old, Landlock disabled or capped in [sandbox])",
            },
            if private_view {
                ", a private view"
            } else {
                ", no private view (unprivileged user namespaces not allowed, or [sandbox] private_view = false)"
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
        rate,
    )
}

/// The sandbox a transfer of `client` gets, and the rsync it runs
/// (probed in it); refused when `[sandbox]` switched both layers off and
/// that rsync has no `--confine-root` — known before anything is readied
/// or written, so a request that would end there changes nothing.
fn confinable(
    store: &Store,
    client: &ClientName,
    writable: bool,
) -> Result<(Confinement, probe::RsyncFacts)> {
    let jail = Confinement {
        dir: store.client_dir(client),
        writable,
        cwd: if writable {
            "current".into()
        } else {
            PathBuf::new()
        },
        program: Some(store.config.rsync.clone()),
        limits: store.config.sandbox.limits(),
    };
    // The rsync that runs is the one asked, in the view it runs in.
    let facts = probe::rsync(store, &jail)?;
    if jail.limits.no_private_view && !jail.layers().filesystem && !facts.confine_root {
        return Err(unconfined(store, &jail, &facts));
    }
    Ok((jail, facts))
}

/// Why rsync is not run at all (no layer of the sandbox, and no
/// `--confine-root`), in one line naming what to change: the `[sandbox]`
/// settings that switched the layers off, or else the kernel; or the rsync.
fn unconfined(store: &Store, jail: &Confinement, facts: &probe::RsyncFacts) -> Error {
    let sandbox = &store.config.sandbox;
    let mut settings = Vec::new();
    if crate::exec::sandbox::layers().filesystem && !jail.layers().filesystem {
        if let Some(abi) = sandbox.landlock_max_abi {
            settings.push(format!("landlock_max_abi = {abi}"));
        }
    }
    if !sandbox.private_view {
        settings.push("private_view = false".to_owned());
    }
    let (why, fix) = match settings.is_empty() {
        true => (
            "on this kernel".to_owned(),
            "upgrade the kernel (Landlock: Linux 5.19 or later, with landlock among its LSMs), allow unprivileged user namespaces, or set `rsync` in server.toml to rsync 3.5.0 or later".to_owned(),
        ),
        false => (
            format!("([sandbox] {} in server.toml)", settings.join(", ")),
            format!(
                "remove {} from [sandbox] in server.toml, or set `rsync` there to rsync 3.5.0 or later",
                settings.join(" and ")
            ),
        ),
    };
    Error::Unsupported(format!(
        "refusing to run rsync unconfined: no Landlock and no private view {why}, and {} (rsync {}) has no --confine-root; {fix}",
        facts.path.display(),
        facts.version
    ))
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
