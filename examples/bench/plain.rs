//! (g) A plain store (issue 24): the same source backed up into a store on
//! ext4 (the plain backend: hard-linked directories, no btrfs), an
//! initial full backup, then index-mode incrementals with nothing changed
//! and after 1% mutate steps, each with the server's side of its work:
//! every `byteback-server` that sshd started for it (ping, readying
//! `current`, the transfer's relay with its rsync, the snapshot), found in
//! /proc by the server user's uid, their CPU seconds summed; and what the
//! store's filesystem gained (inodes and bytes, after `sync`). An
//! incremental's server work should follow what changed, not the tree.
//!
//! Its own fixture (`World` on an ext4 loop device, its own server user
//! and sshd), dropped at the end of the phase.

use std::fmt::Write as _;
use std::fs;

use crate::Bench;
use crate::dataset::Dataset;
use crate::measure::measure_watching_all;
use crate::report::{median, spread};
use crate::support::{FsKind, world::World};

/// One backup into the plain store.
#[derive(Debug, Clone)]
pub struct PlainSample {
    /// `initial`, `nochange` or `mutate`.
    pub state: &'static str,
    pub index: usize,
    pub wall: f64,
    /// Paths the incremental sent (`None`: a full pass).
    pub sent: Option<usize>,
    /// byteback-server processes seen, and their CPU seconds with their
    /// reaped children (the confined rsync among them).
    pub server_procs: usize,
    pub server_cpu: f64,
    /// The store filesystem's used inodes and bytes, after minus before.
    pub inodes: i64,
    pub bytes: i64,
    pub self_hwm_kib: u64,
}

#[derive(Debug, Clone, Default)]
pub struct PlainPhase {
    pub samples: Vec<PlainSample>,
    /// Entries in the source (files, directories, links).
    pub entries: u64,
}

fn used(world: &World) -> (i64, i64) {
    let st = rustix::fs::statvfs(&world.fs.mount_point).expect("statvfs");
    (
        (st.f_files - st.f_ffree) as i64,
        ((st.f_blocks - st.f_bfree) * st.f_frsize) as i64,
    )
}

impl PlainPhase {
    fn of(&self, state: &str) -> Vec<&PlainSample> {
        self.samples.iter().filter(|s| s.state == state).collect()
    }

    /// The row of issue 24's targets table (reported, no target set).
    pub fn target_row(&self) -> String {
        let f = |state: &str| {
            let ss = self.of(state);
            if ss.is_empty() {
                return "not run".to_owned();
            }
            let wall: Vec<f64> = ss.iter().map(|s| s.wall).collect();
            let cpu: Vec<f64> = ss.iter().map(|s| s.server_cpu).collect();
            let inodes: Vec<f64> = ss.iter().map(|s| s.inodes as f64).collect();
            format!(
                "{state}: {} s, server CPU {:.2} s, {:.0} inodes",
                spread(&wall),
                median(&cpu),
                median(&inodes)
            )
        };
        format!(
            "| plain store (ext4): an incremental's time and server-side work (see (g)) | {}; {} | — | — | — | reported | — |\n",
            f("nochange"),
            f("mutate")
        )
    }

    /// The section of RESULTS.md.
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "\n## (g) A plain store (ext4)\n\n\
             The same source ({} entries) backed up into a second store on an ext4 loop \
             device (the plain backend: each snapshot a directory tree, unchanged files \
             hard links), through its own server user and sshd: an initial full backup, \
             then index-mode incrementals with nothing changed and after 1% mutate steps. \
             *server CPU* sums every `byteback-server` sshd started for the backup (found \
             in /proc by the server user's uid: ping, readying `current`, the relay with \
             its confined rsync as a reaped child, the snapshot), CPU seconds as last \
             polled; *inodes* and *bytes* are what the store's filesystem gained across \
             the run (statvfs, after `sync`). On a plain store an incremental first makes \
             `current` a hard-link tree of the newest snapshot (new directories, a link per \
             file), so its server work follows the number of directories and files, not \
             only what changed.\n",
            self.entries
        );
        let _ = writeln!(
            o,
            "| backup | # | wall s | paths sent | byteback-server processes | server CPU s | inodes gained | bytes gained | byteback's peak RSS |\n|---|---|---|---|---|---|---|---|---|"
        );
        for s in &self.samples {
            let _ = writeln!(
                o,
                "| {} | {} | {:.3} | {} | {} | {:.2} | {} | {:.1} MiB | {:.1} MiB |",
                s.state,
                s.index,
                s.wall,
                s.sent.map_or("full pass".to_owned(), |n| n.to_string()),
                s.server_procs,
                s.server_cpu,
                s.inodes,
                s.bytes as f64 / 1048576.0,
                s.self_hwm_kib as f64 / 1024.0
            );
        }
        o
    }
}

