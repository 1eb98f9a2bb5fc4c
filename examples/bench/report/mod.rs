//! The samples, and the Markdown report and CSV written from them.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

mod restore_list;

use crate::dataset::{MutateStats, Profile, TreeStats};
use crate::measure::Run;

const MIB: f64 = 1024.0 * 1024.0;

/// Targets (see bench/README.md).
const TARGET_INITIAL: f64 = 1.05;
const TARGET_NOCHANGE: f64 = 1.25;
const TARGET_MUTATE: f64 = 1.15;
const TARGET_SPACE: f64 = 1.2;
const TARGET_RSS_KIB: u64 = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Initial,
    NoChange,
    Mutate,
}

impl Phase {
    pub fn key(self) -> &'static str {
        match self {
            Phase::Initial => "initial",
            Phase::NoChange => "nochange",
            Phase::Mutate => "mutate",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Phase::Initial => "(a) initial full backup",
            Phase::NoChange => "(b) backup, nothing changed",
            Phase::Mutate => "(c) backup after one mutate step",
        }
    }

    fn target(self) -> f64 {
        match self {
            Phase::Initial => TARGET_INITIAL,
            Phase::NoChange => TARGET_NOCHANGE,
            Phase::Mutate => TARGET_MUTATE,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Byteback,
    Floor,
}

impl Tool {
    pub fn key(self) -> &'static str {
        match self {
            Tool::Byteback => "byteback",
            Tool::Floor => "floor",
        }
    }
}

/// One timed run.
#[derive(Debug, Clone)]
pub struct Sample {
    pub phase: Phase,
    pub index: usize,
    pub tool: Tool,
    /// 1 if it ran first in its pair, 2 if second.
    pub position: usize,
    pub wall: f64,
    pub code: i32,
    /// byteback only, from /proc polling (each ± the 5 ms poll interval):
    /// start to ping's ssh, ping's ssh, rsync, complete's ssh, the rest.
    pub startup: Option<f64>,
    pub ping: Option<f64>,
    pub rsync: Option<f64>,
    pub complete: Option<f64>,
    pub other: Option<f64>,
    /// With a shared ssh connection: from the master's start to the ping.
    pub connect: Option<f64>,
    pub post_sync: f64,
    /// The measured process's own peak (byteback; rsync for the floor).
    pub self_hwm_kib: u64,
    pub rsync_hwm_kib: u64,
    pub ssh_hwm_kib: u64,
    pub wait4_maxrss_kib: u64,
    pub cpu_user: f64,
    pub cpu_sys: f64,
    pub load1: f64,
    pub poll_cpu: f64,
    pub used_before: u64,
    pub used_after: u64,
    pub snapshot: String,
}

impl Sample {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        phase: Phase,
        index: usize,
        tool: Tool,
        position: usize,
        run: &Run,
        post_sync: f64,
        load1: f64,
        used_before: u64,
        used_after: u64,
    ) -> Sample {
        let mut s = Sample {
            phase,
            index,
            tool,
            position,
            wall: run.wall,
            code: run.code,
            startup: None,
            ping: None,
            rsync: None,
            complete: None,
            other: None,
            connect: None,
            post_sync,
            self_hwm_kib: run.self_hwm_kib(),
            rsync_hwm_kib: run.hwm_of("rsync"),
            ssh_hwm_kib: run.hwm_of("ssh"),
            wait4_maxrss_kib: run.wait4_maxrss_kib,
            cpu_user: run.cpu_user,
            cpu_sys: run.cpu_sys,
            load1,
            poll_cpu: run.poll_cpu,
            used_before,
            used_after,
            snapshot: run
                .stdout
                .lines()
                .find_map(|l| l.strip_prefix("Backup complete: snapshot "))
                .and_then(|rest| rest.split(' ').next())
                .unwrap_or("")
                .to_owned(),
        };
        match tool {
            Tool::Floor => {
                // The measured process is rsync itself.
                s.rsync_hwm_kib = s.self_hwm_kib;
                s.rsync = Some(run.wall);
            }
            Tool::Byteback => {
                let rsync = run.children("rsync");
                let ssh = run.children("ssh");
                // A backup may run rsync twice (its files with holes with
                // `--sparse`, then the rest): *rsync* spans both.
                let span = rsync.first().map(|first| {
                    let last = rsync.iter().map(|p| p.last).fold(first.last, f64::max);
                    Span {
                        first: first.first,
                        last,
                    }
                });
                if let Some(r) = span {
                    // An ssh alive from before rsync until after it is a
                    // shared connection (ControlMaster), not a request.
                    let master = ssh.iter().find(|p| p.first < r.first && p.last > r.last);
                    let ping = ssh.iter().find(|p| p.last <= r.first);
                    let complete = ssh.iter().find(|p| p.first >= r.last);
                    if let (Some(p), Some(c)) = (ping, complete) {
                        let first = ssh.iter().map(|p| p.first).fold(f64::INFINITY, f64::min);
                        s.startup = Some(first);
                        s.connect = master.map(|m| p.first - m.first);
                        s.ping = Some(p.last - p.first);
                        s.rsync = Some(r.last - r.first);
                        s.complete = Some(c.last - c.first);
                        s.other = Some(
                            run.wall
                                - first
                                - s.connect.unwrap_or(0.0)
                                - (p.last - p.first)
                                - (r.last - r.first)
                                - (c.last - c.first),
                        );
                    }
                }
            }
        }
        s
    }
}

