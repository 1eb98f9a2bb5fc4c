//! The original byteback's forced-command language: what its clients
//! (`byteback-backup`, `byteback-restore`, and the older ones that called
//! `byteback-snapshot` over ssh) send, for keys imported with
//! `byteback-server import-keys` (`KeyRole::Legacy`).
//!
//! The original's server split the command at spaces and ran most of it:
//! `rsync …` with only its last word replaced, `byteback-restore …` with
//! every option passed on to rsync. Here each command is read into one of
//! this server's own requests, through the same allow-list as ours
//! ([`super::parse_receiver`], [`super::split_rsync`]): nothing in it is a
//! path or a program on the server, and whatever destination it names, a
//! transfer lands in the client's `current`.
//!
//! What the original's clients send (`SSH_ORIGINAL_COMMAND`; ssh joins its
//! arguments with spaces, so an absent `--verbose` leaves a trailing space):
//!
//! | client step | command |
//! | --- | --- |
//! | `byteback-backup`, before the transfer | `byteback-receive --ping [--verbose]` |
//! | `byteback-backup`, the transfer (`--rsync-path "rsync --fake-super"`) | `rsync --fake-super --server -logDtpXrRe.iLsfxCIvu --timeout=10800 --delete-during --delete-excluded --numeric-ids --inplace . DEST` |
//! | `byteback-backup`, after it | `byteback-receive --complete [--verbose]` |
//! | older `byteback-backup` (2014–2015) | `byteback-snapshot --snapshot [--verbose]` |
//! | `byteback-restore --list` | `byteback-receive --snapshot SNAP --list [--all] [--verbose] QP-PATH…` |
//! | `byteback-restore --restore` (`--rsync-path "byteback-restore --fake-super --snapshot SNAP [--all]"`) | `byteback-restore --fake-super --snapshot SNAP [--all] --server --sender -logDtprRze.iLsfxCIvu --timeout=300 --numeric-ids --inplace . PATH…` |
//!
//! Paths travel quoted-printable (Ruby's `pack("M")`, spaces as `=20`).

use super::{Refusal, Request, check_line, parse_receiver, refuse, split_rsync, truncate};

/// A request of the original's language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyRequest {
    /// One whose meaning is exactly one of ours: `Ping`, `Receive`
    /// (`rsync --fake-super --server …`), `Complete` (`--complete`,
    /// `byteback-snapshot`).
    Same(Request),
    /// `byteback-receive --list`: our `Request::List`, answered in words
    /// for a person (the original's client prints what the server says).
    List(Request),
    /// `byteback-restore … --server --sender`: send the newest version
    /// (every version with `all`) of what `patterns` match in the
    /// snapshots `snapshots` matches. The server resolves it with the
    /// listing's search into our `Request::Send` (each path then checked by
    /// `restore_source`, as any restore's).
    Restore {
        options: Vec<String>,
        snapshots: Vec<u8>,
        all: bool,
        patterns: Vec<Vec<u8>>,
    },
}

/// Parses what an original byteback client asked for.
pub fn parse_legacy(command: Option<&str>) -> Result<LegacyRequest, Refusal> {
    let Some(command) = command else {
        return refuse(
            "no command given: this key (an original byteback client's) may only run its backups and restores, not a shell",
        );
    };
    check_line(command)?;
    // As the original read it (Ruby's `split(' ')`): runs of spaces are one.
    let words: Vec<&str> = command.split(' ').filter(|w| !w.is_empty()).collect();
    match words.as_slice() {
        ["byteback-receive", rest @ ..] => parse_receive(rest),
        ["rsync", "--fake-super", "--server", "--sender", ..] => refuse(
            "rsync --sender is not allowed here: an original client restores through byteback-restore",
        ),
        // `--fake-super` is dropped: the server always adds its own.
        ["rsync", "--fake-super", "--server", rest @ ..] => {
            parse_receiver(rest).map(LegacyRequest::Same)
        }
        ["byteback-snapshot", rest @ ..] => {
            // `--snapshot` was a no-op kept for old clients; `--root` named
            // a path on the server, which only the key line may.
            for word in rest {
                if !matches!(*word, "--snapshot" | "--verbose") {
                    return refuse(format!(
                        "byteback-snapshot option {:?} is not allowed: the snapshot is always of this key's own client",
                        truncate(word)
                    ));
                }
            }
            Ok(LegacyRequest::Same(Request::Complete { partial: false }))
        }
        ["byteback-restore", rest @ ..] => parse_restore(rest),
        ["restore", ..] => refuse(
            "this restore command is older than byteback-restore and the original server refused it too: update the client's byteback package",
        ),
        ["byteback-setup-client-receive", ..] => refuse(
            "enrolment over ssh (byteback-setup-client) is not served: the server's administrator enrols a key with `byteback-server new-client` (see docs/server-and-clients.md, \"Upgrading from the original byteback\")",
        ),
        _ => refuse(format!(
            "command not allowed: {:?}; this key (an original byteback client's) may only run its backups and restores",
            truncate(command)
        )),
    }
}

