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

#[test]
fn the_installed_version_decides_as_documented() {
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (public, image) = image_2_0(work.path());
    let cfg = work.path().join("cfg");
    fs::create_dir_all(cfg.join("update")).unwrap();
    let instruction = Instruction {
        manifest: PartitionPath::parse("storage:out/testprod-2.0.manifest").unwrap(),
        target: "system".into(),
        allow_downgrade: false,
        requested: 0,
        restore: None,
    };
    let target = Partition {
        name: "system".into(),
        kernel_name: "nvme0n1p3".into(),
        device: "/dev/nvme0n1p3".into(),
        dev: "259:3".into(),
        size: 256 << 20,
    };
    let keys = [public];
    let admit_with = |config: &Config| {
        admit(&Admission {
            config,
            instruction: &instruction,
            manifest: &image.manifest_path,
            trusted_keys: &keys,
            cfg: &cfg,
            target: &target,
        })
    };
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
