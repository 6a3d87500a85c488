//! Arbitrary bytes as a flat image: never panic; the validator and the interpreter agree.
#![no_main]

libfuzzer_sys::fuzz_target!(|image: &[u8]| denali_fuzzing::flat_image::check(image));
