//! The single-file bundle (`P-V.swu`): the three files of an image in one
//! uncompressed newc cpio whose first entry is an SWUpdate-style
//! `sw-description`, so that fleet servers that read SWU metadata (gooseBit,
//! hawkBit with SWUpdate) accept it unchanged. See `docs/image-format.md`.
//!
//! The one home of the layout: `image-builder bundle` writes through
//! [`render_head`] and [`render_tail`], and the readers (the recovery, the
//! agent) find the entries with [`parse_head`]. Nothing here does I/O.

use crate::keyvalue::is_name;
use crate::manifest;
use crate::newc::{self, align, padding, HEADER_LEN, TRAILER};
use thiserror::Error;

/// The name of the first entry, as SWUpdate and gooseBit expect it.
pub const SW_DESCRIPTION: &str = "sw-description";
/// The file name extension of a bundle: what SWUpdate, gooseBit and
/// hawkBit's SWUpdate integrations expect of a newc cpio update.
pub const EXTENSION: &str = "swu";
/// The trailer's header and name with its NUL: what [`check_trailer`] reads.
pub const TRAILER_LEN: usize = HEADER_LEN + TRAILER.len() + 1;
/// The largest `sw-description` a reader accepts.
pub const MAX_SW_DESCRIPTION: u64 = 64 * 1024;
/// The largest signature a reader accepts (a minisign signature is ~300 bytes).
pub const MAX_SIGNATURE: u64 = 4 * 1024;
/// The longest entry name, its NUL included.
pub const MAX_NAME_SIZE: usize = 130;
/// The mode of every entry: a regular file, `rw-r--r--`.
pub const FILE_MODE: u32 = 0o100644;
/// A bundle's size is a multiple of this (as GNU cpio pads its archives).
pub const BLOCK: u64 = 512;
/// Enough bytes from the start of a bundle for [`parse_head`]: the four
/// headers and the data of the three small entries at their largest. A
/// reader reads this much (or the whole file, if it is shorter).
pub const HEAD_MAX: usize = 4 * (HEADER_LEN + MAX_NAME_SIZE + 3)
    + MAX_SW_DESCRIPTION as usize
    + manifest::MAX_SIZE
    + MAX_SIGNATURE as usize
    + 3 * 3;

/// One entry of a bundle: where its data is in the bundle file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// The offset of the entry's first data byte from the start of the file.
    pub offset: u64,
    pub size: u64,
}

impl Entry {
    /// The byte range of the data, for slicing a buffer that holds it.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset as usize..(self.offset + self.size) as usize
    }
}

/// The entries of a bundle, in their order in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub sw_description: Entry,
    /// `P-V.manifest`
    pub manifest: Entry,
    /// `P-V.manifest.minisig`
    pub signature: Entry,
    /// `P-V.tar.zst`, the last entry: read in place at its offset.
    pub payload: Entry,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("entry {index} ({what}): the file ends at byte {file_len}, inside the entry's header at offset {offset}")]
    Truncated {
        index: usize,
        what: &'static str,
        offset: u64,
        file_len: u64,
    },
    #[error("entry {index} ({what}): expected its header at offset {offset} within the first {head_len} bytes read (read at least HEAD_MAX bytes)")]
    HeadTooShort {
        index: usize,
        what: &'static str,
        offset: u64,
        head_len: usize,
    },
    #[error("offset {offset}: expected the newc cpio magic 070701, found {found:?}")]
    BadMagic { offset: u64, found: String },
    #[error("offset {offset}: header field {field} is not 8 hex digits")]
    BadField { offset: u64, field: &'static str },
    #[error("entry {index} ({what}) at offset {offset}: {reason}")]
    BadName {
        index: usize,
        what: &'static str,
        offset: u64,
        reason: String,
    },
    #[error("entry {name}: mode {mode:o}, expected a regular file")]
    NotAFile { name: String, mode: u32 },
    #[error("entry {name}: {size} bytes, more than the {max} a bundle's {what} may have")]
    TooLarge {
        name: String,
        what: &'static str,
        size: u64,
        max: u64,
    },
    #[error(
        "entry {name}: its data ends at byte {end}, past the end of the file ({file_len} bytes)"
    )]
    OutsideFile {
        name: String,
        end: u64,
        file_len: u64,
    },
    #[error("the trailer at offset {offset}: expected the entry {TRAILER} after the payload")]
    NoTrailer { offset: u64 },
    #[error("cannot write a bundle: {0}")]
    Unrepresentable(String),
}

