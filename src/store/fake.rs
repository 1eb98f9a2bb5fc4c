//! A snapshot backend for unit tests: plain directories in a temporary
//! directory, on a disk of made-up size, so the store service and the prune
//! executor run their real code without loop devices or btrfs.
//!
//! Space used is the size of every file under the store, each inode once;
//! a snapshot is `current` renamed (as on plain stores), so deleting one
//! frees exactly what it held.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use jiff::Timestamp;

use crate::error::{Error, Result};
use crate::names::{ClientName, SnapshotName};
use crate::sys::fs::Space;

use super::backend::{SnapshotBackend, TransferPlan};
use super::{Backend, ServerConfig, Store};

/// A disk of `capacity` bytes.
#[derive(Debug)]
pub struct FakeBackend {
    pub capacity: u64,
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let (what, path) = (what.to_owned(), path.to_owned());
    move |e| Error::io(&what, &path, e)
}

impl SnapshotBackend for FakeBackend {
    fn kind(&self) -> Backend {
        Backend::Plain
    }

    fn describe(&self) -> &'static str {
        "fake (tests)"
    }

    fn check_store(&self, _: &Path, _: &Path) -> Result<()> {
        Ok(())
    }

    fn create_current(&self, current: &Path) -> Result<()> {
        std::fs::create_dir(current).map_err(io("cannot create", current))
    }

    fn prepare_current(&self, _: &Path, _: Option<&SnapshotName>) -> Result<TransferPlan> {
        Ok(TransferPlan::default())
    }

    fn prepare_incremental(
        &self,
        client_dir: &Path,
        newest: &SnapshotName,
        replace: &HashSet<Vec<u8>>,
        _gone: &[Vec<u8>],
        _clean: bool,
    ) -> Result<()> {
        super::plain::prepare_incremental(client_dir, newest.as_str(), replace)
    }

    fn snapshot(&self, client_dir: &Path, name: &SnapshotName) -> Result<()> {
        let current = client_dir.join("current");
        std::fs::rename(&current, client_dir.join(name.as_str()))
            .map_err(io("cannot snapshot", &current))?;
        self.create_current(&current)
    }

    fn delete(&self, client_dir: &Path, name: &SnapshotName) -> Result<()> {
        let path = client_dir.join(name.as_str());
        std::fs::remove_dir_all(&path).map_err(io("cannot delete", &path))
    }

    fn remove_client_dir(&self, client_dir: &Path) -> Result<()> {
        std::fs::remove_dir_all(client_dir).map_err(io("cannot remove", client_dir))
    }

    fn roll_back(&self, client_dir: &Path, _: Option<&SnapshotName>) -> Result<()> {
        let current = client_dir.join("current");
        std::fs::remove_dir_all(&current).map_err(io("cannot remove", &current))?;
        self.create_current(&current)
    }

    fn space(&self, root: &Path) -> Result<Space> {
        let used = used_bytes(root, &mut HashSet::new());
        Ok(Space {
            free_bytes: self.capacity.saturating_sub(used),
            total_bytes: self.capacity,
            scarce: crate::sys::fs::Scarce::Data,
        })
    }

    fn wait_for_reclaim(&self, _: &Path) -> Result<()> {
        Ok(())
    }
}

fn used_bytes(dir: &Path, seen: &mut HashSet<u64>) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            total += used_bytes(&entry.path(), seen);
        } else if seen.insert(meta.ino()) {
            total += meta.len();
        }
    }
    total
}

/// A store on the fake disk, removed when dropped.
#[derive(Debug)]
pub struct FakeStore {
    pub store: Store,
    root: PathBuf,
}

impl FakeStore {
    /// An empty store of `capacity` bytes with `config`.
    pub fn new(capacity: u64, config: ServerConfig) -> FakeStore {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "byteback-fake-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(Store::state_dir_of(&root).join("locks")).unwrap();
        let store = Store::with_backend(&root, config, Box::new(FakeBackend { capacity }));
        FakeStore { store, root }
    }

    /// Adds a client.
    pub fn client(&self, name: &str) -> ClientName {
        let client = ClientName::new(name).unwrap();
        self.store.add_client(&client).unwrap();
        client
    }

    /// Writes `bytes` into the client's `current` as `file`.
    pub fn write(&self, client: &ClientName, file: &str, bytes: u64) {
        let path = self.store.current(client).join(file);
        std::fs::write(path, vec![7u8; bytes as usize]).unwrap();
    }

    /// A snapshot of `bytes` bytes of its own, taken at `at`.
    pub fn old_snapshot(&self, client: &ClientName, at: &str, bytes: u64) -> SnapshotName {
        self.write(client, "unique", bytes);
        let at: Timestamp = at.parse().unwrap();
        self.store.take_snapshot(client, at, None).unwrap()
    }

    /// Free space in percent.
    pub fn free_percent(&self) -> f64 {
        self.store.space().unwrap().free_percent()
    }
}

impl Drop for FakeStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
