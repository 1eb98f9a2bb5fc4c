//! The judgement at each snapshot: is it unlike the client's usual, far
//! beyond `[suspect]`'s tolerance ([`crate::changes::Suspect`])? If so the
//! snapshot is marked suspect and the newest clean snapshots before it are
//! pinned ([`crate::store::suspect`]), before the prune that follows the
//! snapshot, so that prune already keeps them.
//!
//! Nothing the client sends decides it but its files: the share is read
//! from the change log the server classified against the trees, the
//! history from the older snapshots' change logs, and the mark is the
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
        // Only the counts: a log may list 100,000 paths.
        let log_of = |name: &SnapshotName| self.change_counts(name);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ServerConfig;
    use crate::store::fake::FakeStore;

    /// A log of `content` changed files among `files`.
    fn log(content: u64, files: u64) -> ChangeLog {
        ChangeLog {
            content,
            files: Some(files),
            complete: true,
            ..ChangeLog::default()
        }
    }

    /// Snapshots with the given logs (`None`: no log), a day apart.
    fn history(fake: &FakeStore, client: &crate::names::ClientName, logs: &[Option<ChangeLog>]) {
        for (i, l) in logs.iter().enumerate() {
            let name = fake.old_snapshot(client, &format!("2026-11-{:02}T03:00:00Z", i + 1), 1);
            if let Some(l) = l {
                let dir = fake.store.changes_dir(client);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(format!("{name}.changes")), l.render()).unwrap();
            }
        }
    }

    fn now() -> Timestamp {
        "2026-12-01T03:00:00Z".parse().unwrap()
    }

    /// The judgement over a store's real logs: a first snapshot is never
    /// judged; the usual comes from the logs; the pins are the newest clean
    /// snapshots, skipping one already marked; off means off.
    #[test]
    fn judges_against_the_store_s_change_logs() {
        let fake = FakeStore::new(1 << 30, ServerConfig::default());
        let c = fake.client("a.example");
        let backups = ClientBackups {
            store: &fake.store,
            client: c.clone(),
        };
        let bad = log(90, 100);
        // Nothing before it: nothing to judge.
        assert!(backups.judge_suspect(&bad, now()).is_none());
        // One snapshot, no history: min_share alone decides.
        history(&fake, &c, &[Some(log(0, 100))]);
        assert!(backups.judge_suspect(&log(30, 100), now()).is_none());
        assert!(backups.judge_suspect(&bad, now()).is_some());
        // A usual of 5 %: 40 % is not ten times that; 90 % is.
        history(
            &fake,
            &c,
            &[
                None,
                Some(log(5, 100)),
                Some(log(5, 100)),
                Some(log(5, 100)),
                Some(log(5, 100)),
            ],
        );
        assert!(backups.judge_suspect(&log(40, 100), now()).is_none());
        let verdict = backups.judge_suspect(&bad, now()).unwrap();
        assert!(
            verdict.reason.contains("against a usual 5.0 %"),
            "{}",
            verdict.reason
        );
        let names: Vec<String> = fake
            .store
            .snapshots(&c)
            .unwrap()
            .into_iter()
            .map(|s| s.name.to_string())
            .collect();
        let pinned: Vec<String> = verdict.pinned.iter().map(ToString::to_string).collect();
        assert_eq!(pinned, names[names.len() - 3..]);
        // Mark the newest: the next verdict pins the three before it.
        let newest = SnapshotName::parse(names.last().unwrap()).unwrap();
        backups.mark_suspect(&newest, verdict);
        let again = backups.judge_suspect(&bad, now()).unwrap();
        let pinned: Vec<String> = again.pinned.iter().map(ToString::to_string).collect();
        assert_eq!(pinned, names[names.len() - 4..names.len() - 1]);
        // Off: nothing is judged, and the standing mark stays.
        let mut config = ServerConfig::default();
        config.suspect.enabled = false;
        let off = FakeStore::new(1 << 30, config);
        let c2 = off.client("b.example");
        history(&off, &c2, &[Some(log(0, 100)), Some(log(1, 100))]);
        let b2 = ClientBackups {
            store: &off.store,
            client: c2,
        };
        assert!(b2.judge_suspect(&bad, now()).is_none());
        assert_eq!(fake.store.suspect_marks(&c).unwrap().len(), 1);
    }
}
