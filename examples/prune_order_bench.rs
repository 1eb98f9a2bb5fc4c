//! Times `importance_order` on synthetic stores.
//!
//! Run with `cargo run --release --example prune_order_bench`.
//! Each case: N clients × 365 days, one snapshot a day at a jittered time,
//! about 3% of days missed, fixed `now` and seed; 5 runs, median reported.

use std::time::{Duration, Instant};

use byteback::prune::order::{Candidate, importance_order};
use jiff::Timestamp;

const DAYS: i64 = 365;
const RUNS: usize = 5;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn case(clients: usize, now: Timestamp, names: &[String]) {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ clients as u64);
    let today = now.as_second().div_euclid(86_400) * 86_400;
    let mut candidates = Vec::with_capacity(clients * DAYS as usize);
    for name in &names[..clients] {
        for back in 0..DAYS {
            if rng.next() % 32 == 0 {
                continue; // a missed day
            }
            let secs = today - back * 86_400 + (rng.next() % 7_200) as i64;
            let time = Timestamp::from_second(secs).expect("in range");
            candidates.push(Candidate { client: name, time });
        }
    }
    let rss_before = status_kib("VmRSS:");
    let mut times: Vec<Duration> = Vec::with_capacity(RUNS);
    let mut checksum = 0usize;
    for _ in 0..RUNS {
        let start = Instant::now();
        let order = importance_order(&candidates, now);
        times.push(start.elapsed());
        assert_eq!(order.len(), candidates.len());
        checksum = checksum.wrapping_add(order.last().map_or(0, |r| r.index));
        drop(order);
    }
    times.sort();
    println!(
        "{clients:>6} clients: {:>9} snapshots, median {:>8.1} ms (min {:.1}, max {:.1}) \
         | VmRSS before {} MiB, VmHWM after {} MiB | checksum {checksum}",
        candidates.len(),
        times[RUNS / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[RUNS - 1].as_secs_f64() * 1e3,
        rss_before.map_or("?".into(), |k| (k / 1024).to_string()),
        status_kib("VmHWM:").map_or("?".into(), |k| (k / 1024).to_string()),
    );
}

fn main() {
    let now: Timestamp = "2026-11-20T08:30:00Z".parse().expect("valid timestamp");
    let names: Vec<String> = (0..10_000).map(|i| format!("client-{i:05}")).collect();
    case(1_000, now, &names);
    case(10_000, now, &names);
}
