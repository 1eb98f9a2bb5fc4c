//! A backup's attempts, against any [`Backups`]: each pings, walks the
//! sources, readies an incremental transfer if the change index may be
//! used, transfers (what changed, or a full pass), and asks for the
//! snapshot. A failure a later attempt can cure (a dropped connection, a
//! lock held, the same transient rsync error) is tried again after a pause,
//! resuming from what was already sent; anything else ends the backup with
//! the reason.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::client::backups::Backups;
use crate::client::index;
use crate::client::state::Recorder;
use crate::client::transfer::{self, Transferred};
use crate::error::{Error, Result};
use crate::exec::rsync::{BackupTransfer, Outcome, Throttle, Traffic, TransferTo, describe_exit};
use crate::protocol::{PingReply, ReplaceList, SERVER_DELETES_GONE, TYPED_FULL_PASS, TransferMode};
use crate::report;

use super::index_policy::IndexSettings;
use super::summary::{Pass, partial_error};

/// How the backup's rsync runs, wherever it sends to.
#[derive(Debug, Clone)]
pub struct Sending {
    /// Absolute paths to back up.
    pub sources: Vec<PathBuf>,
    /// rsync exclude patterns.
    pub excludes: Vec<String>,
    /// Seconds without I/O before rsync gives up.
    pub io_timeout_secs: u64,
    /// List every file as it goes.
    pub verbose: bool,
    /// rsync's own progress line (a terminal).
    pub progress: bool,
    pub throttle: Throttle,
}

impl Sending {
    /// A full pass to `to`.
    fn full(&self, to: TransferTo) -> BackupTransfer {
        BackupTransfer {
            rsync: PathBuf::from("rsync"),
            to,
            sources: self.sources.clone(),
            excludes: self.excludes.clone(),
            io_timeout_secs: self.io_timeout_secs,
            verbose: self.verbose,
            progress: self.progress,
            throttle: self.throttle.clone(),
            files_from: false,
            server_deletes_gone: false,
        }
    }

    /// Only the paths on rsync's standard input (relative to `/`); with
    /// `store_deletes`, the store deleted what vanished when it readied
    /// `current`.
    fn listed(&self, to: TransferTo, store_deletes: bool) -> BackupTransfer {
        BackupTransfer {
            sources: vec![PathBuf::from("/")],
            files_from: true,
            server_deletes_gone: store_deletes,
            ..self.full(to)
        }
    }
}

/// One backup: what every attempt shares.
pub struct Backup<'a> {
    pub backups: &'a dyn Backups,
    pub sending: Sending,
    pub index: IndexSettings,
    /// `retry_attempts` (at least 1).
    pub attempts: u32,
    /// `retry_pause`.
    pub pause: crate::config::Duration,
}

/// What the attempts did so far: for the summary, and for the next
/// attempt's decisions.
#[derive(Debug, Default)]
pub struct Progress {
    /// Attempts made (0 while the pre-backup hooks run).
    pub made: u32,
    /// What rsync sent, over all attempts.
    pub traffic: Traffic,
    /// How the last attempt transferred.
    pub pass: Pass,
    /// The last attempt's snapshot request, if its answer was lost.
    unanswered: Option<Unanswered>,
    /// The files the last attempt's rsync could not send (sorted).
    failed_before: Option<Vec<String>>,
}

/// A snapshot request whose answer was lost with the connection.
#[derive(Debug)]
struct Unanswered {
    /// The client's newest snapshot before the request.
    newest_before: Option<String>,
}

/// What the walk before a transfer found, and the index it is compared with.
struct Walk {
    walked: Option<Vec<index::Entry>>,
    old: Option<index::Stored>,
}

/// After a failed attempt: try again, or stop with this error.
#[derive(Debug)]
enum Next {
    Retry(Error),
    Stop(Error),
}

/// What follows the failure `e` of attempt `attempt` of `attempts`.
fn next(e: Error, attempt: u32, attempts: u32) -> Next {
    match e {
        e @ Error::Partial(_) => Next::Stop(e),
        e if !retryable(&e) => Next::Stop(e),
        e if attempt >= attempts => Next::Stop(if attempts > 1 {
            with_attempts(e, attempts)
        } else {
            e
        }),
        e => Next::Retry(e),
    }
}

/// Whether a later attempt can cure it: a connection lost or refused for
/// now, a lock held by another backup.
fn retryable(e: &Error) -> bool {
    matches!(e, Error::Connection(_) | Error::Locked(_))
}

