//! The signed entry index of a format-2 image: one record per tar entry, in
//! tar order, each exactly the [`Entry`] that [`crate::entry::from_tar`] reads from
//! that entry's header (path as stored, type, link target or device
//! numbers, mode, owner, group, mtime, size, extended attributes with their
//! values). See `docs/image-format.md`.
//!
//! It ends the payload, in a zstd *skippable frame* (which `zstd -dc`,
//! libzstd's streaming decoder, libarchive and GNU `tar --zstd` pass over),
//! so the payload's BLAKE3 in the signed manifest pins it, and the
//! manifest's `index-size` says where it starts. The recovery checks every
//! record before the erase instead of decoding the payload, and compares
//! every tar header with its record while it extracts ([`compare`]).
//!
//! Layout: the frame header (magic [`MAGIC`], then the content's length, both
//! u32 little-endian), then one zstd frame that decodes to the records:
//! [`RECORDS_MAGIC`], the record count (u64), then each record: type (the
//! tar type byte), mode, uid, gid (u32), mtime, size (u64), the path
//! (u32 length + bytes), the link target for links (u32 length + bytes),
//! the device numbers for devices (u32 major, u32 minor), the number of
//! extended attributes (u32), then each name and value (u32 length +
//! bytes). Integers are little-endian.
//!
//! [`parse`] reads the records from bytes (no I/O) and refuses anything
//! malformed; the rules of the entry model ([`Entry::check`]) are the
//! caller's next step, as for a decoded tar.

use crate::entry::{Entry, Kind};
use crate::entry_path::display;
use thiserror::Error;

/// The skippable frame's magic number (zstd reserves 0x184D2A50 to
/// 0x184D2A5F for frames that decoders skip).
pub const MAGIC: u32 = 0x184D_2A5E;
/// Bytes of the skippable frame's header: magic and length.
pub const FRAME_HEADER: usize = 8;
/// The first bytes of the decoded records.
pub const RECORDS_MAGIC: &[u8; 16] = b"reimage-index-1\n";
/// The largest decoded index read (a million entries with long paths fit).
pub const MAX_RECORDS: usize = 256 << 20;
/// The fewest bytes a record takes: its fixed fields, the path's length
/// and the attribute count.
const MIN_RECORD: usize = 1 + 4 * 3 + 8 * 2 + 4 + 4;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IndexError {
    #[error("the entry index frame is {0} bytes, shorter than its 8-byte header")]
    Short(usize),
    #[error("the entry index frame starts with magic {0:#010x}, not {MAGIC:#010x}")]
    Magic(u32),
    #[error("the entry index frame says it holds {said} bytes, the manifest leaves {found}")]
    Length { said: u64, found: u64 },
    #[error("the entry index cannot be decoded: {0}")]
    Decode(String),
    #[error("the entry index is larger than {MAX_RECORDS} bytes decoded")]
    TooLarge,
    #[error(
        "the entry index does not start with {:?}",
        String::from_utf8_lossy(RECORDS_MAGIC)
    )]
    RecordsMagic,
    #[error("the entry index says it holds {0} records: more than its bytes can hold")]
    Count(u64),
    #[error("entry index record {record}: cut short in its {field}")]
    Truncated { record: u64, field: &'static str },
    #[error("entry index record {record}: type {ty:?} is not one an image holds")]
    Type { record: u64, ty: char },
    #[error("entry index record {record} ({path}): mode {mode:#o} has bits beyond 07777")]
    Mode {
        record: u64,
        path: String,
        mode: u32,
    },
    #[error("entry index record {record} ({path}): an extended attribute name is not UTF-8")]
    XattrName { record: u64, path: String },
    #[error("the entry index has {0} bytes after its last record")]
    Trailing(usize),
}

