//! What `recovery verify --json` and `image-builder info` say about an
//! image ([`ImageInfo`], one set of field names): the manifest's fields and
//! the signature's key id as far as the files can be read, and the outcome
//! of the checks.

use crate::error::UpdateError;
use crate::source::ImageSource;
use formats::image_info::{ImageInfo, InfoError};
use formats::manifest::Manifest;
use formats::signature::TrustedKey;
use std::path::Path;

/// Describes the image at `manifest` (a manifest or a bundle) after its checks against `trusted`:
/// passed (`Ok`), or the first failure.
pub fn describe(
    manifest: &Path,
    trusted: &[TrustedKey],
    outcome: Result<(), &UpdateError>,
) -> ImageInfo {
    let source = ImageSource::read(manifest).ok();
    let bytes = source.as_ref().map(|s| s.manifest.clone());
    let signature = source.as_ref().and_then(|s| s.signature.clone().ok());
    let payload_present = source.as_ref().is_some_and(|s| {
        Manifest::parse(&s.manifest)
            .ok()
            .is_some_and(|m| s.payload(&m).is_ok())
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
