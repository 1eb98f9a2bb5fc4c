//! Runs a server-side rsync between the SSH connection and a pair of pipes,
//! so that no rsync outlives or outwaits its client.
//!
//! rsync's own `--timeout` is not enough on the server: once the receiver
//! has forked, its two processes keep each other's timers alive, so a client
//! that goes silent in the middle of file data held a receiver (and its
//! client's lock) for as long as the connection stayed open. Here every byte
//! passes through this process, which knows when the last one arrived:
//!
//! - silence from the client for longer than the limit ends the child;
//! - the client closing its side (the connection is gone) ends the child
//!   after a short grace for rsync's own goodbye;
//! - a check the caller supplies (e.g. "this transfer is over its space
//!   limit") can end it too.
//!
//! And since every byte passes here, this is where a transfer keeps to its
//! share of a bandwidth budget: the caller says, when asked (every
//! [`RECOUNT`]), how many bytes per second this connection may move now,
//! both ways together, and the copiers pace themselves to it (a shared
//! [`Pacer`]). Not reading from the connection is what slows the client
//! down: its ssh and rsync wait on a full TCP window, as behind a slow
//! link. The caller decides what the share is (the server's budget over
//! the transfers running now); this module only keeps to it.
//!
//! "Ends" means SIGTERM to the child's process group, then SIGKILL: rsync
//! forks, and a filter rule can make it spin where SIGTERM is ignored.
//!
//! This process is also the subreaper of everything rsync forks: when rsync
//! fails, its parent may exit without waiting for its receiver, which then
//! becomes ours to reap rather than init's. So nothing rsync started is
//! left running, and what it wrote is counted in this process's
//! `getrusage(RUSAGE_CHILDREN)` (see `prune::growth`).

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::pipe::SpliceFlags;
use rustix::process::{Pid, Signal, WaitOptions, kill_process_group};

use crate::error::{Error, Result};

/// When to give up on a connection.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    /// End the child when the client has sent nothing for this long.
    pub client_silence: Duration,
    /// Only count silence when nothing flows towards the client either
    /// (a restore, where the client mostly listens).
    pub client_may_just_listen: bool,
    /// How long the child may run on after the client closed its side.
    pub after_hangup: Duration,
}

/// How the child ended.
#[derive(Debug)]
pub struct Ended {
    /// Its exit status.
    pub status: ExitStatus,
    /// Why it was ended, if this relay ended it.
    pub ended_because: Option<String>,
    /// Bytes passed from the client to the child, and back.
    pub relayed_in: u64,
    pub relayed_out: u64,
    /// Whether every byte moved by `splice(2)`, none through this
    /// process's memory (see [`copy`]).
    pub spliced: bool,
}

/// Time since the relay started, in milliseconds, shared between threads.
#[derive(Debug, Default)]
struct Clock(AtomicU64);

impl Clock {
    fn mark(&self, start: Instant) {
        self.0
            .store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn since(&self, start: Instant) -> Duration {
        let then = Duration::from_millis(self.0.load(Ordering::Relaxed));
        start.elapsed().saturating_sub(then)
    }
}

/// How often the relay asks the caller for its rate: a share that
/// changes as transfers start and end takes effect within this.
pub const RECOUNT: Duration = Duration::from_millis(500);

/// Paces the bytes of both copiers to one rate, shared between threads.
/// Each chunk books its time after those before it (a virtual clock that
/// never falls behind the real one, so idle time earns no burst) and waits
/// until its slot has passed: over any stretch the bytes moved are at
/// most the rate times the time, plus one chunk.
#[derive(Debug, Default)]
struct Pacer {
    /// Bytes per second; 0: no limit.
    rate: AtomicU64,
    /// When the bytes booked so far have had their time.
    booked_until: Mutex<Option<Instant>>,
}

impl Pacer {
    fn set_rate(&self, rate: Option<u64>) {
        self.rate.store(rate.unwrap_or(0), Ordering::Relaxed);
    }

    /// How many bytes to read at a time: a quarter second's worth, so a
    /// small share moves in small steps, between 1 and 64 KiB.
    fn chunk(&self) -> usize {
        match self.rate.load(Ordering::Relaxed) {
            0 => CHUNK,
            rate => usize::try_from(rate / 4)
                .unwrap_or(CHUNK)
                .clamp(1024, CHUNK),
        }
    }

    /// Waits until `bytes` more may go.
    fn pass(&self, bytes: usize) {
        let rate = self.rate.load(Ordering::Relaxed);
        if rate == 0 {
            return;
        }
        let wait = {
            let mut booked = self.booked_until.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let from = booked.filter(|b| *b > now).unwrap_or(now);
            let until = from + Duration::from_secs_f64(bytes as f64 / rate as f64);
            *booked = Some(until);
            until - now
        };
        std::thread::sleep(wait);
    }
}

/// The most a copier moves at a time (a pipe's default capacity).
const CHUNK: usize = 64 * 1024;

/// When a copier counts bytes as seen (see [`Clock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// When they arrive: the client's bytes count as a sign of life even
    /// while the child is slow to take them.
    OnArrival,
    /// Once they are passed on: bytes towards a client that does not read
    /// them are no sign of its life.
    OnDelivery,
}

