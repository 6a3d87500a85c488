//! The validator: checks one decoded instruction against the v1 subset.
//!
//! (Skeleton: the validator helper fills this in. The API below is fixed.)

use iced_x86::Instruction;

/// Why an instruction is outside the subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The class of `isa-spec/excluded.txt` the instruction belongs to.
    pub class: &'static str,
    /// One line naming the rule broken, for diagnostics.
    pub rule: String,
}

/// Checks a decoded instruction (decoded in 32-bit mode by `decoder`) against the v1 subset.
/// Returns `Ok` exactly when engines may run it.
pub fn check(_instruction: &Instruction) -> Result<(), Violation> {
    todo!()
}
