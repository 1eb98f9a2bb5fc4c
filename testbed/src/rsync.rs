//! rsync 3.2.7 (Debian 12's, Ubuntu LTS's), for the tests that run an older
//! rsync on either side: fetched once with `apt-get download` and unpacked
//! into [`CACHE`], where the server's unprivileged user can run it too.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::world::show;

/// Where rsync 3.2.7 is unpacked, once for all runs (`bin/rsync`).
pub const CACHE: &str = "/var/lib/byteback-tests/rsync-3.2.7";
/// The package apt fetches.
pub const PACKAGE: &str = "rsync=3.2.7-1+deb12u6";

/// Whether `rsync` runs and says it is 3.2.7.
fn is_3_2_7(rsync: &Path) -> bool {
    std::process::Command::new(rsync)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"rsync  version 3.2.7 "))
}

/// Makes `dir`'s tree (directories and the binary) readable and executable
/// by everyone, and checks that every directory above it lets others
/// through, so the server's unprivileged user can run `bin/rsync`.
fn open_to_everyone(dir: &Path) {
    for path in [dir.to_path_buf(), dir.join("bin"), dir.join("bin/rsync")] {
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod 755 {}: {e}", path.display()));
    }
    for above in dir.ancestors().skip(1) {
        let mode = fs::metadata(above)
            .unwrap_or_else(|e| panic!("{}: {e}", above.display()))
            .permissions()
            .mode();
        assert!(
            mode & 0o001 != 0,
            "{} (mode {mode:o}) keeps other users from reaching rsync 3.2.7",
            above.display()
        );
    }
}

/// The directory holding `bin/rsync`, rsync 3.2.7, fetched with apt once
/// into [`CACHE`]; `None` (said loudly) where apt cannot fetch it, except
/// under `CI=true`, where that fails the test.
pub fn rsync_3_2_7() -> Option<PathBuf> {
    static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = Path::new(CACHE);
    if is_3_2_7(&cache.join("bin/rsync")) {
        open_to_everyone(cache);
        return Some(cache.to_path_buf());
    }
    fs::create_dir_all(cache.parent().unwrap()).unwrap();
    // Fetched into a private directory, then renamed into place whole.
    let work = cache.with_file_name(format!("rsync-3.2.7.{}", super::unique()));
    fs::create_dir_all(&work).unwrap();
    let fetched = std::process::Command::new("apt-get")
        .args(["download", "-q", PACKAGE])
        .current_dir(&work)
        .output();
    let deb = fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"));
    let unpacked = deb.as_ref().is_some_and(|deb| {
        let root = work.join("root");
        super::run(&[
            "dpkg-deb",
            "-x",
            &deb.to_string_lossy(),
            &root.to_string_lossy(),
        ])
        .status
        .success()
            && fs::create_dir(work.join("bin")).is_ok()
            && fs::rename(root.join("usr/bin/rsync"), work.join("bin/rsync")).is_ok()
            && is_3_2_7(&work.join("bin/rsync"))
    });
    if !unpacked {
        let _ = fs::remove_dir_all(&work);
        let why = match fetched {
            Ok(out) => show(&out),
            Err(e) => e.to_string(),
        };
        let msg = format!("cannot fetch {PACKAGE} with apt-get download: {why}");
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("\n\n*** {msg} ***\n");
        }
        eprintln!("\n*** SKIPPED (rsync 3.2.7): {msg} ***\n");
        return None;
    }
    fs::remove_dir_all(work.join("root")).unwrap();
    fs::remove_file(deb.unwrap()).unwrap();
    open_to_everyone(&work);
    let _ = fs::remove_dir_all(cache);
    if let Err(e) = fs::rename(&work, cache) {
        // Another test process put its copy in place meanwhile.
        let _ = fs::remove_dir_all(&work);
        assert!(
            is_3_2_7(&cache.join("bin/rsync")),
            "cannot put rsync 3.2.7 in {CACHE}: {e}"
        );
    }
    assert!(is_3_2_7(&cache.join("bin/rsync")));
    Some(cache.to_path_buf())
}
