//! The client's metadata of a stored file. The store only holds files owned
//! by the unprivileged server user: rsync's `--fake-super` keeps each file's
//! real mode, owner and device in the `user.rsync.%stat` xattr, which this
//! module decodes (refusing corrupt values) and shows as `ls -l` would.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

/// Longest symlink target read from a stored symlink (Linux's PATH_MAX).
const MAX_TARGET: u64 = 4096;
/// The xattr where `rsync --fake-super` keeps the real mode, device, owner.
pub(super) const STAT_XATTR: &str = "user.rsync.%stat";

pub(super) const S_IFMT: u32 = 0o170000;
const S_IFSOCK: u32 = 0o140000;
pub(super) const S_IFLNK: u32 = 0o120000;
const S_IFREG: u32 = 0o100000;
const S_IFBLK: u32 = 0o060000;
const S_IFDIR: u32 = 0o040000;
const S_IFCHR: u32 = 0o020000;
const S_IFIFO: u32 = 0o010000;

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
    /// The nanoseconds of the modification time (0 where unknown).
    pub mtime_nsec: u32,
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
pub(super) fn meta_at(dir: BorrowedFd<'_>, name: &OsStr, hint: FileType) -> io::Result<Meta> {
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
        mtime_nsec: u32::try_from(st.st_mtime_nsec).unwrap_or(0),
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
pub(super) fn meta_of_open(fd: &OwnedFd, st: &Stat) -> io::Result<Meta> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
