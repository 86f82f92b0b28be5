//! Reads a tar into entries: from a file or from standard input (`-`, as in
//! `docker export c | image-builder image --from-tar - …`), plain or
//! compressed with gzip, xz, bzip2 or zstd, told apart by their magic bytes,
//! never by the file name. The input is read once, front to back, without
//! seeking. File contents are copied into one spool file, because the
//! image's order is not the input's.

use crate::error::{BuildError, IoContext};
use crate::tree::{self, Data, Entry};
use formats::entry::{self as model, Kind, Reading};
use std::fs::File;
use std::io::{self, BufReader, IsTerminal, Read, Seek, Write};
use std::path::{Path, PathBuf};
use tar::EntryType;

/// The name that reads the tar from standard input.
pub const STDIN: &str = "-";

/// The entries of the tar at `path` (or standard input for `-`), and the
/// spool file holding their data.
pub fn read(path: &Path, allow_unsafe: bool) -> Result<(Vec<Entry>, File), BuildError> {
    let input = open(path)?;
    // Errors name the input as people read it.
    let path = &shown(path);
    let mut spool = tempfile::tempfile().ctx(Path::new("$TMPDIR"), "cannot create a spool file")?;
    let mut archive = tar::Archive::new(input);
    let mut entries = Vec::new();
    let read_err = |e| BuildError::Io {
        path: path.to_path_buf(),
        what: "cannot read the tar",
        err: e,
    };
    for item in archive.entries().map_err(read_err)? {
        let mut item = item.map_err(read_err)?;
        let raw_path = item.path_bytes().into_owned();
        let unrepresentable = |reason: &str| BuildError::Unrepresentable {
            path: format!("{}: {}", path.display(), String::from_utf8_lossy(&raw_path)),
            reason: reason.to_string(),
        };
        if item.header().entry_type() == EntryType::XGlobalHeader {
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
        if let Some(exts) = item.pax_extensions().map_err(read_err)? {
            for ext in exts {
                if ext
                    .map_err(read_err)?
                    .key_bytes()
                    .starts_with(b"LIBARCHIVE.xattr.")
                {
                    return Err(unrepresentable(
                        "libarchive-style xattrs (write the tar with GNU tar --xattrs)",
                    ));
                }
            }
        }
        let mut meta =
            model::from_tar(&mut item, Reading::BuildInput).map_err(|e| BuildError::Entry {
                input: path.to_path_buf(),
                err: e,
            })?;
        meta.xattrs.sort();
        let mut data = None;
        if meta.kind == Kind::File {
            let offset = spool.stream_position().ctx(path, "cannot spool")?;
            meta.size = io::copy(&mut item, &mut spool).map_err(read_err)?;
            data = Some(Data::Spool { offset });
        }
        entries.push(Entry { meta, data });
    }
    spool.flush().ctx(path, "cannot spool")?;
    Ok((tree::finish(entries, path, allow_unsafe)?, spool))
}

/// The compressions an input tar may have, by their magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Xz,
    Bzip2,
    Zstd,
}

impl Compression {
    fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Bzip2 => "bzip2",
            Compression::Zstd => "zstd",
        }
    }
}

const SUPPORTED: &str = "a tar, plain or compressed with gzip, xz, bzip2 or zstd";

/// Magic numbers of compressions that are not supported, to name them.
const UNSUPPORTED: [(&[u8], &str); 5] = [
    (&[0x04, 0x22, 0x4d, 0x18], "lz4"),
    (b"LZIP", "lzip"),
    (&[0x1f, 0x9d], "compress (.Z)"),
    (&[0x5d, 0x00, 0x00], "lzma (.lzma)"),
    (&[0x89, b'L', b'Z', b'O'], "lzop"),
];

/// Which compression `head` (the first bytes of the input) starts with.
fn sniff(head: &[u8]) -> Result<Compression, String> {
    Ok(match head {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Compression::Xz,
        [b'B', b'Z', b'h', b'1'..=b'9', ..] => Compression::Bzip2,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        _ => {
            if let Some((_, name)) = UNSUPPORTED.iter().find(|(m, _)| head.starts_with(m)) {
                return Err(format!("compressed with {name}: expected {SUPPORTED}"));
            }
            if !is_tar(head) {
                return Err(format!("not {SUPPORTED}"));
            }
            Compression::None
        }
    })
}

