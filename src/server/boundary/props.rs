//! Property tests of the trust boundary: whatever a client puts in
//! `SSH_ORIGINAL_COMMAND`, [`parse`] never panics, and every request it
//! accepts maps to an allowed action inside that client's area.
//!
//! For rsync that is checked on the argv the server really runs
//! ([`rsync::receiver_argv`], [`rsync::sender_argv`]), read the way rsync's
//! option parser (popt, as rsync 3.5 uses it) reads it by [`RsyncView`], a
//! model that knows nothing of the allow-list. The property, precisely:
//!
//! - rsync parses the argv without error, `--server` first (so no popt
//!   alias file is read), and every option it sees is one of [`SAFE`];
//! - the positional arguments are `. .` for a receiver (it runs in the
//!   client's `current`, whatever destination the client named), and `.`
//!   then exactly the checked paths for a sender, each relative, starting
//!   with `current` or a snapshot name of this client, with no `.`, `..` or
//!   empty component, and resolving inside the client's directory;
//! - the server's settings win: `--sender` only for a restore, the last
//!   `--timeout` and `--max-alloc` are the server's, `--fake-super` is on,
//!   `--confine-root`, `--link-dest` and a receiver's `--filter` rules (the
//!   ACL xattr guards) are exactly the server's, and a
//!   plain store's receiver has `--ignore-existing` and no `--inplace`;
//! - no value holds popt's `!#:+` (which would pull in the next word).
//!
//! `PROPTEST_CASES=N` runs N cases of each property (see docs/contributing.md).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use proptest::test_runner::TestRunner;

use crate::exec::rsync::{self, ServerRole, ServerSide};
use crate::lifecycle::ClientBackups;
use crate::names::ClientName;
use crate::names::SnapshotName;
use crate::protocol::*;
use crate::store::ServerConfig;
use crate::store::fake::FakeStore;

/// The options the server's rsync may run with, as rsync 3.5's option table
/// (`options.c`) names them: long name, short letter, whether it takes a
/// value. An argv with any other option fails the property.
const SAFE: &[(&str, Option<char>, bool)] = &[
    // The server's own: its role and its last word (`server_args`).
    ("server", None, false),
    ("sender", None, false),
    ("fake-super", None, false),
    ("ignore-existing", None, false),
    ("timeout", None, true),
    ("max-alloc", None, true),
    ("confine-root", None, true),
    ("link-dest", None, true),
    // Only the server's own receiver-side ACL xattr guards
    // (`rsync::ACL_XATTR_GUARDS`), checked exactly below.
    ("filter", Some('f'), true),
    // What a byteback client asks for: none names a file or a program, or
    // changes anything outside the transfer's own tree.
    ("verbose", Some('v'), false),
    ("quiet", Some('q'), false),
    ("links", Some('l'), false),
    ("hard-links", Some('H'), false),
    ("owner", Some('o'), false),
    ("group", Some('g'), false),
    ("devices+specials", Some('D'), false), // -D has no long name
    ("times", Some('t'), false),
    ("perms", Some('p'), false),
    ("acls", Some('A'), false),
    ("xattrs", Some('X'), false),
    ("recursive", Some('r'), false),
    ("relative", Some('R'), false),
    ("sparse", Some('S'), false),
    ("one-file-system", Some('x'), false),
    ("checksum", Some('c'), false),
    ("compress", Some('z'), false),
    ("whole-file", Some('W'), false),
    ("dry-run", Some('n'), false),
    ("ignore-times", Some('I'), false),
    ("omit-link-times", Some('J'), false),
    ("omit-dir-times", Some('O'), false),
    ("dirs", Some('d'), false),
    ("update", Some('u'), false),
    // In server mode `-e` carries the client's capability letters; a
    // server never runs a remote shell.
    ("rsh", Some('e'), true),
    ("modify-window", Some('@'), true),
    ("block-size", Some('B'), true),
    ("delete", None, false),
    ("delete-before", None, false),
    ("delete-during", None, false),
    ("delete-delay", None, false),
    ("delete-after", None, false),
    ("delete-excluded", None, false),
    ("delete-missing-args", None, false),
    ("numeric-ids", None, false),
    ("inplace", None, false),
    ("partial", None, false),
    ("stats", None, false),
    ("munge-links", None, false),
    ("force", None, false),
    ("ignore-errors", None, false),
    ("fsync", None, false),
    ("no-W", None, false),
    ("size-only", None, false),
    ("bwlimit", None, true),
    ("max-delete", None, true),
    ("checksum-seed", None, true),
    ("compress-level", None, true),
    ("log-format", None, true),
    ("out-format", None, true),
    ("info", None, true),
    ("checksum-choice", None, true),
    ("compress-choice", None, true),
];

