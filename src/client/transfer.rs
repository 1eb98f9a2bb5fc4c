//! Running a backup's rsync and reading what it says.
//!
//! rsync's standard output is passed through as it comes (its progress
//! line, or every file with `--verbose`) less its `--stats` block, whose
//! figures go to the summary; its standard error is passed through too,
//! while the names of files it could not send (for a partial snapshot) and
//! the server's own typed refusal (which rsync only sees as a closed
//! connection) are picked out of it. The reading is done by small pure
//! parts ([`Pieces`], [`Stderr`]) so it is tested without an rsync.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;

use crate::error::{Error, Result};
use crate::exec::rsync::{BackupTransfer, Outcome, Traffic, failed_file};
use crate::protocol::Failure;
use crate::report;

/// The most failed file names kept (reported to the server for a partial
/// snapshot, and in the error).
pub const MAX_FAILED_FILES: usize = 1000;

/// How one rsync run ended.
#[derive(Debug)]
pub struct Transferred {
    pub outcome: Outcome,
    /// rsync's exit status (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Files rsync named as failed.
    pub failed: Vec<String>,
    /// The server's own failure, if it refused.
    pub server_said: Option<Failure>,
    /// What was sent.
    pub traffic: Traffic,
}

impl Transferred {
    /// No rsync run: nothing to send.
    pub fn nothing() -> Self {
        Transferred {
            outcome: Outcome::Ok,
            code: Some(0),
            failed: Vec::new(),
            server_said: None,
            traffic: Traffic::default(),
        }
    }
}

/// Runs rsync, passing its output through and collecting failed file names,
/// the server's own error if it gave one, and the `--stats` figures.
/// `input`: what rsync reads on its standard input (the `--files-from` list).
/// `stop(pid)` is asked every [`WATCH_EVERY`] while rsync runs: a reason
/// ends it (a store's growth watchdog; see [`crate::client::backups`]).
pub fn run(
    transfer: &BackupTransfer,
    input: Option<Vec<u8>>,
    stop: &dyn Fn(u32) -> Option<String>,
) -> Result<Transferred> {
    let piped = input.is_some();
    let mut child = transfer
        .command()
        .configure(|c| {
            c.stdin(if piped { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        })
        .spawn()?;
    if let (Some(input), Some(mut pipe)) = (input, child.stdin.take()) {
        // rsync reads the list while it builds its file list; an rsync that
        // ends early closes the pipe, and its exit status says why.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let verbose = transfer.verbose;
    let stdout = child.stdout.take();
    let relay = std::thread::spawn(move || {
        stdout.map(|o| relay_stdout(o, verbose, &mut std::io::stdout()))
    });
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut said = Stderr::default();
        for line in stderr
            .into_iter()
            .flat_map(|e| BufReader::new(e).split(b'\n'))
            .map_while(|l| l.ok())
        {
            let line = String::from_utf8_lossy(&line);
            report::relay(&line);
            said.line(&line);
        }
        said
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(Error::Command(format!("rsync: {e}"))),
        }
        if let Some(why) = stop(child.id()) {
            // rsync ends its own helpers when told to end.
            report::note(format_args!("transfer stopped: {why}"));
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_child(&child),
                rustix::process::Signal::TERM,
            );
            break child
                .wait()
                .map_err(|e| Error::Command(format!("rsync: {e}")))?;
        }
        std::thread::sleep(WATCH_EVERY);
    };
    let said = reader.join().unwrap_or_default();
    let traffic = relay.join().ok().flatten().unwrap_or_default();
    Ok(Transferred {
        outcome: Outcome::of_exit(status.code()),
        code: status.code(),
        failed: said.failed,
        server_said: said.server,
        traffic,
    })
}

/// How often a running rsync's `stop` is asked.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// What rsync's standard error told, read line by line.
#[derive(Debug, Default)]
struct Stderr {
    /// Files rsync could not send, at most [`MAX_FAILED_FILES`].
    failed: Vec<String>,
    /// The server's typed refusal, the last one if several.
    server: Option<Failure>,
}

impl Stderr {
    fn line(&mut self, line: &str) {
        if let Some(failure) = Failure::parse(line) {
            self.server = Some(failure);
        }
        if let Some(name) = failed_file(line) {
            if self.failed.len() < MAX_FAILED_FILES {
                self.failed.push(name.to_owned());
            }
        }
    }
}

