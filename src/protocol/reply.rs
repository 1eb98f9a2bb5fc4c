//! What the server answers: every line it sends back, as a type with
//! `render` (the server) and `parse` (the client) side by side, so the two
//! cannot drift. Requests are in the parent module.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::destination::Destination;
use crate::error::Error;
use crate::finder::Found;

use super::wire::{self, DecodeError};

/// What the server tells a client about its space, in answer to a ping.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PingReply {
    /// The protocol version the server speaks.
    pub protocol: u32,
    /// The client's name as the server knows it.
    pub client: String,
    /// Bytes the store can still take.
    pub free_bytes: u64,
    /// Size of the store's filesystem.
    pub total_bytes: u64,
    /// How many snapshots this client has.
    pub snapshots: u64,
    /// This client's newest snapshot, if any.
    pub newest: Option<String>,
    /// A space problem on the server that needs a person, if any.
    pub alert: Option<String>,
    /// A message for this client (e.g. why its last transfer was discarded).
    pub notice: Option<String>,
    /// Why this client's last attempt failed, if it did (its status is
    /// `failing` until one succeeds).
    pub failing: Option<String>,
    /// The server's backup windows, as its config writes them, with its
    /// time zone (protocol 5), if it has any.
    pub windows: Option<String>,
    /// Outside every window: when the next opens (protocol 5). A transfer
    /// asked before then is refused `[retry-after]` that time.
    pub closed_until: Option<Timestamp>,
}

impl PingReply {
    /// `key=value` lines; unknown keys are ignored by older clients.
    pub fn render(&self) -> String {
        let mut text = format!(
            "protocol={}\nclient={}\nfree_bytes={}\ntotal_bytes={}\nsnapshots={}\nnewest={}\n",
            self.protocol,
            self.client,
            self.free_bytes,
            self.total_bytes,
            self.snapshots,
            self.newest.as_deref().unwrap_or("none"),
        );
        let closed_until = self.closed_until.map(|t| t.strftime(UTC).to_string());
        for (key, value) in [
            ("alert", &self.alert),
            ("notice", &self.notice),
            ("failing", &self.failing),
            ("windows", &self.windows),
            ("closed_until", &closed_until),
        ] {
            if let Some(v) = value {
                text.push_str(&format!("{key}={}\n", v.replace('\n', " ")));
            }
        }
        text
    }

    /// Reads a reply; `None` if it is not one (e.g. a login banner or an old server).
    pub fn parse(text: &str) -> Option<Self> {
        let fields: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let number = |k: &str| fields.get(k)?.parse::<u64>().ok();
        Some(PingReply {
            protocol: fields.get("protocol")?.parse().ok()?,
            client: fields.get("client")?.to_string(),
            free_bytes: number("free_bytes")?,
            total_bytes: number("total_bytes")?,
            snapshots: number("snapshots")?,
            newest: fields
                .get("newest")
                .filter(|n| **n != "none")
                .map(|n| n.to_string()),
            alert: fields.get("alert").map(|a| a.to_string()),
            notice: fields.get("notice").map(|n| n.to_string()),
            failing: fields.get("failing").map(|n| n.to_string()),
            windows: fields.get("windows").map(|n| n.to_string()),
            closed_until: fields.get("closed_until").and_then(|t| t.parse().ok()),
        })
    }
}

/// A replica's answer to `byteback replica-state`: for each of the asking
/// primary's clients it holds, the newest snapshot (`None`: none yet, only
/// a `current`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicaState {
    /// The protocol version the replica speaks.
    pub protocol: u32,
    /// The primary's name, as the replica's key line fixes it.
    pub primary: String,
    /// Free bytes on the replica's store.
    pub free_bytes: u64,
    /// Client name (the primary's) → its newest snapshot on the replica.
    pub clients: BTreeMap<String, Option<String>>,
    /// The clients this primary handed over here (`replica-adopt`), now
    /// clients of the replica's own → their newest snapshot there (what
    /// `move-client --retire` asks: has the new server taken a backup
    /// since the move?).
    pub adopted: BTreeMap<String, Option<String>>,
}

