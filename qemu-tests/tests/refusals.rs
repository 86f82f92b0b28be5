//! Every refusal on a real kernel: the recovery reboots into the untouched
//! old system (the `system` partition byte-identical), the result on `cfg`
//! names the stage and the reason, and the instruction is disarmed.

use qemu_tests::scenario::{sample_rootfs, Device, PRODUCT};
use std::fs;
use std::path::Path;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(180);
const MANIFEST: &str = "storage:updates/demo-2.0.manifest";

/// A device on 1.0 with 2.0 staged and requested.
fn device() -> Device {
    let device = Device::new("1.0");
    let v2 = sample_rootfs(device.dir.path(), "2.0");
    device.stage(PRODUCT, "2.0", &v2);
    device.instruct(MANIFEST, "system");
    device
}

fn staged(device: &Device, name: &str) -> std::path::PathBuf {
    device.storage.join("updates").join(name)
}

/// Boots and checks the refusal.
fn assert_refused(device: &Device, stage: &str, says: &str) {
    device.build_disk();
    let disk = device.inspect();
    let before = disk.hash("system");
    let run = device.boot("", TIMEOUT);
    assert!(
        run.ended,
        "the guest did not reboot by itself:\n{}",
        run.tail()
    );
    assert_eq!(
        disk.hash("system"),
        before,
        "the system partition changed:\n{}",
        run.tail()
    );
    let cfg = disk.partition("cfg");
    let result = cfg
        .read_string("/update/result")
        .unwrap_or_else(|| panic!("no result on cfg:\n{}", run.tail()));
    assert!(
        result.contains("outcome=refused\n"),
        "{result}\n{}",
        run.tail()
    );
    assert!(result.contains(&format!("\nstage={stage}\n")), "{result}");
    let reason = result
        .lines()
        .find(|l| l.starts_with("reason="))
        .unwrap_or_default();
    assert!(
        reason.contains(says),
        "the reason does not say {says:?}: {reason}"
    );
    assert!(
        run.says(says),
        "the console does not say {says:?}:\n{}",
        run.tail()
    );
    assert!(
        !cfg.exists("/update/instruction"),
        "the instruction is still armed"
    );
    assert!(
        cfg.exists("/update/instruction.refused"),
        "the instruction was not kept aside"
    );
    assert!(
        run.says("refused: the system partition was not touched"),
        "{}",
        run.tail()
    );
}

#[test]
fn a_bad_signature() {
    let device = device();
    let sig = staged(&device, "demo-2.0.manifest.minisig");
    let mut lines: Vec<String> = fs::read_to_string(&sig)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    // A character of the signature itself (the key id is at the start).
    let mut line: Vec<char> = lines[1].chars().collect();
    line[40] = if line[40] == 'A' { 'B' } else { 'A' };
    lines[1] = line.into_iter().collect();
    fs::write(&sig, lines.join("\n") + "\n").unwrap();
    assert_refused(&device, "signature", "does not match the manifest");
}

#[test]
fn an_untrusted_key() {
    let device = Device::new("1.0");
    let (_, other) = image_builder::keygen::keygen(&device.dir.path().join("other")).unwrap();
    let v2 = sample_rootfs(device.dir.path(), "2.0");
    device.stage_with(PRODUCT, "2.0", &v2, &other, false);
    device.instruct(MANIFEST, "system");
    assert_refused(&device, "signature", "which is not trusted");
}

#[test]
fn a_flipped_payload_byte() {
    let device = device();
    let payload = staged(&device, "demo-2.0.tar.zst");
    let mut bytes = fs::read(&payload).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    fs::write(&payload, bytes).unwrap();
    assert_refused(&device, "payload", "BLAKE3: the manifest says");
}

/// The report of issue 8: one byte flipped in the first of many zstd
/// frames hung the recovery for ever (its decoding threads waited on each
/// other). Now it is refused at once, naming the frame. A format-1 image:
/// its payload is decoded before the erase (a format-2 payload is only
/// hashed there, and the hash is the refusal).
#[test]
fn a_flipped_byte_in_a_multi_frame_payload() {
    let device = Device::new("1.0");
    let v2 = sample_rootfs(device.dir.path(), "2.0");
    // 40 MB in files of pseudo-random letters from a 4-letter alphabet:
    // five 8 MiB frames, about 10 MB compressed.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for i in 0..5 {
        let data: Vec<u8> = (0..8_000_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                b'a' + (state & 3) as u8
            })
            .collect();
        fs::write(v2.join(format!("data{i}")), data).unwrap();
    }
    let key = &qemu_tests::scenario::Suite::get().key_sec;
    device.stage_format(PRODUCT, "2.0", &v2, key, false, 1);
    device.instruct(MANIFEST, "system");
    let payload = staged(&device, "demo-2.0.tar.zst");
    let mut bytes = fs::read(&payload).unwrap();
    bytes[100] ^= 0x20;
    fs::write(&payload, bytes).unwrap();
    assert_refused(&device, "payload", "decoding stopped with");
    let result = device
        .inspect()
        .partition("cfg")
        .read_string("/update/result")
        .unwrap_or_default();
    assert!(
        result.contains("zstd frame 0 (at byte 0 of the compressed payload)"),
        "{result}"
    );
}

#[test]
fn a_missing_payload() {
    let device = device();
    fs::remove_file(staged(&device, "demo-2.0.tar.zst")).unwrap();
    assert_refused(&device, "payload", "cannot open");
}

#[test]
fn the_wrong_product() {
    let device = Device::new("1.0");
    let v2 = sample_rootfs(device.dir.path(), "2.0");
    device.stage("other", "2.0", &v2);
    device.instruct("storage:updates/other-2.0.manifest", "system");
    assert_refused(
        &device,
        "policy",
        "product: this device runs demo, the image is for other",
    );
}

