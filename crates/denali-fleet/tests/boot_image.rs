//! VMs booted from one laid-out image (`Vm::from_boot_image`, what fleets use) behave exactly
//! like VMs built from the parsed image (`Vm::new`), each with its own identity and memory.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use denali_engine::{Interpreter, SharedCode};
use denali_kernel::{BootImage, Image, Outcome, Vm, VmConfig};

#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn run(mut vm: Vm, out: &Output) -> (Outcome, String) {
    let outcome = vm.run(None).unwrap();
    drop(vm);
    (outcome, String::from_utf8_lossy(&out.0.lock().unwrap()).into_owned())
}

#[test]
fn vms_of_one_boot_image_run_like_vms_of_the_parsed_image() {
    const MEM: u32 = 64 << 10;
    let hello = denali_examples::find("hello").unwrap();
    let image = Image::from_elf(hello.elf).unwrap();
    let boot = BootImage::new(&image, MEM).unwrap();
    let code = SharedCode::new();
    for id in [3, 7, 3] {
        let out = Output::default();
        let vm =
            Vm::from_boot_image(&boot, id, Box::new(Interpreter::sharing(Arc::clone(&code))), Box::new(out.clone()))
                .unwrap();
        let booted = run(vm, &out);
        let out = Output::default();
        let config = VmConfig { mem_size: MEM, vm_id: id };
        let built = run(Vm::new(&image, config, Box::new(Interpreter::new()), Box::new(out.clone())).unwrap(), &out);
        assert_eq!(booted, built);
        assert_eq!(booted, (Outcome::Terminated(hello.expected_exit), denali_examples::hello_output(id, MEM)));
    }
}

#[test]
fn a_boot_image_refuses_what_vm_new_refuses() {
    let hello = denali_examples::find("hello").unwrap();
    let image = Image::from_elf(hello.elf).unwrap();
    // Too small for the image: the same load error as Vm::new.
    let err = BootImage::new(&image, 8 << 10).unwrap_err().to_string();
    let config = VmConfig { mem_size: 8 << 10, vm_id: 0 };
    let new_err =
        Vm::new(&image, config, Box::new(Interpreter::new()), Box::new(io::sink())).err().unwrap().to_string();
    assert_eq!(err, new_err);
}
