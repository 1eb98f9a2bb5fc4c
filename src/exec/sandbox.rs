//! A kernel sandbox for the rsync a client drives on the server.
//!
//! The forced command's allow-list vets rsync's command line, but rsync
//! also takes instructions inside its protocol stream: filter rules, and
//! merge files named by them, which the server's rsync would open as the
//! backup user. So the child is confined by the kernel, whatever it is
//! told and whatever rsync version it is, in two layers:
//!
//! 1. **A private view of the filesystem** (an unprivileged user and mount
//!    namespace): the child's `/` is an empty tmpfs holding the system's
//!    programs and libraries and the client's own directory at `/client`.
//!    Nothing else exists for it, so a path outside is not even there to be
//!    probed: any name gives "no such file". Where the kernel does not
//!    allow unprivileged namespaces, this layer is skipped (and logged).
//! 2. **Landlock**: the child may read and write (a backup) or only read
//!    (a restore) the client's directory, read and execute the system's
//!    programs, and nothing else — no other client, no `/etc`, no
//!    `/dev/zero`. Rules follow inodes, so they hold inside the private view.
//!    A backup may change only its working directory (`current`): the
//!    snapshots beside it, its `--link-dest` sources, stay as they are —
//!    no file created, removed, renamed or replaced in them (see
//!    [`Confinement::ruleset`] for what hard links leave open). Where the
//!    kernel has Landlock's sixth ABI (Linux 6.12), the child is also
//!    *scoped*: it may signal no process and reach no abstract unix socket
//!    outside its own sandbox (not a prune, not another client's receiver,
//!    not the server that relays it). [`layers`] says which of these the
//!    running kernel gives.
//!
//! Both are set up in the child between fork and exec, so the server
//! process itself stays free to write its log and records.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;

use landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, Scope,
};
use rustix::fs::{Mode, OFlags};

use super::Cmd;
use crate::error::{Error, Result};

/// Directories a dynamically linked rsync needs to start: the program, its
/// libraries and the locale/zone data under `/usr`. Missing ones are skipped.
const SYSTEM_DIRS: &[&str] = &["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"];

/// Single files a program may read at start (the loader's cache, the zone
/// for log timestamps) and `/dev/null`, which is empty either way.
const SYSTEM_FILES: &[&str] = &["/etc/ld.so.cache", "/etc/localtime", "/dev/null"];

/// Where the client's directory appears in the private view.
pub const PRIVATE_CLIENT_DIR: &str = "/client";

/// Where the private root is assembled (any directory that exists; the
/// tmpfs mounted over it is seen by the child alone).
const ASSEMBLY_POINT: &str = "/tmp";

/// Where a program outside the system's directories (a configured rsync)
/// appears in the private view.
const PRIVATE_PROGRAM: &str = "/program";

/// What the confined child may touch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Confinement {
    /// The one directory the child works in.
    pub dir: PathBuf,
    /// Whether it may change anything there (a backup) or only read (a restore).
    pub writable: bool,
    /// The child's working directory, relative to `dir`.
    pub cwd: PathBuf,
    /// The program the child runs (absolute), if it may live outside the
    /// system's directories (a configured rsync): it is made visible and
    /// executable in the sandbox, at [`View::program`].
    pub program: Option<PathBuf>,
    /// Layers switched off by the administrator (see [`Limits`]).
    pub limits: Limits,
}

/// Layers of the sandbox an administrator may switch off or cap
/// (`[sandbox]` in server.toml): to run where the kernel lacks them in the
/// same way it would, and to test every such machine on one. Off by
/// default: everything the kernel gives is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Never make the private view (as where unprivileged user namespaces
    /// are not allowed).
    pub no_private_view: bool,
    /// Use at most this Landlock ABI (0: no Landlock at all).
    pub max_landlock_abi: Option<u32>,
}

/// What the confined child sees: its directory and its program.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// [`Confinement::dir`], as the child sees it.
    pub dir: &'a Path,
    /// [`Confinement::program`], as the child sees it (`None`: none given).
    pub program: Option<&'a Path>,
}

