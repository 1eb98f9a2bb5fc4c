//! Where the library's messages to the person running it go: one line
//! each on stderr, prefixed by the running program's name, which the
//! binary sets once. Library code never names a program itself, so the
//! store code says `byteback-server: warning: …` in the forced command
//! (where the client reads it) and `byteback: warning: …` under a local
//! destination.

use std::fmt::Display;
use std::sync::{Mutex, OnceLock};

static PROGRAM: OnceLock<&'static str> = OnceLock::new();

/// In quiet mode, messages are held back: printed only if the run fails.
static HELD: Mutex<Option<Vec<String>>> = Mutex::new(None);

/// Holds every message back until [`release`] (`-q`: silent on success).
pub fn hold() {
    if let Ok(mut held) = HELD.lock() {
        held.get_or_insert_with(Vec::new);
    }
}

/// Prints the messages held back (the run failed), and stops holding.
pub fn release() {
    if let Ok(mut held) = HELD.lock() {
        for line in held.take().unwrap_or_default() {
            eprintln!("{line}");
        }
    }
}

/// Drops the messages held back (the run succeeded).
pub fn discard() {
    if let Ok(mut held) = HELD.lock() {
        held.take();
    }
}

fn emit(line: String) {
    if let Ok(mut held) = HELD.lock() {
        if let Some(lines) = held.as_mut() {
            lines.push(line);
            return;
        }
    }
    eprintln!("{line}");
}

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
    emit(format!("{}: warning: {message}", program()));
}

/// A line from a child program (rsync's own words), passed through.
pub fn relay(line: impl Display) {
    emit(line.to_string());
}

/// A progress or status line.
pub fn note(message: impl Display) {
    emit(format!("{}: {message}", program()));
}
