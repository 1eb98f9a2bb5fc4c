//! The server user's `~/.ssh/authorized_keys`: one confined line per client.
//!
//! Each client's key may only run `byteback-server receive` for that client,
//! with `restrict` switching off forwarding, ptys and user rc files. The
//! client's name is fixed here, by the administrator, so nothing the client
//! sends can make it act as another client.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::names::ClientName;
use crate::sys::fs::{ensure_dir, write_atomic};
use crate::sys::lock::Lock;

/// Key types OpenSSH accepts in authorized_keys.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// A client's public key, as `ssh-keygen` printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// e.g. `ssh-ed25519`.
    pub kind: String,
    /// The base64 key blob.
    pub blob: String,
    /// The comment, e.g. `root@host.example.net` (may be empty).
    pub comment: String,
}

impl PublicKey {
    /// Reads a key given as words (`ssh-ed25519 AAAA... root@host`), checked
    /// for shape here and for validity by `ssh-keygen`.
    pub fn from_words(words: &[String]) -> Result<PublicKey> {
        let text = words.join(" ");
        let bad = |why: &str| {
            Err(Error::Usage(format!(
                "not an SSH public key ({why}): pass the key exactly as `byteback setup` printed it, e.g. ssh-ed25519 AAAA... root@host"
            )))
        };
        if text.chars().any(|c| c.is_control()) {
            return bad("it contains control characters");
        }
        let mut parts = text.split_whitespace();
        let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
            return bad("expected a key type and the key");
        };
        if !KEY_TYPES.contains(&kind) {
            return bad(&format!("unknown key type {kind:?}"));
        }
        if !blob
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        {
            return bad("the key is not base64");
        }
        if !is_canonical_blob(kind, blob) {
            return bad("the key is not in the one form ssh-keygen writes it");
        }
        let key = PublicKey {
            kind: kind.to_owned(),
            blob: blob.to_owned(),
            comment: parts.collect::<Vec<_>>().join(" "),
        };
        key.fingerprint().map_err(|_| {
            Error::Usage("not an SSH public key (ssh-keygen cannot read it): pass the key exactly as `byteback setup` printed it".into())
        })?;
        Ok(key)
    }

    /// The key's SHA256 fingerprint line, from `ssh-keygen -l`.
    pub fn fingerprint(&self) -> Result<String> {
        use std::io::Write;
        let mut child = Cmd::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f", "-"])
            .configure(|c| {
                c.stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
            })
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(format!("{} {}\n", self.kind, self.blob).as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| Error::Command(format!("ssh-keygen: {e}")))?;
        if !out.status.success() {
            return Err(Error::Usage("ssh-keygen cannot read the key".into()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The key's SHA256 fingerprint, `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fn sha256(&self) -> Result<String> {
        let line = self.fingerprint()?;
        line.split_whitespace()
            .find(|w| w.starts_with("SHA256:"))
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::Command(format!("ssh-keygen printed no SHA256 fingerprint: {line}"))
            })
    }

    /// The client name the comment suggests: `root@host.example` → `host.example`.
    pub fn suggested_name(&self) -> Option<&str> {
        let comment = self.comment.split_whitespace().next()?;
        Some(comment.rsplit_once('@').map_or(comment, |(_, host)| host))
    }
}

