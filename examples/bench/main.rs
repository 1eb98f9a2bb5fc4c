//! byteback's benchmark: byteback against bare rsync (the floor) on the
//! same machine, the same ssh and the same btrfs filesystem.
//!
//! ```text
//! cargo run --release --example bench -- [--profile default|small|large] [--out bench/RESULTS.md]
//! ```
//!
//! Needs root (loop-device btrfs, a Unix user, an sshd on 127.0.0.1), like
//! the end-to-end tests, whose fixtures it reuses. See bench/README.md for
//! what each figure means and how the floor is defined.

mod dataset;
mod index;
mod measure;
mod ops;
mod plain;
mod report;
mod sim;
// The fixtures the end-to-end tests use (the testbed crate).
use byteback_testbed as support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dataset::{Dataset, MutateStats, Profile};
use measure::{Run, interrupted, measure, timed};
use report::{Du, Micro, Phase, Report, Sample, SpacePoint, Tool};
use support::{FsKind, LoopFs, Sshd, TestArea, TestUser};

const STD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const CLIENT_NAME: &str = "benchclient";
const DEFAULT_SEED: u64 = 0x6279_7465_6261_636b; // "byteback"

struct Args {
    profile: Profile,
    out: PathBuf,
    csv: PathBuf,
    seed: u64,
    initial: usize,
    nochange: usize,
    generations: usize,
    restores: usize,
    lists: usize,
    hundred: usize,
    hundred_runs: usize,
    index: usize,
    /// (f): nothing-changed triples with the page cache dropped before each run.
    cold: usize,
    /// (g): incrementals into a plain store (ext4), per state.
    plain: usize,
    /// (h): sizes of the synthetic change index.
    sim: Vec<usize>,
    /// Only (h): no root, no fixtures.
    only_sim: bool,
    bin_dir: Option<PathBuf>,
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo run --release --example bench -- [--profile default|small|many|large] [--out FILE.md] \
         [--csv FILE.csv] [--seed N] [--initial N] [--nochange N] [--generations N] \
         [--restores N] [--lists N] [--hundred N] [--hundred-runs N] [--index N] [--cold N] \
         [--plain N] [--sim N,N,...|none] [--only-sim] [--bin-dir DIR]"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut profile = "default".to_owned();
    let mut out = None;
    let mut csv = None;
    let mut seed = DEFAULT_SEED;
    let mut initial = 3;
    let mut nochange = 5;
    let mut generations = 5;
    let mut restores = 5;
    let mut lists = 5;
    let mut hundred = 100;
    let mut hundred_runs = 3;
    let mut index = 5;
    let mut cold = 3;
    let mut plain = None;
    let mut sim = vec![250_000, 500_000, 1_000_000];
    let mut only_sim = false;
    let mut bin_dir = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--profile" => profile = value(),
            "--out" => out = Some(PathBuf::from(value())),
            "--csv" => csv = Some(PathBuf::from(value())),
            "--seed" => seed = value().parse().unwrap_or_else(|_| usage()),
            "--initial" => initial = value().parse().unwrap_or_else(|_| usage()),
            "--nochange" => nochange = value().parse().unwrap_or_else(|_| usage()),
            "--generations" => generations = value().parse().unwrap_or_else(|_| usage()),
            "--restores" => restores = value().parse().unwrap_or_else(|_| usage()),
            "--lists" => lists = value().parse().unwrap_or_else(|_| usage()),
            "--hundred" => hundred = value().parse().unwrap_or_else(|_| usage()),
            "--hundred-runs" => hundred_runs = value().parse().unwrap_or_else(|_| usage()),
            "--index" => index = value().parse().unwrap_or_else(|_| usage()),
            "--cold" => cold = value().parse().unwrap_or_else(|_| usage()),
            "--plain" => plain = Some(value().parse().unwrap_or_else(|_| usage())),
            "--sim" => {
                let v = value();
                sim = if v == "none" {
                    Vec::new()
                } else {
                    v.split(',')
                        .map(|n| n.parse().unwrap_or_else(|_| usage()))
                        .collect()
                }
            }
            "--only-sim" => only_sim = true,
            "--bin-dir" => bin_dir = Some(PathBuf::from(value())),
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    let profile = Profile::by_name(&profile).unwrap_or_else(|| usage());
    // The plain store (issue 24) is asked of the many-small-files shape.
    let plain = plain.unwrap_or(if profile.name == "many" { 3 } else { 0 });
    let out = out.unwrap_or_else(|| root.join("bench/RESULTS.md"));
    // RESULTS.md's samples go to results.csv, RESULTS-many.md's to
    // results-many.csv: a second report never overwrites the first's.
    let csv = csv.unwrap_or_else(|| {
        let stem = out.file_stem().unwrap_or_default().to_string_lossy();
        out.with_file_name(format!("{}.csv", stem.to_lowercase()))
    });
    if initial < 1
        || nochange < 5
        || generations < 3
        || restores < 5
        || lists < 5
        || hundred_runs < 3
    {
        eprintln!(
            "bench: need --initial >= 1, --nochange >= 5, --generations >= 3, --restores >= 5, \
             --lists >= 5 and --hundred-runs >= 3"
        );
        std::process::exit(2);
    }
    Args {
        profile,
        out,
        csv,
        seed,
        initial,
        nochange,
        generations,
        restores,
        lists,
        hundred,
        hundred_runs,
        index,
        cold,
        plain,
        sim,
        only_sim,
        bin_dir,
    }
}

