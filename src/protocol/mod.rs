//! The forced-command language: what a client may ask the server to do.
//!
//! This is the trust boundary. sshd hands the server whatever the client
//! typed, in `SSH_ORIGINAL_COMMAND`; [`parse`] accepts only the few requests
//! byteback's own client sends and turns them into a small enum. Nothing the
//! client says ever becomes a path or a program on the server: the receiver's
//! destination is always the client's own `current`, fixed by the
//! administrator in authorized_keys, and its rsync options pass through a
//! strict allow-list. The client renders its requests with the functions
//! here too, so both sides share one definition.

use std::fmt;

use crate::names::{ClientName, SnapshotName};

pub mod call;
pub mod legacy;
pub mod reply;
pub mod wire;

pub use legacy::{LegacyRequest, parse_legacy};
pub use reply::{
    Adopted, Completed, DigestLine, Failure, HostKey, PingReply, Redirect, ReplicaState,
    SnapshotLine,
};

pub use wire::{DecodeError, decode_arg, decode_found, encode_arg, encode_found};

// What a backup transfer is, as the client states it by its destination:
// part of the rsync argv, so defined beside it.
pub use crate::exec::rsync::TransferMode;

// A receiver's ask to keep holes: in the rsync options, so read beside them.
pub use crate::exec::rsync::asks_sparse;

/// Version of this language; sent in every ping reply. 2 added
/// `list --ns` and `digest` (what `byteback verify` needs), and `***`. 3
/// added the `incremental/` destination and `gone` lines in the replace
/// list: the server deletes vanished paths itself, so an incremental
/// transfer needs no `--delete-missing-args` (which rsync 3.2.7 as
/// patched by Debian, and 3.4.3, refuse with `--files-from`). 4 types the
/// refusal that concerns only an incremental transfer (`[full-pass]`). 5
/// adds the server's backup windows: a transfer or `incremental` asked
/// outside them is refused `[retry-after] TIME …`, TIME (RFC 3339 UTC, the
/// line's first word) being when the next window opens, which the client
/// waits for within its `retry_after_max` ([`reply::Failure`]); and the ping
/// reply's `windows=` (the windows and the server's time zone) and
/// `closed_until=TIME` (outside them). An older client reads the
/// `[retry-after]` line as no failure it knows, so as the server's
/// untyped refusal.
/// 6 adds moving a client to another server: the `[moved]` refusal a moved
/// client's ping, transfer and snapshot get (carrying a [`Redirect`]), and,
/// on a replica key, `replica-adopt` and the `adopted=` lines of
/// `replica-state`.
/// 7 adds `byteback diff [--json] [FROM [TO]]` ([`Request::Diff`]): what
/// changed between two snapshots, from the change logs the server keeps.
/// 8 makes a receiver's sparseness the server's: a transfer's `S` (or
/// `--sparse`) is the client's ask to keep holes ([`asks_sparse`]), which
/// the server grants with its own `--sparse`, and a sparse incremental
/// transfer leaves `current` readied for the one that follows it — so a
/// client sends its files with holes in a `--sparse` run of their own and
/// everything else in a run without (the receiver's scan for zeros costs
/// CPU on every byte it writes). An older client's single run asks for
/// `--sparse` and gets it, as before.
pub const PROTOCOL_VERSION: u32 = 8;

/// The first protocol whose servers take a backup's files with holes in a
/// `--sparse` run of their own, before the rest (see [`PROTOCOL_VERSION`]);
/// to an older server a backup is one `--sparse` run.
pub const SPARSE_RUNS: u32 = 8;

/// The first protocol whose servers answer [`Request::Diff`].
pub const DIFF: u32 = 7;

/// The first protocol whose servers answer a moved client with
/// `[moved]` and whose replicas take `replica-adopt`
/// ([`ReplicaRequest::Adopt`]).
pub const MOVES: u32 = 6;

/// The first protocol whose servers type a refusal of the incremental mode
/// ([`crate::error::Error::FullPassNeeded`]); before it, any refusal of
/// `incremental` meant "make a full pass" (or that the request was unknown).
pub const TYPED_FULL_PASS: u32 = 4;

/// The first protocol whose servers take [`TransferMode::Incremental`] by
/// its destination and delete the replace list's `gone` paths.
pub const SERVER_DELETES_GONE: u32 = 3;

/// Longest command line accepted from a client, in bytes.
pub(crate) const MAX_COMMAND_LEN: usize = 4096;

/// A request a client may make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Check the connection and report the client's space.
    Ping,
    /// Run rsync's receiver into the client's `current`, with these
    /// (already allowed) server options, as a transfer of `mode`.
    Receive {
        options: Vec<String>,
        mode: TransferMode,
    },
    /// The transfer finished: take the snapshot. `partial` marks one whose
    /// transfer left some files out; their names follow on standard input.
    Complete { partial: bool },
    /// The next transfer is incremental (index mode): ready `current` as
    /// the snapshot `snapshot`, which must be the client's newest, less the
    /// paths listed on standard input ([`parse_replace_list`]), which the
    /// transfer sends fresh. Only then does the receiver accept
    /// `--delete-missing-args`, the mark of an incremental transfer.
    Incremental { snapshot: String },
    /// List this client's snapshots.
    Snapshots,
    /// Find files matching `patterns` (absolute glob patterns) in the
    /// snapshots whose names match `snapshots` (a glob; `current` is the
    /// live copy); `all` lists every distinct version, not just the newest;
    /// `nanoseconds` adds the mtimes' nanoseconds to the rows (`--ns`).
    List {
        all: bool,
        nanoseconds: bool,
        snapshots: Vec<u8>,
        patterns: Vec<Vec<u8>>,
    },
    /// The content hash (BLAKE3) of every regular file matching `patterns`
    /// in one snapshot, for `byteback verify --checksum`. `snapshot` is a
    /// snapshot's exact name: never a glob, never `current`.
    Digest {
        snapshot: String,
        patterns: Vec<Vec<u8>>,
    },
    /// Run rsync's sender for a restore, with these (allowed) options, on
    /// these paths, each `<snapshot or current>/<path inside it>`.
    Send {
        options: Vec<String>,
        paths: Vec<Vec<u8>>,
    },
    /// What changed between two snapshots (exact names; defaults: the
    /// newest but one and the newest), from the server's change logs; the
    /// server prints what `byteback-server diff` prints, one JSON object
    /// with `json`.
    Diff {
        from: Option<String>,
        to: Option<String>,
        json: bool,
    },
}

