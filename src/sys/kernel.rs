//! Facts about the running kernel that bear on a store: whether its btrfs
//! has the name-hash-collision bug.
//!
//! btrfs keeps the names of one directory that collide under its name hash
//! (crc32c, which anyone can collide on purpose) in one directory item. On
//! kernels from 5.19 until the 2026 fix "btrfs: fix transaction abort on
//! file creation due to name hash collision", creating a file whose name
//! overflows that item aborts the transaction, which turns the whole
//! filesystem read-only — and any user who can create files can do it: a
//! client's backup, written by the backup user, names whatever files the
//! client has. `byteback-server setup` and `status` warn on such kernels.
//!
//! Which kernels carry the fix, and how that was decided: the fix reached
//! the stable series in March 2026. Established from the stable trees'
//! push notifications and release announcements: 6.1.167 and 6.6.130 (both
//! released 2026-03-25) and 6.19.10 (its -rc1 of 2026-03-23 added it, so
//! 6.19.0 to 6.19.9 lack it) carry it. 5.15 and older series never had the
//! bug (it came with 5.19). For 6.12.y the fix was queued the same week,
//! but no release carrying it could be established, so every 6.12 (and
//! every other series from 5.19 to 6.17) counts as affected. 6.18 and
//! later count as fixed (6.18.y was queued the same week too; its first
//! fixed release was not established either, so early 6.18.y kernels may
//! lack the fix although no warning is given). Distribution kernels that
//! backport the fix without changing the version are warned about
//! needlessly; the warning says how to check.

/// The first kernel series with the bug.
const FIRST_AFFECTED: (u32, u32) = (5, 19);

/// The first series taken as fixed throughout.
const FIXED_SERIES: (u32, u32) = (6, 18);

/// Stable series whose releases from this patch level on carry the fix.
const FIXED_IN_STABLE: &[((u32, u32), u32)] = &[((6, 1), 167), ((6, 6), 130), ((6, 19), 10)];

/// A kernel version: major, minor, patch level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The version at the start of a kernel release string (`uname -r`):
/// `6.1.0-28-amd64` is 6.1.0, `6.18.44-fc-v1272` 6.18.44, `7.0` 7.0.0;
/// `None` if it does not start with one.
pub fn parse_release(release: &str) -> Option<Version> {
    let mut parts = release.trim().splitn(3, '.');
    let number = |s: &str| -> Option<u32> {
        let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        s[..digits].parse().ok()
    };
    let major = parts.next().and_then(number)?;
    let rest = parts.next()?;
    let minor = number(rest)?;
    // "6.18-rc3" or "7.0": no patch level.
    let patch = if rest.len() == minor.to_string().len() {
        parts.next().and_then(number).unwrap_or(0)
    } else {
        0
    };
    Some(Version {
        major,
        minor,
        patch,
    })
}

/// The upstream version a distribution names in `uname -v` where the
/// release string does not carry it (Debian: `#1 SMP PREEMPT_DYNAMIC
/// Debian 6.1.167-1 (2026-03-28)` for release `6.1.0-44-amd64`).
pub fn parse_upstream(version: &str) -> Option<Version> {
    let words: Vec<&str> = version.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[0] == "Debian")
        .and_then(|w| parse_release(w[1]))
}

/// Whether btrfs on kernel `v` has the name-hash-collision bug.
pub fn has_name_hash_bug(v: Version) -> bool {
    let series = (v.major, v.minor);
    if series < FIRST_AFFECTED || (series >= FIXED_SERIES && series != (6, 19)) {
        return false;
    }
    match FIXED_IN_STABLE.iter().find(|(s, _)| *s == series) {
        Some((_, fixed)) => v.patch < *fixed,
        None => series < FIXED_SERIES,
    }
}

/// The warning for a btrfs store on the kernel whose `uname -r` is
/// `release` and `uname -v` is `version` (may be empty), if that kernel
/// has the bug; `None` for kernels without it and for strings that name
/// no version.
pub fn name_hash_warning(release: &str, version: &str) -> Option<String> {
    let v = parse_upstream(version).or_else(|| parse_release(release))?;
    has_name_hash_bug(v).then(|| {
        format!(
            "kernel {} (btrfs {v}) predates the fix \"btrfs: fix transaction abort on file creation due to name hash collision\" (2026: 6.1.167, 6.6.130, 6.18, 6.19.10 and later): a client's file names that collide under btrfs's name hash can turn the whole store read-only; upgrade the kernel (or ignore this if your distribution backported the fix)",
            release.trim().escape_debug()
        )
    })
}

