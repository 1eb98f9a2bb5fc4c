//! A server's redirect, followed once: the client moved to another server
//! (`byteback-server move-client`), and its old server now answers its
//! backups with a `[moved]` refusal naming the new server and that server's
//! host key ([`crate::protocol::Redirect`]).
//!
//! `byteback backup` and `byteback test` follow it when the destination
//! came from the configuration file (not from `--destination`): the host
//! key goes into this machine's own known_hosts (unless it already trusts
//! a *different* key for that name, which is refused: a changed key is
//! never accepted), the new destination into config.toml (atomically, the
//! rest of the file kept as it was), and the command goes on against the
//! new server. A second redirect in the same run is an error: a redirect
//! is followed once, never round in a circle.
//!
//! Trusting the old server's word costs nothing the client did not already
//! give: that server held all of this machine's backups and could have
//! served anything back. What the redirect can name is checked as the
//! configuration's own destination is (`[USER@]HOST[:PORT]`), and host keys
//! are a key type and base64 only, written under the name this client
//! computes for the new server, so no line of either file is the server's.

use crate::client::config::ConfigDir;
use crate::destination::{Destination, Target};
use crate::error::{Error, Result};
use crate::protocol::Redirect;
use crate::report;
use crate::sys::fs::write_atomic;

/// Whether (and how far) a run has followed a redirect.
#[derive(Debug, Default)]
pub struct Following {
    /// The server followed to in this run, if one was.
    followed: Option<Destination>,
}

impl Following {
    /// Decides what to do with `error` from the backups at `current`: a
    /// `[moved]` refusal is followed (the new destination returned, the
    /// files written), once per run, and only when the destination is the
    /// configuration's (`from_config`); any other error comes back as it
    /// was.
    pub fn follow(
        &mut self,
        dir: &ConfigDir,
        current: &Target,
        from_config: bool,
        error: Error,
    ) -> Result<Target> {
        let Error::Moved { redirect, message } = error else {
            return Err(error);
        };
        if let Some(first) = &self.followed {
            return Err(Error::Refused(format!(
                "{message} — but this run already followed a redirect, to {first}: a second one is not followed (check {} and the servers)",
                dir.config_file().display()
            )));
        }
        if !from_config {
            return Err(Error::Moved {
                redirect,
                message: format!(
                    "{message} (not followed: the destination was given with --destination)"
                ),
            });
        }
        let Some(redirect) = Redirect::parse(&redirect) else {
            return Err(Error::Refused(format!(
                "{message} — but the server's redirect cannot be read, so it is not followed; set the new destination in {} by hand",
                dir.config_file().display()
            )));
        };
        let Target::Remote(old) = current else {
            return Err(Error::Refused(format!(
                "{message} — but a store on this machine does not redirect"
            )));
        };
        if &redirect.to == old {
            return Err(Error::Refused(format!(
                "{message} — but it redirects to itself ({old})"
            )));
        }
        trust(dir, &redirect)?;
        let to = Target::Remote(redirect.to.clone());
        crate::client::setup::set_destination(dir, &to)?;
        report::note(format_args!(
            "the server {} says this machine's backups moved to {}: recorded in {} (and its host key in {}); going on there",
            old.host_and_port(),
            redirect.to,
            dir.config_file().display(),
            dir.known_hosts().display()
        ));
        self.followed = Some(redirect.to);
        Ok(to)
    }
}

