//! Checks `importance_order` against a brute-force model of the rules, and
//! simulates daily backups pruned to a fixed number of snapshots, as the
//! original byteback's test did.

use std::cmp::Reverse;

use byteback::prune::order::{Candidate, Reason, importance_order, targets};
use jiff::{SignedDuration, Timestamp};

const DAY: i64 = 86_400;
const NANOS: u64 = 1_000_000_000;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("valid timestamp")
}

fn secs(t: i64) -> Timestamp {
    Timestamp::from_second(t).expect("in range")
}

type Placed<'a> = (&'a str, Timestamp, Reason);

/// The order as `(client, time, reason)`, checking it is a permutation.
fn ordered<'a>(candidates: &[Candidate<'a>], now: Timestamp) -> Vec<Placed<'a>> {
    let order = importance_order(candidates, now);
    assert_eq!(order.len(), candidates.len());
    let mut seen = vec![false; candidates.len()];
    for r in &order {
        assert!(
            !std::mem::replace(&mut seen[r.index], true),
            "index {} twice",
            r.index
        );
    }
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

/// The rules written out as plainly as possible: every pick scans all
/// snapshots, every target is tried for every client.
fn model<'a>(candidates: &[Candidate<'a>], now: Timestamp) -> Vec<Placed<'a>> {
    let Some(oldest) = candidates.iter().map(|c| c.time).min() else {
        return Vec::new();
    };
    let newest = |client: &str| {
        candidates
            .iter()
            .filter(|c| c.client == client)
            .map(|c| c.time)
            .max()
    };
    let mut clients: Vec<&str> = candidates.iter().map(|c| c.client).collect();
    clients.sort_unstable_by_key(|&client| (Reverse(newest(client)), client));
    clients.dedup();

    let mut accepted = vec![false; candidates.len()];
    let mut last: Vec<Option<Timestamp>> = vec![None; clients.len()];
    let mut out = Vec::new();
    for (target, kind) in targets(now, oldest) {
        for (rank, client) in clients.iter().enumerate() {
            let distance = |c: &Candidate| (c.time.as_nanosecond() - target.as_nanosecond()).abs();
            let pick = (0..candidates.len())
                .filter(|&i| candidates[i].client == *client && !accepted[i])
                .min_by_key(|&i| (distance(&candidates[i]), Reverse(candidates[i].time)));
            if let Some(i) = pick
                && last[rank].is_none_or(|last| candidates[i].time < last)
            {
                accepted[i] = true;
                last[rank] = Some(candidates[i].time);
                out.push((*client, candidates[i].time, Reason::Target { target, kind }));
            }
        }
    }
    let rank = |client: &str| clients.iter().position(|&c| c == client);
    let mut rest: Vec<&Candidate> = (0..candidates.len())
        .filter(|&i| !accepted[i])
        .map(|i| &candidates[i])
        .collect();
    rest.sort_by_key(|c| (Reverse(c.time), rank(c.client)));
    out.extend(
        rest.into_iter()
            .map(|c| (c.client, c.time, Reason::Remaining)),
    );
    out
}

