//! The entries of a root file system, as an image holds them: one list in
//! the image's fixed order, each entry in the shared model of
//! [`formats::entry`] (which the recovery reads too) with where its data
//! comes from.

use formats::entry::{self, EntryError, Kind};
use formats::entry_path::{self, TreeCheck};
use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use crate::BuildError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path (relative, without `./`, empty for the root, once
    /// [`finish`]ed; raw bytes as read when unsafe paths are allowed for
    /// test images), type and metadata.
    pub meta: entry::Entry,
    /// Where a regular file's bytes come from; `None` for other kinds.
    pub data: Option<Data>,
}

/// Where a regular file's bytes are read from when the payload is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// A file of the input directory.
    Path(PathBuf),
    /// A range of the spool file that a tar input was copied into.
    Spool { offset: u64 },
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

/// Sorts the entries into the image's order and runs on each the checks
/// that the recovery runs ([`entry::Entry::check`]), so that an image the
/// recovery would refuse is never made (unless `allow_unsafe`, for the
/// recovery's tests). `input` names the tree or tar in errors.
pub fn finish(
    mut entries: Vec<Entry>,
    input: &Path,
    allow_unsafe: bool,
) -> Result<Vec<Entry>, BuildError> {
    entries.sort_by(|a, b| image_order(&a.meta.path, &b.meta.path));
    reroot_hard_links(&mut entries);
    let mut tree = TreeCheck::new();
    for e in &mut entries {
        match e.meta.check(&mut tree) {
            Ok(path) => {
                e.meta.path = path;
                if let Kind::HardLink(target) = &mut e.meta.kind {
                    *target = entry_path::normalize(target).expect("checked");
                }
            }
            Err(_) if allow_unsafe => {}
            Err(EntryError::Path(err)) => return Err(BuildError::UnsafePath(err)),
            Err(err @ EntryError::Form { .. }) => {
                return Err(BuildError::Entry {
                    input: input.to_path_buf(),
                    err,
                })
            }
        }
    }
    Ok(entries)
}

/// Sets every mtime later than `limit` to `limit`, as `tar --clamp-mtime`
/// does: with `SOURCE_DATE_EPOCH`, touching a file of the tree after the
/// epoch does not change the image. Earlier mtimes stay as they are.
pub fn clamp_mtimes(entries: &mut [Entry], limit: u64) {
    for e in entries {
        e.meta.mtime = e.meta.mtime.min(limit);
    }
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
        .filter_map(|(i, e)| Some((norm(&e.meta.path)?, i)))
        .collect();
    // Each link's group: the index of the entry that holds the data.
    let mut holder_of: HashMap<usize, usize> = HashMap::new();
    for i in 0..entries.len() {
        let mut at = i;
        let mut hops = 0;
        while let Kind::HardLink(target) = &entries[at].meta.kind {
            match norm(target).and_then(|t| index.get(&t)) {
                Some(&next) if hops < entries.len() => at = next,
                _ => break,
            }
            hops += 1;
        }
        if at != i && !matches!(entries[at].meta.kind, Kind::HardLink(_)) {
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
            let (kind, size, data) = {
                let h = &entries[holder];
                (h.meta.kind.clone(), h.meta.size, h.data.clone())
            };
            let f = &mut entries[first];
            (f.meta.kind, f.meta.size, f.data) = (kind, size, data);
        }
        let target = norm(&entries[first].meta.path).expect("indexed paths are normal");
        for (&link, &h) in &holder_of {
            if h == holder && link != first {
                entries[link].make_link(target.clone());
            }
        }
        if first != holder {
            entries[holder].make_link(target);
        }
    }
}

impl Entry {
    fn make_link(&mut self, target: Vec<u8>) {
        self.meta.kind = Kind::HardLink(target);
        self.meta.size = 0;
        self.data = None;
    }
}

/// Totals the manifest records.
pub fn unpacked_size(entries: &[Entry]) -> u64 {
    entries
        .iter()
        .filter(|e| e.meta.kind == Kind::File)
        .map(|e| e.meta.size)
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

    fn entry(path: &[u8], kind: Kind) -> Entry {
        let data = (kind == Kind::File).then_some(Data::Spool { offset: 0 });
        Entry {
            meta: entry::Entry {
                path: path.to_vec(),
                size: if kind == Kind::File { 1 } else { 0 },
                kind,
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: 0,
                xattrs: vec![],
            },
            data,
        }
    }

    #[test]
    fn the_first_of_a_hard_link_group_holds_the_data() {
        let link = |t: &[u8]| Kind::HardLink(t.to_vec());
        // As GNU tar may list them: the data under z, links before it.
        let tree = vec![
            entry(b"./", Kind::Directory),
            entry(b"./z", Kind::File),
            entry(b"./b", link(b"./z")),
            entry(b"./a", link(b"./b")),
        ];
        let out = finish(tree, Path::new("in"), false).unwrap();
        let got: Vec<_> = out
            .iter()
            .map(|e| (e.meta.path.clone(), e.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (b"".to_vec(), entry(b"", Kind::Directory)),
                (b"a".to_vec(), entry(b"a", Kind::File)),
                (b"b".to_vec(), entry(b"b", link(b"a"))),
                (b"z".to_vec(), entry(b"z", link(b"a"))),
            ]
        );
    }

    #[test]
    fn refuses_unsafe_entries_unless_asked() {
        let tree = vec![entry(b"", Kind::Directory), entry(b"../evil", Kind::Fifo)];
        assert!(matches!(
            finish(tree.clone(), Path::new("in"), false),
            Err(BuildError::UnsafePath(_))
        ));
        assert_eq!(finish(tree, Path::new("in"), true).unwrap().len(), 2);
    }

    #[test]
    fn refuses_what_the_recovery_refuses_with_the_input_and_entry_named() {
        let tree = vec![
            entry(b"", Kind::Directory),
            entry(b"long", Kind::Symlink(vec![b'x'; 4096])),
        ];
        let err = finish(tree, Path::new("/in/tree"), false).unwrap_err();
        assert!(matches!(err, BuildError::Entry { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "/in/tree: entry long: link target must be 1 to 4095 bytes without NUL, \
             found 4096 bytes"
        );
    }

    #[test]
    fn clamps_only_later_mtimes() {
        let mut tree = vec![entry(b"old", Kind::Fifo), entry(b"new", Kind::Fifo)];
        tree[0].meta.mtime = 100;
        tree[1].meta.mtime = 300;
        clamp_mtimes(&mut tree, 200);
        assert_eq!((tree[0].meta.mtime, tree[1].meta.mtime), (100, 200));
    }
}