impl ReplicaState {
    /// `key=value` lines, then one `client=NAME NEWEST` line per client
    /// (`-` for none), and one `adopted=NAME NEWEST` per adopted client
    /// (older primaries ignore keys they do not know).
    pub fn render(&self) -> String {
        let mut text = format!(
            "protocol={}\nprimary={}\nfree_bytes={}\n",
            self.protocol, self.primary, self.free_bytes
        );
        for (key, map) in [("client", &self.clients), ("adopted", &self.adopted)] {
            for (client, newest) in map {
                text.push_str(&format!(
                    "{key}={client} {}\n",
                    newest.as_deref().unwrap_or("-")
                ));
            }
        }
        text
    }

    /// Reads a reply; `None` if it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let mut state = ReplicaState::default();
        let (mut protocol, mut primary) = (None, None);
        for line in text.lines() {
            let (key, value) = line.split_once('=')?;
            match key {
                "protocol" => protocol = value.parse().ok(),
                "primary" => primary = Some(value.to_owned()),
                "free_bytes" => state.free_bytes = value.parse().ok()?,
                "client" | "adopted" => {
                    let (client, newest) = value.split_once(' ')?;
                    let newest = (newest != "-").then(|| newest.to_owned());
                    let map = match key {
                        "client" => &mut state.clients,
                        _ => &mut state.adopted,
                    };
                    map.insert(client.to_owned(), newest);
                }
                _ => {}
            }
        }
        state.protocol = protocol?;
        state.primary = primary?;
        Some(state)
    }
}

/// One row of a listing (`byteback list`): a version of a path, and the
/// snapshot holding it (`current` for a version no snapshot holds yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub snapshot: String,
    pub time: Option<Timestamp>,
    pub found: Found,
}

const UTC: &str = "%Y-%m-%dT%H:%M:%SZ";

impl Row {
    /// `snapshot TAB time-or-"-" TAB` + [`wire::encode_found`]: one line,
    /// whatever bytes the path holds.
    pub fn render(&self) -> String {
        self.render_with(wire::encode_found(&self.found))
    }

    /// Like [`Row::render`], with the mtime's nanoseconds as a ninth field
    /// of the found file (`byteback list --ns`).
    pub fn render_exact(&self) -> String {
        self.render_with(wire::encode_found_exact(&self.found))
    }

    fn render_with(&self, found: String) -> String {
        let time = self
            .time
            .map_or("-".to_owned(), |t| t.strftime(UTC).to_string());
        format!("{}\t{time}\t{found}", self.snapshot)
    }

    /// Reads a row made by [`Row::render`] or [`Row::render_exact`].
    pub fn parse(line: &str) -> Result<Row, DecodeError> {
        let mut parts = line.splitn(3, '\t');
        let (Some(snapshot), Some(time), Some(found)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(DecodeError::new(format!(
                "not a listing row: {:?}",
                line.escape_debug().to_string()
            )));
        };
        let time = match time {
            "-" => None,
            t => Some(
                t.parse()
                    .map_err(|_| DecodeError::new(format!("invalid snapshot time {t:?}")))?,
            ),
        };
        Ok(Row {
            snapshot: snapshot.to_owned(),
            time,
            found: wire::decode_found(found)?,
        })
    }
}

/// One line of `byteback digest`: the encoded client path, a tab, and the
/// file's BLAKE3 hash in hex — or `-` when the server could not read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestLine {
    pub path: Vec<u8>,
    pub digest: Option<crate::finder::digest::Digest>,
}

impl DigestLine {
    pub fn render(&self) -> String {
        let digest = self
            .digest
            .as_ref()
            .map_or("-".to_owned(), crate::finder::digest::to_hex);
        format!("{}\t{digest}", wire::encode_arg(&self.path))
    }

