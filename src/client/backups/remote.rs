//! A client's backups on a server, over ssh: each request is one ssh
//! command that the key's forced command on the server parses and serves
//! (see [`crate::protocol`]), and a backup's rsync runs with `--rsh`
//! pointing at the same connection. The server's lifecycle decides
//! everything; this side renders requests and reads replies.

use std::path::{Path, PathBuf};

use super::{Backups, Find, Receiving, Session};
use crate::catalog::Row;
use crate::client::config::ConfigDir;
use crate::client::transfer::Transferred;
use crate::config::Duration;
use crate::destination::Destination;
use crate::error::{Error, Result};
use crate::exec::rsync::{RestoreFrom, TransferTo};
use crate::exec::ssh::{HostKeyPolicy, Master, Ssh};
use crate::names::SnapshotName;
use crate::protocol::call::{call, stream};
use crate::protocol::{
    Completed, DigestLine, MAX_REPLACE_LIST, PingReply, ReplaceList, Request, SnapshotLine,
    TransferMode, render_replace_list,
};
use crate::store::Snapshot;

/// The backups on a server.
#[derive(Debug)]
pub struct RemoteBackups {
    /// How to reach it (through the master connection, if one is open).
    pub ssh: Ssh,
    /// Where a master connection's socket goes.
    socket: PathBuf,
    /// The master connection this one shares, closed on drop.
    master: Option<Master>,
}

impl RemoteBackups {
    /// The backups on the server `destination`, with this machine's key in
    /// `dir`; nothing is connected yet.
    pub fn new(
        dir: &ConfigDir,
        destination: Destination,
        connect_timeout: Duration,
        host_keys: HostKeyPolicy,
    ) -> Result<RemoteBackups> {
        Ok(RemoteBackups {
            ssh: dir.ssh(destination, connect_timeout, host_keys)?,
            socket: control_socket(&dir.dir),
            master: None,
        })
    }
}

/// Where the shared connection's socket lives: in the config directory
/// (root's own), unless that path is too long for a Unix socket.
pub fn control_socket(dir: &Path) -> PathBuf {
    let name = format!("ssh-{}", std::process::id());
    let path = dir.join(&name);
    if path.as_os_str().len() < 100 {
        path
    } else {
        std::env::temp_dir().join(format!("byteback-{name}"))
    }
}

impl Backups for RemoteBackups {
    fn describe(&self) -> String {
        format!("server {}", self.ssh.destination.host_and_port())
    }

    fn session(&self) -> Result<Session<'_>> {
        if self.master.is_some() {
            return Ok(Session::Same(self));
        }
        let master = Master::open(&self.ssh, self.socket.clone())?;
        Ok(Session::Connected(Box::new(RemoteBackups {
            ssh: master.share(&self.ssh),
            socket: self.socket.clone(),
            master: Some(master),
        })))
    }

    fn ping(&self) -> Result<PingReply> {
        let out = call(&self.ssh, &Request::Ping, None)?;
        PingReply::parse(&out).ok_or_else(|| {
            Error::Refused(format!(
                "the server at {} answered, but not like byteback-server: is the key's forced command set up with `byteback-server new-client`?",
                self.ssh.destination.host_and_port()
            ))
        })
    }

    fn snapshots(&self) -> Result<Vec<Snapshot>> {
        let mut snapshots = Vec::new();
        stream(&self.ssh, &Request::Snapshots, |line| {
            let parsed = SnapshotLine::parse(line).and_then(|l| {
                Some(Snapshot {
                    name: SnapshotName::parse(&l.name)?,
                    partial: l.partial,
                })
            });
            snapshots.extend(parsed);
            Ok(())
        })?;
        Ok(snapshots)
    }

    fn find(&self, find: &Find, each: &mut dyn FnMut(Row) -> Result<()>) -> Result<()> {
        stream(&self.ssh, &find.request(), |line| {
            let row = Row::parse(line)
                .map_err(|e| Error::Refused(format!("the server sent a bad listing line: {e}")))?;
            each(row)
        })
    }

    fn digest(
        &self,
        name: &SnapshotName,
        patterns: &[Vec<u8>],
        each: &mut dyn FnMut(DigestLine) -> Result<()>,
    ) -> Result<()> {
        let request = Request::Digest {
            snapshot: name.to_string(),
            patterns: patterns.to_vec(),
        };
        stream(&self.ssh, &request, |line| {
            let line = DigestLine::parse(line)
                .map_err(|e| Error::Refused(format!("the server sent a bad digest line: {e}")))?;
            each(line)
        })
    }

    fn diff(
        &self,
        from: Option<&SnapshotName>,
        to: Option<&SnapshotName>,
        json: bool,
        each: &mut dyn FnMut(&str) -> Result<()>,
    ) -> Result<()> {
        // An older server would refuse the request in words: say why here.
        let server = self.ping()?.protocol;
        if server < crate::protocol::DIFF {
            return Err(Error::Refused(format!(
                "the server at {} runs byteback-server of protocol {server}, which has no diff (protocol {} and later do): upgrade it, or run `byteback-server diff --client NAME` there",
                self.ssh.destination.host_and_port(),
                crate::protocol::DIFF
            )));
        }
        let request = Request::Diff {
            from: from.map(ToString::to_string),
            to: to.map(ToString::to_string),
            json,
        };
        stream(&self.ssh, &request, |line| each(line))
    }

    fn restore_from(&self) -> RestoreFrom {
        RestoreFrom::Remote {
            rsh: self.ssh.rsh_string(),
            remote: self.ssh.rsync_remote(),
        }
    }

    fn incremental(&self, snapshot: &str, list: ReplaceList) -> Result<()> {
        let text = render_replace_list(&list);
        if text.len() > MAX_REPLACE_LIST {
            return Err(Error::FullPassNeeded(format!(
                "{} changed paths are too many to list",
                list.replace.len()
            )));
        }
        let request = Request::Incremental {
            snapshot: snapshot.to_owned(),
        };
        call(&self.ssh, &request, Some(&text)).map(drop)
    }

    /// The server readies `current` and records the transfer when rsync
    /// connects (its forced command); the mode travels in rsync's
    /// destination (see [`crate::exec::rsync::BackupTransfer`]).
    fn transfer(
        &self,
        _mode: TransferMode,
        _sparse: bool,
        send: &mut dyn FnMut(Receiving<'_>) -> Result<Transferred>,
    ) -> Result<Transferred> {
        send(Receiving {
            to: TransferTo::Remote {
                rsh: self.ssh.rsh_string(),
                remote: self.ssh.rsync_remote(),
            },
            stop: &|_| None,
        })
    }

    fn complete(&self, failed_files: Option<&str>) -> Result<String> {
        let request = Request::Complete {
            partial: failed_files.is_some(),
        };
        let out = call(&self.ssh, &request, failed_files)?;
        Completed::parse(&out)
            .map(|c| c.snapshot)
            .ok_or_else(|| Error::Refused("the server did not name the snapshot it took".into()))
    }
}
