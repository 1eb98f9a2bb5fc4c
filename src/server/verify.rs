//! `byteback-server verify`: is every snapshot still what byteback made?
//!
//! For every client (or one), each snapshot must be:
//!
//! - **immutable**: on btrfs a read-only subvolume (its `ro` property);
//!   on a plain store a real directory of its own (not a symlink, not
//!   `current` itself). Files that a plain `current` shares with a
//!   snapshot are `--link-dest` links, which a plain receive never writes
//!   (`--ignore-existing`, never `--inplace`), so they are legitimate;
//! - **complete**: the client's directory holds nothing byteback does not
//!   know. Known are `current`, snapshots, their `<snapshot>.partial`
//!   markers (and a marker's `.<name>.tmp-<pid>` left by a crash), a plain
//!   store's interrupted attempts `.partial-<32 digits>` and deletions in
//!   progress `.deleting-<snapshot>` / `.deleting-current-<digits>`, and
//!   btrfs's `.rollback-current`, and hardened mode's `.records`. Anything
//!   else is reported;
//! - **readable**: every entry's fake-super metadata (`user.rsync.%stat`)
//!   parses — checked by walking it with the finder, exactly as `list`
//!   reads it.
//!
//! `--scrub` also runs `btrfs scrub start -B` on the store (root only, as a
//! rule: otherwise one line says what to run as root).

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::catalog::display_path;
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::names::{ClientName, SnapshotName};
use crate::store::{Backend, Store, btrfs};

/// One thing wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub client: Option<String>,
    pub snapshot: Option<String>,
    /// `writable`, `not-a-subvolume`, `not-a-directory`, `stray`,
    /// `metadata`, `unreadable`, `scrub`.
    pub kind: &'static str,
    /// A client path inside the snapshot, or a name in the client's directory.
    pub path: Option<Vec<u8>>,
    pub detail: String,
}

/// What a name in a client's directory is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Current,
    Snapshot(SnapshotName),
    /// Something byteback makes and knows (markers, attempts, deletions).
    Known,
    /// Something byteback never makes.
    Stray,
}

/// Classifies a name in a client's directory (see the module's list).
pub fn classify(name: &[u8]) -> Entry {
    let Ok(name) = std::str::from_utf8(name) else {
        return Entry::Stray;
    };
    let digits = |s: &str, n: Option<usize>| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && n.is_none_or(|n| s.len() == n)
    };
    if name == "current" {
        return Entry::Current;
    }
    if let Some(s) = SnapshotName::parse(name) {
        return Entry::Snapshot(s);
    }
    let known = name
        .strip_suffix(".partial")
        .is_some_and(|s| SnapshotName::parse(s).is_some())
        || name
            .strip_prefix(".partial-")
            .is_some_and(|s| digits(s, Some(32)))
        || name.strip_prefix(".deleting-").is_some_and(|s| {
            SnapshotName::parse(s).is_some()
                || s.strip_prefix("current-").is_some_and(|d| digits(d, None))
        })
        || name == ".rollback-current"
        // The receiver's log of a running transfer (lifecycle::changelog).
        || name == crate::lifecycle::changelog::INCOMING
        // Hardened mode keeps the client's records here.
        || name == crate::store::RECORDS_DIR
        || name
            .strip_prefix('.')
            .and_then(|s| s.rsplit_once(".partial.tmp-"))
            .is_some_and(|(s, pid)| SnapshotName::parse(s).is_some() && digits(pid, None));
    if known { Entry::Known } else { Entry::Stray }
}

