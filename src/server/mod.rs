//! `byteback-server`: the backup server's commands, run as the backup user
//! (by hand, or by sshd as a client's forced command).

pub mod keys;
pub mod receive;
pub mod setup;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use jiff::Timestamp;

use crate::error::{Error, Result};
use crate::names::ClientName;
use crate::store::Store;

/// byteback's server side: the store, its clients and their snapshots.
#[derive(Debug, Parser)]
#[command(name = "byteback-server", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the store (btrfs, permissions) and write its configuration.
    Setup {
        /// The store directory [default: the backup user's home].
        #[arg(long)]
        store: Option<PathBuf>,
    },
    /// Give a client backup space and authorise its key.
    NewClient {
        #[arg(long)]
        store: Option<PathBuf>,
        /// The client's name [default: the host part of the key's comment].
        #[arg(long)]
        name: Option<String>,
        /// Only accept this client from these addresses (ssh's from="..." pattern list).
        #[arg(long, value_name = "PATTERN")]
        from: Option<String>,
        /// The client's public key, as `byteback setup` printed it (quoted or not).
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true, value_name = "KEY")]
        key: Vec<String>,
    },
    /// The forced command of a client's key: serves that client's requests.
    Receive {
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        client: String,
    },
    /// Take a snapshot of a client's current backup by hand.
    Snapshot {
        #[arg(long)]
        store: Option<PathBuf>,
        #[arg(long)]
        client: String,
        /// Name the snapshot for this time instead of now (RFC 3339, e.g. 2026-01-31T12:00:00Z).
        #[arg(long, value_name = "TIME")]
        at: Option<Timestamp>,
    },
    /// List the snapshots of every client (or one).
    Snapshots {
        #[arg(long)]
        store: Option<PathBuf>,
        #[arg(long)]
        client: Option<String>,
    },
}

/// Runs the parsed command line; the exit status on success.
pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Setup { store } => setup::run(&store_or_home(store)?).map(|()| 0),
        Command::NewClient {
            store,
            name,
            from,
            key,
        } => setup::new_client(
            &store_or_home(store)?,
            name.as_deref(),
            from.as_deref(),
            &key,
        )
        .map(|()| 0),
        Command::Receive { store, client } => {
            let command = std::env::var("SSH_ORIGINAL_COMMAND").ok();
            Ok(receive::run(&store, &client, command.as_deref()))
        }
        Command::Snapshot { store, client, at } => {
            refuse_root()?;
            let store = Store::open(&store_or_home(store)?)?;
            let client = ClientName::new(&client)?;
            let _lock = store.lock_client(&client, store.config.lock_wait.to_std())?;
            let name = store.take_snapshot(&client, at.unwrap_or_else(Timestamp::now), None)?;
            store.log(&format!("{client}: snapshot {name} taken by hand"));
            println!("{name}");
            Ok(0)
        }
        Command::Snapshots { store, client } => {
            let store = Store::open(&store_or_home(store)?)?;
            let clients = match client {
                Some(c) => vec![ClientName::new(&c)?],
                None => store.clients()?,
            };
            for client in clients {
                for s in store.snapshots(&client)? {
                    let flag = if s.partial { " partial" } else { "" };
                    println!("{client} {}{flag}", s.name);
                }
            }
            Ok(0)
        }
    }
}

/// `--store`, or the running user's home.
fn store_or_home(store: Option<PathBuf>) -> Result<PathBuf> {
    let store = match store {
        Some(s) => s,
        None => crate::sys::user::current().home.ok_or_else(|| {
            Error::Usage("cannot tell the backup user's home: pass --store DIR".into())
        })?,
    };
    absolute(&store)
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io("cannot resolve", path, e))
}

/// Admin commands create files the backup user must own: refuse root.
fn refuse_root() -> Result<()> {
    if rustix::process::geteuid().is_root() {
        return Err(Error::Usage(
            "run this as the backup user, not root (e.g. `su -s /bin/sh byteback -c 'byteback-server ...'`)".into(),
        ));
    }
    Ok(())
}
