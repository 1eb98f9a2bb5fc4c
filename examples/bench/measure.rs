//! Running one timed command: wall time, its process tree sampled from /proc
//! (peak resident memory of each process, when each child ran), and the
//! kernel's resource usage from `wait4`.
//!
//! About `wait4`: on Linux the rusage it returns for a reaped child is
//! `RUSAGE_BOTH` of that child (kernel/exit.c, `wait_task_zombie`), i.e. the
//! child itself *and* every descendant it waited for. Its `ru_maxrss` is
//! therefore max(byteback, rsync, ssh), not byteback's own peak. A zombie's
//! own peak is no longer readable (its mm is gone), so byteback's own peak
//! comes from polling `/proc/<pid>/status` `VmHWM` (a high-water mark, so any
//! poll after the peak sees it; only growth in the last poll interval before
//! exit could be missed). rsync's and ssh's peaks come from the same polling,
//! counted only once the process has exec'd (before exec, a vfork'd child
//! shares its parent's memory and would show the parent's numbers).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Poll interval for /proc.
const POLL: Duration = Duration::from_millis(5);

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Timeval {
    sec: i64,
    usec: i64,
}

/// `struct rusage` on 64-bit Linux.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Rusage {
    utime: Timeval,
    stime: Timeval,
    maxrss: i64,
    rest: [i64; 13],
}

