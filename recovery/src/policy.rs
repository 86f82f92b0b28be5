//! What the device allows, checked before anything is erased: the target
//! partition (allowed, present, neither `cfg` nor the image's partition,
//! not mounted), then the image against the device (product, version, not
//! a version restored away, size), and the image a failed update is
//! restored from (product, the installed version). Pure functions over
//! what the other steps found; [`crate::admission`] gathers their inputs
//! for every side.

use crate::error::{Stage, UpdateError};
use crate::partitions::{Disks, Partition};
use formats::cfg::{shown, RestoredAwayRecord, RetryRestored, INSTALLED};
use formats::config::{Config, Downgrade};
use formats::instruction::Instruction;
use formats::manifest::Manifest;
use formats::result::{Installed, Outcome, UpdateResult};
use formats::units::utc;
use formats::version;
use std::cmp::Ordering;

/// What `cfg:update/installed` says about the system partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstalledVersion {
    /// No such file: a device fresh from the factory.
    Missing,
    Known(Installed),
    /// The file is there but cannot be read or is not a valid record
    /// (torn, hand-edited): the version is unknown.
    Unreadable {
        reason: String,
    },
}

impl InstalledVersion {
    /// Classifies the outcome of reading the file: a missing file is
    /// [`InstalledVersion::Missing`], any other failure unreadable.
    pub fn from_read(read: std::io::Result<Vec<u8>>) -> InstalledVersion {
        match read {
            Ok(raw) => match Installed::parse(&raw) {
                Ok(installed) => InstalledVersion::Known(installed),
                Err(e) => InstalledVersion::Unreadable {
                    reason: e.to_string(),
                },
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => InstalledVersion::Missing,
            Err(e) => InstalledVersion::Unreadable {
                reason: format!("cannot read: {e}"),
            },
        }
    }

    /// The version, when known.
    pub fn known(&self) -> Option<&Installed> {
        match self {
            InstalledVersion::Known(installed) => Some(installed),
            _ => None,
        }
    }

    /// The warning both sides log for an unreadable record, if any.
    pub fn warning(&self) -> Option<String> {
        match self {
            InstalledVersion::Unreadable { reason } => Some(format!(
                "{}: {reason}; the installed version is unknown",
                shown(INSTALLED)
            )),
            _ => None,
        }
    }
}

/// A version the recovery restored away (not confirmed in time, or failed
/// after the erase on every attempt), as `cfg:update/restored-away` keeps
/// it ([`RestoredAwayRecord`], written as the restore finishes). It is not
/// admitted again (by `request`, the agent or the recovery), or an image
/// that never confirms would cycle: installed, not confirmed, restored,
/// downloaded again. The record stands whatever happens next (a refused
/// request, a failed one) until a newer version is installed
/// ([`RestoredAway::superseded_by`]). A newer version is admitted as
/// usual; an operator allows that version again with `request
/// --retry-restored` ([`RetryRestored`]). A recovery that writes no
/// record names the version only in its `outcome=restored` result
/// ([`RestoredAway::of_result`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredAway {
    /// The version that failed.
    pub version: String,
    /// The version restored in its place.
    pub restored: String,
    /// Why, as the result says it ("2.0 not confirmed after 3 boots").
    pub reason: String,
    /// When the restore finished, seconds since 1970.
    pub at: u64,
    /// How many restores in a row took this version away.
    pub count: u64,
    /// The BLAKE3 (hex) of the record's bytes: what a leave answers.
    pub key: String,
}

impl RestoredAway {
    /// The record a restore that ended in `result` (its `outcome=restored`
    /// result) leaves on `cfg`, given the record there before (`previous`,
    /// its bytes): the count goes on from a record of the same version,
    /// so that the record differs from every earlier one. None for any
    /// other outcome, and for a restore that brought back the version that
    /// failed (a reinstall that failed): that says nothing against it.
    pub fn record_after(
        result: &UpdateResult,
        previous: Option<&[u8]>,
    ) -> Option<RestoredAwayRecord> {
        let restored = result.restored.as_ref()?;
        if result.outcome != Outcome::Restored
            || version::compare(restored, &result.version) == Ordering::Equal
        {
            return None;
        }
        let count = previous
            .and_then(|bytes| RestoredAwayRecord::parse(bytes).ok())
            .filter(|p| version::compare(&p.version, &result.version) == Ordering::Equal)
            .map_or(1, |p| p.count.saturating_add(1));
        Some(RestoredAwayRecord {
            version: result.version.clone(),
            restored: restored.clone(),
            reason: result.reason.clone(),
            at: result.finished,
            count,
        })
    }

