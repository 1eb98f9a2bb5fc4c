//! `byteback-server`: the backup server's commands, run as the backup user
//! (by hand, or by sshd as a client's forced command).

pub mod ack;
pub mod clients;
pub mod history;
pub mod keys;
pub mod move_client;
pub mod privileged;
pub mod probe;
pub mod receive;
pub mod replicate;
pub mod report;
pub mod roles;
pub mod root_setup;
pub mod setup;
pub mod space_history;
pub mod status;
pub mod verify;
pub mod watch;

/// Tests of the trust boundary: what a client may send (parsed by
/// [`crate::protocol`]) against what the lifecycle then does.
#[cfg(test)]
mod boundary;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use jiff::Timestamp;

use crate::config::Bwlimit;
use crate::error::{Error, Result};
use crate::prune;
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
    /// Check the store (btrfs, permissions) and write its configuration; as root with --user, first create and fix up that backup user.
    Setup {
        /// The store directory [default: the backup user's home; with --user for a new user, /home/NAME].
        #[arg(long)]
        store: Option<PathBuf>,
        /// As root: create this backup user if missing (home = the store, /bin/sh, no password), check the mount options, fix ownership, enable the maintenance timer, then run setup as that user.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// How snapshots are made [default: btrfs on btrfs, plain elsewhere].
        #[arg(long, value_enum)]
        backend: Option<crate::store::Backend>,
        /// With --user, on btrfs: hardened mode — snapshots are taken and deleted only by the root-owned helper byteback-privileged, through one sudo rule, so the backup user cannot rewrite history.
        #[arg(long, requires = "user")]
        hardened: bool,
        /// With --hardened: the installed helper [default: byteback-privileged next to this byteback-server].
        #[arg(long, value_name = "PATH", requires = "hardened")]
        helper: Option<PathBuf>,
    },
    /// Give a client backup space and authorise its key.
    NewClient {
        /// The store directory [default: the backup user's home].
        #[arg(long)]
        store: Option<PathBuf>,
        /// The client's name [default: the host part of the key's comment].
        #[arg(long)]
        name: Option<String>,
        /// Only accept this client from these addresses (ssh's from="..." pattern list).
        #[arg(long, value_name = "PATTERN")]
        from: Option<String>,
        /// Give a client already enrolled under this name a new key (a reinstalled machine): its
        /// line is replaced, its history stays, and so does its --from unless given again.
        #[arg(long)]
        replace_key: bool,
        /// The key is another byteback server's (`byteback-server replicate --setup` printed it),
        /// named by --name: it may only replicate its own clients' snapshots here, as NAME__CLIENT.
        #[arg(long, conflicts_with = "read_only")]
        replica: bool,
        /// With --replica (required there): the primary's clients it may replicate here,
        /// comma-separated; any other is refused before anything is written. Run new-client
        /// again with the same key to change the list.
        #[arg(
            long,
            value_delimiter = ',',
            value_name = "NAME,...",
            requires = "replica"
        )]
        clients: Vec<String>,
        /// The key may only list and restore (e.g. a client's own key on a replica, named
        /// PRIMARY__CLIENT), never back up.
        #[arg(long, conflicts_with = "push_only")]
        read_only: bool,
        /// The key may only back up: it cannot list, restore or verify, so whoever takes the
        /// machine over cannot read its history either. A restore then needs `byteback-server
        /// grant-restore --client NAME` (a window of reads), or a read on the server.
        /// To switch an enrolled client's key to (or back from) push-only, run new-client again
        /// with the same key, the role's flag (or none) and --replace-key.
        #[arg(long, conflicts_with = "replica")]
        push_only: bool,
        /// The most its history may hold exclusively, e.g. 50G (powers of 1024); over it,
        /// pruning thins this client's own history. See docs/disk-space.md, "History quotas".
        #[arg(long, value_name = "SIZE", value_parser = parse_quota)]
        quota: Option<u64>,
        /// The client's public key, as `byteback setup` printed it (quoted or not).
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true, value_name = "KEY")]
        key: Vec<String>,
    },
    /// Set or remove a client's history quota: the most its history may hold exclusively.
    SetQuota {
        /// The store directory [default: the backup user's home].
        #[arg(long)]
        store: Option<PathBuf>,
        /// The client's name, as `byteback-server clients` lists it.
        #[arg(long, value_name = "NAME")]
        client: String,
        /// The quota, e.g. 50G (powers of 1024), or `none` to remove it.
        #[arg(value_name = "SIZE|none", value_parser = parse_quota_or_none)]
        size: QuotaSetting,
    },
    /// List the enrolled clients: key, fingerprint, restrictions, data; and data without a key.
    Clients {
        /// The store directory [default: the backup user's home].
        #[arg(long)]
        store: Option<PathBuf>,
        /// One JSON object per client, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Remove a client: its key at once, and (unless --keep-snapshots) all its backups.
    RemoveClient {
        /// The store directory [default: the backup user's home].
        #[arg(long)]
        store: Option<PathBuf>,
        /// Remove only the key; the snapshots and current stay in the store.
        #[arg(long)]
        keep_snapshots: bool,
        /// The client's name, as `byteback-server clients` lists it.
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Rename a client: its directory and history, and its key line, follow.
    RenameClient {
        /// The store directory [default: the backup user's home].
        #[arg(long)]
        store: Option<PathBuf>,
        /// The client's current name.
        #[arg(value_name = "OLD")]
        old: String,
        /// Its new name (letters, digits, '.', '-', '_'), not taken by another client.
        #[arg(value_name = "NEW")]
        new: String,
    },
    /// Move a client, with its whole history, to another byteback server: copy, hand over, redirect.
    ///
    /// The target must already be this server's replica for NAME: it enrolled this store's
    /// replication key with `byteback-server new-client --replica --clients ...,NAME` (the line
    /// `byteback-server replicate --setup --to USER@SERVER` prints; move-client prints it too when
    /// the target refuses). Then NAME's snapshots are copied there through the replication path
    /// (resumable: run it again to go on), and, while no backup of NAME runs here, the target
    /// makes its copy the client NAME, with the same key (read from this server's authorized_keys;
    /// the target writes its own line). From then on this server refuses NAME's backups with a
    /// redirect to USER@SERVER and its host key, which the client's `byteback backup` and
    /// `byteback test` follow once and record in its configuration. The history stays here until
    /// --retire. See docs/server-and-clients.md, "Moving a client to another server".
    MoveClient {
        /// The store directory [default: the backup user's home].
        #[arg(long)]
        store: Option<PathBuf>,
        /// The server the client moves to, as this server's replication reaches it.
        #[arg(long, value_name = "[USER@]SERVER[:PORT]")]
        to: String,
        /// Delete the client's copy here (its snapshots and key line, as remove-client), once
        /// SERVER has taken a backup of it since the move; refused before that, with the reason.
        #[arg(long)]
        retire: bool,
        /// Trust SERVER's host key seen for the first time; a changed key is never accepted.
        #[arg(long)]
        accept_new_host_key: bool,
        /// List every file as it is sent.
        #[arg(long, short)]
        verbose: bool,
        /// The client's name, as `byteback-server clients` lists it.
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// The forced command of a client's key: serves that client's requests.
    Receive {
        /// The store directory (set by new-client in authorized_keys).
        #[arg(long)]
        store: PathBuf,
        /// The client's name, as enrolled with new-client.
        #[arg(long)]
        client: String,
        /// The key is a primary server's, named by --client (set by new-client --replica).
        #[arg(long, conflicts_with = "read_only")]
        replica: bool,
        /// The key may only list and restore (set by new-client --read-only).
        #[arg(long, conflicts_with = "push_only")]
        read_only: bool,
        /// The key may only back up, and read back only while grant-restore allows it (set by
        /// new-client --push-only).
        #[arg(long, conflicts_with = "replica")]
        push_only: bool,
        /// The key is an original byteback client's, speaking its language (set by import-keys).
        #[arg(long, conflicts_with_all = ["replica", "read_only", "push_only"])]
        legacy: bool,
    },
    /// Clear the suspect mark of a client's snapshot, once a person has looked at it.
    ///
    /// A snapshot that changed or deleted far more of the client's files than usual is marked
    /// suspect (`[suspect]` in server.toml), and the snapshots before it are kept from pruning
    /// while the mark stands; `status` shows the client critical. Only this command clears it. See
    /// docs/disk-space.md, "Suspect snapshots".
    Ack {
        /// The store directory [default: the backup user's home].
        #[arg(long)]
        store: Option<PathBuf>,
        /// The client's name.
        #[arg(long)]
        client: String,
        /// The suspect snapshot, as status names it.
        snapshot: String,
    },
    /// Let a push-only client's key list, restore and verify for a while (see new-client --push-only).
    ///
    /// Records beside the client, on the server, the time the window ends; the client's key reads
    /// back until then, and is refused again after. Running it again replaces the window. See
    /// docs/security.md, "Key roles".
    GrantRestore {
        /// The store directory [default: the backup user's home].
        #[arg(long)]
        store: Option<PathBuf>,
        /// The client's name, as enrolled with new-client --push-only.
        #[arg(long)]
        client: String,
        /// How long reads are allowed from now: 90s, 30m, 1h, 2 days.
        #[arg(
            long = "for",
            value_name = "DURATION",
            default_value = "1h",
            conflicts_with = "revoke"
        )]
        window: crate::config::Duration,
        /// End the window now instead.
        #[arg(long)]
        revoke: bool,
    },
    /// Rewrite the original byteback's client lines (command="byteback-receive", BYTEBACK_HOST) in authorized_keys into this server's; see docs/server-and-clients.md, "Upgrading from the original byteback".
    ImportKeys {
        /// The store directory [default: the backup user's home, where the original kept its clients].
        #[arg(long)]
        store: Option<PathBuf>,
        /// The authorized_keys file to rewrite [default: the backup user's ~/.ssh/authorized_keys].
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Send every snapshot a replica lacks to it (oldest first, resumable); see docs/replication.md.
    Replicate {
        /// The store directory [default: the backup user's home].
        #[arg(long)]
        store: Option<PathBuf>,
        /// The replica, [USER@]HOST[:PORT] (repeatable) [default: [replicate] to in server.toml].
        #[arg(long, value_name = "[USER@]HOST[:PORT]")]
        to: Vec<String>,
        /// Only this client (repeatable) [default: every client].
        #[arg(long, value_name = "NAME")]
        client: Vec<String>,
        /// Make this store's replication key if missing and print the line to run on the replica.
        #[arg(long, conflicts_with_all = ["client", "accept_new_host_key"])]
        setup: bool,
        /// With --setup: the name the replica will know this server by [default: this host's name].
        #[arg(long, requires = "setup")]
        name: Option<String>,
        /// Trust a replica's host key seen for the first time (and print nothing about it); a
        /// changed key is never accepted.
        #[arg(long)]
        accept_new_host_key: bool,
        /// List every file as it is sent.
        #[arg(long, short)]
        verbose: bool,
        /// rsync's bandwidth limit: KiB per second (500), or with a unit, 2M, 512K (powers of
        /// 1024); 0 is none [default: [replicate] bwlimit in server.toml].
        #[arg(long, value_name = "LIMIT", conflicts_with = "setup")]
        bwlimit: Option<Bwlimit>,
    },
    /// Take a snapshot of a client's current backup by hand.
    Snapshot {
        /// The store directory [default: the backup user's home].
        #[arg(long)]
        store: Option<PathBuf>,
        /// The client's name, as enrolled with new-client.
        #[arg(long)]
        client: String,
        /// Name the snapshot for this time instead of now (RFC 3339, e.g. 2026-01-31T12:00:00Z).
        #[arg(long, value_name = "TIME")]
        at: Option<Timestamp>,
    },
    /// Delete the least important snapshots if free space is short.
    Prune {
        /// The store directory [default: the backup user's home].
        #[arg(long)]
        store: Option<PathBuf>,
        /// Say what would be deleted and why; delete nothing.
        #[arg(long, conflicts_with_all = ["force", "list"])]
        dry_run: bool,
        /// Delete the least important snapshot now, whatever the free space.
        #[arg(long, conflicts_with = "list")]
        force: bool,
        /// Print every snapshot, most important first, as `INDEX CLIENT SNAPSHOT`; delete nothing.
        #[arg(long)]
        list: bool,
        /// With --list: one JSON object per line, {index, client, snapshot, time}.
        #[arg(long, requires = "list")]
        json: bool,
        /// The order of --list.
        #[arg(long, value_enum, default_value = "importance")]
        order: crate::prune::OrderKind,
        /// Decide as if it were this time (RFC 3339), for reproducible listings.
        #[arg(long, value_name = "TIME")]
        now: Option<Timestamp>,
    },
    /// Find files in a client's backups (as `byteback list` does on the client).
    List {
        /// The store directory [default: the backup user's home].
        #[arg(long)]
        store: Option<PathBuf>,
        /// The client's name, as enrolled with new-client.
        #[arg(long)]
        client: String,
        #[command(flatten)]
        query: crate::listing::Query,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Whether anything is wrong: every client's backups and the store's space.
    Status {
        /// The store directory [default: the backup user's home].
        #[arg(long)]
        store: Option<PathBuf>,
        /// Only this client.
        #[arg(long)]
        client: Option<String>,
        /// One JSON object: `clients` (an array) and `store`.
        #[arg(long, conflicts_with_all = ["check", "prometheus"])]
        json: bool,
        /// Act as a Nagios/Icinga plugin: one line, exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
        #[arg(long)]
        check: bool,
        /// With --check: warn when a client's newest snapshot is older [default: stale_after].
        #[arg(long, value_name = "AGE", requires = "check")]
        warn: Option<crate::config::Duration>,
        /// With --check: critical when a client's newest snapshot is older [default: 3 × warn].
        #[arg(long, value_name = "AGE", requires = "check")]
        crit: Option<crate::config::Duration>,
        /// Write the figures in Prometheus text format to FILE (atomically), for node_exporter.
        #[arg(long, value_name = "FILE")]
        prometheus: Option<PathBuf>,
    },
    /// Write a static HTML report of the store (an overview and a page per client) into a directory.
    ///
    /// index.html lists every client (state, last backup and its age, the last attempt and its reason, snapshots, space held, alerts and notices) and the store's free space and alert; each client's page, client-NAME.html, shows its snapshots on a time axis, its space over time, what pruning would take next and its last attempt. Plain files: they open from file:// and from any web server. Each run replaces them atomically and adds a space sample (as status does), so a timer can refresh them: see docs/monitoring.md, "The report".
    Report {
        /// The store directory [default: the backup user's home].
        #[arg(long)]
        store: Option<PathBuf>,
        /// The directory to write the pages into, outside the store (made if missing; each page replaced atomically, pages of removed clients deleted).
        #[arg(long, value_name = "DIR")]
        output: PathBuf,
    },
    /// Print the store's effective settings (its file and the defaults), as TOML.
    ShowConfig {
        /// The store directory [default: the backup user's home].
        #[arg(long)]
        store: Option<PathBuf>,
    },
    /// Check every snapshot: read-only (btrfs) or its own directory (plain), nothing stray beside it, its metadata readable.
    Verify {
        /// The store directory [default: the backup user's home].
        #[arg(long)]
        store: Option<PathBuf>,
        /// Only this client [default: every client].
        #[arg(long)]
        client: Option<String>,
        /// Also run `btrfs scrub start -B` on the store (usually needs root).
        #[arg(long)]
        scrub: bool,
        /// One JSON object per problem, one per line, a summary object last.
        #[arg(long)]
        json: bool,
    },
    /// What changed between two snapshots of a client (default: the newest and the one before),
    /// from the change logs the server recorded at each snapshot; snapshots without one (the
    /// original byteback's, or older) are compared tree against tree, and the output says so.
    Diff {
        /// The store directory [default: the backup user's home].
        #[arg(long)]
        store: Option<PathBuf>,
        /// The client.
        #[arg(long)]
        client: String,
        /// The older snapshot [default: the one before the newer].
        from: Option<String>,
        /// The newer snapshot [default: the newest].
        to: Option<String>,
        /// One JSON object: `from`, `to`, `method` (`log` or `trees`), counts, `paths`.
        #[arg(long)]
        json: bool,
    },
    /// List the snapshots of every client (or one).
    Snapshots {
        /// The store directory [default: the backup user's home].
        #[arg(long)]
        store: Option<PathBuf>,
        /// Only this client [default: every client].
        #[arg(long)]
        client: Option<String>,
        /// One JSON object per line: `client`, `name`, `time`, `age_seconds`, `partial`.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the parsed command line; the exit status on success.
pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Setup {
            store,
            user: Some(user),
            backend,
            hardened,
            helper,
        } => {
            let hardened = hardened.then_some(root_setup::Hardening { helper });
            root_setup::run(&user, store.as_deref(), backend, hardened)
        }
        Command::Setup {
            store,
            user: None,
            backend,
            ..
        } => setup::run(&store_or_home(store)?, backend).map(|()| 0),
        Command::NewClient {
            store,
            name,
            from,
            replace_key,
            replica,
            clients,
            read_only,
            push_only,
            quota,
            key,
        } => setup::new_client(
            &store_or_home(store)?,
            name.as_deref(),
            from.as_deref(),
            &key,
            replace_key,
            key_role(replica, read_only, push_only),
            &clients,
            quota,
        )
        .map(|()| 0),
        Command::SetQuota {
            store,
            client,
            size,
        } => setup::set_quota(&store_or_home(store)?, &client, size.0).map(|()| 0),
        Command::Clients { store, json } => clients::list(&store_or_home(store)?, json).map(|()| 0),
        Command::RemoveClient {
            store,
            keep_snapshots,
            name,
        } => clients::remove(&store_or_home(store)?, &name, keep_snapshots).map(|()| 0),
        Command::RenameClient { store, old, new } => {
            clients::rename(&store_or_home(store)?, &old, &new).map(|()| 0)
        }
        Command::MoveClient {
            store,
            to,
            retire,
            accept_new_host_key,
            verbose,
            name,
        } => move_client::run(
            &store_or_home(store)?,
            &move_client::Args {
                name,
                to,
                retire,
                accept_new_host_key,
                verbose,
            },
        ),
        Command::Receive {
            store,
            client,
            replica,
            read_only,
            push_only,
            legacy,
        } => {
            // Bytes that are not UTF-8 are never byteback's (it encodes its
            // arguments), so they are turned into a refusal by the parser.
            let command =
                std::env::var_os("SSH_ORIGINAL_COMMAND").map(|c| c.to_string_lossy().into_owned());
            Ok(receive::run(
                &store,
                &client,
                match legacy {
                    true => keys::KeyRole::Legacy,
                    false => key_role(replica, read_only, push_only),
                },
                command.as_deref(),
            ))
        }
        Command::Ack {
            store,
            client,
            snapshot,
        } => ack::run(&store_or_home(store)?, &client, &snapshot).map(|()| 0),
        Command::GrantRestore {
            store,
            client,
            window,
            revoke,
        } => clients::grant_restore(&store_or_home(store)?, &client, window, revoke).map(|()| 0),
        Command::ImportKeys { store, file } => {
            let file = match file {
                Some(f) => absolute(&f)?,
                None => keys::default_path()?,
            };
            setup::import_keys(&store_or_home(store)?, &file).map(|()| 0)
        }
        Command::Replicate {
            store,
            to,
            setup: true,
            name,
            ..
        } => replicate::setup(&store_or_home(store)?, name.as_deref(), &to).map(|()| 0),
        Command::Replicate {
            store,
            to,
            client,
            accept_new_host_key,
            verbose,
            bwlimit,
            ..
        } => replicate::run(
            &store_or_home(store)?,
            &replicate::Args {
                to,
                clients: client,
                accept_new_host_key,
                verbose,
                bwlimit,
            },
        ),
        Command::Snapshot { store, client, at } => {
            history::snapshot(&store_or_home(store)?, &client, at)
        }
        Command::Prune {
            store,
            dry_run,
            force,
            list,
            json,
            order,
            now,
        } => {
            let now = now.unwrap_or_else(Timestamp::now);
            let root = store_or_home(store)?;
            match (list, dry_run, force) {
                (true, _, _) => history::prune_list(&root, now, order, json),
                (_, true, _) => history::prune(&root, now, prune::Mode::DryRun),
                (_, _, true) => history::prune(&root, now, prune::Mode::Force),
                _ => history::prune(&root, now, prune::Mode::IfNeeded),
            }
        }
        Command::List {
            store,
            client,
            query,
            json,
        } => history::list(&store_or_home(store)?, &client, &query, json),
        Command::Status {
            store,
            client,
            json,
            check,
            warn,
            crit,
            prometheus,
        } => status::run(
            &store_or_home(store)?,
            &status::Args {
                client,
                json,
                check,
                warn,
                crit,
                prometheus: prometheus.map(|p| absolute(&p)).transpose()?,
            },
        ),
        Command::Report { store, output } => report::run(
            &store_or_home(store)?,
            &report::Args {
                output: absolute(&output)?,
            },
        ),
        Command::ShowConfig { store } => setup::show_config(&store_or_home(store)?),
        Command::Verify {
            store,
            client,
            scrub,
            json,
        } => verify::run(&store_or_home(store)?, client.as_deref(), scrub, json),
        Command::Diff {
            store,
            client,
            from,
            to,
            json,
        } => history::diff(
            &store_or_home(store)?,
            &client,
            from.as_deref(),
            to.as_deref(),
            json,
        ),
        Command::Snapshots {
            store,
            client,
            json,
        } => history::snapshots(&store_or_home(store)?, client.as_deref(), json),
    }
}

/// The role a key line's flags give (see [`keys::KeyRole`]).
fn key_role(replica: bool, read_only: bool, push_only: bool) -> keys::KeyRole {
    match (replica, read_only, push_only) {
        (true, _, _) => keys::KeyRole::Replica,
        (_, true, _) => keys::KeyRole::ReadOnly,
        (_, _, true) => keys::KeyRole::PushOnly { granted: false },
        _ => keys::KeyRole::Client,
    }
}

/// `--store`, or the running user's home.
pub(crate) fn store_or_home(store: Option<PathBuf>) -> Result<PathBuf> {
    let store = match store {
        Some(s) => s,
        None => crate::sys::user::current().home.ok_or_else(|| {
            Error::Usage("cannot tell the backup user's home: pass --store DIR".into())
        })?,
    };
    absolute(&store)
}

pub(crate) fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io("cannot resolve", path, e))
}

