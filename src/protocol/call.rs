//! The asking side of the language: one request over ssh, its answer, and
//! the server's own words when it refuses.
//!
//! Both programs ask: the client asks its server (`byteback`'s backups,
//! lists, restores), and a primary asks its replica (`byteback-server
//! replicate`). So this lives beside the language rather than in either
//! program's commands. A refusal comes back typed ([`Failure`] lines on
//! stderr, with their kind); only a server that predates them is read by
//! its exit status.

use std::io::Write;
use std::process::Stdio;

use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::exec::ssh::{Ssh, explain_failure};

use super::{Failure, Request};

/// Runs one request on the server; stdout on success.
pub fn call(ssh: &Ssh, request: &Request, stdin: Option<&str>) -> Result<String> {
    call_line(ssh, &request.render(), stdin)
}

/// Runs one command line on the server (a request rendered elsewhere, such
/// as a replica's); stdout on success, the server's own words on failure.
pub fn call_line(ssh: &Ssh, command: &str, stdin: Option<&str>) -> Result<String> {
    let mut child = ssh
        .command(command)
        .configure(|c| {
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            c.stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        })
        .spawn()?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A server that refuses early closes the pipe; its answer says why.
        let _ = pipe.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Command(format!("ssh: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => Ok(stdout),
        Some(255) | None => Err(ssh_failure(ssh, &stderr)),
        Some(code) => Err(server_error(code, &stderr)),
    }
}

/// Runs a request whose answer streams back line by line, handing each line
/// to `each_line`; the server's warnings are passed on to the person.
pub fn stream(
    ssh: &Ssh,
    request: &Request,
    mut each_line: impl FnMut(&str) -> Result<()>,
) -> Result<()> {
    let (status, stderr) = ssh.command(&request.render()).stream(&mut each_line)?;
    for warning in stderr.lines().filter_map(|l| l.strip_prefix(SERVER_PREFIX)) {
        if warning.starts_with(WARNING) {
            crate::report::note(warning);
        }
    }
    match status.code() {
        Some(0) => Ok(()),
        Some(255) | None => Err(ssh_failure(ssh, &stderr)),
        Some(code) => Err(server_error(code, &stderr)),
    }
}

/// What `byteback-server` puts before each line it writes to stderr (see
/// [`crate::report`]), and before a warning's words.
const SERVER_PREFIX: &str = "byteback-server: ";
const WARNING: &str = "warning: ";

/// ssh's own failure (exit 255: no connection, a refused key, a host key
/// not trusted), told apart from a key ssh could not even load.
fn ssh_failure(ssh: &Ssh, stderr: &str) -> Error {
    match explain_failure(&ssh.destination, &ssh.known_hosts, stderr) {
        // ssh says no more than "Permission denied" when it could not load
        // the key at all: tell those apart.
        Error::Refused(_) if !key_is_usable(ssh) => Error::Config(format!(
            "ssh cannot use this machine's backup key {}: run `byteback setup` again to make a new one (and give the server its new public key)",
            ssh.identity.display()
        )),
        e => e,
    }
}

fn key_is_usable(ssh: &Ssh) -> bool {
    Cmd::new("ssh-keygen")
        .args(["-y", "-P", "", "-f"])
        .arg(&ssh.identity)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The server's own words, when it refused or failed a request: its typed
/// failure line, or (from a server that does not type them) its status.
pub fn server_error(code: i32, stderr: &str) -> Error {
    if let Some(failure) = stderr.lines().find_map(Failure::parse) {
        return failure.into_error();
    }
    let said: Vec<&str> = stderr
        .lines()
        .map(|l| l.trim())
        .map(|l| l.strip_prefix(SERVER_PREFIX).unwrap_or(l))
        .filter(|l| !l.is_empty() && !l.starts_with(WARNING))
        .collect();
    let said = if said.is_empty() {
        format!("the server failed (exit {code}) without a message")
    } else {
        format!("server: {}", said.join(" / "))
    };
    match code {
        4 => Error::Locked(said),
        5 => Error::Connection(said),
        // The login shell reports a server killed by a signal as 128 + the
        // signal (a crash, the OOM killer, a reboot): a later attempt can
        // cure that, as it would a dropped connection.
        129..=192 => Error::Connection(format!("{said} (the server was killed)")),
        _ => Error::Refused(said),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untyped_failures_are_read_by_status() {
        let e = server_error(4, "byteback-server: warning: slow\nbyteback-server: busy\n");
        assert!(
            matches!(&e, Error::Locked(m) if m == "server: busy"),
            "{e:?}"
        );
        assert!(matches!(server_error(5, ""), Error::Connection(_)));
        assert!(matches!(server_error(137, "x"), Error::Connection(_)));
        assert!(matches!(server_error(2, "no"), Error::Refused(_)));
        let e = server_error(9, "");
        assert!(e.to_string().contains("exit 9"), "{e}");
    }
}
