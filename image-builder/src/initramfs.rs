//! The recovery initramfs: a zstd-compressed newc cpio with the static
//! `recovery` as `/init`, `mke2fs` and the shared libraries it needs
//! (resolved on the build host with `ldd`, as dracut does), `/dev/console`
//! and `/dev/null` (without them the kernel gives PID 1 no standard
//! streams), the configuration, the trusted keys, and kernel modules the
//! recovery loads at its start (`/lib/modules/*.ko`).

use crate::cpio::CpioWriter;
use crate::error::{BuildError, IoContext};
use formats::config::{self, Config};
use formats::signature::TrustedKey;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct InitramfsRequest {
    pub recovery: PathBuf,
    pub trusted_keys: Vec<PathBuf>,
    /// Kernel modules (`.ko`) the recovery loads at its start, for what
    /// the kernel does not have built in.
    pub modules: Vec<PathBuf>,
    pub config: Config,
    pub out: PathBuf,
}

pub struct InitramfsSummary {
    pub size: u64,
    pub files: Vec<String>,
}

/// Whether an ELF executable asks for a dynamic loader (`PT_INTERP`).
pub fn is_dynamic(elf: &[u8]) -> Option<bool> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 {
        return None;
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into().ok()?) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).try_fold(false, |dynamic, i| {
        let at = phoff.checked_add(i * phentsize)?;
        let p_type = u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?);
        Some(dynamic || p_type == 3)
    })
}

/// The shared libraries (and loader) a program needs, as absolute paths.
fn libraries(program: &Path) -> Result<Vec<PathBuf>, BuildError> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .ctx(program, "cannot run ldd on")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let path = match l.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

pub fn build(req: &InitramfsRequest) -> Result<InitramfsSummary, BuildError> {
    let recovery =
        std::fs::read(&req.recovery).ctx(&req.recovery, "cannot read the recovery binary")?;
    match is_dynamic(&recovery) {
        Some(false) => {}
        Some(true) => {
            return Err(BuildError::Unrepresentable {
                path: req.recovery.display().to_string(),
                reason: "is dynamically linked: PID 1 of the initramfs must be static \
                         (build it for x86_64-unknown-linux-musl)"
                    .into(),
            })
        }
        None => {
            return Err(BuildError::Unrepresentable {
                path: req.recovery.display().to_string(),
                reason: "is not a 64-bit ELF executable".into(),
            })
        }
    }
    let mut keys = Vec::new();
    for path in &req.trusted_keys {
        let text = std::fs::read_to_string(path).ctx(path, "cannot read the trusted key")?;
        TrustedKey::parse(&path.display().to_string(), &text).map_err(|e| BuildError::Key {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        keys.push(text);
    }
    if keys.is_empty() {
        return Err(BuildError::Usage(
            "an initramfs needs at least one --trusted-key".into(),
        ));
    }
    let mke2fs = find_on_path("mke2fs").ok_or_else(|| {
        BuildError::Usage("mke2fs is not installed on this host: apt-get install e2fsprogs".into())
    })?;

    // Every file: (path in the archive, mode, contents).
    let mut files: Vec<(String, u32, Vec<u8>)> = vec![("init".into(), 0o755, recovery)];
    files.push((
        "sbin/mke2fs".into(),
        0o755,
        std::fs::read(&mke2fs).ctx(&mke2fs, "cannot read")?,
    ));
    for lib in libraries(&mke2fs)? {
        let data = std::fs::read(&lib).ctx(&lib, "cannot read a library of mke2fs")?;
        let name = lib.to_string_lossy().trim_start_matches('/').to_string();
        files.push((name, 0o755, data));
    }
    if let Ok(conf) = std::fs::read("/etc/mke2fs.conf") {
        files.push(("etc/mke2fs.conf".into(), 0o644, conf));
    }
    for module in &req.modules {
        let name = module
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".ko"))
            .ok_or_else(|| {
                BuildError::Usage(format!(
                    "--module {}: expected a .ko file",
                    module.display()
                ))
            })?;
        let data = std::fs::read(module).ctx(module, "cannot read the module")?;
        files.push((format!("lib/modules/{name}"), 0o644, data));
    }
    files.push((config::PATH.into(), 0o644, req.config.render().into_bytes()));
    for (i, key) in keys.into_iter().enumerate() {
        files.push((
            format!("{}/key{i}.pub", config::KEYS_DIR),
            0o644,
            key.into_bytes(),
        ));
    }
    files.sort();

    let mut dirs: BTreeSet<String> = ["dev", "proc", "sys", "run", "tmp"]
        .map(String::from)
        .into();
    for (name, _, _) in &files {
        let mut parent = Path::new(name).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(p.to_string_lossy().into_owned());
            parent = p.parent();
        }
    }
    let mut cpio = CpioWriter::new(Vec::new());
    let io = |e| BuildError::Io {
        path: req.out.clone(),
        what: "cannot write the initramfs",
        err: e,
    };
    for dir in &dirs {
        cpio.dir(dir).map_err(io)?;
    }
    cpio.char_device("dev/console", 0o600, 5, 1).map_err(io)?;
    cpio.char_device("dev/null", 0o666, 1, 3).map_err(io)?;
    for (name, mode, data) in &files {
        cpio.file(name, *mode, data).map_err(io)?;
    }
    let archive = cpio.finish().map_err(io)?;
    // Level 19 keeps the window at 8 MiB, within what the kernel decodes.
    let compressed = zstd::bulk::compress(&archive, 19).map_err(io)?;
    std::fs::write(&req.out, &compressed).ctx(&req.out, "cannot write the initramfs")?;
    let mut listed: Vec<String> = dirs.into_iter().collect();
    listed.extend(["dev/console".to_string(), "dev/null".to_string()]);
    listed.extend(files.into_iter().map(|(n, _, _)| n));
    Ok(InitramfsSummary {
        size: compressed.len() as u64,
        files: listed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_static_from_dynamic() {
        let ls = std::fs::read("/bin/ls").unwrap();
        assert_eq!(is_dynamic(&ls), Some(true));
        assert_eq!(is_dynamic(b"#!/bin/sh\n"), None);
    }
}
