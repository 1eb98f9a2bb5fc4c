//! What the client's rsync sends is what the server's parser accepts, and
//! what the server then runs keeps its guards: the argv built in
//! [`crate::exec::rsync`] read back by [`crate::protocol`]. (The argv
//! builders' own tests, which need no parser, stay beside them.)

use crate::exec::rsync::{
    ACL_XATTR_GUARDS, BackupTransfer, ReplicaTransfer, Selection, ServerRole, ServerSide,
    asks_sparse, receiver_argv,
};
use crate::protocol::{ReplicaRequest, Request, TransferMode, parse, parse_replica};

fn as_strings(args: &[std::ffi::OsString]) -> Vec<String> {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// A replica transfer's destination is one a replica's key accepts, with
/// the options that transfer makes rsync send.
#[test]
fn a_replica_transfer_is_what_a_replica_key_accepts() {
    let t = ReplicaTransfer {
        rsync: "rsync".into(),
        snapshot_dir: "/srv/bb/web1/2026-11-26T03:00:00Z".into(),
        client: "web1".into(),
        rsh: "ssh -p 2222".into(),
        remote: "bb@replica".into(),
        io_timeout_secs: 600,
        bwlimit: Some("2m".into()),
        verbose: false,
    };
    let args = as_strings(&t.args());
    let remote = format!(
        "rsync --server -lHogDtpAXrSe.iLsfxCIvu --timeout=600 --bwlimit=2048 --delete --numeric-ids --inplace --fake-super -@-1 . {}",
        &args[args.len() - 1]["bb@replica:".len()..]
    );
    assert!(parse_replica(Some(&remote)).is_ok(), "{remote}");
}

/// A backup's run of its files with holes asks the server for a
/// receiver that keeps them; the run of the rest does not ask.
#[test]
fn only_the_run_of_files_with_holes_asks_to_keep_them() {
    for sparse in [true, false] {
        let t = BackupTransfer::to_test_host(Selection::Listed, sparse);
        // rsync puts --sparse in its option cluster as `S`.
        let letters = if sparse { "lHogDtpAXRS" } else { "lHogDtpAXR" };
        let remote = format!(
            "rsync --server -{letters}e.iLsfxCIvu --inplace --numeric-ids . {}",
            &as_strings(&t.args()).last().unwrap()["bb@host:".len()..]
        );
        let Ok(Request::Receive { options, mode }) = parse(Some(&remote)) else {
            panic!("{remote} refused")
        };
        assert_eq!(mode, TransferMode::Full, "{remote}");
        assert_eq!(asks_sparse(&options), sparse, "{remote}");
        assert_eq!(
            t.args().iter().any(|a| a == "--sparse"),
            sparse,
            "{:?}",
            t.args()
        );
    }
}

/// An index-mode transfer to a protocol 3 server is read as incremental
/// by its destination.
#[test]
fn an_index_mode_transfer_is_read_as_incremental() {
    let t = BackupTransfer::to_test_host(
        Selection::Changed {
            server_deletes_gone: true,
        },
        true,
    );
    let args = as_strings(&t.args());
    let remote = format!(
        "rsync --server -lHogDtpAXIRSe.iLsfxCIvu --inplace --numeric-ids . {}",
        &args[args.len() - 1]["bb@host:".len()..]
    );
    assert!(matches!(
        parse(Some(&remote)),
        Ok(Request::Receive {
            mode: TransferMode::Incremental,
            ..
        })
    ));
}

/// Every receiver (a backup's, btrfs or plain, and a replica's) keeps
/// rsync's ACL xattrs out of its xattr clean-up, after the client's
/// options; the client cannot send filter rules of its own.
#[test]
fn every_receiver_guards_the_acl_xattrs() {
    let words = |options: &[String], side: &ServerSide| -> Vec<String> {
        receiver_argv(options, side, &["../2026-11-26T03:00:00Z".into()])
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    };
    let backup = "rsync --server -lHogDtpAXIRSe.LsfxCIvu --timeout=30 --force --stats --delete-missing-args -@-1 --numeric-ids --inplace . current/";
    let Request::Receive { options, .. } = parse(Some(backup)).unwrap() else {
        panic!("not a receive: {backup}")
    };
    let replica = "rsync --server -lHogDtpAXrSe.iLsfxCIvu --timeout=600 --delete --numeric-ids --inplace --fake-super -@-1 . web1/current/";
    let ReplicaRequest::Receive {
        options: replica_options,
        ..
    } = parse_replica(Some(replica)).unwrap()
    else {
        panic!("not a receive: {replica}")
    };
    for options in [&options, &replica_options] {
        for inplace in [true, false] {
            let side = ServerSide {
                role: ServerRole::Receiver { inplace },
                io_timeout_secs: 600,
                confine_root: None,
                sparse: !inplace,
            };
            let w = words(options, &side);
            for guard in ACL_XATTR_GUARDS {
                let at: Vec<usize> = (0..w.len()).filter(|&i| w[i] == guard).collect();
                assert_eq!(at.len(), 1, "{guard}: {w:?}");
                // After every option the client sent.
                for o in options.iter().filter(|o| !o.starts_with("--timeout=")) {
                    if let Some(p) = w.iter().position(|a| a == o) {
                        assert!(p < at[0], "{o} after {guard}: {w:?}");
                    }
                }
            }
            assert_eq!(w.iter().filter(|a| a.starts_with("--filter")).count(), 2);
            assert_eq!(&w[w.len() - 2..], [".", "."]);
        }
    }
    // A client's own filter rules never reach the server's rsync, in
    // any spelling.
    for sneaky in [
        "--filter=+x user.rsync.%aacl",
        "--filter=!",
        "-f!",
        "--exclude=x",
        "--include=user.*",
        "--filter=merge /tmp/x",
    ] {
        let line = format!("rsync --server -lHogDtpAXrRSe.iLsfxCIvu {sneaky} --inplace . current/");
        assert!(parse(Some(&line)).is_err(), "{line} was accepted");
    }
}