    /// Reads a line made by [`DigestLine::render`].
    pub fn parse(line: &str) -> Result<Self, DecodeError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let Some((path, digest)) = line.split_once('\t') else {
            return Err(DecodeError::new(format!(
                "not a digest line: {:?}",
                line.escape_debug().to_string()
            )));
        };
        let digest = match digest {
            "-" => None,
            hex => Some(crate::finder::digest::from_hex(hex).ok_or_else(|| {
                DecodeError::new(format!(
                    "invalid digest {:?}",
                    hex.escape_debug().to_string()
                ))
            })?),
        };
        let path = wire::decode_arg(path)?;
        if !path.starts_with(b"/") {
            return Err(DecodeError::new("a digest's path must be absolute"));
        }
        Ok(DigestLine { path, digest })
    }
}

/// One line of `byteback snapshots`: `<name>\t<partial|complete>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotLine {
    pub name: String,
    pub partial: bool,
}

impl SnapshotLine {
    pub fn render(&self) -> String {
        let state = if self.partial { "partial" } else { "complete" };
        format!("{}\t{state}", self.name)
    }

    /// Reads a line; a bare name (older servers) is a complete snapshot.
    pub fn parse(line: &str) -> Option<Self> {
        let (name, state) = line.split_once('\t').unwrap_or((line, "complete"));
        let partial = match state {
            "partial" => true,
            "complete" => false,
            _ => return None,
        };
        (!name.is_empty()).then(|| SnapshotLine {
            name: name.to_owned(),
            partial,
        })
    }
}

/// The answer to `byteback complete`: the snapshot taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    pub snapshot: String,
    pub partial: bool,
}

impl Completed {
    pub fn render(&self) -> String {
        let partial = if self.partial { "partial=yes\n" } else { "" };
        format!("snapshot={}\n{partial}", self.snapshot)
    }

    pub fn parse(text: &str) -> Option<Self> {
        let snapshot = text.lines().find_map(|l| l.strip_prefix("snapshot="))?;
        Some(Completed {
            snapshot: snapshot.to_owned(),
            partial: text.lines().any(|l| l == "partial=yes"),
        })
    }
}

/// A replica's answer to `byteback replica-adopt`: the client it adopted,
/// and how many snapshots of its history came with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adopted {
    pub client: String,
    pub snapshots: u64,
}

impl Adopted {
    pub fn render(&self) -> String {
        format!("adopted={}\nsnapshots={}\n", self.client, self.snapshots)
    }

    pub fn parse(text: &str) -> Option<Self> {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        };
        Some(Adopted {
            client: field("adopted")?.to_owned(),
            snapshots: field("snapshots")?.parse().ok()?,
        })
    }
}

/// One host key of a server, as known_hosts holds it after the host
/// names: its type and base64 blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    pub kind: String,
    pub blob: String,
}

impl HostKey {
    /// The key, if both words have a key's shape (a type of lower-case
    /// letters, digits and `-.@`; a base64 blob): nothing that could be
    /// another known_hosts field, a marker or a second line.
    pub fn new(kind: &str, blob: &str) -> Option<HostKey> {
        let key = crate::protocol::ClientKey::new(kind, blob)?;
        Some(HostKey {
            kind: key.kind,
            blob: key.blob,
        })
    }
}

/// Where a moved client's backups are now: what the old server's `[moved]`
/// refusal carries (`to=USER@HOST[:PORT] host-key=TYPE,BASE64 ...`), so
/// the client can record the new server in its configuration and trust
/// its host key without asking (the old server knows the key from its
/// replication to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub to: Destination,
    pub host_keys: Vec<HostKey>,
}

impl Redirect {
    /// One line of space-separated `key=value` words.
    pub fn render(&self) -> String {
        let mut words = vec![format!("to={}", self.to)];
        for key in &self.host_keys {
            words.push(format!("host-key={},{}", key.kind, key.blob));
        }
        words.join(" ")
    }

    /// Reads [`Redirect::render`]'s line; `None` if any word is not one
    /// of its own, or the destination is not a server.
    pub fn parse(text: &str) -> Option<Self> {
        let mut to = None;
        let mut host_keys = Vec::new();
        for word in text.split(' ') {
            let (key, value) = word.split_once('=')?;
            match key {
                "to" if to.is_none() => to = Some(value.parse::<Destination>().ok()?),
                "host-key" => {
                    let (kind, blob) = value.split_once(',')?;
                    host_keys.push(HostKey::new(kind, blob)?);
                }
                _ => return None,
            }
        }
        Some(Redirect { to: to?, host_keys })
    }
}

