//! The recovery cannot hang: a main flow that hangs in the extraction
//! (fault point `hang-in-extract`) is reset by the watchdog when the kernel
//! has one, ended by the stage's deadline when it has none, and each such
//! boot counts as an attempt; the next boot without the fault completes.
//! Storage that stops answering in the final sync (`hang-in-sync`: `cfg`
//! frozen, so recording the hang blocks in the kernel too) still ends in a
//! reboot by the deadline, without a watchdog; so does storage that stops
//! answering as the outcome is recorded (`hang-in-finish`).

use qemu_tests::inspect::Disk;
use qemu_tests::scenario::{sample_rootfs, Device, PRODUCT};
use qemu_tests::vm::Finished;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(180);

fn result(disk: &Disk) -> String {
    disk.partition("cfg")
        .read_string("/update/result")
        .unwrap_or_default()
}

/// The guest rebooted by itself, and its console says each of `lines`.
fn rebooted_saying(run: &Finished, lines: &[&str]) {
    assert!(run.ended, "the guest did not reboot:\n{}", run.tail());
    for says in lines {
        assert!(run.says(says), "no {says:?}:\n{}", run.tail());
    }
}

/// A device on 1.0 with 2.0 staged and instructed (the disk not built).
fn instructed() -> Device {
    let device = Device::new("1.0");
    let v2 = sample_rootfs(device.dir.path(), "2.0");
    device.stage(PRODUCT, "2.0", &v2);
    device.instruct("storage:updates/demo-2.0.manifest", "system");
    device
}

#[test]
fn a_hung_recovery_is_reset_and_counted_as_an_attempt() {
    let device = instructed();
    device.build_disk();

    // 1. The watchdog (softdog): no progress for 5 s, the recovery stops
    // keeping it alive and records the hang; the kernel's watchdog resets
    // the machine 30 s after the last keep-alive, not the recovery (time
    // enough to write and sync the result under TCG on a loaded machine).
    let run = device.boot(
        "recovery.fault=hang-in-extract recovery.watchdog=30 recovery.watchdog_stall=5",
        TIMEOUT,
    );
    assert!(run.ended, "the guest was not reset:\n{}", run.tail());
    assert!(
        run.says("watchdog: /dev/watchdog armed, timeout 30 s"),
        "{}",
        run.tail()
    );
    assert!(
        run.says("fault point HangInExtract: hanging"),
        "{}",
        run.tail()
    );
    assert!(
        run.says("waiting for the hardware watchdog to reset the machine"),
        "{}",
        run.tail()
    );
    assert!(
        run.says("softdog: Initiating system reboot"),
        "the watchdog did not reset the guest:\n{}",
        run.tail()
    );
    assert!(
        !run.says("reboot: Restarting system"),
        "the recovery rebooted by itself:\n{}",
        run.tail()
    );
    let disk = device.inspect();
    let first = result(&disk);
    assert!(
        first.contains("outcome=failed\n")
            && first.contains("stage=extract\n")
            && first.contains("attempt=1\n")
            && first.contains("no progress for"),
        "{first}"
    );
    assert!(disk.partition("cfg").exists("/update/instruction"));

    // 2. No watchdog: the extraction's deadline (5 s) ends the hang; the
    // recovery records it and reboots by itself.
    let run = device.boot(
        "recovery.fault=hang-in-extract recovery.watchdog=0 recovery.deadline_extract=5+0",
        TIMEOUT,
    );
    assert!(run.ended, "the guest did not reboot:\n{}", run.tail());
    assert!(run.says("attempt 2 of at most 3"), "{}", run.tail());
    assert!(
        run.says("extract: deadline: the stage overran its deadline of 5 s by"),
        "{}",
        run.tail()
    );
    let second = result(&device.inspect());
    assert!(
        second.contains("outcome=failed\n")
            && second.contains("stage=extract\n")
            && second.contains("attempt=2\n"),
        "{second}"
    );

    // 3. Without the fault: attempt 3 completes.
    let run = device.boot("", TIMEOUT);
    assert!(run.ended, "{}", run.tail());
    assert!(run.says("attempt 3 of at most 3"), "{}", run.tail());
    let disk = device.inspect();
    let third = result(&disk);
    assert!(
        third.contains("outcome=success\n") && third.contains("attempt=3\n"),
        "{third}\n{}",
        run.tail()
    );
    assert_eq!(
        disk.partition("system")
            .read_string("/etc/version")
            .as_deref(),
        Some("2.0\n")
    );
}

