//! The report's sections for (d) restore and (e) listing: the same
//! [`Report`] model as every other section, rendered here beside them.

use std::fmt::Write as _;

use super::{Report, max, median, mib, min, ms_spread, spread, verdict};
use crate::CLIENT_NAME;
use crate::ops::{ListCase, Op, OpSample, OpTool, TARGET_LIST_SECS, shell_words};

impl Report {
    /// The summary table's rows for (d) and (e).
    pub fn ops_summary_rows(&self, o: &mut String) {
        let ops = &self.ops;
        let pairs = ops.restore_pairs();
        match &ops.restore {
            Some(info) if !pairs.is_empty() => {
                let r: Vec<f64> = pairs.iter().map(|p| p.3).collect();
                let name = info
                    .file
                    .rsplit('/')
                    .next()
                    .unwrap_or(&info.file)
                    .to_owned();
                let _ = writeln!(
                    o,
                    "| (d) restore of one large file (`{name}`, {}, sparse) from the newest snapshot — wall seconds, median (min–max) of {} | {} | {} | {:.3} ({:.3}–{:.3}) | none set (reported only) | — |",
                    mib(info.size as f64),
                    r.len(),
                    spread(&ops.walls(Op::Restore, "restore", OpTool::Byteback)),
                    spread(&ops.walls(Op::Restore, "restore", OpTool::Floor)),
                    median(&r),
                    min(&r),
                    max(&r)
                );
            }
            _ => {
                let _ = writeln!(
                    o,
                    "| (d) restore of one large file | not run | — | — | — | not measured |"
                );
            }
        }
        if let Some(c) = ops.case("e") {
            let _ = writeln!(
                o,
                "| (e) `byteback list --all '{}'` across the {} snapshots after the generations ({}) — wall seconds, median (min–max) of {} | {} (`byteback-server list` alone, no ssh: {}) | — | — | the < {TARGET_LIST_SECS:.0} s target is for 100 snapshots: next rows | — |",
                c.pattern.replace(&format!("{}/", self.src_dir), "<src>/"),
                c.snapshots,
                ops.rows_of(c.key),
                ops.walls(Op::List, c.key, OpTool::Byteback).len(),
                spread(&ops.walls(Op::List, c.key, OpTool::Byteback)),
                spread(&ops.walls(Op::List, c.key, OpTool::Server)),
            );
        }
        for c in ops.cases.iter().filter(|c| c.hundred && c.target) {
            let client = ops.walls(Op::List, c.key, OpTool::Byteback);
            let _ = writeln!(
                o,
                "| (e) at {} snapshots ({} taken by hand): {} `{}` ({}) — `byteback list --all`, wall seconds, median (min–max) of {} | {} (server alone: {}) | — | — | < {TARGET_LIST_SECS:.0} s | {} |",
                c.snapshots,
                ops.snapshot_times.len(),
                c.title,
                c.pattern.replace(&format!("{}/", self.src_dir), "<src>/"),
                ops.rows_of(c.key),
                client.len(),
                spread(&client),
                spread(&ops.walls(Op::List, c.key, OpTool::Server)),
                verdict(median(&client) < TARGET_LIST_SECS)
            );
        }
        let hundred: Vec<&ListCase> = ops.cases.iter().filter(|c| c.hundred).collect();
        if !hundred.is_empty() {
            let fewer = ops.case("e").map_or(String::new(), |c| {
                format!(
                    "; the `**` glob at {} snapshots: {:.1} MiB",
                    c.snapshots,
                    ops.server_peak_kib(c.key, OpTool::Server) as f64 / 1024.0
                )
            });
            let _ = writeln!(
                o,
                "| byteback-server's peak RSS (VmHWM) listing across {} snapshots: {} | {}{fewer} | — | — | flat in the number of matches (no figure set) | — |",
                hundred[0].snapshots,
                hundred
                    .iter()
                    .map(|c| format!("{} ({})", c.key, ops.rows_of(c.key)))
                    .collect::<Vec<_>>()
                    .join(" / "),
                hundred
                    .iter()
                    .map(|c| format!(
                        "{:.1}",
                        ops.server_peak_kib(c.key, OpTool::Server) as f64 / 1024.0
                    ))
                    .collect::<Vec<_>>()
                    .join(" / ")
                    + " MiB"
            );
        }
    }

