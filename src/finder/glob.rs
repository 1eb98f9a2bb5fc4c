//! The glob pattern language of `byteback list` and restore: parsing a
//! pattern, matching a path, and telling whether anything below a directory
//! can match, so that a walk reads only the directories a pattern can lead
//! into.
//!
//! Pure (no I/O). Patterns come from the client, so their size and the
//! matching work they cause are bounded, whatever bytes it sends.

use std::fmt;

/// Longest pattern accepted, in bytes (a path can't be longer either).
const MAX_PATTERN_LEN: usize = 4096;
/// Most patterns, and tokens in all (a `[...]` counting as its ranges), that
/// `{...}` may expand to: these bound the matching work per directory entry,
/// whatever the client sends.
const MAX_ALTERNATIVES: usize = 256;
const MAX_EXPANDED: usize = 16 * 1024;
/// Deepest `{` nesting accepted; bounds the parser's recursion.
const MAX_BRACE_DEPTH: usize = 16;

#[cfg(test)]
thread_local! {
    /// The work done by parsing and matching on this thread, in basic steps
    /// (a token compared, a class range tried, a state visited): what the
    /// property tests bound, rather than time.
    static STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts `n` steps of work (see `STEPS`); nothing outside tests.
#[inline]
fn work(n: usize) {
    #[cfg(test)]
    STEPS.with(|s| s.set(s.get() + n as u64));
    #[cfg(not(test))]
    let _ = n;
}

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
    /// `***`: zero or more components, dot ones too (everything below).
    Everything,
}

/// An absolute glob pattern over the client's paths.
///
/// - `*` matches any run of characters within one component, `?` one
///   character (a UTF-8 character where the name is valid UTF-8, else one
///   byte), `[a-z]`, `[!a-z]`/`[^a-z]` one character in (or not in) a set;
///   a `]` first in a set is literal. POSIX classes (`[:alpha:]`) are not
///   supported.
/// - A component made of `**` alone matches zero or more whole components;
///   elsewhere `**` is just `*`. A component made of `***` alone does too,
///   dot components included: `/etc/***` is `/etc` and everything below it.
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
                    work(acc.len() * opts.len());
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
            size += acc.len() * weight(&tok);
            work(acc.len());
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
        work(1);
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

/// What a token costs to match against one character: one, or a class's
/// ranges (tried one by one), so that sets of thousands of ranges copied
/// into hundreds of alternatives cannot multiply the work.
fn weight(tok: &Tok) -> usize {
    match tok {
        Tok::Class { ranges, .. } => ranges.len().max(1),
        _ => 1,
    }
}

/// The weight of the tokens in `alts`, or an error if it is too much.
fn too_big(alts: &[Vec<Tok>]) -> Result<usize, PatternError> {
    let size = alts.iter().flatten().map(weight).sum();
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
            None if part.len() > 2 && part.iter().all(|t| *t == Tok::Star) => Comp::Everything,
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
        work(1);
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
                work(ranges.len());
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
pub(super) type State = (usize, usize);

/// All alternatives of all patterns, run together as one automaton, so a
/// walk visits each directory once whatever the number of patterns.
pub(super) struct Nfa<'p> {
    progs: Vec<&'p [Comp]>,
}

