//! (h) The change index at scale, without files: a synthetic walk of N
//! entries (a mail or build server's shape: 20 files a directory) run
//! through the client's own index code — save it, then the next backup's
//! work: load and check the stored index, compare it with a new walk in
//! which 1% of the files changed, release it, save the new one. No
//! transfer, no ssh, no real tree (a million files would take longer to
//! write than everything else together).
//!
//! Each size runs in a child process of its own (this example re-run with
//! `--index-sim N`), so its peak resident set (VmHWM, read by the child at
//! the end) is that size's alone, not the benchmark's.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use byteback::client::index::{self, Entry, Header, Index, Stored};

use crate::report::median;

/// Files per directory in the synthetic tree (the `many` profile's shape).
const PER_DIR: usize = 20;

/// One size's figures, as the child printed them.
#[derive(Debug, Clone, Default)]
pub struct SimPoint {
    pub entries: u64,
    /// Building the walk's entries (stands for the stat walk, which this
    /// does not measure: see (f) for the real one).
    pub synth_s: f64,
    /// The first index saved (what a full pass commits).
    pub save_s: f64,
    /// The next backup: `Stored::load` (read + checksum + every record).
    pub load_s: f64,
    /// `index::compare` of the stored index with the new walk.
    pub compare_s: f64,
    /// Saving the new index.
    pub resave_s: f64,
    /// Paths the comparison would send (1% changed, plus their directories' none).
    pub changed: u64,
    pub index_bytes: u64,
    /// The child's VmHWM at the end.
    pub hwm_kib: u64,
}

impl SimPoint {
    /// The next backup's index work: load + compare + save.
    pub fn next_backup_s(&self) -> f64 {
        self.load_s + self.compare_s + self.resave_s
    }
}

/// The entries of a synthetic walk, in walk order: `/sim/dNNNNNN/` with
/// [`PER_DIR`] files each. `generation` > 0 changes every 100th file's
/// times and size (1%).
fn synth(n: usize, generation: u64) -> Vec<Entry> {
    let dirs = n.div_ceil(PER_DIR + 1).max(1);
    let mut out = Vec::with_capacity(n + 2);
    let base = 1_700_000_000_000_000_000i64;
    let entry = |path: Vec<u8>, ino: u64, mode: u32, size: u64, t: i64| Entry {
        path,
        dev: 42,
        ino,
        mode,
        uid: 1000,
        gid: 1000,
        nlink: 1,
        size,
        mtime: t,
        ctime: t,
        unsure: false,
        short: false,
    };
    out.push(entry(b"/sim".to_vec(), 1, 0o040755, 4096, base));
    let mut ino = 2u64;
    'outer: for d in 0..dirs {
        let dir = format!("/sim/d{d:06}");
        out.push(entry(dir.clone().into_bytes(), ino, 0o040755, 4096, base));
        ino += 1;
        for f in 0..PER_DIR {
            if out.len() >= n {
                break 'outer;
            }
            let changed = generation > 0 && ino % 100 == generation % 100;
            let t = base + ino as i64 * 1_000 + if changed { 1_000_000_000 } else { 0 };
            let size = (ino * 7919) % 4096 + u64::from(changed);
            let path = format!("{dir}/m{f:04}.eml").into_bytes();
            out.push(entry(path, ino, 0o100644, size, t));
            ino += 1;
        }
    }
    // The walk's order (the names above already sort this way; this is
    // the walk's own sort, timed with it).
    out.sort_by(|a, b| index::cmp_paths(&a.path, &b.path));
    out
}

fn header(snapshot: &str, entries: usize) -> Header {
    Header {
        snapshot: snapshot.to_owned(),
        fingerprint: "bench-sim".to_owned(),
        incrementals: 0,
        entries: entries as u64,
        server_protocol: byteback::protocol::PROTOCOL_VERSION,
    }
}

fn own_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The child's side: runs one size in `dir` and prints one line.
pub fn child(n: usize, dir: &Path) {
    let file = dir.join(format!("index-{n}"));
    let mut p = SimPoint {
        entries: n as u64,
        ..SimPoint::default()
    };
    let t = Instant::now();
    let first = synth(n, 0);
    let synth_first = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let idx = Index {
        header: header("2026-01-01T00:00:00Z", first.len()),
        entries: first,
    };
    idx.save(&file).expect("save the index");
    p.save_s = t.elapsed().as_secs_f64();
    drop(idx);
    p.index_bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    // The next backup: a new walk, the stored index, the comparison.
    let t = Instant::now();
    let walked = synth(n, 1);
    p.synth_s = (synth_first + t.elapsed().as_secs_f64()) / 2.0;
    let t = Instant::now();
    let mut stored = Stored::load(&file).expect("an intact index");
    p.load_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let changes = index::compare(stored.entries(), &walked);
    p.compare_s = t.elapsed().as_secs_f64();
    p.changed = changes.send.len() as u64;
    stored.release();
    let t = Instant::now();
    let idx = Index {
        header: header("2026-01-02T00:00:00Z", walked.len()),
        entries: walked,
    };
    idx.save(&file).expect("save the new index");
    p.resave_s = t.elapsed().as_secs_f64();
    p.hwm_kib = own_hwm_kib();
    let _ = std::fs::remove_file(&file);
    println!(
        "indexsim entries={} synth={:.6} save={:.6} load={:.6} compare={:.6} resave={:.6} changed={} bytes={} hwm={}",
        p.entries,
        p.synth_s,
        p.save_s,
        p.load_s,
        p.compare_s,
        p.resave_s,
        p.changed,
        p.index_bytes,
        p.hwm_kib
    );
}

