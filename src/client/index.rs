//! The change index: what the sources looked like when the server's newest
//! snapshot was taken, so that the next backup sends rsync only what
//! changed since — found by one stat walk instead of rsync walking (and
//! comparing the full-fidelity metadata of) every file on both sides.
//!
//! It also catches what rsync's quick check (size + mtime) misses: a change
//! always moves a file's ctime (which no program can set back), and a file
//! replaced by another has a new inode.
//!
//! **Safe by construction.**
//! - The walk happens *before* the transfer, so a file changed during the
//!   transfer has a newer ctime than the index records and is sent again
//!   next time.
//! - A file whose ctime or mtime is within [`RACY_NS`] (whole-second
//!   filesystems: [`COARSE_RACY_NS`]) of the walk's start may still change
//!   within the same timestamp tick after it was read; it is recorded as
//!   *unsure* and sent again next time (git's "racily clean" entries).
//! - The index names the snapshot it describes and a fingerprint of the
//!   sources, exclusions and destination. It is committed only after that
//!   snapshot was taken (complete, not partial), and used only when the
//!   server's newest snapshot is that one and the fingerprint is the same;
//!   otherwise the backup makes a full rsync pass and the index is rebuilt.
//! - A missing, unreadable or corrupt index (its checksum) is no index.
//!
//! **Format** (version 1): the magic line, one JSON header line
//! ([`Header`]), then one record per path in walk order (see [`cmp_paths`]):
//! the length of the prefix shared with the previous path and the rest of
//! the path (both LEB128 lengths), then the fixed fields of [`Entry`]
//! little-endian; then an FNV-1a checksum of everything before it. Sorted,
//! prefix-compressed paths make a million-path index some 70 MB, which is
//! never read into memory: [`Stored`] checks the file in one streaming pass
//! and decodes its records in another, as the comparison consumes them.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::sys::fs::write_atomic_with;

/// The first line of an index file.
const MAGIC: &[u8] = b"byteback change index 1\n";

/// Entries changed this close (ns) before the walk started may change again
/// within the same timestamp tick unseen: they are sent again next time.
/// Linux takes file times from a coarse clock (one tick: 1–10 ms), so a
/// change after the walk read an entry gets a later ctime unless the entry
/// had changed within that tick; 100 ms is generous.
pub const RACY_NS: i64 = 100_000_000;

/// The same for entries whose times have no sub-second part: filesystems
/// that keep whole seconds (ext4 with small inodes) or two (FAT).
pub const COARSE_RACY_NS: i64 = 3_000_000_000;

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;

/// One path's facts, as the walk saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The absolute path.
    pub path: Vec<u8>,
    pub dev: u64,
    pub ino: u64,
    /// `st_mode`, type bits included.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    pub size: u64,
    /// Nanoseconds since the epoch.
    pub mtime: i64,
    pub ctime: i64,
    /// Changed too close to the walk to be trusted: always sent next time.
    pub unsure: bool,
    /// A regular file that allocates less than its length (`st_blocks`):
    /// it has holes (or is compressed). What the walk saw; not kept in the
    /// index file. See [`has_holes`].
    pub short: bool,
}

impl Entry {
    fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }

    /// Whether the file is (possibly) different from what `old` recorded.
    fn differs_from(&self, old: &Entry) -> bool {
        old.unsure
            || (
                self.dev, self.ino, self.mode, self.uid, self.gid, self.nlink,
            ) != (old.dev, old.ino, old.mode, old.uid, old.gid, old.nlink)
            || (self.size, self.mtime, self.ctime) != (old.size, old.mtime, old.ctime)
    }
}

/// Orders paths as a depth-first walk with sorted names meets them: by
/// component, so `/a/b` comes right after `/a`, before `/a-x` and `/a0`.
pub fn cmp_paths(a: &[u8], b: &[u8]) -> Ordering {
    let key = |c: &u8| if *c == b'/' { 0 } else { *c };
    a.iter().map(key).cmp(b.iter().map(key))
}

/// The header line of an index file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The snapshot on the server these entries describe.
    pub snapshot: String,
    /// The sources, exclusions and destination the walk used.
    pub fingerprint: String,
    /// Index-mode backups since the last full pass.
    pub incrementals: u32,
    /// How many entries follow.
    pub entries: u64,
    /// The protocol the server last said it speaks (0: not known, as in
    /// an index written before this field): the next backup, trusting it,
    /// asks for its incremental transfer without a ping first. A server
    /// that has gone back to an older version meanwhile refuses that
    /// request untyped, and the backup pings then.
    #[serde(default)]
    pub server_protocol: u32,
}

