//! The newc cpio format's headers (`070701`, 13 fields of 8 hex digits,
//! name and data padded to 4 bytes): written by the initramfs writer and
//! the bundle writer, read by the bundle reader ([`crate::bundle`]) and the
//! initramfs inspector. No I/O.

use thiserror::Error;

/// The magic that starts every header.
pub const MAGIC: &[u8; 6] = b"070701";
/// A header: the magic and 13 fields of 8 hex digits.
pub const HEADER_LEN: usize = 110;
/// The name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";
/// The names of the 13 fields, in their order.
pub const FIELDS: [&str; 13] = [
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
];
/// Indexes into [`FIELDS`] and what [`parse_fields`] returns.
pub const MODE: usize = 1;
pub const FILESIZE: usize = 6;
pub const NAMESIZE: usize = 11;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NewcError {
    #[error("expected the newc cpio magic 070701, found {found:?}")]
    BadMagic { found: String },
    #[error("header field {field} is not 8 hex digits")]
    BadField { field: &'static str },
    #[error("{0}")]
    Unrepresentable(String),
}

/// Rounds up to the 4-byte alignment.
pub fn align(n: u64) -> u64 {
    n.div_ceil(4) * 4
}

/// The zero bytes that pad `n` bytes to the 4-byte alignment.
pub fn padding(n: u64) -> &'static [u8] {
    &[0; 3][..(align(n) - n) as usize]
}

/// One entry's header, its name, the NUL and the padding: what precedes
/// the entry's data, for an entry that starts 4-aligned. uid, gid and
/// mtime 0, nlink 1, check 0: archives are reproducible. `mode` includes
/// the file type bits; `rdev` is (major, minor) for device nodes.
pub fn render_header(
    name: &str,
    ino: u32,
    mode: u32,
    rdev: (u32, u32),
    size: u64,
) -> Result<Vec<u8>, NewcError> {
    let size = u32::try_from(size).map_err(|_| {
        NewcError::Unrepresentable(format!(
            "{name}: {size} bytes; a newc cpio entry holds at most {} bytes (4 GiB - 1)",
            u32::MAX
        ))
    })?;
    if name.contains('\0') {
        return Err(NewcError::Unrepresentable(format!(
            "{name:?}: a name cannot hold a NUL"
        )));
    }
    let name_size = name.len() as u32 + 1;
    let fields = [
        ino, mode, 0, 0, 1, 0, size, 0, 0, rdev.0, rdev.1, name_size, 0,
    ];
    let mut out = Vec::with_capacity(HEADER_LEN + name.len() + 4);
    out.extend_from_slice(MAGIC);
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.extend_from_slice(padding(out.len() as u64));
    Ok(out)
}

/// The 13 fields of the header at the start of `header` (at least
/// [`HEADER_LEN`] bytes), after its magic is checked.
pub fn parse_fields(header: &[u8]) -> Result<[u32; 13], NewcError> {
    if header.get(..6) != Some(MAGIC) {
        return Err(NewcError::BadMagic {
            found: String::from_utf8_lossy(&header[..header.len().min(6)]).into_owned(),
        });
    }
    let mut values = [0u32; 13];
    for (i, value) in values.iter_mut().enumerate() {
        *value = header
            .get(6 + 8 * i..14 + 8 * i)
            .and_then(|d| std::str::from_utf8(d).ok())
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or(NewcError::BadField { field: FIELDS[i] })?;
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_in_gnu_cpio_form() {
        let h = render_header("sw-description", 1, 0o100644, (0, 0), 5).unwrap();
        assert_eq!(
            &h[..HEADER_LEN],
            concat!(
                "070701", "00000001", "000081a4", "00000000", "00000000", "00000001", "00000000",
                "00000005", "00000000", "00000000", "00000000", "00000000", "0000000f", "00000000"
            )
            .as_bytes()
        );
        assert_eq!(h.len() % 4, 0);
        let f = parse_fields(&h).unwrap();
        assert_eq!((f[MODE], f[FILESIZE], f[NAMESIZE]), (0o100644, 5, 15));
        assert!(render_header("big", 1, 0o100644, (0, 0), 1 << 32).is_err());
        let mut bad = h.clone();
        bad[54] = b'g';
        assert_eq!(
            parse_fields(&bad),
            Err(NewcError::BadField { field: "filesize" })
        );
        assert!(matches!(
            parse_fields(b"format=1"),
            Err(NewcError::BadMagic { .. })
        ));
    }
}
