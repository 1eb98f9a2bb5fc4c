//! How long a plain store takes to ready `current` for an incremental
//! backup (issue 24): the hard-link tree of the newest snapshot, less the
//! paths the client will send. Run it on the filesystem you care about
//! (e.g. an ext4 loop device), under `strace -c -f` for the system calls:
//!
//! ```text
//! cargo run --release --example plain_incremental_bench -- DIR [FILES] [DIRS] [RUNS] [keep]
//! ```
//!
//! `DIR` must be empty or absent; the example fills it with a client
//! directory holding one snapshot of `FILES` small files (default 200,000)
//! spread over `DIRS` directories (default 10,000), each directory with a
//! `user.rsync.%stat` xattr as `--fake-super` leaves it, then readies
//! `current` `RUNS` times (default 3) with ten files replaced, printing the
//! seconds of each run. It removes what it made at the end, unless the
//! fifth argument is `keep`: then the tree (and the last run's `current`)
//! stays, and the next run with `keep` reuses it, so that
//! `strace -c -f` of a run with `RUNS` 1 counts only the readying:
//!
//! ```text
//! plain_incremental_bench DIR 200000 10000 0 keep          # make the tree
//! strace -c -f plain_incremental_bench DIR 200000 10000 1 keep
//! plain_incremental_bench DIR 200000 10000 0               # remove it
//! ```

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use byteback::store::plain;

const SNAPSHOT: &str = "2026-01-01T00:00:00Z";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(root) = args.first() else {
        eprintln!("plain_incremental_bench: usage: DIR [FILES] [DIRS] [RUNS]");
        std::process::exit(2);
    };
    let number = |i: usize, default: usize| -> usize {
        args.get(i).map_or(default, |a| {
            a.parse().unwrap_or_else(|_| {
                eprintln!("plain_incremental_bench: {a} is not a number");
                std::process::exit(2)
            })
        })
    };
    let (files, dirs, runs) = (number(1, 200_000), number(2, 10_000), number(3, 3));
    let keep = args.get(4).is_some_and(|a| a == "keep");
    let client = Path::new(root).join("client");
    std::fs::create_dir_all(&client).expect("create the client directory");
    std::fs::create_dir_all(client.join("current")).expect("create current");
    let snapshot = client.join(SNAPSHOT);
    if !snapshot.exists() {
        let started = Instant::now();
        fill(&snapshot, files, dirs.max(1));
        eprintln!(
            "made {files} files in {dirs} directories in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    // Ten files the client changed, spread over the tree.
    let replace: HashSet<Vec<u8>> = (0..10)
        .map(|i| {
            let d = i * dirs.max(1) / 10;
            format!("data/{:02}/d{d:05}/f{:05}", d % 100, d).into_bytes()
        })
        .collect();
    for run in 0..runs {
        let used = std::fs::read_dir(client.join("current"))
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if used {
            plain::discard_current(&client).expect("empty current");
        }
        sync();
        let started = Instant::now();
        plain::prepare_incremental(&client, SNAPSHOT, &replace).expect("ready current");
        let secs = started.elapsed().as_secs_f64();
        println!("run {run}: prepare_incremental {secs:.3} s ({files} files, {dirs} directories)");
    }
    if !keep {
        plain::discard_current(&client).expect("empty current");
        make_writable(&client);
        std::fs::remove_dir_all(&client).expect("remove what the example made");
    }
}

/// `files` files of 0–100 bytes under `data/NN/dNNNNN/`, each directory
/// read-only as rsync may leave it, with the xattr `--fake-super` writes.
fn fill(snapshot: &Path, files: usize, dirs: usize) {
    use std::os::unix::fs::PermissionsExt;
    let per_dir = files.div_ceil(dirs);
    let mut made = 0;
    for d in 0..dirs {
        let dir = snapshot.join(format!("data/{:02}/d{d:05}", d % 100));
        std::fs::create_dir_all(&dir).expect("create a directory");
        for f in 0..per_dir.min(files - made) {
            let name = dir.join(format!("f{:05}", d + f * dirs));
            std::fs::write(&name, vec![b'x'; (d + f) % 101]).expect("write a file");
        }
        made += per_dir.min(files - made);
        rustix::fs::setxattr(
            &dir,
            "user.rsync.%stat",
            b"40755 0,0 0:0",
            rustix::fs::XattrFlags::empty(),
        )
        .expect("set an xattr (mount with user_xattr)");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555))
            .expect("chmod a directory");
    }
}

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o755));
            make_writable(&entry.path());
        }
    }
}

fn sync() {
    rustix::fs::sync();
}
