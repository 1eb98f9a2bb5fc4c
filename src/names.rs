//! Validated names: clients and snapshots.
//!
//! Both end up as directory names in the store, so they are checked once,
//! here, and carried around as types that cannot hold anything else.
//! Snapshot names encode their UTC time; the original byteback's format
//! (`YYYY-MM-DDTHH:MM+ZZZZ`) is recognised too, so an old store stays usable.
//! [`next_free_name`] decides what a new snapshot is called when its second
//! is already taken.

use std::fmt;

use jiff::Timestamp;
use jiff::fmt::strtime;

use crate::error::{Error, Result};

/// A client's name: DNS-like, safe as a single path component and in argv.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientName(String);

impl ClientName {
    /// Checks `name`: letters, digits, `.`, `-`, `_`; no `..`; not starting
    /// with `.` or `-`; at most 253 bytes.
    pub fn new(name: &str) -> Result<Self> {
        let bad = |why: &str| {
            Err(Error::Usage(format!(
                "invalid client name {name:?}: {why}; use a DNS-like name such as host.example.net"
            )))
        };
        if name.is_empty() {
            return bad("it is empty");
        }
        if name.len() > 253 {
            return bad("it is longer than 253 characters");
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return bad(&format!(
                "{c:?} is not allowed (only letters, digits, '.', '-', '_')"
            ));
        }
        if name.starts_with(['.', '-']) {
            return bad("it must not start with '.' or '-'");
        }
        if name.contains("..") {
            return bad("it must not contain '..'");
        }
        Ok(ClientName(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks a name for a primary server enrolled with `new-client
    /// --replica`: a client name that also keeps [`ClientName::replicated`]
    /// unambiguous (no `__`, not ending in `_`).
    pub fn primary(name: &str) -> Result<Self> {
        let name = ClientName::new(name)?;
        if name.0.contains(REPLICA_SEPARATOR) || name.0.ends_with('_') {
            return Err(Error::Usage(format!(
                "invalid primary name {:?}: it must not contain '{REPLICA_SEPARATOR}' or end with '_' (replicated clients are named PRIMARY{REPLICA_SEPARATOR}CLIENT)",
                name.0
            )));
        }
        Ok(name)
    }

    /// The name under which a replica keeps client `client` of primary
    /// `primary`: `PRIMARY__CLIENT`. Since a primary's name has no `__`
    /// and does not end in `_`, the first `__` of the result is always the
    /// end of the primary's name: two primaries never share a mapped name,
    /// and a primary reaches only names that start with its own and `__`.
    pub fn replicated(primary: &ClientName, client: &ClientName) -> Result<Self> {
        let primary = ClientName::primary(primary.as_str())?;
        ClientName::new(&format!("{primary}{REPLICA_SEPARATOR}{client}"))
    }

    /// For a mapped name, the primary's name and the client's (see
    /// [`ClientName::replicated`]); `None` for an ordinary client's name.
    pub fn split_replicated(&self) -> Option<(&str, &str)> {
        self.0.split_once(REPLICA_SEPARATOR)
    }
}

/// Separates the primary's name from its client's in a replica's store.
pub const REPLICA_SEPARATOR: &str = "__";

impl fmt::Display for ClientName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The two spellings of a snapshot's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameFormat {
    /// `YYYY-MM-DDTHH:MM:SSZ`, always UTC: what byteback writes.
    Utc,
    /// `YYYY-MM-DDTHH:MM+ZZZZ`: what the original Ruby byteback wrote.
    Legacy,
}

const UTC_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";
const LEGACY_FORMAT: &str = "%Y-%m-%dT%H:%M%z";

/// A snapshot's directory name and the time it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotName {
    name: String,
    time: Timestamp,
    format: NameFormat,
}

impl SnapshotName {
    /// The name byteback gives a snapshot taken at `time` (seconds precision).
    pub fn for_time(time: Timestamp) -> Self {
        let time = Timestamp::from_second(time.as_second()).unwrap_or(time);
        SnapshotName {
            name: time.strftime(UTC_FORMAT).to_string(),
            time,
            format: NameFormat::Utc,
        }
    }