/// An index: its header and entries, in walk order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub header: Header,
    pub entries: Vec<Entry>,
}

const FNV_START: u64 = 0xcbf29ce484222325;

fn fnv1a_from(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

impl Index {
    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.entries.len() * 80);
        let _ = self.write_to(&mut out);
        out
    }

    /// Writes the file's bytes to `w`, record by record.
    pub fn write_to(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        /// Passes bytes on, summing them.
        struct Summing<'a> {
            inner: &'a mut dyn std::io::Write,
            sum: u64,
        }
        impl Summing<'_> {
            fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
                self.sum = fnv1a_from(self.sum, bytes);
                self.inner.write_all(bytes)
            }
        }
        let mut out = Summing {
            inner: w,
            sum: FNV_START,
        };
        out.put(MAGIC)?;
        let header = Header {
            entries: self.entries.len() as u64,
            ..self.header.clone()
        };
        let mut line = serde_json::to_vec(&header).unwrap_or_default();
        line.push(b'\n');
        out.put(&line)?;
        let mut previous: &[u8] = &[];
        let mut record = Vec::with_capacity(256);
        for e in &self.entries {
            record.clear();
            let shared = previous
                .iter()
                .zip(&e.path)
                .take_while(|(a, b)| a == b)
                .count();
            put_len(&mut record, shared);
            put_len(&mut record, e.path.len() - shared);
            record.extend_from_slice(&e.path[shared..]);
            for n in [e.dev, e.ino] {
                record.extend_from_slice(&n.to_le_bytes());
            }
            for n in [e.mode, e.uid, e.gid] {
                record.extend_from_slice(&n.to_le_bytes());
            }
            for n in [e.nlink, e.size, e.mtime as u64, e.ctime as u64] {
                record.extend_from_slice(&n.to_le_bytes());
            }
            record.push(u8::from(e.unsure));
            out.put(&record)?;
            previous = &e.path;
        }
        let sum = out.sum;
        out.inner.write_all(&sum.to_le_bytes())
    }

    /// Reads an index; `None` if it is not a whole, intact one.
    pub fn decode(bytes: &[u8]) -> Option<Index> {
        let stored = Stored::parse(bytes.to_vec())?;
        Some(Index {
            header: stored.header.clone(),
            entries: stored.entries().collect(),
        })
    }

    /// Writes the index atomically (root's only), without building it in
    /// memory first.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic_with(path, 0o600, |w| self.write_to(w))
    }
}

/// An index as read from its file: the header, and the records decoded
/// one by one from the file as they are merged with the walk, so the old
/// index never sits in memory (at 200,000 entries it is some 15 MB).
#[derive(Debug)]
pub struct Stored {
    pub header: Header,
    source: Source,
    /// Where the records start and end in the source.
    body: std::ops::Range<u64>,
}

/// Where a [`Stored`] index's bytes are.
#[derive(Debug)]
enum Source {
    /// The open file: every pass reads it with positioned reads, so the
    /// records read are those of the file that was checked, even if a new
    /// index replaces it meanwhile (it is renamed over, not rewritten).
    File(std::fs::File),
    Bytes(Vec<u8>),
    /// [`Stored::release`]d: no records.
    Released,
}

/// Bytes `at..end` of an open file, read with `pread`.
struct Span<'a> {
    file: &'a std::fs::File,
    at: u64,
    end: u64,
}

impl Read for Span<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let want = buf
            .len()
            .min(usize::try_from(self.end - self.at).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..want], self.at)?;
        self.at += got as u64;
        Ok(got)
    }
}

impl Source {
    fn len(&self) -> Option<u64> {
        match self {
            Source::File(f) => f.metadata().ok().map(|m| m.len()),
            Source::Bytes(b) => Some(b.len() as u64),
            Source::Released => Some(0),
        }
    }

