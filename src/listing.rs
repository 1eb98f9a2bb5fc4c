//! What `list` and `restore` ask for and how their answers print, for
//! both programs: the query (clap arguments shared by `byteback
//! list`/`restore` and `byteback-server list`), its one "nothing matched"
//! error, the row printers (a table, or one JSON object per line), and a
//! snapshot as JSON (`snapshots --json` of both).
//!
//! It lives outside `client/` and `server/` so that neither program's
//! commands import the other's.

use jiff::Timestamp;

use crate::catalog::{Row, display_path};
use crate::error::{Error, Result};
use crate::finder;

const UTC: &str = "%Y-%m-%dT%H:%M:%SZ";

/// Which files, in which snapshots.
#[derive(Debug, Clone, clap::Args)]
pub struct Query {
    /// Glob patterns of paths (*, **, ?, [set], {a,b}); relative ones start at the current directory.
    #[arg(required = true, value_name = "PATTERN")]
    pub patterns: Vec<std::ffi::OsString>,
    /// Only these snapshots: a name or a glob of names (`current` is the live copy).
    #[arg(long, value_name = "NAME")]
    pub snapshot: Option<String>,
    /// Every distinct version of each path, not only the newest.
    #[arg(long)]
    pub all: bool,
}

impl Query {
    /// The patterns, made absolute (relative ones start at the current
    /// directory).
    pub fn absolute_patterns(&self) -> Result<Vec<Vec<u8>>> {
        let cwd = std::env::current_dir()
            .map_err(|e| Error::Usage(format!("cannot tell the current directory: {e}")))?;
        Ok(self
            .patterns
            .iter()
            .map(|p| {
                let bytes = std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str());
                if bytes.starts_with(b"/") {
                    bytes.to_vec()
                } else {
                    let mut full = std::os::unix::ffi::OsStrExt::as_bytes(cwd.as_os_str()).to_vec();
                    full.push(b'/');
                    full.extend_from_slice(bytes);
                    full
                }
            })
            .collect())
    }

    /// The glob of snapshot names asked for (default: every snapshot).
    pub fn snapshot_glob(&self) -> Vec<u8> {
        self.snapshot
            .clone()
            .unwrap_or_else(|| "*".into())
            .into_bytes()
    }

    /// The error when nothing matched.
    pub fn no_match(&self) -> Error {
        let shown: Vec<String> = self
            .patterns
            .iter()
            .map(|p| display_path(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str())))
            .collect();
        Error::NotFound(format!(
            "nothing in the backups matches {}{}",
            shown.join(" "),
            self.snapshot
                .as_ref()
                .map(|s| format!(" in snapshots {s}"))
                .unwrap_or_default()
        ))
    }
}

/// The table's header line.
pub fn table_header() -> String {
    format!(
        "{:<20}  {:<10}  {:>12}  {:>6}  {:>6}  {:<20}  path",
        "snapshot", "mode", "size", "uid", "gid", "mtime"
    )
}

fn mtime_text(secs: i64) -> String {
    Timestamp::from_second(secs).map_or(secs.to_string(), |t| t.strftime(UTC).to_string())
}

/// One table line for a row.
pub fn table_line(row: &Row) -> String {
    let m = &row.found.meta;
    let mut line = format!(
        "{:<20}  {:<10}  {:>12}  {:>6}  {:>6}  {:<20}  {}",
        row.snapshot,
        finder::mode_string(m.mode),
        m.size,
        m.uid,
        m.gid,
        mtime_text(m.mtime),
        display_path(&row.found.path)
    );
    if let Some(target) = &m.symlink_target {
        line.push_str(" -> ");
        line.push_str(&display_path(target));
    }
    line
}

/// One JSON object (one line) for a row.
pub fn json_line(row: &Row) -> String {
    let m = &row.found.meta;
    let mut value = serde_json::json!({
        "snapshot": row.snapshot,
        "time": row.time.map(|t| t.strftime(UTC).to_string()),
        "mode": finder::mode_string(m.mode),
        "size": m.size,
        "uid": m.uid,
        "gid": m.gid,
        "mtime": mtime_text(m.mtime),
        "path": String::from_utf8_lossy(&row.found.path),
        "target": m.symlink_target.as_deref().map(String::from_utf8_lossy),
    });
    // JSON strings are Unicode: a name that is not UTF-8 also comes
    // percent-encoded (`%XX` for each byte outside `[A-Za-z0-9._/-]`), so
    // nothing is lost.
    let raw = [
        ("path_encoded", Some(&row.found.path[..])),
        ("target_encoded", m.symlink_target.as_deref()),
    ];
    for (field, bytes) in raw {
        if let Some(bytes) = bytes.filter(|b| std::str::from_utf8(b).is_err()) {
            value[field] = crate::protocol::wire::encode_arg(bytes).into();
        }
    }
    value.to_string()
}

/// Prints rows as they come: a table (its header before the first row) or
/// one JSON object per line.
pub struct Printer {
    out: std::io::BufWriter<std::io::StdoutLock<'static>>,
    json: bool,
    /// Rows printed so far.
    pub count: u64,
}

impl Printer {
    /// A printer to standard output.
    pub fn new(json: bool) -> Printer {
        Printer {
            out: std::io::BufWriter::new(std::io::stdout().lock()),
            json,
            count: 0,
        }
    }

    /// Prints one row.
    pub fn row(&mut self, row: &Row) -> Result<()> {
        use std::io::Write;
        let failed = |e| Error::Io {
            what: "cannot write the listing".into(),
            source: e,
        };
        if self.count == 0 && !self.json {
            writeln!(self.out, "{}", table_header()).map_err(failed)?;
        }
        self.count += 1;
        let line = if self.json {
            json_line(row)
        } else {
            table_line(row)
        };
        writeln!(self.out, "{line}").map_err(failed)
    }

    /// Flushes; the number of rows printed.
    pub fn finish(mut self) -> u64 {
        use std::io::Write;
        let _ = self.out.flush();
        self.count
    }
}

/// One snapshot as a JSON object (both programs' `snapshots --json`).
pub fn snapshot_json(
    client: Option<&str>,
    s: &crate::names::SnapshotName,
    partial: bool,
    now: Timestamp,
) -> serde_json::Value {
    let mut value = serde_json::json!({
        "name": s.as_str(),
        "time": s.time().strftime(UTC).to_string(),
        "age_seconds": now.duration_since(s.time()).as_secs(),
        "partial": partial,
    });
    if let Some(client) = client {
        value["client"] = client.into();
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_print_on_one_line() {
        let row = crate::protocol::reply::sample_row();
        let t = table_line(&row);
        assert!(
            t.starts_with("2026-11-26T05:07:09Z  lrwxrwxrwx")
                && t.ends_with("/home/a b/new\\nline\u{fffd} -> ../etc/x"),
            "{t}"
        );
        let j: serde_json::Value = serde_json::from_str(&json_line(&row)).unwrap();
        assert_eq!(j["mode"], "lrwxrwxrwx");
        assert_eq!(j["time"], "2026-11-26T05:07:09Z");
        assert_eq!(j["mtime"], "2017-07-14T02:40:00Z");
        // The sample's name is not UTF-8: its bytes come encoded too.
        let encoded = j["path_encoded"].as_str().unwrap();
        assert_eq!(
            crate::protocol::wire::decode_arg(encoded).unwrap(),
            row.found.path
        );
        assert!(j.get("target_encoded").is_none(), "{j}");
    }
}
