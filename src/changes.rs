//! Each snapshot's change log: which paths a backup added, deleted,
//! changed in content or changed only in metadata, recorded by the server
//! from the transfer itself, so "what changed last night?" is answered
//! without walking two trees, and so the server can tell a backup unlike
//! every other (see [`Suspect`]).
//!
//! Where it comes from: the server's receiving rsync writes its itemized
//! log (`--log-file`, [`LOG_FORMAT`]) to a file the server readies for it
//! outside `current`; after each transfer the server folds that log into
//! the pending list of touched paths ([`parse_rsync_log`]), and adds the
//! paths it deleted itself (an incremental backup's `gone`). At the
//! snapshot, every touched path is classified by comparing the previous
//! snapshot and `current` ([`classify`]): only in the previous one is
//! *deleted*, only in `current` *added*, in both *content* (type, size,
//! mtime or symlink target differ) or *metadata* (mode, owner, or a hard
//! link that rsync reported). So what the log claims is checked against
//! the trees, and nothing the client sends is written as text: a file
//! name with a newline (rsync 3.2.7 writes it raw into its log) can add a
//! claimed path, but that path is then only listed if the trees agree, and
//! it can never hide a real line, whose fixed prefix starts a line.
//!
//! The log is kept beside the snapshot as `<snapshot>.changes`
//! ([`ChangeLog::render`]): counts, the number of files in the snapshot,
//! and up to [`MAX_PATHS`] paths, each encoded as a command-line word
//! ([`crate::quote::encode_arg`]); beyond that, counts only.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde::Serialize;

use crate::quote::{decode_arg, encode_arg};

/// rsync's log format for the receiver: the itemized flags and the name
/// (no `%L`: a name may contain ` -> `, and the targets are read from the
/// trees anyway).
pub const LOG_FORMAT: &str = "%i %n";

/// The most paths a change log lists; beyond, it keeps the counts only.
pub const MAX_PATHS: usize = 100_000;

/// The first line of a change log file.
const HEADER: &str = "byteback-changes 1";

/// What happened to one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Added,
    Deleted,
    Content,
    Metadata,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::Added => 'A',
            Kind::Deleted => 'D',
            Kind::Content => 'C',
            Kind::Metadata => 'M',
        }
    }
    fn of_letter(c: &str) -> Option<Self> {
        Some(match c {
            "A" => Kind::Added,
            "D" => Kind::Deleted,
            "C" => Kind::Content,
            "M" => Kind::Metadata,
            _ => return None,
        })
    }
}

/// What rsync's log said of a path: only whether it moved data (a hint:
/// [`classify`] decides from the trees).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// Created, transferred, or a changed symlink/device value.
    Data,
    /// Attributes only, or a hard link.
    Attributes,
    /// The modification time only (a directory an entry came to or left).
    Time,
    /// Deleted (by rsync, or by the server for an incremental backup).
    Gone,
}

impl Hint {
    fn letter(self) -> char {
        match self {
            Hint::Data => 'd',
            Hint::Attributes => 'a',
            Hint::Time => 't',
            Hint::Gone => 'g',
        }
    }
}

/// Parses rsync's log file (written with [`LOG_FORMAT`]) into the paths
/// it touched: lines that are not an itemized entry (rsync's own notes,
/// statistics, errors) are skipped, and a line that does not start with
/// rsync's `YYYY/MM/DD HH:MM:SS [PID] ` prefix continues the previous
/// name (a newline in a file name; rsync 3.5.0 escapes it as `\#012`).
pub fn parse_rsync_log(text: &[u8]) -> Vec<(Vec<u8>, Hint)> {
    let mut out: Vec<(Vec<u8>, Hint)> = Vec::new();
    let mut continues = false;
    for line in text.split(|&b| b == b'\n') {
        let Some(rest) = strip_prefix(line) else {
            if continues {
                if let Some((name, _)) = out.last_mut() {
                    name.push(b'\n');
                    name.extend_from_slice(&unescape(line));
                }
            }
            continue;
        };
        continues = false;
        if rest.len() < 13 || rest[11] != b' ' {
            continue;
        }
        let (flags, name) = (&rest[..11], &rest[12..]);
        let Some(hint) = hint_of(flags) else {
            continue;
        };
        let mut name = unescape(name);
        while name.len() > 1 && name.ends_with(b"/") {
            name.pop();
        }
        if name.is_empty() || name == b"." {
            continue;
        }
        out.push((name, hint));
        continues = true;
    }
    out
}

