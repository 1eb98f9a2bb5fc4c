//! Which mounts a whole-system backup should skip, from `/proc/self/mountinfo`.
//!
//! The rule: every local disk filesystem is backed up; kernel virtual
//! filesystems, network filesystems, memory filesystems and loop-device
//! mounts (images, snaps, a backup store) are not. The decision is a pure
//! function of the mount table so it can be tested on any table.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// One line of mountinfo, the fields byteback needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The filesystem type, e.g. `ext4`, `nfs4`, `fuse.sshfs`.
    pub fs_type: String,
    /// The mount source, e.g. `/dev/sda1`, `server:/export`, `tmpfs`.
    pub source: String,
    /// The filesystem's own options, e.g. `rw,user_subvol_rm_allowed`.
    pub super_options: String,
}

/// Reads this process's mount table.
pub fn read() -> Result<Vec<Mount>> {
    let path = Path::new("/proc/self/mountinfo");
    let text = std::fs::read(path).on("cannot read", path)?;
    Ok(parse(&text))
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse(text: &[u8]) -> Vec<Mount> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
            let dash = fields.iter().position(|f| *f == b"-")?;
            if dash < 6 || fields.len() < dash + 3 {
                return None;
            }
            Some(Mount {
                mount_point: PathBuf::from(OsString::from_vec(unescape(fields[4]))),
                fs_type: String::from_utf8_lossy(&unescape(fields[dash + 1])).into_owned(),
                source: String::from_utf8_lossy(&unescape(fields[dash + 2])).into_owned(),
                super_options: fields
                    .get(dash + 3)
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Undoes the kernel's octal escapes (`\040` for a space, and so on).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && i + 3 < field.len()
            && field[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = field[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

/// Kernel and virtual filesystems: no user data lives there.
const VIRTUAL: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "configfs",
    "fusectl",
    "mqueue",
    "hugetlbfs",
    "autofs",
    "binfmt_misc",
    "efivarfs",
    "rpc_pipefs",
    "nsfs",
    "selinuxfs",
    "nfsd",
    "overlay",
    "squashfs",
    "iso9660",
    "udf",
    "ecryptfs",
    "zonefs",
];

/// Memory filesystems: emptied at every boot.
const MEMORY: &[&str] = &["tmpfs", "ramfs"];

/// Network and cluster filesystems: backed up where they are served from.
const NETWORK: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "glusterfs",
    "9p",
    "afs",
    "virtiofs",
    "lustre",
    "gpfs",
    "ncpfs",
    "coda",
    "davfs",
    "sshfs",
    "beegfs",
    "orangefs",
];

/// Why a mount is left out of the backup, or `None` to back it up.
pub fn exclusion_reason(mount: &Mount) -> Option<String> {
    let t = mount.fs_type.as_str();
    if mount.mount_point == Path::new("/") {
        // The root is always backed up, whatever it is (e.g. overlay in a container).
        return None;
    }
    let kind = if VIRTUAL.contains(&t) {
        "virtual filesystem"
    } else if MEMORY.contains(&t) {
        "memory filesystem"
    } else if NETWORK.contains(&t) || t.starts_with("fuse.") || t == "fuse" {
        // fuse.* are network or synthetic (sshfs, rclone, gvfs); local disks
        // under FUSE (ntfs-3g, exfat-fuse) show up as "fuseblk" instead.
        "network or FUSE filesystem"
    } else if mount.source.starts_with("/dev/loop") {
        "loop-device mount"
    } else {
        return None;
    };
    Some(format!("{kind} {t} from {}", mount.source))
}

/// The mount that holds `path` (the longest mount point that is a prefix of it).
pub fn mount_of<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    // The last matching line wins: a later mount hides an earlier one.
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| path.starts_with(&m.mount_point))
        .max_by_key(|(i, m)| (m.mount_point.as_os_str().len(), *i))
        .map(|(_, m)| m)
}

/// A mount left out of a backup, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excluded {
    /// The mount point (its directory is kept, empty).
    pub mount_point: PathBuf,
    /// Why it is left out.
    pub reason: String,
}

