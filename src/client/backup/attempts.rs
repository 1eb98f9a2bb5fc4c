//! A backup's attempts, against any [`Backups`]: each pings, walks the
//! sources, readies an incremental transfer if the change index may be
//! used, transfers (what changed, or a full pass), and asks for the
//! snapshot. A failure a later attempt can cure (a dropped connection, a
//! lock held, the same transient rsync error) is tried again after a pause,
//! resuming from what was already sent; anything else ends the backup with
//! the reason. A server that takes no backups now (outside its backup
//! windows) says when it will: the backup waits until then, once, if that
//! is within `retry_after_max` ([`after_refusal`]).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::thread::ScopedJoinHandle;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::client::backups::Backups;
use crate::client::index;
use crate::client::state::Recorder;
use crate::client::transfer::{self, Transferred};
use crate::error::{Error, Result};
use crate::exec::rsync::{
    BackupTransfer, Outcome, Selection, Throttle, Traffic, TransferTo, describe_exit,
};
use crate::protocol::{
    PingReply, ReplaceList, SERVER_DELETES_GONE, SPARSE_RUNS, TYPED_FULL_PASS, TransferMode,
};
use crate::report;

use super::index_policy::{IndexSettings, Survey};
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
    /// A full pass to `to`; `sparse`: keeping holes.
    fn full(&self, to: TransferTo, sparse: bool) -> BackupTransfer {
        BackupTransfer {
            rsync: PathBuf::from("rsync"),
            to,
            sources: self.sources.clone(),
            excludes: self.excludes.clone(),
            io_timeout_secs: self.io_timeout_secs,
            verbose: self.verbose,
            progress: self.progress,
            throttle: self.throttle.clone(),
            selection: Selection::All,
            sparse,
        }
    }

    /// Only the paths on rsync's standard input (relative to `/`), as
    /// `selection` says (not [`Selection::All`]).
    fn listed(&self, to: TransferTo, selection: Selection, sparse: bool) -> BackupTransfer {
        BackupTransfer {
            sources: vec![PathBuf::from("/")],
            selection,
            ..self.full(to, sparse)
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
    /// `retry_after_max`: the longest wait for a server's backup window.
    pub wait_max: crate::config::Duration,
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

/// The walk running beside the connection; joined once.
struct Surveying<'scope>(Option<ScopedJoinHandle<'scope, Survey>>);

impl Surveying<'_> {
    /// The walk's result (after the first call, or if the walk panicked:
    /// none, so a full pass).
    fn join(&mut self) -> Survey {
        match self.0.take().map(ScopedJoinHandle::join) {
            Some(Ok(survey)) => survey,
            Some(Err(_)) => {
                report::note("the change index is not used: the walk of the sources failed");
                Survey::default()
            }
            None => Survey::default(),
        }
    }
}

/// What the attempt knows of the server: from its ping, or, without one,
/// from the change index (the protocol it last named) and the server's
/// acceptance of the incremental transfer (its newest snapshot is the one
/// the index describes).
#[derive(Debug)]
struct Server {
    protocol: u32,
    newest: Option<String>,
}

impl Server {
    fn of(ping: &PingReply) -> Server {
        Server {
            protocol: ping.protocol,
            newest: ping.newest.clone(),
        }
    }
}

/// How an attempt begins once connected.
enum First {
    /// The server pinged.
    Pinged(PingReply),
    /// No ping: the incremental request, with the index of this header.
    Unpinged(index::Header),
}

