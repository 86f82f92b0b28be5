//! What the integration tests share: a tmpfs mounted as a cfg partition.

use nix::mount::{mount, umount, MsFlags};
use std::path::Path;

/// A tmpfs mounted at a new temporary directory, unmounted when dropped.
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn new(options: &str, flags: MsFlags) -> Tmpfs {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test mounts tmpfs: run it as root (CI does)"
        );
        let dir = tempfile::tempdir().unwrap();
        mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            flags,
            Some(options),
        )
        .expect("mount tmpfs");
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = umount(self.dir.path());
    }
}
