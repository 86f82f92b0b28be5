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
//! [`Index::parse`] reads the records from bytes (no I/O) and refuses
//! anything malformed, or a count other than the manifest's entries; the
//! rules of the entry model ([`Entry::check`]) are the caller's next step,
//! as for a decoded tar. The records stay as they are, a few bytes each,
//! and are read again one at a time where they are used ([`Index::iter`]).
//!
//! [`Matcher`] is the one comparison of a tar with its index, entry by
//! entry: the recovery's extraction runs it as it writes, and
//! [`check_tar`] (`image-builder` on what it just wrote, before signing;
//! `recovery verify`) runs it over a whole tar without writing.

use crate::entry::{self, Entry, EntryError, Kind, Reading};
use crate::entry_path::display;
use std::io::Read;
use thiserror::Error;

/// The skippable frame's magic number (zstd reserves 0x184D2A50 to
/// 0x184D2A5F for frames that decoders skip).
pub const MAGIC: u32 = 0x184D_2A5E;
/// Bytes of the skippable frame's header: magic and length.
pub const FRAME_HEADER: usize = 8;
/// The first bytes of the decoded records.
pub const RECORDS_MAGIC: &[u8; 16] = b"reimage-index-1\n";
/// The largest decoded index read, whatever the entry count: a million
/// entries of 128 bytes each (Debian minbase's average is 75). The
/// recovery holds it through the extraction, in a 512 MiB machine.
pub const MAX_RECORDS: usize = 128 << 20;
/// The most bytes a record may take on average: a path and a link target
/// of 4 KiB each (Linux's `PATH_MAX`), and 8 KiB of extended attributes.
/// With the manifest's entry count it bounds the decoded index
/// ([`max_records`]) before anything is decoded.
pub const RECORD_AVERAGE_MAX: u64 = 16 << 10;
/// The records' magic and count.
const HEADER: usize = RECORDS_MAGIC.len() + 8;
/// The fewest bytes a record takes: its fixed fields, the path's length
/// and the attribute count.
const MIN_RECORD: usize = 1 + 4 * 3 + 8 * 2 + 4 + 4;

/// The most bytes the decoded records of an image of `entries` entries
/// may take: [`RECORD_AVERAGE_MAX`] a record, at most [`MAX_RECORDS`].
pub fn max_records(entries: u64) -> u64 {
    entries
        .saturating_mul(RECORD_AVERAGE_MAX)
        .saturating_add(HEADER as u64)
        .min(MAX_RECORDS as u64)
}

/// The largest index frame (the manifest's `index-size`) of an image of
/// `entries` entries: its header and the most that [`max_records`] bytes
/// can take compressed.
pub fn max_frame(entries: u64) -> u64 {
    let records = max_records(entries) as usize;
    (FRAME_HEADER + zstd::zstd_safe::compress_bound(records)) as u64
}

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
    #[error(
        "the entry index decodes to {size} bytes, more than the {max} that {entries} \
         entries may take ({RECORD_AVERAGE_MAX} bytes a record, at most {MAX_RECORDS})"
    )]
    TooLarge { size: u64, max: u64, entries: u64 },
    #[error(
        "the entry index does not start with {:?}",
        String::from_utf8_lossy(RECORDS_MAGIC)
    )]
    RecordsMagic,
    #[error("the entry index says it holds {said} records, the manifest says {manifest} entries")]
    Entries { said: u64, manifest: u64 },
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

impl Reader<'_> {
    /// The next record.
    fn record(&mut self) -> Result<Entry, IndexError> {
        let record = self.record;
        let ty = self.take(1, "type")?[0];
        let mode = self.u32("mode")?;
        let uid = self.u32("uid")?;
        let gid = self.u32("gid")?;
        let mtime = self.u64("mtime")?;
        let size = self.u64("size")?;
        let path = self.bytes("path")?.to_vec();
        let kind = match ty {
            b'0' => Kind::File,
            b'1' => Kind::HardLink(self.bytes("link target")?.to_vec()),
            b'2' => Kind::Symlink(self.bytes("link target")?.to_vec()),
            b'3' | b'4' => {
                let major = self.u32("device major")?;
                let minor = self.u32("device minor")?;
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
        let n = self.u32("extended attribute count")?;
        let mut xattrs = Vec::new();
        for _ in 0..n {
            let name = self.bytes("extended attribute name")?;
            let value = self.bytes("extended attribute value")?;
            let name = std::str::from_utf8(name).map_err(|_| IndexError::XattrName {
                record,
                path: display(&path),
            })?;
            xattrs.push((name.to_string(), value.to_vec()));
        }
        self.record += 1;
        Ok(Entry {
            path,
            kind,
            mode,
            uid,
            gid,
            mtime,
            size,
            xattrs,
        })
    }
}

/// A signed entry index, read and checked for form: its decoded records,
/// kept as they are (what the recovery holds through the extraction) and
/// read one at a time where they are used ([`Index::iter`]), rather than
/// held as an [`Entry`] each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    records: Vec<u8>,
    count: u64,
}