/// Whether `blob` is `kind`'s key in the one form `ssh-keygen` writes it:
/// canonical base64 of exactly the key's fields, the first its type, each
/// RSA number without a needless leading zero. OpenSSH reads other forms
/// of the same key too (an RSA exponent `00 01 00 01`), which a comparison
/// of blobs would take for another key: one key could then be given to two
/// clients (`replica-adopt`, `new-client`), against "a key serves one
/// client". A key that is not canonical is refused.
fn is_canonical_blob(kind: &str, blob: &str) -> bool {
    let Some(bytes) = base64_decode(blob) else {
        return false;
    };
    if base64_encode(&bytes) != blob {
        return false;
    }
    let mut fields = Vec::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return false;
        };
        let len = u32::from_be_bytes(*len) as usize;
        if tail.len() < len {
            return false;
        }
        let (field, tail) = tail.split_at(len);
        fields.push(field);
        rest = tail;
    }
    if fields.first() != Some(&kind.as_bytes()) {
        return false;
    }
    // The number of fields of each type: no trailing data.
    let count = match kind {
        "ssh-ed25519" => 2,
        "ssh-rsa" | "sk-ssh-ed25519@openssh.com" => 3,
        "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "ecdsa-sha2-nistp521" => 3,
        "sk-ecdsa-sha2-nistp256@openssh.com" => 4,
        _ => return false,
    };
    if fields.len() != count {
        return false;
    }
    // An mpint: no leading zero byte but before a byte with its top bit set.
    let mpint = |n: &[u8]| match n {
        [0] | [0, 0..=0x7f, ..] => false,
        [first, ..] => first & 0x80 == 0,
        [] => true,
    };
    kind != "ssh-rsa" || fields[1..].iter().all(|n| mpint(n))
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(BASE64[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Lenient decoding (padding and trailing bits are checked by encoding
/// again); `None` if a character is not of base64's alphabet.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let v = BASE64.iter().position(|&b| b == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// What a key line lets its key do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyRole {
    /// A client: back up, list and restore its own files.
    #[default]
    Client,
    /// A primary server (`--client` names it): replicate its clients'
    /// snapshots into this store, under `PRIMARY__CLIENT`, and nothing else.
    Replica,
    /// List and restore only (e.g. a client's key on a replica): no backups.
    ReadOnly,
    /// Back up only: a client whose key cannot read its history back (no
    /// list, restore or digest), so that whoever takes the machine over
    /// cannot read old versions of its files either — unless the
    /// administrator allows reads for a while (`grant-restore`). `granted`
    /// is never written in a key line: the forced command sets it from the
    /// client's grant record ([`crate::server::roles::in_effect`]) before
    /// the role table is consulted.
    PushOnly {
        /// Whether a `grant-restore` window is open now.
        granted: bool,
    },
    /// An original byteback client's key, imported by `import-keys`: its
    /// client's backups, snapshots, listings and restores, in the
    /// original's language (`protocol::legacy`), within the same
    /// confinement and limits as a client key.
    Legacy,
}

impl KeyRole {
    /// The flag the forced command carries after `--client NAME`, if any.
    pub fn flag(self) -> Option<&'static str> {
        match self {
            KeyRole::Client => None,
            KeyRole::Replica => Some("--replica"),
            KeyRole::ReadOnly => Some("--read-only"),
            KeyRole::PushOnly { .. } => Some("--push-only"),
            KeyRole::Legacy => Some("--legacy"),
        }
    }

    /// In words, for `clients`.
    pub fn describe(self) -> &'static str {
        match self {
            KeyRole::Client => "receive only",
            KeyRole::Replica => "replica of a primary",
            KeyRole::ReadOnly => "read only",
            KeyRole::PushOnly { granted: false } => "push only",
            KeyRole::PushOnly { granted: true } => "push only, reads granted for now",
            KeyRole::Legacy => "original byteback client",
        }
    }
}

/// The authorized_keys line that confines `key` to `client`, in `role`.
pub fn authorized_line(
    server_exe: &Path,
    store: &Path,
    client: &ClientName,
    from: Option<&str>,
    key: &PublicKey,
    role: KeyRole,
) -> Result<String> {
    let mut command = format!(
        "{} receive --store {} --client {}",
        crate::quote::forced_command_word(&server_exe.to_string_lossy())?,
        crate::quote::forced_command_word(&store.to_string_lossy())?,
        client
    );
    if let Some(flag) = role.flag() {
        command.push(' ');
        command.push_str(flag);
    }
    let mut line = format!("restrict,command=\"{command}\"");
    if let Some(pattern) = from {
        if pattern.is_empty()
            || !pattern
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".*?:,/!_-".contains(c))
        {
            return Err(Error::Usage(format!(
                "invalid --from pattern {pattern:?}: use host names or addresses, with * ? and ! as in ssh's from=\"...\" (e.g. 192.0.2.0/24,backup.example.net)"
            )));
        }
        line.push_str(&format!(",from=\"{pattern}\""));
    }
    line.push_str(&format!(" {} {}", key.kind, key.blob));
    if !key.comment.is_empty() {
        line.push(' ');
        line.push_str(&key.comment);
    }
    Ok(line)
}

