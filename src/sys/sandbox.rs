//! A kernel sandbox (Landlock) for the rsync a client drives on the server.
//!
//! The forced command's allow-list vets rsync's command line, but rsync
//! also takes instructions inside its protocol stream: filter rules, and
//! merge files named by them, which the server's rsync would open as the
//! backup user. Landlock confines what the child can open whatever it is
//! told, without rsync's cooperation: the client's own directory (read and
//! write for a backup, read only for a restore), the system's programs and
//! libraries (read and execute), and nothing else — no other client, no
//! `/etc`, no `/dev/zero`.
//!
//! Landlock restricts the calling *thread* and whatever it starts, so the
//! child is started from a short-lived thread that confines itself first;
//! the server process itself stays free to write its log and records.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus,
};

use crate::error::{Error, Result};

/// Directories a dynamically linked rsync needs to start: the program, its
/// libraries and the locale/zone data under `/usr`. Missing ones are skipped.
const SYSTEM_DIRS: &[&str] = &["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"];

/// Single files a program may read at start (the loader's cache, the zone
/// for log timestamps) and `/dev/null`, which is empty either way.
const SYSTEM_FILES: &[&str] = &["/etc/ld.so.cache", "/etc/localtime", "/dev/null"];

/// What the confined child may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// The one directory the child works in.
    pub dir: PathBuf,
    /// Whether it may change anything there (a backup) or only read (a restore).
    pub writable: bool,
}

/// Whether the kernel enforced the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enforcement {
    /// Every restriction asked for is in force.
    Full,
    /// The kernel lacks some newer rights; the rest are in force.
    Partial,
    /// The kernel has no (usable) Landlock: nothing is confined.
    None,
}

/// Landlock's second ABI (Linux 5.19) is the least the sandbox accepts: the
/// first one forbids every link or rename across directories, which
/// `--link-dest` needs, so on such kernels the sandbox is not applied at all.
const REQUIRED_ABI: ABI = ABI::V2;
/// Rights of newer ABIs (truncation, device ioctls) are added where known.
const BEST_ABI: ABI = ABI::V5;

impl Confinement {
    /// Starts `cmd` confined; says how far the kernel enforced it.
    pub fn spawn(&self, cmd: &mut Command) -> Result<(Child, Enforcement)> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let enforcement = self.restrict_this_thread()?;
                    let child = cmd.spawn().map_err(|e| {
                        Error::Command(format!(
                            "cannot run {} on the server: {e}",
                            cmd.get_program().to_string_lossy()
                        ))
                    })?;
                    Ok((child, enforcement))
                })
                .join()
                .unwrap_or_else(|_| Err(Error::Command("the sandbox thread failed".into())))
        })
    }

    fn restrict_this_thread(&self) -> Result<Enforcement> {
        let fail = |e: &dyn std::fmt::Display| {
            Error::Unsupported(format!(
                "cannot set up the Landlock sandbox for {}: {e}",
                self.dir.display()
            ))
        };
        let read = AccessFs::from_read(BEST_ABI);
        let data: BitFlags<AccessFs> = if self.writable {
            AccessFs::from_all(BEST_ABI) & !AccessFs::Execute
        } else {
            read & !AccessFs::Execute
        };
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::SoftRequirement)
            .handle_access(AccessFs::from_all(REQUIRED_ABI))
            .map_err(|e| fail(&e))?
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(AccessFs::from_all(BEST_ABI))
            .map_err(|e| fail(&e))?
            .create()
            .map_err(|e| fail(&e))?;
        let dir = PathFd::new(&self.dir).map_err(|e| fail(&e))?;
        ruleset = ruleset
            .add_rule(PathBeneath::new(dir, data))
            .map_err(|e| fail(&e))?;
        for path in SYSTEM_DIRS.iter().map(Path::new).filter(|p| p.exists()) {
            let fd = PathFd::new(path).map_err(|e| fail(&e))?;
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, read))
                .map_err(|e| fail(&e))?;
        }
        let file_read = AccessFs::from_file(BEST_ABI) & read;
        for path in SYSTEM_FILES.iter().map(Path::new).filter(|p| p.exists()) {
            let fd = PathFd::new(path).map_err(|e| fail(&e))?;
            let access = if path == Path::new("/dev/null") {
                AccessFs::from_file(BEST_ABI) & !AccessFs::Execute
            } else {
                file_read & !AccessFs::Execute
            };
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, access))
                .map_err(|e| fail(&e))?;
        }
        let status = ruleset.restrict_self().map_err(|e| fail(&e))?;
        Ok(match status.ruleset {
            RulesetStatus::FullyEnforced => Enforcement::Full,
            RulesetStatus::PartiallyEnforced => Enforcement::Partial,
            RulesetStatus::NotEnforced => Enforcement::None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    fn landlock_here() -> bool {
        // The same probe the kernel offers: a ruleset of nothing.
        Ruleset::default()
            .handle_access(AccessFs::from_all(REQUIRED_ABI))
            .and_then(|r| r.create())
            .is_ok()
    }

    #[test]
    fn child_reads_only_its_directory() {
        let base = std::env::temp_dir().join(format!("byteback-sandbox-{}", std::process::id()));
        let inside = base.join("client");
        let outside = base.join("other");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(inside.join("mine"), "mine\n").unwrap();
        std::fs::write(outside.join("secret"), "secret\n").unwrap();
        let jail = Confinement {
            dir: inside.clone(),
            writable: false,
        };
        let run = |path: &Path| {
            let mut cmd = Command::new("cat");
            cmd.arg(path).stdout(Stdio::piped()).stderr(Stdio::null());
            let (child, enforcement) = jail.spawn(&mut cmd).unwrap();
            (child.wait_with_output().unwrap(), enforcement)
        };
        let (own, enforcement) = run(&inside.join("mine"));
        assert_eq!(own.stdout, b"mine\n");
        let (other, _) = run(&outside.join("secret"));
        let (zero, _) = run(Path::new("/etc/hostname"));
        if landlock_here() {
            assert_ne!(enforcement, Enforcement::None);
            assert!(!other.status.success() && other.stdout.is_empty());
            assert!(!zero.status.success());
        } else {
            eprintln!("*** Landlock is not available on this kernel: confinement not tested ***");
            assert_eq!(enforcement, Enforcement::None);
        }
        // The parent thread is not confined.
        assert_eq!(
            std::fs::read_to_string(outside.join("secret")).unwrap(),
            "secret\n"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
