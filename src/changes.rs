//! Each snapshot's change log: which paths a backup added, deleted,
//! changed in content or changed only in metadata, recorded by the server
//! from the transfer itself, so "what changed last night?" is answered
//! without walking two trees, and so the server can tell a backup unlike
//! every other (see [`Suspect`]).
//!
//! Where it comes from: the server's receiving rsync writes its itemized
//! log (`--log-file`, each entry between a token the client never sees:
//! [`LogToken`]) to a file the server readies for it beside `current`;
//! after each transfer the server folds that log into the pending list of
//! touched paths ([`Touched::read_rsync_log`]), and adds the paths it
//! deleted itself (an incremental backup's `gone`). At the snapshot, every
//! touched path is classified by comparing the previous snapshot and
//! `current` ([`classify`]): only in the previous one is *deleted*, only
//! in `current` *added*, in both *content* (type, size or symlink target
//! differ, or the bytes where rsync sent data) or *metadata* (mode, owner,
//! xattrs, time, link count — as the trees show them). So what the log
//! claims is only where to look, and nothing the client sends is written
//! as text. Where the log cannot be trusted (a transfer that did not
//! finish, a pending list past its cap), the trees are compared whole
//! ([`TREES`]).
//!
//! The log is kept in the store's own directory as `<snapshot>.changes`
//! ([`ChangeLog::render`]): counts, the number of files in the snapshot,
//! and up to [`MAX_PATHS`] paths, each encoded as a command-line word
//! ([`crate::quote::encode_arg`]); beyond that, counts only.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde::Serialize;

use crate::quote::{decode_arg, encode_arg};

/// What follows the token in rsync's log format ([`LogToken::format`]):
/// the itemized flags and the name.
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
    /// The [`Level`] of a path rsync logged so.
    pub fn level(self) -> Level {
        match self {
            Hint::Data => 2,
            Hint::Attributes => 1,
            Hint::Time | Hint::Gone => 0,
        }
    }
}

/// The most bytes of path names the pending list keeps; past it, the
/// snapshot's log is found by comparing the trees instead
/// ([`Touched::whole_trees`]), so a client cannot make the server hold an
/// unbounded list by transferring again and again before a snapshot.
pub const MAX_PENDING_BYTES: usize = 64 << 20;

/// The longest line of rsync's log read as one (a path is at most 4,096
/// bytes, escaped at most four times that); a longer one is not trusted.
const MAX_LOG_LINE: u64 = 64 << 10;

/// A transfer's log token: random text the server puts at the start of
/// every line it has its receiver log ([`LogToken::format`]), which the
/// client never sees. rsync 3.2.7 writes file names raw, so a name with a
/// newline could otherwise forge a whole log line; without the token, such
/// a line is read as what it is, the rest of that name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogToken(String);

impl LogToken {
    /// A new token (16 hex digits from the kernel's random source; if that
    /// cannot be read, from the clock and pid, which the client cannot see
    /// either).
    pub fn new() -> LogToken {
        use std::io::Read;
        let mut bytes = [0u8; 8];
        let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
        let n = match random {
            Ok(()) => u64::from_le_bytes(bytes),
            Err(_) => {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                t ^ (u64::from(std::process::id()) << 32)
            }
        };
        LogToken(format!("{n:016x}"))
    }

    /// The receiver's `--log-file-format`: the token, the itemized flags,
    /// the name (no `%L`: a name may contain ` -> `, and the targets are
    /// read from the trees anyway), and the token again, which closes the
    /// entry ([`Touched::read_rsync_log`]).
    pub fn format(&self) -> String {
        format!("{0} {LOG_FORMAT} {0}", self.0)
    }
}

impl Default for LogToken {
    fn default() -> Self {
        Self::new()
    }
}

/// The paths touched since the last snapshot, each with the most any line
/// said changed ([`Level`]) — or, where they cannot be trusted or kept (a
/// transfer that did not finish, a log written without a known token, more
/// than [`MAX_PENDING_BYTES`] of names), none, with `whole_trees` set: the
/// snapshot's log then compares the trees by their facts alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    pub paths: BTreeMap<Vec<u8>, Level>,
    pub whole_trees: bool,
    /// `current` was started empty (a plain store's full pass), so a path
    /// of the previous snapshot the transfer did not send is deleted.
    pub fresh: bool,
    bytes: usize,
}

