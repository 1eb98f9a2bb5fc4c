//! `cargo run -p xtask -- reliability`: runs the whole test suite
//! (`cargo test --locked --no-fail-fast -- --show-output`) and writes
//! RELIABILITY.md: every scenario, what it proves, and how it went in this
//! run, with the figures the tests printed (lines starting `figure: `).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// What each test proves, by test file and the start of its name. The
/// first matching row names a test; a test no row names is listed at the
/// end, so nothing run goes unreported.
const SCENARIOS: &[(&str, &str, &str, &str)] = &[
    // (area, file, test name prefix, what it proves)
    (
        "Hostile client",
        "hostile_client",
        "hostile_client_is_confined",
        "a client's own key gets no shell, no other command, no write outside its `current`, no other client's data, no snapshot change",
    ),
    (
        "Hostile client",
        "hostile_rsync",
        "filter_rules_cannot_open_server_files",
        "filter rules a modified rsync sends cannot open or probe server files (sandbox, Landlock, --confine-root)",
    ),
    (
        "Hostile client",
        "hostile_rsync",
        "the_servers_rsync_never_outwaits_a_silent_client",
        "a client that goes silent cannot hold a server rsync",
    ),
    (
        "Hostile client",
        "hostile_rsync",
        "restores_are_bounded_and_end_with_their_connection",
        "restores are limited per client and end with their connection",
    ),
    (
        "Hostile client",
        "hostile_rsync",
        "plain_pushes_cannot_change_snapshot_inodes",
        "a plain store's snapshot inodes cannot be written through `current`",
    ),
    (
        "Hostile client",
        "hostile_rsync",
        "one_clients_flood_cannot_cost_another_its_history",
        "one client's flood is reclaimed before anyone's history is pruned",
    ),
    (
        "Hostile client",
        "restore",
        "listing_and_restore_stay_inside",
        "listing and restore cannot escape the client's backups (patterns, symlinks, sender paths)",
    ),
    (
        "Hostile backup user",
        "hardened",
        "backups_make_root_owned_snapshots",
        "hardened mode: a backup's snapshot is root's and read-only; the backup user cannot clear the flag, delete, remove, move or write it; backups go on",
    ),
    (
        "Hostile backup user",
        "hardened",
        "the_helper_deletes_only_what_the_policy",
        "hardened mode: the privileged helper refuses what the policy keeps (plenty of space, a newest, not the next), prune deletes through it in plan order, bad names, symlinked client dirs and other callers refused",
    ),
    (
        "Bad input",
        "bad_input",
        "",
        "one clear line and a non-zero exit for every kind of bad input, nothing changed",
    ),
    (
        "Bad input",
        "clients",
        "bad_client_commands",
        "client management refuses bad names in one line, changing nothing",
    ),
    (
        "Faults",
        "faults",
        "a_backup_cut_anywhere",
        "a transfer cut at 10 seeded points (client rsync, client ssh, ssh master, server rsync, sshd stopped): the next run completes, snapshot identical to the source",
    ),
    (
        "Faults",
        "faults",
        "the_server_killed_while_completing_or_pruning",
        "the server killed between marker and snapshot, after the snapshot before the reply, and in the middle of deleting a snapshot: never a half snapshot listed, the retry makes exactly one snapshot, the next run finishes the deletion (btrfs and plain)",
    ),
    (
        "Faults",
        "faults",
        "a_source_changing",
        "a source growing, vanishing and renamed during the backup: success, every saved file a version it had",
    ),
    (
        "Faults",
        "backup",
        "a_killed_backup_resumes",
        "a killed backup resumes and completes (btrfs and plain)",
    ),
    (
        "Faults",
        "backup",
        "retries_until_the_server_is_back",
        "a backup retries until the server is back",
    ),
    (
        "Faults",
        "backup",
        "unreadable_files_make_a_partial_snapshot",
        "unreadable files give a snapshot marked partial, named files, exit 3",
    ),
    (
        "Faults",
        "backup",
        "a_same_second_same_size_rewrite",
        "a same-size rewrite within the same second is backed up",
    ),
    (
        "Faults",
        "local_and_plain",
        "a_same_second_rewrite",
        "the same, into a local store",
    ),
    (
        "Faults",
        "local_and_plain",
        "a_crash_while_deleting",
        "a crash while deleting a plain snapshot is repaired, never listed half",
    ),
    (
        "Faults",
        "prune",
        "a_backup_that_hits_a_full_disk",
        "a backup that fills the disk succeeds after pruning, with no human step",
    ),
    (
        "Faults",
        "prune",
        "a_backup_makes_room",
        "a backup makes room for itself by pruning",
    ),
    (
        "Faults",
        "prune",
        "a_backup_that_suddenly_doubles",
        "a client that suddenly doubles is refused room instead of costing others history",
    ),
    (
        "Load",
        "faults",
        "eight_clients_at_once",
        "8 clients back up at once while pruning runs: all succeed, each snapshot its own source",
    ),
    (
        "Load",
        "concurrency",
        "",
        "with max_concurrent_backups = 2, four clients all succeed and never more than two transfer",
    ),
    (
        "Load",
        "backup",
        "one_backup_at_a_time",
        "one backup at a time per client, on client and server",
    ),
    (
        "Backups",
        "backup",
        "walkthrough",
        "the set-up walkthrough and repeated backups",
    ),
    (
        "Backups",
        "backup",
        "a_snapshot_inside_the_interval",
        "a snapshot inside min_snapshot_interval is refused",
    ),
    (
        "Backups",
        "local_and_plain",
        "",
        "local destinations; plain snapshots never change; plain space grows with the changes only",
    ),
    (
        "Backups",
        "restore",
        "",
        "every version listed; restore with true ownership and odd names",
    ),
    (
        "Backups",
        "hooks",
        "",
        "pre/post-backup hooks (order, environment, failures, timeout), WAN settings, MariaDB and PostgreSQL dumps restored from a snapshot",
    ),
    ("Space", "prune", "", "pruning by hand and by itself"),
    (
        "Space",
        "prune_order",
        "",
        "the importance order, by rule and by 120-day simulations",
    ),
    (
        "Operations",
        "status",
        "",
        "status (text, JSON, Nagios, Prometheus), the client's state file, the system log, progress on a terminal only",
    ),
    (
        "Operations",
        "prometheus_rules",
        "",
        "the shipped Prometheus rules pass `promtool check rules` and their unit tests, read only metrics status exports, and raise exactly the alerts a real store's state calls for",
    ),
    (
        "Operations",
        "clients",
        "",
        "clients listed with fingerprints, re-keyed, renamed, removed (history kept or deleted), busy clients refused",
    ),
    (
        "Operations",
        "root_setup",
        "",
        "root set-up from nothing: fstab line, user, ownership, idempotent",
    ),
    (
        "Operations",
        "package",
        "",
        "the .deb packages install and work: man pages, completions, units verified, a backup",
    ),
    (
        "Verification",
        "verify",
        "",
        "`byteback verify` and `byteback-server verify` find changed, missing, extra and corrupted files and broken snapshots",
    ),
    (
        "Replication",
        "replicate",
        "three_backups_replicate_then_only_the_fourth_is_sent",
        "a replica (btrfs and plain) holds the primary's snapshots under their names, identical file by file; a new one alone is sent and costs about what changed",
    ),
    (
        "Replication",
        "replicate",
        "a_killed_replication_resumes_and_completes",
        "a replication killed mid-transfer resumes and completes identically; a full replica prunes by itself while the primary keeps everything",
    ),
    (
        "Replication",
        "replicate",
        "a_hostile_primary_can_only_add_newer_history",
        "a primary's key gets no shell or client request, cannot alter, delete or pre-date replica snapshots, nor reach another primary's or a client's area",
    ),
    (
        "Replication",
        "replicate",
        "restore_from_the_replica_with_a_read_only_key",
        "a client restores from the replica with a read-only key (same files as from the primary) and cannot back up with it",
    ),
    (
        "Incrementals",
        "incremental",
        "every_kind_of_change",
        "every kind of change (same-size same-second rewrite, mtime put back, mode, owner, xattr, ACL, hard link, rename, delete, new tree, type change) is in the next incremental snapshot, identical to the source; old snapshots unchanged",
    ),
    (
        "Incrementals",
        "incremental",
        "a_killed_incremental",
        "a killed incremental backup leaves the index uncommitted; the next backup is exact",
    ),
    (
        "Incrementals",
        "incremental",
        "the_index_is_rebuilt",
        "an index that cannot be trusted (a snapshot by hand, damage, other sources, an exclude, full_scan_every) makes a full pass",
    ),
];

