//! The full update cycle through OVMF and a real GRUB, in one QEMU run:
//! system 1.0 asks for 2.0, GRUB boots the recovery, the recovery installs
//! 2.0, GRUB boots 2.0, which reports the update's status.

use qemu_tests::cycle::{boots, Cycle, Variant, UPDATED};

#[test]
fn the_device_updates_itself_from_1_0_to_2_0_through_grub() {
    let cycle = Cycle::new(Variant::Good);
    let run = cycle.run(false);
    cycle.assert_updated(&run);
    assert!(run.says("OK: 2.0 installed (attempt 1"), "{}", run.tail());
    let storage = cycle.inspect().partition("storage");
    let backups = storage.list("/backups");
    assert!(
        backups
            .iter()
            .any(|b| b.starts_with("cfg-") && b.ends_with(".tar.zst")),
        "no cfg backup in storage: {backups:?}"
    );
    println!(
        "full cycle: {:.1} s from QEMU start to the final power-off",
        run.seconds
    );
}

#[test]
fn a_refused_image_brings_the_device_back_on_1_0_and_status_says_why() {
    let cycle = Cycle::new(Variant::BadSignatureAfterRequest);
    let run = cycle.run(false);
    assert!(run.ended, "the guest did not power off:\n{}", run.tail());
    assert_eq!(
        boots(&run),
        [
            "reimage: booting the system",
            "system: running demo 1.0",
            "reimage: booting the recovery",
            "reimage: booting the system",
            "system: running demo 1.0",
        ],
        "{}",
        run.tail()
    );
    assert!(run.says("recovery: error: signature:"), "{}", run.tail());
    assert!(
        run.says(
            "CRITICAL: the update to storage:updates/demo-2.0.manifest was refused at signature:"
        ),
        "{}",
        run.tail()
    );
    assert!(run.says("system: status exit code 2"), "{}", run.tail());
    let system = cycle.inspect().partition("system");
    assert_eq!(system.read_string("/etc/version").as_deref(), Some("1.0\n"));
}

/// The same cycle through systemd-boot: `request --bootloader
/// systemd-boot` sets the `LoaderEntryOneShot` EFI variable, systemd-boot
/// boots the recovery entry once, and the default entry afterwards. Before
/// that, on the running 1.0: request, request again, cancel, all through
/// efivarfs, which marks the variable immutable once written.
#[test]
fn the_device_updates_itself_through_systemd_boot() {
    use qemu_tests::cycle::Loader;
    let cycle = Cycle::with_loader(Variant::Good, Loader::SystemdBoot);
    let run = cycle.run(false);
    assert!(run.ended, "the guest did not power off:\n{}", run.tail());
    let systems: Vec<&str> = boots(&run)
        .into_iter()
        .filter(|l| l.starts_with("system:"))
        .collect();
    assert_eq!(
        systems,
        ["system: running demo 1.0", "system: running demo 2.0"],
        "{}",
        run.tail()
    );
    let steps: Vec<&str> = run
        .console
        .lines()
        .filter_map(|l| l.find("system: ").map(|at| &l[at..]))
        .filter(|l| l.contains("exit code") || l.contains("one-shot variable"))
        .collect();
    assert_eq!(
        steps,
        [
            // efivarfs makes the variable immutable (a plain rm fails):
            // the second request and the cancel get past that.
            "system: the one-shot variable is immutable",
            "system: request exit code 0",
            "system: the one-shot variable is immutable",
            "system: request exit code 0",
            "system: cancel exit code 0",
            "system: the one-shot variable is gone",
            // 2.0 confirms its trial: its entry on the ESP loses its
            // counter (`system+3.conf`, then `system+2-1.conf` as
            // systemd-boot booted it, is `system.conf` again).
            "system: confirm exit code 0",
            "system: status exit code 0",
        ],
        "{}",
        run.tail()
    );
    assert!(
        run.says("the pending update is cancelled"),
        "{}",
        run.tail()
    );
    assert_eq!(
        run.console.matches("update to demo 2.0 requested").count(),
        3,
        "{}",
        run.tail()
    );
    assert!(run.says("recovery: done: 2.0 installed"), "{}", run.tail());
    assert!(
        run.says("recovery: bootflag: systemd-boot:::system.conf:esp: cleared"),
        "{}",
        run.tail()
    );
    assert!(run.says("system: status exit code 0"), "{}", run.tail());
    let disk = cycle.inspect();
    let system = disk.partition("system");
    assert_eq!(system.read_string("/etc/version").as_deref(), Some("2.0\n"));
    assert_eq!(
        disk.fat_list("esp", "/loader/entries"),
        ["recovery.conf", "system.conf"],
        "the confirmed 2.0's entry still counts"
    );
    let cfg = disk.partition("cfg");
    assert!(
        cfg.exists("/update/instruction.cancelled"),
        "no cancelled instruction on cfg"
    );
    assert!(!cfg.exists("/update/instruction"));
}

