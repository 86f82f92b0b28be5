//! Trial boots and the restore of the last good image: the records on
//! `cfg` ([`Trial`], `cfg:update/trial`; [`PendingRestore`],
//! `cfg:update/restore`) and each boot loader's own counter of trial boots
//! (methods on [`BootFlag`]). See `docs/reliability.md` and
//! `docs/bootloaders.md`.
//!
//! After an install the recovery writes the trial record and arms the
//! boot loader's counter with the limit N. The boot loader counts the
//! boots of the new system and boots the recovery when N boots went by
//! unconfirmed; the recovery, finding no instruction but a trial, restores
//! the image the trial names. `bootloader-glue confirm` on the new system
//! ends the trial. An update that fails after the erase on its last
//! attempt leaves a pending restore instead, which the next boot carries
//! out.
//!
//! Counters: GRUB keeps `reimage_trial` (boots left) in an environment
//! block (`cfg:grubenv` for the `grub` flag, FILE for `grubenv:FILE`),
//! decremented by the `grub.cfg` fragment with `save_env`. U-Boot and
//! systemd-boot count with their own mechanisms (not yet here: their
//! methods say so).

use crate::bootflag::{edit_grubenv, read_grubenv, BootFlag};
use crate::instruction::PartitionPath;
use crate::keyvalue::{self, one_line, KeyValueError, SealError};
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const FORMAT_VERSION: u64 = 1;

/// The variable of GRUB's environment block that holds the trial boots left.
pub const GRUB_COUNTER: &str = "reimage_trial";

/// The largest limit of trial boots (GRUB's script has no arithmetic: the
/// fragment decrements through one test per value, 1 to 9).
pub const MAX_BOOTS: u64 = 9;

/// Where the `grub` flag's counter is, relative to `cfg`'s root: the
/// environment block that the fragment loads from `cfg` too.
pub const GRUB_ENV_ON_CFG: &str = "grubenv";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TrialError {
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Field(#[from] KeyValueError),
}

/// `cfg:update/trial`: the new system is on trial until it is confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trial {
    /// The version on trial (just installed).
    pub version: String,
    /// The version it replaced, which a restore brings back.
    pub previous: String,
    /// The image to restore (from the instruction's `restore=`).
    pub restore: PartitionPath,
    /// The partition it was installed into.
    pub target: String,
    /// Boots allowed before the recovery restores.
    pub limit: u64,
    /// The boot loader that counts, as the recovery's `bootflag=` names it.
    pub bootloader: String,
}

const TRIAL_KEYS: &[&str] = &[
    "format",
    "version",
    "previous",
    "restore",
    "target",
    "limit",
    "bootloader",
];

fn partition_path(pair: &keyvalue::Pair<'_>) -> Result<PartitionPath, KeyValueError> {
    PartitionPath::parse(pair.value)
        .ok_or_else(|| pair.bad("expected PARTITION:PATH, a relative path without `..`"))
}

fn check_format(pairs: &[keyvalue::Pair<'_>]) -> Result<(), KeyValueError> {
    let format = keyvalue::require(pairs, "format")?;
    if format.as_u64()? != FORMAT_VERSION {
        return Err(format.bad("expected format 1"));
    }
    Ok(())
}

impl Trial {
    pub fn render(&self) -> String {
        keyvalue::seal(&format!(
            "format={FORMAT_VERSION}\nversion={}\nprevious={}\nrestore={}\ntarget={}\nlimit={}\n\
             bootloader={}\n",
            one_line(&self.version),
            one_line(&self.previous),
            self.restore,
            self.target,
            self.limit,
            one_line(&self.bootloader)
        ))
    }

    pub fn parse(bytes: &[u8]) -> Result<Trial, TrialError> {
        let body = keyvalue::unseal(bytes)?;
        let pairs = keyvalue::parse(body, TRIAL_KEYS)?;
        check_format(&pairs)?;
        let get = |key| keyvalue::require(&pairs, key);
        Ok(Trial {
            version: get("version")?.value.to_string(),
            previous: get("previous")?.value.to_string(),
            restore: partition_path(get("restore")?)?,
            target: get("target")?.as_name()?.to_string(),
            limit: get("limit")?.as_u64()?,
            bootloader: get("bootloader")?.value.to_string(),
        })
    }

    /// Why the recovery restores when the trial ran out.
    pub fn expired(&self) -> PendingRestore {
        PendingRestore {
            failed: self.version.clone(),
            stage: "trial".into(),
            reason: format!("{} not confirmed after {} boots", self.version, self.limit),
            image: self.restore.clone(),
            target: self.target.clone(),
        }
    }
}

/// `cfg:update/restore`: a restore the recovery has decided on and not yet
/// finished; every boot that finds it carries it out from the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRestore {
    /// The version that failed.
    pub failed: String,
    /// Where it failed: `trial` (not confirmed), or the update's stage.
    pub stage: String,
    /// Why, in one line (the result's reason).
    pub reason: String,
    /// The image to restore.
    pub image: PartitionPath,
    /// The partition to restore into.
    pub target: String,
}