/// The release binaries: built here (a no-op when fresh) unless --bin-dir.
fn binaries(args: &Args) -> (PathBuf, PathBuf) {
    let dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            eprintln!("bench: cargo build --release --bins");
            let status = Command::new(cargo)
                .args(["build", "--release", "--bins"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("run cargo build");
            assert!(status.success(), "cargo build --release --bins failed");
            // This example runs from <target>/release/examples/bench.
            let exe = std::env::current_exe().expect("current_exe");
            exe.parent()
                .and_then(Path::parent)
                .expect("target dir")
                .to_owned()
        }
    };
    let client = dir.join("byteback");
    let server = dir.join("byteback-server");
    for b in [&client, &server] {
        assert!(
            b.is_file(),
            "missing {b:?} (build with `cargo build --release --bins`)"
        );
    }
    (client, server)
}

/// Everything set up, and the samples so far.
struct Bench<'a> {
    user: &'a TestUser,
    fs: &'a LoopFs,
    sshd: &'a Sshd,
    client_bin: PathBuf,
    server_bin: PathBuf,
    /// The client's config dir (the one whose history is measured).
    client_dir: PathBuf,
    /// Config dirs of the extra clients that only take part in (a).
    extra_clients: Vec<PathBuf>,
    src: PathBuf,
    logs: PathBuf,
    floor_key: PathBuf,
    floor_dir: PathBuf,
    /// byteback's own rsync argv with the floor key: the floor's command.
    floor_argv: Vec<String>,
    report: Report,
    last_snapshot_secs: u64,
    runs: usize,
    /// restic's version, when it is installed.
    restic: Option<String>,
    /// The measured client's newest snapshot, as (f)'s backups name it.
    newest: String,
}

