//! What `recovery verify --json` and `image-builder info --json` say about
//! an image, with one set of field names (see `docs/operations.md`):
//!
//! `product`, `version`, `payload`, `payload_size`, `payload_blake3`,
//! `unpacked_size`, `entries`, `created` (from the manifest, `null` when
//! it cannot be read), `key_id` (the key the signature names), `verified`,
//! `signed_by` (the trusted key file it verified against, `null` unless
//! verified) and, when not verified, `error`: `{stage, file, reason}`.
//! Rendered with `serde_json`, so any string gives valid JSON.

use crate::manifest::{hex, Manifest};
use crate::signature::{signature_key_id, KeyId};
use serde_json::{json, Value};

/// Why an image did not verify: the stage, the file and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoError {
    pub stage: String,
    pub file: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageInfo {
    /// The manifest's fields (trusted only when verified).
    pub manifest: Option<Manifest>,
    /// The key id the signature names.
    pub key_id: Option<KeyId>,
    /// The trusted key (its file) that the image verified against.
    pub signed_by: Option<String>,
    pub error: Option<InfoError>,
}

impl ImageInfo {
    /// What can be read of an image without trusting it: the manifest's
    /// fields (if it parses) and the key id its signature names (if the
    /// signature can be read).
    pub fn unverified(manifest: Option<&[u8]>, signature: Option<&str>) -> ImageInfo {
        ImageInfo {
            manifest: manifest.and_then(|m| Manifest::parse(m).ok()),
            key_id: signature.and_then(|s| signature_key_id(s).ok()),
            signed_by: None,
            error: None,
        }
    }

    /// Verified: a trusted key signed it and nothing failed.
    pub fn verified(&self) -> bool {
        self.error.is_none() && self.signed_by.is_some()
    }

    pub fn to_json(&self) -> String {
        let m = self.manifest.as_ref();
        let value = json!({
            "product": m.map(|m| m.product.as_str()),
            "version": m.map(|m| m.version.as_str()),
            "payload": m.map(|m| m.payload.as_str()),
            "payload_size": m.map(|m| m.payload_size),
            "payload_blake3": m.map(|m| hex(&m.payload_blake3)),
            "unpacked_size": m.map(|m| m.unpacked_size),
            "entries": m.map(|m| m.entries),
            "created": m.map(|m| m.created),
            "key_id": self.key_id.map(|k| k.to_string()),
            "verified": self.verified(),
            "signed_by": self.signed_by.as_deref(),
            "error": self.error.as_ref().map_or(Value::Null, |e| json!({
                "stage": e.stage,
                "file": e.file,
                "reason": e.reason,
            })),
        });
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_there_and_any_string_is_escaped() {
        let info = ImageInfo {
            manifest: None,
            key_id: Some(KeyId([1, 0, 0, 0, 0, 0, 0, 0])),
            signed_by: None,
            error: Some(InfoError {
                stage: "signature".into(),
                file: "a\"b\\c\u{1}\t\n".into(),
                reason: "x".into(),
            }),
        };
        let json = info.to_json();
        assert!(json.contains(r#""file":"a\"b\\c\u0001\t\n""#), "{json}");
        assert!(json.contains(r#""key_id":"0000000000000001""#), "{json}");
        assert!(json.contains(r#""verified":false"#), "{json}");
        for key in [
            "product",
            "version",
            "payload",
            "payload_size",
            "payload_blake3",
            "unpacked_size",
            "entries",
            "created",
            "signed_by",
        ] {
            assert!(json.contains(&format!("\"{key}\":null")), "{key}: {json}");
        }
    }
}
