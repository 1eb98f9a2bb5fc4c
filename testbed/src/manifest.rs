//! What a tree looks like, file by file, for comparing a backup with its
//! source: type, mode, owner, size, mtime (to the nanosecond), content,
//! symlink target, device numbers, user xattrs, POSIX ACLs (access and
//! default), the file capability (`security.capability`) and hard-link
//! groups.
//!
//! A snapshot is read the way rsync `--fake-super` wrote it: the real
//! ownership, mode and device numbers are in the `user.rsync.%stat` xattr,
//! the ACLs in `user.rsync.%aacl` / `user.rsync.%dacl`, other namespaces'
//! xattrs as `user.rsync.NAME`, and symlinks and special files are plain
//! files carrying them.

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
    /// Seconds and nanoseconds; regular files and directories only.
    pub mtime: Option<(i64, i64)>,
    /// Hash of the content (regular files) or the link target (symlinks).
    pub content: Option<u64>,
    pub rdev: Option<(u32, u32)>,
    /// `user.*` xattrs other than rsync's own (every xattr, for
    /// [`Reading::Raw`]).
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// The access ACL beyond what the mode shows (see [`Acl`]).
    pub acl: Option<Acl>,
    /// The default ACL (directories).
    pub default_acl: Option<Acl>,
    /// The file capability (`security.capability`), as stored.
    pub capability: Option<Vec<u8>>,
    /// The first path (in sorted order) that shares this file's inode, if any other does.
    pub hard_link_group: Option<PathBuf>,
}

/// A POSIX ACL in one form whichever way it was stored (the kernel's
/// `system.posix_acl_*` or rsync's fake-super xattrs). An access ACL is
/// `None` unless it has named entries: its owner and other entries are the
/// mode's, and one with no named entries is no ACL. Named entries are
/// sorted, permissions are `rwx` bits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Acl {
    /// Named users: (uid, permissions).
    pub users: Vec<(u32, u32)>,
    /// Named groups: (gid, permissions).
    pub groups: Vec<(u32, u32)>,
    /// The owning group's entry (with named entries the mode's group bits
    /// are the mask's).
    pub group_obj: u32,
    /// The mask: a default ACL's only (an access ACL's is the mode's
    /// group bits).
    pub mask: Option<u32>,
    /// Owner and other entries: a default ACL's only (an access ACL's are
    /// the mode's).
    pub user_obj: Option<u32>,
    pub other: Option<u32>,
}

/// rsync's "no entry" marker in its fake-super ACL xattrs.
const NO_ENTRY: u32 = 0x80;
/// rsync's flag on a named entry's permissions for a user (not a group).
const NAME_IS_USER: u32 = 1 << 31;

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().unwrap())
}

/// Decodes the kernel's `system.posix_acl_access`/`_default` value
/// (version 2: then entries of tag u16, permissions u16, id u32).
pub fn decode_kernel_acl(bytes: &[u8], default: bool) -> Option<Acl> {
    assert!(bytes.len() >= 4 && le32(bytes) == 2, "ACL xattr {bytes:?}");
    let mut acl = Acl::default();
    for e in bytes[4..].chunks(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u16::from_le_bytes([e[2], e[3]]) as u32;
        let id = le32(&e[4..]);
        match tag {
            0x01 => acl.user_obj = Some(perm),
            0x02 => acl.users.push((id, perm)),
            0x04 => acl.group_obj = perm,
            0x08 => acl.groups.push((id, perm)),
            0x10 => acl.mask = Some(perm),
            0x20 => acl.other = Some(perm),
            _ => panic!("ACL tag {tag:#x}"),
        }
    }
    canonical(acl, default)
}

/// Decodes rsync's fake-super `user.rsync.%aacl`/`%dacl` value: user_obj,
/// group_obj, mask and other as u32 (`NO_ENTRY` where the mode holds it),
/// then (id, permissions | `NAME_IS_USER` for users) pairs.
pub fn decode_rsync_acl(bytes: &[u8], mode: u32, default: bool) -> Option<Acl> {
    assert!(
        bytes.len() >= 16 && (bytes.len() - 16) % 8 == 0,
        "rsync ACL xattr {bytes:?}"
    );
    let group_bits = (mode >> 3) & 7;
    let field = |at: usize, from_mode: u32| match le32(&bytes[at..]) {
        NO_ENTRY => from_mode,
        v => v,
    };
    let mut acl = Acl {
        user_obj: Some(field(0, (mode >> 6) & 7)),
        group_obj: field(4, group_bits),
        mask: match le32(&bytes[8..]) {
            NO_ENTRY if default => None,
            NO_ENTRY => Some(group_bits),
            v => Some(v),
        },
        other: Some(field(12, mode & 7)),
        ..Acl::default()
    };
    for e in bytes[16..].chunks(8) {
        let (id, access) = (le32(e), le32(&e[4..]));
        if access & NAME_IS_USER != 0 {
            acl.users.push((id, access & 7));
        } else {
            acl.groups.push((id, access & 7));
        }
    }
    canonical(acl, default)
}

