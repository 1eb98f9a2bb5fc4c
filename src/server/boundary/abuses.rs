//! Known abuses of rsync's command line, named one by one: each is refused,
//! or accepted only because the server's own argv
//! ([`rsync::receiver_argv`], [`rsync::sender_argv`]) neutralises it, and
//! then that argv is checked.
//!
//! What rsync 3.5.0 itself does with each was tried with the installed
//! rsync (`rsync --server -logDtpre.iLsfxCIvu OPTION . DIR`): it accepts
//! nearly all of them server-side, so the allow-list is what stops them.
//! It does *not* take abbreviations: its popt matches long names exactly
//! (`--log-f` is "unknown option"); `--daemon` and `--config` switch it to
//! daemon-mode parsing; `--write-batch`/`--read-batch` it ignores with a
//! warning, but `--only-write-batch` it obeys.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use crate::exec::rsync::{self, ServerRole, ServerSide};
use crate::lifecycle::ClientBackups;
use crate::protocol::*;
use crate::store::ServerConfig;
use crate::store::fake::FakeStore;

/// The options a real byteback client's rsync sends, before the abuse.
const BASE: &str = "-logDtpre.iLsfxCIvu";

/// Asserts that `command` is refused, with `why` in the reason.
#[track_caller]
fn refused(command: &str, why: &str) {
    match parse(Some(command)) {
        Ok(r) => panic!("{command:?} was accepted as {r:?}"),
        Err(e) => assert!(e.0.contains(why), "{command:?}: {e}"),
    }
}

/// A receiver's command line with `extra` among the real options.
fn receiver(extra: &str) -> String {
    format!("rsync --server {BASE} {extra} . current/")
}

/// A sender's command line with `extra` among the real options.
fn sender(extra: &str) -> String {
    format!("rsync --server --sender {BASE} {extra} . current/file")
}

/// The server's plain-store receiver, as `receive.rs` sets it up.
fn plain_side() -> ServerSide {
    ServerSide {
        role: ServerRole::Receiver { inplace: false },
        io_timeout_secs: 600,
        confine_root: Some("/client".into()),
        sparse: true,
    }
}

/// The argv the server runs for an accepted receiver `command`.
#[track_caller]
fn receiver_argv(command: &str) -> Vec<String> {
    let Ok(Request::Receive { options, .. }) = parse(Some(command)) else {
        panic!("{command:?} was refused");
    };
    let link = ["../2026-11-28T03:00:00Z".to_owned()];
    words(&rsync::receiver_argv(&options, &plain_side(), &link))
}

