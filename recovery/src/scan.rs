//! The entry checks that need the decoded payload: every entry's path stays
//! inside the target, its type is one a root file system holds, its names
//! fit the file system, and the totals match the manifest. The scan writes
//! nothing; the extractor runs the same checks again as it writes.

use crate::error::{Stage, UpdateError};
use crate::progress::Progress;
use formats::entry_path::{display, Kind, PathError, TreeCheck};
use std::io::Read;
use tar::EntryType;

/// Longest symlink target Linux accepts, without the final NUL.
const TARGET_MAX: usize = 4095;
/// Largest extended attribute value Linux accepts.
const XATTR_VALUE_MAX: usize = 65536;

/// An entry's type and the data that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
    Symlink(Vec<u8>),
    HardLink(Vec<u8>),
    CharDevice { major: u32, minor: u32 },
    BlockDevice { major: u32, minor: u32 },
    Fifo,
}

/// What the tar says of one entry, read and checked for form.
#[derive(Debug, Clone)]
pub struct Described {
    pub raw_path: Vec<u8>,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub size: u64,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Described {
    /// Runs the path checks, returning the path relative to the target.
    pub fn check_path(&self, tree: &mut TreeCheck) -> Result<Vec<u8>, PathError> {
        let (kind, link) = match &self.kind {
            EntryKind::Directory => (Kind::Directory, None),
            EntryKind::Symlink(_) => (Kind::Symlink, None),
            EntryKind::HardLink(target) => (Kind::HardLink, Some(target.as_slice())),
            _ => (Kind::Other, None),
        };
        tree.check(&self.raw_path, kind, link)
    }
}

/// Reads one tar entry's header and PAX records into a [`Described`],
/// refusing what a root file system cannot hold. `payload` names the file
/// in errors.
pub fn describe<R: Read>(
    entry: &mut tar::Entry<R>,
    payload: &str,
) -> Result<Described, UpdateError> {
    let raw_path = entry.path_bytes().into_owned();
    let refuse = |reason: String| {
        UpdateError::new(
            Stage::Contents,
            payload,
            format!("entry {}: {reason}", display(&raw_path)),
        )
    };
    let header = entry.header();
    let number = |r: std::io::Result<u64>, field: &str| {
        r.map_err(|_| refuse(format!("the {field} field is not a number")))
    };
    let mode = number(header.mode().map(u64::from), "mode")? as u32 & 0o7777;
    let uid = number(header.uid(), "uid")?;
    let gid = number(header.gid(), "gid")?;
    let mtime = number(header.mtime(), "mtime")?;
    let size = entry.size();
    let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
        return Err(refuse(format!(
            "uid {uid} or gid {gid} is larger than 32 bits"
        )));
    };
    let device = |r: std::io::Result<Option<u32>>| r.ok().flatten().unwrap_or(0);
    let link = || -> Result<Vec<u8>, UpdateError> {
        let target = entry
            .link_name_bytes()
            .map(|l| l.into_owned())
            .unwrap_or_default();
        if target.is_empty() || target.contains(&0) || target.len() > TARGET_MAX {
            return Err(refuse(format!(
                "link target must be 1 to {TARGET_MAX} bytes without NUL, found {} bytes",
                target.len()
            )));
        }
        Ok(target)
    };
    let ty = header.entry_type();
    let kind = match ty {
        EntryType::Regular => EntryKind::File,
        EntryType::Directory => EntryKind::Directory,
        EntryType::Symlink => EntryKind::Symlink(link()?),
        EntryType::Link => EntryKind::HardLink(link()?),
        EntryType::Char => EntryKind::CharDevice {
            major: device(header.device_major()),
            minor: device(header.device_minor()),
        },
        EntryType::Block => EntryKind::BlockDevice {
            major: device(header.device_major()),
            minor: device(header.device_minor()),
        },
        EntryType::Fifo => EntryKind::Fifo,
        other => {
            return Err(refuse(format!(
                "type {:?} is not one an image holds (file, directory, symlink, \
                 hard link, device, FIFO)",
                other.as_byte() as char
            )))
        }
    };
    if kind != EntryKind::File && size != 0 {
        return Err(refuse(format!(
            "a non-file entry with {size} bytes of data"
        )));
    }
    let mut xattrs = Vec::new();
    if let Some(exts) = entry
        .pax_extensions()
        .map_err(|e| refuse(format!("unreadable PAX records: {e}")))?
    {
        for ext in exts {
            let ext = ext.map_err(|e| refuse(format!("unreadable PAX record: {e}")))?;
            let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
                continue;
            };
            let name = std::str::from_utf8(name)
                .ok()
                .filter(|n| !n.is_empty() && n.len() <= 255 && !n.contains('\0'))
                .ok_or_else(|| {
                    refuse("an extended attribute name is not 1 to 255 bytes of text".into())
                })?;
            if ext.value_bytes().len() > XATTR_VALUE_MAX {
                return Err(refuse(format!(
                    "extended attribute {name} is larger than {XATTR_VALUE_MAX} bytes"
                )));
            }
            xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
        }
    }
    Ok(Described {
        raw_path,
        kind,
        mode,
        uid,
        gid,
        mtime: mtime.min(i64::MAX as u64) as i64,
        size,
        xattrs,
    })
}

/// What the scan counted, to compare with the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub entries: u64,
    pub unpacked_size: u64,
}

/// Reads every entry of the tar stream without writing anything.
pub fn scan<R: Read>(tar: R, payload: &str, progress: &Progress) -> Result<Totals, UpdateError> {
    let mut archive = tar::Archive::new(tar);
    let read_err = |e: std::io::Error| {
        UpdateError::new(
            Stage::Contents,
            payload,
            format!("cannot decode the payload: {e}"),
        )
    };
    let mut tree = TreeCheck::new();
    let mut totals = Totals::default();
    // Large reads let zstd decode in large steps.
    let mut skip = vec![0u8; 1 << 20];
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let described = describe(&mut entry, payload)?;
        described
            .check_path(&mut tree)
            .map_err(|e| UpdateError::new(Stage::Contents, payload, e))?;
        totals.entries += 1;
        progress.add_entry();
        if described.kind == EntryKind::File {
            totals.unpacked_size += described.size;
        }
        // The data is skipped, but it must decode: zstd's checksum is
        // checked as the whole stream is read.
        while entry.read(&mut skip).map_err(read_err)? > 0 {}
    }
    Ok(totals)
}
