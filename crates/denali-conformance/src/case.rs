//! One conformance case and its expected result: the data model shared by the generator, the
//! oracle, the vector files and the runner.
//!
//! The machine a case runs on: guest memory of `MEMORY_SIZE` bytes; the instruction's bytes at
//! `eip`; the data regions of `memory` written over zeroed memory; every other byte zero. Every
//! address a case uses lies in `FIRST_CASE_ADDR..MEMORY_SIZE`, so that the native oracle (which
//! cannot map the lowest 64 KiB) sees the same memory. An access at or above `MEMORY_SIZE`
//! faults.
//!
//! A case runs from `init.eip` until EIP leaves the case's code (`init.eip..init.eip +
//! code.len()`) or the instruction stops the machine (`Stop`). The code is usually one
//! instruction; live differential testing uses short straight-line blocks. Natively, every
//! byte of the code page outside the case's code is INT3, which is how the oracle regains
//! control.

use serde::{Deserialize, Serialize};

/// Size of the memory every case runs in.
pub const MEMORY_SIZE: u32 = 0x0100_0000;
/// Lowest address a case may use.
pub const FIRST_CASE_ADDR: u32 = 0x0001_0000;

/// Bytes of guest memory at an address. Serialised as `[addr, "hex bytes"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "(u32, String)", try_from = "(u32, String)")]
pub struct Region {
    pub addr: u32,
    pub data: Vec<u8>,
}

impl From<Region> for (u32, String) {
    fn from(region: Region) -> (u32, String) {
        (region.addr, hex(&region.data))
    }
}

impl TryFrom<(u32, String)> for Region {
    type Error = String;
    fn try_from((addr, text): (u32, String)) -> Result<Region, String> {
        Ok(Region { addr, data: unhex(&text)? })
    }
}

/// The eight general registers, EIP and EFLAGS. Serialised with named keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub eax: u32,
    pub ecx: u32,
    pub edx: u32,
    pub ebx: u32,
    pub esp: u32,
    pub ebp: u32,
    pub esi: u32,
    pub edi: u32,
    pub eip: u32,
    pub eflags: u32,
}

impl State {
    /// The general registers in encoding order (EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI).
    pub fn regs(&self) -> [u32; 8] {
        [self.eax, self.ecx, self.edx, self.ebx, self.esp, self.ebp, self.esi, self.edi]
    }

    pub fn with_regs(regs: [u32; 8], eip: u32, eflags: u32) -> State {
        let [eax, ecx, edx, ebx, esp, ebp, esi, edi] = regs;
        State { eax, ecx, edx, ebx, esp, ebp, esi, edi, eip, eflags }
    }
}

/// How a case ended, when EIP did not simply leave its code. The state is then the state
/// before the instruction that stopped: exceptions are precise, and the exiting instructions
/// are not retired until the kernel performs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Stop {
    /// MEMORY: an access at or above `MEMORY_SIZE`; `addr` is the first such address.
    Memory { addr: u32 },
    /// DIVIDE: DIV or IDIV by zero or with a quotient that does not fit.
    Divide,
    /// BREAKPOINT: INT3.
    Breakpoint,
    /// INVALID: an instruction outside the subset.
    Invalid,
    /// The virtual idle instruction, `hlt` (defined by the spec, not by the CPU).
    Idle,
    /// The virtual terminate instruction, `int 0xd0` (defined by the spec).
    Terminate,
    /// `in eax, PORT` (defined by the spec).
    PortIn { port: u16 },
    /// `out PORT, eax` (defined by the spec).
    PortOut { port: u16, value: u32 },
}

/// A case: the instruction and the state it starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// The form under test: an iced-x86 `Code` name, as in `isa-spec/forms.txt`.
    pub form: String,
    /// The instruction's bytes, as hex.
    #[serde(with = "hex_bytes")]
    pub code: Vec<u8>,
    /// Registers, EIP (the instruction's address) and EFLAGS before it runs.
    pub init: State,
    /// Data memory before it runs (regions do not overlap the instruction's bytes).
    pub memory: Vec<Region>,
}

/// The expected result of a case, as the host CPU produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    /// Registers, EIP and EFLAGS after the code ran (or, with `stop`, before the instruction
    /// that stopped).
    #[serde(rename = "final")]
    pub state: State,
    /// The same regions as `Case::memory`, with their final contents.
    pub final_memory: Vec<Region>,
    /// `None` when execution left the code.
    pub stop: Option<Stop>,
    /// EFLAGS bits to compare: the form's architecturally undefined flags are left out.
    pub flags_mask: u32,
}

/// A case with its expected result: one line of a vector file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vector {
    #[serde(flatten)]
    pub case: Case,
    #[serde(flatten)]
    pub expected: Expected,
}

/// Lower-case hex, two digits a byte, no separators.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The inverse of [`hex`].
pub fn unhex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits in {text:?}"));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| format!("bad hex byte in {text:?}")))
        .collect()
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        super::unhex(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_round_trips_through_one_json_line() {
        let state = State::with_regs([1, 2, 3, 4, 0x20_0000, 6, 7, 8], 0x10_0000, 0x202);
        let vector = Vector {
            case: Case {
                form: "Add_rm32_r32".into(),
                code: vec![0x01, 0xd8],
                init: state,
                memory: vec![Region { addr: 0x20_0000, data: vec![0xAB, 0xCD] }],
            },
            expected: Expected {
                state: State { eax: 5, eip: 0x10_0002, ..state },
                final_memory: vec![Region { addr: 0x20_0000, data: vec![0xAB, 0xCD] }],
                stop: Some(Stop::Memory { addr: 0x0100_0000 }),
                flags_mask: 0x8d5,
            },
        };
        let line = serde_json::to_string(&vector).unwrap();
        assert!(line.contains(r#""code":"01d8""#), "{line}");
        assert!(line.contains(r#""memory":[[2097152,"abcd"]]"#), "{line}");
        assert!(line.contains(r#""stop":{"kind":"memory","addr":16777216}"#), "{line}");
        assert_eq!(serde_json::from_str::<Vector>(&line).unwrap(), vector);
    }
}
