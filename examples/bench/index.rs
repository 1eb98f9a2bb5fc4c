//! (f) Issue 24's comparison: byteback against **bare** `rsync -a
//! --numeric-ids --delete --inplace` over the same ssh (the floor key, into
//! `<store>/floor/bare`) and, where it is installed, **restic** (a local
//! repository on the same btrfs), on the same data state, the order
//! rotating: nothing changed (warm, and cold: the page cache dropped before
//! each run), after a 1% mutate step, `byteback backup --full` (a full pass)
//! with nothing changed, the restore of the largest file, and byteback's
//! stat walk alone, warm and cold. The initial full backups of bare rsync
//! and restic run beside (a)'s pairs (`initial_extra`).

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::dataset::Dataset;
use crate::measure::{Run, measure, measure_watching};
use crate::report::{Report, max, median, min, verdict};
use crate::{Bench, STD_PATH, now_secs};

/// One timed run of (f), or one of bare rsync's and restic's initial backups.
#[derive(Debug, Clone)]
pub struct IndexSample {
    /// `initial`, `nochange`, `cold`, `mutate` or `restore`.
    pub state: &'static str,
    /// `incremental`, `full`, `bare` or `restic` (`byteback` for a restore).
    pub tool: &'static str,
    /// The pair (or triple) it belongs to.
    pub index: usize,
    pub wall: f64,
    /// The untimed sync after it (what making its writes durable cost).
    pub post_sync: f64,
    /// The server side's rsync receiver's CPU seconds, as last polled
    /// (none: no rsync ran on the server).
    pub server_cpu: Option<f64>,
    /// byteback's summary: how it transferred.
    pub how: String,
    /// The measured process's own peak RSS (VmHWM).
    pub self_hwm_kib: u64,
}

/// (f)'s figures.
#[derive(Debug, Clone, Default)]
pub struct IndexPhase {
    pub samples: Vec<IndexSample>,
    pub walk_warm: Vec<f64>,
    pub walk_cold: Vec<f64>,
    pub paths: usize,
    /// The restored file (relative to the source) and its size.
    pub restore_file: String,
    pub restore_size: u64,
}

fn spread(v: &[f64]) -> String {
    if v.is_empty() {
        return "—".into();
    }
    format!("{:.3} ({:.3}–{:.3})", median(v), min(v), max(v))
}

fn walls_of<'a>(
    samples: impl Iterator<Item = &'a IndexSample>,
    state: &str,
    tool: &str,
) -> Vec<f64> {
    samples
        .filter(|s| s.state == state && s.tool == tool)
        .map(|s| s.wall)
        .collect()
}

/// The profile's targets of issue 24, as ratios to bare rsync.
struct Targets {
    nochange: f64,
    cold: Option<f64>,
    mutate: f64,
    full: Option<f64>,
    initial: Option<f64>,
    restore: Option<f64>,
    list_secs: Option<f64>,
    rss_mib: Option<f64>,
}

fn targets(profile: &str) -> Targets {
    if profile == "many" {
        Targets {
            nochange: 0.5,
            cold: None,
            mutate: 0.9,
            full: Some(1.3),
            initial: None,
            restore: None,
            list_secs: None,
            rss_mib: Some(64.0),
        }
    } else {
        Targets {
            nochange: 0.6,
            cold: Some(0.7),
            mutate: 0.9,
            full: None,
            initial: Some(1.05),
            restore: Some(1.1),
            list_secs: Some(0.3),
            rss_mib: None,
        }
    }
}