/// The line after rsync's log prefix `YYYY/MM/DD HH:MM:SS [PID] `.
fn strip_prefix(line: &[u8]) -> Option<&[u8]> {
    const DATE: &[u8] = b"0000/00/00 00:00:00 [";
    if line.len() < DATE.len() + 3 {
        return None;
    }
    for (b, shape) in line.iter().zip(DATE) {
        let ok = match shape {
            b'0' => b.is_ascii_digit(),
            other => b == other,
        };
        if !ok {
            return None;
        }
    }
    let rest = &line[DATE.len()..];
    let close = rest.iter().position(|&b| b == b']')?;
    if close == 0 || !rest[..close].iter().all(u8::is_ascii_digit) {
        return None;
    }
    rest.get(close + 1..)?.strip_prefix(b" ")
}

/// What an 11-character itemize string says, if it is one.
fn hint_of(flags: &[u8]) -> Option<Hint> {
    if flags == b"*deleting  " {
        return Some(Hint::Gone);
    }
    let (y, x) = (flags[0], flags[1]);
    if !b"<>ch.".contains(&y) || !b"fdLDS".contains(&x) {
        return None;
    }
    let attrs = &flags[2..];
    if !attrs.iter().all(|b| b"+. ?cstpoguax".contains(b)) {
        return None;
    }
    let new = attrs.iter().all(|&b| b == b'+');
    let data = matches!(y, b'<' | b'>') || attrs[0] == b'c' || (y == b'c' && new);
    let time_only = attrs
        .iter()
        .enumerate()
        .all(|(i, &b)| b == b'.' || b == b' ' || (i == 2 && matches!(b, b't' | b'T')));
    Some(match (data, time_only) {
        (true, _) => Hint::Data,
        (false, true) => Hint::Time,
        (false, false) => Hint::Attributes,
    })
}

/// Undoes rsync's `\#ooo` escapes (three octal digits).
fn unescape(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        if name[i] == b'\\'
            && name.get(i + 1) == Some(&b'#')
            && name.len() >= i + 5
            && name[i + 2..i + 5].iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let v = name[i + 2..i + 5]
                .iter()
                .fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
            if let Ok(b) = u8::try_from(v) {
                out.push(b);
                i += 5;
                continue;
            }
        }
        out.push(name[i]);
        i += 1;
    }
    out
}

/// One pending line (the server's own format, appended to between a
/// snapshot and the next): the hint letter, a space, the encoded path.
pub fn pending_line(path: &[u8], hint: Hint) -> String {
    format!("{} {}\n", hint.letter(), encode_arg(path))
}

/// How much rsync said changed in a path, across its lines: 0 the time
/// only (or nothing: deleted, or a path for the trees alone to judge), 1
/// attributes, 2 data.
pub type Level = u8;

/// Reads the pending lines back: every touched path, with the most any
/// line said changed ([`Level`]; malformed lines, which only the server
/// writes, are skipped).
pub fn parse_pending(text: &str) -> BTreeMap<Vec<u8>, Level> {
    let mut touched: BTreeMap<Vec<u8>, Level> = BTreeMap::new();
    for line in text.lines() {
        let Some((hint, path)) = line.split_once(' ') else {
            continue;
        };
        let Ok(path) = decode_arg(path) else {
            continue;
        };
        if path.is_empty()
            || path.starts_with(b"/")
            || path.split(|&b| b == b'/').any(|c| c == b"..")
        {
            continue;
        }
        let level = match hint {
            "d" => 2,
            "a" => 1,
            _ => 0,
        };
        let seen = touched.entry(path).or_default();
        *seen = (*seen).max(level);
    }
    touched
}

