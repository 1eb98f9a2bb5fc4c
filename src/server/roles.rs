//! What each kind of key may ask of the server: the one table that decides.
//!
//! Every key line's forced command names a role ([`KeyRole`]); everything a
//! key sends is parsed into an [`Incoming`] request of either language (a
//! client's or a primary's), and [`allows`] says whether that role may make
//! that request. It is an allow-list matched exhaustively, with no catch-all
//! arm: a new role or a new request does not compile until someone has
//! written down, here, what it may do. The check runs before anything
//! touches the store (`receive::run`), so a refused request changes nothing.
//!
//! A push-only key's reads depend on a record the administrator sets
//! (`grant-restore`, [`crate::store::grant`]): the forced command reads it
//! first and turns the key line's role into the role in effect now
//! ([`in_effect`]: `PushOnly { granted }`), and only then asks the table.
//! So the window is one more row of the same table, not a check elsewhere.
//!
//! Rules that are not about the kind of request (which clients a replica
//! key may create, how much space and how many transfer slots a key may
//! spend) belong to the key too, and are stated next to the request they
//! bound — see [`ReplicaClients`] and [`KeyId`].
//!
//! No request of any role reads or clears a suspect mark
//! ([`crate::store::suspect`]): there is no such request in either language,
//! so none is in this table. A mark is made by the lifecycle's judgement of
//! a snapshot's change log and cleared only by `byteback-server ack`, run by
//! a person on the server; a client's backups only add snapshots to judge.

use std::collections::BTreeSet;

use crate::error::{Error, IoContext, Result};
use crate::names::ClientName;
use crate::protocol::{self, LegacyRequest, Refusal, ReplicaRequest, Request};
use crate::server::keys::KeyRole;
use crate::store::Store;

/// A request of either language, as parsed from `SSH_ORIGINAL_COMMAND`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A client's language ([`protocol::parse`]).
    Client(Request),
    /// A primary's language on its replica ([`protocol::parse_replica`]).
    Replica(ReplicaRequest),
    /// The original byteback's language ([`protocol::parse_legacy`]): each
    /// is of the kind of the request of ours it is served as.
    Legacy(LegacyRequest),
}

/// The kind of a request, without its arguments: what the table decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ask {
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

impl Ask {
    /// Every kind, for tests that walk the whole table.
    pub const ALL: [Ask; 13] = [
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

    /// The request's name in refusals and logs.
    pub fn name(self) -> &'static str {
        match self {
            Ask::Ping => "ping",
            Ask::Receive => "a backup transfer (rsync receiver)",
            Ask::Incremental => "incremental",
            Ask::Complete => "complete",
            Ask::Snapshots => "snapshots",
            Ask::List => "list",
            Ask::Digest => "digest",
            Ask::Send => "a restore (rsync sender)",
            Ask::Diff => "diff",
            Ask::ReplicaState => "replica-state",
            Ask::ReplicaReceive => "a replica transfer (rsync receiver into CLIENT/current/)",
            Ask::ReplicaSnapshot => "replica-snapshot",
            Ask::ReplicaAdopt => "replica-adopt",
        }
    }
}

impl Incoming {
    /// The request's kind.
    pub fn ask(&self) -> Ask {
        let client = |r: &Request| match r {
            Request::Ping => Ask::Ping,
            Request::Receive { .. } => Ask::Receive,
            Request::Incremental { .. } => Ask::Incremental,
            Request::Complete { .. } => Ask::Complete,
            Request::Snapshots => Ask::Snapshots,
            Request::List { .. } => Ask::List,
            Request::Digest { .. } => Ask::Digest,
            Request::Send { .. } => Ask::Send,
            Request::Diff { .. } => Ask::Diff,
        };
        match self {
            Incoming::Client(r) => client(r),
            Incoming::Legacy(LegacyRequest::Same(r) | LegacyRequest::List(r)) => client(r),
            // A selection resolved into our sender's paths.
            Incoming::Legacy(LegacyRequest::Restore { .. }) => Ask::Send,
            Incoming::Replica(r) => match r {
                ReplicaRequest::State => Ask::ReplicaState,
                ReplicaRequest::Receive { .. } => Ask::ReplicaReceive,
                ReplicaRequest::Snapshot { .. } => Ask::ReplicaSnapshot,
                ReplicaRequest::Adopt { .. } => Ask::ReplicaAdopt,
            },
        }
    }
}