/// What rsync's server makes of an argv: its options in order, each with
/// its value, and its other (positional) arguments.
#[derive(Debug, Default)]
struct RsyncView {
    options: Vec<(&'static str, Option<String>)>,
    args: Vec<Vec<u8>>,
}

impl RsyncView {
    /// Reads `argv` as popt does for rsync: `--name`, `--name=value` or
    /// `--name value` (exact names only: popt does not take abbreviations,
    /// and rsync 3.5 answers `--log-f` with "unknown option"); `-abc`
    /// clusters, where a letter taking a value takes the rest of the
    /// cluster (after an optional `=`) or else the next word; `--` ends the
    /// options; every other word (also `-` and the empty word) is
    /// positional, wherever it stands. Single-dash long names are only
    /// tried for options flagged ONEDASH, and rsync flags none.
    fn of(argv: &[OsString]) -> Result<RsyncView, String> {
        let words: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
        let mut view = RsyncView::default();
        let (mut i, mut only_args) = (0, false);
        let next_value = |i: &mut usize, what: &str| -> Result<String, String> {
            let value = words
                .get(*i)
                .ok_or(format!("{what} has no value (rsync: missing argument)"))?;
            *i += 1;
            Ok(String::from_utf8_lossy(value).into_owned())
        };
        while let Some(&word) = words.get(i) {
            i += 1;
            if only_args || !word.starts_with(b"-") || word == b"-" {
                view.args.push(word.to_vec());
                continue;
            }
            if word == b"--" {
                only_args = true;
                continue;
            }
            let text = std::str::from_utf8(word).map_err(|_| format!("option {word:?}"))?;
            if let Some(long) = text.strip_prefix("--") {
                let (name, inline) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_owned())),
                    None => (long, None),
                };
                let &(name, _, takes) = SAFE
                    .iter()
                    .find(|o| o.0 == name)
                    .ok_or(format!("--{name} is not an option the server may run"))?;
                let value = match (takes, inline) {
                    (false, Some(_)) => return Err(format!("--{name} takes no value")),
                    (false, None) => None,
                    (true, Some(v)) => Some(v),
                    (true, None) => Some(next_value(&mut i, name)?),
                };
                view.options.push((name, value));
                continue;
            }
            for (at, c) in text[1..].char_indices() {
                let &(name, _, takes) = SAFE.iter().find(|o| o.1 == Some(c)).ok_or(format!(
                    "-{c} (in {text}) is not an option the server may run"
                ))?;
                let rest = &text[1 + at + c.len_utf8()..];
                if takes {
                    let value = match rest {
                        "" => next_value(&mut i, name)?,
                        _ => rest.strip_prefix('=').unwrap_or(rest).to_owned(),
                    };
                    view.options.push((name, Some(value)));
                    break;
                }
                if rest.starts_with('=') {
                    return Err(format!("-{c} takes no value"));
                }
                view.options.push((name, None));
            }
        }
        Ok(view)
    }

    fn values(&self, name: &str) -> Vec<&str> {
        self.options
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
            .collect()
    }

    fn has(&self, name: &str) -> bool {
        self.options.iter().any(|(n, _)| *n == name)
    }
}

/// A path a restore may send, relative to the client's directory.
fn sender_path_in_area(path: &[u8]) -> bool {
    let components: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
    let top = std::str::from_utf8(components[0]).unwrap_or("");
    (top == "current" || SnapshotName::parse(top).is_some())
        && components
            .iter()
            .all(|c| !c.is_empty() && *c != b"." && *c != b"..")
}

