//! The importance order of backup snapshots: which snapshot to delete first
//! when the disk runs low.
//!
//! All times are UTC. The rules:
//!
//! 1. Let `M` be 12:00:00 on the day of `now`. The first targets are `M`,
//!    then `M` minus 1, 2, …, 6 days (seven middays, [`TargetKind::Daily`]).
//! 2. From the last of those, step back to the previous Sunday (a full week
//!    if it already is a Sunday); the midday of that Sunday and of the three
//!    Sundays before it are the next four targets ([`TargetKind::Weekly`]).
//! 3. From the last of those Sundays, step back to the nearest Sunday on the
//!    28-day grid anchored at Sunday 1970-01-04 (possibly that same Sunday, in
//!    which case the target appears twice), add it, then keep stepping back 28
//!    days, adding each, until a target is older than the oldest snapshot in
//!    the store ([`TargetKind::FourWeekly`]). That first target older than
//!    the oldest snapshot is included: it is what keeps the oldest snapshot.
//! 4. For each target in that order, and for each client in turn (clients
//!    ordered by their newest snapshot, newest first, then by name), pick the
//!    client's not-yet-accepted snapshot nearest to the target (on a tie, the
//!    newer one) and accept it only if it is older than the snapshot last
//!    accepted for that client. Accepted snapshots come first, in acceptance
//!    order, so every client keeps a comparable history.
//! 5. All other snapshots follow, newest first. The last of the whole list is
//!    the first to delete.
//!
//! Interpretations:
//! * "Not yet chosen" means "not yet accepted": a rejected pick stays
//!   available and may be picked (and rejected) again for later targets,
//!   where it can shadow an older snapshot that would have been accepted.
//! * Targets are always at 12:00:00 UTC, the Sunday ones included.
//! * Ties are broken without looking at the input order: clients with equal
//!   newest snapshots by name; in rule 5, equal times by client order; and a
//!   client's snapshots with identical times are interchangeable (equal
//!   `(client, time)`), so the resulting sequence of `(client, time)` never
//!   depends on the order of the input.
//! * Targets that fall outside the range of [`Timestamp`] are skipped.
//!
//! Cost: snapshots are grouped per client into sorted vectors (a counting
//! sort, then a sort per client that is linear on sorted input); each pick is
//! a binary search plus a short outward scan past accepted snapshots, and a
//! client is dropped once its oldest snapshot is accepted; the rest is
//! ordered by a radix sort over the bits in which the times differ. Memory
//! is linear in the number of snapshots, with no allocation per snapshot.

use core::fmt;
use std::collections::HashMap;

use jiff::Timestamp;

const DAY: i64 = 86_400;
const MIDDAY: i64 = 43_200;
const NANOS_PER_SECOND: i128 = 1_000_000_000;
/// Days since 1970-01-01 (a Thursday) of Sunday 1970-01-04, the anchor of the
/// 28-day grid.
const GRID_ANCHOR_DAY: i64 = 3;

/// One snapshot as the planner sees it: which client, and when it was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub client: &'a str,
    pub time: Timestamp,
}

/// Which rule a target comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// Midday of today or one of the six days before (rule 1).
    Daily,
    /// Midday of one of the four Sundays before the daily targets (rule 2).
    Weekly,
    /// Midday of a Sunday on the 28-day grid (rule 3).
    FourWeekly,
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetKind::Daily => "daily",
            TargetKind::Weekly => "weekly",
            TargetKind::FourWeekly => "four-weekly",
        })
    }
}

/// Why a snapshot got its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Accepted as the client's snapshot nearest to this target.
    Target { target: Timestamp, kind: TargetKind },
    /// Not accepted for any target; ordered newest first after those that were.
    Remaining,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Target { target, kind } => write!(f, "nearest to the {kind} target {target}"),
            Reason::Remaining => f.write_str("not near any target; newest first"),
        }
    }
}

/// One place in the importance order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranked {
    /// Index into the candidate slice given to [`importance_order`].
    pub index: usize,
    pub reason: Reason,
}

/// The targets of rules 1–3 for a store whose oldest snapshot is `oldest`,
/// in the order they are served.
pub fn targets(now: Timestamp, oldest: Timestamp) -> Vec<(Timestamp, TargetKind)> {
    target_iter(now, oldest).collect()
}

