//! The client's side of the forced-command protocol: ping and complete.

use std::io::Write;
use std::process::Stdio;

use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::exec::ssh::{Ssh, explain_failure};
use crate::protocol::{Completed, Failure, PingReply, Request};

/// Runs one request on the server; stdout on success.
fn call(ssh: &Ssh, request: &Request, stdin: Option<&str>) -> Result<String> {
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
        Some(255) | None => Err(
            match explain_failure(&ssh.destination, &ssh.known_hosts, &stderr) {
                // ssh says no more than "Permission denied" when it could not
                // load the key at all: tell those apart.
                Error::Refused(_) if !key_is_usable(ssh) => Error::Config(format!(
                    "ssh cannot use this machine's backup key {}: run `byteback setup` again to make a new one (and give the server its new public key)",
                    ssh.identity.display()
                )),
                e => e,
            },
        ),
        Some(code) => Err(server_error(code, &stderr)),
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
        .map(|l| l.trim().trim_start_matches("byteback-server: "))
        .filter(|l| !l.is_empty() && !l.starts_with("warning: "))
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

/// Checks the connection and the client's backup space.
pub fn ping(ssh: &Ssh) -> Result<PingReply> {
    let out = call(ssh, &Request::Ping, None)?;
    PingReply::parse(&out).ok_or_else(|| {
        Error::Refused(format!(
            "the server at {} answered, but not like byteback-server: is the key's forced command set up with `byteback-server new-client`?",
            ssh.destination.host_and_port()
        ))
    })
}

/// Asks the server to snapshot `current`; returns the snapshot's name.
pub fn complete(ssh: &Ssh, failed_files: Option<&str>) -> Result<String> {
    let request = Request::Complete {
        partial: failed_files.is_some(),
    };
    let out = call(ssh, &request, failed_files)?;
    Completed::parse(&out)
        .map(|c| c.snapshot)
        .ok_or_else(|| Error::Refused("the server did not name the snapshot it took".into()))
}

/// Asks the server to ready `current` for an incremental transfer from
/// `snapshot`, less the paths in `replace_list` (see
/// [`crate::protocol::render_replace_list`]).
pub fn incremental(ssh: &Ssh, snapshot: &str, replace_list: &str) -> Result<()> {
    let request = Request::Incremental {
        snapshot: snapshot.to_owned(),
    };
    call(ssh, &request, Some(replace_list)).map(drop)
}