/// The property (see the module's doc) for one server-side rsync argv.
fn assert_confined(
    argv: &[OsString],
    side: &ServerSide,
    link_dests: &[String],
    sent: Option<&[Vec<u8>]>,
) {
    assert_eq!(argv.first().map(|a| a.as_bytes()), Some(&b"--server"[..]));
    let view = RsyncView::of(argv).unwrap_or_else(|e| panic!("{e}: {argv:?}"));
    assert_eq!(
        view.has("sender"),
        side.role == ServerRole::Sender,
        "{argv:?}"
    );
    let timeout = side.io_timeout_secs.to_string();
    assert_eq!(view.values("timeout").last(), Some(&timeout.as_str()));
    assert_eq!(view.values("max-alloc").last(), Some(&"1G"));
    assert!(view.has("fake-super"), "{argv:?}");
    let root = side.confine_root.as_ref().map(|r| r.to_str().unwrap());
    assert_eq!(
        view.values("confine-root"),
        Vec::from_iter(root),
        "{argv:?}"
    );
    assert_eq!(view.values("link-dest"), link_dests, "{argv:?}");
    let guards: Vec<&str> = match side.role {
        ServerRole::Sender => vec![],
        ServerRole::Receiver { .. } => rsync::ACL_XATTR_GUARDS
            .iter()
            .map(|g| g.strip_prefix("--filter=").unwrap())
            .collect(),
    };
    assert_eq!(view.values("filter"), guards, "{argv:?}");
    if side.role == (ServerRole::Receiver { inplace: false }) {
        assert!(
            view.has("ignore-existing") && !view.has("inplace"),
            "{argv:?}"
        );
    }
    // Whether a receiver keeps holes is the server's word alone, whatever
    // the client asked.
    if matches!(side.role, ServerRole::Receiver { .. }) {
        assert_eq!(view.has("sparse"), side.sparse, "{argv:?}");
    }
    for caps in view.values("rsh") {
        let ok = caps.split_once('.').is_some_and(|(v, f)| {
            v.bytes().all(|b| b.is_ascii_digit()) && f.bytes().all(|b| b.is_ascii_alphabetic())
        });
        assert!(ok, "-e{caps} is not a capability string: {argv:?}");
    }
    for (name, value) in &view.options {
        let value = value.as_deref().unwrap_or("");
        assert!(!value.contains("!#:+"), "--{name}={value}: {argv:?}");
    }
    match sent {
        None => assert_eq!(view.args, [b".".to_vec(), b".".to_vec()], "{argv:?}"),
        Some(paths) => {
            assert_eq!(view.args.first().map(Vec::as_slice), Some(&b"."[..]));
            assert_eq!(&view.args[1..], paths, "{argv:?}");
            for p in paths {
                assert!(sender_path_in_area(p), "{argv:?}");
            }
        }
    }
}

/// The server's sides a receiver or sender may run with.
fn sides() -> [(ServerSide, Vec<String>); 4] {
    let btrfs = ServerSide {
        role: ServerRole::Receiver { inplace: true },
        io_timeout_secs: 600,
        confine_root: Some("/client".into()),
        sparse: false,
    };
    let btrfs_sparse = ServerSide {
        sparse: true,
        ..btrfs.clone()
    };
    let plain = ServerSide {
        role: ServerRole::Receiver { inplace: false },
        io_timeout_secs: 30,
        confine_root: None,
        sparse: true,
    };
    let sender = ServerSide {
        role: ServerRole::Sender,
        ..btrfs.clone()
    };
    [
        (btrfs, vec![]),
        (btrfs_sparse, vec![]),
        (plain, vec!["../2026-11-28T03:00:00Z".into()]),
        (sender, vec![]),
    ]
}

// ---- Generators ----

/// One option the allow-list accepts, as an rsync client would send it.
fn allowed_option() -> impl Strategy<Value = String> {
    let letters: Vec<char> = SHORT_ALLOWED.chars().collect();
    prop_oneof![
        (
            subsequence(letters, 1..10),
            proptest::option::of("[0-9]{0,2}\\.[A-Za-z]{0,10}")
        )
            .prop_map(|(l, caps)| {
                let caps = caps.map(|c| format!("e{c}")).unwrap_or_default();
                format!("-{}{caps}", String::from_iter(l))
            }),
        "-@-?[0-9]{1,3}",
        "-B[0-9]{1,6}",
        select(LONG_FLAGS).prop_map(|f| format!("--{f}")),
        "--modify-window=-?[0-9]{1,3}",
        (select(LONG_NUMBERS), "[A-Za-z0-9.]{1,8}")
            .prop_filter("modify-window takes digits", |(n, _)| *n != "modify-window")
            .prop_map(|(n, v)| format!("--{n}={v}")),
        (select(LONG_WORDS), "[A-Za-z0-9%,-]{1,8}").prop_map(|(n, v)| format!("--{n}={v}")),
    ]
}

