//! `byteback verify`: does a snapshot hold what this machine had when it
//! was taken?
//!
//! The snapshot's side comes from the server as a listing (`byteback list
//! --all --ns SNAPSHOT PATH/***`: the client's metadata, decoded from
//! rsync's fake-super xattrs exactly as `list` shows it, with nanosecond
//! mtimes) and, with `--checksum`, a content hash per regular file
//! (`byteback digest`). The live side is a walk of the same paths here,
//! leaving out what a backup leaves out (the same exclusion plan as
//! `backup`). [`compare`] — pure, over the two maps — then sorts every
//! difference into one of two kinds:
//!
//! - **changed since the backup**: the live file's mtime or ctime is newer
//!   than the backup's start (for a missing file: its nearest existing
//!   directory's), so the difference is just life going on;
//! - **differs although unchanged**: nothing on the live side moved since
//!   the backup, yet the snapshot disagrees — a corrupted backup, or a
//!   change the backup missed. These make the exit status 12.
//!
//! Memory holds both sides' metadata (some 200 bytes a file); the server's
//! side streams and is bounded there.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use crate::catalog::{self, display_path};
use crate::client::backup::plan;
use crate::client::backups::{self, Backups, Find, Opening};
use crate::client::config::ConfigDir;
use crate::client::settings::{Flags, Settings};
use crate::client::state;
use crate::error::{Error, Result};
use crate::finder::Meta;
use crate::finder::digest::{self, Digest};
use crate::names::SnapshotName;
use crate::protocol::DigestLine;

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;

/// What the person asked for.
#[derive(Debug, Clone, Default)]
pub struct VerifyArgs {
    /// The snapshot to compare with (default: the newest).
    pub snapshot: Option<String>,
    /// Compare contents too.
    pub checksum: bool,
    /// One JSON object per line.
    pub json: bool,
    /// What to compare (default: the configured sources).
    pub paths: Vec<PathBuf>,
}

/// A live file's facts: its metadata as the snapshot would hold it, and
/// its ctime (which no tool can set back).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Live {
    pub meta: Meta,
    /// (seconds, nanoseconds).
    pub ctime: (i64, u32),
}

impl Live {
    /// Whether it changed (content, metadata or entries) after `since`.
    fn changed_after(&self, since: (i64, u32)) -> bool {
        (self.meta.mtime, self.meta.mtime_nsec) > since || self.ctime > since
    }
}

/// What kind of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// In both, not the same.
    Differs,
    /// In the snapshot, gone from this machine.
    Missing,
    /// On this machine, not in the snapshot (nor left out by the plan).
    Extra,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Differs => "differs",
            Kind::Missing => "missing",
            Kind::Extra => "extra",
        }
    }
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: Vec<u8>,
    pub kind: Kind,
    /// What differs: `type`, `mode`, `uid`, `gid`, `size`, `mtime`,
    /// `target`, `device`, `content` (empty for missing and extra).
    pub fields: Vec<&'static str>,
    /// The live side moved since the backup, which explains it.
    pub changed_since_backup: bool,
}

/// The fields in which the snapshot's `s` and the live `l` differ. The
/// mtime's nanoseconds count where the snapshot holds them (not 0); a
/// directory's size is the filesystem's business, never compared.
pub fn differing_fields(s: &Meta, l: &Meta) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if s.mode & S_IFMT != l.mode & S_IFMT {
        fields.push("type");
        return fields;
    }
    let kind = s.mode & S_IFMT;
    // A symlink's own permissions mean nothing on Linux.
    if kind != S_IFLNK && s.mode & 0o7777 != l.mode & 0o7777 {
        fields.push("mode");
    }
    if s.uid != l.uid {
        fields.push("uid");
    }
    if s.gid != l.gid {
        fields.push("gid");
    }
    if kind != S_IFDIR && s.size != l.size {
        fields.push("size");
    }
    if s.mtime != l.mtime || (s.mtime_nsec != 0 && s.mtime_nsec != l.mtime_nsec) {
        fields.push("mtime");
    }
    if s.symlink_target != l.symlink_target {
        fields.push("target");
    }
    if s.rdev != l.rdev {
        fields.push("device");
    }
    fields
}

