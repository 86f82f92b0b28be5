//! Finds partitions by their GPT partition name, by reading each disk's
//! partition table itself (a minimal initramfs has no udev and no
//! `/dev/disk/by-partlabel`). The kernel's `PARTNAME=` in sysfs is a
//! cross-check.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The GPT partition name, e.g. `system`.
    pub name: String,
    /// The kernel's name for it, e.g. `nvme0n1p4`.
    pub kernel_name: String,
    pub device: PathBuf,
    /// `major:minor`, to compare with mounted devices.
    pub dev: String,
    pub size: u64,
}

/// What was found on every disk, for use and for messages.
#[derive(Debug, Default)]
pub struct Disks {
    pub partitions: Vec<Partition>,
    /// One line a disk: `nvme0n1: recovery, cfg, system, storage`.
    pub seen: Vec<String>,
}

impl Disks {
    pub fn find(&self, name: &str) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.name == name)
    }

    /// What was seen, for an error message.
    pub fn describe(&self) -> String {
        if self.seen.is_empty() {
            "no disks at all".to_string()
        } else {
            self.seen.join("; ")
        }
    }
}

fn read(path: impl AsRef<std::path::Path>) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Reads the GPT of every disk the kernel shows.
pub fn scan() -> Disks {
    let mut disks = Disks::default();
    let Ok(entries) = fs::read_dir("/sys/block") else {
        return disks;
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            !["loop", "ram", "zram", "sr", "fd"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .collect();
    names.sort();
    for disk in names {
        match read_disk(&disk) {
            Ok(parts) => {
                let list: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
                disks.seen.push(format!("{disk}: {}", list.join(", ")));
                disks.partitions.extend(parts);
            }
            Err(e) => disks.seen.push(format!("{disk}: {e}")),
        }
    }
    disks
}

fn read_disk(disk: &str) -> Result<Vec<Partition>, String> {
    let sys = PathBuf::from("/sys/block").join(disk);
    let block_size = match read(sys.join("queue/logical_block_size")).as_deref() {
        Some("4096") => gpt::disk::LogicalBlockSize::Lb4096,
        _ => gpt::disk::LogicalBlockSize::Lb512,
    };
    let gpt = gpt::GptConfig::new()
        .writable(false)
        .logical_block_size(block_size)
        .open(PathBuf::from("/dev").join(disk))
        .map_err(|e| format!("no GPT ({e})"))?;
    // The kernel's partition devices, by partition number.
    let mut kernel: Vec<(u32, String)> = fs::read_dir(&sys)
        .map_err(|e| e.to_string())?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let number = read(sys.join(&name).join("partition"))?.parse().ok()?;
            Some((number, name))
        })
        .collect();
    kernel.sort();
    let lb: u64 = block_size.into();
    let mut out = Vec::new();
    for (number, part) in gpt.partitions() {
        if !part.is_used() {
            continue;
        }
        let Some((_, kname)) = kernel.iter().find(|(n, _)| n == number) else {
            continue;
        };
        let uevent = read(sys.join(kname).join("uevent")).unwrap_or_default();
        if let Some(partname) = uevent.lines().find_map(|l| l.strip_prefix("PARTNAME=")) {
            if partname != part.name {
                log::warn!(
                    "{kname}: the GPT says {:?}, the kernel {partname:?}",
                    part.name
                );
            }
        }
        out.push(Partition {
            name: part.name.clone(),
            kernel_name: kname.clone(),
            device: PathBuf::from("/dev").join(kname),
            dev: read(sys.join(kname).join("dev")).unwrap_or_default(),
            size: (part.last_lba + 1 - part.first_lba) * lb,
        });
    }
    Ok(out)
}

/// Scans until a partition named `name` shows up, or `wait` has passed.
pub fn wait_for(name: &str, wait: Duration) -> Result<Disks, Disks> {
    let start = Instant::now();
    loop {
        let disks = scan();
        if disks.find(name).is_some() {
            return Ok(disks);
        }
        if start.elapsed() >= wait {
            return Err(disks);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
