//! End to end: reads a client asks for (list, digest, restore) are bounded
//! on the server — at most two at once per client, a digest reads only
//! data and each inode once, within a byte budget and a time limit, and a
//! client that hangs up stops its read within seconds.

use byteback_testbed as support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use byteback::protocol::Request;
use support::world::{World, show, stderr, stdout};

/// The forced command's text of a digest of `snapshot` under `pattern`.
fn digest_request(snapshot: &str, pattern: &str) -> String {
    Request::Digest {
        snapshot: snapshot.into(),
        patterns: vec![pattern.as_bytes().to_vec()],
    }
    .render()
}

/// Starts `command` through ssh as the client, without waiting.
fn spawn_ssh(w: &World, command: &str) -> Child {
    Command::new("ssh")
        .args(w.raw_ssh_options())
        .arg(format!("{}@127.0.0.1", w.user.name))
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run ssh")
}

/// Waits for `done` up to `limit`; returns how long it took, or panics
/// with `what`.
fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// Whether someone holds a flock on `path` (from /proc/locks, which names
/// the inode).
fn is_flocked(path: &Path) -> bool {
    let Ok(ino) = std::fs::metadata(path).map(|m| m.ino()) else {
        return false;
    };
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    locks.lines().any(|l| {
        l.contains("FLOCK")
            && l.split_whitespace().any(|field| {
                field.rsplit(':').next() == Some(&ino.to_string()) && field.contains(':')
            })
    })
}