/// Most important first; the last element is the first to delete. The
/// result is a permutation of `0..candidates.len()`.
///
/// # Panics
/// If there are more than `u32::MAX` candidates.
pub fn importance_order(candidates: &[Candidate<'_>], now: Timestamp) -> Vec<Ranked> {
    let n = candidates.len();
    if n == 0 {
        return Vec::new();
    }
    assert!(u32::try_from(n).is_ok(), "too many snapshots to order");

    let store = Store::new(candidates);
    let entries = &store.entries;
    let targets: Vec<(Timestamp, TargetKind)> = target_iter(now, store.oldest()).collect();
    let mut accepted = vec![false; n];

    // Rule 4, one client at a time (for locality): (target number, position).
    let mut picks: Vec<(u32, u32)> = Vec::new();
    for rank in 0..store.clients() {
        let range = store.range(rank);
        let oldest = entries[range.start].key();
        let mut last: Option<i128> = None;
        for (number, &(target, _)) in targets.iter().enumerate() {
            let Some(pick) = nearest(entries, &accepted, range.clone(), nanos(target)) else {
                break; // every snapshot of this client is accepted
            };
            let key = entries[pick].key();
            if last.is_some_and(|last| key >= last) {
                continue; // rejected: not older than the last accepted
            }
            accepted[pick] = true;
            last = Some(key);
            picks.push((number as u32, pick as u32));
            if key == oldest {
                break; // nothing older is left to accept
            }
        }
    }
    // Target by target; the stable sort keeps clients in rank order.
    picks.sort_by_key(|&(number, _)| number);

    let mut out = Vec::with_capacity(n);
    out.extend(picks.iter().map(|&(number, pos)| {
        let (target, kind) = targets[number as usize];
        let index = entries[pos as usize].index as usize;
        Ranked {
            index,
            reason: Reason::Target { target, kind },
        }
    }));
    drop(picks);

    // Rule 5: newest first. The stable sort keeps equal times in position
    // order: by client rank, then (for identical (client, time) pairs, which
    // are interchangeable) by input index.
    // (Collecting from `store.entries` reuses its allocation.)
    let rest: Vec<(u64, u32, u32)> = store
        .entries
        .into_iter()
        .enumerate()
        .filter(|&(pos, _)| !accepted[pos])
        .map(|(_, e)| {
            // Both parts descending: newer sorts first.
            (!(e.secs as u64 ^ (1 << 63)), 999_999_999 - e.nanos, e.index)
        })
        .collect();
    drop(accepted);
    out.extend(radix_sort(rest).into_iter().map(|(_, _, index)| Ranked {
        index: index as usize,
        reason: Reason::Remaining,
    }));
    out
}

/// Stable LSD radix sort of `(seconds, nanoseconds, payload)` by the first
/// two fields, in 11-bit digits over just the bits in which the keys differ
/// (about 25 for a store spanning a year of whole-second times: 3 passes).
fn radix_sort(mut items: Vec<(u64, u32, u32)>) -> Vec<(u64, u32, u32)> {
    const BITS: u32 = 11;
    let key = |&(secs, nanos, _): &(u64, u32, u32)| (u128::from(secs) << 32) | u128::from(nanos);
    let Some(first) = items.first().map(key) else {
        return items;
    };
    let varying = items.iter().fold(0, |acc, item| acc | (key(item) ^ first));
    if varying == 0 {
        return items;
    }
    let (low, high) = (varying.trailing_zeros(), 128 - varying.leading_zeros());
    let mut spare = vec![(0, 0, 0); items.len()];
    let mut next = vec![0usize; 1 << BITS];
    for shift in (low..high).step_by(BITS as usize) {
        let digit = |item: &(u64, u32, u32)| (key(item) >> shift) as usize & ((1 << BITS) - 1);
        next.fill(0);
        for item in &items {
            next[digit(item)] += 1;
        }
        let mut at = 0;
        for slot in &mut next {
            (*slot, at) = (at, at + *slot);
        }
        for item in &items {
            let d = digit(item);
            spare[next[d]] = *item;
            next[d] += 1;
        }
        std::mem::swap(&mut items, &mut spare);
    }
    items
}

/// The targets of rules 1–3, lazily.
fn target_iter(now: Timestamp, oldest: Timestamp) -> impl Iterator<Item = (Timestamp, TargetKind)> {
    let today = day_of(now);
    let daily = (0..7).map(move |back| (today - back, TargetKind::Daily));

    // Rule 2: from the seventh daily target back to the previous Sunday.
    let seventh = today - 6;
    let since_sunday = (seventh - GRID_ANCHOR_DAY).rem_euclid(7);
    let first_sunday = seventh - if since_sunday == 0 { 7 } else { since_sunday };
    let weekly = (0..4).map(move |back| (first_sunday - 7 * back, TargetKind::Weekly));

    // Rule 3: the grid Sunday at or before the fourth Sunday, then every 28
    // days back until (and including) the first target older than `oldest`.
    let fourth_sunday = first_sunday - 21;
    let grid_start = fourth_sunday - (fourth_sunday - GRID_ANCHOR_DAY).rem_euclid(28);
    let oldest = nanos(oldest);
    let grid = std::iter::successors(Some(grid_start), move |&day| {
        (i128::from(day * DAY + MIDDAY) * NANOS_PER_SECOND >= oldest).then_some(day - 28)
    })
    .map(|day| (day, TargetKind::FourWeekly));

    daily
        .chain(weekly)
        .chain(grid)
        .filter_map(|(day, kind)| Some((Timestamp::from_second(day * DAY + MIDDAY).ok()?, kind)))
}

/// Days since 1970-01-01 of the UTC day containing `t`.
fn day_of(t: Timestamp) -> i64 {
    // |nanoseconds / nanoseconds-per-day| is far below i64::MAX for any Timestamp.
    t.as_nanosecond()
        .div_euclid(i128::from(DAY) * NANOS_PER_SECOND) as i64
}

fn nanos(t: Timestamp) -> i128 {
    t.as_nanosecond()
}

/// A snapshot in the grouped store: time (seconds rounded down, plus a
/// non-negative nanosecond part) and its index in the input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    secs: i64,
    nanos: u32,
    index: u32,
}

