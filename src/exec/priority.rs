//! CPU and I/O priority for the client's rsync (`nice`, `ionice` in the
//! client config), so a backup over a slow link does not slow the machine
//! it protects.
//!
//! Set in the child between fork and exec with two system calls
//! (`setpriority`, `ioprio_set`) rather than by putting `nice`/`ionice` in
//! front of rsync's argv: rsync's exit status then reaches us unchanged, the
//! argv stays rsync's own, and nothing depends on those programs being
//! installed. Both calls are async-signal-safe, as a `pre_exec` hook must be.
//! The ssh (or local receiver) that rsync starts inherits both.

use std::fmt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::str::FromStr;

/// An I/O scheduling class and level (`ionice = "idle"`, `"best-effort:7"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoNice {
    /// Disk time only when nobody else wants it.
    Idle,
    /// The normal class, at a level from 0 (first) to 7 (last).
    BestEffort(u8),
}

/// The kernel's numbers (linux/ioprio.h).
const IOPRIO_CLASS_BE: u32 = 2;
const IOPRIO_CLASS_IDLE: u32 = 3;
const IOPRIO_CLASS_SHIFT: u32 = 13;
const IOPRIO_WHO_PROCESS: libc::c_int = 1;

impl IoNice {
    /// The value `ioprio_set` takes.
    fn ioprio(self) -> libc::c_int {
        let (class, level) = match self {
            IoNice::Idle => (IOPRIO_CLASS_IDLE, 0),
            IoNice::BestEffort(level) => (IOPRIO_CLASS_BE, u32::from(level)),
        };
        ((class << IOPRIO_CLASS_SHIFT) | level) as libc::c_int
    }
}

impl FromStr for IoNice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?} is not an I/O class; write \"idle\", \"best-effort\" or \"best-effort:N\" (N from 0, first, to 7, last)"
            )
        };
        match s.split_once(':') {
            None if s == "idle" => Ok(IoNice::Idle),
            // ionice's default level for the class.
            None if s == "best-effort" => Ok(IoNice::BestEffort(4)),
            Some(("best-effort", level)) => match level.parse::<u8>() {
                Ok(n @ 0..=7) if !level.starts_with('+') => Ok(IoNice::BestEffort(n)),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for IoNice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoNice::Idle => f.write_str("idle"),
            IoNice::BestEffort(n) => write!(f, "best-effort:{n}"),
        }
    }
}

impl serde::Serialize for IoNice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for IoNice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Checks a niceness from the config: -20 (first) to 19 (last).
pub fn check_nice(n: i32) -> Result<i32, String> {
    if (-20..=19).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "niceness {n} is out of range; write a number from -20 (first) to 19 (last)"
        ))
    }
}

/// What a child runs with: unchanged where `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Priority {
    /// The niceness (`setpriority`), -20 to 19.
    pub nice: Option<i32>,
    /// The I/O class and level.
    pub io: Option<IoNice>,
}

impl Priority {
    /// Makes `cmd`'s child set its own priority before it runs the program;
    /// a call the kernel refuses makes the spawn fail with that error.
    pub fn apply(self, cmd: &mut Command) {
        if self == Priority::default() {
            return;
        }
        // SAFETY: the closure runs in the forked child before exec; it only
        // makes two async-signal-safe system calls and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(n) = self.nice {
                    if libc::setpriority(libc::PRIO_PROCESS, 0, n) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(io) = self.io {
                    let r = libc::syscall(
                        libc::SYS_ioprio_set,
                        IOPRIO_WHO_PROCESS,
                        0 as libc::c_int,
                        io.ioprio(),
                    );
                    if r != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_classes_parse_and_print() {
        for (text, want) in [
            ("idle", Some(IoNice::Idle)),
            ("best-effort", Some(IoNice::BestEffort(4))),
            ("best-effort:0", Some(IoNice::BestEffort(0))),
            ("best-effort:7", Some(IoNice::BestEffort(7))),
            ("best-effort:8", None),
            ("best-effort:+1", None),
            ("best-effort:", None),
            ("realtime", None),
            ("idle:3", None),
            ("", None),
        ] {
            assert_eq!(text.parse::<IoNice>().ok(), want, "{text:?}");
        }
        assert_eq!(IoNice::BestEffort(4).to_string(), "best-effort:4");
        assert_eq!(IoNice::BestEffort(7).ioprio(), (2 << 13) | 7);
        assert_eq!(IoNice::Idle.ioprio(), 3 << 13);
        assert!(check_nice(19).is_ok() && check_nice(-20).is_ok());
        assert!(check_nice(20).is_err() && check_nice(-21).is_err());
    }

    /// The child really runs with them: `nice` and `ionice` without
    /// arguments print their own process's settings.
    #[test]
    fn a_child_runs_with_them() {
        let priority = Priority {
            nice: Some(15),
            io: Some(IoNice::BestEffort(6)),
        };
        let mut cmd = Command::new("nice");
        priority.apply(&mut cmd);
        let out = cmd.output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "15");
        let mut cmd = Command::new("ionice");
        priority.apply(&mut cmd);
        let out = cmd.output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "best-effort: prio 6"
        );
        let mut cmd = Command::new("ionice");
        Priority {
            nice: None,
            io: Some(IoNice::Idle),
        }
        .apply(&mut cmd);
        let out = cmd.output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "idle");
    }
}
