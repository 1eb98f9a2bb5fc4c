//! Who is running: user name, home and login shell.

use std::path::PathBuf;

/// The running user's account, as far as it can be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Login name (or the uid as a string).
    pub name: String,
    /// Home directory.
    pub home: Option<PathBuf>,
    /// Login shell, if known.
    pub shell: Option<String>,
    /// Numeric user id.
    pub uid: u32,
}

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: String,
}

/// The entry of the first user `matches` picks in `/etc/passwd`.
fn find_passwd(matches: impl Fn(&PasswdEntry) -> bool) -> Option<PasswdEntry> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 7).then_some(())?;
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: PathBuf::from(f[5]),
                shell: f[6].to_owned(),
            })
        })
        .find(matches)
}

/// The account called `name`, if there is one.
pub fn lookup(name: &str) -> Option<PasswdEntry> {
    find_passwd(|e| e.name == name)
}

/// The account with user id `uid`, if there is one.
pub fn lookup_uid(uid: u32) -> Option<PasswdEntry> {
    find_passwd(|e| e.uid == uid)
}

/// The password field of `name` in `/etc/shadow` (root only): `*` allows
/// key logins without a password, `!...` is locked.
pub fn shadow_password(name: &str) -> Option<String> {
    let shadow = std::fs::read_to_string("/etc/shadow").ok()?;
    shadow.lines().find_map(|line| {
        let mut f = line.split(':');
        (f.next() == Some(name)).then(|| f.next().unwrap_or("").to_owned())
    })
}

/// The account of the effective user: `/etc/passwd`, then `$HOME`/`$USER`.
pub fn current() -> Account {
    let uid = rustix::process::geteuid().as_raw();
    let entry = find_passwd(|e| e.uid == uid);
    let env_home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    match entry {
        Some(e) => Account {
            name: e.name,
            home: env_home.or(Some(e.home)),
            shell: Some(e.shell),
            uid,
        },
        None => Account {
            name: std::env::var("USER").unwrap_or_else(|_| uid.to_string()),
            home: env_home,
            shell: None,
            uid,
        },
    }
}
