//! Fault points, named after the step they break, for the power-cut tests
//! (as bootupd's failpoints). A build with the `faults` feature reads
//! `recovery.fault=POINT` from the kernel command line and, at that point,
//! stops dead: no cleanup, no sync, the power switched off through the
//! `reboot` system call, so that whatever the kernel had not yet written is
//! lost as in a power cut. A build without the feature has no fault points.
//!
//! Points: `after-instruction`, `after-verify`, `mid-erase`, `after-erase`,
//! `after-entries:N`, `before-sync`, `after-sync`, `before-removal`,
//! `after-removal`;
//! `restore-recorded` (the last attempt's pending restore written, the
//! lock not yet); in a restore, `restore-after-verify` and
//! `restore-after-erase` (and the extraction's own points, which a
//! restore passes too).
//!
//! Two points hang instead of stopping, for the tests of the deadlines and
//! the watchdog ([`crate::supervisor`]): `hang-in-extract` blocks the main
//! flow for ever as the extraction starts, as a deadlock would;
//! `hang-in-sync`, as the final sync starts, makes the storage stop
//! answering: it freezes the `cfg` file system (`FIFREEZE`, as `fsfreeze`
//! does), so that writing the result blocks in the kernel as on a dead
//! disk, and blocks the main flow for ever; `hang-in-finish` freezes `cfg`
//! as the success is about to be recorded, and lets the main flow go on
//! into the write that blocks.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// The instruction was read (and the attempt counted).
    AfterInstruction,
    /// Every check passed; nothing erased yet.
    AfterVerify,
    /// The old file system's start is overwritten, the new one not made.
    MidErase,
    /// A fresh, empty file system is on the target.
    AfterErase,
    /// This many entries are extracted.
    AfterEntries(u64),
    /// Everything is extracted, nothing synced.
    BeforeSync,
    /// The target is synced; result and instruction not yet written.
    AfterSync,
    /// The result, the trial and the installed version are written; the
    /// instruction is not removed yet.
    BeforeRemoval,
    /// The instruction is removed; the reboot has not happened.
    AfterRemoval,
    /// The last attempt of an update recorded its pending restore; the
    /// lock is not set and the instruction not moved aside yet.
    RestoreRecorded,
    /// A restore verified the last good image; nothing erased yet.
    RestoreAfterVerify,
    /// A restore erased the target; nothing restored yet.
    RestoreAfterErase,
    /// The extraction starts, and hangs for ever.
    HangInExtract,
    /// The final sync starts; `cfg` stops taking writes and the main flow
    /// hangs for ever.
    HangInSync,
    /// Everything is written and synced; `cfg` stops taking writes just
    /// before the result is written.
    HangInFinish,
}

impl Point {
    pub fn parse(s: &str) -> Option<Point> {
        Some(match s {
            "after-instruction" => Point::AfterInstruction,
            "after-verify" => Point::AfterVerify,
            "mid-erase" => Point::MidErase,
            "after-erase" => Point::AfterErase,
            "before-sync" => Point::BeforeSync,
            "after-sync" => Point::AfterSync,
            "before-removal" => Point::BeforeRemoval,
            "after-removal" => Point::AfterRemoval,
            "restore-recorded" => Point::RestoreRecorded,
            "restore-after-verify" => Point::RestoreAfterVerify,
            "restore-after-erase" => Point::RestoreAfterErase,
            "hang-in-extract" => Point::HangInExtract,
            "hang-in-sync" => Point::HangInSync,
            "hang-in-finish" => Point::HangInFinish,
            other => Point::AfterEntries(other.strip_prefix("after-entries:")?.parse().ok()?),
        })
    }
}

#[cfg(feature = "faults")]
mod armed {
    use super::Point;
    use std::sync::OnceLock;

    static ARMED: OnceLock<Option<Point>> = OnceLock::new();

    pub fn arm(cmdline: &str) {
        let point = cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix("recovery.fault="))
            .and_then(|p| {
                let point = Point::parse(p);
                if point.is_none() {
                    log::warn!("recovery.fault={p}: no such fault point; ignored");
                }
                point
            });
        if let Some(p) = point {
            log::warn!("fault point armed: {p:?} (a test build)");
        }
        let _ = ARMED.set(point);
    }

    pub fn armed() -> Option<Point> {
        ARMED.get().copied().flatten()
    }

    nix::ioctl_readwrite!(fifreeze, b'X', 119, nix::libc::c_int);

    /// Freezes the file system mounted at `dir`: until it is thawed (never,
    /// here), every write to it blocks in the kernel.
    #[allow(unsafe_code)]
    pub fn freeze(dir: &std::path::Path) {
        use std::os::fd::AsRawFd;
        let frozen = std::fs::File::open(dir)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                let mut unused: nix::libc::c_int = 0;
                // SAFETY: the fd is open while `f` lives; FIFREEZE ignores its
                // argument, which points at a c_int as the ioctl is declared.
                unsafe { fifreeze(f.as_raw_fd(), &mut unused) }.map_err(|e| e.to_string())
            });
        match frozen {
            Ok(_) => eprintln!("recovery: fault point: {} frozen", dir.display()),
            Err(e) => eprintln!(
                "recovery: fault point: cannot freeze {}: {e}",
                dir.display()
            ),
        }
    }
}

#[cfg(not(feature = "faults"))]
mod armed {
    use super::Point;

    pub fn arm(cmdline: &str) {
        if cmdline.contains("recovery.fault=") {
            log::warn!("recovery.fault= is ignored: this build has no fault points");
        }
    }

    pub fn armed() -> Option<Point> {
        None
    }

    pub fn freeze(_dir: &std::path::Path) {}
}

/// Reads `recovery.fault=` from the kernel command line.
pub fn arm(cmdline: &str) {
    armed::arm(cmdline)
}

/// Whether the fault point `point` is the armed one.
pub fn is_armed(point: Point) -> bool {
    armed::armed() == Some(point)
}

/// Stops dead at `point` if it is the armed one (hangs, at a hang point).
pub fn hit(point: Point) {
    if is_armed(point) {
        match point {
            Point::HangInExtract => hang(point),
            Point::HangInSync => {
                armed::freeze(std::path::Path::new(crate::update::CFG_MOUNT));
                hang(point)
            }
            Point::HangInFinish => armed::freeze(std::path::Path::new(crate::update::CFG_MOUNT)),
            _ => stop_dead(point),
        }
    }
}

/// Blocks this thread for ever.
fn hang(point: Point) -> ! {
    eprintln!("recovery: fault point {point:?}: hanging");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Power off now, without syncing anything.
pub fn stop_dead(point: Point) -> ! {
    eprintln!("recovery: fault point {point:?}: stopping dead (power off, no sync)");
    loop {
        let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_points() {
        assert_eq!(Point::parse("mid-erase"), Some(Point::MidErase));
        assert_eq!(
            Point::parse("after-entries:17"),
            Some(Point::AfterEntries(17))
        );
        assert_eq!(Point::parse("after-entries:x"), None);
        assert_eq!(Point::parse("hang-in-extract"), Some(Point::HangInExtract));
        assert_eq!(Point::parse("hang-in-sync"), Some(Point::HangInSync));
        assert_eq!(Point::parse("hang-in-finish"), Some(Point::HangInFinish));
        assert_eq!(
            Point::parse("restore-after-erase"),
            Some(Point::RestoreAfterErase)
        );
        assert_eq!(
            Point::parse("restore-recorded"),
            Some(Point::RestoreRecorded)
        );
        assert_eq!(Point::parse("later"), None);
    }
}
