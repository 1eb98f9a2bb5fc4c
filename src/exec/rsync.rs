//! rsync: the argv of a backup, and what its exit status means.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::priority::Priority;

/// What an rsync (or ssh) exit status means for the backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything transferred.
    Ok,
    /// Files vanished while being sent (exit 24): normal on a live system.
    Vanished,
    /// Some files could not be transferred (exit 23); a retry may cure it,
    /// and if not, the snapshot is kept and marked partial.
    SomeFilesFailed,
    /// The network, a timeout, the protocol or the server's disk: a later
    /// attempt, resuming from what was sent, can cure it.
    Retryable,
    /// Usage, configuration or permissions: retrying would not help.
    Fatal,
}

impl Outcome {
    /// Classifies rsync's exit status (`None`: killed by a signal).
    pub fn of_exit(code: Option<i32>) -> Outcome {
        match code {
            Some(0) => Outcome::Ok,
            Some(24) => Outcome::Vanished,
            Some(23) => Outcome::SomeFilesFailed,
            // 10 socket I/O, 11 file I/O (e.g. server disk full), 12 protocol
            // data stream, 20 signal, 21 waitpid, 22 memory, 30 timeout,
            // 35 daemon timeout, 255 ssh (connection failed or dropped).
            Some(10 | 11 | 12 | 20 | 21 | 22 | 30 | 35 | 255) => Outcome::Retryable,
            // Killed by a signal: as interrupted as it gets.
            None => Outcome::Retryable,
            // 1 syntax/usage, 2 protocol incompatibility, 3 selecting files,
            // 4 unsupported action, 5 starting the client-server protocol
            // (here: the server refused the command), 6 log file, 13 program
            // diagnostics, 14 IPC, 25 --max-delete, anything else.
            Some(_) => Outcome::Fatal,
        }
    }

    /// Whether the transfer counts as a complete backup.
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Ok | Outcome::Vanished)
    }
}

/// What one or more rsync runs moved, from rsync's `--stats` block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Traffic {
    /// Regular files sent (new or changed).
    pub files: u64,
    /// The size of those files.
    pub bytes: u64,
    /// Bytes that went over the wire (after rsync's delta and compression).
    pub sent: u64,
}

impl Traffic {
    /// Reads one line of rsync's output: whether it belongs to the
    /// `--stats` block (which starts at `Number of files:`), adding its
    /// figure if it is one of ours.
    pub fn take_stats_line(&mut self, line: &str, in_stats: &mut bool) -> bool {
        if line.starts_with("Number of files:") {
            *in_stats = true;
        }
        if !*in_stats {
            return false;
        }
        let figure = |rest: &str| -> u64 {
            // rsync groups digits by locale ("1,234" or "1.234").
            let digits: String = rest
                .trim_start()
                .split(' ')
                .next()
                .unwrap_or("")
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            digits.parse().unwrap_or(0)
        };
        if let Some(rest) = line.strip_prefix("Number of regular files transferred:") {
            self.files += figure(rest);
        } else if let Some(rest) = line.strip_prefix("Total transferred file size:") {
            self.bytes += figure(rest);
        } else if let Some(rest) = line.strip_prefix("Total bytes sent:") {
            self.sent += figure(rest);
        }
        true
    }

    /// Adds another run's figures (a retried backup's attempts).
    pub fn add(&mut self, other: Traffic) {
        self.files += other.files;
        self.bytes += other.bytes;
        self.sent += other.sent;
    }
}

/// rsync's human description of its exit codes, for messages.
pub fn describe_exit(code: Option<i32>) -> String {
    let what = match code {
        None => return "rsync was killed by a signal".into(),
        Some(1) => "syntax or usage error",
        Some(2) => "protocol incompatibility",
        Some(3) => "errors selecting input/output files",
        Some(4) => "requested action not supported",
        Some(5) => "error starting client-server protocol (did the server refuse?)",
        Some(10) => "error in socket I/O",
        Some(11) => "error in file I/O (is the server's disk full?)",
        Some(12) => "error in rsync protocol data stream (connection lost?)",
        Some(20) => "received a signal",
        Some(23) => "some files could not be transferred",
        Some(24) => "some files vanished before they could be transferred",
        Some(30) => "timeout in data send/receive",
        Some(35) => "timeout waiting for daemon connection",
        Some(255) => "ssh connection failed",
        Some(_) => "unexpected error",
    };
    format!("rsync exit {}: {what}", code.unwrap_or(-1))
}

/// Everything that decides one backup transfer.
#[derive(Debug, Clone)]
pub struct BackupTransfer {
    /// Program to run (normally `rsync`).
    pub rsync: PathBuf,
    /// Where the files go.
    pub to: TransferTo,
    /// Absolute paths to back up.
    pub sources: Vec<PathBuf>,
    /// rsync exclude patterns.
    pub excludes: Vec<String>,
    /// Seconds without I/O before rsync gives up.
    pub io_timeout_secs: u64,
    /// List every file as it goes.
    pub verbose: bool,
    /// Show rsync's own one-line progress (bytes, percent, rate, ETA): for a terminal only.
    pub progress: bool,
    /// Settings for slow or shared links.
    pub throttle: Throttle,
    /// What is sent: everything, or the paths on rsync's standard input.
    pub selection: Selection,
    /// Keep holes (`--sparse`): the receiver scans every byte it writes for
    /// runs of zeros, so only the files that have holes are sent with it
    /// (see [`crate::client::backup`]), in a run of their own.
    pub sparse: bool,
}