#[test]
fn a_downgrade() {
    let device = Device::new("1.0");
    let old = sample_rootfs(device.dir.path(), "0.9");
    device.stage(PRODUCT, "0.9", &old);
    device.instruct("storage:updates/demo-0.9.manifest", "system");
    assert_refused(
        &device,
        "policy",
        "version: 0.9 is older than the installed 1.0",
    );
}

#[test]
fn an_image_larger_than_the_partition() {
    let device = Device::new("1.0");
    let big = sample_rootfs(device.dir.path(), "2.0");
    // 100 MB of zeros: a small payload that does not fit 48 MiB unpacked.
    fs::write(big.join("big"), vec![0u8; 100_000_000]).unwrap();
    device.stage(PRODUCT, "2.0", &big);
    device.instruct(MANIFEST, "system");
    assert_refused(
        &device,
        "policy",
        "size: the image needs about 102 MB unpacked, partition system",
    );
}

#[test]
fn target_cfg() {
    let device = Device::new("1.0");
    let v2 = sample_rootfs(device.dir.path(), "2.0");
    device.stage(PRODUCT, "2.0", &v2);
    device.instruct(MANIFEST, "cfg");
    assert_refused(
        &device,
        "target",
        "the partition that holds the instruction is never erased",
    );
}

#[test]
fn target_storage() {
    let device = Device::new("1.0");
    let v2 = sample_rootfs(device.dir.path(), "2.0");
    device.stage(PRODUCT, "2.0", &v2);
    device.instruct(MANIFEST, "storage");
    assert_refused(
        &device,
        "target",
        "the partition that holds the image is never erased",
    );
}

#[test]
fn a_target_not_allowed() {
    let device = Device::new("1.0");
    let v2 = sample_rootfs(device.dir.path(), "2.0");
    device.stage(PRODUCT, "2.0", &v2);
    device.instruct(MANIFEST, "recovery");
    assert_refused(
        &device,
        "target",
        "target recovery: not an allowed target (allowed: system)",
    );
}

fn rewrite_instruction(device: &Device, edit: impl Fn(&str) -> String) {
    let path = device.cfg.join(formats::cfg::INSTRUCTION);
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, edit(&text)).unwrap();
}

#[test]
fn an_instruction_with_a_bad_crc() {
    let device = device();
    rewrite_instruction(&device, |t| t.replace("target=system", "target=systen"));
    assert_refused(&device, "instruction", "crc32: the file says");
}

#[test]
fn an_instruction_with_an_unknown_key() {
    let device = device();
    rewrite_instruction(&device, |t| {
        let body = formats::keyvalue::unseal(t.as_bytes()).unwrap();
        formats::keyvalue::seal(&format!("{body}colour=blue\n"))
    });
    assert_refused(
        &device,
        "instruction",
        "line 6: key \"colour\" is not one of",
    );
}

#[test]
fn an_instruction_naming_a_missing_partition() {
    let device = Device::new("1.0");
    let v2 = sample_rootfs(device.dir.path(), "2.0");
    device.stage(PRODUCT, "2.0", &v2);
    device.instruct("backup:updates/demo-2.0.manifest", "system");
    assert_refused(&device, "disks", "no partition named backup");
}

#[test]
fn a_signed_payload_that_escapes_the_target() {
    let device = Device::new("1.0");
    let tar = device.dir.path().join("escape.tar");
    let mut b = tar::Builder::new(Vec::new());
    for (name, ty) in [
        (&b"./"[..], tar::EntryType::Directory),
        (b"../escape", tar::EntryType::Regular),
    ] {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(ty);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    }
    fs::write(&tar, b.into_inner().unwrap()).unwrap();
    let key = qemu_tests::scenario::Suite::get().key_sec.clone();
    device.stage_with(PRODUCT, "2.0", Path::new(&tar), &key, true);
    device.instruct(MANIFEST, "system");
    assert_refused(&device, "contents", "../escape: contains a `..` component");
}

#[test]
fn a_mkfs_program_missing_from_the_initramfs() {
    let device = device();
    device.build_disk();
    let disk = device.inspect();
    let before = disk.hash("system");
    // One word on the kernel command line: a program that is not there.
    let run = device.boot("recovery.mkfs=mkfs.btrfs_{device}", TIMEOUT);
    assert!(run.ended, "{}", run.tail());
    assert!(
        run.says("the mkfs program is not in the initramfs"),
        "{}",
        run.tail()
    );
    assert_eq!(disk.hash("system"), before, "the system partition changed");
    let result = disk
        .partition("cfg")
        .read_string("/update/result")
        .unwrap_or_default();
    assert!(
        result.contains("outcome=refused\n") && result.contains("stage=erase\n"),
        "{result}"
    );
}

#[test]
fn no_disk_with_a_cfg_partition_lists_what_was_seen() {
    let device = device();
    device.build_disk();
    // The same disk, its cfg partition renamed.
    let mut gpt = gpt::GptConfig::new()
        .writable(true)
        .open(&device.disk)
        .unwrap();
    let mut parts = gpt.partitions().clone();
    for p in parts.values_mut() {
        if p.name == "cfg" {
            p.name = "config".into();
        }
    }
    gpt.update_partitions(parts).unwrap();
    gpt.write().unwrap();
    let run = device.boot("recovery.disk_wait=2", TIMEOUT);
    assert!(run.ended, "{}", run.tail());
    assert!(
        run.says("disks: /sys/block: no partition named cfg after 2 s; seen: nvme0n1: recovery, config, system, storage"),
        "{}",
        run.tail()
    );
}