/// The first line of a pending list.
const PENDING_HEADER: &str = "byteback-pending 1";

impl Touched {
    /// Notes `path` (relative, as rsync names it) at `level`. Paths that
    /// could leave the tree (absolute, `..`) are never kept.
    pub fn note(&mut self, path: Vec<u8>, level: Level) {
        if self.whole_trees
            || path.is_empty()
            || path.starts_with(b"/")
            || path.split(|&b| b == b'/').any(|c| c == b"..")
        {
            return;
        }
        let len = path.len();
        let seen = self.paths.entry(path).or_insert_with(|| {
            // Counted once per path, with the map's own cost.
            0
        });
        if *seen == 0 {
            self.bytes += len + 48;
        }
        *seen = (*seen).max(level);
        if self.bytes > MAX_PENDING_BYTES {
            self.give_up();
        }
    }

    /// From now on the trees are compared whole.
    pub fn give_up(&mut self) {
        self.whole_trees = true;
        self.paths = BTreeMap::new();
        self.bytes = 0;
    }

    /// The pending file: a header, then `*` (the trees whole) or one line a
    /// path: its level, a space, the path encoded as a command-line word.
    pub fn render(&self) -> String {
        let mut text = format!("{PENDING_HEADER}\n");
        if self.fresh {
            text.push_str("fresh\n");
        }
        if self.whole_trees {
            text.push_str("*\n");
            return text;
        }
        for (path, level) in &self.paths {
            text.push_str(&format!("{level} {}\n", encode_arg(path)));
        }
        text
    }

    /// Reads a pending file back (only the server writes it; a malformed
    /// line is skipped). The lines of the first version (a hint letter for
    /// a level) are read too.
    pub fn parse(text: &str) -> Touched {
        let mut touched = Touched::default();
        for line in text.lines() {
            if line == PENDING_HEADER {
                continue;
            }
            if line == "fresh" {
                touched.fresh = true;
                continue;
            }
            if line == "*" {
                touched.give_up();
                break;
            }
            let Some((level, path)) = line.split_once(' ') else {
                continue;
            };
            let Ok(path) = decode_arg(path) else {
                continue;
            };
            let level = match level {
                "2" | "d" => 2,
                "1" | "a" => 1,
                _ => 0,
            };
            touched.note(path, level);
        }
        touched
    }

    /// Reads a receiver's log (written with `token`'s format, which
    /// opens and closes each entry with the token) into the touched paths.
    /// Only text between a line starting with rsync's prefix and the token
    /// and the token closing it is an entry; everything else (rsync's own
    /// notes, statistics, errors) is skipped. An entry may span lines: a
    /// newline in a file name, which rsync 3.2.7 writes raw (3.5.0 escapes
    /// it as `\#012`) — and since the client never sees the token, no name
    /// can open or close an entry. A name with what looks like an escape is
    /// noted both as written and unescaped (3.2.7 does not escape a literal
    /// `\#101`): the trees decide which exists. Read line by line, at most
    /// `limit` bytes; a cut, an overlong line or entry, an unclosed entry
    /// or a read error gives up on the list ([`Self::give_up`]).
    pub fn read_rsync_log(&mut self, log: impl std::io::BufRead, token: &LogToken, limit: u64) {
        use std::io::{BufRead, Read};
        let open = format!("{} ", token.0).into_bytes();
        let close = format!(" {}", token.0).into_bytes();
        let mut log = log.take(limit);
        let mut entry: Option<Vec<u8>> = None;
        let mut line = Vec::new();
        loop {
            line.clear();
            match log.by_ref().take(MAX_LOG_LINE).read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => return self.give_up(),
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            } else if line.len() as u64 >= MAX_LOG_LINE || log.limit() == 0 {
                // An overlong line, or the log cut at `limit`.
                return self.give_up();
            }
            match entry.as_mut() {
                Some(text) => {
                    text.push(b'\n');
                    text.extend_from_slice(&line);
                    if text.len() as u64 > MAX_LOG_LINE {
                        return self.give_up();
                    }
                }
                None => {
                    let Some(rest) = strip_prefix(&line).and_then(|r| r.strip_prefix(&open[..]))
                    else {
                        continue;
                    };
                    entry = Some(rest.to_vec());
                }
            }
            if let Some(text) = entry.as_ref().and_then(|t| t.strip_suffix(&close[..])) {
                if text.len() >= 13 && text[11] == b' ' {
                    if let Some(hint) = hint_of(&text[..11]) {
                        self.note_name(text[12..].to_vec(), hint.level());
                    }
                }
                entry = None;
            }
        }
        if entry.is_some() {
            self.give_up();
        }
    }

    fn note_name(&mut self, raw: Vec<u8>, level: Level) {
        let trim = |mut n: Vec<u8>| {
            while n.len() > 1 && n.ends_with(b"/") {
                n.pop();
            }
            n
        };
        let unescaped = trim(unescape(&raw));
        let raw = trim(raw);
        if unescaped != raw && raw != b"." {
            self.note(raw, level);
        }
        if unescaped != b"." {
            self.note(unescaped, level);
        }
    }
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