/// Which of the sources' files one backup rsync sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Everything under the sources: `current` mirrors them.
    All,
    /// Index mode: only the paths rsync reads on its standard input (NUL
    /// ended, relative to `/`, the only source), which the change index
    /// found changed; see [`crate::client::index`].
    /// `server_deletes_gone`: the server deleted what vanished itself
    /// (protocol 3), so rsync is not given vanished paths nor
    /// `--delete-missing-args`, and names `incremental/` as its destination.
    Changed { server_deletes_gone: bool },
    /// Only the paths on standard input, compared as a full pass compares
    /// them (size and mtime) and deleting nothing: a full pass's files with
    /// holes, sent in a `--sparse` run of their own before the run of
    /// [`Selection::All`] without it, which then finds them up to date.
    Listed,
}

/// How gently a backup uses the link and the machine (client config
/// `bwlimit`, `compress`, `nice`, `ionice`).
#[derive(Debug, Clone, Default)]
pub struct Throttle {
    /// rsync's `--bwlimit` value, as the config wrote it (checked there).
    pub bwlimit: Option<String>,
    /// Compress file data on the wire (remote transfers only).
    pub compress: bool,
    /// CPU and I/O priority of the rsync process (and of the ssh or local
    /// receiver it starts).
    pub priority: Priority,
}

/// What a backup transfer is, as the client states it on the wire: by the
/// destination it names (see `protocol::parse`, which reads it back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferMode {
    /// A whole rsync pass (`… . current/`): `current` mirrors the source.
    Full,
    /// Only the paths the change index found, into a `current` readied by
    /// `byteback incremental` (`… . incremental/`; from clients before
    /// protocol 3, a receiver with `--delete-missing-args`).
    Incremental,
}

impl TransferMode {
    /// The destination the client names for this mode (the receiver runs
    /// in `current` whatever it is).
    pub fn destination(self) -> &'static str {
        match self {
            TransferMode::Full => "current/",
            TransferMode::Incremental => "incremental/",
        }
    }
}

/// The receiving end of a backup transfer.
#[derive(Debug, Clone)]
pub enum TransferTo {
    /// A byteback server: `current` of this client, over ssh.
    Remote {
        /// The `--rsh` string (see [`super::ssh::Ssh::rsh_string`]).
        rsh: String,
        /// `user@host` of the server.
        remote: String,
    },
    /// A store on this machine.
    Local {
        /// The client's `current` directory.
        current: PathBuf,
        /// Whether files may be updated in place (btrfs: yes; plain
        /// directories, whose files may be hard links into snapshots: no).
        inplace: bool,
        /// `--link-dest` directories, relative to `current`.
        link_dests: Vec<String>,
        /// Where rsync logs what it changes (`--log-file`), for the
        /// snapshot's change log, and in what format (with the transfer's
        /// token: [`crate::changes::LogToken::format`]).
        log_file: PathBuf,
        log_format: String,
    },
}

impl BackupTransfer {
    /// The transfer the argv tests read: `/` to `bb@host` over plain `ssh`,
    /// everything else default, of `selection` and `sparse`.
    #[cfg(test)]
    pub(crate) fn to_test_host(selection: Selection, sparse: bool) -> BackupTransfer {
        BackupTransfer {
            rsync: "rsync".into(),
            to: TransferTo::Remote {
                rsh: "ssh".into(),
                remote: "bb@host".into(),
            },
            sources: vec!["/".into()],
            excludes: vec![],
            io_timeout_secs: 300,
            verbose: false,
            progress: false,
            throttle: Throttle::default(),
            selection,
            sparse,
        }
    }
    /// The rsync to run, at the configured priority.
    pub fn command(&self) -> super::Cmd {
        let priority = self.throttle.priority;
        super::Cmd::new(&self.rsync)
            .args(self.args())
            .configure(|c| priority.apply(c))
    }