/// Compares a snapshot's files with the live ones. `context` holds the
/// times of directories above the verified paths (to explain a missing
/// path whose whole tree went). `same_content(path)` is asked for regular
/// files equal in everything else, when contents are compared: `Some(false)`
/// when they differ, `None` when not compared. Findings come in path order.
pub fn compare(
    snapshot: &BTreeMap<Vec<u8>, Meta>,
    live: &BTreeMap<Vec<u8>, Live>,
    context: &BTreeMap<Vec<u8>, Live>,
    since: (i64, u32),
    same_content: &mut dyn FnMut(&[u8]) -> Option<bool>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (path, s) in snapshot {
        let Some(l) = live.get(path) else {
            // Deleting a file moves its directory's mtime and ctime.
            let explained = ancestors(path)
                .find_map(|a| live.get(a).or_else(|| context.get(a)))
                .is_some_and(|dir| dir.changed_after(since));
            findings.push(Finding {
                path: path.clone(),
                kind: Kind::Missing,
                fields: Vec::new(),
                changed_since_backup: explained,
            });
            continue;
        };
        let mut fields = differing_fields(s, &l.meta);
        if fields.is_empty() && s.mode & S_IFMT == S_IFREG && same_content(path) == Some(false) {
            fields.push("content");
        }
        if !fields.is_empty() {
            findings.push(Finding {
                path: path.clone(),
                kind: Kind::Differs,
                fields,
                changed_since_backup: l.changed_after(since),
            });
        }
    }
    for (path, l) in live {
        if !snapshot.contains_key(path) {
            // Creating (or moving in) a file sets its ctime.
            findings.push(Finding {
                path: path.clone(),
                kind: Kind::Extra,
                fields: Vec::new(),
                changed_since_backup: l.changed_after(since),
            });
        }
    }
    findings.sort_by(|a, b| a.path.cmp(&b.path));
    findings
}

/// `/a/b/c` → `/a/b`, `/a`, `/`.
fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(path);
    std::iter::from_fn(move || {
        let p = rest?;
        let cut = p.iter().rposition(|&b| b == b'/')?;
        let parent = if cut == 0 { &p[..1] } else { &p[..cut] };
        rest = (parent != p).then_some(parent);
        rest
    })
}

/// An rsync exclude pattern, matched as rsync does against absolute paths
/// of a `--relative` transfer: `/` first anchors it at the root; one with a
/// `/` elsewhere (or `**`) matches a whole trailing part of the path; else
/// only the last component; a trailing `/` matches directories only;
/// `dir/***` is `dir` and everything in it. `*` stays within a component,
/// `**` does not, `?` is one byte, `[...]` a set, `\` escapes.
#[derive(Debug, Clone)]
pub struct Exclude {
    pattern: Vec<u8>,
    anchored: bool,
    whole_path: bool,
    dirs_only: bool,
}

impl Exclude {
    pub fn new(pattern: &str) -> Exclude {
        let mut p = pattern.as_bytes().to_vec();
        let mut dirs_only = false;
        if p.ends_with(b"/***") {
            p.truncate(p.len() - 4);
        } else if p.len() > 1 && p.ends_with(b"/") {
            p.pop();
            dirs_only = true;
        }
        let anchored = p.starts_with(b"/");
        let whole_path = p.contains(&b'/') || p.windows(2).any(|w| w == b"**");
        Exclude {
            pattern: p,
            anchored,
            whole_path,
            dirs_only,
        }
    }

    /// Whether rsync would leave out the absolute `path`.
    pub fn matches(&self, path: &[u8], is_dir: bool) -> bool {
        if self.dirs_only && !is_dir {
            return false;
        }
        if self.anchored {
            return wildmatch(&self.pattern, path);
        }
        if !self.whole_path {
            let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
            return wildmatch(&self.pattern, name);
        }
        // Any trailing run of whole components.
        path.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .any(|(i, _)| wildmatch(&self.pattern, &path[i + 1..]))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Lit(u8),
    Any,
    Star,
    DoubleStar,
    Class(bool, Vec<(u8, u8)>),
}

fn tokens(p: &[u8]) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&b) = p.get(i) {
        i += 1;
        out.push(match b {
            b'\\' => {
                let lit = p.get(i).copied().unwrap_or(b'\\');
                i += 1;
                Tok::Lit(lit)
            }
            b'?' => Tok::Any,
            b'*' if p.get(i) == Some(&b'*') => {
                while p.get(i) == Some(&b'*') {
                    i += 1;
                }
                Tok::DoubleStar
            }
            b'*' => Tok::Star,
            b'[' => match class(p, i) {
                Some((tok, next)) => {
                    i = next;
                    tok
                }
                None => Tok::Lit(b'['),
            },
            b => Tok::Lit(b),
        });
    }
    out
}