/// How far the kernel confines the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enforcement {
    /// Landlock is in force.
    pub landlock: bool,
    /// The child sees only its private view of the filesystem.
    pub private_view: bool,
    /// Landlock also keeps the child from signalling processes and
    /// reaching abstract unix sockets outside its sandbox (ABI 6).
    pub scoped: bool,
}

/// Landlock's second ABI (Linux 5.19) is the least the sandbox uses: the
/// first one forbids every link or rename across directories, which
/// `--link-dest` needs, so on such kernels Landlock is not applied at all.
const REQUIRED_ABI: ABI = ABI::V2;
/// Rights of newer ABIs (truncation, device ioctls) are added where known.
const BEST_ABI: ABI = ABI::V5;
/// The ABI (Linux 6.12) that scopes signals and abstract unix sockets.
const SCOPE_ABI: ABI = ABI::V6;

/// Which Landlock layers the running kernel gives the server's rsync (the
/// private view is tried at each transfer, and its absence logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layers {
    /// The kernel's Landlock ABI version (0 or less: none, or disabled).
    pub abi: i32,
    /// Filesystem rules are applied (ABI 2 or later).
    pub filesystem: bool,
    /// Signals and abstract unix sockets are scoped (ABI 6 or later).
    pub scoped: bool,
}

/// The Landlock layers of the running kernel.
pub fn layers() -> Layers {
    Layers::of_abi(landlock_abi())
}

impl Layers {
    /// What a kernel with Landlock ABI `abi` gives.
    pub fn of_abi(abi: i32) -> Layers {
        Layers {
            abi,
            filesystem: abi >= REQUIRED_ABI as i32,
            scoped: abi >= SCOPE_ABI as i32,
        }
    }
}

impl std::fmt::Display for Layers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.filesystem, self.scoped) {
            (true, true) => write!(
                f,
                "Landlock ABI {}: filesystem rules, signal and abstract-socket scoping",
                self.abi
            ),
            (true, false) => write!(
                f,
                "Landlock ABI {}: filesystem rules; no signal or abstract-socket scoping (needs Linux 6.12 or later)",
                self.abi
            ),
            (false, _) if self.abi > 0 => write!(
                f,
                "Landlock ABI {}: not used (needs ABI 2, Linux 5.19 or later)",
                self.abi
            ),
            (false, _) => {
                f.write_str("no Landlock (kernel older than 5.13, or landlock not among its LSMs)")
            }
        }
    }
}

