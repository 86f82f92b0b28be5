//! Asking for an update from the running system: the staged image is
//! verified with the recovery's own engine (signature, manifest, payload,
//! every entry, then product, version and size against this device), the
//! configuration on `cfg` is backed up, the instruction is written
//! atomically and the boot loader armed. Nothing is written while the
//! update lock is set, and nothing is half-written.

use crate::{backup, mounts};
use formats::bootflag::BootFlag;
use formats::cfg::{ATTEMPTS, INSTRUCTION, INSTRUCTION_CANCELLED, LOCK};
use formats::config::Config;
use formats::instruction::{Instruction, PartitionPath};
use recovery::admission::{self, Admission, Admitted};
use recovery::partitions::Disks;
use recovery::UpdateError;
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Each message names what failed; the cause (an OS error, the image's
/// refusal) is its `source()`, printed once after it by the command line.
#[derive(Debug, Error)]
pub enum RequestError {
    #[error("{path}: the update lock is set after repeated failures; clear it (bootloader-glue unlock) before asking again")]
    Locked { path: PathBuf },
    #[error("{path} does not exist: expected the cfg partition mounted there (or pass --cfg DIR)")]
    Missing { path: PathBuf },
    #[error("{path} is not a mount point: mount the cfg partition there, or pass --cfg DIR")]
    NotMounted { path: PathBuf },
    #[error("{path}: the cfg partition is mounted read-only; remount it read-write")]
    ReadOnly { path: PathBuf },
    #[error("{path}: the cfg partition is full; nothing was written")]
    Full { path: PathBuf },
    #[error("{path}: cannot write")]
    Write { path: PathBuf, source: io::Error },
    #[error("the staged image")]
    Image(#[from] UpdateError),
    #[error("{0}")]
    Partition(String),
    #[error("backing up the cfg partition into {storage}")]
    Backup { storage: PathBuf, source: io::Error },
    #[error("arming the boot loader")]
    Arm(#[source] io::Error),
    #[error("clearing the boot loader's flag")]
    Disarm(#[source] io::Error),
    #[error("stopping the boot loader's count of trial boots (the trial is still on)")]
    StopCount(#[source] io::Error),
    #[error("{0}; nothing was written")]
    NoRestore(String),
    #[error("{version} is on trial ({path}): confirm it first (bootloader-glue confirm), or let the recovery restore {previous}")]
    OnTrial {
        path: PathBuf,
        version: String,
        previous: String,
    },
}

/// Where the image to restore, should the update fail, comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// The installed version's image among the staged ones, beside the
    /// new image ([`crate::trial::restore_image_of`]).
    Find,
    /// This one (`--restore PARTITION:PATH`).
    Given(PartitionPath),
    /// None (`--no-restore`): a failed update cannot be undone.
    Without,
}

/// The cfg partition must be mounted at `cfg_root`: a missing or plain
/// directory would take records that no boot loader or recovery sees.
pub fn check_cfg(cfg_root: &Path) -> Result<(), RequestError> {
    let path = cfg_root.to_path_buf();
    if !cfg_root.is_dir() {
        return Err(RequestError::Missing { path });
    }
    if !mounts::is_mount_point(cfg_root) {
        return Err(RequestError::NotMounted { path });
    }
    Ok(())
}

fn write_error(path: PathBuf, source: io::Error) -> RequestError {
    match source.raw_os_error() {
        Some(nix::libc::EROFS) => RequestError::ReadOnly { path },
        Some(nix::libc::ENOSPC) => RequestError::Full { path },
        _ => RequestError::Write { path, source },
    }
}

/// Writes `instruction` as `cfg_root/update/instruction`, unless locked.
pub fn write_instruction(cfg_root: &Path, instruction: &Instruction) -> Result<(), RequestError> {
    let lock = cfg_root.join(LOCK);
    if lock.exists() {
        return Err(RequestError::Locked { path: lock });
    }
    let path = cfg_root.join(INSTRUCTION);
    formats::store::write_atomic(&path, instruction.render().as_bytes())
        .map_err(|e| write_error(path, e))
}

/// Clears the update lock (and the attempt count, so that the next
/// instruction gets its full number of attempts). Returns whether a lock
/// was set.
pub fn unlock(cfg_root: &Path) -> Result<bool, RequestError> {
    check_cfg(cfg_root)?;
    let lock = cfg_root.join(LOCK);
    let was_set = lock.exists();
    for path in [lock, cfg_root.join(ATTEMPTS)] {
        formats::store::remove_durably(&path).map_err(|e| write_error(path, e))?;
    }
    Ok(was_set)
}

/// Disarms a pending instruction (kept as `update/instruction.cancelled`)
/// and the boot loader's flag. Returns whether one was pending.
pub fn cancel(cfg_root: &Path, flag: &BootFlag) -> Result<bool, RequestError> {
    check_cfg(cfg_root)?;
    disarm(cfg_root, flag)
}

fn disarm(cfg_root: &Path, flag: &BootFlag) -> Result<bool, RequestError> {
    let path = cfg_root.join(INSTRUCTION);
    let pending = path.exists();
    if pending {
        let aside = cfg_root.join(INSTRUCTION_CANCELLED);
        formats::store::rename_durably(&path, &aside).map_err(|e| write_error(path, e))?;
    }
    flag.disarm().map_err(RequestError::Disarm)?;
    Ok(pending)
}

pub struct Request {
    /// Where the cfg partition is mounted.
    pub cfg: PathBuf,
    pub manifest: PartitionPath,
    pub target: String,
    pub allow_downgrade: bool,
    /// The device's policy: product, allowed targets, downgrades.
    pub config: Config,
    pub trusted_keys: Vec<PathBuf>,
    pub flag: BootFlag,
    /// Seconds since 1970, for the instruction and the backup's name.
    pub now: u64,
    pub restore: Restore,
}

/// The recovery's admission check ([`recovery::admission::admit`]) on the
/// running system, with the image's partition mounted at `storage`.
pub fn admit(
    r: &Request,
    instruction: &Instruction,
    storage: &Path,
    disks: &Disks,
) -> Result<Admitted, RequestError> {
    // The target is mounted here (it is the running system): only the
    // recovery, which erases it, requires it unmounted.
    let target = recovery::policy::check_target(&r.config, instruction, disks, &[])?;
    Ok(admission::admit(&Admission {
        config: &r.config,
        instruction,
        manifest: &storage.join(&r.manifest.path),
        trusted_keys: &r.trusted_keys,
        cfg: &r.cfg,
        target,
    })?)
}

/// The instruction's `restore=`: given, found beside the new image, or
/// none; refused when none is there and the configuration requires one
/// (`restore-image=required`, the default), else a warning.
fn restore_image(r: &Request, storage: &Path) -> Result<Option<PartitionPath>, RequestError> {
    let installed = recovery::policy::InstalledVersion::from_read(std::fs::read(
        r.cfg.join(formats::cfg::INSTALLED),
    ));
    let found = match &r.restore {
        Restore::Given(image) => return Ok(Some(image.clone())),
        Restore::Without => None,
        Restore::Find => {
            // Beside the new image.
            let dir = Path::new(&r.manifest.path)
                .parent()
                .and_then(Path::to_str)
                .unwrap_or("");
            installed.known().and_then(|i| {
                crate::trial::restore_image_of(storage, &r.manifest.partition, dir, i)
            })
        }
    };
    if found.is_none() {
        let why = crate::trial::no_restore_image(installed.known());
        if r.config.restore_required && r.restore == Restore::Find {
            return Err(RequestError::NoRestore(why));
        }
        log::warn!("{why}");
    }
    Ok(found)
}

pub struct Requested {
    pub product: String,
    pub version: String,
    pub backup: PathBuf,
}

pub fn request(r: &Request) -> Result<Requested, RequestError> {
    check_cfg(&r.cfg)?;
    let lock = r.cfg.join(LOCK);
    if lock.exists() {
        return Err(RequestError::Locked { path: lock });
    }
    if let Some(trial) = crate::trial::read_trial(&r.cfg).map_err(RequestError::Partition)? {
        return Err(RequestError::OnTrial {
            path: r.cfg.join(formats::cfg::TRIAL),
            version: trial.version,
            previous: trial.previous,
        });
    }
    let disks = recovery::partitions::scan();
    let storage =
        mounts::mount_point_of(&disks, &r.manifest.partition).map_err(RequestError::Partition)?;
    let instruction = Instruction {
        manifest: r.manifest.clone(),
        target: r.target.clone(),
        allow_downgrade: r.allow_downgrade,
        requested: r.now,
        restore: restore_image(r, &storage)?,
    };
    let admitted = admit(r, &instruction, &storage, &disks)?;
    let image = admitted.image;
    let backup = backup::save(&r.cfg, &storage, r.now).map_err(|source| RequestError::Backup {
        storage: storage.clone(),
        source,
    })?;
    write_instruction(&r.cfg, &instruction)?;
    if let Err(e) = r.flag.arm() {
        // Not armed: the instruction must not wait for a boot that may
        // never come to it.
        let _ = disarm(&r.cfg, &BootFlag::None);
        return Err(RequestError::Arm(e));
    }
    Ok(Requested {
        product: image.manifest.product,
        version: image.manifest.version,
        backup,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_unless_locked_and_unlocks_and_cancels() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let ins = Instruction {
            manifest: PartitionPath::parse("storage:updates/p-1.manifest").unwrap(),
            target: "system".into(),
            allow_downgrade: false,
            requested: 1,
            restore: None,
        };
        write_instruction(dir, &ins).unwrap();
        let written = std::fs::read(dir.join(INSTRUCTION)).unwrap();
        assert_eq!(Instruction::parse(&written).unwrap(), ins);
        std::fs::write(dir.join(LOCK), "").unwrap();
        assert!(matches!(
            write_instruction(dir, &ins),
            Err(RequestError::Locked { .. })
        ));
        std::fs::remove_file(dir.join(LOCK)).unwrap();
        assert!(disarm(dir, &BootFlag::None).unwrap());
        assert!(!dir.join(INSTRUCTION).exists());
        assert!(dir.join(INSTRUCTION_CANCELLED).exists());
        assert!(!disarm(dir, &BootFlag::None).unwrap());
    }

    #[test]
    fn unlock_and_cancel_refuse_a_cfg_that_is_missing_or_not_mounted() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("cfg");
        for err in [
            unlock(&missing).unwrap_err(),
            cancel(&missing, &BootFlag::None).unwrap_err(),
        ] {
            assert!(matches!(err, RequestError::Missing { .. }), "{err}");
            assert!(err
                .to_string()
                .starts_with(&format!("{} does not exist", missing.display())));
        }
        for err in [
            unlock(dir.path()).unwrap_err(),
            cancel(dir.path(), &BootFlag::None).unwrap_err(),
        ] {
            assert!(matches!(err, RequestError::NotMounted { .. }), "{err}");
        }
    }

    #[test]
    fn each_cause_is_printed_once() {
        let os = io::Error::from_raw_os_error(nix::libc::EIO);
        let err = write_error(PathBuf::from("/cfg/update/instruction"), os);
        let text = crate::cli::message(err);
        assert_eq!(
            text,
            "/cfg/update/instruction: cannot write: Input/output error (os error 5)"
        );
        let err = RequestError::Disarm(io::Error::from_raw_os_error(nix::libc::EPERM));
        let text = crate::cli::message(err);
        assert_eq!(text.matches("Operation not permitted").count(), 1, "{text}");
        assert!(
            text.starts_with("clearing the boot loader's flag: "),
            "{text}"
        );
    }

    #[test]
    fn a_directory_that_is_not_a_mount_point_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let r = Request {
            cfg: dir.path().to_path_buf(),
            manifest: PartitionPath::parse("storage:x.manifest").unwrap(),
            target: "system".into(),
            allow_downgrade: false,
            config: Config::for_product("p"),
            trusted_keys: vec![],
            flag: BootFlag::None,
            now: 0,
            restore: Restore::Find,
        };
        let err = request(&r).err().expect("refused").to_string();
        assert!(err.contains("is not a mount point"), "{err}");
    }

    #[test]
    fn the_restore_image_is_found_given_or_refused_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("cfg");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(cfg.join("update")).unwrap();
        std::fs::create_dir_all(storage.join("updates")).unwrap();
        let installed = formats::result::Installed {
            product: "p".into(),
            version: "1.0".into(),
        };
        std::fs::write(cfg.join(formats::cfg::INSTALLED), installed.render()).unwrap();
        let mut r = Request {
            cfg,
            manifest: PartitionPath::parse("storage:updates/p-2.0.manifest").unwrap(),
            target: "system".into(),
            allow_downgrade: false,
            config: Config::for_product("p"),
            trusted_keys: vec![],
            flag: BootFlag::None,
            now: 0,
            restore: Restore::Find,
        };
        let err = restore_image(&r, &storage).unwrap_err().to_string();
        assert!(
            err.starts_with("no image of 1.0 to restore: a failed update could not be undone"),
            "{err}"
        );
        r.config.restore_required = false;
        assert_eq!(restore_image(&r, &storage).unwrap(), None);
        r.config.restore_required = true;
        r.restore = Restore::Without;
        assert_eq!(restore_image(&r, &storage).unwrap(), None);
        std::fs::write(storage.join("updates/p-1.0.manifest"), "").unwrap();
        r.restore = Restore::Find;
        assert_eq!(
            restore_image(&r, &storage).unwrap().unwrap().to_string(),
            "storage:updates/p-1.0.manifest"
        );
        // Beside the new image, wherever the agent's storage-dir put it.
        std::fs::create_dir_all(storage.join("agent/images")).unwrap();
        std::fs::write(storage.join("agent/images/p-1.0.swu"), "").unwrap();
        r.manifest = PartitionPath::parse("storage:agent/images/p-2.0.swu").unwrap();
        assert_eq!(
            restore_image(&r, &storage).unwrap().unwrap().to_string(),
            "storage:agent/images/p-1.0.swu"
        );
        let given = PartitionPath::parse("storage:old/p-1.0.swu").unwrap();
        r.restore = Restore::Given(given.clone());
        assert_eq!(restore_image(&r, &storage).unwrap(), Some(given));
    }

    /// The recovery (before the erase) and `request` (before the
    /// instruction) come to the same decision on the same device: one
    /// admission check, whatever `cfg:update/installed` holds.
    #[test]
    fn request_and_recovery_admit_alike() {
        use formats::cfg::INSTALLED;
        use formats::config::Downgrade;
        use recovery::partitions::Partition;
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("hello"), "hello\n").unwrap();
        let (public, secret) = image_builder::keygen::keygen(&dir.path().join("key")).unwrap();
        let storage = dir.path().join("storage");
        image_builder::image::build(&image_builder::image::ImageRequest {
            source: image_builder::image::Source::Rootfs(tree),
            product: "p".into(),
            version: "2.0".into(),
            key: secret,
            out_dir: storage.join("updates"),
            compression: image_builder::payload::Compression {
                level: 1,
                threads: 1,
            },
            created: 1_700_000_000,
            allow_unsafe_paths: false,
            show_progress: false,
        })
        .unwrap();
        // The same image as one bundle, alone in its directory.
        image_builder::bundle::build(&image_builder::bundle::BundleRequest {
            manifest: storage.join("updates/p-2.0.manifest"),
            out_dir: storage.join("bundles"),
            hardware: vec![],
        })
        .unwrap();
        let cfg = dir.path().join("cfg");
        std::fs::create_dir_all(cfg.join("update")).unwrap();
        let disks = Disks {
            partitions: ["cfg", "system", "storage"]
                .iter()
                .zip(2..)
                .map(|(name, n)| Partition {
                    name: name.to_string(),
                    kernel_name: format!("nvme0n1p{n}"),
                    device: format!("/dev/nvme0n1p{n}").into(),
                    dev: format!("259:{n}"),
                    size: 256 << 20,
                })
                .collect(),
            seen: vec!["nvme0n1: cfg, system, storage".into()],
        };
        let installed = |version: &str| {
            formats::result::Installed {
                product: "p".into(),
                version: version.into(),
            }
            .render()
        };
        let mut decisions = Vec::new();
        for (image, record) in [
            "storage:updates/p-2.0.manifest",
            "storage:bundles/p-2.0.swu",
        ]
        .into_iter()
        .flat_map(|image| {
            [
                None,
                Some(installed("1.0")),
                Some(installed("3.0")),
                Some("garbage\n".into()),
            ]
            .map(|record| (image, record))
        }) {
            match &record {
                Some(text) => std::fs::write(cfg.join(INSTALLED), text).unwrap(),
                None => {
                    let _ = std::fs::remove_file(cfg.join(INSTALLED));
                }
            }
            for downgrade in [Downgrade::Refuse, Downgrade::Allow] {
                let mut config = Config::for_product("p");
                config.downgrade = downgrade;
                let r = Request {
                    cfg: cfg.clone(),
                    manifest: PartitionPath::parse(image).unwrap(),
                    target: "system".into(),
                    allow_downgrade: false,
                    config,
                    trusted_keys: vec![public.clone()],
                    flag: BootFlag::None,
                    now: 0,
                    restore: Restore::Without,
                };
                let instruction = Instruction {
                    manifest: r.manifest.clone(),
                    target: r.target.clone(),
                    allow_downgrade: r.allow_downgrade,
                    requested: r.now,
                    restore: None,
                };
                let asked = admit(&r, &instruction, &storage, &disks).map(|_| ());
                // What the recovery's verify_image runs, with the target it
                // checked (unmounted there).
                let target =
                    recovery::policy::check_target(&r.config, &instruction, &disks, &[]).unwrap();
                let recovered = admission::admit(&Admission {
                    config: &r.config,
                    instruction: &instruction,
                    manifest: &storage.join(&r.manifest.path),
                    trusted_keys: &r.trusted_keys,
                    cfg: &cfg,
                    target,
                })
                .map(|_| ());
                let asked = asked.map_err(|e| match e {
                    RequestError::Image(e) => e,
                    other => panic!("not an admission error: {other}"),
                });
                assert_eq!(asked, recovered, "{image} {record:?} {downgrade:?}");
                decisions.push(asked.is_ok());
            }
        }
        // Missing, older, newer and garbage under refuse and allow, for
        // the three files and for the bundle alike.
        let each = [true, true, true, true, false, true, true, true];
        assert_eq!(decisions, [each, each].concat());
    }
}