    /// A reader of bytes `range` (which the caller keeps within `len`).
    fn read(&self, range: std::ops::Range<u64>) -> Box<dyn Read + '_> {
        match self {
            Source::File(file) => Box::new(Span {
                file,
                at: range.start,
                end: range.end,
            }),
            Source::Bytes(b) => {
                let slice = usize::try_from(range.start)
                    .ok()
                    .zip(usize::try_from(range.end).ok())
                    .and_then(|(start, end)| b.get(start..end))
                    .unwrap_or_default();
                Box::new(slice)
            }
            Source::Released => Box::new(std::io::empty()),
        }
    }
}

/// The most a path or the header line may take; anything longer is damage.
const MAX_LINE: u64 = 1 << 20;

impl Stored {
    /// Checks a whole index (checksum, magic, header, every record); `None`
    /// if it is not a whole, intact one.
    pub fn parse(bytes: Vec<u8>) -> Option<Stored> {
        Stored::check(Source::Bytes(bytes))
    }

    /// The index at `path`, if there is an intact one. It is read twice
    /// (checksum, then records) and kept open, not kept in memory.
    pub fn load(path: &Path) -> Option<Stored> {
        Stored::check(Source::File(std::fs::File::open(path).ok()?))
    }

    fn check(source: Source) -> Option<Stored> {
        let body_end = source.len()?.checked_sub(8)?;
        let mut whole = source.read(0..body_end + 8);
        let mut sum = FNV_START;
        let mut buf = vec![0u8; 64 << 10];
        let mut left = body_end;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let got = whole.read(&mut buf[..want]).ok()?;
            if got == 0 {
                return None;
            }
            sum = fnv1a_from(sum, &buf[..got]);
            left -= got as u64;
        }
        let mut stored_sum = [0u8; 8];
        whole.read_exact(&mut stored_sum).ok()?;
        drop(whole);
        if sum != u64::from_le_bytes(stored_sum) {
            return None;
        }
        let mut r = BufReader::new(source.read(0..body_end));
        let mut magic = vec![0u8; MAGIC.len()];
        r.read_exact(&mut magic).ok()?;
        if magic != MAGIC {
            return None;
        }
        let mut line = Vec::new();
        (&mut r).take(MAX_LINE).read_until(b'\n', &mut line).ok()?;
        if line.pop() != Some(b'\n') {
            return None;
        }
        let header: Header = serde_json::from_slice(&line).ok()?;
        let start = (MAGIC.len() + line.len() + 1) as u64;
        drop(r);
        let stored = Stored {
            header,
            source,
            body: start..body_end,
        };
        let intact = {
            let mut records = stored.entries();
            for _ in &mut records {}
            records.whole && records.reader.fill_buf().is_ok_and(|rest| rest.is_empty())
        };
        intact.then_some(stored)
    }

    /// The entries, in walk order (one pass at a time).
    pub fn entries(&self) -> Records<'_> {
        Records {
            reader: BufReader::with_capacity(64 << 10, self.source.read(self.body.clone())),
            previous: Vec::new(),
            left: self.header.entries,
            whole: true,
        }
    }

    /// Closes the file once the records are no longer needed; the header
    /// stays.
    pub fn release(&mut self) {
        self.source = Source::Released;
        self.body = 0..0;
        self.header.entries = 0;
    }
}

/// The records of a [`Stored`] index, decoded one at a time.
pub struct Records<'a> {
    reader: BufReader<Box<dyn Read + 'a>>,
    previous: Vec<u8>,
    left: u64,
    /// Every record so far was whole.
    whole: bool,
}

/// The fixed part of a record: dev, ino (u64), mode, uid, gid (u32), nlink,
/// size, mtime, ctime (u64), unsure (u8).
const FIXED: usize = 8 * 2 + 4 * 3 + 8 * 4 + 1;

