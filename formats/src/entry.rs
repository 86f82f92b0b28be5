//! One entry of an image's tar, as `image-builder` writes it and the
//! recovery reads it: the kinds a root file system holds, the limits Linux
//! puts on them, and the mapping to and from tar headers. Both sides run
//! [`Entry::check`] on every entry (the builder before it writes the
//! payload, the recovery before and while it writes the target), so the
//! builder cannot make an image that the recovery refuses.
//!
//! The mapping reads and writes headers in memory; the `tar` crate does the
//! reading of the stream.

use crate::entry_path::{self, display, PathError, TreeCheck};
use std::io::{Read, Write};
use tar::{EntryType, Header};
use thiserror::Error;

/// Longest symlink or hard link target Linux accepts, without the final NUL.
pub const TARGET_MAX: usize = 4095;
/// Longest extended attribute name Linux accepts (`XATTR_NAME_MAX`).
pub const XATTR_NAME_MAX: usize = 255;
/// Largest extended attribute value Linux accepts (`XATTR_SIZE_MAX`).
pub const XATTR_VALUE_MAX: usize = 65536;
/// Largest device numbers Linux has (12 bits of major, 20 of minor).
pub const DEVICE_MAJOR_MAX: u32 = (1 << 12) - 1;
pub const DEVICE_MINOR_MAX: u32 = (1 << 20) - 1;

/// An entry's type, with what goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file: its data follows the header ([`Entry::size`] bytes).
    File,
    Directory,
    Symlink(Vec<u8>),
    /// A hard link to an earlier entry of the image.
    HardLink(Vec<u8>),
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// One entry: its path, type and every piece of metadata a root file
/// system needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path as stored (`./etc/passwd`), or as `image-builder` writes it
    /// once checked: relative, without `./`, empty for the root.
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky (07777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since 1970.
    pub mtime: u64,
    /// Bytes of data: only a [`Kind::File`] has any.
    pub size: u64,
    /// Extended attributes, in the order they are stored.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// What makes an entry one that no image may hold.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Problem {
    #[error("the {0} field is not a number")]
    NotANumber(&'static str),
    #[error("uid {uid} or gid {gid} is larger than 32 bits")]
    IdTooLarge { uid: u64, gid: u64 },
    #[error("link target must be 1 to {TARGET_MAX} bytes without NUL, found {0} bytes")]
    LinkTarget(usize),
    #[error(
        "type {0:?} is not one an image holds (file, directory, symlink, \
         hard link, device, FIFO)"
    )]
    Type(char),
    #[error(
        "device {0}:{1}: Linux device numbers are at most \
         {DEVICE_MAJOR_MAX}:{DEVICE_MINOR_MAX}"
    )]
    Device(u32, u32),
    #[error("a non-file entry with {0} bytes of data")]
    DataOnNonFile(u64),
    #[error("an extended attribute name is not 1 to {XATTR_NAME_MAX} bytes of text")]
    XattrName,
    #[error("extended attribute {0} is larger than {XATTR_VALUE_MAX} bytes")]
    XattrValue(String),
    #[error("unreadable PAX records: {0}")]
    Pax(String),
}

/// Why an entry is refused, with its path.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EntryError {
    /// It could land outside the target ([`entry_path`]).
    #[error(transparent)]
    Path(#[from] PathError),
    /// It is not one a root file system can hold.
    #[error("entry {path}: {problem}")]
    Form { path: String, problem: Problem },
}

impl EntryError {
    pub fn form(path: &[u8], problem: Problem) -> EntryError {
        EntryError::Form {
            path: display(path),
            problem,
        }
    }
}

/// The name of an extended attribute, if it is one Linux accepts: 1 to
/// [`XATTR_NAME_MAX`] bytes of UTF-8 without NUL.
pub fn xattr_name(raw: &[u8]) -> Result<&str, Problem> {
    std::str::from_utf8(raw)
        .ok()
        .filter(|n| !n.is_empty() && n.len() <= XATTR_NAME_MAX && !n.contains('\0'))
        .ok_or(Problem::XattrName)
}

impl Entry {
    /// An entry owned by root, mode 0755 for a directory and 0644 for the
    /// rest, mtime 0, without data or extended attributes.
    pub fn new(path: impl Into<Vec<u8>>, kind: Kind) -> Entry {
        Entry {
            path: path.into(),
            mode: if kind == Kind::Directory {
                0o755
            } else {
                0o644
            },
            kind,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            xattrs: Vec::new(),
        }
    }