/// Why a copier stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Its input ended (or failed): the other side is gone.
    InputEnded,
    /// Its output could not take more: the reader is gone.
    OutputFailed,
}

/// How a copy ended, and how it moved the bytes.
#[derive(Debug, Clone, Copy)]
struct Copied {
    stop: Stop,
    /// Some bytes went through a buffer here: `splice` was refused.
    copied_in_user_space: bool,
}

/// Moves bytes from `from` to `to` until the input ends or the output
/// fails, at most [`Pacer::chunk`] at a time and each step paced, calling
/// `seen` with each step's byte count (when per `mark`).
///
/// One side is always one of the child's pipes, so the kernel can move
/// the bytes itself with `splice(2)`, without copying them into this
/// process and out again. Where it will not (`EINVAL`: e.g. a terminal,
/// or a file opened for appending, on the other side; `ENOSYS`), the copy
/// goes on with read and write through a buffer, as it did before splice.
fn copy(
    from: &impl AsFd,
    to: &impl AsFd,
    pacer: &Pacer,
    mark: Mark,
    mut seen: impl FnMut(usize),
) -> Copied {
    use rustix::io::Errno;
    let (from, to) = (from.as_fd(), to.as_fd());
    loop {
        let chunk = pacer.chunk();
        match rustix::pipe::splice(from, None, to, None, chunk, SpliceFlags::MOVE) {
            Ok(0) => {
                return Copied {
                    stop: Stop::InputEnded,
                    copied_in_user_space: false,
                };
            }
            Ok(n) => {
                seen(n);
                pacer.pass(n);
            }
            Err(Errno::INTR) => {}
            // A side opened non-blocking: wait rather than spin.
            Err(Errno::AGAIN) => {
                wait_for(from, PollFlags::IN);
                wait_for(to, PollFlags::OUT);
            }
            Err(Errno::INVAL | Errno::NOSYS) => break,
            // The reader is gone (the child, or the connection).
            Err(Errno::PIPE | Errno::CONNRESET) => {
                return Copied {
                    stop: Stop::OutputFailed,
                    copied_in_user_space: false,
                };
            }
            // As a failed read would end the copy.
            Err(_) => {
                return Copied {
                    stop: Stop::InputEnded,
                    copied_in_user_space: false,
                };
            }
        }
    }
    Copied {
        stop: copy_through_buffer(from, to, pacer, mark, seen),
        copied_in_user_space: true,
    }
}

/// Waits (at most a second) until `fd` is ready for `what`.
fn wait_for(fd: BorrowedFd<'_>, what: PollFlags) {
    let second = Timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    let _ = poll(&mut [PollFd::from_borrowed_fd(fd, what)], Some(&second));
}

/// [`copy`] by read and write, where splice is refused.
fn copy_through_buffer(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    pacer: &Pacer,
    mark: Mark,
    mut seen: impl FnMut(usize),
) -> Stop {
    use rustix::io::Errno;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let chunk = pacer.chunk();
        let n = match rustix::io::read(from, &mut buf[..chunk]) {
            Ok(0) => return Stop::InputEnded,
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => {
                wait_for(from, PollFlags::IN);
                continue;
            }
            Err(_) => return Stop::InputEnded,
        };
        if mark == Mark::OnArrival {
            seen(n);
        }
        pacer.pass(n);
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            match rustix::io::write(to, rest) {
                Ok(0) => return Stop::OutputFailed,
                Ok(w) => rest = &rest[w..],
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => wait_for(to, PollFlags::OUT),
                Err(_) => return Stop::OutputFailed,
            }
        }
        if mark == Mark::OnDelivery {
            seen(n);
        }
    }
}