/// Writes the records of `entries` (each as [`crate::entry::from_tar`] reads it).
pub fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = RECORDS_MAGIC.to_vec();
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    let bytes = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    };
    for e in entries {
        out.push(type_byte(&e.kind));
        for n in [e.mode, e.uid, e.gid] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&e.mtime.to_le_bytes());
        out.extend_from_slice(&e.size.to_le_bytes());
        bytes(&mut out, &e.path);
        match &e.kind {
            Kind::Symlink(t) | Kind::HardLink(t) => bytes(&mut out, t),
            Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } => {
                out.extend_from_slice(&major.to_le_bytes());
                out.extend_from_slice(&minor.to_le_bytes());
            }
            _ => {}
        }
        out.extend_from_slice(&(e.xattrs.len() as u32).to_le_bytes());
        for (name, value) in &e.xattrs {
            bytes(&mut out, name.as_bytes());
            bytes(&mut out, value);
        }
    }
    out
}

/// The tar type byte of a kind, as `crate::entry::to_tar` writes it.
fn type_byte(kind: &Kind) -> u8 {
    match kind {
        Kind::File => b'0',
        Kind::HardLink(_) => b'1',
        Kind::Symlink(_) => b'2',
        Kind::CharDevice { .. } => b'3',
        Kind::BlockDevice { .. } => b'4',
        Kind::Directory => b'5',
        Kind::Fifo => b'6',
    }
}

/// A cursor over the records, naming the record and field it is cut in.
struct Reader<'a> {
    rest: &'a [u8],
    record: u64,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], IndexError> {
        if self.rest.len() < n {
            return Err(IndexError::Truncated {
                record: self.record,
                field,
            });
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, IndexError> {
        let b = self.take(4, field)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, IndexError> {
        let b = self.take(8, field)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], IndexError> {
        let n = self.u32(field)?;
        self.take(n as usize, field)
    }
}

/// Reads the records (the decoded content of the index frame). Refuses
/// what is malformed: cut short, a count its bytes cannot hold, an unknown
/// type, a mode beyond 07777, an attribute name that is not UTF-8, bytes
/// after the last record. The entries' own rules are [`Entry::check`]'s.
pub fn parse(records: &[u8]) -> Result<Vec<Entry>, IndexError> {
    if records.len() > MAX_RECORDS {
        return Err(IndexError::TooLarge);
    }
    let rest = records
        .strip_prefix(RECORDS_MAGIC.as_slice())
        .ok_or(IndexError::RecordsMagic)?;
    let mut r = Reader { rest, record: 0 };
    let count = r.u64("record count")?;
    if count > (r.rest.len() / MIN_RECORD) as u64 {
        return Err(IndexError::Count(count));
    }
    let mut entries = Vec::with_capacity(count as usize);
    for record in 0..count {
        r.record = record;
        let ty = r.take(1, "type")?[0];
        let mode = r.u32("mode")?;
        let uid = r.u32("uid")?;
        let gid = r.u32("gid")?;
        let mtime = r.u64("mtime")?;
        let size = r.u64("size")?;
        let path = r.bytes("path")?.to_vec();
        let kind = match ty {
            b'0' => Kind::File,
            b'1' => Kind::HardLink(r.bytes("link target")?.to_vec()),
            b'2' => Kind::Symlink(r.bytes("link target")?.to_vec()),
            b'3' | b'4' => {
                let major = r.u32("device major")?;
                let minor = r.u32("device minor")?;
                if ty == b'3' {
                    Kind::CharDevice { major, minor }
                } else {
                    Kind::BlockDevice { major, minor }
                }
            }
            b'5' => Kind::Directory,
            b'6' => Kind::Fifo,
            other => {
                return Err(IndexError::Type {
                    record,
                    ty: other as char,
                })
            }
        };
        if mode & !0o7777 != 0 {
            return Err(IndexError::Mode {
                record,
                path: display(&path),
                mode,
            });
        }
        let n = r.u32("extended attribute count")?;
        let mut xattrs = Vec::new();
        for _ in 0..n {
            let name = r.bytes("extended attribute name")?;
            let value = r.bytes("extended attribute value")?;
            let name = std::str::from_utf8(name).map_err(|_| IndexError::XattrName {
                record,
                path: display(&path),
            })?;
            xattrs.push((name.to_string(), value.to_vec()));
        }
        entries.push(Entry {
            path,
            kind,
            mode,
            uid,
            gid,
            mtime,
            size,
            xattrs,
        });
    }
    if !r.rest.is_empty() {
        return Err(IndexError::Trailing(r.rest.len()));
    }
    Ok(entries)
}

/// The skippable frame that ends a format-2 payload: the records of
/// `entries`, zstd-compressed at `level` with a checksum.
pub fn write_frame(entries: &[Entry], level: i32) -> std::io::Result<Vec<u8>> {
    let mut c = zstd::bulk::Compressor::new(level)?;
    c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
    c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(true))?;
    let compressed = c.compress(&encode(entries))?;
    let len = u32::try_from(compressed.len())
        .map_err(|_| std::io::Error::other("the entry index is larger than 4 GiB compressed"))?;
    let mut out = Vec::with_capacity(FRAME_HEADER + compressed.len());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&compressed);
    Ok(out)
}

