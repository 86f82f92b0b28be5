//! The running system's side of trial boots and restores: the image of
//! the installed version that a failed update is restored from (found on
//! storage for `request` and `status`), and `confirm`, which ends the
//! trial of a new system that works.

use crate::request::{check_cfg, RequestError};
use formats::bootflag::BootFlag;
use formats::cfg::{shown, INSTALLED, INSTRUCTION, RESTORE, RESULT, TRIAL};
use formats::instruction::{Instruction, PartitionPath};
use formats::result::{Installed, Outcome, UpdateResult};
use formats::trial::{PendingRestore, Trial};
use std::path::{Path, PathBuf};

/// Where `status` looks for the installed version's image on the
/// `storage` partition (the agent's default `storage-dir`).
pub const IMAGES_DIR: &str = "updates";

/// The file name of the image of `installed` among the staged images in
/// `dir`: `P-V.manifest`, else the bundle `P-V.swu`.
pub fn restore_image_in(dir: &Path, installed: &Installed) -> Option<String> {
    use formats::manifest::Manifest;
    let (product, version) = (&installed.product, &installed.version);
    let bundle = format!(
        "{}.{}",
        Manifest::file_stem(product, version),
        formats::bundle::EXTENSION
    );
    [Manifest::manifest_name(product, version), bundle]
        .into_iter()
        .find(|name| dir.join(name).is_file())
}

/// The image of `installed` ([`restore_image_in`]) in the directory `dir`
/// (relative) of `partition`, mounted at `root`: `PARTITION:DIR/P-V.manifest`
/// or `.swu`.
pub fn restore_image_of(
    root: &Path,
    partition: &str,
    dir: &str,
    installed: &Installed,
) -> Option<PartitionPath> {
    let name = restore_image_in(&root.join(dir), installed)?;
    let rel = match dir.trim_end_matches('/') {
        "" => name,
        dir => format!("{dir}/{name}"),
    };
    PartitionPath::parse(&format!("{partition}:{rel}"))
}

/// The file names of the images a restore may come from, which deleting
/// old images must keep: the installed version's image in `images`
/// ([`restore_image_in`]) and the images the records on `cfg` name (a
/// pending instruction's `restore=`, the trial's, a pending restore's).
/// A record that is there but unreadable (`update/installed` too) is an
/// error: it may name one.
pub fn restore_images(cfg: &Path, images: &Path) -> Result<Vec<String>, String> {
    let read = |rel: &str| match std::fs::read(cfg.join(rel)) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", shown(rel))),
    };
    let unreadable = |rel: &'static str| move |e: String| format!("{}: {e}", shown(rel));
    let mut named: Vec<PartitionPath> = Vec::new();
    if let Some(bytes) = read(INSTRUCTION)? {
        let instruction = Instruction::parse(&bytes)
            .map_err(|e| e.to_string())
            .map_err(unreadable(INSTRUCTION))?;
        named.extend(instruction.restore);
    }
    named.extend(read_trial(cfg)?.map(|t| t.restore));
    if let Some(bytes) = read(RESTORE)? {
        let pending = PendingRestore::parse(&bytes)
            .map_err(|e| e.to_string())
            .map_err(unreadable(RESTORE))?;
        named.push(pending.image);
    }
    let installed =
        recovery::policy::InstalledVersion::from_read(std::fs::read(cfg.join(INSTALLED)));
    // Unreadable, it may name the image a restore needs: nothing may go.
    if let Some(warning) = installed.warning() {
        return Err(warning);
    }
    let mut names: Vec<String> = installed
        .known()
        .and_then(|i| restore_image_in(images, i))
        .into_iter()
        .collect();
    names.extend(named.iter().filter_map(|p| {
        Path::new(&p.path)
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
    }));
    Ok(names)
}

