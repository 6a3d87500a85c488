//! `denali`: the command-line front end of the Denali kernel. Parses the command line, runs
//! one subcommand and turns its result into an exit status (the table is in `args.rs` and in
//! `denali --help`).
//!
//! Every error is one `denali: error: ...` line on stderr; nothing panics on bad input.

mod args;
mod commands;
mod dump;
mod error;
mod manifest;
mod source;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use crate::args::{Cli, Command};
use crate::error::EXIT_INPUT;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return ExitCode::from(usage_error(&error)),
    };
    let result = match &cli.command {
        Command::Run(args) => commands::run::run(args),
        Command::Check(args) => commands::check::check(args),
        Command::Disasm(args) => commands::disasm::disasm(args),
        Command::Examples => commands::examples::examples(),
        Command::Conformance(args) => commands::conformance::conformance(args),
        Command::Bench(args) => commands::bench::bench(args),
        Command::Fleet(args) => commands::fleet::fleet(args),
        Command::Experiment(args) => commands::experiment::experiment(args),
    };
    match result {
        Ok(status) => ExitCode::from(status),
        Err(failure) => {
            eprintln!("denali: error: {}", failure.message);
            ExitCode::from(failure.status)
        }
    }
}

/// Prints help and version as clap does; reports a usage error as one line.
fn usage_error(error: &clap::Error) -> u8 {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand { EXIT_INPUT } else { 0 }
        }
        _ => {
            eprintln!("denali: error: {} (see 'denali --help')", one_line(&error.to_string()));
            EXIT_INPUT
        }
    }
}

/// Clap's message without its `error:` label and usage section, on one line.
fn one_line(message: &str) -> String {
    let body = message.split("\n\n").next().unwrap_or(message);
    let body = body.trim_start().strip_prefix("error:").unwrap_or(body);
    body.split_whitespace().collect::<Vec<_>>().join(" ")
}