fn with_attempts(e: Error, attempts: u32) -> Error {
    let msg = format!("backup failed after {attempts} attempts: {e}");
    match e {
        Error::Locked(_) => Error::Locked(msg),
        _ => Error::Connection(msg),
    }
}

impl Backup<'_> {
    /// Runs the attempts; the snapshot's name and how many attempts it took.
    pub fn run(
        &self,
        progress: &mut Progress,
        mut recorder: Option<&mut Recorder<'_>>,
    ) -> Result<(String, u32)> {
        let attempts = self.attempts.max(1);
        let mut attempt = 1;
        loop {
            progress.made = attempt;
            if let Some(r) = recorder.as_deref_mut() {
                r.attempt(attempt);
            }
            let e = match self.try_once(attempt == attempts, progress) {
                Ok(snapshot) => return Ok((snapshot, attempt)),
                Err(e) => e,
            };
            match next(e, attempt, attempts) {
                Next::Stop(e) => return Err(e),
                Next::Retry(e) => {
                    report::note(format_args!(
                        "attempt {attempt} of {attempts} failed: {e}; trying again in {}",
                        self.pause
                    ));
                    std::thread::sleep(self.pause.to_std());
                    attempt += 1;
                }
            }
        }
    }

    /// One attempt: ping, walk, transfer (in full, or what the change index
    /// found), snapshot, commit the index — over one connection.
    fn try_once(&self, last: bool, progress: &mut Progress) -> Result<String> {
        let session = self.backups.session()?;
        let backups = &*session;
        let ping = backups.ping()?;
        // The last attempt asked for a snapshot and lost the connection before
        // the answer: if the store took it, that is this backup's snapshot —
        // asking again would take a second one (or be refused as too soon).
        if let Some(asked) = progress.unanswered.take() {
            if ping.newest.is_some() && ping.newest != asked.newest_before {
                let snapshot = ping.newest.unwrap_or_default();
                report::note(format_args!(
                    "the {} took snapshot {snapshot} before the connection dropped",
                    backups.describe()
                ));
                // Its walk is gone with that attempt: the index is not
                // committed, and the next backup makes a full pass.
                return Ok(snapshot);
            }
        }
        // The walk comes first: whatever changes from now on is newer than
        // what the index records, and is sent again next time.
        let (walked, old) = self.index.walk(&self.sending.sources);
        let mut walk = Walk { walked, old };
        progress.pass = Pass::default();
        let changes = self.ready(backups, &ping, &mut walk, &mut progress.pass)?;
        let transferred = self.send(backups, &ping, changes.as_ref(), &mut progress.pass)?;
        progress.traffic.add(transferred.traffic);
        let snapshot = self.conclude(backups, transferred, last, &ping, progress)?;
        self.index.commit(
            walk.walked,
            walk.old.as_ref(),
            changes.is_some(),
            ping.newest.as_deref(),
            &snapshot,
        );
        Ok(snapshot)
    }

    /// Readies an incremental transfer if the change index may be used:
    /// what changed, or `None` (a full pass, its reason in `pass`).
    fn ready(
        &self,
        backups: &dyn Backups,
        ping: &PingReply,
        walk: &mut Walk,
        pass: &mut Pass,
    ) -> Result<Option<index::Changes>> {
        let why = self.index.why_full(
            walk.walked.as_deref(),
            walk.old.as_ref(),
            ping.newest.as_deref(),
        );
        if let Some(why) = why {
            pass.reason = Some(why);
            return Ok(None);
        }
        let changes = index::compare(
            walk.old.iter().flat_map(|o| o.entries()),
            walk.walked.as_deref().unwrap_or_default(),
        );
        // Only the old header is needed from now on.
        if let Some(old) = walk.old.as_mut() {
            old.release();
        }
        let snapshot = ping.newest.clone().unwrap_or_default();
        let store_deletes = ping.protocol >= SERVER_DELETES_GONE;
        match backups.incremental(&snapshot, replace_list(&changes, store_deletes)) {
            Ok(()) => Ok(Some(changes)),
            // Refused as an incremental backup (a stale snapshot, too many
            // paths to list): a full pass. Refused as a backup (space,
            // growth, locks): as a full pass would be.
            Err(Error::FullPassNeeded(why)) => {
                pass.reason = Some(refused_incremental(backups, &why));
                Ok(None)
            }
            // An older server does not type its refusals (or does not
            // know the request): any refusal of it is one of the mode.
            Err(Error::Refused(why)) if ping.protocol < TYPED_FULL_PASS => {
                pass.reason = Some(refused_incremental(backups, &why));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Runs rsync: the `changes` only, or a full pass.
    fn send(
        &self,
        backups: &dyn Backups,
        ping: &PingReply,
        changes: Option<&index::Changes>,
        pass: &mut Pass,
    ) -> Result<Transferred> {
        let Some(changes) = changes else {
            if let Some(why) = &pass.reason {
                report::note(format_args!("full pass: {why}"));
            }
            return backups.transfer(TransferMode::Full, &mut |into| {
                transfer::run(&self.sending.full(into.to), None, into.stop)
            });
        };
        pass.incremental = true;
        pass.paths = changes.send.len();
        if self.sending.verbose {
            report::note(format_args!(
                "incremental backup: {} path(s) changed since snapshot {} ({} vanished)",
                changes.send.len(),
                ping.newest.as_deref().unwrap_or("-"),
                changes.vanished
            ));
        }
        // A store that deleted what vanished when it readied `current`
        // (protocol 3 on) is given only what exists.
        let store_deletes = ping.protocol >= SERVER_DELETES_GONE;
        let Some(list) = files_from(changes, store_deletes) else {
            // Nothing (left) to send: `current` is ready as it is.
            return Ok(Transferred::nothing());
        };
        // Before protocol 3, the mode travels as --delete-missing-args into
        // `current` (see `BackupTransfer`), which is still incremental.
        backups.transfer(TransferMode::Incremental, &mut |into| {
            let transfer = self.sending.listed(into.to, store_deletes);
            transfer::run(&transfer, Some(list.clone()), into.stop)
        })
    }

    /// After rsync: the snapshot (partial if the same files failed again,
    /// or on the last attempt), or why not.
    fn conclude(
        &self,
        backups: &dyn Backups,
        transferred: Transferred,
        last: bool,
        ping: &PingReply,
        progress: &mut Progress,
    ) -> Result<String> {
        let Transferred {
            outcome,
            code,
            failed,
            server_said,
            traffic: _,
        } = transferred;
        if let (false, Some(failure)) = (outcome.is_success(), server_said) {
            // The server refused the transfer (its words came through rsync's
            // stderr); rsync only knows the connection closed.
            return Err(failure.into_error());
        }
        match outcome {
            Outcome::Ok | Outcome::Vanished => {
                let result = backups.complete(None);
                if matches!(result, Err(Error::Connection(_))) {
                    progress.unanswered = Some(Unanswered {
                        newest_before: ping.newest.clone(),
                    });
                }
                result
            }
            // The same files failed as on the attempt before: not a passing
            // problem (a name the server's filesystem refuses, say), so
            // trying again would only fail again; the snapshot is taken now.
            Outcome::SomeFilesFailed
                if last || (!failed.is_empty() && same(&progress.failed_before, &failed)) =>
            {
                // A partial snapshot: the index (which would say the failed
                // files were sent) is not committed; the next backup is full.
                let note = if failed.is_empty() {
                    "(rsync named no files)\n".to_owned()
                } else {
                    failed.join("\n") + "\n"
                };
                let snapshot = backups.complete(Some(&note))?;
                Err(partial_error(&snapshot, &failed))
            }
            // Exit 23 may be a transient I/O problem: try again first.
            Outcome::SomeFilesFailed => {
                let mut sorted = failed;
                sorted.sort();
                progress.failed_before = Some(sorted);
                Err(Error::Connection(describe_exit(code)))
            }
            Outcome::Retryable => Err(Error::Connection(describe_exit(code))),
            Outcome::Fatal => Err(Error::Command(format!(
                "{}; see rsync's messages above",
                describe_exit(code)
            ))),
        }
    }
}

fn refused_incremental(backups: &dyn Backups, why: &str) -> String {
    format!(
        "the {} refused an incremental backup: {why}",
        backups.describe()
    )
}

/// Whether `failed` names the same files as the attempt before (sorted).
fn same(before: &Option<Vec<String>>, failed: &[String]) -> bool {
    let mut sorted = failed.to_vec();
    sorted.sort();
    before.as_deref() == Some(sorted.as_slice())
}

/// The paths the store must not take from the snapshot, relative to the
/// root, and, where it deletes them itself (`store_deletes`, protocol 3),
/// which of them vanished.
fn replace_list(changes: &index::Changes, store_deletes: bool) -> ReplaceList {
    let relative = |paths: &[Vec<u8>]| -> Vec<Vec<u8>> {
        paths
            .iter()
            .filter(|p| p.as_slice() != b"/")
            .map(|p| p.strip_prefix(b"/").unwrap_or(p).to_vec())
            .collect()
    };
    ReplaceList {
        replace: relative(&changes.replace),
        gone: if store_deletes {
            relative(&changes.gone)
        } else {
            Vec::new()
        },
    }
}

/// rsync's `--files-from` input (NUL-ended, relative to `/`): the paths
/// to send, less the vanished ones a store deleted itself; `None` if that
/// leaves nothing.
fn files_from(changes: &index::Changes, store_deletes: bool) -> Option<Vec<u8>> {
    let gone: HashSet<&[u8]> = if store_deletes {
        changes.gone.iter().map(Vec::as_slice).collect()
    } else {
        HashSet::new()
    };
    let mut list = Vec::new();
    for p in changes.send.iter().filter(|p| !gone.contains(p.as_slice())) {
        list.extend_from_slice(index::files_from_entry(p));
        list.push(0);
    }
    (!list.is_empty()).then_some(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_tried_again() {
        let retried = |e: Error, attempt| matches!(next(e, attempt, 3), Next::Retry(_));
        assert!(retried(Error::Connection("dropped".into()), 1));
        assert!(retried(Error::Locked("busy".into()), 2));
        for e in [
            Error::Partial("some files".into()),
            Error::Refused("no".into()),
            Error::FullPassNeeded("stale".into()),
            Error::SpaceExhausted("full".into()),
            Error::Command("rsync exit 1".into()),
            Error::Config("bad".into()),
        ] {
            let shown = e.to_string();
            match next(e, 1, 3) {
                Next::Stop(e) => assert_eq!(e.to_string(), shown),
                Next::Retry(e) => panic!("{e} retried"),
            }
        }
        // The last attempt stops, saying how many there were, and keeps
        // the kind (a lock's exit status differs from a connection's).
        match next(Error::Locked("busy".into()), 3, 3) {
            Next::Stop(Error::Locked(m)) => {
                assert_eq!(m, "backup failed after 3 attempts: busy")
            }
            other => panic!("{other:?}"),
        }
        match next(Error::Connection("gone".into()), 3, 3) {
            Next::Stop(Error::Connection(m)) => assert!(m.starts_with("backup failed after 3")),
            other => panic!("{other:?}"),
        }
        // A single attempt's error is its own.
        match next(Error::Connection("gone".into()), 1, 1) {
            Next::Stop(e) => {
                assert_eq!(e.to_string(), Error::Connection("gone".into()).to_string())
            }
            other => panic!("{other:?}"),
        }
    }

    fn changes(send: &[&str], replace: &[&str], gone: &[&str]) -> index::Changes {
        let paths = |p: &[&str]| p.iter().map(|s| s.as_bytes().to_vec()).collect();
        index::Changes {
            send: paths(send),
            replace: paths(replace),
            gone: paths(gone),
            vanished: gone.len(),
        }
    }

    #[test]
    fn replace_lists_are_relative_and_name_the_gone_from_protocol_3() {
        let c = changes(&["/", "/a", "/b"], &["/", "/a", "/b"], &["/b"]);
        let list = replace_list(&c, true);
        assert_eq!(list.replace, [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(list.gone, [b"b".to_vec()]);
        assert!(replace_list(&c, false).gone.is_empty());
    }

    #[test]
    fn files_from_leaves_out_what_the_store_deleted() {
        let c = changes(&["/", "/a", "/b"], &[], &["/b"]);
        assert_eq!(files_from(&c, true).unwrap(), b".\0a\0");
        assert_eq!(files_from(&c, false).unwrap(), b".\0a\0b\0");
        let only_gone = changes(&["/b"], &[], &["/b"]);
        assert_eq!(files_from(&only_gone, true), None);
    }

    #[test]
    fn the_same_failures_twice() {
        let before = Some(vec!["/a".to_owned(), "/b".to_owned()]);
        assert!(same(&before, &["/b".to_owned(), "/a".to_owned()]));
        assert!(!same(&before, &["/a".to_owned()]));
        assert!(!same(&None, &["/a".to_owned()]));
    }
}