/// Checks one client; problems go to `found`. Returns (snapshots, files).
fn check_client(
    store: &Store,
    client: &ClientName,
    found: &mut Vec<Problem>,
) -> Result<(u64, u64)> {
    let dir = store.client_dir(client);
    let problem = |snapshot: Option<&str>, kind, path: Option<Vec<u8>>, detail: String| Problem {
        client: Some(client.to_string()),
        snapshot: snapshot.map(str::to_owned),
        kind,
        path,
        detail,
    };
    let current_ino = std::fs::symlink_metadata(dir.join("current"))
        .map(|m| m.ino())
        .ok();
    let mut snapshots = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| Error::io("cannot list", &dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        match classify(name.as_bytes()) {
            Entry::Current | Entry::Known => {}
            Entry::Snapshot(s) => snapshots.push(s),
            Entry::Stray => found.push(problem(
                None,
                "stray",
                Some(name.as_bytes().to_vec()),
                format!(
                    "{} in {} is nothing byteback makes: a leftover or a stranger; look at it and remove it",
                    display_path(name.as_bytes()),
                    dir.display()
                ),
            )),
        }
    }
    let btrfs_store = store.backend().kind() == Backend::Btrfs;
    let mut files = 0;
    for s in &snapshots {
        let path = dir.join(s.as_str());
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                found.push(problem(
                    Some(s.as_str()),
                    "unreadable",
                    None,
                    format!("cannot stat {}: {e}", path.display()),
                ));
                continue;
            }
        };
        if !meta.is_dir() {
            found.push(problem(
                Some(s.as_str()),
                "not-a-directory",
                None,
                format!(
                    "{} is not a directory (a symlink or file in a snapshot's place)",
                    path.display()
                ),
            ));
            continue;
        }
        if btrfs_store {
            if !btrfs::is_subvolume(&path) {
                found.push(problem(
                    Some(s.as_str()),
                    "not-a-subvolume",
                    None,
                    format!("{} is a plain directory, not a read-only btrfs snapshot, so nothing keeps it from being written", path.display()),
                ));
            } else {
                match btrfs::is_readonly(&path) {
                    Ok(true) => {}
                    Ok(false) => found.push(problem(
                        Some(s.as_str()),
                        "writable",
                        None,
                        format!(
                            "{} is writable: its read-only flag was cleared; check it, then as root: btrfs property set -ts {} ro true",
                            path.display(),
                            path.display()
                        ),
                    )),
                    Err(e) => found.push(problem(Some(s.as_str()), "unreadable", None, format!("cannot read the ro property of {}: {e}", path.display()))),
                }
            }
        } else if current_ino == Some(meta.ino()) {
            found.push(problem(
                Some(s.as_str()),
                "not-a-directory",
                None,
                format!(
                    "{} is the same directory as current, which backups write into",
                    path.display()
                ),
            ));
        }
        let patterns = [
            crate::finder::Pattern::parse(b"/***").map_err(|e| Error::Command(format!("{e}")))?
        ];
        let walked = crate::finder::walk(
            &path,
            &patterns,
            |w| {
                found.push(problem(
                    Some(s.as_str()),
                    "metadata",
                    Some(w.path.clone()),
                    format!("{}: {}", display_path(&w.path), w.error),
                ))
            },
            |_| {
                files += 1;
                std::ops::ControlFlow::Continue(())
            },
        );
        if let Err(e) = walked {
            found.push(problem(
                Some(s.as_str()),
                "unreadable",
                None,
                format!("cannot read {}: {e}", path.display()),
            ));
        }
    }
    Ok((snapshots.len() as u64, files))
}

/// `btrfs scrub start -B` on the store: a problem if it found errors; a
/// note (not a problem) if this user may not run it.
fn scrub(store: &Store, found: &mut Vec<Problem>, notes: &mut Vec<String>) {
    let root = store.root();
    if store.backend().kind() != Backend::Btrfs {
        notes.push(format!(
            "scrub: {} is a plain store; scrubbing is for btrfs",
            root.display()
        ));
        return;
    }
    let command = format!(
        "btrfs scrub start -B {}",
        crate::quote::shell_word(&root.to_string_lossy())
    );
    // Scrubbing is root's (CAP_SYS_ADMIN): the backup user is told how,
    // rather than shown btrfs's refusal.
    if !rustix::process::geteuid().is_root() {
        notes.push(format!("scrub: needs root; as root run: {command}"));
        return;
    }
    let out = Cmd::new("btrfs")
        .args(["scrub", "start", "-B"])
        .arg(root)
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            found.push(Problem {
                client: None,
                snapshot: None,
                kind: "scrub",
                path: None,
                detail: format!("cannot run {command}: {e}"),
            });
            return;
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = text
        .lines()
        .find(|l| l.trim_start().starts_with("Error summary:"))
        .map(|l| l.trim().to_owned());
    match summary {
        Some(s) if out.status.success() && s.contains("no errors found") => {
            notes.push(format!("scrub: {s}"))
        }
        Some(s) => found.push(Problem {
            client: None,
            snapshot: None,
            kind: "scrub",
            path: None,
            detail: format!("{command}: {s}"),
        }),
        None => found.push(Problem {
            client: None,
            snapshot: None,
            kind: "scrub",
            path: None,
            detail: format!(
                "{command} failed: {}",
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" / ")
            ),
        }),
    }
}

