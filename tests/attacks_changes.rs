//! A client key holder against the change log (`src/changes.rs`,
//! `src/lifecycle/changelog.rs`) and `diff`: can it make a snapshot's log
//! miss what really changed (which would let it avoid the *suspect* mark),
//! make it claim what did not (which would pin history), make the seal or
//! `diff` expensive, or read through `diff` what its key may not? Each
//! scenario is the attack, made with the stock rsync client and the
//! client's own key against a real sshd, rsync and btrfs (or ext4); what
//! must hold is asserted, so a test fails where the attack works.

use byteback_testbed as support;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::FsKind;
use support::world::{World, show, stderr, stdout};

/// Interval 0 so a test can take several snapshots in a row.
const NO_INTERVAL: &str = "min_snapshot_interval = \"0s\"\n";

/// A world with one enrolled client (snapshots in a row allowed), and
/// `extra` server settings.
fn scene(label: &str, kind: FsKind, extra: &str) -> Option<(World, String)> {
    let w = World::on(label, kind)?;
    let client = w.enroll(&format!("{label}.example"));
    w.server_config(&format!("{NO_INTERVAL}{extra}"));
    Some((w, client))
}

/// A full-pass backup of the source.
fn full_backup(w: &World) {
    let src = w.src.to_string_lossy().into_owned();
    let out = w.client(&["backup", "--full", "--source", &src]);
    assert!(out.status.success(), "backup: {}", show(&out));
}

/// `byteback-server diff --json` of `client` (`names`: none, or FROM [TO]):
/// the object, and path (below the source) → kind.
fn diff(w: &World, client: &str, names: &[&str]) -> (serde_json::Value, BTreeMap<String, String>) {
    let mut args = vec!["diff", "--client", client, "--json"];
    args.extend_from_slice(names);
    let out = w.server(&args);
    assert!(out.status.success(), "diff: {}", show(&out));
    let value: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let prefix = format!("{}/", w.src.to_string_lossy().trim_start_matches('/'));
    let mut paths = BTreeMap::new();
    for pair in value["paths"].as_array().unwrap() {
        let (path, kind) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
        if let Some(rel) = path.strip_prefix(&prefix) {
            paths.insert(rel.to_owned(), kind.to_owned());
        }
    }
    (value, paths)
}

/// The stock rsync client pushing `sources` (absolute, `--relative`) into
/// the client's `current` with the client's key and `options`.
fn push(w: &World, options: &[&str], sources: &[&Path]) -> Command {
    let mut cmd = Command::new("rsync");
    cmd.args(options)
        .arg("--relative")
        .arg("--rsh")
        .arg(format!("ssh {}", w.raw_ssh_options().join(" ")))
        .args(sources)
        .arg(format!("{}@127.0.0.1:current/", w.user.name))
        .stdin(Stdio::null());
    cmd
}

/// `byteback complete` by hand, as a client that runs its own rsync would.
fn complete(w: &World) {
    let out = w.raw_ssh(Some("byteback complete"));
    assert!(out.status.success(), "complete: {}", show(&out));
}