/// How much rsync said changed in a path, across its lines: 0 the time
/// only (or nothing: deleted, or a path for the trees alone to judge), 1
/// attributes, 2 data.
pub type Level = u8;

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

    /// The file as the server keeps it.
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

/// Classifies the `touched` paths ([`Touched`]) by comparing `before`
/// (the previous snapshot, if any) and `after` (`current`): existence
/// decides added and deleted; for a path in both, a different type, size,
/// device or symlink target is *content* (a symlink is a file holding its
/// target on the server, under `--fake-super`); where rsync sent data, so
/// are different bytes; and *metadata* only where the trees show it: mode,
/// owner, the attributes fake-super keeps and every other xattr, a file's
/// modification time or its number of links. What rsync claimed is a
/// reason to look, never evidence: a path the trees show unchanged, and a
/// directory whose only change is its time (an entry came or went), are
/// left out. At [`TREES`] (no trustworthy log), a file whose size and
/// time are the same is taken as unchanged in content, as rsync's own
/// quick check takes it, and no bytes are read.
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
                let (old_path, new_path) = (b_path(before, os), after.join(os));
                let targets_differ = || {
                    n.is_symlink()
                        && std::fs::read_link(&old_path).ok() != std::fs::read_link(&new_path).ok()
                };
                let file_time_differs =
                    || !n.is_dir() && (o.mtime(), o.mtime_nsec()) != (n.mtime(), n.mtime_nsec());
                match compare(&o, &n) {
                    Some(kind) => kind,
                    None if targets_differ() => Kind::Content,
                    None if level == TREES && n.is_file() && file_time_differs() => Kind::Content,
                    None if level == 2 && n.is_file() && !same_content(&old_path, &new_path) => {
                        Kind::Content
                    }
                    None if level == 0 => continue,
                    None if file_time_differs()
                        || (!n.is_dir() && o.nlink() != n.nlink())
                        || attributes_differ(&o, &n, &old_path, &new_path) =>
                    {
                        Kind::Metadata
                    }
                    None => continue,
                }
            }
        };
        out.insert(path.clone(), kind);
    }
    out
}

/// The level for a path of a tree comparison (no trustworthy log): the
/// facts of both trees decide, without reading file contents.
pub const TREES: Level = 3;

fn b_path(before: Option<&Path>, rel: &std::ffi::OsStr) -> std::path::PathBuf {
    before.map(|b| b.join(rel)).unwrap_or_default()
}

/// Whether mode, owner or any xattr (fake-super's `user.rsync.%stat` with
/// the client's owner and mode, its ACLs, the file's own) differ.
fn attributes_differ(
    old: &std::fs::Metadata,
    new: &std::fs::Metadata,
    old_path: &Path,
    new_path: &Path,
) -> bool {
    old.mode() != new.mode()
        || old.uid() != new.uid()
        || old.gid() != new.gid()
        || xattrs(old_path) != xattrs(new_path)
}

/// Every xattr of `path` (not following a symlink), names and values;
/// `None` where they cannot be read.
fn xattrs(path: &Path) -> Option<BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut names = vec![0u8; 64 << 10];
    let n = rustix::fs::llistxattr(path, &mut names).ok()?;
    let mut out = BTreeMap::new();
    let mut value = vec![0u8; 64 << 10];
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name_str = std::ffi::CStr::from_bytes_with_nul(&[name, b"\0"].concat())
            .ok()?
            .to_owned();
        let len = rustix::fs::lgetxattr(path, name_str.as_c_str(), &mut value).ok()?;
        out.insert(name.to_vec(), value[..len].to_vec());
    }
    Some(out)
}

