//! The boot loader flags are read and written in the exact formats of the
//! boot loaders' own tools: `grub-editenv` (grub-common) and
//! `fw_printenv`/`fw_setenv` (libubootenv-tool), both directions.

use formats::bootflag::{BootFlag, FLAG};
use formats::grubenv::GrubEnv;
use formats::ubootenv::{self, UbootEnv};
use std::fs;
use std::path::Path;
use std::process::Command;

fn tool(name: &str, package: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let mut cmd = Command::new(name);
    for a in args {
        cmd.arg(a);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{name} is missing ({e}): apt-get install {package}"));
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn grub_editenv_reads_what_we_write_and_we_read_what_it_writes() {
    let d = dir();
    let file = d.path().join("grubenv");
    // Ours first: grub-editenv must list it.
    BootFlag::GrubEnv { file: file.clone() }.arm().unwrap();
    let listed = tool("grub-editenv", "grub-common", &[&file, &"list"]);
    assert!(
        listed.contains(&format!("{FLAG}=1")),
        "grub-editenv list: {listed}"
    );
    // Then grub-editenv's: we must read both.
    tool(
        "grub-editenv",
        "grub-common",
        &[&file, &"set", &"saved_entry=system"],
    );
    let env = GrubEnv::parse(&fs::read(&file).unwrap()).unwrap();
    assert_eq!(env.get("saved_entry"), Some("system"));
    assert_eq!(env.get(FLAG), Some("1"));
    // A block grub-editenv created from scratch.
    let fresh = d.path().join("fresh");
    tool("grub-editenv", "grub-common", &[&fresh, &"create"]);
    tool("grub-editenv", "grub-common", &[&fresh, &"set", &"a=b"]);
    assert_eq!(
        GrubEnv::parse(&fs::read(&fresh).unwrap()).unwrap().get("a"),
        Some("b")
    );
    // Disarming leaves the other variable.
    BootFlag::GrubEnv { file: file.clone() }.disarm().unwrap();
    let listed = tool("grub-editenv", "grub-common", &[&file, &"list"]);
    assert!(
        !listed.contains(FLAG) && listed.contains("saved_entry=system"),
        "{listed}"
    );
}

fn uboot_config(d: &Path, redundant: bool) -> std::path::PathBuf {
    let env = d.join("uboot.env");
    fs::write(&env, vec![0u8; 0x2000]).unwrap();
    let mut text = format!("{} 0x0 0x1000\n", env.display());
    if redundant {
        text += &format!("{} 0x1000 0x1000\n", env.display());
    }
    let config = d.join("fw_env.config");
    fs::write(&config, text).unwrap();
    config
}

fn check_uboot(redundant: bool) {
    let d = dir();
    let config = uboot_config(d.path(), redundant);
    let flag = BootFlag::Uboot {
        config: config.clone(),
    };
    flag.arm().unwrap();
    let printed = tool("fw_printenv", "libubootenv-tool", &[&"-c", &config]);
    assert!(
        printed.contains(&format!("{FLAG}=1")),
        "fw_printenv: {printed}"
    );
    tool(
        "fw_setenv",
        "libubootenv-tool",
        &[&"-c", &config, &"bootdelay", &"3"],
    );
    let text = fs::read_to_string(&config).unwrap();
    let locations = ubootenv::parse_fw_env_config(&text).unwrap();
    let bytes = fs::read(d.path().join("uboot.env")).unwrap();
    let copy = |l: &ubootenv::Location| {
        UbootEnv::parse_copy(
            &bytes[l.offset as usize..l.offset as usize + l.size],
            redundant,
        )
    };
    let copies: Vec<_> = locations.iter().map(copy).collect();
    let current = if redundant {
        ubootenv::current(&copies[0], &copies[1]).expect("a valid copy")
    } else {
        0
    };
    let env = copies[current].clone().unwrap().env;
    assert_eq!(env.get("bootdelay"), Some("3"), "{env:?}");
    assert_eq!(env.get(FLAG), Some("1"), "{env:?}");
    flag.disarm().unwrap();
    let printed = tool("fw_printenv", "libubootenv-tool", &[&"-c", &config]);
    assert!(
        !printed.contains(FLAG) && printed.contains("bootdelay=3"),
        "{printed}"
    );
}

#[test]
fn fw_printenv_and_fw_setenv_agree_with_us_single_copy() {
    check_uboot(false);
}

#[test]
fn fw_printenv_and_fw_setenv_agree_with_us_redundant_copies() {
    check_uboot(true);
}

#[test]
fn systemd_boot_one_shot_in_efivarfs_layout() {
    let d = dir();
    let flag = BootFlag::SystemdBoot {
        efivars: d.path().to_path_buf(),
        entry: "recovery.conf".into(),
    };
    flag.arm().unwrap();
    let bytes = fs::read(d.path().join(formats::efivar::LOADER_ENTRY_ONE_SHOT)).unwrap();
    // Attributes 0x7, then "recovery.conf" in UTF-16LE with a NUL.
    let mut want = vec![7, 0, 0, 0];
    for c in "recovery.conf".encode_utf16().chain([0]) {
        want.extend_from_slice(&c.to_le_bytes());
    }
    assert_eq!(bytes, want);
    flag.disarm().unwrap();
    assert!(!flag.is_armed().unwrap());
}