/// Whether a file that starts with these bytes is a bundle (a newc cpio)
/// rather than a manifest (text that starts with `format=`).
pub fn is_bundle(head: &[u8]) -> bool {
    head.starts_with(newc::MAGIC)
}

/// The header of one of a bundle's entries (a regular file, or the
/// trailer with mode 0), through the one newc writer.
fn render_header(name: &str, ino: u32, mode: u32, size: u64) -> Result<Vec<u8>, BundleError> {
    if name.len() + 1 > MAX_NAME_SIZE {
        return Err(BundleError::Unrepresentable(format!(
            "{name:?}: an entry name is at most {} bytes",
            MAX_NAME_SIZE - 1
        )));
    }
    newc::render_header(name, ino, mode, (0, 0), size)
        .map_err(|e| BundleError::Unrepresentable(e.to_string()))
}

/// Everything a bundle holds before the payload's data: the three small
/// entries, then the payload's header. The caller writes this, then the
/// payload (`payload_size` bytes), then [`render_tail`].
pub fn render_head(
    sw_description: &[u8],
    manifest_name: &str,
    manifest: &[u8],
    signature: &[u8],
    payload_name: &str,
    payload_size: u64,
) -> Result<Vec<u8>, BundleError> {
    let mut out = Vec::new();
    let small = [
        (SW_DESCRIPTION, sw_description),
        (manifest_name, manifest),
        (&format!("{manifest_name}.minisig"), signature),
    ];
    for (ino, (name, data)) in (1..).zip(small) {
        out.extend(render_header(name, ino, FILE_MODE, data.len() as u64)?);
        out.extend_from_slice(data);
        out.extend_from_slice(padding(data.len() as u64));
    }
    out.extend(render_header(payload_name, 4, FILE_MODE, payload_size)?);
    Ok(out)
}

/// What follows the payload's data, which ends at offset `end`: its
/// padding, the trailer entry, and zeros to a multiple of [`BLOCK`].
pub fn render_tail(end: u64) -> Vec<u8> {
    let mut out = padding(end).to_vec();
    // A name of 10 bytes cannot fail.
    out.extend(render_header(TRAILER, 0, 0, 0).unwrap_or_default());
    let total = end + out.len() as u64;
    out.resize(
        out.len() + (total.next_multiple_of(BLOCK) - total) as usize,
        0,
    );
    out
}

/// Whether `name` can be a libconfig setting name (gooseBit's board):
/// `[A-Za-z*][-A-Za-z0-9_*]*`.
fn is_setting_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'*')
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*'))
}

/// The `sw-description` of a bundle, in libconfig syntax: the version, and
/// the hardware revisions under `software.<product>` (what gooseBit reads
/// as board `<product>` and its revisions). With no revisions, there is no
/// board block: gooseBit then files the bundle under `default`/`default`.
pub fn render_sw_description(
    product: &str,
    version: &str,
    hardware: &[String],
) -> Result<String, BundleError> {
    for (what, value) in [("product", product), ("version", version)] {
        if !is_name(value) {
            return Err(BundleError::Unrepresentable(format!(
                "{what} {value:?}: expected 1-128 of A-Z a-z 0-9 . _ - +"
            )));
        }
    }
    let mut text = format!(
        "software =\n{{\n    version = \"{version}\";\n    description = \"reimage bundle {product} {version}\";\n"
    );
    if !hardware.is_empty() {
        if !is_setting_name(product) {
            return Err(BundleError::Unrepresentable(format!(
                "product {product:?} cannot name the board in sw-description (libconfig: a letter, \
                 then letters, digits, - or _): build the bundle without --hardware"
            )));
        }
        if let Some(bad) = hardware.iter().find(|r| !is_name(r)) {
            return Err(BundleError::Unrepresentable(format!(
                "hardware revision {bad:?}: expected 1-128 of A-Z a-z 0-9 . _ - +"
            )));
        }
        let list: Vec<String> = hardware.iter().map(|r| format!("\"{r}\"")).collect();
        text += &format!(
            "    {product} = {{\n        hardware-compatibility = [ {} ];\n    }};\n",
            list.join(", ")
        );
    }
    text += "};\n";
    Ok(text)
}

