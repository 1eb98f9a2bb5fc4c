//! ssh as the client runs it: one place that builds its argv, and one that
//! turns its failures into messages.
//!
//! byteback never reads the user's or the system's ssh configuration
//! (`-F none`): the key, the known_hosts file and every option come from
//! byteback's own config directory, so a backup behaves the same from a
//! timer as from a shell.

use std::ffi::OsString;
use std::path::PathBuf;

use super::Cmd;
use crate::destination::Destination;
use crate::error::Error;

/// What to do about a server whose host key is not yet known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Refuse unknown and changed keys (unattended runs).
    Strict,
    /// Ask on the terminal, as ssh does.
    Ask,
    /// Trust a key seen for the first time; still refuse a changed one.
    AcceptNew,
}

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct Ssh {
    /// The ssh program.
    pub program: PathBuf,
    /// Server user, host and port.
    pub destination: Destination,
    /// This client's private key.
    pub identity: PathBuf,
    /// byteback's own known_hosts file.
    pub known_hosts: PathBuf,
    /// Unknown host keys.
    pub host_keys: HostKeyPolicy,
    /// Seconds between keep-alives; the connection is declared dead after 4 missed.
    pub keepalive_secs: u64,
    /// Seconds to wait for the TCP connection.
    pub connect_timeout_secs: u64,
    /// A master connection's socket to share, if one is open (see [`Master`]).
    pub control_path: Option<PathBuf>,
}

impl Ssh {
    /// Options common to every connection (everything before the host).
    fn options(&self) -> Vec<OsString> {
        let mut opts: Vec<OsString> = vec![
            "-F".into(),
            "none".into(),
            "-i".into(),
            self.identity.clone().into(),
        ];
        let strict = match self.host_keys {
            HostKeyPolicy::Strict => "yes",
            HostKeyPolicy::Ask => "ask",
            HostKeyPolicy::AcceptNew => "accept-new",
        };
        let batch = if self.host_keys == HostKeyPolicy::Ask {
            "no"
        } else {
            "yes"
        };
        let mut known_hosts = OsString::from("UserKnownHostsFile=");
        known_hosts.push(&self.known_hosts);
        for o in [
            "IdentitiesOnly=yes".into(),
            "IdentityAgent=none".into(),
            "PasswordAuthentication=no".into(),
            "KbdInteractiveAuthentication=no".into(),
            format!("BatchMode={batch}").into(),
            known_hosts,
            "GlobalKnownHostsFile=/dev/null".into(),
            format!("StrictHostKeyChecking={strict}").into(),
            "UpdateHostKeys=no".into(),
            format!("ServerAliveInterval={}", self.keepalive_secs.max(1)).into(),
            "ServerAliveCountMax=4".into(),
            format!("ConnectTimeout={}", self.connect_timeout_secs.max(1)).into(),
            "LogLevel=ERROR".into(),
        ] {
            opts.push("-o".into());
            opts.push(o);
        }
        if let Some(path) = &self.control_path {
            let mut o = OsString::from("ControlPath=");
            o.push(path);
            opts.extend(["-o".into(), o, "-o".into(), "ControlMaster=no".into()]);
        }
        if let Some(port) = self.destination.port {
            opts.push("-p".into());
            opts.push(port.to_string().into());
        }
        opts
    }

    /// A command that runs `remote_command` on the server.
    pub fn command(&self, remote_command: &str) -> Cmd {
        Cmd::new(&self.program)
            .args(self.options())
            .arg("-l")
            .arg(&self.destination.user)
            .arg("--")
            .arg(&self.destination.host)
            .arg(remote_command)
    }

    /// The string for rsync's `--rsh`: rsync splits it on spaces and honours
    /// quotes, then appends `-l USER HOST` and its own command.
    pub fn rsh_string(&self) -> String {
        let mut words = vec![crate::quote::rsh_word(&self.program.to_string_lossy())];
        words.extend(
            self.options()
                .iter()
                .map(|o| crate::quote::rsh_word(&o.to_string_lossy())),
        );
        words.join(" ")
    }

