//! Finding files in a snapshot: glob patterns, a guided walk, fake-super
//! metadata, and the encodings that carry requests and results over SSH.
//!
//! `byteback list` and `restore` name files by absolute paths of the backed-up
//! machine, with shell-like wildcards. The server answers by walking one
//! snapshot (whose top is the client's `/`), and that walk must stay cheap and
//! safe although everything in the store was written by the client: names are
//! arbitrary bytes, symlinks may point anywhere, and a listing may repeat over
//! a hundred snapshots. So the walk reads only the directories a pattern can
//! lead into, never follows a symlink, never leaves the snapshot, streams its
//! matches in byte order without collecting them, and reads each file's real
//! mode and owner from rsync's `--fake-super` xattr (the store only holds
//! files owned by the unprivileged server user).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Read};
use std::mem::MaybeUninit;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, RawDir, Stat};
use rustix::io::Errno;

/// Longest pattern accepted, in bytes (a path can't be longer either).
const MAX_PATTERN_LEN: usize = 4096;
/// Most patterns, and tokens in all, that `{...}` may expand to: these bound
/// the matching work per directory entry, whatever the client sends.
const MAX_ALTERNATIVES: usize = 256;
const MAX_EXPANDED: usize = 16 * 1024;
/// Deepest `{` nesting accepted; bounds the parser's recursion.
const MAX_BRACE_DEPTH: usize = 16;
/// Deepest directory nesting walked: the walk keeps one descriptor open per
/// level, and must stay well within the usual limit of 1024.
const MAX_DEPTH: usize = 256;
/// Longest symlink target read from a stored symlink (Linux's PATH_MAX).
const MAX_TARGET: u64 = 4096;
/// The xattr where `rsync --fake-super` keeps the real mode, device, owner.
const STAT_XATTR: &str = "user.rsync.%stat";

const S_IFMT: u32 = 0o170000;
const S_IFSOCK: u32 = 0o140000;
const S_IFLNK: u32 = 0o120000;
const S_IFREG: u32 = 0o100000;
const S_IFBLK: u32 = 0o060000;
const S_IFDIR: u32 = 0o040000;
const S_IFCHR: u32 = 0o020000;
const S_IFIFO: u32 = 0o010000;

// ---------------------------------------------------------------- patterns

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternError {
    /// Nothing was given.
    Empty,
    /// It (or one of its `{}` alternatives) does not start with `/`.
    NotAbsolute,
    /// A component is `..`, which could lead out of the client's tree.
    DotDot,
    /// It contains a NUL byte, which no path can.
    Nul,
    /// It is longer than 4096 bytes.
    TooLong,
    /// It ends with a `\` that escapes nothing.
    TrailingBackslash,
    /// The `[` at this byte offset is never closed.
    UnclosedBracket(usize),
    /// The `{` at this byte offset is never closed.
    UnclosedBrace(usize),
    /// `{` is nested more than 16 deep.
    TooDeep,
    /// Its `{}` alternatives multiply to over 256 patterns or 16 Ki tokens.
    TooManyAlternatives,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "empty pattern; give a path such as /home/alice/.bashrc"),
            Self::NotAbsolute => write!(f, "the pattern must be an absolute path (start with '/')"),
            Self::DotDot => write!(f, "'..' is not allowed in a pattern"),
            Self::Nul => write!(f, "the pattern contains a NUL byte"),
            Self::TooLong => write!(f, "the pattern is longer than {MAX_PATTERN_LEN} bytes"),
            Self::TrailingBackslash => write!(f, "the pattern ends with a lone '\\'; write '\\\\'"),
            Self::UnclosedBracket(at) => {
                write!(f, "unclosed '[' at byte {at}; add ']' or write '\\['")
            }
            Self::UnclosedBrace(at) => {
                write!(f, "unclosed '{{' at byte {at}; add '}}' or write '\\{{'")
            }
            Self::TooDeep => write!(
                f,
                "'{{' nested more than {MAX_BRACE_DEPTH} deep in the pattern"
            ),
            Self::TooManyAlternatives => {
                write!(f, "'{{...}}' expand to over {MAX_ALTERNATIVES} patterns")
            }
        }
    }
}

impl std::error::Error for PatternError {}

/// One token of a pattern; a class is ranges of [`unit()`] values.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(u8),
    Star,
    Any,
    Class {
        negated: bool,
        ranges: Vec<(u32, u32)>,
    },
    Sep,
}

/// One path component of an expanded pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Comp {
    /// Plain bytes: looked up directly, without reading the directory.
    Literal(Vec<u8>),
    /// `*`, `?`, `[...]` and literal bytes, matched against one name.
    Glob(Vec<Tok>),
    /// `**`: zero or more components, none starting with `.`.
    AnyDirs,
}

/// An absolute glob pattern over the client's paths.
///
/// - `*` matches any run of characters within one component, `?` one
///   character (a UTF-8 character where the name is valid UTF-8, else one
///   byte), `[a-z]`, `[!a-z]`/`[^a-z]` one character in (or not in) a set;
///   a `]` first in a set is literal. POSIX classes (`[:alpha:]`) are not
///   supported.
/// - A component made of `**` alone matches zero or more whole components;
///   elsewhere `**` is just `*`.
/// - `{a,b,c}` is expanded first, as in a shell, so its alternatives may hold
///   `/`, nest, or be empty: `/etc/{nginx/sites,apache2}/*`. Unpaired `}` and
///   `,` are literal.
/// - `\` makes the next byte literal (`\/` is still a separator).
/// - As in shells, `*`, `?` and `[...]` never match a leading `.`, and `**`
///   never enters or matches a component starting with `.`; write the dot
///   (`/home/*/.*`, `/home/{*,.*}`) to reach such files.
/// - `//` and `/./` collapse; a `..` component is refused, so a pattern stays
///   within the client's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: Vec<u8>,
    alts: Vec<Vec<Comp>>,
}

impl Pattern {
    /// Parses an absolute pattern (see [`Pattern`] for the syntax).
    pub fn parse(pattern: &[u8]) -> Result<Pattern, PatternError> {
        if pattern.is_empty() {
            return Err(PatternError::Empty);
        }
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong);
        }
        if pattern.contains(&0) {
            return Err(PatternError::Nul);
        }
        let mut alts: Vec<Vec<Comp>> = Vec::new();
        for toks in (Parser {
            src: pattern,
            pos: 0,
        })
        .seq(0)?
        {
            let comps = components(&toks)?;
            if !alts.contains(&comps) {
                alts.push(comps);
            }
        }
        Ok(Pattern {
            source: pattern.to_vec(),
            alts,
        })
    }

    /// The pattern as it was given.
    pub fn as_bytes(&self) -> &[u8] {
        &self.source
    }

    /// Whether `path` (absolute; `//` and `/./` allowed) matches. A path with
    /// a `..` component never matches.
    pub fn matches(&self, path: &[u8]) -> bool {
        let nfa = Nfa::new(std::slice::from_ref(self));
        nfa.run(path).is_some_and(|s| nfa.accepts(&s))
    }

    /// Whether anything strictly below the directory `dir` could match, so
    /// a walk needs to look inside it.
    pub fn may_match_below(&self, dir: &[u8]) -> bool {
        let nfa = Nfa::new(std::slice::from_ref(self));
        nfa.run(dir).is_some_and(|s| nfa.live(&s))
    }
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    /// Tokens up to the end (in braces, up to `,` or `}`), `{}` expanded.
    fn seq(&mut self, depth: usize) -> Result<Vec<Vec<Tok>>, PatternError> {
        let mut acc = vec![Vec::new()];
        let mut size = 0; // tokens in `acc`, all alternatives together
        while let Some(&b) = self.src.get(self.pos) {
            let tok = match b {
                b',' | b'}' if depth > 0 => break,
                b'{' => {
                    let opts = self.alt(depth + 1)?;
                    if acc.len().saturating_mul(opts.len()) > MAX_ALTERNATIVES {
                        return Err(PatternError::TooManyAlternatives);
                    }
                    let opts = &opts;
                    let product = acc
                        .iter()
                        .flat_map(|a| opts.iter().map(move |o| [a.as_slice(), o].concat()));
                    acc = product.collect();
                    size = too_big(&acc)?;
                    continue;
                }
                b'[' => self.class()?,
                b'\\' => {
                    self.pos += 1;
                    match self.src.get(self.pos) {
                        // A separator still: were `/` a byte of a name, a
                        // `..` could hide in a "single" component.
                        Some(b'/') => Tok::Sep,
                        Some(&c) => Tok::Lit(c),
                        None => return Err(PatternError::TrailingBackslash),
                    }
                }
                b'*' => Tok::Star,
                b'?' => Tok::Any,
                b'/' => Tok::Sep,
                _ => Tok::Lit(b),
            };
            self.pos += 1;
            size += acc.len();
            if size > MAX_EXPANDED {
                return Err(PatternError::TooManyAlternatives);
            }
            acc.iter_mut().for_each(|a| a.push(tok.clone()));
        }
        Ok(acc)
    }

    /// The alternatives of `{a,b,...}`, starting at the `{`.
    fn alt(&mut self, depth: usize) -> Result<Vec<Vec<Tok>>, PatternError> {
        if depth > MAX_BRACE_DEPTH {
            return Err(PatternError::TooDeep);
        }
        let start = self.pos;
        let mut opts = Vec::new();
        loop {
            self.pos += 1; // past the `{` or `,`
            opts.extend(self.seq(depth)?);
            too_big(&opts)?;
            match self.src.get(self.pos) {
                Some(b',') => {}
                Some(_) => {
                    self.pos += 1; // past the `}`
                    return Ok(opts);
                }
                None => return Err(PatternError::UnclosedBrace(start)),
            }
        }
    }

    /// `[...]`, from the `[` to the `]`, where it leaves `pos`.
    fn class(&mut self) -> Result<Tok, PatternError> {
        let start = self.pos;
        self.pos += 1;
        let negated = matches!(self.src.get(self.pos), Some(b'!' | b'^'));
        self.pos += usize::from(negated);
        let mut ranges = Vec::new();
        while self.src.get(self.pos) != Some(&b']') || ranges.is_empty() {
            let lo = self.class_unit(start)?;
            let hi = match self.src.get(self.pos..) {
                Some([b'-', c, ..]) if *c != b']' => {
                    self.pos += 1;
                    self.class_unit(start)?
                }
                _ => lo,
            };
            ranges.push((lo, hi));
        }
        Ok(Tok::Class { negated, ranges })
    }

    fn class_unit(&mut self, start: usize) -> Result<u32, PatternError> {
        self.pos += usize::from(self.src.get(self.pos) == Some(&b'\\'));
        match self.src.get(self.pos..) {
            Some(rest) if !rest.is_empty() => {
                let (u, len) = unit(rest);
                self.pos += len;
                Ok(u)
            }
            _ => Err(PatternError::UnclosedBracket(start)),
        }
    }
}

