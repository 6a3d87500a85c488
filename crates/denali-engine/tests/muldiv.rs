//! MUL IMUL DIV IDIV, including the Divide exception.
mod common;
use common::*;
use denali_engine::{Exception, ExceptionKind, Exit, reg::*};
use iced_x86::code_asm::*;

#[test]
fn mul_and_imul_set_cf_of_when_the_high_half_matters() {
    let vm = run(|a| {
        a.mov(eax, 0x8000_0000u32)?;
        a.mov(ebx, 4)?;
        a.mul(ebx)?; // EDX:EAX = 2:0
        a.int(0xd0)
    });
    assert_eq!((vm.reg(EDX), vm.reg(EAX)), (2, 0));
    assert_eq!(vm.flags() & (CF | OF), CF | OF);
    let vm = run(|a| {
        a.mov(eax, 0xFFFF_FFFFu32)?; // -1
        a.mov(ebx, 5)?;
        a.imul(ebx)?; // -5: fits, CF = OF = 0
        a.int(0xd0)
    });
    assert_eq!((vm.reg(EDX), vm.reg(EAX)), (0xFFFF_FFFF, 0xFFFF_FFFB));
    assert_eq!(vm.flags() & (CF | OF), 0);
    let vm = run(|a| {
        a.mov(eax, 0x1234_0010)?;
        a.mov(bl, 0x20)?;
        a.mul(bl)?; // AX = 0x200
        a.mov(ecx, 0x10000)?;
        a.imul_3(ecx, ecx, 0x10000)?; // overflow: 0
        a.mov(edx, 7)?;
        a.imul_2(edx, dword_ptr(DATA))?; // [DATA] = 0
        a.mov(si, 0x4000)?;
        a.imul_3(si, si, 2)?; // 0x8000 does not fit in i16
        a.int(0xd0)
    });
    assert_eq!(vm.reg(EAX), 0x1234_0200);
    assert_eq!(vm.reg(ECX), 0);
    assert_eq!(vm.reg(EDX), 0);
    assert_eq!(vm.reg(ESI) & 0xFFFF, 0x8000);
    assert_eq!(vm.flags() & (CF | OF), CF | OF);
}

#[test]
fn div_and_idiv() {
    let vm = run(|a| {
        a.mov(edx, 1)?;
        a.mov(eax, 5)?;
        a.mov(ebx, 0x10)?;
        a.div(ebx)?; // 0x1_00000005 / 16
        a.mov(esi, eax)?;
        a.mov(edi, edx)?;
        a.mov(eax, 0xFFFF_FFF9u32)?; // -7
        a.cdq()?;
        a.mov(ebx, 2)?;
        a.idiv(ebx)?; // -3 rem -1
        a.mov(ecx, 0x0107)?; // AX = 263
        a.xchg(eax, ecx)?;
        a.mov(bl, 10)?;
        a.div(bl)?; // AL = 26, AH = 3
        a.int(0xd0)
    });
    assert_eq!((vm.reg(ESI), vm.reg(EDI)), (0x1000_0000, 5));
    assert_eq!((vm.reg(ECX), vm.reg(EDX)), (0xFFFF_FFFD, 0xFFFF_FFFF));
    assert_eq!(vm.reg(EAX) & 0xFFFF, 0x031A);
}

fn expect_divide(body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>, fault_offset: u32) {
    let mut vm = Vm::asm(|a| {
        body(a)?;
        a.int(0xd0)
    });
    let before_probe = vm.cpu;
    let exit = vm.run(100);
    let Exit::Exception(Exception { kind: ExceptionKind::Divide, eip, addr: 0 }) = exit else { panic!("{exit:?}") };
    assert_eq!(eip, CODE + fault_offset);
    assert_eq!(vm.cpu.eip, eip);
    let _ = before_probe;
}

#[test]
fn divide_errors_change_nothing() {
    // div by zero: mov eax,5 (5) ; xor ecx,ecx (2) ; div ecx
    expect_divide(
        |a| {
            a.mov(eax, 5)?;
            a.xor(ecx, ecx)?;
            a.div(ecx)
        },
        7,
    );
    // quotient overflow: EDX:EAX = 0x10_00000000 / 16 = 2^32
    expect_divide(
        |a| {
            a.mov(edx, 16)?;
            a.xor(eax, eax)?;
            a.mov(ecx, 16)?;
            a.div(ecx)
        },
        12,
    );
    // INT_MIN / -1
    let mut vm = Vm::asm(|a| {
        a.mov(eax, 0x8000_0000u32)?;
        a.cdq()?;
        a.mov(ecx, -1)?;
        a.stc()?;
        a.idiv(ecx)?;
        a.int(0xd0)
    });
    let exit = vm.run(100);
    assert_eq!(exit, Exit::Exception(Exception { kind: ExceptionKind::Divide, eip: CODE + 12, addr: 0 }));
    assert_eq!((vm.reg(EAX), vm.reg(EDX), vm.reg(ECX)), (0x8000_0000, 0xFFFF_FFFF, 0xFFFF_FFFF));
    assert_eq!(vm.flags() & CF, CF);
    assert_eq!(vm.cpu.instructions, 4);
    // 8-bit: AX = 0x100 / 1 = 256 does not fit in AL.
    expect_divide(
        |a| {
            a.mov(eax, 0x100)?;
            a.mov(cl, 1)?;
            a.div(cl)
        },
        7,
    );
    // idiv 8-bit: -128 / -1.
    expect_divide(
        |a| {
            a.mov(eax, 0xFF80)?;
            a.mov(cl, 0xFF)?;
            a.idiv(cl)
        },
        7,
    );
}
