//! Every key role against every request, on a live server: what the role
//! table (`server/roles.rs`) allows is served, and everything else is
//! refused by name before anything in the store changes — a push-only key
//! both outside and inside a `grant-restore` window. Then the two attacks
//! that the table and the replica's client list stop: a replica key
//! inventing clients, and a read-only key rolling `current` back.

use byteback_testbed as support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use byteback::protocol::Request;
use support::manifest::{self, Entry, Reading};
use support::world::{World, show, stderr};

const CLIENT: &str = "c.example";
const PRIMARY: &str = "prim";
const PUSHER: &str = "push.example";

/// The roles a key line can give, with the flags new-client takes for them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Client,
    ReadOnly,
    Replica,
    /// An original byteback client's key, imported with `import-keys`.
    Legacy,
    /// A client's key enrolled `--push-only`, no restore window open.
    PushOnly,
    /// The same key while `grant-restore` allows it to read.
    PushOnlyGranted,
}

/// Every kind of request, as each side sends it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ask {
    Ping,
    Receive,
    Incremental,
    Complete,
    Snapshots,
    List,
    Digest,
    Send,
    Diff,
    ReplicaState,
    ReplicaReceive,
    ReplicaSnapshot,
    ReplicaAdopt,
}

const ASKS: [Ask; 13] = [
    Ask::Ping,
    Ask::Receive,
    Ask::Incremental,
    Ask::Complete,
    Ask::Snapshots,
    Ask::List,
    Ask::Digest,
    Ask::Send,
    Ask::Diff,
    Ask::ReplicaState,
    Ask::ReplicaReceive,
    Ask::ReplicaSnapshot,
    Ask::ReplicaAdopt,
];

/// The table as docs/security.md states it (written out independently of the
/// code's, so a change to one without the other fails here).
fn allowed(role: Role, ask: Ask) -> bool {
    use Ask::*;
    match role {
        Role::Client => matches!(
            ask,
            Ping | Receive | Incremental | Complete | Snapshots | List | Digest | Send | Diff
        ),
        Role::ReadOnly => matches!(ask, Ping | Snapshots | List | Digest | Send | Diff),
        Role::Replica => matches!(
            ask,
            ReplicaState | ReplicaReceive | ReplicaSnapshot | ReplicaAdopt
        ),
        Role::Legacy => matches!(ask, Ping | Receive | Complete | List | Send),
        Role::PushOnly => matches!(ask, Ping | Receive | Incremental | Complete | Snapshots),
        Role::PushOnlyGranted => matches!(
            ask,
            Ping | Receive | Incremental | Complete | Snapshots | List | Digest | Send | Diff
        ),
    }
}

/// The command line of `ask`, naming the client's real snapshot.
fn command(ask: Ask, snapshot: &str, src: &str) -> String {
    let src = if src.is_empty() { "" } else { src };
    match ask {
        Ask::Ping => "byteback ping".into(),
        Ask::Receive => {
            "rsync --server -lHogDtpAXrRSe.iLsfxCIvu --numeric-ids --inplace . current/".into()
        }
        Ask::Incremental => format!("byteback incremental {snapshot}"),
        Ask::Complete => "byteback complete".into(),
        Ask::Snapshots => "byteback snapshots".into(),
        Ask::List => Request::List {
            all: false,
            nanoseconds: false,
            snapshots: b"*".to_vec(),
            patterns: vec![format!("{src}/*").into_bytes()],
        }
        .render(),
        Ask::Digest => Request::Digest {
            snapshot: snapshot.into(),
            patterns: vec![format!("{src}/*").into_bytes()],
        }
        .render(),
        Ask::Send => format!(
            "rsync --server --sender -logDtpAXrRSe.iLsfxCIvu --numeric-ids . {}{src}",
            snapshot.replace(':', "%3A")
        ),
        Ask::Diff => format!("byteback diff {snapshot}"),
        Ask::ReplicaState => "byteback replica-state".into(),
        Ask::ReplicaReceive => {
            "rsync --server -lHogDtpAXrSe.iLsfxCIvu --numeric-ids . web1/current/".into()
        }
        Ask::ReplicaSnapshot => format!("byteback replica-snapshot web1 {snapshot}"),
        // A key of a key's shape that ssh-keygen cannot read: the replica
        // key's adoption is understood and then refused for its key, so
        // the matrix leaves the store as it was for every role.
        Ask::ReplicaAdopt => "byteback replica-adopt web1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5".into(),
    }
}

