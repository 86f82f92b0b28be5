//! Test and demo disks: a GPT disk image written with the `gpt` crate, its
//! partitions made and filled without root (`mke2fs -d`) and placed at
//! their offsets.

use crate::error::{BuildError, IoContext};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1 << 20;

/// The file system a partition gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fs {
    Raw,
    Ext4,
    /// FAT32, for an EFI system partition.
    Fat,
}

/// One partition of a layout: `NAME:SIZE[:ext4|fat|raw[:DIR]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    pub name: String,
    pub size: u64,
    pub fs: Fs,
    pub contents: Option<PathBuf>,
}

impl PartitionSpec {
    /// Parses `NAME:SIZE[:FS[:DIR]]`; SIZE in bytes or with K, M or G
    /// (binary units); FS `ext4`, `fat` or `raw`.
    pub fn parse(s: &str) -> Result<PartitionSpec, String> {
        let mut parts = s.splitn(4, ':');
        let name = parts
            .next()
            .filter(|n| !n.is_empty())
            .ok_or("a partition needs a name")?;
        let size = parts
            .next()
            .ok_or_else(|| format!("{s}: expected NAME:SIZE"))?;
        let (digits, unit) = size.split_at(
            size.find(|c: char| !c.is_ascii_digit())
                .unwrap_or(size.len()),
        );
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{s}: bad size {size:?}"))?;
        let size = n * match unit {
            "" => 1,
            "K" => 1 << 10,
            "M" => MIB,
            "G" => 1 << 30,
            _ => return Err(format!("{s}: size unit must be K, M or G")),
        };
        let fs = match parts.next() {
            None | Some("raw") => Fs::Raw,
            Some("ext4") => Fs::Ext4,
            Some("fat") => Fs::Fat,
            Some(other) => {
                return Err(format!(
                    "{s}: file system {other:?}: expected ext4, fat or raw"
                ))
            }
        };
        let contents = parts.next().map(PathBuf::from);
        if contents.is_some() && fs == Fs::Raw {
            return Err(format!("{s}: contents need a file system (ext4 or fat)"));
        }
        Ok(PartitionSpec {
            name: name.to_string(),
            size: size.div_ceil(MIB) * MIB,
            fs,
            contents,
        })
    }
}