/// A `[...]` set starting after its `[` at `i`; the token and where it ends.
fn class(p: &[u8], mut i: usize) -> Option<(Tok, usize)> {
    let negated = matches!(p.get(i), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let b = *p.get(i)?;
        if b == b']' && !first {
            return Some((Tok::Class(negated, ranges), i + 1));
        }
        first = false;
        let lo = if b == b'\\' {
            i += 1;
            *p.get(i)?
        } else {
            b
        };
        i += 1;
        if p.get(i) == Some(&b'-') && p.get(i + 1).is_some_and(|&c| c != b']') {
            let hi = *p.get(i + 1)?;
            ranges.push((lo, hi));
            i += 2;
        } else {
            ranges.push((lo, lo));
        }
    }
}

/// rsync's wildcard match of a whole `text`; O(pattern × text).
fn wildmatch(pattern: &[u8], text: &[u8]) -> bool {
    let toks = tokens(pattern);
    // can[j]: the tokens so far can match text[..j].
    let mut can = vec![false; text.len() + 1];
    can[0] = true;
    for tok in &toks {
        let mut next = vec![false; text.len() + 1];
        for j in 0..=text.len() {
            match tok {
                Tok::Star | Tok::DoubleStar => {
                    let run_ok =
                        j > 0 && next[j - 1] && (*tok == Tok::DoubleStar || text[j - 1] != b'/');
                    next[j] = can[j] || run_ok;
                }
                _ if j == 0 => {}
                Tok::Lit(b) => next[j] = can[j - 1] && text[j - 1] == *b,
                Tok::Any => next[j] = can[j - 1] && text[j - 1] != b'/',
                Tok::Class(negated, ranges) => {
                    let c = text[j - 1];
                    let inside = ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
                    next[j] = can[j - 1] && c != b'/' && inside != *negated;
                }
            }
        }
        can = next;
    }
    can[text.len()]
}

/// Escapes a path for the glob language, so it matches only itself.
fn glob_literal(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + 8);
    for &b in path {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'{' | b'}' | b',' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// The pattern for `path` and everything below it, dot files included.
fn subtree_pattern(path: &[u8]) -> Vec<u8> {
    let mut p = glob_literal(path);
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(b"***");
    p
}

// Field types differ between architectures, hence the conversions.
#[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
fn live_of(path: &Path, m: &std::fs::Metadata) -> Live {
    let mode = m.mode();
    let kind = mode & S_IFMT;
    let rdev = matches!(kind, 0o020000 | 0o060000).then(|| {
        let dev = m.rdev();
        (rustix::fs::major(dev), rustix::fs::minor(dev))
    });
    let symlink_target = (kind == S_IFLNK)
        .then(|| std::fs::read_link(path).ok())
        .flatten()
        .map(|t| t.into_os_string().into_encoded_bytes());
    Live {
        meta: Meta {
            mode,
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: u32::try_from(m.mtime_nsec()).unwrap_or(0),
            rdev,
            symlink_target,
        },
        ctime: (m.ctime(), u32::try_from(m.ctime_nsec()).unwrap_or(0)),
    }
}

/// Walks `root` (absolute) without following symlinks, leaving out what
/// the excludes leave out (an excluded directory is not entered).
fn walk_live(root: &Path, excludes: &[Exclude], out: &mut BTreeMap<Vec<u8>, Live>) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                crate::report::warn(format_args!("cannot read {}: {e}", path.display()));
                continue;
            }
        };
        let bytes = path.as_os_str().as_bytes();
        if path != root && excludes.iter().any(|x| x.matches(bytes, meta.is_dir())) {
            continue;
        }
        out.insert(bytes.to_vec(), live_of(&path, &meta));
        if meta.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(entries) => stack.extend(entries.filter_map(|e| e.ok()).map(|e| e.path())),
                Err(e) => crate::report::warn(format_args!("cannot list {}: {e}", path.display())),
            }
        }
    }
}