const RESTORE_KEYS: &[&str] = &["format", "failed", "stage", "reason", "image", "target"];

impl PendingRestore {
    pub fn render(&self) -> String {
        keyvalue::seal(&format!(
            "format={FORMAT_VERSION}\nfailed={}\nstage={}\nreason={}\nimage={}\ntarget={}\n",
            one_line(&self.failed),
            one_line(&self.stage),
            one_line(&self.reason),
            self.image,
            self.target
        ))
    }

    pub fn parse(bytes: &[u8]) -> Result<PendingRestore, TrialError> {
        let body = keyvalue::unseal(bytes)?;
        let pairs = keyvalue::parse(body, RESTORE_KEYS)?;
        check_format(&pairs)?;
        let get = |key| keyvalue::require(&pairs, key);
        Ok(PendingRestore {
            failed: get("failed")?.value.to_string(),
            stage: get("stage")?.value.to_string(),
            reason: get("reason")?.value.to_string(),
            image: partition_path(get("image")?)?,
            target: get("target")?.as_name()?.to_string(),
        })
    }
}

fn unsupported(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{what} does not count trial boots here: the new system is not on trial"),
    )
}

impl BootFlag {
    /// The GRUB environment block that holds the counter, with `cfg`
    /// mounted at `cfg`; None for the other boot loaders.
    pub fn grub_counter_file(&self, cfg: &Path) -> Option<PathBuf> {
        match self {
            BootFlag::Grub => Some(cfg.join(GRUB_ENV_ON_CFG)),
            BootFlag::GrubEnv { file } => Some(file.clone()),
            _ => None,
        }
    }