impl IndexPhase {
    fn walls(&self, state: &str, tool: &str) -> Vec<f64> {
        walls_of(self.samples.iter(), state, tool)
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
            "\n## (f) Against bare rsync and restic\n\n\
             byteback's index-mode backup (a stat walk against the change index, then \
             `--files-from` with only what changed) against bare `rsync -a --numeric-ids \
             --delete --inplace` over the same ssh into the same btrfs (the floor key, \
             `<store>/floor/bare`) and restic (where installed: `restic backup` into a local \
             repository `<store filesystem>/restic` on the same btrfs, its cache on the root \
             filesystem), on the same data state, the order rotating; `byteback backup \
             --full` (a full rsync pass) with nothing changed in the same rotation. *cold*: \
             `sync; echo 3 > /proc/sys/vm/drop_caches` before each run. Stat walk: byteback's \
             own walk of the source ({} paths), in process. Wall seconds, median (min–max). \
             Server CPU: the server's rsync receiver, CPU seconds as last polled in /proc (an \
             incremental backup with nothing to send runs no rsync at all).\n",
            self.paths
        );
        let _ = writeln!(
            o,
            "| state | byteback incremental | bare rsync -a | restic | byteback / bare (medians) | byteback --full | server CPU: incremental / bare |\n|---|---|---|---|---|---|---|"
        );
        for (state, title) in [
            ("nochange", "nothing changed"),
            ("cold", "nothing changed, cold cache"),
            ("mutate", "after a 1% mutate step"),
        ] {
            let inc = self.walls(state, "incremental");
            let bare = self.walls(state, "bare");
            if inc.is_empty() {
                continue;
            }
            let cpus = self.cpus(state, "incremental");
            let _ = writeln!(
                o,
                "| {title} | {} | {} | {} | {:.3} | {} | {} / {} |",
                spread(&inc),
                spread(&bare),
                spread(&self.walls(state, "restic")),
                median(&inc) / median(&bare),
                spread(&self.walls(state, "full")),
                // byteback's receiver runs in a private user and mount
                // namespace, where this poller does not find it.
                if cpus.iter().all(|c| *c == 0.0) {
                    "not seen".to_owned()
                } else {
                    spread(&cpus)
                },
                spread(&self.cpus(state, "bare")),
            );
        }
        let restore = self.walls("restore", "byteback");
        if !restore.is_empty() {
            let _ = writeln!(
                o,
                "\nRestore of `{}` ({:.1} MiB) into a fresh directory (after one untimed \
                 warm-up of each): `byteback restore` {}, bare `rsync -a` pulling it from \
                 `<store>/floor/bare` {}, `restic restore latest --include` {}.",
                self.restore_file,
                self.restore_size as f64 / 1048576.0,
                spread(&restore),
                spread(&self.walls("restore", "bare")),
                spread(&self.walls("restore", "restic")),
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

/// Issue 24's targets, each with its figure and verdict: the summary's
/// second table.
pub fn targets_markdown(r: &Report) -> String {
    let mut o = String::new();
    let Some(f) = &r.index else {
        return o;
    };
    let t = targets(r.profile.name);
    let restic_installed = r.restic.is_some();
    let _ = writeln!(
        o,
        "\n### Issue 24: against bare `rsync -a`{}\n\n\
         The {} profile's targets{}; every ratio is byteback's median over bare rsync's \
         median in this run, same data state, order rotating (see (f)). restic: {}.\n",
        if restic_installed { " and restic" } else { "" },
        if r.profile.name == "many" {
            "`many`"
        } else {
            "default"
        },
        if r.profile.name == "default" || r.profile.name == "many" {
            String::new()
        } else {
            format!(
                " (this run's profile is `{}`: the figures are not the default's)",
                r.profile.name
            )
        },
        r.restic
            .clone()
            .unwrap_or_else(|| "not installed (its column is empty)".into())
    );
    let _ = writeln!(
        o,
        "| figure | byteback | bare rsync -a | restic | byteback / bare | target | |\n|---|---|---|---|---|---|---|"
    );
    let cell = |v: &[f64]| {
        if v.is_empty() {
            "—".to_owned()
        } else {
            spread(v)
        }
    };
    let row =
        |o: &mut String, title: &str, bb: &[f64], bare: &[f64], restic: &[f64], target: f64| {
            if bb.is_empty() || bare.is_empty() {
                let _ = writeln!(o, "| {title} | not run | — | — | — | ≤ {target} × | — |");
                return;
            }
            let ratio = median(bb) / median(bare);
            let _ = writeln!(
                o,
                "| {title} | {} | {} | {} | {ratio:.3} | ≤ {target} × | {} |",
                cell(bb),
                cell(bare),
                cell(restic),
                verdict(ratio <= target)
            );
        };
    row(
        &mut o,
        "nothing changed, warm (s)",
        &f.walls("nochange", "incremental"),
        &f.walls("nochange", "bare"),
        &f.walls("nochange", "restic"),
        t.nochange,
    );
    if let Some(c) = t.cold {
        row(
            &mut o,
            "nothing changed, cold: page cache dropped before each run (s)",
            &f.walls("cold", "incremental"),
            &f.walls("cold", "bare"),
            &f.walls("cold", "restic"),
            c,
        );
    }
    row(
        &mut o,
        "after a 1 % change (s)",
        &f.walls("mutate", "incremental"),
        &f.walls("mutate", "bare"),
        &f.walls("mutate", "restic"),
        t.mutate,
    );
    if let Some(full) = t.full {
        row(
            &mut o,
            "a full pass (`byteback backup --full`), nothing changed (s)",
            &f.walls("nochange", "full"),
            &f.walls("nochange", "bare"),
            &[],
            full,
        );
    }
    let initial_bb: Vec<f64> = r
        .samples
        .iter()
        .filter(|s| {
            s.phase == crate::report::Phase::Initial && s.tool == crate::report::Tool::Byteback
        })
        .map(|s| s.wall)
        .collect();
    if let Some(target) = t.initial {
        row(
            &mut o,
            "first full backup (s; byteback's snapshot exists, flushed, when it returns; bare rsync's writes are not flushed)",
            &initial_bb,
            &walls_of(r.initial_extra.iter(), "initial", "bare"),
            &walls_of(r.initial_extra.iter(), "initial", "restic"),
            target,
        );
    }
    if let Some(target) = t.restore {
        row(
            &mut o,
            &format!("restore of one file (`{}`, s)", f.restore_file),
            &f.walls("restore", "byteback"),
            &f.walls("restore", "bare"),
            &f.walls("restore", "restic"),
            target,
        );
    }
    if let Some(limit) = t.list_secs {
        let e = r
            .ops
            .walls(crate::ops::Op::List, "e", crate::ops::OpTool::Byteback);
        let snaps = r.ops.case("e").map_or(0, |c| c.snapshots);
        if e.is_empty() {
            let _ = writeln!(
                o,
                "| `list --all` of a glob across ten snapshots | not run | — | — | — | ≤ {limit} s | — |"
            );
        } else {
            let _ = writeln!(
                o,
                "| `byteback list --all` of a glob (`<src>/**/f*5.{{c,h}}`) across {snaps} snapshots (s) | {} | — | — | — | ≤ {limit} s | {} |",
                spread(&e),
                verdict(median(&e) <= limit)
            );
        }
    }
    if let Some(limit) = t.rss_mib {
        let peak = r
            .samples
            .iter()
            .filter(|s| s.tool == crate::report::Tool::Byteback)
            .map(|s| s.self_hwm_kib)
            .chain(
                f.samples
                    .iter()
                    .filter(|s| s.tool == "incremental" || s.tool == "full")
                    .map(|s| s.self_hwm_kib),
            )
            .max()
            .unwrap_or(0) as f64
            / 1024.0;
        let restic_peak = f
            .samples
            .iter()
            .chain(&r.initial_extra)
            .filter(|s| s.tool == "restic" && s.state != "restore")
            .map(|s| s.self_hwm_kib)
            .max()
            .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
            .unwrap_or_else(|| "—".into());
        let _ = writeln!(
            o,
            "| client peak memory: byteback's own VmHWM, max over every backup | {peak:.1} MiB | — | {restic_peak} | — | ≤ {limit} MiB | {} |",
            verdict(peak > 0.0 && peak <= limit)
        );
    }
    if let Some(p) = &r.plain {
        o.push_str(&p.target_row());
    }
    o
}

/// Which tool a rotation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Incremental,
    Full,
    Bare,
    Restic,
}

/// `sync; echo 3 > /proc/sys/vm/drop_caches`: the next run reads from disk.
fn drop_caches() {
    let _ = Command::new("sync").status();
    let _ = fs::write("/proc/sys/vm/drop_caches", "3");
}

/// restic's version line, or `None` when it is not installed.
pub fn restic_version() -> Option<String> {
    let out = Command::new("restic")
        .arg("version")
        .env_clear()
        .env("PATH", STD_PATH)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl Bench<'_> {
    fn restic_cmd(&self, repo: &Path, args: &[&str]) -> Command {
        let area = self.logs.parent().expect("the benchmark's area");
        let mut cmd = Command::new("restic");
        cmd.arg("--repo")
            .arg(repo)
            .args(args)
            .env_clear()
            .env("PATH", STD_PATH)
            .env("HOME", area)
            .env("RESTIC_PASSWORD", "byteback-bench")
            .env("RESTIC_CACHE_DIR", area.join("restic-cache"));
        cmd
    }

    /// The restic repository that follows the measured client's data.
    fn restic_repo(&self) -> PathBuf {
        self.fs.mount_point.join("restic")
    }

    /// Bare rsync's and restic's initial full backups beside (a)'s pair
    /// `i`, each into a fresh destination (pair 1's are kept: (f) goes on
    /// from them; the others are removed, untimed).
    pub fn initial_extra(&mut self, i: usize) {
        let order = if i % 2 == 1 {
            [Side::Bare, Side::Restic]
        } else {
            [Side::Restic, Side::Bare]
        };
        for side in order {
            match side {
                Side::Bare => {
                    let dest = if i == 1 {
                        "bare".to_owned()
                    } else {
                        format!("bare-initial{i}")
                    };
                    let (run, post_sync) = self.bare_run(&dest, &format!("initial-{i}-bare"));
                    eprintln!("bench:   {:<12} {:>8.3} s", "bare", run.wall);
                    self.report
                        .initial_extra
                        .push(sample("initial", "bare", i, &run, post_sync));
                    if i > 1 {
                        let _ = fs::remove_dir_all(self.floor_dir.join(&dest));
                        self.settle();
                    }
                }
                _ => {
                    if self.restic.is_none() {
                        continue;
                    }
                    let repo = if i == 1 {
                        self.restic_repo()
                    } else {
                        self.fs.mount_point.join(format!("restic-initial{i}"))
                    };
                    let out = self
                        .restic_cmd(&repo, &["init", "--quiet"])
                        .output()
                        .expect("run restic init");
                    assert!(out.status.success(), "restic init: {}", crate::text(&out));
                    let (run, post_sync) =
                        self.restic_backup(&repo, &format!("initial-{i}-restic"));
                    eprintln!("bench:   {:<12} {:>8.3} s", "restic", run.wall);
                    self.report
                        .initial_extra
                        .push(sample("initial", "restic", i, &run, post_sync));
                    if i > 1 {
                        let _ = fs::remove_dir_all(&repo);
                        self.settle();
                    }
                }
            }
        }
    }

    /// (f): `pairs` nothing-changed rotations (incremental, bare, full,
    /// restic), `cold` cold ones (incremental, bare, restic), `pairs`
    /// mutate steps each followed by one rotation, the stat walk, and
    /// `restores` restore rotations.
    pub fn index_phase(&mut self, data: &mut Dataset, pairs: usize, cold: usize, restores: usize) {
        let mut phase = IndexPhase::default();
        // Each side brought up to date, untimed: bare rsync's and restic's
        // copies are from the initial backup; byteback's first run after
        // the snapshots by hand is a full pass.
        self.bare(&mut phase, "warmup", 0, false);
        self.byteback(&mut phase, "warmup", 0, false);
        self.restic(&mut phase, "warmup", 0, false);
        let rotate = |sides: &[Side], i: usize| -> Vec<Side> {
            let k = (i - 1) % sides.len();
            sides[k..].iter().chain(&sides[..k]).copied().collect()
        };
        let all = [Side::Incremental, Side::Bare, Side::Full, Side::Restic];
        let three = [Side::Incremental, Side::Bare, Side::Restic];
        for i in 1..=pairs {
            eprintln!("bench: (f) nothing changed, rotation {i}/{pairs}");
            for side in rotate(&all, i) {
                self.side(&mut phase, side, "nochange", i, false);
            }
        }
        for i in 1..=cold {
            eprintln!("bench: (f) nothing changed, cold cache, rotation {i}/{cold}");
            for side in rotate(&three, i) {
                self.side(&mut phase, side, "cold", i, true);
            }
        }
        for i in 1..=pairs {
            eprintln!("bench: (f) 1% changed, rotation {i}/{pairs}");
            data.mutate();
            for side in rotate(&three, i) {
                self.side(&mut phase, side, "mutate", i, false);
            }
        }
        data.mutate();
        // The full pass sees the change once; the others are brought up
        // to date untimed.
        self.byteback(&mut phase, "mutate", 0, true);
        self.bare(&mut phase, "warmup", 0, false);
        self.restic(&mut phase, "warmup", 0, false);
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
            drop_caches();
            let t = Instant::now();
            let _ = byteback::client::index::walk(
                std::slice::from_ref(&src),
                &[],
                byteback::client::index::now_ns(),
            );
            phase.walk_cold.push(t.elapsed().as_secs_f64());
        }
        if restores > 0 {
            self.restore_three(&mut phase, data, restores);
        }
        self.report.index = Some(phase);
    }

    fn side(
        &mut self,
        phase: &mut IndexPhase,
        side: Side,
        state: &'static str,
        i: usize,
        cold: bool,
    ) {
        if side == Side::Restic && self.restic.is_none() {
            return;
        }
        if cold {
            drop_caches();
        }
        match side {
            Side::Incremental => self.byteback(phase, state, i, false),
            Side::Full => self.byteback(phase, state, i, true),
            Side::Bare => self.bare(phase, state, i, true),
            Side::Restic => self.restic(phase, state, i, true),
        }
    }

    fn byteback(&mut self, phase: &mut IndexPhase, state: &'static str, i: usize, full: bool) {
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
        let post_sync = self.settle();
        let how = run
            .stdout
            .lines()
            .find(|l| l.starts_with("Backup complete"))
            .and_then(|l| l.rsplit(", ").next())
            .and_then(|how| how.strip_suffix(')'))
            .unwrap_or("")
            .to_owned();
        if let Some(name) = run
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("Backup complete: snapshot "))
            .and_then(|rest| rest.split(' ').next())
        {
            self.newest = name.to_owned();
        }
        eprintln!(
            "bench:   {:<12} {:>8.3} s  ({how})",
            if full { "full" } else { "incremental" },
            run.wall
        );
        if state != "warmup" {
            let mut s = sample(
                state,
                if full { "full" } else { "incremental" },
                i,
                &run,
                post_sync,
            );
            s.how = how;
            phase.samples.push(s);
        }
    }

