//! Crash points for the fault tests: in debug builds, the environment
//! variable `BYTEBACK_CRASH_AT=<point>` makes the process kill itself with
//! SIGKILL — no destructors, no flushing, as a power cut or the OOM killer
//! would — when it reaches that point; `<point>:<file>` does so only once,
//! by whoever first creates `<file>`. Release builds compile it away, and a
//! client cannot set a server's environment (sshd passes none of it).

/// Dies here if the fault tests asked for it (debug builds only).
pub fn point(name: &str) {
    #[cfg(debug_assertions)]
    if let Some(asked) = std::env::var_os("BYTEBACK_CRASH_AT") {
        let asked = asked.to_string_lossy();
        let (at, once) = match asked.split_once(':') {
            Some((at, file)) => (at, Some(file)),
            None => (asked.as_ref(), None),
        };
        let first = || {
            once.is_none_or(|file| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(file)
                    .is_ok()
            })
        };
        if at == name && first() {
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
