//! A device's disk, made on the host: the reference layout of the brief
//! (`recovery`, `cfg`, `system`, `storage`), a sample system on `system`,
//! images staged in `storage:updates/`, and the instruction on `cfg`
//! written by the `bootloader-glue` library.

use crate::artifacts;
use crate::vm::{self, Finished};
use formats::config::Config;
use formats::instruction::{Instruction, PartitionPath};
use formats::result::Installed;
use image_builder::disk::{self, PartitionSpec};
use image_builder::image::{self, ImageRequest, ImageSummary, Source};
use image_builder::payload::Compression;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

pub const PRODUCT: &str = "demo";

/// What every test shares: a signing key and an initramfs that trusts it.
pub struct Suite {
    _dir: tempfile::TempDir,
    pub key_pub: PathBuf,
    pub key_sec: PathBuf,
    pub initramfs: PathBuf,
    pub initramfs_size: u64,
    pub kernel: PathBuf,
}

impl Suite {
    pub fn get() -> &'static Suite {
        static SUITE: OnceLock<Suite> = OnceLock::new();
        SUITE.get_or_init(|| {
            vm::require_qemu();
            let dir = tempfile::tempdir().unwrap();
            let (key_pub, key_sec) =
                image_builder::keygen::keygen(&dir.path().join("vendor")).unwrap();
            let initramfs = dir.path().join("initramfs.img");
            let mut config = Config::for_product(PRODUCT);
            config.disk_wait = 20;
            config.failure_delay = 1;
            let initramfs_size = artifacts::initramfs(&config, &key_pub, &initramfs)
                .unwrap_or_else(|e| panic!("initramfs: {e}"));
            let kernel = artifacts::kernel().unwrap_or_else(|e| panic!("kernel: {e}"));
            Suite {
                _dir: dir,
                key_pub,
                key_sec,
                initramfs,
                initramfs_size,
                kernel,
            }
        })
    }
}

/// The host's static busybox, for the sample systems.
pub fn busybox() -> &'static str {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("busybox is missing: apt-get install busybox-static")
}

/// A small root file system: busybox (static) with its applets, a version
/// file, a setuid binary, a symlink.
pub fn sample_rootfs(dir: &Path, version: &str) -> PathBuf {
    sample_rootfs_named(dir, version, &format!("rootfs-{version}"))
}