unsafe extern "C" {
    fn wait4(pid: i32, status: *mut i32, options: i32, rusage: *mut Rusage) -> i32;
    fn signal(signum: i32, handler: usize) -> usize;
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: i32) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turns SIGINT and SIGTERM into a flag, so the benchmark can unwind and the
/// fixtures' Drop can clean up. (Children get SIGINT from the terminal too,
/// fail, and the benchmark stops at that failure.)
pub fn catch_signals() {
    for sig in [2, 15] {
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            signal(sig, on_signal as *const () as usize);
        }
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// One process seen below (or as) the measured command.
#[derive(Debug, Clone)]
pub struct Proc {
    pub name: String,
    /// Depth below the measured process (0 = itself).
    pub depth: u32,
    /// Seconds after spawn when it was first and last seen running `name`.
    pub first: f64,
    pub last: f64,
    pub hwm_kib: u64,
    /// Its argv, read when first seen.
    pub cmdline: Vec<String>,
    /// Watched processes only: CPU seconds (user + sys) at the last poll.
    pub cpu: f64,
}

/// The result of one measured command.
#[derive(Debug, Clone)]
pub struct Run {
    pub wall: f64,
    /// Exit code, or 128 + signal.
    pub code: i32,
    /// From wait4: the process and its reaped descendants.
    pub wait4_maxrss_kib: u64,
    pub cpu_user: f64,
    pub cpu_sys: f64,
    /// Every process seen, in order of first appearance.
    pub procs: Vec<Proc>,
    pub stdout: String,
    pub stderr: String,
    /// CPU seconds the polling thread itself used (the benchmark's own
    /// disturbance, on the same cores).
    pub poll_cpu: f64,
}

impl Run {
    /// Peak VmHWM of the measured process itself.
    pub fn self_hwm_kib(&self) -> u64 {
        self.procs
            .iter()
            .filter(|p| p.depth == 0)
            .map(|p| p.hwm_kib)
            .max()
            .unwrap_or(0)
    }

    /// Peak VmHWM over processes named `name` (other than the measured one).
    pub fn hwm_of(&self, name: &str) -> u64 {
        self.procs
            .iter()
            .filter(|p| p.depth > 0 && p.depth != OUTSIDE && p.name == name)
            .map(|p| p.hwm_kib)
            .max()
            .unwrap_or(0)
    }

    /// Peak VmHWM of the watched processes outside the tree (0 if none seen).
    pub fn watched_hwm_kib(&self) -> u64 {
        self.procs
            .iter()
            .filter(|p| p.depth == OUTSIDE)
            .map(|p| p.hwm_kib)
            .max()
            .unwrap_or(0)
    }

    /// The watched process outside the tree that lived longest: (seconds
    /// it was seen running, its CPU seconds at the last poll).
    pub fn watched_life(&self) -> Option<(f64, f64)> {
        self.procs
            .iter()
            .filter(|p| p.depth == OUTSIDE)
            .map(|p| (p.last - p.first, p.cpu))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    }

    /// Watched processes outside the tree: how many, and their CPU
    /// seconds summed (each as last polled).
    pub fn watched_cpu_total(&self) -> (usize, f64) {
        let w: Vec<&Proc> = self.procs.iter().filter(|p| p.depth == OUTSIDE).collect();
        (w.len(), w.iter().map(|p| p.cpu).sum())
    }

    /// Direct children named `name`, in order.
    pub fn children(&self, name: &str) -> Vec<&Proc> {
        self.procs
            .iter()
            .filter(|p| p.depth == 1 && p.name == name)
            .collect()
    }
}

/// Runs `cmd` (stdin /dev/null, output to files under `log_dir` named by
/// `label`), sampling its process tree until it exits. `expect` names the
/// programs whose memory counts (the measured program and its children after
/// exec); anything else (such as a forked child not yet exec'd) is ignored.
pub fn measure(cmd: &mut Command, log_dir: &Path, label: &str, expect: &[&str]) -> Run {
    measure_watching(cmd, log_dir, label, expect, None)
}

/// [`measure`], and meanwhile also the processes outside the tree that run
/// as `watch.0` under the name `watch.1` (such as the `byteback-server` that
/// sshd starts for a request): recorded with depth [`OUTSIDE`]. Until the
/// first is seen, each poll scans /proc (one `stat` per process); then only
/// those found are polled, until they have all gone.
pub fn measure_watching(
    cmd: &mut Command,
    log_dir: &Path,
    label: &str,
    expect: &[&str],
    watch: Option<(u32, &str)>,
) -> Run {
    measure_inner(cmd, log_dir, label, expect, watch, false)
}

/// [`measure_watching`] for a command that makes several requests, each
/// served by a process of its own outside the tree (a backup: ping, ready,
/// transfer, complete): once the watched processes found have gone, the
/// poller scans for the next ones, and each one's CPU counts its reaped
/// children too (`cutime` + `cstime`). [`Run::watched_cpu_total`] sums them.
pub fn measure_watching_all(
    cmd: &mut Command,
    log_dir: &Path,
    label: &str,
    expect: &[&str],
    watch: (u32, &str),
) -> Run {
    measure_inner(cmd, log_dir, label, expect, Some(watch), true)
}

fn measure_inner(
    cmd: &mut Command,
    log_dir: &Path,
    label: &str,
    expect: &[&str],
    watch: Option<(u32, &str)>,
    rescan: bool,
) -> Run {
    let out_path = log_dir.join(format!("{label}.out"));
    let err_path = log_dir.join(format!("{label}.err"));
    cmd.stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("create stdout log"))
        .stderr(File::create(&err_path).expect("create stderr log"));
    let t0 = Instant::now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
    let pid = child.id();
    let stop = Arc::new(AtomicBool::new(false));
    let expect: Vec<String> = expect.iter().map(|s| s.to_string()).collect();
    let watch = watch.map(|(uid, name)| (uid, name.to_owned()));
    let poller = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || poll_tree(pid, t0, &stop, &expect, watch.as_ref(), rescan))
    };
    let mut status = 0i32;
    let mut ru = Rusage::default();
    loop {
        // SAFETY: plain syscall wrapper with valid out-pointers.
        let r = unsafe { wait4(pid as i32, &mut status, 0, &mut ru) };
        if r == pid as i32 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            panic!("wait4 {pid}: {e}");
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let (procs, poll_cpu) = poller.join().expect("poller thread");
    // std's Child would wait again on drop? No: dropping a Child neither
    // waits nor kills; it only closes our ends of its pipes (none here).
    drop(child);
    let code = if status & 0x7f == 0 {
        (status >> 8) & 0xff
    } else {
        128 + (status & 0x7f)
    };
    let secs = |t: Timeval| t.sec as f64 + t.usec as f64 / 1e6;
    Run {
        wall,
        code,
        wait4_maxrss_kib: ru.maxrss as u64,
        cpu_user: secs(ru.utime),
        cpu_sys: secs(ru.stime),
        procs,
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        poll_cpu,
    }
}

/// Depth given to a watched process outside the measured tree.
pub const OUTSIDE: u32 = u32::MAX;

