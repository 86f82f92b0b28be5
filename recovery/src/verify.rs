//! Everything that is checked before the first write, in order: the
//! manifest's signature by a trusted key, the manifest's fields, the
//! payload's size, then one pass over the payload that hashes it, decodes
//! it (on threads of their own) and checks every entry ([`crate::scan`])
//! without writing.

use crate::error::{Stage, UpdateError};
use crate::pipeline;
use crate::progress::Progress;
use crate::scan;
use formats::manifest::{hex, Manifest, MAX_SIZE};
use formats::signature::{self, TrustedKey};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// An image that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedImage {
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
    pub payload_path: PathBuf,
    /// The trusted key that signed it, as `ID from FILE`.
    pub signed_by: String,
}

/// Runs every check on the image whose manifest is at `manifest_path`.
pub fn verify(manifest_path: &Path, keys: &[TrustedKey]) -> Result<VerifiedImage, UpdateError> {
    let start = std::time::Instant::now();
    let (manifest, signed_by) = check_signature(manifest_path, keys)?;
    log::info!("signature: good, by trusted key {signed_by}");
    let manifest = check_manifest(manifest_path, &manifest)?;
    crate::supervisor::image_size(manifest.unpacked_size);
    log::info!(
        "manifest: {} {}, payload {} ({} bytes, {} entries, {} bytes unpacked)",
        manifest.product,
        manifest.version,
        manifest.payload,
        manifest.payload_size,
        manifest.entries,
        manifest.unpacked_size
    );
    let payload_path = manifest_path
        .parent()
        .unwrap_or(Path::new("."))
        .join(&manifest.payload);
    check_payload(&payload_path, &manifest)?;
    log::info!(
        "payload: size, BLAKE3 and all {} entries check out ({:.1} s)",
        manifest.entries,
        start.elapsed().as_secs_f64()
    );
    Ok(VerifiedImage {
        manifest,
        manifest_path: manifest_path.to_path_buf(),
        payload_path,
        signed_by,
    })
}

/// The signature file that belongs to a manifest.
pub fn signature_path(manifest_path: &Path) -> PathBuf {
    let mut s = manifest_path.as_os_str().to_owned();
    s.push(".minisig");
    PathBuf::from(s)
}

/// Reads the manifest and checks its signature; returns its bytes and the key.
fn check_signature(
    manifest_path: &Path,
    keys: &[TrustedKey],
) -> Result<(Vec<u8>, String), UpdateError> {
    let shown = manifest_path.display();
    let mut manifest = Vec::new();
    File::open(manifest_path)
        .and_then(|f| f.take(MAX_SIZE as u64 + 1).read_to_end(&mut manifest))
        .map_err(|e| UpdateError::new(Stage::Manifest, &shown, format!("cannot read: {e}")))?;
    let sig_path = signature_path(manifest_path);
    let signature = std::fs::read_to_string(&sig_path).map_err(|e| {
        UpdateError::new(
            Stage::Signature,
            sig_path.display(),
            format!("cannot read the signature beside the manifest: {e}"),
        )
    })?;
    let key = signature::verify(&manifest, &signature, keys)
        .map_err(|e| UpdateError::new(Stage::Signature, sig_path.display(), e))?;
    Ok((manifest, format!("{} from {}", key.id, key.name)))
}

fn check_manifest(manifest_path: &Path, bytes: &[u8]) -> Result<Manifest, UpdateError> {
    Manifest::parse(bytes)
        .map_err(|e| UpdateError::new(Stage::Manifest, manifest_path.display(), e))
}

/// Size first (cheap), then one pass ([`pipeline`]) with the scan.
fn check_payload(path: &Path, manifest: &Manifest) -> Result<(), UpdateError> {
    let shown = path.display().to_string();
    let fail = |reason: String| UpdateError::new(Stage::Payload, &shown, reason);
    let file = File::open(path).map_err(|e| fail(format!("cannot open: {e}")))?;
    let size = file
        .metadata()
        .map_err(|e| fail(format!("cannot stat: {e}")))?
        .len();
    if size != manifest.payload_size {
        return Err(fail(format!(
            "size: the manifest says {} bytes, the file has {size}",
            manifest.payload_size
        )));
    }
    let progress = Progress::new("verify", size);
    let pass = pipeline::pass(file, &progress, |tar| scan::scan(tar, &shown, &progress))
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if pass.size != manifest.payload_size {
        return Err(fail(format!(
            "size: the manifest says {} bytes, {} could be read",
            manifest.payload_size, pass.size
        )));
    }
    if pass.blake3 != manifest.payload_blake3 {
        return Err(fail(format!(
            "BLAKE3: the manifest says {}, the file hashes to {} (corrupt or replaced){}",
            hex(&manifest.payload_blake3),
            hex(&pass.blake3),
            pass.stopped()
        )));
    }
    let totals = pass.tar?;
    let mismatch = |what: &str, said: u64, found: u64| {
        UpdateError::new(
            Stage::Contents,
            &shown,
            format!("{what}: the manifest says {said}, the payload holds {found}"),
        )
    };
    if totals.entries != manifest.entries {
        return Err(mismatch("entries", manifest.entries, totals.entries));
    }
    if totals.unpacked_size != manifest.unpacked_size {
        return Err(mismatch(
            "unpacked size",
            manifest.unpacked_size,
            totals.unpacked_size,
        ));
    }
    Ok(())
}
