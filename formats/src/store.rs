//! Writing the records on `cfg`, and `image-builder`'s output, so that a
//! power cut leaves either the old or the new file, never a torn one: temp
//! file, fsync, rename, fsync of the directory. With [`crate::bootflag`],
//! the modules of this crate that do I/O.
//!
//! Each writer has a temp file of its own (`NAME.tmp.PID.N`, created new,
//! never opened twice), so that two processes writing the same record at
//! once (the agent's report unit and its daemon, two one-shots) cannot
//! write into each other's temp file: the last rename wins, whole.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Replaces `path` with `data` atomically and durably.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(data)?;
    file.commit()
}

/// A file written in place of `path` as a stream (an image's payload):
/// the data goes to a temp file of its own beside it ([`temp_name`]), and [`AtomicFile::commit`] syncs it, renames
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
    /// Creates a new temp file of this writer's own, and the directory if
    /// needed.
    pub fn create(path: &Path) -> io::Result<AtomicFile> {
        fs::create_dir_all(parent(path))?;
        loop {
            let tmp = temp_name(path);
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&tmp)
            {
                Ok(file) => {
                    return Ok(AtomicFile {
                        file: Some(file),
                        tmp,
                        path: path.to_path_buf(),
                    })
                }
                // Left by an earlier process with the same pid (a power
                // cut): take the next number.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The temp file, to write to and read back.
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

/// A temp name beside `path` that no other writer uses: `NAME.tmp.PID.N`,
/// N counting this process's temp files.
pub fn temp_name(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}.{n}", std::process::id()));
    PathBuf::from(tmp)
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
        assert_eq!(names(&dir.join("update")), ["result"]);
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
        assert_eq!(
            names(dir.path()),
            ["payload"],
            "a failed write left its temp file"
        );
        let mut file = AtomicFile::create(&path).unwrap();
        file.write_all(b"new").unwrap();
        file.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(names(dir.path()), ["payload"]);
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// Two writers of one record at once (the agent's report unit and its
    /// daemon): each has a temp file of its own, so the record is always
    /// one writer's whole bytes, never a mix or a half.
    #[test]
    fn two_writers_at_once_never_mix_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record");
        let a = vec![b'a'; 256 * 1024];
        let b = vec![b'b'; 128 * 1024];
        // Both open before either writes: with one shared temp name the
        // second open would truncate the first writer's file.
        let mut first = AtomicFile::create(&path).unwrap();
        let mut second = AtomicFile::create(&path).unwrap();
        first.write_all(&a).unwrap();
        second.write_all(&b).unwrap();
        second.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b);
        first.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), a);
        // And in threads, many times over.
        std::thread::scope(|s| {
            for data in [&a, &b] {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..50 {
                        write_atomic(path, data).unwrap();
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..200 {
                    let seen = fs::read(&path).unwrap();
                    assert!(
                        seen == a || seen == b,
                        "a mixed record: {} bytes",
                        seen.len()
                    );
                }
            });
        });
        assert_eq!(names(dir.path()), ["record"]);
    }
}