/// The parts of an authorized_keys line: its options (empty if none), the
/// key type, the base64 blob and the comment (possibly empty).
fn split_line(line: &str) -> Option<(&str, &str, &str, &str)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (options, rest) = if KEY_TYPES.iter().any(|k| line.starts_with(&format!("{k} "))) {
        ("", line)
    } else {
        let mut in_quotes = false;
        let mut end = line.len();
        for (i, c) in line.char_indices() {
            match c {
                '"' => in_quotes = !in_quotes,
                ' ' | '\t' if !in_quotes => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        (&line[..end], line[end..].trim_start())
    };
    let mut words = rest.splitn(2, [' ', '\t']);
    let kind = words.next()?;
    let rest = words.next().unwrap_or("").trim_start();
    let mut words = rest.splitn(2, [' ', '\t']);
    let blob = words.next().filter(|b| !b.is_empty())?;
    let comment = words.next().unwrap_or("").trim();
    Some((options, kind, blob, comment))
}

/// An options field split at its unquoted commas: `(name, value)`, the
/// value unquoted (`\"` inside quotes is a quote, as sshd reads it).
fn parse_options(text: &str) -> Vec<(String, Option<String>)> {
    let mut options = Vec::new();
    let mut name = String::new();
    let mut value: Option<String> = None;
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    let mut push = |name: &mut String, value: &mut Option<String>| {
        if !name.is_empty() {
            options.push((std::mem::take(name), value.take()));
        }
        *value = None;
    };
    while let Some(c) = chars.next() {
        match (c, in_quotes, value.as_mut()) {
            ('\\', true, Some(v)) if chars.peek() == Some(&'"') => {
                v.push('"');
                chars.next();
            }
            ('"', _, Some(_)) => in_quotes = !in_quotes,
            (',', false, _) => push(&mut name, &mut value),
            ('=', false, None) => value = Some(String::new()),
            (c, _, Some(v)) => v.push(c),
            (c, _, None) => name.push(c),
        }
    }
    push(&mut name, &mut value);
    options
}

/// A forced command split into words, `'...'` quoting honoured (the only
/// quoting [`authorized_line`] writes).
fn command_words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut in_quotes = false;
    for c in command.chars() {
        match c {
            '\'' => {
                in_quotes = !in_quotes;
                word.get_or_insert_default();
            }
            ' ' | '\t' if !in_quotes => words.extend(word.take()),
            c => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    words
}

/// The words of a line's forced command (`command="..."`), if it has one.
fn forced_command_words(options: &[(String, Option<String>)]) -> Option<Vec<String>> {
    let command = options
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("command"))?
        .1
        .as_deref()?;
    Some(command_words(command))
}

/// One client's line in authorized_keys: a key whose forced command is
/// `byteback-server receive ... --client NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLine {
    /// Its place among the file's lines (from 0).
    pub index: usize,
    /// The client its forced command names (as written: checked by the caller).
    pub client: String,
    /// The store its forced command names, if it names one.
    pub store: Option<PathBuf>,
    /// The key.
    pub key: PublicKey,
    /// Its `from="..."` pattern, if any.
    pub from: Option<String>,
    /// Whether it has `restrict` (no forwarding, pty or rc files).
    pub restrict: bool,
    /// Whether its forced command is exactly `<server> receive --store S
    /// --client NAME [--replica|--read-only|--push-only]`, as new-client writes it: the
    /// key can serve that client's requests (in its role) and do nothing else.
    pub receive_only: bool,
    /// What the key may do, by its forced command's flag.
    pub role: KeyRole,
}

impl KeyLine {
    /// Reads one line of the file; `None` unless it is a byteback client's.
    fn parse(index: usize, line: &str) -> Option<KeyLine> {
        let (options, kind, blob, comment) = split_line(line)?;
        let options = parse_options(options);
        let words = forced_command_words(&options)?;
        if words.get(1).map(String::as_str) != Some("receive") {
            return None;
        }
        let after = |flag: &str| {
            let at = words.iter().position(|w| w == flag)?;
            words.get(at + 1).cloned()
        };
        let client = after("--client")?;
        let role = match words.get(6).map(String::as_str) {
            Some("--replica") => KeyRole::Replica,
            Some("--read-only") => KeyRole::ReadOnly,
            Some("--push-only") => KeyRole::PushOnly { granted: false },
            Some("--legacy") => KeyRole::Legacy,
            _ => KeyRole::Client,
        };
        let receive_only = words.len() == 6 + usize::from(role.flag().is_some())
            && words[2] == "--store"
            && words[4] == "--client";
        Some(KeyLine {
            index,
            client,
            store: after("--store").map(PathBuf::from),
            key: PublicKey {
                kind: kind.to_owned(),
                blob: blob.to_owned(),
                comment: comment.to_owned(),
            },
            from: options
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("from"))
                .and_then(|(_, v)| v.clone()),
            restrict: options
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("restrict")),
            receive_only,
            role,
        })
    }

    /// Whether this line serves the store at `root` (a line naming no
    /// store is taken to serve any).
    pub fn serves(&self, root: &Path) -> bool {
        let Some(store) = &self.store else {
            return true;
        };
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
        store == root || canonical(store) == canonical(root)
    }
}

/// Every byteback client's line in the text of an authorized_keys file.
pub fn client_lines(text: &str) -> Vec<KeyLine> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| KeyLine::parse(i, line))
        .collect()
}

/// The text with line `index` replaced by `line` (or dropped, if `None`);
/// every other line is kept as it was.
pub fn replace_line(text: &str, index: usize, line: Option<&str>) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, old) in text.lines().enumerate() {
        let new = if i == index { line } else { Some(old) };
        if let Some(new) = new {
            out.push_str(new);
            out.push('\n');
        }
    }
    out
}

/// The line with its forced command's `--client FROM` made `--client TO`;
/// the rest (key, options, an administrator's own additions) kept as is.
pub fn renamed_line(line: &str, from: &ClientName, to: &ClientName) -> Result<String> {
    let needle = format!("--client {from}");
    let found: Vec<usize> = line
        .match_indices(&needle)
        .map(|(at, _)| at)
        .filter(|at| matches!(line[at + needle.len()..].chars().next(), Some('"' | ' ')))
        .collect();
    let [at] = found[..] else {
        return Err(Error::Command(format!(
            "cannot find `{needle}` once in the forced command of client {from}'s line in authorized_keys: edit it by hand"
        )));
    };
    let renamed = format!("{}--client {to}{}", &line[..at], &line[at + needle.len()..]);
    match KeyLine::parse(0, &renamed) {
        Some(parsed) if parsed.client == to.as_str() => Ok(renamed),
        _ => Err(Error::Command(format!(
            "cannot rewrite client {from}'s line in authorized_keys: edit it by hand"
        ))),
    }
}