/// THE TABLE: whether a key of `role` may make a request of kind `ask`.
///
/// - A **client** key backs up, lists, restores, verifies and diffs its own
///   client; it speaks nothing of the replica language.
/// - A **read-only** key (a client's key on a replica, or a reader) may
///   look and read back, never write: no transfer, no `incremental` (it
///   rolls `current` back), no `complete`.
/// - A **replica** key (a primary server) may only report what it holds
///   and add its clients' snapshots; it cannot restore, list or ping. And
///   it may hand one of its clients over (`replica-adopt`, the end of
///   `move-client`): its copy here becomes that client, with the client's
///   own key — only for a client stated at enrolment
///   ([`ReplicaClients::admits_adoption`]), whose name and key nobody here
///   holds yet (`server::setup::adopt`).
/// - A **push-only** key backs up its own client (ping, transfer,
///   `incremental`, `complete`, and `snapshots`: the names and times of
///   its snapshots, which its incremental backups start from, but nothing
///   of what they hold) and cannot read anything back: no `list`, no
///   restore, no `digest`, no `diff` (its paths are what it would hide) —
///   unless the administrator has opened a window
///   (`grant-restore`), during which it may do all a client key may.
/// - A **legacy** key (an original byteback client's, `import-keys`) may
///   do what the original's client does — ping, transfer, snapshot, list,
///   restore — and nothing it never asked for (no `incremental`, no
///   `snapshots`, no `digest`).
pub fn allows(role: KeyRole, ask: Ask) -> bool {
    use Ask::*;
    match role {
        KeyRole::Client => match ask {
            Ping | Receive | Incremental | Complete | Snapshots | List | Digest | Send | Diff => {
                true
            }
            ReplicaState | ReplicaReceive | ReplicaSnapshot | ReplicaAdopt => false,
        },
        KeyRole::ReadOnly => match ask {
            Ping | Snapshots | List | Digest | Send | Diff => true,
            Receive | Incremental | Complete | ReplicaState | ReplicaReceive | ReplicaSnapshot
            | ReplicaAdopt => false,
        },
        KeyRole::Replica => match ask {
            ReplicaState | ReplicaReceive | ReplicaSnapshot | ReplicaAdopt => true,
            Ping | Receive | Incremental | Complete | Snapshots | List | Digest | Send | Diff => {
                false
            }
        },
        KeyRole::PushOnly { granted: false } => match ask {
            Ping | Receive | Incremental | Complete | Snapshots => true,
            List | Digest | Send | Diff | ReplicaState | ReplicaReceive | ReplicaSnapshot
            | ReplicaAdopt => false,
        },
        KeyRole::PushOnly { granted: true } => match ask {
            Ping | Receive | Incremental | Complete | Snapshots | List | Digest | Send | Diff => {
                true
            }
            ReplicaState | ReplicaReceive | ReplicaSnapshot | ReplicaAdopt => false,
        },
        KeyRole::Legacy => match ask {
            Ping | Receive | Complete | List | Send => true,
            Incremental | Snapshots | Digest | Diff | ReplicaState | ReplicaReceive
            | ReplicaSnapshot | ReplicaAdopt => false,
        },
    }
}

/// Parses a command in the role's own language first, then in the other
/// (so that a request of the wrong language is refused by [`allows`], by
/// name, rather than as gibberish); if neither parses, the refusal of the
/// role's own language.
pub fn parse(role: KeyRole, command: Option<&str>) -> std::result::Result<Incoming, Refusal> {
    let as_client = || protocol::parse(command).map(Incoming::Client);
    let as_replica = || protocol::parse_replica(command).map(Incoming::Replica);
    let as_legacy = || protocol::parse_legacy(command).map(Incoming::Legacy);
    match role {
        KeyRole::Client | KeyRole::ReadOnly | KeyRole::PushOnly { .. } => {
            as_client().or_else(|e| as_replica().map_err(|_| e))
        }
        KeyRole::Replica => as_replica().or_else(|e| as_client().map_err(|_| e)),
        KeyRole::Legacy => as_legacy()
            .or_else(|e| as_client().map_err(|_| e))
            .or_else(|e| as_replica().map_err(|_| e)),
    }
}