    /// The rsync argv (without the program).
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = [
            // Recursion, symlinks, permissions, times, group, owner, devices
            // and special files: everything that makes a faithful copy.
            "--archive",
            // Owners by number: the server has none of the client's users.
            "--numeric-ids",
            // Keep hard links as hard links instead of duplicating data.
            "--hard-links",
            "--acls",
            "--xattrs",
            // Keep full paths, so several sources land side by side.
            "--relative",
            // Compare modification times to the nanosecond: a file
            // rewritten with the same size within the same second as its
            // backed-up version is sent again, not silently skipped.
            "--modify-window=-1",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        // Store holes as holes (VM images, databases): only in the run of
        // the files that have them, since the receiver then looks for zeros
        // in every byte it writes — except into a plain store, which writes
        // every file it gets whole (see `server_args`).
        if self.sparse || matches!(self.to, TransferTo::Local { inplace: false, .. }) {
            args.push("--sparse".into());
        }
        match self.selection {
            Selection::All => {
                // `current` mirrors the source: deleted and excluded files
                // go, while the snapshots keep history.
                args.extend(["--delete", "--delete-excluded"].map(OsString::from));
            }
            Selection::Changed { .. } | Selection::Listed => args.extend(
                [
                    // Exactly the listed paths (a directory without its
                    // contents: no recursion), read from standard input.
                    "--files-from=-",
                    "--from0",
                    // A directory replaced by a file goes, contents and all.
                    "--force",
                ]
                .map(OsString::from),
            ),
        }
        if let Selection::Changed {
            server_deletes_gone,
        } = self.selection
        {
            // Every listed file is sent, even when size and mtime match:
            // its ctime or inode said it changed (an mtime put back by
            // `touch -r`, `cp -p`, tar).
            args.push("--ignore-times".into());
            if !server_deletes_gone {
                // A server before protocol 3: a listed path that vanished
                // is deleted by rsync (which some rsync builds refuse with
                // --files-from: see protocol::PROTOCOL_VERSION).
                args.push("--delete-missing-args".into());
            }
        }
        // Update files in place: unchanged blocks stay shared with the
        // snapshots on btrfs, and an interrupted transfer resumes. (A
        // server with plain directories drops it on its side.)
        if !matches!(self.to, TransferTo::Local { inplace: false, .. }) {
            args.push("--inplace".into());
        } else {
            // A plain `current` starts empty: what is there was made by this
            // transfer, possibly as a hard link into a snapshot, and is
            // never touched again (see `server_args`).
            args.push("--ignore-existing".into());
        }
        // The figures of the summary and the state file (shown only with
        // --verbose; see `Traffic::take_stats_line`).
        args.push("--stats".into());
        args.push(format!("--timeout={}", self.io_timeout_secs).into());
        // Both ends pace themselves; rsync passes the limit (in KiB) on to
        // the server's command line, whose allow-list accepts it.
        if let Some(limit) = &self.throttle.bwlimit {
            args.push(format!("--bwlimit={limit}").into());
        }
        // rsync (3.2+ on both ends) negotiates the strongest algorithm both
        // have, zstd where built in; the server sees `z` in its option
        // cluster. Pointless within one machine, so only to a server.
        if self.throttle.compress && matches!(self.to, TransferTo::Remote { .. }) {
            args.push("--compress".into());
        }
        if self.verbose {
            args.push("--itemize-changes".into());
        } else if self.progress {
            args.push("--info=progress2".into());
        }
        match &self.to {
            TransferTo::Remote { rsh, .. } => {
                args.push("--rsh".into());
                args.push(rsh.into());
            }
            TransferTo::Local {
                link_dests,
                log_file,
                log_format,
                ..
            } => {
                args.extend(link_dests.iter().map(|d| format!("--link-dest={d}").into()));
                let mut a = OsString::from("--log-file=");
                a.push(log_file);
                args.push(a);
                args.push(format!("--log-file-format={log_format}").into());
            }
        }
        for pattern in &self.excludes {
            let mut a = OsString::from("--exclude=");
            a.push(pattern);
            args.push(a);
        }
        // `--` so no source can be taken for an option.
        args.push("--".into());
        for source in &self.sources {
            args.push(source.clone().into_os_string());
        }
        match &self.to {
            TransferTo::Remote { remote, .. } => {
                let mode = match self.selection {
                    Selection::Changed {
                        server_deletes_gone: true,
                    } => TransferMode::Incremental,
                    Selection::Changed { .. } | Selection::All | Selection::Listed => {
                        TransferMode::Full
                    }
                };
                args.push(format!("{remote}:{}", mode.destination()).into())
            }
            TransferTo::Local { current, .. } => {
                let mut dest = current.clone().into_os_string();
                dest.push("/");
                args.push(dest);
            }
        }
        args
    }
}

/// One snapshot of a primary's store sent to a replica (`byteback-server
/// replicate`): into the replica's `current` of that client, as a backup
/// would be, but read through `--fake-super` so the replica receives the
/// client's own owners, modes, devices and ACLs rather than the backup
/// user's files that hold them.
#[derive(Debug, Clone)]
pub struct ReplicaTransfer {
    /// Program to run (normally `rsync`).
    pub rsync: PathBuf,
    /// The snapshot's directory in the primary's store.
    pub snapshot_dir: PathBuf,
    /// The client's name (the primary's; the replica maps it).
    pub client: String,
    /// The `--rsh` string (see [`super::ssh::Ssh::rsh_string`]).
    pub rsh: String,
    /// `user@host` of the replica.
    pub remote: String,
    /// Seconds without I/O before rsync gives up.
    pub io_timeout_secs: u64,
    /// rsync's `--bwlimit`, if any (checked by the caller).
    pub bwlimit: Option<String>,
    /// List every file as it goes.
    pub verbose: bool,
}

impl ReplicaTransfer {
    /// The rsync argv (without the program).
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = [
            // Everything a backup keeps, as a backup sends it.
            "--archive",
            "--hard-links",
            "--acls",
            "--xattrs",
            "--numeric-ids",
            "--sparse",
            // The replica's `current` becomes this snapshot exactly; its
            // earlier snapshots keep what went.
            "--delete",
            // Read the snapshot as rsync --fake-super wrote it: ownership,
            // modes, devices and ACLs from the `user.rsync.*` xattrs, and
            // those xattrs not sent as themselves. (The replica's receiver
            // stores them the same way.)
            "--fake-super",
            // On btrfs, unchanged blocks stay shared with the replica's
            // snapshots and an interrupted transfer resumes; a plain
            // replica drops it and links from its newest snapshot instead.
            "--inplace",
            // Nanosecond times, as the backups compared them.
            "--modify-window=-1",
            // The figures of the summary.
            "--stats",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        args.push(format!("--timeout={}", self.io_timeout_secs).into());
        if let Some(limit) = &self.bwlimit {
            args.push(format!("--bwlimit={limit}").into());
        }
        if self.verbose {
            args.push("--itemize-changes".into());
        }
        args.push("--rsh".into());
        args.push(self.rsh.clone().into());
        args.push("--".into());
        // The trailing '/' sends the snapshot's contents, not the directory.
        let mut source = self.snapshot_dir.clone().into_os_string();
        source.push("/");
        args.push(source);
        args.push(format!("{}:{}/current/", self.remote, self.client).into());
        args
    }
}

