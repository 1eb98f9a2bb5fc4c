//! Running the programs byteback is built around: rsync, ssh, btrfs.
//!
//! Every child is an argument vector, never a shell string. A failed child's
//! error carries its own last words (stderr) so the message says why.

pub mod relay;
pub mod rsync;
pub mod ssh;

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::process::{Command, Output, Stdio};

use crate::error::{Error, Result};

/// Renders argv so it can be pasted into a shell, for logs and errors.
pub fn display(cmd: &Command) -> String {
    let mut out = shell_quote(cmd.get_program());
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&shell_quote(arg));
    }
    out
}

/// Quotes one word for a POSIX shell (only when it needs it).
pub fn shell_quote(word: &OsStr) -> String {
    let s = word.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        return s.into_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs `cmd` to completion with stdin closed, capturing its output.
/// Fails only if it cannot be started.
pub fn output(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Command(format!("cannot run {}: {e}", display(cmd))))
}

/// Runs `cmd` and returns its stdout; a non-zero exit is an error that
/// quotes the command and its stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = output(cmd)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command(failure(cmd, &out)))
    }
}

/// "`cmd` failed (exit N): last stderr line".
pub fn failure(cmd: &Command, out: &Output) -> String {
    let mut msg = format!("{} failed ({})", display(cmd), out.status);
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
        let mut c = Command::new("btrfs");
        c.args([
            "subvolume",
            "snapshot",
            "-r",
            "/srv/my store/current",
            "it's",
        ]);
        assert_eq!(
            display(&c),
            r"btrfs subvolume snapshot -r '/srv/my store/current' 'it'\''s'"
        );
        assert_eq!(shell_quote(OsStr::new("")), "''");
    }

    #[test]
    fn failures_quote_stderr() {
        let mut c = Command::new("sh");
        c.args(["-c", "echo oops >&2; exit 3"]);
        let e = run(&mut c).unwrap_err().to_string();
        assert!(e.contains("exit status: 3") && e.ends_with(": oops"), "{e}");
        assert!(
            run(&mut Command::new("/nonexistent/program"))
                .unwrap_err()
                .to_string()
                .starts_with("cannot run")
        );
    }
}
