//! Reads a directory tree into entries, with ownership, modes, times,
//! hard links and extended attributes. Anything an image cannot hold (a
//! socket, an unreadable file) is an error, never a silent skip.

use crate::error::{BuildError, IoContext};
use crate::tree::{self, Data, Entry};
use formats::entry::{self as model, EntryError, Kind, Problem};
use nix::sys::stat::{major, minor};
use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// Reads the tree below `root` (the root directory itself is the first entry).
pub fn read(root: &Path, allow_unsafe: bool) -> Result<Vec<Entry>, BuildError> {
    let mut walker = Walker {
        links: HashMap::new(),
        entries: Vec::new(),
    };
    walker.visit(root, Vec::new())?;
    tree::finish(walker.entries, root, allow_unsafe)
}

struct Walker {
    /// (device, inode) of files with more than one link → their first path.
    links: HashMap<(u64, u64), Vec<u8>>,
    entries: Vec<Entry>,
}

impl Walker {
    fn visit(&mut self, path: &Path, rel: Vec<u8>) -> Result<(), BuildError> {
        let meta = fs::symlink_metadata(path).ctx(path, "cannot stat")?;
        let ft = meta.file_type();
        let shown = || path.display().to_string();
        let dev = meta.rdev();
        // Device numbers beyond 32 bits are refused by the entry check.
        let device = |n: u64| n.try_into().unwrap_or(u32::MAX);
        let mut data = None;
        let kind = if ft.is_dir() {
            Kind::Directory
        } else if let Some(first) = (meta.nlink() > 1)
            .then(|| self.links.get(&(meta.dev(), meta.ino())))
            .flatten()
        {
            Kind::HardLink(first.clone())
        } else if ft.is_file() {
            // Opened now so that an unreadable file is refused before any
            // output is written.
            fs::File::open(path).ctx(path, "cannot read")?;
            data = Some(Data::Path(path.to_path_buf()));
            Kind::File
        } else if ft.is_symlink() {
            let target = fs::read_link(path).ctx(path, "cannot read the symlink")?;
            Kind::Symlink(target.as_os_str().as_bytes().to_vec())
        } else if ft.is_char_device() {
            Kind::CharDevice {
                major: device(major(dev)),
                minor: device(minor(dev)),
            }
        } else if ft.is_block_device() {
            Kind::BlockDevice {
                major: device(major(dev)),
                minor: device(minor(dev)),
            }
        } else if ft.is_fifo() {
            Kind::Fifo
        } else {
            return Err(BuildError::Unrepresentable {
                path: shown(),
                reason: "is a socket, which an image cannot hold (remove it from the tree)".into(),
            });
        };
        if meta.nlink() > 1 && !ft.is_dir() && !matches!(kind, Kind::HardLink(_)) {
            self.links.insert((meta.dev(), meta.ino()), rel.clone());
        }
        self.entries.push(Entry {
            meta: model::Entry {
                path: rel.clone(),
                size: if kind == Kind::File { meta.len() } else { 0 },
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                mtime: meta.mtime().max(0) as u64,
                xattrs: read_xattrs(path, &rel)?,
            },
            data,
        });
        if ft.is_dir() {
            let mut names: Vec<_> = fs::read_dir(path)
                .ctx(path, "cannot list")?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()
                .ctx(path, "cannot list")?;
            names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            for name in names {
                let mut child = rel.clone();
                if !child.is_empty() {
                    child.push(b'/');
                }
                child.extend_from_slice(name.as_bytes());
                self.visit(&path.join(&name), child)?;
            }
        }
        Ok(())
    }
}

fn read_xattrs(path: &Path, rel: &[u8]) -> Result<Vec<(String, Vec<u8>)>, BuildError> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        // A file system without xattr support has none to keep.
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx(path, "cannot list extended attributes"),
    };
    let mut out = Vec::new();
    for name in names {
        let value = xattr::get(path, &name)
            .ctx(path, "cannot read an extended attribute")?
            .unwrap_or_default();
        let name = name.into_string().map_err(|_| BuildError::Entry {
            input: path.to_path_buf(),
            err: EntryError::form(rel, Problem::XattrName),
        })?;
        out.push((name, value));
    }
    out.sort();
    Ok(out)
}