/// The message of a request without a restore image.
pub fn no_restore_image(installed: Option<&Installed>) -> String {
    match installed {
        Some(i) => format!(
            "no image of {} to restore: a failed update could not be undone (stage \
             updates/{}-{}.manifest or .swu beside the new image, or pass --restore \
             PARTITION:PATH)",
            i.version, i.product, i.version
        ),
        None => "the installed version is unknown (no valid cfg:update/installed): no image \
                 to restore, a failed update could not be undone (pass --restore PARTITION:PATH)"
            .into(),
    }
}

/// The message of a request whose restore image at `path` fails the
/// admission (`refused`: which check, which file).
pub fn bad_restore_image(path: &Path, refused: &recovery::UpdateError) -> String {
    format!(
        "restore image {}: {refused}: a failed update could not be undone (stage a good image \
         of the installed version, or pass --restore PARTITION:PATH)",
        path.display()
    )
}

/// The trial on `cfg`, if any (an unreadable record is an error: it
/// stands for a trial all the same).
pub fn read_trial(cfg: &Path) -> Result<Option<Trial>, String> {
    match std::fs::read(cfg.join(TRIAL)) {
        Ok(bytes) => Trial::parse(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: {e}", shown(TRIAL))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", shown(TRIAL))),
    }
}

/// The boot loader of a trial, its files where this system mounted them:
/// `cfg:PATH` under `cfg`, `PARTITION:PATH` where that partition is.
pub fn locate(setting: &str, cfg: &Path) -> Result<BootFlag, String> {
    let place = |p: &Path| -> Result<PathBuf, String> {
        let Some((partition, rest)) = p.to_str().and_then(|s| s.split_once(':')) else {
            return Ok(p.to_path_buf());
        };
        if partition == recovery::policy::CFG {
            return Ok(cfg.join(rest));
        }
        let root = crate::mounts::mount_point_of(&recovery::partitions::scan(), partition)?;
        Ok(root.join(rest))
    };
    Ok(match BootFlag::parse(setting)? {
        BootFlag::GrubEnv { file } => BootFlag::GrubEnv {
            file: place(&file)?,
        },
        BootFlag::Uboot { config, defaults } => BootFlag::Uboot {
            config: place(&config)?,
            defaults,
        },
        BootFlag::SystemdBoot {
            efivars,
            entry,
            system,
            esp: Some(esp),
        } => BootFlag::SystemdBoot {
            efivars,
            entry,
            system,
            esp: Some(place(&esp)?),
        },
        flag => flag,
    })
}

/// Ends the trial on `cfg`: stops the boot loader's counting (`flag`, or
/// the trial's own), records `outcome=confirmed`, removes the trial.
/// Returns the version confirmed, None when nothing was on trial. Each
/// step can be repeated: a power cut in between leaves a trial that the
/// next `confirm` ends.
pub fn confirm(
    cfg: &Path,
    flag: Option<BootFlag>,
    now: u64,
) -> Result<Option<String>, RequestError> {
    check_cfg(cfg)?;
    end_trial(cfg, flag, now)
}

