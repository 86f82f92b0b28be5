//! Trial boots and the restore of the last good image: the records on
//! `cfg` ([`Trial`], `cfg:update/trial`; [`PendingRestore`],
//! `cfg:update/restore`; [`Touched`], `cfg:update/touched`) and each boot loader's own counter of trial boots
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
//! decremented by the `grub.cfg` fragment with `save_env`. U-Boot counts
//! with its own variables in its environment: `upgrade_available=1`
//! starts the count, `bootcount` counts the boots, and when it exceeds
//! `bootlimit` U-Boot runs `altbootcmd`, which boots the recovery (built
//! in with `CONFIG_BOOTCOUNT_LIMIT`, or done by `bootloader-glue
//! uboot-script`). systemd-boot counts in the name of the system's entry
//! (Automatic Boot Assessment): arming renames `NAME.conf` to
//! `NAME+N.conf` on the ESP, systemd-boot renames it `NAME+L-D.conf` (L
//! tries left, D done) as it boots it, and sorts an entry with no tries
//! left (`NAME+0-D.conf`) after the others: the recovery's entry boots.
//! Confirming renames it back to `NAME.conf`, as `systemd-bless-boot` does.

use crate::bootflag::{edit_grubenv, edit_uboot, read_grubenv, read_uboot_env, BootFlag};
use crate::instruction::PartitionPath;
use crate::keyvalue::{self, one_line, KeyValueError, SealError};
use crate::store::rename_durably;
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const FORMAT_VERSION: u64 = 1;

/// The variable of GRUB's environment block that holds the trial boots left.
pub const GRUB_COUNTER: &str = "reimage_trial";

/// The largest limit of trial boots (GRUB's script has no arithmetic: the
/// fragment decrements through one test per value, 1 to 9).
pub const MAX_BOOTS: u64 = 9;

/// U-Boot's variables of its boot counting (`CONFIG_BOOTCOUNT_LIMIT`).
pub const UBOOT_UPGRADE_AVAILABLE: &str = "upgrade_available";
pub const UBOOT_BOOTCOUNT: &str = "bootcount";
pub const UBOOT_BOOTLIMIT: &str = "bootlimit";

/// Where systemd-boot's entries are, relative to the ESP's root.
pub const LOADER_ENTRIES: &str = "loader/entries";

/// systemd-boot's counter in an entry's file name: `NAME+LEFT.conf` or
/// `NAME+LEFT-DONE.conf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryTries {
    pub left: u64,
    pub done: Option<u64>,
}

/// Whether the file `file` is the entry `entry` (`NAME.conf`), counted or
/// not: None when it is another file; `Some(None)` for `NAME.conf`;
/// `Some(Some(tries))` for `NAME+LEFT[-DONE].conf`.
pub fn entry_tries(file: &str, entry: &str) -> Option<Option<EntryTries>> {
    let stem = entry.strip_suffix(".conf")?;
    let middle = file.strip_prefix(stem)?.strip_suffix(".conf")?;
    if middle.is_empty() {
        return Some(None);
    }
    let counter = middle.strip_prefix('+')?;
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let (left, done) = match counter.split_once('-') {
        Some((left, done)) => (number(left)?, Some(number(done)?)),
        None => (number(counter)?, None),
    };
    Some(Some(EntryTries { left, done }))
}

/// The file name of the entry `entry` (`NAME.conf`) with `left` tries
/// (`NAME+LEFT.conf`), or not counting (`NAME.conf`).
pub fn entry_file_name(entry: &str, left: Option<u64>) -> String {
    match (left, entry.strip_suffix(".conf")) {
        (Some(left), Some(stem)) => format!("{stem}+{left}.conf"),
        _ => entry.to_string(),
    }
}