/// Waits for what rsync forked and left behind (a receiver finishing after
/// its parent failed), ending it after a few seconds; returns when this
/// process has no children left.
fn reap_stragglers(group: Pid) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut killed = false;
    loop {
        match rustix::process::wait(WaitOptions::NOHANG) {
            Ok(Some(_)) => {}
            Ok(None) if Instant::now() >= deadline + Duration::from_secs(20) => return,
            Ok(None) => {
                if !killed && Instant::now() >= deadline {
                    let _ = kill_process_group(group, Signal::KILL);
                    killed = true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // ECHILD: none left.
            Err(_) => return,
        }
    }
}

/// Waits until the child behind `pidfd` exits or [`TICK`] passes,
/// whichever is first.
fn exited_or_tick(pidfd: Option<&std::os::fd::OwnedFd>) {
    let Some(fd) = pidfd else {
        std::thread::sleep(TICK);
        return;
    };
    let tick = Timespec {
        tv_sec: 0,
        tv_nsec: TICK.as_nanos() as _,
    };
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    if poll(&mut fds, Some(&tick)).is_err() {
        std::thread::sleep(TICK);
    }
}

/// How often the relay looks at the child, its client and its limits when
/// nothing else wakes it.
const TICK: Duration = Duration::from_millis(100);

/// Copies stdin to the child and its stdout to ours until the child ends,
/// ending it early per `watch` or when `check` returns a reason, and
/// moving at most `rate()` bytes per second (both ways together; `None`:
/// no limit), asked every [`RECOUNT`]. The child must have been spawned
/// with piped stdin and stdout, in its own process group.
pub fn run(
    mut child: Child,
    watch: Watch,
    mut check: impl FnMut() -> Option<String>,
    mut rate: impl FnMut() -> Option<u64>,
) -> Result<Ended> {
    let start = Instant::now();
    let pacer = Arc::new(Pacer::default());
    pacer.set_rate(rate());
    let mut next_recount = start + RECOUNT;
    let last_in = Arc::new(Clock::default());
    let last_out = Arc::new(Clock::default());
    let hung_up = Arc::new(AtomicBool::new(false));
    let to_child = child
        .stdin
        .take()
        .ok_or_else(|| Error::Command("relay: the child has no stdin pipe".into()))?;
    let from_child = child
        .stdout
        .take()
        .ok_or_else(|| Error::Command("relay: the child has no stdout pipe".into()))?;

    let relayed_in = Arc::new(AtomicU64::new(0));
    let relayed_out = Arc::new(AtomicU64::new(0));
    let copied_in_user_space = Arc::new(AtomicBool::new(false));

    // The inbound copier is never joined: it may sit in a read from a
    // client that keeps its side open after the child is gone.
    {
        let (last_in, hung_up) = (Arc::clone(&last_in), Arc::clone(&hung_up));
        let (pacer, relayed) = (Arc::clone(&pacer), Arc::clone(&relayed_in));
        let copied = Arc::clone(&copied_in_user_space);
        std::thread::spawn(move || {
            // Nothing reads stdin before the relay, so its buffer is empty
            // and the descriptor is where the client's bytes are.
            let stdin = std::io::stdin().lock();
            let ended = copy(&stdin, &to_child, &pacer, Mark::OnArrival, |n| {
                last_in.mark(start);
                relayed.fetch_add(n as u64, Ordering::Relaxed);
            });
            if ended.copied_in_user_space {
                copied.store(true, Ordering::Relaxed);
            }
            if ended.stop == Stop::InputEnded {
                hung_up.store(true, Ordering::Relaxed);
            }
            // Dropping `to_child` passes the end of input on to rsync.
        });
    }
    let outbound = {
        let last_out = Arc::clone(&last_out);
        let (pacer, relayed) = (Arc::clone(&pacer), Arc::clone(&relayed_out));
        let copied = Arc::clone(&copied_in_user_space);
        std::thread::spawn(move || {
            // Held throughout, so nothing else writes between rsync's
            // bytes; flushed first, since the copier writes beneath it.
            let mut stdout = std::io::stdout().lock();
            if stdout.flush().is_err() {
                return;
            }
            let ended = copy(&from_child, &stdout, &pacer, Mark::OnDelivery, |n| {
                last_out.mark(start);
                relayed.fetch_add(n as u64, Ordering::Relaxed);
            });
            if ended.copied_in_user_space {
                copied.store(true, Ordering::Relaxed);
            }
        })
    };

    let group = Pid::from_child(&child);
    // Readable once the child has exited: the loop below wakes at once
    // rather than on its next tick (kernels before 5.3 have no pidfd: the
    // tick alone then).
    let pidfd = rustix::process::pidfd_open(group, rustix::process::PidfdFlags::empty()).ok();
    // Orphans of the rsync tree come to us (see the module comment).
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    let mut ended_because: Option<String> = None;
    let mut hangup_seen: Option<Instant> = None;
    let mut terminated_at: Option<Instant> = None;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Error::Command(format!("cannot wait for rsync: {e}")))?
        {
            break status;
        }
        if ended_because.is_none() {
            let quiet_in = last_in.since(start);
            let quiet = if watch.client_may_just_listen {
                quiet_in.min(last_out.since(start))
            } else {
                quiet_in
            };
            if quiet >= watch.client_silence {
                ended_because = Some(format!(
                    "the client sent nothing for {} s (io_timeout)",
                    quiet.as_secs()
                ));
            } else if hung_up.load(Ordering::Relaxed) {
                let since = *hangup_seen.get_or_insert_with(Instant::now);
                if since.elapsed() >= watch.after_hangup {
                    ended_because = Some("the client closed the connection".into());
                }
            } else if let Some(why) = check() {
                ended_because = Some(why);
            }
        }
        if Instant::now() >= next_recount {
            pacer.set_rate(rate());
            next_recount = Instant::now() + RECOUNT;
        }
        if ended_because.is_some() {
            match terminated_at {
                None => {
                    let _ = kill_process_group(group, Signal::TERM);
                    terminated_at = Some(Instant::now());
                }
                Some(at) if at.elapsed() >= Duration::from_secs(3) => {
                    let _ = kill_process_group(group, Signal::KILL);
                }
                Some(_) => {}
            }
        }
        exited_or_tick(pidfd.as_ref());
    };
    // Whatever rsync wrote last (its statistics, an error) reaches the
    // client unless the client is gone, in which case this is quick.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !outbound.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The group leader is gone; make sure nothing it forked lingers.
    if ended_because.is_some() {
        let _ = kill_process_group(group, Signal::KILL);
    }
    reap_stragglers(group);
    Ok(Ended {
        status,
        ended_because,
        relayed_in: relayed_in.load(Ordering::Relaxed),
        relayed_out: relayed_out.load(Ordering::Relaxed),
        spliced: !copied_in_user_space.load(Ordering::Relaxed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two threads sharing one pacer move, together, no more than the rate
    /// allows, in about the time it allows; no rate costs no time.
    #[test]
    fn the_pacer_keeps_both_directions_to_one_rate() {
        let pacer = Arc::new(Pacer::default());
        pacer.set_rate(Some(4 << 20));
        assert_eq!(pacer.chunk(), CHUNK);
        let start = Instant::now();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let pacer = Arc::clone(&pacer);
                std::thread::spawn(move || {
                    for _ in 0..8 {
                        pacer.pass(CHUNK);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // 1 MiB at 4 MiB/s: a quarter second, whatever the threads did.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(245), "{took:?}");
        assert!(took < Duration::from_millis(600), "{took:?}");
        // Small shares move in small steps.
        pacer.set_rate(Some(8 << 10));
        assert_eq!(pacer.chunk(), 2048);
        pacer.set_rate(Some(100));
        assert_eq!(pacer.chunk(), 1024);
        pacer.set_rate(None);
        let start = Instant::now();
        for _ in 0..1000 {
            pacer.pass(CHUNK);
        }
        assert!(start.elapsed() < Duration::from_millis(50));
    }

    /// Bytes `copy` moved from a writer thread through `from` into `to`,
    /// and how it ended.
    fn copy_all(
        data: &[u8],
        to: std::fs::File,
        mut read_back: impl FnMut() -> Vec<u8>,
    ) -> (Copied, Vec<u8>, usize) {
        let (from, into) = rustix::pipe::pipe().unwrap();
        let data_owned = data.to_vec();
        let writer = std::thread::spawn(move || {
            let mut into = std::fs::File::from(into);
            into.write_all(&data_owned).unwrap();
        });
        let pacer = Pacer::default();
        let mut seen = 0;
        let copied = copy(&from, &to, &pacer, Mark::OnArrival, |n| seen += n);
        writer.join().unwrap();
        drop(to);
        (copied, read_back(), seen)
    }

    /// Pipe to pipe moves every byte in the kernel, counted, and ends
    /// with the input.
    #[test]
    fn splices_between_pipes() {
        use std::io::Read;
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (out_r, out_w) = rustix::pipe::pipe().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            std::fs::File::from(out_r).read_to_end(&mut got).unwrap();
            got
        });
        let (copied, _, seen) = copy_all(&data, std::fs::File::from(out_w), Vec::new);
        assert_eq!(copied.stop, Stop::InputEnded);
        assert!(!copied.copied_in_user_space);
        assert_eq!(seen, data.len());
        assert_eq!(reader.join().unwrap(), data);
    }

    /// Where the kernel refuses splice (a file opened for appending), the
    /// copy goes on through a buffer, losing nothing.
    #[test]
    fn falls_back_to_read_and_write() {
        let dir = std::env::temp_dir().join(format!("byteback-relay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("appended");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let (copied, got, seen) = copy_all(&data, file, || std::fs::read(&path).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(copied.stop, Stop::InputEnded);
        assert!(copied.copied_in_user_space);
        assert_eq!(seen, data.len());
        assert_eq!(got, data);
    }

    /// A reader that went away ends the copy as a failed output.
    #[test]
    fn a_closed_reader_ends_the_copy() {
        let (out_r, out_w) = rustix::pipe::pipe().unwrap();
        drop(out_r);
        let (copied, _, _) = copy_all(&[1; 1000], std::fs::File::from(out_w), Vec::new);
        assert_eq!(copied.stop, Stop::OutputFailed);
    }
}