/// The tokens in `alts`, or an error if they are too many.
fn too_big(alts: &[Vec<Tok>]) -> Result<usize, PatternError> {
    let size = alts.iter().map(Vec::len).sum();
    match alts.len() > MAX_ALTERNATIVES || size > MAX_EXPANDED {
        true => Err(PatternError::TooManyAlternatives),
        false => Ok(size),
    }
}

/// Splits one expanded pattern into normalised components.
fn components(toks: &[Tok]) -> Result<Vec<Comp>, PatternError> {
    if toks.first() != Some(&Tok::Sep) {
        return Err(PatternError::NotAbsolute);
    }
    let mut comps = Vec::new();
    for part in toks.split(|t| *t == Tok::Sep).filter(|p| !p.is_empty()) {
        let literal: Option<Vec<u8>> = part
            .iter()
            .map(|t| if let Tok::Lit(b) = t { Some(*b) } else { None })
            .collect();
        comps.push(match literal {
            Some(l) if l == b"." => continue,
            Some(l) if l == b".." => return Err(PatternError::DotDot),
            Some(l) => Comp::Literal(l),
            None if part.len() > 1 && part.iter().all(|t| *t == Tok::Star) => Comp::AnyDirs,
            None => {
                let mut glob = part.to_vec();
                // Runs of `*` match the same as one, and cost more.
                glob.dedup_by(|a, b| *a == Tok::Star && *b == Tok::Star);
                Comp::Glob(glob)
            }
        });
    }
    Ok(comps)
}

/// Values above this stand for bytes that are not part of valid UTF-8.
const INVALID_UNIT: u32 = 0x11_0000;

/// The character at the start of `s` and its length in bytes: a valid UTF-8
/// character, or else a single byte mapped past Unicode so the two never
/// collide.
fn unit(s: &[u8]) -> (u32, usize) {
    let len = match s.first() {
        Some(&b) if b < 0x80 => return (u32::from(b), 1),
        Some(0xc2..=0xdf) => 2,
        Some(0xe0..=0xef) => 3,
        Some(0xf0..=0xf4) => 4,
        _ => 0,
    };
    let ch = s.get(..len).and_then(|c| std::str::from_utf8(c).ok());
    match ch.and_then(|c| c.chars().next()) {
        Some(c) => (u32::from(c), len),
        None => (INVALID_UNIT + s.first().map_or(0, |&b| u32::from(b)), 1),
    }
}

/// Matches one name against one component's glob, with the dotfile rule.
fn glob_match(toks: &[Tok], name: &[u8]) -> bool {
    if name.first() == Some(&b'.') && toks.first() != Some(&Tok::Lit(b'.')) {
        return false;
    }
    // Classic wildcard matching: on a mismatch, let the last `*` take one
    // more character. O(pattern × name) at worst, never exponential.
    let (mut t, mut n) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    loop {
        let rest = name.get(n..).unwrap_or_default();
        let step = match toks.get(t) {
            Some(Tok::Star) => {
                backtrack = Some((t + 1, n));
                Some(0)
            }
            Some(Tok::Lit(b)) => (rest.first() == Some(b)).then_some(1),
            Some(Tok::Any) => (!rest.is_empty()).then(|| unit(rest).1),
            Some(Tok::Class { negated, ranges }) if !rest.is_empty() => {
                let (u, len) = unit(rest);
                let inside = ranges.iter().any(|&(lo, hi)| lo <= u && u <= hi);
                (inside != *negated).then_some(len)
            }
            None if rest.is_empty() => return true,
            _ => None,
        };
        if let Some(len) = step {
            (t, n) = (t + 1, n + len);
            continue;
        }
        match backtrack {
            Some((bt, bn)) if bn < name.len() => {
                let len = unit(name.get(bn..).unwrap_or_default()).1;
                backtrack = Some((bt, bn + len));
                (t, n) = (bt, bn + len);
            }
            _ => return false,
        }
    }
}

/// A position in one expanded pattern: (alternative, component index).
type State = (usize, usize);

/// All alternatives of all patterns, run together as one automaton, so a
/// walk visits each directory once whatever the number of patterns.
struct Nfa<'p> {
    progs: Vec<&'p [Comp]>,
}

impl<'p> Nfa<'p> {
    fn new(patterns: &'p [Pattern]) -> Self {
        let progs = patterns
            .iter()
            .flat_map(|p| p.alts.iter().map(Vec::as_slice));
        Nfa {
            progs: progs.collect(),
        }
    }

    fn comp(&self, (p, k): State) -> Option<&'p Comp> {
        self.progs.get(p).and_then(|c| c.get(k))
    }

    fn start(&self) -> Vec<State> {
        let mut s = (0..self.progs.len()).map(|p| (p, 0)).collect();
        self.close(&mut s);
        s
    }

    /// Adds what `**` reaches by matching nothing, then sorts and dedups.
    fn close(&self, s: &mut Vec<State>) {
        let mut i = 0;
        while let Some(&(p, k)) = s.get(i) {
            if self.comp((p, k)) == Some(&Comp::AnyDirs) {
                s.push((p, k + 1));
            }
            i += 1;
        }
        s.sort_unstable();
        s.dedup();
    }

    /// The states after entering the component `name`, into `out`.
    fn step(&self, s: &[State], name: &[u8], out: &mut Vec<State>) {
        out.clear();
        for &(p, k) in s {
            match self.comp((p, k)) {
                Some(Comp::AnyDirs) if name.first() != Some(&b'.') => out.push((p, k)),
                Some(Comp::Literal(l)) if l.as_slice() == name => out.push((p, k + 1)),
                Some(Comp::Glob(g)) if glob_match(g, name) => out.push((p, k + 1)),
                _ => {}
            }
        }
        self.close(out);
    }

    /// Whether some pattern ends here: the path matches.
    fn accepts(&self, s: &[State]) -> bool {
        s.iter()
            .any(|&(p, k)| self.progs.get(p).is_some_and(|c| c.len() == k))
    }

    /// Whether some pattern wants more components: look below.
    fn live(&self, s: &[State]) -> bool {
        s.iter().any(|&st| self.comp(st).is_some())
    }

    /// The only names that can go on from `s`, if all are literal: then a
    /// walk looks them up instead of reading the whole directory.
    fn literals(&self, s: &[State]) -> Option<Vec<&'p [u8]>> {
        let mut names = Vec::new();
        for &st in s {
            match self.comp(st) {
                Some(Comp::Literal(l)) => names.push(l.as_slice()),
                Some(_) => return None,
                None => {}
            }
        }
        names.sort_unstable();
        names.dedup();
        Some(names)
    }

    /// Runs over an absolute path; `None` if it is not one or has `..`.
    fn run(&self, path: &[u8]) -> Option<Vec<State>> {
        if path.first() != Some(&b'/') {
            return None;
        }
        let (mut s, mut next) = (self.start(), Vec::new());
        for c in path
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
        {
            if c == b".." {
                return None;
            }
            self.step(&s, c, &mut next);
            std::mem::swap(&mut s, &mut next);
        }
        Some(s)
    }
}

// -------------------------------------------------------------- metadata

/// A file's metadata as the client had it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    /// Mode, with the file type bits (`S_IFMT`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes; for a symlink, its target's length, as `ls -l` shows.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// `(major, minor)` for a character or block device.
    pub rdev: Option<(u32, u32)>,
    /// A symlink's target.
    pub symlink_target: Option<Vec<u8>>,
}

/// Reads the client's metadata of the stored file at `path`, decoding
/// `user.rsync.%stat` (else the file's own lstat). The last component is
/// never followed; the directories leading to it are trusted, which is why
/// the walk itself works from directory descriptors instead.
pub fn read_meta(path: &Path) -> io::Result<Meta> {
    meta_at(CWD, path.as_os_str(), FileType::Unknown)
}

