//! `byteback setup` and `byteback test`: the client's one-time set-up.

use std::path::Path;

use crate::client::backups::{self, Opening};
use crate::client::config::{ClientConfig, ConfigDir, template};
use crate::client::follow::Following;
use crate::client::settings::{Flags, Settings};
use crate::config;
use crate::destination::{Destination, Target};
use crate::error::{Error, IoContext, Result};
use crate::exec::Cmd;
use crate::exec::ssh::HostKeyPolicy;
use crate::sys::fs::{ensure_dir, write_atomic};

/// Creates the config directory, key and config for `destination`.
pub fn setup(dir: &ConfigDir, destination: &str, name: Option<&str>) -> Result<()> {
    let target: Target = destination.parse()?;
    let name = match name {
        Some(n) => n.to_owned(),
        None => crate::exec::host::this_machines_name(),
    };
    crate::names::ClientName::new(&name)
        .map_err(|e| Error::Usage(format!("{e} (pass --name NAME)")))?;
    let destination = match &target {
        Target::Remote(d) => d.clone(),
        Target::Local(path) => {
            if !dir.dir.exists() {
                ensure_dir(&dir.dir, 0o700)?;
            }
            make_hook_dirs(dir)?;
            write_config(dir, &target, &name)?;
            println!(
                "Backups of {name} will go to {} on this machine; the store is made on the first backup.",
                path.display()
            );
            println!("Run `byteback backup` (daily, from a timer).");
            return Ok(());
        }
    };
    if !dir.dir.exists() {
        ensure_dir(&dir.dir, 0o700)?;
    }
    make_hook_dirs(dir)?;
    let key = dir.key();
    if !key.exists() {
        Cmd::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C"])
            .arg(format!("root@{name}"))
            .arg("-f")
            .arg(&key)
            .run()?;
    } else if !dir.public_key().exists() {
        let public = Cmd::new("ssh-keygen").arg("-y").arg("-f").arg(&key).run()?;
        write_atomic(&dir.public_key(), public.as_bytes(), 0o644)?;
    }
    write_config(dir, &target, &name)?;
    let public = std::fs::read_to_string(dir.public_key()).on("cannot read", &dir.public_key())?;
    let public = public.trim();
    println!("Your backup key is {public}");
    println!(
        "On the server {}, as its backup user, run:",
        destination.host
    );
    println!("  byteback-server new-client {public}");
    println!("then run `byteback test` here.");
    Ok(())
}

/// The (empty) hook directories, so an administrator sees where hooks go.
fn make_hook_dirs(dir: &ConfigDir) -> Result<()> {
    for hooks in [dir.pre_backup_hooks(), dir.post_backup_hooks()] {
        if !hooks.exists() {
            ensure_dir(&hooks, 0o755)?;
        }
    }
    Ok(())
}

