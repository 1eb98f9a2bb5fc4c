//! End to end: the Debian packages. Builds both with packaging/build-debs
//! (cargo-deb), installs them with dpkg, finds the man pages (the commands'
//! and the configuration files'), the guide pages, completions, units and
//! the Prometheus rules where they belong, verifies the units, and runs the
//! set-up walkthrough and a backup with the installed binaries.

use byteback_testbed as support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::world::{World, show, stdout};

/// Removes the packages afterwards, unless they were installed before.
struct Installed {
    remove: bool,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if self.remove {
            let _ = Command::new("dpkg")
                .args(["--purge", "byteback", "byteback-server"])
                .output();
        }
    }
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn has_cargo_deb() -> bool {
    let ok = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = "cargo-deb is missing (cargo install cargo-deb --locked; ./install.sh and .ci/run install it)";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("SKIPPED: the package test cannot run: {msg}");
    }
    ok
}

fn deb(dir: &Path, name: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let file = p.file_name().unwrap().to_string_lossy();
            file.starts_with(&format!("{name}_")) && file.ends_with(".deb")
        })
        .unwrap_or_else(|| panic!("no {name} package in {dir:?}"))
}

/// Both .debs, built with cargo-deb and installed with dpkg, put everything
/// where it belongs: the commands' man pages and `byteback.toml(5)`,
/// `byteback-server.toml(5)` found by `man`, the README and guide pages in
/// `/usr/share/doc/`, completions and units (which pass `systemd-analyze
/// verify`); the walkthrough and a backup work with the installed binaries.
#[test]
fn packages_install_and_back_up() {
    if !support::require_root() || !has_cargo_deb() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("packaging/build-debs"))
        .current_dir(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "build-debs: {}", show(&out));
    let debs = root.join("target/debian");
    let (client, server) = (deb(&debs, "byteback"), deb(&debs, "byteback-server"));

    let _installed = Installed {
        remove: !installed("byteback") && !installed("byteback-server"),
    };
    let out = Command::new("dpkg")
        .arg("-i")
        .args([&client, &server])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap();
    assert!(out.status.success(), "dpkg -i: {}", show(&out));

    // Man pages for every command, found by man; completions and units.
    for page in [
        "byteback",
        "byteback-backup",
        "byteback-restore",
        "byteback-server",
        "byteback-server-setup",
        "byteback-server-new-client",
    ] {
        // (-M: the package's pages, not those ./install.sh put in /usr/local.)
        let out = Command::new("man")
            .args(["-M", "/usr/share/man", "-w", page])
            .output()
            .unwrap();
        assert!(out.status.success(), "man {page}: {}", show(&out));
        assert_eq!(
            stdout(&out).trim(),
            format!("/usr/share/man/man1/{page}.1.gz"),
            "{}",
            show(&out)
        );
    }
    // The configuration files' pages, byteback.toml(5) and
    // byteback-server.toml(5), one in each package.
    for page in ["byteback.toml", "byteback-server.toml"] {
        let out = Command::new("man")
            .args(["-M", "/usr/share/man", "-w", "5", page])
            .output()
            .unwrap();
        assert!(out.status.success(), "man 5 {page}: {}", show(&out));
        assert_eq!(
            stdout(&out).trim(),
            format!("/usr/share/man/man5/{page}.5.gz"),
            "{}",
            show(&out)
        );
    }
    // The README and the guide pages it links, with their images, in each
    // package.
    for package in ["byteback", "byteback-server"] {
        let doc = Path::new("/usr/share/doc").join(package);
        for page in std::fs::read_dir(root.join("docs")).unwrap() {
            let name = page.unwrap().file_name();
            if !name.to_string_lossy().ends_with(".md") {
                continue;
            }
            let shipped = doc.join("docs").join(&name);
            let gz = shipped.with_extension("md.gz");
            assert!(
                shipped.is_file() || gz.is_file(),
                "{} is missing",
                shipped.display()
            );
        }
        for image in std::fs::read_dir(root.join("docs/images")).unwrap() {
            let name = image.unwrap().file_name();
            let shipped = doc.join("docs/images").join(&name);
            assert!(shipped.is_file(), "{} is missing", shipped.display());
        }
        assert!(
            doc.join("README.md").is_file() || doc.join("README.md.gz").is_file(),
            "{package}'s README.md is missing"
        );
    }
    for file in [
        "/usr/share/bash-completion/completions/byteback",
        "/usr/share/bash-completion/completions/byteback-server",
        "/usr/share/zsh/vendor-completions/_byteback",
        "/usr/share/zsh/vendor-completions/_byteback-server",
        "/usr/share/fish/vendor_completions.d/byteback.fish",
        "/usr/share/fish/vendor_completions.d/byteback-server.fish",
        "/usr/share/doc/byteback/examples/hooks/mariadb-dump",
        "/usr/share/doc/byteback/examples/hooks/postgresql-dump",
    ] {
        assert!(Path::new(file).is_file(), "{file} is missing");
    }
    // The Prometheus rules, in the server's package, as shipped.
    let rules = "/usr/share/byteback-server/prometheus/byteback.rules.yml";
    let installed_rules =
        std::fs::read_to_string(rules).unwrap_or_else(|e| panic!("{rules} is missing: {e}"));
    assert_eq!(
        installed_rules,
        std::fs::read_to_string(root.join("packaging/prometheus/byteback.rules.yml")).unwrap(),
        "{rules} is not the shipped file"
    );
    let out = Command::new("dpkg").args(["-S", rules]).output().unwrap();
    assert!(
        stdout(&out).starts_with("byteback-server: "),
        "{rules} belongs to the server package: {}",
        show(&out)
    );
    let bash = std::fs::read_to_string("/usr/share/bash-completion/completions/byteback").unwrap();
    assert!(
        bash.contains("backup") && bash.contains("--destination"),
        "{bash}"
    );

    // The units pass systemd's own checks (the template as an instance).
    let scratch = tempdir("units");
    let instance = scratch.join("byteback-server-maintenance@byteback.service");
    std::fs::copy(
        "/lib/systemd/system/byteback-server-maintenance@.service",
        &instance,
    )
    .unwrap();
    let timer = scratch.join("byteback-server-maintenance@byteback.timer");
    std::fs::copy(
        "/lib/systemd/system/byteback-server-maintenance@.timer",
        &timer,
    )
    .unwrap();
    for unit in [
        Path::new("/lib/systemd/system/byteback-backup.service"),
        Path::new("/lib/systemd/system/byteback-backup.timer"),
        &instance,
        &timer,
    ] {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(unit)
            .output()
            .unwrap();
        assert!(out.status.success(), "verify {unit:?}: {}", show(&out));
        let complaints = String::from_utf8_lossy(&out.stderr);
        assert!(
            !complaints.contains("byteback"),
            "{unit:?} has warnings: {complaints}"
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);

    // The walkthrough with the installed binaries.
    let Some(mut w) = World::new("package") else {
        return;
    };
    w.server_bin = "/usr/bin/byteback-server".into();
    w.client_bin = "/usr/bin/byteback".into();
    let client = w.enroll("packaged.example");
    std::fs::write(w.src.join("f"), "packaged\n").unwrap();
    let shown = w.backup_ok();
    assert!(shown.contains("Backup complete: snapshot"), "{shown}");
    let keys = std::fs::read_to_string(w.store().join(".ssh/authorized_keys")).unwrap();
    assert!(
        keys.contains("/usr/bin/byteback-server"),
        "the forced command is the installed binary: {keys}"
    );
    let snaps = w.snapshots(&client);
    assert_eq!(snaps.len(), 1);
    let copy = w.store().join(&client).join(&snaps[0]);
    let copy = support::manifest::inside(&copy, &w.src.join("f"));
    assert_eq!(std::fs::read_to_string(copy).unwrap(), "packaged\n");
}

fn tempdir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("byteback-{label}-{}", support::unique()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