struct Run {
    /// (file, test) → result ("ok", "FAILED", "ignored").
    results: BTreeMap<(String, String), String>,
    /// test name → figure lines it printed.
    figures: BTreeMap<String, Vec<String>>,
    unit_passed: usize,
    unit_failed: usize,
}

fn parse(output: &str) -> Run {
    let mut run = Run {
        results: BTreeMap::new(),
        figures: BTreeMap::new(),
        unit_passed: 0,
        unit_failed: 0,
    };
    let mut file = String::new();
    let mut section: Option<String> = None;
    for line in output.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("Running ") {
            // "Running tests/faults.rs (target/...)" or "Running unittests src/lib.rs (...)"
            let path = rest.split_whitespace().last().unwrap_or("");
            let path = rest
                .split_whitespace()
                .find(|w| w.ends_with(".rs"))
                .unwrap_or(path);
            file = Path::new(path)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if rest.starts_with("unittests") {
                file = format!("unit:{file}");
            }
            section = None;
        } else if let Some(rest) = line.strip_prefix("test ") {
            if let Some((name, result)) = rest.rsplit_once(" ... ") {
                let result = result.trim().to_owned();
                if file.starts_with("unit:") {
                    match result.as_str() {
                        "ok" => run.unit_passed += 1,
                        _ => run.unit_failed += 1,
                    }
                } else {
                    run.results.insert((file.clone(), name.to_owned()), result);
                }
            }
        } else if let Some(rest) = line.strip_prefix("---- ") {
            section = rest.split_whitespace().next().map(str::to_owned);
        } else if let (Some(test), Some(figure)) = (&section, line.strip_prefix("figure: ")) {
            run.figures
                .entry(test.clone())
                .or_default()
                .push(figure.to_owned());
        }
    }
    run
}