fn poll_tree(
    root: u32,
    t0: Instant,
    stop: &AtomicBool,
    expect: &[String],
    watch: Option<&(u32, String)>,
    rescan: bool,
) -> (Vec<Proc>, f64) {
    let mut seen: BTreeMap<(u32, String), Proc> = BTreeMap::new();
    let mut order: Vec<(u32, String)> = Vec::new();
    // Watched processes found so far: once there are some, only they are
    // polled (no more /proc scans), until all of them have gone.
    let mut found: Vec<u32> = Vec::new();
    let mut watching = watch.is_some();
    loop {
        let done = stop.load(Ordering::SeqCst);
        let now = t0.elapsed().as_secs_f64();
        if let Some((uid, want)) = watch.filter(|_| watching) {
            let pids = if found.is_empty() {
                watched(*uid)
            } else {
                found.clone()
            };
            let mut alive = false;
            for pid in pids {
                if let Some((name, hwm)) = read_status(pid).filter(|(n, _)| n == want) {
                    alive = true;
                    if !found.contains(&pid) {
                        found.push(pid);
                    }
                    let key = (pid, name.clone());
                    let p = seen.entry(key.clone()).or_insert_with(|| {
                        order.push(key);
                        Proc {
                            name,
                            depth: OUTSIDE,
                            first: now,
                            last: now,
                            hwm_kib: 0,
                            cmdline: read_cmdline(pid),
                            cpu: 0.0,
                        }
                    });
                    p.last = now;
                    p.hwm_kib = p.hwm_kib.max(hwm);
                    let cpu = if rescan {
                        process_cpu_with_children(pid)
                    } else {
                        process_cpu(pid)
                    };
                    if let Some(cpu) = cpu {
                        p.cpu = cpu;
                    }
                }
            }
            if !found.is_empty() && !alive {
                if rescan {
                    found.clear();
                } else {
                    watching = false;
                }
            }
        }
        let mut stack = vec![(root, 0u32)];
        while let Some((pid, depth)) = stack.pop() {
            if let Some((name, hwm)) = read_status(pid) {
                if expect.contains(&name) {
                    let key = (pid, name.clone());
                    let p = seen.entry(key.clone()).or_insert_with(|| {
                        order.push(key);
                        Proc {
                            name,
                            depth,
                            first: now,
                            last: now,
                            hwm_kib: 0,
                            cmdline: read_cmdline(pid),
                            cpu: 0.0,
                        }
                    });
                    p.last = now;
                    p.hwm_kib = p.hwm_kib.max(hwm);
                }
            }
            let kids = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"));
            for k in kids.unwrap_or_default().split_whitespace() {
                if let Ok(k) = k.parse() {
                    stack.push((k, depth + 1));
                }
            }
        }
        if done {
            break;
        }
        thread::sleep(POLL);
    }
    let procs = order.into_iter().filter_map(|k| seen.remove(&k)).collect();
    (procs, thread_cpu())
}

/// The processes running as `uid` (the owner of /proc/PID is its euid).
fn watched(uid: u32) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| fs::metadata(format!("/proc/{pid}")).is_ok_and(|m| m.uid() == uid))
        .collect()
}

/// CPU seconds (user + sys) of the calling thread, from /proc/thread-self/stat.
fn thread_cpu() -> f64 {
    stat_cpu("/proc/thread-self/stat").unwrap_or(0.0)
}

/// CPU seconds (user + sys) of a live process so far.
fn process_cpu(pid: u32) -> Option<f64> {
    stat_cpu(&format!("/proc/{pid}/stat"))
}

/// CPU seconds of a live process and the children it has reaped so far.
fn process_cpu_with_children(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|w| w.parse().unwrap_or(0))
        .collect();
    // utime, stime, cutime, cstime: fields 14–17.
    let ticks: u64 = (11..15).map(|i| f.get(i).copied().unwrap_or(0)).sum();
    Some(ticks as f64 / 100.0)
}

fn stat_cpu(path: &str) -> Option<f64> {
    let stat = fs::read_to_string(path).ok()?;
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|w| w.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Some(ticks as f64 / 100.0) // USER_HZ is 100 on Linux
}

fn read_cmdline(pid: u32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect()
}

/// (Name, VmHWM in KiB) of a live process; None for zombies and the gone.
fn read_status(pid: u32) -> Option<(String, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut name = None;
    let mut hwm = None;
    for line in s.lines() {
        if let Some(v) = line.strip_prefix("Name:") {
            name = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("VmHWM:") {
            hwm = v.trim().trim_end_matches("kB").trim().parse().ok();
        }
    }
    Some((name?, hwm?))
}

/// Times a plain command to completion (output discarded); panics if it fails.
pub fn timed(argv: &[&str]) -> f64 {
    let t0 = Instant::now();
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
    let t = t0.elapsed().as_secs_f64();
    assert!(out.status.success(), "{argv:?} failed: {out:?}");
    t
}