/// A snapshot's change log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChangeLog {
    pub added: u64,
    pub deleted: u64,
    pub content: u64,
    pub metadata: u64,
    /// Files (every entry but directories) in the snapshot, where known.
    pub files: Option<u64>,
    /// Whether the paths are all listed (else counts only).
    pub complete: bool,
    /// The paths, sorted, with what happened to each.
    pub paths: Vec<(Vec<u8>, Kind)>,
}

impl ChangeLog {
    /// A log of `changes`, listing the paths unless there are more than
    /// [`MAX_PATHS`].
    pub fn of(changes: BTreeMap<Vec<u8>, Kind>, files: Option<u64>) -> Self {
        let mut log = ChangeLog {
            files,
            complete: changes.len() <= MAX_PATHS,
            ..ChangeLog::default()
        };
        for kind in changes.values() {
            *log.count_mut(*kind) += 1;
        }
        if log.complete {
            log.paths = changes.into_iter().collect();
        }
        log
    }

    fn count_mut(&mut self, kind: Kind) -> &mut u64 {
        match kind {
            Kind::Added => &mut self.added,
            Kind::Deleted => &mut self.deleted,
            Kind::Content => &mut self.content,
            Kind::Metadata => &mut self.metadata,
        }
    }

    /// Every path counted.
    pub fn total(&self) -> u64 {
        self.added + self.deleted + self.content + self.metadata
    }

    /// The share of the previous snapshot's files this one changed in
    /// content or deleted (0 to 1), if the file count is known.
    pub fn damage_share(&self, files_before: Option<u64>) -> Option<f64> {
        let before = files_before?.max(1);
        Some((self.content + self.deleted) as f64 / before as f64)
    }

    /// The file as kept beside the snapshot.
    pub fn render(&self) -> String {
        let mut text = format!(
            "{HEADER}\ncounts {} {} {} {}\nfiles {}\n{}\n",
            self.added,
            self.deleted,
            self.content,
            self.metadata,
            self.files.map_or("-".to_owned(), |f| f.to_string()),
            if self.complete { "paths" } else { "summary" }
        );
        for (path, kind) in &self.paths {
            text.push(kind.letter());
            text.push(' ');
            text.push_str(&encode_arg(path));
            text.push('\n');
        }
        text
    }

    /// Reads a file made by [`Self::render`].
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut log = Self::parse_head(text)?;
        for line in text.lines().skip(4) {
            let (kind, path) = line.split_once(' ').ok_or("bad path line")?;
            let kind = Kind::of_letter(kind).ok_or("bad kind")?;
            let path = decode_arg(path).map_err(|e| e.to_string())?;
            log.paths.push((path, kind));
        }
        Ok(log)
    }

    /// The longest head of a file (its first four lines) that
    /// [`Self::parse_head`] needs.
    pub const HEAD_BYTES: usize = 256;

    /// Reads the counts of a file made by [`Self::render`] from its first
    /// four lines (at most [`Self::HEAD_BYTES`], the rest may be cut off),
    /// without its paths: what judging a snapshot needs of its
    /// predecessors, without reading megabytes of paths.
    pub fn parse_head(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err("not a byteback change log".into());
        }
        let counts: Vec<u64> = lines
            .next()
            .and_then(|l| l.strip_prefix("counts "))
            .ok_or("no counts line")?
            .split(' ')
            .map(|n| n.parse().map_err(|_| format!("bad count {n:?}")))
            .collect::<Result<_, _>>()?;
        let [added, deleted, content, metadata] = counts[..] else {
            return Err("expected four counts".into());
        };
        let files = match lines.next().and_then(|l| l.strip_prefix("files ")) {
            Some("-") => None,
            Some(n) => Some(n.parse().map_err(|_| format!("bad file count {n:?}"))?),
            None => return Err("no files line".into()),
        };
        let complete = match lines.next() {
            Some("paths") => true,
            Some("summary") => false,
            other => return Err(format!("expected paths or summary, got {other:?}")),
        };
        Ok(ChangeLog {
            added,
            deleted,
            content,
            metadata,
            files,
            complete,
            paths: Vec::new(),
        })
    }
}