/// A ping's outcome for the attempt.
enum Pinged {
    Reply(PingReply),
    /// The snapshot the attempt before asked for was taken: the backup's.
    Taken(String),
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

/// After the server refused for now, saying when it takes backups again
/// (`at`; `message` its words): how long to wait before trying again, or
/// the error to stop with. The backup waits once, until a little after
/// `at` (the two clocks may be a second apart), if that is at most `max`
/// from `now`; a second refusal after waiting, or a time further away,
/// ends it. Times are shown in `tz`, this machine's.
pub fn after_refusal(
    at: Timestamp,
    message: &str,
    now: Timestamp,
    max: crate::config::Duration,
    waited: bool,
    tz: &TimeZone,
) -> Result<std::time::Duration, Error> {
    let from = format!(
        "the server allows backups from {} ({})",
        tz.to_datetime(at).strftime("%H:%M"),
        at.strftime("%Y-%m-%dT%H:%M:%SZ")
    );
    let away = at.duration_since(now);
    let stop = |why: String| {
        Err(Error::RetryAfter {
            at,
            message: format!("{from}; {why}; {message}"),
        })
    };
    if waited {
        return stop("it refused again after this backup waited for that time (are this machine's and the server's clocks apart?)".into());
    }
    if away > max.0 {
        return stop(format!(
            "that is {} from now, more than retry_after_max ({max}) allows this backup to wait; run it then, or within the server's windows",
            crate::config::Duration(SignedDuration::from_mins(away.as_mins()))
        ));
    }
    Ok(std::time::Duration::try_from(away)
        .unwrap_or_default()
        .saturating_add(WINDOW_MARGIN))
}

/// How long after the time a server named the backup tries again.
const WINDOW_MARGIN: std::time::Duration = std::time::Duration::from_secs(2);

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
        let mut waited = false;
        loop {
            progress.made = attempt;
            if let Some(r) = recorder.as_deref_mut() {
                r.attempt(attempt);
            }
            let e = match self.try_once(attempt == attempts, progress) {
                Ok(snapshot) => return Ok((snapshot, attempt)),
                Err(e) => e,
            };
            // Refused for now, not failed: wait for the window, and the
            // attempt after it is not counted as another.
            if let Error::RetryAfter { at, message } = &e {
                let tz = TimeZone::system();
                let wait =
                    after_refusal(*at, message, Timestamp::now(), self.wait_max, waited, &tz)?;
                report::note(format_args!(
                    "{message}; waiting until {} ({}) to try again",
                    tz.to_datetime(*at).strftime("%H:%M"),
                    at.strftime("%Y-%m-%dT%H:%M:%SZ")
                ));
                std::thread::sleep(wait);
                waited = true;
                continue;
            }
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

    /// One attempt: walk (and compare with the change index) while the
    /// connection is made and the server first asked, ready the transfer,
    /// send (in full, or what the index found), snapshot, commit the index
    /// — over one connection.
    fn try_once(&self, last: bool, progress: &mut Progress) -> Result<String> {
        let (loaded, header) = std::sync::mpsc::sync_channel(1);
        std::thread::scope(|scope| {
            // Nothing the walk finds is needed before what is sent is
            // decided, so it runs beside the ssh handshake and the ping
            // rather than after them. One walk at a time, as before: the
            // memory held is the same.
            let (index, sources) = (&self.index, &self.sending.sources);
            let mut surveying = Surveying(Some(scope.spawn(move || {
                index.survey(sources, |h| {
                    let _ = loaded.send(h.cloned());
                })
            })));
            let result = self.attempt(&mut surveying, &header, last, progress);
            // An attempt that ended early still waits for its walk (a
            // scope joins its threads anyway).
            drop(surveying.join());
            result
        })
    }

    fn attempt(
        &self,
        surveying: &mut Surveying<'_>,
        header: &Receiver<Option<index::Header>>,
        last: bool,
        progress: &mut Progress,
    ) -> Result<String> {
        let session = self.backups.session()?;
        let backups = &*session;
        // The index's header (read before the walk) says whether the
        // ping's answer could change what is sent: not while the index may
        // be used, since the incremental request itself checks that the
        // index's snapshot is the newest, and a server refuses it (typed)
        // for whatever a ping would have said — outside its windows,
        // moved, no such snapshot. After a lost snapshot answer, the ping
        // says whether it was taken.
        let header = header.recv().ok().flatten();
        let unpinged =
            header.filter(|h| progress.unanswered.is_none() && self.index.may_skip_ping(h));
        progress.pass = Pass::default();
        let first = match unpinged {
            Some(header) => First::Unpinged(header),
            None => match self.ping(backups, progress)? {
                Pinged::Reply(ping) => First::Pinged(ping),
                Pinged::Taken(snapshot) => return Ok(snapshot),
            },
        };
        let mut survey = surveying.join();
        let (server, incremental) = match first {
            First::Pinged(ping) => {
                let incremental = self.ready(backups, &ping, &mut survey, &mut progress.pass)?;
                (Server::of(&ping), incremental)
            }
            First::Unpinged(header) => {
                self.ready_unpinged(backups, &header, &mut survey, progress)?
            }
        };
        let changes = survey.changes.as_ref().filter(|_| incremental);
        // Which files have holes, where the server takes them in a run of
        // their own (and the walk saw every file rsync sends).
        let walked = survey
            .walked
            .as_deref()
            .filter(|_| server.protocol >= SPARSE_RUNS);
        let transferred = self.send(backups, &server, changes, walked, &mut progress.pass)?;
        progress.traffic.add(transferred.traffic);
        let snapshot = self.conclude(backups, transferred, last, &server, progress)?;
        self.index.commit(
            survey,
            incremental,
            server.newest.as_deref(),
            &snapshot,
            server.protocol,
        );
        Ok(snapshot)
    }

    /// The ping, and what its answer ends at once: a snapshot the attempt
    /// before took after all, or a server outside its backup windows.
    fn ping(&self, backups: &dyn Backups, progress: &mut Progress) -> Result<Pinged> {
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
                return Ok(Pinged::Taken(snapshot));
            }
        }
        // Outside the server's backup windows nothing would be taken:
        // refused before the walk, as the transfer would be.
        if let Some(at) = ping.closed_until {
            return Err(Error::RetryAfter {
                at,
                message: format!(
                    "the {} takes backups only at {}",
                    backups.describe(),
                    ping.windows.as_deref().unwrap_or("certain times")
                ),
            });
        }
        Ok(Pinged::Reply(ping))
    }

    /// Readies an incremental transfer without a ping first: what is known
    /// of the server then, and whether the transfer is incremental. The
    /// server's acceptance says its newest snapshot is the index's; a
    /// refusal of the mode, or one a server older than the index says
    /// would not type, is followed by the ping, for a full pass.
    fn ready_unpinged(
        &self,
        backups: &dyn Backups,
        header: &index::Header,
        survey: &mut Survey,
        progress: &mut Progress,
    ) -> Result<(Server, bool)> {
        let asked = match &survey.changes {
            Some(changes) => {
                let store_deletes = header.server_protocol >= SERVER_DELETES_GONE;
                let list = replace_list(changes, store_deletes);
                match backups.incremental(&header.snapshot, list) {
                    Ok(()) => {
                        let server = Server {
                            protocol: header.server_protocol,
                            newest: Some(header.snapshot.clone()),
                        };
                        return Ok((server, true));
                    }
                    Err(e @ (Error::FullPassNeeded(_) | Error::Refused(_))) => Some(e),
                    Err(e) => return Err(e),
                }
            }
            // The walk failed: a full pass, which the ping precedes.
            None => None,
        };
        let ping = match self.ping(backups, progress)? {
            Pinged::Reply(ping) => ping,
            // Only after a lost answer, when the ping is never left out.
            Pinged::Taken(_) => {
                return Err(Error::Connection(
                    "the server's newest snapshot changed while this backup asked it".into(),
                ));
            }
        };
        let server = Server::of(&ping);
        match asked {
            Some(e) => {
                let refused = full_pass_after(backups, e, ping.protocol)?;
                // Where the ping's answer explains it (the index's snapshot
                // is no longer the newest), that is the reason given, as
                // when the ping comes first.
                let why = self.index.why_full(
                    survey.walked.as_deref(),
                    survey.old.as_ref().map(|o| &o.header),
                    ping.newest.as_deref(),
                );
                progress.pass.reason = Some(why.unwrap_or(refused));
                Ok((server, false))
            }
            None => {
                let incremental = self.ready(backups, &ping, survey, &mut progress.pass)?;
                Ok((server, incremental))
            }
        }
    }

    /// Readies an incremental transfer if the change index may be used
    /// (`true`; what changed is the survey's), or not (a full pass, its
    /// reason in `pass`).
    fn ready(
        &self,
        backups: &dyn Backups,
        ping: &PingReply,
        survey: &mut Survey,
        pass: &mut Pass,
    ) -> Result<bool> {
        let why = self.index.why_full(
            survey.walked.as_deref(),
            survey.old.as_ref().map(|o| &o.header),
            ping.newest.as_deref(),
        );
        if let Some(why) = why {
            pass.reason = Some(why);
            return Ok(false);
        }
        // The survey compared whenever the index may be used with this
        // newest snapshot; a full pass is the safe answer otherwise.
        let Some(changes) = &survey.changes else {
            pass.reason = Some("the change index was not compared with the walk".into());
            return Ok(false);
        };
        let snapshot = ping.newest.clone().unwrap_or_default();
        let store_deletes = ping.protocol >= SERVER_DELETES_GONE;
        match backups.incremental(&snapshot, replace_list(changes, store_deletes)) {
            Ok(()) => Ok(true),
            Err(e) => {
                pass.reason = Some(full_pass_after(backups, e, ping.protocol)?);
                Ok(false)
            }
        }
    }

    /// Runs rsync: the `changes` only, or a full pass. With `walked` (the
    /// walk, where the store takes them apart: protocol 8), the files with
    /// holes go first in a `--sparse` run of their own and the rest
    /// follows without it, sparing the receiver its scan for zeros in every
    /// byte (a full pass only when it is the first backup); else it is one
    /// `--sparse` run, as before, or one without where no file has holes.
    fn send(
        &self,
        backups: &dyn Backups,
        server: &Server,
        changes: Option<&index::Changes>,
        walked: Option<&[index::Entry]>,
        pass: &mut Pass,
    ) -> Result<Transferred> {
        let Some(changes) = changes else {
            if let Some(why) = &pass.reason {
                report::note(format_args!("full pass: {why}"));
            }
            let all = |backups: &dyn Backups, sparse: bool| {
                backups.transfer(TransferMode::Full, sparse, &mut |into| {
                    transfer::run(&self.sending.full(into.to, sparse), None, into.stop)
                })
            };
            let Some(walked) = walked else {
                return all(backups, true);
            };
            let (with_holes, dense): (Vec<&index::Entry>, Vec<&index::Entry>) = walked
                .iter()
                .filter(|e| e.is_file())
                .partition(|e| index::has_holes(e));
            let Some(holes) = holes_list(with_holes.into_iter()) else {
                return all(backups, false);
            };
            // Only a first backup, which writes every byte, is split: each
            // full transfer costs the server a walk of `current` (its
            // readying breaks hard links) besides the second file list, and
            // a later full pass mostly finds files up to date, its receiver
            // scanning only what it writes. At 200,000 files a full pass
            // with nothing changed took 27.2 s split against 20.8 s whole
            // (bench/PER-FILE-COSTS.md part 4).
            if server.newest.is_some() || !worth_a_run(dense.iter().map(|e| e.size)) {
                return all(backups, true);
            }
            // The files with holes first, compared as the full pass would
            // compare them: the pass then finds them up to date.
            let first = backups.transfer(TransferMode::Full, true, &mut |into| {
                let run = self.sending.listed(into.to, Selection::Listed, true);
                transfer::run(&run, Some(holes.clone()), into.stop)
            })?;
            return one_then_other(first, || all(backups, false));
        };
        pass.incremental = true;
        pass.paths = changes.send.len();
        if self.sending.verbose {
            report::note(format_args!(
                "incremental backup: {} path(s) changed since snapshot {} ({} vanished)",
                changes.send.len(),
                server.newest.as_deref().unwrap_or("-"),
                changes.vanished
            ));
        }
        // A store that deleted what vanished when it readied `current`
        // (protocol 3 on) is given only what exists.
        let store_deletes = server.protocol >= SERVER_DELETES_GONE;
        let selection = Selection::Changed {
            server_deletes_gone: store_deletes,
        };
        // Before protocol 3, the mode travels as --delete-missing-args into
        // `current` (see `BackupTransfer`), which is still incremental.
        let run = |backups: &dyn Backups, list: &Vec<u8>, sparse: bool| {
            backups.transfer(TransferMode::Incremental, sparse, &mut |into| {
                let transfer = self.sending.listed(into.to, selection, sparse);
                transfer::run(&transfer, Some(list.clone()), into.stop)
            })
        };
        let Some(walked) = walked else {
            return match files_from(changes, store_deletes, |_| true) {
                Some(list) => run(backups, &list, true),
                // Nothing (left) to send: `current` is ready as it is.
                None => Ok(Transferred::nothing()),
            };
        };
        // Only the files that changed are asked about holes (once each).
        let entry = |path: &[u8]| {
            walked
                .binary_search_by(|e| index::cmp_paths(&e.path, path))
                .ok()
                .map(|at| &walked[at])
        };
        let mut holed: HashSet<&[u8]> = HashSet::new();
        let mut dense = Vec::new();
        for e in changes.send.iter().filter_map(|p| entry(p)) {
            if !e.is_file() {
                continue;
            }
            if index::has_holes(e) {
                holed.insert(&e.path);
            } else {
                dense.push(e.size);
            }
        }
        if !holed.is_empty() && !worth_a_run(dense) {
            return run(
                backups,
                &files_from(changes, store_deletes, |_| true).unwrap_or_default(),
                true,
            );
        }
        let holes = |path: &[u8]| holed.contains(path);
        let sparse = files_from(changes, store_deletes, holes);
        let rest = files_from(changes, store_deletes, |p| !holes(p));
        match (sparse, rest) {
            (None, None) => Ok(Transferred::nothing()),
            (None, Some(rest)) => run(backups, &rest, false),
            // The `--sparse` run leaves `current` readied for the rest.
            (Some(sparse), None) => run(backups, &sparse, true),
            (Some(sparse), Some(rest)) => {
                let first = run(backups, &sparse, true)?;
                one_then_other(first, || run(backups, &rest, false))
            }
        }
    }

    /// After rsync: the snapshot (partial if the same files failed again,
    /// or on the last attempt), or why not.
    fn conclude(
        &self,
        backups: &dyn Backups,
        transferred: Transferred,
        last: bool,
        server: &Server,
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
                        newest_before: server.newest.clone(),
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

/// The reason for a full pass after the server refused the incremental
/// request with `e`, or the error to stop with: refused as an incremental
/// backup (a stale snapshot, too many paths to list), a full pass; refused
/// as a backup (space, growth, locks), as a full pass would be. A server of
/// `protocol` older than [`TYPED_FULL_PASS`] does not type its refusals (or
/// does not know the request): any refusal of it is one of the mode.
fn full_pass_after(backups: &dyn Backups, e: Error, protocol: u32) -> Result<String> {
    match e {
        Error::FullPassNeeded(why) => Ok(refused_incremental(backups, &why)),
        Error::Refused(why) if protocol < TYPED_FULL_PASS => Ok(refused_incremental(backups, &why)),
        e => Err(e),
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
/// to send that `keep` keeps, less the vanished ones a store deleted
/// itself; `None` if that leaves nothing.
fn files_from(
    changes: &index::Changes,
    store_deletes: bool,
    keep: impl Fn(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let gone: HashSet<&[u8]> = if store_deletes {
        changes.gone.iter().map(Vec::as_slice).collect()
    } else {
        HashSet::new()
    };
    let mut list = Vec::new();
    for p in changes
        .send
        .iter()
        .filter(|p| !gone.contains(p.as_slice()) && keep(p))
    {
        list.extend_from_slice(index::files_from_entry(p));
        list.push(0);
    }
    (!list.is_empty()).then_some(list)
}

/// How many bytes of files without holes a run may send before sparing
/// them the receiver's scan for zeros is worth a run of its own for the
/// files with holes. The scan costs some 0.8 s of CPU per GiB the receiver
/// writes or, updating in place, matches (a whole changed file's length):
/// rsync 3.5.0 updating a 256 MiB file in place, 1% of it changed, spent
/// 0.42 s of user CPU with `--sparse` and 0.22 s without. Another run
/// costs a fixed 0.15–0.7 s (an ssh channel, the server's checks and
/// sandbox, two rsyncs starting; the high end on a loaded machine,
/// `examples/bench`). Below it, a backup is one `--sparse` run.
pub const SPLIT_FROM: u64 = 128 << 20;

/// Whether files without holes of these sizes are worth a run without
/// `--sparse` of their own (see [`SPLIT_FROM`]).
fn worth_a_run(sizes: impl IntoIterator<Item = u64>) -> bool {
    sizes.into_iter().fold(0u64, u64::saturating_add) >= SPLIT_FROM
}

/// A full pass's files with holes as rsync's `--files-from` input; `None`
/// if there are none.
fn holes_list<'e>(entries: impl Iterator<Item = &'e index::Entry>) -> Option<Vec<u8>> {
    let mut list = Vec::new();
    for e in entries {
        list.extend_from_slice(index::files_from_entry(&e.path));
        list.push(0);
    }
    (!list.is_empty()).then_some(list)
}

/// One backup's two runs (the files with holes, then the rest): the
/// second only after a first that sent what it could, and the two
/// reported as one, the worse outcome first.
fn one_then_other(
    first: Transferred,
    other: impl FnOnce() -> Result<Transferred>,
) -> Result<Transferred> {
    if !matches!(
        first.outcome,
        Outcome::Ok | Outcome::Vanished | Outcome::SomeFilesFailed
    ) {
        return Ok(first);
    }
    Ok(both(first, other()?))
}

/// Two runs' results as one: the worse outcome (and its exit status),
/// the failed files of both, the server's last word, the traffic added.
fn both(a: Transferred, b: Transferred) -> Transferred {
    let rank = |o: Outcome| match o {
        Outcome::Ok => 0,
        Outcome::Vanished => 1,
        Outcome::SomeFilesFailed => 2,
        Outcome::Retryable => 3,
        Outcome::Fatal => 4,
    };
    let (outcome, code) = if rank(b.outcome) >= rank(a.outcome) {
        (b.outcome, b.code)
    } else {
        (a.outcome, a.code)
    };
    let mut failed = a.failed;
    failed.extend(b.failed);
    failed.truncate(transfer::MAX_FAILED_FILES);
    let mut traffic = a.traffic;
    traffic.add(b.traffic);
    Transferred {
        outcome,
        code,
        failed,
        server_said: b.server_said.or(a.server_said),
        traffic,
    }
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

    /// Waiting for a server's window: once, within `retry_after_max`, a
    /// little past the time; else one line saying when, exit status 6.
    #[test]
    fn waiting_for_the_servers_window() {
        let tz = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        let now: Timestamp = "2026-12-07T12:00:00Z".parse().unwrap();
        let at: Timestamp = "2026-12-07T21:00:00Z".parse().unwrap();
        let max = crate::config::Duration::from_secs(12 * 3600);
        let said = "server: this server takes backups only at 22:00-06:00 (UTC)";
        let wait = after_refusal(at, said, now, max, false, &tz).unwrap();
        assert_eq!(
            wait,
            std::time::Duration::from_secs(9 * 3600) + WINDOW_MARGIN
        );
        // A time already past (the clocks apart): a moment's pause.
        let late = after_refusal(now, said, at, max, false, &tz).unwrap();
        assert_eq!(late, WINDOW_MARGIN);
        // Further than the bound: stop, saying when (in this machine's time).
        let short = crate::config::Duration::from_secs(3600);
        let e = after_refusal(at, said, now, short, false, &tz).unwrap_err();
        assert_eq!(e.exit_code().code(), 6);
        assert_eq!(
            e.to_string(),
            "the server allows backups from 22:00 (2026-12-07T21:00:00Z); that is 9h from now, more than retry_after_max (1h) allows this backup to wait; run it then, or within the server's windows; server: this server takes backups only at 22:00-06:00 (UTC)"
        );
        // Refused again after waiting: stop.
        let e = after_refusal(at, said, now, max, true, &tz).unwrap_err();
        assert!(matches!(e, Error::RetryAfter { .. }));
        assert!(
            e.to_string()
                .starts_with("the server allows backups from 22:00")
        );
        // "0s": never wait.
        let zero = crate::config::Duration::from_secs(0);
        assert!(after_refusal(at, said, now, zero, false, &tz).is_err());
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
        let all = |_: &[u8]| true;
        assert_eq!(files_from(&c, true, all).unwrap(), b".\0a\0");
        assert_eq!(files_from(&c, false, all).unwrap(), b".\0a\0b\0");
        let only_gone = changes(&["/b"], &[], &["/b"]);
        assert_eq!(files_from(&only_gone, true, all), None);
        // Split in two: what `keep` keeps, and the rest.
        let a = |p: &[u8]| p == b"/a";
        assert_eq!(files_from(&c, false, a).unwrap(), b"a\0");
        assert_eq!(files_from(&c, false, |p| !a(p)).unwrap(), b".\0b\0");
        assert_eq!(files_from(&c, true, |p| p == b"/b"), None);
    }

    /// Two runs are reported as one: the worse outcome with its status,
    /// both runs' failed files and traffic; a first run that could not
    /// send is not followed by the second.
    #[test]
    fn two_runs_as_one() {
        let run = |outcome, code, failed: &[&str], files| Transferred {
            outcome,
            code: Some(code),
            failed: failed.iter().map(|f| f.to_string()).collect(),
            server_said: None,
            traffic: Traffic {
                files,
                bytes: 10 * files,
                sent: files,
            },
        };
        let one = both(
            run(Outcome::SomeFilesFailed, 23, &["/x"], 1),
            run(Outcome::Vanished, 24, &[], 2),
        );
        assert_eq!(
            (one.outcome, one.code),
            (Outcome::SomeFilesFailed, Some(23))
        );
        assert_eq!(one.failed, ["/x"]);
        assert_eq!(one.traffic.files, 3);
        let one = both(
            run(Outcome::Ok, 0, &[], 1),
            run(Outcome::SomeFilesFailed, 23, &["/y"], 1),
        );
        assert_eq!(
            (one.outcome, one.failed.len()),
            (Outcome::SomeFilesFailed, 1)
        );
        let mut second_ran = false;
        let one = one_then_other(run(Outcome::Retryable, 12, &[], 0), || {
            second_ran = true;
            Ok(run(Outcome::Ok, 0, &[], 5))
        })
        .unwrap();
        assert!(!second_ran && one.outcome == Outcome::Retryable);
        let one = one_then_other(run(Outcome::Ok, 0, &[], 1), || {
            Ok(run(Outcome::Ok, 0, &[], 5))
        })
        .unwrap();
        assert_eq!((one.outcome, one.traffic.files), (Outcome::Ok, 6));
        // A run of its own only for enough bytes without holes.
        assert!(!worth_a_run([]));
        assert!(!worth_a_run([SPLIT_FROM - 1]));
        assert!(worth_a_run([SPLIT_FROM / 2, SPLIT_FROM / 2]));
        assert!(worth_a_run([u64::MAX, 1]));
    }

    #[test]
    fn the_same_failures_twice() {
        let before = Some(vec!["/a".to_owned(), "/b".to_owned()]);
        assert!(same(&before, &["/b".to_owned(), "/a".to_owned()]));
        assert!(!same(&before, &["/a".to_owned()]));
        assert!(!same(&None, &["/a".to_owned()]));
    }
}
