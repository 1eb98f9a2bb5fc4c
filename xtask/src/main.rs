//! `cargo run -p xtask -- reliability`: runs the test suite and writes
//! RELIABILITY.md (see `reliability.rs`).
//!
//! `cargo run -p xtask -- assets DIR`: writes the man pages (one per command
//! and subcommand, from the clap definitions, in `DIR/man/<program>/`; and
//! there too the configuration file's section-5 page, `byteback.toml.5` or
//! `byteback-server.toml.5`, from the config structs, see `config_pages.rs`)
//! and the bash, zsh and fish completions of both programs (in
//! `DIR/completions/<shell>/`), where the Debian packages and
//! `install.sh` pick them up. No key or option is described by hand here.
//!
//! `cargo run -p xtask -- report-example [DIR]`: the HTML report of a
//! made-up store and the screenshots of it in `docs/images/` (see
//! `report_example.rs`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

mod config_pages;
#[cfg(test)]
mod docs;
mod reliability;
mod report_example;
mod test_docs;

const USAGE: &str = "usage: cargo run -p xtask -- assets DIR | reliability | report-example [DIR]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let done = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["assets", dir] => assets(Path::new(dir)).map(|()| true),
        ["report-example", ref dir @ ..] if dir.len() <= 1 => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let dir = dir.first().map_or_else(
                || root.join("target/report-example"),
                |d| Path::new(d).to_path_buf(),
            );
            report_example::run(&root, &dir)
                .map(|()| true)
                .map_err(std::io::Error::other)
        }
        ["reliability"] => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            reliability::reliability(&root)
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match done {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn assets(dir: &Path) -> std::io::Result<()> {
    for cmd in [
        byteback::client::Cli::command(),
        byteback::server::Cli::command(),
    ] {
        let cmd = cmd.version(env!("CARGO_PKG_VERSION"));
        // One directory per program, so each package takes only its own.
        man_pages(&cmd, &dir.join("man").join(cmd.get_name()))?;
        completions(&cmd, dir)?;
    }
    for page in config_pages::pages() {
        let at = dir.join("man").join(page.program);
        let text = page.render(env!("CARGO_PKG_VERSION"));
        std::fs::write(at.join(format!("{}.5", page.name)), text)?;
    }
    Ok(())
}

/// `byteback.1`, and `byteback-setup.1` for `byteback setup`, and so on.
fn man_pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    // Building names each subcommand for its page (`byteback-setup`).
    let mut built = cmd.clone();
    built.build();
    write_man(&built, dir)
}

fn write_man(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name());
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    std::fs::write(dir.join(format!("{name}.1")), out)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_man(sub, dir)?;
    }
    Ok(())
}

/// Where each shell looks for completions in a Debian package.
fn completions(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
    let name = cmd.get_name().to_owned();
    for (shell, sub, file) in [
        (Shell::Bash, "bash", name.clone()),
        (Shell::Zsh, "zsh", format!("_{name}")),
        (Shell::Fish, "fish", format!("{name}.fish")),
    ] {
        let at: PathBuf = dir.join("completions").join(sub);
        std::fs::create_dir_all(&at)?;
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), &name, &mut out);
        std::fs::write(at.join(file), out)?;
    }
    Ok(())
}
