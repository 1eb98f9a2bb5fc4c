//! Backup windows: the times of day at which a server takes transfers
//! (`[limits] windows` in server.toml), and when the next one opens.
//!
//! A window is a range of wall-clock minutes in the server's local time,
//! `"22:00-06:00"` (it may cross midnight; the end is not included, and
//! `24:00` ends at midnight). An instant is inside a window when the
//! server's clock, read in its time zone at that instant, shows a minute in
//! the range. That definition settles daylight saving time by itself: in
//! the hour a spring change skips, no instant shows those minutes, so a
//! window lying wholly inside it does not open that day and one reaching
//! past it opens when the clock jumps; in the hour an autumn change
//! repeats, the minutes show twice and the window is open both times.
//!
//! [`Windows::gate`] answers "open now, or closed until when" by that
//! definition, minute by minute from now (some 1 440 steps a day, at most
//! eight days: microseconds), rather than by date arithmetic that would
//! have to reason about gaps and folds again. Pure: the caller passes the
//! time and the time zone, so the tests replay any of them.

use std::fmt;
use std::str::FromStr;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Minutes in a day.
const DAY: u16 = 24 * 60;

/// One window: from `start` (a minute of the day, 0..1440) up to, not
/// including, `end` (1..=1440); `end < start` crosses midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    start: u16,
    end: u16,
}

impl Window {
    /// Whether minute `m` of the day (0..1440) is inside.
    fn contains(self, m: u16) -> bool {
        if self.start < self.end {
            self.start <= m && m < self.end
        } else {
            m >= self.start || m < self.end
        }
    }

    /// `HH:MM` of its start.
    pub fn start(self) -> String {
        hh_mm(self.start)
    }
}

fn hh_mm(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// `HH:MM` (or `24:00` where `end` allows it) as a minute of the day.
fn minute_of(text: &str, end: bool) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(h) || !two_digits(m) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) if end => Some(DAY),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

impl FromStr for Window {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{text:?} is not a backup window; write \"HH:MM-HH:MM\" in the server's local time, e.g. \"22:00-06:00\""
            )
        };
        let (start, end) = text.split_once('-').ok_or_else(bad)?;
        let start = minute_of(start.trim(), false).ok_or_else(bad)?;
        let end = minute_of(end.trim(), true).ok_or_else(bad)?;
        if start == end % DAY && end != DAY {
            return Err(format!(
                "{text:?} is empty (it starts where it ends); for the whole day leave `windows` unset"
            ));
        }
        Ok(Window { start, end })
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", hh_mm(self.start), hh_mm(self.end))
    }
}

/// The windows of a server: at least one (no key at all means "always").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Windows(Vec<Window>);

/// Whether a server takes a transfer now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Inside a window.
    Open,
    /// Outside every window; the next opens at this instant, with this
    /// window (the first minute the server's clock shows inside one).
    ClosedUntil(Timestamp, Window),
}

/// How far ahead [`Windows::gate`] looks: every window opens within a day,
/// or a day later when a clock change swallowed it.
const HORIZON_DAYS: i64 = 8;

impl Windows {
    /// The windows written in `texts`; refused if there are none.
    pub fn parse<S: AsRef<str>>(texts: &[S]) -> Result<Windows, String> {
        if texts.is_empty() {
            return Err(
                "windows = [] would refuse every backup; leave `windows` unset to take backups at any time".into(),
            );
        }
        texts
            .iter()
            .map(|t| t.as_ref().parse())
            .collect::<Result<Vec<Window>, String>>()
            .map(Windows)
    }

    /// Whether `at` is inside a window, read in `tz`.
    pub fn is_open(&self, at: Timestamp, tz: &TimeZone) -> bool {
        let minute = minute_at(at, tz);
        self.0.iter().any(|w| w.contains(minute))
    }

    /// Open at `now`, or closed until the first whole minute after it that
    /// is inside a window (in `tz`).
    pub fn gate(&self, now: Timestamp, tz: &TimeZone) -> Gate {
        if self.is_open(now, tz) {
            return Gate::Open;
        }
        let first = now.as_second().div_euclid(60) * 60 + 60;
        let mut at = Timestamp::from_second(first).unwrap_or(now);
        for _ in 0..HORIZON_DAYS * i64::from(DAY) {
            if self.is_open(at, tz) {
                let minute = minute_at(at, tz);
                let window = self.0.iter().copied().find(|w| w.contains(minute));
                return Gate::ClosedUntil(at, window.unwrap_or(self.0[0]));
            }
            at = at
                .saturating_add(SignedDuration::from_mins(1))
                .unwrap_or(at);
        }
        // No clock skips a week: unreachable, but a time is still an answer.
        Gate::ClosedUntil(at, self.0[0])
    }