/// `importance_order` gives the same order as a brute-force model of the
/// rules on 400 random stores (equal times, exact ties, many snapshots
/// within one second, times before 1970 included), whatever the input
/// order.
#[test]
fn matches_the_model_on_random_stores() {
    let names = ["web", "db", "mail", "dns", "a"];
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut accepted_total = 0;
    for case in 0..400 {
        let base = if case % 5 == 0 {
            ts("1969-12-20T00:00:00Z")
        } else {
            ts("2026-11-20T00:00:00Z")
        };
        let now = base + SignedDuration::from_secs(rng.below(2 * DAY as u64) as i64);
        let clients = 1 + rng.below(names.len() as u64) as usize;
        // Spans and grains (in nanoseconds): coarse grains make equal times
        // and exact ties, a short span many snapshots within one second.
        let (span, grain) = [
            (200 * DAY as u64 * NANOS, 3_600 * NANOS as i128),
            (200 * DAY as u64 * NANOS, 43_200 * NANOS as i128),
            (200 * DAY as u64 * NANOS, NANOS as i128),
            (200 * DAY as u64 * NANOS, 1),
            (3 * NANOS, 1),
            (4 * DAY as u64 * NANOS, 60 * NANOS as i128),
        ][case % 6];
        let mut candidates = Vec::new();
        for &client in &names[..clients] {
            for _ in 0..rng.below(30) {
                let offset = (rng.below(span) as i128 / grain) * grain;
                let time = base.as_nanosecond() + 3 * DAY as i128 * NANOS as i128 - offset;
                candidates.push(Candidate {
                    client,
                    time: Timestamp::from_nanosecond(time).expect("in range"),
                });
            }
        }
        rng.shuffle(&mut candidates);
        let got = ordered(&candidates, now);
        assert_eq!(got, model(&candidates, now), "case {case}");
        accepted_total += got.iter().filter(|p| p.2 != Reason::Remaining).count();
        rng.shuffle(&mut candidates);
        assert_eq!(ordered(&candidates, now), got, "case {case} shuffled");
    }
    assert!(
        accepted_total > 2_000,
        "the cases exercise the targets: {accepted_total}"
    );
}

/// One backup run a day for each client, then prune to `limit` snapshots.
struct Simulation {
    clients: &'static [&'static str],
    limit: usize,
    /// Time of day of the snapshots, in seconds after midnight UTC.
    time_of_day: i64,
    /// Up to this many seconds later, at random.
    jitter: u64,
    /// Out of 7, how many days a client misses on average.
    missed_per_7: u64,
    seed: u64,
}

/// What a day of a simulation leaves, for the checks.
struct Day<'a> {
    number: i64,
    now: Timestamp,
    history: &'a [Candidate<'static>],
    kept: &'a [Candidate<'static>],
}

impl Simulation {
    fn run(&self, days: i64, mut check: impl FnMut(&Day)) {
        // A Friday; `now` is the end of the jitter window.
        let start = ts("2026-01-02T00:00:00Z").as_second() + self.time_of_day;
        let mut rng = XorShift(self.seed);
        let mut history = Vec::new();
        let mut kept: Vec<Candidate<'static>> = Vec::new();
        for number in 0..days {
            let now = secs(start + number * DAY + self.jitter as i64);
            for &client in self.clients {
                if rng.below(7) < self.missed_per_7 {
                    continue;
                }
                let jitter = if self.jitter == 0 {
                    0
                } else {
                    rng.below(self.jitter + 1) as i64
                };
                let snapshot = Candidate {
                    client,
                    time: secs(start + number * DAY + jitter),
                };
                history.push(snapshot);
                kept.push(snapshot);
            }
            while kept.len() > self.limit {
                let order = importance_order(&kept, now);
                kept.remove(order.last().expect("not empty").index);
            }
            assert_eq!(kept.len(), history.len().min(self.limit));
            check(&Day {
                number,
                now,
                history: &history,
                kept: &kept,
            });
        }
    }

    fn name(&self) -> String {
        format!(
            "{} client(s), limit {}, at {}s, jitter {}s, missing {}/7, seed {}",
            self.clients.len(),
            self.limit,
            self.time_of_day,
            self.jitter,
            self.missed_per_7,
            self.seed
        )
    }
}

