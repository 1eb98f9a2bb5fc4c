//! This machine's name, as a backup names it: the client's default name
//! in a store, and a primary's default name on its replicas.

use super::Cmd;

/// This machine's fully qualified name, as well as it can be told.
pub fn this_machines_name() -> String {
    let short = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    if short.contains('.') {
        return short;
    }
    let fqdn = Cmd::new("hostname")
        .arg("--fqdn")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|n| crate::names::ClientName::new(n).is_ok());
    fqdn.unwrap_or(short)
}