/// Where a partition ended up, in bytes.
#[derive(Debug, Clone)]
pub struct Placed {
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

/// Writes the disk image: GPT, then each partition's file system.
pub fn build(out: &Path, layout: &[PartitionSpec]) -> Result<Vec<Placed>, BuildError> {
    // 1 MiB before the first partition, 1 MiB after the last for the backup GPT.
    let total = 2 * MIB + layout.iter().map(|p| p.size).sum::<u64>();
    let file = File::create(out).ctx(out, "cannot create the disk image")?;
    file.set_len(total).ctx(out, "cannot size the disk image")?;
    drop(file);
    let gpt_err = |e: &dyn std::fmt::Display| BuildError::Io {
        path: out.to_path_buf(),
        what: "cannot write the partition table",
        err: std::io::Error::other(e.to_string()),
    };
    let mut dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open(out)
        .ctx(out, "cannot open")?;
    let sectors = u32::try_from(total / 512 - 1).unwrap_or(u32::MAX);
    gpt::mbr::ProtectiveMBR::with_lb_size(sectors)
        .overwrite_lba0(&mut dev)
        .map_err(|e| gpt_err(&e))?;
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .create_from_device(dev, None)
        .map_err(|e| gpt_err(&e))?;
    let mut ids = Vec::new();
    for p in layout {
        let id = disk
            .add_partition(
                &p.name,
                p.size,
                gpt::partition_types::LINUX_FS,
                0,
                Some(2048),
            )
            .map_err(|e| gpt_err(&e))?;
        ids.push(id);
    }
    let placed: Vec<Placed> = ids
        .iter()
        .zip(layout)
        .map(|(id, p)| {
            let part = &disk.partitions()[id];
            Placed {
                name: p.name.clone(),
                offset: part.first_lba * 512,
                size: (part.last_lba + 1 - part.first_lba) * 512,
            }
        })
        .collect();
    let mut dev = disk.write().map_err(|e| gpt_err(&e))?;
    for (p, spec) in placed.iter().zip(layout) {
        if spec.fs != Fs::Raw {
            fill(&mut dev, p, spec, out)?;
        }
    }
    dev.sync_all().ctx(out, "cannot sync")?;
    Ok(placed)
}

/// Makes the file system in a file of its own (`mke2fs -d`, or
/// `mkfs.vfat` and `mcopy`: no root needed) and copies it to its place in
/// the disk image.
fn fill(
    dev: &mut File,
    placed: &Placed,
    spec: &PartitionSpec,
    out: &Path,
) -> Result<(), BuildError> {
    let tmp = tempfile::NamedTempFile::new_in(out.parent().unwrap_or(Path::new(".")))
        .ctx(out, "cannot create a temporary file beside")?;
    tmp.as_file()
        .set_len(placed.size)
        .ctx(tmp.path(), "cannot size")?;
    let run = |cmd: &mut Command, package: &str| -> Result<(), BuildError> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let result = cmd.output().map_err(|e| {
            BuildError::Usage(format!(
                "cannot run {program} ({e}): apt-get install {package}"
            ))
        })?;
        if result.status.success() {
            Ok(())
        } else {
            Err(BuildError::Unrepresentable {
                path: format!("partition {}", spec.name),
                reason: format!(
                    "{program} failed: {}",
                    String::from_utf8_lossy(&result.stderr).trim()
                ),
            })
        }
    };
    match spec.fs {
        Fs::Ext4 => {
            let mut cmd = Command::new("mke2fs");
            cmd.args([
                "-q",
                "-F",
                "-t",
                "ext4",
                "-L",
                &spec.name,
                "-E",
                "root_owner=0:0",
            ]);
            if let Some(dir) = &spec.contents {
                cmd.arg("-d").arg(dir);
            }
            run(cmd.arg(tmp.path()), "e2fsprogs")?;
        }
        Fs::Fat => {
            let label = spec.name.to_uppercase();
            run(
                Command::new("mkfs.vfat")
                    .args(["-F", "32", "-n", &label])
                    .arg(tmp.path()),
                "dosfstools",
            )?;
            if let Some(dir) = &spec.contents {
                let entries: Vec<PathBuf> = std::fs::read_dir(dir)
                    .ctx(dir, "cannot list")?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .collect();
                if !entries.is_empty() {
                    let mut cmd = Command::new("mcopy");
                    cmd.arg("-s")
                        .arg("-i")
                        .arg(tmp.path())
                        .args(&entries)
                        .arg("::/");
                    run(&mut cmd, "mtools")?;
                }
            }
        }
        Fs::Raw => {}
    }
    let mut src = File::open(tmp.path()).ctx(tmp.path(), "cannot read")?;
    dev.seek(SeekFrom::Start(placed.offset))
        .ctx(out, "cannot seek")?;
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = src.read(&mut buf).ctx(tmp.path(), "cannot read")?;
        if n == 0 {
            break;
        }
        dev.write_all(&buf[..n]).ctx(out, "cannot write")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_layouts() {
        assert_eq!(
            PartitionSpec::parse("system:256M:ext4:/tmp/root").unwrap(),
            PartitionSpec {
                name: "system".into(),
                size: 256 << 20,
                fs: Fs::Ext4,
                contents: Some("/tmp/root".into())
            }
        );
        assert_eq!(PartitionSpec::parse("cfg:16M:ext4").unwrap().contents, None);
        assert_eq!(PartitionSpec::parse("raw:1G").unwrap().fs, Fs::Raw);
        assert_eq!(PartitionSpec::parse("esp:32M:fat").unwrap().fs, Fs::Fat);
        for bad in ["x", "x:12Q", "x:1M:btrfs", "x:1M:raw:/dir", ":1M"] {
            assert!(PartitionSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
