//! The system log: one datagram per event to `/dev/log` (journald or a
//! syslog daemon), so what happens reaches central logging and does not
//! depend on a file on the very disk that may be full. Nothing ever fails
//! for want of a log socket (containers have none): a message that cannot
//! be sent is dropped quietly.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

/// How bad an event is (syslog severities).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error = 3,
    Warning = 4,
    Info = 6,
}

/// The daemon facility.
const FACILITY_DAEMON: u8 = 3;

/// The socket to log to: `$BYTEBACK_LOG_SOCKET`, else `configured`, else `/dev/log`.
pub fn socket(configured: Option<&Path>) -> PathBuf {
    std::env::var_os("BYTEBACK_LOG_SOCKET")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| configured.map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("/dev/log"))
}

/// One log line as syslog's wire format has it (pure).
pub fn format(program: &str, severity: Severity, message: &str) -> String {
    let priority = FACILITY_DAEMON * 8 + severity as u8;
    let message: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("<{priority}>{program}[{}]: {message}", std::process::id())
}

/// Sends one message; never fails.
pub fn send(socket: &Path, program: &str, severity: Severity, message: &str) {
    if let Ok(sock) = UnixDatagram::unbound() {
        let _ = sock.send_to(format(program, severity, message).as_bytes(), socket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_delivery() {
        let line = format("byteback-server", Severity::Warning, "a\nb");
        assert!(line.starts_with("<28>byteback-server["), "{line}");
        assert!(line.ends_with("]: a b"), "{line}");
        let dir = std::env::temp_dir().join(format!("byteback-syslog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        send(&path, "byteback", Severity::Info, "hello");
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("]: hello"));
        // No socket: nothing happens, nothing fails.
        send(
            &dir.join("missing.sock"),
            "byteback",
            Severity::Error,
            "lost",
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
