//! The admission check on real files, as the recovery runs it before the
//! erase (`bootloader-glue`'s request tests compare its side with this one):
//! what `cfg:update/installed` holds decides as `docs/update-records.md`
//! says.

mod common;

use common::*;
use formats::cfg::INSTALLED;
use formats::config::{Config, Downgrade};
use formats::instruction::{Instruction, PartitionPath};
use formats::result::Installed;
use image_builder::image::Source;
use recovery::admission::{admit, Admission};
use recovery::partitions::Partition;
use recovery::policy::InstalledVersion;
use std::fs;

/// An image of testprod 2.0 in `work/out`, and the public key it is signed with.
fn image_2_0(work: &std::path::Path) -> (std::path::PathBuf, image_builder::image::ImageSummary) {
    let root = work.join("root");
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join("hello"), "hello\n").unwrap();
    let (public, secret) = keypair(work, "k");
    let image = build(
        Source::Rootfs(root),
        &secret,
        &work.join("out"),
        "2.0",
        false,
    );
    (public, image)
}

/// A device with 2.0 staged ([`image_2_0`]), its cfg, and the
/// instruction to install it into `system`.
struct Device {
    /// Holds the files while the device lives.
    _work: tempfile::TempDir,
    keys: [std::path::PathBuf; 1],
    image: image_builder::image::ImageSummary,
    cfg: std::path::PathBuf,
    instruction: Instruction,
    target: Partition,
}

impl Device {
    fn new() -> Device {
        let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let (public, image) = image_2_0(work.path());
        let cfg = work.path().join("cfg");
        fs::create_dir_all(cfg.join("update")).unwrap();
        Device {
            _work: work,
            keys: [public],
            image,
            cfg,
            instruction: Instruction {
                manifest: PartitionPath::parse("storage:out/testprod-2.0.manifest").unwrap(),
                target: "system".into(),
                allow_downgrade: false,
                requested: 0,
                restore: None,
            },
            target: Partition {
                name: "system".into(),
                kernel_name: "nvme0n1p3".into(),
                device: "/dev/nvme0n1p3".into(),
                dev: "259:3".into(),
                size: 256 << 20,
            },
        }
    }

    /// The recovery's admission of 2.0 under `config`.
    fn admit(
        &self,
        config: &Config,
    ) -> Result<recovery::admission::Admitted, recovery::UpdateError> {
        admit(&Admission {
            config,
            instruction: &self.instruction,
            manifest: &self.image.manifest_path,
            trusted_keys: &self.keys,
            cfg: &self.cfg,
            target: &self.target,
        })
    }
}

#[test]
fn the_installed_version_decides_as_documented() {
    let d = Device::new();
    let cfg = &d.cfg;
    let admit_with = |config: &Config| d.admit(config);
    let mut config = Config::for_product("testprod");
    // Missing: a fresh device takes any version.
    let admitted = admit_with(&config).unwrap();
    assert_eq!(admitted.installed, InstalledVersion::Missing);
    assert_eq!(admitted.image.manifest.version, "2.0");
    // Known and newer: a downgrade, refused.
    let newer = Installed {
        product: "testprod".into(),
        version: "3.0".into(),
    };
    fs::write(cfg.join(INSTALLED), newer.render()).unwrap();
    let err = admit_with(&config).unwrap_err();
    assert!(err.reason.starts_with("version: 2.0 is older"), "{err}");
    // Garbage: as good as none, with the warning, whatever the policy.
    fs::write(cfg.join(INSTALLED), "garbage\n").unwrap();
    for downgrade in [Downgrade::Refuse, Downgrade::Allow] {
        config.downgrade = downgrade;
        let admitted = admit_with(&config).unwrap();
        assert!(admitted.installed.warning().is_some());
        assert!(matches!(
            admitted.installed,
            InstalledVersion::Unreadable { .. }
        ));
    }
}