/// Every long option of rsync 3.5 (`options.c`), the daemon's included.
const RSYNC_LONG_OPTIONS: &str = "help version verbose no-verbose no-v info debug stderr
    msgs2stderr no-msgs2stderr quiet motd no-motd stats human-readable no-human-readable no-h
    dry-run archive recursive no-recursive no-r inc-recursive no-inc-recursive i-r no-i-r dirs
    no-dirs no-d old-dirs old-d perms no-perms no-p executability acls no-acls no-A xattrs
    no-xattrs no-X times no-times no-t atimes no-atimes no-U open-noatime no-open-noatime
    crtimes no-crtimes no-N omit-dir-times no-omit-dir-times no-O omit-link-times
    no-omit-link-times no-J modify-window super no-super fake-super owner no-owner no-o group
    no-group no-g no-D devices no-devices copy-devices write-devices no-write-devices specials
    no-specials drop-D no-drop-D confine-root links no-links no-l copy-links copy-unsafe-links
    safe-links insecure-links no-insecure-links munge-links no-munge-links copy-dirlinks
    keep-dirlinks hard-links no-hard-links no-H relative no-relative no-R implied-dirs
    no-implied-dirs i-d no-i-d chmod ignore-times size-only one-file-system no-one-file-system
    no-x update existing ignore-non-existing ignore-existing max-size min-size max-alloc sparse
    no-sparse no-S preallocate inplace no-inplace append append-verify no-append del delete
    delete-before delete-during delete-delay delete-after delete-excluded delete-missing-args
    ignore-missing-args remove-sent-files remove-source-files force no-force ignore-errors
    no-ignore-errors max-delete filter exclude include exclude-from include-from cvs-exclude
    whole-file no-whole-file no-W checksum no-checksum no-c checksum-choice cc block-size
    compare-dest copy-dest link-dest fuzzy no-fuzzy no-y compress old-compress new-compress
    no-compress no-z compress-choice zc skip-compress compress-level zl compress-threads zt
    progress no-progress partial no-partial partial-dir delay-updates no-delay-updates
    prune-empty-dirs no-prune-empty-dirs no-m log-file log-file-format out-format log-format
    itemize-changes no-itemize-changes no-i bwlimit no-bwlimit backup no-backup backup-dir
    suffix list-only read-batch write-batch only-write-batch files-from from0 no-from0 old-args
    no-old-args secluded-args no-secluded-args protect-args no-protect-args no-s trust-sender
    numeric-ids no-numeric-ids usermap groupmap chown timeout no-timeout contimeout
    no-contimeout fsync stop-after time-limit stop-at rsh rsync-path temp-dir iconv no-iconv
    ipv4 ipv6 8-bit-output no-8-bit-output no-8 mkpath no-mkpath qsort copy-as address port
    sockopts password-file early-input blocking-io no-blocking-io outbuf remote-option
    protocol checksum-seed server sender config daemon dparam detach no-detach";

/// Values that name something outside the client's area, or worse.
const HOSTILE_VALUES: &[&str] = &[
    "/etc/passwd",
    "../other.example",
    "~",
    "~root/.ssh",
    "/",
    "current/../..",
    "%2E%2E",
    "0",
    "100G",
    "%i!#:+",
    "x",
    "",
];

/// A word a hostile client might slip among the options.
fn hostile_word() -> impl Strategy<Value = String> {
    let names: Vec<&'static str> = RSYNC_LONG_OPTIONS.split_whitespace().collect();
    prop_oneof![
        (select(names.clone()), select(HOSTILE_VALUES)).prop_map(|(n, v)| format!("--{n}={v}")),
        select(names.clone()).prop_map(|n| format!("--{n}")),
        // Abbreviations (which rsync does not take, but never mind).
        (select(names), 1..6usize).prop_map(|(n, k)| format!("--{}", &n[..k.min(n.len())])),
        // Clusters with any letter, value or capability string.
        "-[A-Za-z0-9@]{1,10}(e[0-9]{0,2}\\.?[A-Za-z/=~.]{0,6})?",
        "-[A-Za-z0-9@]{0,4}[=/~][!-~]{0,8}",
        select(
            &[
                "--",
                "-",
                "",
                ".",
                "..",
                "/",
                "~",
                "-e",
                "-e.",
                "-e/bin/sh",
                "-B",
                "-@",
                "-T",
                "-T/tmp",
                "--server",
                "--sender",
                "--daemon",
                "--timeout",
                "--log-format",
                "-M--log-file=/x",
            ][..]
        )
        .prop_map(str::to_owned),
        "[!-~]{1,12}",
    ]
}

/// The bytes of a path a client might name after the `.`: real ones of
/// the test store, hostile ones, and any bytes.
fn path_bytes() -> impl Strategy<Value = Vec<u8>> {
    let real = select(
        &[
            "current/file",
            "current/dir",
            "current/dir/f",
            "current/",
            "current",
            "current/link",
            "2026-11-28T03:00:00Z/file",
            "2026-11-28T03:00:00Z/dir/",
            "2026-11-28T03:00:00Z",
            "2026-11-28T03:00:00Z/link",
        ][..],
    );
    let hostile = select(
        &[
            "current/link/secret",
            "2026-11-28T03:00:00Z/link/secret",
            "current//file",
            "current/./file",
            "current/../../other.example/current/secret",
            "../other.example/current/secret",
            "other.example/current/secret",
            "/etc/passwd",
            "~",
            "~/x",
            "-e",
            "--rsync-path=/bin/sh",
            ".",
            "..",
            "",
            "current/\u{ff}",
        ][..],
    );
    prop_oneof![
        3 => real.prop_map(|p| p.as_bytes().to_vec()),
        2 => hostile.prop_map(|p| p.as_bytes().to_vec()),
        1 => vec(any::<u8>(), 0..16),
    ]
}

