//! The encodings of arguments and result lines: decoding never panics, and
//! what decodes encodes back to the same bytes.
#![no_main]

use byteback::protocol::wire::encode_found_exact;
use byteback::protocol::{decode_arg, decode_found, encode_arg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert_eq!(decode_arg(&encode_arg(data)).as_deref(), Ok(data));
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(bytes) = decode_arg(text) {
            assert_eq!(decode_arg(&encode_arg(&bytes)), Ok(bytes));
        }
        if let Ok(found) = decode_found(text) {
            assert_eq!(decode_found(&encode_found_exact(&found)), Ok(found));
        }
    }
});
