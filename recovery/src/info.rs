//! What `recovery verify --json` and `image-builder info` say about an
//! image ([`ImageInfo`], one set of field names): the manifest's fields and
//! the signature's key id as far as the files can be read, and the outcome
//! of the checks.

use crate::error::UpdateError;
use crate::verify;
use formats::image_info::{ImageInfo, InfoError};
use formats::manifest::Manifest;
use formats::signature::TrustedKey;
use std::path::Path;

/// Describes the image at `manifest` after its checks against `trusted`:
/// passed (`Ok`), or the first failure.
pub fn describe(
    manifest: &Path,
    trusted: &[TrustedKey],
    outcome: Result<(), &UpdateError>,
) -> ImageInfo {
    let bytes = std::fs::read(manifest).ok();
    let signature = std::fs::read_to_string(verify::signature_path(manifest)).ok();
    let payload_present = bytes
        .as_deref()
        .and_then(|b| Manifest::parse(b).ok())
        .is_some_and(|m| {
            manifest
                .parent()
                .unwrap_or(Path::new("."))
                .join(m.payload)
                .is_file()
        });
    let mut info = ImageInfo::unverified(
        &manifest.display().to_string(),
        bytes.as_deref(),
        signature.as_deref(),
        payload_present,
    );
    match outcome {
        // Verified: the trusted key is the one the signature names.
        Ok(()) => {
            info.signed_by = trusted
                .iter()
                .find(|k| Some(k.id) == info.key_id)
                .map(|k| k.name.clone())
        }
        Err(e) => info.error = Some(InfoError::from(e)),
    }
    info
}

impl From<&UpdateError> for InfoError {
    fn from(e: &UpdateError) -> InfoError {
        InfoError {
            stage: e.stage.to_string(),
            file: e.file.clone(),
            reason: e.reason.clone(),
        }
    }
}