/// A path as a word: encoded (as byteback's client sends it) or as is.
fn path_word() -> impl Strategy<Value = String> {
    (path_bytes(), any::<bool>()).prop_map(|(p, encode)| match encode {
        true => encode_arg(&p),
        false => String::from_utf8_lossy(&p).replace(['\n', '\t'], "_"),
    })
}

/// An rsync command line, mostly allowed options with a hostile word here
/// and there, then `.` (usually) and the destination or paths.
fn rsync_command() -> impl Strategy<Value = String> {
    let word = prop_oneof![8 => allowed_option(), 2 => hostile_word()];
    (
        select(&["rsync --server", "rsync --server --sender"][..]),
        vec(word, 0..7),
        prop_oneof![9 => Just(" . "), 1 => Just(" "), 1 => Just("  .  ")],
        vec(path_word(), 0..3),
    )
        .prop_map(|(head, options, dot, paths)| {
            format!("{head} {}{dot}{}", options.join(" "), paths.join(" "))
        })
}

/// A restore's command line: mostly what byteback's client sends, with a
/// hostile option or path here and there.
fn sender_command() -> impl Strategy<Value = String> {
    let word = prop_oneof![9 => allowed_option(), 1 => hostile_word()];
    (vec(word, 1..4), vec(path_word(), 1..3)).prop_map(|(options, paths)| {
        format!(
            "rsync --server --sender {} . {}",
            options.join(" "),
            paths.join(" ")
        )
    })
}

/// A pattern a listing or a digest might carry: mostly good ones (with the
/// test store's symlink to another client among them), some hostile, some
/// any bytes.
fn listing_pattern() -> impl Strategy<Value = Vec<u8>> {
    let bytes = |s: &'static str| s.as_bytes().to_vec();
    prop_oneof![
        8 => select(&["/**", "/file", "/*", "/dir/*", "/link", "/link/*", "/link/**", "/**/f"][..])
            .prop_map(bytes),
        2 => select(
            &[
                "/../other.example/current/secret",
                "/{..,x}/secret",
                "/**/secret",
                "/*/../*",
                "current/file",
                "",
            ][..]
        )
        .prop_map(bytes),
        1 => vec(any::<u8>(), 0..12),
    ]
}

/// A `byteback digest` command line: this client's snapshot by name, or
/// something else, and patterns.
fn digest_command() -> impl Strategy<Value = String> {
    let snapshot = select(
        &[
            "2026-11-28T03:00:00Z",
            "2026-11-28T03:00:00Z",
            "2026-11-28T03:00:00Z/..",
            "current",
            "*",
            "..",
            "../other.example/2026-11-28T03:00:00Z",
        ][..],
    );
    (snapshot, vec(listing_pattern(), 1..3)).prop_map(|(snapshot, patterns)| {
        let mut words = vec![
            "byteback digest".to_owned(),
            encode_arg(snapshot.as_bytes()),
        ];
        words.extend(patterns.iter().map(|p| encode_arg(p)));
        words.join(" ")
    })
}

/// A `byteback list` command line: mostly good selections and patterns,
/// some hostile, some any bytes.
fn list_command() -> impl Strategy<Value = String> {
    let bytes = |s: &'static str| s.as_bytes().to_vec();
    let selection = prop_oneof![
        8 => select(&["*", "current", "2026-*", "{current,2026-*}"][..]).prop_map(bytes),
        2 => select(&["..", "../other.example", "{current,..}", "*/../*", "*/*"][..])
            .prop_map(bytes),
        1 => vec(any::<u8>(), 0..8),
    ];
    let pattern = listing_pattern();
    (any::<bool>(), any::<bool>(), selection, vec(pattern, 0..3)).prop_map(
        |(all, ns, s, patterns)| {
            let mut words = vec!["byteback list".to_owned()];
            if all {
                words.push("--all".into());
            }
            if ns {
                words.push("--ns".into());
            }
            words.push(encode_arg(&s));
            words.extend(patterns.iter().map(|p| encode_arg(p)));
            words.join(" ")
        },
    )
}