    fn read(record: RestoredAwayRecord, bytes: &[u8]) -> RestoredAway {
        RestoredAway {
            version: record.version,
            restored: record.restored,
            reason: record.reason,
            at: record.at,
            count: record.count,
            key: blake3::hash(bytes).to_hex().to_string(),
        }
    }

    /// The version `cfg:update/restored-away` (its bytes) names.
    pub fn of_record(bytes: &[u8]) -> Result<RestoredAway, String> {
        Ok(RestoredAway::read(RestoredAwayRecord::parse(bytes)?, bytes))
    }

    /// The version an `outcome=restored` result (its bytes) names, for a
    /// recovery that writes no `cfg:update/restored-away`.
    pub fn of_result(bytes: &[u8]) -> Result<Option<RestoredAway>, String> {
        let result = UpdateResult::parse(bytes).map_err(|e| e.to_string())?;
        Ok(RestoredAway::record_after(&result, None).map(|r| RestoredAway::read(r, bytes)))
    }

    /// Whether `version` is the one restored away (`2.0` is `2.0.0`).
    pub fn is(&self, version: &str) -> bool {
        version::compare(version, &self.version) == Ordering::Equal
    }

    /// Whether installing `version` ends the refusal: a newer version.
    pub fn superseded_by(&self, version: &str) -> bool {
        version::compare(version, &self.version) == Ordering::Greater
    }

    /// The operator's leave to install this version again, for this restore.
    pub fn leave(&self) -> RetryRestored {
        RetryRestored {
            version: self.version.clone(),
            record: self.key.clone(),
        }
    }

    /// Whether `leave` (`cfg:update/retry-restored`) answers this restore:
    /// the same version and the same record. A later restore of the same
    /// version writes another record and needs a new leave.
    pub fn allowed_by(&self, leave: &RetryRestored) -> bool {
        self.is(&leave.version) && leave.record == self.key
    }
}

/// What an admission is for. The rules are the same but for one: the
/// version restored away ([`check_not_restored_away`]) is refused for an
/// update, never for a restore. A restore's image is the last good system,
/// chosen by the device itself; its version may well be named by
/// `cfg:update/restored-away` (the record outlives later results, and a
/// cut may leave it behind an update that an operator's leave allowed),
/// and refusing it there would leave the device on the console instead of
/// on a working system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// An update asked for (`request`, the agent, an instruction): every rule.
    Update,
    /// A restore of the last good image (by the recovery, or the image
    /// `request` names for one): every rule but the version restored away.
    Restore,
}

impl Purpose {
    /// The version restored away that this admission refuses, given the
    /// one on `cfg` (`away`) and whether an operator's leave allows it
    /// again (`allowed`): none for a restore or under a leave.
    pub fn refused(self, away: Option<&RestoredAway>, allowed: bool) -> Option<&RestoredAway> {
        match self {
            Purpose::Update => away.filter(|_| !allowed),
            Purpose::Restore => None,
        }
    }
}

/// Refuses the version restored away (`restored_away`, None when there
/// is none or an operator allowed it again).
pub fn check_not_restored_away(
    manifest: &Manifest,
    restored_away: Option<&RestoredAway>,
    file: &str,
) -> Result<(), UpdateError> {
    let Some(away) = restored_away.filter(|a| a.is(&manifest.version)) else {
        return Ok(());
    };
    Err(UpdateError::new(
        Stage::Policy,
        file,
        format!(
            "version: {} was restored away on {} ({} restored): {}; a newer version is \
             admitted, or an operator installs {} again with `bootloader-glue request \
             --retry-restored`",
            away.version,
            utc(away.at),
            away.restored,
            away.reason,
            manifest.version
        ),
    ))
}

/// The product check every admission shares.
fn check_product(config: &Config, manifest: &Manifest, file: &str) -> Result<(), UpdateError> {
    if manifest.product != config.product {
        return Err(UpdateError::new(
            Stage::Policy,
            file,
            format!(
                "product: this device runs {}, the image is for {}",
                config.product, manifest.product
            ),
        ));
    }
    Ok(())
}