/// The file in `dir` that is the entry `entry`, and its counter. Exactly
/// one must be there.
fn find_entry(dir: &Path, entry: &str) -> io::Result<(PathBuf, Option<EntryTries>)> {
    let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
    let mut found = Vec::new();
    for item in std::fs::read_dir(dir).map_err(context)? {
        let name = item.map_err(context)?.file_name();
        if let Some(tries) = name.to_str().and_then(|n| entry_tries(n, entry)) {
            found.push((dir.join(&name), tries));
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{}: no systemd-boot entry {entry} (nor {}+N.conf), whose name counts the \
                 trial boots",
                dir.display(),
                entry.strip_suffix(".conf").unwrap_or(entry)
            ),
        )),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: several files are the systemd-boot entry {entry}: {}; keep one",
                dir.display(),
                found
                    .iter()
                    .map(|(p, _)| p.file_name().unwrap_or_default().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Renames the entry `entry` in `dir` to count `left` tries (None: not
/// counting); nothing when it is so already.
fn rename_entry(dir: &Path, entry: &str, left: Option<u64>) -> io::Result<()> {
    let (path, _) = find_entry(dir, entry)?;
    let to = dir.join(entry_file_name(entry, left));
    if path == to {
        return Ok(());
    }
    rename_durably(&path, &to).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("renaming {} to {}: {e}", path.display(), to.display()),
        )
    })
}

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
    /// A trial of `version` after `previous`, to be restored from
    /// `restore`, on `system`, counted by GRUB for 3 boots: the one fixture
    /// the tests of every crate that reads trials start from; change a
    /// field with `..`.
    pub fn fixture(version: &str, previous: &str, restore: PartitionPath) -> Trial {
        Trial {
            version: version.into(),
            previous: previous.into(),
            restore,
            target: "system".into(),
            limit: 3,
            bootloader: "grub".into(),
        }
    }

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
            origin: Origin::Trial,
            attempts: 0,
            last_failure: String::new(),
        }
    }
}

/// Why a restore was decided on: what a boot that finds the pending
/// restore must still finish besides the restore itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The new system was not confirmed in time: nothing but the restore.
    Trial,
    /// An update failed after the erase on its last attempt (or its last
    /// attempt was cut off): the update lock is set and the instruction
    /// moved aside too, by whichever boot gets there first.
    Update,
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Origin::Trial => "trial",
            Origin::Update => "update",
        }
    }

    /// A record written before `origin=` existed: a trial's restore has
    /// the stage `trial`, an update's the stage that failed.
    fn of_stage(stage: &str) -> Origin {
        if stage == "trial" {
            Origin::Trial
        } else {
            Origin::Update
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
    /// A failed update or an expired trial (`origin=`; a record without
    /// it, from an older recovery, is read from its stage).
    pub origin: Origin,
    /// Attempts of the restore begun in this round (counted before the
    /// erase; 0 when absent). Past the recovery's `max-attempts` it stays
    /// on the console; staying starts a new round, for the operator's
    /// power cycle.
    pub attempts: u64,
    /// What the last failed attempt said (stage: file: why), empty if none
    /// was recorded (a power cut, a reset).
    pub last_failure: String,
}

const RESTORE_KEYS: &[&str] = &[
    "format",
    "failed",
    "stage",
    "reason",
    "image",
    "target",
    "origin",
    "attempts",
    "last-failure",
];

impl PendingRestore {
    pub fn render(&self) -> String {
        keyvalue::seal(&format!(
            "format={FORMAT_VERSION}\nfailed={}\nstage={}\nreason={}\nimage={}\ntarget={}\n\
             origin={}\nattempts={}\nlast-failure={}\n",
            one_line(&self.failed),
            one_line(&self.stage),
            one_line(&self.reason),
            self.image,
            self.target,
            self.origin.name(),
            self.attempts,
            one_line(&self.last_failure)
        ))
    }

    pub fn parse(bytes: &[u8]) -> Result<PendingRestore, TrialError> {
        let body = keyvalue::unseal(bytes)?;
        let pairs = keyvalue::parse(body, RESTORE_KEYS)?;
        check_format(&pairs)?;
        let get = |key| keyvalue::require(&pairs, key);
        let optional = |key| pairs.iter().find(|p| p.key == key);
        let stage = get("stage")?.value.to_string();
        let origin = match optional("origin") {
            None => Origin::of_stage(&stage),
            Some(pair) => [Origin::Trial, Origin::Update]
                .into_iter()
                .find(|o| o.name() == pair.value)
                .ok_or_else(|| pair.bad("expected trial or update"))?,
        };
        Ok(PendingRestore {
            failed: get("failed")?.value.to_string(),
            stage,
            reason: get("reason")?.value.to_string(),
            image: partition_path(get("image")?)?,
            target: get("target")?.as_name()?.to_string(),
            origin,
            attempts: optional("attempts")
                .map(|p| p.as_u64())
                .transpose()?
                .unwrap_or(0),
            last_failure: optional("last-failure").map_or(String::new(), |p| p.value.to_string()),
        })
    }
}

/// `cfg:update/touched`: the target partition was erased (maybe partly
/// written) and holds no complete system yet. Written before every erase
/// (an update's or a restore's), removed once a system is extracted and
/// synced: a boot that fails before its own erase knows from it that an
/// earlier attempt left the partition empty or partial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched {
    /// The partition erased.
    pub target: String,
    /// The version being written into it (its manifest verified).
    pub version: String,
    /// The manifest of that version.
    pub manifest: PartitionPath,
}