/// The mounts inside any of `sources` that the backup leaves out.
/// A mount below another excluded mount is not listed again.
pub fn exclusions(mounts: &[Mount], sources: &[PathBuf]) -> Vec<Excluded> {
    let mut excluded: Vec<Excluded> = Vec::new();
    let mut sorted: Vec<&Mount> = mounts.iter().collect();
    sorted.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
    for mount in sorted {
        let inside = sources
            .iter()
            .any(|s| mount.mount_point.starts_with(s) && mount.mount_point != *s);
        let under_excluded = excluded
            .iter()
            .any(|e| mount.mount_point.starts_with(&e.mount_point));
        if !inside || under_excluded {
            continue;
        }
        // The last mount on a mount point wins; a later, included mount over
        // an excluded one is rare enough to resolve in favour of backing up.
        if let Some(reason) = exclusion_reason(mount) {
            excluded.retain(|e| e.mount_point != mount.mount_point);
            excluded.push(Excluded {
                mount_point: mount.mount_point.clone(),
                reason,
            });
        } else {
            excluded.retain(|e| e.mount_point != mount.mount_point);
        }
    }
    excluded
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
23 22 0:21 / /proc rw,nosuid shared:12 - proc proc rw
24 22 0:22 / /sys rw,nosuid shared:2 - sysfs sysfs rw
25 24 0:6 / /sys/kernel/security rw shared:3 - securityfs securityfs rw
26 22 0:5 / /dev rw,nosuid shared:8 - devtmpfs udev rw,size=10240k
27 26 0:23 / /dev/pts rw shared:9 - devpts devpts rw
28 22 0:24 / /run rw,nosuid shared:10 - tmpfs tmpfs rw
29 22 8:1 / /boot/efi rw shared:11 - vfat /dev/sda1 rw
30 22 0:40 / /home rw shared:13 - btrfs /dev/sdb rw,subvol=/home
31 22 0:41 / /mnt/nas rw shared:14 - nfs4 nas:/export rw
32 22 0:42 / /mnt/my\\040files rw shared:15 - fuse.sshfs me@host: rw
33 22 7:0 / /snap/core/1 ro shared:16 - squashfs /dev/loop0 ro
34 22 7:1 / /srv/store rw shared:17 - btrfs /dev/loop1 rw
35 22 0:43 / /srv/ntfs rw shared:18 - fuseblk /dev/sdc1 rw
36 28 0:44 / /run/user/0 rw shared:19 - tmpfs tmpfs rw
37 22 8:2 / /data rw shared:20 - xfs /dev/sda2 rw
";

    #[test]
    fn parses_and_unescapes() {
        let mounts = parse(SAMPLE.as_bytes());
        assert_eq!(mounts.len(), 16);
        assert_eq!(mounts[10].mount_point, PathBuf::from("/mnt/my files"));
        assert_eq!(mounts[10].fs_type, "fuse.sshfs");
        assert_eq!(mounts[1].source, "proc");
    }

    #[test]
    fn whole_system_exclusions() {
        let mounts = parse(SAMPLE.as_bytes());
        let ex = exclusions(&mounts, &[PathBuf::from("/")]);
        let points: Vec<&str> = ex.iter().map(|e| e.mount_point.to_str().unwrap()).collect();
        assert_eq!(
            points,
            [
                "/dev",
                "/mnt/my files",
                "/mnt/nas",
                "/proc",
                "/run",
                "/snap/core/1",
                "/srv/store",
                "/sys"
            ]
        );
        assert!(ex[0].reason.contains("virtual filesystem devtmpfs"));
        assert!(ex[2].reason.contains("network"));
        assert!(ex[4].reason.contains("memory"));
        assert!(ex[6].reason.contains("loop-device"));
    }

    #[test]
    fn only_mounts_inside_the_sources_count() {
        let mounts = parse(SAMPLE.as_bytes());
        let ex = exclusions(&mounts, &[PathBuf::from("/home"), PathBuf::from("/srv")]);
        let points: Vec<&str> = ex.iter().map(|e| e.mount_point.to_str().unwrap()).collect();
        assert_eq!(points, ["/srv/store"]);
        // A source that is itself a mount point is backed up as asked.
        assert!(
            exclusions(&mounts, &[PathBuf::from("/run")])
                .iter()
                .all(|e| e.mount_point != Path::new("/run"))
        );
    }

    #[test]
    fn the_root_is_never_excluded() {
        let m = Mount {
            mount_point: "/".into(),
            fs_type: "overlay".into(),
            source: "overlay".into(),
            super_options: "rw".into(),
        };
        assert_eq!(exclusion_reason(&m), None);
    }
}