/// The role a key line's `role` has now, for `client`: a push-only key's
/// reads are granted while the client's restore window
/// ([`Store::restore_granted`]) is open at `now`; every other role is what
/// its line says.
pub fn in_effect(
    role: KeyRole,
    store: &Store,
    client: &ClientName,
    now: jiff::Timestamp,
) -> KeyRole {
    match role {
        KeyRole::PushOnly { .. } => KeyRole::PushOnly {
            granted: store.restore_granted(client, now),
        },
        KeyRole::Client | KeyRole::ReadOnly | KeyRole::Replica | KeyRole::Legacy => role,
    }
}

/// Parses and checks a command against the table: the request, or the
/// refusal a key of `role` gets. `name` is the client (or primary) the
/// key line names, for a refusal's remedy.
pub fn admit(role: KeyRole, name: &str, command: Option<&str>) -> Result<Incoming> {
    let incoming =
        parse(role, command).map_err(|refusal| Error::Refused(format!("refused: {refusal}")))?;
    let ask = incoming.ask();
    if allows(role, ask) {
        return Ok(incoming);
    }
    let enrolled = match role.flag() {
        Some(flag) => format!("with {flag}"),
        None => "as a client".to_owned(),
    };
    // A push-only key's owner needs to know how a restore is done after all.
    let remedy = match role {
        KeyRole::PushOnly { granted: false } if allows(KeyRole::Client, ask) => format!(
            "this key may only push; to read back, on the server run `byteback-server grant-restore --client {name} --for 1h` (or read there: `byteback-server list --client {name}`); "
        ),
        _ => String::new(),
    };
    Err(Error::Refused(format!(
        "refused: {} is not allowed for this key: it was enrolled {enrolled} ({}); {remedy}see docs/security.md, \"Key roles\"",
        ask.name(),
        role.describe()
    )))
}

/// Who spends what a request writes: the key, not the client name it
/// writes under. A client key spends for its client; a replica key for all
/// of its primary's clients together. Locks and limits that bound a key
/// (its transfer slot, the generation mark of `current`) are named by it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// The key of a client's own line.
    pub fn client(client: &ClientName) -> KeyId {
        KeyId(format!("client:{client}"))
    }

    /// The key of a primary server on its replica.
    pub fn replica(primary: &ClientName) -> KeyId {
        KeyId(format!("replica:{primary}"))
    }

    /// As written in marks and lock names (letters, digits, `.-_:` only,
    /// since client names are).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which clients a primary's replica key may replicate here, as the
/// administrator stated at enrolment (`new-client --replica --clients
/// A,B`), kept in `<store>/.byteback/replica-clients/<PRIMARY>`, one name a
/// line. A client outside it is refused before anything is written. A
/// replica key enrolled before this list existed may go on replicating the
/// clients it already has here, and no others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaClients {
    /// The names stated at enrolment (`None`: never stated).
    pub stated: Option<BTreeSet<ClientName>>,
}

impl ReplicaClients {
    fn path(store: &Store, primary: &ClientName) -> std::path::PathBuf {
        Store::state_dir_of(store.root())
            .join("replica-clients")
            .join(primary.as_str())
    }

