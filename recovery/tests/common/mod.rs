//! Helpers shared by the recovery's integration tests: prerequisites that
//! fail loudly, key pairs, images, and snapshots of trees to compare.
#![allow(dead_code)] // each test file uses a different part

use image_builder::image::{self, ImageRequest, ImageSummary, Source};
use image_builder::payload::Compression;
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Fails the test (never skips it) unless it runs as root.
pub fn require_root(why: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root to {why}: run it as root (CI does), e.g. `sudo -E cargo test`"
    );
}

/// Fails the test unless `tool` is on PATH, naming the package to install.
pub fn require_tool(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is missing: install it with `apt-get install {package}`"
    );
}

pub fn recovery_bin() -> &'static str {
    env!("CARGO_BIN_EXE_recovery")
}

/// A fresh key pair `DIR/NAME.pub`, `DIR/NAME.key`.
pub fn keypair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    image_builder::keygen::keygen(&dir.join(name)).expect("keygen")
}

pub fn build(
    source: Source,
    key: &Path,
    out: &Path,
    version: &str,
    allow_unsafe: bool,
) -> ImageSummary {
    let format = formats::manifest::FORMAT_VERSION;
    build_format(source, key, out, version, allow_unsafe, format)
}

/// [`build`] in manifest format `format` (1: the old format, no index).
pub fn build_format(
    source: Source,
    key: &Path,
    out: &Path,
    version: &str,
    allow_unsafe: bool,
    format: u64,
) -> ImageSummary {
    let request = ImageRequest {
        compression: Compression {
            level: 3,
            threads: 1,
        },
        allow_unsafe_paths: allow_unsafe,
        ..ImageRequest::fixture(source, "testprod", version, key, out)
    };
    image::build_format(&request, format).expect("image build")
}

/// A small valid image (product `testprod`, version 2.0) built in
/// `work/out`, its key pair, and a target directory `work/into` holding one
/// sentinel file ([`assert_untouched`] checks it is still alone).
pub fn small_image(work: &Path) -> (ImageSummary, (PathBuf, PathBuf), PathBuf) {
    let root = work.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/version"), "2.0\n").unwrap();
    std::fs::write(root.join("data"), vec![42u8; 200_000]).unwrap();
    let key = keypair(work, "k");
    let image = build(
        Source::Rootfs(root),
        &key.1,
        &work.join("out"),
        "2.0",
        false,
    );
    let into = work.join("into");
    std::fs::create_dir(&into).unwrap();
    std::fs::write(into.join("sentinel"), "old system").unwrap();
    (image, key, into)
}

/// Fails unless the target of [`small_image`] holds its sentinel alone.
pub fn assert_untouched(into: &Path) {
    assert_eq!(
        listing(into),
        vec![b"".to_vec(), b"sentinel".to_vec()],
        "the target was touched"
    );
    assert_eq!(
        std::fs::read_to_string(into.join("sentinel")).unwrap(),
        "old system"
    );
}

/// Runs the recovery binary with `args`.
pub fn recovery(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(recovery_bin());
    for a in args {
        cmd.arg(a);
    }
    cmd.output().expect("run recovery")
}

/// Runs `recovery apply` and fails the test with its messages unless it
/// succeeds.
pub fn apply_ok(manifest: &Path, key: &Path, into: &Path) {
    require_root("run recovery apply");
    let out = recovery(&[
        &"apply",
        &"--manifest",
        &manifest,
        &"--trusted-key",
        &key,
        &"--into",
        &into,
    ]);
    assert!(
        out.status.success(),
        "recovery apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `minisign ARGS` and returns whether it succeeded, with its stderr.
pub fn minisign(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (bool, String) {
    let mut cmd = Command::new("minisign");
    for a in args {
        cmd.arg(a);
    }
    let out = cmd
        .output()
        .expect("minisign is missing: apt-get install minisign");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Everything a root file system needs of one node, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub content: Option<[u8; 32]>,
    pub link: Option<Vec<u8>>,
    pub rdev: Option<u64>,
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// For a file with several links: the first path (in sorted order)
    /// that shares its inode.
    pub hard_link_of: Option<Vec<u8>>,
}

/// Every node below `root` (the root itself as the empty path).
pub fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    walk(root, Vec::new(), &mut out, &mut inodes);
    out
}

fn walk(
    path: &Path,
    rel: Vec<u8>,
    out: &mut BTreeMap<Vec<u8>, Node>,
    inodes: &mut BTreeMap<u64, Vec<u8>>,
) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else if ft.is_fifo() {
        "fifo"
    } else {
        "other"
    };
    let mut xattrs: Vec<(String, Vec<u8>)> = xattr::list(path)
        .unwrap()
        .map(|n| {
            let v = xattr::get(path, &n).unwrap().unwrap_or_default();
            (n.to_string_lossy().into_owned(), v)
        })
        .collect();
    xattrs.sort();
    let hard_link_of = (!ft.is_dir() && meta.nlink() > 1).then(|| {
        inodes
            .entry(meta.ino())
            .or_insert_with(|| rel.clone())
            .clone()
    });
    out.insert(
        rel.clone(),
        Node {
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime(),
            content: ft
                .is_file()
                .then(|| *blake3::hash(&std::fs::read(path).unwrap()).as_bytes()),
            link: ft.is_symlink().then(|| {
                std::fs::read_link(path)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec()
            }),
            rdev: (ft.is_char_device() || ft.is_block_device()).then(|| meta.rdev()),
            xattrs,
            hard_link_of,
        },
    );
    if ft.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let mut child = rel.clone();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(name.as_bytes());
            walk(&path.join(&name), child, out, inodes);
        }
    }
}

/// Lists the names below `dir`, recursively, for "nothing changed" checks.
pub fn listing(dir: &Path) -> Vec<Vec<u8>> {
    snapshot(dir).into_keys().collect()
}
