//! `image-builder info`: what an image holds (like `rauc info` and
//! `mender-artifact read`) and, given trusted keys, whether it verifies.
//! The checks are the recovery's own ([`recovery::verify`]), and so is the
//! report ([`recovery::info::describe`]): the same fields as
//! `recovery verify --json`.

use formats::image_info::ImageInfo;
use formats::signature::{self, TrustedKey};
use recovery::error::{Stage, UpdateError};
use std::path::{Path, PathBuf};

/// What `info` found, and the exit code it means.
pub struct Report {
    pub info: ImageInfo,
    /// The stage of the first failed check, for the exit code.
    failed: Option<Stage>,
}

impl Report {
    /// `recovery verify`'s exit code for the failed stage, else 0.
    pub fn exit_code(&self) -> i32 {
        self.failed.map_or(0, Stage::exit_code)
    }
}

/// Reads the image at `manifest_path`; with `trusted_keys`, verifies it:
/// all of it when the payload is beside the manifest, else the signature.
pub fn inspect(manifest_path: &Path, trusted_keys: &[PathBuf]) -> Report {
    let mut trusted = Vec::new();
    let outcome = if trusted_keys.is_empty() {
        // Nothing to check against: the manifest must still be readable.
        read_manifest(manifest_path).map(|_| ())
    } else {
        recovery::keys::load(trusted_keys).and_then(|keys| {
            trusted = keys;
            let payload = read_manifest(manifest_path)?;
            if payload.is_file() {
                recovery::verify::verify(manifest_path, &trusted)?;
            } else {
                signature_only(manifest_path, &trusted)?;
            }
            Ok(())
        })
    };
    // Without trusted keys nothing was verified: no key is named as signer.
    let info = recovery::info::describe(manifest_path, &trusted, outcome.as_ref().map(|_| ()));
    Report {
        info,
        failed: outcome.err().map(|e| e.stage),
    }
}

/// Reads and parses the manifest; returns where its payload would be.
fn read_manifest(path: &Path) -> Result<PathBuf, UpdateError> {
    let bytes = std::fs::read(path).map_err(|e| {
        UpdateError::new(Stage::Manifest, path.display(), format!("cannot read: {e}"))
    })?;
    let manifest = formats::manifest::Manifest::parse(&bytes)
        .map_err(|e| UpdateError::new(Stage::Manifest, path.display(), e))?;
    Ok(path
        .parent()
        .unwrap_or(Path::new("."))
        .join(manifest.payload))
}

/// The signature check alone, for a manifest whose payload is not here.
fn signature_only(manifest_path: &Path, keys: &[TrustedKey]) -> Result<(), UpdateError> {
    let sig_path = recovery::verify::signature_path(manifest_path);
    let fail = |reason: String| UpdateError::new(Stage::Signature, sig_path.display(), reason);
    let manifest = std::fs::read(manifest_path).map_err(|e| {
        UpdateError::new(
            Stage::Manifest,
            manifest_path.display(),
            format!("cannot read: {e}"),
        )
    })?;
    let signature = std::fs::read_to_string(&sig_path).map_err(|e| {
        fail(format!(
            "cannot read the signature beside the manifest: {e}"
        ))
    })?;
    signature::verify(&manifest, &signature, keys).map_err(|e| fail(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_manifest_is_a_manifest_error() {
        let report = inspect(Path::new("/nonexistent/x.manifest"), &[]);
        assert_eq!(report.info.error.as_ref().unwrap().stage, "manifest");
        assert_eq!(report.exit_code(), 5);
        assert!(!report.info.verified());
    }
}