/// What an existing authorized_keys line says, as far as byteback cares.
#[derive(Debug, PartialEq, Eq)]
struct Entry<'a> {
    blob: Option<&'a str>,
    client: Option<String>,
}

/// Reads the key and the client (if it is a byteback line) of a line.
fn read_entry(line: &str) -> Entry<'_> {
    Entry {
        blob: split_line(line).map(|(_, _, blob, _)| blob),
        client: KeyLine::parse(0, line).map(|l| l.client),
    }
}

/// What admitting a key will do, decided before anything is changed.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Append the line.
    Append,
    /// The same key is already there for the same client.
    AlreadyThere,
    /// Replace the client's line (another key) with the new one.
    Replace(KeyLine),
}

/// Decides how to admit `key` for `client` into the authorized_keys file
/// whose text is `existing` (at `path`, for messages), refusing a key
/// already used for another client, and a client already served by
/// another key unless `replace` (then that line is the one to replace;
/// `replace` for a client without a line is refused).
pub fn plan(
    existing: &str,
    path: &Path,
    key: &PublicKey,
    client: &ClientName,
    replace: bool,
) -> Result<Plan> {
    let entries: Vec<(usize, Entry<'_>)> = existing.lines().map(read_entry).enumerate().collect();
    let is_client = |e: &Entry<'_>| e.client.as_deref() == Some(client.as_str());
    // The key first, wherever it is: a key serves one client only.
    if let Some((_, entry)) = entries
        .iter()
        .find(|(_, e)| e.blob == Some(key.blob.as_str()))
    {
        if is_client(entry) {
            return Ok(Plan::AlreadyThere);
        }
        return Err(Error::Refused(match &entry.client {
            Some(other) => format!(
                "this key is already authorised for client {other}; each machine needs its own key (run `byteback setup` on it)"
            ),
            None => format!(
                "this key is already in {} for something other than byteback; each client needs a key of its own",
                path.display()
            ),
        }));
    }
    let line = entries
        .iter()
        .find(|(_, e)| is_client(e))
        .and_then(|(index, _)| KeyLine::parse(*index, existing.lines().nth(*index)?));
    match (line, replace) {
        (Some(line), true) => Ok(Plan::Replace(line)),
        (Some(_), false) => Err(Error::Refused(format!(
            "client name {client} is already taken by another key; choose another name with --name, or give the machine its new key with --replace-key"
        ))),
        (None, true) => Err(Error::NotFound(format!(
            "no client {client} is enrolled, so it has no key to replace: enrol it without --replace-key (`byteback-server clients` lists the enrolled ones)"
        ))),
        (None, false) => Ok(Plan::Append),
    }
}

/// `existing` with `line` added at the end.
pub fn with_line(existing: &str, line: &str) -> String {
    let mut text = existing.to_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    text
}

/// An original byteback client's line, as its `byteback-setup-client`
/// wrote it: `command="byteback-receive",from="IP",environment="BYTEBACK_HOST=HOST" KEY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalLine {
    /// Its place among the file's lines (from 0).
    pub index: usize,
    /// `BYTEBACK_HOST` as written (checked by [`plan_import`]).
    pub host: Option<String>,
    /// Its `from="..."` pattern, if any.
    pub from: Option<String>,
    /// The key.
    pub key: PublicKey,
}

impl OriginalLine {
    /// Reads one line; `None` unless its forced command is the original's
    /// `byteback-receive` (by name or path, without arguments).
    fn parse(index: usize, line: &str) -> Option<OriginalLine> {
        let (options, kind, blob, comment) = split_line(line)?;
        let options = parse_options(options);
        let words = forced_command_words(&options)?;
        let [program] = words.as_slice() else {
            return None;
        };
        if program.rsplit('/').next() != Some("byteback-receive") {
            return None;
        }
        let host = options
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("environment"))
            .filter_map(|(_, v)| v.as_deref()?.strip_prefix("BYTEBACK_HOST="))
            .next_back()
            .map(str::to_owned);
        Some(OriginalLine {
            index,
            host,
            from: options
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("from"))
                .and_then(|(_, v)| v.clone()),
            key: PublicKey {
                kind: kind.to_owned(),
                blob: blob.to_owned(),
                comment: comment.to_owned(),
            },
        })
    }
}

/// What `import-keys` does with one line of authorized_keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Import {
    /// Replace the original line `index` with `line` (the client's
    /// `--legacy` forced command, same key, comment and `from=`).
    Rewrite {
        index: usize,
        client: ClientName,
        key: PublicKey,
        line: String,
    },
    /// Drop the original line `index`: the same key already has its line
    /// for the same client (an import interrupted, or done by hand).
    Drop { index: usize, client: ClientName },
    /// Line `index` was imported before.
    Already { index: usize, client: String },
    /// Leave line `index` as it is, for the reason given.
    Skip { index: usize, why: String },
}