/// ssh into the server with the key at `key` (the client's known_hosts).
fn ssh_with(w: &World, key: &Path, command: &str) -> Output {
    let mut options = w.raw_ssh_options();
    let at = options.iter().position(|o| o == "-i").unwrap();
    options[at + 1] = key.to_string_lossy().into_owned();
    Command::new("ssh")
        .args(options)
        .arg(format!("{}@127.0.0.1", w.user.name))
        .arg(command)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh")
}

/// The whole store but its log, locks and records of requests served.
fn store_state(w: &World) -> BTreeMap<PathBuf, Entry> {
    let mut m = manifest::read(w.store(), Reading::Plain);
    m.retain(|p, _| !p.starts_with("./.byteback"));
    for entry in m.values_mut() {
        // The last-attempt record and the producer mark are the server's.
        entry.xattrs.retain(|k, _| k != "user.byteback.last");
    }
    m
}

/// Enrols a new key for `name` with `flags`; returns its private key's path.
fn enrol(w: &World, label: &str, name: &str, flags: &[&str]) -> PathBuf {
    let path = w.area.path.join(format!("{label}-key"));
    let public = support::ssh_keygen(&path);
    let mut args = vec!["new-client", "--name", name];
    args.extend_from_slice(flags);
    args.extend(public.split(' '));
    let out = w.server(&args);
    assert!(out.status.success(), "{}", show(&out));
    path
}

/// A read-only key, as on a replica: for the primary's client `web1`, kept
/// here as `prim__web1`, with one file in one snapshot (taken `at`) and one
/// file no snapshot holds yet. Returns the key's path.
fn reader_of_a_replicated_client(w: &World, at: &str) -> PathBuf {
    let key = enrol(w, "reader", &format!("{PRIMARY}__web1"), &["--read-only"]);
    let current = w.store().join(format!("{PRIMARY}__web1/current"));
    let file = current.join("file").to_string_lossy().into_owned();
    let out = w.user.run_as(&["cp", "/etc/hostname", &file]);
    assert!(out.status.success(), "{}", show(&out));
    let name = format!("{PRIMARY}__web1");
    let out = w.server(&["snapshot", "--client", &name, "--at", at]);
    assert!(out.status.success(), "{}", show(&out));
    let unsnapshotted = current.join("unsnapshotted").to_string_lossy().into_owned();
    let out = w.user.run_as(&["cp", "/etc/hostname", &unsnapshotted]);
    assert!(out.status.success(), "{}", show(&out));
    key
}