    /// Starts counting trial boots: after `limit` boots the boot loader
    /// boots the recovery. An error when this boot loader cannot count
    /// (`ErrorKind::Unsupported`) or the counter cannot be written.
    pub fn arm_trial(&self, cfg: &Path, limit: u64) -> io::Result<()> {
        if !(1..=MAX_BOOTS).contains(&limit) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{limit} trial boots: expected 1 to {MAX_BOOTS}"),
            ));
        }
        match self {
            BootFlag::Grub | BootFlag::GrubEnv { .. } => {
                let file = self.grub_counter_file(cfg).expect("a GRUB flag");
                edit_grubenv(&file, |env| env.set(GRUB_COUNTER, &limit.to_string()))
            }
            BootFlag::Uboot { .. } => Err(unsupported("U-Boot")),
            BootFlag::SystemdBoot { .. } => Err(unsupported("systemd-boot")),
            BootFlag::None => Err(unsupported("bootflag=none")),
        }
    }

    /// Stops counting (nothing written where nothing counts).
    pub fn disarm_trial(&self, cfg: &Path) -> io::Result<()> {
        match self.grub_counter_file(cfg) {
            Some(file) => {
                if read_grubenv(&file)?.get(GRUB_COUNTER).is_none() {
                    return Ok(());
                }
                edit_grubenv(&file, |env| {
                    env.unset(GRUB_COUNTER);
                    Ok(())
                })
            }
            None => match self {
                BootFlag::None => Ok(()),
                BootFlag::Uboot { .. } => Err(unsupported("U-Boot")),
                _ => Err(unsupported("systemd-boot")),
            },
        }
    }

    /// The trial boots left (None: not counting). A value the boot loader
    /// cannot count down (not 0 to 9) is 0: it boots the recovery.
    pub fn trial_left(&self, cfg: &Path) -> io::Result<Option<u64>> {
        match self.grub_counter_file(cfg) {
            Some(file) => Ok(read_grubenv(&file)?
                .get(GRUB_COUNTER)
                .map(|v| v.parse().ok().filter(|n| *n <= MAX_BOOTS).unwrap_or(0))),
            None => match self {
                BootFlag::None => Ok(None),
                BootFlag::Uboot { .. } => Err(unsupported("U-Boot")),
                _ => Err(unsupported("systemd-boot")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grubenv::GrubEnv;

    fn trial() -> Trial {
        Trial {
            version: "2.0".into(),
            previous: "1.0".into(),
            restore: PartitionPath::parse("storage:updates/demo-1.0.manifest").unwrap(),
            target: "system".into(),
            limit: 3,
            bootloader: "grub".into(),
        }
    }

    #[test]
    fn records_round_trip_and_refuse_a_torn_copy() {
        let t = trial();
        assert_eq!(Trial::parse(t.render().as_bytes()), Ok(t.clone()));
        let p = t.expired();
        assert_eq!(p.reason, "2.0 not confirmed after 3 boots");
        assert_eq!(p.stage, "trial");
        assert_eq!(PendingRestore::parse(p.render().as_bytes()), Ok(p.clone()));
        let text = t.render();
        assert!(Trial::parse(&text.as_bytes()[..text.len() - 5]).is_err());
        let bad = keyvalue::seal(
            &keyvalue::unseal(text.as_bytes())
                .unwrap()
                .replace("storage:updates", "storage:../x"),
        );
        let err = Trial::parse(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("restore="), "{err}");
    }

    #[test]
    fn grub_counts_in_its_environment_block() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path();
        let flag = BootFlag::Grub;
        assert_eq!(flag.trial_left(cfg).unwrap(), None);
        flag.disarm_trial(cfg).unwrap();
        assert!(!cfg.join(GRUB_ENV_ON_CFG).exists(), "wrote for nothing");
        flag.arm_trial(cfg, 3).unwrap();
        assert_eq!(flag.trial_left(cfg).unwrap(), Some(3));
        let block = std::fs::read(cfg.join(GRUB_ENV_ON_CFG)).unwrap();
        assert_eq!(block.len(), 1024);
        assert_eq!(GrubEnv::parse(&block).unwrap().get(GRUB_COUNTER), Some("3"));
        // What GRUB writes when it counts down, and garbage, which it
        // treats as exhausted.
        for (value, left) in [("2", 2), ("0", 0), ("x", 0), ("12", 0)] {
            edit_grubenv(&cfg.join(GRUB_ENV_ON_CFG), |env| {
                env.set(GRUB_COUNTER, value)
            })
            .unwrap();
            assert_eq!(flag.trial_left(cfg).unwrap(), Some(left), "{value}");
        }
        flag.disarm_trial(cfg).unwrap();
        assert_eq!(flag.trial_left(cfg).unwrap(), None);
        // The grubenv flag counts in its own file.
        let file = cfg.join("other");
        let env = BootFlag::GrubEnv { file: file.clone() };
        env.arm_trial(cfg, 1).unwrap();
        assert_eq!(env.trial_left(cfg).unwrap(), Some(1));
        assert!(file.exists());
    }

    #[test]
    fn limits_and_boot_loaders_that_do_not_count_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for limit in [0, MAX_BOOTS + 1] {
            assert!(BootFlag::Grub.arm_trial(dir.path(), limit).is_err());
        }
        let err = BootFlag::None.arm_trial(dir.path(), 3).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        assert!(BootFlag::None.disarm_trial(dir.path()).is_ok());
        let uboot = BootFlag::parse("uboot").unwrap();
        assert_eq!(
            uboot.arm_trial(dir.path(), 3).unwrap_err().kind(),
            io::ErrorKind::Unsupported
        );
    }
}