    /// The limits an entry must meet on its own: link targets, device
    /// numbers, extended attributes, data only on files.
    pub fn check_form(&self) -> Result<(), EntryError> {
        let refuse = |problem| Err(EntryError::form(&self.path, problem));
        if let Kind::Symlink(target) | Kind::HardLink(target) = &self.kind {
            if target.is_empty() || target.contains(&0) || target.len() > TARGET_MAX {
                return refuse(Problem::LinkTarget(target.len()));
            }
        }
        if let Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } = self.kind {
            if major > DEVICE_MAJOR_MAX || minor > DEVICE_MINOR_MAX {
                return refuse(Problem::Device(major, minor));
            }
        }
        if self.kind != Kind::File && self.size != 0 {
            return refuse(Problem::DataOnNonFile(self.size));
        }
        for (name, value) in &self.xattrs {
            if let Err(problem) = xattr_name(name.as_bytes()) {
                return refuse(problem);
            }
            if value.len() > XATTR_VALUE_MAX {
                return refuse(Problem::XattrValue(name.clone()));
            }
        }
        Ok(())
    }

    /// Every rule an image's entry must meet: [`Entry::check_form`], then
    /// the path rules of [`entry_path`] in archive order (`tree` holds the
    /// entries before this one). Returns the path relative to the target.
    pub fn check(&self, tree: &mut TreeCheck) -> Result<Vec<u8>, EntryError> {
        self.check_form()?;
        let (kind, link) = match &self.kind {
            Kind::Directory => (entry_path::Kind::Directory, None),
            Kind::Symlink(_) => (entry_path::Kind::Symlink, None),
            Kind::HardLink(target) => (entry_path::Kind::HardLink, Some(target.as_slice())),
            _ => (entry_path::Kind::Other, None),
        };
        Ok(tree.check(&self.path, kind, link)?)
    }
}

/// Which entry types a tar may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// An image's payload: only the types of [`Kind`].
    Payload,
    /// A tar handed to `image-builder`: also regular files in the other
    /// forms GNU tar writes (contiguous, sparse), which become plain files.
    BuildInput,
}

/// Reads one tar entry's header and PAX records into an [`Entry`]. Only
/// what cannot be represented at all is refused here (a type no root file
/// system holds, a number that is not one, an id beyond 32 bits, an
/// extended attribute name that is not text); [`Entry::check`] does the rest.
pub fn from_tar<R: Read>(entry: &mut tar::Entry<R>, reading: Reading) -> Result<Entry, EntryError> {
    let path = entry.path_bytes().into_owned();
    let refuse = |problem| EntryError::form(&path, problem);
    let header = entry.header();
    // No device fields (a pre-ustar header) is 0; unreadable ones are refused.
    let device = |r: std::io::Result<Option<u32>>, field: &'static str| {
        r.map(|n| n.unwrap_or(0))
            .map_err(|_| refuse(Problem::NotANumber(field)))
    };
    let link = || {
        entry
            .link_name_bytes()
            .map(|l| l.into_owned())
            .unwrap_or_default()
    };
    let kind = match header.entry_type() {
        EntryType::Regular => Kind::File,
        EntryType::Continuous | EntryType::GNUSparse if reading == Reading::BuildInput => {
            Kind::File
        }
        EntryType::Directory => Kind::Directory,
        EntryType::Symlink => Kind::Symlink(link()),
        EntryType::Link => Kind::HardLink(link()),
        EntryType::Char => Kind::CharDevice {
            major: device(header.device_major(), "devmajor")?,
            minor: device(header.device_minor(), "devminor")?,
        },
        EntryType::Block => Kind::BlockDevice {
            major: device(header.device_major(), "devmajor")?,
            minor: device(header.device_minor(), "devminor")?,
        },
        EntryType::Fifo => Kind::Fifo,
        other => return Err(refuse(Problem::Type(other.as_byte() as char))),
    };
    let number = |r: std::io::Result<u64>, field| r.map_err(|_| refuse(Problem::NotANumber(field)));
    let mode = number(header.mode().map(u64::from), "mode")? as u32 & 0o7777;
    let uid = number(header.uid(), "uid")?;
    let gid = number(header.gid(), "gid")?;
    let mtime = number(header.mtime(), "mtime")?;
    let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
        return Err(refuse(Problem::IdTooLarge { uid, gid }));
    };
    let size = entry.size();
    let mut xattrs = Vec::new();
    let pax = entry
        .pax_extensions()
        .map_err(|e| refuse(Problem::Pax(e.to_string())))?;
    for ext in pax.into_iter().flatten() {
        let ext = ext.map_err(|e| refuse(Problem::Pax(e.to_string())))?;
        if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
            let name = xattr_name(name).map_err(refuse)?;
            xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
        }
    }
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

/// The name `image-builder` stores for a checked path: `./` for the root,
/// directories with a trailing slash, everything else as it is.
fn tar_name(entry: &Entry) -> Vec<u8> {
    let mut name = entry.path.clone();
    if entry.kind == Kind::Directory {
        if name.is_empty() {
            name.push(b'.');
        }
        name.push(b'/');
    }
    name
}

