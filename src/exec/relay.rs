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
//! "Ends" means SIGTERM to the child's process group, then SIGKILL: rsync
//! forks, and a filter rule can make it spin where SIGTERM is ignored.
//!
//! This process is also the subreaper of everything rsync forks: when rsync
//! fails, its parent may exit without waiting for its receiver, which then
//! becomes ours to reap rather than init's. So nothing rsync started is
//! left running, and what it wrote is counted in this process's
//! `getrusage(RUSAGE_CHILDREN)` (see `prune::growth`).

use std::io::{Read, Write};
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

/// Copies stdin to the child and its stdout to ours until the child ends,
/// ending it early per `watch` or when `check` returns a reason. The child
/// must have been spawned with piped stdin and stdout, in its own process
/// group.
pub fn run(
    mut child: Child,
    watch: Watch,
    mut check: impl FnMut() -> Option<String>,
) -> Result<Ended> {
    let start = Instant::now();
    let last_in = Arc::new(Clock::default());
    let last_out = Arc::new(Clock::default());
    let hung_up = Arc::new(AtomicBool::new(false));
    let mut to_child = child
        .stdin
        .take()
        .ok_or_else(|| Error::Command("relay: the child has no stdin pipe".into()))?;
    let mut from_child = child
        .stdout
        .take()
        .ok_or_else(|| Error::Command("relay: the child has no stdout pipe".into()))?;

    // The inbound copier is never joined: it may sit in a read from a
    // client that keeps its side open after the child is gone.
    {
        let (last_in, hung_up) = (Arc::clone(&last_in), Arc::clone(&hung_up));
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        last_in.mark(start);
                        if to_child.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
            hung_up.store(true, Ordering::Relaxed);
            // Dropping `to_child` passes the end of input on to rsync.
        });
    }
    let outbound = {
        let last_out = Arc::clone(&last_out);
        std::thread::spawn(move || {
            let mut stdout = std::io::stdout().lock();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match from_child.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if stdout.write_all(&buf[..n]).is_err() || stdout.flush().is_err() {
                            return;
                        }
                        last_out.mark(start);
                    }
                }
            }
        })
    };

    let group = Pid::from_child(&child);
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
        std::thread::sleep(Duration::from_millis(100));
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
    })
}