    /// The (d) and (e) sections.
    pub fn ops_sections(&self, o: &mut String) {
        let ops = &self.ops;
        let src = format!("{}/", self.src_dir);
        let short = |p: &str| p.replace(&src, "<src>/");
        if let Some(info) = &ops.restore {
            let _ = writeln!(o, "\n## (d) Restore of one large file\n");
            let _ = writeln!(
                o,
                "`byteback restore --snapshot {} --into <fresh dir> {}` ({} apparent, {} \
                 allocated in the source: the disk image with its holes), against the floor: \
                 bare rsync with byteback restore's own argv (read from /proc during an untimed \
                 warm-up run) and the floor's key, pulling `current/<same path>` from the \
                 floor's directory, whose forced command runs the standard sender there \
                 (`rsync --server --sender --fake-super …`). Each run goes into a fresh \
                 directory on the root filesystem, is compared with the source (`cmp`), \
                 flushed (*post-run sync*, untimed) and removed. One untimed warm-up of each \
                 side first, so both read the server's file from the page cache. \
                 byteback makes two ssh connections (the listing that finds the file, then \
                 rsync's); the floor one.\n",
                info.snapshot,
                short(&info.file),
                mib(info.size as f64),
                mib(info.source_alloc as f64),
            );
            let _ = writeln!(
                o,
                "byteback's rsync:\n\n```\n{}\n```\n\nThe floor's:\n\n```\n{}\n```\n",
                shell_words(&info.byteback_argv),
                shell_words(&info.floor_argv)
            );
            let _ = writeln!(
                o,
                "| # | first | byteback | floor | ratio | byteback: start / listing ssh / rsync (ms) | restored file allocated, byteback / floor | post-run sync byteback / floor | load before byteback / floor |\n|---|---|---|---|---|---|---|---|---|"
            );
            let opt_ms = |x: Option<f64>| x.map_or("n/a".into(), |v| format!("{:.0}", v * 1000.0));
            for (i, b, f, r) in ops.restore_pairs() {
                let _ = writeln!(
                    o,
                    "| {i} | {} | {:.3} | {:.3} | {r:.3} | {} / {} / {} | {} / {} | {:.3} / {:.3} | {:.2} / {:.2} |",
                    if b.position == 1 { "byteback" } else { "floor" },
                    b.wall,
                    f.wall,
                    opt_ms(b.startup),
                    opt_ms(b.query),
                    opt_ms(b.rsync),
                    mib(b.restored_alloc.unwrap_or(0) as f64),
                    mib(f.restored_alloc.unwrap_or(0) as f64),
                    b.post_sync.unwrap_or(0.0),
                    f.post_sync.unwrap_or(0.0),
                    b.load1,
                    f.load1
                );
            }
            let bb = ops.of(Op::Restore, "restore", OpTool::Byteback);
            let fl = ops.of(Op::Restore, "restore", OpTool::Floor);
            let diff: Vec<f64> = ops
                .restore_pairs()
                .iter()
                .map(|p| p.1.wall - p.2.wall)
                .collect();
            let pick = |f: fn(&OpSample) -> Option<f64>| -> Vec<f64> {
                bb.iter().filter_map(|s| f(s)).collect()
            };
            let cpu = |ss: &[&OpSample]| -> Vec<f64> {
                ss.iter().map(|s| s.cpu_user + s.cpu_sys).collect()
            };
            let kib = |ss: &[&OpSample], f: fn(&OpSample) -> u64| {
                ss.iter().map(|s| f(s)).max().unwrap_or(0) as f64 / 1024.0
            };
            let _ = writeln!(
                o,
                "\nms, median (min–max): byteback's start (spawn to its first ssh) {}, listing \
                 ssh (handshake + the server finding the file) {}, rsync (its own ssh handshake \
                 + the transfer) {}; the floor's whole run {}; byteback − floor per pair {}. \
                 Client CPU s (user+sys, with children), median: byteback {:.2}, floor {:.2}. \
                 Peak RSS: byteback's own process {:.1} MiB, its rsync {:.1} MiB, the floor's \
                 rsync {:.1} MiB.\n",
                ms_spread(&pick(|s| s.startup)),
                ms_spread(&pick(|s| s.query)),
                ms_spread(&pick(|s| s.rsync)),
                ms_spread(&ops.walls(Op::Restore, "restore", OpTool::Floor)),
                ms_spread(&diff),
                median(&cpu(&bb)),
                median(&cpu(&fl)),
                kib(&bb, |s| s.self_hwm_kib),
                kib(&bb, |s| s.rsync_hwm_kib),
                kib(&fl, |s| s.rsync_hwm_kib),
            );
        }
        if ops.cases.is_empty() {
            return;
        }
        let _ = writeln!(o, "## (e) Listing one glob across all snapshots\n");
        let _ = writeln!(
            o,
            "Each run of a case times three commands, the order rotating from run to run: \
             `byteback list --all PATTERN` (the client: ssh, the server's forced command \
             walking every snapshot, rows streamed back and printed as a table); \
             `byteback-server list --client {CLIENT_NAME} --all PATTERN` as the server user \
             (no ssh, no client); and the *forced command* `byteback-server receive --store \
             … --client {CLIENT_NAME}` run locally as the server user with \
             `SSH_ORIGINAL_COMMAND` set to the exact request `byteback list` sent (read from \
             /proc), writing the encoded rows to a file: the server's side of the ssh \
             request without ssh. *server peak RSS* is byteback-server's VmHWM polled every \
             5 ms: its own process when run directly; during `byteback list`, the \
             byteback-server that sshd started, found in /proc by the server user's uid and \
             its name. `<src>` is {}.\n",
            self.src_dir
        );
        if !ops.snapshot_times.is_empty() {
            let total: f64 = ops.snapshot_times.iter().sum();
            let _ = writeln!(
                o,
                "The 100-snapshot phase (after the micro-measurements): {} snapshots of \
                 `current` taken by hand (`byteback-server snapshot --client {CLIENT_NAME} \
                 --at <2002-01-01T00:00:00Z + k hours>`, as the server user), taking the \
                 client from {} to {} snapshots: {} ms each, median (min–max), {total:.1} s \
                 in all. They hold the same files as the newest backup, so `--all` finds no \
                 more versions, but every walk still visits every snapshot. The first run of \
                 each case after them is the first to read those subvolumes' inodes.\n",
                ops.snapshot_times.len(),
                ops.snapshots_before_hundred,
                ops.cases
                    .iter()
                    .find(|c| c.hundred)
                    .map_or(0, |c| c.snapshots),
                ms_spread(&ops.snapshot_times),
            );
        }
        let _ = writeln!(
            o,
            "*files now* counts the regular files of the source tree that match at the time \
             of the listing; the paths listed are more where older snapshots still hold files \
             deleted since. Seconds, median (min–max).\n"
        );
        let _ = writeln!(
            o,
            "| case | pattern | snapshots | files now | rows, distinct paths | `byteback list` | `byteback-server list` | forced command, locally | `byteback list` − forced command (ssh + client) | very first command of the case | `byteback-server list` CPU s, user / sys (median) | server peak RSS via ssh / list / forced (MiB) |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for c in &ops.cases {
            let client = ops.walls(Op::List, c.key, OpTool::Byteback);
            let forced = ops.of(Op::List, c.key, OpTool::Forced);
            let diff: Vec<f64> = ops
                .of(Op::List, c.key, OpTool::Byteback)
                .iter()
                .filter_map(|b| {
                    let f = forced.iter().find(|f| f.index == b.index)?;
                    Some(b.wall - f.wall)
                })
                .collect();
            let peak = |tool| ops.server_peak_kib(c.key, tool) as f64 / 1024.0;
            let first = ops
                .samples
                .iter()
                .find(|s| s.op == Op::List && s.case == c.key)
                .map_or("n/a".into(), |s| format!("{} {:.3}", s.tool.key(), s.wall));
            let direct = ops.of(Op::List, c.key, OpTool::Server);
            let user: Vec<f64> = direct.iter().map(|s| s.cpu_user).collect();
            let sys: Vec<f64> = direct.iter().map(|s| s.cpu_sys).collect();
            let cpu = format!("{:.2} / {:.2}", median(&user), median(&sys));
            let _ = writeln!(
                o,
                "| {} | `{}` | {} | {} | {} | {} | {} | {} | {} | {first} | {cpu} | {:.1} / {:.1} / {:.1} |",
                c.title,
                short(&c.pattern),
                c.snapshots,
                c.expected_files.map_or("—".into(), |n| n.to_string()),
                ops.rows_of(c.key),
                spread(&client),
                spread(&ops.walls(Op::List, c.key, OpTool::Server)),
                spread(&ops.walls(Op::List, c.key, OpTool::Forced)),
                spread(&diff),
                peak(OpTool::Byteback),
                peak(OpTool::Server),
                peak(OpTool::Forced),
            );
        }
        let share = |tool: OpTool| -> f64 {
            let ss: Vec<&OpSample> = ops
                .samples
                .iter()
                .filter(|s| s.op == Op::List && s.tool == tool)
                .collect();
            let cpu: f64 = ss.iter().map(|s| s.poll_cpu).sum();
            let wall: f64 = ss.iter().map(|s| s.wall).sum();
            100.0 * cpu / wall.max(1e-9)
        };
        let _ = writeln!(
            o,
            "\nThe benchmark's /proc polling used {:.1}% of one CPU during `byteback list` runs \
             (which scan /proc for the server's process until it appears), {:.1}% during \
             `byteback-server list` runs and {:.1}% during forced-command runs.\n",
            share(OpTool::Byteback),
            share(OpTool::Server),
            share(OpTool::Forced)
        );
        let _ = writeln!(
            o,
            "Every run, in order (s; RSS in MiB; load is the 1-minute average just before):\n"
        );
        let _ = writeln!(
            o,
            "| case | # | tool | position | wall | rows | server peak RSS | byteback-server's lifetime / CPU s | CPU s of the measured command (with children) | load |\n|---|---|---|---|---|---|---|---|---|---|"
        );
        for s in ops.samples.iter().filter(|s| s.op == Op::List) {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {:.3} | {} | {} | {} / {} | {:.2} | {:.2} |",
                s.case,
                s.index,
                s.tool.key(),
                s.position,
                s.wall,
                s.rows.map_or("?".into(), |r| r.to_string()),
                s.server_hwm_kib
                    .map_or("n/a".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
                s.server_life.map_or("n/a".into(), |v| format!("{v:.3}")),
                s.server_cpu.map_or("n/a".into(), |v| format!("{v:.2}")),
                s.cpu_user + s.cpu_sys,
                s.load1
            );
        }
        let _ = writeln!(o);
    }