/// Between a `[moved]` failure's redirect and its words.
const MOVED_SEPARATOR: &str = " -- ";

/// Why the server refused or failed a request: one line on its stderr,
/// `byteback-server: [<kind>] <message>`, plus its exit status. The kind
/// travels in the line because a refused transfer reaches the client
/// through rsync, which keeps the line but not the status. A
/// `[retry-after]` line (protocol 5) carries the time to try again as its
/// first word, in RFC 3339 UTC, before the message:
/// `byteback-server: [retry-after] 2026-12-07T21:00:00Z backups are taken …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    /// For [`FailureKind::RetryAfter`] (and only then): when the server
    /// takes the request again.
    pub retry_at: Option<Timestamp>,
}

/// The kinds of failure the wire carries: one per kind of [`Error`] the
/// client must tell apart, each with its tag. The client decides by kind,
/// never by the message's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Failed,
    Usage,
    Partial,
    Locked,
    Connection,
    Refused,
    /// Refused as an incremental transfer only: a full pass will do.
    FullPassNeeded,
    Config,
    Unsupported,
    NoSpace,
    Attention,
    Mismatch,
    /// Refused for now, with the time from which the server takes it
    /// (outside the server's backup windows): [`Failure::retry_at`].
    RetryAfter,
    /// The client moved to another server: the line carries a [`Redirect`].
    Moved,
}

impl FailureKind {
    const ALL: [FailureKind; 14] = [
        FailureKind::Failed,
        FailureKind::Usage,
        FailureKind::Partial,
        FailureKind::Locked,
        FailureKind::Connection,
        FailureKind::Refused,
        FailureKind::FullPassNeeded,
        FailureKind::Config,
        FailureKind::Unsupported,
        FailureKind::NoSpace,
        FailureKind::Attention,
        FailureKind::Mismatch,
        FailureKind::RetryAfter,
        FailureKind::Moved,
    ];

    /// Its tag on the wire.
    pub fn tag(self) -> &'static str {
        match self {
            FailureKind::Failed => "failed",
            FailureKind::Usage => "usage",
            FailureKind::Partial => "partial",
            FailureKind::Locked => "locked",
            FailureKind::Connection => "connection",
            FailureKind::Refused => "refused",
            FailureKind::FullPassNeeded => "full-pass",
            FailureKind::Config => "config",
            FailureKind::Unsupported => "unsupported",
            FailureKind::NoSpace => "no-space",
            FailureKind::Attention => "attention",
            FailureKind::Mismatch => "mismatch",
            FailureKind::RetryAfter => "retry-after",
            FailureKind::Moved => "moved",
        }
    }

    /// The kind of a server-side error.
    pub fn of(error: &Error) -> FailureKind {
        match error {
            Error::Usage(_) => FailureKind::Usage,
            Error::Config(_) => FailureKind::Config,
            Error::Io { .. } | Error::Command(_) | Error::NotFound(_) | Error::Hook(_) => {
                FailureKind::Failed
            }
            Error::Locked(_) => FailureKind::Locked,
            Error::Refused(_) => FailureKind::Refused,
            Error::FullPassNeeded(_) => FailureKind::FullPassNeeded,
            Error::Partial(_) => FailureKind::Partial,
            Error::Connection(_) => FailureKind::Connection,
            Error::SpaceExhausted(_) | Error::PinnedBySuspect(_) => FailureKind::NoSpace,
            Error::Attention(_) => FailureKind::Attention,
            Error::Unsupported(_) => FailureKind::Unsupported,
            Error::Mismatch(_) => FailureKind::Mismatch,
            Error::RetryAfter { .. } => FailureKind::RetryAfter,
            Error::Moved { .. } => FailureKind::Moved,
        }
    }
}

const PREFIX: &str = "byteback-server: ";

