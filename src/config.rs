//! Reading the TOML configuration files of both sides.
//!
//! Each side has one file whose every key has a default, so an empty file is
//! a valid one. Unknown keys are rejected (a typo must not silently fall back
//! to a default), and every error names the file, the line and the key.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use jiff::SignedDuration;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};

/// A span of time written the friendly way in config files: `10m`, `6h`, `1 day`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub SignedDuration);

impl Duration {
    /// A duration of whole seconds.
    pub const fn from_secs(secs: i64) -> Self {
        Duration(SignedDuration::from_secs(secs))
    }

    /// As a std duration (negative values become zero).
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::try_from(self.0).unwrap_or_default()
    }

    /// Whole seconds, at least 0.
    pub fn as_secs(self) -> u64 {
        self.0.as_secs().max(0) as u64
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?} is not a duration; write e.g. \"90s\", \"10m\", \"6h\", \"7 days\"");
        // Days count as 24 hours: these are spans of elapsed time, not dates.
        let span: jiff::Span = s.parse().map_err(|_| bad())?;
        let d = span
            .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
            .map_err(|_| bad())?;
        if d.is_negative() {
            return Err(format!("{s:?} is negative"));
        }
        Ok(Duration(d))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Whole days read better as days than as hundreds of hours.
        let secs = self.0.as_secs();
        if secs >= 86400 && secs % 86400 == 0 && self.0.subsec_nanos() == 0 {
            let days = secs / 86400;
            write!(f, "{days} day{}", if days == 1 { "" } else { "s" })
        } else {
            write!(f, "{:#}", self.0)
        }
    }
}

/// Written the way it is read: `"10m"`, `"7 days"`.
impl serde::Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// rsync's `--bwlimit`: KiB per second as a number, or a number with a unit
/// (`"2M"`, `"512K"`, `"1.5m"`; rsync's units are powers of 1024); `0` is
/// no limit. Kept as written and checked, since rsync does the arithmetic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bwlimit(String);

impl Bwlimit {
    /// Checks `text`'s shape: digits, an optional fraction, an optional unit.
    pub fn new(text: &str) -> std::result::Result<Bwlimit, String> {
        let number = text.trim_end_matches(['K', 'M', 'G', 'k', 'm', 'g']);
        let unit_ok = text.len() - number.len() <= 1;
        let (whole, fraction) = number.split_once('.').unwrap_or((number, "0"));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if unit_ok && digits(whole) && digits(fraction) {
            Ok(Bwlimit(text.to_owned()))
        } else {
            Err(format!(
                "{text:?} is not a bandwidth limit; write KiB per second (e.g. 500) or a size per second like \"2M\" or \"512K\""
            ))
        }
    }

    /// As rsync's option takes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Bwlimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Bwlimit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bwlimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// A number of KiB, or a string with a unit.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u64),
            Text(String),
        }
        let text = match Written::deserialize(d)? {
            Written::Number(n) => n.to_string(),
            Written::Text(s) => s,
        };
        Bwlimit::new(&text).map_err(serde::de::Error::custom)
    }
}

/// Reads and parses a config file. `Ok(None)` if it does not exist.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Config(format!(
                "cannot read config {}: {e}",
                path.display()
            )));
        }
    };
    parse(path, &text).map(Some)
}

/// Parses config `text` read from `path` (named in errors).
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| {
        let mut location = String::new();
        if let Some(span) = e.span() {
            let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
            location = format!(" line {line_no}");
            let line = text.lines().nth(line_no - 1).unwrap_or("");
            if let Some((key, _)) = line.split_once('=') {
                location.push_str(&format!(", key {}", one_line(key.trim())));
            }
        }
        let message = one_line(&e.message().replace('\n', " "));
        Error::Config(format!(
            "invalid config {}{location}: {message}; fix or remove it (see byteback.toml(5) or byteback-server.toml(5))",
            path.display()
        ))
    })
}