/// The entry as [`from_tar`] reads it back from the header [`to_tar`]
/// writes: the path as stored (`./` for the root, directories with a
/// trailing slash), no data on non-files. It is
/// the entry's record in the signed entry index ([`crate::index`]).
pub fn as_stored(entry: &Entry) -> Entry {
    Entry {
        path: tar_name(entry),
        size: if entry.kind == Kind::File {
            entry.size
        } else {
            0
        },
        mode: entry.mode & 0o7777,
        ..entry.clone()
    }
}

/// The header of an entry as `image-builder` writes it, and the PAX records
/// to write before it (long names and extended attributes). Every field is
/// set from the entry and nothing from the machine: ustar, no user or group
/// names, no access times. `entry.path` must be checked ([`Entry::check`]).
pub fn to_tar(entry: &Entry) -> (Header, Vec<(String, Vec<u8>)>) {
    let mut header = Header::new_ustar();
    header.set_mode(entry.mode);
    header.set_uid(entry.uid.into());
    header.set_gid(entry.gid.into());
    header.set_mtime(entry.mtime);
    let mut link: &[u8] = &[];
    let ty = match &entry.kind {
        Kind::File => EntryType::Regular,
        Kind::Directory => EntryType::Directory,
        Kind::Symlink(target) => {
            link = target;
            EntryType::Symlink
        }
        Kind::HardLink(target) => {
            link = target;
            EntryType::Link
        }
        Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } => {
            // Cannot fail on a ustar header; seven octal digits hold every
            // number that [`Entry::check_form`] lets through.
            let _ = header.set_device_major(*major);
            let _ = header.set_device_minor(*minor);
            if matches!(entry.kind, Kind::CharDevice { .. }) {
                EntryType::Char
            } else {
                EntryType::Block
            }
        }
        Kind::Fifo => EntryType::Fifo,
    };
    header.set_entry_type(ty);
    header.set_size(if entry.kind == Kind::File {
        entry.size
    } else {
        0
    });
    let name = tar_name(entry);
    let mut pax = Vec::new();
    let old = header.as_old_mut();
    if name.len() <= old.name.len() {
        old.name[..name.len()].copy_from_slice(&name);
    } else {
        old.name.copy_from_slice(&name[..100]);
        pax.push(("path".to_string(), name));
    }
    if link.len() <= old.linkname.len() {
        old.linkname[..link.len()].copy_from_slice(link);
    } else {
        old.linkname.copy_from_slice(&link[..100]);
        pax.push(("linkpath".to_string(), link.to_vec()));
    }
    for (name, value) in &entry.xattrs {
        pax.push((format!("SCHILY.xattr.{name}"), value.clone()));
    }
    header.set_cksum();
    (header, pax)
}

