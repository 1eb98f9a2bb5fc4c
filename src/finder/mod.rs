//! Finding files in a client's snapshots, for `byteback list` and restore.
//!
//! Both name files by absolute paths of the backed-up machine, with
//! shell-like wildcards. The server answers by walking one snapshot (whose
//! top is the client's `/`), and that walk must stay cheap and safe although
//! everything in the store was written by the client: names are arbitrary
//! bytes, symlinks may point anywhere, and a listing may repeat over a
//! hundred snapshots. So the walk reads only the directories a pattern can
//! lead into, never follows a symlink, never leaves the snapshot, streams its
//! matches in byte order without collecting them, and reads each file's real
//! mode and owner from rsync's `--fake-super` xattr (the store only holds
//! files owned by the unprivileged server user).
//!
//! - [`glob`](mod@glob): the pattern language;
//! - [`meta`](mod@meta): the client's metadata of a stored file;
//! - [`digest`](mod@digest): content hashes for `verify --checksum`;
//! - [`walk`](mod@walk): the walk of one snapshot, and the cache shared by
//!   the walks of several.
//!
//! Requests and results cross SSH in the encodings of
//! [`crate::protocol::wire`].

pub mod digest;
pub mod glob;
pub mod meta;
pub mod walk;

pub use glob::{Pattern, PatternError};
pub use meta::{Meta, distinct_versions, mode_string, read_meta};
pub use walk::{DirCache, Found, Walk, Warning, walk};