/// Every key role (client, read-only, replica, an original client's
/// imported line, push-only without and with a restore window) × every
/// request against a live server: what the role table allows is served,
/// and everything else is refused by name (exit 6) with the store
/// byte-identical; a push-only key's refused reads name `grant-restore`.
#[test]
fn every_role_gets_exactly_its_requests() {
    let Some(w) = World::new("roles") else {
        return;
    };
    w.enroll(CLIENT);
    std::fs::write(w.src.join("file"), "data\n").unwrap();
    w.backup_ok();
    let snapshot = w.snapshots(CLIENT)[0].clone();
    let replica = enrol(&w, "replica", PRIMARY, &["--replica", "--clients", "web1"]);
    let read_at = "2026-01-01T12:00:00Z";
    let reader = reader_of_a_replicated_client(&w, read_at);
    // An original byteback client's key line, imported.
    let legacy = w.area.path.join("legacy-key");
    let public = support::ssh_keygen(&legacy);
    w.user.authorize_key(&format!(
        r#"command="byteback-receive",from="127.0.0.1",environment="BYTEBACK_HOST=old.example" {public} byteback client key"#
    ));
    let out = w.server(&["import-keys"]);
    assert!(out.status.success(), "{}", show(&out));
    // A client enrolled as usual, then switched to push-only.
    let pusher_at = "2026-01-02T12:00:00Z";
    let pusher = w.add_client_with_file(PUSHER, "file", "data\n", pusher_at);
    let public = std::fs::read_to_string(format!("{}.pub", pusher.display())).unwrap();
    let enrol_as = |flags: &[&str]| {
        let mut args = vec!["new-client", "--name", PUSHER];
        args.extend_from_slice(flags);
        args.extend(public.split_whitespace());
        w.server(&args)
    };
    // Another role for the same key only on request.
    let out = enrol_as(&["--push-only"]);
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    assert!(stderr(&out).contains("--replace-key"), "{}", show(&out));
    let out = enrol_as(&["--push-only", "--replace-key"]);
    assert!(out.status.success(), "{}", show(&out));
    let keys = [
        (
            Role::Client,
            w.client_dir.join("key"),
            snapshot.as_str(),
            w.src.to_string_lossy().into_owned(),
        ),
        (Role::ReadOnly, reader, read_at, String::new()),
        (Role::Replica, replica, read_at, String::new()),
        (Role::Legacy, legacy, read_at, String::new()),
        (Role::PushOnly, pusher.clone(), pusher_at, String::new()),
        (Role::PushOnlyGranted, pusher, pusher_at, String::new()),
    ];
    let mut refused = 0;
    for (role, key, snapshot, src) in &keys {
        if *role == Role::PushOnlyGranted {
            let out = w.server(&["grant-restore", "--client", PUSHER, "--for", "1h"]);
            assert!(out.status.success(), "{}", show(&out));
        }
        for ask in ASKS {
            let line = command(ask, snapshot, src);
            let before = store_state(&w);
            let out = ssh_with(&w, key, &line);
            let by_table = stderr(&out).contains("is not allowed for this key");
            // A client may name any destination (its receiver writes its
            // own `current`), so a replica's transfer line is, from a
            // client's key, that client's own transfer.
            let ask = match (role, ask) {
                (Role::Replica, _) => ask,
                (_, Ask::ReplicaReceive) => Ask::Receive,
                _ => ask,
            };
            if allowed(*role, ask) {
                assert!(!by_table, "{role:?} × {ask:?} refused: {}", show(&out));
                // Understood, so served (or refused for its own reasons).
                assert!(
                    !stderr(&out).contains("badly encoded") && !stderr(&out).contains("unknown"),
                    "{role:?} × {ask:?}: {}",
                    show(&out)
                );
            } else {
                refused += 1;
                assert!(by_table, "{role:?} × {ask:?} not refused: {}", show(&out));
                assert_eq!(out.status.code(), Some(6), "{}", show(&out));
                if *role == Role::PushOnly
                    && matches!(ask, Ask::List | Ask::Digest | Ask::Send | Ask::Diff)
                {
                    let remedy = format!("byteback-server grant-restore --client {PUSHER}");
                    assert!(stderr(&out).contains(&remedy), "{}", show(&out));
                }
                manifest::assert_same(
                    &format!("the store after {role:?} × {ask:?}"),
                    &before,
                    &store_state(&w),
                );
            }
        }
    }
    // Of 13 each: 3 of the client's (the replica's transfer line is its
    // own), 7 of the read-only key's, 9 of the replica's, 7 of the
    // original client's, 7 of the push-only key's (its reads and the
    // replica's requests) and 3 of it within a window (as a client's).
    assert_eq!(refused, 3 + 7 + 9 + 7 + 7 + 3);
    println!("roles: {refused} refusals of 78 requests, each leaving the store unchanged");
}

