//! A source tree with everything a faithful backup must keep.

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::Path;

use rustix::fs::{CWD, FileType, Mode, XattrFlags, lsetxattr, makedev, mknodat};

use super::manifest::os;

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn set_mtime(path: &Path, secs: i64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// Fills `root` with: nested directories with their own modes and owners,
/// files with other owners, modes and old mtimes, user xattrs, relative,
/// absolute and dangling symlinks, hard links, a sparse file, names with
/// spaces, newlines and invalid UTF-8, an empty file, a FIFO and a device.
pub fn populate(root: &Path) {
    let etc = root.join("etc");
    let home = root.join("home/alice");
    fs::create_dir_all(&etc).unwrap();
    fs::create_dir_all(&home).unwrap();
    fs::write(etc.join("hostname"), "client.example\n").unwrap();
    fs::write(etc.join("shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
    set_mode(&etc.join("shadow"), 0o640);
    chown(etc.join("shadow"), Some(0), Some(42)).unwrap();
    fs::write(home.join(".bashrc"), "export PS1='$ '\n").unwrap();
    chown(home.join(".bashrc"), Some(1000), Some(1000)).unwrap();
    set_mtime(&home.join(".bashrc"), 1_500_000_000);
    chown(&home, Some(1000), Some(1000)).unwrap();
    set_mode(&home, 0o750);
    let notes = home.join("notes.txt");
    fs::write(&notes, "remember the milk\n").unwrap();
    chown(&notes, Some(1000), Some(100)).unwrap();
    lsetxattr(&notes, "user.origin", b"kitchen", XattrFlags::empty()).unwrap();
    lsetxattr(&notes, "user.empty", b"", XattrFlags::empty()).unwrap();
    // A POSIX ACL (kept by rsync --acls; checked with getfacl where it matters).
    super::run_ok(&[
        "setfacl",
        "-m",
        "u:1234:r,g:4321:rw",
        &etc.join("shadow").to_string_lossy(),
    ]);
    // Links.
    symlink("../../etc/hostname", home.join("relative-link")).unwrap();
    symlink("/etc/hostname", home.join("absolute-link")).unwrap();
    symlink("nowhere/at/all", home.join("dangling-link")).unwrap();
    fs::hard_link(&notes, home.join("notes-hardlink.txt")).unwrap();
    fs::hard_link(&notes, root.join("notes-third-link.txt")).unwrap();
    // A sparse file: 64 MiB with 4 KiB of data in the middle.
    let sparse = root.join("disk.img");
    let f = fs::File::create(&sparse).unwrap();
    f.set_len(64 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[7u8; 4096], 32 << 20).unwrap();
    // Awkward names.
    fs::write(root.join("name with spaces"), "spaces\n").unwrap();
    fs::write(root.join("name\nwith\nnewlines"), "newlines\n").unwrap();
    fs::write(root.join(os(b"latin1-\xe9t\xe9")), "bytes\n").unwrap();
    fs::write(root.join("empty"), "").unwrap();
    // Specials.
    mknodat(
        CWD,
        root.join("fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o620),
        0,
    )
    .unwrap();
    mknodat(
        CWD,
        root.join("null-device"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        makedev(1, 3),
    )
    .unwrap();
    // Some bulk, so the transfer is more than a handful of packets.
    let bulk = root.join("var/lib/data");
    fs::create_dir_all(&bulk).unwrap();
    for i in 0..200 {
        fs::write(
            bulk.join(format!("f{i:03}")),
            format!("{i}\n").repeat(i * 10),
        )
        .unwrap();
    }
    set_mode(&root.join("var"), 0o711);
}
