//! The one place where `formats` asks the kernel for something `std` and
//! `nix` have no wrapper for: the inode flags that `chattr` and `lsattr`
//! show (`FS_IOC_GETFLAGS`, `FS_IOC_SETFLAGS`). efivarfs marks most EFI
//! variables immutable, so that a stray `rm` cannot brick the firmware;
//! systemd's tools clear the flag before they replace or delete one, and so
//! does [`crate::bootflag`].

use nix::errno::Errno;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// `FS_IMMUTABLE_FL` of `<linux/fs.h>`: `chattr +i`.
pub const IMMUTABLE: nix::libc::c_int = 0x10;

// `FS_IOC_GETFLAGS` is `_IOR('f', 1, long)` and `FS_IOC_SETFLAGS`
// `_IOW('f', 2, long)`, yet the kernel reads and writes an `int` through
// them (as e2fsprogs and systemd pass it): hence the `_bad` forms with the
// request codes built from `long`.
#[allow(unsafe_code)]
mod ioctl {
    use nix::libc::{c_int, c_long};
    use std::mem::size_of;
    nix::ioctl_read_bad!(
        get_flags,
        nix::request_code_read!(b'f', 1, size_of::<c_long>()),
        c_int
    );
    nix::ioctl_write_ptr_bad!(
        set_flags,
        nix::request_code_write!(b'f', 2, size_of::<c_long>()),
        c_int
    );
}

/// Clears `chattr +i` on `path` if it is set. A missing file, or a file
/// system without inode flags, has nothing to clear.
#[allow(unsafe_code)]
pub fn clear_immutable(path: &Path) -> io::Result<()> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let fd = file.as_raw_fd();
    let mut flags: nix::libc::c_int = 0;
    // SAFETY: `fd` is open for as long as `file` lives, and `flags` is a
    // valid `int` that the kernel writes into.
    match unsafe { ioctl::get_flags(fd, &mut flags) } {
        Ok(_) => {}
        Err(Errno::ENOTTY | Errno::EOPNOTSUPP | Errno::EINVAL) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    if flags & IMMUTABLE == 0 {
        return Ok(());
    }
    let cleared = flags & !IMMUTABLE;
    // SAFETY: as above; the kernel only reads the `int` behind the pointer.
    unsafe { ioctl::set_flags(fd, &cleared) }?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn lsattr(path: &Path) -> String {
        let out = Command::new("lsattr")
            .arg(path)
            .output()
            .expect("lsattr is missing: apt-get install e2fsprogs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn clears_what_chattr_sets() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "chattr +i needs root: run the tests as root (CI does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("var");
        std::fs::write(&file, "x").unwrap();
        let status = Command::new("chattr")
            .arg("+i")
            .arg(&file)
            .status()
            .expect("chattr is missing: apt-get install e2fsprogs");
        assert!(status.success(), "chattr +i on the test's file system");
        assert!(lsattr(&file).starts_with("----i"), "{}", lsattr(&file));
        assert!(
            std::fs::remove_file(&file).is_err(),
            "immutable, yet removed"
        );
        clear_immutable(&file).unwrap();
        assert!(!lsattr(&file).starts_with("----i"), "{}", lsattr(&file));
        std::fs::remove_file(&file).unwrap();
        clear_immutable(&file).unwrap();
    }
}
