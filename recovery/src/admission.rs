//! The admission check: whether a staged image may be installed on this
//! device. One function, [`admit`], that the recovery (before the erase)
//! and `bootloader-glue request` (before the instruction is written) both
//! call, so that the running system never asks for what the recovery would
//! refuse: the trusted keys, every check of the image ([`crate::verify`]),
//! the installed version on `cfg`, then product, version and size against
//! the target ([`crate::policy`]).

use crate::error::UpdateError;
use crate::keys;
use crate::partitions::Partition;
use crate::policy::{self, InstalledVersion};
use crate::verify::{self, VerifiedImage};
use formats::cfg::INSTALLED;
use formats::config::Config;
use formats::instruction::Instruction;
use std::path::{Path, PathBuf};

/// What the admission check is given.
pub struct Admission<'a> {
    /// The device's policy: product, downgrades.
    pub config: &'a Config,
    /// The instruction (or the request that would become one).
    pub instruction: &'a Instruction,
    /// The manifest's path where its partition is mounted here.
    pub manifest: &'a Path,
    /// The trusted public key files.
    pub trusted_keys: &'a [PathBuf],
    /// Where the `cfg` partition is mounted.
    pub cfg: &'a Path,
    /// The target partition, already checked ([`policy::check_target`]).
    pub target: &'a Partition,
}

/// An image that may be installed.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub image: VerifiedImage,
    pub installed: InstalledVersion,
}

/// Runs the admission check. An unreadable `cfg:update/installed` is
/// logged as a warning, and refused where the downgrade policy needs it.
pub fn admit(a: &Admission<'_>) -> Result<Admitted, UpdateError> {
    let trusted = keys::load(a.trusted_keys)?;
    let image = verify::verify(a.manifest, &trusted)?;
    let installed = InstalledVersion::from_read(std::fs::read(a.cfg.join(INSTALLED)));
    if let Some(warning) = installed.warning() {
        log::warn!("{warning}");
    }
    policy::check_image(
        a.config,
        a.instruction,
        &image.manifest,
        &installed,
        a.target,
    )?;
    log::info!(
        "policy: product {}, version {} (installed: {}), fits {}",
        image.manifest.product,
        image.manifest.version,
        installed.known().map_or("unknown", |i| i.version.as_str()),
        a.target.name
    );
    Ok(Admitted { image, installed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Stage;
    use formats::config::Downgrade;
    use formats::instruction::PartitionPath;
    use formats::result::Installed;

    /// A signed image of version `version` in `dir`, and its trusted key.
    fn signed_image(dir: &Path, version: &str) -> (PathBuf, PathBuf) {
        let tree = dir.join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("hello"), "hello\n").unwrap();
        let (public, secret) = image_builder::keygen::keygen(&dir.join("key")).unwrap();
        let summary = image_builder::image::build(&image_builder::image::ImageRequest {
            source: image_builder::image::Source::Rootfs(tree),
            product: "p".into(),
            version: version.into(),
            key: secret,
            out_dir: dir.join("out"),
            compression: image_builder::payload::Compression {
                level: 1,
                threads: 1,
            },
            created: 1_700_000_000,
            allow_unsafe_paths: false,
            show_progress: false,
        })
        .unwrap();
        (summary.manifest_path, public)
    }

    fn system() -> Partition {
        Partition {
            name: "system".into(),
            kernel_name: "nvme0n1p3".into(),
            device: "/dev/nvme0n1p3".into(),
            dev: "259:3".into(),
            size: 256 << 20,
        }
    }

    #[test]
    fn the_installed_version_decides_as_documented() {
        let dir = tempfile::tempdir().unwrap();
        let (manifest, key) = signed_image(dir.path(), "2.0");
        let cfg = dir.path().join("cfg");
        std::fs::create_dir_all(cfg.join("update")).unwrap();
        let instruction = Instruction {
            manifest: PartitionPath::parse("storage:updates/p-2.0.manifest").unwrap(),
            target: "system".into(),
            allow_downgrade: false,
            requested: 0,
        };
        let target = system();
        let keys = [key];
        let admit_with = |config: &Config| {
            admit(&Admission {
                config,
                instruction: &instruction,
                manifest: &manifest,
                trusted_keys: &keys,
                cfg: &cfg,
                target: &target,
            })
        };
        let mut config = Config::for_product("p");
        // Missing: a fresh device takes any version.
        let admitted = admit_with(&config).unwrap();
        assert_eq!(admitted.installed, InstalledVersion::Missing);
        assert_eq!(admitted.image.manifest.version, "2.0");
        // Known and newer: a downgrade, refused.
        let newer = Installed {
            product: "p".into(),
            version: "3.0".into(),
        };
        std::fs::write(cfg.join(INSTALLED), newer.render()).unwrap();
        let err = admit_with(&config).unwrap_err();
        assert!(err.reason.starts_with("version: 2.0 is older"), "{err}");
        // Garbage: refused where downgrades are refused, naming the file.
        std::fs::write(cfg.join(INSTALLED), "garbage\n").unwrap();
        let err = admit_with(&config).unwrap_err();
        assert_eq!((err.stage, err.file.as_str()), (Stage::Policy, "cfg:update/installed"));
        // ... and as good as none where downgrades are allowed.
        config.downgrade = Downgrade::Allow;
        let admitted = admit_with(&config).unwrap();
        assert!(matches!(admitted.installed, InstalledVersion::Unreadable { .. }));
    }
}
