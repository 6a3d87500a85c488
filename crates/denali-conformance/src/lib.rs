//! The ISA conformance suite: test vectors for every instruction form of the subset, generated
//! by running each case natively on the host CPU (`oracle`), stored as tool-neutral JSON lines
//! (`vector`), and the runner that checks an engine against them (`runner`).

pub mod case;
pub mod generate;
pub mod oracle;
pub mod runner;
pub mod vector;