/// [`confirm`]'s steps, on the records in the directory `cfg`.
fn end_trial(cfg: &Path, flag: Option<BootFlag>, now: u64) -> Result<Option<String>, RequestError> {
    let Some(trial) = read_trial(cfg).map_err(RequestError::Partition)? else {
        return Ok(None);
    };
    let flag = match flag {
        Some(flag) => flag,
        None => locate(&trial.bootloader, cfg).map_err(RequestError::Partition)?,
    };
    flag.disarm_trial(cfg).map_err(RequestError::StopCount)?;
    let previous = std::fs::read(cfg.join(RESULT))
        .ok()
        .and_then(|b| UpdateResult::parse(&b).ok())
        .filter(|r| r.version == trial.version);
    let result = match previous {
        Some(r) => UpdateResult {
            outcome: Outcome::Confirmed,
            finished: now,
            ..r
        },
        None => UpdateResult {
            outcome: Outcome::Confirmed,
            version: trial.version.clone(),
            stage: String::new(),
            reason: String::new(),
            attempt: 0,
            started: now,
            finished: now,
            duration_ms: 0,
            bytes: 0,
            entries: 0,
            restored: None,
            instruction: None,
        },
    };
    let write = |rel: &str, data: &[u8]| {
        formats::store::write_atomic(&cfg.join(rel), data).map_err(|source| RequestError::Write {
            path: cfg.join(rel),
            source,
        })
    };
    write(RESULT, result.render().as_bytes())?;
    formats::store::remove_durably(&cfg.join(TRIAL)).map_err(|source| RequestError::Write {
        path: cfg.join(TRIAL),
        source,
    })?;
    Ok(Some(trial.version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use formats::trial::GRUB_COUNTER;

    #[test]
    fn finds_the_installed_versions_image_or_its_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("updates")).unwrap();
        let installed = Installed {
            product: "demo".into(),
            version: "1.0".into(),
        };
        assert_eq!(
            restore_image_of(root, "storage", "updates", &installed),
            None
        );
        std::fs::write(root.join("updates/demo-1.0.swu"), "").unwrap();
        assert_eq!(
            restore_image_of(root, "storage", "updates", &installed)
                .unwrap()
                .to_string(),
            "storage:updates/demo-1.0.swu"
        );
        std::fs::write(root.join("updates/demo-1.0.manifest"), "").unwrap();
        assert_eq!(
            restore_image_of(root, "storage", "updates", &installed)
                .unwrap()
                .to_string(),
            "storage:updates/demo-1.0.manifest"
        );
        assert!(no_restore_image(Some(&installed))
            .starts_with("no image of 1.0 to restore: a failed update could not be undone"));
    }

    /// `version` on trial, 1.0 to restore from `updates/demo-1.0.manifest`.
    fn trial_of(version: &str) -> Trial {
        let restore = PartitionPath::parse("storage:updates/demo-1.0.manifest").unwrap();
        Trial::fixture(version, "1.0", restore)
    }

    #[test]
    fn the_images_a_restore_may_need_are_the_installed_ones_and_the_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, images) = (dir.path().join("cfg"), dir.path().join("images"));
        std::fs::create_dir_all(cfg.join("update")).unwrap();
        std::fs::create_dir_all(&images).unwrap();
        assert_eq!(restore_images(&cfg, &images), Ok(vec![]));
        let installed = Installed {
            product: "demo".into(),
            version: "1.5".into(),
        };
        std::fs::write(cfg.join(INSTALLED), installed.render()).unwrap();
        std::fs::write(images.join("demo-1.5.swu"), "").unwrap();
        let instruction = Instruction {
            manifest: PartitionPath::parse("storage:updates/demo-2.0.manifest").unwrap(),
            target: "system".into(),
            allow_downgrade: false,
            requested: 1,
            restore: PartitionPath::parse("storage:updates/demo-1.5.swu"),
        };
        std::fs::write(cfg.join(INSTRUCTION), instruction.render()).unwrap();
        let trial = trial_of("1.5");
        std::fs::write(cfg.join(TRIAL), trial.render()).unwrap();
        let pending = PendingRestore {
            failed: "1.7".into(),
            stage: "payload".into(),
            reason: "x".into(),
            image: PartitionPath::parse("storage:old/demo-0.9.swu").unwrap(),
            target: "system".into(),
            origin: formats::trial::Origin::Update,
            attempts: 0,
            last_failure: String::new(),
        };
        std::fs::write(cfg.join(RESTORE), pending.render()).unwrap();
        assert_eq!(
            restore_images(&cfg, &images),
            Ok(vec![
                "demo-1.5.swu".to_string(),
                "demo-1.5.swu".to_string(),
                "demo-1.0.manifest".to_string(),
                "demo-0.9.swu".to_string(),
            ])
        );
        // An unreadable `update/installed` too: it may name the image of
        // the installed version, the one a restore needs.
        for rel in [INSTRUCTION, TRIAL, RESTORE, INSTALLED] {
            let good = std::fs::read(cfg.join(rel)).unwrap();
            std::fs::write(cfg.join(rel), "torn").unwrap();
            let err = restore_images(&cfg, &images).unwrap_err();
            assert!(err.starts_with(&shown(rel)), "{err}");
            std::fs::write(cfg.join(rel), good).unwrap();
        }
    }

    #[test]
    fn locates_the_trials_boot_loader_on_this_system() {
        let cfg = Path::new("/cfg");
        assert_eq!(locate("grub", cfg), Ok(BootFlag::Grub));
        assert_eq!(
            locate("grubenv:cfg:grubenv", cfg),
            Ok(BootFlag::GrubEnv {
                file: "/cfg/grubenv".into()
            })
        );
        assert_eq!(
            locate("grubenv:/boot/grub/grubenv", cfg),
            Ok(BootFlag::GrubEnv {
                file: "/boot/grub/grubenv".into()
            })
        );
        // systemd-boot's ESP on cfg (a partition by name is found among
        // this system's mounts, as for the others).
        let Ok(BootFlag::SystemdBoot { esp, .. }) =
            locate("systemd-boot:::system.conf:cfg:esp", cfg)
        else {
            panic!("not systemd-boot")
        };
        assert_eq!(esp.as_deref(), Some(Path::new("/cfg/esp")));
    }

    /// `confirm` itself needs `cfg` mounted; its steps on a directory.
    #[test]
    fn confirming_stops_the_count_and_records_it() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path();
        std::fs::create_dir_all(cfg.join("update")).unwrap();
        let trial = trial_of("2.0");
        std::fs::write(cfg.join(TRIAL), trial.render()).unwrap();
        BootFlag::Grub.arm_trial(cfg, 3).unwrap();
        let err = confirm(cfg, None, 5).unwrap_err();
        assert!(matches!(err, RequestError::NotMounted { .. }), "{err}");
        assert_eq!(read_trial(cfg), Ok(Some(trial.clone())));
        assert_eq!(end_trial(cfg, None, 5).unwrap().as_deref(), Some("2.0"));
        assert_eq!(BootFlag::Grub.trial_left(cfg).unwrap(), None);
        let block = std::fs::read(cfg.join("grubenv")).unwrap();
        let env = formats::grubenv::GrubEnv::parse(&block).unwrap();
        assert_eq!(env.get(GRUB_COUNTER), None);
        let result = UpdateResult::parse(&std::fs::read(cfg.join(RESULT)).unwrap()).unwrap();
        assert_eq!(
            (result.outcome, result.version.as_str()),
            (Outcome::Confirmed, "2.0")
        );
        assert!(!cfg.join(TRIAL).exists());
        assert_eq!(
            end_trial(cfg, None, 6).unwrap(),
            None,
            "nothing left on trial"
        );
        std::fs::write(cfg.join(TRIAL), "torn").unwrap();
        assert!(read_trial(cfg)
            .unwrap_err()
            .starts_with("cfg:update/trial: "));
    }
    /// Under U-Boot, confirming writes the older copy of a redundant pair
    /// (the newest stays as it was, for a cut in the middle of the write)
    /// and keeps every variable it did not set.
    #[test]
    fn confirming_under_u_boot_writes_the_older_copy_and_keeps_the_rest() {
        use formats::ubootenv::{read_area, UbootEnv};
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("cfg");
        std::fs::create_dir_all(cfg.join("update")).unwrap();
        let area = dir.path().join("env.bin");
        let mut env = UbootEnv::default();
        env.set("bootcmd", "run distro_bootcmd");
        env.set("upgrade_available", "1");
        env.set("bootcount", "1");
        env.set("bootlimit", "3");
        let older = env.render_copy(0x1000, Some(6)).unwrap();
        env.set("bootcount", "2");
        let newer = env.render_copy(0x1000, Some(7)).unwrap();
        std::fs::write(&area, [newer.clone(), older].concat()).unwrap();
        let config = dir.path().join("fw_env.config");
        std::fs::write(
            &config,
            format!("{0} 0x0 0x1000\n{0} 0x1000 0x1000\n", area.display()),
        )
        .unwrap();
        let trial = Trial {
            bootloader: format!("uboot:{}", config.display()),
            ..trial_of("2.0")
        };
        std::fs::write(cfg.join(TRIAL), trial.render()).unwrap();
        assert_eq!(end_trial(&cfg, None, 5).unwrap().as_deref(), Some("2.0"));
        let bytes = std::fs::read(&area).unwrap();
        assert_eq!(
            &bytes[..0x1000],
            &newer[..],
            "the newest copy was written over"
        );
        let read = read_area(&[&bytes[..0x1000], &bytes[0x1000..]]);
        assert!(read.invalid.is_empty(), "{:?}", read.invalid);
        assert_eq!(read.next, 0, "the confirmation is not the newest copy");
        let confirmed = read.env.unwrap();
        assert_eq!(confirmed.get("bootcmd"), Some("run distro_bootcmd"));
        assert_eq!(confirmed.get("bootlimit"), Some("3"));
        assert_eq!(confirmed.get("upgrade_available"), None);
        assert_eq!(confirmed.get("bootcount"), Some("0"));
    }

    /// A count that cannot be stopped is an error naming the boot
    /// loader's file and what was expected; the block and the trial stay.
    #[test]
    fn a_count_that_cannot_be_stopped_is_reported_and_the_trial_stays() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("cfg");
        let boot = dir.path().join("boot");
        std::fs::create_dir_all(cfg.join("update")).unwrap();
        std::fs::create_dir_all(&boot).unwrap();
        let file = boot.join("grubenv");
        let trial = Trial {
            bootloader: format!("grubenv:{}", file.display()),
            ..trial_of("2.0")
        };
        std::fs::write(cfg.join(TRIAL), trial.render()).unwrap();
        let flag = BootFlag::GrubEnv { file: file.clone() };
        flag.arm_trial(&cfg, 3).unwrap();
        let block = std::fs::read(&file).unwrap();
        let chattr = |op: &str| {
            let status = std::process::Command::new("chattr")
                .arg(op)
                .arg(&boot)
                .status()
                .expect("chattr is missing: apt-get install e2fsprogs");
            assert!(status.success(), "chattr {op} (needs root)");
        };
        chattr("+i");
        let err = end_trial(&cfg, None, 5);
        chattr("-i");
        let text = crate::cli::message(err.expect_err("stopped the count"));
        for what in [
            "stopping the boot loader's count of trial boots (the trial is still on): ",
            &format!("{}: writing the GRUB environment block", file.display()),
        ] {
            assert!(text.contains(what), "{what:?} not in: {text}");
        }
        assert_eq!(std::fs::read(&file).unwrap(), block);
        assert_eq!(read_trial(&cfg), Ok(Some(trial)));
        assert!(!cfg.join(RESULT).exists());
    }

    /// Under systemd-boot, confirming does what systemd-bless-boot does:
    /// the system's entry on the ESP gets its plain name back.
    #[test]
    fn confirming_under_systemd_boot_renames_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("cfg");
        let entries = dir.path().join("esp/loader/entries");
        std::fs::create_dir_all(cfg.join("update")).unwrap();
        std::fs::create_dir_all(&entries).unwrap();
        std::fs::write(entries.join("system+2-1.conf"), "title System\n").unwrap();
        let trial = Trial {
            bootloader: format!("systemd-boot:::system.conf:{}/esp", dir.path().display()),
            ..trial_of("2.0")
        };
        std::fs::write(cfg.join(TRIAL), trial.render()).unwrap();
        assert_eq!(end_trial(&cfg, None, 5).unwrap().as_deref(), Some("2.0"));
        let names: Vec<_> = std::fs::read_dir(&entries)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["system.conf"]);
        assert!(!cfg.join(TRIAL).exists());
    }
}
