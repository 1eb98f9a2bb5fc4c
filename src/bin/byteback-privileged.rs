//! `byteback-privileged`: hardened mode's root helper, reached through one
//! sudo rule. Takes a snapshot or deletes one the policy deletes next, for
//! the backup user who called it, and refuses everything else in one line
//! (see `byteback::server::privileged`).

use std::process::ExitCode;

fn main() -> ExitCode {
    byteback::report::set_program("byteback-privileged");
    // Programs it runs (btrfs) come from the system's directories only.
    // SAFETY: nothing else runs yet; no thread reads the environment.
    unsafe { std::env::set_var("PATH", "/usr/sbin:/usr/bin:/sbin:/bin") };
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    match byteback::server::privileged::main(&args, &mut std::io::stdin()) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("byteback-privileged: {e}");
            e.exit_code().into()
        }
    }
}