fn canonical(mut acl: Acl, default: bool) -> Option<Acl> {
    acl.users.sort();
    acl.groups.sort();
    if default {
        return Some(acl);
    }
    if acl.users.is_empty() && acl.groups.is_empty() {
        return None;
    }
    // The mode's owner, group-class and other bits are the owner entry, the
    // mask and the other entry (rsync's copy of the mask can be stale: a
    // chmod sets the mask, and fake-super keeps the mode in `%stat`).
    acl.user_obj = None;
    acl.other = None;
    acl.mask = None;
    Some(acl)
}

/// How to read the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// As it is (the client's files).
    Plain,
    /// As rsync --fake-super stored it (a snapshot or `current`).
    FakeSuper,
    /// As it is on disk, every xattr kept verbatim whatever its namespace
    /// (`user.rsync.*`, the store's own `user.byteback.*`, ACLs as the
    /// kernel's `system.posix_acl_*`): for comparing a tree with itself
    /// before and after something that must not write, such as a store
    /// around a dry run.
    Raw,
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
    let (acl, default_acl, capability) = match reading {
        Reading::FakeSuper => (
            all_xattrs
                .get("user.rsync.%aacl")
                .and_then(|v| decode_rsync_acl(v, mode, false)),
            all_xattrs
                .get("user.rsync.%dacl")
                .and_then(|v| decode_rsync_acl(v, mode, true)),
            all_xattrs.get("user.rsync.security.capability").cloned(),
        ),
        Reading::Plain | Reading::Raw => (
            all_xattrs
                .get("system.posix_acl_access")
                .and_then(|v| decode_kernel_acl(v, false)),
            all_xattrs
                .get("system.posix_acl_default")
                .and_then(|v| decode_kernel_acl(v, true)),
            all_xattrs.get("security.capability").cloned(),
        ),
    };
    if reading != Reading::Raw {
        all_xattrs.retain(|k, _| k.starts_with("user.") && !k.starts_with("user.rsync."));
    }
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
            mtime: matches!(kind, S_IFREG | S_IFDIR).then(|| (meta.mtime(), meta.mtime_nsec())),
            content,
            rdev,
            xattrs: all_xattrs,
            acl,
            default_acl,
            capability,
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
    let problems = differences(want, got);
    assert!(
        problems.is_empty(),
        "{what}: {} differences:\n{}",
        problems.len(),
        problems[..problems.len().min(10)].join("\n")
    );
}

/// Every difference between two manifests, one line (or three) each.
pub fn differences(want: &BTreeMap<PathBuf, Entry>, got: &BTreeMap<PathBuf, Entry>) -> Vec<String> {
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
    problems
}

/// The path of `source` (absolute) inside a snapshot or `current` at `backup`.
pub fn inside(backup: &Path, source: &Path) -> PathBuf {
    backup.join(source.strip_prefix("/").unwrap())
}

/// Helper for names with odd bytes.
pub fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> Vec<u8> {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
        for c in text.bytes().filter(|&c| c != b'=') {
            acc = acc << 6 | alphabet.iter().position(|&a| a == c).unwrap() as u32;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        out
    }

    /// What rsync 3.5 and 3.2.7 wrote (getfattr -d) for
    /// `setfacl -m u:1234:rw,g:2345:r` on a 0664 file, for the same file
    /// after `setfacl -b`, and for `setfacl -d -m u:1234:rwx` on a 0755
    /// directory; and the kernel's form of the first.
    #[test]
    fn acls_decode_to_one_form() {
        let want = Acl {
            users: vec![(1234, 6)],
            groups: vec![(2345, 4)],
            group_obj: 4,
            ..Acl::default()
        };
        let rsync = b64("gAAAAAQAAAAGAAAAgAAAANIEAAAGAACAKQkAAAQAAAA=");
        assert_eq!(
            decode_rsync_acl(&rsync, 0o100664, false),
            Some(want.clone())
        );
        let mut kernel = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 6u16, u32::MAX),
            (2, 6, 1234),
            (4, 4, u32::MAX),
            (8, 4, 2345),
            (0x10, 6, u32::MAX),
            (0x20, 4, u32::MAX),
        ] {
            kernel.extend(tag.to_le_bytes());
            kernel.extend(perm.to_le_bytes());
            kernel.extend(id.to_le_bytes());
        }
        assert_eq!(decode_kernel_acl(&kernel, false), Some(want));
        let removed = b64("gAAAAIAAAACAAAAAgAAAAA==");
        assert_eq!(decode_rsync_acl(&removed, 0o100644, false), None);
        let default = b64("BwAAAAUAAAAHAAAABQAAANIEAAAHAACA");
        assert_eq!(
            decode_rsync_acl(&default, 0o40755, true),
            Some(Acl {
                users: vec![(1234, 7)],
                groups: vec![],
                group_obj: 5,
                mask: Some(7),
                user_obj: Some(7),
                other: Some(5),
            })
        );
    }
}