/// Classifies the `touched` paths (from [`parse_pending`]) by comparing
/// `before` (the previous snapshot, if any) and `after` (`current`):
/// existence decides added and deleted; for a path in both, what rsync
/// said decides, checked against the trees: a different type or size, or
/// different bytes where rsync sent data, is *content* (a symlink is a
/// file holding its target on the server, under `--fake-super`); data
/// re-sent identical, or attributes alone, *metadata* (owners and modes
/// live in fake-super's xattr, which rsync's flags report); a
/// directory whose only change is its time (an entry came or went), and a
/// path the trees show unchanged that rsync did not report, are left out.
pub fn classify(
    before: Option<&Path>,
    after: &Path,
    touched: &BTreeMap<Vec<u8>, Level>,
) -> BTreeMap<Vec<u8>, Kind> {
    use std::os::unix::ffi::OsStrExt;
    let stat = |root: &Path, path: &[u8]| {
        std::fs::symlink_metadata(root.join(std::ffi::OsStr::from_bytes(path))).ok()
    };
    let mut out = BTreeMap::new();
    for (path, &level) in touched {
        let old = before.and_then(|b| stat(b, path).filter(|_| parents_are_dirs(b, path)));
        let new = stat(after, path).filter(|_| parents_are_dirs(after, path));
        let kind = match (old, new) {
            (None, None) => continue,
            (None, Some(_)) => Kind::Added,
            (Some(_), None) => Kind::Deleted,
            (Some(o), Some(n)) => {
                let os = std::ffi::OsStr::from_bytes(path);
                let same_bytes = || match before {
                    Some(b) => same_content(&b.join(os), &after.join(os)),
                    None => false,
                };
                let targets_differ = || {
                    n.is_symlink()
                        && before.map(|b| std::fs::read_link(b.join(os)).ok())
                            != Some(std::fs::read_link(after.join(os)).ok())
                };
                match compare(&o, &n) {
                    Some(kind) => kind,
                    None if targets_differ() => Kind::Content,
                    None if n.is_file() && level >= 2 && !same_bytes() => Kind::Content,
                    None if level == TREES => {
                        if attributes_differ(&o, &n, &b_path(before, os), &after.join(os)) {
                            Kind::Metadata
                        } else {
                            continue;
                        }
                    }
                    None if level >= 1 => Kind::Metadata,
                    None => continue,
                }
            }
        };
        out.insert(path.clone(), kind);
    }
    out
}

/// The level for a path of a tree comparison (no rsync log): the bytes
/// and attributes of both trees decide.
pub const TREES: Level = 3;

fn b_path(before: Option<&Path>, rel: &std::ffi::OsStr) -> std::path::PathBuf {
    before.map(|b| b.join(rel)).unwrap_or_default()
}

/// Whether mode, owner or the attributes fake-super keeps differ.
fn attributes_differ(
    old: &std::fs::Metadata,
    new: &std::fs::Metadata,
    old_path: &Path,
    new_path: &Path,
) -> bool {
    let stat = |p: &Path| {
        let mut buf = vec![0u8; 256];
        rustix::fs::lgetxattr(p, "user.rsync.%stat", &mut buf)
            .ok()
            .map(|n| buf[..n].to_vec())
    };
    old.mode() != new.mode()
        || old.uid() != new.uid()
        || old.gid() != new.gid()
        || stat(old_path) != stat(new_path)
}