fn render(run: &Run, commit: &str, date: &str) -> String {
    let mut md = String::new();
    let total = run.results.len();
    let failed = run.results.values().filter(|r| *r != "ok").count();
    let _ = writeln!(md, "# Reliability report\n");
    let _ = writeln!(
        md,
        "Every promise byteback makes about not losing data, and what tries to break it. \
         Generated by `cargo run -p xtask -- reliability` (which runs the whole suite, as root, \
         like `cargo test --locked`) — do not edit by hand.\n"
    );
    let _ = writeln!(
        md,
        "Latest run: {date}, commit `{commit}`: {} of {total} end-to-end tests passed, \
         {} of {} unit tests passed.\n",
        total - failed,
        run.unit_passed,
        run.unit_passed + run.unit_failed
    );
    let _ = writeln!(
        md,
        "Hostile input is property-tested among the unit tests (proptest; `PROPTEST_CASES=N` \
         for a long run): the forced-command parser and rsync allow-list against a model of \
         rsync's own option parser, every known rsync option abuse by name \
         (`src/protocol/props.rs`, `abuses.rs`), the wire encodings, the glob parser and \
         matcher in counted steps, the mountinfo parser and both config loaders.\n"
    );
    let mut claimed = std::collections::BTreeSet::new();
    let mut area = "";
    for (row_area, file, prefix, proves) in SCENARIOS {
        let tests: Vec<(&(String, String), &String)> = run
            .results
            .iter()
            .filter(|((f, name), _)| {
                f == file
                    && name.starts_with(prefix)
                    && !claimed.contains(&(f.clone(), name.clone()))
            })
            .collect();
        if *row_area != area {
            area = row_area;
            let _ = writeln!(
                md,
                "\n## {area}\n\n| scenario | proves | tests | result |\n| --- | --- | --- | --- |"
            );
        }
        let result = if tests.is_empty() {
            "not run".to_owned()
        } else if tests.iter().all(|(_, r)| *r == "ok") {
            format!("pass ({})", tests.len())
        } else {
            let bad: Vec<&str> = tests
                .iter()
                .filter(|(_, r)| *r != "ok")
                .map(|((_, n), _)| n.as_str())
                .collect();
            format!("**FAIL**: {}", bad.join(", "))
        };
        let names = if prefix.is_empty() {
            format!("`tests/{file}.rs` (the rest)")
        } else {
            format!("`{file}::{prefix}…`")
        };
        let _ = writeln!(md, "| {names} | {proves} | {} | {result} |", tests.len());
        for ((f, n), _) in &tests {
            claimed.insert((f.clone(), n.clone()));
        }
    }
    let unlisted: Vec<_> = run
        .results
        .iter()
        .filter(|(k, _)| !claimed.contains(*k))
        .collect();
    if !unlisted.is_empty() {
        let _ = writeln!(md, "\n## Other tests\n\n| test | result |\n| --- | --- |");
        for ((f, n), r) in unlisted {
            let _ = writeln!(md, "| `{f}::{n}` | {r} |");
        }
    }
    if !run.figures.is_empty() {
        let _ = writeln!(md, "\n## Figures from this run\n");
        for (test, lines) in &run.figures {
            for line in lines {
                let _ = writeln!(md, "- `{test}`: {line}");
            }
        }
    }
    md
}

