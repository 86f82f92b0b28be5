//! Sizes as people read them, in the summaries and log lines of every
//! program of the project.

/// `512 B`, `14.4 kB`, `198.3 MB`, `1.20 GB` (decimal units).
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..=999 => format!("{bytes} B"),
        1_000..=999_999 => format!("{:.1} kB", b / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} MB", b / 1e6),
        _ => format!("{:.2} GB", b / 1e9),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_well() {
        assert_eq!(super::human(512), "512 B");
        assert_eq!(super::human(14_376), "14.4 kB");
        assert_eq!(super::human(198_892_741), "198.9 MB");
        assert_eq!(super::human(1_003_000_000), "1.00 GB");
    }
}