impl Request {
    /// The command line the client sends for this request. (For `Receive`,
    /// rsync writes the command line itself; this is for tests and logs.)
    pub fn render(&self) -> String {
        match self {
            Request::Ping => "byteback ping".to_owned(),
            Request::Complete { partial: false } => "byteback complete".to_owned(),
            Request::Complete { partial: true } => "byteback complete --partial".to_owned(),
            Request::Snapshots => "byteback snapshots".to_owned(),
            Request::Incremental { snapshot } => format!("byteback incremental {snapshot}"),
            Request::List {
                all,
                nanoseconds,
                snapshots,
                patterns,
            } => {
                let mut words = vec!["byteback".to_owned(), "list".to_owned()];
                if *all {
                    words.push("--all".to_owned());
                }
                if *nanoseconds {
                    words.push("--ns".to_owned());
                }
                words.push(encode_arg(snapshots));
                words.extend(patterns.iter().map(|p| encode_arg(p)));
                words.join(" ")
            }
            Request::Digest { snapshot, patterns } => {
                let mut words = vec![
                    "byteback".to_owned(),
                    "digest".to_owned(),
                    encode_arg(snapshot.as_bytes()),
                ];
                words.extend(patterns.iter().map(|p| encode_arg(p)));
                words.join(" ")
            }
            Request::Diff { from, to, json } => {
                let mut words = vec!["byteback", "diff"];
                if *json {
                    words.push("--json");
                }
                words.extend(from.iter().chain(to).map(String::as_str));
                words.join(" ")
            }
            Request::Send { options, paths } => {
                let paths: Vec<String> = paths.iter().map(|p| encode_arg(p)).collect();
                format!(
                    "rsync --server --sender {} . {}",
                    options.join(" "),
                    paths.join(" ")
                )
            }
            Request::Receive { options, mode } => {
                format!(
                    "rsync --server {} . {}",
                    options.join(" "),
                    mode.destination()
                )
            }
        }
    }
}

/// A request a primary server may make of its replica (the key enrolled
/// with `new-client --replica`). The client it names is the primary's own
/// client; the replica keeps it under the mapped name
/// ([`ClientName::replicated`]), so a primary only ever reaches its own
/// clients, whatever it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaRequest {
    /// The newest snapshot the replica holds of each of this primary's clients.
    State,
    /// Run rsync's receiver into `client`'s `current`, with these (allowed)
    /// options.
    Receive {
        client: ClientName,
        options: Vec<String>,
    },
    /// Snapshot `client`'s `current` under the primary's own name for it
    /// (which must be newer than any the replica holds of that client);
    /// `partial` marks one the primary holds as partial.
    Snapshot {
        client: ClientName,
        name: SnapshotName,
        partial: bool,
    },
    /// Make the replica's copy of `client` (`PRIMARY__CLIENT`) the client
    /// `client` itself, whose key is `key` (`byteback-server move-client`):
    /// the replica checks the key and writes its line with its own code.
    Adopt { client: ClientName, key: ClientKey },
}

/// A client's public key as `replica-adopt` carries it: its type and its
/// base64 blob, nothing else (no comment, no options: the replica writes
/// the line). Checked here for shape only; the replica has `ssh-keygen`
/// read it before it writes anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKey {
    /// e.g. `ssh-ed25519`.
    pub kind: String,
    /// The base64 blob.
    pub blob: String,
}

impl ClientKey {
    /// The key, if both words have a key's shape: a type of lower-case
    /// letters, digits and `-.@` that starts with a letter (not a
    /// known_hosts marker), and a base64 blob.
    pub fn new(kind: &str, blob: &str) -> Option<ClientKey> {
        let kind_ok = kind.starts_with(|c: char| c.is_ascii_lowercase())
            && kind.len() <= 64
            && kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.@".contains(&b));
        let blob_ok = !blob.is_empty()
            && blob
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
        (kind_ok && blob_ok).then(|| ClientKey {
            kind: kind.to_owned(),
            blob: blob.to_owned(),
        })
    }
}

impl ReplicaRequest {
    /// The command line the primary sends (for `Receive`, rsync writes it).
    pub fn render(&self) -> String {
        match self {
            ReplicaRequest::State => "byteback replica-state".to_owned(),
            ReplicaRequest::Receive { client, options } => {
                format!("rsync --server {} . {client}/current/", options.join(" "))
            }
            ReplicaRequest::Snapshot {
                client,
                name,
                partial,
            } => {
                let flag = if *partial { " --partial" } else { "" };
                format!("byteback replica-snapshot{flag} {client} {name}")
            }
            ReplicaRequest::Adopt { client, key } => {
                format!("byteback replica-adopt {client} {} {}", key.kind, key.blob)
            }
        }
    }
}

