//! Errors that end the command before or around running a guest, with the exit status each
//! maps to (see the exit-status table in `args.rs`).

use std::fmt;

/// Exit status for bad usage and bad input (clap's own status for usage errors).
pub const EXIT_INPUT: u8 = 2;
/// Exit status for failures of the host.
pub const EXIT_HOST: u8 = 1;

/// An error reported as one `denali: error: ...` line.
#[derive(Debug)]
pub struct Failure {
    pub status: u8,
    pub message: String,
}

impl Failure {
    /// Bad input: a file that is missing or malformed, or a value that does not fit.
    pub fn input(message: impl fmt::Display) -> Failure {
        Failure { status: EXIT_INPUT, message: message.to_string() }
    }

    /// The host failed: output could not be written, memory could not be mapped.
    pub fn host(message: impl fmt::Display) -> Failure {
        Failure { status: EXIT_HOST, message: message.to_string() }
    }
}
