//! Asking for an update from the running system: the staged image is
//! verified with the recovery's own engine (signature, manifest, payload,
//! every entry, then product, version and size against this device, and
//! not the version the last restore took away), so is the image a failed
//! update would be restored from, the configuration on `cfg` is backed
//! up, the instruction is written atomically and the boot loader armed.
//! Nothing is written while the update lock is set, and nothing is
//! half-written.

use crate::{backup, mounts};
use formats::bootflag::BootFlag;
use formats::cfg::{ATTEMPTS, INSTRUCTION, INSTRUCTION_CANCELLED, LOCK, RETRY_RESTORED};
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
    /// The operator's leave to install the version the last restore took
    /// away (`--retry-restored`), recorded on `cfg` for the recovery.
    pub retry_restored: bool,
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
    Ok(admission::admit_retrying(
        &Admission {
            config: &r.config,
            instruction,
            manifest: &storage.join(&r.manifest.path),
            trusted_keys: &r.trusted_keys,
            cfg: &r.cfg,
            target,
            purpose: admission::Purpose::Update,
        },
        r.retry_restored,
    )?)
}

/// The instruction's `restore=`: given, found beside the new image, or
/// none; refused when none is there and the configuration requires one
/// (`restore-image=required`, the default), else a warning. Cheap: the
/// image is admitted by [`admit_restore_image`], after the new one.
fn find_restore_image(r: &Request, storage: &Path) -> Result<Option<PartitionPath>, RequestError> {
    let installed = recovery::policy::InstalledVersion::from_read(std::fs::read(
        r.cfg.join(formats::cfg::INSTALLED),
    ));
    let found = match &r.restore {
        Restore::Given(image) => Some(image.clone()),
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

/// Admits the restore image `found` ([`admission::admit_restore`]: every
/// check of the image, this product, the installed version). One that
/// fails a check is refused where the configuration requires a restore
/// image, else a warning and no `restore=`. `mount` finds where a
/// partition other than the new image's (mounted at `storage`) is.
fn admit_restore_image(
    r: &Request,
    found: Option<PartitionPath>,
    storage: &Path,
    mount: &dyn Fn(&str) -> Result<PathBuf, String>,
) -> Result<Option<PartitionPath>, RequestError> {
    let Some(image) = found else {
        return Ok(None);
    };
    let root = if image.partition == r.manifest.partition {
        storage.to_path_buf()
    } else {
        mount(&image.partition).map_err(RequestError::Partition)?
    };
    let path = root.join(&image.path);
    match admission::admit_restore(&r.config, &path, &r.trusted_keys, &r.cfg) {
        Ok(_) => Ok(Some(image)),
        Err(e) => {
            let why = crate::trial::bad_restore_image(&path, &e);
            if r.config.restore_required {
                return Err(RequestError::NoRestore(why));
            }
            log::warn!("{why}; requested without an image to restore");
            Ok(None)
        }
    }
}

pub struct Requested {
    pub product: String,
    pub version: String,
    pub backup: PathBuf,
}

pub fn request(r: &Request) -> Result<Requested, RequestError> {
    check_cfg(&r.cfg)?;
    let disks = recovery::partitions::scan();
    request_on(r, &disks, &|partition| {
        mounts::mount_point_of(&disks, partition)
    })
}

/// [`request`] once `cfg` is found mounted: `disks` are this system's
/// partitions, `mount` says where one of them is mounted.
fn request_on(
    r: &Request,
    disks: &Disks,
    mount: &dyn Fn(&str) -> Result<PathBuf, String>,
) -> Result<Requested, RequestError> {
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
    let storage = mount(&r.manifest.partition).map_err(RequestError::Partition)?;
    // A missing restore image first (cheap), then the new image, then
    // the restore image: each refusal as soon as it can be known.
    let found = find_restore_image(r, &storage)?;
    let mut instruction = Instruction {
        manifest: r.manifest.clone(),
        target: r.target.clone(),
        allow_downgrade: r.allow_downgrade,
        requested: r.now,
        restore: None,
    };
    let admitted = admit(r, &instruction, &storage, disks)?;
    instruction.restore = admit_restore_image(r, found, &storage, mount)?;
    let image = admitted.image;
    let backup = backup::save(&r.cfg, &storage, r.now).map_err(|source| RequestError::Backup {
        storage: storage.clone(),
        source,
    })?;
    if let Some(away) = &admitted.retried {
        // Before the instruction: the recovery admits it on this leave.
        let path = r.cfg.join(RETRY_RESTORED);
        formats::store::write_atomic(&path, away.leave().render().as_bytes())
            .map_err(|e| write_error(path, e))?;
    }
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

    /// The request of these tests: the image `manifest` (`PARTITION:PATH`)
    /// of product `p` into `system`, with `cfg`; change a field with `..`.
    fn fixture(cfg: &Path, manifest: &str) -> Request {
        Request {
            cfg: cfg.to_path_buf(),
            manifest: PartitionPath::parse(manifest).unwrap(),
            target: "system".into(),
            allow_downgrade: false,
            config: Config::for_product("p"),
            trusted_keys: vec![],
            flag: BootFlag::None,
            now: 0,
            restore: Restore::Find,
            retry_restored: false,
        }
    }

    #[test]
    fn a_directory_that_is_not_a_mount_point_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let r = fixture(dir.path(), "storage:x.manifest");
        let err = request(&r).err().expect("refused").to_string();
        assert!(err.contains("is not a mount point"), "{err}");
    }

    /// A disk with cfg, system and storage, 256 MiB each.
    fn disks() -> Disks {
        Disks {
            partitions: ["cfg", "system", "storage"]
                .iter()
                .zip(2..)
                .map(|(name, n)| recovery::partitions::Partition {
                    name: name.to_string(),
                    kernel_name: format!("nvme0n1p{n}"),
                    device: format!("/dev/nvme0n1p{n}").into(),
                    dev: format!("259:{n}"),
                    size: 256 << 20,
                })
                .collect(),
            seen: vec!["nvme0n1: cfg, system, storage".into()],
        }
    }

    /// Builds the image `p`-`version` of a one-file tree into `out`,
    /// signed with the secret key `key`.
    fn build(version: &str, key: &Path, out: &Path) {
        let tree = out.join(format!("tree-{version}"));
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("hello"), format!("{version}\n")).unwrap();
        image_builder::image::build(&image_builder::image::ImageRequest::fixture(
            image_builder::image::Source::Rootfs(tree.clone()),
            "p",
            version,
            key,
            out,
        ))
        .unwrap();
        std::fs::remove_dir_all(tree).unwrap();
    }

    /// A device: cfg (1.0 installed), storage with 1.0 and 2.0 staged in
    /// `updates/`, signed by the trusted key; a request of 2.0.
    struct Device {
        dir: tempfile::TempDir,
        /// The secret key of the vendor's key, which the device trusts.
        key: PathBuf,
        /// The secret key of a key the device does not trust.
        stranger: PathBuf,
        request: Request,
    }

    impl Device {
        fn new() -> Device {
            let dir = tempfile::tempdir().unwrap();
            let (public, secret) =
                image_builder::keygen::keygen(&dir.path().join("vendor")).unwrap();
            let (_, stranger) =
                image_builder::keygen::keygen(&dir.path().join("stranger")).unwrap();
            let cfg = dir.path().join("cfg");
            let updates = dir.path().join("storage/updates");
            std::fs::create_dir_all(cfg.join("update")).unwrap();
            for version in ["1.0", "2.0"] {
                build(version, &secret, &updates);
            }
            let installed = formats::result::Installed {
                product: "p".into(),
                version: "1.0".into(),
            };
            std::fs::write(cfg.join(formats::cfg::INSTALLED), installed.render()).unwrap();
            let request = Request {
                trusted_keys: vec![public],
                now: 1_800_000_000,
                ..fixture(&cfg, "storage:updates/p-2.0.manifest")
            };
            Device {
                dir,
                key: secret,
                stranger,
                request,
            }
        }

        fn storage(&self) -> PathBuf {
            self.dir.path().join("storage")
        }

        /// The restore image found and admitted, as `request` does.
        fn restore_image(&self) -> Result<Option<PartitionPath>, RequestError> {
            let storage = self.storage();
            let found = find_restore_image(&self.request, &storage)?;
            admit_restore_image(&self.request, found, &storage, &|p| {
                Err(format!("no partition named {p}"))
            })
        }

        /// The whole request, with cfg and storage where they are here.
        fn request(&self) -> Result<Requested, RequestError> {
            let storage = self.storage();
            request_on(&self.request, &disks(), &|p| match p {
                "storage" => Ok(storage.clone()),
                other => Err(format!("no partition named {other}")),
            })
        }

        fn cfg(&self, rel: &str) -> PathBuf {
            self.request.cfg.join(rel)
        }
    }

    #[test]
    fn the_restore_image_is_found_given_or_refused_when_missing() {
        let mut d = Device::new();
        let updates = d.storage().join("updates");
        assert_eq!(
            d.restore_image().unwrap().unwrap().to_string(),
            "storage:updates/p-1.0.manifest"
        );
        for name in ["p-1.0.manifest", "p-1.0.manifest.minisig", "p-1.0.tar.zst"] {
            std::fs::rename(updates.join(name), d.storage().join(name)).unwrap();
        }
        let err = d.restore_image().unwrap_err().to_string();
        assert!(
            err.starts_with("no image of 1.0 to restore: a failed update could not be undone"),
            "{err}"
        );
        d.request.config.restore_required = false;
        assert_eq!(d.restore_image().unwrap(), None);
        d.request.config.restore_required = true;
        d.request.restore = Restore::Without;
        assert_eq!(d.restore_image().unwrap(), None);
        // Given anywhere on the partition, it is admitted there.
        let given = PartitionPath::parse("storage:p-1.0.manifest").unwrap();
        d.request.restore = Restore::Given(given.clone());
        assert_eq!(d.restore_image().unwrap(), Some(given));
        // Beside the new image, wherever the agent's storage-dir put it:
        // the bundle of 1.0.
        let images = d.storage().join("agent/images");
        image_builder::bundle::build(&image_builder::bundle::BundleRequest {
            manifest: d.storage().join("p-1.0.manifest"),
            out_dir: images.clone(),
            hardware: vec![],
        })
        .unwrap();
        d.request.restore = Restore::Find;
        d.request.manifest = PartitionPath::parse("storage:agent/images/p-2.0.swu").unwrap();
        assert_eq!(
            d.restore_image().unwrap().unwrap().to_string(),
            "storage:agent/images/p-1.0.swu"
        );
        // On another partition, where it is mounted.
        d.request.restore = Restore::Given(PartitionPath::parse("data:p-1.0.manifest").unwrap());
        let err = d.restore_image().unwrap_err().to_string();
        assert_eq!(err, "no partition named data");
    }

    /// The restore image is admitted as an update would be: a trusted
    /// signature, this product, the installed version, its payload whole.
    /// Refused naming the file and the check, or (`restore-image=optional`)
    /// warned and left out of the instruction.
    #[test]
    fn a_restore_image_that_fails_a_check_is_refused_naming_file_and_check() {
        let mut d = Device::new();
        let updates = d.storage().join("updates");
        let manifest = updates.join("p-1.0.manifest");
        let shown = manifest.display().to_string();
        let good: Vec<(PathBuf, Vec<u8>)> =
            ["p-1.0.manifest", "p-1.0.manifest.minisig", "p-1.0.tar.zst"]
                .iter()
                .map(|n| (updates.join(n), std::fs::read(updates.join(n)).unwrap()))
                .collect();
        let restore_good = || {
            for (path, bytes) in &good {
                std::fs::write(path, bytes).unwrap();
            }
        };
        let payload = updates.join("p-1.0.tar.zst");
        type Damage<'a> = (&'static str, Box<dyn Fn() + 'a>);
        let damages: Vec<Damage> = vec![
            (
                "signature: ",
                Box::new(|| {
                    let other = d.dir.path().join("other");
                    build("1.0", &d.stranger, &other);
                    std::fs::copy(
                        other.join("p-1.0.manifest.minisig"),
                        updates.join("p-1.0.manifest.minisig"),
                    )
                    .unwrap();
                }),
            ),
            (
                "payload: ",
                Box::new(|| {
                    let bytes = std::fs::read(&payload).unwrap();
                    std::fs::write(&payload, &bytes[..bytes.len() - 1]).unwrap();
                }),
            ),
            (
                "payload: ",
                Box::new(|| std::fs::remove_file(&payload).unwrap()),
            ),
            (
                "payload: ",
                Box::new(|| {
                    let mut bytes = std::fs::read(&payload).unwrap();
                    let mid = bytes.len() / 2;
                    bytes[mid] ^= 1;
                    std::fs::write(&payload, bytes).unwrap();
                }),
            ),
        ];
        for (check, damage) in &damages {
            restore_good();
            damage();
            let err = d.restore_image().unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("restore image {shown}: {check}")),
                "{check}: {err}"
            );
            assert!(
                err.contains(": a failed update could not be undone")
                    && err.ends_with("; nothing was written"),
                "{err}"
            );
        }
        // The signature's message says which key and why.
        restore_good();
        damages[0].1();
        let err = d.restore_image().unwrap_err().to_string();
        assert!(err.contains("p-1.0.manifest.minisig"), "{err}");
        // The flipped byte: its BLAKE3.
        restore_good();
        damages[3].1();
        let err = d.restore_image().unwrap_err().to_string();
        assert!(err.contains("BLAKE3"), "{err}");
        // Another version than the installed one (the one a restore
        // brings back), named as given.
        restore_good();
        build("0.9", &d.key, &updates);
        d.request.restore =
            Restore::Given(PartitionPath::parse("storage:updates/p-0.9.manifest").unwrap());
        let err = d.restore_image().unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "restore image {}: policy: {}: version: the image is of 0.9, the installed \
                 version (the one a restore brings back) is 1.0: a failed update could not be \
                 undone (stage a good image of the installed version, or pass --restore \
                 PARTITION:PATH); nothing was written",
                updates.join("p-0.9.manifest").display(),
                updates.join("p-0.9.manifest").display(),
            )
        );
        // restore-image=optional: a warning, and no restore= at all.
        d.request.config.restore_required = false;
        assert_eq!(d.restore_image().unwrap(), None);
        // The whole request: refused, nothing written.
        d.request.config.restore_required = true;
        d.request.restore = Restore::Find;
        damages[0].1();
        let err = d.request().err().expect("refused").to_string();
        assert!(err.starts_with("restore image "), "{err}");
        assert!(!d.cfg(INSTRUCTION).exists());
        // Both refused: the new image's refusal is the one said.
        d.request.manifest = PartitionPath::parse("storage:updates/p-9.manifest").unwrap();
        let err = crate::cli::message(d.request().err().expect("refused"));
        assert!(err.starts_with("the staged image: manifest: "), "{err}");
        d.request.manifest = PartitionPath::parse("storage:updates/p-2.0.manifest").unwrap();
        // A good one: named in the instruction.
        restore_good();
        d.request().unwrap();
        let written = Instruction::parse(&std::fs::read(d.cfg(INSTRUCTION)).unwrap()).unwrap();
        assert_eq!(
            written.restore.unwrap().to_string(),
            "storage:updates/p-1.0.manifest"
        );
    }

    /// The result of the restore that took 2.0 away (1.0 back).
    fn restored_away() -> formats::result::UpdateResult {
        formats::result::UpdateResult::parse(
            formats::keyvalue::seal(
                "format=1\noutcome=restored\nversion=2.0\nstage=trial\nreason=2.0 not \
                 confirmed after 3 boots\nattempt=1\nstarted=1700000000\nfinished=1700000100\n\
                 duration-ms=0\nbytes=0\nentries=0\nrestored=1.0\n",
            )
            .as_bytes(),
        )
        .unwrap()
    }

    /// 2.0 restored away (not confirmed): a request of 2.0 is refused
    /// with the date and why, nothing written, also after a later result
    /// (2.1 refused); a newer version is requested as usual;
    /// `--retry-restored` requests 2.0 and leaves the leave on cfg for
    /// the recovery, keyed on that restore's record: a later restore of
    /// 2.0 at the very same time (no RTC) is not answered by it.
    #[test]
    fn a_version_restored_away_is_requested_again_only_on_the_operators_leave() {
        use formats::cfg::{RESTORED_AWAY, RESULT};
        use recovery::admission::record_restored_away;
        let mut d = Device::new();
        let restore = restored_away();
        record_restored_away(&d.request.cfg, &restore).unwrap();
        std::fs::write(d.cfg(RESULT), restore.render()).unwrap();
        let refusal = "the staged image: policy: storage:updates/p-2.0.manifest: version: 2.0 \
                       was restored away on 2023-11-14T22:15:00Z (1.0 restored): 2.0 not \
                       confirmed after 3 boots; a newer version is admitted, or an operator \
                       installs 2.0 again with `bootloader-glue request --retry-restored`";
        let err = crate::cli::message(d.request().err().expect("refused"));
        assert_eq!(err, refusal);
        assert!(!d.cfg(INSTRUCTION).exists());
        assert!(!d.cfg(RETRY_RESTORED).exists());
        // A newer version: as usual, and no leave.
        build("2.1", &d.key, &d.storage().join("updates"));
        d.request.manifest = PartitionPath::parse("storage:updates/p-2.1.manifest").unwrap();
        d.request().unwrap();
        assert!(d.cfg(INSTRUCTION).exists());
        assert!(!d.cfg(RETRY_RESTORED).exists());
        std::fs::remove_file(d.cfg(INSTRUCTION)).unwrap();
        // The recovery refused 2.1: 2.0 is still refused.
        let refused = formats::result::UpdateResult {
            outcome: formats::result::Outcome::Refused,
            version: "2.1".into(),
            restored: None,
            instruction: None,
            ..restore.clone()
        };
        std::fs::write(d.cfg(RESULT), refused.render()).unwrap();
        d.request.manifest = PartitionPath::parse("storage:updates/p-2.0.manifest").unwrap();
        let err = crate::cli::message(d.request().err().expect("refused"));
        assert_eq!(err, refusal);
        // The operator's leave: requested, and recorded before the
        // instruction for the recovery, which then admits it too.
        d.request.retry_restored = true;
        let done = d.request().unwrap();
        assert_eq!(done.version, "2.0");
        let leave_bytes = std::fs::read(d.cfg(RETRY_RESTORED)).unwrap();
        let leave = formats::cfg::RetryRestored::parse(&leave_bytes).unwrap();
        let record = std::fs::read(d.cfg(RESTORED_AWAY)).unwrap();
        assert_eq!(
            (leave.version.as_str(), leave.record.as_str()),
            (
                "2.0",
                recovery::policy::RestoredAway::of_record(&record)
                    .unwrap()
                    .key
                    .as_str()
            )
        );
        // Recorded, it stands for the next request without the flag.
        std::fs::remove_file(d.cfg(INSTRUCTION)).unwrap();
        d.request.retry_restored = false;
        d.request().unwrap();
        // A later restore of 2.0, finished at the same second: the stale
        // leave (even put back) does not answer it.
        record_restored_away(&d.request.cfg, &restore).unwrap();
        std::fs::write(d.cfg(RETRY_RESTORED), &leave_bytes).unwrap();
        std::fs::remove_file(d.cfg(INSTRUCTION)).unwrap();
        let err = crate::cli::message(d.request().err().expect("refused"));
        assert_eq!(err, refusal);
    }

    /// The recovery (before the erase) and `request` (before the
    /// instruction) come to the same decision on the same device: one
    /// admission check, whatever `cfg:update/installed` holds.
    #[test]
    fn request_and_recovery_admit_alike() {
        use formats::cfg::INSTALLED;
        use formats::config::Downgrade;
        let dir = tempfile::tempdir().unwrap();
        let (public, secret) = image_builder::keygen::keygen(&dir.path().join("key")).unwrap();
        let storage = dir.path().join("storage");
        build("2.0", &secret, &storage.join("updates"));
        // The same image as one bundle, alone in its directory.
        image_builder::bundle::build(&image_builder::bundle::BundleRequest {
            manifest: storage.join("updates/p-2.0.manifest"),
            out_dir: storage.join("bundles"),
            hardware: vec![],
        })
        .unwrap();
        let cfg = dir.path().join("cfg");
        std::fs::create_dir_all(cfg.join("update")).unwrap();
        let disks = disks();
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
                    config,
                    trusted_keys: vec![public.clone()],
                    restore: Restore::Without,
                    ..fixture(&cfg, image)
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
                    purpose: admission::Purpose::Update,
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