/// The admission before the payload (what the agent runs on a manifest
/// and signature fetched from a server) decides signature, product and
/// version as `admit` does, and needs no payload.
#[test]
fn the_head_is_admitted_without_the_payload_by_the_same_rules() {
    use recovery::admission::{admit_head, HeadAdmission};
    use recovery::source::ImageSource;
    use recovery::Stage;
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (public, image) = image_2_0(work.path());
    let (stranger, _) = keypair(work.path(), "s");
    fs::remove_file(&image.payload_path).unwrap();
    let source = ImageSource::read(&image.manifest_path).unwrap();
    let cfg = work.path().join("cfg");
    fs::create_dir_all(cfg.join("update")).unwrap();
    let head = |config: &Config, keys: &[std::path::PathBuf]| {
        admit_head(&HeadAdmission {
            config,
            allow_downgrade: false,
            source: &source,
            trusted_keys: keys,
            cfg: &cfg,
        })
    };
    let config = Config::for_product("testprod");
    let keys = [public.clone()];
    let admitted = head(&config, &keys).unwrap();
    assert_eq!(admitted.manifest.version, "2.0");
    let err = head(&config, &[stranger]).unwrap_err();
    assert_eq!(err.stage, Stage::Signature, "{err}");
    let err = head(&Config::for_product("other"), &keys).unwrap_err();
    assert!(err.reason.starts_with("product: "), "{err}");
    let newer = Installed {
        product: "testprod".into(),
        version: "3.0".into(),
    };
    fs::write(cfg.join(INSTALLED), newer.render()).unwrap();
    let err = head(&config, &keys).unwrap_err();
    assert!(err.reason.starts_with("version: 2.0 is older"), "{err}");
    let allow = Config {
        downgrade: Downgrade::Allow,
        ..config
    };
    head(&allow, &keys).unwrap();
}

/// The version the last restore took away (`cfg:update/result`,
/// `outcome=restored`) is refused by the recovery's admission and by the
/// one before the payload, unless `cfg:update/retry-restored` (written by
/// `request --retry-restored`) answers that very restore; an unreadable
/// leave allows nothing.
#[test]
fn the_version_restored_away_is_refused_unless_the_leave_on_cfg_answers_it() {
    use formats::cfg::{RetryRestored, RESULT, RETRY_RESTORED};
    use formats::result::{Outcome, UpdateResult};
    use recovery::admission::{admit_head, HeadAdmission};
    use recovery::source::ImageSource;
    use recovery::Stage;
    let d = Device::new();
    let cfg = &d.cfg;
    let config = Config::for_product("testprod");
    let source = ImageSource::read(&d.image.manifest_path).unwrap();
    // Both sides' decisions: the recovery's, and the one before the payload.
    let decide = || {
        let full = d.admit(&config).map(|a| a.retried.map(|r| r.version));
        let head = admit_head(&HeadAdmission {
            config: &config,
            allow_downgrade: false,
            source: &source,
            trusted_keys: &d.keys,
            cfg,
        })
        .map(|_| ());
        (full, head)
    };
    let installed = Installed {
        product: "testprod".into(),
        version: "1.0".into(),
    };
    fs::write(cfg.join(INSTALLED), installed.render()).unwrap();
    fs::write(cfg.join(RESULT), restored_away(1_700_000_100)).unwrap();
    let (full, head) = decide();
    let err = full.unwrap_err();
    assert_eq!(err.stage, Stage::Policy);
    assert!(
        err.reason.starts_with(
            "version: 2.0 was restored away on 2023-11-14T22:15:00Z (1.0 restored): 2.0 not \
             confirmed after 3 boots; "
        ),
        "{err}"
    );
    assert_eq!(head.unwrap_err().reason, err.reason);
    // A leave for another restore of 2.0, or an unreadable one: refused.
    let leave = |at: u64| {
        RetryRestored {
            version: "2.0".into(),
            restored_at: at,
        }
        .render()
    };
    for other in [leave(1_600_000_000), "torn".into()] {
        fs::write(cfg.join(RETRY_RESTORED), other).unwrap();
        let (full, head) = decide();
        assert!(full.is_err() && head.is_err());
    }
    // The operator's leave for this restore: admitted on both sides.
    fs::write(cfg.join(RETRY_RESTORED), leave(1_700_000_100)).unwrap();
    let (full, head) = decide();
    assert_eq!(full.unwrap(), Some("2.0".to_string()));
    head.unwrap();
    // Another outcome names no version restored away.
    fs::remove_file(cfg.join(RETRY_RESTORED)).unwrap();
    let confirmed = UpdateResult {
        outcome: Outcome::Confirmed,
        restored: None,
        ..UpdateResult::parse(restored_away(1_700_000_100).as_bytes()).unwrap()
    };
    fs::write(cfg.join(RESULT), confirmed.render()).unwrap();
    let (full, head) = decide();
    assert_eq!(full.unwrap(), None);
    head.unwrap();
}

/// `cfg:update/result` after 2.0 was restored away (1.0 back) at `finished`.
fn restored_away(finished: u64) -> String {
    formats::keyvalue::seal(&format!(
        "format=1\noutcome=restored\nversion=2.0\nstage=trial\nreason=2.0 not confirmed after 3 boots\nattempt=1\nstarted=1700000000\nfinished={finished}\nduration-ms=0\nbytes=0\nentries=0\nrestored=1.0\n"
    ))
}