impl<'p> Nfa<'p> {
    pub(super) fn new(patterns: &'p [Pattern]) -> Self {
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

    pub(super) fn start(&self) -> Vec<State> {
        let mut s = (0..self.progs.len()).map(|p| (p, 0)).collect();
        self.close(&mut s);
        s
    }

    /// Sorts and dedups, and adds what `**` and `***` reach by matching
    /// nothing: each state once, so a run of n of them costs n, not n² (it
    /// once cost minutes of CPU per path for `/**/**/…`).
    fn close(&self, s: &mut Vec<State>) {
        let skips = |st: State| matches!(self.comp(st), Some(Comp::AnyDirs | Comp::Everything));
        s.sort_unstable();
        s.dedup();
        if !s.iter().any(|&st| skips(st)) {
            return;
        }
        let mut out: Vec<State> = Vec::with_capacity(s.len());
        for &(p, mut k) in s.iter() {
            work(1);
            // A state already reached from an earlier `**` of its pattern.
            if out.last().is_some_and(|&(lp, lk)| lp == p && lk >= k) {
                continue;
            }
            out.push((p, k));
            while skips((p, k)) {
                work(1);
                k += 1;
                out.push((p, k));
            }
        }
        *s = out;
    }

    /// The states after entering the component `name`, into `out`.
    pub(super) fn step(&self, s: &[State], name: &[u8], out: &mut Vec<State>) {
        out.clear();
        for &(p, k) in s {
            work(1);
            match self.comp((p, k)) {
                Some(Comp::AnyDirs) if name.first() != Some(&b'.') => out.push((p, k)),
                Some(Comp::Everything) => out.push((p, k)),
                Some(Comp::Literal(l)) if l.as_slice() == name => out.push((p, k + 1)),
                Some(Comp::Glob(g)) if glob_match(g, name) => out.push((p, k + 1)),
                _ => {}
            }
        }
        self.close(out);
    }

    /// Whether some pattern ends here: the path matches.
    pub(super) fn accepts(&self, s: &[State]) -> bool {
        s.iter()
            .any(|&(p, k)| self.progs.get(p).is_some_and(|c| c.len() == k))
    }

    /// Whether some pattern wants more components: look below.
    pub(super) fn live(&self, s: &[State]) -> bool {
        s.iter().any(|&st| self.comp(st).is_some())
    }

    /// The only names that can go on from `s`, if all are literal: then a
    /// walk looks them up instead of reading the whole directory.
    pub(super) fn literals(&self, s: &[State]) -> Option<Vec<&'p [u8]>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finder::meta::mode_string;
    use crate::quote::{decode_arg, encode_arg};

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
    fn triple_star_is_everything_below() {
        yes(
            "/etc/***",
            &[
                "/etc",
                "/etc/a",
                "/etc/.hidden",
                "/etc/.d/.x/y",
                "/etc/a/.b",
            ],
        );
        no("/etc/***", &["/", "/etcx", "/var/.x"]);
        yes("/***", &["/", "/.x", "/a/.b/c"]);
        // Everything below, but never `..`.
        assert_eq!(err(b"/etc/***/.."), PatternError::DotDot);
        assert!(pat("/home/**").may_match_below(b"/home"));
        assert!(pat("/a/***").may_match_below(b"/a/.b"));
        assert!(!pat("/a/**").may_match_below(b"/a/.b"));
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
}

/// Property tests: any bytes, as a pattern or a path, never panic; parsing
/// and matching do bounded work (counted in steps, see `STEPS`, not timed),
/// however hostile the pattern; and what a pattern keeps is bounded too.
#[cfg(test)]
mod props {
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::select;

    use super::*;

    /// Runs `f`, counting its steps.
    fn steps<T>(f: impl FnOnce() -> T) -> (T, u64) {
        STEPS.with(|s| s.set(0));
        let out = f();
        (out, STEPS.with(|s| s.get()))
    }

    /// What a parsed pattern keeps, and costs per path byte: its components
    /// and the weight of their tokens, all alternatives together.
    fn weight_of(p: &Pattern) -> u64 {
        let comp = |c: &Comp| match c {
            Comp::Glob(toks) => toks.iter().map(weight).sum(),
            Comp::Literal(_) | Comp::AnyDirs | Comp::Everything => 1,
        };
        p.alts.iter().flatten().map(comp).sum::<usize>() as u64 + 1
    }

    /// The most a pattern may weigh: the parser's own limits.
    const MAX_WEIGHT: u64 = (MAX_EXPANDED + MAX_ALTERNATIVES + 1) as u64;

    /// The bound on matching one path: a few steps per token weight per
    /// path byte (the classic one-star-backtracking match is
    /// O(pattern × name); `**` states are each visited once per component).
    fn match_bound(p: &Pattern, path: &[u8]) -> u64 {
        8 * weight_of(p) * (path.len() as u64 + 2)
    }

    /// The bound on parsing: a few steps per byte and per expanded token.
    fn parse_bound(pattern: &[u8]) -> u64 {
        4 * (MAX_EXPANDED + pattern.len()) as u64
    }

    /// Pieces that mean something to the parser, and any byte.
    fn piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => select(&[
                "/", "/**", "/***", "**", "*", "?", "[", "]", "[!", "[^", "a-z", "{", "}", ",", "\\",
                "\\/", ".", "..", "/..", "/.", "a", "b", "*a", "{a,", "{*,?}", "[[[[", "[]",
                "é", "\u{1f600}",
            ][..])
            .prop_map(|s| s.as_bytes().to_vec()),
            1 => any::<u8>().prop_map(|b| vec![b]),
        ]
    }

    /// A pattern of up to `max` bytes, made of pieces.
    fn pattern(max: usize) -> impl Strategy<Value = Vec<u8>> {
        vec(piece(), 0..max / 2).prop_map(move |pieces| {
            let mut p = b"/".to_vec();
            p.extend(pieces.concat());
            p.truncate(max);
            p
        })
    }

    /// A path of up to `max` bytes: components of names that patterns
    /// like to match, dotfiles, `.`/`..`, long names, any bytes.
    fn path(max: usize) -> impl Strategy<Value = Vec<u8>> {
        let name = prop_oneof![
            4 => select(&["a", "b", "ab", "aaaa", ".x", ".", "..", "", "é", "{a,b}", "*"][..])
                .prop_map(|s| s.as_bytes().to_vec()),
            1 => (1..300usize, select(&[b'a', b'b', b'.', b'/'][..])).prop_map(|(n, b)| vec![b; n]),
            1 => vec(any::<u8>(), 0..8),
        ];
        vec(name, 0..max / 2).prop_map(move |names| {
            let mut p = Vec::new();
            for n in names {
                p.push(b'/');
                p.extend(n);
            }
            p.truncate(max);
            p
        })
    }

