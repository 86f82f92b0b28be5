//! Key pairs in minisign format: `PATH.pub` (the public key, for the
//! recovery's trusted keys) and `PATH.key` (the secret key, unencrypted so a
//! build pipeline can sign without a password prompt; keep it secret).

use crate::error::{BuildError, IoContext};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The two files a key pair is written to.
pub fn key_paths(base: &Path) -> (PathBuf, PathBuf) {
    let with = |ext: &str| {
        let mut s = base.as_os_str().to_owned();
        s.push(ext);
        PathBuf::from(s)
    };
    (with(".pub"), with(".key"))
}

/// Generates a key pair and writes it; refuses to overwrite either file.
pub fn keygen(base: &Path) -> Result<(PathBuf, PathBuf), BuildError> {
    let (pub_path, key_path) = key_paths(base);
    let key_err = |path: &Path, e: minisign::PError| BuildError::Key {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let pair =
        minisign::KeyPair::generate_unencrypted_keypair().map_err(|e| key_err(&key_path, e))?;
    let pk = pair
        .pk
        .to_box()
        .map_err(|e| key_err(&pub_path, e))?
        .to_string();
    let sk = pair
        .sk
        .to_box(Some("image-builder secret key (unencrypted)"))
        .map_err(|e| key_err(&key_path, e))?
        .to_string();
    write_new(&key_path, sk.as_bytes(), 0o600)?;
    write_new(&pub_path, pk.as_bytes(), 0o644)?;
    Ok((pub_path, key_path))
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), BuildError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .ctx(path, "cannot create (an existing key is never overwritten)")?;
    f.write_all(data).ctx(path, "cannot write")?;
    f.sync_all().ctx(path, "cannot sync")
}

/// Reads a minisign secret key. An encrypted key is opened with the password
/// in `IMAGE_BUILDER_KEY_PASSWORD`.
pub fn load_secret_key(path: &Path) -> Result<minisign::SecretKey, BuildError> {
    let text = std::fs::read_to_string(path).ctx(path, "cannot read the secret key")?;
    let bad = |reason: String| BuildError::Key {
        path: path.to_path_buf(),
        reason,
    };
    let sk_box = minisign::SecretKeyBox::from_string(&text)
        .map_err(|e| bad(format!("not a minisign secret key: {e}")))?;
    if let Ok(sk) = sk_box.clone().into_unencrypted_secret_key() {
        return Ok(sk);
    }
    let password = std::env::var("IMAGE_BUILDER_KEY_PASSWORD").map_err(|_| {
        bad(
            "the key is encrypted: set IMAGE_BUILDER_KEY_PASSWORD, or use an unencrypted key"
                .into(),
        )
    })?;
    sk_box
        .into_secret_key(Some(password))
        .map_err(|e| bad(format!("cannot decrypt: {e}")))
}