impl Index {
    /// Reads the records (the decoded content of the index frame) of an
    /// image whose manifest says `entries`. Refuses, before reading a
    /// record: more bytes than `entries` may take ([`max_records`]), a
    /// count other than `entries` or one its bytes cannot hold; then what
    /// is malformed: cut short, an unknown type, a mode beyond 07777, an
    /// attribute name that is not UTF-8, bytes after the last record. The
    /// entries' own rules are [`Entry::check`]'s.
    pub fn parse(records: Vec<u8>, entries: u64) -> Result<Index, IndexError> {
        let max = max_records(entries);
        if records.len() as u64 > max {
            return Err(IndexError::TooLarge {
                size: records.len() as u64,
                max,
                entries,
            });
        }
        let rest = records
            .strip_prefix(RECORDS_MAGIC.as_slice())
            .ok_or(IndexError::RecordsMagic)?;
        let mut r = Reader { rest, record: 0 };
        let count = r.u64("record count")?;
        if count != entries {
            return Err(IndexError::Entries {
                said: count,
                manifest: entries,
            });
        }
        if count > (r.rest.len() / MIN_RECORD) as u64 {
            return Err(IndexError::Count(count));
        }
        let index = Index { records, count };
        let mut iter = index.iter();
        for record in &mut iter {
            record?;
        }
        if !iter.reader.rest.is_empty() {
            return Err(IndexError::Trailing(iter.reader.rest.len()));
        }
        Ok(index)
    }

    /// The number of records: the manifest's entries.
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The records in order, each read when it is reached.
    pub fn iter(&self) -> Records<'_> {
        Records {
            reader: Reader {
                rest: &self.records[HEADER..],
                record: 0,
            },
            left: self.count,
        }
    }

    /// A comparison of a tar with these records, entry by entry.
    pub fn matcher(&self) -> Matcher<'_> {
        Matcher {
            records: self.iter(),
            count: self.count,
            seen: 0,
        }
    }
}

/// The records of an [`Index`], in order. (An error cannot come from an
/// index that [`Index::parse`] accepted; after one, nothing more.)
pub struct Records<'a> {
    reader: Reader<'a>,
    left: u64,
}

impl Iterator for Records<'_> {
    type Item = Result<Entry, IndexError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let record = self.reader.record();
        self.left = if record.is_ok() { self.left - 1 } else { 0 };
        Some(record)
    }
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

/// Reads the index frame (the last `index-size` bytes of the payload) of
/// an image whose manifest says `entries`: its header, then its records,
/// refused before they are decoded if they would take more than
/// [`max_records`] bytes, then read by [`Index::parse`].
pub fn read_frame(frame: &[u8], entries: u64) -> Result<Index, IndexError> {
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
    let max = max_records(entries);
    if size > max {
        return Err(IndexError::TooLarge { size, max, entries });
    }
    if zstd::zstd_safe::find_frame_compressed_size(content) != Ok(content.len()) {
        return Err(decode(&"it is not one zstd frame filling the index"));
    }
    let records = zstd::bulk::decompress(content, size as usize).map_err(|e| decode(&e))?;
    Index::parse(records, entries)
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

/// Where a tar and its index part ways.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Disagreement {
    #[error("entry {path}: {mismatch}")]
    Field { path: String, mismatch: Mismatch },
    #[error("entry {path}: in the payload but not in the signed entry index ({records} records)")]
    Extra { path: String, records: u64 },
    #[error(
        "entry {path}: in the signed entry index but missing from the payload \
         (it ends after {entries} entries)"
    )]
    Missing { path: String, entries: u64 },
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// Compares a tar's entries, in order, with the records of an index
/// ([`compare`] for each), then says whether records were left over.
pub struct Matcher<'a> {
    records: Records<'a>,
    count: u64,
    seen: u64,
}