/// Reads the index frame (the last `index-size` bytes of the payload):
/// its header, then its records, decoded up to [`MAX_RECORDS`].
pub fn read_frame(frame: &[u8]) -> Result<Vec<Entry>, IndexError> {
    if frame.len() < FRAME_HEADER {
        return Err(IndexError::Short(frame.len()));
    }
    let magic = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes"));
    if magic != MAGIC {
        return Err(IndexError::Magic(magic));
    }
    let said = u32::from_le_bytes(frame[4..8].try_into().expect("4 bytes"));
    let content = &frame[FRAME_HEADER..];
    if said as usize != content.len() {
        return Err(IndexError::Length {
            said: said.into(),
            found: content.len() as u64,
        });
    }
    let decode = |e: &dyn std::fmt::Display| IndexError::Decode(e.to_string());
    let size = match zstd::zstd_safe::get_frame_content_size(content) {
        Ok(Some(size)) => size,
        Ok(None) => return Err(decode(&"its size is not recorded")),
        Err(e) => return Err(decode(&e)),
    };
    if size > MAX_RECORDS as u64 {
        return Err(IndexError::TooLarge);
    }
    if zstd::zstd_safe::find_frame_compressed_size(content) != Ok(content.len()) {
        return Err(decode(&"it is not one zstd frame filling the index"));
    }
    let records = zstd::bulk::decompress(content, size as usize).map_err(|e| decode(&e))?;
    parse(&records)
}

/// The first field in which the entry read from a tar header differs from
/// its record in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub field: &'static str,
    pub tar: String,
    pub index: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: the tar says {}, the signed entry index says {}",
            self.field, self.tar, self.index
        )
    }
}

/// Compares every field of the entry read from a tar header with its
/// record; the first that differs, if any.
pub fn compare(tar: &Entry, index: &Entry) -> Result<(), Mismatch> {
    let differ = |field, tar: String, index: String| Err(Mismatch { field, tar, index });
    if tar.path != index.path {
        return differ("path", display(&tar.path), display(&index.path));
    }
    if type_byte(&tar.kind) != type_byte(&index.kind) {
        let ty = |k: &Kind| format!("{:?}", type_byte(k) as char);
        return differ("type", ty(&tar.kind), ty(&index.kind));
    }
    if tar.kind != index.kind {
        let what = match &tar.kind {
            Kind::Symlink(_) | Kind::HardLink(_) => "link target",
            _ => "device number",
        };
        return differ(what, kind_value(&tar.kind), kind_value(&index.kind));
    }
    let numbers = [
        ("mode", tar.mode.into(), index.mode.into()),
        ("uid", tar.uid.into(), index.uid.into()),
        ("gid", tar.gid.into(), index.gid.into()),
        ("mtime", tar.mtime, index.mtime),
        ("size", tar.size, index.size),
    ];
    for (field, t, i) in numbers {
        if t != i {
            let show = |n: u64| {
                if field == "mode" {
                    format!("{n:04o}")
                } else {
                    n.to_string()
                }
            };
            return differ(field, show(t), show(i));
        }
    }
    if tar.xattrs != index.xattrs {
        let names = |e: &Entry| {
            let list: Vec<String> = e
                .xattrs
                .iter()
                .map(|(n, v)| match v.len() {
                    0..=32 => format!("{n}={}", crate::manifest::hex(v)),
                    len => format!(
                        "{n}={}… ({len} bytes, CRC-32 {:08x})",
                        crate::manifest::hex(&v[..16]),
                        crc32fast::hash(v)
                    ),
                })
                .collect();
            format!("[{}]", list.join(", "))
        };
        return differ("extended attributes", names(tar), names(index));
    }
    Ok(())
}

