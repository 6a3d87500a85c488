//! BT BTS BTR BTC (bit strings), BSF BSR, SETcc and CMOVcc.
mod common;
use common::*;
use denali_engine::reg::*;
use iced_x86::code_asm::*;

#[test]
fn bt_family_on_registers_and_memory_bit_strings() {
    let vm = run(|a| {
        a.mov(eax, 0b1010)?;
        a.bt(eax, 1)?;
        a.setc(byte_ptr(DATA + 0x100))?;
        a.mov(ecx, 35)?; // register form: offset mod 32 = 3
        a.bts(eax, ecx)?; // bit 3 already set
        a.setc(byte_ptr(DATA + 0x101))?;
        a.btr(eax, 1)?;
        a.btc(eax, 0)?;
        // Memory bit string: offset 100 from DATA: dword at DATA + 12, bit 4.
        a.mov(ebx, DATA)?;
        a.mov(ecx, 100)?;
        a.bts(dword_ptr(ebx), ecx)?;
        // Negative offset -1: bit 31 of the dword at DATA - 4.
        a.mov(ecx, -1)?;
        a.bts(dword_ptr(ebx), ecx)?;
        a.bt(dword_ptr(ebx), ecx)?;
        a.setc(byte_ptr(DATA + 0x102))?;
        // Immediate offsets are taken modulo the operand size: 36 -> bit 4 of [DATA].
        a.btc(dword_ptr(ebx), 36)?;
        a.int(0xd0)
    });
    assert_eq!(vm.u32_at(DATA + 0x100) & 0xFF_FFFF, 0x01_0101);
    assert_eq!(vm.reg(EAX), 0b1001);
    assert_eq!(vm.u32_at(DATA + 12), 1 << 4);
    assert_eq!(vm.u32_at(DATA - 4), 1 << 31);
    assert_eq!(vm.u32_at(DATA), 1 << 4);
}

#[test]
fn bsf_bsr() {
    let vm = run(|a| {
        a.mov(ebx, 0x0001_0100)?;
        a.bsf(eax, ebx)?;
        a.bsr(ecx, ebx)?;
        a.mov(edx, 0x5555)?;
        a.xor(esi, esi)?;
        a.bsf(edx, esi)?; // zero: ZF, EDX unchanged
        a.int(0xd0)
    });
    assert_eq!(vm.reg(EAX), 8);
    assert_eq!(vm.reg(ECX), 16);
    assert_eq!(vm.reg(EDX), 0x5555);
    assert_ne!(vm.flags() & ZF, 0);
}

/// For each EFLAGS pattern, the 16 conditions in encoding order (O NO B AE E NE BE A S NS P NP
/// L GE LE G), worked out by hand.
fn expected(f: u32) -> [bool; 16] {
    let (o, c, z, s, p) = (f & OF != 0, f & CF != 0, f & ZF != 0, f & SF != 0, f & PF != 0);
    [o, !o, c, !c, z, !z, c || z, !c && !z, s, !s, p, !p, s != o, s == o, z || s != o, !z && s == o]
}

type SetFn = fn(&mut CodeAssembler, AsmMemoryOperand) -> Result<(), IcedError>;
type CmovFn = fn(&mut CodeAssembler, AsmRegister32, AsmRegister32) -> Result<(), IcedError>;

#[test]
fn setcc_and_cmovcc_on_all_conditions() {
    for f in [0, CF, ZF, SF, OF, PF, SF | OF, ZF | SF, CF | ZF | SF | OF | PF, OF | ZF] {
        let vm = run(|a| {
            a.push(f)?;
            a.popfd()?;
            a.mov(ebx, DATA)?;
            a.mov(esi, 1)?;
            let (sets, cmovs): ([SetFn; 16], [CmovFn; 16]) = (
                [
                    |a, m| a.seto(m),
                    |a, m| a.setno(m),
                    |a, m| a.setb(m),
                    |a, m| a.setae(m),
                    |a, m| a.sete(m),
                    |a, m| a.setne(m),
                    |a, m| a.setbe(m),
                    |a, m| a.seta(m),
                    |a, m| a.sets(m),
                    |a, m| a.setns(m),
                    |a, m| a.setp(m),
                    |a, m| a.setnp(m),
                    |a, m| a.setl(m),
                    |a, m| a.setge(m),
                    |a, m| a.setle(m),
                    |a, m| a.setg(m),
                ],
                [
                    |a, d, s| a.cmovo(d, s),
                    |a, d, s| a.cmovno(d, s),
                    |a, d, s| a.cmovb(d, s),
                    |a, d, s| a.cmovae(d, s),
                    |a, d, s| a.cmove(d, s),
                    |a, d, s| a.cmovne(d, s),
                    |a, d, s| a.cmovbe(d, s),
                    |a, d, s| a.cmova(d, s),
                    |a, d, s| a.cmovs(d, s),
                    |a, d, s| a.cmovns(d, s),
                    |a, d, s| a.cmovp(d, s),
                    |a, d, s| a.cmovnp(d, s),
                    |a, d, s| a.cmovl(d, s),
                    |a, d, s| a.cmovge(d, s),
                    |a, d, s| a.cmovle(d, s),
                    |a, d, s| a.cmovg(d, s),
                ],
            );
            for (i, set) in sets.iter().enumerate() {
                set(a, byte_ptr(ebx + i as i32))?;
            }
            for (i, cmov) in cmovs.iter().enumerate() {
                a.mov(eax, 0)?; // not XOR: it would change the flags
                cmov(a, eax, esi)?;
                a.mov(dword_ptr(ebx + 0x100 + 4 * i as i32), eax)?;
            }
            a.int(0xd0)
        });
        let want = expected(f);
        for (i, w) in want.iter().enumerate() {
            let set = vm.mem.read_u8(DATA + i as u32).unwrap();
            assert_eq!(set, u8::from(*w), "setcc {i} with flags {f:#x}");
            assert_eq!(vm.u32_at(DATA + 0x100 + 4 * i as u32), u32::from(*w), "cmovcc {i} with flags {f:#x}");
        }
    }
}
