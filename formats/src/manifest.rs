//! The manifest: a small signed text that describes one image and pins its
//! payload by size and BLAKE3 hash. See `docs/image-format.md`.
//!
//! Two format versions are read. Format 2 (written by default) adds
//! `index-size`: the payload ends with the signed entry index
//! ([`crate::index`]) in that many bytes, so that every entry can be
//! checked before the erase without decoding the payload. Format 1 has no
//! index: its payload is decoded once to be checked.

use crate::keyvalue::{self, is_name, KeyValueError};
use thiserror::Error;

/// The manifest format `image-builder` writes by default.
pub const FORMAT_VERSION: u64 = 2;
/// The formats this code reads (and can write).
pub const FORMATS: &[u64] = &[1, 2];

/// What follows [`Manifest::file_stem`] in the name of an image's
/// manifest, its detached signature and its payload.
pub const MANIFEST_SUFFIX: &str = ".manifest";
/// The signature is the manifest's name + `.minisig`, as `minisign` names it.
pub const SIGNATURE_EXTENSION: &str = ".minisig";
pub const SIGNATURE_SUFFIX: &str = ".manifest.minisig";
pub const PAYLOAD_SUFFIX: &str = ".tar.zst";
/// The suffixes of an image's three files, longest first (so that
/// `.manifest.minisig` is not read as `.manifest`).
pub const FILE_SUFFIXES: &[&str] = &[SIGNATURE_SUFFIX, MANIFEST_SUFFIX, PAYLOAD_SUFFIX];

/// A manifest is small; anything larger is not one.
pub const MAX_SIZE: usize = 64 * 1024;

const KEYS: &[&str] = &[
    "format",
    "index-size",
    "product",
    "version",
    "payload",
    "payload-size",
    "payload-blake3",
    "unpacked-size",
    "entries",
    "created",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The format version ([`FORMATS`]).
    pub format: u64,
    pub product: String,
    pub version: String,
    /// File name of the payload, in the manifest's directory.
    pub payload: String,
    pub payload_size: u64,
    pub payload_blake3: [u8; 32],
    /// Sum of the sizes of the regular files in the payload (hard links
    /// counted once).
    pub unpacked_size: u64,
    /// Number of entries in the payload's tar, the root directory included.
    pub entries: u64,
    /// Creation time, seconds since the Unix epoch (`SOURCE_DATE_EPOCH`).
    pub created: u64,
    /// Format 2: the size of the entry index that ends the payload
    /// ([`crate::index`]); 0 in format 1, which has none.
    pub index_size: u64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("not UTF-8 text")]
    NotText,
    #[error("larger than {MAX_SIZE} bytes")]
    TooLarge,
    #[error("format version {found}: this recovery reads formats 1 and 2 only")]
    UnsupportedFormat { found: String },
    #[error(transparent)]
    Field(#[from] KeyValueError),
}

impl Manifest {
    /// The file names an image of this product and version is stored under.
    pub fn file_stem(product: &str, version: &str) -> String {
        format!("{product}-{version}")
    }

    /// `P-V.manifest`: the name of the manifest of `product` `version`.
    pub fn manifest_name(product: &str, version: &str) -> String {
        Manifest::file_stem(product, version) + MANIFEST_SUFFIX
    }

    /// `P-V.tar.zst`: the only payload name of `product` `version` (what
    /// `image-builder` writes, and the agent accepts, as `payload=`).
    pub fn payload_name(product: &str, version: &str) -> String {
        Manifest::file_stem(product, version) + PAYLOAD_SUFFIX
    }

    /// The names of an image's three files: manifest, signature, payload.
    pub fn file_names(product: &str, version: &str) -> [String; 3] {
        let stem = Manifest::file_stem(product, version);
        [MANIFEST_SUFFIX, SIGNATURE_SUFFIX, PAYLOAD_SUFFIX].map(|s| stem.clone() + s)
    }

    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() > MAX_SIZE {
            return Err(ManifestError::TooLarge);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| ManifestError::NotText)?;
        // The format version decides what the other keys mean, so it is
        // looked at before anything else is judged.
        if let Some(first) = text.lines().next() {
            if let Some(found) = first.strip_prefix("format=") {
                if !FORMATS.iter().any(|f| f.to_string() == found) {
                    return Err(ManifestError::UnsupportedFormat {
                        found: found.to_string(),
                    });
                }
            }
        }
        let pairs = keyvalue::parse(text, KEYS)?;
        let get = |key| keyvalue::require(&pairs, key);
        // The first line must be the format, so that a later version can
        // change everything after it.
        if pairs.first().map(|p| p.key) != Some("format") {
            return Err(ManifestError::Field(KeyValueError::BadValue {
                line: 1,
                key: pairs.first().map_or("", |p| p.key).to_string(),
                value: String::new(),
                expected: "the first line must be format=".to_string()
                    + &FORMAT_VERSION.to_string(),
            }));
        }
        let format = get("format")?.as_u64()?;
        // Format 1 has no index; format 2 must say how large it is, and
        // it holds at least the index's frame header.
        let index_size = match pairs.iter().find(|p| p.key == "index-size") {
            Some(p) if format == 1 => {
                return Err(p.bad("format 1 has no entry index (format=2 has)").into())
            }
            None if format == 1 => 0,
            None => get("index-size")?.as_u64()?,
            Some(p) => p.as_u64()?,
        };
        if format == 2 && index_size < crate::index::FRAME_HEADER as u64 {
            let p = get("index-size")?;
            return Err(p
                .bad("expected the size of the entry index, 8 bytes or more")
                .into());
        }
        let payload = get("payload")?;
        if !is_name(payload.value) {
            return Err(payload
                .bad("expected a plain file name beside the manifest")
                .into());
        }
        let hash = get("payload-blake3")?;
        let payload_blake3 =
            parse_hex32(hash.value).ok_or_else(|| hash.bad("expected 64 lowercase hex digits"))?;
        let payload_size = get("payload-size")?.as_u64()?;
        if index_size > payload_size {
            let p = get("index-size")?;
            return Err(p.bad("the entry index is larger than the payload").into());
        }
        let entries = get("entries")?.as_u64()?;
        if index_size > crate::index::max_frame(entries) {
            let p = get("index-size")?;
            return Err(p
                .bad(&format!(
                    "at most {} bytes: the most an index of {entries} entries takes",
                    crate::index::max_frame(entries)
                ))
                .into());
        }
        Ok(Manifest {
            format,
            product: get("product")?.as_name()?.to_string(),
            version: get("version")?.as_name()?.to_string(),
            payload: payload.value.to_string(),
            payload_size,
            payload_blake3,
            unpacked_size: get("unpacked-size")?.as_u64()?,
            entries,
            created: get("created")?.as_u64()?,
            index_size,
        })
    }

    /// The manifest as text, in the one order `parse` expects.
    pub fn render(&self) -> String {
        let index = if self.format == 1 {
            String::new()
        } else {
            format!("index-size={}\n", self.index_size)
        };
        format!(
            "format={}\nproduct={}\nversion={}\npayload={}\npayload-size={}\n\
             payload-blake3={}\nunpacked-size={}\nentries={}\ncreated={}\n{index}",
            self.format,
            self.product,
            self.version,
            self.payload,
            self.payload_size,
            hex(&self.payload_blake3),
            self.unpacked_size,
            self.entries,
            self.created
        )
    }
}

