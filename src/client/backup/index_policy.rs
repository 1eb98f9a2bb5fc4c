//! When a backup may send only what the change index found, and keeping
//! the index true afterwards.
//!
//! The index (see [`crate::client::index`]) describes the sources as they
//! were at one snapshot. It may be used only while that snapshot is the
//! store's newest, for the same sources, exclusions and destination (the
//! fingerprint), with exclusions the walk can apply exactly, and not on
//! the one backup in `full_scan_every` that makes a full pass. The
//! decision ([`IndexSettings::why_full`]) is pure; the reason for a full
//! pass goes to the summary.

use std::path::{Path, PathBuf};

use crate::client::index;
use crate::client::settings::Settings;
use crate::protocol::TYPED_FULL_PASS;
use crate::report;

use super::plan::Plan;

/// What decides whether a backup may use the change index.
#[derive(Debug)]
pub struct IndexSettings {
    /// The index file.
    file: PathBuf,
    /// The sources, exclusions and destination, as the index records them.
    fingerprint: String,
    /// Directories whose contents the plan leaves out.
    skip: Vec<PathBuf>,
    /// Why this plan can never use the index.
    never: Option<String>,
    /// `byteback backup --full`.
    full: bool,
    /// `full_scan_every`.
    every: u32,
}

impl IndexSettings {
    /// The policy for `plan` with `settings`; the index is kept in `file`,
    /// in the configuration directory, if there is one (`None`: a one-off
    /// backup, which writes nothing there).
    pub fn new(file: Option<PathBuf>, settings: &Settings, plan: &Plan, full: bool) -> Self {
        let mut fingerprint = format!("index 1\ndestination {}\n", settings.destination);
        for s in &plan.sources {
            let encoded = crate::protocol::encode_arg(s.as_os_str().as_encoded_bytes());
            fingerprint.push_str(&format!("source {encoded}\n"));
        }
        for e in &plan.excludes {
            let encoded = crate::protocol::encode_arg(e.pattern.as_bytes());
            fingerprint.push_str(&format!("exclude {encoded}\n"));
        }
        let never = if file.is_none() {
            Some("there is no configuration directory to keep the change index in".to_owned())
        } else if settings.full_scan_every <= 1 {
            Some("full_scan_every is 1".to_owned())
        } else if let Some(e) = plan.excludes.iter().find(|e| e.contents_of.is_none()) {
            // rsync's pattern language is not reimplemented here: a walk
            // that left out something else than rsync would miss changes.
            Some(format!(
                "the exclude pattern {:?} ({}) is one the change index cannot apply exactly; every backup is a full rsync pass",
                e.pattern, e.why
            ))
        } else {
            plan.sources.iter().find(|s| !plain_absolute(s)).map(|s| {
                format!(
                    "the source {} is not a plain absolute path (no trailing /, . or ..)",
                    s.display()
                )
            })
        };
        IndexSettings {
            file: file.unwrap_or_default(),
            fingerprint,
            skip: plan
                .excludes
                .iter()
                .filter_map(|e| e.contents_of.clone())
                .collect(),
            never,
            full,
            every: settings.full_scan_every,
        }
    }