impl Confinement {
    /// Starts `command(the directory as the child sees it)` confined, and
    /// says how far the kernel confined it. Falls back to Landlock alone
    /// where the private view cannot be made; the child then starts in the
    /// caller's working directory, which must be `dir.join(cwd)`.
    pub fn spawn(&self, mut command: impl FnMut(View<'_>) -> Cmd) -> Result<(Child, Enforcement)> {
        let layers = self.layers();
        let landlock = layers.filesystem;
        let scoped = landlock && layers.scoped;
        let outside = self.program_outside_system();
        let real_program = self.program.as_deref();
        if !self.limits.no_private_view {
            let private = PrivateRoot::prepare(self).map_err(|e| self.fail(&e))?;
            let view = View {
                dir: Path::new(PRIVATE_CLIENT_DIR),
                program: match outside {
                    true => Some(Path::new(PRIVATE_PROGRAM)),
                    false => real_program,
                },
            };
            let mut cmd = command(view).into_command();
            self.arm(&mut cmd, layers, Some(private))?;
            match cmd.spawn() {
                Ok(child) => {
                    return Ok((
                        child,
                        Enforcement {
                            landlock,
                            private_view: true,
                            scoped,
                        },
                    ));
                }
                Err(e) if e.raw_os_error() == Some(NO_PRIVATE_VIEW) => {}
                Err(e) => return Err(self.cannot_run(&cmd, &e)),
            }
        }
        // The caller's working directory (pinned there) is the child's.
        let view = View {
            dir: &self.dir,
            program: real_program,
        };
        let mut cmd = command(view).into_command();
        self.arm(&mut cmd, layers, None)?;
        let child = cmd.spawn().map_err(|e| self.cannot_run(&cmd, &e))?;
        Ok((
            child,
            Enforcement {
                landlock,
                private_view: false,
                scoped,
            },
        ))
    }

    fn cannot_run(&self, cmd: &Command, e: &std::io::Error) -> Error {
        Error::Command(format!(
            "cannot run {} confined to {}: {e}",
            cmd.get_program().to_string_lossy(),
            self.dir.display()
        ))
    }

    fn fail(&self, e: &dyn std::fmt::Display) -> Error {
        Error::Unsupported(format!(
            "cannot set up the sandbox for {}: {e}",
            self.dir.display()
        ))
    }

    /// The Landlock layers this child gets: what the kernel gives, within
    /// the administrator's cap.
    pub fn layers(&self) -> Layers {
        let kernel = landlock_abi();
        let abi = match self.limits.max_landlock_abi {
            Some(cap) => kernel.min(i32::try_from(cap).unwrap_or(i32::MAX)),
            None => kernel,
        };
        Layers::of_abi(abi)
    }

    /// Whether the program lives outside the directories the view shows.
    fn program_outside_system(&self) -> bool {
        self.program
            .as_deref()
            .is_some_and(|p| !SYSTEM_DIRS.iter().any(|d| p.starts_with(d)))
    }

    /// Makes `cmd` set up its private view (if given) and restrict itself
    /// with Landlock (if `layers` has it) before it starts.
    fn arm(&self, cmd: &mut Command, layers: Layers, private: Option<PrivateRoot>) -> Result<()> {
        let ruleset = match layers.filesystem {
            true => Some(self.ruleset(layers).map_err(|e| self.fail(&e))?),
            false => None,
        };
        // The closure must be Sync; it runs once, in the child alone.
        let ruleset = Mutex::new(ruleset);
        // SAFETY: between fork and exec the closure makes system calls only:
        // the paths and contents it uses were prepared (allocated) before
        // the fork, and the mutex is this closure's own, never contended.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(private) = &private {
                    private
                        .enter()
                        .map_err(|_| std::io::Error::from_raw_os_error(NO_PRIVATE_VIEW))?;
                }
                let ruleset = ruleset.lock().ok().and_then(|mut r| r.take());
                if let Some(ruleset) = ruleset {
                    ruleset
                        .restrict_self()
                        .map_err(|_| std::io::Error::from_raw_os_error(libc::EPERM))?;
                }
                Ok(())
            });
        }
        Ok(())
    }

    /// The Landlock rules. A restore reads the client's directory; a backup
    /// changes only its working directory (`current`) and reads the rest,
    /// its snapshots and `--link-dest` sources: no entry may be made,
    /// removed or renamed there. A hard link into `current` may not give
    /// the file more rights than it had where it was (Landlock refuses
    /// with `EXDEV`, and rsync would then copy what `--link-dest` should
    /// link), so files keep in the snapshots the rights they get in
    /// `current`: the content of a file a plain snapshot shares with
    /// `current` is as writable through either name (an inode has one
    /// content; the transfer's options keep rsync from writing in place,
    /// and btrfs snapshots are read-only subvolumes). Signals and abstract
    /// sockets are scoped where the kernel can.
    fn ruleset(&self, layers: Layers) -> std::result::Result<RulesetCreated, String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        // The newest ABI used: the kernel's (or the administrator's cap),
        // up to what this code knows.
        let best = abi_of(layers.abi.min(BEST_ABI as i32));
        let read = AccessFs::from_read(best);
        let all: BitFlags<AccessFs> = AccessFs::from_all(best) & !AccessFs::Execute;
        let file_rights = AccessFs::from_file(best) & !AccessFs::Execute;
        let beside_work = self.writable && !self.cwd.as_os_str().is_empty();
        let data = match (self.writable, beside_work) {
            (false, _) => read & !AccessFs::Execute,
            (true, false) => all,
            (true, true) => (read & !AccessFs::Execute) | file_rights | AccessFs::Refer,
        };
        let mut handled = Ruleset::default()
            .set_compatibility(CompatLevel::SoftRequirement)
            .handle_access(AccessFs::from_all(REQUIRED_ABI))
            .map_err(|x| e(&x))?
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(AccessFs::from_all(best))
            .map_err(|x| e(&x))?;
        // Scoping only where it is in force: the crate refuses an empty
        // scope ("empty access-right"), which would fail every transfer on
        // kernels before 6.12 and under a `landlock_max_abi` below 6.
        if layers.scoped {
            handled = handled
                .scope(Scope::from_all(SCOPE_ABI))
                .map_err(|x| e(&x))?;
        }
        let mut ruleset = handled.create().map_err(|x| e(&x))?;
        let dir = rustix::fs::open(
            &self.dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|x| e(&x))?;
        if beside_work {
            // The working directory itself, never through a symlink.
            let work = rustix::fs::openat(
                &dir,
                &self.cwd,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|x| format!("{}: {x}", self.dir.join(&self.cwd).display()))?;
            ruleset = ruleset
                .add_rule(PathBeneath::new(work, all))
                .map_err(|x| e(&x))?;
        }
        ruleset = ruleset
            .add_rule(PathBeneath::new(dir, data))
            .map_err(|x| e(&x))?;
        for path in SYSTEM_DIRS.iter().map(Path::new).filter(|p| p.exists()) {
            let fd = PathFd::new(path).map_err(|x| e(&x))?;
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, read))
                .map_err(|x| e(&x))?;
        }
        if let Some(program) = self
            .program
            .as_deref()
            .filter(|_| self.program_outside_system())
        {
            // The configured program itself (its libraries are the system's).
            let fd = PathFd::new(program).map_err(|x| format!("{}: {x}", program.display()))?;
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, AccessFs::from_file(best) & read))
                .map_err(|x| e(&x))?;
        }
        let file = AccessFs::from_file(best) & !AccessFs::Execute;
        for path in SYSTEM_FILES.iter().map(Path::new).filter(|p| p.exists()) {
            let access = match path == Path::new("/dev/null") {
                true => file,
                false => file & read,
            };
            let fd = PathFd::new(path).map_err(|x| e(&x))?;
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, access))
                .map_err(|x| e(&x))?;
        }
        Ok(ruleset)
    }
}