/// One parsed header: the entry and where the next one starts.
struct Header {
    entry: Entry,
    mode: u32,
    next: u64,
}

fn parse_header(
    head: &[u8],
    file_len: u64,
    at: u64,
    index: usize,
    what: &'static str,
) -> Result<Header, BundleError> {
    let short = |offset: u64| {
        if head.len() as u64 >= file_len {
            BundleError::Truncated {
                index,
                what,
                offset,
                file_len,
            }
        } else {
            BundleError::HeadTooShort {
                index,
                what,
                offset,
                head_len: head.len(),
            }
        }
    };
    let start = at as usize;
    let header = head
        .get(start..start + HEADER_LEN)
        .ok_or_else(|| short(at))?;
    let values = newc::parse_fields(header).map_err(|e| match e {
        newc::NewcError::BadMagic { found } => BundleError::BadMagic { offset: at, found },
        newc::NewcError::BadField { field } => BundleError::BadField { offset: at, field },
        newc::NewcError::Unrepresentable(r) => BundleError::Unrepresentable(r),
    })?;
    let (mode, size, name_size) = (
        values[newc::MODE],
        values[newc::FILESIZE] as u64,
        values[newc::NAMESIZE] as usize,
    );
    let bad_name = |reason: String| BundleError::BadName {
        index,
        what,
        offset: at,
        reason,
    };
    if !(2..=MAX_NAME_SIZE).contains(&name_size) {
        return Err(bad_name(format!(
            "name size {name_size}, expected 2 to {MAX_NAME_SIZE}"
        )));
    }
    let name_at = start + HEADER_LEN;
    let raw = head
        .get(name_at..name_at + name_size)
        .ok_or_else(|| short(name_at as u64))?;
    if raw[name_size - 1] != 0 || raw[..name_size - 1].contains(&0) {
        return Err(bad_name("the name is not one NUL-terminated string".into()));
    }
    let name = std::str::from_utf8(&raw[..name_size - 1])
        .map_err(|_| bad_name("the name is not UTF-8".into()))?
        .to_string();
    let offset = align((name_at + name_size) as u64);
    let end = offset + size;
    if end > file_len {
        return Err(BundleError::OutsideFile {
            name,
            end,
            file_len,
        });
    }
    Ok(Header {
        entry: Entry { name, offset, size },
        mode,
        next: align(end),
    })
}

/// Finds the entries of a bundle from its first bytes (`head`: at least
/// [`HEAD_MAX`] bytes, or the whole file if it is shorter) and the file's
/// length. Every entry must be a regular file with the expected name, in
/// the expected order, of a bounded size (the payload's bounded by the
/// file), with its data inside the file. The payload's name is checked
/// against the manifest's `payload=` by the caller, which reads the manifest.
pub fn parse_head(head: &[u8], file_len: u64) -> Result<Layout, BundleError> {
    let slots: [(&str, u64); 4] = [
        ("sw-description", MAX_SW_DESCRIPTION),
        ("manifest", manifest::MAX_SIZE as u64),
        ("signature", MAX_SIGNATURE),
        ("payload", u64::MAX),
    ];
    let mut entries = Vec::with_capacity(4);
    let mut at = 0;
    for (index, (what, max)) in slots.into_iter().enumerate() {
        let h = parse_header(head, file_len, at, index + 1, what)?;
        let name = &h.entry.name;
        let expected = match index {
            0 => (name == SW_DESCRIPTION)
                .then_some(())
                .ok_or("sw-description"),
            1 => (is_name(name) && name.ends_with(".manifest"))
                .then_some(())
                .ok_or("P-V.manifest"),
            2 => (*name == format!("{}.minisig", entries_name(&entries, 1)))
                .then_some(())
                .ok_or("the manifest's name + .minisig"),
            _ => (is_name(name) && !entries.iter().any(|e: &Entry| e.name == *name))
                .then_some(())
                .ok_or("the payload's file name (P-V.tar.zst)"),
        };
        if let Err(expected) = expected {
            return Err(BundleError::BadName {
                index: index + 1,
                what,
                offset: at,
                reason: format!("named {name:?}, expected {expected}"),
            });
        }
        if h.mode & 0o170000 != 0o100000 {
            return Err(BundleError::NotAFile {
                name: name.clone(),
                mode: h.mode,
            });
        }
        if h.entry.size > max {
            return Err(BundleError::TooLarge {
                name: name.clone(),
                what,
                size: h.entry.size,
                max,
            });
        }
        at = h.next;
        entries.push(h.entry);
    }
    let mut it = entries.into_iter();
    let mut next = || it.next().expect("four entries were parsed");
    Ok(Layout {
        sw_description: next(),
        manifest: next(),
        signature: next(),
        payload: next(),
    })
}

