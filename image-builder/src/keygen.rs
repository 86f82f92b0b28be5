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

/// Where the fields of a decoded minisign secret key are: signature
/// algorithm `Ed`, KDF algorithm (`\0\0` for none, `Sc` for scrypt),
/// checksum algorithm, KDF salt and limits (48), key id (8), secret key
/// (64: seed, then public key), checksum (32).
const SECRET_KEY_LEN: usize = 158;
const KDF: std::ops::Range<usize> = 2..4;
pub(crate) const KEY_ID: std::ops::Range<usize> = 54..62;
pub(crate) const SEED: std::ops::Range<usize> = 62..94;
const PUBLIC_HALF: std::ops::Range<usize> = 94..126;

/// Reads a minisign secret key, as `image-builder keygen` or
/// `minisign -G` writes it. An encrypted key (`minisign -G` without `-W`)
/// is opened with the password in `IMAGE_BUILDER_KEY_PASSWORD`.
pub fn load_secret_key(path: &Path) -> Result<minisign::SecretKey, BuildError> {
    let text = std::fs::read_to_string(path).ctx(path, "cannot read the secret key")?;
    let bad = |reason: &str| BuildError::Key {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let line = formats::signature::key_line(&text)
        .ok_or_else(|| bad("empty: expected a minisign secret key (.key)"))?;
    let raw = formats::signature::base64_decode(line)
        .ok_or_else(|| bad("not a minisign key: its key line is not base64"))?;
    if raw.len() == 42 && raw.starts_with(b"Ed") {
        return Err(bad("this is a public key: pass the secret key (.key)"));
    }
    if raw.len() != SECRET_KEY_LEN || !raw.starts_with(b"Ed") {
        return Err(bad(&format!(
            "not a minisign secret key: expected {SECRET_KEY_LEN} bytes starting with \"Ed\", found {} bytes",
            raw.len()
        )));
    }
    let sk = match &raw[KDF] {
        [0, 0] => minisign::SecretKey::from_bytes(&raw).map_err(|e| bad(&e.to_string()))?,
        b"Sc" => {
            let password = std::env::var("IMAGE_BUILDER_KEY_PASSWORD").map_err(|_| {
                bad(
                    "the key is encrypted with a password (minisign -G without -W): \
                     set IMAGE_BUILDER_KEY_PASSWORD to it, or make an unencrypted key \
                     for the pipeline (minisign -G -W, or image-builder keygen)",
                )
            })?;
            minisign::SecretKeyBox::from_string(&text)
                .and_then(|b| b.into_secret_key(Some(password)))
                .map_err(|e| {
                    bad(&format!(
                        "cannot decrypt with IMAGE_BUILDER_KEY_PASSWORD: {e}"
                    ))
                })?
        }
        other => {
            return Err(bad(&format!(
                "unknown key encryption {other:?}: expected none or scrypt (\"Sc\")"
            )))
        }
    };
    // minisign -W writes no checksum: the public half, derived again from
    // the seed, shows the key is whole instead.
    let bytes = sk.to_bytes();
    let seed: [u8; 32] = bytes[SEED].try_into().expect("32 bytes");
    let derived = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    if derived.as_bytes()[..] != bytes[PUBLIC_HALF] {
        return Err(bad(
            "corrupt: its public half does not match its secret seed",
        ));
    }
    Ok(sk)
}