/// The paths to verify: absolute, without a trailing `/`.
fn paths(args: &VerifyArgs, configured: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let given = if args.paths.is_empty() {
        configured
    } else {
        &args.paths
    };
    given
        .iter()
        .map(|p| {
            let abs = std::path::absolute(p).map_err(|e| Error::io("cannot resolve", p, e))?;
            let text = abs.as_os_str().as_bytes();
            let trimmed = match text.len() {
                1 => text,
                _ => text.strip_suffix(b"/").unwrap_or(text),
            };
            if trimmed.split(|&b| b == b'/').any(|c| c == b"..") {
                return Err(Error::Usage(format!(
                    "{}: '..' is not allowed in a path to verify",
                    abs.display()
                )));
            }
            Ok(PathBuf::from(std::ffi::OsStr::from_bytes(trimmed)))
        })
        .collect()
}

/// The snapshot's side: every file under `patterns`, with nanosecond mtimes.
fn snapshot_side(
    backups: &dyn Backups,
    name: &SnapshotName,
    patterns: &[Vec<u8>],
) -> Result<BTreeMap<Vec<u8>, Meta>> {
    let mut map = BTreeMap::new();
    let find = Find {
        all: true,
        nanoseconds: true,
        snapshots: glob_literal(name.as_str().as_bytes()),
        patterns: patterns.to_vec(),
    };
    backups.find(&find, &mut |row: catalog::Row| {
        // One snapshot: each path comes once, from it.
        if row.snapshot == name.as_str() {
            map.insert(row.found.path, row.found.meta);
        }
        Ok(())
    })?;
    Ok(map)
}

/// The snapshot's content hashes of its regular files under `patterns`.
fn snapshot_digests(
    backups: &dyn Backups,
    name: &SnapshotName,
    patterns: &[Vec<u8>],
) -> Result<BTreeMap<Vec<u8>, Option<Digest>>> {
    let mut map = BTreeMap::new();
    // A digest request carries at most 64 patterns, in 4 KiB.
    for batch in batches(patterns) {
        backups.digest(name, &batch, &mut |line: DigestLine| {
            map.insert(line.path, line.digest);
            Ok(())
        })?;
    }
    Ok(map)
}

/// Patterns in groups that fit one request.
fn batches(patterns: &[Vec<u8>]) -> Vec<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut size = 0;
    for p in patterns {
        let cost = p.len() * 3 + 1;
        match out.last_mut() {
            Some(batch) if batch.len() < 64 && size + cost <= 3000 => {
                batch.push(p.clone());
                size += cost;
            }
            _ => {
                out.push(vec![p.clone()]);
                size = cost;
            }
        }
    }
    out
}

