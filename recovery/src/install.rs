//! Writing a verified image into a directory: one pass over the payload
//! ([`pipeline`]) with [`extract`] reading the tar stream, a write-back
//! thread beside it, and one final `syncfs`.
//!
//! The payload is hashed again as it is read: the bytes written must be
//! the bytes that were verified, even on storage that returns different
//! data on a second read. In format 2 only the tar part is decoded (the
//! entry index that ends the payload is hashed), and every tar header is
//! compared with its record of the verified index.

use crate::error::{Stage, UpdateError};
use crate::extract::{self, Extracted};
use crate::fault::{self, Point};
use crate::pipeline;
use crate::progress::{human, Progress};
use crate::supervisor;
use crate::verify::VerifiedImage;
use crate::writeback;
use formats::manifest::hex;
use std::fs::File;
use std::path::Path;

pub fn install(image: &VerifiedImage, dir: &Path) -> Result<Extracted, UpdateError> {
    let shown = image.payload.shown();
    let root = File::open(dir).map_err(|e| {
        UpdateError::new(Stage::Extract, dir.display(), format!("cannot open: {e}"))
    })?;
    let file = image
        .payload
        .open()
        .map_err(|e| UpdateError::new(Stage::Extract, &shown, format!("cannot open: {e}")))?;
    let progress = Progress::new("extract", image.manifest.payload_size);
    let written = reread(image, file, dir, &root, &progress)?;
    log::info!("{}", progress.line());
    fault::hit(Point::BeforeSync);
    supervisor::enter(Stage::Sync);
    fault::hit(Point::HangInSync);
    nix::unistd::syncfs(&root)
        .map_err(|e| UpdateError::new(Stage::Sync, dir.display(), format!("syncfs failed: {e}")))?;
    fault::hit(Point::AfterSync);
    log::info!(
        "extract: {} entries, {} written and synced to {} ({:.1} s)",
        written.entries,
        human(written.bytes),
        dir.display(),
        progress.seconds()
    );
    Ok(written)
}

/// The extraction from the payload, read, hashed and decoded again.
fn reread(
    image: &VerifiedImage,
    file: impl std::io::Read + Send,
    dir: &Path,
    root: &File,
    progress: &Progress,
) -> Result<Extracted, UpdateError> {
    let shown = image.payload.shown();
    let body = image.manifest.payload_size - image.manifest.index_size;
    let index = image.index.as_deref();
    let pass = writeback::while_running(root, || {
        pipeline::pass(file, body, progress, |tar| {
            fault::hit(Point::HangInExtract);
            extract::extract(tar, dir, &shown, progress, index)
        })
    })
    .map_err(|e| UpdateError::new(Stage::Extract, &shown, format!("cannot read: {e}")))?;
    if pass.blake3 != image.manifest.payload_blake3 {
        return Err(UpdateError::new(
            Stage::Extract,
            &shown,
            format!(
                "the payload read while extracting hashes to {}, not the verified {}: \
                 the storage returned different data (the target must be written again){}",
                hex(&pass.blake3),
                hex(&image.manifest.payload_blake3),
                pass.stopped()
            ),
        ));
    }
    pass.tar
}