    /// Reads the list for `primary` (an unreadable or missing file: never stated).
    pub fn load(store: &Store, primary: &ClientName) -> ReplicaClients {
        let Ok(text) = std::fs::read_to_string(Self::path(store, primary)) else {
            return ReplicaClients::default();
        };
        let names = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| ClientName::new(l).ok())
            .collect();
        ReplicaClients {
            stated: Some(names),
        }
    }

    /// Writes the list for `primary` (atomically).
    pub fn save(store: &Store, primary: &ClientName, names: &BTreeSet<ClientName>) -> Result<()> {
        let path = Self::path(store, primary);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).on("cannot create", dir)?;
        }
        let mut text = format!(
            "# Clients the replica key of {primary} may replicate here (byteback-server new-client --replica --clients).\n"
        );
        for name in names {
            text.push_str(name.as_str());
            text.push('\n');
        }
        crate::sys::fs::write_atomic(&path, text.as_bytes(), 0o600)
    }

    /// Whether the key may write into `client` of its primary; `exists`:
    /// whether the store already holds that replicated client.
    pub fn admits(&self, client: &ClientName, exists: bool) -> bool {
        match &self.stated {
            Some(names) => names.contains(client),
            None => exists,
        }
    }

    /// Whether the key may hand `client` over to this server
    /// (`replica-adopt`): only a client the administrator stated at
    /// enrolment. A key enrolled before the list existed hands over none.
    pub fn admits_adoption(&self, client: &ClientName) -> bool {
        self.stated
            .as_ref()
            .is_some_and(|names| names.contains(client))
    }

    /// The refusal of an adoption outside the list.
    pub fn adoption_refusal(&self, primary: &ClientName, client: &ClientName) -> Error {
        Error::Refused(format!(
            "refused: primary {primary} may not hand client {client} over to this server (not among the clients stated at enrolment); on this server run `byteback-server new-client --replica --name {primary} --clients NAME,... KEY` with every client it may replicate or move here"
        ))
    }

    /// The refusal for a client outside the list.
    pub fn refusal(&self, primary: &ClientName, client: &ClientName) -> Error {
        let remedy = format!(
            "on this server run `byteback-server new-client --replica --name {primary} --clients NAME,... KEY` with every client it may replicate"
        );
        match &self.stated {
            Some(_) => Error::Refused(format!(
                "refused: primary {primary} may not replicate client {client} here (not among the clients stated at enrolment); {remedy}"
            )),
            None => Error::Refused(format!(
                "refused: primary {primary} has no list of the clients it may replicate here, and {client} is not one it already has; {remedy}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: [KeyRole; 6] = [
        KeyRole::Client,
        KeyRole::ReadOnly,
        KeyRole::PushOnly { granted: false },
        KeyRole::PushOnly { granted: true },
        KeyRole::Replica,
        KeyRole::Legacy,
    ];

    /// The table written out again, row by row, as docs/security.md ("Key roles") states it:
    /// a change to either must be made to both.
    fn expected(role: KeyRole) -> &'static [Ask] {
        use Ask::*;
        match role {
            KeyRole::Client => &[
                Ping,
                Receive,
                Incremental,
                Complete,
                Snapshots,
                List,
                Digest,
                Send,
                Diff,
            ],
            KeyRole::ReadOnly => &[Ping, Snapshots, List, Digest, Send, Diff],
            KeyRole::PushOnly { granted: false } => {
                &[Ping, Receive, Incremental, Complete, Snapshots]
            }
            KeyRole::PushOnly { granted: true } => &[
                Ping,
                Receive,
                Incremental,
                Complete,
                Snapshots,
                List,
                Digest,
                Send,
                Diff,
            ],
            KeyRole::Replica => &[ReplicaState, ReplicaReceive, ReplicaSnapshot, ReplicaAdopt],
            KeyRole::Legacy => &[Ping, Receive, Complete, List, Send],
        }
    }

    #[test]
    fn the_table_is_the_documented_allow_list() {
        for role in ROLES {
            for ask in Ask::ALL {
                assert_eq!(
                    allows(role, ask),
                    expected(role).contains(&ask),
                    "{role:?} × {ask:?}"
                );
            }
        }
    }

    #[test]
    fn no_role_writes_without_being_a_writer() {
        let writes = [
            Ask::Receive,
            Ask::Incremental,
            Ask::Complete,
            Ask::ReplicaReceive,
            Ask::ReplicaSnapshot,
            Ask::ReplicaAdopt,
        ];
        for ask in writes {
            assert!(!allows(KeyRole::ReadOnly, ask), "{ask:?}");
        }
        // Each writing request belongs to exactly one role of ours; an
        // original client's key writes only what a client key writes.
        for ask in writes {
            let ours = [KeyRole::Client, KeyRole::ReadOnly, KeyRole::Replica];
            assert_eq!(ours.iter().filter(|r| allows(**r, ask)).count(), 1);
            assert!(!allows(KeyRole::Legacy, ask) || allows(KeyRole::Client, ask));
            for granted in [false, true] {
                let push_only = KeyRole::PushOnly { granted };
                assert!(!allows(push_only, ask) || allows(KeyRole::Client, ask));
            }
        }
    }

    /// A push-only key is a client key without the reads, and with a
    /// restore window open, exactly a client key; its refusals name the
    /// two remedies.
    #[test]
    fn a_push_only_key_reads_only_while_granted() {
        let reads = [Ask::List, Ask::Digest, Ask::Send, Ask::Diff];
        for ask in Ask::ALL {
            let pushing = allows(KeyRole::PushOnly { granted: false }, ask);
            assert_eq!(
                pushing,
                allows(KeyRole::Client, ask) && !reads.contains(&ask),
                "{ask:?}"
            );
            assert_eq!(
                allows(KeyRole::PushOnly { granted: true }, ask),
                allows(KeyRole::Client, ask),
                "{ask:?}"
            );
        }
        for ask in reads {
            let e = admit(
                KeyRole::PushOnly { granted: false },
                "web1",
                Some(&sample(ask)),
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains("enrolled with --push-only"), "{e}");
            assert!(
                e.contains("byteback-server grant-restore --client web1 --for 1h"),
                "{e}"
            );
            assert!(e.contains("byteback-server list --client web1"), "{e}");
            assert!(
                admit(
                    KeyRole::PushOnly { granted: true },
                    "web1",
                    Some(&sample(ask))
                )
                .is_ok()
            );
        }
        // A replica's request gets no restore remedy: no grant would allow it.
        let e = admit(
            KeyRole::PushOnly { granted: true },
            "web1",
            Some(&sample(Ask::ReplicaState)),
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("grant-restore"), "{e}");
    }

    /// The original client's lines, as a legacy key's, and what they are.
    #[test]
    fn an_original_clients_lines_read_as_ours_for_its_key_only() {
        let lines = [
            ("byteback-receive --ping ", Ask::Ping),
            (
                "rsync --fake-super --server -logDtpXrRe.iLsfxCIvu --timeout=10800 --delete-during --delete-excluded --numeric-ids --inplace . .",
                Ask::Receive,
            ),
            ("byteback-receive --complete ", Ask::Complete),
            ("byteback-snapshot --snapshot ", Ask::Complete),
            ("byteback-receive --snapshot * --list /etc", Ask::List),
            (
                "byteback-restore --fake-super --snapshot * --server --sender -logDtprRze.iLsfxCIvu --timeout=300 --numeric-ids --inplace . /etc/hostname",
                Ask::Send,
            ),
        ];
        for (line, ask) in lines {
            let admitted =
                admit(KeyRole::Legacy, "old", Some(line)).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(admitted.ask(), ask, "{line}");
            for role in [KeyRole::Client, KeyRole::ReadOnly, KeyRole::Replica] {
                assert!(admit(role, "old", Some(line)).is_err(), "{role:?} {line}");
            }
        }
        // What it never asked for is refused by name.
        for ask in [
            Ask::Incremental,
            Ask::Snapshots,
            Ask::Digest,
            Ask::ReplicaState,
        ] {
            let e = admit(KeyRole::Legacy, "old", Some(&sample(ask))).unwrap_err();
            assert!(e.to_string().contains("enrolled with --legacy"), "{e}");
        }
        // Gibberish gets the original language's refusal.
        let e = admit(KeyRole::Legacy, "old", Some("/bin/sh")).unwrap_err();
        assert!(e.to_string().contains("original byteback client"), "{e}");
    }

    /// One command line of each kind, as each side renders it.
    fn sample(ask: Ask) -> String {
        let snapshot = "2026-11-26T03:00:00Z";
        let client = |r: Request| r.render();
        match ask {
            Ask::Ping => client(Request::Ping),
            Ask::Receive => {
                "rsync --server -lHogDtpAXrRSe.iLsfxCIvu --numeric-ids --inplace . current/".into()
            }
            Ask::Incremental => client(Request::Incremental {
                snapshot: snapshot.into(),
            }),
            Ask::Complete => client(Request::Complete { partial: false }),
            Ask::Snapshots => client(Request::Snapshots),
            Ask::List => client(Request::List {
                all: false,
                nanoseconds: false,
                snapshots: b"*".to_vec(),
                patterns: vec![b"/etc".to_vec()],
            }),
            Ask::Digest => client(Request::Digest {
                snapshot: snapshot.into(),
                patterns: vec![b"/etc".to_vec()],
            }),
            Ask::Send => client(Request::Send {
                options: vec!["-logDtpAXrRSe.iLsfxCIvu".into(), "--numeric-ids".into()],
                paths: vec![format!("{snapshot}/etc").into_bytes()],
            }),
            Ask::Diff => client(Request::Diff {
                from: None,
                to: Some(snapshot.into()),
                json: true,
            }),
            Ask::ReplicaState => ReplicaRequest::State.render(),
            Ask::ReplicaReceive => {
                "rsync --server -lHogDtpAXrSe.iLsfxCIvu --numeric-ids . web1/current/".into()
            }
            Ask::ReplicaSnapshot => ReplicaRequest::Snapshot {
                client: ClientName::new("web1").unwrap(),
                name: crate::names::SnapshotName::parse(snapshot).unwrap(),
                partial: false,
            }
            .render(),
            Ask::ReplicaAdopt => ReplicaRequest::Adopt {
                client: ClientName::new("web1").unwrap(),
                key: crate::protocol::ClientKey::new("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5")
                    .unwrap(),
            }
            .render(),
        }
    }

    #[test]
    fn every_role_parses_every_language_and_the_table_decides() {
        for role in ROLES {
            for ask in Ask::ALL {
                let line = sample(ask);
                let parsed = parse(role, Some(&line))
                    .unwrap_or_else(|e| panic!("{role:?} {ask:?} {line}: {e}"));
                // A role's own requests read as themselves; a line of the
                // other language may read as one of the role's (a client
                // may name any destination: its receiver writes `current`).
                if allows(role, ask) {
                    assert_eq!(parsed.ask(), ask, "{line}");
                }
                let admitted = admit(role, "web1", Some(&line));
                assert_eq!(
                    admitted.is_ok(),
                    allows(role, parsed.ask()),
                    "{role:?} × {ask:?}"
                );
                if let Err(e) = admitted {
                    assert!(e.to_string().contains("is not allowed for this key"), "{e}");
                }
            }
        }
    }

    #[test]
    fn replica_clients_admit_only_what_was_stated() {
        let web = ClientName::new("web1").unwrap();
        let evil = ClientName::new("evil1").unwrap();
        let never = ReplicaClients::default();
        assert!(never.admits(&web, true), "an existing client goes on");
        assert!(!never.admits(&evil, false), "no new client without a list");
        let stated = ReplicaClients {
            stated: Some([web.clone()].into_iter().collect()),
        };
        assert!(stated.admits(&web, false));
        assert!(!stated.admits(&evil, false));
        assert!(
            !stated.admits(&evil, true),
            "the list wins over what exists"
        );
        let p = ClientName::new("primary").unwrap();
        assert!(stated.refusal(&p, &evil).to_string().contains("--clients"));
        // Handing a client over needs the stated list, whatever exists.
        assert!(stated.admits_adoption(&web));
        assert!(!stated.admits_adoption(&evil));
        assert!(!never.admits_adoption(&web));
        assert!(
            stated
                .adoption_refusal(&p, &evil)
                .to_string()
                .contains("may not hand client evil1 over")
        );
    }
}