    /// Recognises a snapshot directory name in either format; `None` for
    /// anything else (such as `current`, or a stranger's directory).
    pub fn parse(name: &str) -> Option<Self> {
        // Shape first: strtime alone is lenient about widths and spaces, and a
        // name must round-trip exactly to be ours.
        let shape_ok = |pattern: &str| {
            name.len() == pattern.len()
                && name.bytes().zip(pattern.bytes()).all(|(c, p)| match p {
                    b'9' => c.is_ascii_digit(),
                    b'S' => c == b'+' || c == b'-',
                    _ => c == p,
                })
        };
        let format = if shape_ok("9999-99-99T99:99:99Z") {
            NameFormat::Utc
        } else if shape_ok("9999-99-99T99:99S9999") {
            NameFormat::Legacy
        } else {
            return None;
        };
        // The UTC form is parsed as an offset of +0000 so both go through one path.
        let text = match format {
            NameFormat::Utc => name.replace('Z', "+0000"),
            NameFormat::Legacy => name.to_owned(),
        };
        let pattern = match format {
            NameFormat::Utc => "%Y-%m-%dT%H:%M:%S%z",
            NameFormat::Legacy => LEGACY_FORMAT,
        };
        let time = strtime::parse(pattern, text).ok()?.to_timestamp().ok()?;
        Some(SnapshotName {
            name: name.to_owned(),
            time,
            format,
        })
    }

    /// The directory name.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// When the snapshot was taken.
    pub fn time(&self) -> Timestamp {
        self.time
    }

    /// Which spelling the name uses.
    pub fn format(&self) -> NameFormat {
        self.format
    }
}

/// How far past the time asked for a snapshot's name may move when that
/// second's name is taken: a few seconds, waited out if they are still to
/// come. Two backups of one client are never closer than the time one takes,
/// so only a clock stepping back exhausts it.
pub const MAX_NAME_SHIFT: jiff::SignedDuration = jiff::SignedDuration::from_secs(5);

/// What to call a snapshot asked for at `at`, given what is `now` and the
/// names already in the client's directory (`taken`: every entry's name,
/// snapshots or not; a `.partial` marker counts as its snapshot's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextName {
    /// This name is free and not in the future: take it.
    Take(SnapshotName),
    /// The first free name is still to come: wait until this time, then
    /// look again.
    WaitUntil(Timestamp),
    /// No name is free within [`MAX_NAME_SHIFT`] of `at`; the name it first
    /// tried.
    Exhausted(SnapshotName),
}