/// Parses what a primary asked its replica for: only the requests of
/// [`ReplicaRequest`], each checked as strictly as a client's backup.
pub fn parse_replica(command: Option<&str>) -> Result<ReplicaRequest, Refusal> {
    let Some(command) = command else {
        return refuse("no command given: this key may only replicate snapshots, not a shell");
    };
    check_line(command)?;
    let words: Vec<&str> = command.split(' ').collect();
    let client = |word: &str| ClientName::new(word).map_err(|e| Refusal(format!("{e}")));
    match words.as_slice() {
        ["byteback", "replica-state"] => Ok(ReplicaRequest::State),
        ["byteback", "replica-adopt", who, kind, blob] => match ClientKey::new(kind, blob) {
            Some(key) => Ok(ReplicaRequest::Adopt {
                client: client(who)?,
                key,
            }),
            None => refuse(format!(
                "replica-adopt needs a client and its public key (TYPE BASE64), not {:?} {:?}",
                truncate(kind),
                truncate(blob)
            )),
        },
        ["byteback", "replica-adopt", ..] => {
            refuse("replica-adopt needs a client and its public key (TYPE BASE64)")
        }
        ["byteback", "replica-snapshot", rest @ ..] => {
            let (partial, rest) = match rest {
                ["--partial", rest @ ..] => (true, rest),
                rest => (false, rest),
            };
            let [who, name] = rest else {
                return refuse("replica-snapshot needs a client and a snapshot name");
            };
            let Some(name) = SnapshotName::parse(name) else {
                return refuse(format!("{:?} is not a snapshot name", truncate(name)));
            };
            Ok(ReplicaRequest::Snapshot {
                client: client(who)?,
                name,
                partial,
            })
        }
        ["rsync", "--server", "--sender", ..] => {
            refuse("rsync --sender is not allowed: a replica's key only sends snapshots to it")
        }
        ["rsync", "--server", rest @ ..] => {
            let (options, rest) = split_rsync(rest)?;
            // Only a client's incremental backup, readied first, names
            // vanished paths; replication always sends whole trees.
            if options.iter().any(|o| o == "--delete-missing-args") {
                return refuse("rsync option --delete-missing-args is not allowed on a replica");
            }
            let [destination] = rest else {
                return refuse("rsync receiver needs exactly one destination, CLIENT/current/");
            };
            let who = destination
                .strip_suffix("/current/")
                .or_else(|| destination.strip_suffix("/current"))
                .ok_or_else(|| {
                    Refusal(format!(
                        "rsync destination {:?} is not CLIENT/current/",
                        truncate(destination)
                    ))
                })?;
            Ok(ReplicaRequest::Receive {
                client: client(who)?,
                options,
            })
        }
        _ => refuse(format!(
            "command not allowed: {:?}; this key may only replicate snapshots",
            truncate(command)
        )),
    }
}

/// Why a command was refused; shown to the client and logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn refuse<T>(why: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(why.into()))
}

/// Parses what the client asked for. `None` means no command at all (an
/// interactive login), which is refused too.
pub fn parse(command: Option<&str>) -> Result<Request, Refusal> {
    let Some(command) = command else {
        return refuse("no command given: this key may only run byteback backups, not a shell");
    };
    check_line(command)?;
    let words: Vec<&str> = command.split(' ').collect();
    match words.as_slice() {
        ["byteback", "ping"] => Ok(Request::Ping),
        ["byteback", "complete"] => Ok(Request::Complete { partial: false }),
        ["byteback", "complete", "--partial"] => Ok(Request::Complete { partial: true }),
        ["byteback", "snapshots"] => Ok(Request::Snapshots),
        ["byteback", "incremental", snapshot] => match SnapshotName::parse(snapshot) {
            Some(name) => Ok(Request::Incremental {
                snapshot: name.to_string(),
            }),
            None => refuse(format!(
                "incremental needs a snapshot name, not {:?}",
                truncate(snapshot)
            )),
        },
        ["byteback", "list", rest @ ..] => parse_list(rest),
        ["byteback", "digest", rest @ ..] => parse_digest(rest),
        ["byteback", "diff", rest @ ..] => parse_diff(rest),
        ["rsync", "--server", "--sender", rest @ ..] => parse_sender(rest),
        ["rsync", "--server", rest @ ..] => parse_receiver(rest),
        _ => refuse(format!(
            "command not allowed: {:?}; this key may only run byteback backups",
            truncate(command)
        )),
    }
}