pub fn sample_rootfs_named(dir: &Path, version: &str, name: &str) -> PathBuf {
    let root = dir.join(name);
    for d in ["bin", "sbin", "etc", "usr/bin", "proc", "sys", "dev", "tmp"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy(busybox(), root.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "ls", "cat", "mount", "mkdir", "sync", "poweroff", "reboot", "sleep", "insmod",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    fs::write(root.join("etc/version"), format!("{version}\n")).unwrap();
    fs::write(
        root.join("etc/os-release"),
        format!("NAME=demo\nVERSION={version}\n"),
    )
    .unwrap();
    fs::write(root.join("usr/bin/su-demo"), b"#!/bin/sh\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(
        root.join("usr/bin/su-demo"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    root
}

/// A tar of `rootfs` that verifies but fails every extraction: a late
/// entry carries an extended attribute ext4 does not know.
pub fn failing_tarball(rootfs: &Path, out: &Path) {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    tar.append_dir_all(".", rootfs).unwrap();
    tar.append_pax_extensions([("SCHILY.xattr.unknownns.attr", &b"x"[..])])
        .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_path("zz-last").unwrap();
    h.set_mode(0o644);
    h.set_size(1);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    tar.append(&h, &b"z"[..]).unwrap();
    fs::write(out, tar.into_inner().unwrap()).unwrap();
}

/// Partition sizes, in MiB.
#[derive(Clone, Copy)]
pub struct Sizes {
    pub recovery: u64,
    pub cfg: u64,
    pub system: u64,
    pub storage: u64,
}

impl Default for Sizes {
    fn default() -> Sizes {
        Sizes {
            recovery: 4,
            cfg: 8,
            system: 48,
            storage: 32,
        }
    }
}

/// One device under test.
pub struct Device {
    pub dir: tempfile::TempDir,
    pub cfg: PathBuf,
    pub storage: PathBuf,
    pub system: PathBuf,
    pub sizes: Sizes,
    pub disk: PathBuf,
}

impl Device {
    /// A device running `version` of the sample system.
    pub fn new(version: &str) -> Device {
        let dir = tempfile::tempdir_in(artifacts::workspace().join("target")).unwrap();
        let cfg = dir.path().join("cfg");
        let storage = dir.path().join("storage");
        fs::create_dir_all(cfg.join("update")).unwrap();
        fs::create_dir_all(storage.join("updates")).unwrap();
        let system = sample_rootfs(dir.path(), version);
        let installed = Installed {
            product: PRODUCT.into(),
            version: version.into(),
        };
        fs::write(cfg.join(formats::cfg::INSTALLED), installed.render()).unwrap();
        let disk = dir.path().join("disk.img");
        Device {
            dir,
            cfg,
            storage,
            system,
            sizes: Sizes::default(),
            disk,
        }
    }

    /// Builds an image of `rootfs` into `storage:updates/`, signed with the
    /// suite's key.
    pub fn stage(&self, product: &str, version: &str, rootfs: &Path) -> ImageSummary {
        self.stage_with(product, version, rootfs, &Suite::get().key_sec, false)
    }

    pub fn stage_with(
        &self,
        product: &str,
        version: &str,
        rootfs: &Path,
        key: &Path,
        unsafe_paths: bool,
    ) -> ImageSummary {
        let format = formats::manifest::FORMAT_VERSION;
        self.stage_format(product, version, rootfs, key, unsafe_paths, format)
    }

    /// [`Device::stage_with`] in manifest format `format` (1: the old
    /// format without an entry index, decoded before the erase).
    pub fn stage_format(
        &self,
        product: &str,
        version: &str,
        rootfs: &Path,
        key: &Path,
        unsafe_paths: bool,
        format: u64,
    ) -> ImageSummary {
        let source = if rootfs.is_dir() {
            Source::Rootfs(rootfs.to_path_buf())
        } else {
            Source::Tar(rootfs.to_path_buf())
        };
        let out_dir = self.storage.join("updates");
        let request = ImageRequest {
            compression: Compression {
                level: 3,
                threads: 2,
            },
            allow_unsafe_paths: unsafe_paths,
            ..ImageRequest::fixture(source, product, version, key, &out_dir)
        };
        image::build_format(&request, format)
            .unwrap_or_else(|e| panic!("staging {product}-{version}: {e}"))
    }

    /// Writes the instruction with the `bootloader-glue` library.
    pub fn instruct(&self, manifest: &str, target: &str) -> Instruction {
        let instruction = Instruction {
            manifest: PartitionPath::parse(manifest).expect("PARTITION:PATH"),
            target: target.into(),
            allow_downgrade: false,
            requested: 1_700_000_000,
            restore: None,
        };
        bootloader_glue::request::write_instruction(&self.cfg, &instruction).unwrap();
        instruction
    }

    /// Writes the disk image from the directories.
    pub fn build_disk(&self) -> &Path {
        let s = self.sizes;
        let spec = |name: &str, size: u64, dir: Option<&Path>| PartitionSpec {
            name: name.into(),
            size: size << 20,
            fs: disk::Fs::Ext4,
            contents: dir.map(Path::to_path_buf),
        };
        let layout = [
            spec("recovery", s.recovery, None),
            spec("cfg", s.cfg, Some(&self.cfg)),
            spec("system", s.system, Some(&self.system)),
            spec("storage", s.storage, Some(&self.storage)),
        ];
        disk::build(&self.disk, &layout).unwrap_or_else(|e| panic!("disk: {e}"));
        &self.disk
    }

    /// Boots the recovery on the disk; the console is kept in the device's
    /// directory (printed by failing assertions).
    pub fn boot(&self, cmdline: &str, timeout: Duration) -> Finished {
        self.boot_as(cmdline, |b| b.timeout = timeout)
    }

    pub fn boot_with(&self, cmdline: &str, timeout: Duration, echo: bool) -> Finished {
        self.boot_as(cmdline, |b| {
            b.timeout = timeout;
            b.echo = echo;
        })
    }

    /// Boots the recovery on the disk with the settings `set` chooses; the
    /// console is kept in `target/qemu-consoles/` for failures.
    pub fn boot_as(&self, cmdline: &str, set: impl FnOnce(&mut vm::Boot)) -> Finished {
        let suite = Suite::get();
        let console = self.dir.path().join("console.log");
        let mut boot = vm::Boot::new(&suite.kernel, &suite.initramfs, &self.disk, console);
        boot.cmdline = cmdline.to_string();
        set(&mut boot);
        let finished = vm::boot(&boot);
        vm::keep_console(self.dir.path(), "", &finished.console);
        finished
    }

    pub fn inspect(&self) -> crate::inspect::Disk {
        crate::inspect::Disk::new(&self.disk)
    }
}