/// The warning for the running kernel, if any.
pub fn running_name_hash_warning() -> Option<String> {
    let uname = rustix::system::uname();
    name_hash_warning(
        &uname.release().to_string_lossy(),
        &uname.version().to_string_lossy(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u32, minor: u32, patch: u32) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }

    #[test]
    fn release_strings_parse() {
        assert_eq!(parse_release("6.1.0-28-amd64"), Some(v(6, 1, 0)));
        assert_eq!(parse_release("5.15.0-91-generic"), Some(v(5, 15, 0)));
        assert_eq!(parse_release("6.18.44-fc-v1272"), Some(v(6, 18, 44)));
        assert_eq!(parse_release("6.12.9+bpo-amd64"), Some(v(6, 12, 9)));
        assert_eq!(parse_release("7.0"), Some(v(7, 0, 0)));
        assert_eq!(parse_release("6.19-rc3"), Some(v(6, 19, 0)));
        assert_eq!(parse_release("6.6.130\n"), Some(v(6, 6, 130)));
        for garbage in [
            "",
            "linux",
            "6",
            "6.",
            ".6.1",
            "x6.1.2",
            "99999999999.1.1",
            "6.99999999999.1",
            "\u{1F600}.1",
            "6.\u{1F600}",
        ] {
            assert_eq!(parse_release(garbage), None, "{garbage:?}");
        }
        // A patch level too long for u32 is no patch level.
        assert_eq!(parse_release("6.1.99999999999"), Some(v(6, 1, 0)));
        assert_eq!(
            parse_upstream("#1 SMP PREEMPT_DYNAMIC Debian 6.1.167-1 (2026-03-28)"),
            Some(v(6, 1, 167))
        );
        assert_eq!(
            parse_upstream("#101-Ubuntu SMP Tue Nov 14 13:30:08 UTC"),
            None
        );
        assert_eq!(parse_upstream("Debian"), None);
        assert_eq!(parse_upstream(""), None);
    }

    #[test]
    fn affected_kernels_are_5_19_until_the_fix() {
        for (kernel, bug) in [
            (v(5, 15, 200), false),
            (v(5, 18, 19), false),
            (v(5, 19, 0), true),
            (v(6, 0, 19), true),
            (v(6, 1, 0), true),
            (v(6, 1, 166), true),
            (v(6, 1, 167), false),
            (v(6, 1, 200), false),
            (v(6, 6, 129), true),
            (v(6, 6, 130), false),
            (v(6, 12, 80), true),
            (v(6, 17, 13), true),
            (v(6, 18, 0), false),
            (v(6, 18, 44), false),
            (v(6, 19, 9), true),
            (v(6, 19, 10), false),
            (v(7, 0, 0), false),
            (v(4, 19, 0), false),
        ] {
            assert_eq!(has_name_hash_bug(kernel), bug, "{kernel}");
        }
    }

    #[test]
    fn the_warning_names_the_kernel_and_the_fix() {
        let w =
            name_hash_warning("6.1.0-28-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1").unwrap();
        assert!(
            w.starts_with("kernel 6.1.0-28-amd64 (btrfs 6.1.119)"),
            "{w}"
        );
        assert!(
            w.contains("btrfs: fix transaction abort on file creation due to name hash collision"),
            "{w}"
        );
        assert!(!w.contains('\n'));
        // Debian's own version says it is fixed, whatever the ABI name.
        assert_eq!(
            name_hash_warning("6.1.0-44-amd64", "#1 SMP Debian 6.1.167-1 (2026-03-28)"),
            None
        );
        assert!(name_hash_warning("5.19.0-50-generic", "#50-Ubuntu SMP").is_some());
        assert_eq!(name_hash_warning("5.15.0-91-generic", ""), None);
        assert_eq!(name_hash_warning("6.18.44-fc-v1272", ""), None);
        assert_eq!(name_hash_warning("garbage", "garbage"), None);
        assert_eq!(name_hash_warning("", ""), None);
        // A hostile or odd string is quoted, never a second line.
        let odd = name_hash_warning("6.2.0\nINJECTED", "").unwrap();
        assert!(!odd.contains('\n'), "{odd}");
        // The running kernel: no panic, whatever it is.
        let _ = running_name_hash_warning();
    }
}
