//! Minisign public keys and signatures, and the check of a manifest against
//! the trusted keys. The cryptography is `minisign-verify`'s; this module adds
//! what an operator needs to act on a refusal: which key signed, which keys
//! are trusted.

use std::fmt;
use thiserror::Error;

/// A minisign key id: 8 bytes, shown as minisign shows it (the bytes read as
/// a little-endian number, 16 uppercase hex digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

/// A public key that signatures are checked against, with the name of where
/// it came from (a file name) for messages.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub name: String,
    pub id: KeyId,
    key: minisign_verify::PublicKey,
}

#[derive(Debug, Error)]
pub enum SignatureError {
    #[error("trusted key {name}: {reason}")]
    BadKey { name: String, reason: String },
    #[error("no trusted keys are configured")]
    NoTrustedKeys,
    #[error("the signature is not in minisign format: {reason}")]
    BadSignatureFile { reason: String },
    #[error("signed by key {signed_by}, which is not trusted (trusted: {trusted})")]
    UntrustedKey { signed_by: KeyId, trusted: String },
    #[error(
        "the signature by trusted key {key} does not match the manifest: \
         the manifest or its signature was changed after signing"
    )]
    Mismatch { key: String },
}

impl TrustedKey {
    /// Parses a minisign public key file (`untrusted comment:` line, then
    /// the base64 key), or the bare base64 line.
    pub fn parse(name: &str, text: &str) -> Result<TrustedKey, SignatureError> {
        let bad = |reason: &str| SignatureError::BadKey {
            name: name.to_string(),
            reason: reason.to_string(),
        };
        let line = key_line(text).ok_or_else(|| bad("no key line found"))?;
        let raw = base64_decode(line).ok_or_else(|| bad("the key line is not base64"))?;
        if raw.len() != 42 || &raw[..2] != b"Ed" {
            return Err(bad(
                "expected a minisign Ed25519 public key (42 bytes, \"Ed\")",
            ));
        }
        let key = minisign_verify::PublicKey::from_base64(line)
            .map_err(|e| bad(&format!("not a minisign public key: {e}")))?;
        Ok(TrustedKey {
            name: name.to_string(),
            id: KeyId(raw[2..10].try_into().expect("8 bytes")),
            key,
        })
    }
}

/// The base64 line of a minisign key file (public or secret): the first
/// line that is neither empty nor the `untrusted comment:`.
pub fn key_line(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
}

/// The key id a minisign signature names, read without checking anything.
pub fn signature_key_id(signature: &str) -> Result<KeyId, SignatureError> {
    let bad = |reason: &str| SignatureError::BadSignatureFile {
        reason: reason.to_string(),
    };
    let line = signature
        .lines()
        .nth(1)
        .ok_or_else(|| bad("expected 4 lines, found fewer than 2"))?;
    let raw = base64_decode(line.trim()).ok_or_else(|| bad("line 2 is not base64"))?;
    if raw.len() != 74 {
        return Err(bad("line 2 does not hold a 74-byte signature"));
    }
    Ok(KeyId(raw[2..10].try_into().expect("8 bytes")))
}

/// Checks `signature` (the text of a `.minisig` file) over `data` against
/// the trusted keys, and returns the key that made it.
pub fn verify<'k>(
    data: &[u8],
    signature: &str,
    keys: &'k [TrustedKey],
) -> Result<&'k TrustedKey, SignatureError> {
    if keys.is_empty() {
        return Err(SignatureError::NoTrustedKeys);
    }
    let signed_by = signature_key_id(signature)?;
    let sig = minisign_verify::Signature::decode(signature).map_err(|e| {
        SignatureError::BadSignatureFile {
            reason: e.to_string(),
        }
    })?;
    let Some(key) = keys.iter().find(|k| k.id == signed_by) else {
        return Err(SignatureError::UntrustedKey {
            signed_by,
            trusted: keys
                .iter()
                .map(|k| format!("{} from {}", k.id, k.name))
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    // Legacy (non-prehashed) signatures are accepted: over a manifest of a
    // few hundred bytes they are as strong, and older minisign makes them.
    key.key
        .verify(data, &sig, true)
        .map_err(|_| SignatureError::Mismatch {
            key: format!("{} from {}", key.id, key.name),
        })?;
    Ok(key)
}

/// Standard base64 with padding, as minisign writes it.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = s.as_bytes();
    if bytes.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = n << 6 | value(c)?;
        }
        n <<= 6 * pad as u32;
        let three = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&three[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example key and signature of minisign-verify's documentation:
    // a signature of the four bytes "test".
    const PK: &str = "untrusted comment: minisign public key\n\
                      RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3\n";
    const SIG: &str = "untrusted comment: signature from minisign secret key\n\
RUQf6LRCGA9i559r3g7V1qNyJDApGip8MfqcadIgT9CuhV3EMhHoN1mGTkUidF/z7SrlQgXdy8ofjb7bNJJylDOocrCo8KLzZwo=\n\
trusted comment: timestamp:1633700835\tfile:test\tprehashed\n\
wLMDjy9FLAuxZ3q4NlEvkgtyhrr0gtTu6KC4KBJdITbbOeAi1zBIYo0v4iTgt8jJpIidRJnp94ABQkJAgAooBQ==\n";

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert!(base64_decode("a*==").is_none());
        assert!(base64_decode("abc").is_none());
    }

    #[test]
    fn verifies_and_names_the_key() {
        let key = TrustedKey::parse("test.pub", PK).unwrap();
        assert_eq!(key.id.to_string(), "E7620F1842B4E81F");
        let keys = [key];
        assert_eq!(verify(b"test", SIG, &keys).unwrap().name, "test.pub");
    }

    #[test]
    fn refuses_changed_data() {
        let keys = [TrustedKey::parse("test.pub", PK).unwrap()];
        let err = verify(b"tesT", SIG, &keys).unwrap_err();
        assert!(matches!(err, SignatureError::Mismatch { .. }), "{err}");
    }

    #[test]
    fn refuses_an_untrusted_key_naming_both() {
        // Same key material, another key id: the signature names a key
        // that is not in the list.
        let other = "RWQAAAAAAAAAAHmlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3";
        let keys = [TrustedKey::parse("other.pub", other).unwrap()];
        let err = verify(b"test", SIG, &keys).unwrap_err().to_string();
        assert!(err.contains("E7620F1842B4E81F"), "{err}");
        assert!(err.contains("other.pub"), "{err}");
        assert!(matches!(
            verify(b"test", SIG, &[]),
            Err(SignatureError::NoTrustedKeys)
        ));
    }

    #[test]
    fn refuses_garbage() {
        assert!(TrustedKey::parse("k", "hello\n").is_err());
        let keys = [TrustedKey::parse("test.pub", PK).unwrap()];
        assert!(matches!(
            verify(b"test", "just one line\n", &keys),
            Err(SignatureError::BadSignatureFile { .. })
        ));
    }
}
