//! ALU, data movement and flag instructions, with expectations worked out from the Intel SDM.
mod common;
use common::*;
use denali_engine::reg::*;
use iced_x86::code_asm::*;

/// Runs `body` after loading EAX and EBX, with the status flags first set to `flags_in`,
/// and returns (EAX, status flags).
fn binop(
    eax_in: u32,
    ebx_in: u32,
    flags_in: u32,
    body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) -> (u32, u32) {
    let vm = run(|a| {
        a.push(flags_in)?;
        a.popfd()?;
        a.mov(eax, eax_in)?;
        a.mov(ebx, ebx_in)?;
        body(a)?;
        a.int(0xd0)
    });
    (vm.reg(EAX), vm.flags())
}

#[test]
fn add_sets_carry_overflow_aux_parity() {
    // 0x7FFFFFFF + 1 = 0x80000000: OF (pos+pos=neg), SF, AF (F+1 carries out of bit 3), PF (low byte 0).
    assert_eq!(binop(0x7FFF_FFFF, 1, 0, |a| a.add(eax, ebx)), (0x8000_0000, OF | SF | AF | PF));
    // 0xFFFFFFFF + 1 = 0: CF ZF AF PF.
    assert_eq!(binop(0xFFFF_FFFF, 1, 0, |a| a.add(eax, ebx)), (0, CF | ZF | AF | PF));
    // 8-bit: 0x80 + 0x80 = 0x00 with CF and OF; upper bits of EAX kept.
    assert_eq!(binop(0x1234_5680, 0x80, 0, |a| a.add(al, bl)), (0x1234_5600, CF | OF | ZF | PF));
    // 16-bit: 0x1 + 0x2 = 3, PF (two bits set).
    assert_eq!(binop(0xAAAA_0001, 2, CF, |a| a.add(ax, bx)), (0xAAAA_0003, PF));
}

#[test]
fn adc_and_sbb_use_the_carry() {
    assert_eq!(binop(0xFFFF_FFFF, 0, CF, |a| a.adc(eax, ebx)), (0, CF | ZF | AF | PF));
    assert_eq!(binop(5, 3, CF, |a| a.adc(eax, ebx)), (9, PF));
    assert_eq!(binop(5, 3, 0, |a| a.adc(eax, ebx)), (8, 0));
    // 0 - 0 - 1 = 0xFFFFFFFF: borrow, SF, AF, PF (0xFF has eight bits).
    assert_eq!(binop(0, 0, CF, |a| a.sbb(eax, ebx)), (0xFFFF_FFFF, CF | SF | AF | PF));
    // adc with 0xFFFFFFFF + carry: 1 + 0xFFFFFFFF + 1 = 1, CF.
    assert_eq!(binop(1, 0xFFFF_FFFF, CF, |a| a.adc(eax, ebx)), (1, CF | AF));
}

#[test]
fn sub_and_cmp() {
    // 0x80000000 - 1 = 0x7FFFFFFF: OF (neg-pos=pos), AF, PF (0xFF).
    assert_eq!(binop(0x8000_0000, 1, 0, |a| a.sub(eax, ebx)), (0x7FFF_FFFF, OF | AF | PF));
    // 1 - 2: borrow.
    assert_eq!(binop(1, 2, 0, |a| a.sub(eax, ebx)), (0xFFFF_FFFF, CF | SF | AF | PF));
    // CMP leaves the destination.
    assert_eq!(binop(3, 3, 0, |a| a.cmp(eax, ebx)), (3, ZF | PF));
    assert_eq!(binop(0x10, 0x20, 0, |a| a.cmp(al, 0x20)), (0x10, CF | SF | PF));
}

#[test]
fn logic_clears_cf_and_of() {
    assert_eq!(binop(0xF0F0_F0F0, 0x0FF0_0FF0, CF | OF | AF, |a| a.and(eax, ebx)), (0x00F0_00F0, PF));
    assert_eq!(binop(0x8000_0000, 1, CF | OF, |a| a.or(eax, ebx)), (0x8000_0001, SF));
    assert_eq!(binop(0x1234, 0x1234, CF, |a| a.xor(eax, ebx)), (0, ZF | PF));
    assert_eq!(binop(0x80, 0, 0, |a| a.test(al, 0x80)), (0x80, SF));
}