/// Whether two regular files hold the same bytes (read in step; files
/// over 1 GiB are taken to differ rather than read).
fn same_content(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (Ok(mut fa), Ok(mut fb)) = (std::fs::File::open(a), std::fs::File::open(b)) else {
        return false;
    };
    if fa.metadata().map(|m| m.len()).unwrap_or(u64::MAX) > 1 << 30 {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let (Ok(na), Ok(nb)) = (read_full(&mut fa, &mut ba), read_full(&mut fb, &mut bb)) else {
            return false;
        };
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
    fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    }
}

/// Whether every parent of `path` under `root` is a real directory.
fn parents_are_dirs(root: &Path, path: &[u8]) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let mut dir = root.to_path_buf();
    let parts: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        dir.push(std::ffi::OsStr::from_bytes(part));
        if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            return false;
        }
    }
    true
}

/// How `new` differs from `old` as the server's trees show it (type,
/// size, device), if it does; the rest is rsync's to say.
fn compare(old: &std::fs::Metadata, new: &std::fs::Metadata) -> Option<Kind> {
    let kind_of = |m: &std::fs::Metadata| m.mode() & libc::S_IFMT;
    if kind_of(old) != kind_of(new) {
        return Some(Kind::Content);
    }
    let file = new.file_type();
    if file.is_file() && old.size() != new.size() {
        return Some(Kind::Content);
    }
    if (file.is_block_device() || file.is_char_device()) && old.rdev() != new.rdev() {
        return Some(Kind::Content);
    }
    None
}

/// The number of non-directory entries under `root` (a walk that does not
/// follow symlinks); used where no earlier log gives the count.
pub fn count_files(root: &Path) -> u64 {
    let mut count = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => dirs.push(entry.path()),
                Ok(_) => count += 1,
                Err(_) => {}
            }
        }
    }
    count
}

/// Every path under `root`, relative to it (for a diff of snapshots that
/// have no log).
pub fn walk(root: &Path) -> BTreeSet<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = BTreeSet::new();
    let mut dirs = vec![Vec::<u8>::new()];
    while let Some(rel) = dirs.pop() {
        let dir = root.join(std::ffi::OsStr::from_bytes(&rel));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let mut path = rel.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(entry.file_name().as_bytes());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(path.clone());
            }
            out.insert(path);
        }
    }
    out
}

/// Combines the logs of consecutive snapshots (oldest first) into what
/// changed from before the first to the last: a path added then deleted
/// is gone from the result, one deleted then added counts as changed in
/// content, content wins over metadata. `None` if a log lists counts only.
pub fn combine(logs: &[ChangeLog]) -> Option<ChangeLog> {
    let mut net: BTreeMap<Vec<u8>, Kind> = BTreeMap::new();
    for log in logs {
        if !log.complete {
            return None;
        }
        for (path, kind) in &log.paths {
            let merged = match (net.get(path).copied(), *kind) {
                (None, k) => Some(k),
                (Some(Kind::Added), Kind::Deleted) => None,
                (Some(Kind::Added), _) => Some(Kind::Added),
                (Some(Kind::Deleted), Kind::Added) => Some(Kind::Content),
                (Some(_), Kind::Deleted) => Some(Kind::Deleted),
                (Some(Kind::Content), _) | (Some(_), Kind::Content) => Some(Kind::Content),
                (Some(_), k) => Some(k),
            };
            match merged {
                Some(k) => net.insert(path.clone(), k),
                None => net.remove(path),
            };
        }
    }
    Some(ChangeLog::of(net, logs.last().and_then(|l| l.files)))
}