impl Failure {
    /// The failure for a server-side error.
    pub fn of(error: &Error) -> Self {
        let message = match error {
            // The redirect first, for the client; then the words.
            Error::Moved { redirect, message } => {
                format!("{redirect}{MOVED_SEPARATOR}{message}")
            }
            e => e.to_string(),
        };
        Failure {
            kind: FailureKind::of(error),
            message,
            retry_at: match error {
                Error::RetryAfter { at, .. } => Some(*at),
                _ => None,
            },
        }
    }

    pub fn render(&self) -> String {
        let at = match (self.kind, self.retry_at) {
            (FailureKind::RetryAfter, Some(at)) => format!("{} ", at.strftime(UTC)),
            _ => String::new(),
        };
        format!(
            "{PREFIX}[{}] {at}{}",
            self.kind.tag(),
            self.message.replace('\n', " ")
        )
    }

    /// Reads one stderr line; `None` if it is not a failure line (e.g. a
    /// warning, or rsync's own words). A `[retry-after]` line whose time
    /// does not read is a plain refusal: it is no less a refusal.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.trim_end().strip_prefix(PREFIX)?.strip_prefix('[')?;
        let (tag, message) = rest.split_once("] ")?;
        let kind = FailureKind::ALL.into_iter().find(|k| k.tag() == tag)?;
        if kind == FailureKind::RetryAfter {
            let (at, words) = message.split_once(' ').unwrap_or((message, ""));
            return Some(match at.parse::<Timestamp>() {
                Ok(at) => Failure {
                    kind,
                    message: words.to_owned(),
                    retry_at: Some(at),
                },
                Err(_) => Failure {
                    kind: FailureKind::Refused,
                    message: message.to_owned(),
                    retry_at: None,
                },
            });
        }
        Some(Failure {
            kind,
            message: message.to_owned(),
            retry_at: None,
        })
    }

    /// The error the client reports for it.
    pub fn into_error(self) -> Error {
        let said = format!("server: {}", self.message);
        match self.kind {
            FailureKind::Locked => Error::Locked(said),
            FailureKind::Connection => Error::Connection(said),
            FailureKind::Config => Error::Config(said),
            FailureKind::Unsupported => Error::Unsupported(said),
            FailureKind::NoSpace => Error::SpaceExhausted(said),
            FailureKind::Usage => Error::Usage(said),
            FailureKind::Partial => Error::Partial(said),
            FailureKind::Attention => Error::Attention(said),
            FailureKind::Mismatch => Error::Mismatch(said),
            FailureKind::Failed => Error::Command(said),
            FailureKind::Refused => Error::Refused(said),
            FailureKind::FullPassNeeded => Error::FullPassNeeded(said),
            FailureKind::RetryAfter => match self.retry_at {
                Some(at) => Error::RetryAfter { at, message: said },
                None => Error::Refused(said),
            },
            FailureKind::Moved => {
                let (redirect, words) = self
                    .message
                    .split_once(MOVED_SEPARATOR)
                    .unwrap_or(("", &self.message));
                Error::Moved {
                    redirect: redirect.to_owned(),
                    message: format!("server: {words}"),
                }
            }
        }
    }
}

/// A row with every hard part: a symlink, a newline and invalid UTF-8 in
/// its name (for tests of the row's wire form and its printers).
#[cfg(test)]
pub(crate) fn sample_row() -> Row {
    Row {
        snapshot: "2026-11-26T05:07:09Z".into(),
        time: Some("2026-11-26T05:07:09Z".parse().unwrap()),
        found: Found {
            path: b"/home/a b/new\nline\xff".to_vec(),
            meta: crate::finder::Meta {
                mode: 0o120777,
                uid: 1000,
                gid: 100,
                size: 11,
                mtime: 1_500_000_000,
                mtime_nsec: 0,
                rdev: None,
                symlink_target: Some(b"../etc/x".to_vec()),
            },
        },
    }
}

/// A server warning line: `byteback-server: warning: <message>`.
pub fn warning(line: &str) -> Option<&str> {
    line.strip_prefix(PREFIX)?.strip_prefix("warning: ")
}

