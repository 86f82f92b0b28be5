//! What the device allows, checked before anything is erased: the target
//! partition (allowed, present, neither `cfg` nor the image's partition,
//! not mounted), then the image against the device (product, version,
//! size). Pure functions over what the other steps found;
//! [`crate::admission`] gathers their inputs for both sides.

use crate::error::{Stage, UpdateError};
use crate::partitions::{Disks, Partition};
use formats::cfg::{shown, INSTALLED};
use formats::config::{Config, Downgrade};
use formats::instruction::Instruction;
use formats::manifest::Manifest;
use formats::result::Installed;
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

/// The part of [`check_image`] that needs no target: the product, and the
/// version against the installed one under the downgrade policy (with
/// `allow_downgrade` the instruction's wish). `file` names the manifest in
/// the refusal. The agent calls it before it fetches a payload.
pub fn check_release(
    config: &Config,
    allow_downgrade: bool,
    manifest: &Manifest,
    installed: &InstalledVersion,
    file: &str,
) -> Result<(), UpdateError> {
    let refuse = |reason: String| UpdateError::new(Stage::Policy, file, reason);
    if manifest.product != config.product {
        return Err(refuse(format!(
            "product: this device runs {}, the image is for {}",
            config.product, manifest.product
        )));
    }
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
    Ok(())
}

/// Checks the verified image against the device. An unreadable installed
/// version is refused only where the downgrade policy needs the version;
/// elsewhere it is as good as none (see `docs/update-records.md`).
pub fn check_image(
    config: &Config,
    instruction: &Instruction,
    manifest: &Manifest,
    installed: &InstalledVersion,
    target: &Partition,
) -> Result<(), UpdateError> {
    let file = instruction.manifest.to_string();
    check_release(
        config,
        instruction.allow_downgrade,
        manifest,
        installed,
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
        let check =
            |c: &Config, m: &Manifest, i: &Instruction| check_image(c, i, m, &installed, target);
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
        assert!(check_image(&config, &ins, &manifest("p", "0.1", 1), &missing, target).is_ok());
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
            assert!(check_image(&config, &instruction("system"), &m, &garbage, target).is_ok());
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
}
