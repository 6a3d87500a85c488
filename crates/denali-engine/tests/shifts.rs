//! Shifts and rotates, with results from the SDM pseudo-code.
mod common;
use common::*;
use denali_engine::reg::*;
use iced_x86::code_asm::*;

fn shift(
    eax_in: u32,
    count: u32,
    flags_in: u32,
    body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) -> (u32, u32) {
    let vm = run(|a| {
        a.push(flags_in)?;
        a.popfd()?;
        a.mov(eax, eax_in)?;
        a.mov(ecx, count)?;
        a.mov(edx, 0x1234_5678)?;
        body(a)?;
        a.int(0xd0)
    });
    (vm.reg(EAX), vm.flags())
}

#[test]
fn shl_shr_sar() {
    // shl by 1: CF = old MSB, OF = MSB(res) ^ CF.
    assert_eq!(shift(0x8000_0001, 1, 0, |a| a.shl(eax, 1)), (2, CF | OF));
    assert_eq!(shift(0x4000_0000, 1, 0, |a| a.shl(eax, 1)), (0x8000_0000, OF | SF | PF));
    // count 0 (CL = 32 masks to 0): nothing changes, flags included.
    assert_eq!(shift(0x1234, 32, CF | ZF | OF, |a| a.shl(eax, cl)), (0x1234, CF | ZF | OF));
    // count 33 masks to 1.
    assert_eq!(shift(3, 33, 0, |a| a.shr(eax, cl)), (1, CF));
    // shr by 31.
    assert_eq!(shift(0xC000_0000, 31, 0, |a| a.shr(eax, cl)), (1, CF | OF));
    // sar keeps the sign; OF = 0.
    assert_eq!(shift(0x8000_0000, 31, OF, |a| a.sar(eax, cl)), (0xFFFF_FFFF, SF | PF));
    assert_eq!(shift(0xFFFF_FF81, 1, 0, |a| a.sar(al, 1)), (0xFFFF_FFC0, CF | SF | PF));
    // 8-bit shl by 9: all bits out, CF = 0 (SDM loop), ZF.
    assert_eq!(shift(0xFF, 9, CF, |a| a.shl(al, cl)), (0, ZF | PF));
    // 8-bit shl by 8: CF = old bit 0.
    assert_eq!(shift(0x01, 8, 0, |a| a.shl(al, cl)), (0, CF | ZF | PF | OF));
}

#[test]
fn rol_ror() {
    assert_eq!(shift(0x8000_0001, 1, 0, |a| a.rol(eax, 1)), (3, CF | OF));
    assert_eq!(shift(0x8000_0001, 4, ZF, |a| a.ror(eax, cl)), (0x1800_0000, ZF));
    // ROR by 1 of 1: result 0x80000000, CF = 1, OF = bit31 ^ bit30 = 1.
    assert_eq!(shift(1, 1, 0, |a| a.ror(eax, 1)), (0x8000_0000, CF | OF));
    // 8-bit rol by 8: value unchanged, CF = LSB.
    assert_eq!(shift(0x81, 8, 0, |a| a.rol(al, cl)), (0x81, CF));
    // 16-bit rotate.
    assert_eq!(shift(0xAAAA_8001, 4, 0, |a| a.rol(ax, cl)), (0xAAAA_0018, 0));
}

#[test]
fn rcl_rcr_through_carry() {
    // rcl eax, 1 with CF=1: 0x80000000 -> 1, CF = 1, OF = MSB(res) ^ CF = 1.
    assert_eq!(shift(0x8000_0000, 1, CF, |a| a.rcl(eax, 1)), (1, CF | OF));
    // 8-bit rcl by 9 (mod 9 = 0): value and CF unchanged; OF (undefined) by the count-1
    // formula MSB(res) ^ CF = 1.
    assert_eq!(shift(0x55, 9, CF, |a| a.rcl(al, cl)), (0x55, CF | OF));
    // 8-bit rcl by 1 of 0x80 with CF=0: 0, CF=1.
    assert_eq!(shift(0x80, 1, 0, |a| a.rcl(al, 1)), (0, CF | OF));
    // rcr eax, 1 with CF=1: 1 -> 0x80000000, CF = 1; OF = MSB(old) ^ old CF = 1.
    assert_eq!(shift(1, 1, CF, |a| a.rcr(eax, 1)), (0x8000_0000, CF | OF));
    // 16-bit rcr by 17: identity.
    assert_eq!(shift(0x1234, 17, 0, |a| a.rcr(ax, cl)), (0x1234, 0));
    // rcr by 2 of 0b11 with CF=0: 0b11 -> C0000000 (bit1 -> CF? bit 0 lands in bit 31, bit 1 in CF).
    assert_eq!(shift(3, 2, 0, |a| a.rcr(eax, cl)).0, 0x8000_0000);
}

#[test]
fn shld_shrd() {
    // shld eax, edx, 8: (0x11223344 << 8) | (0x12345678 >> 24) = 0x22334412; CF = bit 24 of eax = 1;
    // OF (undefined for count > 1) = MSB(res) ^ CF = 1.
    assert_eq!(shift(0x1122_3344, 8, 0, |a| a.shld(eax, edx, 8)), (0x2233_4412, CF | PF | OF));
    // shrd eax, edx, 4: (0x11223344 >> 4) | (0x8 << 28) = 0x81122334; CF = bit 3 = 0; sign changed: OF.
    assert_eq!(shift(0x1122_3344, 4, 0, |a| a.shrd(eax, edx, cl)), (0x8112_2334, SF | OF));
    // count 0: nothing.
    assert_eq!(shift(5, 0, CF, |a| a.shrd(eax, edx, cl)), (5, CF));
    // 16-bit shld by 4: ax = 0x3344 -> 0x3445 (top nibble of dx = 0x5678 -> 5), CF = bit 12 = 1.
    assert_eq!(shift(0x1122_3344, 4, 0, |a| a.shld(ax, dx, 4)), (0x1122_3445, CF | OF));
}
