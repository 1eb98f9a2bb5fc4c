//! Names a client chooses must not stop the store: 300 file names that all
//! collide under btrfs's directory hash (crc32c) fill one directory item,
//! and btrfs refuses the ones that no longer fit (EOVERFLOW). On kernels
//! with the 2026 fix that is all; on older ones the same creation could
//! abort the transaction and turn the filesystem read-only (`setup` and
//! `status` warn about those kernels: `sys/kernel.rs`). Here: the backup
//! reports the names it could not keep as not backed up, in one line, and
//! ends (a partial snapshot) instead of retrying for ever; the store stays
//! writable, and another client's backup right after succeeds.

use byteback_testbed as support;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

use support::world::{World, show, stderr};

/// CRC-32C's reflected polynomial.
const POLY: u32 = 0x82F6_3B78;

/// crc32c's raw update (no inversion before or after), as the kernel's
/// `crc32c(seed, data, len)` computes it.
fn crc32c_raw(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// btrfs's name hash: `crc32c(~1, name)`.
fn btrfs_name_hash(name: &[u8]) -> u32 {
    crc32c_raw(!1, name)
}

/// The four bytes that, appended to a name whose running CRC is `from`,
/// bring it to `target` (the 32 steps of four bytes undone one by one).
fn forcing_bytes(from: u32, target: u32) -> [u8; 4] {
    let mut v = target;
    for _ in 0..32 {
        v = if v & 0x8000_0000 != 0 {
            ((v ^ POLY) << 1) | 1
        } else {
            v << 1
        };
    }
    (v ^ from).to_le_bytes()
}

/// `count` distinct file names of `len` bytes with one btrfs name hash.
fn colliding_names(count: usize, len: usize) -> Vec<Vec<u8>> {
    let mut names = Vec::new();
    let mut target = None;
    let mut i = 0u64;
    while names.len() < count {
        i += 1;
        let mut name = format!("c{i:08}-").into_bytes();
        name.resize(len - 4, b'x');
        let prefix_crc = crc32c_raw(!1, &name);
        let hash = *target.get_or_insert_with(|| btrfs_name_hash(&name));
        let tail = forcing_bytes(prefix_crc, hash);
        if tail.iter().any(|&b| b == 0 || b == b'/') {
            continue;
        }
        name.extend_from_slice(&tail);
        assert_eq!(btrfs_name_hash(&name), hash);
        names.push(name);
    }
    names
}

/// The forged names are distinct and all have one btrfs directory hash (the
/// crc32c used is checked against its standard value), so the test below
/// really fills one directory item.
#[test]
fn the_forged_names_really_collide() {
    let names = colliding_names(20, 40);
    let hash = btrfs_name_hash(&names[0]);
    assert!(names.iter().all(|n| btrfs_name_hash(n) == hash));
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len());
    // The raw update is crc32c's standard check value once inverted.
    assert_eq!(!crc32c_raw(!0, b"123456789"), 0xE306_9283);
}

/// 300 file names colliding under btrfs's directory hash: the backup keeps
/// what fits and ends after two attempts as a partial snapshot (exit 3),
/// naming the rest in one line; the store stays writable, and another
/// client's backup and the collider's next one succeed.
#[test]
fn colliding_names_do_not_stop_the_store() {
    let Some(w) = World::new("collide") else {
        return;
    };
    let client = w.enroll("collider.example");
    w.server_config("min_snapshot_interval = \"0s\"\n");
    // Five attempts: the same names failing twice ends it.
    w.client_config("retry_attempts = 5\nretry_pause = \"1s\"\n");
    let dir = w.src.join("many");
    std::fs::create_dir(&dir).unwrap();
    let names = colliding_names(300, 200);
    for name in &names {
        std::fs::write(dir.join(OsStr::from_bytes(name)), b"x").unwrap();
    }
    std::fs::write(w.src.join("ordinary"), "kept\n").unwrap();
    let src = w.src.to_string_lossy().into_owned();
    let start = Instant::now();
    let out = w.client(&["backup", "--source", &src]);
    let took = start.elapsed();
    let current = w.store().join(&client).join("current");
    let kept = std::fs::read_dir(support::manifest::inside(&current, &dir))
        .map(|d| d.count())
        .unwrap_or(0);
    println!(
        "name collisions: {} of {} colliding names kept, backup exit {:?} after {:.1} s",
        kept,
        names.len(),
        out.status.code(),
        took.as_secs_f64()
    );
    if kept == names.len() {
        // A filesystem that takes them all (a larger leaf, or a kernel that
        // spreads them) has nothing to refuse: the backup is whole.
        assert!(out.status.success(), "{}", show(&out));
    } else {
        // Partial (exit 3): a snapshot marked partial, and one line that
        // says how many names were not backed up and names some.
        assert_eq!(out.status.code(), Some(3), "{}", show(&out));
        let err = stderr(&out);
        let line = err
            .lines()
            .find(|l| l.contains("backup incomplete"))
            .unwrap_or_else(|| panic!("no summary line: {}", show(&out)));
        assert!(line.contains("file(s)"), "{line}");
        // Not retried while it fails the same way: two attempts, not five.
        assert!(err.contains("attempt 1 of 5 failed"), "{}", show(&out));
        assert!(!err.contains("attempt 2 of 5 failed"), "{}", show(&out));
        assert_eq!(w.snapshots(&client).len(), 1, "{}", show(&out));
    }
    assert!(
        support::manifest::inside(&current, &w.src.join("ordinary")).exists(),
        "the other files are backed up"
    );
    // The store is writable, and another client backs up right after.
    let probe = w.store().join(".byteback/probe-writable");
    let out = w.user.run_as(&["touch", &probe.to_string_lossy()]);
    assert!(
        out.status.success(),
        "the store is read-only: {}",
        show(&out)
    );
    let other_key = w.add_client_with_file("other.example", "f", "other\n", "2026-01-01T00:00:00Z");
    assert!(other_key.exists());
    let out = w.server(&["snapshot", "--client", "other.example"]);
    assert!(out.status.success(), "{}", show(&out));
    // And the collider's own next backup works as well as the first.
    std::fs::write(w.src.join("ordinary"), "changed\n").unwrap();
    let out = w.client(&["backup", "--source", &src]);
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", show(&out));
}
