//! The server user's `~/.ssh/authorized_keys`: one confined line per client.
//!
//! Each client's key may only run `byteback-server receive` for that client,
//! with `restrict` switching off forwarding, ptys and user rc files. The
//! client's name is fixed here, by the administrator, so nothing the client
//! sends can make it act as another client.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::exec::Cmd;

use crate::error::{Error, Result};
use crate::names::ClientName;
use crate::sys::fs::{ensure_dir, write_atomic};

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
            .args(["-l", "-f", "-"])
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

    /// The client name the comment suggests: `root@host.example` → `host.example`.
    pub fn suggested_name(&self) -> Option<&str> {
        let comment = self.comment.split_whitespace().next()?;
        Some(comment.rsplit_once('@').map_or(comment, |(_, host)| host))
    }
}

/// The authorized_keys line that confines `key` to `client`.
pub fn authorized_line(
    server_exe: &Path,
    store: &Path,
    client: &ClientName,
    from: Option<&str>,
    key: &PublicKey,
) -> Result<String> {
    let command = format!(
        "{} receive --store {} --client {}",
        crate::quote::forced_command_word(&server_exe.to_string_lossy())?,
        crate::quote::forced_command_word(&store.to_string_lossy())?,
        client
    );
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

/// What an existing authorized_keys line says, as far as byteback cares.
#[derive(Debug, PartialEq, Eq)]
struct Entry<'a> {
    blob: Option<&'a str>,
    client: Option<&'a str>,
}

/// Splits a line into its options (if any) and the rest, honouring quotes.
fn read_entry(line: &str) -> Entry<'_> {
    let line = line.trim();
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
    let blob = rest.split_whitespace().nth(1);
    let client = options
        .split_once("--client ")
        .and_then(|(_, after)| after.split(['"', ' ']).next());
    Entry { blob, client }
}

/// What admitting a key will do, decided before anything is changed.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Append the line to this existing text.
    Append(String),
    /// The same key is already there for the same client.
    AlreadyThere,
}

/// Decides how to admit `key` for `client` into the authorized_keys file at
/// `path`, refusing a key already used for another client or a client
/// already served by another key.
pub fn plan(path: &Path, key: &PublicKey, client: &ClientName) -> Result<Plan> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io("cannot read", path, e)),
    };
    let entries = existing
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(read_entry);
    for entry in entries {
        let same_key = entry.blob == Some(key.blob.as_str());
        let same_client = entry.client == Some(client.as_str());
        match (same_key, same_client) {
            (true, true) => return Ok(Plan::AlreadyThere),
            (true, false) => {
                return Err(Error::Refused(match entry.client {
                    Some(other) => format!(
                        "this key is already authorised for client {other}; each machine needs its own key (run `byteback setup` on it)"
                    ),
                    None => format!(
                        "this key is already in {} for something other than byteback; each client needs a key of its own",
                        path.display()
                    ),
                }));
            }
            (false, true) => {
                return Err(Error::Refused(format!(
                    "client name {client} is already taken by another key; choose another with --name, or remove the old line from {}",
                    path.display()
                )));
            }
            (false, false) => {}
        }
    }
    Ok(Plan::Append(existing))
}

/// Writes `existing` plus `line` to `path` atomically, creating `~/.ssh`
/// (mode 0700) if needed; the file gets mode 0600.
pub fn append(path: &Path, existing: &str, line: &str) -> Result<()> {
    let ssh_dir: PathBuf = path.parent().map(Path::to_owned).unwrap_or_default();
    ensure_dir(&ssh_dir, 0o700)?;
    let mut text = existing.to_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    write_atomic(path, text.as_bytes(), 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

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
                &key("AAAA", "")
            )
            .is_err()
        );
        assert!(
            authorized_line(
                Path::new("/x"),
                Path::new("/s"),
                &c,
                Some("a\" b"),
                &key("AAAA", "")
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
                client: Some("h1")
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