/// Runs the suite and writes RELIABILITY.md; whether every test passed.
pub fn reliability(root: &Path) -> std::io::Result<bool> {
    // One pipe for both streams: cargo names each test binary on stderr
    // ("Running tests/x.rs") and the tests report on stdout, so only their
    // interleaving says which test belongs to which file.
    let (mut reader, writer) = std::io::pipe()?;
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args(["test", "--locked", "--no-fail-fast", "--", "--show-output"])
        .current_dir(root)
        .stdout(writer.try_clone()?)
        .stderr(writer);
    let mut child = cargo.spawn()?;
    drop(cargo); // our copies of the pipe's write end: EOF when the tests end
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut bytes)?;
    let status = child.wait()?;
    let run = parse(&String::from_utf8_lossy(&bytes));
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    std::fs::write(root.join("RELIABILITY.md"), render(&run, &commit, &date))?;
    let failed = run.results.values().any(|r| r != "ok") || run.unit_failed > 0;
    eprintln!(
        "RELIABILITY.md written: {} end-to-end tests, {} unit tests{}",
        run.results.len(),
        run.unit_passed + run.unit_failed,
        if failed { "; some FAILED" } else { "" }
    );
    Ok(status.success() && !failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_results_and_figures() {
        let out = "     Running unittests src/lib.rs (target/debug/deps/byteback-1)\n\
            test a::b ... ok\n\
            test a::c ... FAILED\n\
            \x20    Running tests/faults.rs (target/debug/deps/faults-2)\n\
            test eight_clients_at_once_while_pruning ... ok\n\
            test a_backup_cut_anywhere_completes_on_the_next_run ... FAILED\n\
            ---- eight_clients_at_once_while_pruning stdout ----\n\
            figure: load: 8 clients 1.0 s\n";
        let run = parse(out);
        assert_eq!((run.unit_passed, run.unit_failed), (1, 1));
        assert_eq!(
            run.results[&(
                "faults".into(),
                "eight_clients_at_once_while_pruning".into()
            )],
            "ok"
        );
        assert_eq!(
            run.figures["eight_clients_at_once_while_pruning"],
            ["load: 8 clients 1.0 s"]
        );
        let md = render(&run, "abc", "today");
        assert!(md.contains("| `faults::eight_clients_at_once…` |"), "{md}");
        assert!(
            md.contains("**FAIL**: a_backup_cut_anywhere_completes_on_the_next_run"),
            "{md}"
        );
        assert!(md.contains("1 of 2 end-to-end tests passed"), "{md}");
    }
}