    /// Loads the index (`loaded` gets its header at once, so the caller
    /// can decide whether to ping meanwhile), walks the sources and, if
    /// the index may be used should the server's newest snapshot still be
    /// the one it describes, compares the two — the old records are freed
    /// then, and only the header and the changes stay. Unless the index can
    /// never be used; a walk that fails leaves no walk and no index.
    pub fn survey(
        &self,
        sources: &[PathBuf],
        loaded: impl FnOnce(Option<&index::Header>),
    ) -> Survey {
        if self.never.is_some() {
            loaded(None);
            return Survey::default();
        }
        let old = index::Stored::load(&self.file);
        loaded(old.as_ref().map(|o| &o.header));
        let walked = match index::walk(sources, &self.skip, index::now_ns()) {
            Ok(entries) => entries,
            Err(index::WalkError(why)) => {
                report::note(format_args!("the change index is not used: {why}"));
                return Survey::default();
            }
        };
        let mut survey = Survey {
            walked: Some(walked),
            old,
            changes: None,
        };
        // The server's newest snapshot is the one thing this cannot know:
        // assuming it, the comparison is made now, beside the connection.
        if let (Some(walked), Some(old)) = (survey.walked.as_deref(), survey.old.as_mut()) {
            let newest = Some(old.header.snapshot.as_str());
            if self
                .why_full(Some(walked), Some(&old.header), newest)
                .is_none()
            {
                survey.changes = Some(index::compare(old.entries(), walked));
                old.release();
            }
        }
        survey
    }

    /// Whether a backup with the index whose header is `header` may ask
    /// for its incremental transfer without pinging first: the index may
    /// be used if the server's newest snapshot is still the one it
    /// describes (which the server checks when asked), and the server,
    /// when last pinged, typed its refusals of the incremental mode, so
    /// that one is read as a reason for a full pass by its kind.
    pub fn may_skip_ping(&self, header: &index::Header) -> bool {
        header.server_protocol >= TYPED_FULL_PASS
            && self
                .why_full(Some(&[]), Some(header), Some(&header.snapshot))
                .is_none()
    }

    /// Why this attempt makes a full pass; `None`: the index may be used.
    /// `newest` is the store's newest snapshot, as its ping named it.
    pub fn why_full(
        &self,
        walked: Option<&[index::Entry]>,
        old: Option<&index::Header>,
        newest: Option<&str>,
    ) -> Option<String> {
        if let Some(never) = &self.never {
            return Some(never.clone());
        }
        if walked.is_none() {
            return Some("the walk of the sources failed".into());
        }
        if self.full {
            return Some("--full".into());
        }
        let Some(old) = old else {
            return Some("no change index yet (or it was unreadable)".into());
        };
        if old.fingerprint != self.fingerprint {
            return Some("the sources, exclusions or destination changed".into());
        }
        if newest != Some(old.snapshot.as_str()) {
            return Some(format!(
                "the newest snapshot is {}, not {}, which the change index describes",
                newest.unwrap_or("none"),
                old.snapshot
            ));
        }
        if old.incrementals + 1 >= self.every {
            return Some(format!(
                "one backup in {} is a full pass (full_scan_every)",
                self.every
            ));
        }
        None
    }

    /// After the snapshot `snapshot` was taken: the walk becomes the index.
    /// `incremental`: the transfer sent the survey's changes; `newest_before`
    /// the server's newest snapshot before it, and `server_protocol` the
    /// protocol it speaks, as far as this attempt knows them.
    pub fn commit(
        &self,
        survey: Survey,
        incremental: bool,
        newest_before: Option<&str>,
        snapshot: &str,
        server_protocol: u32,
    ) {
        let Survey {
            walked,
            old,
            changes,
        } = survey;
        let Some(mut entries) = walked else {
            return;
        };
        let incrementals = match (incremental, &old) {
            (true, Some(old)) => old.header.incrementals + 1,
            _ => 0,
        };
        if let (false, Some(old)) = (incremental, &old) {
            // rsync's quick check (size, mtime) may have missed what the
            // old index saw change (an mtime put back): the next
            // incremental sends it again.
            if newest_before == Some(old.header.snapshot.as_str()) {
                match &changes {
                    // Compared already (and the old records freed).
                    Some(changes) => index::mark_unsure(&changes.send, &mut entries),
                    None => index::mark_changed_unsure(old.entries(), &mut entries),
                }
            }
        }
        let new = index::Index {
            header: index::Header {
                snapshot: snapshot.to_owned(),
                fingerprint: self.fingerprint.clone(),
                incrementals,
                entries: entries.len() as u64,
                server_protocol,
            },
            entries,
        };
        if let Err(e) = new.save(&self.file) {
            report::warn(format_args!(
                "cannot write the change index (the next backup is a full pass): {e}"
            ));
            let _ = std::fs::remove_file(&self.file);
        }
    }
}

