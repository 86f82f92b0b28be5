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
    reroot_hard_links(&mut entries);
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

/// Makes the first entry (in image order) of each group of hard links the
/// one that holds the data, and the others links to it: an input tar lists
/// the group in its own order, and a link must come after its target.
fn reroot_hard_links(entries: &mut [Entry]) {
    use std::collections::HashMap;
    let norm = |p: &[u8]| entry_path::normalize(p).ok();
    let index: HashMap<Vec<u8>, usize> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| Some((norm(&e.path)?, i)))
        .collect();
    // Each link's group: the index of the entry that holds the data.
    let mut holder_of: HashMap<usize, usize> = HashMap::new();
    for i in 0..entries.len() {
        let mut at = i;
        let mut hops = 0;
        while let EntryKind::HardLink { target } = &entries[at].kind {
            match norm(target).and_then(|t| index.get(&t)) {
                Some(&next) if hops < entries.len() => at = next,
                _ => break,
            }
            hops += 1;
        }
        if at != i && !matches!(entries[at].kind, EntryKind::HardLink { .. }) {
            holder_of.insert(i, at);
        }
    }
    let mut first_of: HashMap<usize, usize> = HashMap::new();
    for (&link, &holder) in &holder_of {
        let first = first_of.entry(holder).or_insert(holder);
        *first = (*first).min(link);
    }
    for (&holder, &first) in &first_of {
        if first != holder {
            let data = entries[holder].kind.clone();
            entries[first].kind = data;
        }
        let target = norm(&entries[first].path).expect("indexed paths are normal");
        for (&link, &h) in &holder_of {
            if h == holder && link != first {
                entries[link].kind = EntryKind::HardLink {
                    target: target.clone(),
                };
            }
        }
        if first != holder {
            entries[holder].kind = EntryKind::HardLink { target };
        }
    }
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

    fn entry(path: &[u8], kind: EntryKind) -> Entry {
        Entry {
            path: path.to_vec(),
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: vec![],
        }
    }

    #[test]
    fn the_first_of_a_hard_link_group_holds_the_data() {
        let data = EntryKind::File {
            size: 1,
            data: Data::Spool { offset: 0 },
        };
        let link = |t: &[u8]| EntryKind::HardLink { target: t.to_vec() };
        // As GNU tar may list them: the data under z, links before it.
        let tree = vec![
            entry(b"./", EntryKind::Directory),
            entry(b"./z", data.clone()),
            entry(b"./b", link(b"./z")),
            entry(b"./a", link(b"./b")),
        ];
        let out = finish(tree, false).unwrap();
        let kinds: Vec<_> = out
            .iter()
            .map(|e| (e.path.clone(), e.kind.clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (b"".to_vec(), EntryKind::Directory),
                (b"a".to_vec(), data),
                (b"b".to_vec(), link(b"a")),
                (b"z".to_vec(), link(b"a")),
            ]
        );
    }

    #[test]
    fn refuses_unsafe_entries_unless_asked() {
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
