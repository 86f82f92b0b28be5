//! What can go wrong while building, with the file it went wrong on.

use formats::entry::EntryError;
use formats::entry_path::PathError;
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BuildError {
    /// (`err` is part of the message and not a source, so that a printer
    /// of the whole chain, as `{:#}` of anyhow, says it once.)
    #[error("{path}: {what}: {err}")]
    Io {
        path: PathBuf,
        what: &'static str,
        err: io::Error,
    },
    #[error("{path}: {reason}")]
    Unrepresentable { path: String, reason: String },
    /// An entry the recovery would refuse: `input` is the tree or tar.
    #[error("{}: {err}", input.display())]
    Entry { input: PathBuf, err: EntryError },
    #[error("unsafe entry: {0} (pass --allow-unsafe-paths only to make test images for the recovery's defences)")]
    UnsafePath(PathError),
    #[error("key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("{0}")]
    Usage(String),
    /// The payload just written does not read back as its entry index
    /// says: a bug in image-builder, found before anything is signed.
    #[error(
        "{}: the payload read back does not match its entry index: {reason} \
         (a bug in image-builder: no payload was kept and nothing was signed)",
        path.display()
    )]
    SelfCheck { path: PathBuf, reason: String },
}

/// Adds the file and the action to an I/O error.
pub trait IoContext<T> {
    fn ctx(self, path: &Path, what: &'static str) -> Result<T, BuildError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, path: &Path, what: &'static str) -> Result<T, BuildError> {
        self.map_err(|err| BuildError::Io {
            path: path.to_path_buf(),
            what,
            err,
        })
    }
}