/// While the kept history is still growing older (each day its oldest
/// snapshot is older than the day before), it holds, for each client, the
/// snapshot nearest (on a tie, the newer) to each of the first `limit`
/// distinct targets that its history reaches: today and the 6 days before,
/// the 4 Sundays, then the Sundays 28 days apart. Returns the days checked.
fn check_growing_history(sim: &Simulation, days: i64) -> i64 {
    let per_client = sim.limit / sim.clients.len();
    let mut previous_age: Option<i64> = None;
    let mut growing = true;
    let mut checked_days = 0;
    sim.run(days, |day| {
        let Some(oldest) = day.history.iter().map(|c| c.time).min() else {
            return; // nothing taken yet
        };
        if !growing {
            return;
        }
        let mut wanted = targets(day.now, oldest);
        wanted.dedup_by_key(|(target, _)| *target);
        for &client in sim.clients {
            let history: Vec<Timestamp> =
                day.history.iter().filter(|c| c.client == client).map(|c| c.time).collect();
            let Some(&first) = history.iter().min() else { continue };
            // A target is reached once its day has a snapshot or a later one.
            let reached = wanted.iter().filter(|(target, _)| *target + SignedDuration::from_hours(12) > first);
            for &(target, kind) in reached.take(per_client) {
                let distance = |t: &Timestamp| (t.as_second() - target.as_second()).abs();
                let nearest = *history.iter().min_by_key(|t| (distance(t), Reverse(**t))).expect("history");
                assert!(
                    day.kept.iter().any(|c| c.client == client && c.time == nearest),
                    "{}: day {}: lost {client} {nearest}, nearest to the {kind} target {target}; kept {:?}",
                    sim.name(),
                    day.number,
                    day.kept.iter().map(|c| c.time.to_string()).collect::<Vec<_>>()
                );
            }
        }
        checked_days += 1;
        let age = day.now.as_second() - day.kept.iter().map(|c| c.time.as_second()).min().expect("kept");
        growing = previous_age.is_none_or(|previous| age > previous);
        previous_age = Some(age);
    });
    checked_days
}

/// What holds every day: each client keeps its newest snapshots, up to 7
/// (the daily targets) and its share of the limit; the order starts with
/// each client's newest; the order does not depend on the input order.
fn check_every_day(sim: &Simulation, days: i64) {
    let mut rng = XorShift(sim.seed ^ 0xdead_beef);
    sim.run(days, |day| {
        let order = ordered(day.kept, day.now);
        let share = (sim.limit / sim.clients.len()).min(7);
        let mut leaders = Vec::new();
        for &client in sim.clients {
            let mut times: Vec<Timestamp> = day
                .history
                .iter()
                .filter(|c| c.client == client)
                .map(|c| c.time)
                .collect();
            times.sort_unstable_by(|a, b| b.cmp(a));
            for time in times.iter().take(share) {
                assert!(
                    day.kept
                        .iter()
                        .any(|c| c.client == client && c.time == *time),
                    "{}: day {}: {client} lost {time}, one of its newest {share}",
                    sim.name(),
                    day.number
                );
            }
            if let Some(&newest) = times.first()
                && day
                    .kept
                    .iter()
                    .any(|c| c.client == client && c.time == newest)
            {
                leaders.push((newest, client));
            }
        }
        // The first places go to each kept client's newest (nearest today's
        // midday, as no snapshot is later than `now`), newest client first.
        leaders.sort_unstable_by_key(|&(time, client)| (Reverse(time), client));
        let head: Vec<_> = order
            .iter()
            .take(leaders.len())
            .map(|p| (p.1, p.0))
            .collect();
        assert_eq!(head, leaders, "{}: day {}", sim.name(), day.number);
        if sim.limit >= sim.clients.len() {
            assert_eq!(
                leaders.len(),
                day.history
                    .iter()
                    .map(|c| c.client)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len()
            );
        }
        let mut shuffled = day.kept.to_vec();
        rng.shuffle(&mut shuffled);
        assert_eq!(
            ordered(&shuffled, day.now),
            order,
            "{}: day {}",
            sim.name(),
            day.number
        );
    });
}

const ONE: &[&str] = &["host"];
const THREE: &[&str] = &["host1", "host2", "host3"];

