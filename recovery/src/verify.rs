//! Everything that is checked before the first write, in order: the
//! manifest's signature by a trusted key, the manifest's fields, the
//! payload's size, then one pass over the payload that hashes it and
//! checks every entry ([`crate::scan`]) without writing.
//!
//! Format 2: the pass reads and hashes the payload without decoding it,
//! keeps its last `index-size` bytes, and once the hash matches, checks the
//! signed entry index held there ([`formats::index`]); the extraction then
//! compares every tar header with its record. Format 1: the pass decodes
//! the payload (on threads of its own) and checks the entries of the tar.
//!
//! [`verify_full`] (`recovery verify`, `image-builder info`) adds for
//! format 2 what the extraction would find after the erase: the payload
//! decoded and every tar header compared with its record, nothing written.

use crate::error::{Stage, UpdateError};
use crate::pipeline::{self, Pass};
use crate::progress::Progress;
use crate::scan::{self, Totals};
use crate::source::{ImageSource, PayloadSource};
use formats::index::{Index, TarCheckError};
use formats::manifest::{hex, Manifest};
use formats::signature::{self, TrustedKey};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An image that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedImage {
    pub manifest: Manifest,
    /// The path given: the manifest, or the bundle that holds it.
    pub manifest_path: PathBuf,
    /// Where the payload is: its own file, or its entry inside the bundle.
    pub payload: PayloadSource,
    /// The trusted key that signed it, as `ID from FILE`.
    pub signed_by: String,
    /// Format 2: the signed entry index, every record checked; the
    /// extraction compares each tar header with its record.
    pub index: Option<Arc<Index>>,
}

/// Runs every check on the image at `path`: a manifest with its signature
/// and payload beside it, or a bundle that holds the three ([`crate::source`]).
pub fn verify(path: &Path, keys: &[TrustedKey]) -> Result<VerifiedImage, UpdateError> {
    let start = std::time::Instant::now();
    let source = ImageSource::read(path)?;
    let signed_by = check_signature(&source, keys)?;
    log::info!("signature: good, by trusted key {signed_by}");
    let manifest = Manifest::parse(&source.manifest)
        .map_err(|e| UpdateError::new(Stage::Manifest, source.manifest_shown(), e))?;
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
    let payload = source.payload(&manifest)?;
    if payload.entry.is_some() {
        log::info!(
            "payload: read in place in {} at offset {}",
            payload.path.display(),
            payload.offset
        );
    }
    let index = check_payload(&payload, &manifest)?;
    let of = if index.is_some() {
        "of the signed entry index"
    } else {
        "decoded"
    };
    log::info!(
        "payload: size, BLAKE3 and all {} entries ({of}) check out ({:.1} s)",
        manifest.entries,
        start.elapsed().as_secs_f64()
    );
    Ok(VerifiedImage {
        manifest,
        manifest_path: path.to_path_buf(),
        payload,
        signed_by,
        index: index.map(Arc::new),
    })
}

/// [`verify`], then for a format-2 image the checks that the extraction
/// makes as it writes: the payload decoded (every zstd frame and its
/// checksum) and every tar header compared with its record of the signed
/// entry index ([`formats::index::check_tar`], the extraction's
/// comparison). Writes nothing. What a vendor's pipeline runs
/// (`recovery verify`), so that an image whose tar disagrees with its
/// index is refused there, not on a device after the erase.
pub fn verify_full(path: &Path, keys: &[TrustedKey]) -> Result<VerifiedImage, UpdateError> {
    let image = verify(path, keys)?;
    if let Some(index) = &image.index {
        check_against_index(&image, index)?;
    }
    Ok(image)
}

