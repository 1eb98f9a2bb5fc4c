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
    /// An operating-system call failed on a named object (which may be a
    /// client's path: shown with control characters escaped).
    #[error("{}", crate::quote::one_line(&format!("{what}: {source}")))]
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
    /// The server cannot take an incremental transfer now (no snapshot to
    /// start from, a newer one, `current` not readied): a full pass will
    /// do. A refusal like [`Error::Refused`], told apart by type so the
    /// client never has to read the words.
    #[error("{0}")]
    FullPassNeeded(String),
    /// The server takes no backups now (outside its backup windows) and
    /// says when it will: `at`, the instant its next window opens. A
    /// refusal like [`Error::Refused`], told apart by type so the client
    /// waits for that time without reading the words.
    #[error("{message}")]
    RetryAfter {
        at: jiff::Timestamp,
        message: String,
    },
    /// This client's backups moved to another server (`byteback-server
    /// move-client`): the server refuses its backups and names the new one.
    /// `redirect` is the machine-readable part (a rendered
    /// [`crate::protocol::Redirect`]: the new server and its host keys),
    /// `message` the words for a person. A refusal, told apart by type so
    /// the client follows it without reading the words.
    #[error("{message}")]
    Moved { redirect: String, message: String },
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
    /// The store is short of space and only snapshots a suspect mark pins
    /// (see [`crate::store::suspect`]) could make room: a backup is
    /// refused rather than lose them, until a person acknowledges the mark
    /// (`byteback-server ack`) or adds space. On the wire and in the exit
    /// status it is [`Error::SpaceExhausted`]'s: the client can do nothing
    /// about either.
    #[error("{0}")]
    PinnedBySuspect(String),
    /// Everything works, but the backups need a person: the server reports
    /// a space alert, or this client's last attempt failed.
    #[error("{0}")]
    Attention(String),
    /// The environment cannot do what was asked (wrong filesystem, missing mount option, ...).
    #[error("{0}")]
    Unsupported(String),
    /// A pre-backup hook failed (exit status, signal or timeout), so
    /// nothing was sent.
    #[error("{0}")]
    Hook(String),
    /// `verify`: the backups differ from what they should hold (a file
    /// differs although it did not change since the backup, a snapshot is
    /// writable, metadata is corrupt, ...).
    #[error("{0}")]
    Mismatch(String),
}

/// The exit statuses of both programs, as the README documents them
/// ("Exit status"). (The forced command also passes rsync's own status
/// through to the client, which numbers its failures likewise.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success.
    Success = 0,
    /// A failed operation or child program; for `list`/`restore`, nothing matched.
    Failed = 1,
    /// Bad usage.
    Usage = 2,
    /// The backup was taken, but partial.
    Partial = 3,
    /// Another run holds the lock.
    Locked = 4,
    /// The server could not be reached, or the connection failed.
    Connection = 5,
    /// The server refused the request.
    Refused = 6,
    /// A configuration problem.
    Config = 7,
    /// The filesystem cannot do it (e.g. a store not on btrfs).
    Unsupported = 8,
    /// The store is out of space and nothing may be deleted to make room.
    SpaceExhausted = 9,
    /// `byteback test`: connected, but the backups need attention.
    Attention = 10,
    /// `byteback backup`: a pre-backup hook failed; nothing was sent.
    Hook = 11,
    /// `verify`: the backups differ from what they should hold.
    Mismatch = 12,
}

impl Exit {
    /// The number the process exits with.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
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

    /// The documented exit status for this error.
    pub fn exit_code(&self) -> Exit {
        match self {
            Error::Usage(_) => Exit::Usage,
            Error::Partial(_) => Exit::Partial,
            Error::Locked(_) => Exit::Locked,
            Error::Connection(_) => Exit::Connection,
            Error::Refused(_)
            | Error::FullPassNeeded(_)
            | Error::RetryAfter { .. }
            | Error::Moved { .. } => Exit::Refused,
            Error::Config(_) => Exit::Config,
            Error::Unsupported(_) => Exit::Unsupported,
            Error::SpaceExhausted(_) | Error::PinnedBySuspect(_) => Exit::SpaceExhausted,
            Error::Attention(_) => Exit::Attention,
            Error::Hook(_) => Exit::Hook,
            Error::Mismatch(_) => Exit::Mismatch,
            Error::Io { .. } | Error::Command(_) | Error::NotFound(_) => Exit::Failed,
        }
    }
}

/// A word that cannot go into authorized_keys is a usage error.
impl From<crate::quote::Unquotable> for Error {
    fn from(e: crate::quote::Unquotable) -> Self {
        Error::Usage(e.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's path in an I/O error cannot forge lines (in the log, the
    /// client's terminal, `status`).
    #[test]
    fn io_errors_escape_control_characters() {
        let e = Error::io(
            "cannot read",
            Path::new("/snap/a\nbyteback-server: error: forged\u{1b}[2J"),
            std::io::Error::from_raw_os_error(2),
        );
        let text = e.to_string();
        assert!(!text.contains('\n') && !text.contains('\u{1b}'), "{text}");
        assert!(
            text.starts_with("cannot read /snap/a\\nbyteback-server: error: forged\\u{1b}[2J: "),
            "{text}"
        );
    }

    /// A word authorized_keys cannot hold is the administrator's to fix.
    #[test]
    fn unquotable_words_are_usage_errors() {
        let e = Error::from(crate::quote::forced_command_word("it's").unwrap_err());
        assert_eq!(e.exit_code(), Exit::Usage);
        assert_eq!(
            e.to_string(),
            "\"it's\" cannot be used in authorized_keys: it contains a quote, backslash or newline"
        );
    }

    /// The table the README documents, so the two cannot drift.
    #[test]
    fn exit_codes_are_the_documented_ones() {
        let cases = [
            (Error::Command(String::new()), 1),
            (Error::NotFound(String::new()), 1),
            (
                Error::io("x", Path::new("/"), std::io::Error::other("x")),
                1,
            ),
            (Error::Usage(String::new()), 2),
            (Error::Partial(String::new()), 3),
            (Error::Locked(String::new()), 4),
            (Error::Connection(String::new()), 5),
            (Error::Refused(String::new()), 6),
            (Error::FullPassNeeded(String::new()), 6),
            (
                Error::RetryAfter {
                    at: jiff::Timestamp::UNIX_EPOCH,
                    message: String::new(),
                },
                6,
            ),
            (
                Error::Moved {
                    redirect: String::new(),
                    message: String::new(),
                },
                6,
            ),
            (Error::Config(String::new()), 7),
            (Error::Unsupported(String::new()), 8),
            (Error::SpaceExhausted(String::new()), 9),
            (Error::Attention(String::new()), 10),
            (Error::Hook(String::new()), 11),
            (Error::Mismatch(String::new()), 12),
        ];
        for (error, code) in cases {
            assert!(!error.to_string().contains('\n'), "{error:?}");
            assert_eq!(error.exit_code().code(), code, "{error:?}");
        }
        let readme = include_str!("../README.md");
        for needle in [
            "`6` the server refused",
            "`8` the filesystem cannot do it",
            "`9` the store is out of space",
            "`10` (`byteback test`) the backups need",
            "`11` (`byteback backup`) a pre-backup hook failed",
            "`12` (`byteback verify`, `byteback-server\nverify`) the backups do not hold",
        ] {
            assert!(readme.contains(needle), "README lacks {needle:?}");
        }
    }
}