/// Adds to `classified` (from [`classify`]) every other name of a regular
/// file it found changed in content that has more than one name in
/// `after` (or raises them from metadata). rsync writes a hard-linked
/// group once, through one name, and logs the others as links at most; on btrfs `current`'s names share the inode as
/// the source's do, so one in-place write changes them all, and a log of
/// the one name would let a client change many files while its log shows
/// one. Found by one walk of `after`, only when such a file changed; a
/// name whose inode in `before` was the changed name's too changed the
/// same way, any other is compared once per pair of inodes, so a group's
/// size does not multiply the bytes read.
pub fn add_linked_names(
    before: Option<&Path>,
    after: &Path,
    classified: &mut BTreeMap<Vec<u8>, Kind>,
) {
    use std::collections::{HashMap, HashSet};
    use std::os::unix::ffi::OsStrExt;
    let stat = |root: &Path, path: &[u8]| {
        std::fs::symlink_metadata(root.join(std::ffi::OsStr::from_bytes(path))).ok()
    };
    // The changed inodes in `after`, each with its inode in `before`.
    let mut changed: HashMap<(u64, u64), HashSet<u64>> = HashMap::new();
    for (path, kind) in classified.iter() {
        if *kind != Kind::Content {
            continue;
        }
        let Some(n) = stat(after, path).filter(|m| m.is_file() && m.nlink() > 1) else {
            continue;
        };
        let was = before.and_then(|b| stat(b, path)).map(|m| m.ino());
        let entry = changed.entry((n.dev(), n.ino())).or_default();
        entry.extend(was);
    }
    if changed.is_empty() {
        return;
    }
    let mut compared: HashMap<(u64, u64), bool> = HashMap::new();
    for path in walk(after) {
        // rsync may have logged another name of the group as a hard link
        // (metadata): its content is the group's all the same.
        if matches!(
            classified.get(&path),
            Some(Kind::Added | Kind::Deleted | Kind::Content)
        ) {
            continue;
        }
        let Some(n) = stat(after, &path).filter(|m| m.is_file()) else {
            continue;
        };
        let Some(was_inodes) = changed.get(&(n.dev(), n.ino())) else {
            continue;
        };
        let old = before.and_then(|b| stat(b, &path).filter(|_| parents_are_dirs(b, &path)));
        let kind = match old {
            None => Kind::Added,
            Some(o) if was_inodes.contains(&o.ino()) => Kind::Content,
            Some(o) => {
                let os = std::ffi::OsStr::from_bytes(&path);
                let differs = compare(&o, &n).is_some()
                    || *compared
                        .entry((o.ino(), n.ino()))
                        .or_insert_with(|| !same_content(&b_path(before, os), &after.join(os)));
                if !differs {
                    continue;
                }
                Kind::Content
            }
        };
        classified.insert(path, kind);
    }
}

/// Opens `path` to read without moving its access time (`O_NOATIME`, which
/// the server may use on its own files): a snapshot's files are history,
/// and reading one to compare must not change it, not even its atime.
/// Files the server does not own are not read (`None`).
fn open_unseen(path: &Path) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME | libc::O_NOFOLLOW)
        .open(path)
        .ok()
}

