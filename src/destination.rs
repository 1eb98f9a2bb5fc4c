//! Where a client sends its backups: `[USER@]HOST[:PORT]`.
//!
//! One parser for every place a destination is read (command line, config),
//! so the spelling a user types and the one written back always agree.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// The server user when the destination names none.
pub const DEFAULT_USER: &str = "byteback";

/// A remote backup server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The server-side user that receives backups.
    pub user: String,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// SSH port, if not the default.
    pub port: Option<u16>,
}

impl Destination {
    /// The name ssh records for this host in known_hosts.
    pub fn known_hosts_name(&self) -> String {
        match self.port {
            Some(port) if port != 22 => format!("[{}]:{port}", self.host),
            _ => self.host.clone(),
        }
    }

    /// `HOST` or `HOST:PORT`, for messages.
    pub fn host_and_port(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(port) => format!("{host}:{port}"),
            None => host,
        }
    }
}

/// What a destination may be, as the messages say it.
const SERVER: &str = "[USER@]HOST[:PORT]";
const SERVER_OR_DIRECTORY: &str = "[USER@]HOST[:PORT] or an absolute directory";

fn check_word(what: &str, word: &str, input: &str, expected: &str) -> Result<(), Error> {
    let bad = |why: &str| {
        Err(Error::Usage(format!(
            "invalid destination {input:?}: the {what} {why}; expected {expected}, e.g. byteback@backup.example.net"
        )))
    };
    if word.is_empty() {
        return bad("is missing");
    }
    if word.starts_with('-') {
        return bad("must not start with '-'");
    }
    if let Some(c) = word
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '%')))
    {
        return bad(&format!("contains {c:?}"));
    }
    Ok(())
}

impl FromStr for Destination {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        if input.starts_with('/') {
            return Err(Error::Usage(format!(
                "invalid destination {input:?}: a local directory is not a server; expected {SERVER}"
            )));
        }
        Destination::parse(input, SERVER)
    }
}

impl Destination {
    /// Parses `[USER@]HOST[:PORT]`; a refusal says it `expected` that.
    fn parse(input: &str, expected: &str) -> Result<Self, Error> {
        let (user, rest) = match input.split_once('@') {
            Some((user, rest)) => (user, rest),
            None => (DEFAULT_USER, input),
        };
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(|| {
                Error::Usage(format!(
                    "invalid destination {input:?}: unclosed '[' around the host"
                ))
            })?;
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => {
                        return Err(Error::Usage(format!(
                            "invalid destination {input:?}: expected ':PORT' after ']'"
                        )));
                    }
                },
            }
        } else {
            match rest.split_once(':') {
                Some((host, port)) if !port.contains(':') => (host, Some(port)),
                // More than one ':' without brackets: a bare IPv6 address.
                Some(_) => (rest, None),
                None => (rest, None),
            }
        };
        check_word("user", user, input, expected)?;
        if user.contains(':') {
            check_word("user", "", input, expected)?;
        }
        check_word("host", host, input, expected)?;
        let port = match port {
            None => None,
            Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| {
                Error::Usage(format!(
                    "invalid destination {input:?}: port {p:?} is not a number from 1 to 65535"
                ))
            })?),
        };
        Ok(Destination {
            user: user.to_owned(),
            host: host.to_owned(),
            port,
        })
    }
}

/// Where a client's backups go: a server, or a store on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A byteback server, over SSH.
    Remote(Destination),
    /// A store directory on this machine (an absolute path).
    Local(std::path::PathBuf),
}

impl Target {
    /// The server, when it is one.
    pub fn server(&self) -> Option<&Destination> {
        match self {
            Target::Remote(d) => Some(d),
            Target::Local(_) => None,
        }
    }

    /// The store directory, when it is on this machine.
    pub fn local_store(&self) -> Option<&std::path::Path> {
        match self {
            Target::Remote(_) => None,
            Target::Local(root) => Some(root),
        }
    }
}

impl FromStr for Target {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        if input.starts_with('/') {
            if input.contains('\0') {
                return Err(Error::Usage(format!(
                    "invalid destination {input:?}: a path cannot contain NUL"
                )));
            }
            let trimmed = input.trim_end_matches('/');
            let path = if trimmed.is_empty() { "/" } else { trimmed };
            return Ok(Target::Local(path.into()));
        }
        Destination::parse(input, SERVER_OR_DIRECTORY).map(Target::Remote)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Remote(d) => d.fmt(f),
            Target::Local(p) => p.display().fmt(f),
        }
    }
}

/// Written the way it is read: `byteback@host:2222`, `/var/backups/byteback`.
impl serde::Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, self.host_and_port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Destination {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn defaults_and_round_trips() {
        let d = parse("backup.example.net");
        assert_eq!(
            (d.user.as_str(), d.host.as_str(), d.port),
            ("byteback", "backup.example.net", None)
        );
        for s in [
            "byteback@backup.example.net",
            "bb@host:2222",
            "bb@[::1]:2222",
            "bb@127.0.0.1",
        ] {
            assert_eq!(parse(s).to_string(), s);
            assert_eq!(parse(&parse(s).to_string()), parse(s));
        }
        assert_eq!(parse("bb@::1").host, "::1");
        assert_eq!(parse("bb@[::1]").to_string(), "bb@[::1]");
    }

    #[test]
    fn targets() {
        assert_eq!(
            "/var/backups/".parse::<Target>().unwrap(),
            Target::Local("/var/backups".into())
        );
        assert_eq!("/".parse::<Target>().unwrap(), Target::Local("/".into()));
        assert_eq!(
            "bb@h".parse::<Target>().unwrap(),
            Target::Remote(parse("bb@h"))
        );
        let e = "relative/dir".parse::<Target>().unwrap_err().to_string();
        assert!(e.contains("or an absolute directory"), "{e}");
        assert_eq!("/srv/b".parse::<Target>().unwrap().to_string(), "/srv/b");
    }

    #[test]
    fn known_hosts_names() {
        assert_eq!(parse("h").known_hosts_name(), "h");
        assert_eq!(parse("h:22").known_hosts_name(), "h");
        assert_eq!(parse("h:2222").known_hosts_name(), "[h]:2222");
    }

    #[test]
    fn bad_destinations_name_the_problem() {
        for (s, why) in [
            ("", "host is missing"),
            ("byteback@", "host is missing"),
            ("@host", "user is missing"),
            ("-oProxyCommand=x", "must not start with '-'"),
            ("bb@-host", "must not start with '-'"),
            ("host:0", "port"),
            ("host:99999", "port"),
            ("host:ab", "port"),
            ("/var/backups", "local directory"),
            ("a b", "contains ' '"),
            ("a@b@c", "contains '@'"),
            ("[::1", "unclosed"),
            ("host/path", "contains '/'"),
        ] {
            let e = s.parse::<Destination>().unwrap_err().to_string();
            assert!(e.contains(why), "{s:?}: {e}");
        }
    }
}
