//! The instruction parser never panics, and what it accepts renders back
//! to text it parses the same way.
#![no_main]
use formats::instruction::Instruction;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(instruction) = Instruction::parse(data) {
        let again = Instruction::parse(instruction.render().as_bytes()).expect("rendered text parses");
        assert_eq!(again, instruction);
    }
});