/// Whether `head` starts like a tar: a ustar or GNU header, or the zero
/// block of an empty archive.
fn is_tar(head: &[u8]) -> bool {
    head.len() >= 512 && (&head[257..262] == b"ustar" || head[..512].iter().all(|&b| b == 0))
}

/// A reader with its first bytes read already and put back in front.
type Peeked<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

/// Reads up to `n` bytes from the front of `input` (fewer only at its end)
/// and gives them back with the reader that continues after them, so that
/// a pipe is read once.
fn peek<R: Read>(mut input: R, n: usize) -> io::Result<(Vec<u8>, Peeked<R>)> {
    let mut head = vec![0; n];
    let mut filled = 0;
    while filled < n {
        match input.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(filled);
    Ok((head.clone(), io::Cursor::new(head).chain(input)))
}

/// Opens the input tar (standard input for `-`) and decompresses it,
/// checking that what comes out starts like a tar.
fn open(path: &Path) -> Result<Box<dyn Read>, BuildError> {
    let not_a_tar = |reason: String| BuildError::Unrepresentable {
        path: shown(path).display().to_string(),
        reason,
    };
    let raw: Box<dyn Read> = if path.as_os_str() == STDIN {
        let stdin = io::stdin();
        if stdin.is_terminal() {
            return Err(not_a_tar(
                "is a terminal: pipe the tar in (`docker export c | image-builder image --from-tar - …`)".into(),
            ));
        }
        Box::new(stdin.lock())
    } else {
        Box::new(File::open(path).ctx(path, "cannot open the input tar")?)
    };
    let path = &shown(path);
    let (head, raw) =
        peek(BufReader::with_capacity(1 << 20, raw), 512).ctx(path, "cannot read the input tar")?;
    let compression = sniff(&head).map_err(not_a_tar)?;
    let decoded: Box<dyn Read> = match compression {
        Compression::None => return Ok(Box::new(raw)),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Compression::Xz => Box::new(lzma_rust2::XzReader::new(raw, true)),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(raw)),
        Compression::Zstd => {
            Box::new(zstd::Decoder::with_buffer(raw).ctx(path, "cannot start zstd")?)
        }
    };
    let (head, decoded) = peek(decoded, 512).map_err(|e| {
        not_a_tar(format!(
            "cannot decompress {}: {e} (expected {SUPPORTED})",
            compression.name()
        ))
    })?;
    if !is_tar(&head) {
        return Err(not_a_tar(format!(
            "compressed with {}, but what it holds is not a tar (expected {SUPPORTED})",
            compression.name()
        )));
    }
    Ok(Box::new(decoded))
}

/// The input as errors name it: `standard input` for `-`.
fn shown(path: &Path) -> PathBuf {
    if path.as_os_str() == STDIN {
        "standard input".into()
    } else {
        path.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressions_are_told_by_their_magic_bytes() {
        let mut tar = vec![0u8; 512];
        tar[257..263].copy_from_slice(b"ustar\0");
        assert_eq!(sniff(&tar), Ok(Compression::None));
        assert_eq!(sniff(&[0u8; 1024]), Ok(Compression::None));
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Ok(Compression::Gzip));
        assert_eq!(sniff(b"\xfd7zXZ\0\0\x04"), Ok(Compression::Xz));
        assert_eq!(sniff(b"BZh91AY&SY"), Ok(Compression::Bzip2));
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Ok(Compression::Zstd));
        let lz4 = sniff(&[0x04, 0x22, 0x4d, 0x18, 0x64]).unwrap_err();
        assert_eq!(
            lz4,
            "compressed with lz4: expected a tar, plain or compressed with gzip, xz, bzip2 or zstd"
        );
        let junk = sniff(b"\x00\x01\xff garbage").unwrap_err();
        assert_eq!(
            junk,
            "not a tar, plain or compressed with gzip, xz, bzip2 or zstd"
        );
    }

    #[test]
    fn peeking_gives_every_byte_back_once() {
        let data: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
        let (head, mut rest) = peek(&data[..], 512).unwrap();
        assert_eq!(head, &data[..512]);
        let mut all = Vec::new();
        rest.read_to_end(&mut all).unwrap();
        assert_eq!(all, data);
        let (head, _) = peek(&data[..10], 512).unwrap();
        assert_eq!(head.len(), 10);
    }
}