/// One client backing up daily, pruned to 1 to 15 snapshots at several
/// times of day: while its history grows older it keeps the snapshot
/// nearest each target (the last 7 days, 4 Sundays, then Sundays 28 days
/// apart), and every day's invariants hold for 130 days.
#[test]
fn one_client_keeps_the_targets_while_its_history_grows() {
    for time_of_day in [5 * 60, 11 * 3_600 + 1_800, 13 * 3_600, 23 * 3_600 + 55 * 60] {
        for limit in 1..=15 {
            let sim = Simulation {
                clients: ONE,
                limit,
                time_of_day,
                jitter: 0,
                missed_per_7: 0,
                seed: 1,
            };
            let checked = check_growing_history(&sim, 400);
            assert!(
                checked >= limit as i64,
                "{}: only {checked} days checked",
                sim.name()
            );
            check_every_day(&sim, 130);
        }
    }
}

/// Three clients sharing one limit, backing up daily at jittered times:
/// each keeps its targets and a history as long as the others'.
#[test]
fn three_clients_sharing_a_limit() {
    for limit in 1..=15 {
        let sim = Simulation {
            clients: THREE,
            limit: 3 * limit,
            time_of_day: 5 * 60,
            jitter: 3_600,
            missed_per_7: 0,
            seed: limit as u64,
        };
        let checked = check_growing_history(&sim, 400);
        assert!(
            checked >= limit as i64,
            "{}: only {checked} days checked",
            sim.name()
        );
        check_every_day(&sim, 130);
        // Clients backing up every day keep histories of the same length.
        sim.run(130, |day| {
            let counts: Vec<usize> = THREE
                .iter()
                .map(|&client| day.kept.iter().filter(|c| c.client == client).count())
                .collect();
            let want = (day.number as usize + 1).min(limit);
            assert_eq!(counts, [want; 3], "{}: day {}", sim.name(), day.number);
        });
    }
}

/// Clients that miss two days in seven (one or three clients, several
/// limits and seeds) still keep the targets their history reaches, and
/// every day's invariants hold.
#[test]
fn missed_days() {
    for seed in 1..=6 {
        for limit in [1, 3, 7, 11, 15] {
            for clients in [ONE, THREE] {
                let sim = Simulation {
                    clients,
                    limit: limit * clients.len(),
                    time_of_day: 2 * 3_600,
                    jitter: 1_800,
                    missed_per_7: 2,
                    seed,
                };
                let checked = check_growing_history(&sim, 400);
                assert!(
                    checked >= limit as i64,
                    "{}: only {checked} days checked",
                    sim.name()
                );
                check_every_day(&sim, 130);
            }
        }
    }
}

/// The ages kept after 130 daily backups, by limit, worked out by hand: 1
/// keeps today, 7 the last week, 11 adds four Sundays, 15 reaches back 113
/// days on the 28-day grid.
#[test]
fn how_far_back_a_single_client_reaches() {
    // Ages in days of what is kept on day 129, Monday 2026-05-11 00:05.
    let ages = |limit| {
        let mut ages = Vec::new();
        let sim = Simulation {
            clients: ONE,
            limit,
            time_of_day: 5 * 60,
            jitter: 0,
            missed_per_7: 0,
            seed: 1,
        };
        sim.run(130, |day| {
            ages = day
                .kept
                .iter()
                .map(|c| (day.now.as_second() - c.time.as_second()) / DAY)
                .collect();
        });
        ages.sort_unstable();
        ages
    };
    assert_eq!(ages(1), [0]);
    assert_eq!(ages(7), [0, 1, 2, 3, 4, 5, 6]);
    // The Sundays before Tuesday 05-05, the last daily target: 05-03, 04-26,
    // 04-19 and 04-12.
    assert_eq!(ages(11), [0, 1, 2, 3, 4, 5, 6, 8, 15, 22, 29]);
    // 04-12 is on the 28-day grid, so its grid target repeats it and takes
    // the next nearest kept snapshot, 04-05 (36); then the grid Sundays
    // 03-15, 02-15 and 01-18. The first snapshot, 01-02 (129 days), was the
    // last accepted and was deleted yesterday.
    assert_eq!(
        ages(15),
        [0, 1, 2, 3, 4, 5, 6, 8, 15, 22, 29, 36, 57, 85, 113]
    );
}