/// A request byteback's client could make.
fn request() -> impl Strategy<Value = Request> {
    let bytes = || vec(any::<u8>(), 0..24);
    prop_oneof![
        Just(Request::Ping),
        any::<bool>().prop_map(|partial| Request::Complete { partial }),
        Just(Request::Snapshots),
        (any::<bool>(), any::<bool>(), bytes(), vec(bytes(), 1..4)).prop_map(
            |(all, nanoseconds, snapshots, patterns)| Request::List {
                all,
                nanoseconds,
                snapshots,
                patterns,
            }
        ),
        // A snapshot's exact name, and patterns the parser accepts.
        (
            0..4_000_000_000i64,
            vec("(/[a-z*?][a-z.*?]{0,5}){1,4}", 1..4)
        )
            .prop_map(|(t, patterns)| {
                Request::Digest {
                    snapshot: SnapshotName::for_time(jiff::Timestamp::from_second(t).unwrap())
                        .to_string(),
                    patterns: patterns.into_iter().map(String::into_bytes).collect(),
                }
            }),
        // A receiver's option only (an incremental backup's): refused on a sender.
        (
            vec(
                allowed_option().prop_filter("receivers only", |o| o != "--delete-missing-args"),
                1..6
            ),
            vec(bytes(), 1..4)
        )
            .prop_map(|(options, paths)| Request::Send { options, paths }),
        (vec(allowed_option(), 1..6), proptest::bool::ANY).prop_map(|(options, incremental)| {
            // Before protocol 3, --delete-missing-args alone said so.
            let mode = if incremental || options.iter().any(|o| o == "--delete-missing-args") {
                crate::protocol::TransferMode::Incremental
            } else {
                crate::protocol::TransferMode::Full
            };
            Request::Receive { options, mode }
        }),
    ]
}

// ---- Properties ----

proptest! {
    #![proptest_config(crate::proptest_config(512))]

    /// Any bytes at all, alone or after a real request's first words.
    #[test]
    fn parse_never_panics(
        head in select(&["", "byteback ", "byteback list ", "byteback list --all --ns ",
            "byteback digest ", "byteback digest 2026-11-26T03%3A00%3A12Z ",
            "rsync --server ", "rsync --server --sender "][..]),
        bytes in vec(any::<u8>(), 0..300),
    ) {
        let text = format!("{head}{}", String::from_utf8_lossy(&bytes));
        let _ = parse(Some(&text));
    }

    /// Long commands are refused, however they are made.
    #[test]
    fn parse_never_panics_on_long_commands(word in "[!-~]{1,8}", n in 0usize..1200) {
        let text = format!("rsync --server {}", vec![word; n].join(" "));
        if parse(Some(&text)).is_ok() {
            prop_assert!(text.len() <= MAX_COMMAND_LEN);
        }
    }

    /// What byteback's client renders, the server parses back unchanged.
    #[test]
    fn render_then_parse_is_identity(r in request()) {
        prop_assert_eq!(parse(Some(&r.render())), Ok(r));
    }

    /// Every accepted receiver runs in `current` with safe options only,
    /// the server's settings last; the options pass as they came.
    #[test]
    fn accepted_receivers_are_confined(cmd in rsync_command()) {
        if let Ok(Request::Receive { options, .. }) = parse(Some(&cmd)) {
            for (side, links) in sides().into_iter().filter(|(s, _)| s.role != ServerRole::Sender) {
                assert_confined(&rsync::receiver_argv(&options, &side, &links), &side, &links, None);
            }
        }
    }
}

