//! The encodings that carry requests and results over SSH: any bytes as a
//! word safe in a command line ([`encode_arg`], defined in [`crate::quote`]
//! since rsync's argv carries it too), and one found file as one line
//! ([`encode_found`]). Client and server both use these, so they share one
//! definition; what is decoded came from the other side, so anything
//! malformed is refused.

use crate::finder::{Found, Meta};

pub use crate::quote::{DecodeError, decode_arg, encode_arg};

fn bad<T>(msg: String) -> Result<T, DecodeError> {
    Err(DecodeError::new(msg))
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

/// Like [`encode_found`], plus a ninth field: the mtime's nanoseconds.
/// Only sent to a client that asked for it (`byteback list --ns`), so an
/// older client never sees a line it cannot read.
pub fn encode_found_exact(found: &Found) -> String {
    format!("{}\t{}", encode_found(found), found.meta.mtime_nsec)
}

/// Parses a line made by [`encode_found`] or [`encode_found_exact`] (a
/// trailing newline is allowed).
pub fn decode_found(line: &str) -> Result<Found, DecodeError> {
    fn num<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, DecodeError> {
        s.parse().or_else(|_| bad(format!("invalid {what} {s:?}")))
    }
    let fields: Vec<&str> = line
        .strip_suffix('\n')
        .unwrap_or(line)
        .split('\t')
        .collect();
    let (path, mode, uid, gid, size, mtime, rdev, target, nsec) = match fields[..] {
        [path, mode, uid, gid, size, mtime, rdev, target] => {
            (path, mode, uid, gid, size, mtime, rdev, target, "0")
        }
        [path, mode, uid, gid, size, mtime, rdev, target, nsec] => {
            (path, mode, uid, gid, size, mtime, rdev, target, nsec)
        }
        _ => {
            return bad(format!(
                "expected 8 or 9 tab-separated fields, got {}",
                fields.len()
            ));
        }
    };
    let mtime_nsec: u32 = num("mtime nanoseconds", nsec)?;
    if mtime_nsec >= 1_000_000_000 || !nsec.bytes().all(|b| b.is_ascii_digit()) {
        return bad(format!("invalid mtime nanoseconds {nsec:?}"));
    }
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
        mtime_nsec,
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
                mtime_nsec: 0,
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
        // Nanoseconds travel only when asked for.
        let exact = Found {
            meta: Meta {
                mtime_nsec: 999_999_999,
                ..found.meta.clone()
            },
            ..found.clone()
        };
        let line = encode_found_exact(&exact);
        assert!(line.ends_with("\t999999999"), "{line}");
        assert_eq!(decode_found(&line).unwrap(), exact);
        assert_eq!(decode_found(&encode_found(&exact)).unwrap(), found);
        for bad in ["1000000000", "-1", "+5", "x", ""] {
            let line = format!("{}\t{bad}", encode_found(&found));
            assert!(decode_found(&line).is_err(), "{bad:?}");
        }
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
        // The names a walk of hostile files finds (`finder/walk/tests.rs`)
        // each make one line, and come back intact.
        for name in [
            &b"/home/bob/-rf"[..],
            b"/home/bob/new\nline",
            b"/home/bob/tab\there",
            b"/home/bob/\xff\xfe",
        ] {
            let f = Found {
                path: name.to_vec(),
                meta: Meta::default(),
            };
            let line = encode_found(&f);
            assert!(!line.contains('\n'), "{line}");
            assert_eq!(decode_found(&line).unwrap(), f);
        }
        for bad in [
            "",
            "/x",
            "/x\t1\t2\t3\t4\t5\t-",
            "/x\t9\t0\t0\t0\t0\t-\t-",
            "/x\t1\t0\t0\t0\t0\t1\t-",
            "/x\t1\t0\t0\t0\t0\t-\t-\t-\t-",
            "/ x\t1\t0\t0\t0\t0\t-\t-",
        ] {
            assert!(decode_found(bad).is_err(), "{bad:?}");
        }
    }
}