/// When a process (or a run of them) was first and last seen, seconds.
struct Span {
    first: f64,
    last: f64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Du {
    /// Every reference counted, as if nothing were shared.
    pub total: u64,
    pub exclusive: u64,
    pub set_shared: u64,
}

impl Du {
    /// Data on disk for that tree: each extent once.
    pub fn stored(&self) -> u64 {
        self.exclusive + self.set_shared
    }
}

#[derive(Debug, Clone)]
pub struct SpacePoint {
    pub generation: usize,
    pub changed_cumulative: u64,
    pub byteback: Du,
    pub floor: Du,
    pub fs_used: u64,
    pub byteback_statvfs_growth: i64,
    pub floor_statvfs_growth: i64,
    pub snapshots: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Micro {
    pub ssh_noop: Vec<f64>,
    pub ssh_ping: Vec<f64>,
    pub client_dry_run: Vec<f64>,
    pub btrfs_usage: Vec<f64>,
    pub snapshot_by_hand: Vec<f64>,
    pub server_ping_local: Vec<f64>,
    pub ssh_noop_curve25519: Vec<f64>,
    pub ssh_noop_multiplexed: Vec<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub nproc: String,
    pub cpu: String,
    pub mem: String,
    pub kernel: String,
    pub rsync: String,
    pub ssh: String,
    pub btrfs: String,
    pub rootfs: String,
    /// The checkout's commit, and whether src/ had uncommitted changes.
    pub source: String,
    pub load_start: (f64, f64, f64),
    pub load_end: (f64, f64, f64),
}

fn cmd_text(argv: &[&str]) -> String {
    match Command::new(argv[0]).args(&argv[1..]).output() {
        Ok(o) => {
            let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
            t.push_str(&String::from_utf8_lossy(&o.stderr));
            t.lines().next().unwrap_or("").trim().to_owned()
        }
        Err(e) => format!("unknown ({e})"),
    }
}

pub fn loadavg() -> (f64, f64, f64) {
    let s = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let n: Vec<f64> = s.split_whitespace().take(3).flat_map(str::parse).collect();
    (
        n.first().copied().unwrap_or(0.0),
        n.get(1).copied().unwrap_or(0.0),
        n.get(2).copied().unwrap_or(0.0),
    )
}

impl Machine {
    /// `checkout`: the source tree the binaries were built from (a git
    /// checkout, for the commit and whether its src/ is clean).
    pub fn collect(&mut self, checkout: &Path) {
        self.nproc = cmd_text(&["nproc"]);
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        self.cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        self.mem = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kib| format!("{:.1} GiB", kib / MIB))
            .unwrap_or_default();
        self.kernel = cmd_text(&["uname", "-srm"]);
        self.rsync = cmd_text(&["rsync", "--version"]);
        self.ssh = cmd_text(&["ssh", "-V"]);
        self.btrfs = cmd_text(&["btrfs", "--version"]);
        self.rootfs = cmd_text(&[
            "findmnt",
            "-n",
            "-o",
            "SOURCE,FSTYPE",
            "--target",
            crate::support::BASE_DIR,
        ]);
        self.load_start = loadavg();
        let dir = &*checkout.to_string_lossy();
        let commit = cmd_text(&["git", "-C", dir, "log", "-1", "--format=%h %s"]);
        let dirty = Command::new("git")
            .args([
                "-C",
                dir,
                "status",
                "--porcelain",
                "--",
                "src",
                "Cargo.toml",
                "Cargo.lock",
            ])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false);
        self.source = if commit.is_empty() || commit.starts_with("fatal") {
            "unknown (not a git checkout)".into()
        } else if dirty {
            format!("commit {commit}, **plus uncommitted changes in src/ or Cargo.***")
        } else {
            format!("commit {commit} (src/ clean)")
        };
    }
}

