//! The judgement at each snapshot: is it unlike the client's usual, far
//! beyond `[suspect]`'s tolerance ([`crate::changes::Suspect`])? If so the
//! snapshot is marked suspect and the newest clean snapshots before it are
//! pinned ([`crate::store::suspect`]), before the prune that follows the
//! snapshot, so that prune already keeps them.
//!
//! Nothing the client sends decides it but its files: the share is read
//! from the change log the server classified against the trees, the
//! history from the logs beside the older snapshots, and the mark is the
//! server's own file outside the client's directory. A later backup,
//! clean or not, adds a snapshot and may add a mark; it never removes one.
//! Only `byteback-server ack` does.

use jiff::Timestamp;

use crate::changes::{self, ChangeLog, Suspect};
use crate::names::SnapshotName;
use crate::store::suspect::Mark;

use super::ClientBackups;

/// A snapshot found suspect, before it has its name.
#[derive(Debug)]
pub(super) struct Verdict {
    reason: String,
    /// The snapshots to pin, oldest first.
    pinned: Vec<SnapshotName>,
    at: Timestamp,
}

impl ClientBackups<'_> {
    /// Judges the snapshot about to be taken, whose sealed change log is
    /// `log`, against the client's snapshots so far. `None`: not suspect,
    /// the rule is off, or there is nothing to judge against (a first
    /// snapshot).
    pub(super) fn judge_suspect(&self, log: &ChangeLog, now: Timestamp) -> Option<Verdict> {
        let (store, client) = (self.store, &self.client);
        let config = &store.config.suspect;
        if !config.enabled {
            return None;
        }
        let snapshots = match self.snapshots() {
            Ok(s) => s,
            Err(e) => {
                store.warn(&format!("{client}: cannot judge the new snapshot: {e}"));
                return None;
            }
        };
        let previous = snapshots.last()?;
        // A mark that cannot be read is taken as standing on every snapshot.
        let marked: Vec<String> = match store.suspect_marks(client) {
            Ok(marks) => marks.into_iter().map(|m| m.snapshot).collect(),
            Err(_) => snapshots.iter().map(|s| s.name.to_string()).collect(),
        };
        let is_marked = |name: &SnapshotName| marked.iter().any(|m| m == name.as_str());
        let log_of = |name: &SnapshotName| self.change_log(name).ok().flatten();
        let files_before = log_of(&previous.name)
            .and_then(|l| l.files)
            .unwrap_or_else(|| {
                changes::count_files(&store.client_dir(client).join(previous.name.as_str()))
            });
        let share = log.damage_share(Some(files_before))?;
        let rule = Suspect {
            min_share: config.min_share,
            factor: config.factor,
            history: config.history as usize,
        };
        // The window: enough snapshots for `history` shares past the marked.
        let want = rule.history + 1 + marked.len();
        let window = &snapshots[snapshots.len().saturating_sub(want)..];
        let logs: Vec<Option<ChangeLog>> = window.iter().map(|s| log_of(&s.name)).collect();
        let entries: Vec<(Option<&ChangeLog>, bool)> = logs
            .iter()
            .zip(window)
            .map(|(l, s)| (l.as_ref(), is_marked(&s.name)))
            .collect();
        let reason = rule.judge(share, &rule.recent_shares(&entries))?;
        let mut pinned: Vec<SnapshotName> = snapshots
            .iter()
            .rev()
            .filter(|s| !is_marked(&s.name))
            .take(config.pin as usize)
            .map(|s| s.name.clone())
            .collect();
        pinned.reverse();
        Some(Verdict {
            reason,
            pinned,
            at: now,
        })
    }

    /// Records the mark of snapshot `name` and says so in the log.
    pub(super) fn mark_suspect(&self, name: &SnapshotName, verdict: Verdict) {
        let (store, client) = (self.store, &self.client);
        let pinned: Vec<String> = verdict.pinned.iter().map(ToString::to_string).collect();
        let listed = match pinned.is_empty() {
            true => "none".to_owned(),
            false => pinned.join(", "),
        };
        let mark = Mark {
            snapshot: name.to_string(),
            reason: verdict.reason.clone(),
            pinned,
            marked: verdict.at,
        };
        let recorded = store.add_suspect_mark(client, mark);
        store.warn(&format!(
            "{client}: snapshot {name} is SUSPECT: {}; pinned until a person looks and runs `byteback-server ack --client {client} {name}`: {listed}{}",
            verdict.reason,
            match &recorded {
                Ok(()) => String::new(),
                Err(e) => format!(" (BUT THE MARK COULD NOT BE RECORDED: {e})"),
            }
        ));
    }
}