/// Where a restore reads from.
#[derive(Debug, Clone)]
pub enum RestoreFrom {
    /// A byteback server, over ssh.
    Remote {
        /// The `--rsh` string (see [`super::ssh::Ssh::rsh_string`]).
        rsh: String,
        /// `user@host` of the server.
        remote: String,
    },
    /// A store on this machine: the client's directory in it.
    Local { client_dir: PathBuf },
}

/// Everything that decides one restore transfer.
#[derive(Debug, Clone)]
pub struct RestoreTransfer {
    pub from: RestoreFrom,
    /// `<snapshot or current>/<path inside>`, each.
    pub paths: Vec<Vec<u8>>,
    /// Where they are recreated (with their full path below it).
    pub into: PathBuf,
    /// Replace files that exist there.
    pub overwrite: bool,
}

impl RestoreTransfer {
    /// The rsync argv (without the program).
    pub fn args(&self) -> Vec<OsString> {
        use std::os::unix::ffi::{OsStrExt, OsStringExt};
        let mut args: Vec<OsString> = [
            "--archive",
            "--hard-links",
            "--acls",
            "--xattrs",
            "--numeric-ids",
            "--sparse",
            "--relative",
            // Names arrive decoded, not as the encoded words we asked for.
            "--trust-sender",
            // Nanosecond times, as the backup compared them.
            "--modify-window=-1",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        if !self.overwrite {
            args.push("--ignore-existing".into());
        }
        match &self.from {
            RestoreFrom::Remote { rsh, remote } => {
                args.extend(["--rsh".into(), rsh.into(), "--".into()]);
                for (i, p) in self.paths.iter().enumerate() {
                    let word = crate::quote::encode_arg(p);
                    // Further paths of the same remote source start with ':'.
                    args.push(match i {
                        0 => format!("{remote}:{word}").into(),
                        _ => format!(":{word}").into(),
                    });
                }
            }
            RestoreFrom::Local { client_dir } => {
                args.push("--".into());
                // `/./` marks where the path rsync recreates under DIR begins.
                for p in &self.paths {
                    let mut arg = client_dir.as_os_str().as_bytes().to_vec();
                    arg.extend_from_slice(b"/./");
                    arg.extend_from_slice(p);
                    args.push(OsString::from_vec(arg));
                }
            }
        }
        let mut dest = self.into.as_os_str().to_owned().into_vec();
        dest.push(b'/');
        args.push(OsString::from_vec(dest));
        args
    }
}

/// Which side of a server-side rsync runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerRole {
    /// A backup: rsync's receiver writes into the client's `current`.
    Receiver {
        /// btrfs: `current` may be updated in place. Plain: it must not be,
        /// since its files may be hard links into snapshots.
        inplace: bool,
    },
    /// A restore: rsync's sender reads the client's snapshots.
    Sender,
}

/// The server's own limits and settings, which always win over the client's.
#[derive(Debug, Clone)]
pub struct ServerSide {
    pub role: ServerRole,
    /// Seconds without I/O before rsync gives up.
    pub io_timeout_secs: u64,
    /// `--confine-root` where the installed rsync has it: the client's directory.
    pub confine_root: Option<PathBuf>,
    /// A receiver keeps holes (`--sparse`): the server's own decision,
    /// taken on the client's ask ([`asks_sparse`]), whose own `S` and
    /// `--sparse` are dropped.
    pub sparse: bool,
}

/// Whether a client's (already allowed) options ask for a receiver that
/// keeps holes: `--sparse`, or `S` among the letters of an option cluster
/// (before the `e` of rsync's capability string). That is how an rsync run
/// with `--sparse` says it, and the only form of the ask.
pub fn asks_sparse(client_options: &[String]) -> bool {
    client_options
        .iter()
        .any(|o| o == "--sparse" || cluster_letters(o).is_some_and(|(l, _)| l.contains('S')))
}

/// An option cluster's letters and the capability string after them (`e…`,
/// or empty); `None` for a long option, `-@N` and `-BN` (whose rest is a
/// value, not letters).
fn cluster_letters(word: &str) -> Option<(&str, &str)> {
    let cluster = word.strip_prefix('-')?;
    if cluster.starts_with(['-', '@', 'B']) {
        return None;
    }
    Some(match cluster.find('e') {
        Some(at) => cluster.split_at(at),
        None => (cluster, ""),
    })
}

/// A client's option without its ask for `--sparse` (see [`asks_sparse`]);
/// `None` if nothing is left of it.
fn without_sparse(word: &str) -> Option<String> {
    if word == "--sparse" {
        return None;
    }
    match cluster_letters(word) {
        Some((letters, caps)) if letters.contains('S') => {
            let letters: String = letters.chars().filter(|&c| c != 'S').collect();
            (!letters.is_empty() || !caps.is_empty()).then(|| format!("-{letters}{caps}"))
        }
        _ => Some(word.to_owned()),
    }
}

