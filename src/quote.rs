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
//! exact and percent-based: [`crate::protocol::wire`]. And text that may
//! carry client-chosen names is shown on one line by [`one_line`].

use crate::error::{Error, Result};

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

/// Quotes one word of a forced command in authorized_keys. Words that
/// cannot be written there safely (quotes, backslashes, newlines) are
/// refused rather than escaped.
pub fn forced_command_word(word: &str) -> Result<String> {
    if word.contains(['"', '\\', '\n', '\'']) {
        return Err(Error::Usage(format!(
            "{word:?} cannot be used in authorized_keys: it contains a quote, backslash or newline"
        )));
    }
    Ok(if plain(word) {
        word.to_owned()
    } else {
        format!("'{word}'")
    })
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
}