impl Matcher<'_> {
    /// Compares the tar's next entry (as [`crate::entry::from_tar`] reads
    /// it) with the next record.
    pub fn check(&mut self, tar: &Entry) -> Result<(), Disagreement> {
        let Some(record) = self.records.next() else {
            return Err(Disagreement::Extra {
                path: display(&tar.path),
                records: self.count,
            });
        };
        self.seen += 1;
        compare(tar, &record?).map_err(|mismatch| Disagreement::Field {
            path: display(&tar.path),
            mismatch,
        })
    }

    /// After the tar's last entry: a record left over is an entry the tar
    /// lacks. Returns the number of entries compared.
    pub fn finish(mut self) -> Result<u64, Disagreement> {
        match self.records.next() {
            None => Ok(self.seen),
            Some(Err(e)) => Err(e.into()),
            Some(Ok(missing)) => Err(Disagreement::Missing {
                path: display(&missing.path),
                entries: self.seen,
            }),
        }
    }
}

/// Why a tar stream does not read as its index says.
#[derive(Debug, Error)]
pub enum TarCheckError {
    #[error("cannot decode the payload: {0}")]
    Read(std::io::Error),
    #[error(transparent)]
    Entry(#[from] EntryError),
    #[error(transparent)]
    Disagree(#[from] Disagreement),
}

/// Reads a whole tar stream, every entry's data and what follows the last
/// entry included (so that every zstd frame below it is decoded and its
/// checksum checked), and compares each header with its record
/// ([`Matcher`]), writing nothing. Returns the number of entries.
pub fn check_tar<R: Read>(tar: R, index: &Index) -> Result<u64, TarCheckError> {
    let mut archive = tar::Archive::new(tar);
    let mut matcher = index.matcher();
    let mut buf = vec![0u8; 1 << 20];
    for item in archive.entries().map_err(TarCheckError::Read)? {
        let mut item = item.map_err(TarCheckError::Read)?;
        matcher.check(&entry::from_tar(&mut item, Reading::Payload)?)?;
        drain(&mut item, &mut buf)?;
    }
    drain(&mut archive.into_inner(), &mut buf)?;
    Ok(matcher.finish()?)
}

/// Reads `input` to its end, keeping nothing.
fn drain(input: &mut impl Read, buf: &mut [u8]) -> Result<(), TarCheckError> {
    loop {
        match input.read(buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(TarCheckError::Read(e)),
        }
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

    /// The records of `bytes`, read for an image of `entries` entries.
    fn parse(bytes: &[u8], entries: u64) -> Result<Vec<Entry>, IndexError> {
        Index::parse(bytes.to_vec(), entries)?.iter().collect()
    }

    fn all(index: Result<Index, IndexError>) -> Result<Vec<Entry>, IndexError> {
        index?.iter().collect()
    }

    #[test]
    fn records_round_trip_through_the_frame() {
        let entries = sample();
        assert_eq!(parse(&encode(&entries), 8), Ok(entries.clone()));
        let frame = write_frame(&entries, 3).unwrap();
        assert_eq!(&frame[..4], &MAGIC.to_le_bytes());
        let index = read_frame(&frame, 8).unwrap();
        assert_eq!((index.len(), index.is_empty()), (8, false));
        assert_eq!(all(Ok(index)), Ok(entries));
        assert_eq!(parse(&encode(&[]), 0), Ok(vec![]));
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
            assert!(parse(&records[..cut], 8).is_err(), "cut at {cut} accepted");
        }
        // A count that the bytes cannot hold, though the manifest says it.
        let mut huge = RECORDS_MAGIC.to_vec();
        huge.extend(u64::MAX.to_le_bytes());
        assert_eq!(parse(&huge, u64::MAX), Err(IndexError::Count(u64::MAX)));
        let mut cut = encode(&sample());
        cut.truncate(cut.len() - 2);
        assert_eq!(
            parse(&cut, 8).unwrap_err().to_string(),
            "entry index record 7: cut short in its extended attribute count"
        );
        let frame = write_frame(&sample(), 3).unwrap();
        assert!(matches!(
            read_frame(&frame[..frame.len() - 1], 8),
            Err(IndexError::Length { .. })
        ));
        assert_eq!(read_frame(&frame[..5], 8), Err(IndexError::Short(5)));
    }

    /// The count is compared with the manifest's entries before any record
    /// is read: a signed index cannot size the recovery's memory.
    #[test]
    fn a_count_other_than_the_manifests_entries_is_refused() {
        let records = encode(&sample());
        for manifest in [7, 9] {
            assert_eq!(
                Index::parse(records.clone(), manifest),
                Err(IndexError::Entries { said: 8, manifest })
            );
        }
        // No entries: 473 bytes are more than an empty index takes.
        assert!(matches!(
            Index::parse(records, 0),
            Err(IndexError::TooLarge { max: 24, .. })
        ));
        let mut huge = RECORDS_MAGIC.to_vec();
        huge.extend(u64::MAX.to_le_bytes());
        assert_eq!(
            parse(&huge, 8).unwrap_err().to_string(),
            format!(
                "the entry index says it holds {} records, the manifest says 8 entries",
                u64::MAX
            )
        );
        let frame = write_frame(&sample(), 3).unwrap();
        assert!(matches!(
            read_frame(&frame, 9),
            Err(IndexError::Entries {
                said: 8,
                manifest: 9
            })
        ));
    }

    #[test]
    fn a_too_large_index_is_refused_before_it_is_decoded() {
        let max = max_records(8);
        assert_eq!(max, 8 * RECORD_AVERAGE_MAX + HEADER as u64);
        assert_eq!(max_records(u64::MAX), MAX_RECORDS as u64);
        assert_eq!(
            Index::parse(vec![0; max as usize + 1], 8),
            Err(IndexError::TooLarge {
                size: max + 1,
                max,
                entries: 8
            })
        );
        // A frame that decodes to more than 8 entries may take.
        let mut c = zstd::bulk::Compressor::new(1).unwrap();
        c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(true))
            .unwrap();
        let frame = |content: &[u8]| {
            let mut frame = MAGIC.to_le_bytes().to_vec();
            frame.extend((content.len() as u32).to_le_bytes());
            frame.extend(content);
            frame
        };
        let big = c.compress(&vec![0u8; max as usize + 1]).unwrap();
        let err = read_frame(&frame(&big), 8).unwrap_err();
        assert_eq!(
            err,
            IndexError::TooLarge {
                size: max + 1,
                max,
                entries: 8
            }
        );
        assert!(
            err.to_string()
                .contains("more than the 131096 that 8 entries"),
            "{err}"
        );
        // A frame header alone that says 1 TiB: refused by its header, with
        // nothing allocated (the frame holds no data to decode).
        let mut header = 0xFD2F_B528u32.to_le_bytes().to_vec();
        header.push(0xE0); // single segment, 8-byte content size
        header.extend((1u64 << 40).to_le_bytes());
        assert!(matches!(
            read_frame(&frame(&header), u64::MAX),
            Err(IndexError::TooLarge { size, .. }) if size == 1 << 40
        ));
        // The frame the manifest may say (`index-size`) is bounded with it.
        assert!(max_frame(8) > max && max_frame(8) < 2 * max);
    }

    #[test]
    fn malformed_records_are_refused() {
        let one = |e: Entry| encode(&[e]);
        // Bad UTF-8 in an attribute name.
        let mut e = Entry::new("f", Kind::File);
        e.xattrs = vec![("user.a".into(), vec![])];
        let mut bytes = one(e);
        let at = bytes.windows(6).position(|w| w == b"user.a").unwrap();
        bytes[at + 5] = 0xff;
        assert_eq!(
            parse(&bytes, 1).unwrap_err().to_string(),
            "entry index record 0 (f): an extended attribute name is not UTF-8"
        );
        // An unknown type; a mode beyond 07777.
        let mut bytes = one(Entry::new("f", Kind::File));
        bytes[24] = b'V';
        assert!(matches!(
            parse(&bytes, 1),
            Err(IndexError::Type { ty: 'V', .. })
        ));
        let mut e = Entry::new("f", Kind::File);
        e.mode = 0o100644;
        assert!(matches!(parse(&one(e), 1), Err(IndexError::Mode { .. })));
        // Bytes after the last record; the wrong magic.
        let mut bytes = one(Entry::new("f", Kind::Fifo));
        bytes.push(0);
        assert_eq!(parse(&bytes, 1), Err(IndexError::Trailing(1)));
        assert_eq!(
            parse(b"reimage-index-2\n", 1),
            Err(IndexError::RecordsMagic)
        );
        let mut frame = write_frame(&sample(), 3).unwrap();
        frame[0] = 0x50;
        assert!(matches!(read_frame(&frame, 8), Err(IndexError::Magic(_))));
        let last = frame.len() - 1;
        frame[0] = 0x5e;
        frame[last] ^= 1;
        assert!(matches!(read_frame(&frame, 8), Err(IndexError::Decode(_))));
    }

    /// The parser leaves the order to the entry model's check, as for a
    /// decoded tar: an index whose entries come out of order is refused
    /// there, by the same rules.
    #[test]
    fn an_out_of_order_index_is_refused_by_the_entry_check() {
        let mut entries = sample();
        entries.swap(1, 2);
        let parsed = parse(&encode(&entries), 8).unwrap();
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

    /// Entries as a tar stores and reads them (no directories: their
    /// stored names differ from what `append` is given).
    fn stored() -> Vec<Entry> {
        let mut file = Entry::new("etc/passwd", Kind::File);
        file.size = 3;
        file.xattrs = vec![("user.note".into(), b"v".to_vec())];
        vec![
            file,
            Entry::new("etc/sl", Kind::Symlink(b"passwd".to_vec())),
            Entry::new("etc/fifo", Kind::Fifo),
        ]
    }

    fn tar_of(entries: &[Entry]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            entry::append(&mut b, e, &vec![b'x'; e.size as usize][..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn index_of(entries: &[Entry]) -> Index {
        Index::parse(encode(entries), entries.len() as u64).unwrap()
    }

    #[test]
    fn the_matcher_names_a_missing_an_extra_and_a_differing_entry() {
        let tar = stored();
        let index = index_of(&tar);
        let mut m = index.matcher();
        for e in &tar {
            m.check(e).unwrap();
        }
        assert_eq!(m.finish(), Ok(3));
        let mut m = index.matcher();
        m.check(&tar[0]).unwrap();
        assert_eq!(
            m.finish().unwrap_err().to_string(),
            "entry etc/sl: in the signed entry index but missing from the payload \
             (it ends after 1 entries)"
        );
        let mut m = index.matcher();
        for e in &tar {
            m.check(e).unwrap();
        }
        assert_eq!(
            m.check(&tar[0]).unwrap_err().to_string(),
            "entry etc/passwd: in the payload but not in the signed entry index (3 records)"
        );
        let mut other = tar[0].clone();
        other.uid = 7;
        assert_eq!(
            index.matcher().check(&other).unwrap_err().to_string(),
            "entry etc/passwd: uid: the tar says 7, the signed entry index says 0"
        );
    }

    #[test]
    fn check_tar_reads_the_whole_tar_against_its_index() {
        let entries = stored();
        let tar = tar_of(&entries);
        assert_eq!(check_tar(&tar[..], &index_of(&entries)).unwrap(), 3);
        let mut other = entries.clone();
        other[1].kind = Kind::Symlink(b"group".to_vec());
        let err = check_tar(&tar[..], &index_of(&other)).unwrap_err();
        assert!(matches!(err, TarCheckError::Disagree(_)), "{err}");
        assert_eq!(
            err.to_string(),
            "entry etc/sl: link target: the tar says passwd, the signed entry index says group"
        );
        // A tar cut inside the file's data: a read error.
        let cut = &tar[..1024 + 512 + 1];
        let err = check_tar(cut, &index_of(&entries)).unwrap_err();
        assert!(matches!(err, TarCheckError::Read(_)), "{err}");
        // What follows the last entry is read too: an error there (a frame
        // that does not decode) is found.
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("zstd frame 9: checksum wrong"))
            }
        }
        let err = check_tar((&tar[..]).chain(Failing), &index_of(&entries)).unwrap_err();
        assert!(err.to_string().contains("checksum wrong"), "{err}");
    }
}
