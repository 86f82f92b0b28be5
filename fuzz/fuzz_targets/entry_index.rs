//! The entry index parser never panics; what it accepts is the one
//! encoding of what it returns; the frame reader never panics either.
#![no_main]
use formats::index::{encode, parse, read_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = parse(data) {
        assert_eq!(encode(&entries), data);
    }
    let _ = read_frame(data);
});
