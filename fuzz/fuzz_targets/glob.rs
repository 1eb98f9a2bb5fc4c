//! Glob patterns and paths: the first line of the input is the pattern, the
//! rest a path. Never a panic; a path climbing out with `..` never matches.
#![no_main]

use byteback::finder::Pattern;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (pattern, path) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b"/"[..]),
    };
    if let Ok(p) = Pattern::parse(pattern) {
        let matched = p.matches(path);
        p.may_match_below(path);
        assert!(!(matched && path.split(|&b| b == b'/').any(|c| c == b"..")));
    }
});
