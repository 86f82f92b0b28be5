//! Comparing versions: dotted numbers compare as numbers (`1.10` > `1.9`),
//! other parts as text, in order, so `2.0.1` > `2.0` > `1.99-rc1`.

use std::cmp::Ordering;

/// Compares two versions as people read them.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (chunks(a), chunks(b));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u128>(), y.parse::<u128>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    (Ok(_), Err(_)) => Ordering::Greater,
                    (Err(_), Ok(_)) => Ordering::Less,
                    (Err(_), Err(_)) => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// Runs of digits and runs of letters; separators only separate.
fn chunks(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
        let first = rest.chars().next()?;
        let end = rest
            .find(|c: char| {
                c.is_ascii_digit() != first.is_ascii_digit() || !c.is_ascii_alphanumeric()
            })
            .unwrap_or(rest.len());
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn compares_like_people() {
        for (a, b, want) in [
            ("1.10", "1.9", Greater),
            ("2.0.1", "2.0", Greater),
            ("2.0", "2.0", Equal),
            ("1.0", "1.0.0", Less),
            ("2.0", "1.99-rc1", Greater),
            ("1.2.3", "1.2.3a", Less),
            ("2026.11", "2026.2", Greater),
            ("v2", "v10", Less),
        ] {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}
