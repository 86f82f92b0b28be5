//! The boot loader flags are read and written in the exact formats of the
//! boot loaders' own tools: `grub-editenv` (grub-common) and
//! `fw_printenv`/`fw_setenv` (libubootenv-tool), both directions.

use formats::bootflag::{BootFlag, FLAG};
use formats::grubenv::GrubEnv;
use formats::ubootenv::{self, UbootEnv};
use std::fs;
use std::path::Path;
use std::process::Command;

fn run(name: &str, package: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> std::process::Output {
    let mut cmd = Command::new(name);
    for a in args {
        cmd.arg(a);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("{name} is missing ({e}): apt-get install {package}"))
}

fn tool(name: &str, package: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let out = run(name, package, args);
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

/// A blank environment area (as on a device that never saved one) and
/// the `fw_env.config` that names it.
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

const DEFAULTS: &str = "bootcmd=run distro_bootcmd\nbootdelay=2\n";

/// Saves U-Boot's defaults with the real `fw_setenv -f`, as an operator
/// does once on a device whose environment area is blank.
fn save_defaults(d: &Path, config: &Path) {
    let defaults = d.join("defaults");
    fs::write(&defaults, DEFAULTS).unwrap();
    tool(
        "fw_setenv",
        "libubootenv-tool",
        &[&"-c", &config, &"-f", &defaults, &"bootdelay", &"2"],
    );
}

fn printenv(config: &Path) -> std::process::Output {
    run("fw_printenv", "libubootenv-tool", &[&"-c", &config])
}

fn check_uboot(redundant: bool) {
    let d = dir();
    let config = uboot_config(d.path(), redundant);
    save_defaults(d.path(), &config);
    let flag = BootFlag::Uboot {
        config: config.clone(),
        defaults: None,
    };
    flag.arm().unwrap();
    let printed = tool("fw_printenv", "libubootenv-tool", &[&"-c", &config]);
    assert!(
        printed.contains(&format!("{FLAG}=1")) && printed.contains("bootcmd=run distro_bootcmd"),
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
        !printed.contains(FLAG)
            && printed.contains("bootdelay=3")
            && printed.contains("bootcmd=run distro_bootcmd"),
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

/// Where `fw_setenv` refuses (no valid copy: U-Boot runs on its built-in
/// defaults), we refuse too and write nothing; given the defaults, we
/// start from them as `fw_setenv -f` does.
fn refuses_like_fw_setenv(d: &Path, config: &Path) {
    assert!(
        !printenv(config).status.success(),
        "fw_printenv found a valid copy"
    );
    let area = d.join("uboot.env");
    let before = fs::read(&area).unwrap();
    let theirs = run(
        "fw_setenv",
        "libubootenv-tool",
        &[&"-c", &config, &FLAG, &"1"],
    );
    assert!(
        !theirs.status.success(),
        "fw_setenv wrote over the defaults"
    );
    assert_eq!(fs::read(&area).unwrap(), before);
    let flag = BootFlag::Uboot {
        config: config.to_path_buf(),
        defaults: None,
    };
    let err = flag
        .arm()
        .expect_err("armed an environment on its defaults");
    assert!(
        err.to_string().contains("--uboot-defaults FILE"),
        "the refusal does not say what to do: {err}"
    );
    flag.disarm().unwrap();
    assert_eq!(
        fs::read(&area).unwrap(),
        before,
        "written over the defaults"
    );
    let defaults = d.join("defaults");
    fs::write(&defaults, DEFAULTS).unwrap();
    BootFlag::Uboot {
        config: config.to_path_buf(),
        defaults: Some(defaults),
    }
    .arm()
    .unwrap();
    let printed = printenv(config);
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(
        printed.contains("bootcmd=run distro_bootcmd") && printed.contains(&format!("{FLAG}=1")),
        "fw_printenv after arming from the defaults: {printed}"
    );
}

#[test]
fn a_blank_u_boot_environment_is_refused_as_fw_setenv_refuses_it() {
    for redundant in [false, true] {
        let d = dir();
        let config = uboot_config(d.path(), redundant);
        refuses_like_fw_setenv(d.path(), &config);
    }
}

/// Defaults saved, then a second save: with two copies, both valid.
fn saved(d: &Path, redundant: bool) -> std::path::PathBuf {
    let config = uboot_config(d, redundant);
    save_defaults(d, &config);
    tool(
        "fw_setenv",
        "libubootenv-tool",
        &[&"-c", &config, &"x", &"1"],
    );
    config
}

#[test]
fn a_u_boot_environment_with_a_bad_crc_is_refused_as_fw_setenv_refuses_it() {
    for redundant in [false, true] {
        let d = dir();
        let config = saved(d.path(), redundant);
        let area = d.path().join("uboot.env");
        let mut bytes = fs::read(&area).unwrap();
        bytes[100] ^= 0x20;
        bytes[0x1000 + 100] ^= 0x20;
        fs::write(&area, bytes).unwrap();
        refuses_like_fw_setenv(d.path(), &config);
    }
}

/// One copy of a redundant pair torn: the other one is current, and
/// arming keeps every variable of it.
#[test]
fn a_redundant_environment_with_one_bad_copy_keeps_the_good_one() {
    let d = dir();
    let config = saved(d.path(), true);
    // The newer copy is torn: U-Boot and fw_printenv fall back to the older.
    let area = d.path().join("uboot.env");
    let mut bytes = fs::read(&area).unwrap();
    let locations = ubootenv::parse_fw_env_config(&fs::read_to_string(&config).unwrap()).unwrap();
    let copy = |b: &[u8], l: &ubootenv::Location| {
        UbootEnv::parse_copy(&b[l.offset as usize..][..l.size], true)
    };
    let newer =
        ubootenv::current(&copy(&bytes, &locations[0]), &copy(&bytes, &locations[1])).unwrap();
    bytes[locations[newer].offset as usize + 100] ^= 0x20;
    fs::write(&area, bytes).unwrap();
    let theirs = String::from_utf8_lossy(&printenv(&config).stdout).into_owned();
    assert!(!theirs.contains("x=1"), "{theirs}");
    BootFlag::Uboot {
        config: config.clone(),
        defaults: None,
    }
    .arm()
    .unwrap();
    let printed = String::from_utf8_lossy(&printenv(&config).stdout).into_owned();
    assert_eq!(
        printed,
        format!("{theirs}{FLAG}=1\n"),
        "arming dropped or changed a variable"
    );
}

#[test]
fn systemd_boot_one_shot_in_efivarfs_layout() {
    let d = dir();
    let flag = BootFlag::SystemdBoot {
        efivars: d.path().to_path_buf(),
        entry: "recovery.conf".into(),
        system: "system.conf".into(),
        esp: None,
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
