//! `byteback-server`: parse the command line, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    byteback::report::set_program("byteback-server");
    let cli = byteback::server::Cli::parse();
    match byteback::server::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("byteback-server: {e}");
            e.exit_code().into()
        }
    }
}
