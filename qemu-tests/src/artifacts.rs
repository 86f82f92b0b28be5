//! Builds and fetches what a guest boots: the static `recovery` (musl, or
//! glibc with `crt-static` where musl is missing; `scripts/build-static`,
//! the release's recipe), the Debian cloud kernel
//! (NVMe, ext4, GPT and zstd initramfs built in), and the initramfs.

use formats::config::Config;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("qemu-tests lives in the workspace")
        .to_path_buf()
}

/// Where downloaded and built artifacts are kept between runs.
pub fn cache() -> PathBuf {
    workspace().join(".cache")
}

/// Builds the release `recovery` as one static executable and returns its
/// path: the build that ships.
pub fn static_recovery() -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_static("recovery", false))
        .clone()
}

/// `reimage-agent` as one static executable, for the sample systems that
/// update themselves from a feed.
pub fn static_agent() -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_static("reimage-agent", false))
        .clone()
}

/// The same with the `faults` feature: the build the VM tests boot, whose
/// fault points `recovery.fault=` on the kernel command line arms.
pub fn static_recovery_with_faults() -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(|| build_static("recovery", true)).clone()
}

/// `bootloader-glue` as one static executable, for the sample systems.
pub fn static_bootloader_glue() -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_static("bootloader-glue", false))
        .clone()
}

/// The static build, by the one recipe the release uses too
/// (`scripts/build-static`).
fn build_static(package: &str, faults: bool) -> Result<PathBuf, String> {
    // Each variant in a target directory of its own, apart from the debug
    // build, so that none rebuilds another.
    let target_dir = workspace().join(if faults {
        "target/static-faults"
    } else {
        "target/static"
    });
    let mut cmd = Command::new(workspace().join("scripts/build-static"));
    cmd.arg("--target-dir").arg(&target_dir);
    if faults {
        cmd.args(["--features", "faults"]);
    }
    let out = cmd
        .arg(package)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run scripts/build-static: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "scripts/build-static {package} failed (its messages are above): run scripts/setup \
             (it installs musl-tools and the musl target)"
        ));
    }
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(PathBuf::from(path))
}

fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The Debian cloud kernel's `vmlinuz`, downloaded once into the cache
/// (`apt-get download` of the package `linux-image-cloud-amd64` depends
/// on, unpacked with `dpkg -x`).
pub fn kernel() -> Result<PathBuf, String> {
    static FETCHED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FETCHED.get_or_init(fetch_kernel).clone()
}

/// The modules of the kernel package the tests need that are not built
/// in: efivarfs, for systemd-boot's variables; the watchdog core and
/// softdog, the kernel's own `/dev/watchdog`. (The cloud kernel has no
/// driver for a virtual watchdog device: no `i6300esb`, no `ib700wdt`, no
/// `iTCO_wdt`. softdog resets the machine from a kernel timer when PID 1
/// stops keeping it alive, which is the hang the recovery guards against.)
/// Then [`IDE_DISK`].
pub const MODULES: &[&str] = &[
    "efivarfs.ko",
    "watchdog.ko",
    "softdog.ko",
    "scsi_common.ko",
    "scsi_mod.ko",
    "sd_mod.ko",
    "libata.ko",
    "ata_piix.ko",
];

/// The modules an IDE disk (QEMU's PIIX) needs, in the order they load:
/// the disk of the U-Boot cycle (U-Boot boots from IDE, virtio or SCSI, not
/// NVMe; docs/bootloaders.md says why IDE), which the cloud kernel has as
/// modules only. The last entries of [`MODULES`].
pub const IDE_DISK: &[&str] = MODULES.split_at(3).1;

/// The modules a sample system loads, in this order, for a virtio network
/// card (QEMU's `-nic user,model=virtio-net-pci`): the cloud kernel builds
/// none of them in.
pub const NET_MODULES: &[&str] = &[
    "virtio_ring.ko",
    "virtio.ko",
    "virtio_pci_modern_dev.ko",
    "virtio_pci_legacy_dev.ko",
    "virtio_pci.ko",
    "failover.ko",
    "net_failover.ko",
    "virtio_net.ko",
];

/// The modules that mount the ESP (vfat, its code page and character
/// set: the cloud kernel's defaults, 437 and ascii), in load order: the
/// recovery and the sample systems count systemd-boot's trial boots in the
/// names of its entries there.
pub const FAT_MODULES: &[&str] = &["fat.ko", "vfat.ko", "nls_cp437.ko", "nls_ascii.ko"];

/// Every module of [`FAT_MODULES`], in load order.
pub fn fat_modules() -> Result<Vec<PathBuf>, String> {
    modules(FAT_MODULES)
}