fn parse(line: &str) -> Option<SimPoint> {
    let rest = line.strip_prefix("indexsim ")?;
    let mut p = SimPoint::default();
    for kv in rest.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        let f = || v.parse::<f64>().ok();
        let u = || v.parse::<u64>().ok();
        match k {
            "entries" => p.entries = u()?,
            "synth" => p.synth_s = f()?,
            "save" => p.save_s = f()?,
            "load" => p.load_s = f()?,
            "compare" => p.compare_s = f()?,
            "resave" => p.resave_s = f()?,
            "changed" => p.changed = u()?,
            "bytes" => p.index_bytes = u()?,
            "hwm" => p.hwm_kib = u()?,
            _ => {}
        }
    }
    Some(p)
}

/// The parent's side: each size in a child of its own, in `dir`.
pub fn run(sizes: &[usize], dir: &Path) -> Vec<SimPoint> {
    std::fs::create_dir_all(dir).expect("create the index simulation's directory");
    let exe = std::env::current_exe().expect("current_exe");
    let mut points = Vec::new();
    for &n in sizes {
        let mut runs = Vec::new();
        for round in 1..=ROUNDS {
            eprintln!("bench: (h) change index of {n} synthetic entries, {round}/{ROUNDS}");
            runs.push(one(&exe, n, dir));
        }
        points.push(median_point(&runs));
    }
    let _ = std::fs::remove_dir_all(dir);
    points
}

/// Runs per size; each column's median is reported (the saves' fsync
/// and a shared machine make single runs noisy).
const ROUNDS: usize = 3;

fn median_point(runs: &[SimPoint]) -> SimPoint {
    let m = |f: fn(&SimPoint) -> f64| {
        let v: Vec<f64> = runs.iter().map(f).collect();
        median(&v)
    };
    SimPoint {
        entries: runs[0].entries,
        synth_s: m(|p| p.synth_s),
        save_s: m(|p| p.save_s),
        load_s: m(|p| p.load_s),
        compare_s: m(|p| p.compare_s),
        resave_s: m(|p| p.resave_s),
        changed: runs[0].changed,
        index_bytes: runs[0].index_bytes,
        hwm_kib: runs.iter().map(|p| p.hwm_kib).max().unwrap_or(0),
    }
}

fn one(exe: &Path, n: usize, dir: &Path) -> SimPoint {
    {
        let out = Command::new(exe)
            .arg("--index-sim")
            .arg(n.to_string())
            .arg("--sim-dir")
            .arg(dir)
            .output()
            .expect("run the index simulation");
        let text = String::from_utf8_lossy(&out.stdout);
        let point = text.lines().find_map(parse);
        match point {
            Some(p) if out.status.success() => {
                eprintln!(
                    "bench:   {n} entries: next backup's index work {:.3} s, peak RSS {:.1} MiB",
                    p.next_backup_s(),
                    p.hwm_kib as f64 / 1024.0
                );
                p
            }
            _ => panic!(
                "index simulation of {n} entries failed: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}

/// The section of RESULTS.md.
pub fn markdown(points: &[SimPoint]) -> String {
    let mut o = String::new();
    if points.is_empty() {
        return o;
    }
    let _ = writeln!(
        o,
        "\n## (h) The change index at 250k, 500k and 1M entries\n\n\
         A synthetic walk ({PER_DIR} files a directory, paths like \
         `/sim/d000123/m0007.eml`) through the client's own index code \
         (`byteback::client::index`), each size three times, each in a process of its own (medians; peak RSS the max): the first index \
         saved, then the next backup's work — `Stored::load` (read, checksum, every record \
         checked), `compare` with a new walk in which 1% of the files changed, the new \
         index saved. No files, no transfer: the stat walk itself is measured on the real \
         tree in (f). *peak RSS* is the process's VmHWM at the end (both walks' entries, \
         the stored index's bytes). *per entry* divides by the entries, so a linear growth \
         shows as a flat column.\n"
    );
    let _ = writeln!(
        o,
        "| entries | build one walk's entries (s) | first save (s) | load (s) | compare (s) | save (s) | next backup's index work (s) | µs per entry | paths to send | index file | peak RSS | bytes of RSS per entry |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for p in points {
        let n = p.entries.max(1) as f64;
        let _ = writeln!(
            o,
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} | {} | {:.1} MiB | {:.1} MiB | {:.0} |",
            p.entries,
            p.synth_s,
            p.save_s,
            p.load_s,
            p.compare_s,
            p.resave_s,
            p.next_backup_s(),
            p.next_backup_s() * 1e6 / n,
            p.changed,
            p.index_bytes as f64 / 1048576.0,
            p.hwm_kib as f64 / 1024.0,
            p.hwm_kib as f64 * 1024.0 / n
        );
    }
    if let (Some(a), Some(b)) = (points.first(), points.last()) {
        let size = b.entries as f64 / a.entries.max(1) as f64;
        let _ = writeln!(
            o,
            "\nFrom {} to {} entries ({size:.1}×): the next backup's index work grew {:.2}×, \
             peak RSS {:.2}× (linear: both ≈ {size:.1}×).",
            a.entries,
            b.entries,
            b.next_backup_s() / a.next_backup_s().max(1e-9),
            b.hwm_kib as f64 / a.hwm_kib.max(1) as f64
        );
    }
    o
}
