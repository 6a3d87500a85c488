//! One module per subcommand; each returns the process exit status.

pub mod bench;
pub mod check;
pub mod conformance;
pub mod disasm;
pub mod examples;
pub mod experiment;
pub mod fleet;
pub mod run;