/// Storage that stops answering: the final sync hangs, and so does writing
/// the result (the fault point freezes `cfg`). Without a watchdog the sync
/// deadline (5 s) still reboots the guest: the handler waits 30 s for the
/// recording, then reboots without syncing. The attempt was counted before
/// the hang, so the next boot is attempt 2. There, `cfg` stops answering
/// just as the success is to be recorded, after the update's end: the
/// supervisor reboots `failure-delay` + 30 s later, without a watchdog.
/// Attempt 3 completes.
#[test]
fn a_hang_in_the_sync_or_the_finish_reboots_even_if_recording_hangs() {
    let device = instructed();
    device.build_disk();

    let run = device.boot(
        "recovery.fault=hang-in-sync recovery.watchdog=0 recovery.deadline_sync=5+0",
        TIMEOUT,
    );
    rebooted_saying(
        &run,
        &[
            "attempt 1 of at most 3",
            "fault point: /run/cfg frozen",
            "fault point HangInSync: hanging",
            "sync: deadline: the stage overran its deadline of 5 s by",
            "recording the hang did not finish in 30 s",
            "reboot: Restarting system",
        ],
    );
    assert!(!run.says("watchdog: /dev/watchdog armed"), "{}", run.tail());
    let disk = device.inspect();
    assert!(disk.partition("cfg").exists("/update/instruction"));
    assert_eq!(result(&disk), "", "the result was written on a frozen cfg");

    let run = device.boot(
        "recovery.fault=hang-in-finish recovery.watchdog=0 recovery.failure_delay=0",
        TIMEOUT,
    );
    rebooted_saying(
        &run,
        &[
            "attempt 2 of at most 3",
            "fault point: /run/cfg frozen",
            "recovery has not rebooted (the storage does not answer?): rebooting without sync",
            "reboot: Restarting system",
        ],
    );
    let disk = device.inspect();
    assert!(disk.partition("cfg").exists("/update/instruction"));
    assert_eq!(result(&disk), "", "the result was written on a frozen cfg");

    let run = device.boot("", TIMEOUT);
    assert!(run.ended, "{}", run.tail());
    assert!(run.says("attempt 3 of at most 3"), "{}", run.tail());
    let third = result(&device.inspect());
    assert!(
        third.contains("outcome=success\n") && third.contains("attempt=3\n"),
        "{third}\n{}",
        run.tail()
    );
}

/// Staying on the console under the update lock is a deliberate wait: the
/// watchdog is stopped (magic close) first, so it does not reset the
/// machine out of it. (Without that it would: after an update the
/// watchdog is kept alive only for `failure-delay` + 30 s, here 30 s, and
/// resets 10 s later, 20 s before the harness cuts the power.)
#[test]
fn staying_under_the_lock_stops_the_watchdog() {
    let device = instructed();
    let lock = formats::cfg::Lock {
        attempts: 3,
        reason: String::new(),
    };
    std::fs::write(device.cfg.join(formats::cfg::LOCK), lock.render()).unwrap();
    device.build_disk();
    // 60 s on the console, then the power is cut by the harness; a reset
    // before that ends QEMU by itself. A 10 s watchdog: a vCPU stalled for
    // a few seconds under TCG on a loaded machine is not a reset.
    let run = device.boot_as("recovery.watchdog=10 recovery.failure_delay=0", |b| {
        b.timeout = TIMEOUT;
        b.cut = Some((
            "halted: the update lock is set".into(),
            Duration::from_secs(60),
        ));
    });
    assert!(
        run.stopped && !run.ended,
        "the guest did not stay on the console:\n{}",
        run.tail()
    );
    assert!(
        run.says("watchdog: /dev/watchdog armed, timeout 10 s"),
        "{}",
        run.tail()
    );
    assert!(
        run.says("watchdog: stopped (magic close)"),
        "{}",
        run.tail()
    );
    assert!(
        !run.says("softdog: Initiating system reboot"),
        "{}",
        run.tail()
    );
}
