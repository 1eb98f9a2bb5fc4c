//! The client's settings, resolved once: the command line over the config
//! file over the defaults.
//!
//! Every command that reaches the backups (`backup`, `verify`, `list`,
//! `restore`, `snapshots`, `test`) starts from one [`Settings`], and
//! `show-config` prints that same value through the serializer, so what it
//! shows is what the commands use. Its keys are the config file's keys
//! (a test checks both ways), so its output reads back as a config file.

use std::path::PathBuf;

use serde::{Serialize, Serializer};

use crate::client::config::{ClientConfig, ConfigDir};
use crate::config::{Bwlimit, Duration};
use crate::destination::Target;
use crate::error::{Error, Result};
use crate::exec::priority::{IoNice, Priority};
use crate::exec::rsync::Throttle;

/// What the command line says about the settings; the rest comes from the
/// config file and the defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags<'a> {
    /// `--destination`: wins over the file's, and makes the file optional.
    pub destination: Option<&'a str>,
    /// `--source` (repeatable): replaces the configured sources.
    pub sources: &'a [PathBuf],
    /// `--exclude` (repeatable): added to the configured patterns.
    pub excludes: &'a [String],
}

/// The effective settings, named as the config file names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// The server, or a store directory on this machine.
    #[serde(serialize_with = "as_text")]
    pub destination: Target,
    /// This machine's name in the store (`name`, else its FQDN).
    pub name: String,
    /// What to back up (`--source`, else `sources`), as given.
    #[serde(serialize_with = "paths_as_text")]
    pub sources: Vec<PathBuf>,
    /// The exclude patterns the person asked for, by where they come from.
    pub excludes: Excludes,
    pub retry_attempts: u32,
    pub retry_pause: Duration,
    pub io_timeout: Duration,
    pub connect_timeout: Duration,
    pub hook_timeout: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bwlimit: Option<Bwlimit>,
    pub compress: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nice: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ionice: Option<IoNice>,
    pub full_scan_every: u32,
}

/// The exclude patterns the person asked for, kept by origin (a backup
/// tells why each pattern is there); written as one list, as the config
/// file's `excludes` would hold them all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Excludes {
    /// `excludes` in config.toml.
    pub configured: Vec<String>,
    /// The lines of the `excludes` file in the config directory.
    pub file: Vec<String>,
    /// `--exclude` on the command line.
    pub flags: Vec<String>,
}

impl Excludes {
    /// Every pattern, in the order rsync is given them.
    pub fn all(&self) -> impl Iterator<Item = &String> {
        self.configured.iter().chain(&self.file).chain(&self.flags)
    }
}

impl Serialize for Excludes {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.all())
    }
}

fn as_text<S: Serializer>(
    value: &impl std::fmt::Display,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// Paths as text (TOML strings are Unicode; a name that is not is shown
/// with U+FFFD, which is no worse than any other display of it).
fn paths_as_text<S: Serializer>(paths: &[PathBuf], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(paths.iter().map(|p| p.to_string_lossy()))
}

impl Settings {
    /// Reads the config file of `dir` (optional when `--destination` is
    /// given and there is none) and applies `flags` and the defaults.
    pub fn resolve(dir: &ConfigDir, flags: &Flags) -> Result<Settings> {
        let config = match dir.load() {
            Ok(config) => config,
            Err(_) if flags.destination.is_some() && !dir.config_file().exists() => {
                ClientConfig::default()
            }
            Err(e) => return Err(e),
        };
        let destination = match flags.destination {
            Some(text) => text.parse()?,
            None => config.destination.clone().ok_or_else(|| {
                Error::Config(format!(
                    "{} names no destination: run `byteback setup [USER@]HOST` (or pass --destination)",
                    dir.config_file().display()
                ))
            })?,
        };
        Ok(Settings::of(
            config,
            destination,
            dir.file_excludes()?,
            flags,
        ))
    }

    /// The settings of `config` with the destination decided, the excludes
    /// file's patterns and the flags applied: pure, no file read.
    fn of(
        config: ClientConfig,
        destination: Target,
        file_excludes: Vec<String>,
        flags: &Flags,
    ) -> Settings {
        let ClientConfig {
            destination: _,
            name,
            sources,
            excludes,
            retry_attempts,
            retry_pause,
            io_timeout,
            connect_timeout,
            hook_timeout,
            bwlimit,
            compress,
            nice,
            ionice,
            full_scan_every,
        } = config;
        Settings {
            destination,
            name: name.unwrap_or_else(crate::exec::host::this_machines_name),
            sources: if flags.sources.is_empty() {
                sources
            } else {
                flags.sources.to_vec()
            },
            excludes: Excludes {
                configured: excludes,
                file: file_excludes,
                flags: flags.excludes.to_vec(),
            },
            retry_attempts,
            retry_pause,
            io_timeout,
            connect_timeout,
            hook_timeout,
            bwlimit,
            compress,
            nice,
            ionice,
            full_scan_every,
        }
    }

    /// [`Settings::of`] with the flags' destination (or the file's), for
    /// tests elsewhere in the client.
    #[cfg(test)]
    pub(crate) fn resolved_for_tests(config: ClientConfig, flags: &Flags) -> Settings {
        let destination = match flags.destination {
            Some(text) => text.parse().unwrap(),
            None => config.destination.clone().unwrap(),
        };
        Settings::of(config, destination, Vec::new(), flags)
    }

    /// The settings for slow or shared links, as the backup's rsync takes them.
    pub fn throttle(&self) -> Throttle {
        Throttle {
            bwlimit: self.bwlimit.as_ref().map(|b| b.as_str().to_owned()),
            compress: self.compress,
            priority: Priority {
                nice: self.nice,
                io: self.ionice,
            },
        }
    }

    /// The settings as a config file would write them.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::Command(format!("cannot write TOML: {e}")))
    }
}