/// Metadata of `name` in `dir`; `hint` is the type readdir gave, if any.
fn meta_at(dir: BorrowedFd<'_>, name: &OsStr, hint: FileType) -> io::Result<Meta> {
    let kind = match hint {
        // readdir already told the type, so open straight away and check it
        // with fstat. Were the entry swapped meanwhile, `O_NOFOLLOW` refuses
        // a symlink, `O_NONBLOCK` keeps a fifo from blocking, and no device
        // can be there: the store's owner is unprivileged and can't mknod.
        FileType::RegularFile => S_IFREG,
        FileType::Directory => S_IFDIR,
        _ => {
            let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
            match st.st_mode & S_IFMT {
                kind @ (S_IFREG | S_IFDIR) => kind,
                S_IFLNK => {
                    let target = rustix::fs::readlinkat(dir, name, Vec::new())?;
                    let symlink_target = Some(target.into_bytes());
                    return Ok(Meta {
                        symlink_target,
                        ..lstat_meta(&st)
                    });
                }
                // Anything else is never opened: that could block or have
                // side effects.
                _ => return Ok(lstat_meta(&st)),
            }
        }
    };
    let mut flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    flags.set(OFlags::DIRECTORY, kind == S_IFDIR);
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty())?;
    let st = rustix::fs::fstat(&fd)?;
    if st.st_mode & S_IFMT != kind {
        return Err(io::ErrorKind::NotFound.into()); // replaced meanwhile
    }
    meta_of_open(&fd, &st)
}

// Field types differ between architectures, hence the conversions.
#[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
fn lstat_meta(st: &Stat) -> Meta {
    let (mode, dev) = (st.st_mode as u32, u64::from(st.st_rdev));
    Meta {
        mode,
        uid: st.st_uid,
        gid: st.st_gid,
        size: u64::try_from(st.st_size).unwrap_or(0),
        mtime: i64::from(st.st_mtime),
        rdev: is_device(mode).then(|| (rustix::fs::major(dev), rustix::fs::minor(dev))),
        symlink_target: None,
    }
}

fn is_device(mode: u32) -> bool {
    matches!(mode & S_IFMT, S_IFCHR | S_IFBLK)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Metadata of an opened regular file or directory, fake-super applied.
fn meta_of_open(fd: &OwnedFd, st: &Stat) -> io::Result<Meta> {
    let mut meta = lstat_meta(st);
    let mut buf = [0u8; 256];
    let value = match rustix::fs::fgetxattr(fd, STAT_XATTR, &mut buf) {
        Ok(len) => buf.get(..len).unwrap_or_default(),
        Err(Errno::NODATA | Errno::NOTSUP) => return Ok(meta),
        Err(Errno::RANGE) => return Err(invalid(format!("{STAT_XATTR} xattr is too long"))),
        Err(e) => return Err(e.into()),
    };
    let Some([mode, major, minor, uid, gid]) = parse_stat_xattr(value) else {
        let shown = value.escape_ascii();
        return Err(invalid(format!("corrupt {STAT_XATTR} xattr \"{shown}\"")));
    };
    if (mode & S_IFMT == S_IFDIR) != (meta.mode & S_IFMT == S_IFDIR) {
        let stored = mode_string(meta.mode);
        return Err(invalid(format!(
            "{STAT_XATTR} xattr says {mode:o} on a stored {stored}"
        )));
    }
    (meta.mode, meta.uid, meta.gid) = (mode, uid, gid);
    meta.rdev = is_device(mode).then_some((major, minor));
    if mode & S_IFMT == S_IFLNK {
        // The stored file holds the target; a real one is below PATH_MAX.
        let mut target = Vec::new();
        std::fs::File::from(fd.try_clone()?)
            .take(MAX_TARGET + 1)
            .read_to_end(&mut target)?;
        if target.len() as u64 > MAX_TARGET {
            return Err(invalid(format!(
                "stored symlink target over {MAX_TARGET} bytes"
            )));
        }
        meta.size = target.len() as u64;
        meta.symlink_target = Some(target);
    }
    Ok(meta)
}

/// Parses rsync's `"<mode in octal> <major>,<minor> <uid>:<gid>"`.
fn parse_stat_xattr(value: &[u8]) -> Option<[u32; 5]> {
    let s = std::str::from_utf8(value)
        .ok()?
        .trim_end_matches('\0')
        .trim();
    let (mode, rest) = s.split_once(' ')?;
    let (dev, owner) = rest.split_once(' ')?;
    let ((major, minor), (uid, gid)) = (dev.split_once(',')?, owner.split_once(':')?);
    let num = |t: &str, radix| match t.bytes().all(|b| b.is_ascii_digit()) {
        true => u32::from_str_radix(t, radix).ok(),
        false => None,
    };
    let mode = num(mode, 8).filter(|m| *m <= 0o177777)?;
    let kinds = [
        S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK,
    ];
    kinds.contains(&(mode & S_IFMT)).then_some(())?;
    Some([
        mode,
        num(major, 10)?,
        num(minor, 10)?,
        num(uid, 10)?,
        num(gid, 10)?,
    ])
}

/// The mode as `ls -l` shows it, e.g. `-rw-r--r--` or `drwxrwxrwt`.
pub fn mode_string(mode: u32) -> String {
    let kinds = [
        (S_IFREG, '-'),
        (S_IFDIR, 'd'),
        (S_IFLNK, 'l'),
        (S_IFCHR, 'c'),
        (S_IFBLK, 'b'),
        (S_IFIFO, 'p'),
        (S_IFSOCK, 's'),
    ];
    let kind = kinds
        .iter()
        .find(|(k, _)| mode & S_IFMT == *k)
        .map_or('?', |(_, c)| *c);
    let mut s = vec![kind];
    // Per class: read, write, and execute (which also shows setuid, setgid
    // or sticky as s/S/t/T).
    for (shift, special, mark) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = mode >> shift;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (mode & special != 0, bits & 1 != 0) {
            (true, true) => mark,
            (true, false) => mark.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s.into_iter().collect()
}

/// Keeps each distinct version of one path once (versions differ in size or
/// mtime), from the newest snapshot holding it. `versions` runs from the
/// newest snapshot to the oldest; so does the result.
pub fn distinct_versions<S>(versions: impl IntoIterator<Item = (S, Meta)>) -> Vec<(S, Meta)> {
    let mut seen = HashSet::new();
    let versions = versions.into_iter();
    versions
        .filter(|(_, m)| seen.insert((m.size, m.mtime)))
        .collect()
}

// ------------------------------------------------------------------ walk

/// A path that matched, with the client's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The absolute path on the client, e.g. `/home/alice/.bashrc`.
    pub path: Vec<u8>,
    /// Its metadata.
    pub meta: Meta,
}

/// Something the walk had to skip (a directory it could not read, a file
/// with corrupt metadata); the walk goes on.
#[derive(Debug)]
pub struct Warning {
    /// The absolute client path concerned.
    pub path: Vec<u8>,
    /// What went wrong.
    pub error: io::Error,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Escaped so a hostile name can't forge lines of output.
        let path = String::from_utf8_lossy(&self.path);
        write!(f, "skipped {}: {}", path.escape_debug(), self.error)
    }
}

/// A walk of one snapshot: an iterator of matches in byte-wise order of
/// their paths, so that walks of several snapshots merge easily. `Err` items
/// are paths it had to skip; it goes on after them.
///
/// It reads a directory only when some pattern can match below it and the
/// next component is not literal in every pattern (literal names are looked
/// up directly). It opens each directory relative to its parent with
/// `O_NOFOLLOW`, so it never follows a symlink nor leaves the root. It keeps,
/// per level of depth, one open directory and the names there that can
/// still match, never the matches. A matching directory is yielded itself;
/// what lies below is yielded only where it matches too.
pub struct Walk<'p> {
    nfa: Nfa<'p>,
    stack: Vec<Frame>,
    /// The client path of the entry at hand.
    path: Vec<u8>,
    /// getdents buffer, shared by all levels.
    buf: Vec<MaybeUninit<u8>>,
    /// The root itself, when it matches (only `/` and `/**` do).
    root: Option<Result<Found, Warning>>,
    /// Listings shared with the walks of other snapshots, if any.
    cache: Option<Rc<RefCell<DirCache>>>,
    /// The directories read, for tests to check the pruning.
    #[cfg(test)]
    reads: Vec<Vec<u8>>,
}

/// Directory listings shared by the walks of several snapshots. On btrfs a
/// directory that did not change between snapshots keeps its inode number
/// and its ctime (which any change to its entries moves on), so what it
/// holds needs reading only once however many snapshots share it. Plain
/// snapshots get new directories each time and simply never hit. The cache
/// is cleared when full, so its memory stays bounded.
#[derive(Default)]
pub struct DirCache {
    listings: HashMap<DirKey, Vec<Event>>,
}

/// A directory's identity and version, and where in the patterns it is.
#[derive(PartialEq, Eq, Hash)]
struct DirKey {
    ino: u64,
    ctime: (i64, i64),
    mtime: (i64, i64),
    size: i64,
    states: Vec<State>,
}

/// How many directory listings a cache keeps before starting afresh.
const MAX_CACHED_DIRS: usize = 4096;

impl DirCache {
    /// An empty cache, to share between walks in one thread.
    pub fn shared() -> Rc<RefCell<DirCache>> {
        Rc::new(RefCell::new(DirCache::default()))
    }
}

struct Frame {
    dir: OwnedFd,
    /// Length of this directory's path in `Walk::path`.
    path_len: usize,
    /// What is left to do here, sorted so that `pop` gives path order.
    events: Vec<Event>,
}

#[derive(Clone)]
struct Event {
    name: Vec<u8>,
    /// What readdir said the entry is (`Unknown` for a literal name).
    kind: FileType,
    /// `None`: yield the entry. `Some`: descend into it, in these states.
    descend: Option<Vec<State>>,
}