fn entries_name(entries: &[Entry], index: usize) -> &str {
    entries.get(index).map_or("", |e| e.name.as_str())
}

impl Layout {
    /// Where the trailer must start: right after the payload's data.
    pub fn trailer_offset(&self) -> u64 {
        align(self.payload.offset + self.payload.size)
    }
}

/// Checks the bytes at [`Layout::trailer_offset`] (at least
/// [`TRAILER_LEN`] of them: the trailer's header and name): a bundle ends with the cpio trailer, so a bundle cut
/// short or with more appended than padding is refused.
pub fn check_trailer(at: u64, tail: &[u8]) -> Result<(), BundleError> {
    let header = render_header(TRAILER, 0, 0, 0).unwrap_or_default();
    let expected = &header[..TRAILER_LEN];
    if tail.get(..TRAILER_LEN) != Some(expected) {
        return Err(BundleError::NoTrailer { offset: at });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(payload: &[u8]) -> Vec<u8> {
        let desc = render_sw_description("acme-gw", "2.0", &["1.0".into()]).unwrap();
        let mut out = render_head(
            desc.as_bytes(),
            "acme-gw-2.0.manifest",
            b"format=1\n",
            b"untrusted comment: x\nsig\n",
            "acme-gw-2.0.tar.zst",
            payload.len() as u64,
        )
        .unwrap();
        out.extend_from_slice(payload);
        out.extend(render_tail(out.len() as u64));
        out
    }

    #[test]
    fn round_trip() {
        let b = bundle(b"payload bytes");
        assert!(is_bundle(&b));
        assert_eq!(b.len() % BLOCK as usize, 0);
        let l = parse_head(&b, b.len() as u64).unwrap();
        assert_eq!(l.sw_description.name, "sw-description");
        assert!(std::str::from_utf8(&b[l.sw_description.range()])
            .unwrap()
            .contains("acme-gw = {\n        hardware-compatibility = [ \"1.0\" ];"));
        assert_eq!(&b[l.manifest.range()], b"format=1\n");
        assert_eq!(l.signature.name, "acme-gw-2.0.manifest.minisig");
        assert_eq!(&b[l.signature.range()], b"untrusted comment: x\nsig\n");
        assert_eq!(l.payload.name, "acme-gw-2.0.tar.zst");
        assert_eq!(&b[l.payload.range()], b"payload bytes");
        let t = l.trailer_offset();
        check_trailer(t, &b[t as usize..]).unwrap();
        check_trailer(t, &b[t as usize..t as usize + TRAILER_LEN]).unwrap();
        // Every data offset is 4-aligned; a manifest is not a bundle.
        assert_eq!(l.payload.offset % 4, 0);
        assert!(!is_bundle(b"format=1\n"));
    }

    #[test]
    fn names_and_sizes_a_newc_entry_cannot_hold_are_refused() {
        assert!(render_header("big", 1, FILE_MODE, 1 << 32).is_err());
        assert!(render_header(&"n".repeat(MAX_NAME_SIZE), 1, FILE_MODE, 0).is_err());
    }

    #[test]
    fn hostile_heads_are_refused() {
        let b = bundle(b"0123456789");
        let n = b.len() as u64;
        let l = parse_head(&b, n).unwrap();
        // Truncated inside the payload: its data would end past the file.
        let cut = l.payload.offset + 5;
        assert!(matches!(
            parse_head(&b[..cut as usize], cut),
            Err(BundleError::OutsideFile { .. })
        ));
        // A head shorter than the file: the caller must read more.
        assert!(matches!(
            parse_head(&b[..200], n),
            Err(BundleError::HeadTooShort { index: 2, .. })
        ));
        // Truncated inside the first header.
        assert!(matches!(
            parse_head(&b[..50], 50),
            Err(BundleError::Truncated { index: 1, .. })
        ));
        // Not a cpio at all.
        assert!(matches!(
            parse_head(b"format=1\nproduct=x\n".repeat(10).as_slice(), 190),
            Err(BundleError::BadMagic { offset: 0, .. })
        ));
        let patch = |at: usize, bytes: &[u8]| {
            let mut c = b.clone();
            c[at..at + bytes.len()].copy_from_slice(bytes);
            parse_head(&c, n)
        };
        // A non-hex size field.
        assert!(matches!(
            patch(54, b"0000000G"),
            Err(BundleError::BadField {
                field: "filesize",
                ..
            })
        ));
        // A huge sw-description size: bounded before it is used.
        assert!(matches!(
            patch(54, b"FFFFFFFF"),
            Err(BundleError::OutsideFile { .. }) | Err(BundleError::TooLarge { .. })
        ));
        // A name size that runs off the header.
        assert!(matches!(
            patch(94, b"FFFFFFFF"),
            Err(BundleError::BadName { index: 1, .. })
        ));
        // A first entry with another name.
        assert!(matches!(
            patch(110, b"./"),
            Err(BundleError::BadName { index: 1, .. })
        ));
        // A directory instead of a file.
        assert!(matches!(
            patch(14, b"000041ED"),
            Err(BundleError::NotAFile { .. })
        ));
        // A payload whose name leaves the directory.
        let payload_header = align(l.signature.offset + l.signature.size) as usize;
        assert!(matches!(
            patch(payload_header + HEADER_LEN, b"../"),
            Err(BundleError::BadName { index: 4, .. })
        ));
        // Something other than the trailer after the payload.
        let t = l.trailer_offset() as usize;
        assert!(check_trailer(t as u64, &b[t + 1..]).is_err());
    }

    /// Every byte of the head changed, one at a time, to a few values:
    /// never a panic, and whatever is accepted lies inside the file.
    #[test]
    fn a_byte_changed_anywhere_in_the_head_never_misleads() {
        let b = bundle(b"0123456789abcdef");
        let n = b.len() as u64;
        let end = parse_head(&b, n).unwrap().payload.offset as usize;
        for at in 0..end {
            for value in [0u8, b'0', b'F', b'/', 0xff, b[at] ^ 1] {
                let mut c = b.clone();
                c[at] = value;
                if let Ok(l) = parse_head(&c, n) {
                    for e in [&l.sw_description, &l.manifest, &l.signature, &l.payload] {
                        assert!(e.offset % 4 == 0 && e.offset + e.size <= n, "{at}: {e:?}");
                    }
                    assert_eq!(l.signature.name, format!("{}.minisig", l.manifest.name));
                }
            }
        }
    }

    #[test]
    fn sw_description_is_what_goosebit_reads() {
        let d =
            render_sw_description("reimage-demo", "2.0.0", &["1.0".into(), "1.1".into()]).unwrap();
        assert_eq!(
            d,
            "software =\n{\n    version = \"2.0.0\";\n    description = \"reimage bundle reimage-demo 2.0.0\";\n    \
             reimage-demo = {\n        hardware-compatibility = [ \"1.0\", \"1.1\" ];\n    };\n};\n"
        );
        assert!(!render_sw_description("p", "1", &[])
            .unwrap()
            .contains("hardware"));
        assert!(render_sw_description("1box", "1", &["1".into()]).is_err());
        assert!(render_sw_description("my.product", "1", &["1".into()]).is_err());
        assert!(render_sw_description("p", "1", &["a\"b".into()]).is_err());
    }
}