    /// The windows as written: `22:00-06:00, 12:00-13:00`.
    pub fn describe(&self) -> String {
        let all: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        all.join(", ")
    }
}

impl Serialize for Windows {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(ToString::to_string))
    }
}

impl<'de> Deserialize<'de> for Windows {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let texts = Vec::<String>::deserialize(d)?;
        Windows::parse(&texts).map_err(serde::de::Error::custom)
    }
}

/// The minute of the day the clock shows at `at` in `tz`.
fn minute_at(at: Timestamp, tz: &TimeZone) -> u16 {
    let time = tz.to_datetime(at).time();
    time.hour() as u16 * 60 + time.minute() as u16
}

/// The server's time zone, for its windows: `$TZ`, else `/etc/localtime`
/// (UTC if neither says).
pub fn server_time_zone() -> TimeZone {
    TimeZone::system()
}

/// A time zone's name for a person: its IANA name, else its offset now.
pub fn zone_name(tz: &TimeZone, now: Timestamp) -> String {
    match tz.iana_name() {
        Some(name) => name.to_owned(),
        None => tz.to_offset(now).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central Europe: +01:00, +02:00 from the last Sunday of March 02:00
    /// to the last Sunday of October 03:00 (a POSIX rule, so the test needs
    /// no time zone database).
    fn berlin() -> TimeZone {
        TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap()
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn w(texts: &[&str]) -> Windows {
        Windows::parse(texts).unwrap()
    }

    fn until(gate: Gate) -> Option<String> {
        match gate {
            Gate::Open => None,
            Gate::ClosedUntil(at, _) => Some(at.to_string()),
        }
    }

    #[test]
    fn windows_parse_and_refuse() {
        assert_eq!(w(&["22:00-06:00"]).describe(), "22:00-06:00");
        assert_eq!(
            w(&["00:00-24:00", " 12:00 - 13:30"]).describe(),
            "00:00-24:00, 12:00-13:30"
        );
        for bad in [
            "22:00",
            "22-06",
            "2:00-06:00",
            "24:00-06:00",
            "22:60-06:00",
            "22:00-24:01",
            "22:00-25:00",
            "x",
            "",
            "22:00-22:00",
            "00:00-00:00",
        ] {
            assert!(Windows::parse(&[bad]).is_err(), "{bad:?}");
        }
        assert!(Windows::parse::<&str>(&[]).is_err());
        // In a config file, with its file and key named by the loader.
        #[derive(Deserialize)]
        struct C {
            windows: Windows,
        }
        let c: C = toml::from_str("windows = [\"22:00-06:00\"]").unwrap();
        assert_eq!(c.windows, w(&["22:00-06:00"]));
        assert!(toml::from_str::<C>("windows = []").is_err());
        assert!(toml::from_str::<C>("windows = [\"22:00\"]").is_err());
    }

    #[test]
    fn windows_crossing_midnight() {
        let night = w(&["22:00-06:00"]);
        let utc = TimeZone::UTC;
        for (now, next) in [
            ("2026-12-07T21:59:59Z", Some("2026-12-07T22:00:00Z")),
            ("2026-12-07T22:00:00Z", None),
            ("2026-12-08T03:00:00Z", None),
            ("2026-12-08T05:59:59Z", None),
            ("2026-12-08T06:00:00Z", Some("2026-12-08T22:00:00Z")),
            ("2026-12-08T12:00:30Z", Some("2026-12-08T22:00:00Z")),
        ] {
            assert_eq!(until(night.gate(t(now), &utc)).as_deref(), next, "at {now}");
        }
        // Several windows: the nearest opens first, whichever is listed first.
        let two = w(&["22:00-06:00", "12:00-13:00"]);
        match two.gate(t("2026-12-08T07:00:00Z"), &utc) {
            Gate::ClosedUntil(at, window) => {
                assert_eq!(at, t("2026-12-08T12:00:00Z"));
                assert_eq!(window.start(), "12:00");
            }
            Gate::Open => panic!("open at 07:00"),
        }
        assert_eq!(
            until(two.gate(t("2026-12-08T13:00:00Z"), &utc)).as_deref(),
            Some("2026-12-08T22:00:00Z")
        );
        // Up to midnight.
        let evening = w(&["18:00-24:00"]);
        assert_eq!(evening.gate(t("2026-12-08T23:59:59Z"), &utc), Gate::Open);
        assert_eq!(
            until(evening.gate(t("2026-12-09T00:00:00Z"), &utc)).as_deref(),
            Some("2026-12-09T18:00:00Z")
        );
    }

    #[test]
    fn windows_are_the_servers_local_time() {
        let berlin = berlin();
        let night = w(&["22:00-06:00"]);
        // Winter: 22:00 in Berlin is 21:00 UTC; summer: 20:00 UTC.
        assert_eq!(
            until(night.gate(t("2026-12-07T12:00:00Z"), &berlin)).as_deref(),
            Some("2026-12-07T21:00:00Z")
        );
        assert_eq!(
            until(night.gate(t("2026-07-07T12:00:00Z"), &berlin)).as_deref(),
            Some("2026-07-07T20:00:00Z")
        );
        assert_eq!(night.gate(t("2026-07-07T20:30:00Z"), &berlin), Gate::Open);
    }

    #[test]
    fn windows_across_daylight_saving_changes() {
        let berlin = berlin();
        // 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC). A window
        // wholly in the skipped hour does not open that day...
        let skipped = w(&["02:15-02:45"]);
        assert_eq!(
            until(skipped.gate(t("2026-03-28T23:00:00Z"), &berlin)).as_deref(),
            Some("2026-03-30T00:15:00Z")
        );
        // ...one reaching past it opens when the clock jumps (03:00 CEST).
        let across = w(&["02:30-04:00"]);
        assert_eq!(
            until(across.gate(t("2026-03-28T23:00:00Z"), &berlin)).as_deref(),
            Some("2026-03-29T01:00:00Z")
        );
        // 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:xx shows
        // twice, and the window is open both times.
        let repeated = w(&["02:00-03:00"]);
        assert_eq!(
            until(repeated.gate(t("2026-10-24T12:00:00Z"), &berlin)).as_deref(),
            Some("2026-10-25T00:00:00Z")
        );
        for open in ["2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"] {
            assert_eq!(repeated.gate(t(open), &berlin), Gate::Open, "{open}");
        }
        assert_eq!(
            until(repeated.gate(t("2026-10-25T02:00:00Z"), &berlin)).as_deref(),
            Some("2026-10-26T01:00:00Z")
        );
        // A night window over the spring change is an hour shorter, and
        // still closes at 06:00 local (04:00 UTC, summer time).
        let night = w(&["22:00-06:00"]);
        assert_eq!(night.gate(t("2026-03-29T03:59:00Z"), &berlin), Gate::Open);
        assert_eq!(
            until(night.gate(t("2026-03-29T04:00:00Z"), &berlin)).as_deref(),
            Some("2026-03-29T20:00:00Z")
        );
    }

    /// The gate agrees with its definition, checked by brute force: the
    /// answer is inside a window, and no whole minute between is.
    #[test]
    fn the_gate_is_the_first_open_minute() {
        let berlin = berlin();
        let windows = w(&["23:30-00:15", "02:30-02:45", "13:00-13:01"]);
        let mut now = t("2026-03-27T00:00:07Z");
        while now < t("2026-04-01T00:00:00Z") {
            match windows.gate(now, &berlin) {
                Gate::Open => assert!(windows.is_open(now, &berlin)),
                Gate::ClosedUntil(at, window) => {
                    assert!(windows.is_open(at, &berlin), "{now} -> {at}");
                    assert!(at > now && at.as_second() % 60 == 0);
                    let mut between = Timestamp::from_second(now.as_second() + 1).unwrap();
                    while between < at {
                        assert!(!windows.is_open(between, &berlin), "{now}: {between}");
                        between = between
                            .saturating_add(SignedDuration::from_secs(60))
                            .unwrap();
                    }
                    assert!(window.contains(minute_at(at, &berlin)));
                }
            }
            now = now.saturating_add(SignedDuration::from_secs(3331)).unwrap();
        }
    }
}