impl Event {
    /// Descending sorts as `name/`: after `name.x`, as full paths sort.
    fn key(&self) -> impl Iterator<Item = &u8> {
        self.name.iter().chain(self.descend.as_ref().map(|_| &b'/'))
    }
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

impl<'p> Walk<'p> {
    /// Starts a walk of the tree at `root`, the client's `/` (which must not
    /// be a symlink). Fails only if `root` cannot be opened or read.
    pub fn new(root: &Path, patterns: &'p [Pattern]) -> io::Result<Walk<'p>> {
        Self::with_cache(root, patterns, None)
    }

    /// Like [`Walk::new`], sharing directory listings with other walks
    /// through `cache` (see [`DirCache`]).
    pub fn with_cache(
        root: &Path,
        patterns: &'p [Pattern],
        cache: Option<Rc<RefCell<DirCache>>>,
    ) -> io::Result<Walk<'p>> {
        let dir = rustix::fs::openat(CWD, root, DIR_FLAGS, Mode::empty())?;
        let nfa = Nfa::new(patterns);
        let start = nfa.start();
        let mut root = None;
        if nfa.accepts(&start) {
            let path = b"/".to_vec();
            root = Some(match meta_of_open(&dir, &rustix::fs::fstat(&dir)?) {
                Ok(meta) => Ok(Found { path, meta }),
                Err(error) => Err(Warning { path, error }),
            });
        }
        let buf = vec![MaybeUninit::uninit(); 32 * 1024];
        let mut walk = Walk {
            nfa,
            stack: Vec::new(),
            path: b"/".to_vec(),
            buf,
            root,
            cache,
            #[cfg(test)]
            reads: Vec::new(),
        };
        if walk.nfa.live(&start) {
            let events = walk.list(dir.as_fd(), &start)?;
            walk.stack.push(Frame {
                dir,
                path_len: 1,
                events,
            });
        }
        Ok(walk)
    }

    /// What to do in `dir`, entered in `states`: from its listing, or from
    /// the literal names that are all the patterns can match there.
    fn list(&mut self, dir: BorrowedFd<'_>, states: &[State]) -> io::Result<Vec<Event>> {
        // Set when this listing may be shared through the cache.
        let mut key = None;
        let nfa = &self.nfa;
        let (mut events, mut next) = (Vec::new(), Vec::new());
        let mut add = |name: &[u8], kind: FileType| {
            nfa.step(states, name, &mut next);
            if nfa.accepts(&next) {
                events.push(Event {
                    name: name.to_vec(),
                    kind,
                    descend: None,
                });
            }
            if nfa.live(&next) && matches!(kind, FileType::Directory | FileType::Unknown) {
                let descend = Some(next.clone());
                events.push(Event {
                    name: name.to_vec(),
                    kind,
                    descend,
                });
            }
        };
        if let Some(names) = nfa.literals(states) {
            names
                .into_iter()
                .for_each(|name| add(name, FileType::Unknown));
        } else {
            key = match &self.cache {
                Some(_) => {
                    let st = rustix::fs::fstat(dir)?;
                    Some(DirKey {
                        ino: st.st_ino as u64,
                        ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
                        mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
                        size: st.st_size as i64,
                        states: states.to_vec(),
                    })
                }
                None => None,
            };
            if let (Some(cache), Some(key)) = (&self.cache, &key) {
                if let Some(events) = cache.borrow().listings.get(key) {
                    return Ok(events.clone());
                }
            }
            #[cfg(test)]
            self.reads.push(self.path.clone());
            let mut entries = RawDir::new(dir, &mut self.buf);
            while let Some(entry) = entries.next() {
                let entry = entry?;
                let name = entry.file_name().to_bytes();
                if name != b"." && name != b".." {
                    add(name, entry.file_type());
                }
            }
        }
        events.sort_unstable_by(|a, b| b.key().cmp(a.key()));
        if let (Some(cache), Some(key)) = (&self.cache, key) {
            let mut cache = cache.borrow_mut();
            if cache.listings.len() >= MAX_CACHED_DIRS {
                cache.listings.clear();
            }
            cache.listings.insert(key, events.clone());
        }
        Ok(events)
    }

    fn warning(&self, error: io::Error) -> Option<Result<Found, Warning>> {
        Some(Err(Warning {
            path: self.path.clone(),
            error,
        }))
    }
}

/// Errors that just mean "nothing to see here": the entry vanished, is not
/// a directory, or is a symlink (refused by `O_NOFOLLOW`).
fn absent(e: &io::Error) -> bool {
    let errnos = [Errno::NOENT, Errno::NOTDIR, Errno::LOOP, Errno::NAMETOOLONG];
    e.kind() == io::ErrorKind::NotFound
        || errnos
            .iter()
            .any(|n| e.raw_os_error() == Some(n.raw_os_error()))
}

impl Iterator for Walk<'_> {
    type Item = Result<Found, Warning>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(root) = self.root.take() {
            return Some(root);
        }
        loop {
            let depth = self.stack.len();
            let frame = self.stack.last_mut()?;
            let Some(event) = frame.events.pop() else {
                self.stack.pop();
                continue;
            };
            self.path.truncate(frame.path_len);
            if frame.path_len > 1 {
                self.path.push(b'/');
            }
            self.path.extend_from_slice(&event.name);
            let name = OsStr::from_bytes(&event.name);
            let Some(states) = event.descend else {
                match meta_at(frame.dir.as_fd(), name, event.kind) {
                    Ok(meta) => {
                        return Some(Ok(Found {
                            path: self.path.clone(),
                            meta,
                        }));
                    }
                    Err(e) if absent(&e) => continue,
                    Err(e) => return self.warning(e),
                }
            };
            if depth >= MAX_DEPTH {
                let msg = format!("directories nested more than {MAX_DEPTH} deep");
                return self.warning(io::Error::other(msg));
            }
            let dir = match rustix::fs::openat(frame.dir.as_fd(), name, DIR_FLAGS, Mode::empty()) {
                Ok(dir) => dir,
                Err(e) if absent(&e.into()) => continue,
                Err(e) => return self.warning(e.into()),
            };
            match self.list(dir.as_fd(), &states) {
                Ok(events) => {
                    let path_len = self.path.len();
                    self.stack.push(Frame {
                        dir,
                        path_len,
                        events,
                    });
                }
                Err(e) => return self.warning(e),
            }
        }
    }
}

/// Walks the snapshot at `root` (see [`Walk`]), passing each match to
/// `emit`, in byte-wise path order, until it returns `Break`, and each path
/// it had to skip to `on_warning`. Fails only if `root` cannot be read.
pub fn walk(
    root: &Path,
    patterns: &[Pattern],
    mut on_warning: impl FnMut(Warning),
    mut emit: impl FnMut(Found) -> ControlFlow<()>,
) -> io::Result<()> {
    for item in Walk::new(root, patterns)? {
        match item.map(&mut emit) {
            Ok(ControlFlow::Break(())) => break,
            Ok(ControlFlow::Continue(())) => {}
            Err(warning) => on_warning(warning),
        }
    }
    Ok(())
}

// -------------------------------------------------------------- encoding

/// Why an encoded argument or result line was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

fn bad<T>(msg: String) -> Result<T, DecodeError> {
    Err(DecodeError(msg))
}

impl DecodeError {
    /// An error with this message, for formats built on this one.
    pub fn new(msg: impl Into<String>) -> DecodeError {
        DecodeError(msg.into())
    }
}

fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-')
}

