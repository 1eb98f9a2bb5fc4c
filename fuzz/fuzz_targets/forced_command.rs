//! `SSH_ORIGINAL_COMMAND` as a hostile client sends it: the parser never
//! panics, and an accepted rsync becomes the server's own argv.
#![no_main]

use byteback::exec::rsync::{ServerRole, ServerSide, receiver_argv, sender_argv};
use byteback::protocol::{Request, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(command) = std::str::from_utf8(data) else {
        return;
    };
    let side = |role| ServerSide {
        role,
        io_timeout_secs: 600,
        confine_root: None,
    };
    match parse(Some(command)) {
        Ok(Request::Receive { options }) => {
            let argv = receiver_argv(
                &options,
                &side(ServerRole::Receiver { inplace: false }),
                &[],
            );
            assert!(argv.ends_with(&[".".into(), ".".into()]));
        }
        Ok(Request::Send { options, paths }) => {
            let _ = sender_argv(&options, &side(ServerRole::Sender), &paths);
        }
        _ => {}
    }
});