/// Reads are bounded per client: 100 hard links to a 1 GiB sparse file are
/// hashed once, reading only its data; two digests of a 1 TiB sparse file
/// hold both read slots and a third read is refused at once (busy, exit 4);
/// hanging up ends both server digests within seconds; `max_digest_bytes`
/// and `read_timeout` end a digest with the reason the client prints.
#[test]
fn reads_are_bounded_per_client() {
    let Some(w) = World::new("reads") else {
        return;
    };
    let client = w.enroll("reads.example");
    // A 1 GiB sparse file with 128 KiB of data, under 100 names: cheap for
    // the client to store, 100 GiB for a naive digest.
    let big = w.src.join("big");
    std::fs::create_dir(&big).unwrap();
    let first = big.join("sparse-000");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(&first).unwrap();
        f.write_all(&[b'a'; 64 * 1024]).unwrap();
        f.seek(SeekFrom::Start(512 << 20)).unwrap();
        f.write_all(&[b'b'; 64 * 1024]).unwrap();
        f.set_len(1 << 30).unwrap();
    }
    for i in 1..100 {
        std::fs::hard_link(&first, big.join(format!("sparse-{i:03}"))).unwrap();
    }
    let started = Instant::now();
    w.backup_ok();
    println!(
        "backup of 100 names of a 1 GiB sparse file: {:?}",
        started.elapsed()
    );
    let snapshot = w.snapshots(&client).pop().expect("a snapshot");
    let big_arg = big.to_string_lossy().into_owned();

    // The client's verify: the server's sparse copy hashes like the
    // client's (read densely), every name once in the reply.
    let started = Instant::now();
    let out = w.client(&["verify", "--checksum", &big_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        stdout(&out).contains("0 differ although unchanged"),
        "{}",
        show(&out)
    );
    println!(
        "verify --checksum of the 100 names: {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let out = w.raw_ssh(Some(&digest_request(&snapshot, &format!("{big_arg}/**"))));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    println!(
        "the server's digest of the 100 names: {:?}",
        started.elapsed()
    );
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 100, "{}", show(&out));
    let hash = |l: &str| l.rsplit('\t').next().unwrap_or_default().to_owned();
    assert_eq!(hash(&lines[0]).len(), 64, "{}", show(&out));
    assert!(
        lines.iter().all(|l| hash(l) == hash(&lines[0])),
        "{}",
        show(&out)
    );
    // Each inode once, only its data read (the server's log says so).
    let log = std::fs::read_to_string(w.store().join(".byteback/server.log")).unwrap();
    let line = log
        .lines()
        .rfind(|l| l.contains(&format!("digest of {snapshot}: ")))
        .unwrap_or_else(|| panic!("no digest in the log:\n{log}"));
    println!("{line}");
    assert!(line.contains("100 file(s), 1 inode(s) hashed"), "{line}");
    let read: u64 = line
        .split(" inode(s) hashed, ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        read < 1 << 20,
        "read {read} bytes of a file with 128 KiB of data: {line}"
    );

    // A 1 TiB sparse file in the snapshot: a digest of it hashes for
    // minutes. Two of them take both read slots.
    let snap_dir = w.store().join(&client).join(&snapshot);
    let tera = snap_dir
        .join(first.strip_prefix("/").unwrap())
        .with_file_name("tera");
    let snap_arg = snap_dir.to_string_lossy().into_owned();
    support::run_ok(&["btrfs", "property", "set", "-ts", &snap_arg, "ro", "false"]);
    let tera_arg = tera.to_string_lossy().into_owned();
    let source = tera
        .with_file_name("sparse-000")
        .to_string_lossy()
        .into_owned();
    support::run_ok(&["cp", "-a", "--sparse=always", &source, &tera_arg]);
    support::run_ok(&["truncate", "-s", "1T", &tera_arg]);
    support::run_ok(&["btrfs", "property", "set", "-ts", &snap_arg, "ro", "true"]);
    let tera_pattern = format!("{big_arg}/tera");
    let mut holders: Vec<Child> = (0..2)
        .map(|_| spawn_ssh(&w, &digest_request(&snapshot, &tera_pattern)))
        .collect();
    let locks = w.store().join(".byteback/locks");
    let took = wait_for(
        "two digests hold both read slots",
        Duration::from_secs(30),
        || (1..=2).all(|n| is_flocked(&locks.join(format!("read/{client}.{n}")))),
    );
    println!("two digests of a 1 TiB sparse file hold both read slots after {took:?}");

    // A third read is refused at once, busy, with its own exit status.
    let started = Instant::now();
    let out = w.raw_ssh(Some(&digest_request(&snapshot, &format!("{big_arg}/**"))));
    let refused_in = started.elapsed();
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(
        stderr(&out).contains("busy") && stderr(&out).contains("try again"),
        "{}",
        show(&out)
    );
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", show(&out));
    println!(
        "a third digest refused in {refused_in:?}: {}",
        stderr(&out).trim()
    );
    let first_arg = first.to_string_lossy().into_owned();
    let out = w.client(&["list", &first_arg]);
    assert_eq!(out.status.code(), Some(4), "a listing too: {}", show(&out));
    assert!(stderr(&out).contains("try again"), "{}", show(&out));

    // Hanging up ends both server processes within seconds.
    let servers = || support::processes_of(w.user.uid, "byteback-server");
    assert_eq!(servers().len(), 2, "the two digests run on");
    for h in &mut holders {
        h.kill().unwrap();
        h.wait().unwrap();
    }
    let took = wait_for(
        "the server's digests end after their clients hung up",
        Duration::from_secs(10),
        || servers().is_empty(),
    );
    println!("both server digests ended {took:?} after their clients were killed");
    let log = std::fs::read_to_string(w.store().join(".byteback/server.log")).unwrap();
    assert!(log.contains("the client went away"), "{log}");

    // The byte budget, as the client's verify reports it.
    w.server_config("max_digest_bytes = 65536\n");
    let out = w.client(&["verify", "--checksum", &big_arg]);
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    assert!(stderr(&out).contains("max_digest_bytes"), "{}", show(&out));
    println!("budget: {}", stderr(&out).trim());

    // The time limit: a digest of the 1 TiB file ends after it.
    w.server_config("read_timeout = \"2s\"\n");
    let started = Instant::now();
    let out = w.raw_ssh(Some(&digest_request(&snapshot, &tera_pattern)));
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    assert!(stderr(&out).contains("read_timeout"), "{}", show(&out));
    assert!(took < Duration::from_secs(20), "{took:?}");
    println!(
        "read_timeout = 2s ended a 1 TiB digest in {took:?}: {}",
        stderr(&out).trim()
    );
    assert!(servers().is_empty(), "{:?}", servers());
}
