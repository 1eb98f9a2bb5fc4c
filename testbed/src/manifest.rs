//! What a tree looks like, file by file, for comparing a backup with its
//! source: type, mode, owner, size, mtime, content, symlink target, device
//! numbers, user xattrs and hard-link groups.
//!
//! A snapshot is read the way rsync `--fake-super` wrote it: the real
//! ownership, mode and device numbers are in the `user.rsync.%stat` xattr,
//! and symlinks and special files are plain files carrying it.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CString, OsStr};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One file's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `st_mode`, type bits included.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Regular files only.
    pub size: Option<u64>,
    /// Seconds; regular files and directories only.
    pub mtime: Option<i64>,
    /// Hash of the content (regular files) or the link target (symlinks).
    pub content: Option<u64>,
    pub rdev: Option<(u32, u32)>,
    /// `user.*` xattrs other than rsync's own.
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// The first path (in sorted order) that shares this file's inode, if any other does.
    pub hard_link_group: Option<PathBuf>,
}

/// How to read the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// As it is (the client's files).
    Plain,
    /// As rsync --fake-super stored it (a snapshot or `current`).
    FakeSuper,
}

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;

fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut names = vec![0u8; 65536];
    let Ok(n) = rustix::fs::llistxattr(path, &mut names) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name_str = String::from_utf8_lossy(name).into_owned();
        let mut value = vec![0u8; 65536];
        let c = CString::new(name).unwrap();
        if let Ok(len) = rustix::fs::lgetxattr(path, c.as_c_str(), &mut value) {
            out.insert(name_str, value[..len].to_vec());
        }
    }
    out
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Reads every entry below `root` (the root itself as ".").
pub fn read(root: &Path, reading: Reading) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), Vec<PathBuf>> = HashMap::new();
    walk(root, Path::new("."), reading, &mut out, &mut inodes);
    for paths in inodes.values_mut().filter(|p| p.len() > 1) {
        paths.sort();
        let first = paths[0].clone();
        for p in paths.iter() {
            out.get_mut(p).unwrap().hard_link_group = Some(first.clone());
        }
    }
    out
}

fn walk(
    root: &Path,
    rel: &Path,
    reading: Reading,
    out: &mut BTreeMap<PathBuf, Entry>,
    inodes: &mut HashMap<(u64, u64), Vec<PathBuf>>,
) {
    let path = root.join(rel);
    let meta =
        std::fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut all_xattrs = xattrs(&path);
    let mut mode = meta.mode();
    let (mut uid, mut gid) = (meta.uid(), meta.gid());
    let mut rdev = None;
    if reading == Reading::FakeSuper {
        if let Some(stat) = all_xattrs.get("user.rsync.%stat") {
            // "MODE(octal) MAJOR,MINOR UID:GID"
            let text = String::from_utf8_lossy(stat).into_owned();
            let fields: Vec<&str> = text.split(' ').collect();
            mode = u32::from_str_radix(fields[0], 8).unwrap();
            let (major, minor) = fields[1].split_once(',').unwrap();
            let (u, g) = fields[2].split_once(':').unwrap();
            uid = u.parse().unwrap();
            gid = g.parse().unwrap();
            if matches!(mode & S_IFMT, S_IFCHR | S_IFBLK) {
                rdev = Some((major.parse().unwrap(), minor.parse().unwrap()));
            }
        }
    } else if matches!(mode & S_IFMT, S_IFCHR | S_IFBLK) {
        let r = meta.rdev();
        rdev = Some((rustix::fs::major(r), rustix::fs::minor(r)));
    }
    all_xattrs.retain(|k, _| k.starts_with("user.") && !k.starts_with("user.rsync."));
    let kind = mode & S_IFMT;
    let real_file = meta.file_type().is_file();
    let content = match kind {
        S_IFREG => Some(hash(&std::fs::read(&path).unwrap())),
        S_IFLNK if real_file => Some(hash(&std::fs::read(&path).unwrap())),
        S_IFLNK => Some(hash(
            std::fs::read_link(&path).unwrap().as_os_str().as_bytes(),
        )),
        _ => None,
    };
    if kind == S_IFREG && meta.nlink() > 1 {
        inodes
            .entry((meta.dev(), meta.ino()))
            .or_default()
            .push(rel.to_owned());
    }
    out.insert(
        rel.to_owned(),
        Entry {
            mode,
            uid,
            gid,
            size: (kind == S_IFREG).then_some(meta.len()),
            mtime: matches!(kind, S_IFREG | S_IFDIR).then(|| meta.mtime()),
            content,
            rdev,
            xattrs: all_xattrs,
            hard_link_group: None,
        },
    );
    if kind == S_IFDIR && meta.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            walk(root, &rel.join(name), reading, out, inodes);
        }
    }
}

/// Asserts two manifests are equal, naming the first differences.
pub fn assert_same(what: &str, want: &BTreeMap<PathBuf, Entry>, got: &BTreeMap<PathBuf, Entry>) {
    let mut problems = Vec::new();
    for (path, w) in want {
        match got.get(path) {
            None => problems.push(format!("missing {}", path.display())),
            Some(g) if g != w => problems.push(format!(
                "differs {}:\n  want {w:?}\n  got  {g:?}",
                path.display()
            )),
            Some(_) => {}
        }
    }
    for path in got.keys().filter(|p| !want.contains_key(*p)) {
        problems.push(format!("unexpected {}", path.display()));
    }
    assert!(
        problems.is_empty(),
        "{what}: {} differences:\n{}",
        problems.len(),
        problems[..problems.len().min(10)].join("\n")
    );
}

/// The path of `source` (absolute) inside a snapshot or `current` at `backup`.
pub fn inside(backup: &Path, source: &Path) -> PathBuf {
    backup.join(source.strip_prefix("/").unwrap())
}

/// Helper for names with odd bytes.
pub fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}