/// The original's snapshot selection: a snapshot name or a glob of
/// letters, digits and `:+*-` only (its own check), so never a path.
fn snapshot_glob(word: &str) -> Result<Vec<u8>, Refusal> {
    if word.is_empty()
        || !word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'+' | b'*' | b'-'))
    {
        return refuse(format!(
            "{:?} is not a snapshot name or glob (letters, digits and :+*- only)",
            truncate(word)
        ));
    }
    Ok(word.as_bytes().to_vec())
}

/// `byteback-receive` and its options (Trollop's, in the forms the client sends).
fn parse_receive(words: &[&str]) -> Result<LegacyRequest, Refusal> {
    #[derive(PartialEq)]
    enum Mode {
        Ping,
        Complete,
        List,
    }
    let mut modes = Vec::new();
    let mut all = false;
    let mut snapshots: Option<Vec<u8>> = None;
    let mut at = 0;
    while let Some(word) = words.get(at) {
        match *word {
            "--ping" => modes.push(Mode::Ping),
            "--complete" => modes.push(Mode::Complete),
            "--list" => modes.push(Mode::List),
            "--all" => all = true,
            "--verbose" => {}
            "--snapshot" => {
                at += 1;
                let Some(glob) = words.get(at) else {
                    return refuse("byteback-receive --snapshot needs a snapshot name or glob");
                };
                snapshots = Some(snapshot_glob(glob)?);
            }
            w if w.starts_with('-') => {
                return refuse(format!(
                    "byteback-receive option {:?} is not allowed",
                    truncate(w)
                ));
            }
            _ => break,
        }
        at += 1;
    }
    let patterns = &words[at..];
    let [mode] = modes.as_slice() else {
        return refuse("byteback-receive needs exactly one of --ping, --complete and --list");
    };
    let listing = (all || snapshots.is_some() || !patterns.is_empty()).then_some(());
    match mode {
        Mode::Ping | Mode::Complete if listing.is_some() => {
            refuse("byteback-receive --ping and --complete take no snapshot, --all or paths")
        }
        Mode::Ping => Ok(LegacyRequest::Same(Request::Ping)),
        Mode::Complete => Ok(LegacyRequest::Same(Request::Complete { partial: false })),
        Mode::List => {
            if patterns.is_empty() {
                return refuse("byteback-receive --list needs at least one path");
            }
            Ok(LegacyRequest::List(Request::List {
                all,
                nanoseconds: false,
                snapshots: snapshots.unwrap_or_else(|| b"*".to_vec()),
                patterns: paths(patterns)?,
            }))
        }
    }
}

