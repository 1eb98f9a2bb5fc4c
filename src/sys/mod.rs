//! Thin wrappers over the operating system: locks, filesystem facts, mounts,
//! atomic files.

pub mod crash;
pub mod fs;
pub mod kernel;
pub mod lock;
pub mod mountinfo;
pub mod syslog;
pub mod user;
