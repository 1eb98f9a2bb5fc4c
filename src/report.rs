//! Where the library's messages to the person running it go: one line
//! each on stderr, prefixed by the running program's name, which the
//! binary sets once. Library code never names a program itself, so the
//! store code says `byteback-server: warning: …` in the forced command
//! (where the client reads it) and `byteback: warning: …` under a local
//! destination.

use std::fmt::Display;
use std::sync::OnceLock;

static PROGRAM: OnceLock<&'static str> = OnceLock::new();

/// Names the running program (call once, first thing in `main`).
pub fn set_program(name: &'static str) {
    let _ = PROGRAM.set(name);
}

/// The running program's name (`byteback` unless set).
pub fn program() -> &'static str {
    PROGRAM.get().copied().unwrap_or("byteback")
}

/// Something the person should know, that changes nothing about the outcome.
pub fn warn(message: impl Display) {
    eprintln!("{}: warning: {message}", program());
}

/// A progress or status line.
pub fn note(message: impl Display) {
    eprintln!("{}: {message}", program());
}