/// Appends `entry` to `tar` as `image-builder` writes it ([`to_tar`]):
/// its PAX records, its header, then `data` ([`Entry::size`] bytes of it).
pub fn append<W: Write, R: Read>(
    tar: &mut tar::Builder<W>,
    entry: &Entry,
    data: R,
) -> std::io::Result<()> {
    let (header, pax) = to_tar(entry);
    tar.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    tar.append(&header, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: Kind) -> Entry {
        Entry {
            mode: 0o4755,
            uid: 1000,
            gid: u32::MAX,
            mtime: 1_600_000_000,
            ..Entry::new(path, kind)
        }
    }

    /// Writes `entries` with [`to_tar`] and reads them back with [`from_tar`].
    fn round_trip(entries: &[Entry]) -> Vec<Entry> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            append(&mut b, e, &vec![7u8; e.size as usize][..]).unwrap();
        }
        let bytes = b.into_inner().unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        archive
            .entries()
            .unwrap()
            .map(|e| from_tar(&mut e.unwrap(), Reading::Payload).unwrap())
            .collect()
    }

    #[test]
    fn every_kind_round_trips_through_a_tar_header() {
        let long = "d/".to_string() + &"n".repeat(200);
        let mut file = entry("d/file", Kind::File);
        file.size = 3;
        file.xattrs = vec![
            ("security.capability".into(), vec![1, 0, 0, 2]),
            ("user.empty".into(), vec![]),
        ];
        let entries = vec![
            entry("", Kind::Directory),
            entry("d", Kind::Directory),
            file,
            entry(&long, Kind::Symlink("t".repeat(TARGET_MAX).into_bytes())),
            entry("d/hl", Kind::HardLink(b"d/file".to_vec())),
            entry(
                "d/c",
                Kind::CharDevice {
                    major: DEVICE_MAJOR_MAX,
                    minor: DEVICE_MINOR_MAX,
                },
            ),
            entry("d/b", Kind::BlockDevice { major: 8, minor: 1 }),
            entry("d/fifo", Kind::Fifo),
        ];
        let back = round_trip(&entries);
        for (e, got) in entries.iter().zip(&back) {
            assert_eq!(&as_stored(e), got, "as_stored says what from_tar reads");
        }
        let mut tree = TreeCheck::new();
        for (want, mut got) in entries.into_iter().zip(back) {
            got.path = got.check(&mut tree).unwrap();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn limits_are_checked_with_the_path_named() {
        let refused = |e: Entry| e.check_form().unwrap_err().to_string();
        let long_target = entry("l", Kind::Symlink(vec![b'x'; TARGET_MAX + 1]));
        assert_eq!(
            refused(long_target),
            "entry l: link target must be 1 to 4095 bytes without NUL, found 4096 bytes"
        );
        assert!(refused(entry("l", Kind::Symlink(vec![]))).contains("found 0 bytes"));
        assert!(refused(entry("l", Kind::HardLink(b"a\0b".to_vec()))).contains("without NUL"));
        let mut data = entry("d", Kind::Directory);
        data.size = 1;
        assert_eq!(
            refused(data),
            "entry d: a non-file entry with 1 bytes of data"
        );
        let mut name = entry("f", Kind::File);
        name.xattrs = vec![("u".repeat(XATTR_NAME_MAX + 1), vec![])];
        assert!(refused(name.clone()).contains("not 1 to 255 bytes of text"));
        name.xattrs = vec![(String::new(), vec![])];
        assert!(refused(name.clone()).contains("not 1 to 255 bytes of text"));
        name.xattrs = vec![("user.big".into(), vec![0; XATTR_VALUE_MAX + 1])];
        assert!(refused(name.clone()).contains("extended attribute user.big is larger"));
        name.xattrs = vec![
            ("u".repeat(XATTR_NAME_MAX), vec![0; XATTR_VALUE_MAX]),
            ("user.x".into(), vec![]),
        ];
        name.check_form().unwrap();
        let device = |major, minor| entry("c", Kind::BlockDevice { major, minor });
        assert!(refused(device(4096, 0)).contains("at most 4095:1048575"));
        assert!(refused(device(0, 1 << 20)).contains("device 0:1048576"));
        entry("l", Kind::Symlink(vec![b'x'; TARGET_MAX]))
            .check_form()
            .unwrap();
    }

    #[test]
    fn check_runs_the_path_rules_too() {
        let mut tree = TreeCheck::new();
        entry("./", Kind::Directory).check(&mut tree).unwrap();
        assert!(matches!(
            entry("../x", Kind::Fifo).check(&mut tree),
            Err(EntryError::Path(PathError::DotDot { .. }))
        ));
    }

    /// One raw header, as another tool could write it.
    fn raw_tar(ty: u8, uid: u64, pax: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        if !pax.is_empty() {
            b.append_pax_extensions(pax.iter().copied()).unwrap();
        }
        let mut h = Header::new_gnu();
        h.set_path("x").unwrap();
        h.set_entry_type(EntryType::new(ty));
        h.set_size(0);
        h.set_mode(0o644);
        h.set_uid(uid);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
        b.into_inner().unwrap()
    }

    fn read_one(tar: &[u8], reading: Reading) -> Result<Entry, EntryError> {
        let mut archive = tar::Archive::new(tar);
        let mut entries = archive.entries().unwrap();
        from_tar(&mut entries.next().unwrap().unwrap(), reading)
    }

    #[test]
    fn the_tar_mapping_refuses_what_cannot_be_represented() {
        let err = read_one(&raw_tar(b'V', 0, &[]), Reading::Payload).unwrap_err();
        assert!(err
            .to_string()
            .contains("type 'V' is not one an image holds"));
        let err = read_one(&raw_tar(b'0', 1 << 32, &[]), Reading::Payload).unwrap_err();
        assert!(err.to_string().contains("larger than 32 bits"), "{err}");
        let mut latin1 = raw_tar(b'0', 0, &[("SCHILY.xattr.a", b"v")]);
        // Make the name bytes invalid UTF-8 in place ("a" → 0xff).
        let at = latin1
            .windows(14)
            .position(|w| w == b"SCHILY.xattr.a")
            .unwrap();
        latin1[at + 13] = 0xff;
        let err = read_one(&latin1, Reading::Payload).unwrap_err();
        assert!(
            err.to_string().contains("not 1 to 255 bytes of text"),
            "{err}"
        );
    }

    #[test]
    fn a_build_input_may_hold_contiguous_files() {
        let tar = raw_tar(b'7', 0, &[]);
        assert!(read_one(&tar, Reading::Payload).is_err());
        assert_eq!(
            read_one(&tar, Reading::BuildInput).unwrap().kind,
            Kind::File
        );
    }
}