/// Waits (up to a minute) until the server user runs no rsync and no
/// forced command: the transfer's end, its log folded.
fn wait_for_server_idle(w: &World) {
    let start = Instant::now();
    while !support::processes_of(w.user.uid, "rsync").is_empty()
        || !support::processes_of(w.user.uid, "byteback-server").is_empty()
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the server's transfer never ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A client transfer the test started; its process group is ended on drop.
struct Spawned(std::process::Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

/// Where the source's `rel` lies in the client's `current` on the server.
fn in_current(w: &World, client: &str, rel: &str) -> PathBuf {
    w.store()
        .join(client)
        .join("current")
        .join(w.src.strip_prefix("/").unwrap())
        .join(rel)
}

/// Rewrites `len` bytes of `path` in place from offset 0 (same size, same
/// inode: every hard link to it changes too).
fn overwrite_in_place(path: &Path, byte: u8, len: usize) {
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(&vec![byte; len]).unwrap();
}

/// The attack: a file with many hard links (set up in an earlier, honest
/// looking backup) is rewritten in place, same size, through one name. On
/// btrfs, `current`'s names share one inode too, so the receiver's one
/// in-place write changes every name, but rsync logs at most the one it
/// wrote. What must hold: the snapshot's log lists every name whose
/// content changed, so a client cannot change many files while its log
/// shows one (and so escape the suspect mark).
#[test]
fn every_hard_linked_name_changed_through_one_inode_is_listed() {
    let Some((w, client)) = scene("chg-hlink", FsKind::Btrfs, "") else {
        return;
    };
    let group = w.src.join("group");
    fs::create_dir(&group).unwrap();
    fs::write(group.join("a"), vec![b'a'; 4096]).unwrap();
    for i in 0..20 {
        fs::hard_link(group.join("a"), group.join(format!("l{i:02}"))).unwrap();
    }
    for i in 0..10 {
        fs::write(w.src.join(format!("other{i}")), format!("{i}\n")).unwrap();
    }
    full_backup(&w);
    // Same size, same mtime second is not needed: the inode's mtime moves
    // for every name alike, so every name is as changed as the others.
    overwrite_in_place(&group.join("a"), b'X', 4096);
    full_backup(&w);
    let (value, paths) = diff(&w, &client, &[]);
    let mut want: BTreeMap<String, String> = (0..20)
        .map(|i| (format!("group/l{i:02}"), "content".to_owned()))
        .collect();
    want.insert("group/a".into(), "content".into());
    assert_eq!(paths, want, "{value}");
    assert_eq!(value["content"], 21, "{value}");
}

/// The attack: the client rewrites a large file with `--inplace` (the
/// btrfs receiver's mode) and kills its own rsync once the server's copy
/// has changed, before the receiver logs the file (rsync logs a file
/// after its data), then asks for `complete`. What must hold: the
/// snapshot's log still shows the file as changed in content.
#[test]
fn a_transfer_killed_mid_file_still_logs_the_change() {
    let Some((w, client)) = scene("chg-kill", FsKind::Btrfs, "") else {
        return;
    };
    let big = w.src.join("big");
    support::random_file(&big, 32 << 20, 1);
    fs::write(w.src.join("small"), "small\n").unwrap();
    full_backup(&w);
    support::random_file(&big, 32 << 20, 2);
    // Same size: a fast machine can also give it the same mtime, and then
    // rsync's quick check would skip the file and nothing would be sent.
    let sent_mtime = fs::metadata(&big).unwrap().modified().unwrap();
    fs::File::options()
        .write(true)
        .open(&big)
        .unwrap()
        .set_modified(sent_mtime + Duration::from_secs(60))
        .unwrap();
    let server_copy = in_current(&w, &client, "big");
    let original = fs::read(&server_copy).unwrap();
    let wanted = fs::read(&big).unwrap();
    let child = push(&w, &["-rlt", "-W", "--inplace", "--bwlimit=2m"], &[&big])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let client_rsync = Spawned(child);
    // Until the server's copy starts with the new bytes.
    let start = Instant::now();
    loop {
        let now = fs::read(&server_copy).unwrap_or_default();
        if now.len() >= 1 << 20 && now[..1 << 20] == wanted[..1 << 20] {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the transfer never reached the server"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(client_rsync);
    wait_for_server_idle(&w);
    assert_ne!(
        fs::read(&server_copy).unwrap(),
        original,
        "the server's copy did not change"
    );
    complete(&w);
    let (value, paths) = diff(&w, &client, &[]);
    assert_eq!(
        paths.get("big").map(String::as_str),
        Some("content"),
        "{value}"
    );
}

/// The attack: the client's rsync asks the server to say as little as it
/// can (`-q`, `--info=`, `--out-format=`/`--log-format=` without `%i`,
/// which the allow-list accepts) while it changes, adds and deletes files.
/// What must hold: the server's own `--log-file-format` is not the
/// client's to change, and the snapshot's log lists every change.
#[test]
fn the_clients_output_options_do_not_silence_the_servers_log() {
    let Some((w, client)) = scene("chg-quiet", FsKind::Btrfs, "") else {
        return;
    };
    for name in ["edit", "gone", "keep"] {
        fs::write(w.src.join(name), format!("{name}\n")).unwrap();
    }
    full_backup(&w);
    fs::write(w.src.join("edit"), "edited, longer\n").unwrap();
    fs::remove_file(w.src.join("gone")).unwrap();
    fs::write(w.src.join("new"), "new\n").unwrap();
    let src = format!("{}/", w.src.display());
    let out = push(
        &w,
        &[
            "-rlt",
            "-q",
            "--inplace",
            "--delete",
            "--info=none",
            "--out-format=x",
            "--log-format=%n",
            "--stats",
        ],
        &[Path::new(&src)],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "push: {}", show(&out));
    complete(&w);
    let (value, paths) = diff(&w, &client, &[]);
    let want: BTreeMap<String, String> =
        [("edit", "content"), ("gone", "deleted"), ("new", "added")]
            .iter()
            .map(|(p, k)| (p.to_string(), k.to_string()))
            .collect();
    assert_eq!(paths, want, "{value}");
}

/// Names (below the source) that look like rsync's log: a newline then a
/// whole log line (claiming a deletion, or a mode change, of the unchanged
/// `victim` files; its slashes make directories), a literal `\#101`
/// (rsync's escape for `A`, beside a real `aA`), a ` -> ` arrow.
fn tricky(w: &World) -> [String; 4] {
    let prefix = w.src.to_string_lossy().trim_start_matches('/').to_owned();
    [
        format!("x\n2026/12/06 21:58:31 [7155] *deleting   {prefix}/victim"),
        format!("y\n2026/12/06 21:58:31 [7155] .f...p..... {prefix}/victim2"),
        "a\\#101".to_owned(),
        "arrow -> victim".to_owned(),
    ]
}

/// The attack of [`names_that_look_like_log_lines_are_logged_as_themselves`]
/// with the server running `rsync` (its own path, `None` the system's).
fn tricky_names(label: &str, rsync: Option<&Path>) {
    let extra = rsync.map_or(String::new(), |r| format!("rsync = \"{}\"\n", r.display()));
    let Some((w, client)) = scene(label, FsKind::Btrfs, &extra) else {
        return;
    };
    let names = tricky(&w);
    let all = names
        .iter()
        .cloned()
        .chain(["victim", "victim2", "aA"].map(String::from));
    for name in all {
        let path = w.src.join(&name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, "one\n").unwrap();
    }
    full_backup(&w);
    for name in &names {
        fs::write(w.src.join(name), "two, longer\n").unwrap();
    }
    full_backup(&w);
    let (value, paths) = diff(&w, &client, &[]);
    let want: BTreeMap<String, String> = names
        .iter()
        .map(|p| (p.clone(), "content".to_owned()))
        .collect();
    assert_eq!(paths, want, "{label}: {value}");
    // Then each is deleted: each deletion counted, under its own name.
    for name in &names {
        fs::remove_file(w.src.join(name)).unwrap();
    }
    full_backup(&w);
    let (value, paths) = diff(&w, &client, &[]);
    let want: BTreeMap<String, String> = names
        .iter()
        .map(|p| (p.clone(), "deleted".to_owned()))
        .collect();
    assert_eq!(paths, want, "{label}: {value}");
}

/// The attack: file names that look like rsync's own log lines or
/// escapes, changed and then deleted, with the server's rsync 3.5.0 (which
/// escapes control characters and backslashes in its log). What must hold:
/// each change is listed under the real name, and nothing else is (the
/// injected "lines" name unchanged files).
#[test]
fn names_that_look_like_log_lines_are_logged_as_themselves() {
    tricky_names("chg-names", None);
}

/// [`names_that_look_like_log_lines_are_logged_as_themselves`] with the
/// server running rsync 3.2.7, which writes names raw into its log file:
/// a newline in a name starts a new line there, and `\#101` is written as
/// is. What must hold is the same.
#[test]
fn names_that_look_like_log_lines_are_logged_as_themselves_on_rsync_3_2_7() {
    if !support::require_root() {
        return;
    }
    let Some(old) = support::rsync::rsync_3_2_7() else {
        eprintln!("SKIPPED: rsync 3.2.7 could not be fetched");
        return;
    };
    tricky_names("chg-names327", Some(&old.join("bin/rsync")));
}

/// The attack: many transfers and no `complete`, each logging every file
/// again (the client makes rsync touch each file's time), so the pending
/// list of touched paths, read whole at the next snapshot, grows with every
/// transfer. What must hold: it grows with the distinct paths touched, not
/// with the number of transfers.
#[test]
fn the_pending_list_does_not_grow_with_repeated_transfers() {
    let Some((w, client)) = scene("chg-pending", FsKind::Btrfs, "") else {
        return;
    };
    for i in 0..200 {
        fs::write(w.src.join(format!("f{i:03}")), "x\n").unwrap();
    }
    full_backup(&w);
    let pending = w
        .store()
        .join(".byteback/changes")
        .join(&client)
        .join(".changes-pending");
    let src = format!("{}/", w.src.display());
    let mut sizes = Vec::new();
    for round in 0..5 {
        // Every file's time moves, so the receiver logs every file.
        for i in 0..200 {
            let f = w.src.join(format!("f{i:03}"));
            let t = filetime(1_700_000_000 + round * 10);
            support::run_ok(&["touch", "-d", &t, &f.to_string_lossy()]);
        }
        let out = push(&w, &["-rlt", "--inplace"], &[Path::new(&src)])
            .output()
            .unwrap();
        assert!(out.status.success(), "push: {}", show(&out));
        sizes.push(fs::metadata(&pending).map(|m| m.len()).unwrap_or(0));
    }
    println!("pending list after each of 5 transfers of 200 files: {sizes:?} bytes");
    assert!(
        sizes[4] < 2 * sizes[0],
        "the pending list grows with every transfer: {sizes:?}"
    );
}

/// `@SECONDS` for `touch -d`.
fn filetime(secs: i64) -> String {
    format!("@{secs}")
}

/// The attack: `diff` requests forged by hand: another client's name, a
/// path, `current`, a third name, an option the language lacks, a long
/// word; and the name of a snapshot only another client has. What must
/// hold: each is refused or not found in one line, nothing of the other
/// client's shows, and nothing is written anywhere in the store.
#[test]
fn forged_diff_requests_reach_only_the_clients_own_snapshots() {
    let Some((w, client)) = scene("chg-forge", FsKind::Btrfs, "") else {
        return;
    };
    fs::write(w.src.join("mine"), "mine\n").unwrap();
    full_backup(&w);
    let victim_at = "2026-01-01T12:00:00Z";
    w.add_client_with_file("victim.example", "secret-name", "secret\n", victim_at);
    let snapshot = w.snapshots(&client)[0].clone();
    let before = support::manifest::read(w.store(), support::manifest::Reading::Plain);
    let long = "2".repeat(4000);
    let forged = [
        format!("byteback diff --client victim.example {snapshot}"),
        format!("byteback diff ../victim.example/{victim_at}"),
        format!("byteback diff /{victim_at}"),
        "byteback diff current".to_owned(),
        format!("byteback diff {snapshot} {snapshot} {snapshot}"),
        format!("byteback diff --json --json {snapshot}"),
        format!("byteback diff {long}"),
        format!("byteback diff {victim_at}"),
        format!("byteback diff {snapshot} {victim_at}"),
    ];
    for line in &forged {
        let out = w.raw_ssh(Some(line));
        assert!(!out.status.success(), "{line}: {}", show(&out));
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!all.contains("secret"), "{line}: {}", show(&out));
        assert_eq!(
            stderr(&out).trim().lines().count(),
            1,
            "{line}: one line: {}",
            show(&out)
        );
    }
    // The client's own diff works, and shows nothing of the victim.
    let out = w.raw_ssh(Some(&format!("byteback diff --json {snapshot}")));
    assert!(out.status.success(), "{}", show(&out));
    assert!(!stdout(&out).contains("secret"), "{}", show(&out));
    let mut after = support::manifest::read(w.store(), support::manifest::Reading::Plain);
    let mut before = before;
    for m in [&mut before, &mut after] {
        m.retain(|p, _| !p.starts_with("./.byteback"));
        // The last-attempt record is the server's note of each request.
        for entry in m.values_mut() {
            entry.xattrs.retain(|k, _| k != "user.byteback.last");
        }
    }
    support::manifest::assert_same("the store after forged diffs", &before, &after);
}
