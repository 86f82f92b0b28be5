//! Where an image's three parts are: three files (the manifest, its
//! `.minisig` and the payload beside it), or one bundle that holds them
//! (`P-V.swu`, layout in [`formats::bundle`]). A bundle is told by its
//! first bytes, not its name, and read in place: the manifest and the
//! signature from their entries, the payload at its offset inside the
//! bundle file, never unpacked or copied.

use crate::error::{Stage, UpdateError};
use formats::bundle::{self, Layout};
use formats::manifest::Manifest;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The payload's bytes: `size` bytes at `offset` in the file at `path`
/// (offset 0 and the whole file for a payload of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadSource {
    pub path: PathBuf,
    pub offset: u64,
    pub size: u64,
    /// The entry's name when the payload is inside a bundle.
    pub entry: Option<String>,
}

impl PayloadSource {
    /// Opens the payload: a reader of exactly its bytes.
    pub fn open(&self) -> io::Result<io::Take<File>> {
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.offset))?;
        Ok(file.take(self.size))
    }

    /// The payload as messages name it: the file, or the bundle's entry.
    pub fn shown(&self) -> String {
        match &self.entry {
            None => self.path.display().to_string(),
            Some(name) => entry_shown(&self.path, name),
        }
    }
}

/// An entry of a bundle, as messages name it.
fn entry_shown(bundle: &Path, name: &str) -> String {
    format!("{}:{name}", bundle.display())
}

/// An image's manifest and signature as read, and where the payload is.
#[derive(Debug)]
pub struct ImageSource {
    /// The path given: a manifest or a bundle.
    pub path: PathBuf,
    /// The manifest's bytes (unchecked: at most [`bundle::HEAD_MAX`]).
    pub manifest: Vec<u8>,
    /// The signature's text, or why it cannot be read.
    pub signature: Result<String, String>,
    /// The bundle's entries, for a bundle.
    pub bundle: Option<Layout>,
}

impl ImageSource {
    /// Reads the manifest and the signature of the image at `path` (a
    /// manifest or a bundle). A bundle's layout is checked here, its
    /// trailer included: a malformed bundle is refused at the manifest
    /// stage, naming the entry and the offset.
    pub fn read(path: &Path) -> Result<ImageSource, UpdateError> {
        let fail = |reason: String| UpdateError::new(Stage::Manifest, path.display(), reason);
        let file = File::open(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        let mut head = Vec::new();
        (&file)
            .take(bundle::HEAD_MAX as u64)
            .read_to_end(&mut head)
            .map_err(|e| fail(format!("cannot read: {e}")))?;
        if !bundle::is_bundle(&head) {
            let sig_path = signature_path(path);
            let signature = std::fs::read_to_string(&sig_path)
                .map_err(|e| format!("cannot read the signature beside the manifest: {e}"));
            return Ok(ImageSource {
                path: path.to_path_buf(),
                manifest: head,
                signature,
                bundle: None,
            });
        }
        let len = file
            .metadata()
            .map_err(|e| fail(format!("cannot stat: {e}")))?
            .len();
        let layout =
            bundle::parse_head(&head, len).map_err(|e| fail(format!("not a valid bundle: {e}")))?;
        let at = layout.trailer_offset();
        let mut tail = [0u8; bundle::TRAILER_LEN];
        let n = file
            .read_at(&mut tail, at)
            .map_err(|e| fail(format!("cannot read: {e}")))?;
        bundle::check_trailer(at, &tail[..n])
            .map_err(|e| fail(format!("not a valid bundle: {e}")))?;
        let sig = &layout.signature;
        let signature = String::from_utf8(head[sig.range()].to_vec())
            .map_err(|_| "the signature entry is not UTF-8 text".to_string());
        Ok(ImageSource {
            path: path.to_path_buf(),
            manifest: head[layout.manifest.range()].to_vec(),
            signature,
            bundle: Some(layout),
        })
    }

    /// The manifest as messages name it.
    pub fn manifest_shown(&self) -> String {
        match &self.bundle {
            None => self.path.display().to_string(),
            Some(l) => entry_shown(&self.path, &l.manifest.name),
        }
    }

    /// The signature as messages name it.
    pub fn signature_shown(&self) -> String {
        match &self.bundle {
            None => signature_path(&self.path).display().to_string(),
            Some(l) => entry_shown(&self.path, &l.signature.name),
        }
    }

    /// Where the payload that `manifest` (read from this source) names is.
    /// A bundle's payload entry must carry the manifest's `payload=` name.
    pub fn payload(&self, manifest: &Manifest) -> Result<PayloadSource, UpdateError> {
        match &self.bundle {
            None => {
                let path = self
                    .path
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join(&manifest.payload);
                let size = std::fs::metadata(&path).map_err(|e| {
                    UpdateError::new(Stage::Payload, path.display(), format!("cannot open: {e}"))
                })?;
                Ok(PayloadSource {
                    path,
                    offset: 0,
                    size: size.len(),
                    entry: None,
                })
            }
            Some(l) if l.payload.name != manifest.payload => Err(UpdateError::new(
                Stage::Manifest,
                self.manifest_shown(),
                format!(
                    "the manifest names the payload {}, the bundle's payload entry is {}",
                    manifest.payload, l.payload.name
                ),
            )),
            Some(l) => Ok(PayloadSource {
                path: self.path.clone(),
                offset: l.payload.offset,
                size: l.payload.size,
                entry: Some(l.payload.name.clone()),
            }),
        }
    }
}

/// The signature file that belongs to a manifest.
pub fn signature_path(manifest_path: &Path) -> PathBuf {
    let mut s = manifest_path.as_os_str().to_owned();
    s.push(formats::manifest::SIGNATURE_EXTENSION);
    PathBuf::from(s)
}
