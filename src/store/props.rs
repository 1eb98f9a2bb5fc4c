//! Property tests of the server's configuration, `server.toml`: any text
//! never panics its loader, and every error is one line naming the file
//! (the text generator is `config::props`, shared with the client's).

use std::path::Path;

use proptest::collection::vec;
use proptest::prelude::*;

use super::{ServerConfig, Store};
use crate::config::props::{check, config_text};

proptest! {
    #![proptest_config(crate::proptest_config(512))]

    #[test]
    fn server_config_text_never_panics(text in config_text()) {
        check::<ServerConfig>(Path::new("/srv/byteback/.byteback/server.toml"), &text)?;
    }

    /// Any bytes, read from the file by the server's own loader (which
    /// also checks the percentages).
    #[test]
    fn server_store_open_never_panics(text in config_text(), bytes in vec(any::<u8>(), 0..40)) {
        let scratch = crate::ScratchDir::new("props");
        let dir = scratch.path();
        let path = Store::config_path_of(dir);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        for content in [text.as_bytes(), &bytes] {
            std::fs::write(&path, content).unwrap();
            if let Err(e) = Store::open(dir) {
                let e = e.to_string();
                prop_assert!(!e.contains(char::is_control), "{e}");
                prop_assert!(e.contains(&path.display().to_string()), "{e}");
            }
        }
    }
}
