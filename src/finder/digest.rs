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

/// Why [`digest_sparse`] did not finish.
#[derive(Debug)]
pub enum DigestError {
    /// The file could not be read: a warning about this file.
    Read(io::Error),
    /// `progress` said stop: the whole request ends with this.
    Stopped(crate::error::Error),
}

/// Zeros to hash for holes, without reading or allocating them.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Hashes `file` as [`digest`] would (the same hash as the same bytes
/// read from a dense copy), but reads only its data extents
/// (`SEEK_DATA`/`SEEK_HOLE`): holes are hashed as zeros from a static
/// buffer. After each piece of at most 64 KiB, `progress(data bytes read,
/// hole bytes hashed)` may end the whole thing with
/// [`DigestError::Stopped`]. The file is hashed up to its size when opened
/// (a snapshot's files do not change).
pub fn digest_sparse(
    file: &std::fs::File,
    progress: &mut dyn FnMut(u64, u64) -> crate::error::Result<()>,
) -> Result<Digest, DigestError> {
    use rustix::fs::SeekFrom;
    let size = rustix::fs::fstat(file)
        .map_err(|e| DigestError::Read(e.into()))?
        .st_size;
    let size = u64::try_from(size).unwrap_or(0);
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = 0u64;
    while pos < size {
        // Where the next data starts (no more data: the rest is a hole;
        // a filesystem that cannot tell: all of it is data).
        let data = match rustix::fs::seek(file, SeekFrom::Data(pos)) {
            Ok(at) => at.clamp(pos, size),
            Err(rustix::io::Errno::NXIO) => size,
            Err(_) => pos,
        };
        let mut hole = data - pos;
        while hole > 0 {
            let n = hole.min(ZEROS.len() as u64);
            hasher.update(&ZEROS[..n as usize]);
            hole -= n;
            progress(0, n).map_err(DigestError::Stopped)?;
        }
        pos = data;
        if pos >= size {
            break;
        }
        let end = match rustix::fs::seek(file, SeekFrom::Hole(pos)) {
            Ok(at) => at.clamp(pos, size),
            Err(_) => size,
        };
        while pos < end {
            let want = (end - pos).min(buf.len() as u64) as usize;
            let piece = buf.get_mut(..want).unwrap_or_default();
            let n = match rustix::io::pread(file, piece, pos) {
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(DigestError::Read(e.into())),
            };
            if n == 0 {
                // Shorter than it said: hash what there was, as a read would.
                return Ok(*hasher.finalize().as_bytes());
            }
            hasher.update(buf.get(..n).unwrap_or_default());
            pos += n as u64;
            progress(n as u64, 0).map_err(DigestError::Stopped)?;
        }
    }
    Ok(*hasher.finalize().as_bytes())
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

    /// A sparse file hashes like its dense copy, reading only its data.
    #[test]
    fn sparse_files_hash_like_dense_ones_without_reading_holes() {
        use std::io::{Seek, SeekFrom, Write};
        let dir = std::env::temp_dir().join(format!("byteback-sparse-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Data, a 64 MiB hole, data, and a hole at the end.
        let path = dir.join("sparse");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&[1u8; 5000]).unwrap();
        f.seek(SeekFrom::Start(64 << 20)).unwrap();
        f.write_all(&[2u8; 70_000]).unwrap();
        f.set_len(80 << 20).unwrap();
        drop(f);
        let mut dense = vec![0u8; 80 << 20];
        dense[..5000].fill(1);
        dense[64 << 20..(64 << 20) + 70_000].fill(2);
        let f = std::fs::File::open(&path).unwrap();
        let (mut read, mut holes) = (0, 0);
        let d = digest_sparse(&f, &mut |r, h| {
            read += r;
            holes += h;
            Ok(())
        })
        .unwrap();
        assert_eq!(d, *blake3::hash(&dense).as_bytes());
        assert_eq!(d, digest(std::fs::File::open(&path).unwrap()).unwrap());
        assert_eq!(read + holes, 80 << 20, "every byte hashed once");
        // Filesystems allocate in blocks: at most a few of them per extent.
        assert!(
            read < 1 << 20,
            "read {read} bytes of a file with 75000 of data"
        );
        // Empty files, and a stop asked for midway.
        std::fs::write(dir.join("empty"), b"").unwrap();
        let empty = std::fs::File::open(dir.join("empty")).unwrap();
        assert_eq!(
            digest_sparse(&empty, &mut |_, _| Ok(())).unwrap(),
            *blake3::hash(b"").as_bytes()
        );
        let stop = digest_sparse(&f, &mut |_, h| {
            if h > 0 {
                Err(crate::error::Error::Refused("enough".into()))
            } else {
                Ok(())
            }
        });
        assert!(
            matches!(stop, Err(DigestError::Stopped(ref e)) if e.to_string() == "enough"),
            "{stop:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
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
