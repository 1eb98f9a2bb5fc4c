//! What a backup says when it ends: one line for a person, or one JSON
//! object for a program (`--json`), and the error of a partial snapshot.

use crate::error::{Error, Result};
use crate::exec::rsync::Traffic;
use crate::sys::fs::human_bytes;

/// How an attempt transferred, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// Only what the change index found (else a full rsync pass).
    pub incremental: bool,
    /// How many paths rsync was given (incremental).
    pub paths: usize,
    /// Why the pass was full, when an index could have been used.
    pub reason: Option<String>,
}

/// Everything the summary reports.
pub struct Summary<'a> {
    /// The snapshot and the attempts it took, or why there is none.
    pub result: &'a Result<(String, u32)>,
    /// The destination, as configured.
    pub destination: String,
    /// For a store on this machine: where (the line names it).
    pub local_store: Option<&'a std::path::Path>,
    pub traffic: Traffic,
    pub pass: &'a Pass,
    pub started: jiff::Timestamp,
    pub seconds: f64,
}

impl Summary<'_> {
    /// The `--json` object.
    pub fn json(&self) -> serde_json::Value {
        let result = self.result;
        serde_json::json!({
            "result": match result {
                Ok(_) => "ok",
                Err(Error::Partial(_)) => "partial",
                Err(_) => "failed",
            },
            "destination": self.destination,
            "snapshot": result.as_ref().ok().map(|(s, _)| s),
            "attempts": result.as_ref().ok().map(|(_, a)| a),
            "files": self.traffic.files,
            "bytes": self.traffic.bytes,
            "sent": self.traffic.sent,
            "started": self.started.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "duration_seconds": (self.seconds * 10.0).round() / 10.0,
            "error": result.as_ref().err().map(|e| e.to_string()),
            "pass": if self.pass.incremental { "incremental" } else { "full" },
            "incremental": self.pass.incremental,
            "pass_reason": self.pass.reason,
            "paths": self.pass.incremental.then_some(self.pass.paths),
        })
    }

    /// The line for a person, after a snapshot was taken.
    pub fn line(&self, snapshot: &str, attempts: u32) -> String {
        let place = self
            .local_store
            .map(|root| format!(" in {}", root.display()))
            .unwrap_or_default();
        let how = if self.pass.incremental {
            format!("incremental: {} path(s)", self.pass.paths)
        } else {
            "full pass".to_owned()
        };
        format!(
            "Backup complete: snapshot {snapshot}{place} ({} file(s), {} changed, {} sent, {:.1} s, {attempts} attempt(s), {how})",
            self.traffic.files,
            human_bytes(self.traffic.bytes),
            human_bytes(self.traffic.sent),
            self.seconds,
        )
    }
}

/// The error of a backup whose snapshot `snapshot` was taken without the
/// `failed` files: it names the first few.
pub fn partial_error(snapshot: &str, failed: &[String]) -> Error {
    let shown: Vec<&str> = failed.iter().take(5).map(String::as_str).collect();
    let more = failed.len().saturating_sub(shown.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    Error::Partial(format!(
        "backup incomplete: snapshot {snapshot} was taken and marked partial, but {} file(s) could not be transferred: {}{more}",
        failed.len(),
        shown.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary<'a>(result: &'a Result<(String, u32)>, pass: &'a Pass) -> Summary<'a> {
        Summary {
            result,
            destination: "/srv/b".into(),
            local_store: Some(std::path::Path::new("/srv/b")),
            traffic: Traffic {
                files: 3,
                bytes: 2048,
                sent: 100,
            },
            pass,
            started: "2026-01-02T03:04:05Z".parse().unwrap(),
            seconds: 1.26,
        }
    }

    #[test]
    fn an_incremental_backup_says_so() {
        let ok = Ok(("2026-01-02T03:04:07Z".to_owned(), 1));
        let pass = Pass {
            incremental: true,
            paths: 4,
            reason: None,
        };
        let s = summary(&ok, &pass);
        let j = s.json();
        assert_eq!(j["result"], "ok");
        assert_eq!(j["pass"], "incremental");
        assert_eq!(j["incremental"], true);
        assert_eq!(j["paths"], 4);
        assert_eq!(j["duration_seconds"], 1.3);
        assert_eq!(j["started"], "2026-01-02T03:04:05Z");
        assert_eq!(
            s.line("2026-01-02T03:04:07Z", 1),
            "Backup complete: snapshot 2026-01-02T03:04:07Z in /srv/b (3 file(s), 2.0 KiB changed, 100 B sent, 1.3 s, 1 attempt(s), incremental: 4 path(s))"
        );
    }

    #[test]
    fn a_failure_and_a_partial_snapshot() {
        let pass = Pass {
            reason: Some("--full".into()),
            ..Pass::default()
        };
        let failed: Vec<String> = (1..=7).map(|i| format!("/f{i}")).collect();
        let partial = Err(partial_error("2026-01-02T03:04:07Z", &failed));
        let j = summary(&partial, &pass).json();
        assert_eq!(j["result"], "partial");
        assert_eq!(j["pass"], "full");
        assert_eq!(j["pass_reason"], "--full");
        assert!(j["paths"].is_null() && j["snapshot"].is_null());
        let e = j["error"].as_str().unwrap();
        assert!(
            e.ends_with("7 file(s) could not be transferred: /f1, /f2, /f3, /f4, /f5 and 2 more"),
            "{e}"
        );
        let failed = Err(Error::Connection("gone".into()));
        assert_eq!(summary(&failed, &pass).json()["result"], "failed");
    }
}
