//! Trial boots and the restore of the last good image, on a real kernel:
//! through OVMF and GRUB (the full cycle: 1.0 requests 2.0, GRUB counts
//! 2.0's boots), and with the recovery booted directly on a device whose
//! records say what happened before (a trial that ran out, an update that
//! fails after the erase every time).

use formats::instruction::{Instruction, PartitionPath};
use formats::trial::Trial;
use qemu_tests::cycle::{boots, Cycle, Variant};
use qemu_tests::scenario::{failing_tarball, sample_rootfs, Device, PRODUCT};
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(180);
const RESTORE_IMAGE: &str = "storage:updates/demo-1.0.manifest";

/// The GRUB environment block on cfg, as `name=value` lines.
fn grubenv(cycle: &Cycle) -> String {
    let block = cycle
        .inspect()
        .partition("cfg")
        .read("/grubenv")
        .expect("no grubenv on cfg");
    let env = formats::grubenv::GrubEnv::parse(&block).expect("a GRUB environment block");
    ["reimage_trial", "reimage_update"]
        .iter()
        .filter_map(|n| env.get(n).map(|v| format!("{n}={v}")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The consoles of a full cycle whose 2.0 was not confirmed in 3 boots:
/// the recovery put it on trial, then restored 1.0, whose status says so.
fn assert_trial_ran_out(run: &qemu_tests::vm::Finished) {
    assert!(
        run.says("recovery: trial: 2.0 must confirm itself within 3 boots"),
        "{}",
        run.tail()
    );
    assert!(
        run.says("restore: 2.0 not confirmed after 3 boots (trial); restoring storage:updates/demo-1.0.manifest"),
        "{}",
        run.tail()
    );
    assert!(
        run.says("CRITICAL: restored 1.0: 2.0 not confirmed after 3 boots"),
        "{}",
        run.tail()
    );
    assert!(run.says("system: status exit code 2"), "{}", run.tail());
}

/// [`assert_trial_ran_out`], and on the disk: 1.0 on system, neither the
/// trial nor the pending restore on cfg. Returns the disk.
fn assert_full_cycle_restored(
    cycle: &Cycle,
    run: &qemu_tests::vm::Finished,
) -> qemu_tests::inspect::Disk {
    assert_trial_ran_out(run);
    let disk = cycle.inspect();
    assert_eq!(
        disk.partition("system")
            .read_string("/etc/version")
            .as_deref(),
        Some("1.0\n")
    );
    let cfg = disk.partition("cfg");
    assert!(!cfg.exists("/update/trial") && !cfg.exists("/update/restore"));
    disk
}

#[test]
fn through_grub_an_unconfirmed_2_0_is_replaced_by_1_0_after_3_boots() {
    let cycle = Cycle::new(Variant::Unconfirmed);
    let run = cycle.run(false);
    assert!(run.ended, "the guest did not power off:\n{}", run.tail());
    assert_eq!(
        boots(&run),
        [
            "reimage: booting the system",
            "system: running demo 1.0",
            "reimage: booting the recovery",
            "reimage: booting the system",
            "system: running demo 2.0",
            "reimage: booting the system",
            "system: running demo 2.0",
            "reimage: booting the system",
            "system: running demo 2.0",
            "reimage: booting the recovery",
            "reimage: booting the system",
            "system: running demo 1.0",
        ],
        "{}",
        run.tail()
    );
    assert_trial_ran_out(&run);
    let disk = cycle.inspect();
    // What the restored 1.0's init made as it booted (mount points, a
    // /dev/null before devtmpfs) aside.
    let made_by_init =
        ["boot", "cfg", "storage", "dev/null"].map(|p| format!("{p}: not in the image"));
    let differences: Vec<String> = disk
        .partition("system")
        .differences_from(&cycle.dir.path().join("system"))
        .into_iter()
        .filter(|d| !made_by_init.contains(d))
        .collect();
    assert!(
        differences.is_empty(),
        "system is not exactly 1.0: {differences:?}"
    );
    let cfg = disk.partition("cfg");
    let result = cfg.read_string("/update/result").unwrap_or_default();
    for line in [
        "outcome=restored\n",
        "version=2.0\n",
        "stage=trial\n",
        "restored=1.0\n",
    ] {
        assert!(result.contains(line), "{line} not in {result}");
    }
    assert!(!cfg.exists("/update/trial") && !cfg.exists("/update/restore"));
    assert_eq!(grubenv(&cycle), "", "GRUB still counts");
}

#[test]
fn through_grub_a_confirmed_2_0_boots_plainly_afterwards() {
    let cycle = Cycle::new(Variant::Confirms);
    let run = cycle.run(false);
    assert!(run.ended, "the guest did not power off:\n{}", run.tail());
    assert_eq!(
        boots(&run),
        [
            "reimage: booting the system",
            "system: running demo 1.0",
            "reimage: booting the recovery",
            "reimage: booting the system",
            "system: running demo 2.0",
            "reimage: booting the system",
            "system: running demo 2.0",
        ],
        "{}",
        run.tail()
    );
    assert!(
        run.says("2.0 confirmed: its trial is over"),
        "{}",
        run.tail()
    );
    assert!(run.says("system: confirm exit code 0"), "{}", run.tail());
    assert!(run.says("OK: 2.0 installed (attempt 1"), "{}", run.tail());
    assert!(run.says("; confirmed"), "{}", run.tail());
    assert_eq!(
        run.console.matches("system: confirm exit code").count(),
        1,
        "the second boot of 2.0 was still on trial:\n{}",
        run.tail()
    );
    let cfg = cycle.inspect().partition("cfg");
    assert!(!cfg.exists("/update/trial"));
    assert!(cfg
        .read_string("/update/result")
        .unwrap_or_default()
        .contains("outcome=confirmed\n"));
    assert_eq!(
        grubenv(&cycle),
        "",
        "GRUB still counts after the confirmation"
    );
}

/// A one-shot flag left set with one trial boot left (what a power cut
/// between the recovery's removing the instruction and clearing the flag
/// leaves with `trial-boots=1`) sends the next boot to the recovery; GRUB
/// must not count that boot, so that the recovery finds the boot left,
/// clears the stale flag and boots 2.0, instead of reading 0 left and
/// restoring 1.0 over a system that never had its trial boot.
#[test]
fn through_grub_a_stale_flag_does_not_use_up_the_trial() {
    use qemu_tests::cycle::Loader;
    let cycle = Cycle::with_loader(Variant::StaleFlag, Loader::GrubEnvOnly);
    let run = cycle.run(false);
    assert!(run.ended, "the guest did not power off:\n{}", run.tail());
    assert_eq!(
        boots(&run),
        [
            "reimage: booting the system",
            "system: running demo 1.0",
            "reimage: booting the recovery",
            "reimage: booting the system",
            "system: running demo 2.0",
            // The stale flag: GRUB sends this boot to the recovery and
            // leaves the count at 1.
            "reimage: booting the recovery",
            "reimage: booting the system",
            "system: running demo 2.0",
        ],
        "{}",
        run.tail()
    );
    assert!(
        run.says("reimage: to the recovery: not a trial boot"),
        "{}",
        run.tail()
    );
    let disk = assert_stale_flag_cleared(&cycle, &run);
    let result = disk
        .partition("cfg")
        .read_string("/update/result")
        .unwrap_or_default();
    assert!(result.contains("outcome=confirmed\n"), "{result}");
}

/// The same through a real U-Boot: the boot script sends the boot to
/// the recovery for the flag before it counts, so that with `bootlimit=1`
/// the recovery finds the boot left and clears the stale flag.
#[test]
fn through_u_boot_a_stale_flag_does_not_use_up_the_trial() {
    use qemu_tests::cycle::Loader;
    let cycle = Cycle::with_loader(Variant::StaleFlag, Loader::UBoot);
    let run = cycle.run(false);
    let script = uboot_lines(&run, &["system: running"]);
    assert_eq!(
        script,
        [
            &UBOOT_INSTALL_AND_FIRST_TRIAL_BOOT[..],
            &[
                // The stale flag, bootlimit=1: to the recovery, not counted.
                "reimage: reimage_update=1 in the environment on ubootenv",
                "reimage: booting the recovery",
                "reimage: trial boot 1 of 1",
                "reimage: booting the system",
                "system: running demo 2.0",
            ],
        ]
        .concat(),
        "{}",
        run.tail()
    );
    assert_stale_flag_cleared(&cycle, &run);
}

/// The consoles and the disk of a [`Variant::StaleFlag`] cycle: the
/// recovery took the flag for a stale one (a boot of the trial left),
/// cleared it and restored nothing; 2.0 confirmed itself and is on
/// `system`. Returns the disk.
fn assert_stale_flag_cleared(
    cycle: &Cycle,
    run: &qemu_tests::vm::Finished,
) -> qemu_tests::inspect::Disk {
    for line in [
        "system: leaving the flag set with 1 trial boot left",
        "2.0 is on trial with 1 boots left: the recovery was booted by a boot flag left set",
        "system: confirm exit code 0",
        "system: status exit code 0",
    ] {
        assert!(
            run.says(line),
            "no {line:?} on the console:\n{}",
            run.tail()
        );
    }
    assert!(!run.says("restore: "), "restored:\n{}", run.tail());
    let disk = cycle.inspect();
    assert_eq!(
        disk.partition("system")
            .read_string("/etc/version")
            .as_deref(),
        Some("2.0\n")
    );
    disk
}

/// The boot script's and the systems' lines through U-Boot (the one-copy
/// area) from 1.0's request to 2.0's first trial boot.
const UBOOT_INSTALL_AND_FIRST_TRIAL_BOOT: [&str; 8] = [
    "reimage: booting the system",
    "system: running demo 1.0",
    "reimage: reimage_update=1 in the environment on ubootenv",
    "reimage: update/instruction on cfg",
    "reimage: booting the recovery",
    "reimage: trial boot 1 of 3",
    "reimage: booting the system",
    "system: running demo 2.0",
];

/// The lines of a run through U-Boot (which reached the system's last
/// line) that start with `reimage: ` (the boot script's) or one of `also`.
fn uboot_lines<'a>(run: &'a qemu_tests::vm::Finished, also: &[&str]) -> Vec<&'a str> {
    assert!(
        run.stopped,
        "the guest did not reach its power-off:\n{}",
        run.tail()
    );
    run.console
        .lines()
        .filter(|l| l.starts_with("reimage: ") || also.iter().any(|a| l.starts_with(a)))
        .collect()
}

/// A device running 2.0 on trial (its trial ran out: GRUB's count is at
/// 0 and the boot loader booted the recovery), with 1.0's image staged;
/// returns 1.0's tree.
fn on_trial(damage: bool) -> (Device, PathBuf) {
    let device = Device::new("2.0");
    let v1 = sample_rootfs(device.dir.path(), "1.0");
    let image = device.stage(PRODUCT, "1.0", &v1);
    if damage {
        let mut payload = fs::read(&image.payload_path).unwrap();
        let at = payload.len() / 2;
        payload[at] ^= 0x01;
        fs::write(&image.payload_path, payload).unwrap();
    }
    let trial = Trial {
        version: "2.0".into(),
        previous: "1.0".into(),
        restore: PartitionPath::parse(RESTORE_IMAGE).unwrap(),
        target: "system".into(),
        limit: 3,
        bootloader: "grub".into(),
    };
    fs::write(device.cfg.join(formats::cfg::TRIAL), trial.render()).unwrap();
    // GRUB's count ran out, as its fragment leaves it: no boot left (the
    // recovery restores only then).
    let mut env = formats::grubenv::GrubEnv::default();
    env.set(formats::trial::GRUB_COUNTER, "0").unwrap();
    fs::write(
        device.cfg.join(formats::trial::GRUB_ENV_ON_CFG),
        env.render().unwrap(),
    )
    .unwrap();
    device.build_disk();
    (device, v1)
}

fn assert_restored(device: &Device, v1: &std::path::Path, context: &str) {
    let disk = device.inspect();
    let differences = disk.partition("system").differences_from(v1);
    assert!(
        differences.is_empty(),
        "{context}: system is not exactly 1.0: {differences:?}"
    );
    let cfg = disk.partition("cfg");
    let result = cfg.read_string("/update/result").unwrap_or_default();
    assert!(result.contains("outcome=restored\n"), "{context}: {result}");
    assert!(result.contains("restored=1.0\n"), "{context}: {result}");
    assert!(!cfg.exists("/update/trial"), "{context}: the trial is left");
    assert!(
        !cfg.exists("/update/restore"),
        "{context}: the restore is left"
    );
    assert!(cfg
        .read_string("/update/installed")
        .unwrap_or_default()
        .contains("version=1.0\n"));
}

#[test]
fn a_power_cut_in_the_middle_of_the_restore_is_finished_by_the_next_boot() {
    let (device, v1) = on_trial(false);
    let run = device.boot("recovery.fault=restore-after-erase", TIMEOUT);
    assert!(run.ended, "did not stop:\n{}", run.tail());
    assert!(
        run.says("fault point RestoreAfterErase: stopping dead"),
        "{}",
        run.tail()
    );
    let disk = device.inspect();
    assert!(
        !disk.partition("system").exists("/etc/version"),
        "the cut came before the erase"
    );
    // (cfg's records are in its journal until the next mount replays it:
    // debugfs does not, so the pending restore is proven by the next boot.)
    let run = device.boot("", TIMEOUT);
    assert!(run.ended, "did not reboot:\n{}", run.tail());
    assert!(
        run.says("restore: 2.0 not confirmed after 3 boots (trial); restoring"),
        "{}",
        run.tail()
    );
    assert!(
        run.says("done: the last good image is restored"),
        "{}",
        run.tail()
    );
    assert_restored(&device, &v1, "after the cut");
}

#[test]
fn a_restore_image_with_a_flipped_byte_is_refused_on_the_console() {
    let (device, _) = on_trial(true);
    let before = device.inspect().hash("system");
    let run = device.boot_as("", |b| {
        b.timeout = TIMEOUT;
        b.until = Some("halted: the last good image cannot be restored".into());
    });
    assert!(run.stopped, "did not stay on the console:\n{}", run.tail());
    assert!(
        run.says("the last good image storage:updates/demo-1.0.manifest cannot be restored: "),
        "{}",
        run.tail()
    );
    assert!(run.says("demo-1.0.tar.zst"), "{}", run.tail());
    assert!(run.says("BLAKE3"), "{}", run.tail());
    assert!(run.says("(payload check)"), "{}", run.tail());
    let disk = device.inspect();
    assert_eq!(disk.hash("system"), before, "the system was touched");
    let cfg = disk.partition("cfg");
    let result = cfg.read_string("/update/result").unwrap_or_default();
    assert!(result.contains("stage=payload\n"), "{result}");
    assert!(
        result.contains("reason=cannot restore storage:updates/demo-1.0.manifest (2.0 not confirmed after 3 boots): "),
        "{result}"
    );
    assert!(cfg.exists("/update/trial") || cfg.exists("/update/restore"));
}

/// A restore that hangs after its erase (the extraction's deadline ends
/// it) is counted like an update's attempt: the first boot reboots to try
/// again, the last stays on the console saying what was being restored,
/// why and how many attempts failed, instead of rebooting for ever. The
/// operator's power cycle then starts a new round, which restores 1.0.
#[test]
fn a_restore_that_hangs_every_time_stops_after_its_attempts() {
    let (device, v1) = on_trial(false);
    let hang = "recovery.fault=hang-in-extract recovery.watchdog=0 \
                recovery.deadline_extract=5+0 recovery.max-attempts=2";
    let run = device.boot(hang, TIMEOUT);
    assert!(run.ended, "attempt 1 did not reboot:\n{}", run.tail());
    assert!(
        run.says("restore: attempt 1 of at most 2"),
        "{}",
        run.tail()
    );
    assert!(
        run.says("the restore of storage:updates/demo-1.0.manifest failed on attempt 1 of at most 2 (extract check): rebooting to try again"),
        "{}",
        run.tail()
    );
    let run = device.boot_as(hang, |b| {
        b.timeout = TIMEOUT;
        b.until = Some("halted: the last good image cannot be restored".into());
    });
    assert!(run.stopped, "attempt 2 did not stay:\n{}", run.tail());
    assert!(
        run.says("restore: attempt 2 of at most 2"),
        "{}",
        run.tail()
    );
    for part in [
        "the last good image storage:updates/demo-1.0.manifest cannot be restored: ",
        "(extract check). It was being restored into system because 2.0 not confirmed after \
         3 boots; 2 attempt(s) of the restore failed (at most 2 in a row)",
        "then power-cycle: the restore starts again with 2 attempts",
    ] {
        assert!(run.says(part), "{part}:\n{}", run.tail());
    }
    let result = device
        .inspect()
        .partition("cfg")
        .read_string("/update/result")
        .unwrap_or_default();
    assert!(result.contains("outcome=failed\n"), "{result}");
    assert!(result.contains("stage=extract\n"), "{result}");
    assert!(result.contains("attempt=2\n"), "{result}");
    // The operator's power cycle (the image is fine, the hang is gone).
    let run = device.boot("recovery.max-attempts=2", TIMEOUT);
    assert!(run.ended, "the new round did not reboot:\n{}", run.tail());
    assert!(
        run.says("restore: attempt 1 of at most 2"),
        "{}",
        run.tail()
    );
    assert_restored(&device, &v1, "after the power cycle");
}

/// A device running 1.0 with its image staged, and 2.0 staged (an image
/// that fails while extracting when `failing`) and requested with 1.0's
/// image to restore; returns 1.0's tree.
fn requesting_2_0(failing: bool) -> (Device, PathBuf) {
    let device = Device::new("1.0");
    let v1 = device.system.clone();
    device.stage(PRODUCT, "1.0", &v1);
    let v2 = sample_rootfs(device.dir.path(), "2.0");
    let payload = if failing {
        let tarball = device.dir.path().join("bad.tar");
        failing_tarball(&v2, &tarball);
        tarball
    } else {
        v2
    };
    device.stage(PRODUCT, "2.0", &payload);
    let instruction = Instruction {
        manifest: PartitionPath::parse("storage:updates/demo-2.0.manifest").unwrap(),
        target: "system".into(),
        allow_downgrade: false,
        requested: 1_700_000_000,
        restore: PartitionPath::parse(RESTORE_IMAGE),
    };
    bootloader_glue::request::write_instruction(&device.cfg, &instruction).unwrap();
    device.build_disk();
    (device, v1)
}

/// An image that verifies but fails while extracting, every time: the
/// third attempt leaves a pending restore and the lock, the fourth boot
/// restores 1.0, and the status names both.
#[test]
fn an_update_failing_after_the_erase_every_time_restores_1_0_and_locks() {
    let (device, v1) = requesting_2_0(true);
    for attempt in 1..=3 {
        let run = device.boot("", TIMEOUT);
        assert!(
            run.ended,
            "attempt {attempt}: did not reboot:\n{}",
            run.tail()
        );
        let result = device
            .inspect()
            .partition("cfg")
            .read_string("/update/result")
            .unwrap_or_default();
        assert!(result.contains("outcome=failed\n"), "{attempt}: {result}");
    }
    let cfg = device.inspect().partition("cfg");
    assert!(cfg.exists("/update/lock"));
    assert!(cfg.exists("/update/restore"));
    assert!(cfg.exists("/update/instruction.failed"));
    assert!(!cfg.exists("/update/instruction"));

    let run = device.boot("", TIMEOUT);
    assert!(run.ended, "the restore did not reboot:\n{}", run.tail());
    assert_restored(&device, &v1, "after the failures");
    let dump = tempfile::tempdir().unwrap();
    let cfg = device.inspect().partition("cfg");
    assert!(cfg.exists("/update/lock"), "the lock is gone");
    cfg.dump(dump.path());
    let status = bootloader_glue::status::records(dump.path());
    assert_eq!(status.code as i32, 2, "{}", status.line());
    assert!(
        status
            .message
            .starts_with("restored 1.0: 2.0 failed at extract on attempt 3 of 3: "),
        "{}",
        status.message
    );
    assert!(
        status
            .message
            .contains("; the update lock is set: fix the image, then bootloader-glue unlock; "),
        "{}",
        status.message
    );
}

/// A power cut after the erase in every attempt, the last one included:
/// its failure is never recorded, so the next boot finds the attempts used
/// up. With a `restore=` it does not only lock: it records the restore,
/// sets the lock, disarms the instruction and restores 1.0.
#[test]
fn a_power_cut_after_the_erase_on_the_last_attempt_restores_1_0_and_locks() {
    let (device, v1) = requesting_2_0(false);
    for attempt in 1..=3 {
        let run = device.boot("recovery.fault=after-erase", TIMEOUT);
        assert!(
            run.ended,
            "attempt {attempt}: did not stop:\n{}",
            run.tail()
        );
        assert!(
            run.says("fault point AfterErase: stopping dead"),
            "attempt {attempt}: {}",
            run.tail()
        );
    }
    let run = device.boot("", TIMEOUT);
    assert!(run.ended, "the restore did not reboot:\n{}", run.tail());
    assert!(run.says("attempt 3 of 3 did not finish"), "{}", run.tail());
    assert!(
        run.says("done: the last good image is restored"),
        "{}",
        run.tail()
    );
    assert_restored(&device, &v1, "after the cuts");
    let cfg = device.inspect().partition("cfg");
    // The version is the one the cut attempts verified before their
    // erase (cfg:update/touched), not the manifest's path.
    let result = formats::result::UpdateResult::parse(
        &cfg.read("/update/result").expect("no result on cfg"),
    )
    .expect("a result record");
    assert_eq!(
        (
            result.outcome,
            result.version.as_str(),
            result.stage.as_str(),
            result.attempt,
            result.restored.as_deref()
        ),
        (
            formats::result::Outcome::Restored,
            "2.0",
            "attempts",
            3,
            Some("1.0")
        )
    );
    assert_eq!(
        result.reason,
        "2.0: attempt 3 of 3 did not finish (cut off by a power cut or a reset, after the erase)"
    );
    assert!(cfg.exists("/update/lock"), "the lock is not set");
    assert!(cfg.exists("/update/instruction.failed"));
    assert!(
        !cfg.exists("/update/instruction"),
        "the instruction is armed"
    );
}

/// The last attempt (`max-attempts=1`) installs 2.0 and records its
/// success (the result, the trial, the installed version); the power goes
/// before it removes the instruction. The next boot finds the attempts
/// used up but no erase left unfinished (no `cfg:update/touched`): it
/// finishes the install. 2.0 stays, not erased to restore 1.0, and no
/// lock is set.
#[test]
fn a_power_cut_before_the_instruction_is_removed_on_the_last_attempt_finishes_the_install() {
    let (device, _v1) = requesting_2_0(false);
    let v2 = device.dir.path().join("rootfs-2.0");
    let run = device.boot(
        "recovery.max-attempts=1 recovery.fault=before-removal",
        TIMEOUT,
    );
    assert!(run.ended, "did not stop:\n{}", run.tail());
    assert!(
        run.says("fault point BeforeRemoval: stopping dead"),
        "{}",
        run.tail()
    );
    let cfg = device.inspect().partition("cfg");
    assert!(cfg.exists("/update/instruction"), "the instruction is gone");

    let run = device.boot("recovery.max-attempts=1", TIMEOUT);
    assert!(run.ended, "did not reboot:\n{}", run.tail());
    assert!(
        run.says("cut off before removing the instruction: finishing the install"),
        "{}",
        run.tail()
    );
    assert!(!run.says("restore: "), "a restore started:\n{}", run.tail());
    let disk = device.inspect();
    let differences = disk.partition("system").differences_from(&v2);
    assert!(
        differences.is_empty(),
        "system is not exactly 2.0: {differences:?}"
    );
    let cfg = disk.partition("cfg");
    let result = formats::result::UpdateResult::parse(
        &cfg.read("/update/result").expect("no result on cfg"),
    )
    .expect("a result record");
    assert_eq!(
        (result.outcome, result.version.as_str(), result.attempt),
        (formats::result::Outcome::Success, "2.0", 1)
    );
    for gone in [
        "/update/instruction",
        "/update/attempts",
        "/update/lock",
        "/update/restore",
    ] {
        assert!(!cfg.exists(gone), "{gone} is on cfg");
    }
    assert!(cfg
        .read_string("/update/installed")
        .unwrap_or_default()
        .contains("version=2.0\n"));
}

/// A power cut right after the last attempt recorded its pending restore,
/// before the lock was set and the instruction moved aside: the next boot
/// finishes both (the record says the restore comes from a failed update)
/// before it restores 1.0. Without that the failing image would be tried
/// again once the restore was done.
#[test]
fn a_power_cut_after_the_restore_is_recorded_still_sets_the_lock() {
    let (device, v1) = requesting_2_0(true);
    let run = device.boot(
        "recovery.max-attempts=1 recovery.fault=restore-recorded",
        TIMEOUT,
    );
    assert!(run.ended, "did not stop:\n{}", run.tail());
    assert!(
        run.says("fault point RestoreRecorded: stopping dead"),
        "{}",
        run.tail()
    );
    let run = device.boot("recovery.max-attempts=1", TIMEOUT);
    assert!(run.ended, "the restore did not reboot:\n{}", run.tail());
    assert!(
        run.says("restore: finished what a power cut left undone after the restore was recorded: [Lock, DisarmInstruction]"),
        "{}",
        run.tail()
    );
    assert_restored(&device, &v1, "after the cut");
    let cfg = device.inspect().partition("cfg");
    assert!(cfg.exists("/update/lock"), "the lock is not set");
    assert!(cfg.exists("/update/instruction.failed"));
    assert!(
        !cfg.exists("/update/instruction"),
        "the instruction is armed"
    );
}

/// Attempt 1 is cut off right after the erase; attempt 2 is refused
/// before its own erase (here: the product, overridden on the command
/// line). The target is empty, so that is no "untouched, reboot into the
/// old system": `cfg:update/touched` says an earlier attempt erased it,
/// the refusal counts as a failure after the erase, and on the last
/// attempt the recovery leaves the restore of 1.0, which the next boot
/// carries out.
#[test]
fn a_refusal_after_an_earlier_attempt_erased_the_system_restores_1_0() {
    let (device, v1) = requesting_2_0(false);
    let run = device.boot(
        "recovery.max-attempts=2 recovery.fault=after-erase",
        TIMEOUT,
    );
    assert!(
        run.says("fault point AfterErase: stopping dead"),
        "{}",
        run.tail()
    );
    let run = device.boot("recovery.max-attempts=2 recovery.product=other", TIMEOUT);
    assert!(run.ended, "attempt 2 did not reboot:\n{}", run.tail());
    assert!(
        run.says("an earlier attempt erased the target (cfg:update/touched is there)"),
        "{}",
        run.tail()
    );
    let cfg = device.inspect().partition("cfg");
    let result = cfg.read_string("/update/result").unwrap_or_default();
    assert!(result.contains("outcome=failed\n"), "{result}");
    assert!(result.contains("stage=policy\n"), "{result}");
    assert!(
        !cfg.exists("/update/instruction.refused"),
        "treated as a refusal"
    );
    assert!(cfg.exists("/update/restore") && cfg.exists("/update/lock"));
    let run = device.boot("recovery.max-attempts=2", TIMEOUT);
    assert!(run.ended, "the restore did not reboot:\n{}", run.tail());
    assert_restored(&device, &v1, "after the refusal");
    let result = device
        .inspect()
        .partition("cfg")
        .read_string("/update/result")
        .unwrap_or_default();
    // The version attempt 1 verified before its erase.
    assert!(result.contains("\nversion=2.0\n"), "{result}");
    assert!(
        !device.inspect().partition("cfg").exists("/update/touched"),
        "a complete system is there again"
    );
}

/// GRUB's count of trial boots is at 0 with no trial on cfg (a count that
/// could not be stopped after a restore), and it cannot be written (the
/// file is immutable, so the rename of any temp file over it fails with
/// EPERM, as on a device whose file cannot be replaced): rebooting would bring
/// every boot back to the recovery. It stays on the console instead,
/// naming the boot loader, the file and the variable to clear by hand.
#[test]
fn a_trial_count_that_cannot_be_stopped_stays_on_the_console_saying_what_to_clear() {
    let device = Device::new("1.0");
    let mut env = formats::grubenv::GrubEnv::default();
    env.set(formats::trial::GRUB_COUNTER, "0").unwrap();
    let block = device.cfg.join(formats::trial::GRUB_ENV_ON_CFG);
    fs::write(&block, env.render().unwrap()).unwrap();
    device.build_disk();
    let grubenv = format!("/{}", formats::trial::GRUB_ENV_ON_CFG);
    device.inspect().set_immutable("cfg", &grubenv);
    let cfg = device.inspect().partition("cfg");
    assert!(
        cfg.flags(&grubenv)
            .is_some_and(|f| f & qemu_tests::inspect::EXT4_IMMUTABLE_FL != 0),
        "cfg:grubenv is not immutable, so nothing stops its write:\n{}",
        cfg.stat(&grubenv)
    );
    let before = device.inspect().hash("system");
    let run = device.boot_as("", |b| {
        b.timeout = TIMEOUT;
        b.until = Some("halted: the boot loader's count of trial boots cannot be stopped".into());
    });
    assert!(run.stopped, "did not stay on the console:\n{}", run.tail());
    for part in [
        "the boot loader (bootflag=grub) still counts trial boots with none left and no trial \
         on cfg, and its count cannot be stopped: /run/cfg/grubenv: writing the GRUB environment \
         block",
        "Operation not permitted (os error 1); the old block is unchanged.",
        "By hand: unset reimage_trial in the GRUB environment block cfg:grubenv",
    ] {
        assert!(run.says(part), "{part}:\n{}", run.tail());
    }
    assert_eq!(
        device.inspect().hash("system"),
        before,
        "the system was touched"
    );
}

/// The same through a real U-Boot (`the_device_updates_itself_through_u_boot`
/// in cycle.rs): the recovery arms U-Boot's counting in the environment
/// area (`upgrade_available=1`, `bootcount=0`, `bootlimit=3`), the boot
/// script counts each boot of 2.0 and, past `bootlimit`, runs `altbootcmd`:
/// the recovery, which restores 1.0 and stops the counting.
#[test]
fn through_u_boot_an_unconfirmed_2_0_is_replaced_by_1_0_after_3_boots() {
    use qemu_tests::cycle::Loader;
    let cycle = Cycle::with_loader(Variant::Unconfirmed, Loader::UBoot);
    let run = cycle.run(false);
    let script = uboot_lines(&run, &["system: running"]);
    assert_eq!(
        script,
        [
            &UBOOT_INSTALL_AND_FIRST_TRIAL_BOOT[..],
            &[
                "reimage: trial boot 2 of 3",
                "reimage: booting the system",
                "system: running demo 2.0",
                "reimage: trial boot 3 of 3",
                "reimage: booting the system",
                "system: running demo 2.0",
                "reimage: trial boot 4 of 3",
                "reimage: bootcount 4 > bootlimit 3: altbootcmd",
                "reimage: booting the recovery",
                "reimage: booting the system",
                "system: running demo 1.0",
            ],
        ]
        .concat(),
        "{}",
        run.tail()
    );
    let disk = assert_full_cycle_restored(&cycle, &run);
    let area = disk.bytes("ubootenv");
    let env = formats::ubootenv::UbootEnv::parse_copy(&area[..0x4000], false)
        .expect("a valid environment on ubootenv")
        .env;
    assert_eq!(
        env.get("upgrade_available"),
        None,
        "U-Boot still counts: {env:?}"
    );
    assert_eq!(env.get("bootcount"), Some("0"), "{env:?}");
}

/// The same with the environment area a redundant pair (a copy on
/// `ubootenv`, one on `ubootenv2`), and a power cut's torn write: on 2.0's
/// first trial boot the copy U-Boot's script had just written (count 1)
/// is torn. The next boot's script takes the other copy, the newest
/// valid one (count 0), counts that boot again and writes over the torn
/// copy; the count goes on, and after the limit the recovery restores 1.0.
/// With one copy, the torn area would have lost the count: 2.0 would stay
/// on trial for ever.
#[test]
fn through_u_boot_a_torn_copy_of_the_pair_does_not_stop_the_count() {
    use qemu_tests::cycle::Loader;
    let cycle = Cycle::with_loader(Variant::TearsACopy, Loader::UBootPair);
    let run = cycle.run(false);
    let script = uboot_lines(&run, &["system: running", "system: tearing"]);
    let copy = |n| format!("reimage: the environment from copy {n} (ubootenv, ubootenv2)");
    let (one, two) = (copy(1), copy(2));
    assert_eq!(
        script,
        [
            &one,
            "reimage: booting the system",
            "system: running demo 1.0",
            // request wrote the flag to the second copy.
            &two,
            "reimage: reimage_update=1 in the environment on ubootenv",
            "reimage: update/instruction on cfg",
            "reimage: booting the recovery",
            // The recovery armed the count (copy 1), cleared the flag
            // (copy 2); the script counts into copy 1.
            &two,
            "reimage: trial boot 1 of 3",
            "reimage: booting the system",
            "system: running demo 2.0",
            "system: tearing the environment copy on /dev/sda6, as a power cut in its write would",
            // Copy 1 is torn: copy 2 (count 0) is read, and the boot counted again.
            &two,
            "reimage: trial boot 1 of 3",
            "reimage: booting the system",
            "system: running demo 2.0",
            &one,
            "reimage: trial boot 2 of 3",
            "reimage: booting the system",
            "system: running demo 2.0",
            &two,
            "reimage: trial boot 3 of 3",
            "reimage: booting the system",
            "system: running demo 2.0",
            &one,
            "reimage: trial boot 4 of 3",
            "reimage: bootcount 4 > bootlimit 3: altbootcmd",
            "reimage: booting the recovery",
            &one,
            "reimage: booting the system",
            "system: running demo 1.0",
        ],
        "{}",
        run.tail()
    );
    let disk = assert_full_cycle_restored(&cycle, &run);
    let (first, second) = (disk.bytes("ubootenv"), disk.bytes("ubootenv2"));
    let area = formats::ubootenv::read_area(&[&first[..0x4000], &second[..0x4000]]);
    assert!(area.invalid.is_empty(), "{:?}", area.invalid);
    let env = area.env.expect("a valid copy");
    assert_eq!(
        env.get("upgrade_available"),
        None,
        "U-Boot still counts: {env:?}"
    );
    assert_eq!(env.get("bootcount"), Some("0"), "{env:?}");
    assert_eq!(env.get("bootlimit"), Some("3"), "{env:?}");
}

/// The same through systemd-boot: the recovery renames the system's entry
/// `system.conf` to `system+3.conf` on the ESP, systemd-boot counts down
/// in its name at each boot (`system+2-1.conf` … `system+0-3.conf`) and
/// then sorts it after the recovery's entry, which boots and restores 1.0
/// and names the entry `system.conf` again.
#[test]
fn through_systemd_boot_an_unconfirmed_2_0_is_replaced_by_1_0_after_3_boots() {
    use qemu_tests::cycle::Loader;
    let cycle = Cycle::with_loader(Variant::Unconfirmed, Loader::SystemdBoot);
    let run = cycle.run(false);
    assert!(run.ended, "the guest did not power off:\n{}", run.tail());
    assert_eq!(
        boots(&run),
        [
            "system: running demo 1.0",
            "system: running demo 2.0",
            "system: running demo 2.0",
            "system: running demo 2.0",
            "system: running demo 1.0",
        ],
        "{}",
        run.tail()
    );
    let disk = assert_full_cycle_restored(&cycle, &run);
    assert_eq!(
        disk.fat_list("esp", "/loader/entries"),
        ["recovery.conf", "system.conf"],
        "systemd-boot still counts"
    );
}