/// `text` with control characters (a carriage return, an escape) written
/// as escapes, so that an error quoting a file stays one line on a terminal.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        attempts: u32,
        pause: Duration,
    }

    impl Default for Sample {
        fn default() -> Self {
            Sample {
                attempts: 5,
                pause: Duration::from_secs(600),
            }
        }
    }

    #[test]
    fn durations() {
        assert_eq!("10m".parse::<Duration>().unwrap(), Duration::from_secs(600));
        assert_eq!(
            "6h".parse::<Duration>().unwrap(),
            Duration::from_secs(6 * 3600)
        );
        assert_eq!(
            "1s".parse::<Duration>().unwrap().to_std(),
            std::time::Duration::from_secs(1)
        );
        assert!("ten minutes".parse::<Duration>().is_err());
        assert!("-5m".parse::<Duration>().is_err());
        for text in ["6h", "90s", "7 days", "1 day", "36h"] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
        }
        assert_eq!(Duration::from_secs(7 * 86400).to_string(), "7 days");
    }

    #[test]
    fn defaults_fill_in() {
        let p = Path::new("/x.toml");
        assert_eq!(parse::<Sample>(p, "").unwrap(), Sample::default());
        assert_eq!(
            parse::<Sample>(p, "pause = \"1s\"\n").unwrap().pause,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let p = Path::new("/etc/byteback/config.toml");
        let e = parse::<Sample>(p, "# c\nattempts = 3\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/etc/byteback/config.toml line 3, key bogus"),
            "{e}"
        );
        assert!(e.contains("unknown field"), "{e}");
        let e = parse::<Sample>(p, "attempts = \"three\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1, key attempts"), "{e}");
        let e = parse::<Sample>(p, "\npause = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2, key pause") && e.contains("not a duration"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        // A carriage return in a key (found by the property test) is shown
        // escaped: the error stays one line on a terminal.
        let e = parse::<Sample>(p, "at\rtempts = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1, key at\\rtempts"), "{e}");
    }
}

/// The generator of the property tests of both config loaders (the
/// client's `config.toml`, beside `ClientConfig`; the server's
/// `server.toml`, beside `Store::open`): any text never panics, and every
/// error is one line naming the file.
#[cfg(test)]
pub(crate) mod props {
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::select;

    use super::*;

    /// Lines a config might hold: every key of both files with good, bad
    /// and odd values, TOML syntax in pieces, and any text.
    pub(crate) fn config_text() -> impl Strategy<Value = String> {
        let key = select(
            &[
                "destination",
                "name",
                "sources",
                "excludes",
                "retry_attempts",
                "retry_pause",
                "io_timeout",
                "connect_timeout",
                "backend",
                "min_snapshot_interval",
                "lock_wait",
                "log_socket",
                "max_concurrent_backups",
                "min_free_percent",
                "target_free_percent",
                "min_age",
                "max_growth_percent",
                "max_unsnapshotted_percent",
                "max_unsnapshotted_store_percent",
                "stale_after",
                "bogus",
                "\u{e9}t\u{e9}",
            ][..],
        );
        let value = select(
            &[
                "\"10m\"",
                "\"7 days\"",
                "\"-5m\"",
                "\"999999999999 years\"",
                "\"P1Y\"",
                "\"\"",
                "\"btrfs\"",
                "\"plain\"",
                "\"zfs\"",
                "5",
                "-1",
                "1e400",
                "nan",
                "inf",
                "-inf",
                "101.0",
                "18446744073709551616",
                "true",
                "[\"/\"]",
                "[1, \"a\"]",
                "{ a = 1 }",
                "\"bb@host:22\"",
                "\"/srv/x\"",
                "\"a b\"",
                "\"user@[::1]:99999\"",
                "'''\nx'''",
                "\"\u{1f600}\u{e9}\"",
                "\"\\u0000\"",
                "\"\\uD800\"",
                "0x7fffffff",
                "1979-05-27",
            ][..],
        );
        let line = prop_oneof![
            4 => (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
            1 => select(&["[table]", "[[a]]", "# comment", "=", "\"", "key =", "a.b.c = 1", "\u{feff}"][..])
                .prop_map(str::to_owned),
            1 => ".{0,30}",
            1 => vec(any::<char>(), 0..30).prop_map(String::from_iter),
        ];
        vec(line, 0..8).prop_map(|lines| lines.join("\n"))
    }

    /// That [`parse`] of `text` as a `T` fails, if at all, with one line
    /// naming `path`.
    pub(crate) fn check<T: DeserializeOwned>(
        path: &Path,
        text: &str,
    ) -> std::result::Result<(), TestCaseError> {
        if let Err(e) = parse::<T>(path, text) {
            let e = e.to_string();
            prop_assert!(!e.contains(char::is_control), "{e}");
            prop_assert!(e.contains(&path.display().to_string()), "{e}");
        }
        Ok(())
    }
}