/// Commands that change a store run as its owner: the backup user for a
/// server's store, root for a local store that root's backups made.
pub(crate) fn run_as_owner(store: &Store) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(store.root())
        .map_err(|e| Error::io("cannot stat", store.root(), e))?
        .uid();
    if owner != rustix::process::geteuid().as_raw() {
        return Err(Error::Usage(format!(
            "run this as the owner of {} (uid {owner}), e.g. `su -s /bin/sh byteback -c 'byteback-server ...'`",
            store.root().display()
        )));
    }
    Ok(())
}

/// Admin commands create files the backup user must own: refuse root.
fn refuse_root() -> Result<()> {
    if rustix::process::geteuid().is_root() {
        return Err(Error::Usage(
            "run this as the backup user, not root (e.g. `su -s /bin/sh byteback -c 'byteback-server ...'`); as root, `byteback-server setup --user byteback` prepares that user".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `replicate --bwlimit` takes what `bwlimit` in the configs takes: a
    /// plain number is KiB per second, as rsync's; anything else is a
    /// usage error naming the forms.
    #[test]
    fn replicate_takes_a_bandwidth_limit_as_the_configs_do() {
        for (given, bytes) in [("500", 500 << 10), ("2M", 2 << 20), ("512k", 512 << 10)] {
            let cli =
                Cli::try_parse_from(["byteback-server", "replicate", "--bwlimit", given]).unwrap();
            match cli.command {
                Command::Replicate {
                    bwlimit: Some(limit),
                    ..
                } => {
                    assert_eq!(limit.as_str(), given);
                    assert_eq!(limit.bytes_per_second(), Some(bytes));
                }
                other => panic!("{other:?}"),
            }
        }
        let e =
            Cli::try_parse_from(["byteback-server", "replicate", "--bwlimit", "fast"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("KiB per second"), "{e}");
        assert!(
            Cli::try_parse_from(["byteback-server", "replicate", "--setup", "--bwlimit", "5"])
                .is_err()
        );
    }
}

/// A quota as `set-quota` takes it: bytes, or none.
#[derive(Debug, Clone, Copy)]
struct QuotaSetting(Option<u64>);

fn parse_quota(text: &str) -> std::result::Result<u64, String> {
    crate::store::quota::parse_size(text).map_err(|e| e.to_string())
}

fn parse_quota_or_none(text: &str) -> std::result::Result<QuotaSetting, String> {
    match text {
        "none" => Ok(QuotaSetting(None)),
        _ => parse_quota(text).map(|b| QuotaSetting(Some(b))),
    }
}
