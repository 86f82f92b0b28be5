//! The entries of a root file system, as an image holds them: one list in
//! the image's fixed order, with all the metadata a root file system needs.

use formats::entry_path::{self, Kind, TreeCheck};
use std::cmp::Ordering;
use std::path::PathBuf;

use crate::BuildError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative path without `./`, empty for the root directory (raw bytes
    /// as read when unsafe paths are allowed for test images).
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// Permission bits with setuid, setgid and sticky (07777).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch.
    pub mtime: u64,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File {
        size: u64,
        data: Data,
    },
    Directory,
    Symlink {
        target: Vec<u8>,
    },
    /// A hard link to an earlier entry of the list.
    HardLink {
        target: Vec<u8>,
    },
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

/// Where a regular file's bytes are read from when the payload is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// A file of the input directory.
    Path(PathBuf),
    /// A range of the spool file that a tar input was copied into.
    Spool { offset: u64 },
}

impl EntryKind {
    fn check_kind(&self) -> Kind {
        match self {
            EntryKind::Directory => Kind::Directory,
            EntryKind::Symlink { .. } => Kind::Symlink,
            EntryKind::HardLink { .. } => Kind::HardLink,
            _ => Kind::Other,
        }
    }
}

/// The image's order: depth first, the names of a directory sorted by
/// their bytes, a directory before what it holds. Independent of the order
/// in which a file system or an input tar listed them.
pub fn image_order(a: &[u8], b: &[u8]) -> Ordering {
    let components = |p: &[u8]| {
        p.split(|&c| c == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>()
    };
    components(a).cmp(&components(b))
}

/// Sorts the entries into the image's order and checks that each stays
/// inside the target (unless `allow_unsafe`, for the recovery's tests).
pub fn finish(mut entries: Vec<Entry>, allow_unsafe: bool) -> Result<Vec<Entry>, BuildError> {
    entries.sort_by(|a, b| image_order(&a.path, &b.path));
    let mut check = TreeCheck::new();
    for e in &mut entries {
        let link = match &e.kind {
            EntryKind::HardLink { target } => Some(target.as_slice()),
            _ => None,
        };
        match check.check(&e.path, e.kind.check_kind(), link) {
            Ok(path) => {
                e.path = path;
                if let EntryKind::HardLink { target } = &mut e.kind {
                    *target = entry_path::normalize(target).expect("checked");
                }
            }
            Err(_) if allow_unsafe => {}
            Err(err) => return Err(BuildError::UnsafePath(err)),
        }
    }
    Ok(entries)
}

/// Totals the manifest records.
pub fn unpacked_size(entries: &[Entry]) -> u64 {
    entries
        .iter()
        .map(|e| match e.kind {
            EntryKind::File { size, .. } => size,
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_depth_first_by_bytes() {
        let mut paths: Vec<&[u8]> = vec![b"a.b", b"a/z", b"", b"a", b"B", b"a/b"];
        paths.sort_by(|a, b| image_order(a, b));
        assert_eq!(paths, vec![&b""[..], b"B", b"a", b"a/b", b"a/z", b"a.b"]);
    }

    #[test]
    fn refuses_unsafe_entries_unless_asked() {
        let entry = |path: &[u8], kind| Entry {
            path: path.to_vec(),
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: vec![],
        };
        let tree = vec![
            entry(b"", EntryKind::Directory),
            entry(b"../evil", EntryKind::Fifo),
        ];
        assert!(matches!(
            finish(tree.clone(), false),
            Err(BuildError::UnsafePath(_))
        ));
        assert_eq!(finish(tree, true).unwrap().len(), 2);
    }
}
