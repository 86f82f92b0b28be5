//! Reads a disk image from the host, without root: the GPT (with the `gpt`
//! crate, as the recovery does), a partition's bytes, and files inside an
//! ext4 partition (with `debugfs`), the names in a FAT partition's
//! directory (with mtools' `mdir`). One change in place, to make a file
//! fail the way a device's can: [`Disk::set_immutable`].

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Disk {
    pub path: PathBuf,
}

/// The inode flag of `chattr +i` (`FS_IMMUTABLE_FL` in linux/fs.h).
pub const EXT4_IMMUTABLE_FL: u32 = 0x10;

/// One partition copied out of the disk image, for `debugfs`.
pub struct PartitionImage {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Disk {
    pub fn new(path: &Path) -> Disk {
        Disk {
            path: path.to_path_buf(),
        }
    }

    /// (offset, size) in bytes of the partition with this GPT name.
    pub fn find(&self, name: &str) -> (u64, u64) {
        let disk = gpt::GptConfig::new()
            .writable(false)
            .open(&self.path)
            .expect("read the GPT");
        let part = disk
            .partitions()
            .values()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no partition {name} on {}", self.path.display()));
        (
            part.first_lba * 512,
            (part.last_lba + 1 - part.first_lba) * 512,
        )
    }

    /// The bytes of a partition.
    pub fn bytes(&self, name: &str) -> Vec<u8> {
        let (offset, size) = self.find(name);
        let mut f = File::open(&self.path).unwrap();
        f.seek(SeekFrom::Start(offset)).unwrap();
        let mut buf = vec![0; size as usize];
        f.read_exact(&mut buf).unwrap();
        buf
    }

    /// BLAKE3 of a partition's bytes: "byte-identical" checks.
    pub fn hash(&self, name: &str) -> [u8; 32] {
        *blake3::hash(&self.bytes(name)).as_bytes()
    }

    /// The file names in the directory `dir` of the FAT partition `name`
    /// (the ESP), sorted.
    pub fn fat_list(&self, name: &str, dir: &str) -> Vec<String> {
        let tmp = tempfile::tempdir().unwrap();
        let image = tmp.path().join("fat.img");
        std::fs::write(&image, self.bytes(name)).unwrap();
        let out = Command::new("mdir")
            .args(["-b", "-i"])
            .arg(&image)
            .arg(format!("::{dir}"))
            .output()
            .expect("mdir is missing: apt-get install mtools");
        assert!(
            out.status.success(),
            "mdir {name}:{dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().rsplit('/').next().map(str::to_string))
            .filter(|n| !n.is_empty())
            .collect();
        names.sort();
        names
    }

    /// Sets the ext4 immutable flag (`chattr +i`) on `path` in the ext4
    /// partition `name`, in place (`debugfs -w` on the disk image at the
    /// partition's offset). Nothing can then replace the file: a rename
    /// over it fails with EPERM ("Operation not permitted") whatever temp
    /// name the writer used, as a file on a failing device can. Check the
    /// result with [`PartitionImage::flags`]: debugfs exits 0 on most
    /// errors.
    pub fn set_immutable(&self, name: &str, path: &str) {
        let flags = self
            .partition(name)
            .flags(path)
            .unwrap_or_else(|| panic!("no {name}:{path} to make immutable"));
        let (offset, _) = self.find(name);
        let out = Command::new("debugfs")
            .arg("-w")
            .arg("-R")
            .arg(format!(
                "set_inode_field {path} flags {:#x}",
                flags | EXT4_IMMUTABLE_FL
            ))
            .arg(format!("{}?offset={offset}", self.path.display()))
            .output()
            .expect("debugfs is missing: apt-get install e2fsprogs");
        assert!(
            out.status.success(),
            "debugfs -w {name}:{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn partition(&self, name: &str) -> PartitionImage {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, self.bytes(name)).unwrap();
        PartitionImage { _dir: dir, path }
    }
}

impl PartitionImage {
    fn debugfs(&self, request: &str) -> (bool, String) {
        let out = Command::new("debugfs")
            .arg("-R")
            .arg(request)
            .arg(&self.path)
            .output()
            .expect("debugfs is missing: apt-get install e2fsprogs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// A file's contents, or None if it is not there.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("f");
        let (_, _) = self.debugfs(&format!("dump -p {path} {}", dump.display()));
        std::fs::read(&dump).ok()
    }

    pub fn read_string(&self, path: &str) -> Option<String> {
        self.read(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    pub fn exists(&self, path: &str) -> bool {
        let (_, out) = self.debugfs(&format!("stat {path}"));
        out.contains("Inode:")
    }

    /// `debugfs stat` of a path: mode, owner, times, xattrs.
    pub fn stat(&self, path: &str) -> String {
        self.debugfs(&format!("stat {path}")).1
    }

    /// The octal mode (with type bits) of a path, from `debugfs stat`.
    pub fn mode(&self, path: &str) -> Option<u32> {
        let stat = self.stat(path);
        let word = stat.split("Mode:").nth(1)?.split_whitespace().next()?;
        u32::from_str_radix(word.trim_start_matches('0'), 8)
            .ok()
            .or(Some(0))
    }

    /// The inode flags of a path (`Flags:` of `debugfs stat`), or None if
    /// it is not there; see [`EXT4_IMMUTABLE_FL`].
    pub fn flags(&self, path: &str) -> Option<u32> {
        let stat = self.stat(path);
        let word = stat.split("Flags:").nth(1)?.split_whitespace().next()?;
        u32::from_str_radix(word.trim_start_matches("0x"), 16).ok()
    }

    /// Names in a directory.
    pub fn list(&self, path: &str) -> Vec<String> {
        let (_, out) = self.debugfs(&format!("ls -p {path}"));
        out.lines()
            .filter_map(|l| l.split('/').nth(5).map(String::from))
            .filter(|n| !n.is_empty() && n != "." && n != "..")
            .collect()
    }
}

impl PartitionImage {
    /// Dumps the whole file system into `dir` (`debugfs rdump`; it keeps
    /// permission bits, not setuid).
    pub fn dump(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        let (ok, _) = self.debugfs(&format!("rdump / {}", dir.display()));
        assert!(ok, "debugfs rdump failed");
    }

    /// What differs between this file system and the tree `expected`
    /// (paths, types, permission bits, contents, symlink targets;
    /// `lost+found` aside). Empty when it holds exactly that tree.
    pub fn differences_from(&self, expected: &Path) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        self.dump(dir.path());
        let (found, want) = (describe_tree(dir.path()), describe_tree(expected));
        let mut out = Vec::new();
        for (path, what) in &want {
            match found.get(path) {
                None => out.push(format!("{path}: missing")),
                Some(f) if f != what => out.push(format!("{path}: {f} instead of {what}")),
                _ => {}
            }
        }
        for path in found.keys() {
            if !want.contains_key(path) && path != "lost+found" {
                out.push(format!("{path}: not in the image"));
            }
        }
        out
    }
}

/// Every path below `root` with its type, permission bits and contents.
fn describe_tree(root: &Path) -> std::collections::BTreeMap<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let perm = meta.permissions().mode() & 0o777;
            let what = if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {perm:o}")
            } else if meta.file_type().is_symlink() {
                format!(
                    "symlink to {}",
                    std::fs::read_link(&path).unwrap().display()
                )
            } else {
                let hash = blake3::hash(&std::fs::read(&path).unwrap());
                format!("file {perm:o} {}", &hash.to_hex()[..16])
            };
            out.insert(rel, what);
        }
    }
    out
}
