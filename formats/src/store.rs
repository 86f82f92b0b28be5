//! Writing the records on `cfg`, and `image-builder`'s output, so that a
//! power cut leaves either the old or the new file, never a torn one: temp
//! file, fsync, rename, fsync of the directory. With [`crate::bootflag`],
//! the modules of this crate that do I/O.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Replaces `path` with `data` atomically and durably.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(data)?;
    file.commit()
}

/// A file written in place of `path` as a stream (an image's payload):
/// the data goes to `path.tmp`, and [`AtomicFile::commit`] syncs it, renames
/// it over `path` and syncs the directory. Dropped without a commit (an
/// error on the way), it removes the temp file, so a full or failing disk
/// leaves no half-written file behind.
#[derive(Debug)]
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    path: PathBuf,
}

impl AtomicFile {
    /// Creates (or truncates) the temp file, and the directory if needed.
    pub fn create(path: &Path) -> io::Result<AtomicFile> {
        fs::create_dir_all(parent(path))?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        Ok(AtomicFile {
            file: Some(file),
            tmp,
            path: path.to_path_buf(),
        })
    }

    /// The temp file, to write to.
    pub fn file(&self) -> &File {
        self.file.as_ref().expect("open until committed")
    }

    /// Syncs the data, renames the temp file over the path and syncs the
    /// directory.
    pub fn commit(mut self) -> io::Result<()> {
        // On an error before the rename, dropping `self` removes the temp file.
        self.file().sync_all()?;
        fs::rename(&self.tmp, &self.path)?;
        self.file = None;
        sync_dir(parent(&self.path))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Removes `path` (if it exists) and syncs its directory.
pub fn remove_durably(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    sync_dir(parent(path))
}

/// Renames `from` to `to` and syncs the directory.
pub fn rename_durably(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    sync_dir(parent(to))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_and_remove() {
        let dir = std::env::temp_dir().join(format!("formats-store-{}", std::process::id()));
        let path = dir.join("update/result");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert!(!dir.join("update/result.tmp").exists());
        remove_durably(&path).unwrap();
        remove_durably(&path).unwrap();
        assert!(!path.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stream_appears_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("payload");
        fs::write(&path, b"old").unwrap();
        let mut file = AtomicFile::create(&path).unwrap();
        file.write_all(b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"old");
        drop(file);
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert!(
            !dir.path().join("payload.tmp").exists(),
            "a failed write left its temp file"
        );
        let mut file = AtomicFile::create(&path).unwrap();
        file.write_all(b"new").unwrap();
        file.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert!(!dir.path().join("payload.tmp").exists());
    }
}