impl Records<'_> {
    fn len(&mut self) -> Option<usize> {
        let mut n: usize = 0;
        for shift in (0..64).step_by(7) {
            let mut byte = [0u8; 1];
            self.reader.read_exact(&mut byte).ok()?;
            n |= usize::from(byte[0] & 0x7f).checked_shl(shift)?;
            if byte[0] & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    fn record(&mut self) -> Option<Entry> {
        let shared = self.len()?;
        let own = self.len()?;
        if own as u64 > MAX_LINE {
            return None;
        }
        let mut path = Vec::with_capacity(shared + own);
        path.extend_from_slice(self.previous.get(..shared)?);
        path.resize(shared + own, 0);
        self.reader.read_exact(&mut path[shared..]).ok()?;
        let mut fixed = [0u8; FIXED];
        self.reader.read_exact(&mut fixed).ok()?;
        let mut at = 0;
        let mut take = |n: usize| {
            let bytes = &fixed[at..at + n];
            at += n;
            bytes
        };
        let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
        let u32_of = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap_or_default());
        let (dev, ino) = (u64_of(take(8)), u64_of(take(8)));
        let (mode, uid, gid) = (u32_of(take(4)), u32_of(take(4)), u32_of(take(4)));
        let (nlink, size) = (u64_of(take(8)), u64_of(take(8)));
        let (mtime, ctime) = (u64_of(take(8)), u64_of(take(8)));
        let unsure = take(1)[0] != 0;
        self.previous.clone_from(&path);
        Some(Entry {
            path,
            dev,
            ino,
            mode,
            uid,
            gid,
            nlink,
            size,
            mtime: mtime as i64,
            ctime: ctime as i64,
            unsure,
            short: false,
        })
    }
}

impl Iterator for Records<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        if self.left == 0 || !self.whole {
            return None;
        }
        self.left -= 1;
        let entry = self.record();
        self.whole = entry.is_some();
        entry
    }
}

/// Why a walk could not be trusted: the backup makes a full rsync pass.
#[derive(Debug)]
pub struct WalkError(pub String);

/// Walks `sources` (absolute, as the plan has them) and the directories
/// above them (which rsync's `--relative` sends too), leaving out the
/// contents of `skip_contents_of` (the mount points the plan excludes with
/// `<mount>/*`), and returns every entry in walk order. `started` is the
/// walk's start (ns): entries changed since shortly before it are unsure.
pub fn walk(
    sources: &[PathBuf],
    skip_contents_of: &[PathBuf],
    started: i64,
) -> std::result::Result<Vec<Entry>, WalkError> {
    let skip: std::collections::HashSet<&[u8]> = skip_contents_of
        .iter()
        .map(|p| p.as_os_str().as_bytes())
        .collect();
    let mut out = Vec::new();
    for source in sources {
        let bytes = source.as_os_str().as_bytes();
        // The directories above the source (rsync's implied directories:
        // not `/` itself, unless it is the source), then the source and below.
        let mut at = 0;
        while let Some(i) = bytes[at..].iter().position(|&b| b == b'/') {
            let above = &bytes[..at + i];
            if !above.is_empty() && above.len() < bytes.len() {
                if let Some(e) = stat(above, started)? {
                    out.push(e);
                }
            }
            at += i + 1;
        }
        walk_tree(bytes.to_vec(), &skip, started, &mut out)?;
    }
    // One source's walk is in order already; sorting it anyway (stable,
    // so with a buffer of half the entries) would cost memory for nothing.
    if !out.is_sorted_by(|a, b| cmp_paths(&a.path, &b.path) != Ordering::Greater) {
        out.sort_unstable_by(|a, b| cmp_paths(&a.path, &b.path));
    }
    out.dedup_by(|a, b| a.path == b.path);
    Ok(out)
}

fn entry_of(path: Vec<u8>, m: &std::fs::Metadata, started: i64) -> Entry {
    let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
    let mtime = ns(m.mtime(), m.mtime_nsec());
    let ctime = ns(m.ctime(), m.ctime_nsec());
    let coarse = m.mtime_nsec() == 0 && m.ctime_nsec() == 0;
    let recent = started.saturating_sub(if coarse { COARSE_RACY_NS } else { RACY_NS });
    Entry {
        path,
        dev: m.dev(),
        ino: m.ino(),
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        nlink: m.nlink(),
        size: m.size(),
        mtime,
        ctime,
        unsure: ctime >= recent || mtime >= recent,
        short: m.file_type().is_file() && m.blocks().saturating_mul(512) < m.size(),
    }
}

/// Files at least this long are asked where their first hole is
/// ([`has_holes`]) even when they allocate their whole length: holes
/// smaller than the blocks a filesystem spends on a file's extent tree or
/// speculative preallocation (XFS keeps it a while after writing) do not
/// show in `st_blocks`. Below it, holes that small cost next to nothing.
pub const ASK_FOR_HOLES_FROM: u64 = 1 << 20;

