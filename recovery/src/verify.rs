//! Everything that is checked before the first write, in order: the
//! manifest's signature by a trusted key, the manifest's fields, the
//! payload's size, then one pass over the payload that hashes it, decodes
//! it (on threads of their own) and checks every entry ([`crate::scan`])
//! without writing.
//!
//! Where the image will be installed ([`keep_for_install`]) and its tar
//! stream fits in a quarter of the available memory, the pass keeps the
//! decoded stream it checked: the extraction then writes those bytes
//! ([`crate::install`]) instead of reading, hashing and decoding the
//! payload a second time.

use crate::decode::Kept;
use crate::error::{Stage, UpdateError};
use crate::pipeline;
use crate::progress::Progress;
use crate::scan;
use crate::source::{ImageSource, PayloadSource};
use formats::manifest::{hex, Manifest};
use formats::signature::{self, TrustedKey};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

static KEEP: AtomicBool = AtomicBool::new(false);

/// Says that this process installs the images it verifies (the recovery,
/// `recovery apply`): from now on the verification keeps the decoded tar
/// stream when it fits in memory. Other callers (`recovery verify`,
/// `bootloader-glue request`) hold nothing.
pub fn keep_for_install() {
    KEEP.store(true, Relaxed);
}

/// How much of the decoded stream may be kept: a quarter of the memory
/// the kernel says is available (`MemAvailable`), the rest left to the
/// page cache that the extraction writes through; none if unknown.
pub fn keep_limit(meminfo: &str) -> usize {
    let available_kb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    usize::try_from(available_kb.saturating_mul(1024) / 4).unwrap_or(usize::MAX)
}

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
    /// The payload's tar stream as it was checked, when it was kept
    /// ([`keep_for_install`]).
    pub decoded: Option<Arc<Kept>>,
}

/// Runs every check on the image at `path`: a manifest with its signature
/// and payload beside it, or a bundle that holds the three ([`source`]).
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
    let decoded = check_payload(&payload, &manifest)?;
    log::info!(
        "payload: size, BLAKE3 and all {} entries check out ({:.1} s)",
        manifest.entries,
        start.elapsed().as_secs_f64()
    );
    Ok(VerifiedImage {
        manifest,
        manifest_path: path.to_path_buf(),
        payload,
        signed_by,
        decoded: decoded.map(Arc::new),
    })
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

/// Size first (cheap), then one pass ([`pipeline`]) with the scan; returns
/// the decoded stream if it was kept.
fn check_payload(
    payload: &PayloadSource,
    manifest: &Manifest,
) -> Result<Option<Kept>, UpdateError> {
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
    let limit = if KEEP.load(Relaxed) {
        keep_limit(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default())
    } else {
        0
    };
    let pass = pipeline::pass(file, &progress, |tar| {
        if limit > 0 {
            tar.keep(limit);
        }
        let totals = scan::scan(&mut *tar, &shown, &progress)?;
        Ok((totals, tar.kept()))
    })
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
    let (totals, kept) = pass.tar?;
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
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_stream_may_take_a_quarter_of_the_available_memory() {
        let meminfo = "MemTotal:       24683604 kB\nMemFree:        22987512 kB\n\
                       MemAvailable:    4000000 kB\nBuffers:  1 kB\n";
        assert_eq!(keep_limit(meminfo), 1_024_000_000);
        assert_eq!(keep_limit("MemTotal: 1 kB\n"), 0);
        assert_eq!(keep_limit("MemAvailable: lots\n"), 0);
    }
}