    /// The CSV rows of (d) and (e), numbered on from `first`.
    pub fn ops_csv(&self, out: &mut String, first: usize) {
        let o = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.4}"));
        let u = |x: Option<u64>| x.map_or(String::new(), |v| v.to_string());
        let mut n = first;
        for s in &self.ops.samples {
            let pattern = self
                .ops
                .case(&s.case)
                .map_or(String::new(), |c| c.pattern.clone());
            let _ = writeln!(
                out,
                "{n},{},{},{},{},{:.4},{},{},,,{},,,{},{},{},{},{},{:.3},{:.3},{:.2},{:.2},,,{},{},\"{}\",{},{},{},{},{},{},{},{}",
                s.op.key(),
                s.index,
                s.tool.key(),
                s.position,
                s.wall,
                s.code,
                o(s.startup),
                o(s.rsync),
                o(s.post_sync),
                s.self_hwm_kib,
                s.rsync_hwm_kib,
                s.ssh_hwm_kib,
                s.wait4_maxrss_kib,
                s.cpu_user,
                s.cpu_sys,
                s.load1,
                s.poll_cpu,
                s.snapshot,
                s.case,
                pattern.replace('"', "\"\""),
                u(s.rows),
                u(s.paths),
                s.snapshots,
                o(s.query),
                u(s.server_hwm_kib),
                u(s.restored_alloc),
                o(s.server_life),
                o(s.server_cpu),
            );
            n += 1;
        }
        for (i, t) in self.ops.snapshot_times.iter().enumerate() {
            // Fields 8 to 35 are empty.
            let _ = writeln!(
                out,
                "{n},snapshot100,{},byteback-server,1,{t:.4},0{}",
                i + 1,
                ",".repeat(28)
            );
            n += 1;
        }
    }
}