/// Property tests: any bytes never panic; a mount table written the way
/// the kernel writes it reads back exactly, whatever its names hold.
#[cfg(test)]
mod props {
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::select;

    use super::*;

    /// A field as the kernel writes it: space, tab, newline and backslash
    /// as `\ooo` (`mangle()` in fs/proc_namespace.c).
    fn escape(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in bytes {
            match b {
                b' ' | b'\t' | b'\n' | b'\\' => out.extend(format!("\\{b:03o}").bytes()),
                _ => out.push(b),
            }
        }
        out
    }

    /// A mountinfo line for `m` (mount ID, parent, device, root, mount
    /// point, options, optional fields, `-`, type, source, super options).
    fn line(m: &Mount, optional: &[&str]) -> Vec<u8> {
        let mut l = b"36 35 98:0 / ".to_vec();
        l.extend(escape(m.mount_point.as_os_str().as_encoded_bytes()));
        l.extend(b" rw,noatime");
        for o in optional {
            l.push(b' ');
            l.extend(o.as_bytes());
        }
        l.extend(b" - ");
        l.extend(escape(m.fs_type.as_bytes()));
        l.push(b' ');
        l.extend(escape(m.source.as_bytes()));
        l.push(b' ');
        l.extend(m.super_options.as_bytes());
        l
    }

    /// Names with what the kernel escapes, backslash sequences that look
    /// like escapes, invalid UTF-8, and length.
    fn name() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            select(
                &[
                    " ", "\t", "\n", "\\", "\\040", "\\134", "\\", "\\0", "\\9", "a", "é", "-"
                ][..]
            )
            .prop_map(|s| s.as_bytes().to_vec()),
            any::<u8>()
                .prop_filter("no NUL in a path", |b| *b != 0)
                .prop_map(|b| vec![b]),
            (1..5000usize).prop_map(|n| vec![b'x'; n]),
        ];
        vec(piece, 0..12).prop_map(|p| p.concat())
    }

    fn text() -> impl Strategy<Value = String> {
        vec(any::<char>(), 1..20).prop_map(String::from_iter)
    }

    fn mount() -> impl Strategy<Value = Mount> {
        (name(), text(), text(), "[a-z_=,0-9]{0,20}").prop_map(|(point, t, source, o)| {
            let mut p = b"/".to_vec();
            p.extend(point);
            Mount {
                mount_point: PathBuf::from(OsString::from_vec(p)),
                fs_type: t,
                source,
                super_options: o,
            }
        })
    }

    proptest! {
        #![proptest_config(crate::proptest_config(512))]

        /// Any bytes, any lines: no panic, and every mount point read is a
        /// path whatever its bytes.
        #[test]
        fn any_bytes_never_panic(bytes in vec(any::<u8>(), 0..2000), sources in vec("/[a-z/]{0,6}", 0..3)) {
            let mounts = parse(&bytes);
            let sources: Vec<PathBuf> = sources.iter().map(PathBuf::from).collect();
            for e in exclusions(&mounts, &sources) {
                prop_assert!(sources.iter().any(|s| e.mount_point.starts_with(s) && e.mount_point != *s));
            }
            let _ = mounts.iter().map(exclusion_reason).count();
        }

        /// What the kernel writes reads back exactly: escaped spaces,
        /// backslashes, newlines, invalid UTF-8, 20 KiB names.
        #[test]
        fn escaped_names_decode_exactly(
            mounts in vec(mount(), 1..4),
            optional in vec(select(&["shared:1", "master:2", "propagate_from:3", "unbindable"][..]), 0..3),
        ) {
            let table: Vec<Vec<u8>> = mounts.iter().map(|m| line(m, &optional)).collect();
            prop_assert_eq!(parse(&table.join(&b'\n')), mounts);
        }

        /// A line cut short anywhere before its source is no mount at all
        /// (and its neighbours still read).
        #[test]
        fn missing_fields_are_skipped(m in mount(), cut in 0usize..9) {
            let full = line(&m, &["shared:1"]);
            let fields: Vec<&[u8]> = full.split(|&b| b == b' ').collect();
            let short = fields[..cut.min(fields.len())].join(&b' ');
            let table = [short, full.clone()].join(&b'\n');
            prop_assert_eq!(parse(&table), vec![m]);
        }
    }
}