pub struct Report {
    pub profile: Profile,
    pub seed: u64,
    pub machine: Machine,
    pub binaries: String,
    pub tree: TreeStats,
    pub generate_secs: f64,
    pub total_secs: f64,
    pub samples: Vec<Sample>,
    pub mutations: Vec<MutateStats>,
    pub space: Vec<SpacePoint>,
    pub micro: Micro,
    pub floor_argv: Vec<String>,
    /// The source tree's absolute path (shown as `<src>` in patterns).
    pub src_dir: String,
    /// (d) and (e).
    pub ops: crate::ops::Ops,
    /// (f), index mode against bare rsync and restic.
    pub index: Option<crate::index::IndexPhase>,
    /// Bare rsync's and restic's initial full backups beside (a)'s pairs.
    pub initial_extra: Vec<crate::index::IndexSample>,
    /// restic's version, `None` when it is not installed.
    pub restic: Option<String>,
    /// (g), the plain store.
    pub plain: Option<crate::plain::PlainPhase>,
    /// (h), the change index at scale.
    pub sim: Vec<crate::sim::SimPoint>,
}

pub(crate) fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

pub(crate) fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

pub(crate) fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// "median (min–max)" in seconds.
pub(crate) fn spread(v: &[f64]) -> String {
    if v.len() == 1 {
        return format!("{:.3}", v[0]);
    }
    format!("{:.3} ({:.3}–{:.3})", median(v), min(v), max(v))
}

pub(crate) fn ms_spread(v: &[f64]) -> String {
    if v.is_empty() {
        return "n/a".into();
    }
    let ms: Vec<f64> = v.iter().map(|x| x * 1000.0).collect();
    format!("{:.1} ({:.1}–{:.1})", median(&ms), min(&ms), max(&ms))
}

pub(crate) fn mib(b: f64) -> String {
    format!("{:.1} MiB", b / MIB)
}

pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**MISSED**" }
}

impl Report {
    pub fn new(profile: &Profile, seed: u64) -> Report {
        Report {
            profile: profile.clone(),
            seed,
            machine: Machine::default(),
            binaries: String::new(),
            tree: TreeStats::default(),
            generate_secs: 0.0,
            total_secs: 0.0,
            samples: Vec::new(),
            mutations: Vec::new(),
            space: Vec::new(),
            micro: Micro::default(),
            floor_argv: Vec::new(),
            src_dir: String::new(),
            ops: crate::ops::Ops::default(),
            index: None,
            initial_extra: Vec::new(),
            restic: None,
            plain: None,
            sim: Vec::new(),
        }
    }

    /// Sum of statvfs used-space changes over one tool's runs so far.
    pub fn statvfs_growth(&self, tool: Tool) -> i64 {
        self.samples
            .iter()
            // Only the runs into the destination whose history is measured.
            .filter(|s| s.tool == tool && (s.phase != Phase::Initial || s.index == 1))
            .map(|s| s.used_after as i64 - s.used_before as i64)
            .sum()
    }

