//! Times guided walks over a 20,000-file store tree, as `list` would do over
//! 100 snapshots. Prints figures; asserts nothing.
//!
//! `cargo run --release --example list_bench`

use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use byteback::finder::{Pattern, walk};

const DIRS: usize = 200;
const FILES: usize = 100;
const RUNS: usize = 100;

/// `/home/u<d>/file<f>` (and a few dotfiles), with fake-super xattrs; plus a
/// dot-directory per home that `**` must not enter.
fn build(root: &Path) -> std::io::Result<usize> {
    let flags = rustix::fs::XattrFlags::empty();
    let mut n = 0;
    for d in 0..DIRS {
        let home = root.join(format!("home/u{d}"));
        std::fs::create_dir_all(home.join(".cache"))?;
        for f in 0..FILES {
            // Every 20th file is a dotfile, and a few go to .cache.
            let name = match f % 20 {
                0 => format!(".rc{f}"),
                1 => format!(".cache/file{f}"),
                _ => format!("file{f}"),
            };
            let path = home.join(name);
            std::fs::write(&path, format!("{d}/{f}"))?;
            let stat = format!("100640 0,0 {}:100", 1000 + d);
            rustix::fs::lsetxattr(&path, "user.rsync.%stat", stat.as_bytes(), flags)?;
            n += 1;
        }
    }
    Ok(n)
}

fn peak_rss_kib() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .map_or("unknown".to_owned(), |l| {
            l.trim_start_matches("VmHWM:").trim().to_owned()
        })
}

/// CPU seconds (user + system) this process used so far: on a shared
/// machine a steadier figure than wall time.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 12th and 13th of those, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

fn main() -> std::io::Result<()> {
    // LIST_BENCH_ROOT keeps the tree between runs (for profiling the walk).
    let kept = std::env::var_os("LIST_BENCH_ROOT").map(std::path::PathBuf::from);
    let pid = std::process::id();
    let root = kept
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("byteback-list-bench-{pid}")));
    if !(kept.is_some() && root.exists()) {
        let _ = std::fs::remove_dir_all(&root);
        let started = Instant::now();
        let files = build(&root)?;
        println!(
            "built {files} files in {DIRS} dirs under {} in {:.2?}",
            root.display(),
            started.elapsed()
        );
    }
    println!("peak RSS after building: {}", peak_rss_kib());

    let list = std::env::var("PATTERNS")
        .unwrap_or("/home/u17/file42 /home/*/file42 /home/**/file4?".into());
    for pattern in list.split(' ') {
        let patterns = [Pattern::parse(pattern.as_bytes()).expect("valid pattern")];
        let mut times: Vec<Duration> = Vec::with_capacity(RUNS);
        let mut matches = 0;
        let cpu = cpu_seconds();
        for _ in 0..RUNS {
            let t = Instant::now();
            matches = 0;
            walk(
                &root,
                &patterns,
                |w| eprintln!("{w}"),
                |_found| {
                    matches += 1;
                    ControlFlow::Continue(())
                },
            )?;
            times.push(t.elapsed());
        }
        let total: Duration = times.iter().sum();
        let cpu = cpu_seconds() - cpu;
        times.sort();
        println!(
            "{pattern:<18} {matches:>5} matches/walk  median {:>9.2?}  total of {RUNS} walks {:>9.2?}  (CPU {cpu:.2} s)",
            times[RUNS / 2],
            total
        );
    }
    println!("peak RSS (VmHWM): {}", peak_rss_kib());
    if kept.is_none() {
        std::fs::remove_dir_all(&root)?;
    }
    Ok(())
}