/// The errno a child reports when its private view could not be made
/// (unprivileged namespaces not allowed here): the parent then starts it
/// again without one.
const NO_PRIVATE_VIEW: i32 = libc::ENOTSUP;

/// The `landlock` crate's name for ABI `n` (2 at the least: the least the
/// sandbox uses).
fn abi_of(n: i32) -> ABI {
    match n {
        ..=2 => ABI::V2,
        3 => ABI::V3,
        4 => ABI::V4,
        5 => ABI::V5,
        _ => ABI::V6,
    }
}

/// The Landlock ABI version of the running kernel (0 or less: none).
pub fn landlock_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute and size 0, this only asks for the version.
    unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        ) as i32
    }
}

/// One thing in the private root.
#[derive(Debug)]
enum Entry {
    /// A directory bound from the host.
    Dir { source: CString, target: CString },
    /// A file bound from the host (the mount point is made first).
    File { source: CString, target: CString },
    /// A symlink, as on the host (merged-/usr systems: `/lib -> usr/lib`).
    Symlink { target: CString, content: CString },
}

/// Everything the child needs to build its private root, prepared before
/// the fork (where allocation is allowed).
#[derive(Debug)]
struct PrivateRoot {
    assembly: CString,
    entries: Vec<Entry>,
    /// The client's directory, and its device and inode as the parent saw
    /// it (opened without following symlinks): the child binds the same
    /// directory or none.
    client: CString,
    client_id: (u64, u64),
    client_target: CString,
    put_old: CString,
    old_root: CString,
    cwd: CString,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
}

