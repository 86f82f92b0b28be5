//! `image-builder info`: what an image holds (like `rauc info` and
//! `mender-artifact read`) and, given trusted keys, whether it verifies.
//! The checks are the recovery's own ([`recovery::verify`]); the JSON field
//! names are those of `recovery verify --json`.

use formats::manifest::{hex, Manifest, MAX_SIZE};
use formats::signature::{self, TrustedKey};
use recovery::error::{Stage, UpdateError};
use serde::Serialize;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

/// What `info` found. Fields the manifest did not yield are `None` (JSON
/// `null`); `error` is the first check that failed.
#[derive(Debug, Serialize)]
pub struct ImageInfo {
    /// The manifest's path as given (lossy where not UTF-8).
    pub manifest: String,
    pub product: Option<String>,
    pub version: Option<String>,
    /// The payload's file name, beside the manifest.
    pub payload: Option<String>,
    pub payload_size: Option<u64>,
    pub payload_blake3: Option<String>,
    pub unpacked_size: Option<u64>,
    pub entries: Option<u64>,
    /// Seconds since the Unix epoch.
    pub created: Option<u64>,
    /// The id of the key the signature beside the manifest names (unchecked).
    pub key_id: Option<String>,
    /// Whether the payload file is beside the manifest (then `verified`
    /// covers its size, BLAKE3 and entries too).
    pub payload_present: bool,
    /// True only when trusted keys were given and every check passed.
    pub verified: bool,
    /// The trusted key that signed it, as `ID from FILE`.
    pub signed_by: Option<String>,
    pub error: Option<InfoError>,
    /// The stage of `error`, for the exit code.
    #[serde(skip)]
    failed: Option<Stage>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct InfoError {
    pub stage: String,
    pub file: String,
    pub reason: String,
}

impl From<UpdateError> for InfoError {
    fn from(e: UpdateError) -> InfoError {
        InfoError {
            stage: e.stage.name().to_string(),
            file: e.file,
            reason: e.reason,
        }
    }
}

/// Reads the image at `manifest_path`; with `trusted_keys`, verifies it.
pub fn inspect(manifest_path: &Path, trusted_keys: &[PathBuf]) -> ImageInfo {
    let mut info = ImageInfo {
        manifest: manifest_path.display().to_string(),
        product: None,
        version: None,
        payload: None,
        payload_size: None,
        payload_blake3: None,
        unpacked_size: None,
        entries: None,
        created: None,
        key_id: None,
        payload_present: false,
        verified: false,
        signed_by: None,
        error: None,
        failed: None,
    };
    let (bytes, manifest) = match read_manifest(manifest_path) {
        Ok(m) => m,
        Err(e) => {
            info.fail(e);
            return info;
        }
    };
    let payload_path = manifest_path
        .parent()
        .unwrap_or(Path::new("."))
        .join(&manifest.payload);
    info.payload_present = payload_path.is_file();
    info.product = Some(manifest.product);
    info.version = Some(manifest.version);
    info.payload = Some(manifest.payload);
    info.payload_size = Some(manifest.payload_size);
    info.payload_blake3 = Some(hex(&manifest.payload_blake3));
    info.unpacked_size = Some(manifest.unpacked_size);
    info.entries = Some(manifest.entries);
    info.created = Some(manifest.created);
    let sig_path = recovery::verify::signature_path(manifest_path);
    let signature = std::fs::read_to_string(&sig_path).ok();
    info.key_id = signature
        .as_deref()
        .and_then(|s| signature::signature_key_id(s).ok())
        .map(|id| id.to_string());
    if trusted_keys.is_empty() {
        return info;
    }
    let checked = recovery::keys::load(trusted_keys).and_then(|keys| {
        if info.payload_present {
            recovery::verify::verify(manifest_path, &keys).map(|v| v.signed_by)
        } else {
            signature_only(&bytes, signature.as_deref(), &sig_path, &keys)
        }
    });
    match checked {
        Ok(signed_by) => {
            info.verified = true;
            info.signed_by = Some(signed_by);
        }
        Err(e) => info.fail(e),
    }
    info
}

fn read_manifest(path: &Path) -> Result<(Vec<u8>, Manifest), UpdateError> {
    let fail = |reason: String| UpdateError::new(Stage::Manifest, path.display(), reason);
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SIZE as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    let manifest = Manifest::parse(&bytes).map_err(|e| fail(e.to_string()))?;
    Ok((bytes, manifest))
}

/// The signature check alone, for a manifest whose payload is not here.
fn signature_only(
    manifest: &[u8],
    signature: Option<&str>,
    sig_path: &Path,
    keys: &[TrustedKey],
) -> Result<String, UpdateError> {
    let fail = |reason: String| UpdateError::new(Stage::Signature, sig_path.display(), reason);
    let signature =
        signature.ok_or_else(|| fail("cannot read the signature beside the manifest".into()))?;
    let key = signature::verify(manifest, signature, keys).map_err(|e| fail(e.to_string()))?;
    Ok(format!("{} from {}", key.id, key.name))
}

impl ImageInfo {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain data serializes")
    }

