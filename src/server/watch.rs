//! The watch over a read request the forced command answers itself (a
//! listing, a digest): it ends when its client goes away or its time is up,
//! within seconds, whatever it is doing.
//!
//! A thread waits in `poll` on the connection's output (standard output,
//! sshd's pipe or socket to the client) for `POLLERR`/`POLLHUP`, which the
//! kernel reports as soon as sshd closes its end (the client hung up), and
//! for the request's deadline. Either sets a flag that the request checks
//! between files and every 64 KiB hashed ([`Watch::check`]), so it stops
//! cleanly with a reason. Should it not look in time (stuck in a long walk
//! of directories without a match, or in a write to a client that stopped
//! reading), the thread ends the process itself after [`GRACE`], with the
//! same one-line reason on stderr.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};

use crate::error::{Error, Result};
use crate::protocol::Failure;

/// How long the request has, once told to stop, before the process ends.
pub const GRACE: Duration = Duration::from_secs(2);

const RUNNING: u8 = 0;
const HUNG_UP: u8 = 1;
const TIMED_OUT: u8 = 2;
const FINISHED: u8 = 3;

/// A running watch (see the module's documentation).
#[derive(Debug)]
pub struct Watch {
    state: Arc<AtomicU8>,
    what: String,
    limit: crate::config::Duration,
}

impl Watch {
    /// Watches this process's standard output until `limit` from now;
    /// `what` names the request in messages ("the listing of NAME").
    pub fn start(what: String, limit: crate::config::Duration) -> Watch {
        let state = Arc::new(AtomicU8::new(RUNNING));
        let watch = Watch {
            state: Arc::clone(&state),
            what,
            limit,
        };
        let deadline = Instant::now() + limit.to_std();
        let fallback = watch.clone_reasons();
        std::thread::spawn(move || {
            let why = wait_for_hangup(deadline);
            if state
                .compare_exchange(RUNNING, why, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                return;
            }
            std::thread::sleep(GRACE);
            if state.load(Ordering::SeqCst) != FINISHED {
                let e = fallback.error(why);
                eprintln!("{}", Failure::of(&e).render());
                std::process::exit(i32::from(e.exit_code().code()));
            }
        });
        watch
    }

    /// `Ok` while the client is there and time is left; otherwise why the
    /// request must end.
    pub fn check(&self) -> Result<()> {
        match self.state.load(Ordering::Relaxed) {
            RUNNING | FINISHED => Ok(()),
            why => Err(self.error(why)),
        }
    }

    /// The request is over: the watch no longer ends the process.
    pub fn finish(&self) {
        self.state.store(FINISHED, Ordering::SeqCst);
    }

    fn clone_reasons(&self) -> Watch {
        Watch {
            state: Arc::new(AtomicU8::new(RUNNING)),
            what: self.what.clone(),
            limit: self.limit,
        }
    }

    fn error(&self, why: u8) -> Error {
        if why == HUNG_UP {
            Error::Connection(format!("{}: the client went away", self.what))
        } else {
            Error::Refused(format!(
                "{} stopped after {}, the server's time limit for one request (read_timeout); ask for fewer paths at a time, or ask the server's administrator to raise the limit",
                self.what, self.limit
            ))
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Waits until standard output reports a hang-up (`HUNG_UP`) or `deadline`
/// passes (`TIMED_OUT`).
fn wait_for_hangup(deadline: Instant) -> u8 {
    let stdout = std::io::stdout();
    let fd = stdout.as_fd();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return TIMED_OUT;
        }
        // No events asked for: POLLERR and POLLHUP are always reported.
        let mut fds = [PollFd::new(&fd, PollFlags::empty())];
        let timeout = Timespec::try_from(left.min(Duration::from_secs(3600))).ok();
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) | Err(rustix::io::Errno::INTR) => {}
            Ok(_) => {
                let got = fds[0].revents();
                if got.intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL) {
                    return HUNG_UP;
                }
            }
            // Cannot watch the connection: the deadline still holds.
            Err(_) => std::thread::sleep(left.min(Duration::from_secs(1))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_ends_a_request_with_its_reason() {
        let watch = Watch::start(
            "the digest of X".into(),
            crate::config::Duration::from_secs(0),
        );
        let started = Instant::now();
        while watch.check().is_ok() {
            assert!(started.elapsed() < Duration::from_secs(5), "no timeout");
            std::thread::sleep(Duration::from_millis(10));
        }
        let e = watch.check().unwrap_err();
        assert_eq!(e.exit_code(), crate::error::Exit::Refused);
        assert!(
            e.to_string().starts_with("the digest of X stopped after")
                && e.to_string().contains("read_timeout"),
            "{e}"
        );
        // Finished in time: the process is not ended.
        watch.finish();
        std::thread::sleep(GRACE + Duration::from_millis(300));
    }
}