/// The rule that marks a snapshot suspect (a ransomware's night looks like
/// this: most files rewritten, or deleted, where the client usually
/// touches a few). A snapshot's *share* is the files it changed in
/// content or deleted over the files of the snapshot before it (added
/// files do not count, so a first backup, all added, is never suspect).
/// It is suspect when its share is over `min_share` AND at least `factor`
/// times the client's baseline: the median share of its last `history`
/// snapshots that have a change log (and whose predecessor's file count
/// is known), leaving out those marked suspect. With too little history
/// (none at all) the baseline is 0, so `min_share` alone decides: a young
/// client is judged by the absolute bar until it has a usual. The
/// settings are `[suspect]` in `server.toml`
/// ([`crate::store::SuspectConfig`]).
///
/// What it does not catch: damage spread over many nights, each under the
/// bar, or slow enough to raise the baseline with it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Suspect {
    pub min_share: f64,
    pub factor: f64,
    /// How many recent shares make the baseline.
    pub history: usize,
}

impl Suspect {
    /// Why a snapshot with `share` is suspect against `history` (the
    /// shares of the client's recent snapshots), if it is.
    pub fn judge(&self, share: f64, history: &[f64]) -> Option<String> {
        let baseline = median(history);
        if share > self.min_share && share >= self.factor * baseline {
            return Some(format!(
                "{:.0} % of files changed or deleted, against a usual {:.1} % (median of {} snapshot(s)); suspect over {:.0} % and {}x the usual",
                share * 100.0,
                baseline * 100.0,
                history.len(),
                self.min_share * 100.0,
                self.factor
            ));
        }
        None
    }

    /// The baseline's shares from a client's snapshots, oldest first: each
    /// its change log (if it has one) and whether it is left out (marked
    /// suspect). A snapshot's share needs its own log and its
    /// predecessor's file count; the last `history` shares are kept.
    pub fn recent_shares(&self, snapshots: &[(Option<&ChangeLog>, bool)]) -> Vec<f64> {
        let mut shares: Vec<f64> = snapshots
            .windows(2)
            .filter_map(|pair| {
                let [(before, _), (log, left_out)] = pair else {
                    return None;
                };
                if *left_out {
                    return None;
                }
                log.as_ref()?.damage_share(before.as_ref()?.files)
            })
            .collect();
        let keep = shares.len().saturating_sub(self.history);
        shares.drain(..keep);
        shares
    }
}