/// Writes a client's new line from its name, `from=` pattern and key.
pub type MakeLine<'a> = dyn Fn(&ClientName, Option<&str>, &PublicKey) -> Result<String> + 'a;

/// Decides what `import-keys` does with every original and imported line
/// of `text`; `make_line` writes a client's new line (it may refuse, e.g. a
/// `from=` pattern the new line cannot carry). Pure: nothing is changed.
/// The client's name is `BYTEBACK_HOST`, checked as any client name, and
/// from then on fixed by the new line: the environment is never read again.
pub fn plan_import(text: &str, make_line: &MakeLine<'_>) -> Vec<Import> {
    let ours = client_lines(text);
    let mut planned: Vec<Import> = ours
        .iter()
        .filter(|l| l.role == KeyRole::Legacy)
        .map(|l| Import::Already {
            index: l.index,
            client: l.client.clone(),
        })
        .collect();
    let mut taken: Vec<(String, usize)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let Some(original) = OriginalLine::parse(index, line) else {
            continue;
        };
        let skip = |why: String| Import::Skip { index, why };
        let Some(host) = original.host.as_deref() else {
            planned.push(skip(
                "its forced command is byteback-receive but it sets no BYTEBACK_HOST, so the original server refused it too; enrol the key with `byteback-server new-client --name NAME KEY`".into(),
            ));
            continue;
        };
        let client = match ClientName::new(host) {
            Ok(c) if !host.contains(crate::names::REPLICA_SEPARATOR) => c,
            Ok(_) => {
                planned.push(skip(format!(
                    "BYTEBACK_HOST={host:?} has '{}', which names a replica's copies here; rename its directory and enrol the key with `byteback-server new-client --name NAME KEY`",
                    crate::names::REPLICA_SEPARATOR
                )));
                continue;
            }
            Err(e) => {
                planned.push(skip(format!(
                    "BYTEBACK_HOST={host:?} is not a client name here ({e}); rename its directory and enrol the key with `byteback-server new-client --name NAME KEY`"
                )));
                continue;
            }
        };
        if !KEY_TYPES.contains(&original.key.kind.as_str()) {
            planned.push(skip(format!(
                "{client}'s key type {} is not one OpenSSH still accepts; give the machine a new key and enrol it with `byteback-server new-client --name {client} KEY`",
                original.key.kind
            )));
            continue;
        }
        let same_key = ours.iter().find(|l| l.key.blob == original.key.blob);
        match same_key {
            Some(l) if l.client == client.as_str() => {
                planned.push(Import::Drop { index, client });
                continue;
            }
            Some(l) => {
                planned.push(skip(format!(
                    "its key is already authorised for client {} (line {}); each client needs a key of its own",
                    l.client,
                    l.index + 1
                )));
                continue;
            }
            None => {}
        }
        if let Some(l) = ours.iter().find(|l| l.client == client.as_str()) {
            planned.push(skip(format!(
                "client {client} already has a key (line {}); remove one of them, or give the client this key with `byteback-server new-client --name {client} --replace-key KEY`",
                l.index + 1
            )));
            continue;
        }
        if let Some((_, first)) = taken.iter().find(|(c, _)| c == client.as_str()) {
            planned.push(skip(format!(
                "client {client} was imported from line {} already; a client has one key here: enrol this machine under another name with `byteback-server new-client --name NAME KEY`",
                first + 1
            )));
            continue;
        }
        match make_line(&client, original.from.as_deref(), &original.key) {
            Ok(new) => {
                taken.push((client.to_string(), index));
                planned.push(Import::Rewrite {
                    index,
                    client,
                    key: original.key,
                    line: new,
                });
            }
            Err(e) => planned.push(skip(format!("{e}"))),
        }
    }
    planned.sort_by_key(|i| match i {
        Import::Rewrite { index, .. }
        | Import::Drop { index, .. }
        | Import::Already { index, .. }
        | Import::Skip { index, .. } => *index,
    });
    planned
}

/// The backup user's authorized_keys file.
pub fn default_path() -> Result<PathBuf> {
    let home = crate::sys::user::current().home.ok_or_else(|| {
        Error::Usage("cannot tell the backup user's home (for ~/.ssh/authorized_keys)".into())
    })?;
    Ok(home.join(".ssh").join("authorized_keys"))
}

/// The text of the authorized_keys file at `path` (empty if there is none).
pub fn read(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(Error::io("cannot read", path, e)),
    }
}

/// The authorized_keys file held for a change: every command that edits it
/// (new-client, remove-client, rename-client) reads, decides and rewrites
/// it under one lock (`authorized_keys.lock` beside it), so two of them at
/// once never lose each other's lines. sshd only ever sees a whole file:
/// each rewrite is atomic.
#[derive(Debug)]
pub struct Editing {
    path: PathBuf,
    text: String,
    _lock: Lock,
}