    /// `recovery verify`'s exit code for the failed stage, else 0.
    pub fn exit_code(&self) -> i32 {
        self.failed.map_or(0, Stage::exit_code)
    }

    fn fail(&mut self, e: UpdateError) {
        self.failed = Some(e.stage);
        self.error = Some(e.into());
    }

    /// Lines of `name: value`, for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut line = |name: &str, value: String| {
            let _ = writeln!(out, "{name:<14}{value}");
        };
        line("manifest:", self.manifest.clone());
        if let (Some(product), Some(version)) = (&self.product, &self.version) {
            line("product:", product.clone());
            line("version:", version.clone());
        }
        if let (Some(payload), Some(size)) = (&self.payload, self.payload_size) {
            let here = if self.payload_present {
                ""
            } else {
                " (not beside the manifest)"
            };
            line(
                "payload:",
                format!("{payload}, {} ({size} bytes){here}", human(size)),
            );
        }
        if let Some(b3) = &self.payload_blake3 {
            line("blake3:", b3.clone());
        }
        if let (Some(unpacked), Some(entries)) = (self.unpacked_size, self.entries) {
            line(
                "unpacked:",
                format!(
                    "{} ({unpacked} bytes) in {entries} entries",
                    human(unpacked)
                ),
            );
        }
        if let Some(created) = self.created {
            line("created:", format!("{} ({created})", utc(created)));
        }
        if self.product.is_some() {
            line(
                "signed with:",
                self.key_id
                    .as_ref()
                    .map_or("no readable signature beside the manifest".into(), |id| {
                        format!("key {id}")
                    }),
            );
        }
        let verdict = match (&self.signed_by, &self.error) {
            (_, Some(e)) => format!("FAILED: {}: {}: {}", e.stage, e.file, e.reason),
            (Some(by), None) if self.payload_present => {
                format!("good: signature by {by}, payload size, BLAKE3 and entries")
            }
            (Some(by), None) => format!("signature good, by {by} (payload not checked: absent)"),
            (None, None) => "not checked (pass --trusted-key K.pub)".into(),
        };
        line("verified:", verdict);
        out
    }
}

use formats::units::human;

/// `YYYY-MM-DD HH:MM:SS UTC` for seconds since the epoch (proleptic
/// Gregorian calendar, Howard Hinnant's days-to-civil algorithm).
fn utc(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn a_missing_manifest_is_a_manifest_error() {
        let info = inspect(Path::new("/nonexistent/x.manifest"), &[]);
        assert_eq!(info.error.as_ref().unwrap().stage, "manifest");
        assert_eq!(info.exit_code(), 5);
        assert!(!info.verified);
    }
}
