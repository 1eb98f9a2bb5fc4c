//! `byteback`: parse the command line, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    byteback::report::set_program("byteback");
    let cli = byteback::client::Cli::parse();
    match byteback::client::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("byteback: {e}");
            e.exit_code().into()
        }
    }
}