/// The checks every command line passes first: its length and characters.
fn check_line(command: &str) -> Result<(), Refusal> {
    if command.len() > MAX_COMMAND_LEN {
        return refuse(format!("command longer than {MAX_COMMAND_LEN} bytes"));
    }
    if let Some(c) = command
        .chars()
        .find(|c| !(c.is_ascii_graphic() || *c == ' '))
    {
        return refuse(format!(
            "command contains the character {c:?}, which byteback never sends"
        ));
    }
    Ok(())
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Short options (letters in one cluster, as rsync sends them) that a
/// receiver may get. Deliberately absent: `s` (protect-args would move the
/// real arguments into the data stream, past this check), `L`/`k`/`K`
/// (following symlinks on the server), `b` (backups elsewhere), `T` and
/// every other option that names a path, and `U`/`N` (access and create
/// times: on a plain store rsync would set them on a file it has just
/// hard-linked from a snapshot, changing that snapshot). `S` (and
/// `--sparse`) on a receiver is the client's ask for a run that keeps
/// holes ([`asks_sparse`]): the server drops it and decides with its own
/// `--sparse` (`exec::rsync::server_args`). Granting it costs the server
/// only the receiver's scan for zeros, in a transfer the client's limits
/// bound as any other.
pub(crate) const SHORT_ALLOWED: &str = "vqlHogDtpAXrRSxczWnIJOdu";

/// Long options without a value that a receiver may get.
pub(crate) const LONG_FLAGS: &[&str] = &[
    "delete",
    "delete-before",
    "delete-during",
    "delete-delay",
    "delete-after",
    "delete-excluded",
    "numeric-ids",
    "inplace",
    "partial",
    // The ask for a run that keeps holes, as `S` (see SHORT_ALLOWED).
    "sparse",
    "stats",
    "fake-super",
    "munge-links",
    "force",
    "ignore-errors",
    "fsync",
    "no-W",
    "size-only",
    // Index mode: paths that vanished from the source are named, and the
    // receiver deletes them (inside `current`; see `Request::Incremental`).
    "delete-missing-args",
];

/// Long options with a value that must be a plain number (or a size like `1m`).
pub(crate) const LONG_NUMBERS: &[&str] = &[
    "timeout",
    "bwlimit",
    "max-delete",
    "block-size",
    "checksum-seed",
    "compress-level",
    "modify-window",
];

/// Long options with a value of plain words: what the server reports back.
pub(crate) const LONG_WORDS: &[&str] = &[
    "log-format",
    "out-format",
    "info",
    "checksum-choice",
    "compress-choice",
];

/// Arguments that carry client data (patterns, paths) travel encoded with
/// [`encode_arg`]: only `[A-Za-z0-9._/-]` and `%XX` escapes for every other
/// byte, so spaces, newlines, quotes and non-UTF-8 names survive ssh's
/// command line intact and can never be read as options.
fn decode(word: &str) -> Result<Vec<u8>, Refusal> {
    decode_arg(word)
        .map_err(|e| Refusal(format!("badly encoded argument {:?}: {e}", truncate(word))))
}

fn parse_list(words: &[&str]) -> Result<Request, Refusal> {
    let (all, rest) = match words {
        ["--all", rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    let (nanoseconds, rest) = match rest {
        ["--ns", rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    let [snapshots, patterns @ ..] = rest else {
        return refuse("list needs a snapshot selection and at least one pattern");
    };
    if patterns.is_empty() {
        return refuse("list needs at least one pattern");
    }
    Ok(Request::List {
        all,
        nanoseconds,
        snapshots: decode(snapshots)?,
        patterns: patterns
            .iter()
            .map(|p| decode(p))
            .collect::<Result<_, _>>()?,
    })
}

/// Most patterns one digest request may carry (the command line's length
/// bounds them anyway; this keeps the walk's automaton small).
const MAX_DIGEST_PATTERNS: usize = 64;

fn parse_diff(words: &[&str]) -> Result<Request, Refusal> {
    let (json, names) = match words {
        ["--json", rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    // Exact snapshot names only: no glob, no `current`, no path.
    let name = |word: &str| {
        crate::names::SnapshotName::parse(word)
            .map(|n| n.to_string())
            .ok_or_else(|| Refusal(format!("diff: {:?} is not a snapshot name", truncate(word))))
    };
    let (from, to) = match names {
        [] => (None, None),
        [from] => (Some(name(from)?), None),
        [from, to] => (Some(name(from)?), Some(name(to)?)),
        _ => return refuse("diff takes at most two snapshot names"),
    };
    Ok(Request::Diff { from, to, json })
}

fn parse_digest(words: &[&str]) -> Result<Request, Refusal> {
    let [snapshot, patterns @ ..] = words else {
        return refuse("digest needs a snapshot name and at least one pattern");
    };
    if patterns.is_empty() {
        return refuse("digest needs at least one pattern");
    }
    if patterns.len() > MAX_DIGEST_PATTERNS {
        return refuse(format!(
            "digest takes at most {MAX_DIGEST_PATTERNS} patterns"
        ));
    }
    // Exactly one snapshot, by its name: no glob, no `current`, no path.
    let name = decode(snapshot)?;
    let name = std::str::from_utf8(&name)
        .ok()
        .and_then(crate::names::SnapshotName::parse)
        .ok_or_else(|| {
            Refusal(format!(
                "digest: {:?} is not a snapshot name",
                truncate(snapshot)
            ))
        })?;
    let patterns = patterns
        .iter()
        .map(|p| decode(p))
        .collect::<Result<Vec<_>, _>>()?;
    // Checked here too (the walk parses them again): a pattern that is not
    // absolute or climbs with `..` is refused before anything is opened.
    for p in &patterns {
        crate::finder::Pattern::parse(p).map_err(|e| {
            Refusal(format!(
                "digest: invalid pattern {:?}: {e}",
                String::from_utf8_lossy(p)
            ))
        })?;
    }
    Ok(Request::Digest {
        snapshot: name.to_string(),
        patterns,
    })
}

/// The most a replace list ([`Request::Incremental`]'s standard input) may
/// hold, in bytes; a client with more changes makes a full pass instead.
pub const MAX_REPLACE_LIST: usize = 64 << 20;

/// What `byteback incremental` readies `current` without: `replace`, the
/// paths the transfer sends fresh (a plain store does not link them from
/// the snapshot), and among them `gone`, the ones that vanished from the
/// source, which the server deletes from `current` itself (protocol 3;
/// before, rsync's `--delete-missing-args` did).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaceList {
    pub replace: Vec<Vec<u8>>,
    pub gone: Vec<Vec<u8>>,
}

/// The word that marks a vanished path's line (an encoded path has no
/// space, so `gone PATH` is never a path).
const GONE: &str = "gone ";

/// Renders a replace list, relative to `current` as rsync `--relative`
/// places the paths: one encoded path a line, `gone PATH` for a vanished
/// one (every `gone` path must also be in `replace`).
pub fn render_replace_list(list: &ReplaceList) -> String {
    let gone: std::collections::HashSet<&[u8]> = list.gone.iter().map(Vec::as_slice).collect();
    let mut text = String::new();
    for p in &list.replace {
        if gone.contains(p.as_slice()) {
            text.push_str(GONE);
        }
        text.push_str(&encode_arg(p));
        text.push('\n');
    }
    text
}

/// Reads a replace list: each line one encoded path relative to `current`
/// (`gone PATH` for a vanished one), without empty, `.` or `..` components
/// — never a way out of `current`.
pub fn parse_replace_list(text: &[u8]) -> Result<ReplaceList, Refusal> {
    if text.len() > MAX_REPLACE_LIST {
        return refuse(format!("replace list longer than {MAX_REPLACE_LIST} bytes"));
    }
    let Ok(text) = std::str::from_utf8(text) else {
        return refuse("replace list is not encoded text");
    };
    let mut list = ReplaceList::default();
    for line in text.lines() {
        let (gone, word) = match line.strip_prefix(GONE) {
            Some(word) => (true, word),
            None => (false, line),
        };
        let path = decode(word)?;
        if path.is_empty()
            || path
                .split(|&b| b == b'/')
                .any(|c| c.is_empty() || c == b"." || c == b"..")
            || path.contains(&0)
        {
            return refuse(format!(
                "replace list path {:?} is not a plain relative path",
                truncate(line)
            ));
        }
        if gone {
            list.gone.push(path.clone());
        }
        list.replace.push(path);
    }
    Ok(list)
}

/// Splits an rsync server command into its options (each checked against
/// the allow-list) and the arguments after the `.` that ends them.
fn split_rsync<'a>(words: &'a [&'a str]) -> Result<(Vec<String>, &'a [&'a str]), Refusal> {
    let dot = words.iter().position(|w| *w == ".").unwrap_or(words.len());
    let options: Vec<String> = words[..dot].iter().map(|w| w.to_string()).collect();
    for option in &options {
        check_option(option)?;
    }
    if options.is_empty() {
        return refuse("rsync command without options");
    }
    Ok((options, words.get(dot + 1..).unwrap_or(&[])))
}

fn parse_sender(words: &[&str]) -> Result<Request, Refusal> {
    let (options, rest) = split_rsync(words)?;
    if options.iter().any(|o| o == "--delete-missing-args") {
        return refuse("rsync option --delete-missing-args is not allowed on a sender");
    }
    let paths: Vec<Vec<u8>> = rest.iter().map(|p| decode(p)).collect::<Result<_, _>>()?;
    if paths.is_empty() {
        return refuse("rsync sender without anything to send");
    }
    Ok(Request::Send { options, paths })
}

fn parse_receiver(words: &[&str]) -> Result<Request, Refusal> {
    let (options, rest) = split_rsync(words)?;
    // After "." rsync names the destination; whatever it is, data lands in
    // the client's own `current`, so it is only checked for shape — and
    // read for the mode the client states (before protocol 3, an
    // incremental transfer was known by `--delete-missing-args`).
    let destination = match rest {
        [destination] => *destination,
        [] => return refuse("rsync command without a destination"),
        _ => return refuse("rsync receiver with more than one destination"),
    };
    let incremental = destination.trim_end_matches('/') == "incremental"
        || options.iter().any(|o| o == "--delete-missing-args");
    let mode = if incremental {
        TransferMode::Incremental
    } else {
        TransferMode::Full
    };
    Ok(Request::Receive { options, mode })
}

fn check_option(word: &str) -> Result<(), Refusal> {
    if let Some(long) = word.strip_prefix("--") {
        let (name, value) = match long.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (long, None),
        };
        let allowed = match value {
            None => LONG_FLAGS.contains(&name),
            // -1 asks for nanosecond comparison.
            Some(v) if name == "modify-window" => {
                let digits = v.strip_prefix('-').unwrap_or(v);
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
            }
            Some(v) if LONG_NUMBERS.contains(&name) => {
                !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
            }
            Some(v) if LONG_WORDS.contains(&name) => {
                !v.is_empty()
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '%' | ',' | '-'))
            }
            Some(_) => false,
        };
        if name == "sender" {
            return refuse("rsync --sender is not allowed when backing up");
        }
        return if allowed {
            Ok(())
        } else {
            refuse(format!(
                "rsync option --{name} is not allowed on the server"
            ))
        };
    }
    let Some(cluster) = word.strip_prefix('-') else {
        return refuse(format!("unexpected rsync argument {:?}", truncate(word)));
    };
    // rsync appends its capabilities as `e<version>.<flags>` to the cluster.
    let letters = match cluster.find('e') {
        Some(at) => {
            let caps = &cluster[at + 1..];
            let ok = caps.split_once('.').is_some_and(|(v, f)| {
                v.bytes().all(|b| b.is_ascii_digit()) && f.bytes().all(|b| b.is_ascii_alphabetic())
            });
            if !ok {
                return refuse(format!("malformed rsync capability string in {word:?}"));
            }
            &cluster[..at]
        }
        None => cluster,
    };
    // `-@N`: rsync's short form of --modify-window; -1 compares nanoseconds.
    if let Some(window) = cluster.strip_prefix('@') {
        let digits = window.strip_prefix('-').unwrap_or(window);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(());
        }
        return refuse(format!("malformed rsync option {word:?}"));
    }
    // `-B<size>`: the whole rest of the cluster is the value, so it must be
    // digits alone (`-B5e.x` would make `5e.x` the size, not capabilities).
    if let Some(digits) = cluster.strip_prefix('B') {
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(());
        }
    }
    if cluster.is_empty() {
        return refuse("empty rsync option");
    }
    match letters.chars().find(|c| !SHORT_ALLOWED.contains(*c)) {
        Some(c) => refuse(format!("rsync option -{c} is not allowed on the server")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What rsync 3.2–3.4 clients send for byteback's own options.
    const REAL: &str = "rsync --server -lHogDtpAXrRSe.iLsfxCIvu --timeout=300 --delete-excluded --numeric-ids --inplace . current/";

    #[test]
    fn accepts_what_the_client_sends() {
        assert_eq!(parse(Some("byteback ping")), Ok(Request::Ping));
        assert_eq!(
            parse(Some("byteback complete")),
            Ok(Request::Complete { partial: false })
        );
        assert_eq!(
            parse(Some("byteback complete --partial")),
            Ok(Request::Complete { partial: true })
        );
        let Ok(Request::Receive { options, .. }) = parse(Some(REAL)) else {
            panic!()
        };
        assert_eq!(options[0], "-lHogDtpAXrRSe.iLsfxCIvu");
        assert_eq!(options.len(), 5);
        // Nanosecond time comparison, as rsync 3.2+ sends it.
        assert!(parse(Some("rsync --server -lHogDtpAXre.iLsfxCIvu --delete -@-1 --numeric-ids --inplace . current/")).is_ok());
        assert!(
            parse(Some(
                "rsync --server -lHogDtpAXre.iLsfxCIvu --modify-window=-1 . current/"
            ))
            .is_ok()
        );
        // Verbose, itemised and --stats runs too.
        assert!(parse(Some("rsync --server -vlHogDtpAXrRSe.iLsfxCIvu --log-format=%i --delete-excluded --stats --numeric-ids --inplace . current/")).is_ok());
        // bwlimit and compress (client config), exactly as rsync 3.5.0
        // puts them on the server's command line: `z` joins the cluster,
        // the limit arrives converted to KiB.
        for line in [
            "rsync --server -lHogDtpAXrRSze.iLsfxCIvu --timeout=600 --bwlimit=2048 --delete-excluded -@-1 --numeric-ids --inplace . current/",
            "rsync --server -lHogDtpAXrRSze.iLsfxCIvu --log-format=%i --timeout=600 --bwlimit=1536 --delete-excluded --stats -@-1 --numeric-ids --inplace . current/",
        ] {
            assert!(parse(Some(line)).is_ok(), "{line}");
        }
    }

    #[test]
    fn renders_what_it_parses() {
        let odd = b"/home/a b/new\nline/\xff'\"%*".to_vec();
        for r in [
            Request::Ping,
            Request::Complete { partial: true },
            Request::Complete { partial: false },
            Request::Snapshots,
            Request::List {
                all: true,
                nanoseconds: true,
                snapshots: b"2026-11-26T03:00:12Z".to_vec(),
                patterns: vec![b"/srv/***".to_vec()],
            },
            Request::Digest {
                snapshot: "2026-11-26T03:00:12Z".into(),
                patterns: vec![odd.clone(), b"/srv/***".to_vec()],
            },
            Request::Diff {
                from: None,
                to: None,
                json: false,
            },
            Request::Diff {
                from: Some("2026-11-25T03:00:12Z".into()),
                to: Some("2026-11-26T03:00:12Z".into()),
                json: true,
            },
            Request::Diff {
                from: Some("2014-03-01T03:00+0000".into()),
                to: None,
                json: false,
            },
            Request::List {
                all: true,
                nanoseconds: false,
                snapshots: b"*".to_vec(),
                patterns: vec![odd.clone(), b"/etc/**".to_vec()],
            },
            Request::List {
                all: false,
                nanoseconds: false,
                snapshots: b"current".to_vec(),
                patterns: vec![b"/-x".to_vec()],
            },
            Request::Send {
                options: vec!["-logDtpre.iLsfxCIvu".into()],
                paths: vec![odd.clone()],
            },
        ] {
            assert_eq!(parse(Some(&r.render())), Ok(r));
        }
    }

    #[test]
    fn digest_stays_in_one_named_snapshot() {
        let ok = "byteback digest 2026-11-26T03%3A00%3A12Z /srv/%2A%2A%2A";
        assert_eq!(
            parse(Some(ok)),
            Ok(Request::Digest {
                snapshot: "2026-11-26T03:00:12Z".into(),
                patterns: vec![b"/srv/***".to_vec()],
            })
        );
        // The original byteback's names are snapshots too.
        assert!(parse(Some("byteback digest 2026-11-26T03%3A00%2B0000 /x")).is_ok());
        let many = format!(
            "byteback digest 2026-11-26T03%3A00%3A12Z{}",
            " /x".repeat(65)
        );
        let cases = [
            ("byteback digest", "needs a snapshot name"),
            (
                "byteback digest 2026-11-26T03%3A00%3A12Z",
                "at least one pattern",
            ),
            ("byteback digest current /etc/passwd", "not a snapshot name"),
            ("byteback digest %2A /etc/passwd", "not a snapshot name"),
            ("byteback digest .. /etc/passwd", "not a snapshot name"),
            (
                "byteback digest ../other/2026-11-26T03%3A00%3A12Z /x",
                "not a snapshot name",
            ),
            (
                "byteback digest 2026-11-26T03%3A00%3A12Z%2F.. /x",
                "not a snapshot name",
            ),
            (
                "byteback digest 2026-11-26T03%3A00%3A12Z/../../x /x",
                "not a snapshot name",
            ),
            ("byteback digest 2026-11-26T03%3A00%3A12Z /../etc", "'..'"),
            (
                "byteback digest 2026-11-26T03%3A00%3A12Z /a/%2E%2E/b",
                "'..'",
            ),
            (
                "byteback digest 2026-11-26T03%3A00%3A12Z etc/passwd",
                "absolute",
            ),
            ("byteback digest 2026-11-26T03%3A00%3A12Z /a%00b", "NUL"),
            ("byteback digest 2026-11-26T03%3A00%3A12Z /%5B", "unclosed"),
            (
                "byteback digest 2026-11-26T03%3A00%3A12Z /a%zz",
                "badly encoded",
            ),
            (
                "byteback digest 2026-11-26T03%3A00%3A12Z %2D%2Dall",
                "absolute",
            ),
            (many.as_str(), "at most 64"),
        ];
        for (cmd, why) in cases {
            let err = parse(Some(cmd)).expect_err(cmd).0;
            assert!(err.contains(why), "{cmd:?}: {err}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        let cases = [
            (None, "no command"),
            (Some(""), "not allowed"),
            (Some("sh"), "not allowed"),
            (Some("/bin/sh -c id"), "not allowed"),
            (Some("byteback ping; rm -rf ~"), "not allowed"),
            (Some("byteback  ping"), "not allowed"),
            (Some("byteback ping\nid"), "character"),
            (
                Some("byteback snapshot --at 2020-01-01T00:00:00Z"),
                "not allowed",
            ),
            (
                Some("rsync --server --sender -vlogDtpre.iLsfxCIvu --log-file=/tmp/x . current/a"),
                "--log-file",
            ),
            (
                Some(
                    "rsync --server --sender -vlogDtpre.iLsfxCIvu --remove-source-files . current/a",
                ),
                "--remove-source-files",
            ),
            (
                Some("rsync --server --sender -Lvlogtpre.iLsfxCIvu . current/a"),
                "-L",
            ),
            (
                Some("rsync --server --sender -vlogDtpre.iLsfxCIvu ."),
                "without anything",
            ),
            (
                Some("rsync --server --sender -vlogDtpre.iLsfxCIvu . a%zz"),
                "badly encoded",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --sender . current/"),
                "--sender",
            ),
            (Some("byteback list"), "needs a snapshot"),
            (Some("byteback list %2A"), "at least one pattern"),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --log-file=/tmp/x . current/"),
                "--log-file",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --temp-dir=/tmp . current/"),
                "--temp-dir",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --partial-dir=../x . current/"),
                "--partial-dir",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --backup-dir=../x . current/"),
                "--backup-dir",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --link-dest=../other . current/"),
                "--link-dest",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --compare-dest=/ . current/"),
                "--compare-dest",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --copy-dest=/ . current/"),
                "--copy-dest",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --files-from=/etc/passwd . current/"),
                "--files-from",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --write-batch=x . current/"),
                "--write-batch",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --read-batch=x . current/"),
                "--read-batch",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --rsync-path=/bin/sh . current/"),
                "--rsync-path",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --remove-source-files . current/"),
                "--remove-source-files",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --super . current/"),
                "--super",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --no-munge-links . current/"),
                "--no-munge-links",
            ),
            (Some("rsync --server -slogDtpre.iLsfxCIvu . current/"), "-s"),
            (Some("rsync --server -Llogtpre.iLsfxCIvu . current/"), "-L"),
            (Some("rsync --server -klogtpre.iLsfxCIvu . current/"), "-k"),
            (Some("rsync --server -blogtpre.iLsfxCIvu . current/"), "-b"),
            (Some("rsync --server -Tx . current/"), "-T"),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu -@x . current/"),
                "malformed",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu -@-1x . current/"),
                "malformed",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --modify-window=-x . current/"),
                "--modify-window",
            ),
            // Access and create times would be set on snapshot inodes.
            (Some("rsync --server -logDtpUre.iLsfxCIvu . current/"), "-U"),
            (Some("rsync --server -logDtpNre.iLsfxCIvu . current/"), "-N"),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --atimes . current/"),
                "--atimes",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --open-noatime . current/"),
                "--open-noatime",
            ),
            // Abbreviations of forbidden options: rsync 3.5's popt matches
            // long names exactly (it answers "unknown option"), and only
            // exact names pass here either.
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --log-f=/tmp/x . current/"),
                "--log-f",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --temp=/tmp . current/"),
                "--temp",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --confine-root=/ . current/"),
                "--confine-root",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --max-alloc=100G . current/"),
                "--max-alloc",
            ),
            (
                Some("rsync --server -logtpre.iLsfxCIvu"),
                "without a destination",
            ),
            (
                Some("rsync --server -logtpre.iLsfxCIvu . a b"),
                "more than one",
            ),
            (Some("rsync --server -logtpre.i/../ . a"), "capability"),
            (
                Some("rsync --server -logtpr --timeout=$(id) . a"),
                "--timeout",
            ),
            (
                Some("rsync --server -logtpr --log-format=%i/x . a"),
                "--log-format",
            ),
            (Some("rsync --server /etc/passwd . a"), "unexpected"),
            (Some("rsync --server . current/"), "without options"),
        ];
        for (cmd, why) in cases {
            let err = parse(cmd).expect_err(&format!("{cmd:?} must be refused")).0;
            assert!(err.contains(why), "{cmd:?}: {err}");
        }
        let long = format!("byteback ping {}", "x".repeat(5000));
        assert!(parse(Some(&long)).is_err());
    }

    #[test]
    fn replica_requests_round_trip() {
        let c = ClientName::new("web1.example").unwrap();
        let name = SnapshotName::parse("2026-11-26T03:00:00Z").unwrap();
        for r in [
            ReplicaRequest::State,
            ReplicaRequest::Snapshot {
                client: c.clone(),
                name: name.clone(),
                partial: false,
            },
            ReplicaRequest::Snapshot {
                client: c.clone(),
                name: SnapshotName::parse("2014-03-02T23:10+0100").unwrap(),
                partial: true,
            },
            ReplicaRequest::Receive {
                client: c.clone(),
                options: vec!["-logDtpXAHre.iLsfxCIvu".into(), "--inplace".into()],
            },
            ReplicaRequest::Adopt {
                client: c.clone(),
                key: ClientKey::new("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAI+/=").unwrap(),
            },
        ] {
            assert_eq!(parse_replica(Some(&r.render())), Ok(r));
        }
        // What rsync 3.2+ really sends for `replicate`'s transfer.
        let real = "rsync --server -lHogDtpAXrSe.iLsfxCIvu --timeout=600 --delete --numeric-ids --inplace --fake-super -@-1 . web1.example/current/";
        let Ok(ReplicaRequest::Receive { client, options }) = parse_replica(Some(real)) else {
            panic!("{real}")
        };
        assert_eq!((client, options.len()), (c, 7));
        assert!(matches!(
            parse_replica(Some(
                "rsync --server -logDtpre.iLsfxCIvu . web1.example/current"
            )),
            Ok(ReplicaRequest::Receive { .. })
        ));
    }

    #[test]
    fn replica_keys_refuse_everything_else() {
        let cases = [
            (None, "no command"),
            (Some(""), "not allowed"),
            (Some("sh"), "not allowed"),
            // A replica key is not a client key: none of a client's requests.
            (Some("byteback ping"), "not allowed"),
            (Some("byteback complete"), "not allowed"),
            (Some("byteback snapshots"), "not allowed"),
            (Some("byteback list %2A /etc"), "not allowed"),
            (
                Some("rsync --server --sender -logDtpre.iLsfxCIvu . a/current/"),
                "--sender",
            ),
            (Some("byteback replica-state x"), "not allowed"),
            (Some("byteback replica-state\nid"), "character"),
            (Some("byteback replica-state\n"), "character"),
            (Some("byteback  replica-state"), "not allowed"),
            (Some("byteback replica-snapshot a"), "needs a client"),
            (
                Some("byteback replica-snapshot a 2026-11-26T03:00:00Z extra"),
                "needs a client",
            ),
            (
                Some("byteback replica-snapshot a 2026-11-26"),
                "not a snapshot name",
            ),
            (
                Some("byteback replica-snapshot a current"),
                "not a snapshot name",
            ),
            (
                Some("byteback replica-snapshot ../b 2026-11-26T03:00:00Z"),
                "invalid client name",
            ),
            (
                Some("byteback replica-snapshot .. 2026-11-26T03:00:00Z"),
                "invalid client name",
            ),
            (
                Some("byteback replica-snapshot --partial --partial a 2026-11-26T03:00:00Z"),
                "needs a client",
            ),
            (
                Some("byteback replica-snapshot a 2026-11-26T03:00:00Z/../x"),
                "not a snapshot name",
            ),
            // An adoption names a client and a bare key: no comment, no
            // options, nothing that is not a key's type and base64.
            (Some("byteback replica-adopt a"), "needs a client"),
            (
                Some("byteback replica-adopt a ssh-ed25519"),
                "needs a client",
            ),
            (
                Some("byteback replica-adopt a ssh-ed25519 AAAA root@a"),
                "needs a client",
            ),
            (
                Some("byteback replica-adopt a command=\"sh\" AAAA"),
                "needs a client",
            ),
            (
                Some("byteback replica-adopt a ssh-ed25519 AAAA\"x"),
                "needs a client",
            ),
            (
                Some("byteback replica-adopt ../a ssh-ed25519 AAAA"),
                "invalid client name",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu . current/"),
                "not CLIENT/current/",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu . a/b/current/"),
                "invalid client name",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu . ../x/current/"),
                "invalid client name",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu . /current/"),
                "invalid client name",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu . a/2026-11-26T03:00:00Z/"),
                "not CLIENT/current/",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu . a/current/x"),
                "not CLIENT/current/",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu . a/current/ b/current/"),
                "exactly one",
            ),
            (Some("rsync --server -logDtpre.iLsfxCIvu"), "exactly one"),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --link-dest=../../other . a/current/"),
                "--link-dest",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --remove-source-files . a/current/"),
                "--remove-source-files",
            ),
            (
                Some("rsync --server -slogDtpre.iLsfxCIvu . a/current/"),
                "-s",
            ),
            (
                Some("rsync --server -logDtpUre.iLsfxCIvu . a/current/"),
                "-U",
            ),
            (
                Some("rsync --server -logDtpre.iLsfxCIvu --delete-missing-args . a/current/"),
                "--delete-missing-args",
            ),
        ];
        for (cmd, why) in cases {
            let err = parse_replica(cmd)
                .expect_err(&format!("{cmd:?} must be refused"))
                .0;
            assert!(err.contains(why), "{cmd:?}: {err}");
        }
        assert!(parse_replica(Some("byteback\treplica-state")).is_err());
        let long = format!("byteback replica-state {}", "x".repeat(5000));
        assert!(parse_replica(Some(&long)).unwrap_err().0.contains("longer"));
    }

    /// What rsync 3.5 puts on the server's command line for an index-mode
    /// transfer (`--files-from=- --from0 --delete-missing-args --force
    /// --ignore-times`, no recursion): the files-from list itself stays on
    /// the client, and the server sees only `--delete-missing-args` new.
    const INCREMENTAL: &str = "rsync --server -lHogDtpAXIRSe.LsfxCIvu --timeout=30 --force --stats --delete-missing-args -@-1 --numeric-ids --inplace . current/";

    #[test]
    fn incremental_requests() {
        assert_eq!(
            parse(Some("byteback incremental 2026-11-28T03:00:00Z")),
            Ok(Request::Incremental {
                snapshot: "2026-11-28T03:00:00Z".into()
            })
        );
        let r = Request::Incremental {
            snapshot: "2026-11-28T03:00:00Z".into(),
        };
        assert_eq!(parse(Some(&r.render())), Ok(r));
        let Ok(Request::Receive { options, mode }) = parse(Some(INCREMENTAL)) else {
            panic!("{INCREMENTAL} refused")
        };
        assert!(options.contains(&"--delete-missing-args".to_string()));
        assert_eq!(mode, TransferMode::Incremental, "before protocol 3");
        let by_destination = Request::Receive {
            options: vec!["-lHogDtpAXIRSe.LsfxCIvu".into(), "--inplace".into()],
            mode: TransferMode::Incremental,
        };
        assert!(by_destination.render().ends_with(" . incremental/"));
        assert_eq!(parse(Some(&by_destination.render())), Ok(by_destination));
        let Ok(Request::Receive { mode, .. }) = parse(Some(REAL)) else {
            panic!("{REAL} refused")
        };
        assert_eq!(mode, TransferMode::Full);
        // The replace list: vanished paths marked, nothing outside current.
        let list = ReplaceList {
            replace: vec![b"etc/a b".to_vec(), b"gone".to_vec(), b"x/y".to_vec()],
            gone: vec![b"x/y".to_vec(), b"gone".to_vec()],
        };
        let text = render_replace_list(&list);
        assert_eq!(text, "etc/a%20b\ngone gone\ngone x/y\n");
        let back = parse_replace_list(text.as_bytes()).unwrap();
        assert_eq!(back.replace, list.replace);
        assert_eq!(back.gone, [b"gone".to_vec(), b"x/y".to_vec()]);
        for bad in ["gone ../x", "gone ", "gone a//b", "gone  a", "a/./b"] {
            assert!(parse_replace_list(bad.as_bytes()).is_err(), "{bad}");
        }
        for (cmd, why) in [
            ("byteback incremental", "not allowed"),
            ("byteback incremental current", "snapshot name"),
            ("byteback incremental ../x", "snapshot name"),
            ("byteback incremental 2026-11-28T03:00:00Z x", "not allowed"),
            (
                "rsync --server -lHogDtpAXIRSe.LsfxCIvu --files-from=- . current/",
                "--files-from",
            ),
            (
                "rsync --server -lHogDtpAXIRSe.LsfxCIvu --files-from=/etc/passwd . current/",
                "--files-from",
            ),
            (
                "rsync --server -lHogDtpAXIRSe.LsfxCIvu --from0 . current/",
                "--from0",
            ),
            (
                "rsync --server -lHogDtpAXIRSe.LsfxCIvu --delete-missing-args=x . current/",
                "--delete-missing-args",
            ),
            (
                "rsync --server -lHogDtpAXIRSe.LsfxCIvu --ignore-missing-args . current/",
                "--ignore-missing-args",
            ),
        ] {
            let err = parse(Some(cmd)).expect_err(cmd).0;
            assert!(err.contains(why), "{cmd}: {err}");
        }
    }

    #[test]
    fn replace_lists_stay_inside_current() {
        let paths = vec![
            b"etc/host name".to_vec(),
            b"a/\xff\n%".to_vec(),
            b"x".to_vec(),
        ];
        let list = ReplaceList {
            replace: paths,
            gone: Vec::new(),
        };
        assert_eq!(
            parse_replace_list(render_replace_list(&list).as_bytes()),
            Ok(list)
        );
        assert_eq!(parse_replace_list(b""), Ok(ReplaceList::default()));
        for bad in [
            &b"../other.example/current\n"[..],
            b"a/../../x\n",
            b"/etc/passwd\n",
            b"a//b\n",
            b"./a\n",
            b"a/.\n",
            b"\n",
            b"a%00b\n",
            b"a%2F..%2F..%2Fx\n",
            b"a%zz\n",
            b"a b\n",
            b"\xff\n",
        ] {
            assert!(
                parse_replace_list(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let huge = vec![b'a'; MAX_REPLACE_LIST + 1];
        assert!(parse_replace_list(&huge).is_err());
    }
}