fn words(argv: &[OsString]) -> Vec<String> {
    argv.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// What every server receiver's argv ends with: the server's settings,
/// then `. .` — it runs in `current`, whatever the client named.
const PLAIN_TAIL: [&str; 11] = [
    "--fake-super",
    "--filter=-x user.rsync.%aacl",
    "--filter=-x user.rsync.%dacl",
    // A plain store keeps holes in every file it writes (`receive.rs`).
    "--sparse",
    "--ignore-existing",
    "--timeout=600",
    "--max-alloc=1G",
    "--confine-root=/client",
    "--link-dest=../2026-11-28T03:00:00Z",
    ".",
    ".",
];

#[test]
fn options_that_run_programs_or_switch_modes_are_refused() {
    // --rsync-path names the program a client asks the remote to run;
    // rsync 3.5 accepts it server-side (unused there), refused all the same.
    refused(&receiver("--rsync-path=/bin/sh"), "--rsync-path");
    // --rsh / -e names a remote shell. A server never runs one, and in
    // server mode -e only carries the capability letters, so only that
    // shape passes.
    refused(&receiver("--rsh=/bin/sh"), "--rsh");
    refused(&receiver("-e/bin/sh"), "capability");
    refused(&receiver("-e"), "capability");
    // A cluster ending in `e` would make rsync take the next word (here
    // `.`) as -e's value, shifting every argument after it.
    refused("rsync --server -logDtpre . current/", "capability");
    // --sender turns a receiver into a sender of the client's `current` —
    // or, were it trusted, of whatever path follows the `.`.
    refused(
        "rsync --server -logDtpre.iLsfxCIvu --sender . current/",
        "--sender",
    );
    refused(
        "rsync --server --sender --sender . current/file",
        "--sender",
    );
    refused(
        "rsync --server --sender -x --sender . current/file",
        "--sender",
    );
    // --daemon and --config switch rsync into daemon mode, with an
    // rsyncd.conf of the client's choosing (modules, paths, uid).
    refused(&receiver("--daemon"), "--daemon");
    refused(&receiver("--config=/tmp/rsyncd.conf"), "--config");
    refused(&receiver("--dparam=path=/"), "--dparam");
    // -M passes options on to a remote rsync; meaningless on a server.
    refused(&receiver("-M--rsync-path=x"), "-M");
    // --protocol=N downgrades to an old protocol and its old bugs.
    refused(&receiver("--protocol=20"), "--protocol");
    // --iconv loads a conversion module of the client's naming.
    refused(&receiver("--iconv=UTF-8,x"), "--iconv");
    // --copy-as switches user (root only, but still).
    refused(&receiver("--copy-as=root"), "--copy-as");
    // --old-args and -s / --secluded-args move arguments out of the
    // command line, past this check.
    refused(&receiver("--old-args"), "--old-args");
    refused(&receiver("-s"), "-s");
    refused(&receiver("--secluded-args"), "--secluded-args");
    refused(&receiver("--protect-args"), "--protect-args");
}

#[test]
fn options_that_name_server_paths_are_refused() {
    // --log-file: rsync 3.5 accepts it server-side and appends to that
    // file as the backup user (tried: it creates the file).
    refused(&receiver("--log-file=/tmp/x"), "--log-file");
    // An abbreviation: rsync itself refuses it (popt matches long names
    // exactly), and so does the allow-list, which takes exact names only.
    refused(&receiver("--log-f=/tmp/x"), "--log-f");
    // --log-file-format: what such a log file holds (file names, ...).
    refused(&receiver("--log-file-format=%f"), "--log-file-format");
    // --password-file: reads a file (a daemon password) from the server.
    refused(&receiver("--password-file=/etc/shadow"), "--password-file");
    // --early-input: a file sent to a daemon before the transfer.
    refused(&receiver("--early-input=/etc/passwd"), "--early-input");
    // --temp-dir / -T: temporary files written outside `current`, and
    // renamed from there into it (any directory the user can write).
    refused(&receiver("--temp-dir=/tmp"), "--temp-dir");
    refused(&receiver("-T/tmp"), "-T");
    // -T inside a cluster takes the rest of it as its value.
    refused(&receiver("-vT/tmp"), "-T");
    // --partial-dir pointing outside: partial files kept there.
    refused(
        &receiver("--partial-dir=../../other.example/current"),
        "--partial-dir",
    );
    // --backup-dir (and -b, --suffix): replaced files moved elsewhere.
    refused(&receiver("--backup-dir=../x"), "--backup-dir");
    refused(&receiver("-b"), "-b");
    refused(&receiver("--suffix=~"), "--suffix");
    // --compare-dest / --copy-dest / --link-dest pointing outside: read
    // (copy-dest) or hard-link (link-dest) another client's files or a
    // snapshot into `current`. Only the server names a --link-dest.
    refused(&receiver("--compare-dest=/"), "--compare-dest");
    refused(
        &receiver("--copy-dest=../../other.example/current"),
        "--copy-dest",
    );
    refused(
        &receiver("--link-dest=../../other.example/current"),
        "--link-dest",
    );
    // --files-from: the list of files read from a server path.
    refused(&receiver("--files-from=/etc/passwd"), "--files-from");
    refused(&sender("--files-from=/etc/passwd"), "--files-from");
    // --include-from / --exclude-from / -f / -F: filter rules read from a
    // server path (an existence oracle, or a read of its lines).
    refused(&receiver("--include-from=/etc/shadow"), "--include-from");
    refused(&receiver("--exclude-from=/etc/passwd"), "--exclude-from");
    refused(&receiver("--filter=merge/etc/passwd"), "--filter");
    refused(&receiver("-f.-/root/x"), "-f");
    refused(&receiver("-F"), "-F");
    // Batch files: --only-write-batch (obeyed by rsync 3.5 server-side)
    // writes the whole transfer to a server path; --write-batch and
    // --read-batch rsync ignores with a warning.
    refused(&receiver("--only-write-batch=/tmp/b"), "--only-write-batch");
    refused(&receiver("--write-batch=/tmp/b"), "--write-batch");
    refused(&receiver("--read-batch=/tmp/b"), "--read-batch");
    // --confine-root is the server's own, never the client's.
    refused(&receiver("--confine-root=/"), "--confine-root");
}

#[test]
fn options_that_change_what_is_written_are_refused() {
    // --write-devices: rsync writes file data into existing device files.
    refused(&receiver("--write-devices"), "--write-devices");
    // --copy-devices: a sender reads device contents as files.
    refused(&sender("--copy-devices"), "--copy-devices");
    // --remove-source-files: a restore's sender deletes what it sent —
    // files of a snapshot or `current`.
    refused(&sender("--remove-source-files"), "--remove-source-files");
    refused(&sender("--remove-sent-files"), "--remove-sent-files");
    // --super: the receiver acts as root (chown, devices) instead of
    // keeping ownership in xattrs.
    refused(&receiver("--super"), "--super");
    // --chown / --usermap / --groupmap: ownership mapped to the server's ids.
    refused(&receiver("--chown=0:0"), "--chown");
    refused(&receiver("--usermap=*:0"), "--usermap");
    refused(&receiver("--groupmap=*:0"), "--groupmap");
    // --chmod: permissions of the client's choosing on the server's files.
    refused(&receiver("--chmod=a+rwx"), "--chmod");
    // --max-alloc: the server's memory limit; the server's comes last anyway.
    refused(&receiver("--max-alloc=100G"), "--max-alloc");
    // -U / -N (and their long names, and --open-noatime): times rsync
    // would set on a file just hard-linked from a plain snapshot.
    refused(&receiver("-U"), "-U");
    refused(&receiver("-N"), "-N");
    refused(&receiver("--atimes"), "--atimes");
    refused(&receiver("--crtimes"), "--crtimes");
    refused(&receiver("--open-noatime"), "--open-noatime");
    // --delete-missing-args: deletes the listed paths the sender lacks.
    // Only a client's incremental backup uses it, and the server starts
    // such a receive only into a `current` readied for it (`byteback
    // incremental`; tests/incremental.rs); never for a sender.
    assert!(parse(Some(&receiver("--delete-missing-args"))).is_ok());
    refused(&sender("--delete-missing-args"), "--delete-missing-args");
    // --del is rsync's alias of --delete-during: only exact, listed names pass.
    refused(&receiver("--del"), "--del");
    // --no-implied-dirs with --relative changes which directories a
    // receiver creates for the paths it is sent.
    refused(&receiver("--no-implied-dirs"), "--no-implied-dirs");
    // Symlinks followed on the server.
    refused(&receiver("--copy-unsafe-links"), "--copy-unsafe-links");
    refused(&receiver("--keep-dirlinks"), "--keep-dirlinks");
    refused(&receiver("--no-munge-links"), "--no-munge-links");
}

#[test]
fn option_smuggling_is_refused() {
    // A forbidden letter hidden in a bundle like the real one.
    refused("rsync --server -vvlogDtprLze.iLsfxC . current/", "-L");
    refused("rsync --server -vvlogDtprsze.iLsfxC . current/", "-s");
    refused("rsync --server -vvlogDtprUze.iLsfxC . current/", "-U");
    refused("rsync --server -vvlogDtprTze.iLsfxC . current/", "-T");
    refused("rsync --server -vvlogDtpr0ze.iLsfxC . current/", "-0");
    // Letters after `e` are rsync's capability flags, the value of -e;
    // anything but `digits.letters` there is refused.
    refused(
        "rsync --server -vvlogDtpre.iLsfxC/tmp . current/",
        "capability",
    );
    refused("rsync --server -vvlogDtpre.iLs=x . current/", "capability");
    // `-B<size>` takes the rest of its cluster: digits only.
    refused(&receiver("-B5e.x"), "-B");
    // `--` ends rsync's options; what follows would be arguments (here a
    // path, taken as the destination). Refused as an option.
    refused(
        "rsync --server -x -- --rsync-path=/bin/sh . current/",
        "option -- is",
    );
    // A value in the next word (`--timeout 0`): rsync would take the word
    // after it; only `--name=value` passes.
    refused(&receiver("--timeout 0"), "--timeout");
    // popt expands `!#:+` in a value into the next word.
    refused(&receiver("--log-format=%i!#:+"), "--log-format");
    // A value that is not a plain number or word.
    refused(&receiver("--bwlimit=1;id"), "--bwlimit");
    refused(&receiver("--info=../x"), "--info");
    // Option-looking words without a dash are not options to rsync.
    refused("rsync --server log-file=/tmp/x . current/", "unexpected");
    // Bytes byteback never sends (an escape, a tab, non-ASCII, a newline).
    refused("rsync --server -x\u{1b} . current/", "character");
    refused("rsync --server -x\t. current/", "character");
    refused("rsync --server -xé . current/", "character");
    refused("byteback ping\n", "character");
}

#[test]
fn neutralised_abuses_leave_the_servers_argv() {
    // Whatever destination the client names, the receiver runs in its
    // `current`: the argument is dropped for `. .`.
    for destination in [
        "..",
        "/etc",
        "~",
        "~root",
        "../other.example/current",
        "-e",
        "%2E%2E",
    ] {
        let argv = receiver_argv(&format!("rsync --server {BASE} . {destination}"));
        assert_eq!(
            argv,
            [&["--server", BASE][..], &PLAIN_TAIL].concat(),
            "{destination}"
        );
    }
    // --timeout=0 (no I/O timeout at all) is accepted, dropped, and the
    // server's own comes last.
    let argv = receiver_argv(&receiver("--timeout=0"));
    assert_eq!(argv, [&["--server", BASE][..], &PLAIN_TAIL].concat());
    // --inplace on a plain store would write into files hard-linked from
    // a snapshot: dropped there (kept on btrfs, whose snapshots are
    // read-only subvolumes).
    let argv = receiver_argv(&receiver("--inplace"));
    assert_eq!(argv, [&["--server", BASE][..], &PLAIN_TAIL].concat());
    // --delete and friends delete only inside `current`, where the
    // receiver runs, confined by the kernel; the snapshots keep history.
    let argv = receiver_argv(&receiver(
        "--delete --delete-excluded --force --ignore-errors",
    ));
    let client = [
        "--server",
        BASE,
        "--delete",
        "--delete-excluded",
        "--force",
        "--ignore-errors",
    ];
    assert_eq!(argv, [&client[..], &PLAIN_TAIL].concat());
}

#[test]
fn sender_paths_stay_in_the_clients_backups() {
    let fake = FakeStore::new(1 << 30, ServerConfig::default());
    let client = fake.client("host.example");
    let other = fake.client("other.example");
    fake.write(&other, "secret", 10);
    fake.write(&client, "file", 10);
    let odd = fake
        .store
        .current(&client)
        .join(std::ffi::OsStr::from_bytes(b"\xff"));
    std::fs::write(odd, b"odd").unwrap();
    let backups = ClientBackups::open(&fake.store, &client).unwrap();
    let restore = |word: &str| -> std::result::Result<Vec<String>, String> {
        let command = format!("rsync --server --sender {BASE} . {word}");
        let Request::Send { options, paths } = parse(Some(&command)).map_err(|e| e.0)? else {
            panic!("{command:?} is not a sender");
        };
        let checked = paths
            .iter()
            .map(|p| backups.restore_source(p))
            .collect::<crate::error::Result<Vec<_>>>()
            .map_err(|e| e.to_string())?;
        let side = ServerSide {
            role: ServerRole::Sender,
            ..plain_side()
        };
        Ok(words(&rsync::sender_argv(&options, &side, &checked)))
    };
    let refused_path = |word: &str, why: &str| {
        let err = restore(word).expect_err(word);
        assert!(err.contains(why), "{word}: {err}");
    };
    // `..` out of the client's directory, raw or encoded.
    refused_path("current/../../other.example/current/secret", "'..'");
    refused_path("current/%2E%2E/%2E%2E/other.example", "'..'");
    // Another client's directory, or any absolute path.
    refused_path("../other.example/current/secret", "'..'");
    refused_path("other.example/current/secret", "snapshot name or current");
    refused_path("/etc/passwd", "empty");
    refused_path("%2Fetc%2Fpasswd", "empty");
    // `~` is no home directory to rsync (no shell runs), and not ours.
    refused_path("~", "badly encoded");
    refused_path("%7E/x", "snapshot name or current");
    // A path that would read as an option to rsync.
    refused_path("%2De", "snapshot name or current");
    refused_path("--rsync-path=/bin/sh", "badly encoded");
    // A NUL (no path holds one) and bytes that name nothing.
    refused_path("current/%00", "no such file");
    refused_path("current/%FE", "no such file");
    // Odd but real names are sent as they are, after `.` and inside `current`.
    let argv = restore("current/%FF").unwrap();
    assert_eq!(argv[..3], ["--server", "--sender", BASE]);
    assert_eq!(
        argv[argv.len() - 2..],
        [".".to_owned(), "current/\u{fffd}".to_owned()]
    );
}