impl Entry {
    fn new(t: Timestamp, index: usize) -> Entry {
        let (secs, sub) = (t.as_second(), t.subsec_nanosecond());
        let (secs, nanos) = if sub < 0 {
            (secs - 1, sub + 1_000_000_000)
        } else {
            (secs, sub)
        };
        Entry {
            secs,
            nanos: nanos as u32,
            index: index as u32,
        }
    }

    fn key(&self) -> i128 {
        i128::from(self.secs) * NANOS_PER_SECOND + i128::from(self.nanos)
    }
}

/// The snapshots grouped by client, clients in rank order (newest snapshot
/// first, then name), each client's snapshots sorted oldest first.
struct Store {
    entries: Vec<Entry>,
    /// `starts[rank]..starts[rank + 1]` are the entries of the client at `rank`.
    starts: Vec<usize>,
}

impl Store {
    fn new(candidates: &[Candidate<'_>]) -> Store {
        // Client ids in order of first appearance; consecutive candidates of
        // the same client (the usual layout) skip the hash lookup.
        let mut ids: HashMap<&str, u32> = HashMap::new();
        let mut names: Vec<&str> = Vec::new();
        let mut newest: Vec<Timestamp> = Vec::new();
        let mut counts: Vec<usize> = Vec::new();
        let mut client_of: Vec<u32> = Vec::with_capacity(candidates.len());
        let mut previous: Option<(&str, u32)> = None;
        for c in candidates {
            let id = match previous {
                Some((name, id)) if name == c.client => id,
                _ => {
                    let id = *ids.entry(c.client).or_insert_with(|| {
                        names.push(c.client);
                        newest.push(c.time);
                        counts.push(0);
                        (names.len() - 1) as u32
                    });
                    previous = Some((c.client, id));
                    id
                }
            };
            let i = id as usize;
            newest[i] = newest[i].max(c.time);
            counts[i] += 1;
            client_of.push(id);
        }
        drop(ids);

        let mut by_rank: Vec<usize> = (0..names.len()).collect();
        by_rank.sort_unstable_by(|&a, &b| newest[b].cmp(&newest[a]).then(names[a].cmp(names[b])));

        // Counting sort into rank order.
        let mut starts = Vec::with_capacity(by_rank.len() + 1);
        let mut fill = vec![0; by_rank.len()];
        let mut at = 0;
        for &id in &by_rank {
            starts.push(at);
            fill[id] = at;
            at += counts[id];
        }
        starts.push(at);
        let mut entries = vec![Entry::default(); candidates.len()];
        for (index, (c, &id)) in candidates.iter().zip(&client_of).enumerate() {
            entries[fill[id as usize]] = Entry::new(c.time, index);
            fill[id as usize] += 1;
        }
        drop(client_of);
        for pair in starts.windows(2) {
            entries[pair[0]..pair[1]].sort_unstable();
        }
        Store { entries, starts }
    }

    fn clients(&self) -> usize {
        self.starts.len() - 1
    }

    fn range(&self, rank: usize) -> std::ops::Range<usize> {
        self.starts[rank]..self.starts[rank + 1]
    }

    fn oldest(&self) -> Timestamp {
        let oldest = self.starts[..self.clients()]
            .iter()
            .map(|&s| self.entries[s].key())
            .min();
        // The key came from a valid Timestamp, so it converts back.
        Timestamp::from_nanosecond(oldest.unwrap_or(0)).unwrap_or(Timestamp::MIN)
    }
}

/// Flat position of the not-yet-accepted entry in `range` nearest to `key`
/// (on a tie, the newer), scanning outward from a binary search.
fn nearest(
    entries: &[Entry],
    accepted: &[bool],
    range: std::ops::Range<usize>,
    key: i128,
) -> Option<usize> {
    let start = range.start;
    let split = start + entries[range.clone()].partition_point(|e| e.key() < key);
    let newer = (split..range.end).find(|&p| !accepted[p]);
    let older = (start..split).rev().find(|&p| !accepted[p]);
    match (older, newer) {
        (Some(o), Some(n)) => Some(if entries[n].key() - key <= key - entries[o].key() {
            n
        } else {
            o
        }),
        (o, n) => n.or(o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::Weekday;
    use jiff::tz::Offset;

    fn ts(s: &str) -> Timestamp {
        s.parse()
            .unwrap_or_else(|e| panic!("bad timestamp {s}: {e}"))
    }

    fn noon(date: &str) -> Timestamp {
        ts(&format!("{date}T12:00:00Z"))
    }

    fn cand<'a>(client: &'a str, time: &str) -> Candidate<'a> {
        Candidate {
            client,
            time: ts(time),
        }
    }

    /// The order as `(client, time, reason)`, checking it is a permutation.
    fn ordered<'a>(
        candidates: &[Candidate<'a>],
        now: Timestamp,
    ) -> Vec<(&'a str, Timestamp, Reason)> {
        let order = importance_order(candidates, now);
        let mut seen = vec![false; candidates.len()];
        for r in &order {
            assert!(
                !std::mem::replace(&mut seen[r.index], true),
                "index {} twice",
                r.index
            );
        }
        assert_eq!(order.len(), candidates.len());
        order
            .iter()
            .map(|r| {
                (
                    candidates[r.index].client,
                    candidates[r.index].time,
                    r.reason,
                )
            })
            .collect()
    }

    fn daily(target: &str) -> Reason {
        Reason::Target {
            target: noon(target),
            kind: TargetKind::Daily,
        }
    }

    fn kinds_and_dates(list: &[(Timestamp, TargetKind)]) -> Vec<(String, TargetKind)> {
        list.iter()
            .map(|(t, k)| (t.to_string().replace("T12:00:00Z", ""), *k))
            .collect()
    }

    #[test]
    fn seven_daily_targets_at_utc_midday() {
        // Friday, at three times of the same UTC day.
        for now in [
            "2026-11-20T00:00:00Z",
            "2026-11-20T08:30:00Z",
            "2026-11-20T23:59:59.999Z",
        ] {
            let got = targets(ts(now), ts("2020-01-01T00:00:00Z"));
            let daily: Vec<_> = got
                .iter()
                .take_while(|(_, k)| *k == TargetKind::Daily)
                .collect();
            let want = ["20", "19", "18", "17", "16", "15", "14"];
            assert_eq!(daily.len(), 7, "{now}");
            for ((t, _), day) in daily.iter().zip(want) {
                assert_eq!(*t, noon(&format!("2026-11-{day}")), "{now}");
            }
        }
        // Before 1970 the day is still found by flooring.
        let got = targets(ts("1969-12-31T23:00:00Z"), ts("1969-01-01T00:00:00Z"));
        assert_eq!(got[0], (noon("1969-12-31"), TargetKind::Daily));
        assert_eq!(got[6], (noon("1969-12-25"), TargetKind::Daily));
    }

    #[test]
    fn four_weekly_targets_on_previous_sundays() {
        // Friday: the seventh daily target is Saturday 2026-11-14.
        let got = targets(ts("2026-11-20T08:30:00Z"), ts("2026-11-01T00:00:00Z"));
        let weekly: Vec<_> = got[7..11].to_vec();
        assert_eq!(
            kinds_and_dates(&weekly),
            ["2026-11-08", "2026-11-01", "2026-10-25", "2026-10-18"]
                .map(|d| (d.to_string(), TargetKind::Weekly))
        );
        for (t, _) in &weekly {
            assert_eq!(Offset::UTC.to_datetime(*t).weekday(), Weekday::Sunday);
        }
        // Saturday: the seventh daily target is itself a Sunday (2026-11-15),
        // so the step back is a full week.
        let got = targets(ts("2026-11-21T06:00:00Z"), ts("2026-11-01T00:00:00Z"));
        assert_eq!(got[6], (noon("2026-11-15"), TargetKind::Daily));
        assert_eq!(got[7], (noon("2026-11-08"), TargetKind::Weekly));
        // Sunday: the seventh daily target is Monday 2026-11-16.
        let got = targets(ts("2026-11-22T06:00:00Z"), ts("2026-11-01T00:00:00Z"));
        assert_eq!(got[6], (noon("2026-11-16"), TargetKind::Daily));
        assert_eq!(got[7], (noon("2026-11-15"), TargetKind::Weekly));
        assert_eq!(got[10], (noon("2026-10-25"), TargetKind::Weekly));
    }

    #[test]
    fn grid_of_28_days_anchored_on_1970_01_04() {
        let got = targets(ts("2026-11-20T08:30:00Z"), ts("2026-01-01T00:00:00Z"));
        let grid: Vec<_> = got[11..].to_vec();
        let want = [
            "2026-09-27",
            "2026-08-30",
            "2026-08-02",
            "2026-07-05",
            "2026-06-07",
            "2026-05-10",
            "2026-04-12",
            "2026-03-15",
            "2026-02-15",
            "2026-01-18",
            "2025-12-21",
        ];
        assert_eq!(
            kinds_and_dates(&grid),
            want.map(|d| (d.to_string(), TargetKind::FourWeekly))
        );
        // Every grid target is a whole number of 28 days after 1970-01-04 noon.
        for (t, _) in &grid {
            let since_anchor = t.as_second() - noon("1970-01-04").as_second();
            assert_eq!(since_anchor % (28 * DAY), 0, "{t}");
        }
        // The anchor itself is on the grid.
        let got = targets(ts("1970-02-20T00:00:00Z"), ts("1969-12-01T00:00:00Z"));
        assert!(
            got.contains(&(noon("1970-01-04"), TargetKind::FourWeekly)),
            "{got:?}"
        );
    }

    #[test]
    fn grid_target_repeats_the_last_sunday_when_it_is_on_the_grid() {
        // Friday 2026-11-27: the fourth Sunday is 2026-10-25, a grid Sunday.
        let got = targets(ts("2026-11-27T08:30:00Z"), ts("2026-09-01T00:00:00Z"));
        assert_eq!(
            kinds_and_dates(&got[7..]),
            [
                ("2026-11-15", TargetKind::Weekly),
                ("2026-11-08", TargetKind::Weekly),
                ("2026-11-01", TargetKind::Weekly),
                ("2026-10-25", TargetKind::Weekly),
                ("2026-10-25", TargetKind::FourWeekly),
                ("2026-09-27", TargetKind::FourWeekly),
                ("2026-08-30", TargetKind::FourWeekly),
            ]
            .map(|(d, k)| (d.to_string(), k))
        );
    }

    #[test]
    fn grid_stops_after_the_first_target_older_than_the_oldest_snapshot() {
        let now = ts("2026-11-20T08:30:00Z");
        let last = |oldest: &str| *targets(now, ts(oldest)).last().expect("targets");
        // Exactly at a grid target: it is not older, so one more follows.
        assert_eq!(last("2026-08-30T12:00:00Z").0, noon("2026-08-02"));
        // Just after a grid target: that one is older, and the last.
        assert_eq!(last("2026-08-30T12:00:01Z").0, noon("2026-08-30"));
        assert_eq!(last("2026-08-30T11:59:59Z").0, noon("2026-08-02"));
        // A store newer than the first grid target still gets that one.
        let got = targets(now, ts("2026-11-20T00:00:00Z"));
        assert_eq!(got.len(), 12);
        assert_eq!(got[11], (noon("2026-09-27"), TargetKind::FourWeekly));
        // A store far in the past: finite, descending, ending below it.
        let got = targets(now, ts("1900-01-01T00:00:00Z"));
        assert!(got.windows(2).all(|w| w[0].0 >= w[1].0));
        assert_eq!(got.len(), 11 + 1655);
        assert_eq!(got[got.len() - 1].0, noon("1899-12-10"));
        assert_eq!(got[got.len() - 2].0, noon("1900-01-07"));
    }

    #[test]
    fn extreme_times_do_not_panic() {
        let got = targets(Timestamp::MAX, Timestamp::MIN);
        assert!(got.len() > 150_000 && got.windows(2).all(|w| w[0].0 >= w[1].0));
        assert!(targets(Timestamp::MIN, Timestamp::MIN).len() < 12);
        let c = [
            Candidate {
                client: "a",
                time: Timestamp::MIN,
            },
            Candidate {
                client: "a",
                time: Timestamp::MAX,
            },
        ];
        for now in [Timestamp::MIN, Timestamp::MAX, ts("2026-11-20T00:00:00Z")] {
            assert_eq!(ordered(&c, now).len(), 2);
        }
    }

    #[test]
    fn empty_input_gives_empty_order() {
        assert!(importance_order(&[], ts("2026-11-20T00:00:00Z")).is_empty());
    }

    #[test]
    fn single_client_daily_snapshots() {
        // One snapshot a day at 00:05 from 2026-10-12 to 2026-11-20 (Friday).
        let c: Vec<Candidate> = (0..40)
            .map(|back| Candidate {
                client: "host",
                time: ts("2026-11-20T00:05:00Z") - jiff::SignedDuration::from_hours(24 * back),
            })
            .collect();
        let got = ordered(&c, ts("2026-11-20T08:30:00Z"));
        let at = |date: &str| ts(&format!("{date}T00:05:00Z"));
        let weekly = |d: &str| Reason::Target {
            target: noon(d),
            kind: TargetKind::Weekly,
        };
        let want = [
            // Each midday target is 11:55 after that day's snapshot and
            // 12:05 before the next day's.
            (at("2026-11-20"), daily("2026-11-20")),
            (at("2026-11-19"), daily("2026-11-19")),
            (at("2026-11-18"), daily("2026-11-18")),
            (at("2026-11-17"), daily("2026-11-17")),
            (at("2026-11-16"), daily("2026-11-16")),
            (at("2026-11-15"), daily("2026-11-15")),
            (at("2026-11-14"), daily("2026-11-14")),
            (at("2026-11-08"), weekly("2026-11-08")),
            (at("2026-11-01"), weekly("2026-11-01")),
            (at("2026-10-25"), weekly("2026-10-25")),
            (at("2026-10-18"), weekly("2026-10-18")),
            // The grid Sunday 2026-09-27 is older than everything: the oldest.
            (
                at("2026-10-12"),
                Reason::Target {
                    target: noon("2026-09-27"),
                    kind: TargetKind::FourWeekly,
                },
            ),
            (at("2026-11-13"), Reason::Remaining),
            (at("2026-11-12"), Reason::Remaining),
        ];
        assert_eq!(
            got[..want.len()]
                .iter()
                .map(|(_, t, r)| (*t, *r))
                .collect::<Vec<_>>(),
            want
        );
        assert!(got.iter().all(|(client, _, _)| *client == "host"));
        // The tail is newest first and ends with the second oldest.
        let tail: Vec<_> = got[12..].iter().map(|(_, t, _)| *t).collect();
        assert!(tail.windows(2).all(|w| w[0] > w[1]));
        assert_eq!(*tail.last().expect("tail"), at("2026-10-13"));
    }

    #[test]
    fn tie_between_equidistant_snapshots_takes_the_newer() {
        let c = [
            cand("h", "2026-11-20T10:00:00Z"),
            cand("h", "2026-11-20T14:00:00Z"),
        ];
        let got = ordered(&c, ts("2026-11-20T15:00:00Z"));
        assert_eq!(
            got[0],
            ("h", ts("2026-11-20T14:00:00Z"), daily("2026-11-20"))
        );
        assert_eq!(
            got[1],
            ("h", ts("2026-11-20T10:00:00Z"), daily("2026-11-19"))
        );
        // Sub-second resolution counts.
        let c = [
            cand("h", "2026-11-20T10:00:00Z"),
            cand("h", "2026-11-20T13:59:59.999999999Z"),
        ];
        assert_eq!(
            ordered(&c, ts("2026-11-20T15:00:00Z"))[0].1,
            ts("2026-11-20T13:59:59.999999999Z")
        );
        let c = [
            cand("h", "2026-11-20T10:00:00Z"),
            cand("h", "2026-11-20T14:00:00.000000001Z"),
        ];
        assert_eq!(
            ordered(&c, ts("2026-11-20T15:00:00Z"))[0].1,
            ts("2026-11-20T10:00:00Z")
        );
    }

    #[test]
    fn clients_take_turns_newest_client_first_then_by_name() {
        let c = [
            cand("alpha", "2026-11-19T01:00:00Z"),
            cand("alpha", "2026-11-18T01:00:00Z"),
            cand("charlie", "2026-11-20T01:00:00Z"),
            cand("charlie", "2026-11-19T01:00:00Z"),
            cand("bravo", "2026-11-19T02:00:00Z"),
            cand("bravo", "2026-11-20T01:00:00Z"),
        ];
        let got: Vec<_> = ordered(&c, ts("2026-11-20T08:00:00Z"))
            .into_iter()
            .map(|(c, t, _)| (c, t))
            .collect();
        // bravo and charlie share the newest time: by name. Then alpha.
        assert_eq!(
            got,
            [
                ("bravo", ts("2026-11-20T01:00:00Z")),
                ("charlie", ts("2026-11-20T01:00:00Z")),
                ("alpha", ts("2026-11-19T01:00:00Z")),
                ("bravo", ts("2026-11-19T02:00:00Z")),
                ("charlie", ts("2026-11-19T01:00:00Z")),
                ("alpha", ts("2026-11-18T01:00:00Z")),
            ]
        );
    }

    #[test]
    fn a_pick_newer_than_the_last_accepted_is_rejected_but_stays_available() {
        let c = [
            cand("h", "2026-11-20T11:00:00Z"), // A: nearest to today's midday
            cand("h", "2026-11-20T20:00:00Z"), // B: newer than A
            cand("h", "2026-11-17T12:00:00Z"), // C
        ];
        let got = ordered(&c, ts("2026-11-20T21:00:00Z"));
        // For 11-19 the nearest is B (32 h vs 48 h): rejected, as it is newer
        // than A. It stays available and is picked (and rejected) again for
        // nothing: for 11-18 C is nearer and is accepted.
        assert_eq!(
            got,
            [
                ("h", ts("2026-11-20T11:00:00Z"), daily("2026-11-20")),
                ("h", ts("2026-11-17T12:00:00Z"), daily("2026-11-18")),
                ("h", ts("2026-11-20T20:00:00Z"), Reason::Remaining),
            ]
        );
    }

    #[test]
    fn snapshots_newer_than_now() {
        let c = [
            cand("h", "2027-01-01T00:00:00Z"),
            cand("h", "2026-11-20T07:00:00Z"),
            cand("h", "2026-11-20T13:00:00Z"),
        ];
        let got = ordered(&c, ts("2026-11-20T08:00:00Z"));
        assert_eq!(
            got,
            [
                ("h", ts("2026-11-20T13:00:00Z"), daily("2026-11-20")),
                ("h", ts("2026-11-20T07:00:00Z"), daily("2026-11-19")),
                // Never older than the last accepted: first to go.
                ("h", ts("2027-01-01T00:00:00Z"), Reason::Remaining),
            ]
        );
    }

    #[test]
    fn remaining_ties_follow_client_order_whatever_the_input_order() {
        // Three clients with identical histories, one per hour for 3 days:
        // most are not near a target and tie on time across clients.
        let names = ["zulu", "yankee", "xray"];
        let times: Vec<Timestamp> = (0..72)
            .map(|h| ts("2026-11-18T00:00:00Z") + jiff::SignedDuration::from_hours(h))
            .collect();
        let mut c: Vec<Candidate> = names
            .iter()
            .flat_map(|&client| times.iter().map(move |&time| Candidate { client, time }))
            .collect();
        let now = ts("2026-11-20T23:00:00Z");
        let first = ordered(&c, now);
        let tail: Vec<_> = first
            .iter()
            .filter(|(_, _, r)| *r == Reason::Remaining)
            .collect();
        // Accepted per client: 12:00 on 11-20, 11-19, 11-18, then 00:00 on 11-18.
        assert_eq!(tail.len(), 72 * 3 - 4 * 3);
        for w in tail.windows(2) {
            let (a, b) = (w[0], w[1]);
            assert!(a.1 > b.1 || (a.1 == b.1 && a.0 < b.0), "{a:?} then {b:?}");
        }
        // Reversed and rotated inputs give the same sequence.
        c.reverse();
        assert_eq!(ordered(&c, now), first);
        c.rotate_left(100);
        assert_eq!(ordered(&c, now), first);
    }

    #[test]
    fn remaining_snapshots_are_ordered_to_the_nanosecond() {
        let c = [
            cand("h", "2026-11-20T00:00:00.3Z"),
            cand("h", "2026-11-20T00:00:00.7Z"),
            cand("h", "2026-11-20T01:00:00Z"),
            cand("h", "2026-11-20T00:00:00.1Z"),
            cand("h", "2026-11-20T00:00:00.5Z"),
        ];
        let got: Vec<_> = ordered(&c, ts("2026-11-20T08:00:00Z"))
            .into_iter()
            .map(|(_, t, r)| (t, r))
            .collect();
        assert_eq!(
            got,
            [
                (ts("2026-11-20T01:00:00Z"), daily("2026-11-20")),
                (ts("2026-11-20T00:00:00.1Z"), daily("2026-11-19")),
                (ts("2026-11-20T00:00:00.7Z"), Reason::Remaining),
                (ts("2026-11-20T00:00:00.5Z"), Reason::Remaining),
                (ts("2026-11-20T00:00:00.3Z"), Reason::Remaining),
            ]
        );
    }

    #[test]
    fn identical_snapshots_are_interchangeable() {
        let c = [
            cand("h", "2026-11-20T01:00:00Z"),
            cand("h", "2026-11-18T01:00:00Z"),
            cand("h", "2026-11-20T01:00:00Z"),
        ];
        let got = ordered(&c, ts("2026-11-20T08:00:00Z"));
        // For 11-19 the nearest is the copy, which is not older than the
        // last accepted: rejected. For 11-18 the older one is nearer.
        assert_eq!(
            got,
            [
                ("h", ts("2026-11-20T01:00:00Z"), daily("2026-11-20")),
                ("h", ts("2026-11-18T01:00:00Z"), daily("2026-11-18")),
                ("h", ts("2026-11-20T01:00:00Z"), Reason::Remaining),
            ]
        );
    }

    #[test]
    fn reasons_read_as_sentences() {
        assert_eq!(
            daily("2026-11-20").to_string(),
            "nearest to the daily target 2026-11-20T12:00:00Z"
        );
        let r = Reason::Target {
            target: noon("2026-09-27"),
            kind: TargetKind::FourWeekly,
        };
        assert_eq!(
            r.to_string(),
            "nearest to the four-weekly target 2026-09-27T12:00:00Z"
        );
        let r = Reason::Target {
            target: noon("2026-11-08"),
            kind: TargetKind::Weekly,
        };
        assert_eq!(
            r.to_string(),
            "nearest to the weekly target 2026-11-08T12:00:00Z"
        );
        assert_eq!(
            Reason::Remaining.to_string(),
            "not near any target; newest first"
        );
    }
}