/// Renders a warning line.
pub fn render_warning(message: &str) -> String {
    format!("{PREFIX}warning: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_state_round_trips() {
        let mut state = ReplicaState {
            protocol: 1,
            primary: "primary.example".into(),
            free_bytes: 42,
            ..ReplicaState::default()
        };
        assert_eq!(ReplicaState::parse(&state.render()), Some(state.clone()));
        state.clients.insert("a".into(), None);
        state
            .clients
            .insert("b.example".into(), Some("2026-11-26T03:00:00Z".into()));
        assert_eq!(ReplicaState::parse(&state.render()), Some(state));
        assert_eq!(ReplicaState::parse("Welcome to the machine\n"), None);
        assert_eq!(ReplicaState::parse("protocol=1\n"), None);
    }

    #[test]
    fn adopted_clients_round_trip_in_the_state() {
        let mut state = ReplicaState {
            protocol: 5,
            primary: "p".into(),
            ..ReplicaState::default()
        };
        state.clients.insert("a".into(), None);
        state
            .adopted
            .insert("b".into(), Some("2026-11-26T03:00:00Z".into()));
        let text = state.render();
        assert!(text.contains("adopted=b 2026-11-26T03:00:00Z\n"), "{text}");
        assert_eq!(ReplicaState::parse(&text), Some(state));
        let a = Adopted {
            client: "c.example".into(),
            snapshots: 3,
        };
        assert_eq!(Adopted::parse(&a.render()), Some(a));
        assert_eq!(Adopted::parse("snapshot=x\n"), None);
    }

    #[test]
    fn redirects_round_trip_and_refuse_anything_else() {
        let r = Redirect {
            to: "bb@new.example:2222".parse().unwrap(),
            host_keys: vec![
                HostKey::new("ssh-ed25519", "AAAAC3Nz+/=").unwrap(),
                HostKey::new("ecdsa-sha2-nistp256", "AAAAE2Vj").unwrap(),
            ],
        };
        assert_eq!(Redirect::parse(&r.render()), Some(r.clone()));
        let none = Redirect {
            host_keys: Vec::new(),
            ..r
        };
        assert_eq!(Redirect::parse(&none.render()), Some(none));
        for bad in [
            "",
            "host-key=ssh-ed25519,AAAA",
            "to=/srv/backups",
            "to=a@b to=c@d",
            "to=a@b host-key=ssh-ed25519",
            "to=a@b host-key=@cert-authority,AAAA",
            "to=a@b host-key=ssh-ed25519,AA\nAA",
            "to=a@b extra=1",
            "to=a@b  host-key=ssh-ed25519,AAAA",
        ] {
            assert_eq!(Redirect::parse(bad), None, "{bad:?}");
        }
        // The failure line carries it, and the client gets it back by type.
        let e = Error::Moved {
            redirect: "to=bb@new.example:2222".into(),
            message: "client c moved to bb@new.example:2222".into(),
        };
        let line = Failure::of(&e).render();
        assert_eq!(
            line,
            "byteback-server: [moved] to=bb@new.example:2222 -- client c moved to bb@new.example:2222"
        );
        match Failure::parse(&line).unwrap().into_error() {
            Error::Moved { redirect, message } => {
                assert_eq!(redirect, "to=bb@new.example:2222");
                assert_eq!(message, "server: client c moved to bb@new.example:2222");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ping_reply_round_trips() {
        let r = PingReply {
            protocol: 1,
            client: "host.example".into(),
            free_bytes: 10,
            total_bytes: 20,
            snapshots: 3,
            newest: Some("2026-11-26T05:07:09Z".into()),
            alert: Some("short of space: add disk".into()),
            notice: Some("your data was discarded".into()),
            failing: Some("rsync exit 11".into()),
            windows: Some("22:00-06:00, 12:00-13:00 (Europe/Berlin)".into()),
            closed_until: Some("2026-12-07T21:00:00Z".parse().unwrap()),
        };
        assert_eq!(PingReply::parse(&r.render()), Some(r.clone()));
        let none = PingReply {
            newest: None,
            alert: None,
            notice: None,
            failing: None,
            windows: None,
            closed_until: None,
            ..r
        };
        assert_eq!(PingReply::parse(&none.render()), Some(none));
        assert_eq!(PingReply::parse("Welcome to the server\n"), None);
    }

    #[test]
    fn digest_lines_round_trip_and_refuse_junk() {
        for line in [
            DigestLine {
                path: b"/home/a b/new\nline\xff".to_vec(),
                digest: Some([0xab; 32]),
            },
            DigestLine {
                path: b"/x".to_vec(),
                digest: None,
            },
        ] {
            let text = line.render();
            assert!(!text.contains('\n') && text.matches('\t').count() == 1);
            assert_eq!(DigestLine::parse(&text).unwrap(), line);
        }
        let hex = "ab".repeat(32);
        for bad in [
            "".to_owned(),
            "/x".to_owned(),
            format!("x\t{hex}"),
            format!("/x\t{hex}0"),
            "/x\tzz".to_owned(),
            format!("/a b\t{hex}"),
            format!("/x\t{hex}\textra"),
        ] {
            assert!(DigestLine::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rows_round_trip_on_one_line() {
        let row = sample_row();
        let line = row.render();
        assert!(!line.contains('\n'));
        assert_eq!(Row::parse(&line).unwrap(), row);
        let current = Row {
            snapshot: "current".into(),
            time: None,
            ..row
        };
        assert_eq!(Row::parse(&current.render()).unwrap(), current);
        assert!(Row::parse("garbage").is_err());
    }

    #[test]
    fn snapshot_lines_round_trip() {
        for line in [
            SnapshotLine {
                name: "2026-11-26T03:00:00Z".into(),
                partial: true,
            },
            SnapshotLine {
                name: "2014-03-02T23:10+0100".into(),
                partial: false,
            },
        ] {
            assert_eq!(SnapshotLine::parse(&line.render()), Some(line));
        }
        assert_eq!(
            SnapshotLine::parse("2026-11-26T03:00:00Z").map(|l| l.partial),
            Some(false)
        );
        assert_eq!(SnapshotLine::parse("x\tbroken"), None);
    }

    #[test]
    fn completions_round_trip() {
        for c in [
            Completed {
                snapshot: "2026-11-26T03:00:00Z".into(),
                partial: false,
            },
            Completed {
                snapshot: "2026-11-26T03:00:00Z".into(),
                partial: true,
            },
        ] {
            assert_eq!(Completed::parse(&c.render()), Some(c));
        }
        assert_eq!(Completed::parse("Welcome\n"), None);
    }

    #[test]
    fn failures_round_trip_with_their_kind() {
        for kind in FailureKind::ALL {
            let f = Failure {
                kind,
                message: "a backup of x is already in progress".into(),
                retry_at: (kind == FailureKind::RetryAfter)
                    .then(|| "2026-12-07T21:00:00Z".parse().unwrap()),
            };
            let parsed = Failure::parse(&f.render()).unwrap();
            assert_eq!(parsed, f);
            // The error it becomes is of the same kind again.
            assert_eq!(FailureKind::of(&parsed.into_error()), kind);
        }
        // The time to retry travels by type, as the line's first word.
        let e = Error::RetryAfter {
            at: "2026-12-07T21:00:00Z".parse().unwrap(),
            message: "backups are taken from 22:00".into(),
        };
        let line = Failure::of(&e).render();
        assert_eq!(
            line,
            "byteback-server: [retry-after] 2026-12-07T21:00:00Z backups are taken from 22:00"
        );
        match Failure::parse(&line).unwrap().into_error() {
            Error::RetryAfter { at, message } => {
                assert_eq!(at.to_string(), "2026-12-07T21:00:00Z");
                assert_eq!(message, "server: backups are taken from 22:00");
            }
            other => panic!("{other:?}"),
        }
        // Without a time it reads, it is still a refusal.
        let broken = Failure::parse("byteback-server: [retry-after] soon, maybe").unwrap();
        assert_eq!(broken.kind, FailureKind::Refused);
        assert!(matches!(broken.into_error(), Error::Refused(_)));
        assert_eq!(Failure::parse("byteback-server: warning: low"), None);
        assert_eq!(Failure::parse("rsync error: x"), None);
        assert_eq!(warning(&render_warning("low")), Some("low"));
    }
}