/// The running system verifies before it asks: an image signed by a key
/// the device does not trust is refused by `request`, nothing is armed,
/// and the device never leaves 1.0.
#[test]
fn request_refuses_an_untrusted_image_on_the_running_system() {
    let cycle = Cycle::new(Variant::UntrustedAtRequest);
    let run = cycle.run(false);
    assert!(run.ended, "the guest did not power off:\n{}", run.tail());
    assert_eq!(
        boots(&run),
        ["reimage: booting the system", "system: running demo 1.0"],
        "{}",
        run.tail()
    );
    assert!(
        run.says("bootloader-glue: the staged image: signature:"),
        "{}",
        run.tail()
    );
    assert!(run.says("which is not trusted"), "{}", run.tail());
    assert!(
        run.says("OK: demo 1.0 installed; no update recorded"),
        "{}",
        run.tail()
    );
    assert!(run.says("system: status exit code 0"), "{}", run.tail());
    let disk = cycle.inspect();
    assert!(
        !disk.partition("cfg").exists("/update/instruction"),
        "an instruction was written"
    );
    assert!(
        disk.partition("storage").list("/backups").is_empty(),
        "a backup was made for a refused image"
    );
}

/// The same cycle where GRUB cannot read cfg: `request --bootloader
/// grubenv:FILE` sets `reimage_update=1` in a GRUB environment block on the
/// recovery partition, GRUB's `load_env` sees it and boots the recovery,
/// and the recovery clears it, so that the next boot is 2.0.
#[test]
fn the_device_updates_itself_through_a_grub_environment_block_alone() {
    use qemu_tests::cycle::Loader;
    let cycle = Cycle::with_loader(Variant::Good, Loader::GrubEnvOnly);
    let run = cycle.run(false);
    assert!(run.ended, "the guest did not power off:\n{}", run.tail());
    assert_eq!(boots(&run), UPDATED, "{}", run.tail());
    assert!(
        run.says("recovery: bootflag: grubenv:recovery:grubenv cleared"),
        "{}",
        run.tail()
    );
    assert!(run.says("system: status exit code 0"), "{}", run.tail());
}

/// The same cycle through a real U-Boot: Debian's `u-boot-qemu` for x86_64
/// (`-bios u-boot.rom`, the disk on IDE) finds `boot.scr` on the
/// ESP, whose start is `bootloader-glue uboot-script`. `request
/// --bootloader uboot` writes the instruction and sets `reimage_update=1` in
/// the environment area on the `ubootenv` partition; U-Boot sees both (the
/// script says so), boots the recovery, which installs 2.0 and clears the
/// flag; U-Boot then sees neither and boots 2.0.
#[test]
fn the_device_updates_itself_through_u_boot() {
    use qemu_tests::cycle::Loader;
    let cycle = Cycle::with_loader(Variant::Good, Loader::UBoot);
    let run = cycle.run(false);
    assert!(
        run.stopped,
        "the guest did not reach its power-off:\n{}",
        run.tail()
    );
    assert_eq!(boots(&run), UPDATED, "{}", run.tail());
    let script: Vec<&str> = run
        .console
        .lines()
        .filter(|l| l.starts_with("reimage: "))
        .collect();
    assert_eq!(
        script,
        [
            "reimage: booting the system",
            // U-Boot reads what request wrote: the flag, CRC and all, and
            // the file on cfg.
            "reimage: reimage_update=1 in the environment on ubootenv",
            "reimage: update/instruction on cfg",
            "reimage: booting the recovery",
            // 2.0 is on trial until it confirms itself, on this boot.
            "reimage: trial boot 1 of 3",
            "reimage: booting the system",
        ],
        "{}",
        run.tail()
    );
    assert!(run.says("update to demo 2.0 requested"), "{}", run.tail());
    assert!(run.says("recovery: done: 2.0 installed"), "{}", run.tail());
    assert!(
        run.says("recovery: bootflag: uboot:cfg:fw_env.config cleared"),
        "{}",
        run.tail()
    );
    assert!(run.says("OK: 2.0 installed (attempt 1"), "{}", run.tail());
    assert!(run.says("system: status exit code 0"), "{}", run.tail());
    let disk = cycle.inspect();
    let system = disk.partition("system");
    assert_eq!(system.read_string("/etc/version").as_deref(), Some("2.0\n"));
    assert!(!disk.partition("cfg").exists("/update/instruction"));
    let area = disk.bytes("ubootenv");
    let env = formats::ubootenv::UbootEnv::parse_copy(&area[..0x4000], false)
        .expect("a valid environment on ubootenv")
        .env;
    assert_ne!(env.get("reimage_update"), Some("1"), "{env:?}");
    assert_eq!(env.get("bootlimit"), Some("3"), "{env:?}");
    // Confirmed: U-Boot counts no more.
    assert_eq!(env.get("upgrade_available"), None, "{env:?}");
    assert_eq!(env.get("bootcount"), Some("0"), "{env:?}");
    assert!(run.says("system: confirm exit code 0"), "{}", run.tail());
}
