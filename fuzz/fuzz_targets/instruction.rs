//! The instruction parser never panics, and what it accepts renders back
//! to text it parses the same way. The input is tried as it is (the CRC
//! check) and sealed with a correct CRC line (to reach the fields).
#![no_main]
use formats::instruction::Instruction;
use formats::keyvalue::seal;
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8]) {
    if let Ok(instruction) = Instruction::parse(bytes) {
        let again = Instruction::parse(instruction.render().as_bytes()).expect("rendered text parses");
        assert_eq!(again, instruction);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Ok(text) = std::str::from_utf8(data) {
        check(seal(text).as_bytes());
    }
});