/// `byteback-restore`'s own options, then rsync's sender through our
/// allow-list, then the paths.
fn parse_restore(words: &[&str]) -> Result<LegacyRequest, Refusal> {
    let mut all = false;
    let mut snapshots: Option<Vec<u8>> = None;
    let mut at = 0;
    loop {
        match words.get(at).copied() {
            // The server adds its own --fake-super.
            Some("--fake-super") => {}
            Some("--all") => all = true,
            Some("--snapshot") => {
                at += 1;
                let Some(glob) = words.get(at) else {
                    return refuse("byteback-restore --snapshot needs a snapshot name or glob");
                };
                snapshots = Some(snapshot_glob(glob)?);
            }
            Some("--server") => break,
            Some(other) => {
                return refuse(format!(
                    "byteback-restore option {:?} is not allowed before --server",
                    truncate(other)
                ));
            }
            None => return refuse("byteback-restore without an rsync --server --sender"),
        }
        at += 1;
    }
    let ["--server", "--sender", rest @ ..] = &words[at..] else {
        return refuse("byteback-restore only runs rsync's sender (--server --sender)");
    };
    let (options, rest) = split_rsync(rest)?;
    if options.iter().any(|o| o == "--delete-missing-args") {
        return refuse("rsync option --delete-missing-args is not allowed on a sender");
    }
    if rest.is_empty() {
        return refuse("byteback-restore without anything to restore");
    }
    Ok(LegacyRequest::Restore {
        options,
        snapshots: snapshots.unwrap_or_else(|| b"*".to_vec()),
        all,
        patterns: paths(rest)?,
    })
}

/// Quoted-printable paths, each an absolute pattern without `..` (checked
/// here, before anything is opened, as the listing's search checks it again).
fn paths(words: &[&str]) -> Result<Vec<Vec<u8>>, Refusal> {
    words
        .iter()
        .map(|w| {
            let path = decode_qp(w)?;
            crate::finder::Pattern::parse(&path).map_err(|e| {
                Refusal(format!(
                    "invalid path {:?}: {e}",
                    String::from_utf8_lossy(&path)
                ))
            })?;
            Ok(path)
        })
        .collect()
}

/// Decodes one quoted-printable word as the original's
/// `Byteback::Restore.encode_args` made it: `=XX` is a byte, a final `=` a
/// soft line break (nothing); any other `=` is refused.
pub fn decode_qp(word: &str) -> Result<Vec<u8>, Refusal> {
    let bytes = word.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'=' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        if i + 1 == bytes.len() {
            break;
        }
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        let Some(byte) = hex else {
            return refuse(format!("badly quoted-printable path {:?}", truncate(word)));
        };
        out.push(byte);
        i += 3;
    }
    Ok(out)
}