#[test]
fn inc_dec_keep_cf_neg_not() {
    assert_eq!(binop(0x7FFF_FFFF, 0, CF, |a| a.inc(eax)), (0x8000_0000, CF | OF | SF | AF | PF));
    assert_eq!(binop(0, 0, 0, |a| a.dec(eax)), (0xFFFF_FFFF, SF | AF | PF));
    assert_eq!(binop(1, 0, CF, |a| a.dec(eax)), (0, CF | ZF | PF));
    // NEG 0: CF clear, ZF.
    assert_eq!(binop(0, 0, CF, |a| a.neg(eax)), (0, ZF | PF));
    // NEG 0x80000000: OF, CF.
    assert_eq!(binop(0x8000_0000, 0, 0, |a| a.neg(eax)), (0x8000_0000, CF | OF | SF | PF));
    assert_eq!(binop(5, 0, 0, |a| a.neg(eax)), (0xFFFF_FFFB, CF | SF | AF));
    assert_eq!(binop(0x1234_00FF, 0, CF | ZF, |a| a.not(al)), (0x1234_0000, CF | ZF));
}

#[test]
fn byte_registers_address_the_right_bytes() {
    let vm = run(|a| {
        a.mov(eax, 0x1122_3344)?;
        a.mov(ah, 0xAB)?;
        a.mov(ebx, 0)?;
        a.mov(bl, ah)?;
        a.mov(bh, al)?;
        a.mov(cx, 0xBEEF)?;
        a.int(0xd0)
    });
    assert_eq!(vm.reg(EAX), 0x1122_AB44);
    assert_eq!(vm.reg(EBX), 0x44AB);
    assert_eq!(vm.reg(ECX), 0xBEEF);
}

#[test]
fn memory_forms_and_moffs() {
    let vm = run(|a| {
        a.mov(dword_ptr(DATA), 0x8000_0000u32)?;
        a.mov(ebx, DATA)?;
        a.mov(ecx, 1)?;
        a.add(dword_ptr(ebx + ecx * 4 - 4), 0x7FFF_FFFF)?;
        a.mov(eax, dword_ptr(DATA))?; // moffs form
        a.mov(word_ptr(DATA + 4), 0x1234)?;
        a.sub(word_ptr(DATA + 4), 0x34)?;
        a.mov(dl, byte_ptr(DATA + 5))?;
        a.int(0xd0)
    });
    assert_eq!(vm.reg(EAX), 0xFFFF_FFFF);
    assert_eq!(vm.u32_at(DATA + 4) & 0xFFFF, 0x1200);
    assert_eq!(vm.reg(EDX) & 0xFF, 0x12);
}

#[test]
fn movzx_movsx_lea_cbw_family() {
    let vm = run(|a| {
        a.mov(ebx, 0x0000_8080)?;
        a.movzx(eax, bl)?;
        a.movsx(ecx, bl)?;
        a.movsx(edx, bx)?;
        a.movsx(si, bl)?;
        a.lea(edi, dword_ptr(ebx + ebx * 2 + 0x10))?;
        a.int(0xd0)
    });
    assert_eq!(vm.reg(EAX), 0x80);
    assert_eq!(vm.reg(ECX), 0xFFFF_FF80);
    assert_eq!(vm.reg(EDX), 0xFFFF_8080);
    assert_eq!(vm.reg(ESI) & 0xFFFF, 0xFF80);
    assert_eq!(vm.reg(EDI), 0x8080 * 3 + 0x10);
    let vm = run(|a| {
        a.mov(eax, 0x1234_5680)?;
        a.cbw()?; // AX = 0xFF80
        a.mov(ebx, eax)?;
        a.cwde()?; // EAX = 0xFFFFFF80
        a.mov(ecx, eax)?;
        a.mov(edx, 0x5555_5555)?;
        a.cwd()?; // DX = 0xFFFF
        a.mov(esi, edx)?;
        a.mov(eax, 0x7000_0000)?;
        a.cdq()?;
        a.int(0xd0)
    });
    assert_eq!(vm.reg(EBX), 0x1234_FF80);
    assert_eq!(vm.reg(ECX), 0xFFFF_FF80);
    assert_eq!(vm.reg(ESI), 0x5555_FFFF);
    assert_eq!(vm.reg(EDX), 0);
}

