//! Where the running system mounted things: a partition found by its GPT
//! name, and whether a directory is a mount point at all.

use recovery::partitions::Disks;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The mount point of the partition with this GPT name among `disks`, if
/// its whole file system is mounted (a bind mount of a sub-directory is
/// not the partition's root).
pub fn mount_point_of(disks: &Disks, partition: &str) -> Result<PathBuf, String> {
    let part = disks.find(partition).ok_or_else(|| {
        format!(
            "no partition named {partition} (seen: {})",
            disks.describe()
        )
    })?;
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    formats::mountinfo::parse(&info)
        .into_iter()
        .find(|m| m.dev == part.dev && m.root == Path::new("/"))
        .map(|m| m.mount_point)
        .ok_or_else(|| {
            format!(
                "partition {partition} ({}) is not mounted",
                part.device.display()
            )
        })
}

/// Whether `dir` is a mount point (its device differs from its parent's).
pub fn is_mount_point(dir: &Path) -> bool {
    let (Ok(here), Ok(parent)) = (std::fs::metadata(dir), std::fs::metadata(dir.join(".."))) else {
        return false;
    };
    here.dev() != parent.dev() || here.ino() == parent.ino()
}