/// Whether a walked entry is a regular file with holes, to be sent in the
/// `--sparse` run: it allocates less than its length, or, from
/// [`ASK_FOR_HOLES_FROM`] bytes, `SEEK_HOLE` finds a hole before its end.
/// A file that cannot be opened (gone, unreadable) has none: rsync will
/// say what it makes of it.
pub fn has_holes(entry: &Entry) -> bool {
    use rustix::fs::{Mode, OFlags, SeekFrom};
    if entry.short {
        return true;
    }
    if !entry.is_file() || entry.size < ASK_FOR_HOLES_FROM {
        return false;
    }
    let path = OsStr::from_bytes(&entry.path);
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    // Without moving its atime where that is allowed (root's, or the owner's).
    let file = rustix::fs::open(path, flags | OFlags::NOATIME, Mode::empty())
        .or_else(|_| rustix::fs::open(path, flags, Mode::empty()));
    let Ok(file) = file else {
        return false;
    };
    // Only the file the walk saw: a name replaced since is the next
    // backup's to look at.
    match rustix::fs::fstat(&file) {
        Ok(st) if st.st_ino == entry.ino && st.st_dev == entry.dev => {}
        _ => return false,
    }
    rustix::fs::seek(&file, SeekFrom::Hole(0)).is_ok_and(|at| at < entry.size)
}

/// `lstat` of one path; `None` if it vanished meanwhile.
fn stat(path: &[u8], started: i64) -> std::result::Result<Option<Entry>, WalkError> {
    match std::fs::symlink_metadata(OsStr::from_bytes(path)) {
        Ok(m) => Ok(Some(entry_of(path.to_vec(), &m, started))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WalkError(format!(
            "cannot stat {}: {e}",
            String::from_utf8_lossy(path)
        ))),
    }
}

fn walk_tree(
    path: Vec<u8>,
    skip: &std::collections::HashSet<&[u8]>,
    started: i64,
    out: &mut Vec<Entry>,
) -> std::result::Result<(), WalkError> {
    let Some(entry) = stat(&path, started)? else {
        return Ok(());
    };
    let is_dir = entry.is_dir();
    out.push(entry);
    if !is_dir || skip.contains(path.as_slice()) {
        return Ok(());
    }
    let dir = match std::fs::read_dir(OsStr::from_bytes(&path)) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(WalkError(format!(
                "cannot read the directory {}: {e}",
                String::from_utf8_lossy(&path)
            )));
        }
    };
    let mut names: Vec<(Vec<u8>, bool)> = Vec::new();
    for item in dir {
        let item = item.map_err(|e| {
            WalkError(format!(
                "cannot read the directory {}: {e}",
                String::from_utf8_lossy(&path)
            ))
        })?;
        let is_dir = item.file_type().is_ok_and(|t| t.is_dir());
        names.push((item.file_name().as_bytes().to_vec(), is_dir));
    }
    names.sort_unstable();
    for (name, is_dir) in names {
        // Exactly as long as it needs to be: 200,000 paths grown by
        // doubling would hold some 8 MB more.
        let mut child = Vec::with_capacity(path.len() + 1 + name.len());
        child.extend_from_slice(&path);
        if child.last() != Some(&b'/') {
            child.push(b'/');
        }
        child.extend_from_slice(&name);
        if is_dir {
            walk_tree(child, skip, started, out)?;
        } else {
            let meta = std::fs::symlink_metadata(OsStr::from_bytes(&child));
            match meta {
                Ok(m) => out.push(entry_of(child, &m, started)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(WalkError(format!(
                        "cannot stat {}: {e}",
                        String::from_utf8_lossy(&child)
                    )));
                }
            }
        }
    }
    Ok(())
}

/// What an index-mode backup sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Every path rsync is given (`--files-from`), in walk order: new and
    /// changed paths (all paths of a changed multiply-linked inode, every
    /// path inside a new directory) and the topmost vanished ones.
    pub send: Vec<Vec<u8>>,
    /// The paths a plain store must not link from the snapshot (it gets
    /// them fresh from rsync): `send` less the directories that are
    /// directories on both sides (whose unchanged contents stay).
    pub replace: Vec<Vec<u8>>,
    /// How many of `send` vanished from the source.
    pub vanished: usize,
    /// Those paths (the topmost of each vanished tree), in walk order.
    pub gone: Vec<Vec<u8>>,
}

fn is_below(path: &[u8], dir: &[u8]) -> bool {
    path.len() > dir.len()
        && path.starts_with(dir)
        && (dir.last() == Some(&b'/') || path[dir.len()] == b'/')
}

