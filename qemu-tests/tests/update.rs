//! The recovery OS on a real kernel: PID 1 of its initramfs updates a GPT
//! disk in QEMU. Each test builds a device's disk, boots the recovery on
//! it, and reads what it left on the disk.

use qemu_tests::scenario::{sample_rootfs, Device, Suite, PRODUCT};
use qemu_tests::vm::Finished;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(180);

/// Boots the recovery on the device's disk and fails unless it installed
/// `version` and rebooted by itself.
fn boot_and_install(device: &Device, version: &str) -> Finished {
    let run = device.boot("", TIMEOUT);
    assert!(
        run.ended,
        "the guest did not reboot by itself:\n{}",
        run.tail()
    );
    assert!(
        run.says(&format!("done: {version} installed")),
        "no success line:\n{}",
        run.tail()
    );
    run
}

#[test]
fn happy_path_installs_v2_and_reboots() {
    let device = Device::new("1.0");
    let v2 = sample_rootfs(device.dir.path(), "2.0");
    device.stage(PRODUCT, "2.0", &v2);
    device.instruct("storage:updates/demo-2.0.manifest", "system");
    device.build_disk();

    let run = boot_and_install(&device, "2.0");

    let disk = device.inspect();
    let system = disk.partition("system");
    assert_eq!(system.read_string("/etc/version").as_deref(), Some("2.0\n"));
    assert_eq!(
        system.mode("/usr/bin/su-demo"),
        Some(0o4755),
        "{}",
        system.stat("/usr/bin/su-demo")
    );
    assert!(system.stat("/bin/sh").contains("Type: symlink"));
    let cfg = disk.partition("cfg");
    assert!(
        !cfg.exists("/update/instruction"),
        "the instruction is still there"
    );
    let result = cfg.read_string("/update/result").expect("a result on cfg");
    assert!(result.contains("outcome=success\n"), "{result}");
    assert!(result.contains("version=2.0\n"), "{result}");
    let installed = cfg.read_string("/update/installed").unwrap();
    assert!(installed.contains("version=2.0\n"), "{installed}");
    let log = cfg
        .read_string("/update/recovery.log")
        .expect("a recovery log on cfg");
    assert!(log.contains("done: 2.0 installed"), "{log}");
    // Every line, those logged before cfg was mounted too, says when:
    // `2026-11-24T01:26:26Z [    3.456] recovery: ...`.
    for line in log.lines() {
        let stamped = line.get(..33).is_some_and(|s| {
            s.as_bytes()[10] == b'T' && s[19..].starts_with("Z [") && s.ends_with("] ")
        });
        assert!(stamped && line[33..].starts_with("recovery: "), "{line:?}");
    }
    println!(
        "happy path: {}; initramfs {} bytes",
        run.timing(),
        Suite::get().initramfs_size
    );
}

/// The instruction names a bundle (`demo-2.0.swu`), the only file staged:
/// the recovery reads the manifest, the signature and the payload from it
/// in place, and installs 2.0.
#[test]
fn a_staged_bundle_installs_in_place() {
    let device = Device::new("1.0");
    let v2 = sample_rootfs(device.dir.path(), "2.0");
    let image = device.stage(PRODUCT, "2.0", &v2);
    let bundle = image_builder::bundle::build(&image_builder::bundle::BundleRequest {
        manifest: image.manifest_path.clone(),
        out_dir: device.storage.join("updates"),
        hardware: vec!["1.0".into()],
    })
    .unwrap();
    for f in [
        &image.manifest_path,
        &image.signature_path,
        &image.payload_path,
    ] {
        std::fs::remove_file(f).unwrap();
    }
    let staged = std::fs::read(&bundle.path).unwrap();
    device.instruct("storage:updates/demo-2.0.swu", "system");
    device.build_disk();

    let run = boot_and_install(&device, "2.0");
    assert!(run.says("payload: read in place in"), "{}", run.tail());
    let disk = device.inspect();
    let system = disk.partition("system");
    assert_eq!(system.read_string("/etc/version").as_deref(), Some("2.0\n"));
    let result = disk
        .partition("cfg")
        .read_string("/update/result")
        .expect("a result on cfg");
    assert!(result.contains("outcome=success\n"), "{result}");
    // Nothing was unpacked or copied beside the bundle, which is unchanged.
    let storage = disk.partition("storage");
    assert_eq!(storage.list("/updates"), ["demo-2.0.swu"]);
    assert!(storage.read("/updates/demo-2.0.swu") == Some(staged));
    println!("bundle: {}", run.timing());
}

#[test]
fn no_instruction_changes_nothing() {
    let device = Device::new("1.0");
    device.build_disk();
    let disk = device.inspect();
    let system = disk.hash("system");
    let run = device.boot("", TIMEOUT);
    assert!(
        run.ended,
        "the guest did not reboot by itself:\n{}",
        run.tail()
    );
    assert!(
        run.says("no update instruction on cfg: nothing to do"),
        "{}",
        run.tail()
    );
    assert_eq!(disk.hash("system"), system, "system changed");
    // cfg gains only the recovery log: no result, installed unchanged.
    let cfg = disk.partition("cfg");
    assert!(!cfg.exists("/update/result"), "a result was written");
    assert_eq!(
        cfg.list("/update")
            .iter()
            .filter(|n| *n != "recovery.log")
            .count(),
        1,
        "{:?}",
        cfg.list("/update")
    );
    assert!(cfg
        .read_string("/update/installed")
        .unwrap_or_default()
        .contains("version=1.0\n"));
}

