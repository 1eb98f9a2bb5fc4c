//! `byteback`: the client's commands, run as root on the machine to back up.

pub mod backup;
pub mod backups;
pub mod config;
pub mod follow;
pub mod hooks;
pub mod index;
pub mod restore;
pub mod settings;
pub mod setup;
pub mod state;
pub mod transfer;
pub mod verify;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::{Error, Result};
use config::ConfigDir;

/// Maintenance-free backups of this machine to a byteback server.
#[derive(Debug, Parser)]
#[command(name = "byteback", version, about)]
pub struct Cli {
    /// The configuration directory [default: $BYTEBACK_CONFIG_DIR, else /etc/byteback].
    #[arg(long, global = true, value_name = "DIR")]
    config_dir: Option<PathBuf>,
    /// Use this server ([USER@]HOST[:PORT]) or local store directory instead of the configured one.
    #[arg(long, global = true, value_name = "DEST")]
    destination: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make this machine's key and config for a server ([USER@]HOST[:PORT]) or a local store directory.
    Setup {
        /// The server, e.g. byteback@backup.example.net, or an absolute directory on this machine.
        // Its own id: sharing the global --destination's would merge the two.
        #[arg(id = "setup_destination", value_name = "DESTINATION")]
        destination: String,
        /// This machine's backup name [default: its FQDN].
        #[arg(long)]
        name: Option<String>,
    },
    /// Connect to the server and check this machine's backup space.
    Test {
        /// Trust a server seen for the first time without asking (a changed key is never accepted).
        #[arg(long)]
        accept_new_host_key: bool,
    },
    /// Find files in this machine's backups: PATTERN is a glob (*, **, ?, [set], {a,b}).
    List {
        #[command(flatten)]
        query: restore::Query,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Restore what `list` with the same arguments shows, into DIR/<snapshot>/<path>.
    Restore {
        #[command(flatten)]
        query: restore::Query,
        /// Where to restore to [default: the current directory].
        #[arg(long, value_name = "DIR")]
        into: Option<PathBuf>,
        /// Show what would be restored; restore nothing.
        #[arg(long)]
        dry_run: bool,
        /// Replace files that already exist in DIR.
        #[arg(long)]
        overwrite: bool,
    },
    /// This machine's snapshots on the server.
    Snapshots {
        /// A JSON array of {name, time, age_seconds, partial}.
        #[arg(long)]
        json: bool,
    },
    /// What changed between two snapshots (default: the newest and the one before it): paths
    /// added (+), deleted (-), changed in content (c) or in metadata only (m), from the change
    /// log the server recorded at each snapshot; across several snapshots the logs are combined.
    Diff {
        /// The older snapshot [default: the one before TO].
        from: Option<String>,
        /// The newer snapshot [default: the newest].
        to: Option<String>,
        /// One JSON object: from, to, method (log or trees), added, deleted, content, metadata,
        /// files, complete, paths ([path, kind] pairs).
        #[arg(long)]
        json: bool,
    },
    /// Compare a snapshot (default: the newest) with this machine's files: what differs, is missing or extra.
    Verify {
        /// The snapshot to compare with [default: the newest].
        #[arg(long, value_name = "NAME")]
        snapshot: Option<String>,
        /// Compare file contents too (reads every file on both sides).
        #[arg(long)]
        checksum: bool,
        /// One JSON object per line, a summary object last.
        #[arg(long)]
        json: bool,
        /// What to compare [default: the configured sources].
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Print the effective settings (config file, flags and defaults).
    ShowConfig,
    /// How the last backup went, and when one last succeeded.
    Status {
        /// One JSON object: the state file as it is.
        #[arg(long)]
        json: bool,
    },
    /// Back up now.
    Backup {
        /// Back up this path instead of the configured sources (repeatable).
        #[arg(long = "source", value_name = "PATH")]
        sources: Vec<PathBuf>,
        /// Also exclude this rsync pattern (repeatable).
        #[arg(long = "exclude", value_name = "PATTERN")]
        excludes: Vec<String>,
        /// List every file as it is sent, and print every program run (as a
        /// line that can be pasted into a shell).
        #[arg(long, short)]
        verbose: bool,
        /// Print the sources and exclusions, and stop.
        #[arg(long)]
        dry_run: bool,
        /// Print nothing when the backup succeeds (so cron mails only failures).
        #[arg(long, short, conflicts_with = "verbose")]
        quiet: bool,
        /// Print the summary as one JSON object instead of a line.
        #[arg(long)]
        json: bool,
        /// Make a full rsync pass instead of sending what the change index found.
        #[arg(long)]
        full: bool,
    },
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let dir = ConfigDir::resolve(cli.config_dir)?;
    let dest = cli.destination.as_deref();
    match cli.command {
        Command::Setup { destination, name } => {
            if let Some(global) = dest {
                return Err(Error::Usage(format!(
                    "setup takes its destination as an argument, not --destination: byteback setup {global}"
                )));
            }
            setup::setup(&dir, &destination, name.as_deref())
        }
        Command::Test {
            accept_new_host_key,
        } => setup::test(&dir, accept_new_host_key, dest),
        Command::List { query, json } => restore::list(&dir, &query, json, dest),
        Command::Restore {
            query,
            into,
            dry_run,
            overwrite,
        } => restore::restore(
            &dir,
            &restore::RestoreArgs {
                query,
                into: into.unwrap_or_else(|| PathBuf::from(".")),
                dry_run,
                overwrite,
            },
            dest,
        ),
        Command::Snapshots { json } => restore::snapshots(&dir, json, dest),
        Command::Diff { from, to, json } => {
            restore::diff(&dir, from.as_deref(), to.as_deref(), json, dest)
        }
        Command::ShowConfig => settings::show(&dir, dest),
        Command::Verify {
            snapshot,
            checksum,
            json,
            paths,
        } => verify::run(
            &dir,
            &verify::VerifyArgs {
                snapshot,
                checksum,
                json,
                paths,
            },
            dest,
        ),
        Command::Status { json } => state::show(&dir, json, jiff::Timestamp::now()),
        Command::Backup {
            sources,
            excludes,
            verbose,
            dry_run,
            quiet,
            json,
            full,
        } => {
            crate::exec::set_verbose(verbose);
            backup::run(
                &dir,
                &backup::BackupArgs {
                    sources,
                    excludes,
                    verbose,
                    dry_run,
                    quiet,
                    json,
                    destination: cli.destination.clone(),
                    full,
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    /// The server's commands never import the client's: what both programs
    /// use lives where both may import it (`listing`, `protocol::call`,
    /// `exec::host`, `config`).
    #[test]
    fn nothing_on_the_server_side_imports_the_client() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server");
        let mut stack = vec![dir];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    assert!(
                        !text.contains("crate::client"),
                        "{} imports crate::client",
                        path.display()
                    );
                }
            }
        }
    }
}
