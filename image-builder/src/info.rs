//! `image-builder info`: what an image holds (like `rauc info` and
//! `mender-artifact read`) and, given trusted keys, whether it verifies.
//! The checks are `recovery verify`'s ([`recovery::verify::verify_full`]),
//! and so is the report ([`recovery::info::describe`]): the same fields as
//! `recovery verify --json`.

use formats::image_info::ImageInfo;
use recovery::error::{Stage, UpdateError};
use recovery::source::ImageSource;
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

/// Reads the image at `manifest_path` (a manifest or a bundle); with
/// `trusted_keys`, verifies it: all of it when the payload is there, else
/// the signature.
pub fn inspect(manifest_path: &Path, trusted_keys: &[PathBuf]) -> Report {
    let mut trusted = Vec::new();
    let outcome = if trusted_keys.is_empty() {
        // Nothing to check against: the manifest must still be readable.
        read_manifest(manifest_path).map(|_| ())
    } else {
        recovery::keys::load(trusted_keys).and_then(|keys| {
            trusted = keys;
            let (source, payload_present) = read_manifest(manifest_path)?;
            if payload_present {
                recovery::verify::verify_full(manifest_path, &trusted)?;
            } else {
                recovery::verify::check_signature(&source, &trusted)?;
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

/// Reads and parses the manifest; says whether its payload is there.
fn read_manifest(path: &Path) -> Result<(ImageSource, bool), UpdateError> {
    let source = ImageSource::read(path)?;
    let manifest = formats::manifest::Manifest::parse(&source.manifest)
        .map_err(|e| UpdateError::new(Stage::Manifest, source.manifest_shown(), e))?;
    let present = source.payload(&manifest).is_ok();
    Ok((source, present))
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