/// `byteback verify`.
pub fn run(dir: &ConfigDir, args: &VerifyArgs, destination: Option<&str>) -> Result<()> {
    let flags = Flags {
        destination,
        ..Flags::default()
    };
    let settings = Settings::resolve(dir, &flags)?;
    let paths = paths(args, &settings.sources)?;
    let existing: Vec<PathBuf> = paths
        .iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .cloned()
        .collect();
    let excludes: Vec<Exclude> = if existing.is_empty() {
        Vec::new()
    } else {
        plan::exclude_patterns(&settings, &existing)?
            .iter()
            .map(|p| Exclude::new(p))
            .collect()
    };
    let backups = backups::open(dir, &settings, Opening::READ)?;
    // One connection for every request.
    let backups = backups.session()?;
    let ping = backups.ping()?;
    if ping.protocol < 2 {
        return Err(Error::Unsupported(format!(
            "the {} speaks byteback protocol {}; verify needs 2 or later: upgrade byteback-server there",
            backups.describe(),
            ping.protocol
        )));
    }
    let snapshots: Vec<SnapshotName> = backups.snapshots()?.into_iter().map(|s| s.name).collect();
    let name = match &args.snapshot {
        Some(wanted) => snapshots
            .iter()
            .find(|s| s.as_str() == wanted)
            .cloned()
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "there is no snapshot {wanted}: `byteback snapshots` lists them"
                ))
            })?,
        None => snapshots.last().cloned().ok_or_else(|| {
            Error::NotFound("there is no snapshot to verify yet: run `byteback backup`".into())
        })?,
    };
    // Changes after the backup started explain a difference; the snapshot's
    // own time (when it ended) is the fallback when this machine's record
    // is of another backup.
    let since = state::load(dir)
        .filter(|s| s.snapshot.as_deref() == Some(name.as_str()))
        .map_or(name.time(), |s| s.started);
    let patterns: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| subtree_pattern(p.as_os_str().as_bytes()))
        .collect();
    let snapshot = snapshot_side(&*backups, &name, &patterns)?;
    let digests = if args.checksum {
        Some(snapshot_digests(&*backups, &name, &patterns)?)
    } else {
        None
    };
    drop(backups);
    let mut live = BTreeMap::new();
    let mut context = BTreeMap::new();
    for p in &paths {
        walk_live(p, &excludes, &mut live);
        for a in ancestors(p.as_os_str().as_bytes()) {
            let a = Path::new(std::ffi::OsStr::from_bytes(a));
            if let Ok(m) = std::fs::symlink_metadata(a) {
                context.insert(a.as_os_str().as_bytes().to_vec(), live_of(a, &m));
            }
        }
    }
    let mut hashed = std::collections::HashMap::new();
    let mut same_content = |path: &[u8]| -> Option<bool> {
        let digests = digests.as_ref()?;
        let Some(Some(stored)) = digests.get(path) else {
            // Unreadable on the server (it said why) counts as differing.
            return Some(false);
        };
        let here = std::fs::File::open(std::ffi::OsStr::from_bytes(path)).and_then(|file| {
            // Like the server: each inode hashed once, holes not read.
            let st = file.metadata()?;
            let key = (st.nlink() > 1).then(|| (st.dev(), st.ino()));
            if let Some(known) = key.and_then(|k| hashed.get(&k)) {
                return Ok(*known);
            }
            let d = digest::digest_sparse(&file, &mut |_, _| Ok(())).map_err(|e| match e {
                digest::DigestError::Read(e) => e,
                digest::DigestError::Stopped(e) => std::io::Error::other(e.to_string()),
            })?;
            if let Some(k) = key {
                hashed.insert(k, d);
            }
            Ok(d)
        });
        match here {
            Ok(here) => Some(here == *stored),
            Err(e) => {
                crate::report::warn(format_args!("cannot read {}: {e}", display_path(path)));
                None
            }
        }
    };
    let since_key = (since.as_second(), since.subsec_nanosecond().max(0) as u32);
    let findings = compare(&snapshot, &live, &context, since_key, &mut same_content);
    report(&findings, &name, since, snapshot.len(), args)
}

fn report(
    findings: &[Finding],
    name: &SnapshotName,
    since: Timestamp,
    files: usize,
    args: &VerifyArgs,
) -> Result<()> {
    use std::io::Write;
    let unexplained = findings.iter().filter(|f| !f.changed_since_backup).count();
    let changed = findings.len() - unexplained;
    let since_text = since.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut lines = Vec::new();
    if args.json {
        for f in findings {
            lines.push(json_line(f, name).to_string());
        }
        lines.push(
            serde_json::json!({
                "kind": "summary",
                "snapshot": name.as_str(),
                "since": since_text,
                "files": files,
                "checksum": args.checksum,
                "changed_since_backup": changed,
                "unexplained": unexplained,
            })
            .to_string(),
        );
    } else {
        if !findings.is_empty() {
            lines.push(format!(
                "{:<8}  {:<21}  {:<20}  path",
                "kind", "why", "differs in"
            ));
        }
        for f in findings {
            let why = if f.changed_since_backup {
                "changed since backup"
            } else {
                "unchanged since backup"
            };
            let fields = if f.fields.is_empty() {
                "-".to_owned()
            } else {
                f.fields.join(",")
            };
            lines.push(format!(
                "{:<8}  {why:<21}  {fields:<20}  {}",
                f.kind.as_str(),
                display_path(&f.path)
            ));
        }
        lines.push(format!(
            "Verified {files} file(s) of snapshot {name}{}: {changed} changed since the backup (started {since_text}), {unexplained} differ although unchanged.",
            if args.checksum {
                ", contents included"
            } else {
                " (metadata only; --checksum compares contents)"
            }
        ));
    }
    for line in lines {
        writeln!(out, "{line}").map_err(|e| Error::Io {
            what: "cannot write the report".into(),
            source: e,
        })?;
    }
    let _ = out.flush();
    if unexplained > 0 {
        return Err(Error::Mismatch(format!(
            "{unexplained} file(s) differ from snapshot {name} although they did not change since the backup: the backup is damaged or missed a change; the next backup sends them again"
        )));
    }
    Ok(())
}

