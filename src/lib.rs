//! byteback: maintenance-free client & server backups over rsync, OpenSSH and btrfs.
//!
//! The library holds all logic; the two binaries (`byteback`, `byteback-server`)
//! only parse arguments, call a command and map its error to an exit status.

pub mod catalog;
pub mod client;
pub mod config;
pub mod destination;
pub mod error;
pub mod exec;
pub mod finder;
pub mod names;
pub mod protocol;
pub mod prune;
pub mod quote;
pub mod report;
pub mod server;
pub mod store;
pub mod sys;
