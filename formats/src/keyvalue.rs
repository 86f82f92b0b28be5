//! Strict `key=value` text: one pair a line, keys from a fixed schema, no
//! duplicates, nothing ignored. Errors name the line.

use thiserror::Error;

/// One `key=value` line, with its 1-based line number for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair<'a> {
    pub line: usize,
    pub key: &'a str,
    pub value: &'a str,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyValueError {
    #[error("line {line}: expected key=value, found {found:?}")]
    NotAPair { line: usize, found: String },
    #[error("line {line}: key {key:?} is not one of: {known}")]
    UnknownKey {
        line: usize,
        key: String,
        known: String,
    },
    #[error("line {line}: key {key:?} appears a second time (first on line {first})")]
    DuplicateKey {
        line: usize,
        key: String,
        first: usize,
    },
    #[error("missing key {key:?}")]
    MissingKey { key: String },
    #[error("line {line}: {key}={value:?}: {expected}")]
    BadValue {
        line: usize,
        key: String,
        value: String,
        expected: String,
    },
    #[error("the text does not end with a newline (cut short?)")]
    NoFinalNewline,
}

/// Splits `text` into pairs, checking every key against `known`. Blank lines
/// and comments are not allowed: every byte of a record means something.
pub fn parse<'a>(text: &'a str, known: &[&str]) -> Result<Vec<Pair<'a>>, KeyValueError> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(KeyValueError::NoFinalNewline);
    }
    let mut pairs: Vec<Pair<'a>> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let Some((key, value)) = raw.split_once('=') else {
            return Err(KeyValueError::NotAPair {
                line,
                found: raw.to_string(),
            });
        };
        if !known.contains(&key) {
            return Err(KeyValueError::UnknownKey {
                line,
                key: key.to_string(),
                known: known.join(", "),
            });
        }
        if let Some(first) = pairs.iter().find(|p| p.key == key) {
            return Err(KeyValueError::DuplicateKey {
                line,
                key: key.to_string(),
                first: first.line,
            });
        }
        pairs.push(Pair { line, key, value });
    }
    Ok(pairs)
}

/// Looks a required key up in parsed pairs.
pub fn require<'p, 'a>(pairs: &'p [Pair<'a>], key: &str) -> Result<&'p Pair<'a>, KeyValueError> {
    pairs
        .iter()
        .find(|p| p.key == key)
        .ok_or_else(|| KeyValueError::MissingKey {
            key: key.to_string(),
        })
}

impl Pair<'_> {
    /// The error for this pair's value, saying what was expected.
    pub fn bad(&self, expected: &str) -> KeyValueError {
        KeyValueError::BadValue {
            line: self.line,
            key: self.key.to_string(),
            value: self.value.to_string(),
            expected: expected.to_string(),
        }
    }

    /// The value as a decimal unsigned number without sign or leading zeros.
    pub fn as_u64(&self) -> Result<u64, KeyValueError> {
        let v = self.value;
        let canonical = !v.is_empty()
            && v.bytes().all(|b| b.is_ascii_digit())
            && (v == "0" || !v.starts_with('0'));
        if !canonical {
            return Err(self.bad("expected a decimal number"));
        }
        v.parse().map_err(|_| self.bad("expected a decimal number"))
    }

    /// The value as a name: ASCII letters, digits, `.`, `_`, `-`, `+`, not
    /// starting with `.` or `-`, at most 128 bytes.
    pub fn as_name(&self) -> Result<&str, KeyValueError> {
        if is_name(self.value) {
            Ok(self.value)
        } else {
            Err(self.bad("expected 1 to 128 of A-Z a-z 0-9 . _ - +, not starting with . or -"))
        }
    }
}

/// Appends the checksum line `crc32=XXXXXXXX` (CRC-32 of every byte before
/// it), so that a torn or hand-edited record is refused, not half-read.
pub fn seal(body: &str) -> String {
    format!("{body}crc32={:08x}\n", crc32fast::hash(body.as_bytes()))
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SealError {
    #[error("not UTF-8 text")]
    NotText,
    #[error("the last line is not crc32=<8 hex digits> (cut short?)")]
    NoChecksum,
    #[error("crc32: the file says {said:08x}, its contents give {found:08x} (torn or edited)")]
    Mismatch { said: u32, found: u32 },
}

/// Checks and strips the checksum line; returns the text before it.
pub fn unseal(bytes: &[u8]) -> Result<&str, SealError> {
    let text = std::str::from_utf8(bytes).map_err(|_| SealError::NotText)?;
    let without_newline = text.strip_suffix('\n').ok_or(SealError::NoChecksum)?;
    let start = without_newline.rfind('\n').map_or(0, |i| i + 1);
    let hex = without_newline[start..]
        .strip_prefix("crc32=")
        .filter(|h| h.len() == 8 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or(SealError::NoChecksum)?;
    let said = u32::from_str_radix(hex, 16).map_err(|_| SealError::NoChecksum)?;
    let body = &text[..start];
    let found = crc32fast::hash(body.as_bytes());
    if said != found {
        return Err(SealError::Mismatch { said, found });
    }
    Ok(body)
}

/// A value that fits on one line: line breaks become spaces.
pub fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Whether `s` is a safe name for a product, a version or a file.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["a", "b"];

    #[test]
    fn parses_pairs_in_order() {
        let pairs = parse("a=1\nb=x=y\n", KNOWN).unwrap();
        assert_eq!(pairs[0].key, "a");
        assert_eq!(pairs[1].value, "x=y");
        assert_eq!(pairs[1].line, 2);
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        assert!(matches!(
            parse("c=1\n", KNOWN),
            Err(KeyValueError::UnknownKey { line: 1, .. })
        ));
        assert!(matches!(
            parse("a=1\na=2\n", KNOWN),
            Err(KeyValueError::DuplicateKey {
                line: 2,
                first: 1,
                ..
            })
        ));
        assert!(matches!(
            parse("a=1\n\n", KNOWN),
            Err(KeyValueError::NotAPair { line: 2, .. })
        ));
        assert_eq!(parse("a=1", KNOWN), Err(KeyValueError::NoFinalNewline));
    }

    #[test]
    fn numbers_are_canonical() {
        let p = |v: &'static str| Pair {
            line: 1,
            key: "a",
            value: v,
        };
        assert_eq!(p("0").as_u64(), Ok(0));
        assert_eq!(p("123").as_u64(), Ok(123));
        for bad in ["", "012", "+1", "-1", " 1", "1 ", "99999999999999999999999"] {
            assert!(p(bad).as_u64().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn seals_and_checks() {
        let sealed = seal("a=1\nb=2\n");
        assert_eq!(unseal(sealed.as_bytes()), Ok("a=1\nb=2\n"));
        let edited = sealed.replace("a=1", "a=2");
        assert!(matches!(
            unseal(edited.as_bytes()),
            Err(SealError::Mismatch { .. })
        ));
        let torn = &sealed[..sealed.len() - 5];
        assert_eq!(unseal(torn.as_bytes()), Err(SealError::NoChecksum));
        assert_eq!(unseal(b"a=1\n"), Err(SealError::NoChecksum));
        assert_eq!(unseal(seal("").as_bytes()), Ok(""));
    }

    #[test]
    fn names_are_safe() {
        assert!(is_name("acme-gw"));
        assert!(is_name("2.0.1+build.5"));
        for bad in ["", "..", ".hidden", "-x", "a/b", "a b", "é"] {
            assert!(!is_name(bad), "{bad:?} accepted");
        }
    }
}