/// `byteback show-config`: what a backup would use, after defaults and flags.
pub fn show(dir: &ConfigDir, destination: Option<&str>) -> Result<()> {
    let flags = Flags {
        destination,
        ..Flags::default()
    };
    let text = Settings::resolve(dir, &flags)?.to_toml()?;
    println!("# effective settings; config dir {}", dir.dir.display());
    print!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    fn keys(text: &str) -> BTreeSet<String> {
        text.parse::<toml::Table>()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    /// A config with every key set away from its default.
    fn everything() -> ClientConfig {
        crate::config::parse(
            Path::new("config.toml"),
            r#"
destination = "bb@backup.example:2222"
name = "host.example"
sources = ["/home", "/etc"]
excludes = ["*.tmp"]
retry_attempts = 2
retry_pause = "90s"
io_timeout = "5m"
connect_timeout = "10s"
hook_timeout = "2h"
bwlimit = "2M"
compress = true
nice = 10
ionice = "idle"
full_scan_every = 3
"#,
        )
        .unwrap()
    }

    #[test]
    fn flags_win_over_the_file() {
        let config = everything();
        let flags = Flags {
            destination: None,
            sources: &[PathBuf::from("/srv")],
            excludes: &["*.iso".to_owned()],
        };
        let to: Target = "/var/backups".parse().unwrap();
        let s = Settings::of(config, to.clone(), vec!["/var/cache/*".into()], &flags);
        assert_eq!(s.destination, to);
        assert_eq!(s.sources, [PathBuf::from("/srv")]);
        assert_eq!(
            s.excludes.all().collect::<Vec<_>>(),
            ["*.tmp", "/var/cache/*", "*.iso"]
        );
        assert_eq!(s.name, "host.example");
    }

    /// show-config's output reads back as a config file holding the same
    /// settings, and names every key the config file has.
    #[test]
    fn printed_settings_read_back_as_the_config() {
        let config = everything();
        let destination = config.destination.clone().unwrap();
        let settings = Settings::of(config.clone(), destination, Vec::new(), &Flags::default());
        let text = settings.to_toml().unwrap();
        let back: ClientConfig = crate::config::parse(Path::new("shown.toml"), &text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, config, "{text}");
        let file_keys = keys(&toml::to_string(&config).unwrap());
        assert_eq!(keys(&text), file_keys, "{text}");
        // The defaults, with nothing optional set, read back too.
        let defaults = Settings::of(
            ClientConfig {
                name: Some("n".into()),
                ..ClientConfig::default()
            },
            destination_of("/srv/b"),
            vec!["/var/cache/*".into()],
            &Flags::default(),
        );
        let text = defaults.to_toml().unwrap();
        let back: ClientConfig = crate::config::parse(Path::new("shown.toml"), &text).unwrap();
        assert_eq!(back.excludes, ["/var/cache/*"]);
        assert_eq!(back.retry_pause, ClientConfig::default().retry_pause);
        assert!(
            text.contains("retry_attempts = 5\nretry_pause = \"10m\"\n"),
            "{text}"
        );
    }

    fn destination_of(text: &str) -> Target {
        text.parse().unwrap()
    }
}
