//! The path checks never panic, and nothing they accept can leave the
//! target: no absolute path, no `..`, no NUL, no over-long name.
#![no_main]
use formats::entry_path::{normalize, Kind, TreeCheck, NAME_MAX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Entries separated by newlines; the first byte of each picks its
    // kind; a hard link is `PATH>TARGET`.
    let mut tree = TreeCheck::new();
    for line in data.split(|&b| b == b'\n') {
        let Some((&kind, rest)) = line.split_first() else { continue };
        let (path, kind, link) = match kind % 4 {
            0 => (rest, Kind::Directory, None),
            1 => (rest, Kind::Symlink, None),
            2 => (rest, Kind::Other, None),
            _ => {
                let mut parts = rest.splitn(2, |&b| b == b'>');
                let path = parts.next().unwrap_or_default();
                (path, Kind::HardLink, parts.next())
            }
        };
        if let Ok(normal) = tree.check(path, kind, link) {
            assert!(!normal.starts_with(b"/"));
            assert!(!normal.contains(&0));
            for component in normal.split(|&b| b == b'/') {
                assert!(component != b".." && component != b"." && component.len() <= NAME_MAX);
            }
            assert_eq!(normalize(&normal).as_deref(), Ok(&normal[..]));
        }
    }
});
