//! (f) Index mode (issue 12): byteback's incremental backups — a stat walk
//! of the source against the change index, then only what changed — side
//! by side with **bare** `rsync -a --numeric-ids --delete --inplace` over
//! the same ssh (the floor key, into `<store>/floor/bare`), with nothing
//! changed and after a 1% mutate step; one `byteback backup --full` per
//! state for reference; and the stat walk alone, warm and cold.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::dataset::Dataset;
use crate::measure::{Run, measure_watching};
use crate::report::{max, median, min};
use crate::{Bench, STD_PATH, now_secs};

/// One timed run of (f).
#[derive(Debug, Clone)]
pub struct IndexSample {
    /// `nochange` or `mutate`.
    pub state: &'static str,
    /// `incremental`, `full` or `bare`.
    pub tool: &'static str,
    pub wall: f64,
    /// The server side's rsync receiver's CPU seconds, as last polled
    /// (none: no rsync ran on the server).
    pub server_cpu: Option<f64>,
    /// byteback's summary: how it transferred.
    pub how: String,
}

/// (f)'s figures.
#[derive(Debug, Clone, Default)]
pub struct IndexPhase {
    pub samples: Vec<IndexSample>,
    pub walk_warm: Vec<f64>,
    pub walk_cold: Vec<f64>,
    pub paths: usize,
}

fn spread(v: &[f64]) -> String {
    if v.is_empty() {
        return "—".into();
    }
    format!("{:.3} ({:.3}–{:.3})", median(v), min(v), max(v))
}

impl IndexPhase {
    fn walls(&self, state: &str, tool: &str) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|s| s.state == state && s.tool == tool)
            .map(|s| s.wall)
            .collect()
    }

    fn cpus(&self, state: &str, tool: &str) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|s| s.state == state && s.tool == tool)
            .filter_map(|s| s.server_cpu)
            .collect()
    }

    /// The section of RESULTS.md.
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "\n## (f) Index mode against bare rsync\n\n\
             byteback's index-mode backup (a stat walk against the change index, then \
             `--files-from` with only what changed) against bare `rsync -a --numeric-ids \
             --delete --inplace` over the same ssh into the same btrfs (the floor key, \
             `<store>/floor/bare`), on the same data state, alternating who goes first; \
             and `byteback backup --full` once per state. Stat walk: byteback's own walk \
             of the source ({} paths), in process; cold after `echo 3 > \
             /proc/sys/vm/drop_caches`. Wall seconds, median (min–max). Server CPU: \
             the server's rsync receiver, CPU seconds as last polled in /proc (an \
             incremental backup with nothing to send runs no rsync at all).\n",
            self.paths
        );
        let _ = writeln!(
            o,
            "| state | byteback incremental | bare rsync -a | ratio of medians | target | byteback --full | server CPU: incremental / bare |\n|---|---|---|---|---|---|---|"
        );
        for (state, title, target) in [
            ("nochange", "nothing changed", 0.8),
            ("mutate", "after a 1% mutate step", 1.0),
        ] {
            let inc = self.walls(state, "incremental");
            let bare = self.walls(state, "bare");
            if inc.is_empty() {
                continue;
            }
            let ratio = median(&inc) / median(&bare);
            let _ = writeln!(
                o,
                "| {title} | {} | {} | {ratio:.3} | ≤ {target} × | {} | {} / {} |",
                spread(&inc),
                spread(&bare),
                spread(&self.walls(state, "full")),
                {
                    // byteback's receiver runs in a private user and mount
                    // namespace, where this poller does not find it.
                    let cpus = self.cpus(state, "incremental");
                    if cpus.iter().all(|c| *c == 0.0) {
                        "not seen".to_owned()
                    } else {
                        spread(&cpus)
                    }
                },
                spread(&self.cpus(state, "bare")),
            );
        }
        let _ = writeln!(
            o,
            "\nStat walk alone: warm {}, cold {}.",
            spread(&self.walk_warm),
            spread(&self.walk_cold)
        );
        let hows: Vec<&str> = self
            .samples
            .iter()
            .filter(|s| s.tool == "incremental")
            .map(|s| s.how.as_str())
            .collect();
        let _ = writeln!(o, "\nHow each incremental ran: {}.", hows.join("; "));
        o
    }
}