/// Encodes a path as the original's client does (for tests and examples):
/// printable ASCII other than `=` and space as itself, every other byte `=XX`.
pub fn encode_qp(path: &[u8]) -> String {
    let mut out = String::new();
    for &b in path {
        if b.is_ascii_graphic() && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exactly what the original's clients send (rsync 3.5.0 renders the
    /// transfers; see the module's table).
    const BACKUP: &str = "rsync --fake-super --server -logDtpXrRe.iLsfxCIvu --timeout=10800 --delete-during --delete-excluded --numeric-ids --inplace . .";
    const RESTORE: &str = "byteback-restore --fake-super --snapshot * --server --sender -logDtprRze.iLsfxCIvu --timeout=300 --numeric-ids --inplace . /etc/hostname /etc/a=20b";

    #[test]
    fn reads_what_the_original_client_sends() {
        for ping in [
            "byteback-receive --ping ",
            "byteback-receive --ping --verbose",
        ] {
            assert_eq!(
                parse_legacy(Some(ping)),
                Ok(LegacyRequest::Same(Request::Ping))
            );
        }
        for complete in [
            "byteback-receive --complete ",
            "byteback-receive --complete --verbose",
            "byteback-snapshot --snapshot ",
            "byteback-snapshot --snapshot --verbose",
        ] {
            assert_eq!(
                parse_legacy(Some(complete)),
                Ok(LegacyRequest::Same(Request::Complete { partial: false })),
                "{complete}"
            );
        }
        let Ok(LegacyRequest::Same(Request::Receive { options, .. })) = parse_legacy(Some(BACKUP))
        else {
            panic!()
        };
        assert_eq!(
            options,
            [
                "-logDtpXrRe.iLsfxCIvu",
                "--timeout=10800",
                "--delete-during",
                "--delete-excluded",
                "--numeric-ids",
                "--inplace"
            ]
        );
        // Verbose, and a destination path: ignored, as ours.
        assert!(
            parse_legacy(Some(
                &BACKUP.replace("-log", "-vlog").replace(". .", ". /store")
            ))
            .is_ok()
        );
        assert_eq!(
            parse_legacy(Some(
                "byteback-receive --snapshot * --list --all --verbose /etc/a=20b /srv/*"
            )),
            Ok(LegacyRequest::List(Request::List {
                all: true,
                nanoseconds: false,
                snapshots: b"*".to_vec(),
                patterns: vec![b"/etc/a b".to_vec(), b"/srv/*".to_vec()],
            }))
        );
        assert_eq!(
            parse_legacy(Some(RESTORE)),
            Ok(LegacyRequest::Restore {
                options: vec![
                    "-logDtprRze.iLsfxCIvu".into(),
                    "--timeout=300".into(),
                    "--numeric-ids".into(),
                    "--inplace".into()
                ],
                snapshots: b"*".to_vec(),
                all: false,
                patterns: vec![b"/etc/hostname".to_vec(), b"/etc/a b".to_vec()],
            })
        );
        let Ok(LegacyRequest::Restore { snapshots, all, .. }) = parse_legacy(Some(
            "byteback-restore --fake-super --snapshot 2014-01-01T00:00+0000 --all --server --sender -vlogDtprRze.iLsfxCIvu . /etc",
        )) else {
            panic!()
        };
        assert_eq!(
            (snapshots.as_slice(), all),
            (&b"2014-01-01T00:00+0000"[..], true)
        );
    }

    #[test]
    fn refuses_what_the_original_server_would_have_run() {
        let cases = [
            (None, "no command"),
            (Some("sh"), "not allowed"),
            (Some("byteback-receive --ping; id"), "not allowed"),
            (Some("byteback-receive"), "exactly one"),
            (Some("byteback-receive --ping --complete"), "exactly one"),
            (Some("byteback-receive --ping /etc"), "take no"),
            (Some("byteback-receive --list"), "at least one path"),
            (
                Some("byteback-receive --snapshot ../x --list /etc"),
                "not a snapshot",
            ),
            (
                Some("byteback-receive --snapshot a/b --list /etc"),
                "not a snapshot",
            ),
            (Some("byteback-receive --list etc/passwd"), "absolute"),
            (Some("byteback-receive --list /a/=2E=2E/b"), "'..'"),
            (Some("byteback-receive --list /a=zz"), "quoted-printable"),
            (Some("byteback-receive --root /x --complete"), "not allowed"),
            (Some("byteback-snapshot --root /home/other"), "not allowed"),
            (Some("sudo byteback-snapshot --snapshot"), "not allowed"),
            (
                Some("rsync --server -logDtprRe.iLsfxCIvu . /etc"),
                "not allowed",
            ),
            (
                Some("rsync --fake-super --server --sender -logDtprRe.iLsfxCIvu . /etc"),
                "--sender",
            ),
            (
                Some("rsync --fake-super --server -logDtprRe.iLsfxCIvu --log-file=/tmp/x . ."),
                "--log-file",
            ),
            (
                Some("rsync --fake-super --server -LlogDtprRe.iLsfxCIvu . ."),
                "-L",
            ),
            (
                Some("rsync --fake-super --server -logDtprRe.iLsfxCIvu --rsync-path=sh . ."),
                "--rsync-path",
            ),
            (
                Some(
                    "byteback-restore --server --sender -logDtprRe.iLsfxCIvu --remove-source-files . /etc",
                ),
                "--remove-source-files",
            ),
            (
                Some("byteback-restore --snapshot * --server -logDtprRe.iLsfxCIvu . /etc"),
                "sender",
            ),
            (
                Some("byteback-restore --snapshot * --server --sender -logDtprRe.iLsfxCIvu ."),
                "without anything",
            ),
            (
                Some(
                    "byteback-restore --snapshot * --server --sender -logDtprRe.iLsfxCIvu . ../../etc",
                ),
                "absolute",
            ),
            (
                Some("byteback-restore --rsh=sh --server --sender -logDtprRe.iLsfxCIvu . /etc"),
                "not allowed before --server",
            ),
            (Some("restore /etc"), "update the client"),
            (
                Some("byteback-setup-client-receive web1 ssh-rsa AAAA"),
                "new-client",
            ),
        ];
        for (cmd, why) in cases {
            let err = parse_legacy(cmd).expect_err(&format!("{cmd:?}")).0;
            assert!(err.contains(why), "{cmd:?}: {err}");
        }
    }

    #[test]
    fn quoted_printable_round_trips() {
        let odd = b"/home/a b/x=y\n\xff\t".to_vec();
        assert_eq!(decode_qp(&encode_qp(&odd)), Ok(odd));
        // Ruby's pack("M") with its soft line break left on.
        assert_eq!(decode_qp("/etc/a=20b="), Ok(b"/etc/a b".to_vec()));
    }

    mod props {
        use super::super::*;
        use crate::protocol::parse;
        use proptest::prelude::*;
        use proptest::sample::select;

        /// Words the original's commands are made of, and some that are not.
        fn word() -> impl Strategy<Value = String> {
            prop_oneof![
                select(vec![
                    "byteback-receive",
                    "byteback-restore",
                    "byteback-snapshot",
                    "rsync",
                    "--fake-super",
                    "--server",
                    "--sender",
                    "--ping",
                    "--complete",
                    "--list",
                    "--all",
                    "--verbose",
                    "--snapshot",
                    "--root",
                    "*",
                    ".",
                    "..",
                    "/etc",
                    "/../x",
                    "-logDtpXrRe.iLsfxCIvu",
                    "-LogDtpre.iLsfxCIvu",
                    "--inplace",
                    "--log-file=/tmp/x",
                    "--timeout=300",
                    "--rsync-path=sh",
                    "a=20b",
                    "=zz",
                    "2014-01-01T00:00+0000",
                    "",
                ])
                .prop_map(str::to_owned),
                "[ -~]{0,12}",
            ]
        }

        proptest! {
            /// Whatever a legacy key sends never panics the parser, and
            /// every transfer it accepts is one our own grammar accepts
            /// with the same options (so `protocol::props`' model of
            /// rsync's option parser covers it); every path it accepts is
            /// an absolute pattern without `..`, and every snapshot
            /// selection a plain glob of names.
            #[test]
            fn accepts_only_what_ours_accepts(words in proptest::collection::vec(word(), 0..12)) {
                let line = words.join(" ");
                let Ok(request) = parse_legacy(Some(&line)) else {
                    return Ok(());
                };
                match request {
                    LegacyRequest::Same(Request::Receive { options, mode }) => {
                        let ours = parse(Some(&format!("rsync --server {} . current/", options.join(" "))));
                        prop_assert_eq!(ours, Ok(Request::Receive { options, mode }));
                    }
                    LegacyRequest::Same(r) => prop_assert!(matches!(r, Request::Ping | Request::Complete { partial: false }), "{:?}", r),
                    LegacyRequest::List(Request::List { snapshots, patterns, .. })
                    | LegacyRequest::Restore { snapshots, patterns, .. } => {
                        prop_assert!(!snapshots.contains(&b'/') && !snapshots.contains(&b'.'));
                        for p in patterns {
                            prop_assert!(p.starts_with(b"/"));
                            prop_assert!(!p.split(|b| *b == b'/').any(|c| c == b".."));
                        }
                    }
                    LegacyRequest::List(other) => prop_assert!(false, "{:?}", other),
                }
                if let Ok(LegacyRequest::Restore { options, .. }) = parse_legacy(Some(&line)) {
                    let ours = parse(Some(&format!("rsync --server --sender {} . current/x", options.join(" "))));
                    prop_assert!(ours.is_ok(), "{:?}", ours);
                }
            }
        }
    }
}