/// The image a failed update would be restored from, against the device:
/// this product, and the installed version (the one a restore brings
/// back), where that version is known. `file` names the image.
pub fn check_restore_image(
    config: &Config,
    manifest: &Manifest,
    installed: &InstalledVersion,
    file: &str,
) -> Result<(), UpdateError> {
    check_product(config, manifest, file)?;
    if let Some(installed) = installed.known() {
        if version::compare(&manifest.version, &installed.version) != Ordering::Equal {
            return Err(UpdateError::new(
                Stage::Policy,
                file,
                format!(
                    "version: the image is of {}, the installed version (the one a restore \
                     brings back) is {}",
                    manifest.version, installed.version
                ),
            ));
        }
    }
    Ok(())
}

/// The partition that holds the recovery's records; never a target.
pub const CFG: &str = "cfg";

/// Checks the instruction's target and returns its partition.
pub fn check_target<'d>(
    config: &Config,
    instruction: &Instruction,
    disks: &'d Disks,
    mounted: &[String],
) -> Result<&'d Partition, UpdateError> {
    let target = &instruction.target;
    let refuse = |reason: String| {
        UpdateError::new(
            Stage::Target,
            format!("{CFG}:{}", formats::cfg::INSTRUCTION),
            reason,
        )
    };
    if target == CFG {
        return Err(refuse(format!(
            "target {target}: the partition that holds the instruction is never erased"
        )));
    }
    if *target == instruction.manifest.partition {
        return Err(refuse(format!(
            "target {target}: the partition that holds the image is never erased"
        )));
    }
    if !config.targets.contains(target) {
        return Err(refuse(format!(
            "target {target}: not an allowed target (allowed: {})",
            config.targets.join(", ")
        )));
    }
    let partition = disks.find(target).ok_or_else(|| {
        refuse(format!(
            "target {target}: no partition has that name (seen: {})",
            disks.describe()
        ))
    })?;
    if mounted.contains(&partition.dev) {
        return Err(refuse(format!(
            "target {target}: {} is mounted",
            partition.device.display()
        )));
    }
    Ok(partition)
}

/// Room an image needs on ext4 beyond its file bytes: a block for every
/// entry (rounding, directories, inodes' neighbours), and a tenth of the
/// partition for the journal, inode tables and reserved blocks.
pub fn needed_bytes(manifest: &Manifest) -> u64 {
    manifest.unpacked_size + manifest.entries * 4096
}

pub fn usable_bytes(partition: &Partition) -> u64 {
    partition.size / 10 * 9
}

/// The part of [`check_image`] that needs no target: the product, the
/// version against the installed one under the downgrade policy (with
/// `allow_downgrade` the instruction's wish), and not the version
/// restored away ([`check_not_restored_away`]). `file` names the manifest
/// in the refusal. The agent calls it before it fetches a payload.
pub fn check_release(
    config: &Config,
    allow_downgrade: bool,
    manifest: &Manifest,
    installed: &InstalledVersion,
    restored_away: Option<&RestoredAway>,
    file: &str,
) -> Result<(), UpdateError> {
    let refuse = |reason: String| UpdateError::new(Stage::Policy, file, reason);
    check_product(config, manifest, file)?;
    let allowed = match config.downgrade {
        Downgrade::Allow => true,
        Downgrade::Refuse => false,
        Downgrade::Instruction => allow_downgrade,
    };
    match installed {
        InstalledVersion::Known(installed) => {
            let older = version::compare(&manifest.version, &installed.version) == Ordering::Less;
            if older && !allowed {
                return Err(refuse(format!(
                    "version: {} is older than the installed {}, and downgrades are not allowed here",
                    manifest.version, installed.version
                )));
            }
        }
        // Unreadable counts as missing (the warning is logged by the
        // caller): refusing would gain nothing, since removing the file
        // admits any version too, and it would stop every remote update of
        // a device whose cfg took a bad sector.
        InstalledVersion::Unreadable { .. } | InstalledVersion::Missing => {}
    }
    check_not_restored_away(manifest, restored_away, file)
}