/// Lowercase hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 lowercase hex digits as 32 bytes (a BLAKE3 hash as the manifest
/// writes it); anything else is `None`.
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_images_file_names() {
        assert_eq!(
            Manifest::file_names("acme", "2.0"),
            [
                "acme-2.0.manifest",
                "acme-2.0.manifest.minisig",
                "acme-2.0.tar.zst"
            ]
        );
        assert_eq!(Manifest::payload_name("acme", "2.0"), "acme-2.0.tar.zst");
        assert_eq!(
            MANIFEST_SUFFIX.to_string() + SIGNATURE_EXTENSION,
            SIGNATURE_SUFFIX
        );
    }

    #[test]
    fn blake3_hex_is_strict() {
        let hex = "ab".repeat(32);
        assert_eq!(parse_hex32(&hex), Some([0xab; 32]));
        assert_eq!(parse_hex32(&hex.to_uppercase()), None);
        assert_eq!(parse_hex32(&hex[2..]), None);
    }

    fn sample() -> Manifest {
        Manifest {
            format: 2,
            product: "acme-gw".into(),
            version: "2.0.1".into(),
            payload: "acme-gw-2.0.1.tar.zst".into(),
            payload_size: 1234,
            payload_blake3: [0xab; 32],
            unpacked_size: 99,
            entries: 7,
            created: 1_700_000_000,
            index_size: 100,
        }
    }

    #[test]
    fn round_trips() {
        let m = sample();
        assert_eq!(Manifest::parse(m.render().as_bytes()), Ok(m));
        let old = Manifest {
            format: 1,
            index_size: 0,
            ..sample()
        };
        assert!(!old.render().contains("index-size"));
        assert_eq!(Manifest::parse(old.render().as_bytes()), Ok(old));
    }

    #[test]
    fn refuses_an_unknown_format_first() {
        let text = sample().render().replace("format=2", "format=3") + "newkey=1\n";
        assert_eq!(
            Manifest::parse(text.as_bytes()),
            Err(ManifestError::UnsupportedFormat { found: "3".into() })
        );
    }

    #[test]
    fn the_index_size_belongs_to_format_2_only() {
        let v2 = sample().render();
        let err = |text: String| Manifest::parse(text.as_bytes()).unwrap_err().to_string();
        // Format 1 with an index, format 2 without.
        assert!(err(v2.replace("format=2", "format=1")).contains("format 1 has no entry index"));
        assert!(err(v2.replace("index-size=100\n", "")).contains("index-size"));
        assert!(err(v2.replace("index-size=100", "index-size=7")).contains("8 bytes or more"));
        assert!(err(v2.replace("index-size=100", "index-size=1235")).contains("larger than"));
        // More than an index of that many entries can take, compressed
        // or not: refused before anything is read or decoded.
        let none = v2.replace("entries=7", "entries=0");
        let max = crate::index::max_frame(0);
        let text = err(none.replace("index-size=100", &format!("index-size={}", max + 1)));
        assert!(text.contains(&format!("at most {max} bytes")), "{text}");
    }

    #[test]
    fn refuses_bad_fields_naming_them() {
        let cases = [
            ("payload=acme-gw-2.0.1.tar.zst", "payload=../x", "payload"),
            ("payload-size=1234", "payload-size=12a", "payload-size"),
            (
                "payload-blake3=abab",
                "payload-blake3=ABAB",
                "payload-blake3",
            ),
            ("product=acme-gw", "product=a/b", "product"),
        ];
        for (from, to, key) in cases {
            let text = sample().render().replacen(from, to, 1);
            let err = Manifest::parse(text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(key), "{err} does not name {key}");
        }
        let missing = sample().render().replace("entries=7\n", "");
        assert!(matches!(
            Manifest::parse(missing.as_bytes()),
            Err(ManifestError::Field(KeyValueError::MissingKey { .. }))
        ));
        let reordered = sample().render().replacen("format=2\n", "", 1) + "format=2\n";
        assert!(Manifest::parse(reordered.as_bytes()).is_err());
        assert_eq!(Manifest::parse(b"\xff\n"), Err(ManifestError::NotText));
    }
}