/// What the walk before a transfer found, the index it is compared with,
/// and what changed, if the index may be used.
#[derive(Debug, Default)]
pub struct Survey {
    /// The sources' entries; `None`: not walked, or the walk failed.
    pub walked: Option<Vec<index::Entry>>,
    /// The index as stored (only its header, once compared).
    pub old: Option<index::Stored>,
    /// What changed since `old`, compared only if the index may be used
    /// should the server's newest snapshot be the one `old` describes.
    pub changes: Option<index::Changes>,
}

/// An absolute path rsync's `--relative` reads as written: no trailing
/// `/`, no empty, `.` or `..` components.
fn plain_absolute(path: &Path) -> bool {
    let bytes = path.as_os_str().as_encoded_bytes();
    bytes == b"/"
        || (bytes.starts_with(b"/")
            && bytes[1..]
                .split(|&b| b == b'/')
                .all(|c| !c.is_empty() && c != b"." && c != b".."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::backup::plan::Exclusion;

    fn settings(every: u32) -> Settings {
        let config = crate::client::config::ClientConfig {
            name: Some("host.example".into()),
            full_scan_every: every,
            ..Default::default()
        };
        let flags = crate::client::settings::Flags {
            destination: Some("bb@backup.example"),
            ..Default::default()
        };
        Settings::resolved_for_tests(config, &flags)
    }

    fn plan(excludes: Vec<Exclusion>) -> Plan {
        Plan {
            sources: vec!["/home".into()],
            excludes,
        }
    }

    fn mount(dir: &str) -> Exclusion {
        Exclusion {
            pattern: format!("{dir}/*"),
            why: "a mount".into(),
            requested: false,
            contents_of: Some(dir.into()),
        }
    }

    fn policy(every: u32, full: bool) -> IndexSettings {
        IndexSettings::new(
            Some("/nonexistent/index".into()),
            &settings(every),
            &plan(vec![mount("/home/nfs")]),
            full,
        )
    }

    /// The header of an index of the newest snapshot `snapshot`, after
    /// `incrementals` incremental backups, with `fingerprint`, from a
    /// server of protocol 6.
    fn stored(snapshot: &str, fingerprint: &str, incrementals: u32) -> index::Header {
        index::Header {
            snapshot: snapshot.into(),
            fingerprint: fingerprint.into(),
            incrementals,
            entries: 0,
            server_protocol: 6,
        }
    }

    #[test]
    fn why_full_names_the_first_reason() {
        let p = policy(7, false);
        let walked: &[index::Entry] = &[];
        let fp = p.fingerprint.clone();
        let newest = Some("2026-01-02T03:04:05Z");
        let good = stored("2026-01-02T03:04:05Z", &fp, 0);
        assert_eq!(p.why_full(Some(walked), Some(&good), newest), None);
        /// What was walked, the index, and the reason expected.
        type Case<'a> = (Option<&'a [index::Entry]>, Option<index::Header>, &'a str);
        let cases: Vec<Case> = vec![
            (
                None,
                Some(stored("2026-01-02T03:04:05Z", &fp, 0)),
                "the walk of the sources failed",
            ),
            (Some(walked), None, "no change index yet"),
            (
                Some(walked),
                Some(stored("2026-01-02T03:04:05Z", "other", 0)),
                "the sources, exclusions or destination changed",
            ),
            (
                Some(walked),
                Some(stored("2026-01-01T00:00:00Z", &fp, 0)),
                "the newest snapshot is 2026-01-02T03:04:05Z, not 2026-01-01T00:00:00Z",
            ),
            (
                Some(walked),
                Some(stored("2026-01-02T03:04:05Z", &fp, 6)),
                "one backup in 7 is a full pass",
            ),
        ];
        for (walked, old, why) in cases {
            let got = p.why_full(walked, old.as_ref(), newest).unwrap_or_default();
            assert!(got.starts_with(why), "{got:?} is not {why:?}");
        }
        // The sixth incremental in a row is still one.
        let five = stored("2026-01-02T03:04:05Z", &fp, 5);
        assert_eq!(p.why_full(Some(walked), Some(&five), newest), None);
        // --full wins over a good index.
        let full = policy(7, true);
        assert_eq!(
            full.why_full(Some(walked), Some(&good), newest).as_deref(),
            Some("--full")
        );
    }

    /// The ping is left out only when the index would be used if the
    /// server's newest snapshot is the one it describes, and the server
    /// typed its refusals of the incremental mode when last pinged.
    #[test]
    fn when_the_ping_is_left_out() {
        let p = policy(7, false);
        let fp = p.fingerprint.clone();
        let good = stored("2026-01-02T03:04:05Z", &fp, 0);
        assert!(p.may_skip_ping(&good));
        let typed = index::Header {
            server_protocol: crate::protocol::TYPED_FULL_PASS,
            ..good.clone()
        };
        assert!(p.may_skip_ping(&typed));
        for server_protocol in [0, 3] {
            let older = index::Header {
                server_protocol,
                ..good.clone()
            };
            assert!(!p.may_skip_ping(&older), "protocol {server_protocol}");
        }
        assert!(!p.may_skip_ping(&stored("2026-01-02T03:04:05Z", "other", 0)));
        assert!(!p.may_skip_ping(&stored("2026-01-02T03:04:05Z", &fp, 6)));
        assert!(!policy(7, true).may_skip_ping(&good));
        assert!(!policy(1, false).may_skip_ping(&good));
    }

    #[test]
    fn some_plans_never_use_the_index() {
        let walked: &[index::Entry] = &[];
        let never = |p: IndexSettings| p.why_full(Some(walked), None, None).unwrap();
        assert_eq!(never(policy(1, false)), "full_scan_every is 1");
        let theirs = Exclusion {
            pattern: "*.tmp".into(),
            why: "config.toml".into(),
            requested: true,
            contents_of: None,
        };
        let p = IndexSettings::new(
            Some("/x/index".into()),
            &settings(7),
            &plan(vec![theirs]),
            false,
        );
        assert!(never(p).starts_with("the exclude pattern \"*.tmp\" (config.toml)"));
        let odd = Plan {
            sources: vec!["/home/".into()],
            excludes: Vec::new(),
        };
        let p = IndexSettings::new(Some("/x/index".into()), &settings(7), &odd, false);
        assert!(never(p).contains("not a plain absolute path"));
        // A one-off backup keeps no index.
        let p = IndexSettings::new(None, &settings(7), &plan(Vec::new()), false);
        assert!(never(p).contains("no configuration directory"));
    }

    #[test]
    fn the_fingerprint_holds_the_plan() {
        let a = policy(7, false);
        let other = IndexSettings::new(
            Some("/x/index".into()),
            &settings(7),
            &plan(vec![mount("/home/other")]),
            false,
        );
        assert_ne!(a.fingerprint, other.fingerprint);
        assert!(
            a.fingerprint
                .starts_with("index 1\ndestination bb@backup.example\nsource /home\n"),
            "{}",
            a.fingerprint
        );
        assert_eq!(a.skip, [PathBuf::from("/home/nfs")]);
    }

    #[test]
    fn plain_absolute_paths() {
        for ok in ["/", "/home", "/a/b c/d"] {
            assert!(plain_absolute(Path::new(ok)), "{ok}");
        }
        for bad in ["", "home", "/home/", "/a//b", "/a/./b", "/a/..", "//"] {
            assert!(!plain_absolute(Path::new(bad)), "{bad}");
        }
    }
}