/// Writes the config, keeping an existing file's other settings.
fn write_config(dir: &ConfigDir, destination: &Target, name: &str) -> Result<()> {
    let path = dir.config_file();
    let text = match std::fs::read_to_string(&path) {
        Ok(old) => {
            // Check the old file first: never silently rewrite a broken one.
            config::parse::<ClientConfig>(&path, &old)?;
            set_key(
                &set_key(&old, "destination", &destination.to_string()),
                "name",
                name,
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => template(destination, name),
        Err(e) => return Err(Error::io("cannot read", &path, e)),
    };
    write_atomic(&path, text.as_bytes(), 0o644)
}

/// Records a new destination in the config (a followed redirect, see
/// [`crate::client::follow`]), as `setup` writes it: the old file checked
/// first, only the `destination` line changed, the whole file replaced
/// atomically.
pub(crate) fn set_destination(dir: &ConfigDir, destination: &Target) -> Result<()> {
    let path = dir.config_file();
    let old = std::fs::read_to_string(&path).on("cannot read", &path)?;
    config::parse::<ClientConfig>(&path, &old)?;
    let text = set_key(&old, "destination", &destination.to_string());
    write_atomic(&path, text.as_bytes(), 0o644)
}

/// Replaces (or adds) a top-level `key = "value"` line.
fn set_key(text: &str, key: &str, value: &str) -> String {
    let line = format!("{key} = \"{value}\"");
    let mut found = false;
    let mut out: Vec<String> = text
        .lines()
        .map(|l| {
            let is_key = l.split_once('=').is_some_and(|(k, _)| k.trim() == key);
            if is_key && !found {
                found = true;
                line.clone()
            } else {
                l.to_owned()
            }
        })
        .collect();
    if !found {
        out.insert(0, line);
    }
    out.join("\n") + "\n"
}

/// Connects (trusting a server's host key as told) and pings: the same
/// check for a server and for a store on this machine (which it makes if
/// missing, as the first backup would).
pub fn test(dir: &ConfigDir, accept_new_host_key: bool, destination: Option<&str>) -> Result<()> {
    let flags = Flags {
        destination,
        ..Flags::default()
    };
    let mut settings = Settings::resolve(dir, &flags)?;
    let host_keys = if accept_new_host_key {
        HostKeyPolicy::AcceptNew
    } else if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        HostKeyPolicy::Ask
    } else {
        HostKeyPolicy::Strict
    };
    let opening = Opening {
        host_keys,
        create: true,
    };
    let mut following = Following::default();
    let (backups, reply, known_before) = loop {
        let backups = backups::open(dir, &settings, opening)?;
        println!("Connecting to {}...", backups.describe());
        // Only a server has a host key to trust.
        let known_before = match settings.destination.server() {
            Some(d) => host_key_fingerprint(&dir.known_hosts(), d)?,
            None => None,
        };
        match backups.ping() {
            Ok(reply) => break (backups, reply, known_before),
            // Moved to another server: followed once, recorded.
            Err(e) => {
                settings.destination =
                    following.follow(dir, &settings.destination, destination.is_none(), e)?;
            }
        }
    };
    let server = settings.destination.server();
    if let (None, Some(d)) = (known_before, server) {
        if let Some(fp) = host_key_fingerprint(&dir.known_hosts(), d)? {
            println!("Trusted the server's host key: {fp}");
        }
    }
    let (from, place) = match server {
        Some(_) => ("the server", "on the server".to_owned()),
        None => ("the store", format!("in the {}", backups.describe())),
    };
    println!(
        "Backup space for {}: {} snapshots, newest {}; {} free {place}.",
        reply.client,
        reply.snapshots,
        reply.newest.as_deref().unwrap_or("none"),
        crate::sys::fs::human_bytes(reply.free_bytes),
    );
    for warning in [&reply.notice, &reply.alert].into_iter().flatten() {
        println!("Warning from {from}: {warning}");
    }
    if let Some(why) = &reply.failing {
        println!("Warning from {from}: the last attempt of this machine failed: {why}");
    }
    if let Some(windows) = &reply.windows {
        let now = match reply.closed_until {
            None => "open now".to_owned(),
            Some(at) => format!(
                "closed now: the next opens at {} ({}), and a backup started before then waits for it (up to retry_after_max, {})",
                jiff::tz::TimeZone::system()
                    .to_datetime(at)
                    .strftime("%H:%M"),
                at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                settings.retry_after_max
            ),
        };
        println!("Backup windows of {from}: {windows}; {now}.");
    }
    if reply.alert.is_some() || reply.failing.is_some() {
        return Err(Error::Attention(
            "connected and found backup space, but the backups need attention (see the warnings above)".into(),
        ));
    }
    println!("Successfully connected and found backup space, ready to go.");
    Ok(())
}

/// The fingerprint of the host key recorded for `dest`, if any.
fn host_key_fingerprint(known_hosts: &Path, dest: &Destination) -> Result<Option<String>> {
    if !known_hosts.exists() {
        return Ok(None);
    }
    let out = Cmd::new("ssh-keygen")
        .arg("-l")
        .arg("-F")
        .arg(dest.known_hosts_name())
        .arg("-f")
        .arg(known_hosts)
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_key_replaces_or_adds() {
        let t = "# c\ndestination = \"a@b\"\nretry_attempts = 3\n";
        assert_eq!(
            set_key(t, "destination", "x@y"),
            "# c\ndestination = \"x@y\"\nretry_attempts = 3\n"
        );
        assert_eq!(
            set_key(t, "name", "n"),
            "name = \"n\"\n# c\ndestination = \"a@b\"\nretry_attempts = 3\n"
        );
    }
}