fn main() {
    // A child of (h): one size of the synthetic change index.
    let argv: Vec<String> = std::env::args().collect();
    if let [_, flag, n, dir_flag, dir] = argv.as_slice() {
        if flag == "--index-sim" && dir_flag == "--sim-dir" {
            sim::child(n.parse().unwrap_or_else(|_| usage()), Path::new(dir));
            return;
        }
    }
    let args = parse_args();
    if args.only_sim {
        let dir = std::env::temp_dir().join(format!("byteback-bench-sim-{}", std::process::id()));
        let points = sim::run(&args.sim, &dir);
        print!("{}", sim::markdown(&points));
        return;
    }
    if !support::require_root() {
        eprintln!("bench: must run as root with rsync, sshd, btrfs-progs and loop devices");
        std::process::exit(2);
    }
    measure::catch_signals();
    let started = Instant::now();
    let (client_bin, server_bin_src) = binaries(&args);
    let profile = args.profile.clone();
    let mut report = Report::new(&profile, args.seed);
    // The binaries' source: this checkout, or with --bin-dir the checkout
    // DIR is the target/release of (if it is one).
    let checkout = match &args.bin_dir {
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        Some(d) => d
            .canonicalize()
            .ok()
            .and_then(|d| d.parent()?.parent().map(Path::to_owned))
            .unwrap_or_else(|| d.clone()),
    };
    report.machine.collect(&checkout);
    report.binaries = format!("{} and {}", client_bin.display(), server_bin_src.display());

    // Fixtures, declared in the order that makes them drop safely in reverse
    // (sshd, then the user, then the filesystem, then the area).
    let area = TestArea::new("bench");
    let src = area.path.join("src");
    fs::create_dir(&src).expect("create src");
    eprintln!(
        "bench: generating the {} dataset in {}",
        profile.name,
        src.display()
    );
    let t = Instant::now();
    let mut data = Dataset::generate(&src, &profile, args.seed, &interrupted);
    report.generate_secs = t.elapsed().as_secs_f64();
    report.tree = data.stats.clone();
    let fs = LoopFs::new(
        &area,
        FsKind::Btrfs,
        profile.fs_mib,
        &["user_subvol_rm_allowed"],
    );
    let user = TestUser::new("bbbench", &fs.mount_point);
    let sshd = Sshd::start(&area, &[&user.name]);

    let bin_dir = area.path.join("bin");
    fs::create_dir(&bin_dir).unwrap();
    chmod(&bin_dir, 0o755);
    let server_bin = bin_dir.join("byteback-server");
    fs::copy(&server_bin_src, &server_bin).expect("copy byteback-server");
    chmod(&server_bin, 0o755);
    let logs = area.path.join("logs");
    fs::create_dir(&logs).unwrap();
    let mut b = Bench {
        user: &user,
        fs: &fs,
        sshd: &sshd,
        client_bin,
        server_bin,
        client_dir: area.path.join("client"),
        extra_clients: (2..=args.initial)
            .map(|i| area.path.join(format!("client{i}")))
            .collect(),
        src,
        logs,
        floor_key: area.path.join("floor-key"),
        floor_dir: fs.mount_point.join("floor"),
        floor_argv: Vec::new(),
        report,
        last_snapshot_secs: 0,
        runs: 0,
        restic: index::restic_version(),
        newest: String::new(),
    };
    match &b.restic {
        Some(v) => eprintln!("bench: restic: {v}"),
        None => eprintln!("bench: restic: not installed; its column stays empty"),
    }
    b.report.restic = b.restic.clone();
    b.enroll(&b.client_dir.clone(), CLIENT_NAME, true);
    // Each phase measures one kind of pass: index mode unless --full.
    let config = b.client_dir.join("config.toml");
    let text = fs::read_to_string(&config).expect("read the client config");
    fs::write(&config, text + "full_scan_every = 1000\n").expect("write the client config");
    for (i, dir) in b.extra_clients.clone().iter().enumerate() {
        b.enroll(dir, &format!("{CLIENT_NAME}{}", i + 2), false);
    }
    b.setup_floor(&bin_dir);
    b.report.src_dir = b.src.to_string_lossy().into_owned();
    b.run_all(&mut data, &args);
    b.restore_phase(&data, args.restores);
    b.list_phase(&data, args.lists);
    b.micro();
    if args.hundred > 0 {
        b.hundred_phase(&data, args.hundred, args.hundred_runs);
    }
    if args.index > 0 {
        b.index_phase(&mut data, args.index, args.cold, args.restores);
    }
    if args.plain > 0 {
        b.plain_phase(&mut data, args.plain);
    }
    if !args.sim.is_empty() {
        let dir = b.logs.with_file_name("index-sim");
        b.report.sim = sim::run(&args.sim, &dir);
    }
    b.report.total_secs = started.elapsed().as_secs_f64();
    b.report.machine.load_end = report::loadavg();
    b.report.write(&args.out, &args.csv);
    eprintln!(
        "bench: done in {:.0} s; wrote {} and {}",
        b.report.total_secs,
        args.out.display(),
        args.csv.display()
    );
    // The fixtures drop here, in reverse order: sshd, user, filesystem, area.
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn text(out: &std::process::Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Bench<'_> {
    fn store(&self) -> &Path {
        &self.user.home
    }

    fn server(&self, args: &[&str]) -> std::process::Output {
        let bin = self.server_bin.to_string_lossy().into_owned();
        let mut argv = vec![bin.as_str()];
        argv.extend_from_slice(args);
        self.user.run_as(&argv)
    }

    fn client(&self, args: &[&str]) -> Command {
        self.client_in(&self.client_dir, args)
    }

    fn client_in(&self, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.client_bin);
        cmd.args(args)
            .env_clear()
            .env("PATH", STD_PATH)
            .env("BYTEBACK_CONFIG_DIR", dir);
        cmd
    }

    fn client_ok(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.client_in(dir, args).output().expect("run byteback");
        assert!(out.status.success(), "byteback {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The README's walkthrough (server setup the first time, with
    /// min_snapshot_interval = "0s"), for the client configured in `dir`.
    fn enroll(&mut self, dir: &Path, name: &str, first: bool) {
        if first {
            let out = self.server(&["setup"]);
            assert!(out.status.success(), "server setup: {}", text(&out));
            let cfg = self.store().join(".byteback/server.toml");
            let old = fs::read_to_string(&cfg).expect("read server.toml");
            let mut lines: Vec<String> = old
                .lines()
                .filter(|l| !l.trim_start().starts_with("min_snapshot_interval"))
                .map(str::to_owned)
                .collect();
            // A top-level key: before the first table, which the
            // generated file ends with.
            let at = lines
                .iter()
                .position(|l| l.trim_start().starts_with('['))
                .unwrap_or(lines.len());
            lines.insert(at, "min_snapshot_interval = \"0s\"".into());
            fs::write(&cfg, lines.join("\n") + "\n").expect("write server.toml");
        }
        let dest = format!("{}@127.0.0.1:{}", self.user.name, self.sshd.port);
        let printed = self.client_ok(dir, &["setup", &dest, "--name", name]);
        let key = printed
            .lines()
            .find_map(|l| l.strip_prefix("Your backup key is "))
            .expect("setup prints the key")
            .to_owned();
        let mut args = vec!["new-client"];
        args.extend(key.split(' '));
        let out = self.server(&args);
        assert!(out.status.success(), "new-client: {}", text(&out));
        let said = self.client_ok(dir, &["test", "--accept-new-host-key"]);
        assert!(said.contains("ready to go"), "byteback test: {said}");
    }

    /// A second key whose forced command is the standard rsync receiver
    /// (with --fake-super, as byteback-server adds) in `<store>/floor`, or
    /// for a restore (`--sender` in the request) the standard sender there.
    fn setup_floor(&mut self, bin_dir: &Path) {
        let mut argv = vec!["mkdir", "-p", "floor/current"];
        let extra: Vec<String> = (0..self.extra_clients.len())
            .map(|i| format!("floor/initial{}", i + 2))
            .collect();
        argv.extend(extra.iter().map(String::as_str));
        let out = self.user.run_as(&argv);
        assert!(out.status.success(), "mkdir floor: {}", text(&out));
        let script = bin_dir.join("floor-receive");
        let body = format!(
            r#"#!/bin/sh
# The benchmark's floor: the standard rsync receiver, no byteback.
set -f
cd '{}' || exit 1
case "$SSH_ORIGINAL_COMMAND" in
  "rsync --server --sender "*)
    # A restore: the standard sender, presenting the fake-super ownership.
    set -- $SSH_ORIGINAL_COMMAND
    shift 3
    exec rsync --server --sender --fake-super "$@" ;;
  "rsync --server "*) ;;
  true) exit 0 ;;
  *) echo "floor: refused: $SSH_ORIGINAL_COMMAND" >&2; exit 1 ;;
esac
set -- $SSH_ORIGINAL_COMMAND
shift 2
exec rsync --server --fake-super "$@"
"#,
            self.floor_dir.display()
        );
        fs::write(&script, body).unwrap();
        chmod(&script, 0o755);
        let public = support::ssh_keygen(&self.floor_key);
        self.user.authorize_key(&format!(
            "restrict,command=\"{}\" {public} floor",
            script.display()
        ));
    }

    fn used_bytes(&self) -> u64 {
        let st = rustix::fs::statvfs(&self.fs.mount_point).expect("statvfs");
        (st.f_blocks - st.f_bfree) * st.f_frsize
    }

    /// Flushes everything (the btrfs, then the loop image on the root
    /// filesystem) so that one run's writeback never lands in the next.
    fn settle(&self) -> f64 {
        let t = timed(&["sync"]);
        // The loop device's writes dirty the image file: a second pass.
        t + timed(&["sync"])
    }

    fn du(&self, path: &Path) -> Du {
        let out = support::run_ok(&[
            "btrfs",
            "filesystem",
            "du",
            "-s",
            "--raw",
            &path.to_string_lossy(),
        ]);
        let line = out.lines().last().unwrap_or_default();
        let n: Vec<u64> = line
            .split_whitespace()
            .take(3)
            .map(|w| w.parse().unwrap_or(0))
            .collect();
        Du {
            total: n[0],
            exclusive: n[1],
            set_shared: n[2],
        }
    }

    fn space_point(&self, generation: usize, changed: u64) -> SpacePoint {
        self.settle();
        SpacePoint {
            generation,
            changed_cumulative: changed,
            byteback: self.du(&self.store().join(CLIENT_NAME)),
            floor: self.du(&self.floor_dir.join("current")),
            fs_used: self.used_bytes(),
            byteback_statvfs_growth: self.report.statvfs_growth(Tool::Byteback),
            floor_statvfs_growth: self.report.statvfs_growth(Tool::Floor),
            snapshots: self.snapshot_count(),
        }
    }

    fn snapshot_count(&self) -> usize {
        let dir = self.store().join(CLIENT_NAME);
        fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with('Z'))
                    .count()
            })
            .unwrap_or(0)
    }

    fn run_all(&mut self, data: &mut Dataset, args: &Args) {
        self.settle();
        // The first pair runs byteback first: its rsync argv becomes the
        // floor's command. Further pairs back up into fresh destinations
        // (another client, another floor directory).
        for i in 1..=args.initial {
            eprintln!(
                "bench: (a) initial full backup, sample {i}/{}",
                args.initial
            );
            self.pair(Phase::Initial, i);
            self.initial_extra(i);
        }
        let initial = self.space_point(0, 0);
        self.report.space.push(initial);
        for i in 1..=args.nochange {
            eprintln!("bench: (b) nothing changed, sample {i}/{}", args.nochange);
            self.pair(Phase::NoChange, i);
        }
        let mut changed = 0;
        for g in 1..=args.generations {
            eprintln!(
                "bench: (c) mutate + backup, generation {g}/{}",
                args.generations
            );
            let st: MutateStats = data.mutate();
            changed += st.changed_bytes();
            self.report.mutations.push(st);
            self.pair(Phase::Mutate, g);
            if g == 5 || g == args.generations {
                let p = self.space_point(g, changed);
                self.report.space.push(p);
            }
        }
    }

    /// Both tools on the same state; who goes first alternates.
    fn pair(&mut self, phase: Phase, index: usize) {
        let byteback_first = index % 2 == 1;
        let order = if byteback_first {
            [Tool::Byteback, Tool::Floor]
        } else {
            [Tool::Floor, Tool::Byteback]
        };
        for (pos, tool) in order.into_iter().enumerate() {
            self.run(phase, index, tool, pos + 1);
        }
    }

    fn run(&mut self, phase: Phase, index: usize, tool: Tool, position: usize) {
        if interrupted() {
            panic!("interrupted");
        }
        if tool == Tool::Byteback {
            // Snapshots are named by the second; never ask for two in one.
            while now_secs() <= self.last_snapshot_secs {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // (a) sample k backs up into destination k-1; all else into 0.
        let target = if phase == Phase::Initial {
            index - 1
        } else {
            0
        };
        self.runs += 1;
        let label = format!("{:02}-{}-{}-{}", self.runs, phase.key(), index, tool.key());
        let load1 = report::loadavg().0;
        let used_before = self.used_bytes();
        let run: Run = match tool {
            Tool::Byteback => {
                let src = self.src.to_string_lossy().into_owned();
                let dir = match target {
                    0 => self.client_dir.clone(),
                    t => self.extra_clients[t - 1].clone(),
                };
                let mut cmd = self.client_in(&dir, &["backup", "--source", &src]);
                measure(&mut cmd, &self.logs, &label, &["byteback", "rsync", "ssh"])
            }
            Tool::Floor => {
                assert!(!self.floor_argv.is_empty(), "floor command not known yet");
                let mut argv = self.floor_argv.clone();
                if target > 0 {
                    let last = argv.last_mut().unwrap();
                    let base = last.strip_suffix("current/").expect("remote path current/");
                    *last = format!("{base}initial{}/", target + 1);
                }
                let mut cmd = Command::new("rsync");
                cmd.args(&argv[1..]).env_clear().env("PATH", STD_PATH);
                measure(&mut cmd, &self.logs, &label, &["rsync", "ssh"])
            }
        };
        if interrupted() {
            panic!("interrupted by a signal; cleaning up");
        }
        let ok = run.code == 0
            && (tool == Tool::Floor || run.stdout.contains("Backup complete: snapshot"));
        assert!(
            ok,
            "{label} failed (exit {}):\n--- stdout\n{}\n--- stderr\n{}",
            run.code, run.stdout, run.stderr
        );
        if tool == Tool::Byteback {
            self.last_snapshot_secs = now_secs();
            if self.floor_argv.is_empty() {
                self.floor_argv = self.floor_command(&run);
                self.report.floor_argv = self.floor_argv.clone();
            }
        }
        let post_sync = self.settle();
        let used_after = self.used_bytes();
        let sample = Sample::new(
            phase,
            index,
            tool,
            position,
            &run,
            post_sync,
            load1,
            used_before,
            used_after,
        );
        eprintln!(
            "bench:   {:<8} {:>8.3} s  (post-run sync {:.3} s, own peak RSS {} KiB)",
            tool.key(),
            run.wall,
            post_sync,
            sample.self_hwm_kib
        );
        self.report.samples.push(sample);
    }

    /// byteback's rsync argv as it ran its full pass (read from /proc), with
    /// the floor key in place of the client's, and with `--sparse`: a full
    /// pass may come in two runs (the files with holes listed first, with
    /// `--sparse`; then the pass, without), and the floor keeps holes in
    /// one, as byteback's two do.
    fn floor_command(&self, run: &Run) -> Vec<String> {
        let rsync = run
            .procs
            .iter()
            .find(|p| {
                p.depth == 1
                    && p.name == "rsync"
                    && !p.cmdline.iter().any(|a| a.starts_with("--files-from"))
            })
            .expect("saw byteback's full-pass rsync");
        let mut argv = rsync.cmdline.clone();
        if !argv.iter().any(|a| a == "--sparse") {
            let at = argv.iter().position(|a| a == "--relative").unwrap_or(1);
            argv.insert(at, "--sparse".into());
        }
        assert!(
            argv.len() > 3,
            "byteback's rsync argv not captured: {argv:?}"
        );
        let rsh = argv
            .iter()
            .position(|a| a == "--rsh")
            .map(|i| i + 1)
            .or_else(|| argv.iter().position(|a| a.starts_with("--rsh=")))
            .expect("--rsh in byteback's rsync argv");
        argv[rsh] = self.floor_rsh(&argv[rsh]);
        argv
    }

    /// byteback's `--rsh` with the floor key in place of the client's and
    /// without connection sharing: the floor makes one plain ssh connection.
    fn floor_rsh(&self, before: &str) -> String {
        let key = self.client_dir.join("key").to_string_lossy().into_owned();
        let floor_key = self.floor_key.to_string_lossy().into_owned();
        let swapped = before.replace(&format!(" -i {key} "), &format!(" -i {floor_key} "));
        assert_ne!(
            swapped, before,
            "could not swap the key in --rsh {before:?}"
        );
        // The floor is plain ssh: drop any shared-connection options
        // (`-o ControlPath=…`, `-o ControlMaster=…`, `-o ControlPersist=…`, `-S …`).
        let control = |w: &str| {
            let w = w.trim_matches('\'');
            ["ControlPath=", "ControlMaster=", "ControlPersist="]
                .iter()
                .any(|p| w.starts_with(p))
        };
        let words: Vec<&str> = swapped.split(' ').collect();
        let mut kept: Vec<&str> = Vec::new();
        let mut i = 0;
        while i < words.len() {
            if words[i] == "-o" && words.get(i + 1).is_some_and(|w| control(w)) || words[i] == "-S"
            {
                i += 2;
            } else {
                kept.push(words[i]);
                i += 1;
            }
        }
        kept.join(" ")
    }

    /// Small measurements that say where byteback's time goes.
    fn micro(&mut self) {
        eprintln!("bench: micro-measurements");
        let floor_rsh =
            self.floor_argv[self.floor_argv.iter().position(|a| a == "--rsh").unwrap() + 1].clone();
        // rsync's --rsh words: plain here (no quoting needed for our paths).
        assert!(
            !floor_rsh.contains(['\'', '"']),
            "quoted --rsh words: {floor_rsh}"
        );
        let floor_ssh: Vec<String> = floor_rsh.split(' ').map(str::to_owned).collect();
        let key = self.client_dir.join("key").to_string_lossy().into_owned();
        let floor_key = self.floor_key.to_string_lossy().into_owned();
        let client_ssh: Vec<String> = floor_ssh
            .iter()
            .map(|w| {
                if *w == floor_key {
                    key.clone()
                } else {
                    w.clone()
                }
            })
            .collect();
        let host = ["-l", &self.user.name, "--", "127.0.0.1"];
        let ssh = |base: &[String], cmd: &str| -> f64 {
            let mut argv: Vec<&str> = base.iter().map(String::as_str).collect();
            argv.extend_from_slice(&host);
            argv.push(cmd);
            timed(&argv)
        };
        let n = 10;
        let mut m = Micro::default();
        for _ in 0..n {
            m.ssh_noop.push(ssh(&floor_ssh, "true"));
            m.ssh_ping.push(ssh(&client_ssh, "byteback ping"));
            let t = Instant::now();
            let out = self
                .client(&[
                    "backup",
                    "--dry-run",
                    "--source",
                    &self.src.to_string_lossy(),
                ])
                .output()
                .unwrap();
            m.client_dry_run.push(t.elapsed().as_secs_f64());
            assert!(out.status.success(), "dry run: {}", text(&out));
            let t = Instant::now();
            let store = self.store().to_string_lossy().into_owned();
            let out = self
                .user
                .run_as(&["btrfs", "filesystem", "usage", "-b", &store]);
            m.btrfs_usage.push(t.elapsed().as_secs_f64());
            assert!(out.status.success(), "btrfs usage: {}", text(&out));
        }
        // The server's side of a ping, without ssh.
        let server = self.server_bin.to_string_lossy().into_owned();
        let store = self.store().to_string_lossy().into_owned();
        for _ in 0..n {
            let t = Instant::now();
            let out = self.user.run_as(&[
                "env",
                "SSH_ORIGINAL_COMMAND=byteback ping",
                &server,
                "receive",
                "--store",
                &store,
                "--client",
                CLIENT_NAME,
            ]);
            m.server_ping_local.push(t.elapsed().as_secs_f64());
            assert!(out.status.success(), "local ping: {}", text(&out));
        }
        // The same no-op round trip with a classic key exchange.
        let mut curve = floor_ssh.clone();
        curve.insert(1, "KexAlgorithms=curve25519-sha256".into());
        curve.insert(1, "-o".into());
        for _ in 0..n {
            m.ssh_noop_curve25519.push(ssh(&curve, "true"));
        }
        // And over one multiplexed connection, as ControlMaster would give.
        let control = self.logs.join("cm.sock").to_string_lossy().into_owned();
        let mut master: Vec<String> = floor_ssh.clone();
        let path = format!("ControlPath={control}");
        for w in ["-o", "ControlMaster=yes", "-o", &path, "-N", "-f"]
            .into_iter()
            .rev()
        {
            master.insert(1, w.to_owned());
        }
        // -f keeps stdout and stderr open in the background master: no pipes.
        let started = Command::new(&master[0])
            .args(&master[1..])
            .args(host)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run ssh master");
        if started.success() {
            let mut mux = floor_ssh.clone();
            mux.insert(1, format!("ControlPath={control}"));
            mux.insert(1, "-o".into());
            for _ in 0..n {
                m.ssh_noop_multiplexed.push(ssh(&mux, "true"));
            }
            let mut exit: Vec<&str> = mux.iter().map(String::as_str).collect();
            exit.extend_from_slice(&["-O", "exit"]);
            exit.extend_from_slice(&host);
            let _ = support::run(&exit);
        } else {
            eprintln!("bench: could not open a ControlMaster connection ({started})");
        }
        // Snapshots by hand, named in the past so they cannot collide with
        // the backups' names; nothing is dirty, so this is the bare cost.
        for i in 0..5 {
            let at = format!("2001-01-01T00:00:0{i}Z");
            let t = Instant::now();
            let out = self.server(&["snapshot", "--client", CLIENT_NAME, "--at", &at]);
            m.snapshot_by_hand.push(t.elapsed().as_secs_f64());
            assert!(out.status.success(), "snapshot by hand: {}", text(&out));
        }
        self.report.micro = m;
    }
}
