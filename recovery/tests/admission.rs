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
use recovery::admission::{admit, Admission, Purpose};
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

    /// The recovery's admission of 2.0 under `config`, for an update.
    fn admit(
        &self,
        config: &Config,
    ) -> Result<recovery::admission::Admitted, recovery::UpdateError> {
        self.admit_for(config, Purpose::Update)
    }

    /// The recovery's admission of 2.0 under `config`, for `purpose`.
    fn admit_for(
        &self,
        config: &Config,
        purpose: Purpose,
    ) -> Result<recovery::admission::Admitted, recovery::UpdateError> {
        admit(&Admission {
            config,
            instruction: &self.instruction,
            manifest: &self.image.manifest_path,
            trusted_keys: &self.keys,
            cfg: &self.cfg,
            target: &self.target,
            purpose,
        })
    }

    /// Both sides' decisions on 2.0: the recovery's (with the version
    /// restored away that an operator's leave let through, if any), and
    /// the one before the payload.
    fn decide(
        &self,
        config: &Config,
    ) -> (
        Result<Option<String>, recovery::UpdateError>,
        Result<(), recovery::UpdateError>,
    ) {
        use recovery::admission::{admit_head, HeadAdmission};
        let source = recovery::source::ImageSource::read(&self.image.manifest_path).unwrap();
        let full = self.admit(config).map(|a| a.retried.map(|r| r.version));
        let head = admit_head(&HeadAdmission {
            config,
            allow_downgrade: false,
            source: &source,
            trusted_keys: &self.keys,
            cfg: &self.cfg,
        })
        .map(|_| ());
        (full, head)
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

/// The version a restore took away (`cfg:update/restored-away`, written
/// by the recovery as the restore finishes) is refused by the recovery's
/// admission and by the one before the payload, whatever results follow
/// (a refused request for 2.1), until a newer version is installed, or
/// while `cfg:update/retry-restored` (written by `request
/// --retry-restored`) answers that very record; an unreadable or stale
/// leave allows nothing.
#[test]
fn the_version_restored_away_is_refused_unless_the_leave_on_cfg_answers_it() {
    use formats::cfg::{RetryRestored, RESTORED_AWAY, RESULT, RETRY_RESTORED};
    use formats::result::{Outcome, UpdateResult};
    use recovery::admission::{forget_restored_away, record_restored_away};
    use recovery::Stage;
    let d = Device::new();
    let cfg = &d.cfg;
    let config = Config::for_product("testprod");
    let installed = Installed {
        product: "testprod".into(),
        version: "1.0".into(),
    };
    fs::write(cfg.join(INSTALLED), installed.render()).unwrap();
    let restore = UpdateResult::parse(restored_away(1_700_000_100).as_bytes()).unwrap();
    record_restored_away(cfg, &restore).unwrap();
    fs::write(cfg.join(RESULT), restore.render()).unwrap();
    let (full, head) = d.decide(&config);
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
    // A later result (2.1 refused for its size) forgets nothing.
    let refused = UpdateResult {
        outcome: Outcome::Refused,
        version: "2.1".into(),
        restored: None,
        instruction: None,
        ..restore.clone()
    };
    fs::write(cfg.join(RESULT), refused.render()).unwrap();
    let (full, head) = d.decide(&config);
    assert!(full.is_err() && head.is_err());
    // A leave for another record of 2.0, or an unreadable one: refused.
    let leave_for = |record: &[u8]| {
        RetryRestored {
            version: "2.0".into(),
            record: blake3::hash(record).to_hex().to_string(),
        }
        .render()
    };
    for other in [leave_for(b"another record"), "torn".into()] {
        fs::write(cfg.join(RETRY_RESTORED), other).unwrap();
        let (full, head) = d.decide(&config);
        assert!(full.is_err() && head.is_err());
    }
    // The operator's leave for this record: admitted on both sides.
    let first = fs::read(cfg.join(RESTORED_AWAY)).unwrap();
    fs::write(cfg.join(RETRY_RESTORED), leave_for(&first)).unwrap();
    let (full, head) = d.decide(&config);
    assert_eq!(full.unwrap(), Some("2.0".to_string()));
    head.unwrap();
    // 2.0 restored away again, at the very same time (no RTC): the leave
    // goes, and put back it answers nothing, since the record differs.
    record_restored_away(cfg, &restore).unwrap();
    assert!(!cfg.join(RETRY_RESTORED).exists());
    assert_ne!(fs::read(cfg.join(RESTORED_AWAY)).unwrap(), first);
    fs::write(cfg.join(RETRY_RESTORED), leave_for(&first)).unwrap();
    let (full, head) = d.decide(&config);
    assert!(full.is_err() && head.is_err());
    // Installing 2.0 itself or an older version keeps the record; a newer
    // one removes it and the leave.
    for version in ["2.0", "1.5"] {
        forget_restored_away(cfg, version);
        assert!(cfg.join(RESTORED_AWAY).exists(), "{version}");
    }
    forget_restored_away(cfg, "2.0.1");
    assert!(!cfg.join(RESTORED_AWAY).exists() && !cfg.join(RETRY_RESTORED).exists());
    let (full, head) = d.decide(&config);
    assert_eq!(full.unwrap(), None);
    head.unwrap();
}

/// A recovery that writes no `cfg:update/restored-away` names the version
/// restored away only in its `outcome=restored` result: read from there,
/// with the leave keyed on that result's bytes, until another result.
#[test]
fn without_the_record_an_outcome_restored_result_names_the_version() {
    use formats::cfg::{RetryRestored, RESULT, RETRY_RESTORED};
    use formats::result::{Outcome, UpdateResult};
    let d = Device::new();
    let cfg = &d.cfg;
    let config = Config::for_product("testprod");
    let result = restored_away(1_700_000_100);
    fs::write(cfg.join(RESULT), &result).unwrap();
    let (full, head) = d.decide(&config);
    assert!(full.unwrap_err().reason.contains("was restored away"));
    assert!(head.is_err());
    let leave = RetryRestored {
        version: "2.0".into(),
        record: blake3::hash(result.as_bytes()).to_hex().to_string(),
    };
    fs::write(cfg.join(RETRY_RESTORED), leave.render()).unwrap();
    let (full, head) = d.decide(&config);
    assert_eq!(full.unwrap(), Some("2.0".to_string()));
    head.unwrap();
    fs::remove_file(cfg.join(RETRY_RESTORED)).unwrap();
    let confirmed = UpdateResult {
        outcome: Outcome::Confirmed,
        restored: None,
        instruction: None,
        ..UpdateResult::parse(result.as_bytes()).unwrap()
    };
    fs::write(cfg.join(RESULT), confirmed.render()).unwrap();
    let (full, head) = d.decide(&config);
    assert_eq!(full.unwrap(), None);
    head.unwrap();
}

/// A restore brings back the last good system even where
/// `cfg:update/restored-away` names its version. The record outlives later
/// results: an operator's leave installed 2.0, 2.1 followed, and the
/// record stayed (its removal failed, or a cut); or a cut between the
/// leave's removal and the new record re-runs a restore against the old
/// record. When the restore of 2.0 comes, neither the recovery's admission
/// before the erase nor `request`'s admission of the restore image
/// refuses it, while an update to 2.0 still is.
#[test]
fn a_restore_is_never_refused_the_version_restored_away() {
    use formats::cfg::RESTORED_AWAY;
    use formats::result::UpdateResult;
    use recovery::admission::{admit_restore, record_restored_away};
    let d = Device::new();
    let cfg = &d.cfg;
    let restore = UpdateResult::parse(restored_away(1_700_000_100).as_bytes()).unwrap();
    record_restored_away(cfg, &restore).unwrap();
    assert!(cfg.join(RESTORED_AWAY).exists());
    let installed = Installed {
        product: "testprod".into(),
        version: "2.0".into(),
    };
    fs::write(cfg.join(INSTALLED), installed.render()).unwrap();
    // As the recovery's restore() admits: downgrades allowed.
    let config = Config {
        downgrade: Downgrade::Allow,
        ..Config::for_product("testprod")
    };
    let err = d.admit_for(&config, Purpose::Update).unwrap_err();
    assert!(err.reason.contains("was restored away"), "{err}");
    let admitted = d.admit_for(&config, Purpose::Restore).unwrap();
    assert_eq!(admitted.image.manifest.version, "2.0");
    assert_eq!(admitted.retried, None);
    let image = admit_restore(&config, &d.image.manifest_path, &d.keys, cfg).unwrap();
    assert_eq!(image.manifest.version, "2.0");
}

/// Installing a newer version removes the record before the operator's
/// leave: where the leave cannot be removed (here a directory in its
/// place; on a device a failing cfg or a cut), the version is admitted
/// again, not refused behind a leave that is gone. The leave left behind
/// answers no later restore of that version, even one whose record has
/// the very same bytes (no RTC, the count starting again): the recovery
/// removes the leave before it writes a record.
#[test]
fn a_newer_version_removes_the_record_before_the_leave() {
    use formats::cfg::{RetryRestored, RESTORED_AWAY, RETRY_RESTORED};
    use formats::result::UpdateResult;
    use recovery::admission::{forget_restored_away, record_restored_away};
    let d = Device::new();
    let cfg = &d.cfg;
    let config = Config::for_product("testprod");
    let restore = UpdateResult::parse(restored_away(1_700_000_100).as_bytes()).unwrap();
    record_restored_away(cfg, &restore).unwrap();
    let first = fs::read(cfg.join(RESTORED_AWAY)).unwrap();
    fs::create_dir(cfg.join(RETRY_RESTORED)).unwrap();
    forget_restored_away(cfg, "2.1");
    assert!(!cfg.join(RESTORED_AWAY).exists());
    assert_eq!(d.admit(&config).unwrap().retried, None);
    // A cut after the record went: the leave for it stays.
    fs::remove_dir(cfg.join(RETRY_RESTORED)).unwrap();
    let leave = RetryRestored {
        version: "2.0".into(),
        record: blake3::hash(&first).to_hex().to_string(),
    };
    fs::write(cfg.join(RETRY_RESTORED), leave.render()).unwrap();
    assert_eq!(d.admit(&config).unwrap().retried, None);
    // 2.0 restored away again, its record byte for byte the first one.
    record_restored_away(cfg, &restore).unwrap();
    assert_eq!(fs::read(cfg.join(RESTORED_AWAY)).unwrap(), first);
    assert!(!cfg.join(RETRY_RESTORED).exists());
    let err = d.admit(&config).unwrap_err();
    assert!(err.reason.contains("was restored away"), "{err}");
}

/// `cfg:update/result` after 2.0 was restored away (1.0 back) at `finished`.
fn restored_away(finished: u64) -> String {
    formats::keyvalue::seal(&format!(
        "format=1\noutcome=restored\nversion=2.0\nstage=trial\nreason=2.0 not confirmed after 3 boots\nattempt=1\nstarted=1700000000\nfinished={finished}\nduration-ms=0\nbytes=0\nentries=0\nrestored=1.0\n"
    ))
}