/// Receiver-side xattr filter rules that keep rsync's own ACL xattrs out of
/// its xattr clean-up. With `--fake-super` the receiver keeps a file's ACLs
/// in `user.rsync.%aacl` (access) and `user.rsync.%dacl` (default). When it
/// updates an existing file (`--inplace`: every incremental, and a full
/// pass's changed files) rsync (3.2.7 to 3.5 at least, `set_file_attrs`)
/// first reads the file's ACL from that xattr, then removes every xattr the
/// sender did not list — these included, only `%stat` is spared — and then
/// compares the sender's ACL with the one it read *before* the removal:
/// equal, so it writes nothing, and the ACL is silently lost. Excluded from
/// the xattr pass, they are never removed; the ACL code writes them
/// directly, so added, changed and removed ACLs still arrive. They come
/// after the client's options, and the client can send no `--filter`
/// (`protocol::parse`); command-line rules precede any the sender sends in
/// the stream, and rsync's first matching rule wins.
pub const ACL_XATTR_GUARDS: [&str; 2] = [
    "--filter=-x user.rsync.%aacl",
    "--filter=-x user.rsync.%dacl",
];

/// rsync's default allocation limit, restored whatever the client asked for.
const MAX_ALLOC: &str = "--max-alloc=1G";

/// The argv of a server-side rsync (without the program), from the
/// client's already allowed `options`. The server's own settings come last,
/// where rsync's last-one-wins parsing makes them stick, and the client's
/// copies of them are dropped.
pub fn server_args(client_options: &[String], side: &ServerSide) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--server".into()];
    if side.role == ServerRole::Sender {
        args.push("--sender".into());
    }
    let overridden = |o: &String| {
        o.starts_with("--timeout=")
            || o.starts_with("--max-alloc=")
            || (o == "--inplace" && side.role == (ServerRole::Receiver { inplace: false }))
    };
    let receiver = matches!(side.role, ServerRole::Receiver { .. });
    args.extend(
        client_options
            .iter()
            .filter(|o| !overridden(o))
            // A receiver's sparseness is the server's word (below); a
            // sender writes nothing, and takes the options as they came.
            .filter_map(|o| {
                if receiver {
                    without_sparse(o)
                } else {
                    Some(o.clone())
                }
            })
            .map(OsString::from),
    );
    // Ownership, modes, devices and specials live in xattrs of files the
    // unprivileged user owns (and are presented from them on a restore).
    // No --munge-links: with --fake-super on Linux, rsync stores a symlink
    // as a regular file holding its target, so nothing is ever followed.
    args.push("--fake-super".into());
    if receiver {
        args.extend(ACL_XATTR_GUARDS.map(OsString::from));
        if side.sparse {
            args.push("--sparse".into());
        }
    }
    if side.role == (ServerRole::Receiver { inplace: false }) {
        // A plain `current` starts empty, so anything already there was
        // made by this very transfer — possibly a hard link into a snapshot.
        // Never touch it again, not even its metadata.
        args.push("--ignore-existing".into());
    }
    args.push(format!("--timeout={}", side.io_timeout_secs).into());
    args.push(MAX_ALLOC.into());
    if let Some(root) = &side.confine_root {
        let mut a = OsString::from("--confine-root=");
        a.push(root);
        args.push(a);
    }
    args
}

/// The whole argv of the server's backup receiver (without the program):
/// [`server_args`], the server's own `--link-dest`s (relative to `current`,
/// from the store's plan, never from the client), and `. .` — the receiver
/// runs in the client's `current`, whatever destination the client named.
pub fn receiver_argv(
    client_options: &[String],
    side: &ServerSide,
    link_dests: &[String],
) -> Vec<OsString> {
    receiver_argv_logged(client_options, side, link_dests, None)
}

/// [`receiver_argv`], with the receiver writing its itemized log of what
/// it changed to `log_file` (`--log-file`, in `log_format`), a file the
/// server readied outside `current` and reads after the transfer (see
/// [`crate::changes`]). rsync opens it before it confines itself; only
/// the server sets these options (the protocol refuses them from a client).
pub fn receiver_argv_logged(
    client_options: &[String],
    side: &ServerSide,
    link_dests: &[String],
    log: Option<(&Path, &str)>,
) -> Vec<OsString> {
    let mut args = server_args(client_options, side);
    if let Some((file, format)) = log {
        let mut a = OsString::from("--log-file=");
        a.push(file);
        args.push(a);
        args.push(format!("--log-file-format={format}").into());
    }
    args.extend(link_dests.iter().map(|d| format!("--link-dest={d}").into()));
    args.push(".".into());
    args.push(".".into());
    args
}

/// The whole argv of the server's restore sender (without the program):
/// [`server_args`], `.`, then the paths to send, relative to the client's
/// directory, each already checked by
/// [`crate::lifecycle::ClientBackups::restore_source`] (so none starts
/// with `-`, none is absolute, none has a `..`).
pub fn sender_argv(
    client_options: &[String],
    side: &ServerSide,
    paths: &[Vec<u8>],
) -> Vec<OsString> {
    use std::os::unix::ffi::OsStrExt;
    let mut args = server_args(client_options, side);
    args.push(".".into());
    args.extend(
        paths
            .iter()
            .map(|p| std::ffi::OsStr::from_bytes(p).to_owned()),
    );
    args
}