/// Encodes bytes as a word safe in a command line: `[A-Za-z0-9._/-]` stay,
/// all else becomes `%XX`. A leading `-` is escaped too, so the word can't
/// pass for an option (and `-` alone is free to mean "none"). Only the empty
/// input gives the empty word, which a command line can't carry.
pub fn encode_arg(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        if plain(b) && !(i == 0 && b == b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes [`encode_arg`]'s output (hex digits in either case).
pub fn decode_arg(s: &str) -> Result<Vec<u8>, DecodeError> {
    let hex = |b: Option<&u8>| b.and_then(|&b| char::from(b).to_digit(16));
    let (mut out, mut bytes) = (Vec::with_capacity(s.len()), s.as_bytes().iter());
    while let Some(&b) = bytes.next() {
        match b {
            b'%' => match (hex(bytes.next()), hex(bytes.next())) {
                (Some(hi), Some(lo)) => out.extend(u8::try_from(hi * 16 + lo).ok()),
                _ => return bad("'%' must be followed by two hex digits".to_owned()),
            },
            _ if plain(b) => out.push(b),
            _ => return bad(format!("unexpected {:?} in an encoded word", char::from(b))),
        }
    }
    Ok(out)
}

/// One result as a line (without the newline): tab-separated path (encoded
/// as by [`encode_arg`]), octal mode, uid, gid, size, mtime, `major,minor`
/// or `-`, and the encoded symlink target or `-`.
pub fn encode_found(found: &Found) -> String {
    let m = &found.meta;
    let rdev = m.rdev.map_or("-".to_owned(), |(a, b)| format!("{a},{b}"));
    let target = m
        .symlink_target
        .as_deref()
        .map_or("-".to_owned(), encode_arg);
    let (path, mode) = (encode_arg(&found.path), m.mode);
    format!(
        "{path}\t{mode:o}\t{}\t{}\t{}\t{}\t{rdev}\t{target}",
        m.uid, m.gid, m.size, m.mtime
    )
}

/// Parses a line made by [`encode_found`] (a trailing newline is allowed).
pub fn decode_found(line: &str) -> Result<Found, DecodeError> {
    fn num<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, DecodeError> {
        s.parse().or_else(|_| bad(format!("invalid {what} {s:?}")))
    }
    let fields: Vec<&str> = line
        .strip_suffix('\n')
        .unwrap_or(line)
        .split('\t')
        .collect();
    let [path, mode, uid, gid, size, mtime, rdev, target] = fields[..] else {
        return bad(format!(
            "expected 8 tab-separated fields, got {}",
            fields.len()
        ));
    };
    let rdev = match rdev.split_once(',') {
        _ if rdev == "-" => None,
        Some((a, b)) => Some((num("major", a)?, num("minor", b)?)),
        None => return bad(format!("invalid device {rdev:?}")),
    };
    let meta = Meta {
        mode: u32::from_str_radix(mode, 8).or_else(|_| bad(format!("invalid mode {mode:?}")))?,
        uid: num("uid", uid)?,
        gid: num("gid", gid)?,
        size: num("size", size)?,
        mtime: num("mtime", mtime)?,
        rdev,
        symlink_target: if target == "-" {
            None
        } else {
            Some(decode_arg(target)?)
        },
    };
    Ok(Found {
        path: decode_arg(path)?,
        meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::path::PathBuf;

    fn pat(p: &str) -> Pattern {
        Pattern::parse(p.as_bytes()).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    fn yes(p: &str, paths: &[&str]) {
        let pattern = pat(p);
        for path in paths {
            assert!(pattern.matches(path.as_bytes()), "{p} should match {path}");
        }
    }

    fn no(p: &str, paths: &[&str]) {
        let pattern = pat(p);
        for path in paths {
            assert!(
                !pattern.matches(path.as_bytes()),
                "{p} should not match {path}"
            );
        }
    }

    fn err(p: &[u8]) -> PatternError {
        Pattern::parse(p).expect_err(&String::from_utf8_lossy(p))
    }

    #[test]
    fn literals_and_normalisation() {
        yes(
            "/etc/passwd",
            &[
                "/etc/passwd",
                "//etc//passwd",
                "/etc/./passwd",
                "/etc/passwd/",
            ],
        );
        no(
            "/etc/passwd",
            &[
                "/etc/passw",
                "/etc/passwdx",
                "/etc",
                "/etc/passwd/x",
                "etc/passwd",
            ],
        );
        yes("//etc/./nginx//", &["/etc/nginx"]);
        yes("/", &["/", "//", "/."]);
        no("/", &["/etc"]);
        yes("/a/.../b..c", &["/a/.../b..c"]);
        // A path climbing out never matches, whatever the pattern.
        no("/**", &["/etc/../etc", "/.."]);
        no("/etc/*", &["/etc/.."]);
        no("/*/.?", &["/etc/.."]);
    }

    #[test]
    fn star_and_question() {
        yes("/home/*/file", &["/home/alice/file", "/home/b/file"]);
        no(
            "/home/*/file",
            &["/home/file", "/home/a/b/file", "/home/.x/file"],
        );
        yes("/etc/*.conf", &["/etc/a.conf", "/etc/a.b.conf"]);
        no(
            "/etc/*.conf",
            &["/etc/.conf", "/etc/a.conf/x", "/etc/a.confx"],
        );
        yes(
            "/etc/a*b*c",
            &["/etc/abc", "/etc/aXbYc", "/etc/abbbcbc", "/etc/a*b*c"],
        );
        no("/etc/a*b*c", &["/etc/ab", "/etc/acb", "/etc/abcd"]);
        yes("/f?le", &["/file", "/fole", "/féle", "/f\tle"]);
        no("/f?le", &["/fle", "/fiile", "/f/le"]);
        yes("/x/a**b", &["/x/ab", "/x/aXXb"]);
        no("/x/a**b", &["/x/a/b"]);
        yes("/*", &["/etc", "/x y"]);
    }

    #[test]
    fn dotfile_rules() {
        yes("/home/*/.bashrc", &["/home/alice/.bashrc"]);
        no("/home/*", &["/home/.cache"]);
        yes("/home/*", &["/home/a.b"]);
        no("/home/?cache", &["/home/.cache"]);
        no("/home/[.]cache", &["/home/.cache"]);
        no("/home/[!a]cache", &["/home/.cache"]);
        no("/home/*cache", &["/home/.cache"]);
        yes("/home/.*", &["/home/.cache", "/home/.x"]);
        no("/home/.*", &["/home/x"]);
        yes("/home/{*,.*}", &["/home/.cache", "/home/x"]);
        yes("/home/\\.cache", &["/home/.cache"]);
        no(
            "/home/**/x",
            &["/home/.cache/x", "/home/a/.b/x", "/home/.x"],
        );
        yes("/home/**/x", &["/home/x", "/home/a/x", "/home/a/b/x"]);
        no(
            "/home/**",
            &["/home/.cache", "/home/a/.cache", "/home/.cache/a"],
        );
        yes(
            "/home/.cache/**",
            &["/home/.cache/a", "/home/.cache/a/b", "/home/.cache"],
        );
        yes(
            "/home/**/.bashrc",
            &["/home/.bashrc", "/home/alice/.bashrc"],
        );
    }

    #[test]
    fn double_star_positions() {
        yes("/**", &["/", "/etc", "/etc/passwd", "/a/b/c/d"]);
        yes("/**/passwd", &["/passwd", "/etc/passwd", "/a/b/c/passwd"]);
        no("/**/passwd", &["/etc/passwd2", "/etc/passwd/x"]);
        yes(
            "/home/**/file4?",
            &["/home/file41", "/home/u1/file42", "/home/u/v/w/file49"],
        );
        no(
            "/home/**/file4?",
            &["/home/u1/file4", "/home/u1/file410", "/etc/file41"],
        );
        yes("/home/**", &["/home", "/home/a", "/home/a/b/c"]);
        no("/home/**", &["/etc", "/homes"]);
        yes("/a/**/b/**/c", &["/a/b/c", "/a/x/b/y/z/c", "/a/b/b/c"]);
        no("/a/**/b/**/c", &["/a/c", "/a/x/c"]);
        yes("/a/**/**/b", &["/a/b", "/a/x/b", "/a/x/y/b"]);
    }

    #[test]
    fn classes() {
        yes("/[abc]", &["/a", "/c"]);
        no("/[abc]", &["/d", "/ab", "/"]);
        yes("/[a-c]x", &["/bx"]);
        no("/[a-c]x", &["/dx"]);
        yes("/[!a-c]", &["/d", "/é"]);
        yes("/[^a-c]", &["/d"]);
        no("/[^a-c]", &["/b"]);
        yes("/[]]", &["/]"]);
        yes("/[!]]", &["/a"]);
        no("/[!]]", &["/]"]);
        yes("/[a-]", &["/-", "/a"]);
        yes("/[-a]", &["/-"]);
        yes("/[\\]a]", &["/]", "/a"]);
        yes("/[é-ë]", &["/ê"]);
        no("/[é-ë]", &["/e", "/ì"]);
        no("/[z-a]*", &["/a", "/z"]);
        yes("/[*?{]", &["/*", "/?", "/{"]);
        no("/[*]", &["/a"]);
    }

    #[test]
    fn braces() {
        yes("/etc/{passwd,group}", &["/etc/passwd", "/etc/group"]);
        no(
            "/etc/{passwd,group}",
            &["/etc/shadow", "/etc/{passwd,group}"],
        );
        yes(
            "/etc/{nginx/sites-enabled,apache2}/*",
            &["/etc/nginx/sites-enabled/a", "/etc/apache2/b"],
        );
        no("/etc/{nginx/sites-enabled,apache2}/*", &["/etc/nginx/a"]);
        yes("/x/a{b,c{d,e}}f", &["/x/abf", "/x/acdf", "/x/acef"]);
        no("/x/a{b,c{d,e}}f", &["/x/acf"]);
        yes("/x/{,.}bashrc", &["/x/bashrc", "/x/.bashrc"]);
        yes("/x/{}y", &["/x/y"]);
        yes("/x/a}b", &["/x/a}b"]);
        yes("/x/a,b", &["/x/a,b"]);
        yes("{/a,/b}", &["/a", "/b"]);
        yes("/x/{a,./b}", &["/x/a", "/x/b"]);
        yes("/x/{*.rs,*.toml}", &["/x/a.rs", "/x/Cargo.toml"]);
        yes("/x/\\{a,b}", &["/x/{a,b}"]);
        assert_eq!(err(b"{/a,b}"), PatternError::NotAbsolute);
        assert_eq!(err(b"/x/{a,b"), PatternError::UnclosedBrace(3));
        assert_eq!(err(b"/x/{a,{b}"), PatternError::UnclosedBrace(3));
        assert_eq!(
            err(&[b"/".as_slice(), &[b'{'; 40], &[b'}'; 40]].concat()),
            PatternError::TooDeep
        );
        assert_eq!(
            err(b"/{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}"),
            PatternError::TooManyAlternatives
        );
        let many = format!("/{{{}}}", vec!["a"; 300].join(","));
        assert_eq!(err(many.as_bytes()), PatternError::TooManyAlternatives);
        assert!(Pattern::parse(b"/{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}").is_ok());
        // 128 alternatives of 200 tokens are too much to match per entry.
        let long = format!("/{}{}", "{a,b}".repeat(7), "/[a-z]*".repeat(100));
        assert_eq!(err(long.as_bytes()), PatternError::TooManyAlternatives);
        let nested = format!("/{}", "{a,{b,{c,{d,{e,{f,{g,{h,i}}}}}}}}".repeat(3));
        assert_eq!(err(nested.as_bytes()), PatternError::TooManyAlternatives);
        // Identical alternatives are kept once.
        assert_eq!(pat("/{a,a,./a}").alts.len(), 1);
    }

    #[test]
    fn escapes() {
        yes("/x/\\*", &["/x/*"]);
        no("/x/\\*", &["/x/a"]);
        yes("/x/\\?\\[\\]\\{\\}\\,\\\\", &["/x/?[]{},\\"]);
        yes("/x/a\\/b", &["/x/a/b"]);
        yes("/x/\\a", &["/x/a"]);
        yes("/x/\\*\\*/y", &["/x/**/y"]);
        no("/x/\\*\\*/y", &["/x/y", "/x/a/y"]);
        assert_eq!(err(b"/x\\"), PatternError::TrailingBackslash);
        assert_eq!(err(b"/x/[a\\"), PatternError::UnclosedBracket(3));
    }

    #[test]
    fn refused_patterns() {
        assert_eq!(err(b""), PatternError::Empty);
        assert_eq!(err(b"etc/passwd"), PatternError::NotAbsolute);
        assert_eq!(err(b"*/x"), PatternError::NotAbsolute);
        yes("\\/x", &["/x"]); // an escaped '/' is still a separator
        for p in [
            "/..",
            "/etc/..",
            "/etc/../x",
            "/a/\\.\\./b",
            "/{..,x}",
            "/x{/..,}",
            "/a\\/../b",
        ] {
            assert_eq!(err(p.as_bytes()), PatternError::DotDot, "{p}");
        }
        assert_eq!(err(b"/x\0y"), PatternError::Nul);
        assert_eq!(err(&[b'/'; 5000]), PatternError::TooLong);
        assert_eq!(err(b"/x/[ab"), PatternError::UnclosedBracket(3));
        assert_eq!(err(b"/x/[]"), PatternError::UnclosedBracket(3));
        assert_eq!(err(b"/x/[!]"), PatternError::UnclosedBracket(3));
        assert_eq!(
            PatternError::DotDot.to_string(),
            "'..' is not allowed in a pattern"
        );
        for e in [err(b"/[a"), err(b"/{a"), err(b""), err(b"a"), err(b"/a\\")] {
            let msg = e.to_string();
            assert!(!msg.contains('\n') && msg.len() < 120, "{msg}");
        }
    }

    #[test]
    fn hostile_bytes() {
        let p = Pattern::parse(b"/data/\xff\n\t*").unwrap();
        assert!(p.matches(b"/data/\xff\n\tx\xfe"));
        assert!(!p.matches(b"/data/\xfe\n\tx"));
        let p = Pattern::parse(b"/data/?").unwrap();
        assert!(p.matches(b"/data/\xff"));
        assert!(p.matches("/data/€".as_bytes()));
        assert!(!p.matches(b"/data/\xe2\x82")); // two stray bytes are two characters
        let p = Pattern::parse(b"/data/[\xff\xfe]").unwrap();
        assert!(p.matches(b"/data/\xfe"));
        assert!(!p.matches("/data/ÿ".as_bytes())); // U+00FF is not the byte 0xff
        // Whatever the bytes, parsing and matching never panic.
        let alphabet = b"/*?[]{},!^-\\.a\xff\xc3\xa9\n";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 8 == 0 {
                        r as u8
                    } else {
                        alphabet[(r >> 8) as usize % alphabet.len()]
                    }
                })
                .collect();
            if let Ok(p) = Pattern::parse(&bytes) {
                let mut path = bytes.clone();
                path.retain(|b| !b"*?[]{}\\".contains(b));
                p.matches(&path);
                p.matches(&bytes);
                p.may_match_below(&path);
                let _ = (encode_arg(&bytes), mode_string(next() as u32));
            }
            assert_eq!(decode_arg(&encode_arg(&bytes)).unwrap(), bytes);
        }
    }

    #[test]
    fn pruning() {
        let p = pat("/etc/nginx/*");
        for d in ["/", "/etc", "/etc/nginx", "//etc/./nginx/"] {
            assert!(p.may_match_below(d.as_bytes()), "{d}");
        }
        for d in ["/usr", "/etc/nginx/x", "/etc/apache2", "/etc/.."] {
            assert!(!p.may_match_below(d.as_bytes()), "{d}");
        }
        let p = pat("/home/**/x");
        assert!(p.may_match_below(b"/home/a/b/c"));
        assert!(!p.may_match_below(b"/home/.cache"));
        assert!(!p.may_match_below(b"/etc"));
        assert!(!pat("/").may_match_below(b"/"));
        assert!(pat("/{etc,usr}/x").may_match_below(b"/usr"));
    }

    #[test]
    fn modes() {
        assert_eq!(mode_string(0o100644), "-rw-r--r--");
        assert_eq!(mode_string(0o040755), "drwxr-xr-x");
        assert_eq!(mode_string(0o120777), "lrwxrwxrwx");
        assert_eq!(mode_string(0o020666), "crw-rw-rw-");
        assert_eq!(mode_string(0o060660), "brw-rw----");
        assert_eq!(mode_string(0o010640), "prw-r-----");
        assert_eq!(mode_string(0o140755), "srwxr-xr-x");
        assert_eq!(mode_string(0o104755), "-rwsr-xr-x");
        assert_eq!(mode_string(0o104644), "-rwSr--r--");
        assert_eq!(mode_string(0o102755), "-rwxr-sr-x");
        assert_eq!(mode_string(0o102745), "-rwxr-Sr-x");
        assert_eq!(mode_string(0o041777), "drwxrwxrwt");
        assert_eq!(mode_string(0o041776), "drwxrwxrwT");
        assert_eq!(mode_string(0o000000), "?---------");
    }

    #[test]
    fn stat_xattr_values() {
        assert_eq!(
            parse_stat_xattr(b"100640 0,0 1234:5678"),
            Some([0o100640, 0, 0, 1234, 5678])
        );
        assert_eq!(
            parse_stat_xattr(b"20666 1,3 0:0\0"),
            Some([0o20666, 1, 3, 0, 0])
        );
        assert_eq!(
            parse_stat_xattr(b"120777 0,0 4294967295:0"),
            Some([0o120777, 0, 0, u32::MAX, 0])
        );
        for bad in [
            &b""[..],
            b"100640",
            b"100640 0,0",
            b"100640 0 1:2",
            b"100640 0,0 1",
            b"180640 0,0 1:2",
            b"000640 0,0 1:2",
            b"100640 -1,0 1:2",
            b"100640 0,0 1:+2",
            b"100640 0,0 4294967296:0",
            b"1777777777777 0,0 1:2",
            b"100640 0,0 1:2 x",
            b"\xff",
        ] {
            assert_eq!(parse_stat_xattr(bad), None, "{}", bad.escape_ascii());
        }
    }

    #[test]
    fn versions() {
        let m = |size, mtime| Meta {
            size,
            mtime,
            ..Meta::default()
        };
        let all = vec![
            ("s5", m(1, 10)),
            ("s4", m(1, 10)),
            ("s3", m(2, 10)),
            ("s2", m(1, 10)),
            ("s1", m(1, 9)),
        ];
        let kept: Vec<&str> = distinct_versions(all).into_iter().map(|(s, _)| s).collect();
        assert_eq!(kept, ["s5", "s3", "s1"]);
        assert!(distinct_versions(Vec::<(u8, Meta)>::new()).is_empty());
    }

    #[test]
    fn arg_encoding() {
        assert_eq!(encode_arg(b"/home/a-b_c.d/E9"), "/home/a-b_c.d/E9");
        assert_eq!(encode_arg(b"/a b\n%'\"\xff"), "/a%20b%0A%25%27%22%FF");
        assert_eq!(encode_arg(b"-rf"), "%2Drf");
        assert_eq!(encode_arg(b"*?{}"), "%2A%3F%7B%7D");
        assert_eq!(decode_arg("%2a%2A").unwrap(), b"**");
        assert_eq!(decode_arg("-x").unwrap(), b"-x");
        for bad in ["%", "%4", "%zz", "a b", "é", "a\n", "%4g"] {
            assert!(decode_arg(bad).is_err(), "{bad}");
        }
        let all: Vec<u8> = (0..=255).collect();
        let enc = encode_arg(&all);
        assert!(
            enc.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._/-%".contains(&b))
        );
        assert_eq!(decode_arg(&enc).unwrap(), all);
    }

    #[test]
    fn found_lines() {
        let found = Found {
            path: b"/home/a\tb\n\xff".to_vec(),
            meta: Meta {
                mode: 0o120777,
                uid: 1,
                gid: 2,
                size: 3,
                mtime: -5,
                rdev: None,
                symlink_target: Some(b"-".to_vec()),
            },
        };
        let line = encode_found(&found);
        assert!(
            !line.contains('\n') && line.split('\t').count() == 8,
            "{line}"
        );
        assert_eq!(decode_found(&line).unwrap(), found);
        assert_eq!(decode_found(&format!("{line}\n")).unwrap(), found);
        let dev = Found {
            path: b"/dev/null".to_vec(),
            meta: Meta {
                mode: 0o20666,
                rdev: Some((1, 3)),
                ..Meta::default()
            },
        };
        let line = encode_found(&dev);
        assert_eq!(line, "/dev/null\t20666\t0\t0\t0\t0\t1,3\t-");
        assert_eq!(decode_found(&line).unwrap(), dev);
        let empty = Found {
            path: b"/x".to_vec(),
            meta: Meta {
                symlink_target: Some(vec![]),
                ..Meta::default()
            },
        };
        assert_eq!(decode_found(&encode_found(&empty)).unwrap(), empty);
        for bad in [
            "",
            "/x",
            "/x\t1\t2\t3\t4\t5\t-",
            "/x\t9\t0\t0\t0\t0\t-\t-",
            "/x\t1\t0\t0\t0\t0\t1\t-",
            "/x\t1\t0\t0\t0\t0\t-\t-\t-",
            "/ x\t1\t0\t0\t0\t0\t-\t-",
        ] {
            assert!(decode_found(bad).is_err(), "{bad:?}");
        }
    }

    // ---------------------------------------------------------- the walk

    /// A scratch tree, removed when dropped. On a filesystem with user
    /// xattrs: the temp dir if it has them, else /var/tmp.
    struct Tree(PathBuf);

    impl Tree {
        fn new(tag: &str) -> Tree {
            // Unique per process and per tree, as tests run in parallel.
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let name = format!("byteback-listing-{tag}-{}-{n}", std::process::id());
            for base in [std::env::temp_dir(), PathBuf::from("/var/tmp")] {
                let dir = base.join(&name);
                let _ = fs::remove_dir_all(&dir);
                fs::create_dir_all(&dir).unwrap();
                if rustix::fs::lsetxattr(&dir, "user.probe", b"1", rustix::fs::XattrFlags::empty())
                    .is_ok()
                {
                    return Tree(dir);
                }
                fs::remove_dir_all(&dir).unwrap();
            }
            panic!("no filesystem with user xattrs for the tests");
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.0.join(rel.trim_start_matches('/'))
        }

        fn dir(&self, rel: &str) -> &Self {
            fs::create_dir_all(self.path(rel)).unwrap();
            self
        }

        fn file(&self, rel: &str, content: &[u8]) -> &Self {
            let p = self.path(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
            self
        }

        fn xattr(&self, rel: &str, value: &str) -> &Self {
            let flags = rustix::fs::XattrFlags::empty();
            rustix::fs::lsetxattr(self.path(rel), STAT_XATTR, value.as_bytes(), flags).unwrap();
            self
        }

        /// Every match of `patterns`, and the directories read on the way.
        fn walk(&self, patterns: &[&[u8]]) -> (Vec<Found>, Vec<String>) {
            let patterns: Vec<Pattern> = patterns
                .iter()
                .map(|p| Pattern::parse(p).unwrap())
                .collect();
            let mut walk = Walk::new(&self.0, &patterns).unwrap();
            let found = walk.by_ref().map(|r| r.unwrap()).collect();
            let reads = walk
                .reads
                .iter()
                .map(|r| String::from_utf8_lossy(r).into_owned())
                .collect();
            (found, reads)
        }

        fn paths(&self, patterns: &[&str]) -> Vec<String> {
            let patterns: Vec<&[u8]> = patterns.iter().map(|p| p.as_bytes()).collect();
            let (found, _) = self.walk(&patterns);
            found
                .iter()
                .map(|f| String::from_utf8_lossy(&f.path).into_owned())
                .collect()
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn sample() -> Tree {
        let t = Tree::new("sample");
        t.file("/etc/nginx/nginx.conf", b"x")
            .file("/etc/nginx/sites/default", b"x")
            .file("/etc/passwd", b"root")
            .file("/etc/hosts", b"h")
            .file("/home/alice/.bashrc", b"a")
            .file("/home/alice/notes", b"n")
            .file("/home/alice/.cache/x", b"c")
            .file("/home/bob/.bashrc", b"b")
            .file("/home/bob/src/x", b"x")
            .file("/home/bob.old/x", b"x")
            .file("/home/bob-x", b"x")
            .file("/home/.hidden/x", b"x")
            .dir("/usr/share/doc");
        t
    }

    /// Every path under `dir`, found with std and no symlink followed.
    fn brute_force(root: &Path, rel: &[u8], out: &mut Vec<Vec<u8>>) {
        for entry in
            fs::read_dir(root.join(OsStr::from_bytes(rel.get(1..).unwrap_or_default()))).unwrap()
        {
            let entry = entry.unwrap();
            let path = [rel, b"/", entry.file_name().as_bytes()].concat();
            let path = if rel == b"/" {
                path[1..].to_vec()
            } else {
                path
            };
            out.push(path.clone());
            if entry.file_type().unwrap().is_dir() {
                brute_force(root, &path, out);
            }
        }
    }

    #[test]
    fn walk_agrees_with_brute_force() {
        let t = sample();
        let names = ["a", "b", ".a", "a.b", "ab", "b-"];
        let mut seed = 7u64;
        for _ in 0..150 {
            let mut path = String::new();
            for _ in 0..=(seed % 4) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                path = format!("{path}/{}", names[(seed >> 33) as usize % names.len()]);
            }
            // A name may already be a file; then this one is skipped.
            let _ = fs::create_dir_all(t.path(&path));
            let _ = fs::write(t.path(&format!("{path}/f{}", seed % 3)), b"x");
        }
        symlink("a", t.path("/a/l")).unwrap();
        let mut all = vec![b"/".to_vec()];
        brute_force(&t.0, b"/", &mut all);
        all.sort();
        let patterns = [
            "/**",
            "/a/**",
            "/**/a",
            "/**/f?",
            "/*/*",
            "/.a/**/f0",
            "/{a,b}/*/**/f[!1]",
            "/**/.a/*",
            "/a{,/b}/**/f1",
            "/*b*/**",
            "/[!a]*/**",
            "/a/l",
            "/a/l/**",
            "/{*,.*}/{*,.*}",
            "/",
        ];
        for p in patterns {
            let pattern = pat(p);
            let want: Vec<&Vec<u8>> = all.iter().filter(|x| pattern.matches(x)).collect();
            let (found, _) = t.walk(&[p.as_bytes()]);
            let got: Vec<&Vec<u8>> = found.iter().map(|f| &f.path).collect();
            assert_eq!(got, want, "{p}");
        }
        let both = t.walk(&[b"/**/f?", b"/a/**"]).0;
        let want: Vec<&Vec<u8>> = all
            .iter()
            .filter(|x| pat("/**/f?").matches(x) || pat("/a/**").matches(x))
            .collect();
        assert_eq!(both.iter().map(|f| &f.path).collect::<Vec<_>>(), want);
    }

    #[test]
    fn a_shared_cache_reads_unchanged_directories_once() {
        let t = sample();
        let patterns = [Pattern::parse(b"/home/**").unwrap()];
        let cache = DirCache::shared();
        let walk_once = || {
            let mut walk = Walk::with_cache(&t.0, &patterns, Some(cache.clone())).unwrap();
            let found: Vec<Vec<u8>> = walk.by_ref().map(|r| r.unwrap().path).collect();
            (found, walk.reads.len())
        };
        let (first, first_reads) = walk_once();
        assert!(first_reads > 1);
        // Nothing changed: every listing comes from the cache, same result.
        assert_eq!(walk_once(), (first.clone(), 0));
        // A directory whose entries change has a new ctime: read again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        t.file("/home/alice/new-file", b"x");
        let (again, reads) = walk_once();
        assert_eq!(reads, 1);
        assert_eq!(again.len(), first.len() + 1);
        assert!(again.contains(&b"/home/alice/new-file".to_vec()));
    }

    #[test]
    fn walk_reads_only_what_patterns_need() {
        let t = sample();
        let (found, reads) = t.walk(&[b"/etc/nginx/*"]);
        let paths: Vec<_> = found.iter().map(|f| f.path.clone()).collect();
        assert_eq!(
            paths,
            [
                b"/etc/nginx/nginx.conf".to_vec(),
                b"/etc/nginx/sites".to_vec()
            ]
        );
        assert_eq!(reads, ["/etc/nginx"]);

        let (found, reads) = t.walk(&[b"/etc/passwd", b"/etc/nope", b"/nope/x", b"/etc/passwd/x"]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, b"/etc/passwd");
        assert!(reads.is_empty(), "{reads:?}");

        assert_eq!(t.walk(&[b"/home/*/.bashrc"]).1, ["/home"]);
        let (_, reads) = t.walk(&[b"/home/**/x"]);
        // In byte order of the paths, so bob.old comes before bob's subtree.
        assert_eq!(
            reads,
            [
                "/home",
                "/home/alice",
                "/home/bob.old",
                "/home/bob",
                "/home/bob/src"
            ]
        );
        assert_eq!(t.walk(&[b"/x/**", b"/nope"]).1, Vec::<String>::new());
    }

    #[test]
    fn walk_order_and_dedup() {
        let t = sample();
        let got = t.paths(&["/home/**", "/home/bob/**", "/home/{bob,alice}/.bashrc"]);
        let mut sorted = got.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(got, sorted, "not in byte order or duplicated");
        assert_eq!(
            got,
            [
                "/home",
                "/home/alice",
                "/home/alice/.bashrc",
                "/home/alice/notes",
                "/home/bob",
                "/home/bob-x",
                "/home/bob.old",
                "/home/bob.old/x",
                "/home/bob/.bashrc",
                "/home/bob/src",
                "/home/bob/src/x",
            ]
        );
        assert_eq!(t.paths(&["/"]), ["/"]);
        assert_eq!(t.paths(&[]), Vec::<String>::new());
        assert_eq!(
            t.paths(&["/home/{*,.*}/x"]),
            ["/home/.hidden/x", "/home/bob.old/x"]
        );
    }

    #[test]
    fn walk_stops_on_break() {
        let t = sample();
        let patterns = [pat("/**")];
        let mut seen = Vec::new();
        walk(
            &t.0,
            &patterns,
            |w| panic!("{w}"),
            |f| {
                seen.push(f.path);
                if seen.len() == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .unwrap();
        assert_eq!(
            seen,
            [b"/".to_vec(), b"/etc".to_vec(), b"/etc/hosts".to_vec()]
        );
        assert!(
            walk(
                &t.path("/nope"),
                &patterns,
                |_| {},
                |_| ControlFlow::Continue(())
            )
            .is_err()
        );
    }

    #[test]
    fn walk_never_follows_symlinks() {
        let t = sample();
        let outside = Tree::new("outside");
        outside.file("/secret/key", b"k");
        symlink(outside.path("/secret"), t.path("/home/evil")).unwrap();
        symlink(t.path("/etc"), t.path("/home/etclink")).unwrap();
        symlink("../../../../../../../../", t.path("/up")).unwrap();
        let (found, reads) = t.walk(&[
            b"/home/*",
            b"/home/*/*",
            b"/home/evil/key",
            b"/up/**",
            b"/home/etclink/passwd",
        ]);
        let evil = found.iter().find(|f| f.path == b"/home/evil").unwrap();
        assert_eq!(evil.meta.mode & S_IFMT, S_IFLNK);
        assert_eq!(
            evil.meta.symlink_target.as_deref(),
            Some(outside.path("/secret").as_os_str().as_bytes())
        );
        assert_eq!(
            evil.meta.size,
            outside.path("/secret").as_os_str().len() as u64
        );
        assert!(
            found
                .iter()
                .all(|f| !f.path.starts_with(b"/home/evil/")
                    && !f.path.starts_with(b"/home/etclink/"))
        );
        assert!(found.iter().all(|f| !f.path.starts_with(b"/up/")));
        assert!(found.iter().any(|f| f.path == b"/home/etclink"));
        assert!(found.iter().any(|f| f.path == b"/up"));
        assert!(
            !reads
                .iter()
                .any(|r| r.contains("evil") || r.contains("etclink") || r.starts_with("/up")),
            "{reads:?}"
        );
        // The root itself must not be a symlink either.
        symlink(&t.0, outside.path("/root")).unwrap();
        assert!(Walk::new(&outside.path("/root"), &[pat("/**")]).is_err());
    }

    #[test]
    fn walk_hostile_names() {
        let t = sample();
        let names: [&[u8]; 4] = [b"new\nline", b"tab\there", b"\xff\xfe", b"-rf"];
        for n in names {
            let p = t.path("/home/bob").join(OsStr::from_bytes(n));
            fs::write(p, b"x").unwrap();
        }
        let patterns = [pat("/home/bob/*")];
        let mut lines = Vec::new();
        walk(
            &t.0,
            &patterns,
            |w| panic!("{w}"),
            |f| {
                lines.push(encode_found(&f));
                ControlFlow::Continue(())
            },
        )
        .unwrap();
        let paths: Vec<Vec<u8>> = lines
            .iter()
            .map(|l| decode_found(l).unwrap().path)
            .collect();
        assert_eq!(
            paths,
            [
                &b"/home/bob/-rf"[..],
                b"/home/bob/new\nline",
                b"/home/bob/src",
                b"/home/bob/tab\there",
                b"/home/bob/\xff\xfe"
            ]
        );
        assert!(lines.iter().all(|l| !l.contains('\n')));
        let p = Pattern::parse(b"/home/bob/new\nline").unwrap();
        assert_eq!(t.walk(&[p.as_bytes()]).0.len(), 1);
    }

    #[test]
    fn fake_super_metadata() {
        let t = sample();
        t.file("/bin/su", b"elf")
            .xattr("/bin/su", "104755 0,0 0:0")
            .file("/home/alice/link", b"../bob/.bashrc")
            .xattr("/home/alice/link", "120777 0,0 1000:1000")
            .file("/dev/null", b"")
            .xattr("/dev/null", "20666 1,3 0:0")
            .file("/dev/sda", b"")
            .xattr("/dev/sda", "60660 8,0 0:6")
            .file("/run/fifo", b"")
            .xattr("/run/fifo", "10640 0,0 0:4")
            .file("/run/sock", b"")
            .xattr("/run/sock", "140777 0,0 33:33")
            .xattr("/home/alice", "40750 0,0 1000:100")
            .file("/bad/garbage", b"")
            .xattr("/bad/garbage", "hello")
            .file("/bad/dirmode", b"")
            .xattr("/bad/dirmode", "40755 0,0 0:0")
            .file("/bad/longlink", &[b'a'; 5000])
            .xattr("/bad/longlink", "120777 0,0 0:0");
        fs::set_permissions(t.path("/etc/hosts"), fs::Permissions::from_mode(0o604)).unwrap();

        let meta = |p: &str| read_meta(&t.path(p)).unwrap();
        let su = meta("/bin/su");
        assert_eq!(
            (mode_string(su.mode), su.uid, su.gid, su.size),
            ("-rwsr-xr-x".into(), 0, 0, 3)
        );
        let link = meta("/home/alice/link");
        assert_eq!(mode_string(link.mode), "lrwxrwxrwx");
        assert_eq!((link.uid, link.size), (1000, 14));
        assert_eq!(link.symlink_target.as_deref(), Some(&b"../bob/.bashrc"[..]));
        let null = meta("/dev/null");
        assert_eq!(
            (mode_string(null.mode), null.rdev),
            ("crw-rw-rw-".into(), Some((1, 3)))
        );
        let sda = meta("/dev/sda");
        assert_eq!(
            (mode_string(sda.mode), sda.rdev, sda.gid),
            ("brw-rw----".into(), Some((8, 0)), 6)
        );
        assert_eq!(mode_string(meta("/run/fifo").mode), "prw-r-----");
        assert_eq!(meta("/run/fifo").rdev, None);
        assert_eq!(mode_string(meta("/run/sock").mode), "srwxrwxrwx");
        let alice = meta("/home/alice");
        assert_eq!(
            (mode_string(alice.mode), alice.uid, alice.gid),
            ("drwxr-x---".into(), 1000, 100)
        );
        // No xattr: the stored file's own lstat.
        let hosts = meta("/etc/hosts");
        let st = fs::symlink_metadata(t.path("/etc/hosts")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            (hosts.mode, hosts.uid, hosts.size, hosts.mtime),
            (0o100604, st.uid(), 1, st.mtime())
        );
        for bad in ["/bad/garbage", "/bad/dirmode", "/bad/longlink"] {
            let e = read_meta(&t.path(bad)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bad}: {e}");
        }

        // The walk gives the same, and skips corrupt entries with a warning.
        let patterns = [pat("/{bin,dev,run,bad}/*"), pat("/home/alice{,/link}")];
        let (mut found, mut warnings) = (Vec::new(), Vec::new());
        walk(
            &t.0,
            &patterns,
            |w| warnings.push(w),
            |f| {
                found.push(f);
                ControlFlow::Continue(())
            },
        )
        .unwrap();
        let modes: Vec<String> = found
            .iter()
            .map(|f| {
                format!(
                    "{} {}",
                    mode_string(f.meta.mode),
                    String::from_utf8_lossy(&f.path)
                )
            })
            .collect();
        assert_eq!(
            modes,
            [
                "-rwsr-xr-x /bin/su",
                "crw-rw-rw- /dev/null",
                "brw-rw---- /dev/sda",
                "drwxr-x--- /home/alice",
                "lrwxrwxrwx /home/alice/link",
                "prw-r----- /run/fifo",
                "srwxrwxrwx /run/sock",
            ]
        );
        let warned: Vec<&[u8]> = warnings.iter().map(|w| w.path.as_slice()).collect();
        assert_eq!(
            warned,
            [&b"/bad/dirmode"[..], b"/bad/garbage", b"/bad/longlink"]
        );
        assert!(
            warnings[1]
                .to_string()
                .contains("corrupt user.rsync.%stat xattr \"hello\""),
            "{}",
            warnings[1]
        );
    }

    #[test]
    fn walk_depth_is_bounded() {
        let t = Tree::new("deep");
        let deep = "/d".repeat(MAX_DEPTH + 5);
        t.dir(&deep);
        let patterns = [pat("/**")];
        let (mut found, mut warnings) = (0, Vec::new());
        let on_found = |_| {
            found += 1;
            ControlFlow::Continue(())
        };
        walk(&t.0, &patterns, |w| warnings.push(w), on_found).unwrap();
        // The root, then one directory per level the walk may open.
        assert_eq!(found, MAX_DEPTH + 1);
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].path, "/d".repeat(MAX_DEPTH).into_bytes());
        assert!(
            warnings[0]
                .to_string()
                .contains("nested more than 256 deep")
        );
    }

    #[test]
    fn walk_real_specials_and_unreadable() {
        let t = sample();
        fs::create_dir_all(t.path("/run/dir")).unwrap();
        rustix::fs::mknodat(
            CWD,
            t.path("/run/fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o640),
            0,
        )
        .unwrap();
        // A real fifo is listed without being opened (which would block).
        let (found, _) = t.walk(&[b"/run/*"]);
        assert_eq!(found.len(), 2);
        assert_eq!(mode_string(found[1].meta.mode), "prw-r-----");
        // An unreadable directory is a warning, and the walk goes on. (Root
        // ignores permissions, so this only bites when not run as root.)
        fs::set_permissions(t.path("/home/bob"), fs::Permissions::from_mode(0o000)).unwrap();
        if fs::read_dir(t.path("/home/bob")).is_err() {
            let patterns = [pat("/home/*/*")];
            let mut warnings = Vec::new();
            let mut n = 0;
            walk(
                &t.0,
                &patterns,
                |w| warnings.push(w.path),
                |_| {
                    n += 1;
                    ControlFlow::Continue(())
                },
            )
            .unwrap();
            assert_eq!(warnings, [b"/home/bob".to_vec()]);
            assert!(n > 0);
        }
        fs::set_permissions(t.path("/home/bob"), fs::Permissions::from_mode(0o755)).unwrap();
    }
}