    /// `user@host` as rsync wants it in a remote path.
    pub fn rsync_remote(&self) -> String {
        let host = if self.destination.host.contains(':') {
            format!("[{}]", self.destination.host)
        } else {
            self.destination.host.clone()
        };
        format!("{}@{host}", self.destination.user)
    }
}

/// One SSH connection shared by every step of a backup (ping, rsync,
/// complete), so a run pays for one handshake instead of three. The master
/// is a child of this process; dropping it closes the connection.
#[derive(Debug)]
pub struct Master {
    child: std::process::Child,
    socket: PathBuf,
}

impl Master {
    /// Opens the master connection and waits until it is authenticated.
    /// Fails with the same one-line explanations as any ssh failure.
    pub fn open(ssh: &Ssh, socket: PathBuf) -> Result<Master, Error> {
        use std::process::Stdio;
        let _ = std::fs::remove_file(&socket);
        let mut plain = ssh.clone();
        plain.control_path = None;
        let mut path = OsString::from("ControlPath=");
        path.push(&socket);
        let mut child = Cmd::new(&plain.program)
            .args(plain.options())
            .args(["-M", "-N", "-o", "ControlPersist=no", "-o"])
            .arg(path)
            .arg("-l")
            .arg(&plain.destination.user)
            .arg("--")
            .arg(&plain.destination.host)
            .configure(|c| {
                c.stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
            })
            .spawn()?;
        // ssh creates the socket once it has logged in.
        let deadline = std::time::Instant::now()
            + std::time::Duration::from_secs(ssh.connect_timeout_secs.max(1) + 30);
        loop {
            if socket.exists() {
                return Ok(Master { child, socket });
            }
            if let Ok(Some(_)) = child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                }
                return Err(explain_failure(&ssh.destination, &ssh.known_hosts, &stderr));
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Connection(format!(
                    "timed out connecting to {}",
                    ssh.destination.host_and_port()
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// The same connection settings, sharing this master.
    pub fn share(&self, ssh: &Ssh) -> Ssh {
        Ssh {
            control_path: Some(self.socket.clone()),
            ..ssh.clone()
        }
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        // The master is our own child: end it by PID and reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The host keys `known_hosts` holds for `dest`, `(type, base64)` each,
/// as `ssh-keygen -F` finds them (hashed names too); markers
/// (`@cert-authority`, `@revoked`) are not keys of the host and are left
/// out. None: an empty list.
pub fn known_host_keys(
    known_hosts: &std::path::Path,
    dest: &Destination,
) -> Result<Vec<(String, String)>, Error> {
    if !known_hosts.exists() {
        return Ok(Vec::new());
    }
    let out = Cmd::new("ssh-keygen")
        .arg("-F")
        .arg(dest.known_hosts_name())
        .arg("-f")
        .arg(known_hosts)
        .output()?;
    Ok(host_keys_of(&String::from_utf8_lossy(&out.stdout)))
}

/// The keys in `ssh-keygen -F`'s output (pure, for tests).
fn host_keys_of(found: &str) -> Vec<(String, String)> {
    found
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('@'))
        .filter_map(|l| {
            let mut fields = l.split_whitespace().skip(1);
            Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
        })
        .collect()
}

/// Turns a failed ssh run (exit 255, or the server's refusal) into one line.
pub fn explain_failure(dest: &Destination, known_hosts: &std::path::Path, stderr: &str) -> Error {
    let words: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let said = words.join(" / ");
    let has = |needle: &str| stderr.contains(needle);
    let server = dest.host_and_port();
    if has("Load key") || has("invalid format") || has("bad permissions") {
        Error::Config(format!(
            "ssh cannot use this machine's backup key: {said}; run `byteback setup` again to make a new one (and give the server its new public key)"
        ))
    } else if has("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || has("Host key for") && has("has changed")
    {
        Error::Connection(format!(
            "the host key of {server} has CHANGED since it was trusted: if the server was reinstalled, delete its line from {} and run `byteback test`; otherwise someone may be intercepting the connection",
            known_hosts.display()
        ))
    } else if has("Host key verification failed")
        || has("No ED25519 host key is known")
        || has("No RSA host key is known")
    {
        Error::Connection(format!(
            "the host key of {server} is not trusted yet: run `byteback test` on a terminal to check and accept it, or `byteback test --accept-new-host-key`"
        ))
    } else if has("Permission denied") {
        Error::Refused(format!(
            "{server} refused this machine's key for user {}: on the server, run `byteback-server new-client` with the key printed by `byteback setup`",
            dest.user
        ))
    } else if has("Could not resolve hostname")
        || has("Connection refused")
        || has("Connection timed out")
        || has("No route to host")
        || has("Network is unreachable")
        || has("Connection closed by")
        || has("Connection reset")
        || has("Broken pipe")
        || has("timed out")
    {
        Error::Connection(format!("cannot reach the backup server {server}: {said}"))
    } else if said.is_empty() {
        Error::Connection(format!(
            "the connection to {server} failed without a message"
        ))
    } else {
        Error::Connection(format!("ssh to {server} failed: {said}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn ssh() -> Ssh {
        Ssh {
            program: "ssh".into(),
            destination: "bb@127.0.0.1:2222".parse().unwrap(),
            identity: "/etc/my byteback/key".into(),
            known_hosts: "/etc/byteback/known_hosts".into(),
            host_keys: HostKeyPolicy::Strict,
            keepalive_secs: 15,
            connect_timeout_secs: 30,
            control_path: None,
        }
    }

    #[test]
    fn command_argv() {
        let cmd = ssh().command("byteback ping");
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(&args[..4], ["-F", "none", "-i", "/etc/my byteback/key"]);
        assert!(args.contains(&"StrictHostKeyChecking=yes".to_string()));
        assert!(args.contains(&"BatchMode=yes".to_string()));
        assert_eq!(
            &args[args.len() - 7..],
            ["-p", "2222", "-l", "bb", "--", "127.0.0.1", "byteback ping"]
        );
    }

    #[test]
    fn rsh_string_quotes_for_rsync() {
        let s = ssh().rsh_string();
        assert!(
            s.starts_with("ssh -F none -i '/etc/my byteback/key' -o "),
            "{s}"
        );
        assert_eq!(crate::quote::rsh_word("it's"), r#"'it'"'"'s'"#);
        assert_eq!(ssh().rsync_remote(), "bb@127.0.0.1");
    }

    #[test]
    fn host_keys_found() {
        let found = "# Host [127.0.0.1]:2222 found: line 1\n[127.0.0.1]:2222 ssh-ed25519 AAAAC3 \n@revoked [127.0.0.1]:2222 ssh-rsa AAAAB3\n|1|salt|hash ecdsa-sha2-nistp256 AAAAE2 comment\n";
        assert_eq!(
            host_keys_of(found),
            [
                ("ssh-ed25519".to_owned(), "AAAAC3".to_owned()),
                ("ecdsa-sha2-nistp256".to_owned(), "AAAAE2".to_owned())
            ]
        );
        assert!(host_keys_of("").is_empty());
    }

    #[test]
    fn failures() {
        let d: Destination = "bb@h:2222".parse().unwrap();
        let kh = Path::new("/etc/byteback/known_hosts");
        let cases = [
            (
                "@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n",
                "CHANGED",
            ),
            ("Host key verification failed.\n", "not trusted yet"),
            (
                "bb@h: Permission denied (publickey).\n",
                "refused this machine's key",
            ),
            (
                "ssh: connect to host h port 2222: Connection refused\n",
                "cannot reach",
            ),
            (
                "ssh: Could not resolve hostname h: Name or service not known\n",
                "cannot reach",
            ),
            ("", "without a message"),
            (
                "Load key \"/etc/byteback/key\": invalid format\nbb@h: Permission denied (publickey).\n",
                "cannot use this machine's backup key",
            ),
        ];
        for (stderr, want) in cases {
            let e = explain_failure(&d, kh, stderr).to_string();
            assert!(e.contains(want), "{stderr:?}: {e}");
            assert!(!e.contains('\n'));
        }
    }
}
