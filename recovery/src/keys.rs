//! The trusted public keys, read from minisign `.pub` files. More than one
//! may be trusted at once, so that a vendor can rotate its signing key.

use crate::error::{Stage, UpdateError};
use formats::signature::TrustedKey;
use std::path::Path;

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
            TrustedKey::parse(&p.display().to_string(), &text)
                .map_err(|e| UpdateError::new(Stage::Keys, p.display(), e))
        })
        .collect()
}