/// The name for a snapshot asked for at `at` (a backup's end, or a time
/// given by hand): the first second from `at` on whose time no entry in
/// `taken` stands for (in either format, so an old store's `HH:MM+ZZZZ` name
/// blocks its UTC twin) — the same name as [`SnapshotName::for_time`] when
/// that is free. A name moved past `now` is waited for, never taken early,
/// so names stay in the order of the clock. Pure: the store and the
/// hardened helper both decide with it.
pub fn next_free_name<'a>(
    taken: impl IntoIterator<Item = &'a str>,
    at: Timestamp,
    now: Timestamp,
) -> NextName {
    let times: std::collections::BTreeSet<Timestamp> = taken
        .into_iter()
        .filter_map(|n| SnapshotName::parse(n.strip_suffix(".partial").unwrap_or(n)))
        .map(|n| n.time())
        .collect();
    let first = SnapshotName::for_time(at);
    let mut candidate = first.clone();
    while times.contains(&candidate.time()) {
        let next = candidate
            .time()
            .checked_add(jiff::SignedDuration::from_secs(1))
            .ok()
            .map(SnapshotName::for_time);
        match next {
            Some(n) if n.time().duration_since(first.time()) <= MAX_NAME_SHIFT => candidate = n,
            _ => return NextName::Exhausted(first),
        }
    }
    // A time asked for by hand may be ahead of the clock; only a name moved
    // past a taken one is waited for (at most MAX_NAME_SHIFT).
    if candidate.time() > now && first.time() <= now {
        NextName::WaitUntil(candidate.time())
    } else {
        NextName::Take(candidate)
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names() {
        for good in ["host", "host.example.net", "a_b-c.d", "9lives", "x"] {
            assert_eq!(ClientName::new(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            ".hidden",
            "-flag",
            "a/b",
            "..",
            "a..b",
            "a b",
            "a\nb",
            "ä",
            "a:b",
            "current/../x",
        ] {
            let err = ClientName::new(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid client name"), "{bad:?}: {err}");
        }
        assert!(ClientName::new(&"a".repeat(254)).is_err());
    }

    #[test]
    fn replicated_names_are_unambiguous() {
        let n = |s: &str| ClientName::new(s).unwrap();
        let mapped = ClientName::replicated(&n("primary.example"), &n("web1.example")).unwrap();
        assert_eq!(mapped.as_str(), "primary.example__web1.example");
        assert_eq!(
            mapped.split_replicated(),
            Some(("primary.example", "web1.example"))
        );
        // A client name may hold '_' runs; the primary's part stays its own.
        let odd = ClientName::replicated(&n("p"), &n("_a__b_")).unwrap();
        assert_eq!(odd.split_replicated(), Some(("p", "_a__b_")));
        for bad in ["p__q", "p_", "a__", "x..y", ""] {
            assert!(ClientName::primary(bad).is_err(), "{bad}");
        }
        assert!(ClientName::replicated(&n("p_"), &n("a")).is_err());
        assert!(ClientName::replicated(&n("p"), &n(&"a".repeat(252))).is_err());
        assert_eq!(n("plain.example").split_replicated(), None);
    }

    #[test]
    fn utc_names_round_trip() {
        let t: Timestamp = "2026-11-26T05:07:09Z".parse().unwrap();
        let n = SnapshotName::for_time(t);
        assert_eq!(n.as_str(), "2026-11-26T05:07:09Z");
        assert_eq!(SnapshotName::parse(n.as_str()), Some(n.clone()));
        assert_eq!(n.format(), NameFormat::Utc);
    }

    #[test]
    fn sub_second_times_are_truncated() {
        let t: Timestamp = "2026-11-26T05:07:09.999Z".parse().unwrap();
        assert_eq!(SnapshotName::for_time(t).as_str(), "2026-11-26T05:07:09Z");
    }

    #[test]
    fn legacy_names_parse_with_their_offset() {
        let n = SnapshotName::parse("2014-03-02T23:10+0100").unwrap();
        assert_eq!(n.format(), NameFormat::Legacy);
        assert_eq!(
            n.time(),
            "2014-03-02T22:10:00Z".parse::<Timestamp>().unwrap()
        );
        let n = SnapshotName::parse("2014-03-02T23:10-0130").unwrap();
        assert_eq!(
            n.time(),
            "2014-03-03T00:40:00Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn strangers_are_not_snapshots() {
        for s in [
            "current",
            "2026-11-26",
            "2026-11-26T05:07:09",
            "2026-11-26T05:07:09+00:00",
            "2026-13-26T05:07:09Z",
            "2026-11-26T25:07:09Z",
            " 026-11-26T05:07:09Z",
            "2026-11-26T05:07+000",
            "2026-11-26T05:07:09Z.partial",
        ] {
            assert_eq!(SnapshotName::parse(s), None, "{s}");
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn take(s: &str) -> NextName {
        NextName::Take(SnapshotName::parse(s).unwrap())
    }

    #[test]
    fn a_free_second_keeps_its_name() {
        let at = ts("2026-11-26T05:07:09.400Z");
        assert_eq!(next_free_name([], at, at), take("2026-11-26T05:07:09Z"));
        let taken = [
            "current",
            ".records",
            "2026-11-26T05:07:08Z",
            "2026-11-26T05:07:10Z.partial",
        ];
        assert_eq!(next_free_name(taken, at, at), take("2026-11-26T05:07:09Z"));
        // Later names (a clock stepped back) do not move it either.
        let taken = ["2026-11-26T06:00:00Z"];
        assert_eq!(next_free_name(taken, at, at), take("2026-11-26T05:07:09Z"));
    }

    #[test]
    fn a_taken_second_waits_for_the_next() {
        let at = ts("2026-11-26T05:07:09.400Z");
        let taken = ["2026-11-26T05:07:09Z"];
        assert_eq!(
            next_free_name(taken, at, at),
            NextName::WaitUntil(ts("2026-11-26T05:07:10Z"))
        );
        // Once that second has come, it is taken.
        let later = ts("2026-11-26T05:07:10.001Z");
        assert_eq!(
            next_free_name(taken, at, later),
            take("2026-11-26T05:07:10Z")
        );
        assert_eq!(
            next_free_name(taken, later, later),
            take("2026-11-26T05:07:10Z")
        );
        // A run of taken seconds, and a partial marker without its snapshot.
        let taken = [
            "2026-11-26T05:07:09Z",
            "2026-11-26T05:07:10Z",
            "2026-11-26T05:07:11Z.partial",
        ];
        assert_eq!(
            next_free_name(taken, at, at),
            NextName::WaitUntil(ts("2026-11-26T05:07:12Z"))
        );
        let now = ts("2026-11-26T05:07:12Z");
        assert_eq!(next_free_name(taken, at, now), take("2026-11-26T05:07:12Z"));
    }

    #[test]
    fn a_past_time_moves_on_without_waiting() {
        let at = ts("2026-11-26T05:07:09Z");
        let now = ts("2026-11-26T09:00:00Z");
        let taken = ["2026-11-26T05:07:09Z"];
        assert_eq!(next_free_name(taken, at, now), take("2026-11-26T05:07:10Z"));
        // A time by hand ahead of the clock is taken as asked.
        let ahead = ts("2026-11-27T00:00:00Z");
        assert_eq!(
            next_free_name(["2026-11-27T00:00:00Z"], ahead, now),
            take("2026-11-27T00:00:01Z")
        );
    }

    #[test]
    fn a_legacy_name_blocks_its_utc_twin() {
        // 23:10+0100 is 22:10:00 UTC.
        let at = ts("2014-03-02T22:10:00.5Z");
        let taken = ["2014-03-02T23:10+0100"];
        assert_eq!(
            next_free_name(taken, at, at),
            NextName::WaitUntil(ts("2014-03-02T22:10:01Z"))
        );
        // Other legacy names are no obstacle.
        let taken = ["2014-03-02T23:09+0100", "2014-03-02T23:11+0100"];
        assert_eq!(next_free_name(taken, at, at), take("2014-03-02T22:10:00Z"));
    }

    #[test]
    fn names_run_out_after_a_few_seconds() {
        let at = ts("2026-11-26T05:07:09Z");
        let names: Vec<String> = (0..=MAX_NAME_SHIFT.as_secs())
            .map(|s| {
                let t = at.checked_add(jiff::SignedDuration::from_secs(s)).unwrap();
                SnapshotName::for_time(t).to_string()
            })
            .collect();
        let taken = names.iter().map(String::as_str);
        assert_eq!(
            next_free_name(taken.clone(), at, at),
            NextName::Exhausted(SnapshotName::for_time(at))
        );
        // One fewer, and the last second of the shift is it.
        let last = names.last().unwrap().as_str();
        assert_eq!(
            next_free_name(taken.take(names.len() - 1), at, at),
            NextName::WaitUntil(SnapshotName::parse(last).unwrap().time())
        );
        // At the end of time there is no next second.
        let end = Timestamp::MAX;
        let taken = [SnapshotName::for_time(end).to_string()];
        assert!(matches!(
            next_free_name(taken.iter().map(String::as_str), end, end),
            NextName::Exhausted(_)
        ));
    }
}