/// Passes rsync's standard output to `out` as it comes, keeping the
/// `--stats` block for the summary unless the user asked to see everything.
fn relay_stdout(stdout: impl Read, verbose: bool, out: &mut impl Write) -> Traffic {
    let (mut traffic, mut in_stats) = (Traffic::default(), false);
    for piece in Pieces(BufReader::new(stdout)) {
        let text = String::from_utf8_lossy(&piece);
        let line = text.trim_end_matches(['\r', '\n']);
        let stats = traffic.take_stats_line(line, &mut in_stats);
        // Unless verbose, rsync's standard output is only its progress: the
        // blank line it puts before its statistics goes with them.
        if verbose || !(stats || line.is_empty()) {
            let _ = out.write_all(&piece).and_then(|()| out.flush());
        }
    }
    traffic
}

/// A reader's bytes in pieces that end at a `\r` or a `\n` (kept), or at
/// the end: a progress line ends in `\r`, and shows as soon as it comes.
struct Pieces<R>(R);

impl<R: BufRead> Iterator for Pieces<R> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let mut piece = Vec::new();
        loop {
            let buf = match self.0.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            if buf.is_empty() {
                break;
            }
            match buf.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => {
                    piece.extend_from_slice(&buf[..=i]);
                    self.0.consume(i + 1);
                    return Some(piece);
                }
                None => {
                    let n = buf.len();
                    piece.extend_from_slice(buf);
                    self.0.consume(n);
                }
            }
        }
        (!piece.is_empty()).then_some(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::reply::FailureKind;

    const STATS: &str = "\nNumber of files: 10 (reg: 8, dir: 2)\nNumber of regular files transferred: 3\nTotal file size: 9,999 bytes\nTotal transferred file size: 1,234 bytes\nTotal bytes sent: 2.048\n\nsent 2,048 bytes  received 35 bytes\n";

    #[test]
    fn pieces_end_at_either_line_end() {
        let pieces: Vec<Vec<u8>> = Pieces(&b"a\r b\rline\n\ntail"[..]).collect();
        assert_eq!(
            pieces,
            [&b"a\r"[..], b" b\r", b"line\n", b"\n", b"tail"].map(<[u8]>::to_vec)
        );
        assert_eq!(Pieces(&b""[..]).count(), 0);
    }

    #[test]
    fn progress_passes_and_stats_are_kept_for_the_summary() {
        let input = format!("  1,000  10%  1MB/s\r  10,000 100%  2MB/s\r{STATS}");
        let mut shown = Vec::new();
        let traffic = relay_stdout(input.as_bytes(), false, &mut shown);
        assert_eq!(
            traffic,
            Traffic {
                files: 3,
                bytes: 1234,
                sent: 2048
            }
        );
        assert_eq!(
            String::from_utf8(shown).unwrap(),
            "  1,000  10%  1MB/s\r  10,000 100%  2MB/s\r"
        );
        // --verbose shows everything, the statistics too.
        let mut shown = Vec::new();
        let traffic = relay_stdout(input.as_bytes(), true, &mut shown);
        assert_eq!(traffic.files, 3);
        assert_eq!(String::from_utf8(shown).unwrap(), input);
    }

    #[test]
    fn stderr_names_failed_files_and_the_servers_refusal() {
        let refusal = Failure::of(&Error::SpaceExhausted("the store is full".into())).render();
        let mut said = Stderr::default();
        for line in [
            "rsync: [sender] send_files failed to open \"/etc/shadow\": Permission denied (13)",
            "some other line",
            refusal.trim_end(),
            "rsync error: some files/attrs were not transferred (see previous errors) (code 23)",
        ] {
            said.line(line);
        }
        assert_eq!(said.failed, ["/etc/shadow"]);
        let server = said.server.expect("the refusal");
        assert_eq!(server.kind, FailureKind::NoSpace);
        // At most MAX_FAILED_FILES names are kept.
        let mut said = Stderr::default();
        for i in 0..MAX_FAILED_FILES + 5 {
            said.line(&format!(
                "rsync: [sender] readlink_stat(\"/x/{i}\") failed: gone"
            ));
        }
        assert_eq!(said.failed.len(), MAX_FAILED_FILES);
    }
}
