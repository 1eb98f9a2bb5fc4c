//! What a backup sends: the sources, and every exclude pattern with the
//! reason it is there.
//!
//! Some patterns are automatic — mounts that are not local disks
//! (`sys::mountinfo`), and a store on this machine that lies inside the
//! sources (never backed up into itself) — and some the person asked for
//! (config file, `--exclude`, and the `excludes` file they may have
//! forgotten). A pattern that leaves out exactly a directory's contents
//! says so, because the change index's walk can then apply it exactly
//! (see [`super::index_policy`]). `verify` leaves out what this plan
//! leaves out ([`exclude_patterns`]).

use std::path::{Path, PathBuf};

use crate::client::config::check_source;
use crate::client::settings::{Excludes, Settings};
use crate::error::Result;
use crate::exec::rsync::exclude_contents_of;
use crate::sys::mountinfo;

/// The sources and exclusions of one backup.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Absolute paths that exist.
    pub sources: Vec<PathBuf>,
    pub excludes: Vec<Exclusion>,
}

/// One rsync exclude pattern and why it is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclusion {
    pub pattern: String,
    pub why: String,
    /// The person asked for it (config, flag): no need to tell them again.
    pub requested: bool,
    /// The pattern leaves out everything below this directory and nothing
    /// else (`exclude_contents_of`): the change index's walk can apply it
    /// exactly. `None`: a pattern of the person's, which only rsync reads.
    pub contents_of: Option<PathBuf>,
}

impl Exclusion {
    fn automatic(pattern: String, why: String) -> Self {
        Exclusion {
            pattern,
            why,
            requested: false,
            contents_of: None,
        }
    }

    /// Everything below `dir`, and nothing else.
    fn contents_of(dir: &Path, why: String) -> Self {
        Exclusion {
            contents_of: Some(dir.to_path_buf()),
            ..Exclusion::automatic(exclude_contents_of(dir), why)
        }
    }

    fn requested(pattern: String, why: &str) -> Self {
        Exclusion {
            pattern,
            why: why.to_owned(),
            requested: true,
            contents_of: None,
        }
    }
}

/// The plan of a backup with `settings` (its sources must exist), with
/// this machine's mounts; `excludes_file` names the excludes file in notes.
pub fn plan(settings: &Settings, excludes_file: &Path) -> Result<Plan> {
    let sources = settings
        .sources
        .iter()
        .map(|s| check_source(s))
        .collect::<Result<Vec<_>>>()?;
    let mounts = mountinfo::exclusions(&mountinfo::read()?, &sources);
    Ok(plan_of(
        sources,
        mounts,
        &settings.excludes,
        excludes_file,
        settings.destination.local_store(),
    ))
}

/// The plan of `sources` (checked) given the mounts to leave out, the
/// person's patterns and where the store is, if on this machine: pure.
fn plan_of(
    sources: Vec<PathBuf>,
    mounts: Vec<mountinfo::Excluded>,
    asked: &Excludes,
    excludes_file: &Path,
    local_store: Option<&Path>,
) -> Plan {
    let mut excludes: Vec<Exclusion> = mounts
        .into_iter()
        .map(|m| Exclusion::contents_of(&m.mount_point, m.reason))
        .collect();
    for p in &asked.configured {
        excludes.push(Exclusion::requested(p.clone(), "config.toml"));
    }
    for p in &asked.file {
        // Listed in a file the person may have forgotten: worth a note.
        excludes.push(Exclusion::automatic(
            p.clone(),
            excludes_file.display().to_string(),
        ));
    }
    for p in &asked.flags {
        excludes.push(Exclusion::requested(p.clone(), "--exclude"));
    }
    if let Some(store) = local_store {
        // Never back the store up into itself.
        if sources.iter().any(|s| store.starts_with(s)) {
            excludes.push(Exclusion::contents_of(
                store,
                "the backup store itself".to_owned(),
            ));
        }
    }
    Plan { sources, excludes }
}

/// The rsync exclude patterns a backup of `sources` (which must exist)
/// would use — automatic (mounts, the local store) and configured alike —
/// so `verify` leaves out exactly what backups leave out.
pub fn exclude_patterns(settings: &Settings, sources: &[PathBuf]) -> Result<Vec<String>> {
    let settings = Settings {
        sources: sources.to_vec(),
        ..settings.clone()
    };
    let plan = plan(&settings, Path::new("excludes"))?;
    Ok(plan.excludes.into_iter().map(|e| e.pattern).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked() -> Excludes {
        Excludes {
            configured: vec!["*.tmp".into()],
            file: vec!["/var/cache/*".into()],
            flags: vec!["*.iso".into()],
        }
    }

    fn mount(at: &str, why: &str) -> mountinfo::Excluded {
        mountinfo::Excluded {
            mount_point: at.into(),
            reason: why.into(),
        }
    }

    #[test]
    fn mounts_first_then_what_the_person_asked_in_order() {
        let plan = plan_of(
            vec!["/".into()],
            vec![mount("/proc", "virtual filesystem proc")],
            &asked(),
            Path::new("/etc/byteback/excludes"),
            None,
        );
        let shown: Vec<(&str, &str, bool)> = plan
            .excludes
            .iter()
            .map(|e| (e.pattern.as_str(), e.why.as_str(), e.requested))
            .collect();
        assert_eq!(
            shown,
            [
                ("/proc/*", "virtual filesystem proc", false),
                ("*.tmp", "config.toml", true),
                ("/var/cache/*", "/etc/byteback/excludes", false),
                ("*.iso", "--exclude", true),
            ]
        );
        // Only the mount's pattern is one the walk can apply exactly.
        assert_eq!(plan.excludes[0].contents_of, Some(PathBuf::from("/proc")));
        assert!(plan.excludes[1..].iter().all(|e| e.contents_of.is_none()));
    }

    #[test]
    fn a_local_store_inside_the_sources_is_left_out() {
        let none = Excludes::default();
        let file = Path::new("excludes");
        let inside = plan_of(
            vec!["/srv".into(), "/home".into()],
            Vec::new(),
            &none,
            file,
            Some(Path::new("/srv/backups")),
        );
        assert_eq!(
            inside.excludes,
            [Exclusion {
                pattern: exclude_contents_of(Path::new("/srv/backups")),
                why: "the backup store itself".into(),
                requested: false,
                contents_of: Some("/srv/backups".into()),
            }]
        );
        let outside = plan_of(
            vec!["/home".into()],
            Vec::new(),
            &none,
            file,
            Some(Path::new("/srv/backups")),
        );
        assert!(outside.excludes.is_empty());
        // A store that is a source's parent is not inside it.
        let above = plan_of(
            vec!["/srv/backups/x".into()],
            Vec::new(),
            &none,
            file,
            Some(Path::new("/srv")),
        );
        assert!(above.excludes.is_empty());
    }
}
