//! Reads a tar (plain, gzip or zstd, as build systems and `docker export`
//! write them) into entries. File contents are copied into one spool file,
//! because the image's order is not the input's.

use crate::error::{BuildError, IoContext};
use crate::tree::{self, Data, Entry, EntryKind};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, Write};
use std::path::Path;
use tar::EntryType;

/// The entries of the tar at `path`, and the spool file holding their data.
pub fn read(path: &Path, allow_unsafe: bool) -> Result<(Vec<Entry>, File), BuildError> {
    let input = open_decompressed(path)?;
    let mut spool = tempfile::tempfile().ctx(Path::new("$TMPDIR"), "cannot create a spool file")?;
    let mut archive = tar::Archive::new(input);
    let mut entries = Vec::new();
    let read_err = |e| BuildError::Io {
        path: path.to_path_buf(),
        what: "cannot read the tar",
        source: e,
    };
    for item in archive.entries().map_err(read_err)? {
        let mut item = item.map_err(read_err)?;
        let raw_path = item.path_bytes().into_owned();
        let shown = || format!("{}: {}", path.display(), String::from_utf8_lossy(&raw_path));
        let unrepresentable = |reason: &str| BuildError::Unrepresentable {
            path: shown(),
            reason: reason.to_string(),
        };
        let header = item.header().clone();
        let ty = header.entry_type();
        if ty == EntryType::XGlobalHeader {
            // `git archive` writes one with a comment; anything else would
            // change how later entries are read, and is refused.
            let exts = item
                .pax_extensions()
                .map_err(read_err)?
                .into_iter()
                .flatten();
            for ext in exts {
                let ext = ext.map_err(read_err)?;
                if ext.key_bytes() != b"comment" {
                    return Err(unrepresentable("a PAX global header other than a comment"));
                }
            }
            continue;
        }
        let mut xattrs = Vec::new();
        if let Some(exts) = item.pax_extensions().map_err(read_err)? {
            for ext in exts {
                let ext = ext.map_err(read_err)?;
                let key = ext
                    .key()
                    .map_err(|_| unrepresentable("a PAX key is not UTF-8"))?;
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                } else if key.starts_with("LIBARCHIVE.xattr.") {
                    return Err(unrepresentable(
                        "libarchive-style xattrs (write the tar with GNU tar --xattrs)",
                    ));
                }
            }
        }
        xattrs.sort();
        let link = || {
            item.link_name_bytes()
                .map(|l| l.into_owned())
                .ok_or_else(|| unrepresentable("a link without a target"))
        };
        let device = |e: io::Result<Option<u32>>| e.ok().flatten().unwrap_or(0);
        let kind = match ty {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let offset = spool.stream_position().ctx(path, "cannot spool")?;
                let size = io::copy(&mut item, &mut spool).map_err(read_err)?;
                EntryKind::File {
                    size,
                    data: Data::Spool { offset },
                }
            }
            EntryType::Directory => EntryKind::Directory,
            EntryType::Symlink => EntryKind::Symlink { target: link()? },
            EntryType::Link => EntryKind::HardLink { target: link()? },
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
                return Err(unrepresentable(&format!(
                    "entry type {:?} cannot be part of a root file system",
                    other.as_byte() as char
                )))
            }
        };
        let bad_field = |_| unrepresentable("a header field is not a number");
        entries.push(Entry {
            path: raw_path.clone(),
            kind,
            mode: header.mode().map_err(bad_field)? & 0o7777,
            uid: header.uid().map_err(bad_field)?,
            gid: header.gid().map_err(bad_field)?,
            mtime: header.mtime().map_err(bad_field)?,
            xattrs,
        });
    }
    spool.flush().ctx(path, "cannot spool")?;
    Ok((tree::finish(entries, allow_unsafe)?, spool))
}

/// Opens `path`, decompressing gzip or zstd by their magic numbers.
fn open_decompressed(path: &Path) -> Result<Box<dyn Read>, BuildError> {
    let mut file = File::open(path).ctx(path, "cannot open the input tar")?;
    let mut magic = [0u8; 4];
    let n = file
        .read(&mut magic)
        .ctx(path, "cannot read the input tar")?;
    file.rewind().ctx(path, "cannot read the input tar")?;
    let file = BufReader::with_capacity(1 << 20, file);
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(file)),
        [0x28, 0xb5, 0x2f, 0xfd] => {
            Box::new(zstd::Decoder::with_buffer(file).ctx(path, "cannot start zstd")?)
        }
        _ => Box::new(file),
    })
}