/// Checks the verified image against the device (`restored_away` as for
/// [`check_release`]). An unreadable installed
/// version is refused only where the downgrade policy needs the version;
/// elsewhere it is as good as none (see `docs/update-records.md`).
pub fn check_image(
    config: &Config,
    instruction: &Instruction,
    manifest: &Manifest,
    installed: &InstalledVersion,
    restored_away: Option<&RestoredAway>,
    target: &Partition,
) -> Result<(), UpdateError> {
    let file = instruction.manifest.to_string();
    check_release(
        config,
        instruction.allow_downgrade,
        manifest,
        installed,
        restored_away,
        &file,
    )?;
    let refuse = |reason: String| UpdateError::new(Stage::Policy, &file, reason);
    let (needed, usable) = (needed_bytes(manifest), usable_bytes(target));
    if needed > usable {
        return Err(refuse(format!(
            "size: the image needs about {} MB unpacked, partition {} ({}) holds about {} MB",
            needed / 1_000_000,
            target.name,
            target.device.display(),
            usable / 1_000_000
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use formats::instruction::PartitionPath;

    fn disks() -> Disks {
        let part = |name: &str, n: u32| Partition {
            name: name.into(),
            kernel_name: format!("nvme0n1p{n}"),
            device: format!("/dev/nvme0n1p{n}").into(),
            dev: format!("259:{n}"),
            size: 256 << 20,
        };
        Disks {
            partitions: vec![
                part("recovery", 1),
                part("cfg", 2),
                part("system", 3),
                part("storage", 4),
            ],
            seen: vec!["nvme0n1: recovery, cfg, system, storage".into()],
        }
    }

    fn instruction(target: &str) -> Instruction {
        Instruction {
            manifest: PartitionPath::parse("storage:updates/p-2.manifest").unwrap(),
            target: target.into(),
            allow_downgrade: false,
            requested: 0,
            restore: None,
        }
    }

    fn manifest(product: &str, version: &str, unpacked: u64) -> Manifest {
        Manifest {
            format: 1,
            index_size: 0,
            product: product.into(),
            version: version.into(),
            payload: "x".into(),
            payload_size: 1,
            payload_blake3: [0; 32],
            unpacked_size: unpacked,
            entries: 10,
            created: 0,
        }
    }

    #[test]
    fn targets() {
        let mut config = Config::for_product("p");
        config.targets = vec![
            "system".into(),
            "cfg".into(),
            "storage".into(),
            "alt".into(),
        ];
        let d = disks();
        assert_eq!(
            check_target(&config, &instruction("system"), &d, &[])
                .unwrap()
                .name,
            "system"
        );
        for (target, says) in [
            ("cfg", "holds the instruction"),
            ("storage", "holds the image"),
            ("alt", "no partition has that name"),
            ("recovery", "not an allowed target"),
        ] {
            let err = check_target(&config, &instruction(target), &d, &[]).unwrap_err();
            assert!(err.reason.contains(says), "{target}: {err}");
        }
        let err = check_target(&config, &instruction("system"), &d, &["259:3".into()]).unwrap_err();
        assert!(err.reason.contains("is mounted"), "{err}");
    }

    #[test]
    fn images() {
        let mut config = Config::for_product("p");
        let d = disks();
        let target = d.find("system").unwrap();
        let installed = InstalledVersion::Known(Installed {
            product: "p".into(),
            version: "2.0".into(),
        });
        let ins = instruction("system");
        let check = |c: &Config, m: &Manifest, i: &Instruction| {
            check_image(c, i, m, &installed, None, target)
        };
        assert!(check(&config, &manifest("p", "2.1", 1000), &ins).is_ok());
        assert!(check(&config, &manifest("p", "2.0", 1000), &ins).is_ok());
        let err = check(&config, &manifest("q", "2.1", 1000), &ins).unwrap_err();
        assert!(err.reason.starts_with("product:"), "{err}");
        let err = check(&config, &manifest("p", "1.9", 1000), &ins).unwrap_err();
        assert!(
            err.reason
                .starts_with("version: 1.9 is older than the installed 2.0"),
            "{err}"
        );
        config.downgrade = Downgrade::Instruction;
        assert!(check(&config, &manifest("p", "1.9", 1000), &ins).is_err());
        let mut asks = instruction("system");
        asks.allow_downgrade = true;
        assert!(check(&config, &manifest("p", "1.9", 1000), &asks).is_ok());
        let err = check(&config, &manifest("p", "3.0", 300 << 20), &ins).unwrap_err();
        assert!(err.reason.starts_with("size:"), "{err}");
        let missing = InstalledVersion::Missing;
        assert!(check_image(
            &config,
            &ins,
            &manifest("p", "0.1", 1),
            &missing,
            None,
            target
        )
        .is_ok());
        // The release after its release candidate is an upgrade; 1.0 is 1.0.0.
        config.downgrade = Downgrade::Refuse;
        for (installed, image) in [("2.0.1-rc1", "2.0.1"), ("1.0.0", "1.0"), ("1.0", "1.0.0")] {
            let installed = Installed {
                product: "p".into(),
                version: installed.into(),
            };
            let m = manifest("p", image, 1000);
            assert!(
                check_image(
                    &config,
                    &ins,
                    &m,
                    &InstalledVersion::Known(installed.clone()),
                    None,
                    target
                )
                .is_ok(),
                "{image} after {}",
                installed.version
            );
        }
    }

    #[test]
    fn an_unreadable_installed_version_counts_as_missing_with_a_warning() {
        let d = disks();
        let target = d.find("system").unwrap();
        let garbage = InstalledVersion::from_read(Ok(b"garbage".to_vec()));
        assert!(matches!(garbage, InstalledVersion::Unreadable { .. }));
        let warning = garbage.warning().unwrap();
        assert!(
            warning.starts_with("cfg:update/installed: ") && warning.ends_with("is unknown"),
            "{warning}"
        );
        let config = Config::for_product("p");
        for version in ["0.1", "2.1"] {
            let m = manifest("p", version, 1000);
            assert!(
                check_image(&config, &instruction("system"), &m, &garbage, None, target).is_ok()
            );
        }
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(
            InstalledVersion::from_read(Err(missing)),
            InstalledVersion::Missing
        );
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(matches!(
            InstalledVersion::from_read(Err(denied)),
            InstalledVersion::Unreadable { .. }
        ));
    }

    fn restored(version: &str, restored: &str, outcome: Outcome) -> UpdateResult {
        UpdateResult {
            outcome,
            version: version.into(),
            stage: "trial".into(),
            reason: format!("{version} not confirmed after 3 boots"),
            attempt: 1,
            started: 1_700_000_000,
            finished: 1_700_000_100,
            duration_ms: 0,
            bytes: 0,
            entries: 0,
            restored: Some(restored.into()),
            instruction: None,
        }
    }

    #[test]
    fn a_version_restored_away_is_refused_until_a_newer_one_or_the_operators_leave() {
        let config = Config::for_product("p");
        let installed = InstalledVersion::Known(Installed {
            product: "p".into(),
            version: "1.0".into(),
        });
        let away = away(&record(&restored("2.0", "1.0", Outcome::Restored), None));
        assert_eq!(
            (away.version.as_str(), away.restored.as_str(), away.at),
            ("2.0", "1.0", 1_700_000_100)
        );
        let check = |version: &str, away: Option<&RestoredAway>| {
            check_release(
                &config,
                false,
                &manifest("p", version, 1),
                &installed,
                away,
                "storage:updates/p.manifest",
            )
        };
        for same in ["2.0", "2.0.0"] {
            let err = check(same, Some(&away)).unwrap_err();
            assert_eq!(err.stage, Stage::Policy);
            assert_eq!(err.file, "storage:updates/p.manifest");
            assert_eq!(
                err.reason,
                format!(
                    "version: 2.0 was restored away on 2023-11-14T22:15:00Z (1.0 restored): 2.0 \
                     not confirmed after 3 boots; a newer version is admitted, or an operator \
                     installs {same} again with `bootloader-glue request --retry-restored`"
                )
            );
        }
        // A newer version, another one, or none restored away: as usual.
        for version in ["2.0.1", "3.0", "1.5"] {
            assert!(check(version, Some(&away)).is_ok(), "{version}");
        }
        assert!(check("2.0", None).is_ok());
        // The operator's leave answers this restore, not another one.
        let leave = away.leave();
        assert!(away.allowed_by(&leave));
        assert!(!RestoredAway {
            version: "2.1".into(),
            ..away.clone()
        }
        .allowed_by(&leave));
        // Only a restore names a version restored away, and not one that
        // brought back the version that failed.
        for outcome in [Outcome::Success, Outcome::Confirmed, Outcome::Refused] {
            let result = restored("2.0", "1.0", outcome);
            assert_eq!(RestoredAway::record_after(&result, None), None);
            let bytes = result.render();
            assert_eq!(RestoredAway::of_result(bytes.as_bytes()), Ok(None));
        }
        let reinstall = restored("2.0", "2.0", Outcome::Restored);
        assert_eq!(RestoredAway::record_after(&reinstall, None), None);
        // A recovery that writes no record: the result names it.
        let result = restored("2.0", "1.0", Outcome::Restored).render();
        let old = RestoredAway::of_result(result.as_bytes()).unwrap().unwrap();
        assert_eq!(
            (old.version.as_str(), old.restored.as_str()),
            ("2.0", "1.0")
        );
        assert!(RestoredAway::of_result(b"garbage").is_err());
        // The size check follows (check_image gives it to check_release).
        let d = disks();
        let err = check_image(
            &config,
            &instruction("system"),
            &manifest("p", "2.0", 1),
            &installed,
            Some(&away),
            d.find("system").unwrap(),
        )
        .unwrap_err();
        assert!(err.reason.contains("was restored away"), "{err}");
    }

    /// A restore brings back the last good system even when
    /// `cfg:update/restored-away` names its version (a record left behind
    /// a cut, or one that outlived the leave that installed it): only an
    /// update is refused it, and a leave lets the update through.
    #[test]
    fn the_version_restored_away_is_refused_to_an_update_never_to_a_restore() {
        // As the recovery's restore() admits: downgrades allowed.
        let config = Config {
            downgrade: Downgrade::Allow,
            ..Config::for_product("p")
        };
        let installed = InstalledVersion::Known(Installed {
            product: "p".into(),
            version: "2.1".into(),
        });
        let away = away(&record(&restored("2.0", "1.0", Outcome::Restored), None));
        let d = disks();
        let mut restore = instruction("system");
        restore.allow_downgrade = true;
        let check = |purpose: Purpose, allowed: bool| {
            check_image(
                &config,
                &restore,
                &manifest("p", "2.0", 1),
                &installed,
                purpose.refused(Some(&away), allowed),
                d.find("system").unwrap(),
            )
        };
        let err = check(Purpose::Update, false).unwrap_err();
        assert!(err.reason.contains("was restored away"), "{err}");
        assert!(check(Purpose::Update, true).is_ok());
        assert!(check(Purpose::Restore, false).is_ok());
        assert!(check(Purpose::Restore, true).is_ok());
        assert_eq!(Purpose::Update.refused(None, false), None);
    }

    /// The record a restore that ended in `result` writes, after `previous`.
    fn record(result: &UpdateResult, previous: Option<&RestoredAwayRecord>) -> RestoredAwayRecord {
        let previous = previous.map(RestoredAwayRecord::render);
        RestoredAway::record_after(result, previous.as_deref().map(str::as_bytes)).unwrap()
    }

    /// The version restored away as `record` names it.
    fn away(record: &RestoredAwayRecord) -> RestoredAway {
        RestoredAway::of_record(record.render().as_bytes()).unwrap()
    }

    /// A device without an RTC finishes every restore at about the same
    /// time: a second restore of 2.0 with the very same `finished` still
    /// writes another record (its count goes on), so the leave given for
    /// the first does not answer it.
    #[test]
    fn a_leave_answers_one_restore_even_when_the_clock_repeats_itself() {
        let result = restored("2.0", "1.0", Outcome::Restored);
        let first_record = record(&result, None);
        let second_record = record(&result, Some(&first_record));
        let (first, second) = (away(&first_record), away(&second_record));
        assert_eq!(second.at, first.at);
        assert_eq!((first.count, second.count), (1, 2));
        assert_ne!(second.key, first.key);
        assert!(first.allowed_by(&first.leave()));
        assert!(!second.allowed_by(&first.leave()));
        // A record of another version starts the count again.
        let other = record(
            &restored("2.1", "1.0", Outcome::Restored),
            Some(&second_record),
        );
        assert_eq!(other.count, 1);
        // Installing a newer version ends it; the same or an older does not.
        assert!(second.superseded_by("2.0.1"));
        for version in ["2.0", "2.0.0", "1.0"] {
            assert!(!second.superseded_by(version), "{version}");
        }
    }

    #[test]
    fn the_restore_image_is_of_this_product_and_the_installed_version() {
        let config = Config::for_product("p");
        let installed = InstalledVersion::Known(Installed {
            product: "p".into(),
            version: "1.0".into(),
        });
        let file = "/storage/updates/p-1.0.manifest";
        assert!(check_restore_image(&config, &manifest("p", "1.0", 1), &installed, file).is_ok());
        assert!(check_restore_image(&config, &manifest("p", "1.0.0", 1), &installed, file).is_ok());
        let err =
            check_restore_image(&config, &manifest("p", "0.9", 1), &installed, file).unwrap_err();
        assert_eq!(
            err.to_string(),
            "policy: /storage/updates/p-1.0.manifest: version: the image is of 0.9, the \
             installed version (the one a restore brings back) is 1.0"
        );
        let err =
            check_restore_image(&config, &manifest("q", "1.0", 1), &installed, file).unwrap_err();
        assert!(err.reason.starts_with("product: "), "{err}");
        // An unknown installed version: any version of the product.
        let missing = InstalledVersion::Missing;
        assert!(check_restore_image(&config, &manifest("p", "0.9", 1), &missing, file).is_ok());
    }
}
