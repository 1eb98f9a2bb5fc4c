//! (d) restore of one large file against a bare rsync pull, and (e) listing
//! one glob across all snapshots — after the generations, and again after
//! 100 more snapshots taken by hand — with byteback-server's own memory.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::dataset::Dataset;
use crate::measure::{Run, measure, measure_watching};
use crate::report::{self, Phase, Tool, mib};
use crate::{Bench, CLIENT_NAME, STD_PATH, text};

/// The target for listing one pattern across 100 snapshots.
pub(crate) const TARGET_LIST_SECS: f64 = 2.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Restore,
    List,
}

impl Op {
    pub(crate) fn key(self) -> &'static str {
        match self {
            Op::Restore => "restore",
            Op::List => "list",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpTool {
    /// `byteback restore` or `byteback list` (the client, over ssh).
    Byteback,
    /// A bare rsync pull through the floor key.
    Floor,
    /// `byteback-server list` run directly as the server user (no ssh).
    Server,
    /// The forced command (`byteback-server receive`) answering the exact
    /// request `byteback list` sent, run locally as the server user with
    /// `SSH_ORIGINAL_COMMAND` set: the ssh request's server side, without ssh.
    Forced,
}

impl OpTool {
    pub(crate) fn key(self) -> &'static str {
        match self {
            OpTool::Byteback => "byteback",
            OpTool::Floor => "floor",
            OpTool::Server => "byteback-server",
            OpTool::Forced => "receive",
        }
    }
}

/// One timed restore or listing.
#[derive(Debug, Clone)]
pub struct OpSample {
    pub op: Op,
    /// The listing case's key ("restore" for restores).
    pub case: String,
    pub index: usize,
    pub tool: OpTool,
    /// 1 if it ran first in its pair, 2 if second.
    pub position: usize,
    pub wall: f64,
    pub code: i32,
    /// byteback only: spawn until its first ssh (config, connect set-up).
    pub startup: Option<f64>,
    /// byteback only: the listing request's ssh (handshake + server walk).
    pub query: Option<f64>,
    /// byteback restore: its rsync (with rsync's own ssh); the floor: whole run.
    pub rsync: Option<f64>,
    pub post_sync: Option<f64>,
    pub self_hwm_kib: u64,
    pub rsync_hwm_kib: u64,
    pub ssh_hwm_kib: u64,
    /// byteback-server's VmHWM: its own when run directly; for `byteback
    /// list`, the one sshd started (watched in /proc by uid and name).
    pub server_hwm_kib: Option<u64>,
    /// byteback-server's lifetime and CPU seconds: wall and wait4 when run
    /// directly; for `byteback list`, from polling the one sshd started.
    pub server_life: Option<f64>,
    pub server_cpu: Option<f64>,
    pub wait4_maxrss_kib: u64,
    pub cpu_user: f64,
    pub cpu_sys: f64,
    pub load1: f64,
    pub poll_cpu: f64,
    pub rows: Option<u64>,
    pub paths: Option<u64>,
    pub snapshots: usize,
    /// The snapshot restored from (`current` for the floor).
    pub snapshot: String,
    /// Blocks allocated to the restored file, in bytes.
    pub restored_alloc: Option<u64>,
}

impl OpSample {
    #[allow(clippy::too_many_arguments)]
    fn new(
        op: Op,
        case: &str,
        index: usize,
        tool: OpTool,
        position: usize,
        run: &Run,
        load1: f64,
        snapshots: usize,
    ) -> OpSample {
        let mut s = OpSample {
            op,
            case: case.to_owned(),
            index,
            tool,
            position,
            wall: run.wall,
            code: run.code,
            startup: None,
            query: None,
            rsync: None,
            post_sync: None,
            self_hwm_kib: run.self_hwm_kib(),
            rsync_hwm_kib: run.hwm_of("rsync"),
            ssh_hwm_kib: run.hwm_of("ssh"),
            server_hwm_kib: None,
            server_life: None,
            server_cpu: None,
            wait4_maxrss_kib: run.wait4_maxrss_kib,
            cpu_user: run.cpu_user,
            cpu_sys: run.cpu_sys,
            load1,
            poll_cpu: run.poll_cpu,
            rows: None,
            paths: None,
            snapshots,
            snapshot: String::new(),
            restored_alloc: None,
        };
        match tool {
            OpTool::Floor => {
                s.rsync_hwm_kib = s.self_hwm_kib;
                s.rsync = Some(run.wall);
            }
            OpTool::Server | OpTool::Forced => {
                s.server_hwm_kib = Some(s.self_hwm_kib);
                s.server_life = Some(run.wall);
                s.server_cpu = Some(run.cpu_user + run.cpu_sys);
            }
            OpTool::Byteback => {
                let ssh = run.children("ssh");
                let rsync = run.children("rsync");
                let first = ssh
                    .iter()
                    .chain(&rsync)
                    .map(|p| p.first)
                    .fold(f64::INFINITY, f64::min);
                s.startup = first.is_finite().then_some(first);
                // The listing request is byteback's own ssh child (rsync's
                // ssh is rsync's child, one level down).
                s.query = ssh.first().map(|p| p.last - p.first);
                s.rsync = rsync.first().map(|p| p.last - p.first);
                let watched = run.watched_hwm_kib();
                s.server_hwm_kib = (watched > 0).then_some(watched);
                if let Some((life, cpu)) = run.watched_life() {
                    s.server_life = Some(life);
                    s.server_cpu = Some(cpu);
                }
            }
        }
        if op == Op::List && run.code == 0 {
            let lines: Vec<&str> = run.stdout.lines().skip(1).collect();
            let mut paths: Vec<&str> = lines
                .iter()
                .filter_map(|l| l.split_whitespace().nth(6))
                .collect();
            paths.sort_unstable();
            paths.dedup();
            s.rows = Some(lines.len() as u64);
            s.paths = Some(paths.len() as u64);
        }
        s
    }
}

/// One listing case: a pattern and when it ran.
#[derive(Debug, Clone)]
pub struct ListCase {
    pub key: &'static str,
    pub title: &'static str,
    pub pattern: String,
    /// Regular files in the dataset now that the pattern matches, if known.
    pub expected_files: Option<usize>,
    pub snapshots: usize,
    /// Part of the 100-snapshot phase.
    pub hundred: bool,
    /// Held to the < 2 s target.
    pub target: bool,
}

/// What the restore restored and how the floor did it.
#[derive(Debug, Clone, Default)]
pub struct RestoreInfo {
    pub file: String,
    pub size: u64,
    pub source_alloc: u64,
    pub snapshot: String,
    pub byteback_argv: Vec<String>,
    pub floor_argv: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Ops {
    pub samples: Vec<OpSample>,
    pub restore: Option<RestoreInfo>,
    pub cases: Vec<ListCase>,
    /// Seconds per `byteback-server snapshot --at` of the 100-snapshot phase.
    pub snapshot_times: Vec<f64>,
    pub snapshots_before_hundred: usize,
}

/// An argv for the report, its last word (the restore's target
/// directory, which changes per run) shown as `<fresh dir>/`.
pub(crate) fn shell_words(argv: &[String]) -> String {
    let n = argv.len();
    argv.iter()
        .enumerate()
        .map(|(i, a)| {
            if i + 1 == n {
                "<fresh dir>/".to_owned()
            } else {
                a.clone()
            }
        })
        .map(|a| {
            if a.contains([' ', '{', '*']) {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The name of a dataset file (its last component) as a str.
pub(crate) fn file_name(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

impl Bench<'_> {
    /// `byteback-server ARGS` as the server user (no ssh), as a Command.
    fn server_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.server_bin);
        cmd.args(args)
            .uid(self.user.uid)
            .gid(self.user.gid)
            .env_clear()
            .current_dir(&self.user.home)
            .env("HOME", &self.user.home)
            .env("USER", &self.user.name)
            .env("LOGNAME", &self.user.name)
            .env("PATH", STD_PATH);
        cmd
    }

    pub(crate) fn next_label(&mut self, what: &str) -> String {
        self.runs += 1;
        format!("{:02}-{what}", self.runs)
    }

    /// The newest snapshot of the measured client (its last backup).
    fn newest_snapshot(&self) -> String {
        self.report
            .samples
            .iter()
            .rev()
            .find(|s| {
                s.tool == Tool::Byteback
                    && (s.phase != Phase::Initial || s.index == 1)
                    && !s.snapshot.is_empty()
            })
            .map(|s| s.snapshot.clone())
            .expect("a byteback backup of the measured client")
    }

    /// (d): `byteback restore --snapshot <newest> --into <fresh dir> <the
    /// largest file>` against the floor's rsync pulling the same file from
    /// `<store>/floor/current` with byteback's restore flags, `pairs` pairs
    /// after one untimed warm-up of each.
    pub fn restore_phase(&mut self, data: &Dataset, pairs: usize) {
        let (file, size) = data.largest_file();
        let snapshot = self.newest_snapshot();
        let root = self.logs.with_file_name("restore");
        fs::create_dir_all(&root).expect("create restore dir");
        let source_alloc = fs::metadata(&file).expect("stat largest file").blocks() * 512;
        let mut info = RestoreInfo {
            file: file.to_string_lossy().into_owned(),
            size,
            source_alloc,
            snapshot: snapshot.clone(),
            ..RestoreInfo::default()
        };
        // Warm-up, untimed: both sides' server files into the page cache
        // (a snapshot's inode has its own cache even where its extents are
        // shared), and byteback's rsync argv for the floor.
        eprintln!(
            "bench: (d) restore of {} ({}), warm-up",
            file.display(),
            mib(size as f64)
        );
        for tool in [OpTool::Byteback, OpTool::Floor] {
            let label = format!("restore-warmup-{}", tool.key());
            let (run, _) = self.restore_once(tool, &label, &root, &file, &snapshot, &mut info);
            if tool == OpTool::Byteback {
                info.byteback_argv = run
                    .children("rsync")
                    .first()
                    .map(|p| p.cmdline.clone())
                    .expect("saw byteback restore's rsync");
                info.floor_argv = self.floor_restore_argv(&info.byteback_argv, &file);
            }
        }
        let snapshots = self.snapshot_count();
        for i in 1..=pairs {
            eprintln!("bench: (d) restore, pair {i}/{pairs}");
            let order = if i % 2 == 1 {
                [OpTool::Byteback, OpTool::Floor]
            } else {
                [OpTool::Floor, OpTool::Byteback]
            };
            for (pos, tool) in order.into_iter().enumerate() {
                let label = self.next_label(&format!("restore-{i}-{}", tool.key()));
                let load1 = report::loadavg().0;
                let (run, (alloc, post_sync)) =
                    self.restore_once(tool, &label, &root, &file, &snapshot, &mut info);
                let mut s = OpSample::new(
                    Op::Restore,
                    "restore",
                    i,
                    tool,
                    pos + 1,
                    &run,
                    load1,
                    snapshots,
                );
                s.post_sync = Some(post_sync);
                s.restored_alloc = Some(alloc);
                s.snapshot = match tool {
                    OpTool::Floor => "current".into(),
                    _ => snapshot.clone(),
                };
                eprintln!(
                    "bench:   {:<8} {:>8.3} s  (post-run sync {post_sync:.3} s)",
                    tool.key(),
                    run.wall
                );
                self.report.ops.samples.push(s);
            }
        }
        self.report.ops.restore = Some(info);
    }

    /// One restore into a fresh `root/label`, checked against the source,
    /// flushed (timed: the post-run sync) and removed. Returns the run and
    /// (bytes allocated to the restored file, post-run sync seconds).
    fn restore_once(
        &mut self,
        tool: OpTool,
        label: &str,
        root: &Path,
        file: &Path,
        snapshot: &str,
        info: &mut RestoreInfo,
    ) -> (Run, (u64, f64)) {
        if crate::measure::interrupted() {
            panic!("interrupted");
        }
        let into = root.join(label);
        let into_s = format!("{}", into.display());
        let file_s = file.to_string_lossy().into_owned();
        let run = match tool {
            OpTool::Byteback => {
                let mut cmd = self.client(&[
                    "restore",
                    "--snapshot",
                    snapshot,
                    "--into",
                    &into_s,
                    &file_s,
                ]);
                measure(&mut cmd, &self.logs, label, &["byteback", "rsync", "ssh"])
            }
            _ => {
                fs::create_dir(&into).expect("create restore target");
                let mut argv = info.floor_argv.clone();
                *argv.last_mut().unwrap() = format!("{into_s}/");
                let mut cmd = Command::new("rsync");
                cmd.args(&argv[1..]).env_clear().env("PATH", STD_PATH);
                measure(&mut cmd, &self.logs, label, &["rsync", "ssh"])
            }
        };
        if crate::measure::interrupted() {
            panic!("interrupted by a signal; cleaning up");
        }
        let ok = run.code == 0
            && (tool != OpTool::Byteback || run.stdout.contains("Restored 1 item(s)"));
        assert!(
            ok,
            "{label} failed (exit {}):\n--- stdout\n{}\n--- stderr\n{}",
            run.code, run.stdout, run.stderr
        );
        let top = if tool == OpTool::Byteback {
            snapshot
        } else {
            "current"
        };
        let restored = into
            .join(top)
            .join(file.strip_prefix("/").expect("absolute path"));
        let meta = fs::metadata(&restored)
            .unwrap_or_else(|e| panic!("{label}: no restored file {restored:?}: {e}"));
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
        let post_sync = self.settle();
        fs::remove_dir_all(&into).expect("remove restore target");
        self.settle();
        (run, (meta.blocks() * 512, post_sync))
    }

    /// byteback restore's rsync argv with the floor's key and no connection
    /// sharing, pulling `current/<file>` from the floor's directory.
    fn floor_restore_argv(&self, byteback: &[String], file: &Path) -> Vec<String> {
        let mut argv = byteback.to_vec();
        let rsh = argv
            .iter()
            .position(|a| a == "--rsh")
            .map(|i| i + 1)
            .expect("--rsh in byteback restore's rsync argv");
        argv[rsh] = self.floor_rsh(&argv[rsh]);
        let n = argv.len();
        assert!(
            n >= 3 && argv[n - 3] == "--",
            "byteback restore's rsync argv does not end in -- REMOTE DIR/: {argv:?}"
        );
        let host = format!("{}@127.0.0.1:", self.user.name);
        assert!(
            argv[n - 2].starts_with(&host),
            "unexpected remote in byteback restore's rsync argv: {argv:?}"
        );
        argv[n - 2] = format!("{host}current{}", file.display());
        argv
    }

    /// Runs one listing case `runs` times, each time `byteback list --all`,
    /// `byteback-server list --all` and the forced command answering the
    /// request `byteback list` sent, the order rotating from run to run.
    fn list_case(&mut self, case: ListCase, runs: usize) {
        let store = self.store().to_string_lossy().into_owned();
        let tools = [OpTool::Byteback, OpTool::Server, OpTool::Forced];
        // The request line, read from /proc while the first `byteback list` ran.
        let mut request: Option<String> = None;
        for i in 1..=runs {
            eprintln!(
                "bench: (e) list {} ({}), run {i}/{runs}",
                case.key, case.pattern
            );
            let mut rows = Vec::new();
            for pos in 0..tools.len() {
                let tool = tools[(pos + i - 1) % tools.len()];
                if crate::measure::interrupted() {
                    panic!("interrupted");
                }
                let label = self.next_label(&format!("list-{}-{i}-{}", case.key, tool.key()));
                let load1 = report::loadavg().0;
                let run = match tool {
                    OpTool::Server => {
                        let mut cmd = self.server_cmd(&[
                            "list",
                            "--store",
                            &store,
                            "--client",
                            CLIENT_NAME,
                            "--all",
                            &case.pattern,
                        ]);
                        measure(&mut cmd, &self.logs, &label, &["byteback-server"])
                    }
                    OpTool::Forced => {
                        let req = request.clone().expect("byteback list ran first");
                        let mut cmd = self.server_cmd(&[
                            "receive",
                            "--store",
                            &store,
                            "--client",
                            CLIENT_NAME,
                        ]);
                        cmd.env("SSH_ORIGINAL_COMMAND", req);
                        measure(&mut cmd, &self.logs, &label, &["byteback-server"])
                    }
                    _ => {
                        let mut cmd = self.client(&["list", "--all", &case.pattern]);
                        let watch = Some((self.user.uid, "byteback-server"));
                        let run = measure_watching(
                            &mut cmd,
                            &self.logs,
                            &label,
                            &["byteback", "ssh"],
                            watch,
                        );
                        if request.is_none() {
                            let sent = run
                                .children("ssh")
                                .first()
                                .and_then(|p| p.cmdline.last().cloned())
                                .expect("saw byteback list's ssh");
                            assert!(
                                sent.starts_with("byteback list "),
                                "unexpected request {sent:?}"
                            );
                            request = Some(sent);
                        }
                        run
                    }
                };
                assert!(
                    run.code == 0,
                    "{label} failed (exit {}):\n--- stdout\n{}\n--- stderr\n{}",
                    run.code,
                    run.stdout,
                    run.stderr
                );
                let mut s = OpSample::new(
                    Op::List,
                    case.key,
                    i,
                    tool,
                    pos + 1,
                    &run,
                    load1,
                    case.snapshots,
                );
                if tool == OpTool::Forced {
                    // The wire format: one encoded row per line, no header.
                    s.rows = Some(run.stdout.lines().count() as u64);
                    s.paths = None;
                }
                eprintln!(
                    "bench:   {:<15} {:>8.3} s  {} rows, server peak RSS {} KiB",
                    tool.key(),
                    run.wall,
                    s.rows.unwrap_or(0),
                    s.server_hwm_kib.unwrap_or(0)
                );
                rows.push(s.rows);
                self.report.ops.samples.push(s);
            }
            assert!(
                rows.iter().all(|r| *r == rows[0]),
                "byteback list, byteback-server list and receive disagree on {}: {rows:?}",
                case.pattern
            );
        }
        self.report.ops.cases.push(case);
    }

    fn src_pattern(&self, rest: &str) -> String {
        format!("{}/{rest}", self.src.display())
    }

    /// (e) after the generations: one `**` glob matching ~1% of the files.
    pub fn list_phase(&mut self, data: &Dataset, runs: usize) {
        let case = ListCase {
            key: "e",
            title: "`**` glob, ~1% of the files, after the generations",
            pattern: self.src_pattern("**/f*5.{c,h}"),
            expected_files: Some(data.count_files(|p| {
                let n = file_name(p);
                n.starts_with('f') && (n.ends_with("5.c") || n.ends_with("5.h"))
            })),
            snapshots: self.snapshot_count(),
            hundred: false,
            target: false,
        };
        self.list_case(case, runs);
    }

    /// 100 more snapshots by hand, then (i) a literal path, (ii) one level of
    /// `*`, (iii) the `**` glob of (e), and everything (`**`, for memory).
    pub fn hundred_phase(&mut self, data: &Dataset, count: usize, runs: usize) {
        self.report.ops.snapshots_before_hundred = self.snapshot_count();
        eprintln!("bench: (e) taking {count} snapshots by hand");
        // 2002-01-01T00:00:00Z onwards, an hour apart: before every backup
        // and after the micro-measurements' 2001 ones, all distinct.
        for i in 0..count as i64 {
            let at = jiff::Timestamp::from_second(1_009_843_200 + i * 3600)
                .expect("time")
                .to_string();
            let t = Instant::now();
            let out = self.server(&["snapshot", "--client", CLIENT_NAME, "--at", &at]);
            self.report
                .ops
                .snapshot_times
                .push(t.elapsed().as_secs_f64());
            assert!(out.status.success(), "snapshot --at {at}: {}", text(&out));
        }
        let snapshots = self.snapshot_count();
        let cases = [
            ListCase {
                key: "literal",
                title: "(i) a literal path (the log, changed every generation)",
                pattern: self.src_pattern("var/log/syslog"),
                expected_files: Some(1),
                snapshots,
                hundred: true,
                target: true,
            },
            ListCase {
                key: "onelevel",
                title: "(ii) `*/name*`: one level of `*`, then a name prefix",
                pattern: self.src_pattern("*/f0*"),
                expected_files: Some(data.count_files(|p| {
                    p.components().count() == 2 && file_name(p).starts_with("f0")
                })),
                snapshots,
                hundred: true,
                target: true,
            },
            ListCase {
                key: "doublestar",
                title: "(iii) the `**` glob of (e), ~1% of the files",
                pattern: self.src_pattern("**/f*5.{c,h}"),
                expected_files: Some(data.count_files(|p| {
                    let n = file_name(p);
                    n.starts_with('f') && (n.ends_with("5.c") || n.ends_with("5.h"))
                })),
                snapshots,
                hundred: true,
                target: true,
            },
            ListCase {
                key: "everything",
                title: "everything below the source (`**`), for memory",
                pattern: self.src_pattern("**"),
                expected_files: None,
                snapshots,
                hundred: true,
                target: false,
            },
        ];
        // Everything is listed twice each way (the first run of a case is
        // the first to read every file's inode in the new snapshots): it is
        // there for memory, and one run takes as long as the others together.
        for case in cases {
            let n = if case.target { runs } else { 2 };
            self.list_case(case, n);
        }
    }
}

impl Ops {
    pub(crate) fn of(&self, op: Op, case: &str, tool: OpTool) -> Vec<&OpSample> {
        self.samples
            .iter()
            .filter(|s| s.op == op && s.case == case && s.tool == tool)
            .collect()
    }

    pub(crate) fn walls(&self, op: Op, case: &str, tool: OpTool) -> Vec<f64> {
        self.of(op, case, tool).iter().map(|s| s.wall).collect()
    }

    /// (index, byteback, floor, ratio) per restore pair.
    pub(crate) fn restore_pairs(&self) -> Vec<(usize, &OpSample, &OpSample, f64)> {
        let fl = self.of(Op::Restore, "restore", OpTool::Floor);
        self.of(Op::Restore, "restore", OpTool::Byteback)
            .into_iter()
            .filter_map(|b| {
                let f = fl.iter().find(|f| f.index == b.index)?;
                Some((b.index, b, *f, b.wall / f.wall))
            })
            .collect()
    }

    pub(crate) fn case(&self, key: &str) -> Option<&ListCase> {
        self.cases.iter().find(|c| c.key == key)
    }

    pub(crate) fn rows_of(&self, key: &str) -> String {
        let s = self.of(Op::List, key, OpTool::Byteback);
        match (
            s.first().and_then(|s| s.rows),
            s.first().and_then(|s| s.paths),
        ) {
            (Some(r), Some(p)) => format!(
                "{r} row{}, {p} path{}",
                if r == 1 { "" } else { "s" },
                if p == 1 { "" } else { "s" }
            ),
            _ => "? rows".into(),
        }
    }

    pub(crate) fn server_peak_kib(&self, key: &str, tool: OpTool) -> u64 {
        self.of(Op::List, key, tool)
            .iter()
            .filter_map(|s| s.server_hwm_kib)
            .max()
            .unwrap_or(0)
    }
}