/// Every accepted restore sends only what [`ClientBackups::restore_source`]
/// let through: paths in this client's snapshots or `current`, never through
/// its symlink to another client, with safe options, the server's last.
/// Every accepted listing finds only this client's own files, and every
/// accepted digest only files of the one snapshot it names.
#[test]
fn accepted_senders_and_listings_stay_in_the_clients_area() {
    let fake = FakeStore::new(1 << 30, ServerConfig::default());
    let client = fake.client("host.example");
    let other = fake.client("other.example");
    fake.write(&other, "secret", 10);
    let current = fake.store.current(&client);
    fake.write(&client, "file", 10);
    std::fs::create_dir(current.join("dir")).unwrap();
    fake.write(&client, "dir/f", 10);
    std::os::unix::fs::symlink("../../other.example/current", current.join("link")).unwrap();
    let snapshot = fake.old_snapshot(&client, "2026-11-28T03:00:00Z", 10);
    let backups = ClientBackups::open(&fake.store, &client).unwrap();
    let client_dir = std::fs::canonicalize(fake.store.client_dir(&client)).unwrap();
    let in_client_dir =
        |p: &Path| std::fs::canonicalize(p).is_ok_and(|real| real.starts_with(&client_dir));
    let (sent, listed) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    let digested = std::cell::Cell::new(0);
    // A fixed seed: the coverage check below counts accepted cases, which
    // a random seed makes pass or fail by chance.
    let config = proptest::test_runner::Config {
        failure_persistence: None,
        ..crate::proptest_config(512)
    };
    let rng = proptest::test_runner::TestRng::deterministic_rng(config.rng_algorithm);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let commands = prop_oneof![
        rsync_command(),
        sender_command(),
        list_command(),
        digest_command()
    ];
    runner
        .run(&commands, |cmd| {
            match parse(Some(&cmd)) {
                Ok(Request::Send { options, paths }) => {
                    let Ok(checked) = paths
                        .iter()
                        .map(|p| backups.restore_source(p))
                        .collect::<crate::error::Result<Vec<_>>>()
                    else {
                        return Ok(());
                    };
                    sent.set(sent.get() + 1);
                    for p in &checked {
                        let path = client_dir.join(std::ffi::OsStr::from_bytes(p));
                        assert!(in_client_dir(&path), "{cmd}: {}", path.display());
                    }
                    let (side, _) = &sides()[2];
                    assert_confined(
                        &rsync::sender_argv(&options, side, &checked),
                        side,
                        &[],
                        Some(&checked),
                    );
                }
                Ok(Request::List {
                    all,
                    snapshots,
                    patterns,
                    ..
                }) => {
                    let mut rows = Vec::new();
                    let found = backups.find(all, &snapshots, &patterns, &mut |row| {
                        rows.push(row);
                        Ok(())
                    });
                    if found.is_err() {
                        return Ok(());
                    }
                    listed.set(listed.get() + rows.len());
                    for row in rows {
                        assert!(
                            row.snapshot == "current" || row.snapshot == snapshot.as_str(),
                            "{cmd}: {row:?}"
                        );
                        let mut path = client_dir.join(&row.snapshot).into_os_string();
                        path.push(std::ffi::OsStr::from_bytes(&row.found.path));
                        let path = PathBuf::from(path);
                        // The row itself may be a symlink (listed, not followed).
                        let parent = path.parent().unwrap_or(&path);
                        assert!(
                            std::fs::symlink_metadata(&path).is_ok() && in_client_dir(parent),
                            "{cmd}: {}",
                            path.display()
                        );
                    }
                }
                Ok(Request::Digest {
                    snapshot: name,
                    patterns,
                }) => {
                    let mut lines = Vec::new();
                    let limits = crate::lifecycle::ReadLimits::NONE;
                    let hashed = backups.digest(&name, &patterns, &limits, &mut |line| {
                        lines.push(line);
                        Ok(())
                    });
                    if hashed.is_err() {
                        return Ok(());
                    }
                    digested.set(digested.get() + lines.len());
                    assert_eq!(name, snapshot.as_str(), "{cmd}");
                    for line in lines {
                        let mut path = client_dir.join(&name).into_os_string();
                        path.push(std::ffi::OsStr::from_bytes(&line.path));
                        let path = PathBuf::from(path);
                        let parent = path.parent().unwrap_or(&path);
                        assert!(
                            std::fs::symlink_metadata(&path).is_ok() && in_client_dir(parent),
                            "{cmd}: {}",
                            path.display()
                        );
                    }
                }
                _ => {}
            }
            Ok(())
        })
        .unwrap();
    // The generators must reach the interesting cases, not only refusals.
    let (sent, listed, digested) = (sent.get(), listed.get(), digested.get());
    assert!(
        sent > 5 && listed > 5 && digested > 5,
        "only {sent} restores, {listed} rows and {digested} digests accepted"
    );
}

proptest! {
    #![proptest_config(crate::proptest_config(1024))]

    /// Any bytes survive a round trip, as a word only of `[A-Za-z0-9._/%-]`
    /// that never starts with `-`.
    #[test]
    fn encoding_round_trips(bytes in vec(any::<u8>(), 0..200)) {
        let word = encode_arg(&bytes);
        prop_assert!(word.bytes().all(|b| b.is_ascii_alphanumeric() || b"._/%-".contains(&b)));
        prop_assert!(!word.starts_with('-'));
        prop_assert_eq!(decode_arg(&word), Ok(bytes));
    }

    /// Decoding any text never panics, and what it accepts means the same
    /// bytes once encoded again.
    #[test]
    fn decoding_never_panics(text in prop_oneof![".{0,64}", "[%0-9a-fA-FgG/-]{0,64}"]) {
        if let Ok(bytes) = decode_arg(&text) {
            prop_assert_eq!(decode_arg(&encode_arg(&bytes)), Ok(bytes));
        }
    }

    /// Result lines: any text decodes or is refused, never a panic; any
    /// found file comes back as it went (its mtime's nanoseconds in the
    /// line that carries them, zero in the one that does not).
    #[test]
    fn found_lines_round_trip(
        text in ".{0,80}",
        path in vec(any::<u8>(), 0..40),
        (mode, uid, gid, size, mtime) in any::<(u32, u32, u32, u64, i64)>(),
        rdev in proptest::option::of(any::<(u32, u32)>()),
        symlink_target in proptest::option::of(vec(any::<u8>(), 0..20)),
        mtime_nsec in 0..1_000_000_000u32,
    ) {
        let _ = decode_found(&text);
        let meta = crate::finder::Meta {
            mode, uid, gid, size, mtime, mtime_nsec, rdev, symlink_target,
        };
        let found = crate::finder::Found { path, meta };
        prop_assert_eq!(decode_found(&wire::encode_found_exact(&found)), Ok(found.clone()));
        let mut seconds = found.clone();
        seconds.meta.mtime_nsec = 0;
        prop_assert_eq!(decode_found(&encode_found(&found)), Ok(seconds));
    }
}