fn c_path(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

impl PrivateRoot {
    fn prepare(jail: &Confinement) -> std::io::Result<PrivateRoot> {
        let assembly = Path::new(ASSEMBLY_POINT);
        let inside = |p: &Path| c_path(&assembly.join(p.strip_prefix("/").unwrap_or(p)));
        let mut entries = Vec::new();
        for dir in SYSTEM_DIRS.iter().map(Path::new) {
            match std::fs::symlink_metadata(dir) {
                Ok(m) if m.file_type().is_symlink() => entries.push(Entry::Symlink {
                    target: inside(dir)?,
                    content: c_path(&std::fs::read_link(dir)?)?,
                }),
                Ok(m) if m.is_dir() => entries.push(Entry::Dir {
                    source: c_path(dir)?,
                    target: inside(dir)?,
                }),
                _ => {}
            }
        }
        for file in SYSTEM_FILES.iter().map(Path::new).filter(|p| p.exists()) {
            entries.push(Entry::File {
                source: c_path(file)?,
                target: inside(file)?,
            });
        }
        if let Some(program) = jail
            .program
            .as_deref()
            .filter(|_| jail.program_outside_system())
        {
            entries.push(Entry::File {
                source: c_path(program)?,
                target: inside(Path::new(PRIVATE_PROGRAM))?,
            });
        }
        let pinned = rustix::fs::open(
            &jail.dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let stat = rustix::fs::fstat(&pinned)?;
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        let private_client = Path::new(PRIVATE_CLIENT_DIR);
        Ok(PrivateRoot {
            assembly: c_path(assembly)?,
            entries,
            client: c_path(&jail.dir)?,
            client_id: (stat.st_dev, stat.st_ino),
            client_target: inside(private_client)?,
            put_old: inside(Path::new("/.old"))?,
            old_root: c_path(Path::new("/.old"))?,
            cwd: c_path(&private_client.join(&jail.cwd))?,
            uid_map: format!("{uid} {uid} 1").into_bytes(),
            gid_map: format!("{gid} {gid} 1").into_bytes(),
        })
    }

    /// Runs in the child: a new user and mount namespace whose root is a
    /// tmpfs holding only the entries and the client's directory.
    fn enter(&self) -> rustix::io::Result<()> {
        use rustix::fs::{CWD, mkdirat, openat, symlinkat};
        use rustix::mount::{
            MountFlags, MountPropagationFlags, UnmountFlags, mount, mount_bind_recursive,
            mount_change, unmount,
        };
        use rustix::thread::UnshareFlags;
        // SAFETY: the child is single-threaded and shares no file table.
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWUSER | UnshareFlags::NEWNS)? };
        let write = |path: &std::ffi::CStr, data: &[u8]| -> rustix::io::Result<()> {
            let fd = openat(CWD, path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
            rustix::io::write(&fd, data).map(drop)
        };
        write(c"/proc/self/setgroups", b"deny")?;
        write(c"/proc/self/uid_map", &self.uid_map)?;
        write(c"/proc/self/gid_map", &self.gid_map)?;
        mount_change(
            c"/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )?;
        // Opened again in the new namespace (a bind mount's source must be
        // in the caller's), before anything is mounted over it; checked to
        // be the directory the parent pinned.
        let client = openat(
            CWD,
            self.client.as_c_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let stat = rustix::fs::fstat(&client)?;
        if (stat.st_dev, stat.st_ino) != self.client_id {
            return Err(rustix::io::Errno::STALE);
        }
        mount(
            c"tmpfs",
            self.assembly.as_c_str(),
            c"tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            c"mode=0755,size=1m",
        )?;
        let dir_mode = Mode::from_raw_mode(0o755);
        for entry in &self.entries {
            match entry {
                Entry::Dir { source, target } => {
                    mkdirat(CWD, target.as_c_str(), dir_mode)?;
                    mount_bind_recursive(source.as_c_str(), target.as_c_str())?;
                }
                Entry::File { source, target } => {
                    make_parent(target)?;
                    drop(openat(
                        CWD,
                        target.as_c_str(),
                        OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o644),
                    )?);
                    mount_bind_recursive(source.as_c_str(), target.as_c_str())?;
                }
                Entry::Symlink { target, content } => {
                    symlinkat(content.as_c_str(), CWD, target.as_c_str())?;
                }
            }
        }
        mkdirat(CWD, self.client_target.as_c_str(), dir_mode)?;
        let mut via_fd = [0u8; 32];
        let source = proc_fd_path(&client, &mut via_fd);
        mount_bind_recursive(source, self.client_target.as_c_str())?;
        mkdirat(CWD, self.put_old.as_c_str(), dir_mode)?;
        rustix::process::pivot_root(self.assembly.as_c_str(), self.put_old.as_c_str())?;
        rustix::process::chdir(c"/")?;
        unmount(self.old_root.as_c_str(), UnmountFlags::DETACH)?;
        rustix::fs::rmdir(self.old_root.as_c_str())?;
        rustix::process::chdir(self.cwd.as_c_str())
    }
}

/// Makes the parent directory of `path` inside the tmpfs (one level: the
/// system files live in `/etc` and `/dev`).
fn make_parent(path: &std::ffi::CStr) -> rustix::io::Result<()> {
    let bytes = path.to_bytes();
    let Some(slash) = bytes.iter().rposition(|&b| b == b'/') else {
        return Ok(());
    };
    let mut buf = [0u8; 256];
    if slash >= buf.len() {
        return Err(rustix::io::Errno::NAMETOOLONG);
    }
    buf[..slash].copy_from_slice(&bytes[..slash]);
    let parent = std::ffi::CStr::from_bytes_until_nul(&buf[..=slash])
        .map_err(|_| rustix::io::Errno::INVAL)?;
    match rustix::fs::mkdirat(rustix::fs::CWD, parent, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `/proc/self/fd/<fd>` in `buf`, without allocating.
fn proc_fd_path<'a>(fd: &OwnedFd, buf: &'a mut [u8; 32]) -> &'a std::ffi::CStr {
    use std::os::fd::AsRawFd;
    let prefix = b"/proc/self/fd/";
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut n = fd.as_raw_fd().max(0) as u32;
    let mut digits = [0u8; 10];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[prefix.len() + i] = digits[len - 1 - i];
    }
    buf[prefix.len() + len] = 0;
    std::ffi::CStr::from_bytes_until_nul(&buf[..]).unwrap_or(c"/proc/self/fd/-1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    /// Runs `argv` confined as a backup is, in `dir`'s `current`: whether
    /// it succeeded, its stderr, and how far it was confined.
    fn in_backup_jail(dir: &Path, argv: &[&str]) -> (bool, String, Enforcement) {
        let jail = Confinement {
            dir: dir.to_owned(),
            writable: true,
            cwd: "current".into(),
            ..Confinement::default()
        };
        let (child, enforcement) = jail
            .spawn(|_view| {
                Cmd::new(argv[0]).args(&argv[1..]).configure(|c| {
                    c.stdout(Stdio::piped()).stderr(Stdio::piped());
                })
            })
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), err, enforcement)
    }

    #[test]
    fn a_backup_changes_only_current_and_still_links() {
        use std::os::unix::fs::MetadataExt;
        // Removed however the test ends.
        let scratch = crate::ScratchDir::new("plain");
        let base = scratch.path().to_path_buf();
        let snap = base.join("2026-11-26T03:00:00Z");
        std::fs::create_dir_all(base.join("current")).unwrap();
        std::fs::create_dir_all(snap.join("sub")).unwrap();
        std::fs::write(snap.join("f"), "kept\n").unwrap();
        // --link-dest's hard link still links (a copy would double a plain
        // store's size).
        let (ok, err, enforcement) =
            in_backup_jail(&base, &["ln", "../2026-11-26T03:00:00Z/f", "linked"]);
        assert!(ok, "{err}");
        assert_eq!(std::fs::metadata(snap.join("f")).unwrap().nlink(), 2);
        let (ok, err, _) = in_backup_jail(
            &base,
            &["sh", "-c", "echo new > made && mkdir d && mv made d/"],
        );
        assert!(ok, "{err}");
        if !enforcement.landlock {
            eprintln!("*** Landlock is not available on this kernel: not tested ***");
            return;
        }
        let s = "../2026-11-26T03:00:00Z";
        for argv in [
            vec!["touch".to_owned(), format!("{s}/new")],
            vec!["mkdir".to_owned(), format!("{s}/d")],
            vec!["rm".to_owned(), format!("{s}/f")],
            vec!["rmdir".to_owned(), format!("{s}/sub")],
            vec!["mv".to_owned(), format!("{s}/f"), format!("{s}/g")],
            vec!["mv".to_owned(), format!("{s}/f"), "stolen".to_owned()],
            vec![
                "ln".to_owned(),
                "-s".to_owned(),
                "/".to_owned(),
                format!("{s}/root"),
            ],
            vec!["mv".to_owned(), s.to_owned(), "../old".to_owned()],
            vec!["mkdir".to_owned(), "../2026-11-27T03:00:00Z".to_owned()],
        ] {
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let (ok, err, _) = in_backup_jail(&base, &argv);
            assert!(!ok, "{argv:?} succeeded");
            assert!(
                err.contains("ermission denied") || err.contains("cross-device"),
                "{argv:?}: {err}"
            );
        }
        assert_eq!(std::fs::read_to_string(snap.join("f")).unwrap(), "kept\n");
        let mut names: Vec<_> = std::fs::read_dir(&snap)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["f", "sub"]);
    }

    #[test]
    fn a_ruleset_without_scoping_is_made() {
        // An ABI below 6 (a kernel before 6.12, or a cap) has no scoping:
        // the ruleset is still made, without it.
        let dir = std::env::temp_dir();
        for cap in [2, 3, 5, 6] {
            let jail = Confinement {
                dir: dir.clone(),
                limits: Limits {
                    no_private_view: false,
                    max_landlock_abi: Some(cap),
                },
                ..Confinement::default()
            };
            let layers = jail.layers();
            if layers.filesystem {
                assert_eq!(layers.scoped, cap >= 6 && landlock_abi() >= 6);
                if let Err(e) = jail.ruleset(layers) {
                    panic!("ABI {cap}: {e}");
                }
            }
        }
    }

    #[test]
    fn layers_follow_the_abi() {
        let none = Layers::of_abi(-1);
        assert!(!none.filesystem && !none.scoped);
        assert!(none.to_string().starts_with("no Landlock"), "{none}");
        let one = Layers::of_abi(1);
        assert!(
            !one.filesystem && one.to_string().contains("not used"),
            "{one}"
        );
        let five = Layers::of_abi(5);
        assert!(five.filesystem && !five.scoped);
        assert!(five.to_string().contains("no signal"), "{five}");
        let six = Layers::of_abi(6);
        assert!(six.filesystem && six.scoped, "{six}");
        assert_eq!(
            Layers::of_abi(7).to_string(),
            "Landlock ABI 7: filesystem rules, signal and abstract-socket scoping"
        );
    }

    #[test]
    fn child_reads_only_its_directory() {
        // Removed however the test ends.
        let scratch = crate::ScratchDir::new("sandbox");
        let base = scratch.path().to_path_buf();
        let inside = base.join("client");
        let outside = base.join("other");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(inside.join("mine"), "mine\n").unwrap();
        std::fs::write(outside.join("secret"), "secret\n").unwrap();
        let jail = Confinement {
            dir: inside.clone(),
            writable: false,
            cwd: PathBuf::new(),
            ..Confinement::default()
        };
        let cat = |path: &Path| {
            let path = path.to_owned();
            let (child, enforcement) = jail
                .spawn(|view| {
                    let target = if path.starts_with(&inside) {
                        view.dir.join(path.strip_prefix(&inside).unwrap())
                    } else {
                        path.clone()
                    };
                    Cmd::new("cat").arg(target).configure(|c| {
                        c.stdout(Stdio::piped()).stderr(Stdio::piped());
                    })
                })
                .unwrap();
            (child.wait_with_output().unwrap(), enforcement)
        };
        let (own, enforcement) = cat(&inside.join("mine"));
        assert_eq!(own.stdout, b"mine\n", "{own:?}");
        let (other, _) = cat(&outside.join("secret"));
        let (missing, _) = cat(&outside.join("nonexistent"));
        let (system, _) = cat(Path::new("/etc/passwd"));
        if landlock_abi() >= REQUIRED_ABI as i32 {
            assert!(enforcement.landlock);
        } else {
            eprintln!("*** Landlock is not available on this kernel: not tested ***");
        }
        if enforcement.landlock || enforcement.private_view {
            assert!(!other.status.success() && other.stdout.is_empty());
            assert!(!system.status.success() && system.stdout.is_empty());
        }
        if enforcement.private_view {
            // Outside paths do not exist at all: no existence oracle.
            let why = |o: &std::process::Output| {
                String::from_utf8_lossy(&o.stderr).replace(&outside.display().to_string(), "")
            };
            assert_eq!(
                why(&other).replace("secret", "X"),
                why(&missing).replace("nonexistent", "X")
            );
        }
        // The parent is not confined.
        assert_eq!(
            std::fs::read_to_string(outside.join("secret")).unwrap(),
            "secret\n"
        );
    }
}