/// Every module of [`NET_MODULES`], in load order.
pub fn net_modules() -> Result<Vec<PathBuf>, String> {
    kernel()?;
    Ok(NET_MODULES
        .iter()
        .map(|m| cache().join("kernel").join(m))
        .collect())
}

/// The efivarfs module, for the sample systems.
pub fn efivarfs_module() -> Result<PathBuf, String> {
    kernel()?;
    Ok(cache().join("kernel/efivarfs.ko"))
}

/// Every module of [`MODULES`] and [`FAT_MODULES`], for the recovery's
/// initramfs.
pub fn kernel_modules() -> Result<Vec<PathBuf>, String> {
    Ok([modules(MODULES)?, fat_modules()?].concat())
}

/// The modules of [`IDE_DISK`], in their order.
pub fn ide_disk_modules() -> Result<Vec<PathBuf>, String> {
    modules(IDE_DISK)
}

fn modules(names: &[&str]) -> Result<Vec<PathBuf>, String> {
    kernel()?;
    Ok(names
        .iter()
        .map(|m| cache().join("kernel").join(m))
        .collect())
}

fn fetch_kernel() -> Result<PathBuf, String> {
    let dir = cache().join("kernel");
    let vmlinuz = dir.join("vmlinuz");
    if vmlinuz.is_file()
        && MODULES
            .iter()
            .chain(NET_MODULES)
            .chain(FAT_MODULES)
            .all(|m| dir.join(m).is_file())
    {
        return Ok(vmlinuz);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let depends = run(
        Command::new("apt-cache").args(["depends", "linux-image-cloud-amd64"]),
        "apt-cache depends linux-image-cloud-amd64 (run apt-get update first)",
    )?;
    let package = depends
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .filter(|p| p.starts_with("linux-image-"))
        .ok_or("apt-cache names no kernel package for linux-image-cloud-amd64: run apt-get update")?
        .to_string();
    run(
        Command::new("apt-get")
            .current_dir(&dir)
            .args(["download", &package]),
        &format!("apt-get download {package}"),
    )?;
    let deb = std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or("apt-get download left no .deb")?;
    let unpacked = dir.join("unpacked");
    run(
        Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked),
        "dpkg -x",
    )?;
    let boot = unpacked.join("boot");
    let image = std::fs::read_dir(&boot)
        .map_err(|e| format!("{}: {e}", boot.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or("the kernel package holds no boot/vmlinuz-*")?;
    std::fs::copy(&image, &vmlinuz).map_err(|e| e.to_string())?;
    for name in MODULES.iter().chain(NET_MODULES).chain(FAT_MODULES) {
        let module = find_file(&unpacked.join("lib/modules"), name)
            .ok_or(format!("the kernel package holds no {name}"))?;
        std::fs::copy(module, dir.join(name)).map_err(|e| e.to_string())?;
    }
    let _ = std::fs::remove_dir_all(&unpacked);
    let _ = std::fs::remove_file(&deb);
    Ok(vmlinuz)
}

/// A real root file system: Debian bookworm minbase, made once with
/// `debootstrap` into the cache (the benchmark uses the same tree).
pub fn debian_minbase() -> Result<PathBuf, String> {
    static MADE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    MADE.get_or_init(|| {
        let dir = cache().join("bench/debian-minbase");
        if dir.join("etc/debian_version").is_file() {
            return Ok(dir);
        }
        let partial = cache().join("bench/debian-minbase.partial");
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(cache().join("bench")).map_err(|e| e.to_string())?;
        run(
            Command::new("debootstrap")
                .args(["--variant=minbase", "bookworm"])
                .arg(&partial)
                .arg("http://deb.debian.org/debian"),
            "debootstrap --variant=minbase bookworm (apt-get install debootstrap; needs root)",
        )?;
        std::fs::rename(&partial, &dir).map_err(|e| e.to_string())?;
        Ok(dir)
    })
    .clone()
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
    }
    None
}

/// Builds an initramfs with `config` and the trusted key `key` into `out`,
/// around the recovery with fault points.
pub fn initramfs(config: &Config, key: &Path, out: &Path) -> Result<u64, String> {
    let recovery = static_recovery_with_faults()?;
    let summary = image_builder::initramfs::build(&image_builder::initramfs::InitramfsRequest {
        recovery,
        trusted_keys: vec![key.to_path_buf()],
        modules: kernel_modules()?,
        config: config.clone(),
        sysroot: None,
        out: out.to_path_buf(),
    })
    .map_err(|e| e.to_string())?;
    Ok(summary.size)
}