    proptest! {
        #![proptest_config(crate::proptest_config(1024))]

        /// Any bytes at all: parsing, matching and pruning never panic, and
        /// a path climbing out with `..` never matches.
        #[test]
        fn any_bytes_never_panic(p in vec(any::<u8>(), 0..64), q in pattern(64), path in path(64)) {
            for p in [&p, &q] {
                if let Ok(pattern) = Pattern::parse(p) {
                    pattern.may_match_below(&path);
                    pattern.matches(p);
                    let climbs = path.split(|&b| b == b'/').any(|c| c == b"..");
                    prop_assert!(!(climbs && pattern.matches(&path)));
                }
            }
        }

    }

    proptest! {
        // Each case makes and matches kilobytes: fewer of them by default.
        #![proptest_config(crate::proptest_config(96))]

        /// Patterns of up to 1 KiB against paths of up to 4 KiB: bounded
        /// work for parsing and matching, and a bounded pattern kept.
        #[test]
        fn hostile_patterns_do_bounded_work(p in pattern(1024), path in path(4096)) {
            let (parsed, parse_steps) = steps(|| Pattern::parse(&p));
            prop_assert!(parse_steps <= parse_bound(&p), "{parse_steps} steps to parse");
            if let Ok(pattern) = parsed {
                prop_assert!(weight_of(&pattern) <= MAX_WEIGHT);
                let (_, n) = steps(|| (pattern.matches(&path), pattern.may_match_below(&path)));
                prop_assert!(n <= match_bound(&pattern, &path), "{n} steps to match");
            }
        }
    }

    /// The shapes that make naive glob matchers explode, at 1 KiB against
    /// 4 KiB paths: refused, or matched within the bound.
    #[test]
    fn known_hostile_patterns_do_bounded_work() {
        let class = |n: usize| -> String {
            let set: String = (b'!'..=b'~')
                .filter(|b| !b"]\\-".contains(b))
                .map(char::from)
                .cycle()
                .take(n)
                .collect();
            format!("[{set}]")
        };
        let mut nested = String::from("/");
        for c in 'a'..='o' {
            nested.push_str(&format!("{{{c},"));
        }
        nested.push_str(&format!("z{}", "}".repeat(15)));
        let patterns = [
            // `**` runs: the closure once took n² per component (minutes).
            "/**".repeat(341),
            "/***".repeat(256),
            format!("/{}", "**/*a*/".repeat(146)),
            // Nested and multiplied braces.
            nested,
            format!("/{}", "{a,{b,{c,{d,{e,{f,{g,{h,i}}}}}}}}".repeat(30)),
            format!("/{}*", "{*,?}".repeat(8)),
            // Star runs and backtracking.
            format!("/{}", "*a".repeat(511)),
            format!("/{}b", "a*".repeat(511)),
            // Classes: unclosed, huge, multiplied by alternatives.
            "/[[[[".repeat(200),
            format!("/*{}", class(1000)),
            format!("/{}{}", "{*,?}".repeat(8), class(50)),
            format!("/{}*{}", "{a,b}".repeat(8), class(900)),
            "/".repeat(1024),
        ];
        let paths = [
            format!("/{}", "a".repeat(4095)),
            "/a".repeat(2048),
            format!("/{}", "ab/".repeat(1365)),
        ];
        for p in &patterns {
            let p = &p.as_bytes()[..p.len().min(1024)];
            let (parsed, parse_steps) = steps(|| Pattern::parse(p));
            assert!(parse_steps <= parse_bound(p), "{parse_steps}");
            let Ok(pattern) = parsed else { continue };
            assert!(weight_of(&pattern) <= MAX_WEIGHT);
            for path in &paths {
                let (_, n) = steps(|| {
                    (
                        pattern.matches(path.as_bytes()),
                        pattern.may_match_below(path.as_bytes()),
                    )
                });
                let shown = String::from_utf8_lossy(&p[..p.len().min(40)]);
                assert!(
                    n <= match_bound(&pattern, path.as_bytes()),
                    "{shown}…: {n} steps"
                );
                // Generous, and far below what a naive matcher does here.
                assert!(n <= 200_000_000, "{shown}…: {n} steps");
            }
        }
        // The limits hold: longer patterns and bigger expansions are refused.
        assert_eq!(
            Pattern::parse(&[b'/'; MAX_PATTERN_LEN + 1]),
            Err(PatternError::TooLong)
        );
        let heavy = format!("/{}*{}", "{a,b}".repeat(8), class(900));
        assert_eq!(
            Pattern::parse(heavy.as_bytes()),
            Err(PatternError::TooManyAlternatives)
        );
    }
}
