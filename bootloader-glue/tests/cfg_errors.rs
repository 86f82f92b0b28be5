//! A cfg partition that is read-only or full gets a clear error and keeps
//! what it had: nothing half-written. Needs root (it mounts tmpfs).

mod common;

use bootloader_glue::request::{write_instruction, RequestError};
use common::Tmpfs;
use formats::instruction::{Instruction, PartitionPath};
use nix::mount::MsFlags;

fn instruction() -> Instruction {
    Instruction {
        manifest: PartitionPath::parse("storage:updates/p-2.manifest").unwrap(),
        target: "system".into(),
        allow_downgrade: false,
        requested: 1,
        restore: None,
    }
}

#[test]
fn a_read_only_cfg_is_named_as_such() {
    let cfg = Tmpfs::new("size=1m", MsFlags::MS_RDONLY);
    let err =
        write_instruction(cfg.path(), &instruction()).expect_err("written to a read-only cfg");
    assert!(matches!(err, RequestError::ReadOnly { .. }), "{err}");
    assert!(err.to_string().contains("mounted read-only"), "{err}");
}

#[test]
fn a_full_cfg_is_named_as_such_and_keeps_the_old_instruction() {
    let cfg = Tmpfs::new("size=64k", MsFlags::empty());
    let path = cfg.path().join(formats::cfg::INSTRUCTION);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "old").unwrap();
    // Fill what is left.
    let _ = std::fs::write(cfg.path().join("filler"), vec![0u8; 1 << 20]);
    let result = write_instruction(cfg.path(), &instruction());
    let leftover = std::fs::read_dir(cfg.path().join("update"))
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().contains(".tmp"));
    assert!(!leftover, "a half-written temp file was left behind");
    let err = result.expect_err("written to a full cfg");
    assert!(matches!(err, RequestError::Full { .. }), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "old",
        "the old instruction was damaged"
    );
}
