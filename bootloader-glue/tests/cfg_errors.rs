//! A cfg partition that is read-only or full gets a clear error and keeps
//! what it had: nothing half-written. Needs root (it mounts tmpfs).

use bootloader_glue::request::{write_instruction, RequestError};
use formats::instruction::{Instruction, PartitionPath};
use nix::mount::{mount, umount, MsFlags};
use std::path::Path;

fn instruction() -> Instruction {
    Instruction {
        manifest: PartitionPath::parse("storage:updates/p-2.manifest").unwrap(),
        target: "system".into(),
        allow_downgrade: false,
        requested: 1,
    }
}

fn tmpfs(at: &Path, options: &str, flags: MsFlags) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test mounts tmpfs: run it as root (CI does)"
    );
    mount(Some("tmpfs"), at, Some("tmpfs"), flags, Some(options)).expect("mount tmpfs");
}

#[test]
fn a_read_only_cfg_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    tmpfs(dir.path(), "size=1m", MsFlags::MS_RDONLY);
    let result = write_instruction(dir.path(), &instruction());
    umount(dir.path()).unwrap();
    let err = result.expect_err("written to a read-only cfg");
    assert!(matches!(err, RequestError::ReadOnly { .. }), "{err}");
    assert!(err.to_string().contains("mounted read-only"), "{err}");
}

#[test]
fn a_full_cfg_is_named_as_such_and_keeps_the_old_instruction() {
    let dir = tempfile::tempdir().unwrap();
    tmpfs(dir.path(), "size=64k", MsFlags::empty());
    let path = dir.path().join(formats::cfg::INSTRUCTION);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "old").unwrap();
    // Fill what is left.
    let _ = std::fs::write(dir.path().join("filler"), vec![0u8; 1 << 20]);
    let result = write_instruction(dir.path(), &instruction());
    let kept = std::fs::read_to_string(&path);
    let leftover = dir.path().join("update/instruction.tmp").exists();
    umount(dir.path()).unwrap();
    assert!(!leftover, "a half-written temp file was left behind");
    let err = result.expect_err("written to a full cfg");
    assert!(matches!(err, RequestError::Full { .. }), "{err}");
    assert_eq!(kept.unwrap(), "old", "the old instruction was damaged");
}
