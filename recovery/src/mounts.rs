//! Mounts as guards: a mount is undone when its guard is dropped, so that
//! every path out of a step, error or not, leaves nothing mounted.

use formats::mountinfo;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct Mount {
    target: PathBuf,
}

impl Mount {
    /// Mounts `source` (a device, or a name for pseudo file systems) of
    /// type `fstype` on `target`, creating the directory.
    pub fn new(source: &str, target: &Path, fstype: &str, flags: MsFlags) -> nix::Result<Mount> {
        let _ = std::fs::create_dir_all(target);
        mount(Some(source), target, Some(fstype), flags, None::<&str>)?;
        Ok(Mount {
            target: target.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.target
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(e) = umount2(&self.target, MntFlags::empty()) {
            log::warn!(
                "cannot unmount {}: {e}; detaching it",
                self.target.display()
            );
            let _ = umount2(&self.target, MntFlags::MNT_DETACH);
        }
    }
}

/// Whether the kernel knows the file system type (`/proc/filesystems`).
pub fn kernel_supports(fstype: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .map(|t| {
            t.lines()
                .any(|l| l.split_whitespace().last() == Some(fstype))
        })
        .unwrap_or(false)
}

/// The `major:minor` of every mounted block device (`/proc/self/mountinfo`).
pub fn mounted_devices() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| mountinfo::parse(&t).into_iter().map(|m| m.dev).collect())
        .unwrap_or_default()
}