/// Decodes the payload of a verified format-2 image and compares it with
/// its index.
fn check_against_index(image: &VerifiedImage, index: &Index) -> Result<(), UpdateError> {
    let start = std::time::Instant::now();
    let shown = image.payload.shown();
    let fail = |reason: String| UpdateError::new(Stage::Payload, &shown, reason);
    let file = image
        .payload
        .open()
        .map_err(|e| fail(format!("cannot open: {e}")))?;
    let manifest = &image.manifest;
    let progress = Progress::new("decode", manifest.payload_size);
    let body = manifest.payload_size - manifest.index_size;
    let pass = pipeline::pass(file, body, &progress, |tar| {
        formats::index::check_tar(tar, index).map_err(|e| match e {
            TarCheckError::Disagree(d) => crate::extract::against_index(Stage::Contents, &shown, d),
            other => UpdateError::new(Stage::Contents, &shown, other),
        })
    })
    .map_err(|e| fail(format!("cannot read: {e}")))?;
    // Read again: it must still be what the manifest pins.
    same_as_signed(&pass, manifest).map_err(fail)?;
    let entries = pass.tar?;
    log::info!(
        "payload: decoded, and all {entries} tar headers match the signed entry index ({:.1} s)",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Checks the manifest's signature; returns the key that made it.
pub fn check_signature(source: &ImageSource, keys: &[TrustedKey]) -> Result<String, UpdateError> {
    let shown = source.signature_shown();
    let signature = source
        .signature
        .as_deref()
        .map_err(|reason| UpdateError::new(Stage::Signature, &shown, reason))?;
    let key = signature::verify(&source.manifest, signature, keys)
        .map_err(|e| UpdateError::new(Stage::Signature, &shown, e))?;
    Ok(format!("{} from {}", key.id, key.name))
}

/// What one pass found in the payload, once its hash is known.
enum Contents {
    /// Format 1: the entries of the decoded tar, checked.
    Decoded(Totals),
    /// Format 2: the bytes of the entry index, not yet read.
    Index(Vec<u8>),
}

/// Size first (cheap), then one pass ([`pipeline`]) that hashes the
/// payload and, in format 1, decodes and scans it; in format 2, once the
/// hash matches, the entry index is read and checked. Returns the index.
fn check_payload(
    payload: &PayloadSource,
    manifest: &Manifest,
) -> Result<Option<Index>, UpdateError> {
    let shown = payload.shown();
    let fail = |reason: String| UpdateError::new(Stage::Payload, &shown, reason);
    let size = payload.size;
    if size != manifest.payload_size {
        let holder = if payload.entry.is_some() {
            "the bundle's entry"
        } else {
            "the file"
        };
        return Err(fail(format!(
            "size: the manifest says {} bytes, {holder} has {size}",
            manifest.payload_size
        )));
    }
    let file = payload
        .open()
        .map_err(|e| fail(format!("cannot open: {e}")))?;
    let progress = Progress::new("verify", size);
    let body = manifest.payload_size - manifest.index_size;
    let pass = if manifest.format == 1 {
        pipeline::pass(file, body, &progress, |tar| {
            scan::scan(&mut *tar, &shown, &progress)
        })
        .map(|p| p.map(Contents::Decoded))
    } else {
        pipeline::read_tail(file, body, manifest.index_size, &progress)
            .map(|p| p.map(Contents::Index))
    }
    .map_err(|e| fail(format!("cannot read: {e}")))?;
    same_as_signed(&pass, manifest).map_err(fail)?;
    let (totals, index) = match pass.tar? {
        Contents::Decoded(totals) => (totals, None),
        Contents::Index(bytes) => {
            let index = formats::index::read_frame(&bytes, manifest.entries)
                .map_err(|e| UpdateError::new(Stage::Contents, &shown, e))?;
            let totals = scan::check_index(&index, &shown, &progress)?;
            (totals, Some(index))
        }
    };
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
    Ok(index)
}

/// The payload's size and BLAKE3, as one pass read them, against the
/// manifest's: why not, if they differ.
fn same_as_signed<T>(pass: &Pass<T>, manifest: &Manifest) -> Result<(), String> {
    if pass.size != manifest.payload_size {
        return Err(format!(
            "size: the manifest says {} bytes, {} could be read",
            manifest.payload_size, pass.size
        ));
    }
    if pass.blake3 != manifest.payload_blake3 {
        return Err(format!(
            "BLAKE3: the manifest says {}, the file hashes to {} (corrupt or replaced){}",
            hex(&manifest.payload_blake3),
            hex(&pass.blake3),
            pass.stopped()
        ));
    }
    Ok(())
}