/// `byteback-server verify`.
pub fn run(store_root: &Path, client: Option<&str>, do_scrub: bool, json: bool) -> Result<u8> {
    let store = crate::lifecycle::open_store(store_root)?;
    let clients = match client {
        Some(c) => {
            let c = ClientName::new(c)?;
            if !store.has_client(&c) {
                return Err(crate::store::no_space(&c));
            }
            vec![c]
        }
        None => store.clients()?,
    };
    let (mut found, mut notes) = (Vec::new(), Vec::new());
    let (mut snapshots, mut files) = (0, 0);
    for c in &clients {
        let (s, f) = check_client(&store, c, &mut found)?;
        snapshots += s;
        files += f;
    }
    if do_scrub {
        scrub(&store, &mut found, &mut notes);
    }
    let mut lines: Vec<String> = Vec::new();
    if json {
        lines.extend(found.iter().map(|p| json_line(p).to_string()));
        lines.push(
            serde_json::json!({
                "kind": "summary",
                "clients": clients.len(),
                "snapshots": snapshots,
                "files": files,
                "problems": found.len(),
                "notes": notes,
            })
            .to_string(),
        );
    } else {
        for p in &found {
            let place = match (&p.client, &p.snapshot) {
                (Some(c), Some(s)) => format!("{c} {s}"),
                (Some(c), None) => c.clone(),
                _ => "store".to_owned(),
            };
            lines.push(format!("{place}: {}: {}", p.kind, p.detail.escape_debug()));
        }
        lines.extend(notes.iter().cloned());
        lines.push(format!(
            "Verified {} client(s), {snapshots} snapshot(s), {files} file(s): {} problem(s).",
            clients.len(),
            found.len()
        ));
    }
    for line in lines {
        println!("{line}");
    }
    if found.is_empty() {
        Ok(0)
    } else {
        Err(Error::Mismatch(format!(
            "{} problem(s) in the store's snapshots; see above",
            found.len()
        )))
    }
}

fn json_line(p: &Problem) -> serde_json::Value {
    let mut value = serde_json::json!({
        "kind": p.kind,
        "client": p.client,
        "snapshot": p.snapshot,
        "path": p.path.as_deref().map(String::from_utf8_lossy),
        "detail": p.detail,
    });
    if let Some(path) = p
        .path
        .as_deref()
        .filter(|b| std::str::from_utf8(b).is_err())
    {
        value["path_encoded"] = crate::protocol::wire::encode_arg(path).into();
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_byteback_makes_and_strangers() {
        let snap = "2026-11-26T03:00:12Z";
        assert_eq!(classify(b"current"), Entry::Current);
        assert!(matches!(classify(snap.as_bytes()), Entry::Snapshot(_)));
        assert!(matches!(
            classify(b"2026-11-26T03:00+0000"),
            Entry::Snapshot(_)
        ));
        for known in [
            format!("{snap}.partial"),
            format!(".partial-{}", "0".repeat(32)),
            format!(".deleting-{snap}"),
            ".deleting-current-1764126012000000000".to_owned(),
            ".rollback-current".to_owned(),
            format!(".{snap}.partial.tmp-4242"),
        ] {
            assert_eq!(classify(known.as_bytes()), Entry::Known, "{known}");
        }
        for stray in [
            ".partial-xyz".to_owned(),
            format!(".partial-{}", "0".repeat(31)),
            ".deleting-xyz".to_owned(),
            ".deleting-current-".to_owned(),
            "notes.txt".to_owned(),
            "2026-11-26T03:00:12".to_owned(),
            format!("{snap}.partial.old"),
            format!(".{snap}.partial.tmp-x"),
            ".rollback-current2".to_owned(),
        ] {
            assert_eq!(classify(stray.as_bytes()), Entry::Stray, "{stray}");
        }
        assert_eq!(classify(b"\xff"), Entry::Stray);
    }

    #[test]
    fn problems_print_as_json_with_encoded_paths() {
        let p = Problem {
            client: Some("host.example".into()),
            snapshot: None,
            kind: "stray",
            path: Some(b".partial-\xff".to_vec()),
            detail: "x".into(),
        };
        let j = json_line(&p);
        assert_eq!(j["kind"], "stray");
        assert_eq!(j["path_encoded"], ".partial-%FF");
        assert!(j["snapshot"].is_null());
    }
}
