//! Content hashes, for `byteback verify --checksum`: the same BLAKE3 hash
//! of a stored file on the server and of the live file on the client, and
//! the one way the server opens a stored file by its client path — beneath
//! the snapshot, never through a symlink, never on another filesystem.
//!
//! BLAKE3 (the `blake3` crate, default features off: no threads, no
//! `std::io` glue) rather than SHA-256: it is several times faster on one
//! core, and a verify reads the whole backup; collisions are not a concern
//! here, only corruption and missed changes.

use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

/// A file's content hash.
pub type Digest = [u8; 32];

/// Hashes everything `reader` yields, 64 KiB at a time.
pub fn digest(mut reader: impl Read) -> io::Result<Digest> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(*hasher.finalize().as_bytes()),
            Ok(n) => {
                hasher.update(buf.get(..n).unwrap_or_default());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The hash as lowercase hex.
pub fn to_hex(d: &Digest) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads [`to_hex`]'s output.
pub fn from_hex(s: &str) -> Option<Digest> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Opens the regular file at the client path `path` (absolute) inside the
/// snapshot whose root is `root`: resolved by the kernel beneath `root`
/// only, with no symlink anywhere on the way, no mount crossed, and
/// without blocking on a fifo. Anything but a regular file is refused.
pub fn open_regular_beneath(root: impl AsFd, path: &[u8]) -> io::Result<std::fs::File> {
    let relative = path.strip_prefix(b"/").unwrap_or(path);
    let relative = if relative.is_empty() { b"." } else { relative };
    let fd: OwnedFd = rustix::fs::openat2(
        root,
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(relative),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::BENEATH
            | ResolveFlags::NO_SYMLINKS
            | ResolveFlags::NO_MAGICLINKS
            | ResolveFlags::NO_XDEV,
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(std::fs::File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_hex() {
        let d = digest(&b"abc"[..]).unwrap();
        // BLAKE3's published test value for "abc".
        assert_eq!(
            to_hex(&d),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        assert_eq!(from_hex(&to_hex(&d)), Some(d));
        let big = vec![7u8; 200_000];
        assert_eq!(
            digest(&big[..]).unwrap(),
            *blake3::hash(&big).as_bytes(),
            "chunked reads hash as one"
        );
        for bad in ["", "00", &"g".repeat(64), &"0".repeat(63), &"0".repeat(65)] {
            assert_eq!(from_hex(bad), None, "{bad}");
        }
    }

    #[test]
    fn opens_only_regular_files_beneath_the_root() {
        let dir = std::env::temp_dir().join(format!("byteback-digest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("snap/etc")).unwrap();
        std::fs::write(dir.join("snap/etc/file"), b"x").unwrap();
        std::fs::write(dir.join("outside"), b"secret").unwrap();
        std::os::unix::fs::symlink("../../outside", dir.join("snap/etc/link")).unwrap();
        std::os::unix::fs::symlink("..", dir.join("snap/up")).unwrap();
        let root = std::fs::File::open(dir.join("snap")).unwrap();
        let mut text = String::new();
        open_regular_beneath(&root, b"/etc/file")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "x");
        for bad in [
            &b"/etc/link"[..],
            b"/up/outside",
            b"/../outside",
            b"/etc/../../outside",
            b"/etc",
            b"/",
            b"/nothing",
        ] {
            assert!(
                open_regular_beneath(&root, bad).is_err(),
                "{}",
                bad.escape_ascii()
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
