//! Erasing the target: a fresh file system made by the configured command
//! (`mke2fs` by default), keeping the file system label.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the recovery looks for the mkfs program.
pub const PATH: &[&str] = &["/sbin", "/usr/sbin", "/bin", "/usr/bin"];

/// The program of a command, found on the recovery's path.
pub fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    PATH.iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The volume name of an ext2/3/4 file system, read from its superblock.
pub fn ext4_label(device: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(device).ok()?;
    let mut sb = [0u8; 256];
    f.seek(SeekFrom::Start(1024)).ok()?;
    f.read_exact(&mut sb).ok()?;
    if sb[56..58] != [0x53, 0xef] {
        return None;
    }
    let name = &sb[120..136];
    let end = name.iter().position(|&b| b == 0).unwrap_or(16);
    let label = String::from_utf8_lossy(&name[..end]).into_owned();
    (!label.is_empty()).then_some(label)
}

/// Runs the mkfs command; returns its failure as text.
pub fn make_filesystem(command: &[String]) -> Result<(), String> {
    let (program, args) = command.split_first().ok_or("an empty mkfs command")?;
    let path = find_program(program).ok_or_else(|| {
        format!(
            "{program} is not in the initramfs (looked in {})",
            PATH.join(", ")
        )
    })?;
    let out = Command::new(&path)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed ({}): {}",
            command.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Overwrites the start of a device as a half-done mkfs would (the old
/// file system's superblock gone, no new one yet), durably: for the
/// `mid-erase` fault point.
pub fn clobber_start(device: &Path) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_SYNC)
        .open(device)
    {
        let _ = f.write_all(&vec![0xA5; 4 << 20]);
    }
}
