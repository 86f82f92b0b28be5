//! The entry index parser never panics; what it accepts is the one
//! encoding of what it returns; the frame reader never panics either.
#![no_main]
use formats::entry::Entry;
use formats::index::{encode, read_frame, Index};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The count the records say, as a manifest that agrees would.
    let count = data
        .get(16..24)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    if let Ok(index) = Index::parse(data.to_vec(), count) {
        let entries: Vec<Entry> = index.iter().map(|r| r.expect("parsed")).collect();
        assert_eq!(encode(&entries), data);
    }
    let _ = read_frame(data, count);
});