impl Bench<'_> {
    /// (f): `pairs` no-change pairs, then `pairs` mutate steps each
    /// followed by one pair.
    pub fn index_phase(&mut self, data: &mut Dataset, pairs: usize) {
        let mut phase = IndexPhase::default();
        // Bare rsync's first copy, untimed.
        self.bare(&mut phase, "warmup", false);
        self.byteback(&mut phase, "warmup", false);
        for i in 1..=pairs {
            eprintln!("bench: (f) index mode, nothing changed, pair {i}/{pairs}");
            self.index_pair(&mut phase, "nochange", i);
        }
        self.byteback(&mut phase, "nochange", true);
        for i in 1..=pairs {
            eprintln!("bench: (f) index mode, 1% changed, pair {i}/{pairs}");
            data.mutate();
            self.index_pair(&mut phase, "mutate", i);
        }
        data.mutate();
        // The full pass sees the change once; the bare rsync is brought up
        // to date untimed.
        self.byteback(&mut phase, "mutate", true);
        self.bare(&mut phase, "warmup", false);
        let src = self.src.clone();
        for _ in 0..5 {
            let t = Instant::now();
            let walked = byteback::client::index::walk(
                std::slice::from_ref(&src),
                &[],
                byteback::client::index::now_ns(),
            )
            .expect("walk the source");
            phase.walk_warm.push(t.elapsed().as_secs_f64());
            phase.paths = walked.len();
        }
        for _ in 0..3 {
            let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
            let t = Instant::now();
            let _ = byteback::client::index::walk(
                std::slice::from_ref(&src),
                &[],
                byteback::client::index::now_ns(),
            );
            phase.walk_cold.push(t.elapsed().as_secs_f64());
        }
        self.report.index = Some(phase);
    }

    fn index_pair(&mut self, phase: &mut IndexPhase, state: &'static str, i: usize) {
        if i % 2 == 1 {
            self.byteback(phase, state, false);
            self.bare(phase, state, true);
        } else {
            self.bare(phase, state, true);
            self.byteback(phase, state, false);
        }
    }

    fn byteback(&mut self, phase: &mut IndexPhase, state: &'static str, full: bool) {
        while now_secs() <= self.last_snapshot_secs {
            std::thread::sleep(Duration::from_millis(20));
        }
        let src = self.src.to_string_lossy().into_owned();
        let mut args = vec!["backup", "--source", src.as_str()];
        if full {
            args.push("--full");
        }
        let label = self.next_label(&format!(
            "index-{state}-{}",
            if full { "full" } else { "inc" }
        ));
        let mut cmd = self.client_in(&self.client_dir.clone(), &args);
        let run: Run = measure_watching(
            &mut cmd,
            &self.logs,
            &label,
            &["byteback", "rsync", "ssh"],
            Some((self.user.uid, "rsync")),
        );
        assert!(
            run.code == 0 && run.stdout.contains("Backup complete"),
            "{label}: {}\n{}",
            run.stdout,
            run.stderr
        );
        self.last_snapshot_secs = now_secs();
        self.settle();
        let how = run
            .stdout
            .lines()
            .find(|l| l.starts_with("Backup complete"))
            .and_then(|l| l.rsplit(", ").next())
            .and_then(|how| how.strip_suffix(')'))
            .unwrap_or("")
            .to_owned();
        eprintln!(
            "bench:   {:<12} {:>8.3} s  ({how})",
            if full { "full" } else { "incremental" },
            run.wall
        );
        if state != "warmup" {
            phase.samples.push(IndexSample {
                state,
                tool: if full { "full" } else { "incremental" },
                wall: run.wall,
                server_cpu: run.watched_life().map(|(_, cpu)| cpu),
                how,
            });
        }
    }

    fn bare(&mut self, phase: &mut IndexPhase, state: &'static str, timed: bool) {
        let rsh_index = self
            .floor_argv
            .iter()
            .position(|a| a == "--rsh")
            .expect("the floor's --rsh");
        let rsh = self.floor_argv[rsh_index + 1].clone();
        let remote = self
            .floor_argv
            .last()
            .and_then(|d| d.strip_suffix("current/"))
            .expect("the floor's destination")
            .to_owned();
        let mut source = self.src.to_string_lossy().into_owned();
        source.push('/');
        let label = self.next_label(&format!("index-{state}-bare"));
        let mut cmd = Command::new("rsync");
        cmd.args([
            "-a",
            "--numeric-ids",
            "--delete",
            "--inplace",
            "--rsh",
            &rsh,
        ])
        .arg(&source)
        .arg(format!("{remote}bare/"))
        .env_clear()
        .env("PATH", STD_PATH);
        let run = measure_watching(
            &mut cmd,
            &self.logs,
            &label,
            &["rsync", "ssh"],
            Some((self.user.uid, "rsync")),
        );
        assert_eq!(run.code, 0, "{label}: {}", run.stderr);
        self.settle();
        eprintln!("bench:   {:<12} {:>8.3} s", "bare", run.wall);
        if timed {
            phase.samples.push(IndexSample {
                state,
                tool: "bare",
                wall: run.wall,
                server_cpu: run.watched_life().map(|(_, cpu)| cpu),
                how: String::new(),
            });
        }
    }
}