    /// Bare `rsync -a` of the source into `<store>/floor/DEST` through the
    /// floor key; the run and its post-run sync.
    fn bare_run(&mut self, dest: &str, what: &str) -> (Run, f64) {
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
        let label = self.next_label(what);
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
        .arg(format!("{remote}{dest}/"))
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
        let post_sync = self.settle();
        (run, post_sync)
    }

    fn bare(&mut self, phase: &mut IndexPhase, state: &'static str, i: usize, timed: bool) {
        let (run, post_sync) = self.bare_run("bare", &format!("index-{state}-bare"));
        eprintln!("bench:   {:<12} {:>8.3} s", "bare", run.wall);
        if timed {
            phase
                .samples
                .push(sample(state, "bare", i, &run, post_sync));
        }
    }

    fn restic_backup(&mut self, repo: &Path, what: &str) -> (Run, f64) {
        let label = self.next_label(what);
        let src = self.src.to_string_lossy().into_owned();
        let mut cmd = self.restic_cmd(repo, &["backup", "--quiet", &src]);
        let run = measure(&mut cmd, &self.logs, &label, &["restic"]);
        assert_eq!(run.code, 0, "{label}: {}", run.stderr);
        let post_sync = self.settle();
        (run, post_sync)
    }

    fn restic(&mut self, phase: &mut IndexPhase, state: &'static str, i: usize, timed: bool) {
        if self.restic.is_none() {
            return;
        }
        let repo = self.restic_repo();
        let (run, post_sync) = self.restic_backup(&repo, &format!("index-{state}-restic"));
        eprintln!("bench:   {:<12} {:>8.3} s", "restic", run.wall);
        if timed {
            phase
                .samples
                .push(sample(state, "restic", i, &run, post_sync));
        }
    }