#[test]
fn xchg_cmpxchg_xadd_bswap_cmpxchg8b() {
    let vm = run(|a| {
        a.mov(dword_ptr(DATA), 10)?;
        a.mov(eax, 10)?;
        a.mov(ecx, 99)?;
        a.lock().cmpxchg(dword_ptr(DATA), ecx)?; // equal: [DATA] = 99, ZF
        a.setz(bl)?;
        a.mov(eax, 5)?;
        a.cmpxchg(dword_ptr(DATA), ecx)?; // not equal: EAX = 99, ZF clear
        a.setz(bh)?;
        a.mov(edx, 1)?;
        a.xadd(dword_ptr(DATA), edx)?; // [DATA] = 100, EDX = 99
        a.mov(esi, 0x1122_3344)?;
        a.bswap(esi)?;
        a.mov(edi, 7)?;
        a.xchg(edi, esi)?;
        a.int(0xd0)
    });
    assert_eq!(vm.reg(EBX) & 0xFFFF, 0x0001);
    assert_eq!(vm.reg(EAX), 99);
    assert_eq!(vm.reg(EDX), 99);
    assert_eq!(vm.u32_at(DATA), 100);
    assert_eq!(vm.reg(EDI), 0x4433_2211);
    assert_eq!(vm.reg(ESI), 7);

    let vm = run(|a| {
        a.mov(dword_ptr(DATA), 1)?;
        a.mov(dword_ptr(DATA + 4), 2)?;
        a.mov(eax, 1)?;
        a.mov(edx, 2)?;
        a.mov(ebx, 0xAAAA)?;
        a.mov(ecx, 0xBBBB)?;
        a.cmpxchg8b(qword_ptr(DATA))?; // equal: stores ECX:EBX
        a.setz(byte_ptr(DATA + 16))?;
        a.cmpxchg8b(qword_ptr(DATA))?; // now unequal: EDX:EAX = m64
        a.setz(byte_ptr(DATA + 17))?;
        a.int(0xd0)
    });
    assert_eq!(vm.u32_at(DATA), 0xAAAA);
    assert_eq!(vm.u32_at(DATA + 4), 0xBBBB);
    assert_eq!((vm.reg(EAX), vm.reg(EDX)), (0xAAAA, 0xBBBB));
    assert_eq!(vm.u32_at(DATA + 16) & 0xFFFF, 0x0001);
}

#[test]
fn flag_instructions_lahf_sahf_pushfd_popfd() {
    let vm = run(|a| {
        a.stc()?;
        a.cmc()?;
        a.cmc()?; // CF = 1
        a.std()?;
        a.pushfd()?;
        a.pop(esi)?;
        a.cld()?;
        a.clc()?;
        a.mov(ah, 0xFF)?;
        a.sahf()?; // SF ZF AF PF CF = 1
        a.lahf()?;
        a.mov(ebx, eax)?;
        a.push(0xFFFF_FFFFu32)?;
        a.popfd()?; // only 0xCD5 may change
        a.pushfd()?;
        a.pop(ecx)?;
        a.push(0)?;
        a.popfd()?;
        a.pushfd()?;
        a.pop(edx)?;
        a.int(0xd0)
    });
    assert_eq!(vm.reg(ESI), 0x202 | CF | DF);
    assert_eq!(vm.reg(EBX) >> 8 & 0xFF, 0xD7); // SF ZF 0 AF 0 PF 1 CF
    assert_eq!(vm.reg(ECX), 0xCD5 | 0x202);
    assert_eq!(vm.reg(EDX), 0x202);
}

#[test]
fn xlat_and_nops() {
    let vm = run(|a| {
        a.mov(dword_ptr(DATA + 0x10), 0x4433_2211)?;
        a.mov(ebx, DATA)?;
        a.mov(eax, 0xFFFF_FF12u32)?;
        a.xlatb()?;
        a.nop()?;
        a.db(&[0x0F, 0x1F, 0x80, 0, 0, 0, 0x80])?; // nop dword [eax-0x80000000]: never accessed
        a.int(0xd0)
    });
    assert_eq!(vm.reg(EAX), 0xFFFF_FF33);
}
