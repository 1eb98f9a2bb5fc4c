//! The walk of one snapshot, guided by the patterns: it reads only the
//! directories they can lead into, never follows a symlink nor leaves the
//! snapshot, and streams the matches in byte-wise path order without
//! collecting them; and the cache through which the walks of several
//! snapshots read an unchanged directory only once.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{CWD, FileType, Mode, OFlags, RawDir};
use rustix::io::Errno;

use super::glob::{Nfa, Pattern, State};
use super::meta::{Meta, meta_at, meta_of_open};

/// Deepest directory nesting walked: the walk keeps one descriptor open per
/// level, and must stay well within the usual limit of 1024.
const MAX_DEPTH: usize = 256;

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

#[cfg(test)]
mod tests;