/// Compares the walk with the index; both in walk order.
pub fn compare(old: impl IntoIterator<Item = Entry>, new: &[Entry]) -> Changes {
    let mut old = old.into_iter().peekable();
    let mut sent = vec![false; new.len()];
    // Indexes into `new` / `old` of what is sent, and whether it was a
    // directory on both sides.
    let mut replace_too = vec![false; new.len()];
    let mut vanished: Vec<Vec<u8>> = Vec::new();
    let mut j = 0;
    // The topmost vanished (or no longer a directory) path we are below.
    let mut gone_above: Option<Vec<u8>> = None;
    while old.peek().is_some() || j < new.len() {
        let order = match (old.peek(), new.get(j)) {
            (Some(o), Some(n)) => cmp_paths(&o.path, &n.path),
            (Some(_), None) => Ordering::Less,
            (None, _) => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                let Some(o) = old.next() else { break };
                let covered = gone_above.as_deref().is_some_and(|g| is_below(&o.path, g));
                if !covered {
                    gone_above = Some(o.path.clone());
                    vanished.push(o.path);
                }
            }
            Ordering::Greater => {
                sent[j] = true;
                replace_too[j] = true;
                j += 1;
            }
            Ordering::Equal => {
                let Some(o) = old.next() else { break };
                let (o, n) = (&o, &new[j]);
                if n.differs_from(o) {
                    sent[j] = true;
                    // A directory that stays one keeps its contents.
                    replace_too[j] = !(o.is_dir() && n.is_dir());
                }
                if o.is_dir() && !n.is_dir() {
                    // What was inside it is gone with it.
                    gone_above = Some(o.path.clone());
                }
                j += 1;
            }
        }
    }
    // All paths of a multiply-linked inode go together, so rsync links
    // them on the server.
    let mut groups: HashMap<(u64, u64), Vec<usize>> = HashMap::new();
    for (k, e) in new.iter().enumerate() {
        if !e.is_dir() && e.nlink > 1 {
            groups.entry((e.dev, e.ino)).or_default().push(k);
        }
    }
    for members in groups.values() {
        if members.iter().any(|&k| sent[k]) {
            for &k in members {
                sent[k] = true;
                replace_too[k] = true;
            }
        }
    }
    let mut changes = Changes {
        vanished: vanished.len(),
        gone: vanished.clone(),
        ..Changes::default()
    };
    let mut from_new = new
        .iter()
        .enumerate()
        .filter(|(k, _)| sent[*k])
        .map(|(k, e)| (e.path.clone(), replace_too[k]))
        .peekable();
    let mut from_old = vanished.into_iter().peekable();
    // Merge the two sorted lists.
    loop {
        let take_new = match (from_new.peek(), from_old.peek()) {
            (Some((n, _)), Some(o)) => cmp_paths(n, o) != Ordering::Greater,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        if take_new {
            let (path, replace) = from_new.next().unwrap_or_default();
            if replace {
                changes.replace.push(path.clone());
            }
            changes.send.push(path);
        } else {
            let path = from_old.next().unwrap_or_default();
            changes.replace.push(path.clone());
            changes.send.push(path);
        }
    }
    changes
}

/// Marks as unsure every entry of `new` that `old` says changed: after a
/// full pass, whose rsync compares only size and mtime, these are sent
/// again by the next index-mode backup (a same-size change whose mtime was
/// put back is caught then).
pub fn mark_changed_unsure(old: impl IntoIterator<Item = Entry>, new: &mut [Entry]) {
    mark_unsure(&compare(old, new).send, new);
}

/// Marks as unsure every entry of `new` named in `paths` (both in walk
/// order): [`mark_changed_unsure`] when the comparison was already made
/// (its [`Changes::send`]), so the old index need not be read again.
pub fn mark_unsure(paths: &[Vec<u8>], new: &mut [Entry]) {
    let mut k = 0;
    for e in new.iter_mut() {
        while k < paths.len() && cmp_paths(&paths[k], &e.path) == Ordering::Less {
            k += 1;
        }
        if paths.get(k) == Some(&e.path) {
            e.unsure = true;
        }
    }
}

/// A path as rsync's `--files-from` reads it, relative to `/`.
pub fn files_from_entry(path: &[u8]) -> &[u8] {
    match path.strip_prefix(b"/") {
        Some([]) | None => b".",
        Some(rest) => rest,
    }
}

/// The time now in ns since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
