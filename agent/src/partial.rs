//! The record kept beside a partial download (`NAME.part.state`): what is
//! being fetched and how much of it is on disk, so that a dropped
//! connection or a reboot resumes instead of starting over. Strict
//! `key=value` sealed by a CRC-32 line like the records on `cfg`; parsing
//! takes bytes and does no I/O.

use formats::keyvalue::{self, KeyValueError, SealError};
use thiserror::Error;

/// The only format of this record this code reads and writes.
pub const FORMAT_VERSION: u64 = 1;

/// A record is small; anything larger is not one.
pub const MAX_SIZE: usize = 16 * 1024;

/// The longest URL kept (and so fetched).
pub const MAX_URL: usize = 4096;

/// The longest `ETag` or `Last-Modified` value kept: a longer one is
/// treated as absent.
pub const MAX_VALIDATOR: usize = 256;

const KEYS: &[&str] = &[
    "format",
    "url",
    "size",
    "blake3",
    "bytes",
    "etag",
    "last-modified",
];

/// What is known about one partial download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial {
    pub url: String,
    /// The size the caller expects (from the signed manifest), if known.
    pub size: Option<u64>,
    /// The BLAKE3 the caller expects, if known.
    pub blake3: Option<[u8; 32]>,
    /// Bytes of `NAME.part` that were on disk (synced) when this was written.
    pub bytes: u64,
    /// The server's validators from the answer the bytes came from.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PartialError {
    #[error("larger than {MAX_SIZE} bytes")]
    TooLarge,
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Field(#[from] KeyValueError),
}

/// Whether `value` can be kept in the record: visible ASCII and spaces,
/// at most `max` bytes (an HTTP header value never holds a line break).
pub fn is_keepable(value: &str, max: usize) -> bool {
    !value.is_empty() && value.len() <= max && value.bytes().all(|b| (b' '..=b'~').contains(&b))
}

impl Partial {
    /// The record, sealed. Values that cannot be kept are left out (the
    /// caller checks the URL with [`is_keepable`] first).
    pub fn render(&self) -> String {
        let mut body = format!("format={FORMAT_VERSION}\nurl={}\n", self.url);
        if let Some(size) = self.size {
            body += &format!("size={size}\n");
        }
        if let Some(hash) = &self.blake3 {
            body += &format!("blake3={}\n", formats::manifest::hex(hash));
        }
        body += &format!("bytes={}\n", self.bytes);
        for (key, value) in [("etag", &self.etag), ("last-modified", &self.last_modified)] {
            if let Some(v) = value.as_deref().filter(|v| is_keepable(v, MAX_VALIDATOR)) {
                body += &format!("{key}={v}\n");
            }
        }
        keyvalue::seal(&body)
    }

    pub fn parse(bytes: &[u8]) -> Result<Partial, PartialError> {
        if bytes.len() > MAX_SIZE {
            return Err(PartialError::TooLarge);
        }
        let body = keyvalue::unseal(bytes)?;
        let pairs = keyvalue::parse(body, KEYS)?;
        let get = |key| keyvalue::require(&pairs, key);
        let find = |key| pairs.iter().find(|p| p.key == key);
        let format = get("format")?;
        if format.as_u64()? != FORMAT_VERSION {
            return Err(format.bad("expected format 1").into());
        }
        let url = get("url")?;
        if !is_keepable(url.value, MAX_URL) {
            return Err(url.bad("expected a URL of visible ASCII").into());
        }
        let blake3 = match find("blake3") {
            Some(p) => Some(
                formats::manifest::parse_hex32(p.value)
                    .ok_or_else(|| p.bad("expected 64 lowercase hex digits"))?,
            ),
            None => None,
        };
        let validator = |key| -> Result<Option<String>, KeyValueError> {
            match find(key) {
                Some(p) if is_keepable(p.value, MAX_VALIDATOR) => Ok(Some(p.value.to_string())),
                Some(p) => Err(p.bad("expected at most 256 visible ASCII characters")),
                None => Ok(None),
            }
        };
        Ok(Partial {
            url: url.value.to_string(),
            size: find("size").map(|p| p.as_u64()).transpose()?,
            blake3,
            bytes: get("bytes")?.as_u64()?,
            etag: validator("etag")?,
            last_modified: validator("last-modified")?,
        })
    }

    /// Whether this record describes the same download as `other` (the
    /// URL and the expected size and hash): its bytes can be resumed.
    pub fn same_target(&self, other: &Partial) -> bool {
        self.url == other.url && self.size == other.size && self.blake3 == other.blake3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Partial {
        Partial {
            url: "https://updates.example/acme/acme-2.0.tar.zst".into(),
            size: Some(1_000_000),
            blake3: Some([0xab; 32]),
            bytes: 300_000,
            etag: Some("\"5f-abc\"".into()),
            last_modified: Some("Tue, 24 Nov 2026 01:00:00 GMT".into()),
        }
    }

    #[test]
    fn round_trips_with_and_without_the_optional_keys() {
        let p = full();
        assert_eq!(Partial::parse(p.render().as_bytes()), Ok(p.clone()));
        let bare = Partial {
            size: None,
            blake3: None,
            etag: None,
            last_modified: None,
            ..p
        };
        let text = bare.render();
        assert!(!text.contains("size=") && !text.contains("etag="), "{text}");
        assert_eq!(Partial::parse(text.as_bytes()), Ok(bare));
    }

    #[test]
    fn leaves_out_validators_it_cannot_keep() {
        let p = Partial {
            etag: Some("a\nbytes=9".into()),
            last_modified: Some("x".repeat(MAX_VALIDATOR + 1)),
            ..full()
        };
        let back = Partial::parse(p.render().as_bytes()).unwrap();
        assert_eq!(
            (back.etag, back.last_modified, back.bytes),
            (None, None, 300_000)
        );
    }

    #[test]
    fn refuses_torn_edited_and_strange_records() {
        let text = full().render();
        assert!(matches!(
            Partial::parse(&text.as_bytes()[..text.len() - 3]),
            Err(PartialError::Seal(SealError::NoChecksum))
        ));
        let edited = text.replace("bytes=300000", "bytes=900000");
        assert!(matches!(
            Partial::parse(edited.as_bytes()),
            Err(PartialError::Seal(SealError::Mismatch { .. }))
        ));
        for body in [
            "format=2\nurl=u\nbytes=0\n",
            "format=1\nbytes=0\n",
            "format=1\nurl=u\nbytes=01\n",
            "format=1\nurl=u\nbytes=0\nblake3=AB\n",
            "format=1\nurl=u\nbytes=0\nowner=me\n",
        ] {
            assert!(
                Partial::parse(keyvalue::seal(body).as_bytes()).is_err(),
                "{body:?} accepted"
            );
        }
        assert_eq!(
            Partial::parse(&vec![b'a'; MAX_SIZE + 1]),
            Err(PartialError::TooLarge)
        );
    }

    #[test]
    fn same_target_compares_what_was_asked_for() {
        let a = full();
        let other_bytes = Partial {
            bytes: 5,
            etag: None,
            ..full()
        };
        assert!(a.same_target(&other_bytes));
        let other_hash = Partial {
            blake3: Some([0; 32]),
            ..full()
        };
        assert!(!a.same_target(&other_hash));
    }
}
