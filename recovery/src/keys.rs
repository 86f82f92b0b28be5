//! The trusted public keys, read from minisign `.pub` files. More than one
//! may be trusted at once, so that a vendor can rotate its signing key.

use crate::error::{Stage, UpdateError};
use formats::signature::{SignatureError, TrustedKey};
use std::path::{Path, PathBuf};

pub fn load(paths: &[impl AsRef<Path>]) -> Result<Vec<TrustedKey>, UpdateError> {
    if paths.is_empty() {
        return Err(UpdateError::new(
            Stage::Keys,
            "(none)",
            "no trusted key given: an image can only be checked against one",
        ));
    }
    paths
        .iter()
        .map(|p| {
            let p = p.as_ref();
            let text = std::fs::read_to_string(p)
                .map_err(|e| UpdateError::new(Stage::Keys, p.display(), e))?;
            TrustedKey::parse(&p.display().to_string(), &text).map_err(|e| {
                // The message names the file once, as the error's file.
                let reason = match e {
                    SignatureError::BadKey { reason, .. } => reason,
                    other => other.to_string(),
                };
                UpdateError::new(Stage::Keys, p.display(), reason)
            })
        })
        .collect()
}

/// The `*.pub` files in `dir`, sorted: a directory of trusted keys.
pub fn files_in(dir: &Path) -> Result<Vec<PathBuf>, UpdateError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| UpdateError::new(Stage::Keys, dir.display(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pub"))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_key_file_is_named_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pub");
        std::fs::write(&path, "hello\n").unwrap();
        let err = load(&[&path]).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("keys: {}: the key line is not base64", path.display())
        );
    }
}
