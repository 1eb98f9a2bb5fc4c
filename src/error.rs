//! One error type for the library, with the exit code each kind maps to.
//!
//! Every message is meant to be printed as a single line to a sysadmin, so it
//! says what failed, on what, and — where there is one — what to do about it.

use std::path::Path;

/// What went wrong, in words a sysadmin can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line or an argument was wrong.
    #[error("{0}")]
    Usage(String),
    /// A configuration file is missing, unreadable or invalid.
    #[error("{0}")]
    Config(String),
    /// An operating-system call failed on a named object.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A child program (rsync, ssh, btrfs, ...) failed.
    #[error("{0}")]
    Command(String),
    /// Another run holds the lock.
    #[error("{0}")]
    Locked(String),
    /// The server (or the forced command) refused a request.
    #[error("{0}")]
    Refused(String),
    /// The backup finished, but some files could not be transferred.
    #[error("{0}")]
    Partial(String),
    /// The server could not be reached or the connection failed.
    #[error("{0}")]
    Connection(String),
    /// Nothing matched what was asked for.
    #[error("{0}")]
    NotFound(String),
    /// The store is short of space and nothing may be deleted to make room:
    /// a person must add disk space (or wait for a running transfer).
    #[error("{0}")]
    SpaceExhausted(String),
    /// The environment cannot do what was asked (wrong filesystem, missing mount option, ...).
    #[error("{0}")]
    Unsupported(String),
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`, described as `what` (e.g. "cannot read").
    pub fn io(what: &str, path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            what: format!("{what} {}", path.display()),
            source,
        }
    }

    /// The documented exit status for this error (see README, "Exit status").
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Partial(_) => 3,
            Error::Locked(_) => 4,
            Error::Connection(_) => 5,
            Error::Refused(_) => 6,
            Error::Config(_) => 7,
            Error::Unsupported(_) => 8,
            Error::SpaceExhausted(_) => 9,
            Error::Io { .. } | Error::Command(_) | Error::NotFound(_) => 1,
        }
    }
}

/// Adds "what was being done" to a bare `io::Error`.
pub trait IoContext<T> {
    /// Wraps the error as [`Error::Io`] naming the action and the path.
    fn on(self, what: &str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn on(self, what: &str, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(what, path, e))
    }
}
