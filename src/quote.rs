//! Quoting, in the three places a word crosses into another parser:
//!
//! - [`shell_word`]: a POSIX shell, for argv rendered in logs, errors and
//!   `--verbose` so it can be pasted back into a shell;
//! - [`rsh_word`]: rsync's `--rsh` string, which rsync splits on spaces
//!   honouring single and double quotes (but no backslashes);
//! - [`forced_command_word`]: the shell sshd runs a key's forced command
//!   with, inside the `command="…"` option of authorized_keys, where a
//!   double quote would end the option and nothing can escape it.
//!
//! Client data inside byteback's own requests has a fourth encoding, byte
//! exact and percent-based: [`encode_arg`] and [`decode_arg`], here so
//! that rsync's argv (`exec/rsync.rs`) and the forced-command language
//! (`protocol/wire.rs`, which builds its result lines on it) share one
//! definition. And text that may carry client-chosen names is shown on one
//! line by [`one_line`].

use std::fmt;

/// Bytes that need no quoting in any of these parsers.
fn plain(word: &str) -> bool {
    !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
}

/// Quotes one word for a POSIX shell (only when it needs it).
pub fn shell_word(word: &str) -> String {
    if plain(word) {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Quotes one word of rsync's `--rsh` string: rsync knows no backslash, so
/// a single quote is closed, given in double quotes, and reopened.
pub fn rsh_word(word: &str) -> String {
    if plain(word) {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', "'\"'\"'"))
}

/// A word [`forced_command_word`] refused (it holds a quote, backslash or
/// newline); it becomes a usage error (`From` in `error.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unquotable(String);

impl fmt::Display for Unquotable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} cannot be used in authorized_keys: it contains a quote, backslash or newline",
            self.0
        )
    }
}

impl std::error::Error for Unquotable {}

/// Quotes one word of a forced command in authorized_keys. Words that
/// cannot be written there safely (quotes, backslashes, newlines) are
/// refused rather than escaped.
pub fn forced_command_word(word: &str) -> Result<String, Unquotable> {
    if word.contains(['"', '\\', '\n', '\'']) {
        return Err(Unquotable(word.to_owned()));
    }
    Ok(if plain(word) {
        word.to_owned()
    } else {
        format!("'{word}'")
    })
}

/// Why an encoded word, or a line made of them (`protocol::wire`), was
/// refused: it came from the other side, so anything malformed is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

impl DecodeError {
    /// An error with this message, for formats built on this one.
    pub fn new(msg: impl Into<String>) -> DecodeError {
        DecodeError(msg.into())
    }
}

/// Bytes [`encode_arg`] leaves as they are.
fn arg_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-')
}

/// Encodes bytes as a word safe in a command line: `[A-Za-z0-9._/-]` stay,
/// all else becomes `%XX`. A leading `-` is escaped too, so the word can't
/// pass for an option (and `-` alone is free to mean "none"). Only the empty
/// input gives the empty word, which a command line can't carry.
pub fn encode_arg(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        if arg_plain(b) && !(i == 0 && b == b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes [`encode_arg`]'s output (hex digits in either case).
pub fn decode_arg(s: &str) -> Result<Vec<u8>, DecodeError> {
    let hex = |b: Option<&u8>| b.and_then(|&b| char::from(b).to_digit(16));
    let (mut out, mut bytes) = (Vec::with_capacity(s.len()), s.as_bytes().iter());
    while let Some(&b) = bytes.next() {
        match b {
            b'%' => match (hex(bytes.next()), hex(bytes.next())) {
                (Some(hi), Some(lo)) => out.extend(u8::try_from(hi * 16 + lo).ok()),
                _ => return Err(DecodeError::new("'%' must be followed by two hex digits")),
            },
            _ if arg_plain(b) => out.push(b),
            _ => {
                let b = char::from(b);
                return Err(DecodeError(format!("unexpected {b:?} in an encoded word")));
            }
        }
    }
    Ok(out)
}

/// `text` with its control characters escaped (`\n`, `\u{1b}`, ...), so
/// a client-chosen name inside it cannot break a line of output or a log,
/// forge another line, or reach a terminal's escape sequences. What the
/// listing does to paths ([`crate::catalog::display_path`]).
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_line_escapes_control_characters_only() {
        assert_eq!(super::one_line("/home/é b\\c"), "/home/é b\\c");
        assert_eq!(
            super::one_line("/a\nfake line\r\t\u{1b}[31m\u{7f}\u{85}"),
            "/a\\nfake line\\r\\t\\u{1b}[31m\\u{7f}\\u{85}"
        );
    }

    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("/srv/store"), "/srv/store");
        assert_eq!(shell_word("/srv/my store"), "'/srv/my store'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("$(id)"), "'$(id)'");
    }

    #[test]
    fn rsh_words() {
        assert_eq!(rsh_word("-p"), "-p");
        assert_eq!(rsh_word("it's"), r#"'it'"'"'s'"#);
        assert_eq!(rsh_word("a b"), "'a b'");
    }

    #[test]
    fn forced_command_words() {
        assert_eq!(
            forced_command_word("/usr/bin/byteback-server").unwrap(),
            "/usr/bin/byteback-server"
        );
        assert_eq!(
            forced_command_word("/srv/my store").unwrap(),
            "'/srv/my store'"
        );
        for bad in ["a\"b", "a\\b", "a\nb", "it's"] {
            assert!(forced_command_word(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn arg_encoding() {
        assert_eq!(encode_arg(b"/home/a-b_c.d/E9"), "/home/a-b_c.d/E9");
        assert_eq!(encode_arg(b"/a b\n%'\"\xff"), "/a%20b%0A%25%27%22%FF");
        assert_eq!(encode_arg(b"-rf"), "%2Drf");
        assert_eq!(encode_arg(b"*?{}"), "%2A%3F%7B%7D");
        assert_eq!(decode_arg("%2a%2A").unwrap(), b"**");
        assert_eq!(decode_arg("-x").unwrap(), b"-x");
        for bad in ["%", "%4", "%zz", "a b", "é", "a\n", "%4g"] {
            assert!(decode_arg(bad).is_err(), "{bad}");
        }
        let all: Vec<u8> = (0..=255).collect();
        let enc = encode_arg(&all);
        assert!(
            enc.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._/-%".contains(&b))
        );
        assert_eq!(decode_arg(&enc).unwrap(), all);
    }
}
