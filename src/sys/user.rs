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

/// The account of the effective user: `/etc/passwd`, then `$HOME`/`$USER`.
pub fn current() -> Account {
    let uid = rustix::process::geteuid().as_raw();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let entry = passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7 && f[2].parse::<u32>().ok() == Some(uid))
            .then(|| (f[0].to_owned(), f[5].to_owned(), f[6].to_owned()))
    });
    let env_home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    match entry {
        Some((name, home, shell)) => Account {
            name,
            home: env_home.or(Some(PathBuf::from(home))),
            shell: Some(shell),
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