fn kind_value(kind: &Kind) -> String {
    match kind {
        Kind::Symlink(t) | Kind::HardLink(t) => display(t),
        Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } => {
            format!("{major}:{minor}")
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry_path::TreeCheck;

    fn sample() -> Vec<Entry> {
        let mut file = Entry::new("./etc/passwd", Kind::File);
        file.size = 12;
        file.mode = 0o4755;
        file.uid = 1000;
        file.gid = u32::MAX;
        file.mtime = 1_700_000_000;
        file.xattrs = vec![
            ("security.capability".into(), vec![1, 0, 0, 2]),
            ("user.empty".into(), vec![]),
        ];
        vec![
            Entry::new("./", Kind::Directory),
            Entry::new("./etc/", Kind::Directory),
            file,
            Entry::new("./etc/hl", Kind::HardLink(b"etc/passwd".to_vec())),
            Entry::new("./etc/sl", Kind::Symlink(b"/usr/bin/x".to_vec())),
            Entry::new("./etc/c", Kind::CharDevice { major: 1, minor: 3 }),
            Entry::new("./etc/b", Kind::BlockDevice { major: 8, minor: 1 }),
            Entry::new("./etc/fifo", Kind::Fifo),
        ]
    }

    #[test]
    fn records_round_trip_through_the_frame() {
        let entries = sample();
        assert_eq!(parse(&encode(&entries)), Ok(entries.clone()));
        let frame = write_frame(&entries, 3).unwrap();
        assert_eq!(&frame[..4], &MAGIC.to_le_bytes());
        assert_eq!(read_frame(&frame), Ok(entries));
        assert_eq!(parse(&encode(&[])), Ok(vec![]));
    }

    #[test]
    fn the_frame_is_skipped_by_zstd_decoders() {
        let tar = zstd::bulk::compress(b"the tar stream", 3).unwrap();
        let mut payload = tar.clone();
        payload.extend(write_frame(&sample(), 3).unwrap());
        let decoded = zstd::stream::decode_all(&payload[..]).unwrap();
        assert_eq!(decoded, b"the tar stream");
    }

    #[test]
    fn a_truncated_index_is_refused_naming_where() {
        let records = encode(&sample());
        for cut in 0..records.len() {
            assert!(parse(&records[..cut]).is_err(), "cut at {cut} accepted");
        }
        // A count that the bytes cannot hold, before any allocation.
        let mut huge = RECORDS_MAGIC.to_vec();
        huge.extend(u64::MAX.to_le_bytes());
        assert_eq!(parse(&huge), Err(IndexError::Count(u64::MAX)));
        let mut cut = encode(&sample());
        cut.truncate(cut.len() - 2);
        assert_eq!(
            parse(&cut).unwrap_err().to_string(),
            "entry index record 7: cut short in its extended attribute count"
        );
        let frame = write_frame(&sample(), 3).unwrap();
        assert!(matches!(
            read_frame(&frame[..frame.len() - 1]),
            Err(IndexError::Length { .. })
        ));
        assert_eq!(read_frame(&frame[..5]), Err(IndexError::Short(5)));
    }

    #[test]
    fn a_too_large_index_is_refused_before_it_is_decoded() {
        assert_eq!(parse(&vec![0; MAX_RECORDS + 1]), Err(IndexError::TooLarge));
        // A frame that says it decodes to more than the limit.
        let mut c = zstd::bulk::Compressor::new(1).unwrap();
        c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(true))
            .unwrap();
        let big = c.compress(&vec![0u8; MAX_RECORDS + 1]).unwrap();
        let mut frame = MAGIC.to_le_bytes().to_vec();
        frame.extend((big.len() as u32).to_le_bytes());
        frame.extend(big);
        assert_eq!(read_frame(&frame), Err(IndexError::TooLarge));
    }

    #[test]
    fn malformed_records_are_refused() {
        let one = |e: Entry| {
            let mut b = encode(&[e]);
            (b.len(), std::mem::take(&mut b))
        };
        // Bad UTF-8 in an attribute name.
        let mut e = Entry::new("f", Kind::File);
        e.xattrs = vec![("user.a".into(), vec![])];
        let (_, mut bytes) = one(e);
        let at = bytes.windows(6).position(|w| w == b"user.a").unwrap();
        bytes[at + 5] = 0xff;
        assert_eq!(
            parse(&bytes).unwrap_err().to_string(),
            "entry index record 0 (f): an extended attribute name is not UTF-8"
        );
        // An unknown type; a mode beyond 07777.
        let (_, mut bytes) = one(Entry::new("f", Kind::File));
        bytes[24] = b'V';
        assert!(matches!(
            parse(&bytes),
            Err(IndexError::Type { ty: 'V', .. })
        ));
        let mut e = Entry::new("f", Kind::File);
        e.mode = 0o100644;
        assert!(matches!(parse(&one(e).1), Err(IndexError::Mode { .. })));
        // Bytes after the last record; the wrong magic.
        let (_, mut bytes) = one(Entry::new("f", Kind::Fifo));
        bytes.push(0);
        assert_eq!(parse(&bytes), Err(IndexError::Trailing(1)));
        assert_eq!(parse(b"reimage-index-2\n"), Err(IndexError::RecordsMagic));
        let mut frame = write_frame(&sample(), 3).unwrap();
        frame[0] = 0x50;
        assert!(matches!(read_frame(&frame), Err(IndexError::Magic(_))));
        let last = frame.len() - 1;
        frame[0] = 0x5e;
        frame[last] ^= 1;
        assert!(matches!(read_frame(&frame), Err(IndexError::Decode(_))));
    }

    /// The parser leaves the order to the entry model's check, as for a
    /// decoded tar: an index whose entries come out of order is refused
    /// there, by the same rules.
    #[test]
    fn an_out_of_order_index_is_refused_by_the_entry_check() {
        let mut entries = sample();
        entries.swap(1, 2);
        let parsed = parse(&encode(&entries)).unwrap();
        let mut tree = TreeCheck::new();
        let refused = parsed.iter().find_map(|e| e.check(&mut tree).err());
        let err = refused.expect("a file before its directory").to_string();
        assert!(
            err.contains("etc/passwd: its parent directory etc has no entry before it"),
            "{err}"
        );
    }

    #[test]
    fn every_field_is_compared() {
        let base = sample()[2].clone();
        type Change = Box<dyn Fn(&mut Entry)>;
        let cases: Vec<(&str, Change)> = vec![
            ("path", Box::new(|e| e.path = b"./etc/shadow".to_vec())),
            ("type", Box::new(|e| e.kind = Kind::Fifo)),
            ("mode", Box::new(|e| e.mode = 0o755)),
            ("uid", Box::new(|e| e.uid = 0)),
            ("gid", Box::new(|e| e.gid = 0)),
            ("mtime", Box::new(|e| e.mtime = 1)),
            ("size", Box::new(|e| e.size = 13)),
            ("extended attributes", Box::new(|e| e.xattrs[0].1 = vec![9])),
        ];
        for (field, change) in cases {
            let mut other = base.clone();
            change(&mut other);
            let m = compare(&other, &base).unwrap_err();
            assert_eq!(m.field, field, "{m}");
        }
        let link = |t: &[u8]| Entry::new("l", Kind::Symlink(t.to_vec()));
        let m = compare(&link(b"a"), &link(b"b")).unwrap_err();
        assert_eq!(
            m.to_string(),
            "link target: the tar says a, the signed entry index says b"
        );
        let dev = |minor| Entry::new("c", Kind::CharDevice { major: 1, minor });
        assert_eq!(
            compare(&dev(3), &dev(5)).unwrap_err().field,
            "device number"
        );
        assert_eq!(compare(&base, &base), Ok(()));
    }
}
