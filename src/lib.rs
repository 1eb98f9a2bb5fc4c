//! byteback: maintenance-free client & server backups over rsync, OpenSSH and btrfs.
//!
//! The library holds all logic; the two binaries (`byteback`, `byteback-server`)
//! only parse arguments, call a command and map its error to an exit status.

pub mod catalog;
pub mod changes;
pub mod client;
pub mod config;
pub mod config_reference;
pub mod destination;
pub mod error;
pub mod exec;
pub mod finder;
pub mod lifecycle;
pub mod listing;
pub mod names;
pub mod protocol;
pub mod prune;
pub mod quote;
pub mod report;
pub mod server;
pub mod store;
pub mod sys;
pub mod window;

/// The settings of every property test (`proptest`): `cases` cases by
/// default, few enough for CI; `PROPTEST_CASES=N` runs N of each instead,
/// for a long run (see docs/contributing.md, "Property tests and fuzzing").
#[cfg(test)]
pub(crate) fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    proptest::test_runner::Config {
        cases,
        // Shrinking a hostile input can take long; a minute of it is plenty.
        max_shrink_time: 60_000,
        ..proptest::test_runner::Config::default()
    }
}

/// A scratch directory of a unit test, removed when dropped, so a test
/// leaves nothing in the temporary directory even when it fails (no crate
/// for one directory).
#[cfg(test)]
pub(crate) struct ScratchDir(std::path::PathBuf);

#[cfg(test)]
impl ScratchDir {
    /// A new, empty directory named after `what`, unique in this run.
    pub(crate) fn new(what: &str) -> ScratchDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "byteback-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        ScratchDir(path)
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }
}

#[cfg(test)]
impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod cli_tests {
    use clap::CommandFactory;

    /// Every option and argument of every command explains itself in `--help`.
    fn assert_documented(cmd: &clap::Command, path: &str) {
        let path = format!("{path} {}", cmd.get_name());
        assert!(cmd.get_about().is_some(), "{path} has no description");
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") || arg.is_hide_set() {
                continue;
            }
            assert!(arg.get_help().is_some(), "{path}: {id} has no help text");
        }
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            assert_documented(sub, &path);
        }
    }

    #[test]
    fn every_option_has_help() {
        assert_documented(&crate::client::Cli::command(), "");
        assert_documented(&crate::server::Cli::command(), "");
    }
}
