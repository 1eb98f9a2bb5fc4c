//! Both config files as any text: never a panic, every error one line
//! naming the file.
#![no_main]

use std::path::Path;

use byteback::client::config::ClientConfig;
use byteback::config::parse;
use byteback::store::ServerConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/fuzz/config.toml");
    let check =
        |e: String| assert!(!e.contains(char::is_control) && e.contains("/fuzz/config.toml"));
    if let Err(e) = parse::<ClientConfig>(path, text) {
        check(e.to_string());
    }
    if let Err(e) = parse::<ServerConfig>(path, text) {
        check(e.to_string());
    }
});
