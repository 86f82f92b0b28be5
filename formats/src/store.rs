//! Writing the records on `cfg`, and `image-builder`'s output, so that a
//! power cut leaves either the old or the new file, never a torn one: temp
//! file, fsync, rename, fsync of the directory. With [`crate::bootflag`],
//! the modules of this crate that do I/O.
//!
//! Each writer has a temp file of its own (`NAME.tmp.PID.N`, created new,
//! never opened twice), so that two processes writing the same record at
//! once (the agent's report unit and its daemon, two one-shots) cannot
//! write into each other's temp file: the last rename wins, whole.
//!
//! A power cut or a SIGKILL leaves a temp file behind (a multi-GB payload
//! in `image-builder`'s output, `update/*.tmp.1.N` on cfg from the
//! recovery, which is always PID 1). [`AtomicFile::create`] removes the
//! stale ones beside its own ([`stale_temp`]).

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The temp files this process has open (created, not yet committed or
/// dropped): the only ones with its PID that are not stale.
static OPEN: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

fn open_temps<T>(f: impl FnOnce(&mut HashSet<PathBuf>) -> T) -> T {
    let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    f(open.get_or_insert_with(HashSet::new))
}

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
    /// needed; first removes the stale temp files of `path` that earlier
    /// writers left ([`stale_temp`]).
    pub fn create(path: &Path) -> io::Result<AtomicFile> {
        fs::create_dir_all(parent(path))?;
        remove_stale_temps(path);
        loop {
            let tmp = temp_name(path);
            // In the set before it exists: another thread's cleanup never
            // sees it unclaimed.
            open_temps(|o| o.insert(tmp.clone()));
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&tmp);
            if opened.is_err() {
                open_temps(|o| o.remove(&tmp));
            }
            match opened {
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
        open_temps(|o| o.remove(&self.tmp));
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
            open_temps(|o| o.remove(&self.tmp));
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

/// `(FILE, PID)` when `name` is a temp name ([`temp_name`]):
/// `FILE.tmp.PID.N`.
pub fn temp_of(name: &str) -> Option<(&str, u32)> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (rest, n) = name.rsplit_once('.')?;
    let (rest, pid) = rest.rsplit_once('.')?;
    let file = rest.strip_suffix(".tmp")?;
    if file.is_empty() || !digits(pid) || !digits(n) {
        return None;
    }
    Some((file, pid.parse().ok()?))
}

/// Whether a temp file of `pid` is stale: no live writer can be writing
/// it. The rule, safe while other writers run:
/// - our own PID: stale unless this process has it open (the set of
///   open temps is exact, so a second thread's open temp is kept, and
///   one left by an earlier process that had our PID, e.g. the
///   recovery, always PID 1, before a reboot, goes);
/// - another PID that is alive (`kill(pid, 0)` succeeds, or says EPERM):
///   kept, it may be writing (or it is an unrelated process that got the
///   PID after a reboot: then the file goes once that one is gone);
/// - a PID that is not alive (ESRCH): stale; no process can write it,
///   since a new process with that PID starts its counter with names of
///   its own and never opens an existing temp (`create_new`).
///
/// Writers of one directory are assumed to share a PID namespace.
pub fn stale_temp(tmp: &Path, pid: u32) -> bool {
    if pid == std::process::id() {
        return !open_temps(|o| o.contains(tmp));
    }
    let Ok(pid) = i32::try_from(pid) else {
        return true;
    };
    if pid <= 0 {
        return true;
    }
    matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// Removes the stale temp files of `path` ([`stale_temp`]). Best effort:
/// what cannot be listed or removed stays.
fn remove_stale_temps(path: &Path) {
    let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let Ok(entries) = fs::read_dir(parent(path)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((_, pid)) = name
            .to_str()
            .and_then(temp_of)
            .filter(|(of, _)| *of == file)
        else {
            continue;
        };
        let tmp = parent(path).join(&name);
        if stale_temp(&tmp, pid) && fs::remove_file(&tmp).is_ok() {
            log_removed(&tmp);
        }
    }
}

fn log_removed(tmp: &Path) {
    log::info!(
        "{}: removed (a temp file an earlier writer left)",
        tmp.display()
    );
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

    /// Temp files left by a power cut or a SIGKILL go at the next write
    /// of the same file: those of a process that is gone, and those with
    /// our own PID that we do not have open (the recovery is PID 1 at
    /// every boot). A live writer's stays.
    #[test]
    fn stale_temp_files_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record");
        let gone = {
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let pid = child.id();
            child.wait().unwrap();
            pid
        };
        let own = std::process::id();
        let live = 1; // init, always there
        let open = AtomicFile::create(&path).unwrap();
        let left = [
            format!("record.tmp.{gone}.0"),
            format!("record.tmp.{own}.999999"),
        ];
        let kept = [
            format!("record.tmp.{live}.3"),
            "record.tmp.x.1".to_string(),
            format!("other.tmp.{gone}.0"),
        ];
        for name in left.iter().chain(&kept) {
            fs::write(dir.path().join(name), "left").unwrap();
        }
        write_atomic(&path, b"new").unwrap();
        let mut expected: Vec<String> = kept.to_vec();
        expected.push("record".into());
        expected.push(file_name_of(&open.tmp));
        expected.sort();
        assert_eq!(names(dir.path()), expected);
        drop(open);
        assert_eq!(temp_of("a.b.tmp.12.3"), Some(("a.b", 12)));
        for not in ["a.tmp.12", "a.tmp..3", ".tmp.1.2", "a.tmp.1.2x", "a.part"] {
            assert_eq!(temp_of(not), None, "{not}");
        }
    }

    fn file_name_of(path: &Path) -> String {
        path.file_name().unwrap().to_str().unwrap().to_string()
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
