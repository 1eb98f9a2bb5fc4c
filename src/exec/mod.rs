//! Running the programs byteback is built around: rsync, ssh, btrfs,
//! ssh-keygen — through one type, [`Cmd`].
//!
//! Every child is an argument vector, never a shell string, and this module
//! is the only place one is created. A `Cmd` knows whether running it
//! changes anything (so a dry run skips exactly those), renders itself as a
//! line that can be pasted into a shell (for `--verbose` and errors), and a
//! failed child's error carries its own last words (stderr), so the message
//! says why.

pub mod host;
pub mod relay;
pub mod rsync;
pub mod ssh;

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

static VERBOSE: AtomicBool = AtomicBool::new(false);
static DRY_RUN: AtomicBool = AtomicBool::new(false);

/// Print every child's argv on stderr before it runs (`--verbose`).
pub fn set_verbose(on: bool) {
    VERBOSE.store(on, Ordering::Relaxed);
}

/// Skip (and only print) every destructive child (`--dry-run`).
pub fn set_dry_run(on: bool) {
    DRY_RUN.store(on, Ordering::Relaxed);
}

/// One child process: its argv, and whether running it changes anything.
#[derive(Debug)]
pub struct Cmd {
    command: Command,
    destructive: bool,
}

impl Cmd {
    /// A command that only reads (or whose effect is the caller's output).
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            command: Command::new(program),
            destructive: false,
        }
    }

    /// A command that creates, changes or deletes something on disk.
    pub fn destructive(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            destructive: true,
            ..Cmd::new(program)
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

    /// Whether running it changes anything.
    pub fn is_destructive(&self) -> bool {
        self.destructive
    }

    /// The argv as a line that can be pasted into a shell.
    pub fn display(&self) -> String {
        display(&self.command)
    }

    fn announce(&self) -> bool {
        let dry = self.destructive && DRY_RUN.load(Ordering::Relaxed);
        if dry {
            eprintln!("would run: {}", self.display());
        } else if VERBOSE.load(Ordering::Relaxed) {
            eprintln!("+ {}", self.display());
        }
        !dry
    }

    /// Runs it to completion with stdin closed, capturing its output.
    /// Fails only if it cannot be started.
    pub fn output(mut self) -> Result<Output> {
        if !self.announce() {
            return Ok(skipped());
        }
        self.command
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::Command(format!("cannot run {}: {e}", self.display())))
    }

    /// Runs it to completion with `input` on its stdin, capturing its
    /// output. Fails only if it cannot be started.
    pub fn output_with_input(mut self, input: &[u8]) -> Result<Output> {
        use std::io::Write;
        if !self.announce() {
            return Ok(skipped());
        }
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

/// The output of a command a dry run skipped: success, nothing printed.
fn skipped() -> Output {
    use std::os::unix::process::ExitStatusExt;
    Output {
        status: std::process::ExitStatus::from_raw(0),
        stdout: Vec::new(),
        stderr: Vec::new(),
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
        let c = Cmd::destructive("btrfs").args([
            "subvolume",
            "snapshot",
            "-r",
            "/srv/my store/current",
            "it's",
        ]);
        assert!(c.is_destructive());
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

    #[test]
    fn a_dry_run_skips_exactly_the_destructive() {
        let dir = std::env::temp_dir().join(format!("byteback-dry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        set_dry_run(true);
        let skipped = Cmd::destructive("touch").arg(&a).run();
        let ran = Cmd::new("touch").arg(&b).run();
        set_dry_run(false);
        assert!(skipped.is_ok() && ran.is_ok());
        assert!(!a.exists() && b.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