/// One finding as one JSON object.
pub fn json_line(f: &Finding, name: &SnapshotName) -> serde_json::Value {
    let mut value = serde_json::json!({
        "kind": f.kind.as_str(),
        "path": String::from_utf8_lossy(&f.path),
        "fields": f.fields,
        "changed_since_backup": f.changed_since_backup,
        "snapshot": name.as_str(),
    });
    if std::str::from_utf8(&f.path).is_err() {
        value["path_encoded"] = crate::protocol::wire::encode_arg(&f.path).into();
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    const SINCE: (i64, u32) = (1_000, 500);

    fn file(size: u64, mtime: i64) -> Meta {
        Meta {
            mode: 0o100644,
            uid: 1000,
            gid: 100,
            size,
            mtime,
            mtime_nsec: 7,
            ..Meta::default()
        }
    }

    fn live(meta: Meta, ctime: i64) -> Live {
        Live {
            meta,
            ctime: (ctime, 0),
        }
    }

    fn map<T: Clone>(entries: &[(&str, T)]) -> BTreeMap<Vec<u8>, T> {
        entries
            .iter()
            .map(|(p, v)| (p.as_bytes().to_vec(), v.clone()))
            .collect()
    }

    fn no_content(_: &[u8]) -> Option<bool> {
        None
    }

    #[test]
    fn the_same_is_clean() {
        let dir = Meta {
            mode: 0o040755,
            size: 4096,
            ..file(0, 900)
        };
        let s = map(&[("/d", dir.clone()), ("/d/f", file(3, 900))]);
        // A directory's size is the filesystem's own.
        let l = map(&[
            ("/d", live(Meta { size: 60, ..dir }, 900)),
            ("/d/f", live(file(3, 900), 900)),
        ]);
        assert_eq!(
            compare(&s, &l, &BTreeMap::new(), SINCE, &mut no_content),
            []
        );
    }

    #[test]
    fn differences_are_explained_by_newer_times_only() {
        let s = map(&[
            ("/a", file(3, 900)),
            ("/b", file(3, 900)),
            ("/c", file(3, 900)),
            ("/d", file(3, 900)),
        ]);
        let l = map(&[
            // Rewritten after the backup: mtime newer.
            ("/a", live(file(4, 1_001), 1_001)),
            // chmod after the backup: only the ctime is newer.
            (
                "/b",
                live(
                    Meta {
                        mode: 0o100600,
                        ..file(3, 900)
                    },
                    1_002,
                ),
            ),
            // Different although nothing moved: a damaged backup.
            ("/c", live(file(5, 900), 900)),
            // Same second, other nanoseconds, nothing newer.
            (
                "/d",
                live(
                    Meta {
                        mtime_nsec: 8,
                        ..file(3, 900)
                    },
                    900,
                ),
            ),
        ]);
        let f = compare(&s, &l, &BTreeMap::new(), SINCE, &mut no_content);
        let got: Vec<(&[u8], Kind, Vec<&str>, bool)> = f
            .iter()
            .map(|f| {
                (
                    &f.path[..],
                    f.kind,
                    f.fields.clone(),
                    f.changed_since_backup,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (&b"/a"[..], Kind::Differs, vec!["size", "mtime"], true),
                (b"/b", Kind::Differs, vec!["mode"], true),
                (b"/c", Kind::Differs, vec!["size"], false),
                (b"/d", Kind::Differs, vec!["mtime"], false),
            ]
        );
        // The boundary: exactly `since` is not newer; a nanosecond more is.
        let at = map(&[("/a", live(file(4, 900), 1_000))]);
        let s1 = map(&[("/a", file(3, 900))]);
        assert!(
            !compare(&s1, &at, &BTreeMap::new(), (1_000, 0), &mut no_content)[0]
                .changed_since_backup
        );
        let after = map(&[(
            "/a",
            Live {
                ctime: (1_000, 1),
                ..at[&b"/a".to_vec()].clone()
            },
        )]);
        assert!(
            compare(&s1, &after, &BTreeMap::new(), (1_000, 0), &mut no_content)[0]
                .changed_since_backup
        );
    }

    #[test]
    fn nanoseconds_count_only_where_the_snapshot_has_them() {
        let s = Meta {
            mtime_nsec: 0,
            ..file(3, 900)
        };
        assert!(differing_fields(&s, &file(3, 900)).is_empty());
        assert_eq!(differing_fields(&file(3, 900), &s), ["mtime"]);
    }

    #[test]
    fn types_targets_devices_and_owners() {
        let link = |t: &[u8]| Meta {
            mode: 0o120777,
            size: t.len() as u64,
            symlink_target: Some(t.to_vec()),
            ..file(0, 900)
        };
        assert_eq!(differing_fields(&link(b"a"), &link(b"b")), ["target"]);
        // A symlink's permission bits are never compared.
        let odd = Meta {
            mode: 0o120700,
            ..link(b"a")
        };
        assert!(differing_fields(&link(b"a"), &odd).is_empty());
        assert_eq!(differing_fields(&link(b"a"), &file(1, 900)), ["type"]);
        let dev = |minor| Meta {
            mode: 0o020666,
            rdev: Some((1, minor)),
            ..file(0, 900)
        };
        assert_eq!(differing_fields(&dev(3), &dev(5)), ["device"]);
        let owned = Meta {
            uid: 0,
            gid: 0,
            ..file(3, 900)
        };
        assert_eq!(differing_fields(&file(3, 900), &owned), ["uid", "gid"]);
    }

    #[test]
    fn contents_are_asked_for_only_when_all_else_agrees() {
        let s = map(&[
            ("/same", file(3, 900)),
            ("/bad", file(3, 900)),
            ("/big", file(3, 900)),
        ]);
        let l = map(&[
            ("/same", live(file(3, 900), 900)),
            ("/bad", live(file(3, 900), 900)),
            ("/big", live(file(9, 900), 900)),
        ]);
        let mut asked = Vec::new();
        let f = compare(&s, &l, &BTreeMap::new(), SINCE, &mut |p| {
            asked.push(p.to_vec());
            Some(p != b"/bad")
        });
        assert_eq!(asked, [b"/bad".to_vec(), b"/same".to_vec()]);
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].kind, f[0].fields.clone()),
            (Kind::Differs, vec!["content"])
        );
        assert!(!f[0].changed_since_backup);
        assert_eq!(f[1].fields, ["size"]);
    }

    #[test]
    fn missing_and_extra_files() {
        let dir = |t| Meta {
            mode: 0o040755,
            ..file(0, t)
        };
        let s = map(&[
            ("/srv", dir(900)),
            ("/srv/new", dir(900)),
            ("/srv/new/gone", file(1, 900)),
            ("/srv/old", dir(900)),
            ("/srv/old/lost", file(1, 900)),
            ("/srv/tree", dir(900)),
            ("/srv/tree/x", file(1, 900)),
        ]);
        let l = map(&[
            ("/srv", live(dir(1_100), 1_100)),
            // A file deleted after the backup moved its directory on.
            ("/srv/new", live(dir(1_100), 1_100)),
            // One gone while its directory did not move: unexplained.
            ("/srv/old", live(dir(900), 900)),
            // A file created after the backup, and one that predates it.
            ("/srv/old/fresh", live(file(1, 800), 1_050)),
            ("/srv/old/missed", live(file(1, 800), 800)),
        ]);
        let f = compare(&s, &l, &BTreeMap::new(), SINCE, &mut no_content);
        let got: Vec<(String, Kind, bool)> = f
            .iter()
            .map(|f| (display_path(&f.path), f.kind, f.changed_since_backup))
            .collect();
        assert_eq!(
            got,
            [
                // Directories whose entries changed differ in mtime, explained.
                ("/srv".to_owned(), Kind::Differs, true),
                ("/srv/new".to_owned(), Kind::Differs, true),
                ("/srv/new/gone".to_owned(), Kind::Missing, true),
                ("/srv/old/fresh".to_owned(), Kind::Extra, true),
                ("/srv/old/lost".to_owned(), Kind::Missing, false),
                ("/srv/old/missed".to_owned(), Kind::Extra, false),
                // Its directory is gone too: the nearest one that is left tells.
                ("/srv/tree".to_owned(), Kind::Missing, true),
                ("/srv/tree/x".to_owned(), Kind::Missing, true),
            ]
        );
        // A verified path gone entirely: the directories above it tell.
        let s = map(&[("/srv/gone", file(1, 900))]);
        let ctx = map(&[("/srv", live(dir(900), 900))]);
        let f = compare(&s, &BTreeMap::new(), &ctx, SINCE, &mut no_content);
        assert!(!f[0].changed_since_backup);
    }

    #[test]
    fn ancestors_go_up_to_the_root() {
        let a: Vec<&[u8]> = ancestors(b"/a/b/c").collect();
        assert_eq!(a, [&b"/a/b"[..], b"/a", b"/"]);
        assert_eq!(ancestors(b"/").count(), 0);
        assert_eq!(ancestors(b"/a").collect::<Vec<_>>(), [&b"/"[..]]);
    }

    #[test]
    fn rsync_exclude_patterns() {
        let yes = |p: &str, path: &str, dir: bool| {
            assert!(
                Exclude::new(p).matches(path.as_bytes(), dir),
                "{p} should match {path}"
            )
        };
        let no = |p: &str, path: &str, dir: bool| {
            assert!(
                !Exclude::new(p).matches(path.as_bytes(), dir),
                "{p} should not match {path}"
            )
        };
        // What backup makes of a mount point: its contents, not itself.
        let mount = crate::exec::rsync::exclude_contents_of(Path::new("/mnt/a*b"));
        yes(&mount, "/mnt/a*b/x", false);
        yes(&mount, "/mnt/a*b/.hidden", true);
        no(&mount, "/mnt/a*b", true);
        no(&mount, "/mnt/aXb/x", false);
        // Anchored, unanchored, with slashes, directories only, ***.
        yes("/proc/*", "/proc/1", true);
        no("/proc/*", "/srv/proc/1", true);
        yes("*.tmp", "/srv/a/b.tmp", false);
        no("*.tmp", "/srv/a.tmp/b", false);
        yes("cache/*.bin", "/home/u/cache/x.bin", false);
        no("cache/*.bin", "/home/u/xcache/x.bin", false);
        yes("/var/**/log", "/var/a/b/log", false);
        yes("build/", "/src/build", true);
        no("build/", "/src/build", false);
        yes("/srv/keep/***", "/srv/keep", true);
        no("/srv/keep/***", "/srv/keeper", true);
        yes("file[0-9]", "/a/file7", false);
        no("file[!0-9]", "/a/file7", false);
        yes("?", "/a/b", false);
        no("/a?b", "/a/b", false);
        yes("core", "/x/core", false);
        no("core", "/x/core.1", false);
    }

    #[test]
    fn paths_become_literal_subtree_patterns() {
        assert_eq!(
            subtree_pattern(b"/srv/a*b{c,d}"),
            b"/srv/a\\*b\\{c\\,d\\}/***"
        );
        assert_eq!(subtree_pattern(b"/"), b"/***");
        let p = crate::finder::Pattern::parse(&subtree_pattern(b"/srv/a*b")).unwrap();
        assert!(p.matches(b"/srv/a*b") && p.matches(b"/srv/a*b/.x/y"));
        assert!(!p.matches(b"/srv/aXb"));
        let batched = batches(&vec![b"/x".to_vec(); 100]);
        assert_eq!(batched.iter().map(Vec::len).collect::<Vec<_>>(), [64, 36]);
    }
}
