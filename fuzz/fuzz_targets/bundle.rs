//! The bundle reader never panics, whatever the bytes and the file length
//! it is told, and every entry it accepts lies inside the file, 4-aligned,
//! within its size bound, in the expected order.
#![no_main]
use formats::bundle::{parse_head, HEAD_MAX, MAX_SIGNATURE, MAX_SW_DESCRIPTION, SW_DESCRIPTION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte says how much longer than the head the file is
    // (0: the head is the whole file).
    let Some((&extra, head)) = data.split_first() else { return };
    let file_len = head.len() as u64 + u64::from(extra) * 997;
    if let Ok(l) = parse_head(&head[..head.len().min(HEAD_MAX)], file_len) {
        let entries = [&l.sw_description, &l.manifest, &l.signature, &l.payload];
        for e in entries {
            assert_eq!(e.offset % 4, 0);
            assert!(e.offset + e.size <= file_len);
        }
        for pair in entries.windows(2) {
            assert!(pair[0].offset + pair[0].size <= pair[1].offset);
        }
        assert_eq!(l.sw_description.name, SW_DESCRIPTION);
        assert!(l.sw_description.size <= MAX_SW_DESCRIPTION);
        assert!(l.manifest.size <= formats::manifest::MAX_SIZE as u64);
        assert!(l.signature.size <= MAX_SIGNATURE);
        assert_eq!(l.signature.name, format!("{}.minisig", l.manifest.name));
        assert!(!l.payload.name.contains('/'));
    }
});
