//! The manifest parser never panics, and what it accepts round-trips.
#![no_main]
use formats::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = Manifest::parse(data) {
        let again = Manifest::parse(manifest.render().as_bytes()).expect("rendered text parses");
        assert_eq!(again, manifest);
    }
});