impl Editing {
    /// Takes the lock (waiting up to 30 s for another edit) and reads the
    /// file, creating `~/.ssh` (mode 0700) if needed.
    pub fn open(path: &Path) -> Result<Editing> {
        let ssh_dir: PathBuf = path.parent().map(Path::to_owned).unwrap_or_default();
        ensure_dir(&ssh_dir, 0o700)?;
        let lock_path = ssh_dir.join("authorized_keys.lock");
        let lock = Lock::acquire(&lock_path, Duration::from_secs(30))?.ok_or_else(|| {
            Error::Locked(format!(
                "another byteback-server command has been changing {} for 30 s (it holds {}); try again",
                path.display(),
                lock_path.display()
            ))
        })?;
        Ok(Editing {
            path: path.to_owned(),
            text: read(path)?,
            _lock: lock,
        })
    }

    /// The file's text when it was read (or last written).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with `text`, atomically, mode 0600.
    pub fn write(&mut self, text: String) -> Result<()> {
        write_atomic(&self.path, text.as_bytes(), 0o600)?;
        self.text = text;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One key has one form: another encoding of it (a needless zero in an
    /// RSA number, trailing data, other base64) is refused, not taken for
    /// another key.
    #[test]
    fn only_the_canonical_form_of_a_key_is_read() {
        fn field(bytes: &[u8]) -> Vec<u8> {
            let mut f = (bytes.len() as u32).to_be_bytes().to_vec();
            f.extend_from_slice(bytes);
            f
        }
        let blob = |fields: &[&[u8]]| base64_encode(&fields.concat());
        let ed = blob(&[&field(b"ssh-ed25519"), &field(&[7; 32])]);
        assert!(is_canonical_blob("ssh-ed25519", &ed));
        assert_eq!(
            base64_decode(&ed).map(|b| base64_encode(&b)),
            Some(ed.clone())
        );
        assert!(!is_canonical_blob("ssh-rsa", &ed), "type differs");
        let trailing = blob(&[&field(b"ssh-ed25519"), &field(&[7; 32]), &[0]]);
        assert!(!is_canonical_blob("ssh-ed25519", &trailing));
        let extra = blob(&[&field(b"ssh-ed25519"), &field(&[7; 32]), &field(b"")]);
        assert!(!is_canonical_blob("ssh-ed25519", &extra));
        let n: &[u8] = &[0x00, 0xc1, 0x02];
        let rsa = blob(&[&field(b"ssh-rsa"), &field(&[1, 0, 1]), &field(n)]);
        assert!(is_canonical_blob("ssh-rsa", &rsa));
        let padded = blob(&[&field(b"ssh-rsa"), &field(&[0, 0, 1, 0, 1]), &field(n)]);
        assert!(!is_canonical_blob("ssh-rsa", &padded));
        // Base64 with its padding left out, or bits after the last byte.
        assert!(!is_canonical_blob("ssh-rsa", rsa.trim_end_matches('=')));
        assert!(
            rsa.ends_with("=="),
            "{rsa}: a last character with bits to spare"
        );
        let mut slop = rsa.clone().into_bytes();
        let last = slop.iter().rposition(|&c| c != b'=').unwrap();
        let value = BASE64.iter().position(|&c| c == slop[last]).unwrap();
        slop[last] = BASE64[value ^ 1];
        let slop = String::from_utf8(slop).unwrap();
        assert_eq!(base64_decode(&slop), base64_decode(&rsa));
        assert!(!is_canonical_blob("ssh-rsa", &slop));
    }

    fn key(blob: &str, comment: &str) -> PublicKey {
        PublicKey {
            kind: "ssh-ed25519".into(),
            blob: blob.into(),
            comment: comment.into(),
        }
    }

    #[test]
    fn line_shape() {
        let c = ClientName::new("host.example").unwrap();
        let line = authorized_line(
            Path::new("/usr/bin/byteback-server"),
            Path::new("/home/byteback"),
            &c,
            None,
            &key("AAAA", "root@host.example"),
            KeyRole::Client,
        )
        .unwrap();
        assert_eq!(
            line,
            r#"restrict,command="/usr/bin/byteback-server receive --store /home/byteback --client host.example" ssh-ed25519 AAAA root@host.example"#
        );
        let line = authorized_line(
            Path::new("/usr/bin/byteback-server"),
            Path::new("/srv/my store"),
            &c,
            Some("192.0.2.0/24"),
            &key("AAAA", ""),
            KeyRole::Client,
        )
        .unwrap();
        assert_eq!(
            line,
            r#"restrict,command="/usr/bin/byteback-server receive --store '/srv/my store' --client host.example",from="192.0.2.0/24" ssh-ed25519 AAAA"#
        );
        assert!(
            authorized_line(
                Path::new("/x"),
                Path::new("/a\"b"),
                &c,
                None,
                &key("AAAA", ""),
                KeyRole::Client,
            )
            .is_err()
        );
        assert!(
            authorized_line(
                Path::new("/x"),
                Path::new("/s"),
                &c,
                Some("a\" b"),
                &key("AAAA", ""),
                KeyRole::Client,
            )
            .is_err()
        );
    }

    #[test]
    fn reads_existing_entries() {
        let e = read_entry(
            r#"restrict,command="/x receive --store '/s t' --client h1",from="a b" ssh-ed25519 BBBB root@h1"#,
        );
        assert_eq!(
            e,
            Entry {
                blob: Some("BBBB"),
                client: Some("h1".into())
            }
        );
        let e = read_entry("ssh-rsa CCCC admin@laptop");
        assert_eq!(
            e,
            Entry {
                blob: Some("CCCC"),
                client: None
            }
        );
    }

    const A: &str = r#"restrict,command="/usr/bin/byteback-server receive --store '/srv/my store' --client a.example",from="192.0.2.0/24,!192.0.2.9" ssh-ed25519 AAAA root@a.example laptop"#;
    const B: &str = r#"restrict,command="/usr/bin/byteback-server receive --store /srv/s --client b.example" ssh-ed25519 BBBB"#;

    #[test]
    fn reads_client_lines() {
        let text = format!(
            "# admin\nssh-rsa CCCC admin@laptop\n\n{A}\n{B}\ncommand=\"/bin/true\" ssh-ed25519 DDDD\n"
        );
        let lines = client_lines(&text);
        assert_eq!(lines.len(), 2, "{lines:#?}");
        let a = &lines[0];
        assert_eq!(a.index, 3);
        assert_eq!(a.client, "a.example");
        assert_eq!(a.store.as_deref(), Some(Path::new("/srv/my store")));
        assert_eq!(a.from.as_deref(), Some("192.0.2.0/24,!192.0.2.9"));
        assert!(a.restrict && a.receive_only);
        assert_eq!(a.key, key("AAAA", "root@a.example laptop"));
        assert!(a.serves(Path::new("/srv/my store")));
        assert!(!a.serves(Path::new("/srv/s")));
        let b = &lines[1];
        assert_eq!(
            (b.index, b.client.as_str(), b.from.as_deref()),
            (4, "b.example", None)
        );
        assert_eq!(b.key.comment, "");
        // Hand-made lines: not byteback's own shape, or not restricted.
        let loose = client_lines(
            r#"command="byteback-server receive --client c --verbose" ssh-ed25519 EEEE"#,
        );
        assert_eq!(loose.len(), 1);
        assert!(!loose[0].restrict && !loose[0].receive_only && loose[0].store.is_none());
        // A line new-client writes reads back as what it was made of.
        let c = ClientName::new("c.example").unwrap();
        let made = authorized_line(
            Path::new("/usr/bin/byteback-server"),
            Path::new("/srv/my store"),
            &c,
            Some("192.0.2.1"),
            &key("FFFF", "root@c"),
            KeyRole::Client,
        )
        .unwrap();
        let read = &client_lines(&made)[0];
        assert_eq!(read.client, "c.example");
        assert_eq!(read.from.as_deref(), Some("192.0.2.1"));
        assert!(read.restrict && read.receive_only);
        assert_eq!(read.role, KeyRole::Client);
        // Replica, read-only and push-only lines read back with their role.
        for role in [
            KeyRole::Replica,
            KeyRole::ReadOnly,
            KeyRole::PushOnly { granted: false },
        ] {
            let made = authorized_line(
                Path::new("/usr/bin/byteback-server"),
                Path::new("/srv/s"),
                &c,
                None,
                &key("FFFF", ""),
                role,
            )
            .unwrap();
            assert!(made.contains(&format!("--client c.example {}\"", role.flag().unwrap())));
            let read = &client_lines(&made)[0];
            assert_eq!((read.role, read.receive_only), (role, true), "{made}");
        }
        // Anything after the role is not byteback's own line any more.
        let odd = client_lines(
            r#"restrict,command="/x receive --store /s --client c --replica --x" ssh-ed25519 EEEE"#,
        );
        assert!(!odd[0].receive_only);
    }

    #[test]
    fn rewrites_one_line_only() {
        let text = format!("# keep me\n{A}\n{B}\n");
        let without = replace_line(&text, 1, None);
        assert_eq!(without, format!("# keep me\n{B}\n"));
        let replaced = replace_line(&text, 2, Some("new"));
        assert_eq!(replaced, format!("# keep me\n{A}\nnew\n"));
        let a = ClientName::new("a.example").unwrap();
        let z = ClientName::new("z.example").unwrap();
        let renamed = renamed_line(A, &a, &z).unwrap();
        assert_eq!(
            renamed,
            A.replace("--client a.example", "--client z.example")
        );
        assert_eq!(client_lines(&renamed)[0].client, "z.example");
        // A prefix of another name is not that name.
        let ab = ClientName::new("a.exam").unwrap();
        assert!(renamed_line(A, &ab, &z).is_err());
    }

    #[test]
    fn plans_admissions() {
        let path = Path::new("/home/b/.ssh/authorized_keys");
        let a = ClientName::new("a.example").unwrap();
        let n = ClientName::new("n.example").unwrap();
        let text = format!("{A}\n{B}\n");
        let same = key("AAAA", "");
        let other = key("ZZZZ", "");
        assert_eq!(
            plan(&text, path, &same, &a, false).unwrap(),
            Plan::AlreadyThere
        );
        assert_eq!(
            plan(&text, path, &same, &a, true).unwrap(),
            Plan::AlreadyThere
        );
        assert_eq!(plan(&text, path, &other, &n, false).unwrap(), Plan::Append);
        let taken = plan(&text, path, &other, &a, false).unwrap_err();
        assert!(taken.to_string().contains("--replace-key"), "{taken}");
        match plan(&text, path, &other, &a, true).unwrap() {
            Plan::Replace(line) => assert_eq!((line.index, line.key.blob.as_str()), (0, "AAAA")),
            p => panic!("{p:?}"),
        }
        let unknown = plan(&text, path, &other, &n, true).unwrap_err();
        assert_eq!(unknown.exit_code().code(), 1, "{unknown}");
        assert!(
            unknown.to_string().contains("no client n.example"),
            "{unknown}"
        );
        // Another client's key is refused, with or without --replace-key.
        let theirs = key("BBBB", "");
        for replace in [false, true] {
            let e = plan(&text, path, &theirs, &a, replace).unwrap_err();
            assert!(
                e.to_string()
                    .contains("already authorised for client b.example"),
                "{e}"
            );
        }
    }

    #[test]
    fn plans_the_import_of_original_lines() {
        // As byteback-setup-client-receive wrote them.
        let original = |host: &str, blob: &str| {
            format!(
                r#"command="byteback-receive",from="192.0.2.7",environment="BYTEBACK_HOST={host}" ssh-rsa {blob} byteback client key"#
            )
        };
        let text = [
            "# admin".to_owned(),
            original("web1.example", "R1"),
            "ssh-rsa ADMIN admin@laptop".to_owned(),
            original("../etc", "R2"),
            r#"command="byteback-receive" ssh-rsa R3 lost"#.to_owned(),
            original("a.example", "R4"),
            original("web1.example", "R5"),
            original("a.example", "AAAA"),
            original("db1", "R6").replace("ssh-rsa", "ssh-dss"),
            A.to_owned(),
            original("b.example", "R7"),
        ]
        .join("\n");
        let make = |c: &ClientName, from: Option<&str>, k: &PublicKey| {
            authorized_line(
                Path::new("/usr/bin/byteback-server"),
                Path::new("/srv/s"),
                c,
                from,
                k,
                KeyRole::Legacy,
            )
        };
        let planned = plan_import(&text, &make);
        let summary: Vec<String> = planned
            .iter()
            .map(|i| match i {
                Import::Rewrite { index, client, .. } => format!("{index} rewrite {client}"),
                Import::Drop { index, client } => format!("{index} drop {client}"),
                Import::Already { index, client } => format!("{index} already {client}"),
                Import::Skip { index, why } => format!("{index} skip {why}"),
            })
            .collect();
        let expect = [
            "1 rewrite web1.example",
            "3 skip BYTEBACK_HOST=\"../etc\" is not a client name",
            "4 skip its forced command is byteback-receive but it sets no BYTEBACK_HOST",
            "5 skip client a.example already has a key (line 10)",
            "6 skip client web1.example was imported from line 2 already",
            "7 drop a.example",
            "8 skip db1's key type ssh-dss",
            "10 rewrite b.example",
        ];
        assert_eq!(summary.len(), expect.len(), "{summary:#?}");
        for (got, want) in summary.iter().zip(expect) {
            assert!(got.starts_with(want), "{got:?} is not {want:?}");
        }
        let Import::Rewrite { line, .. } = &planned[0] else {
            panic!()
        };
        assert_eq!(
            line,
            r#"restrict,command="/usr/bin/byteback-server receive --store /srv/s --client web1.example --legacy",from="192.0.2.7" ssh-rsa R1 byteback client key"#
        );
        // The new line reads back as a legacy key's, and is not imported again.
        let read = &client_lines(line)[0];
        assert_eq!(
            (read.role, read.receive_only, read.restrict),
            (KeyRole::Legacy, true, true)
        );
        let again = replace_line(&text, 1, Some(line));
        assert!(plan_import(&again, &make).iter().any(
            |i| matches!(i, Import::Already { index: 1, client } if client == "web1.example")
        ));
        assert!(!plan_import(&again, &make).iter().any(
            |i| matches!(i, Import::Rewrite { client, .. } if client.as_str() == "web1.example")
        ));
    }

    #[test]
    fn suggested_names() {
        assert_eq!(
            key("A", "root@host.to.back.up").suggested_name(),
            Some("host.to.back.up")
        );
        assert_eq!(key("A", "laptop").suggested_name(), Some("laptop"));
        assert_eq!(key("A", "").suggested_name(), None);
    }
}
