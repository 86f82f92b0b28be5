//! The order of versions, for the downgrade policy: SemVer 2.0 precedence,
//! extended to the versions vendors actually write. See "Version order" in
//! `docs/update-records.md`.
//!
//! - An optional `v` before a digit is ignored; everything from the first
//!   `+` (build metadata) is ignored.
//! - The release part (before the first `-`) is a list of identifiers,
//!   split at every character that is not a letter or a digit and between
//!   digits and letters (`1.2.3a` is `1 2 3 a`). Missing identifiers count
//!   as `0`, so `1.0` equals `1.0.0`.
//! - A version with a pre-release part (after the first `-`) is below the
//!   same release without one: `2.0.1-rc1` < `2.0.1`. Pre-release parts
//!   compare identifier by identifier, a shorter list being lower when all
//!   else is equal (`1.0-alpha` < `1.0-alpha.1`).
//! - Identifiers: numbers compare as numbers (of any length), text as
//!   ASCII, and a number is below text (as SemVer says for pre-releases).
//!   Digits and letters are split in pre-release identifiers too, so
//!   `rc10` is above `rc9` (strict SemVer would compare them as text).
//!
//! The comparison is a total order on all strings: each version is turned
//! into a [`Key`], and keys compare with a derived `Ord`.

use std::cmp::Ordering;

/// Compares two versions: `Less` when `a` comes before `b`.
pub fn compare(a: &str, b: &str) -> Ordering {
    Key::of(a).cmp(&Key::of(b))
}

/// What a version compares by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// Without trailing zeros, so that `1.0` and `1.0.0` are equal.
    release: Vec<Ident>,
    /// `true` for a release (no pre-release part): above every pre-release.
    is_release: bool,
    pre: Vec<Ident>,
}

/// One identifier. The variant order makes a number sort below text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Ident {
    Number(Digits),
    Text(String),
}

/// A number of any length, without leading zeros: longer is larger, then
/// digit by digit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Digits(String);

impl Ord for Digits {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for Digits {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Key {
    pub fn of(version: &str) -> Key {
        let v = version.split('+').next().unwrap_or_default();
        let v = match v.strip_prefix(['v', 'V']) {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => rest,
            _ => v,
        };
        let (release, pre) = match v.split_once('-') {
            Some((release, pre)) => (release, Some(pre)),
            None => (v, None),
        };
        let mut release: Vec<Ident> = idents(release).collect();
        while release.last().is_some_and(Ident::is_zero) {
            release.pop();
        }
        Key {
            release,
            is_release: pre.is_none(),
            pre: pre.map(|p| idents(p).collect()).unwrap_or_default(),
        }
    }
}

impl Ident {
    fn is_zero(&self) -> bool {
        matches!(self, Ident::Number(Digits(d)) if d.is_empty())
    }
}

/// Runs of digits and runs of letters; anything else only separates.
fn idents(s: &str) -> impl Iterator<Item = Ident> + '_ {
    let mut rest = s;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
        let first = rest.chars().next()?;
        let digits = first.is_ascii_digit();
        let end = rest
            .find(|c: char| !c.is_ascii_alphanumeric() || c.is_ascii_digit() != digits)
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        rest = tail;
        Some(if digits {
            Ident::Number(Digits(run.trim_start_matches('0').to_string()))
        } else {
            Ident::Text(run.to_string())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn orders_versions_as_vendors_name_releases() {
        for (a, b, want) in [
            // Numbers as numbers.
            ("1.10", "1.9", Greater),
            ("2026.11", "2026.2", Greater),
            ("v2", "v10", Less),
            ("10.0.0", "9.99.99", Greater),
            ("1.2.3", "1.2.4", Less),
            ("123456789012345678901234567890.1", "99.1", Greater),
            // Missing parts are zeros.
            ("1.0", "1.0.0", Equal),
            ("1", "1.0.0.0", Equal),
            ("2.0.1", "2.0", Greater),
            ("1.01", "1.1", Equal),
            // A pre-release is below its release, above the one before.
            ("2.0.1-rc1", "2.0.1", Less),
            ("2.0.1-rc1", "2.0.0", Greater),
            ("2.0", "1.99-rc1", Greater),
            ("1.0-rc1", "1.0.0", Less),
            // SemVer's own example chain, spot-checked.
            ("1.0.0-alpha", "1.0.0-alpha.1", Less),
            ("1.0.0-alpha.1", "1.0.0-alpha.beta", Less),
            ("1.0.0-alpha.beta", "1.0.0-beta", Less),
            ("1.0.0-beta", "1.0.0-beta.2", Less),
            ("1.0.0-beta.2", "1.0.0-beta.11", Less),
            ("1.0.0-beta.11", "1.0.0-rc.1", Less),
            ("1.0.0-rc.1", "1.0.0", Less),
            // Digits inside an identifier compare as numbers.
            ("2.0-rc10", "2.0-rc9", Greater),
            // Build metadata is ignored; a leading v too.
            ("1.0.0+build.5", "1.0.0+build.7", Equal),
            ("1.0.0+20261124", "1.0.0", Equal),
            ("v1.2", "1.2.0", Equal),
            ("1.0.0-rc1+b2", "1.0.0-rc1", Equal),
            // A letter suffix is a later release.
            ("1.2.3", "1.2.3a", Less),
            ("1.1.1a", "1.1.1b", Less),
            // Text compares as ASCII; empty is lowest.
            ("", "0.1", Less),
            ("", "0", Equal),
            ("beta", "alpha", Greater),
        ] {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn the_order_is_total_on_a_mixed_sample() {
        let sample = [
            "",
            "0",
            "1",
            "1.0",
            "1.0.0",
            "1.0.0-rc1",
            "1.0.0-rc.1",
            "1.0-alpha",
            "v1",
            "1.0a",
            "1.0.0+x",
            "a",
            "1-",
            "-",
            "+",
            "1.-1",
            "01.2",
            "1..2",
            "1.2-",
            "1.2-0",
            "z9",
        ];
        for a in sample {
            for b in sample {
                assert_eq!(compare(a, b), compare(b, a).reverse(), "{a:?} {b:?}");
                for c in sample {
                    if compare(a, b) != Greater && compare(b, c) != Greater {
                        assert_ne!(compare(a, c), Greater, "{a:?} {b:?} {c:?}");
                    }
                }
            }
        }
    }
}
