//! One module per subcommand; each returns the process exit status.

pub mod check;
pub mod conformance;
pub mod disasm;
pub mod examples;
pub mod run;
