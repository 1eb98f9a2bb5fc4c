//! `/proc/self/mountinfo` as bytes: never a panic.
#![no_main]

use byteback::sys::mountinfo::{exclusion_reason, exclusions, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mounts = parse(data);
    for m in &mounts {
        let _ = exclusion_reason(m);
    }
    let _ = exclusions(&mounts, &["/".into()]);
});
