//! Version comparison is a total order on any three strings: it never
//! panics, is antisymmetric and transitive.
#![no_main]
use formats::version::compare;
use libfuzzer_sys::fuzz_target;
use std::cmp::Ordering::*;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let (a, b, c) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    assert_eq!(compare(a, a), Equal);
    assert_eq!(compare(a, b), compare(b, a).reverse());
    let (ab, bc, ac) = (compare(a, b), compare(b, c), compare(a, c));
    if ab != Greater && bc != Greater {
        assert_ne!(ac, Greater, "{a:?} <= {b:?} <= {c:?} but {a:?} > {c:?}");
    }
    if ab == Equal && bc == Equal {
        assert_eq!(ac, Equal);
    }
});
