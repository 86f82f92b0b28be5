//! What `recovery verify --json` and `image-builder info --json` say about
//! an image, with one set of field names (see `docs/operations.md`):
//!
//! `manifest` (the path given), `product`, `version`, `payload`,
//! `payload_size`, `payload_blake3`, `unpacked_size`, `entries`, `created`
//! (from the manifest, `null` when it cannot be read), `key_id` (the key
//! the signature names), `payload_present`, `verified`, `signed_by` (the
//! trusted key file it verified against, `null` unless verified) and, when
//! not verified, `error`: `{stage, file, reason}`. Rendered with
//! `serde_json`, so any string gives valid JSON; [`ImageInfo::to_text`]
//! says the same for a terminal.

use crate::manifest::{hex, Manifest};
use crate::signature::{signature_key_id, KeyId};
use crate::units::{human, utc};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// Why an image did not verify: the stage, the file and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoError {
    pub stage: String,
    pub file: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageInfo {
    /// The manifest's path, as given.
    pub path: String,
    /// Whether the payload file is beside the manifest (then a
    /// verification covers its size, BLAKE3 and entries too).
    pub payload_present: bool,
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
    pub fn unverified(
        path: &str,
        manifest: Option<&[u8]>,
        signature: Option<&str>,
        payload_present: bool,
    ) -> ImageInfo {
        ImageInfo {
            path: path.to_string(),
            payload_present,
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
            "manifest": self.path,
            "product": m.map(|m| m.product.as_str()),
            "version": m.map(|m| m.version.as_str()),
            "payload": m.map(|m| m.payload.as_str()),
            "payload_size": m.map(|m| m.payload_size),
            "payload_blake3": m.map(|m| hex(&m.payload_blake3)),
            "unpacked_size": m.map(|m| m.unpacked_size),
            "entries": m.map(|m| m.entries),
            "created": m.map(|m| m.created),
            "key_id": self.key_id.map(|k| k.to_string()),
            "payload_present": self.payload_present,
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

    /// Lines of `name: value`, for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut line = |name: &str, value: String| {
            let _ = writeln!(out, "{name:<14}{value}");
        };
        line("manifest:", self.path.clone());
        if let Some(m) = &self.manifest {
            line("product:", m.product.clone());
            line("version:", m.version.clone());
            let here = if self.payload_present {
                ""
            } else {
                " (not beside the manifest)"
            };
            let size = m.payload_size;
            line(
                "payload:",
                format!("{}, {} ({size} bytes){here}", m.payload, human(size)),
            );
            line("blake3:", hex(&m.payload_blake3));
            line(
                "unpacked:",
                format!(
                    "{} ({} bytes) in {} entries",
                    human(m.unpacked_size),
                    m.unpacked_size,
                    m.entries
                ),
            );
            line("created:", format!("{} ({})", utc(m.created), m.created));
            line(
                "signed with:",
                self.key_id
                    .map_or("no readable signature beside the manifest".into(), |id| {
                        format!("key {id}")
                    }),
            );
        }
        let verdict = match (&self.signed_by, &self.error) {
            (_, Some(e)) => format!("FAILED: {}: {}: {}", e.stage, e.file, e.reason),
            (Some(by), None) if self.payload_present => {
                format!("good: signature by {by}, payload size, BLAKE3 and entries")
            }
            (Some(by), None) => format!("signature good, by {by} (payload not checked: absent)"),
            (None, None) => "not checked (pass --trusted-key K.pub)".into(),
        };
        line("verified:", verdict);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_there_and_any_string_is_escaped() {
        let info = ImageInfo {
            path: "m\u{2}".into(),
            payload_present: false,
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
        assert!(json.contains(r#""manifest":"m\u0002""#), "{json}");
        assert!(json.contains(r#""payload_present":false"#), "{json}");
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
