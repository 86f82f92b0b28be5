//! Before an update is armed, the configuration on `cfg` (everything but
//! `update/`) is saved as a zstd-compressed tar in the storage partition's
//! `backups/`, keeping the newest few, so that an operator has the
//! configuration as it was before the update.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Backups kept; older ones are removed.
pub const KEEP: usize = 3;

/// Writes `backups/cfg-<seconds>.tar.zst` below `storage` and returns it.
pub fn save(cfg: &Path, storage: &Path, now: u64) -> io::Result<PathBuf> {
    let dir = storage.join("backups");
    fs::create_dir_all(&dir)?;
    let path = dir.join(format!("cfg-{now}.tar.zst"));
    // Temp file, fsync, rename, fsync of the directory: a power cut leaves
    // the backup whole or absent.
    let file = formats::store::AtomicFile::create(&path)?;
    let mut tar = tar::Builder::new(zstd::Encoder::new(file, 9)?);
    tar.follow_symlinks(false);
    let mut names: Vec<_> = fs::read_dir(cfg)?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .filter(|n| n != "update" && n != "lost+found")
        .collect();
    names.sort();
    for name in names {
        let path = cfg.join(&name);
        if path.is_dir() && !path.is_symlink() {
            tar.append_dir_all(&name, &path)?;
        } else {
            tar.append_path_with_name(&path, &name)?;
        }
    }
    tar.into_inner()?.finish()?.commit()?;
    prune(&dir)?;
    Ok(path)
}

fn prune(dir: &Path) -> io::Result<()> {
    let mut backups: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy().starts_with("cfg-") && n.to_string_lossy().ends_with(".tar.zst")
            })
        })
        .collect();
    backups.sort();
    let excess = backups.len().saturating_sub(KEEP);
    for old in &backups[..excess] {
        fs::remove_file(old)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_everything_but_update_and_keeps_the_newest() {
        let d = tempfile::tempdir().unwrap();
        let (cfg, storage) = (d.path().join("cfg"), d.path().join("storage"));
        fs::create_dir_all(cfg.join("update")).unwrap();
        fs::create_dir_all(cfg.join("network")).unwrap();
        fs::write(cfg.join("network/eth0"), "dhcp").unwrap();
        fs::write(cfg.join(formats::cfg::INSTRUCTION), "x").unwrap();
        fs::write(cfg.join("hostname"), "gw1").unwrap();
        for now in 1..=5 {
            save(&cfg, &storage, now).unwrap();
        }
        let mut kept: Vec<_> = fs::read_dir(storage.join("backups"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        kept.sort();
        assert_eq!(kept, ["cfg-3.tar.zst", "cfg-4.tar.zst", "cfg-5.tar.zst"]);
        let data = zstd::decode_all(&fs::read(storage.join("backups/cfg-5.tar.zst")).unwrap()[..])
            .unwrap();
        let mut archive = tar::Archive::new(&data[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n == "hostname"), "{names:?}");
        assert!(names.iter().any(|n| n.starts_with("network")), "{names:?}");
        assert!(!names.iter().any(|n| n.starts_with("update")), "{names:?}");
    }
}