/// A real root file system: Debian minbase (about 200 MB, 6,800 entries),
/// with a file capability added, installed in the VM.
#[test]
fn the_debian_minbase_image_installs() {
    let rootfs = qemu_tests::artifacts::debian_minbase().unwrap_or_else(|e| panic!("{e}"));
    // cap_net_raw+ep (version 2 capability xattr) on a binary.
    let mut cap = 0x0200_0001u32.to_le_bytes().to_vec();
    cap.extend_from_slice(&(1u32 << 13).to_le_bytes());
    cap.extend_from_slice(&[0; 12]);
    xattr::set(rootfs.join("usr/bin/env"), "security.capability", &cap).unwrap();

    let mut device = Device::new("1.0");
    device.sizes.system = 400;
    device.sizes.storage = 160;
    let image = device.stage(PRODUCT, "12.0", &rootfs);
    device.instruct("storage:updates/demo-12.0.manifest", "system");
    device.build_disk();

    let run = device.boot("", Duration::from_secs(600));
    assert!(
        run.ended,
        "the guest did not reboot by itself:\n{}",
        run.tail()
    );
    assert!(run.says("done: 12.0 installed"), "{}", run.tail());
    let system = device.inspect().partition("system");
    let version = std::fs::read_to_string(rootfs.join("etc/debian_version")).unwrap();
    assert_eq!(system.read_string("/etc/debian_version"), Some(version));
    assert_eq!(
        system.mode("/usr/bin/passwd"),
        Some(0o4755),
        "{}",
        system.stat("/usr/bin/passwd")
    );
    let stat = system.stat("/usr/bin/env");
    assert!(
        stat.contains("security.capability"),
        "no file capability on usr/bin/env:\n{stat}"
    );
    println!(
        "debian minbase: {} entries, {} bytes unpacked: {}",
        image.manifest.entries,
        image.manifest.unpacked_size,
        run.timing()
    );
}

/// Where the boot loader cannot read cfg, a flag sends the next boot to
/// the recovery; the recovery clears it once the update is installed:
/// here GRUB's environment block, and U-Boot's environment on a raw
/// partition located by an fw_env.config on cfg.
#[test]
fn the_recovery_clears_the_boot_loader_flags() {
    use formats::bootflag::BootFlag;
    for (setting, prepare) in [
        ("grubenv:cfg:grubenv", "grubenv"),
        ("uboot:cfg:fw_env.config", "uboot"),
    ] {
        let device = Device::new("1.0");
        let v2 = sample_rootfs(device.dir.path(), "2.0");
        device.stage(PRODUCT, "2.0", &v2);
        device.instruct("storage:updates/demo-2.0.manifest", "system");
        let host_flag = if prepare == "grubenv" {
            BootFlag::GrubEnv {
                file: device.cfg.join("grubenv"),
            }
        } else {
            // The environment is a file on cfg here (on a device, a raw
            // area of the flash): the guest's fw_env.config names it as the
            // recovery sees it, the host arms it through a config of its own.
            // A saved environment: one on U-Boot's defaults is never armed.
            let env = device.dir.path().join("uboot.env");
            let mut saved = formats::ubootenv::UbootEnv::default();
            saved.set("bootcmd", "run distro_bootcmd");
            std::fs::write(&env, saved.render_copy(0x4000, None).unwrap()).unwrap();
            std::fs::write(
                device.dir.path().join("fw_env.host"),
                format!("{} 0x0 0x4000\n", env.display()),
            )
            .unwrap();
            std::fs::write(
                device.cfg.join("fw_env.config"),
                "/run/cfg/uboot.env 0x0 0x4000\n",
            )
            .unwrap();
            BootFlag::Uboot {
                config: device.dir.path().join("fw_env.host"),
                defaults: None,
            }
        };
        host_flag.arm().unwrap();
        if prepare == "uboot" {
            std::fs::copy(
                device.dir.path().join("uboot.env"),
                device.cfg.join("uboot.env"),
            )
            .unwrap();
        }
        device.build_disk();
        let run = device.boot(&format!("recovery.bootflag={setting}"), TIMEOUT);
        assert!(run.ended, "{}", run.tail());
        assert!(
            run.says(&format!("bootflag: {setting} cleared")),
            "{setting}:\n{}",
            run.tail()
        );
        let cfg = device.inspect().partition("cfg");
        let out = device.dir.path().join("after");
        if prepare == "grubenv" {
            std::fs::write(&out, cfg.read("/grubenv").expect("grubenv on cfg")).unwrap();
            assert!(
                !BootFlag::GrubEnv { file: out }.is_armed().unwrap(),
                "grubenv still armed"
            );
        } else {
            std::fs::write(
                device.dir.path().join("uboot.env"),
                cfg.read("/uboot.env").expect("uboot.env on cfg"),
            )
            .unwrap();
            assert!(
                !host_flag.is_armed().unwrap(),
                "U-Boot environment still armed"
            );
        }
    }
}