    fn of(&self, phase: Phase, tool: Tool) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.phase == phase && s.tool == tool)
            .collect()
    }

    fn walls(&self, phase: Phase, tool: Tool) -> Vec<f64> {
        self.of(phase, tool).iter().map(|s| s.wall).collect()
    }

    /// (index, byteback, floor, ratio) per pair.
    fn pairs(&self, phase: Phase) -> Vec<(usize, &Sample, &Sample, f64)> {
        let bb = self.of(phase, Tool::Byteback);
        let fl = self.of(phase, Tool::Floor);
        bb.iter()
            .filter_map(|b| {
                let f = fl.iter().find(|f| f.index == b.index)?;
                Some((b.index, *b, *f, b.wall / f.wall))
            })
            .collect()
    }

    fn ratios(&self, phase: Phase) -> Vec<f64> {
        self.pairs(phase).iter().map(|p| p.3).collect()
    }

    pub fn write(&self, md: &Path, csv: &Path) {
        for p in [md, csv] {
            if let Some(dir) = p.parent() {
                fs::create_dir_all(dir).expect("create output directory");
            }
        }
        fs::write(md, self.markdown()).expect("write report");
        fs::write(csv, self.csv()).expect("write csv");
    }

    fn csv(&self) -> String {
        let mut out = String::from(
            "run,phase,index,tool,position,wall_s,exit,startup_s,connect_s,ping_s,rsync_s,complete_s,other_s,\
             post_run_sync_s,self_peak_rss_kib,rsync_peak_rss_kib,ssh_peak_rss_kib,wait4_maxrss_kib,\
             cpu_user_s,cpu_sys_s,load1,poller_cpu_s,fs_used_before,fs_used_after,snapshot,\
             case,pattern,rows,paths,snapshots,query_s,server_peak_rss_kib,restored_alloc_bytes,\
             server_life_s,server_cpu_s\n",
        );
        let o = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.4}"));
        for (i, s) in self.samples.iter().enumerate() {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{:.4},{},{},{},{},{},{},{},{:.4},{},{},{},{},{:.3},{:.3},{:.2},{:.2},{},{},{},,,,,,,,,,",
                i + 1,
                s.phase.key(),
                s.index,
                s.tool.key(),
                s.position,
                s.wall,
                s.code,
                o(s.startup),
                o(s.connect),
                o(s.ping),
                o(s.rsync),
                o(s.complete),
                o(s.other),
                s.post_sync,
                s.self_hwm_kib,
                s.rsync_hwm_kib,
                s.ssh_hwm_kib,
                s.wait4_maxrss_kib,
                s.cpu_user,
                s.cpu_sys,
                s.load1,
                s.poll_cpu,
                s.used_before,
                s.used_after,
                s.snapshot
            );
        }
        self.ops_csv(&mut out, self.samples.len() + 1);
        // (f)'s runs and bare rsync's and restic's initial backups: phase
        // `f-<state>` (`f-initial` for those), tool as (f) names it.
        let first = self.samples.len() + self.ops.samples.len() + 1;
        let f = self.index.iter().flat_map(|f| &f.samples);
        for (n, s) in (first..).zip(self.initial_extra.iter().chain(f)) {
            let _ = writeln!(
                out,
                "{n},f-{},{},{},,{:.4},0,,,,,,,{:.4},{},,,,,,,,,,,,,,,,,,,,{}",
                s.state,
                s.index,
                s.tool,
                s.wall,
                s.post_sync,
                s.self_hwm_kib,
                s.server_cpu.map_or(String::new(), |v| format!("{v:.4}")),
            );
        }
        out
    }

    fn markdown(&self) -> String {
        let mut o = String::new();
        let m = &self.machine;
        let t = &self.tree;
        let now = jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC");
        let _ = writeln!(o, "# byteback benchmark results\n");
        let _ = writeln!(
            o,
            "Profile **{}**, seed {:#x}, run {now}; the whole run (dataset, set-up, every sample, \
             the micro-measurements, (d) and (e); not the clean-up) took **{:.0} s**. Command:\n\n```\ncargo run --release \
             --example bench --{}\n```\n\nHow to read this: [README.md](README.md). \
             Raw samples: [results.csv](results.csv).\n",
            self.profile.name,
            self.seed,
            self.total_secs,
            std::env::args()
                .skip(1)
                .map(|a| format!(" {a}"))
                .collect::<String>()
        );

        // ---- Summary ------------------------------------------------------
        let _ = writeln!(o, "## Summary against the targets\n");
        let _ = writeln!(
            o,
            "| figure | byteback | floor (bare rsync) | byteback / floor, per pair: median (min–max) | target | |\n|---|---|---|---|---|---|"
        );
        for phase in [Phase::Initial, Phase::NoChange, Phase::Mutate] {
            let r = self.ratios(phase);
            if r.is_empty() {
                continue;
            }
            let med = median(&r);
            let ratio = if r.len() == 1 {
                format!("{med:.3}")
            } else {
                format!("{med:.3} ({:.3}–{:.3})", min(&r), max(&r))
            };
            let _ = writeln!(
                o,
                "| {} — wall seconds, median (min–max) of {} | {} | {} | {ratio} | ≤ {:.2}× | {} |",
                phase.title(),
                r.len(),
                spread(&self.walls(phase, Tool::Byteback)),
                spread(&self.walls(phase, Tool::Floor)),
                phase.target(),
                verdict(med <= phase.target())
            );
        }
        self.ops_summary_rows(&mut o);
        if let Some((first, last)) = self.space.first().zip(self.space.last()) {
            let base = t.data_bytes as f64;
            let allowed = TARGET_SPACE * (base + last.changed_cumulative as f64);
            let used = last.byteback.stored() as f64;
            let _ = writeln!(
                o,
                "| space after {} mutate+backup generations (`btrfs filesystem du`, each extent once) | {} ({} after the initial backup) | {} (current only, no history) | {:.3} of (initial data + changed bytes) = {} + {} | ≤ 1.2 × (changed + initial) = {} | {} |",
                last.generation,
                mib(used),
                mib(first.byteback.stored() as f64),
                mib(last.floor.stored() as f64),
                used / (base + last.changed_cumulative as f64),
                mib(base),
                mib(last.changed_cumulative as f64),
                mib(allowed),
                verdict(used <= allowed)
            );
        }
        let peak = self
            .of_tool(Tool::Byteback)
            .iter()
            .map(|s| s.self_hwm_kib)
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            o,
            "| byteback process's own peak RSS (VmHWM), max over all runs | {:.1} MiB | — | — | ≤ 16 MiB | {} |",
            peak as f64 / 1024.0,
            verdict(peak > 0 && peak <= TARGET_RSS_KIB)
        );
        let _ = writeln!(
            o,
            "\nRatios are byteback's wall time over the floor's in the same pair (same \
             data state, run back to back, order alternating); the verdict uses the median \
             ratio. Missed targets are marked **MISSED**."
        );
        o.push_str(&crate::index::targets_markdown(self));
        o.push('\n');

        // ---- Machine --------------------------------------------------------
        let _ = writeln!(o, "## Machine\n");
        let _ = writeln!(o, "| | |\n|---|---|");
        let rows = [
            ("CPUs (nproc)", m.nproc.clone()),
            ("CPU", m.cpu.clone()),
            ("memory", m.mem.clone()),
            ("kernel", m.kernel.clone()),
            ("rsync", m.rsync.clone()),
            ("ssh", m.ssh.clone()),
            ("btrfs-progs", m.btrfs.clone()),
            (
                "filesystem holding the source and the loop image",
                m.rootfs.clone(),
            ),
            (
                "load average at start / end (1, 5, 15 min)",
                format!(
                    "{:.2} {:.2} {:.2} / {:.2} {:.2} {:.2}",
                    m.load_start.0,
                    m.load_start.1,
                    m.load_start.2,
                    m.load_end.0,
                    m.load_end.1,
                    m.load_end.2
                ),
            ),
            ("binaries", self.binaries.clone()),
            ("source", m.source.clone()),
        ];
        for (k, v) in rows {
            let _ = writeln!(o, "| {k} | {v} |");
        }
        let loads: Vec<f64> = self
            .samples
            .iter()
            .map(|s| s.load1)
            .chain(self.ops.samples.iter().map(|s| s.load1))
            .collect();
        let _ = writeln!(
            o,
            "\n1-minute load average just before each sample (backups, restores, listings): \
             median {:.2}, max {:.2} \
             (other work on the machine shows up here; alternating the order spreads it over \
             both sides).\n",
            median(&loads),
            max(&loads)
        );
        let share = |tool: Tool| -> f64 {
            let ss = self.of_tool(tool);
            let cpu: f64 = ss.iter().map(|s| s.poll_cpu).sum();
            let wall: f64 = ss.iter().map(|s| s.wall).sum();
            100.0 * cpu / wall.max(1e-9)
        };
        let _ = writeln!(
            o,
            "The benchmark's own /proc polling thread used {:.1}% of one CPU during byteback \
             runs and {:.1}% during floor runs (100 Hz tick accounting, so coarse).\n",
            share(Tool::Byteback),
            share(Tool::Floor)
        );

        // ---- Dataset --------------------------------------------------------
        let _ = writeln!(o, "## Dataset\n");
        let _ = writeln!(
            o,
            "Generated in {:.1} s from the seed: {} regular files ({} of 0–4 KiB, {} of 4–256 KiB \
             including the log, {} of 4–32 MiB, and the disk image), {} directories, {} symlinks, \
             {} extra hard links. {} of file data ({} apparent); the disk image is {} apparent \
             with {} of 1 MiB holes.\n",
            self.generate_secs,
            t.regular_files,
            t.tiny,
            t.medium,
            t.large,
            t.dirs,
            t.symlinks,
            t.hardlinks,
            mib(t.data_bytes as f64),
            mib(t.apparent_bytes as f64),
            mib(t.image_bytes as f64),
            mib(t.image_hole_bytes as f64),
        );
        let _ = writeln!(
            o,
            "| mutate step | rewritten files (bytes) | log appended | image 4 KiB blocks rewritten | added files (bytes) | deleted files (bytes) | changed bytes |\n|---|---|---|---|---|---|---|"
        );
        for (i, st) in self.mutations.iter().enumerate() {
            let _ = writeln!(
                o,
                "| {} | {} ({}) | {} | {} ({}) | {} ({}) | {} ({}) | {} |",
                i + 1,
                st.rewritten_files,
                mib(st.rewritten_bytes as f64),
                mib(st.appended_bytes as f64),
                st.image_blocks,
                mib(st.image_bytes as f64),
                st.added_files,
                mib(st.added_bytes as f64),
                st.deleted_files,
                mib(st.deleted_bytes as f64),
                mib(st.changed_bytes() as f64)
            );
        }

        // ---- Floor ----------------------------------------------------------
        let _ = writeln!(o, "\n## The floor\n");
        let _ = writeln!(
            o,
            "Bare rsync with byteback's own argv (its full pass's, read from /proc while \
             byteback's first backup ran, with `--sparse`: byteback sends files with holes in \
             a `--sparse` run of their own before the pass, so the floor keeps holes too, in \
             one run), the same ssh options, the same sshd and server user, into the plain \
             directory `<store>/floor/current` on the same btrfs. Only the key differs: the \
             floor's key has a forced command that `cd`s into `<store>/floor` and `exec`s \
             `rsync --server --fake-super <rsync's own options>` — no ping, no snapshot, no \
             byteback-server — and any connection-sharing options (`ControlPath`, \
             `ControlMaster`, `ControlPersist`) are dropped from `--rsh`, so the floor makes \
             one plain ssh connection. For (d) the same forced command serves a pull: when the \
             request has `--sender`, it `exec`s `rsync --server --sender --fake-super \
             <rsync's own options and paths>` there, the standard sender (see (d) below). The \
             backups' argv:\n\n```\n{}\n```\n",
            self.floor_argv
                .iter()
                .map(|a| if a.contains(' ') {
                    format!("'{a}'")
                } else {
                    a.clone()
                })
                .collect::<Vec<_>>()
                .join(" ")
        );

        // ---- Per pair --------------------------------------------------------
        let _ = writeln!(o, "## Every pair\n");
        let _ = writeln!(
            o,
            "Wall seconds. *post-run sync* is the untimed `sync` after each run (so no run \
             pays for the previous one's writeback): byteback's snapshot already flushes what \
             rsync wrote, the floor leaves it dirty.\n"
        );
        let _ = writeln!(
            o,
            "| phase | # | first | byteback | floor | ratio | byteback post-run sync | floor post-run sync | load before byteback / floor |\n|---|---|---|---|---|---|---|---|---|"
        );
        for phase in [Phase::Initial, Phase::NoChange, Phase::Mutate] {
            for (i, b, f, r) in self.pairs(phase) {
                let _ = writeln!(
                    o,
                    "| {} | {i} | {} | {:.3} | {:.3} | {r:.3} | {:.3} | {:.3} | {:.2} / {:.2} |",
                    phase.key(),
                    if b.position == 1 { "byteback" } else { "floor" },
                    b.wall,
                    f.wall,
                    b.post_sync,
                    f.post_sync,
                    b.load1,
                    f.load1
                );
            }
        }
        let _ = writeln!(
            o,
            "\nFor information (no target): the ratios if each side had to make its data \
             durable, i.e. (wall + post-run sync) / (wall + post-run sync), per pair, median \
             (min–max): {}.\n",
            [Phase::Initial, Phase::NoChange, Phase::Mutate]
                .iter()
                .map(|&ph| {
                    let r: Vec<f64> = self
                        .pairs(ph)
                        .iter()
                        .map(|p| (p.1.wall + p.1.post_sync) / (p.2.wall + p.2.post_sync))
                        .collect();
                    format!(
                        "{} {:.3} ({:.3}–{:.3})",
                        ph.key(),
                        median(&r),
                        min(&r),
                        max(&r)
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        );

        // ---- Breakdown --------------------------------------------------------
        let _ = writeln!(o, "\n## Where byteback's time goes\n");
        let _ = writeln!(
            o,
            "From polling byteback's process tree every 5 ms: *start* is spawn until its \
             first ssh is seen (config, mountinfo, lock); *connect*, only when byteback \
             shares one ssh connection (ControlMaster), is from that master ssh's start to \
             the ping; *ping* and *complete* are the lifetimes of those two ssh processes \
             (without a shared connection each is a whole ssh connection: handshake, sshd, \
             forced command, byteback-server); *rsync* is byteback's rsync; *other* the \
             gaps and exit. Each ± a few ms. Milliseconds, median (min–max).\n"
        );
        let _ = writeln!(
            o,
            "| phase | start | connect | ping | rsync (byteback) | rsync (floor, whole run) | complete | other | byteback − floor |\n|---|---|---|---|---|---|---|---|---|"
        );
        for phase in [Phase::Initial, Phase::NoChange, Phase::Mutate] {
            let bb = self.of(phase, Tool::Byteback);
            if bb.is_empty() {
                continue;
            }
            let pick = |f: fn(&Sample) -> Option<f64>| -> Vec<f64> {
                bb.iter().filter_map(|s| f(s)).collect()
            };
            let diff: Vec<f64> = self
                .pairs(phase)
                .iter()
                .map(|p| p.1.wall - p.2.wall)
                .collect();
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                phase.key(),
                ms_spread(&pick(|s| s.startup)),
                ms_spread(&pick(|s| s.connect)),
                ms_spread(&pick(|s| s.ping)),
                ms_spread(&pick(|s| s.rsync)),
                ms_spread(&self.walls(phase, Tool::Floor)),
                ms_spread(&pick(|s| s.complete)),
                ms_spread(&pick(|s| s.other)),
                ms_spread(&diff)
            );
        }
        let mi = &self.micro;
        let _ = writeln!(
            o,
            "\nSeparate measurements after the samples ({} each, snapshots by hand 5; ms, median (min–max)):\n",
            mi.ssh_noop.len()
        );
        let _ = writeln!(o, "| what | ms |\n|---|---|");
        let rows = [
            (
                "ssh round trip, floor key, forced command does nothing (`true`)",
                &mi.ssh_noop,
            ),
            (
                "ssh round trip `byteback ping` with the client key (what byteback's ping does)",
                &mi.ssh_ping,
            ),
            (
                "`byteback backup --dry-run` (client start-up: config, mountinfo, exclusions)",
                &mi.client_dry_run,
            ),
            (
                "`btrfs filesystem usage -b <store>` as the server user",
                &mi.btrfs_usage,
            ),
            (
                "`byteback-server snapshot --at …` by hand, nothing dirty (no ssh)",
                &mi.snapshot_by_hand,
            ),
            (
                "`byteback-server receive` serving `byteback ping` locally as the server user (no ssh)",
                &mi.server_ping_local,
            ),
            (
                "ssh round trip as the first row, but `-o KexAlgorithms=curve25519-sha256` (not post-quantum)",
                &mi.ssh_noop_curve25519,
            ),
            (
                "ssh round trip as the first row, over an open `ControlMaster` connection (`-o ControlPath`)",
                &mi.ssh_noop_multiplexed,
            ),
        ];
        for (k, v) in rows {
            let _ = writeln!(o, "| {k} | {} |", ms_spread(v));
        }

        // ---- (d) and (e) ------------------------------------------------------
        self.ops_sections(&mut o);

        // ---- Space ------------------------------------------------------------
        let _ = writeln!(o, "\n## Space on the server\n");
        let _ = writeln!(
            o,
            "*stored* is `btrfs filesystem du -s` of `<store>/benchclient` (current and every \
             snapshot): Exclusive + Set shared, i.e. each data extent once; it leaves out \
             metadata. *statvfs growth* is the sum, over byteback's runs only, of the change \
             in the filesystem's used blocks (f_blocks − f_bfree) across the run, after a \
             sync: data and metadata. The floor's figures are the same for \
             `<store>/floor/current` (a plain directory without history). No qgroups.\n"
        );
        let _ = writeln!(
            o,
            "| after | snapshots | byteback stored | byteback if unshared (du Total) | byteback statvfs growth | changed bytes so far | initial data + changed | floor stored | floor statvfs growth | filesystem used |\n|---|---|---|---|---|---|---|---|---|---|"
        );
        for p in &self.space {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                if p.generation == 0 {
                    "initial backup".to_owned()
                } else {
                    format!("{} generations", p.generation)
                },
                p.snapshots,
                mib(p.byteback.stored() as f64),
                mib(p.byteback.total as f64),
                mib(p.byteback_statvfs_growth as f64),
                mib(p.changed_cumulative as f64),
                mib((t.data_bytes + p.changed_cumulative) as f64),
                mib(p.floor.stored() as f64),
                mib(p.floor_statvfs_growth as f64),
                mib(p.fs_used as f64),
            );
        }
        if let Some((first, last)) = self.space.first().zip(self.space.last()) {
            let growth = last.byteback.stored() as f64 - first.byteback.stored() as f64;
            let _ = writeln!(
                o,
                "\nGrowth of byteback's stored data over the generations: {} for {} of changed \
                 bytes ({:.2}×). Expected: with `--inplace`, rsync writes every delta block \
                 that differs in full, and its block size is about √size (16 KiB for a 256 MiB \
                 file, 5.7 KiB for 32 MiB), so each rewritten 4 KiB block of the image costs up \
                 to one whole rsync block of new extents, while the snapshots keep the old \
                 ones.\n",
                mib(growth),
                mib(last.changed_cumulative as f64),
                growth / last.changed_cumulative.max(1) as f64
            );
        }

        // ---- Memory -------------------------------------------------------------
        let _ = writeln!(o, "## Client memory\n");
        let _ = writeln!(
            o,
            "Peak resident set (VmHWM) in MiB, max over the phase's samples. *byteback* is \
             the byteback process alone (polled from /proc/PID/status every 5 ms until it \
             exits); *rsync* and *ssh* are its children (the ssh max over ping, rsync's \
             transport and complete). *wait4* is ru_maxrss that wait4 returns for byteback: \
             on Linux that is RUSAGE_BOTH of the child, i.e. the max over byteback and every \
             descendant it reaped, so it is not byteback's own figure. CPU is user+sys from \
             wait4 (byteback or rsync and all their reaped descendants, client side only).\n"
        );
        let _ = writeln!(
            o,
            "| phase | tool | own process | rsync | ssh | wait4 ru_maxrss | client CPU s (median) |\n|---|---|---|---|---|---|---|"
        );
        for phase in [Phase::Initial, Phase::NoChange, Phase::Mutate] {
            for tool in [Tool::Byteback, Tool::Floor] {
                let ss = self.of(phase, tool);
                if ss.is_empty() {
                    continue;
                }
                let mx = |f: fn(&Sample) -> u64| {
                    ss.iter().map(|s| f(s)).max().unwrap_or(0) as f64 / 1024.0
                };
                let cpu: Vec<f64> = ss.iter().map(|s| s.cpu_user + s.cpu_sys).collect();
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2} |",
                    phase.key(),
                    tool.key(),
                    match tool {
                        Tool::Byteback => format!("{:.1}", mx(|s| s.self_hwm_kib)),
                        Tool::Floor => "(is rsync)".to_owned(),
                    },
                    mx(|s| s.rsync_hwm_kib),
                    mx(|s| s.ssh_hwm_kib),
                    mx(|s| s.wait4_maxrss_kib),
                    median(&cpu)
                );
            }
        }

        if let Some(index) = &self.index {
            o.push_str(&index.markdown());
        }
        if let Some(plain) = &self.plain {
            o.push_str(&plain.markdown());
        }
        o.push_str(&crate::sim::markdown(&self.sim));

        // ---- Not measured ---------------------------------------------------------
        let _ = writeln!(o, "\n## Not measured\n");
        let _ = writeln!(
            o,
            "- Server-side CPU other than the rsync receiver's in (f) and byteback-server's \
             in (g), and server-side memory other than byteback-server's while listing (sshd, \
             the receiving and sending rsync, byteback-server during backups).\n\
             - Restores of many files, or of a directory.\n\
             - A cold page cache, except in (f)'s *cold* rounds and its cold stat walk: \
             every other backup reads a source that is in memory (the dataset is written \
             just before), (d) and (f)'s restores warm both sides up, and in (e) only the \
             first run of each case reads inodes that are not cached yet (from cached \
             metadata), so those figures are CPU, ssh and btrfs bound, not disk bound.\n\
             - A real network: ssh runs over 127.0.0.1."
        );
        o
    }

    fn of_tool(&self, tool: Tool) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.tool == tool).collect()
    }
}
