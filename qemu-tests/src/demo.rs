//! The main job on built-in sample images: a device runs version 1.0, the
//! running system has staged 2.0 and asked for it, and the recovery OS
//! boots in QEMU and installs it. Every step is printed, then what is on
//! the disk afterwards.

use crate::scenario::{sample_rootfs, Device, Suite, PRODUCT};
use std::time::Duration;

pub fn run() -> i32 {
    let step = |s: &str| println!("\n== {s}");
    step("building the static recovery, fetching the Debian cloud kernel, making the initramfs");
    let suite = Suite::get();
    println!(
        "kernel {}\ninitramfs {} bytes (recovery as /init, mke2fs, config, the vendor's public key)",
        suite.kernel.display(),
        suite.initramfs_size
    );

    step("a device running demo 1.0: GPT disk with recovery, cfg, system, storage");
    let device = Device::new("1.0");
    let v2 = sample_rootfs(device.dir.path(), "2.0");
    let image = device.stage(PRODUCT, "2.0", &v2);
    println!(
        "staged storage:updates/{} ({} bytes, {} entries, signed)",
        image.manifest.payload, image.manifest.payload_size, image.manifest.entries
    );
    let instruction = device.instruct("storage:updates/demo-2.0.manifest", "system");
    println!(
        "instruction on cfg:update/instruction: install {} into {}",
        instruction.manifest, instruction.target
    );
    device.build_disk();
    println!("disk image {}", device.disk.display());

    step("booting the recovery OS in QEMU (TCG), its console:");
    let run = device.boot_with("", Duration::from_secs(300), true);
    if !run.ended {
        println!("demo: the guest did not finish within 300 s");
        return 1;
    }
    println!("{}", run.timing());

    step("the disk afterwards, read from the host");
    let disk = device.inspect();
    let system = disk.partition("system");
    let cfg = disk.partition("cfg");
    let version = system.read_string("/etc/version").unwrap_or_default();
    println!("system:/etc/version = {}", version.trim());
    println!(
        "cfg:update/instruction present: {}",
        cfg.exists("/update/instruction")
    );
    println!("cfg:update/result:");
    for line in cfg
        .read_string("/update/result")
        .unwrap_or_default()
        .lines()
    {
        println!("  {line}");
    }
    if version.trim() == "2.0" && !cfg.exists("/update/instruction") {
        println!("\ndemo: the device was updated from 1.0 to 2.0");
        0
    } else {
        println!("\ndemo: the update did not happen");
        1
    }
}