/// The exclude pattern that leaves out everything below `mount_point` but
/// keeps the directory itself, anchored at the transfer root.
pub fn exclude_contents_of(mount_point: &Path) -> String {
    let mut pattern = String::new();
    for c in mount_point.to_string_lossy().chars() {
        // Wildcards in a pattern make rsync honour backslash escapes.
        if matches!(c, '*' | '?' | '[' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    let trimmed = pattern.trim_end_matches('/');
    format!("{trimmed}/*")
}

/// Names of files rsync reported as failed, from its stderr lines.
pub fn failed_file(line: &str) -> Option<&str> {
    // e.g. rsync: [sender] send_files failed to open "/x/y": Permission denied (13)
    //      rsync: [sender] readlink_stat("/x") failed: ...
    if !line.starts_with("rsync: ") && !line.starts_with("rsync error: ") {
        return None;
    }
    let start = line.find('"')? + 1;
    let end = start + line[start..].rfind('"')?;
    Some(&line[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_table() {
        use Outcome::*;
        let table = [
            (Some(0), Ok),
            (Some(24), Vanished),
            (Some(23), SomeFilesFailed),
            (Some(10), Retryable),
            (Some(11), Retryable),
            (Some(12), Retryable),
            (Some(20), Retryable),
            (Some(21), Retryable),
            (Some(22), Retryable),
            (Some(30), Retryable),
            (Some(35), Retryable),
            (Some(255), Retryable),
            (None, Retryable),
            (Some(1), Fatal),
            (Some(2), Fatal),
            (Some(3), Fatal),
            (Some(5), Fatal),
            (Some(13), Fatal),
            (Some(25), Fatal),
        ];
        for (code, want) in table {
            assert_eq!(Outcome::of_exit(code), want, "{code:?}");
        }
        assert!(Ok.is_success() && Vanished.is_success() && !SomeFilesFailed.is_success());
        assert!(describe_exit(Some(11)).contains("disk full"));
    }

    #[test]
    fn argv() {
        let t = BackupTransfer {
            rsync: "rsync".into(),
            to: TransferTo::Remote {
                rsh: "ssh -p 2222".into(),
                remote: "bb@host".into(),
            },
            sources: vec!["/".into(), "/-weird".into()],
            excludes: vec!["/proc/*".into()],
            io_timeout_secs: 300,
            verbose: false,
            progress: false,
            throttle: Throttle::default(),
            selection: Selection::All,
            sparse: false,
        };
        let args: Vec<String> = t
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let tail = &args[args.len() - 8..];
        let want = [
            "--timeout=300",
            "--rsh",
            "ssh -p 2222",
            "--exclude=/proc/*",
            "--",
            "/",
            "/-weird",
            "bb@host:current/",
        ];
        assert_eq!(tail, want);
        assert!(
            args.contains(&"--inplace".to_string())
                && args.contains(&"--delete-excluded".to_string())
        );
    }

    #[test]
    fn replica_argv() {
        let t = ReplicaTransfer {
            rsync: "rsync".into(),
            snapshot_dir: "/srv/bb/web1/2026-11-26T03:00:00Z".into(),
            client: "web1".into(),
            rsh: "ssh -p 2222".into(),
            remote: "bb@replica".into(),
            io_timeout_secs: 600,
            bwlimit: Some("2m".into()),
            verbose: false,
        };
        let args: Vec<String> = t
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for flag in [
            "--archive",
            "--hard-links",
            "--acls",
            "--xattrs",
            "--numeric-ids",
            "--sparse",
            "--delete",
            "--fake-super",
            "--inplace",
            "--bwlimit=2m",
        ] {
            assert!(args.contains(&flag.to_string()), "{flag}: {args:?}");
        }
        let tail = &args[args.len() - 5..];
        assert_eq!(
            tail,
            [
                "--rsh",
                "ssh -p 2222",
                "--",
                "/srv/bb/web1/2026-11-26T03:00:00Z/",
                "bb@replica:web1/current/"
            ]
        );
        // What a replica's key accepts of it: `server::boundary::argv`.
    }

    #[test]
    fn index_mode_argv_lists_paths_and_never_deletes_by_walking() {
        let t = BackupTransfer::to_test_host(
            Selection::Changed {
                server_deletes_gone: false,
            },
            true,
        );
        let args: Vec<String> = t
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for want in [
            "--archive",
            "--hard-links",
            "--acls",
            "--xattrs",
            "--numeric-ids",
            "--sparse",
            "--relative",
            "--modify-window=-1",
            "--inplace",
            "--files-from=-",
            "--from0",
            "--delete-missing-args",
            "--force",
            "--ignore-times",
        ] {
            assert!(args.contains(&want.to_string()), "{want}: {args:?}");
        }
        assert!(!args.iter().any(|a| a == "--delete"
            || a == "--delete-excluded"
            || a == "-r"
            || a == "--recursive"));
        assert_eq!(&args[args.len() - 3..], ["--", "/", "bb@host:current/"]);
        // A protocol 3 server deletes what vanished itself; the client
        // states the mode by its destination.
        let t = BackupTransfer {
            selection: Selection::Changed {
                server_deletes_gone: true,
            },
            ..t
        };
        let args: Vec<String> = t
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            !args.iter().any(|a| a == "--delete-missing-args"),
            "{args:?}"
        );
        assert_eq!(&args[args.len() - 3..], ["--", "/", "bb@host:incremental/"]);
        // That the server reads it as incremental: `server::boundary::argv`.
    }

    #[test]
    fn local_plain_argv_links_and_never_writes_in_place() {
        let t = BackupTransfer {
            rsync: "rsync".into(),
            to: TransferTo::Local {
                current: "/var/backups/byteback/host/current".into(),
                inplace: false,
                link_dests: vec!["../2026-11-26T03:00:00Z".into()],
                log_file: "/var/backups/byteback/host/.changes-incoming".into(),
                log_format: "0123456789abcdef %i %n".into(),
            },
            sources: vec!["/etc".into()],
            excludes: vec![],
            io_timeout_secs: 60,
            verbose: false,
            progress: true,
            throttle: Throttle {
                bwlimit: Some("2M".into()),
                compress: true,
                ..Throttle::default()
            },
            selection: Selection::All,
            sparse: false,
        };
        let args: Vec<String> = t
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(!args.contains(&"--inplace".to_string()) && !args.contains(&"--rsh".to_string()));
        assert!(args.contains(&"--link-dest=../2026-11-26T03:00:00Z".to_string()));
        assert!(
            args.contains(&"--log-file=/var/backups/byteback/host/.changes-incoming".to_string())
        );
        assert!(args.contains(&"--info=progress2".to_string()));
        assert_eq!(args.last().unwrap(), "/var/backups/byteback/host/current/");
        // A local copy is paced, but never compressed.
        assert!(args.contains(&"--bwlimit=2M".to_string()));
        assert!(!args.contains(&"--compress".to_string()));
    }

    #[test]
    fn throttled_remote_argv() {
        let t = BackupTransfer {
            rsync: "rsync".into(),
            to: TransferTo::Remote {
                rsh: "ssh".into(),
                remote: "bb@host".into(),
            },
            sources: vec!["/".into()],
            excludes: vec![],
            io_timeout_secs: 300,
            verbose: false,
            progress: false,
            throttle: Throttle {
                bwlimit: Some("500".into()),
                compress: true,
                priority: Priority {
                    nice: Some(10),
                    io: None,
                },
            },
            selection: Selection::All,
            sparse: false,
        };
        let args: Vec<String> = t
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let at = args.iter().position(|a| a == "--timeout=300").unwrap();
        assert_eq!(args[at + 1..at + 3], ["--bwlimit=500", "--compress"]);
        // The priority is the process's, not an argument.
        assert_eq!(t.command().get_args().count(), args.len());
    }

    #[test]
    fn the_server_has_the_last_word() {
        let client: Vec<String> = [
            "-logDtpre.iLsfxCIvu",
            "--timeout=0",
            "--max-alloc=100G",
            "--inplace",
            "--delete",
        ]
        .map(String::from)
        .to_vec();
        let words = |side: &ServerSide| -> Vec<String> {
            server_args(&client, side)
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let btrfs = ServerSide {
            role: ServerRole::Receiver { inplace: true },
            io_timeout_secs: 600,
            confine_root: Some("/srv/store/host".into()),
            sparse: false,
        };
        assert_eq!(
            words(&btrfs),
            [
                "--server",
                "-logDtpre.iLsfxCIvu",
                "--inplace",
                "--delete",
                "--fake-super",
                "--filter=-x user.rsync.%aacl",
                "--filter=-x user.rsync.%dacl",
                "--timeout=600",
                "--max-alloc=1G",
                "--confine-root=/srv/store/host"
            ]
        );
        let plain = ServerSide {
            role: ServerRole::Receiver { inplace: false },
            confine_root: None,
            ..btrfs.clone()
        };
        assert_eq!(
            words(&plain),
            [
                "--server",
                "-logDtpre.iLsfxCIvu",
                "--delete",
                "--fake-super",
                "--filter=-x user.rsync.%aacl",
                "--filter=-x user.rsync.%dacl",
                "--ignore-existing",
                "--timeout=600",
                "--max-alloc=1G"
            ]
        );
        let sender = ServerSide {
            role: ServerRole::Sender,
            ..btrfs
        };
        let w = words(&sender);
        assert_eq!(&w[..2], ["--server", "--sender"]);
        // The sender reads the ACL xattrs to present the ACLs: no guard.
        assert!(!w.iter().any(|a| a.starts_with("--filter")), "{w:?}");
        assert!(
            !w.iter()
                .any(|a| a == "--timeout=0" || a == "--max-alloc=100G")
        );
        assert!(w.ends_with(&[
            "--timeout=600".into(),
            "--max-alloc=1G".into(),
            "--confine-root=/srv/store/host".into()
        ]));
    }

    /// A receiver keeps holes when the server says so, whatever the
    /// client's options: its `S` and `--sparse` are the ask, not the word.
    #[test]
    fn the_server_decides_a_receivers_sparseness() {
        let client: Vec<String> = [
            "-lHogDtpAXrRSe.iLsfxCIvu",
            "--sparse",
            "-S",
            "-@-1",
            "-B1024",
        ]
        .map(String::from)
        .to_vec();
        assert!(asks_sparse(&client));
        assert!(asks_sparse(&["--sparse".to_string()]));
        assert!(asks_sparse(&["-Se.iLsfxCIvu".to_string()]));
        // Not letters: a capability's flags, a long option, a value.
        for no in [
            "-lHogDtpAXrRe.iLsfxCIvuS",
            "--stats",
            "-@-1",
            "-B4096",
            "--info=S",
        ] {
            assert!(!asks_sparse(&[no.to_string()]), "{no}");
        }
        let words = |sparse: bool, role: ServerRole| -> Vec<String> {
            let side = ServerSide {
                role,
                io_timeout_secs: 600,
                confine_root: None,
                sparse,
            };
            server_args(&client, &side)
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let receiver = ServerRole::Receiver { inplace: true };
        let dense = words(false, receiver);
        assert_eq!(&dense[1..4], ["-lHogDtpAXrRe.iLsfxCIvu", "-@-1", "-B1024"]);
        assert!(!dense.iter().any(|w| w == "--sparse"), "{dense:?}");
        let sparse = words(true, receiver);
        assert_eq!(sparse.iter().filter(|w| *w == "--sparse").count(), 1);
        assert!(
            !sparse
                .iter()
                .any(|w| w.starts_with('-') && !w.starts_with("--") && w.contains('S'))
        );
        // A sender writes nothing: its options pass as they came.
        let sender = words(false, ServerRole::Sender);
        assert_eq!(
            &sender[2..5],
            ["-lHogDtpAXrRSe.iLsfxCIvu", "--sparse", "-S"]
        );
    }

    /// A full pass's files with holes go first, in a run of their own:
    /// listed, compared by size and mtime, nothing deleted, into `current/`.
    #[test]
    fn listed_sparse_run_argv() {
        let t = BackupTransfer::to_test_host(Selection::Listed, true);
        let args: Vec<String> = t
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for want in [
            "--sparse",
            "--files-from=-",
            "--from0",
            "--force",
            "--inplace",
        ] {
            assert!(args.contains(&want.to_string()), "{want}: {args:?}");
        }
        for never in [
            "--ignore-times",
            "--delete",
            "--delete-excluded",
            "--delete-missing-args",
        ] {
            assert!(!args.contains(&never.to_string()), "{never}: {args:?}");
        }
        assert_eq!(args.last().unwrap(), "bb@host:current/");
        // The rest of the files: no --sparse.
        let all = BackupTransfer {
            selection: Selection::All,
            sparse: false,
            ..t
        };
        assert!(!all.args().iter().any(|a| a == "--sparse"));
    }

    #[test]
    fn restore_argv() {
        let words = |t: &RestoreTransfer| -> Vec<String> {
            t.args()
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let remote = RestoreTransfer {
            from: RestoreFrom::Remote {
                rsh: "ssh -p 2222".into(),
                remote: "bb@host".into(),
            },
            paths: vec![
                b"2026-11-26T03:00:00Z/etc/a b".to_vec(),
                b"current/x".to_vec(),
            ],
            into: "/tmp/r".into(),
            overwrite: false,
        };
        let w = words(&remote);
        assert!(w.contains(&"--ignore-existing".to_string()));
        assert_eq!(
            &w[w.len() - 6..],
            [
                "--rsh",
                "ssh -p 2222",
                "--",
                "bb@host:2026-11-26T03%3A00%3A00Z/etc/a%20b",
                ":current/x",
                "/tmp/r/"
            ]
        );
        let local = RestoreTransfer {
            from: RestoreFrom::Local {
                client_dir: "/srv/store/host".into(),
            },
            overwrite: true,
            ..remote
        };
        let w = words(&local);
        assert!(!w.contains(&"--ignore-existing".to_string()));
        assert_eq!(
            &w[w.len() - 3..],
            [
                "/srv/store/host/./2026-11-26T03:00:00Z/etc/a b",
                "/srv/store/host/./current/x",
                "/tmp/r/"
            ]
        );
    }

    #[test]
    fn mount_excludes_escape_wildcards() {
        assert_eq!(exclude_contents_of(Path::new("/proc")), "/proc/*");
        assert_eq!(
            exclude_contents_of(Path::new("/mnt/a*b?[c]")),
            r"/mnt/a\*b\?\[c]/*"
        );
    }

    #[test]
    fn stats_block_figures() {
        let out = "file\n\nNumber of files: 3 (reg: 2, dir: 1)\nNumber of created files: 1\n\
            Number of regular files transferred: 1,234\nTotal file size: 10 bytes\n\
            Total transferred file size: 5.678.901 bytes\nTotal bytes sent: 106\n\
            Total bytes received: 19\n\nsent 106 bytes  received 19 bytes\n";
        let (mut t, mut in_stats) = (Traffic::default(), false);
        let shown: Vec<&str> = out
            .lines()
            .filter(|l| !t.take_stats_line(l, &mut in_stats))
            .collect();
        assert_eq!(shown, ["file", ""]);
        assert_eq!(
            t,
            Traffic {
                files: 1234,
                bytes: 5_678_901,
                sent: 106
            }
        );
    }

    #[test]
    fn failed_files_from_stderr() {
        assert_eq!(
            failed_file(
                r#"rsync: [sender] send_files failed to open "/x/y z": Permission denied (13)"#
            ),
            Some("/x/y z")
        );
        assert_eq!(failed_file("sent 10 bytes"), None);
    }
}