impl Bench<'_> {
    /// (g): one initial backup, `rounds` with nothing changed, `rounds`
    /// after a mutate step each, into a plain store.
    pub fn plain_phase(&mut self, data: &mut Dataset, rounds: usize) {
        eprintln!("bench: (g) plain store (ext4): set-up");
        // Room for the data and, per snapshot, a directory tree, with the
        // server's default space budget: a transfer may write at most half
        // the store before its snapshot, and on ext4 200,000 small files
        // cost 2.6 GB of it for 630 MiB of data (a many-profile run), so
        // twelve times the data (a sparse image). ext4 makes one inode per
        // 16 KiB of the image: enough for every file once and every
        // snapshot's directories, with half again to spare.
        let t = &data.stats;
        let inodes = t.regular_files + t.symlinks + t.dirs * (2 + 2 * rounds as u64);
        let mib = (t.apparent_bytes / (1 << 20) * 12)
            .max(inodes * 16 * 3 / 2 / 1024)
            .max(2048);
        let Some(mut world) = World::sized("bench-plain", FsKind::Ext4, &[], mib) else {
            eprintln!("bench: (g) skipped: no root or tools for a loop device");
            return;
        };
        world.client_bin = self.client_bin.clone();
        fs::copy(&self.server_bin, &world.server_bin).expect("copy byteback-server");
        world.enroll("benchplain");
        world.server_config("min_snapshot_interval = \"0s\"\n");
        world.client_config("full_scan_every = 1000\n");
        let mut phase = PlainPhase {
            entries: byteback::client::index::walk(
                std::slice::from_ref(&self.src),
                &[],
                byteback::client::index::now_ns(),
            )
            .map(|w| w.len() as u64)
            .unwrap_or(0),
            ..PlainPhase::default()
        };
        let mut last = 0u64;
        let mut run = |this: &mut Bench, state: &'static str, index: usize| {
            while crate::now_secs() <= last {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let src = this.src.to_string_lossy().into_owned();
            let label = this.next_label(&format!("plain-{state}-{index}"));
            let mut cmd = world.client_command(&["backup", "--source", &src]);
            let before = used(&world);
            let run = measure_watching_all(
                &mut cmd,
                &this.logs,
                &label,
                &["byteback", "rsync", "ssh"],
                (world.user.uid, "byteback-server"),
            );
            last = crate::now_secs();
            assert!(
                run.code == 0 && run.stdout.contains("Backup complete"),
                "{label}: {}\n{}",
                run.stdout,
                run.stderr
            );
            this.settle();
            let after = used(&world);
            let (server_procs, server_cpu) = run.watched_cpu_total();
            let s = PlainSample {
                state,
                index,
                wall: run.wall,
                sent: crate::support::world::incremental_paths(&run.stdout),
                server_procs,
                server_cpu,
                inodes: after.0 - before.0,
                bytes: after.1 - before.1,
                self_hwm_kib: run.self_hwm_kib(),
            };
            eprintln!(
                "bench:   plain {state:<8} {:>8.3} s  (sent {:?}, server CPU {:.2} s in {} processes, {} inodes)",
                s.wall, s.sent, s.server_cpu, s.server_procs, s.inodes
            );
            phase.samples.push(s);
        };
        run(self, "initial", 1);
        for i in 1..=rounds {
            eprintln!("bench: (g) plain store, nothing changed, {i}/{rounds}");
            run(self, "nochange", i);
        }
        for i in 1..=rounds {
            eprintln!("bench: (g) plain store, 1% changed, {i}/{rounds}");
            data.mutate();
            run(self, "mutate", i);
        }
        drop(world);
        self.report.plain = Some(phase);
    }
}
