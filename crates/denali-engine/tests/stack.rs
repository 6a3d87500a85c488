//! PUSH POP quirks, PUSHAD POPAD, ENTER LEAVE, CALL RET.
mod common;
use common::*;
use denali_engine::reg::*;
use iced_x86::code_asm::*;

#[test]
fn push_esp_pushes_the_old_value_and_pop_to_esp_relative_memory() {
    let vm = run(|a| {
        a.push(esp)?;
        a.pop(eax)?;
        a.push(0x1234)?;
        a.push(0x5678)?;
        // pop [esp+0]: read 0x5678, ESP += 4, then store at the new ESP (overwrites 0x1234).
        a.pop(dword_ptr(esp))?;
        a.pop(ebx)?;
        a.push(-1)?; // push imm8, sign-extended
        a.pop(ecx)?;
        a.push(word_ptr(DATA))?; // 16-bit push
        a.mov(edx, esp)?;
        a.pop(si)?;
        a.int(0xd0)
    });
    assert_eq!(vm.reg(EAX), STACK_TOP);
    assert_eq!(vm.reg(EBX), 0x5678);
    assert_eq!(vm.reg(ECX), 0xFFFF_FFFF);
    assert_eq!(vm.reg(EDX), STACK_TOP - 2);
    assert_eq!(vm.reg(ESP), STACK_TOP);
}

#[test]
fn pushad_popad() {
    let vm = run(|a| {
        a.mov(eax, 1)?;
        a.mov(ecx, 2)?;
        a.mov(edx, 3)?;
        a.mov(ebx, 4)?;
        a.mov(ebp, 6)?;
        a.mov(esi, 7)?;
        a.mov(edi, 8)?;
        a.pushad()?;
        a.mov(dword_ptr(esp + 12), 0x99)?; // the saved ESP slot is skipped by POPAD
        a.mov(dword_ptr(esp + 28), 0x11)?; // saved EAX
        a.popad()?;
        a.int(0xd0)
    });
    assert_eq!(vm.reg(EAX), 0x11);
    assert_eq!(vm.reg(ESP), STACK_TOP);
    assert_eq!(vm.u32_at(STACK_TOP - 32), 8);
}

#[test]
fn pushad_saves_the_original_esp() {
    let vm = run(|a| {
        a.pushad()?;
        a.mov(eax, dword_ptr(esp + 12))?;
        a.int(0xd0)
    });
    assert_eq!(vm.reg(EAX), STACK_TOP);
}

#[test]
fn enter_leave_with_nesting() {
    let vm = run(|a| {
        a.mov(ebp, 0x5000)?;
        a.mov(dword_ptr(0x5000 - 4), 0xAAAA)?;
        a.enter(16, 0)?;
        a.mov(eax, esp)?;
        a.mov(ebx, ebp)?;
        a.leave()?;
        a.mov(ecx, esp)?;
        a.mov(edx, ebp)?;
        a.enter(8, 2)?; // push ebp; push [ebp-4]; push frame
        a.mov(esi, esp)?;
        a.mov(edi, ebp)?;
        a.int(0xd0)
    });
    assert_eq!(vm.reg(EBX), STACK_TOP - 4);
    assert_eq!(vm.reg(EAX), STACK_TOP - 4 - 16);
    assert_eq!((vm.reg(ECX), vm.reg(EDX)), (STACK_TOP, 0x5000));
    assert_eq!(vm.reg(EDI), STACK_TOP - 4);
    assert_eq!(vm.reg(ESI), STACK_TOP - 12 - 8);
    assert_eq!(vm.u32_at(STACK_TOP - 4), 0x5000);
    assert_eq!(vm.u32_at(STACK_TOP - 8), 0xAAAA);
    assert_eq!(vm.u32_at(STACK_TOP - 12), STACK_TOP - 4);
}

#[test]
fn call_ret_and_ret_imm() {
    let vm = run(|a| {
        let (mut f, mut after) = (a.create_label(), a.create_label());
        // jmp +4; g: inc eax; ret; nop; nop  (g is at CODE + 2)
        a.db(&[0xEB, 0x04, 0x40, 0xC3, 0x90, 0x90])?;
        a.push(7)?;
        a.call(f)?;
        a.set_label(&mut after)?;
        a.mov(ebx, CODE + 2)?;
        a.call(ebx)?;
        a.mov(dword_ptr(DATA), CODE + 2)?;
        a.call(dword_ptr(DATA))?;
        a.int(0xd0)?;
        a.set_label(&mut f)?;
        a.mov(eax, dword_ptr(esp + 4))?;
        a.mov(ecx, dword_ptr(esp))?;
        a.ret_1(4)
    });
    assert_eq!(vm.reg(EAX), 9);
    assert_eq!(vm.reg(ESP), STACK_TOP);
    assert_eq!(vm.reg(ECX), CODE + 6 + 2 + 5);
}
