//! Running the programs byteback is built around: rsync, ssh, btrfs,
//! ssh-keygen — through one type, [`Cmd`].
//!
//! Every child is an argument vector, never a shell string, and this module
//! is the only place one is created. A `Cmd` knows whether running it
//! changes anything (so a dry run skips exactly those), renders itself as a
//! line that can be pasted into a shell (for `--verbose` and errors), and a
//! failed child's error carries its own last words (stderr), so the message
//! says why. What a child is given between fork and exec belongs here too:
//! the server rsync's kernel sandbox ([`sandbox`]) and the client rsync's
//! CPU and I/O priority ([`priority`]).

pub mod host;
pub mod priority;
pub mod relay;
pub mod rsync;
pub mod sandbox;
pub mod ssh;

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Print every child's argv on stderr before it runs (`--verbose`).
pub fn set_verbose(on: bool) {
    VERBOSE.store(on, Ordering::Relaxed);
}

/// One child process: its argv. (A dry run never gets here: what it may
/// not do, it is not given the means to do — see `crate::store::DryRun`.)
#[derive(Debug)]
pub struct Cmd {
    command: Command,
}

impl Cmd {
    /// A command to run.
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            command: Command::new(program),
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.command.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    /// Sets what else the child needs: standard streams, environment,
    /// process group, working directory.
    pub fn configure(mut self, f: impl FnOnce(&mut Command)) -> Cmd {
        f(&mut self.command);
        self
    }

    /// Its arguments (without the program).
    pub fn get_args(&self) -> impl Iterator<Item = &OsStr> {
        self.command.get_args()
    }

    /// The argv as a line that can be pasted into a shell.
    pub fn display(&self) -> String {
        display(&self.command)
    }

    fn announce(&self) {
        if VERBOSE.load(Ordering::Relaxed) {
            eprintln!("+ {}", self.display());
        }
    }

    /// Runs it to completion with stdin closed, capturing its output.
    /// Fails only if it cannot be started.
    pub fn output(mut self) -> Result<Output> {
        self.announce();
        self.command
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::Command(format!("cannot run {}: {e}", self.display())))
    }

    /// Runs it to completion with `input` on its stdin, capturing its
    /// output. Fails only if it cannot be started.
    pub fn output_with_input(mut self, input: &[u8]) -> Result<Output> {
        use std::io::Write;
        self.announce();
        let line = self.display();
        let mut child = self
            .command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Command(format!("cannot run {line}: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A child that does not read its input is not an error.
            let _ = stdin.write_all(input);
        }
        child
            .wait_with_output()
            .map_err(|e| Error::Command(format!("waiting for {line}: {e}")))
    }

    /// Runs it and returns its stdout; a non-zero exit is an error that
    /// quotes the command and its stderr.
    pub fn run(self) -> Result<String> {
        let line = self.display();
        let out = self.output()?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Error::Command(failure(&line, &out)))
        }
    }

    /// Runs it with stdin closed, handing each line of its stdout to
    /// `each_line` as it arrives (stopping at the first error it returns);
    /// its stderr is collected meanwhile. Returns the exit status and stderr.
    pub fn stream(
        self,
        mut each_line: impl FnMut(&str) -> Result<()>,
    ) -> Result<(std::process::ExitStatus, String)> {
        use std::io::{BufRead, BufReader, Read};
        let mut child = self
            .configure(|c| {
                c.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
            })
            .spawn()?;
        let stderr = child.stderr.take();
        let collector = std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut e) = stderr {
                let _ = e.read_to_string(&mut text);
            }
            text
        });
        let mut result = Ok(());
        if let Some(out) = child.stdout.take() {
            for line in BufReader::new(out).lines() {
                let line = line.map_err(|e| Error::Connection(format!("reading output: {e}")));
                if let Err(e) = line.and_then(|l| each_line(&l)) {
                    result = Err(e);
                    break;
                }
            }
        }
        // Stopping early closes our end; the child then ends on its own.
        let status = child
            .wait()
            .map_err(|e| Error::Command(format!("waiting for a child: {e}")))?;
        let stderr = collector.join().unwrap_or_default();
        result.map(|()| (status, stderr))
    }

    /// Starts it with the streams it was configured with.
    pub fn spawn(mut self) -> Result<Child> {
        self.announce();
        self.command
            .spawn()
            .map_err(|e| Error::Command(format!("cannot run {}: {e}", self.display())))
    }

    /// The configured process, for a caller that must add what only it
    /// knows how to set up (the server's sandbox) before spawning it.
    pub fn into_command(self) -> Command {
        self.announce();
        self.command
    }
}

/// Renders argv so it can be pasted into a shell, for logs and errors.
pub fn display(cmd: &Command) -> String {
    let word = |w: &OsStr| crate::quote::shell_word(&w.to_string_lossy());
    let mut out = word(cmd.get_program());
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&word(arg));
    }
    out
}

/// "`cmd` failed (exit N): last stderr line".
pub fn failure(line: &str, out: &Output) -> String {
    let mut msg = format!("{line} failed ({})", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let words: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if !words.is_empty() {
        let _ = write!(msg, ": {}", words.join(" / "));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        let c = Cmd::new("btrfs").args([
            "subvolume",
            "snapshot",
            "-r",
            "/srv/my store/current",
            "it's",
        ]);
        assert_eq!(
            c.display(),
            r"btrfs subvolume snapshot -r '/srv/my store/current' 'it'\''s'"
        );
    }

    #[test]
    fn failures_quote_stderr() {
        let c = Cmd::new("sh").args(["-c", "echo oops >&2; exit 3"]);
        let e = c.run().unwrap_err().to_string();
        assert!(e.contains("exit status: 3") && e.ends_with(": oops"), "{e}");
        assert!(
            Cmd::new("/nonexistent/program")
                .run()
                .unwrap_err()
                .to_string()
                .starts_with("cannot run")
        );
    }

    #[test]
    fn streams_lines_and_collects_stderr() {
        let mut lines = Vec::new();
        let (status, stderr) = Cmd::new("sh")
            .args(["-c", "echo one; echo oops >&2; echo two; exit 4"])
            .stream(|l| {
                lines.push(l.to_owned());
                Ok(())
            })
            .unwrap();
        assert_eq!(lines, ["one", "two"]);
        assert_eq!((status.code(), stderr.as_str()), (Some(4), "oops\n"));
        let stopped = Cmd::new("sh")
            .args(["-c", "echo one; echo two"])
            .stream(|_| Err(Error::NotFound("enough".into())));
        assert!(matches!(stopped, Err(Error::NotFound(_))));
    }
}