/// Adds the redirect's host keys to this machine's known_hosts under the
/// new server's name, unless a key is known for that name already: then
/// one of the redirect's must be among them (else refused: a changed key
/// is never accepted).
fn trust(dir: &ConfigDir, redirect: &Redirect) -> Result<()> {
    let path = dir.known_hosts();
    let known = crate::exec::ssh::known_host_keys(&path, &redirect.to)?;
    let name = redirect.to.known_hosts_name();
    if !known.is_empty() {
        let agrees = redirect.host_keys.iter().any(|k| {
            known
                .iter()
                .any(|(kind, blob)| *kind == k.kind && *blob == k.blob)
        });
        if agrees || redirect.host_keys.is_empty() {
            return Ok(());
        }
        return Err(Error::Connection(format!(
            "the old server redirects to {}, but {} already holds another host key for {name} than the one it names: if that server was reinstalled, delete its line and run `byteback test`; otherwise someone may be intercepting the connection",
            redirect.to,
            path.display()
        )));
    }
    if redirect.host_keys.is_empty() {
        // Nothing to add: `byteback test` asks, as for any new server.
        return Ok(());
    }
    let mut text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io("cannot read", &path, e)),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    for key in &redirect.host_keys {
        text.push_str(&format!("{name} {} {}\n", key.kind, key.blob));
    }
    write_atomic(&path, text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::HostKey;

    fn dir_with(config: &str) -> (crate::ScratchDir, ConfigDir) {
        let tmp = crate::ScratchDir::new("follow");
        let dir = ConfigDir {
            dir: tmp.path().to_owned(),
        };
        std::fs::write(dir.config_file(), config).unwrap();
        (tmp, dir)
    }

    const CONFIG: &str =
        "# mine\ndestination = \"bb@old.example\"\nname = \"c.example\"\nretry_attempts = 2\n";

    fn moved_to(to: &str, keys: &[(&str, &str)]) -> Error {
        let redirect = Redirect {
            to: to.parse().unwrap(),
            host_keys: keys
                .iter()
                .map(|(k, b)| HostKey::new(k, b).unwrap())
                .collect(),
        };
        Error::Moved {
            redirect: redirect.render(),
            message: "server: client c.example has moved".into(),
        }
    }

    fn old() -> Target {
        "bb@old.example".parse().unwrap()
    }

    #[test]
    fn a_redirect_is_recorded_once_keeping_the_rest_of_the_config() {
        let (_tmp, dir) = dir_with(CONFIG);
        std::fs::write(dir.known_hosts(), "old.example ssh-ed25519 AAAAold").unwrap();
        let mut following = Following::default();
        let e = moved_to("bb@new.example:2222", &[("ssh-ed25519", "AAAAnew")]);
        let to = following.follow(&dir, &old(), true, e).unwrap();
        assert_eq!(to, "bb@new.example:2222".parse().unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.config_file()).unwrap(),
            CONFIG.replace("bb@old.example", "bb@new.example:2222")
        );
        assert_eq!(
            std::fs::read_to_string(dir.known_hosts()).unwrap(),
            "old.example ssh-ed25519 AAAAold\n[new.example]:2222 ssh-ed25519 AAAAnew\n"
        );
        // A second redirect in the same run is not followed.
        let again = moved_to("bb@third.example", &[]);
        let e = following.follow(&dir, &to, true, again).unwrap_err();
        assert!(matches!(e, Error::Refused(_)), "{e:?}");
        assert!(e.to_string().contains("already followed"), "{e}");
    }

    #[test]
    fn what_is_not_followed() {
        let (_tmp, dir) = dir_with(CONFIG);
        let e = || moved_to("bb@new.example", &[("ssh-ed25519", "AAAAnew")]);
        // Not a redirect: as it was.
        let other = Following::default()
            .follow(&dir, &old(), true, Error::Refused("no".into()))
            .unwrap_err();
        assert!(matches!(other, Error::Refused(m) if m == "no"));
        // A destination from the command line: said, not followed.
        let flag = Following::default()
            .follow(&dir, &old(), false, e())
            .unwrap_err();
        assert!(matches!(flag, Error::Moved { .. }), "{flag:?}");
        // Unreadable, or to itself.
        let bad = Error::Moved {
            redirect: "to=bb@new.example host-key=x".into(),
            message: "moved".into(),
        };
        assert!(
            Following::default()
                .follow(&dir, &old(), true, bad)
                .is_err()
        );
        let itself = moved_to("bb@old.example", &[]);
        assert!(
            Following::default()
                .follow(&dir, &old(), true, itself)
                .is_err()
        );
        // A different key already trusted for the new name: refused.
        std::fs::write(dir.known_hosts(), "new.example ssh-ed25519 AAAAother\n").unwrap();
        let changed = Following::default()
            .follow(&dir, &old(), true, e())
            .unwrap_err();
        assert!(matches!(changed, Error::Connection(_)), "{changed:?}");
        // Nothing was written by any of these.
        assert_eq!(std::fs::read_to_string(dir.config_file()).unwrap(), CONFIG);
        // The same key already trusted: followed, nothing added.
        std::fs::write(dir.known_hosts(), "new.example ssh-ed25519 AAAAnew\n").unwrap();
        Following::default()
            .follow(&dir, &old(), true, e())
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.known_hosts()).unwrap(),
            "new.example ssh-ed25519 AAAAnew\n"
        );
    }
}