/// The median (0 for none).
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &[u8] = b"2026/12/06 21:58:31 [7155] receiving file list\n\
2026/12/06 21:58:31 [7155] *deleting   gone\n\
2026/12/06 21:58:31 [7155] >f..t...... b\n\
2026/12/06 21:58:31 [7155] >f+++++++++ hl\n\
2026/12/06 21:58:31 [7155] cL+++++++++ sl\n\
2026/12/06 21:58:31 [7155] >f+++++++++ we\\#012ird\n\
2026/12/06 21:58:31 [7155] >f+++++++++ raw\n\
line\n\
2026/12/06 21:58:31 [7155] cd+++++++++ d/\n\
2026/12/06 21:58:31 [7155] .d..t...... ./\n\
2026/12/06 21:58:31 [7155] .f...p..... a\n\
2026/12/06 21:58:31 [7155] cLc.t...... sl2\n\
2026/12/06 21:58:31 [7155] hf+++++++++ a2\n\
2026/12/06 21:58:31 [7155] rsync: [receiver] failed \"x\"\n\
2026/12/06 21:58:31 [7155] sent 116 bytes  received 337 bytes  total size 8\n";

    /// rsync's log lines (both versions' escaping, rsync's own notes
    /// skipped) become touched paths with their hints.
    #[test]
    fn parses_rsync_log() {
        let got = parse_rsync_log(LOG);
        let want: Vec<(Vec<u8>, Hint)> = vec![
            (b"gone".to_vec(), Hint::Gone),
            (b"b".to_vec(), Hint::Data),
            (b"hl".to_vec(), Hint::Data),
            (b"sl".to_vec(), Hint::Data),
            (b"we\nird".to_vec(), Hint::Data),
            (b"raw\nline".to_vec(), Hint::Data),
            (b"d".to_vec(), Hint::Data),
            (b"a".to_vec(), Hint::Attributes),
            (b"sl2".to_vec(), Hint::Data),
            (b"a2".to_vec(), Hint::Attributes),
        ];
        assert_eq!(got, want);
    }

    /// Pending lines round-trip, and paths that climb out are dropped.
    #[test]
    fn pending_round_trip() {
        let mut text = pending_line(b"a b\n", Hint::Data);
        text.push_str(&pending_line(b"a b\n", Hint::Attributes));
        text.push_str(&pending_line(b"x", Hint::Gone));
        text.push_str(&pending_line(b"../etc", Hint::Data));
        let got = parse_pending(&text);
        assert_eq!(got.len(), 2);
        assert_eq!(got[&b"a b\n".to_vec()], 2);
        assert_eq!(got[&b"x".to_vec()], 0);
    }

    /// The trees decide: added, deleted, content, metadata, unchanged.
    #[test]
    fn classifies_from_trees() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("bb-changes-{}", std::process::id()));
        let (old, new) = (dir.join("old"), dir.join("new"));
        for d in [&old, &new] {
            std::fs::create_dir_all(d.join("sub")).unwrap();
            std::fs::write(d.join("same"), "x").unwrap();
            std::fs::write(d.join("mode"), "x").unwrap();
        }
        std::fs::write(old.join("gone"), "x").unwrap();
        std::fs::write(new.join("new"), "x").unwrap();
        std::fs::write(old.join("data"), "x").unwrap();
        std::fs::write(new.join("data"), "xy").unwrap();
        std::fs::set_permissions(new.join("mode"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("a", old.join("link")).unwrap();
        std::os::unix::fs::symlink("b", new.join("link")).unwrap();
        std::fs::write(old.join("resent"), "x").unwrap();
        std::fs::write(new.join("resent"), "x").unwrap();
        std::fs::write(old.join("flipped"), "x").unwrap();
        std::fs::write(new.join("flipped"), "y").unwrap();
        let touched: BTreeMap<Vec<u8>, Level> = [
            ("gone", 0),
            ("new", 2),
            ("data", 2),
            ("mode", 1),
            ("link", 0),
            ("same", 0),
            ("sub", 0),
            ("never", 2),
            ("resent", 2),
            ("flipped", 2),
        ]
        .iter()
        .map(|(p, l)| (p.as_bytes().to_vec(), *l))
        .collect();
        let got = classify(Some(&old), &new, &touched);
        let want: BTreeMap<Vec<u8>, Kind> = [
            ("data", Kind::Content),
            ("flipped", Kind::Content),
            ("gone", Kind::Deleted),
            ("link", Kind::Content),
            ("mode", Kind::Metadata),
            ("new", Kind::Added),
            ("resent", Kind::Metadata),
        ]
        .iter()
        .map(|(p, k)| (p.as_bytes().to_vec(), *k))
        .collect();
        assert_eq!(got, want);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A log renders and parses back; over the limit only counts remain.
    #[test]
    fn log_round_trip_and_bound() {
        let changes: BTreeMap<Vec<u8>, Kind> = [
            (b"a\tb".to_vec(), Kind::Added),
            (b"c".to_vec(), Kind::Deleted),
        ]
        .into_iter()
        .collect();
        let log = ChangeLog::of(changes, Some(7));
        assert_eq!(ChangeLog::parse(&log.render()).unwrap(), log);
        let many: BTreeMap<Vec<u8>, Kind> = (0..=MAX_PATHS)
            .map(|i| (i.to_string().into_bytes(), Kind::Content))
            .collect();
        let big = ChangeLog::of(many, None);
        assert!(!big.complete && big.paths.is_empty());
        assert_eq!(big.content, MAX_PATHS as u64 + 1);
        assert_eq!(ChangeLog::parse(&big.render()).unwrap(), big);
        // The head alone: the counts, no paths, from a cut-off file.
        let text = log.render();
        let head = ChangeLog::parse_head(&text[..text.len() - 2]).unwrap();
        assert_eq!((head.added, head.deleted, head.files), (1, 1, Some(7)));
        assert!(head.paths.is_empty());
        let max = format!(
            "{HEADER}\ncounts {m} {m} {m} {m}\nfiles {m}\nsummary\n",
            m = u64::MAX
        );
        assert!(max.len() <= ChangeLog::HEAD_BYTES);
        assert_eq!(ChangeLog::parse_head(&max).unwrap().files, Some(u64::MAX));
    }

    /// Logs of consecutive snapshots combine into the net change.
    #[test]
    fn combines() {
        let log = |v: &[(&str, Kind)]| {
            ChangeLog::of(
                v.iter().map(|(p, k)| (p.as_bytes().to_vec(), *k)).collect(),
                None,
            )
        };
        let got = combine(&[
            log(&[
                ("a", Kind::Added),
                ("b", Kind::Metadata),
                ("c", Kind::Deleted),
            ]),
            log(&[
                ("a", Kind::Deleted),
                ("b", Kind::Content),
                ("c", Kind::Added),
            ]),
        ])
        .unwrap();
        assert_eq!(
            got.paths,
            vec![
                (b"b".to_vec(), Kind::Content),
                (b"c".to_vec(), Kind::Content)
            ]
        );
    }

    /// The suspect rule: over the share and far over the baseline; with
    /// no history, the share alone; the baseline from the logs.
    #[test]
    fn suspect_rule() {
        let rule = Suspect {
            min_share: 0.3,
            factor: 10.0,
            history: 3,
        };
        assert!(rule.judge(0.9, &[0.01, 0.02, 0.01]).is_some());
        assert!(rule.judge(0.2, &[0.0]).is_none());
        assert!(rule.judge(0.5, &[0.1, 0.1]).is_none());
        assert!(rule.judge(0.5, &[]).is_some());
        assert!(rule.judge(0.3, &[]).is_none(), "over, not at, min_share");
        // A client that rewrites most of its files every night has a high
        // baseline: no mark.
        assert!(rule.judge(0.95, &[0.8, 0.9, 0.85]).is_none());
        let why = rule.judge(0.9, &[0.01, 0.01, 0.02]).unwrap();
        assert!(
            why.starts_with("90 % of files changed or deleted, against a usual 1.0 %"),
            "{why}"
        );
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
        assert_eq!(median(&[f64::NAN]), 0.0);

        let log = |content: u64, deleted: u64, files: Option<u64>| ChangeLog {
            content,
            deleted,
            added: 5,
            files,
            ..ChangeLog::default()
        };
        let (a, b, c, d, e) = (
            log(0, 0, Some(100)),
            log(1, 1, Some(100)),
            log(4, 0, None),
            log(10, 0, Some(100)),
            log(90, 0, Some(100)),
        );
        let shares = |v: &[(Option<&ChangeLog>, bool)]| rule.recent_shares(v);
        // The first has no share; b against a; c against b; d against c,
        // whose file count is unknown: none.
        assert_eq!(
            shares(&[
                (Some(&a), false),
                (Some(&b), false),
                (Some(&c), false),
                (Some(&d), false)
            ]),
            [0.02, 0.04]
        );
        // A snapshot without a log has no share, nor does the next.
        assert_eq!(
            shares(&[(Some(&a), false), (None, false), (Some(&b), false)]),
            Vec::<f64>::new()
        );
        // Marked ones are left out; only the last `history` are kept.
        assert_eq!(
            shares(&[
                (Some(&a), false),
                (Some(&b), false),
                (Some(&b), false),
                (Some(&e), true),
                (Some(&b), false),
                (Some(&b), false),
            ]),
            [0.02, 0.02, 0.02]
        );
    }
}
