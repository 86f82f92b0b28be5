//! An image: the payload, the manifest that pins it, and the manifest's
//! minisign signature, written into one directory as
//! `<product>-<version>.tar.zst`, `.manifest` and `.manifest.minisig`.

use crate::error::{BuildError, IoContext};
use crate::payload::{self, Compression};
use crate::progress::Progress;
use crate::sign::SigningKey;
use crate::tree::{self, Entry};
use crate::{from_tar, keygen, rootfs};
use formats::keyvalue::is_name;
use formats::manifest::{Manifest, FORMATS, FORMAT_VERSION};
use formats::store::write_atomic;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub enum Source {
    Rootfs(PathBuf),
    /// A tar file, or standard input for `-` ([`from_tar::STDIN`]).
    Tar(PathBuf),
}

pub struct ImageRequest {
    pub source: Source,
    pub product: String,
    pub version: String,
    pub key: PathBuf,
    pub out_dir: PathBuf,
    pub compression: Compression,
    /// Seconds since the epoch: `SOURCE_DATE_EPOCH` in reproducible builds.
    /// No entry's mtime is later: a later one is set to it (the clamp of
    /// the reproducible-builds spec, as `tar --clamp-mtime`).
    pub created: u64,
    /// Lets paths that leave the target into the image: only for test
    /// images that prove the recovery refuses them.
    pub allow_unsafe_paths: bool,
    pub show_progress: bool,
}

impl ImageRequest {
    /// A small, fast, reproducible request (zstd level 1 on one thread,
    /// created 2023-11-14, no progress): the one fixture the tests of every
    /// crate build their images with; change a field with `..`.
    pub fn fixture(
        source: Source,
        product: &str,
        version: &str,
        key: &Path,
        out_dir: &Path,
    ) -> ImageRequest {
        ImageRequest {
            source,
            product: product.into(),
            version: version.into(),
            key: key.to_path_buf(),
            out_dir: out_dir.to_path_buf(),
            compression: Compression {
                level: 1,
                threads: 1,
            },
            created: 1_700_000_000,
            allow_unsafe_paths: false,
            show_progress: false,
        }
    }
}

pub struct ImageSummary {
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
    pub payload_path: PathBuf,
    pub signature_path: PathBuf,
    pub seconds: f64,
}

/// Builds an image in the current format ([`FORMAT_VERSION`]).
pub fn build(req: &ImageRequest) -> Result<ImageSummary, BuildError> {
    build_format(req, FORMAT_VERSION)
}

/// Builds an image in manifest format `format`: 2 ends the payload with
/// the entry index, 1 (the old format, for tests that need old images and
/// devices whose recovery reads format 1 only) does not.
pub fn build_format(req: &ImageRequest, format: u64) -> Result<ImageSummary, BuildError> {
    let start = Instant::now();
    if !FORMATS.contains(&format) {
        return Err(BuildError::Usage(format!(
            "format {format}: expected one of {FORMATS:?}"
        )));
    }
    for (what, value) in [("product", &req.product), ("version", &req.version)] {
        if !is_name(value) {
            return Err(BuildError::Usage(format!(
                "{what} {value:?}: expected 1 to 128 of A-Z a-z 0-9 . _ - +, not starting with . or -"
            )));
        }
    }
    // The key first: a wrong key path should fail before minutes of packing.
    let sk = keygen::load_secret_key(&req.key)?;
    let signing_key = SigningKey::from_minisign(&sk);

    let (mut entries, spool): (Vec<Entry>, Option<File>) = match &req.source {
        Source::Rootfs(dir) => (rootfs::read(dir, req.allow_unsafe_paths)?, None),
        Source::Tar(file) => {
            let (entries, spool) = from_tar::read(file, req.allow_unsafe_paths)?;
            (entries, Some(spool))
        }
    };
    tree::clamp_mtimes(&mut entries, req.created);
    let unpacked_size = tree::unpacked_size(&entries);

    std::fs::create_dir_all(&req.out_dir)
        .ctx(&req.out_dir, "cannot create the output directory")?;
    let [manifest_name, signature_name, payload_name] =
        Manifest::file_names(&req.product, &req.version);
    let payload_path = req.out_dir.join(&payload_name);
    let progress = Progress::new(unpacked_size, req.show_progress);
    let summary = payload::write(
        &entries,
        spool.as_ref(),
        &payload_path,
        &req.compression,
        format >= 2,
        &progress,
    )?;
    progress.finish();

    let manifest = Manifest {
        format,
        product: req.product.clone(),
        version: req.version.clone(),
        payload: payload_name,
        payload_size: summary.size,
        payload_blake3: summary.blake3,
        unpacked_size,
        entries: entries.len() as u64,
        created: req.created,
        index_size: summary.index_size,
    };
    let text = manifest.render();
    let manifest_path = req.out_dir.join(&manifest_name);
    let signature_path = req.out_dir.join(signature_name);
    let trusted = format!("timestamp:{}\tfile:{manifest_name}", req.created);
    let signature = signing_key.sign(
        text.as_bytes(),
        &trusted,
        "signature from image-builder secret key",
    );
    write_atomic(&manifest_path, text.as_bytes()).ctx(&manifest_path, "cannot write")?;
    write_atomic(&signature_path, signature.as_bytes()).ctx(&signature_path, "cannot write")?;
    Ok(ImageSummary {
        manifest,
        manifest_path,
        payload_path,
        signature_path,
        seconds: start.elapsed().as_secs_f64(),
    })
}