// ---- A primary's key on its replica (`parse_replica`) ----

/// A replica request's command line: what `byteback-server replicate`
/// sends, with hostile words and names here and there.
fn replica_command() -> impl Strategy<Value = String> {
    let word = prop_oneof![8 => allowed_option(), 2 => hostile_word()];
    let name = prop_oneof![
        4 => Just("web1.example".to_owned()),
        2 => path_word(),
        1 => hostile_word(),
    ];
    prop_oneof![
        (
            vec(word, 0..6),
            name.clone(),
            select(&["/current/", "/current", "", "/x/current/"][..])
        )
            .prop_map(|(options, who, tail)| format!(
                "rsync --server {} . {who}{tail}",
                options.join(" ")
            )),
        (
            select(&["", "--partial "][..]),
            name.clone(),
            prop_oneof![
                Just("2026-11-26T03:00:00Z".to_owned()),
                Just("2014-03-02T23:10+0100".to_owned()),
                hostile_word()
            ]
        )
            .prop_map(|(flag, who, snap)| format!("byteback replica-snapshot {flag}{who} {snap}")),
        Just("byteback replica-state".to_owned()),
        (
            name,
            prop_oneof![Just("ssh-ed25519".to_owned()), hostile_word()],
            prop_oneof![Just("AAAAC3NzaC1lZDI1NTE5".to_owned()), hostile_word()]
        )
            .prop_map(|(who, kind, blob)| format!("byteback replica-adopt {who} {kind} {blob}")),
    ]
}

proptest! {
    #![proptest_config(crate::proptest_config(512))]

    /// Any bytes at all, alone or after a replica request's first words.
    #[test]
    fn parse_replica_never_panics(
        head in select(&["", "byteback replica-state", "byteback replica-snapshot ",
            "byteback replica-adopt ", "rsync --server ", "rsync --server --sender "][..]),
        bytes in vec(any::<u8>(), 0..300),
    ) {
        let text = format!("{head}{}", String::from_utf8_lossy(&bytes));
        let _ = parse_replica(Some(&text));
    }

    /// What a replica accepts names only the primary's own clients (a
    /// mapped name under `PRIMARY__`), real snapshot names, and receivers
    /// as confined as a client's; an adoption names a valid client and a
    /// bare key, one word each of a key's shape (nothing that could become
    /// an option, a comment or a second line of authorized_keys).
    #[test]
    fn accepted_replica_requests_stay_in_the_primarys_area(cmd in replica_command()) {
        let primary = ClientName::new("primary").unwrap();
        let mapped = |c: &ClientName| {
            let m = ClientName::replicated(&primary, c);
            if let Ok(m) = &m {
                assert_eq!(m.split_replicated().map(|(p, _)| p), Some("primary"), "{cmd}");
            }
        };
        match parse_replica(Some(&cmd)) {
            Ok(ReplicaRequest::Receive { client, options }) => {
                mapped(&client);
                let tail = (format!(" {client}/current/"), format!(" {client}/current"));
                prop_assert!(cmd.ends_with(&tail.0) || cmd.ends_with(&tail.1), "{}", cmd);
                for (side, links) in sides().into_iter().filter(|(s, _)| s.role != ServerRole::Sender) {
                    assert_confined(&rsync::receiver_argv(&options, &side, &links), &side, &links, None);
                }
            }
            Ok(ReplicaRequest::Snapshot { client, name, .. }) => {
                mapped(&client);
                prop_assert_eq!(SnapshotName::parse(name.as_str()), Some(name));
            }
            Ok(ReplicaRequest::State) => prop_assert_eq!(cmd, "byteback replica-state"),
            Ok(ReplicaRequest::Adopt { client, key }) => {
                mapped(&client);
                prop_assert_eq!(&cmd, &format!("byteback replica-adopt {client} {} {}", key.kind, key.blob));
                for word in [&key.kind, &key.blob] {
                    prop_assert!(!word.is_empty(), "{}", cmd);
                    prop_assert!(
                        word.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=-.@".contains(&b)),
                        "{}", cmd
                    );
                }
            }
            Err(_) => {}
        }
    }
}