/// Whether two regular files hold the same bytes (read in step; files
/// over 1 GiB are taken to differ rather than read).
fn same_content(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (Some(mut fa), Some(mut fb)) = (open_unseen(a), open_unseen(b)) else {
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

/// The number of files (non-directory entries) in `after` once `kinds`
/// (from [`classify`] against `before`) happened to a snapshot that held
/// `previous`: counted from the changes alone, so a snapshot does not walk
/// its whole tree. Where that count could be wrong, `after` is walked
/// ([`count_files`]): no earlier count (the first log, or a snapshot the
/// original byteback took), a deleted directory (whose files a server-side
/// deletion need not list one by one), or a path that became or stopped
/// being a directory.
pub fn files_after(
    previous: Option<u64>,
    before: Option<&Path>,
    after: &Path,
    kinds: &BTreeMap<Vec<u8>, Kind>,
) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let is_dir = |root: &Path, path: &[u8]| {
        std::fs::symlink_metadata(root.join(std::ffi::OsStr::from_bytes(path)))
            .is_ok_and(|m| m.is_dir())
    };
    let (Some(mut files), Some(before)) = (previous, before) else {
        return count_files(after);
    };
    for (path, kind) in kinds {
        match kind {
            Kind::Added if !is_dir(after, path) => files += 1,
            Kind::Added | Kind::Metadata => {}
            Kind::Deleted if is_dir(before, path) => return count_files(after),
            Kind::Deleted => files = files.saturating_sub(1),
            Kind::Content if is_dir(before, path) != is_dir(after, path) => {
                return count_files(after);
            }
            Kind::Content => {}
        }
    }
    files
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

    /// A log as rsync writes it with `token`'s format: each entry opened
    /// and closed by the token; rsync's own lines between them.
    fn log_of(token: &LogToken, entries: &[&[u8]]) -> Vec<u8> {
        let t = &token.0;
        let mut out = b"2026/12/06 21:58:31 [7155] receiving file list\n".to_vec();
        for e in entries {
            out.extend_from_slice(format!("2026/12/06 21:58:31 [7155] {t} ").as_bytes());
            out.extend_from_slice(e);
            out.extend_from_slice(format!(" {t}\n").as_bytes());
        }
        out.extend_from_slice(b"2026/12/06 21:58:31 [7155] rsync: [receiver] failed \"x\"\n");
        out.extend_from_slice(b"2026/12/06 21:58:31 [7155] sent 116 bytes  received 337 bytes\n");
        out
    }

    fn read(token: &LogToken, text: &[u8]) -> Touched {
        let mut touched = Touched::default();
        touched.read_rsync_log(text, token, u64::MAX);
        touched
    }

    /// rsync's log entries (both versions' escaping, a raw newline, rsync's
    /// own notes skipped) become touched paths with their levels.
    #[test]
    fn reads_rsync_log() {
        let token = LogToken::new();
        let log = log_of(
            &token,
            &[
                b"*deleting   gone",
                b">f..t...... b",
                b">f+++++++++ hl",
                b"cL+++++++++ sl",
                b">f+++++++++ we\\#012ird",
                b">f+++++++++ raw\nline",
                b"cd+++++++++ d/",
                b".d..t...... ./",
                b".f...p..... a",
                b"cLc.t...... sl2",
                b"hf+++++++++ a2",
            ],
        );
        let got = read(&token, &log);
        assert!(!got.whole_trees);
        let want: BTreeMap<Vec<u8>, Level> = [
            (&b"gone"[..], 0),
            (b"b", 2),
            (b"hl", 2),
            (b"sl", 2),
            (b"we\nird", 2),
            // Written raw by 3.2.7, or escaped: both noted, the trees decide.
            (b"we\\#012ird", 2),
            (b"raw\nline", 2),
            (b"d", 2),
            (b"a", 1),
            (b"sl2", 2),
            (b"a2", 1),
        ]
        .iter()
        .map(|(p, l)| (p.to_vec(), *l))
        .collect();
        assert_eq!(got.paths, want);
    }

    /// A name that forges a log line (rsync 3.2.7 writes names raw) cannot
    /// open or close an entry without the token: it stays part of its name.
    #[test]
    fn a_forged_line_in_a_name_stays_in_the_name() {
        let token = LogToken::new();
        let forged: &[u8] = b">f+++++++++ x\n2026/12/06 21:58:31 [7155] >f+++++++++ victim";
        let got = read(&token, &log_of(&token, &[forged]));
        let name = b"x\n2026/12/06 21:58:31 [7155] >f+++++++++ victim".to_vec();
        assert_eq!(got.paths.keys().cloned().collect::<Vec<_>>(), vec![name]);
        // A log of another token (another transfer's) is nothing.
        let other = LogToken::new();
        assert!(
            read(&other, &log_of(&token, &[b">f+++++++++ a"]))
                .paths
                .is_empty()
        );
    }

    /// What cannot be trusted gives up on the list: an unclosed entry, a
    /// log cut short, an overlong line.
    #[test]
    fn an_untrustworthy_log_gives_up() {
        let token = LogToken::new();
        let mut log = log_of(&token, &[b">f+++++++++ a"]);
        log.extend_from_slice(
            format!("2026/12/06 21:58:31 [7155] {} >f+++++++++ b\n", token.0).as_bytes(),
        );
        assert!(read(&token, &log).whole_trees, "unclosed");
        let log = log_of(&token, &[b">f+++++++++ a", b">f+++++++++ b"]);
        let mut cut = Touched::default();
        cut.read_rsync_log(&log[..], &token, 80);
        assert!(cut.whole_trees, "cut");
        let long = vec![b'x'; 70_000];
        let log = log_of(&token, &[&[b">f+++++++++ ".as_slice(), &long].concat()]);
        assert!(read(&token, &log).whole_trees, "overlong");
    }

    /// The pending list round-trips, keeps each path once at its highest
    /// level, drops paths that climb out, reads the first version's
    /// letters, and past its cap compares the trees.
    #[test]
    fn pending_round_trip() {
        let mut t = Touched::default();
        t.note(b"a b\n".to_vec(), 2);
        t.note(b"a b\n".to_vec(), 1);
        t.note(b"x".to_vec(), 0);
        t.note(b"../etc".to_vec(), 2);
        t.note(b"/etc".to_vec(), 2);
        t.fresh = true;
        let back = Touched::parse(&t.render());
        assert_eq!(back, t);
        assert_eq!(back.paths.len(), 2);
        assert_eq!(back.paths[&b"a b\n".to_vec()], 2);
        assert_eq!(Touched::parse("d a\nt b\n").paths.len(), 2);
        let mut big = Touched::default();
        for i in 0..(MAX_PENDING_BYTES / 100) {
            big.note(format!("{i:0>60}").into_bytes(), 2);
        }
        assert!(big.whole_trees && big.paths.is_empty());
        assert!(Touched::parse(&big.render()).whole_trees);
    }

    /// The trees decide: added, deleted, content, metadata, unchanged —
    /// what rsync claimed alone lists nothing.
    #[test]
    fn classifies_from_trees() {
        use std::os::unix::fs::PermissionsExt;
        let scratch = crate::ScratchDir::new("changes");
        let dir = scratch.path();
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
        // Re-sent with the same bytes: only its time differs.
        let at = |p: &Path, secs: u64| {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        };
        at(&old.join("resent"), 1_000_000);
        at(&new.join("resent"), 2_000_000);
        // Claimed changed (in data, in attributes), but the same in every way.
        for d in [&old, &new] {
            std::fs::write(d.join("claimed"), "x").unwrap();
            at(&d.join("claimed"), 1_000_000);
            std::fs::write(d.join("claimed-attrs"), "x").unwrap();
            at(&d.join("claimed-attrs"), 1_000_000);
        }
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
            ("claimed", 2),
            ("claimed-attrs", 1),
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

    /// The file count follows the changes, and falls back to a walk where
    /// a directory went away.
    #[test]
    fn the_file_count_follows_the_changes() {
        let scratch = crate::ScratchDir::new("count");
        let root = scratch.path().to_owned();
        let (before, after) = (root.join("before"), root.join("after"));
        for dir in [&before, &after] {
            std::fs::create_dir_all(dir.join("d")).unwrap();
            std::fs::write(dir.join("a"), "a").unwrap();
            std::fs::write(dir.join("d/x"), "x").unwrap();
        }
        std::fs::write(before.join("b"), "b").unwrap();
        std::fs::write(after.join("c"), "c").unwrap();
        std::fs::create_dir(after.join("e")).unwrap();
        let kinds: BTreeMap<Vec<u8>, Kind> = [
            (b"b".to_vec(), Kind::Deleted),
            (b"c".to_vec(), Kind::Added),
            (b"e".to_vec(), Kind::Added),
        ]
        .into_iter()
        .collect();
        // Counted from the changes: 3 - 1 + 1 (the new directory is none).
        assert_eq!(files_after(Some(3), Some(&before), &after, &kinds), 3);
        // A wrong earlier count shows it is not a walk.
        assert_eq!(files_after(Some(10), Some(&before), &after, &kinds), 10);
        // No earlier count: a walk.
        assert_eq!(files_after(None, Some(&before), &after, &kinds), 3);
        // A directory deleted: a walk.
        std::fs::create_dir(before.join("gone")).unwrap();
        let mut kinds = kinds;
        kinds.insert(b"gone".to_vec(), Kind::Deleted);
        assert_eq!(files_after(Some(10), Some(&before), &after, &kinds), 3);
    }
}
