//! Minisign signatures made deterministically, so that the same manifest
//! and key always give the same signature file (reproducible images).
//!
//! The `minisign` crate and tool add random noise to each signature
//! (hedged Ed25519); plain RFC 8032 Ed25519, used here, is deterministic
//! and verifies the same way. The format, line by line:
//! `untrusted comment: …`, base64(`ED` ‖ key id ‖ Ed25519(BLAKE2b-512(data))),
//! `trusted comment: …`, base64(Ed25519(signature ‖ trusted comment)).

use crate::keygen::{KEY_ID, SEED};
use blake2::{Blake2b512, Digest};
use ed25519_dalek::Signer;

pub struct SigningKey {
    key_id: [u8; 8],
    key: ed25519_dalek::SigningKey,
}

impl SigningKey {
    /// Takes the key id and seed from a decrypted minisign secret key (laid
    /// out as [`crate::keygen`] describes).
    pub fn from_minisign(sk: &minisign::SecretKey) -> SigningKey {
        let bytes = sk.to_bytes();
        let key_id: [u8; 8] = bytes[KEY_ID].try_into().expect("8 bytes");
        let seed: [u8; 32] = bytes[SEED].try_into().expect("32 bytes");
        SigningKey {
            key_id,
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        }
    }

    /// A `.minisig` file's text for `data`, in minisign's prehashed mode.
    pub fn sign(&self, data: &[u8], trusted_comment: &str, untrusted_comment: &str) -> String {
        let prehash = Blake2b512::digest(data);
        let signature = self.key.sign(&prehash).to_bytes();
        let mut line2 = b"ED".to_vec();
        line2.extend_from_slice(&self.key_id);
        line2.extend_from_slice(&signature);
        let mut global = signature.to_vec();
        global.extend_from_slice(trusted_comment.as_bytes());
        let global = self.key.sign(&global).to_bytes();
        format!(
            "untrusted comment: {untrusted_comment}\n{}\ntrusted comment: {trusted_comment}\n{}\n",
            base64(&line2),
            base64(&global)
        )
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, &b| n << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b"hello"), "aGVsbG8=");
        assert_eq!(base64(b"hi"), "aGk=");
        assert_eq!(base64(b"abc"), "YWJj");
    }

    #[test]
    fn signatures_are_deterministic_and_verify() {
        let pair = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let key = SigningKey::from_minisign(&pair.sk);
        let a = key.sign(b"data", "t", "u");
        assert_eq!(a, key.sign(b"data", "t", "u"));
        let pk = pair.pk.to_box().unwrap().to_string();
        let trusted = [formats::signature::TrustedKey::parse("k", &pk).unwrap()];
        formats::signature::verify(b"data", &a, &trusted).unwrap();
        assert!(formats::signature::verify(b"Data", &a, &trusted).is_err());
    }
}
