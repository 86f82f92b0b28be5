//! The main job on built-in sample images, through a real boot loader: a
//! device runs demo 1.0 with 2.0 staged in its storage partition. OVMF
//! boots GRUB; GRUB boots 1.0, which asks for the update and reboots; GRUB
//! sees the instruction and boots the recovery, which installs 2.0 and
//! reboots; GRUB boots 2.0, which prints the update's status and powers
//! off. Every boot's lines are shown as they happen, then the disk.

use crate::cycle::{Cycle, Variant};
use crate::scenario::Suite;

pub fn run() -> i32 {
    let step = |s: &str| println!("\n== {s}");
    step("building the static recovery and bootloader-glue, fetching the Debian cloud kernel, making the initramfs");
    let suite = Suite::get();
    println!(
        "kernel {}\ninitramfs {} bytes (recovery as /init, mke2fs, config, the vendor's public key)",
        suite.kernel.display(),
        suite.initramfs_size
    );
    step("a device's disk: ESP with GRUB, recovery (kernel + initramfs), cfg, system (demo 1.0), storage (demo 2.0 staged)");
    let cycle = Cycle::new(Variant::Good);
    println!("disk image {}", cycle.disk.display());

    step("booting it in QEMU (OVMF, TCG): three boots, as they happen");
    let run = cycle.run(true);
    if !run.ended {
        println!("demo: the guest did not power off within 600 s");
        return 1;
    }
    println!("{:.1} s from power-on to the final power-off", run.seconds);

    step("the disk afterwards, read from the host");
    let disk = cycle.inspect();
    let version = disk
        .partition("system")
        .read_string("/etc/version")
        .unwrap_or_default();
    println!("system:/etc/version = {}", version.trim());
    println!("cfg:update/result:");
    for line in disk
        .partition("cfg")
        .read_string("/update/result")
        .unwrap_or_default()
        .lines()
    {
        println!("  {line}");
    }
    println!(
        "storage:backups/ = {:?}",
        disk.partition("storage").list("/backups")
    );
    if version.trim() == "2.0" {
        println!("\ndemo: the device updated itself from 1.0 to 2.0 through GRUB");
        0
    } else {
        println!("\ndemo: the update did not happen");
        1
    }
}