const TOUCHED_KEYS: &[&str] = &["format", "target", "version", "manifest"];

impl Touched {
    pub fn render(&self) -> String {
        keyvalue::seal(&format!(
            "format={FORMAT_VERSION}\ntarget={}\nversion={}\nmanifest={}\n",
            self.target,
            one_line(&self.version),
            self.manifest
        ))
    }

    pub fn parse(bytes: &[u8]) -> Result<Touched, TrialError> {
        let body = keyvalue::unseal(bytes)?;
        let pairs = keyvalue::parse(body, TOUCHED_KEYS)?;
        check_format(&pairs)?;
        let get = |key| keyvalue::require(&pairs, key);
        Ok(Touched {
            target: get("target")?.as_name()?.to_string(),
            version: get("version")?.value.to_string(),
            manifest: partition_path(get("manifest")?)?,
        })
    }
}

/// The directory of systemd-boot's entries, when the flag names the ESP.
fn systemd_boot_entries(esp: &Option<PathBuf>) -> io::Result<PathBuf> {
    esp.as_ref()
        .map(|esp| esp.join(LOADER_ENTRIES))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "systemd-boot does not count trial boots here: the boot flag names no ESP \
             (systemd-boot:EFIVARS_DIR:ENTRY:SYSTEM_ENTRY:ESP); the new system is not on trial",
            )
        })
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
            BootFlag::Uboot { config, defaults } => {
                edit_uboot(config, Some(defaults.as_deref()), |env| {
                    env.set(UBOOT_BOOTLIMIT, &limit.to_string());
                    env.set(UBOOT_BOOTCOUNT, "0");
                    env.set(UBOOT_UPGRADE_AVAILABLE, "1");
                    true
                })
            }
            BootFlag::SystemdBoot { system, esp, .. } => {
                rename_entry(&systemd_boot_entries(esp)?, system, Some(limit))
            }
            BootFlag::None => Err(unsupported("bootflag=none")),
        }
    }

    /// Stops counting (nothing written where nothing counts).
    pub fn disarm_trial(&self, cfg: &Path) -> io::Result<()> {
        match self {
            BootFlag::Grub | BootFlag::GrubEnv { .. } => {
                let file = self.grub_counter_file(cfg).expect("a GRUB flag");
                if read_grubenv(&file)?.get(GRUB_COUNTER).is_none() {
                    return Ok(());
                }
                edit_grubenv(&file, |env| {
                    env.unset(GRUB_COUNTER);
                    Ok(())
                })
            }
            BootFlag::None => Ok(()),
            // As fw_setenv upgrade_available 0 and bootcount 0 after a
            // good boot; nothing written when it does not count.
            BootFlag::Uboot { config, .. } => edit_uboot(config, None, |env| {
                if env.get(UBOOT_UPGRADE_AVAILABLE).is_none()
                    && matches!(env.get(UBOOT_BOOTCOUNT), None | Some("0"))
                {
                    return false;
                }
                env.unset(UBOOT_UPGRADE_AVAILABLE);
                env.set(UBOOT_BOOTCOUNT, "0");
                true
            }),
            // What systemd-bless-boot does for a good boot.
            BootFlag::SystemdBoot { system, esp, .. } => {
                rename_entry(&systemd_boot_entries(esp)?, system, None)
            }
        }
    }

    /// The trial boots left (None: not counting). A value the boot loader
    /// cannot count down (not 0 to 9) is 0: it boots the recovery.
    pub fn trial_left(&self, cfg: &Path) -> io::Result<Option<u64>> {
        match self {
            BootFlag::Grub | BootFlag::GrubEnv { .. } => {
                let file = self.grub_counter_file(cfg).expect("a GRUB flag");
                Ok(read_grubenv(&file)?
                    .get(GRUB_COUNTER)
                    .map(|v| v.parse().ok().filter(|n| *n <= MAX_BOOTS).unwrap_or(0)))
            }
            BootFlag::None => Ok(None),
            // bootlimit boots in all: left is bootlimit - bootcount; a
            // count U-Boot cannot go on with is 0.
            BootFlag::Uboot { config, .. } => Ok(read_uboot_env(config)?
                .filter(|env| env.get(UBOOT_UPGRADE_AVAILABLE) == Some("1"))
                .map(|env| {
                    let number = |name| env.get(name).and_then(|v| v.parse::<u64>().ok());
                    match (number(UBOOT_BOOTLIMIT), number(UBOOT_BOOTCOUNT)) {
                        (Some(limit), Some(count)) => limit.saturating_sub(count),
                        _ => 0,
                    }
                })),
            BootFlag::SystemdBoot { system, esp, .. } => {
                let (_, tries) = find_entry(&systemd_boot_entries(esp)?, system)?;
                Ok(tries.map(|t| t.left))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grubenv::GrubEnv;

    fn trial() -> Trial {
        let restore = PartitionPath::parse("storage:updates/demo-1.0.manifest").unwrap();
        Trial::fixture("2.0", "1.0", restore)
    }

    #[test]
    fn records_round_trip_and_refuse_a_torn_copy() {
        let t = trial();
        assert_eq!(Trial::parse(t.render().as_bytes()), Ok(t.clone()));
        let p = t.expired();
        assert_eq!(p.reason, "2.0 not confirmed after 3 boots");
        assert_eq!((p.stage.as_str(), p.origin), ("trial", Origin::Trial));
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
    fn a_pending_restore_says_where_it_came_from_and_older_records_still_parse() {
        let update = PendingRestore {
            failed: "2.0".into(),
            stage: "extract".into(),
            reason: "2.0 failed at extract on attempt 3 of 3: x: no space".into(),
            image: PartitionPath::parse("storage:updates/demo-1.0.manifest").unwrap(),
            target: "system".into(),
            origin: Origin::Update,
            attempts: 0,
            last_failure: String::new(),
        };
        let text = update.render();
        assert!(text.contains("\norigin=update\n"), "{text}");
        assert_eq!(PendingRestore::parse(text.as_bytes()), Ok(update.clone()));
        // Written by a recovery before `origin=` (and the count of
        // attempts): read from the stage, no attempt counted.
        let old = |p: &PendingRestore| {
            let body = keyvalue::unseal(p.render().as_bytes()).unwrap().to_string();
            keyvalue::seal(
                &body
                    .replace(&format!("origin={}\n", p.origin.name()), "")
                    .replace("attempts=0\nlast-failure=\n", ""),
            )
        };
        assert_eq!(PendingRestore::parse(old(&update).as_bytes()), Ok(update));
        let expired = trial().expired();
        assert_eq!(PendingRestore::parse(old(&expired).as_bytes()), Ok(expired));
        let bad = keyvalue::seal(
            &keyvalue::unseal(trial().expired().render().as_bytes())
                .unwrap()
                .replace("origin=trial", "origin=both"),
        );
        let err = PendingRestore::parse(bad.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("origin="), "{err}");
    }

    #[test]
    fn a_pending_restore_counts_its_attempts_and_keeps_the_last_failure() {
        let p = PendingRestore {
            attempts: 2,
            last_failure: "extract: /run/target/usr:\nno space".into(),
            ..trial().expired()
        };
        let text = p.render();
        assert!(
            text.contains("\nattempts=2\nlast-failure=extract: /run/target/usr: no space\n"),
            "{text}"
        );
        let back = PendingRestore::parse(text.as_bytes()).unwrap();
        assert_eq!(back.attempts, 2);
        assert_eq!(back.last_failure, "extract: /run/target/usr: no space");
    }

    #[test]
    fn the_touched_record_round_trips() {
        let t = Touched {
            target: "system".into(),
            version: "2.0".into(),
            manifest: PartitionPath::parse("storage:updates/demo-2.0.manifest").unwrap(),
        };
        let text = t.render();
        assert_eq!(Touched::parse(text.as_bytes()), Ok(t));
        assert!(Touched::parse(&text.as_bytes()[..text.len() - 3]).is_err());
    }

    #[test]
    fn u_boot_counts_with_bootcount_and_bootlimit() {
        use crate::ubootenv::UbootEnv;
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path();
        let area = cfg.join("env.bin");
        let mut saved = UbootEnv::default();
        saved.set("bootcmd", "run distro_bootcmd");
        std::fs::write(&area, saved.render_copy(0x4000, None).unwrap()).unwrap();
        let config = cfg.join("fw_env.config");
        std::fs::write(&config, format!("{} 0x0 0x4000\n", area.display())).unwrap();
        let flag = BootFlag::Uboot {
            config,
            defaults: None,
        };
        let env = || {
            UbootEnv::parse_copy(&std::fs::read(&area).unwrap(), false)
                .unwrap()
                .env
        };
        assert_eq!(flag.trial_left(cfg).unwrap(), None);
        flag.disarm_trial(cfg).unwrap();
        assert_eq!(env(), saved, "wrote for nothing");
        flag.arm_trial(cfg, 3).unwrap();
        assert_eq!(flag.trial_left(cfg).unwrap(), Some(3));
        let armed = env();
        assert_eq!(armed.get("bootcmd"), Some("run distro_bootcmd"));
        assert_eq!(
            [UBOOT_UPGRADE_AVAILABLE, UBOOT_BOOTCOUNT, UBOOT_BOOTLIMIT].map(|n| armed.get(n)),
            [Some("1"), Some("0"), Some("3")]
        );
        // What the boot script writes as it counts; past the limit and
        // garbage leave no boots.
        for (count, left) in [("1", 2), ("3", 0), ("4", 0), ("x", 0)] {
            let mut counted = env();
            counted.set(UBOOT_BOOTCOUNT, count);
            std::fs::write(&area, counted.render_copy(0x4000, None).unwrap()).unwrap();
            assert_eq!(
                flag.trial_left(cfg).unwrap(),
                Some(left),
                "bootcount={count}"
            );
        }
        flag.disarm_trial(cfg).unwrap();
        assert_eq!(flag.trial_left(cfg).unwrap(), None);
        let done = env();
        assert_eq!(done.get(UBOOT_UPGRADE_AVAILABLE), None);
        assert_eq!(done.get(UBOOT_BOOTCOUNT), Some("0"));
        assert_eq!(done.get("bootcmd"), Some("run distro_bootcmd"));
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
        // systemd-boot without the ESP, as the older flag values say.
        let systemd_boot = BootFlag::parse("systemd-boot").unwrap();
        assert_eq!(
            systemd_boot.arm_trial(dir.path(), 3).unwrap_err().kind(),
            io::ErrorKind::Unsupported
        );
    }

    #[test]
    fn systemd_boot_entry_names_carry_the_counter() {
        let t = |left, done| Some(Some(EntryTries { left, done }));
        for (file, tries) in [
            ("system.conf", Some(None)),
            ("system+3.conf", t(3, None)),
            ("system+2-1.conf", t(2, Some(1))),
            ("system+0-3.conf", t(0, Some(3))),
            ("recovery.conf", None),
            ("systemd.conf", None),
            ("system+.conf", None),
            ("system+3-.conf", None),
            ("system+x.conf", None),
            ("system+-1.conf", None),
            ("system+3.conf~", None),
        ] {
            assert_eq!(entry_tries(file, "system.conf"), tries, "{file}");
        }
        assert_eq!(entry_file_name("system.conf", Some(3)), "system+3.conf");
        assert_eq!(entry_file_name("system.conf", None), "system.conf");
    }

    /// An ESP with the system's and the recovery's entries, and the flag
    /// that counts there.
    fn esp(dir: &Path, system: &str) -> BootFlag {
        let entries = dir.join("esp").join(LOADER_ENTRIES);
        std::fs::create_dir_all(&entries).unwrap();
        std::fs::write(entries.join(system), "title System\n").unwrap();
        std::fs::write(entries.join("recovery.conf"), "title Recovery\n").unwrap();
        BootFlag::parse(&format!(
            "systemd-boot:::system.conf:{}",
            dir.join("esp").display()
        ))
        .unwrap()
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("esp").join(LOADER_ENTRIES))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn systemd_boot_counts_in_the_name_of_the_system_entry() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path();
        let flag = esp(cfg, "system.conf");
        assert_eq!(flag.trial_left(cfg).unwrap(), None);
        flag.disarm_trial(cfg).unwrap();
        assert_eq!(entries(cfg), ["recovery.conf", "system.conf"]);
        flag.arm_trial(cfg, 3).unwrap();
        assert_eq!(entries(cfg), ["recovery.conf", "system+3.conf"]);
        assert_eq!(flag.trial_left(cfg).unwrap(), Some(3));
        // What systemd-boot renames it to as it boots it.
        let dir_of = cfg.join("esp").join(LOADER_ENTRIES);
        for (name, left) in [("system+2-1.conf", 2), ("system+0-3.conf", 0)] {
            let (from, _) = find_entry(&dir_of, "system.conf").unwrap();
            std::fs::rename(from, dir_of.join(name)).unwrap();
            assert_eq!(flag.trial_left(cfg).unwrap(), Some(left), "{name}");
        }
        // A new trial over a spent one starts again from the limit.
        flag.arm_trial(cfg, 2).unwrap();
        assert_eq!(entries(cfg), ["recovery.conf", "system+2.conf"]);
        // Confirming is what systemd-bless-boot does: the plain name.
        flag.disarm_trial(cfg).unwrap();
        assert_eq!(entries(cfg), ["recovery.conf", "system.conf"]);
        assert_eq!(flag.trial_left(cfg).unwrap(), None);
        assert_eq!(
            std::fs::read_to_string(dir_of.join("system.conf")).unwrap(),
            "title System\n"
        );
    }

    #[test]
    fn a_missing_or_doubled_systemd_boot_entry_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let flag = esp(dir.path(), "other.conf");
        let err = flag.arm_trial(dir.path(), 3).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let text = err.to_string();
        assert!(
            text.contains("no systemd-boot entry system.conf (nor system+N.conf)"),
            "{text}"
        );
        assert!(text.contains("loader/entries"), "{text}");
        let dir = tempfile::tempdir().unwrap();
        let flag = esp(dir.path(), "system.conf");
        std::fs::write(
            dir.path()
                .join("esp")
                .join(LOADER_ENTRIES)
                .join("system+1-2.conf"),
            "",
        )
        .unwrap();
        let text = flag.trial_left(dir.path()).unwrap_err().to_string();
        assert!(
            text.contains("several files are the systemd-boot entry system.conf"),
            "{text}"
        );
        assert_eq!(entries(dir.path()).len(), 3, "renamed one of them");
    }
}