    /// The largest file restored `rounds` times by each of byteback, bare
    /// rsync (from `<store>/floor/bare`) and restic, after an untimed
    /// warm-up of each; every copy checked with `cmp` and removed.
    fn restore_three(&mut self, phase: &mut IndexPhase, data: &Dataset, rounds: usize) {
        let (file, size) = data.largest_file();
        let rel = file
            .strip_prefix(&self.src)
            .expect("the largest file is in the source")
            .to_owned();
        phase.restore_file = rel.to_string_lossy().into_owned();
        phase.restore_size = size;
        let root = self.logs.with_file_name("restore-f");
        fs::create_dir_all(&root).expect("create the restore directory");
        let sides = ["byteback", "bare", "restic"];
        for tool in sides {
            self.restore_one(tool, &root, &file, &rel, 0, None);
        }
        for i in 1..=rounds {
            eprintln!("bench: (f) restore of one file, rotation {i}/{rounds}");
            let k = (i - 1) % sides.len();
            for tool in sides[k..].iter().chain(&sides[..k]) {
                self.restore_one(tool, &root, &file, &rel, i, Some(&mut *phase));
            }
        }
        let _ = fs::remove_dir_all(&root);
    }

    fn restore_one(
        &mut self,
        tool: &'static str,
        root: &Path,
        file: &Path,
        rel: &Path,
        i: usize,
        phase: Option<&mut IndexPhase>,
    ) {
        if tool == "restic" && self.restic.is_none() {
            return;
        }
        let label = self.next_label(&format!("restore-f-{i}-{tool}"));
        let into = root.join(&label);
        fs::create_dir(&into).expect("create a restore target");
        let into_s = into.to_string_lossy().into_owned();
        let file_s = file.to_string_lossy().into_owned();
        let (run, restored) = match tool {
            "byteback" => {
                let newest = self.newest.clone();
                let mut cmd =
                    self.client(&["restore", "--snapshot", &newest, "--into", &into_s, &file_s]);
                let run = measure(&mut cmd, &self.logs, &label, &["byteback", "rsync", "ssh"]);
                let restored = into
                    .join(&newest)
                    .join(file.strip_prefix("/").expect("absolute"));
                (run, restored)
            }
            "bare" => {
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
                let mut cmd = Command::new("rsync");
                cmd.args(["-a", "--numeric-ids", "--rsh", &rsh])
                    .arg(format!("{remote}bare/{}", rel.display()))
                    .arg(format!("{into_s}/"))
                    .env_clear()
                    .env("PATH", STD_PATH);
                let run = measure(&mut cmd, &self.logs, &label, &["rsync", "ssh"]);
                let restored = into.join(file.file_name().expect("a file name"));
                (run, restored)
            }
            _ => {
                let repo = self.restic_repo();
                let mut cmd = self.restic_cmd(
                    &repo,
                    &[
                        "restore",
                        "latest",
                        "--quiet",
                        "--target",
                        &into_s,
                        "--include",
                        &file_s,
                    ],
                );
                let run = measure(&mut cmd, &self.logs, &label, &["restic"]);
                let restored = into.join(file.strip_prefix("/").expect("absolute"));
                (run, restored)
            }
        };
        assert_eq!(run.code, 0, "{label}: {}\n{}", run.stdout, run.stderr);
        let same = Command::new("cmp")
            .arg("-s")
            .arg(file)
            .arg(&restored)
            .status()
            .expect("run cmp");
        assert!(
            same.success(),
            "{label}: {restored:?} differs from {file:?}"
        );
        let alloc = fs::metadata(&restored)
            .map(|m| m.blocks() * 512)
            .unwrap_or(0);
        let post_sync = self.settle();
        let _ = fs::remove_dir_all(&into);
        self.settle();
        eprintln!(
            "bench:   restore {tool:<8} {:>8.3} s  ({:.1} MiB allocated)",
            run.wall,
            alloc as f64 / 1048576.0
        );
        if let Some(phase) = phase {
            phase
                .samples
                .push(sample("restore", tool, i, &run, post_sync));
        }
    }
}

fn sample(
    state: &'static str,
    tool: &'static str,
    index: usize,
    run: &Run,
    post_sync: f64,
) -> IndexSample {
    IndexSample {
        state,
        tool,
        index,
        wall: run.wall,
        post_sync,
        server_cpu: run.watched_life().map(|(_, cpu)| cpu),
        how: String::new(),
        self_hwm_kib: run.self_hwm_kib(),
    }
}