/// A replica key is enrolled only with `--clients`; clients it invents are
/// refused with nothing made, the stated one is served, and enrolling the
/// same key again changes its list.
#[test]
fn a_replica_key_creates_only_the_clients_it_was_enrolled_for() {
    let Some(w) = World::new("roles-replica") else {
        return;
    };
    w.enroll(CLIENT);
    // Without --clients a replica key is not enrolled at all.
    let path = w.area.path.join("nolist-key");
    let public = support::ssh_keygen(&path);
    let mut args = vec!["new-client", "--replica", "--name", PRIMARY];
    args.extend(public.split(' '));
    let out = w.server(&args);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("--clients"), "{}", show(&out));
    let key = enrol(&w, "replica", PRIMARY, &["--replica", "--clients", "web1"]);
    let before = store_state(&w);
    for evil in ["evil1", "evil2", "web1.evil", "web"] {
        let out = ssh_with(
            &w,
            &key,
            &format!("rsync --server -lHogDtpAXrSe.iLsfxCIvu --numeric-ids . {evil}/current/"),
        );
        assert_eq!(out.status.code(), Some(6), "{evil}: {}", show(&out));
        assert!(
            stderr(&out).contains("may not replicate client"),
            "{evil}: {}",
            show(&out)
        );
        assert!(!w.store().join(format!("{PRIMARY}__{evil}")).exists());
    }
    manifest::assert_same(
        "the store after invented clients",
        &before,
        &store_state(&w),
    );
    // The stated client is served (its space is made on first use).
    let out = ssh_with(
        &w,
        &key,
        "rsync --server -lHogDtpAXrSe.iLsfxCIvu --numeric-ids . web1/current/",
    );
    assert!(
        !stderr(&out).contains("may not replicate"),
        "{}",
        show(&out)
    );
    assert!(w.store().join(format!("{PRIMARY}__web1/current")).exists());
    // Enrolling again with the same key changes the list.
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let mut args = vec![
        "new-client",
        "--replica",
        "--name",
        PRIMARY,
        "--clients",
        "web1,db1",
    ];
    args.extend(public.split_whitespace());
    let out = w.server(&args);
    assert!(out.status.success(), "{}", show(&out));
    let out = ssh_with(
        &w,
        &key,
        "rsync --server -lHogDtpAXrSe.iLsfxCIvu --numeric-ids . db1/current/",
    );
    assert!(
        !stderr(&out).contains("may not replicate"),
        "{}",
        show(&out)
    );
}

/// A read-only key's `incremental` and `complete` requests are refused, and
/// the replicated client's `current`, with data no snapshot holds yet,
/// stays unchanged.
#[test]
fn a_read_only_key_cannot_roll_current_back() {
    let Some(w) = World::new("roles-reader") else {
        return;
    };
    w.enroll(CLIENT);
    // A replica's copy of a primary's client, with data no snapshot holds
    // yet (as between a replica transfer and its snapshot), and a reader.
    let snapshot = "2026-01-01T12:00:00Z";
    let reader = reader_of_a_replicated_client(&w, snapshot);
    let client = format!("{PRIMARY}__web1");
    let current = w.store().join(&client).join("current");
    let before = manifest::read(&current, Reading::FakeSuper);
    for line in [
        format!("byteback incremental {snapshot}"),
        "byteback complete".to_owned(),
    ] {
        let out = ssh_with(&w, &reader, &line);
        assert_eq!(out.status.code(), Some(6), "{line}: {}", show(&out));
        assert!(stderr(&out).contains("--read-only"), "{}", show(&out));
    }
    manifest::assert_same(
        "current after the reader's requests",
        &before,
        &manifest::read(&current, Reading::FakeSuper),
    );
    assert!(current.join("unsnapshotted").exists());
    assert_eq!(w.snapshots(&client), [snapshot]);
}
