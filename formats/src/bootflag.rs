//! The boot loaders' flags that send the next boot to the recovery: set by
//! `bootloader-glue request`, cleared by the recovery after success or
//! refusal and by `bootloader-glue cancel`. I/O on top of the formats of
//! [`crate::grubenv`], [`crate::ubootenv`] and [`crate::efivar`].
//!
//! - `grub`: the instruction file itself is the flag (GRUB's config tests
//!   for it); nothing more to set.
//! - `grubenv:FILE`: `reimage_update=1` in a GRUB environment block. The
//!   file's directory must exist: a missing one means the partition that
//!   holds it (ESP, `/boot`) is not mounted, and nothing is created.
//! - `uboot:FW_ENV_CONFIG`: `reimage_update=1` in U-Boot's environment
//!   (single or redundant), located by a libubootenv `fw_env.config`, read
//!   and written as [`crate::ubootenv::read_area`] says (the newest valid
//!   copy read, the other one written). An
//!   area without a valid copy (blank, bad CRC) is never written over, as
//!   `fw_setenv` refuses it: U-Boot runs on its built-in defaults there,
//!   and an environment holding only our flag would drop them (no
//!   `bootcmd`). A file of defaults (`name=value` lines, as `fw_printenv`
//!   prints them) may be given to start from instead, like `fw_setenv -f`.
//! - `systemd-boot:EFIVARS_DIR[:ENTRY[:SYSTEM_ENTRY[:ESP]]]`:
//!   `LoaderEntryOneShot` = ENTRY (default `recovery.conf`) in efivarfs,
//!   whose immutable flag is cleared first, as systemd's tools do. Trial
//!   boots are counted in the name of the system's entry SYSTEM_ENTRY
//!   (default `system.conf`) in ESP's `loader/entries` (ESP: a directory,
//!   or `PARTITION:PATH`); without ESP nothing counts.
//! - `none`: no flag.

use crate::efivar;
use crate::fsflags;
use crate::grubenv::GrubEnv;
use crate::ubootenv::{self, UbootEnv};
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The variable set in GRUB's and U-Boot's environments.
pub const FLAG: &str = "reimage_update";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootFlag {
    Grub,
    GrubEnv {
        file: PathBuf,
    },
    Uboot {
        config: PathBuf,
        /// U-Boot's default environment, to start from where the area
        /// holds no valid copy (`fw_setenv -f`).
        defaults: Option<PathBuf>,
    },
    SystemdBoot {
        efivars: PathBuf,
        entry: String,
        /// The system's entry (`NAME.conf`), whose name counts trial boots.
        system: String,
        /// The ESP's root, which holds `loader/entries`; None: no counting.
        esp: Option<PathBuf>,
    },
    None,
}

impl BootFlag {
    /// Parses `grub`, `grubenv:FILE`, `uboot:FW_ENV_CONFIG`,
    /// `systemd-boot[:EFIVARS_DIR[:ENTRY[:SYSTEM_ENTRY[:ESP]]]]` (ESP is
    /// the rest: it may be `PARTITION:PATH`; an empty field is the default)
    /// or `none`.
    pub fn parse(s: &str) -> Result<BootFlag, String> {
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        Ok(match (kind, rest) {
            ("grub", "") => BootFlag::Grub,
            ("none", "") => BootFlag::None,
            ("grubenv", file) if !file.is_empty() => BootFlag::GrubEnv { file: file.into() },
            ("uboot", config) => BootFlag::Uboot {
                config: if config.is_empty() {
                    "/etc/fw_env.config"
                } else {
                    config
                }
                .into(),
                defaults: None,
            },
            ("systemd-boot", rest) => {
                let mut fields = rest.splitn(4, ':');
                let mut next = || fields.next().unwrap_or("");
                let (dir, entry, system, esp) = (next(), next(), next(), next());
                for name in [entry, system] {
                    if name.contains('/') || (!name.is_empty() && !name.ends_with(".conf")) {
                        return Err(format!(
                            "{s:?}: {name:?}: expected an entry's file name, NAME.conf"
                        ));
                    }
                }
                BootFlag::SystemdBoot {
                    efivars: if dir.is_empty() {
                        "/sys/firmware/efi/efivars"
                    } else {
                        dir
                    }
                    .into(),
                    entry: if entry.is_empty() {
                        "recovery.conf"
                    } else {
                        entry
                    }
                    .into(),
                    system: if system.is_empty() {
                        "system.conf"
                    } else {
                        system
                    }
                    .into(),
                    esp: (!esp.is_empty()).then(|| esp.into()),
                }
            }
            _ => {
                return Err(format!(
                    "{s:?}: expected grub, grubenv:FILE, uboot[:FW_ENV_CONFIG], \
                     systemd-boot[:EFIVARS_DIR[:ENTRY[:SYSTEM_ENTRY[:ESP]]]] or none"
                ))
            }
        })
    }

    /// Sends the next boot to the recovery.
    pub fn arm(&self) -> io::Result<()> {
        match self {
            BootFlag::Grub | BootFlag::None => Ok(()),
            BootFlag::GrubEnv { file } => edit_grubenv(file, |env| env.set(FLAG, "1").map(|_| ())),
            BootFlag::Uboot { config, defaults } => {
                edit_uboot(config, Some(defaults.as_deref()), |env| {
                    env.set(FLAG, "1");
                    true
                })
            }
            BootFlag::SystemdBoot { efivars, entry, .. } => {
                let path = efivars.join(efivar::LOADER_ENTRY_ONE_SHOT);
                // efivarfs marks the variable immutable; a new one is
                // written whole, in one write.
                remove_efivar(&path)?;
                fs::write(path, efivar::render_string(entry))
            }
        }
    }

    /// Clears the flag (nothing to do, and nothing written, if it is not
    /// set; a U-Boot area without a valid copy cannot hold it).
    pub fn disarm(&self) -> io::Result<()> {
        match self {
            BootFlag::Grub | BootFlag::None => Ok(()),
            BootFlag::GrubEnv { file } => edit_grubenv(file, |env| {
                env.unset(FLAG);
                Ok(())
            }),
            BootFlag::Uboot { config, .. } => edit_uboot(config, None, |env| env.unset(FLAG)),
            BootFlag::SystemdBoot { efivars, .. } => {
                remove_efivar(&efivars.join(efivar::LOADER_ENTRY_ONE_SHOT))
            }
        }
    }

    /// Whether the flag is set (`Grub`: never, the instruction is the flag).
    pub fn is_armed(&self) -> io::Result<bool> {
        Ok(match self {
            BootFlag::Grub | BootFlag::None => false,
            BootFlag::GrubEnv { file } => read_grubenv(file)?.get(FLAG) == Some("1"),
            BootFlag::Uboot { config, .. } => read_uboot(config)?
                .env
                .is_some_and(|env| env.get(FLAG) == Some("1")),
            BootFlag::SystemdBoot { efivars, .. } => {
                efivars.join(efivar::LOADER_ENTRY_ONE_SHOT).exists()
            }
        })
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Deletes an EFI variable, clearing efivarfs' immutable flag first.
fn remove_efivar(path: &Path) -> io::Result<()> {
    fsflags::clear_immutable(path)?;
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The environment block's directory must exist: it is on a partition
/// (the ESP, `/boot`) that is not mounted otherwise.
pub(crate) fn read_grubenv(file: &Path) -> io::Result<GrubEnv> {
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{}: the directory of the GRUB environment block {} does not exist \
                 (is the partition that holds it mounted?); nothing was written",
                dir.display(),
                file.display()
            ),
        ));
    }
    match fs::read(file) {
        Ok(bytes) => {
            GrubEnv::parse(&bytes).map_err(|e| invalid(format!("{}: {e}", file.display())))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(GrubEnv::default()),
        Err(e) => Err(e),
    }
}

pub(crate) fn edit_grubenv(
    file: &Path,
    edit: impl FnOnce(&mut GrubEnv) -> Result<(), crate::grubenv::GrubEnvError>,
) -> io::Result<()> {
    let mut env = read_grubenv(file)?;
    let refused = |e: crate::grubenv::GrubEnvError| {
        invalid(format!(
            "{}: GRUB environment block: {e}; nothing was written",
            file.display()
        ))
    };
    edit(&mut env).map_err(refused)?;
    let block = env.render().map_err(refused)?;
    // A new file renamed over the old one: a cut leaves the old block or
    // the new one, never a torn one that GRUB and grub-editenv refuse.
    crate::store::write_atomic(file, &block).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "{}: writing the GRUB environment block ({} bytes, to a temp file beside it, \
                 then renamed over it): {e}; the old block is unchanged",
                file.display(),
                block.len(),
            ),
        )
    })
}

/// U-Boot's environment area as found ([`ubootenv::read_area`]): the
/// current environment (None when no copy is valid: U-Boot runs on its
/// defaults), where to write the next one and, for a redundant pair, its
/// flags byte.
struct UbootArea {
    env: Option<UbootEnv>,
    next: ubootenv::Location,
    flags: Option<u8>,
    /// Why each copy is invalid, for the refusal.
    problems: Vec<String>,
}

fn read_uboot(config: &Path) -> io::Result<UbootArea> {
    let text = fs::read_to_string(config)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", config.display())))?;
    let locations = ubootenv::parse_fw_env_config(&text)
        .map_err(|e| invalid(format!("{}: {e}", config.display())))?;
    let read = |l: &ubootenv::Location| -> io::Result<Vec<u8>> {
        let context = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!(
                    "reading {} at {:#x} ({:#x} bytes, a U-Boot environment copy): {e}",
                    l.device, l.offset, l.size
                ),
            )
        };
        let mut f = fs::File::open(&l.device).map_err(context)?;
        f.seek(SeekFrom::Start(l.offset)).map_err(context)?;
        let mut buf = vec![0; l.size];
        f.read_exact(&mut buf).map_err(context)?;
        Ok(buf)
    };
    let copies: Vec<Vec<u8>> = locations.iter().map(read).collect::<io::Result<_>>()?;
    let refs: Vec<&[u8]> = copies.iter().map(Vec::as_slice).collect();
    let area = ubootenv::read_area(&refs);
    let problems = area
        .invalid
        .iter()
        .map(|(i, e)| {
            let l = &locations[*i];
            format!("{} at {:#x}: {e}", l.device, l.offset)
        })
        .collect();
    Ok(UbootArea {
        env: area.env,
        next: locations[area.next].clone(),
        flags: area.flags,
        problems,
    })
}

/// Edits the current U-Boot environment of `config` and writes it when
/// `edit` says it changed something. Where no copy is valid: with
/// `create` None nothing is done (U-Boot's defaults hold nothing of ours);
/// with `Some(defaults)` the environment starts from that file, or is
/// refused when there is none.
pub(crate) fn edit_uboot(
    config: &Path,
    create: Option<Option<&Path>>,
    edit: impl FnOnce(&mut UbootEnv) -> bool,
) -> io::Result<()> {
    let area = read_uboot(config)?;
    let mut env = match (area.env.clone(), create) {
        (Some(env), _) => env,
        (None, None) => return Ok(()),
        (None, Some(Some(file))) => read_uboot_defaults(file)?,
        (None, Some(None)) => return Err(uboot_defaults_only(config, &area)),
    };
    if edit(&mut env) {
        write_uboot(&area, &env)
    } else {
        Ok(())
    }
}

/// The current U-Boot environment of `config`; None where no copy is valid.
pub(crate) fn read_uboot_env(config: &Path) -> io::Result<Option<UbootEnv>> {
    Ok(read_uboot(config)?.env)
}

fn read_uboot_defaults(file: &Path) -> io::Result<UbootEnv> {
    let text = fs::read_to_string(file)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", file.display())))?;
    UbootEnv::parse_defaults(&text).map_err(|e| {
        invalid(format!(
            "{}: U-Boot's default environment: {e}",
            file.display()
        ))
    })
}

/// The refusal to write over an environment that holds only U-Boot's
/// built-in defaults, saying what to do.
fn uboot_defaults_only(config: &Path, area: &UbootArea) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "U-Boot's environment ({}) holds no valid copy ({}): U-Boot runs on its built-in \
             defaults, and an environment written now would replace them and leave no \
             bootcmd. Nothing was written. Save the defaults once (`saveenv` at the U-Boot \
             prompt, or `fw_setenv -c {} -f DEFAULTS`), or pass --uboot-defaults FILE \
             (name=value lines, as fw_printenv prints them) to start from",
            config.display(),
            area.problems.join("; "),
            config.display()
        ),
    )
}

fn write_uboot(area: &UbootArea, env: &UbootEnv) -> io::Result<()> {
    let l = &area.next;
    let copy = format!(
        "{} at {:#x} (a U-Boot environment copy of {:#x} bytes{})",
        l.device,
        l.offset,
        l.size,
        match area.flags {
            Some(_) => ", the older of the redundant pair",
            None => "",
        }
    );
    let bytes = env
        .render_copy(l.size, area.flags)
        .map_err(|e| invalid(format!("{copy}: {e}; nothing was written")))?;
    let context = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!(
                "writing {copy}: {e}; expected a writable device or file of at least {:#x} bytes",
                l.offset + l.size as u64
            ),
        )
    };
    let mut f = OpenOptions::new()
        .write(true)
        .open(&l.device)
        .map_err(context)?;
    f.seek(SeekFrom::Start(l.offset)).map_err(context)?;
    f.write_all(&bytes).map_err(context)?;
    f.sync_all().map_err(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_flag_settings() {
        assert_eq!(BootFlag::parse("grub"), Ok(BootFlag::Grub));
        assert_eq!(
            BootFlag::parse("grubenv:/boot/grub/grubenv"),
            Ok(BootFlag::GrubEnv {
                file: "/boot/grub/grubenv".into()
            })
        );
        assert_eq!(
            BootFlag::parse("uboot"),
            Ok(BootFlag::Uboot {
                config: "/etc/fw_env.config".into(),
                defaults: None,
            })
        );
        let systemd_boot = |efivars: &str, entry: &str, esp: Option<&str>| BootFlag::SystemdBoot {
            efivars: efivars.into(),
            entry: entry.into(),
            system: "system.conf".into(),
            esp: esp.map(PathBuf::from),
        };
        let efivars = "/sys/firmware/efi/efivars";
        for (text, flag) in [
            ("systemd-boot", systemd_boot(efivars, "recovery.conf", None)),
            // The older forms, without the ESP: no counting.
            ("systemd-boot:/e", systemd_boot("/e", "recovery.conf", None)),
            ("systemd-boot:/e:r.conf", systemd_boot("/e", "r.conf", None)),
            (
                "systemd-boot:::system.conf:esp:",
                systemd_boot(efivars, "recovery.conf", Some("esp:")),
            ),
            (
                "systemd-boot::::/boot/efi",
                systemd_boot(efivars, "recovery.conf", Some("/boot/efi")),
            ),
        ] {
            assert_eq!(BootFlag::parse(text), Ok(flag), "{text}");
        }
        assert!(BootFlag::parse("systemd-boot:::system:esp:").is_err());
        assert!(BootFlag::parse("systemd-boot::a/b.conf").is_err());
        assert!(BootFlag::parse("lilo").is_err());
        assert!(BootFlag::parse("grubenv:").is_err());
    }

    /// A redundant U-Boot environment in `dir`, its first copy saved with
    /// `bootcmd` (as after a `saveenv`), or blank.
    fn uboot(dir: &Path, saved: bool) -> BootFlag {
        let env_file = dir.join("uboot.env");
        let mut area = vec![0u8; 8192];
        if saved {
            let mut env = UbootEnv::default();
            env.set("bootcmd", "run distro_bootcmd");
            area[..4096].copy_from_slice(&env.render_copy(4096, Some(1)).unwrap());
        }
        fs::write(&env_file, area).unwrap();
        fs::write(
            dir.join("fw_env.config"),
            format!(
                "{} 0x0 0x1000\n{} 0x1000 0x1000\n",
                env_file.display(),
                env_file.display()
            ),
        )
        .unwrap();
        BootFlag::Uboot {
            config: dir.join("fw_env.config"),
            defaults: None,
        }
    }

    #[test]
    fn arms_and_disarms_each_kind() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let flags = [
            BootFlag::GrubEnv {
                file: dir.join("grubenv"),
            },
            uboot(dir, true),
            BootFlag::SystemdBoot {
                efivars: dir.to_path_buf(),
                entry: "recovery.conf".into(),
                system: "system.conf".into(),
                esp: None,
            },
        ];
        for flag in flags {
            assert!(!flag.is_armed().unwrap(), "{flag:?}");
            flag.arm().unwrap();
            assert!(flag.is_armed().unwrap(), "{flag:?}");
            flag.disarm().unwrap();
            assert!(!flag.is_armed().unwrap(), "{flag:?}");
            flag.disarm().unwrap();
        }
        let BootFlag::Uboot { config, .. } = uboot(dir, true) else {
            unreachable!()
        };
        let area = read_uboot(&config).unwrap();
        assert_eq!(
            area.env.unwrap().get("bootcmd"),
            Some("run distro_bootcmd"),
            "a variable we did not set was dropped"
        );
    }

    #[test]
    fn a_u_boot_area_on_its_defaults_is_never_written_over() {
        let dir = tempfile::tempdir().unwrap();
        let flag = uboot(dir.path(), false);
        let before = fs::read(dir.path().join("uboot.env")).unwrap();
        let err = flag.arm().expect_err("armed a blank environment");
        let text = err.to_string();
        for what in ["no valid copy", "fw_setenv", "--uboot-defaults", "bootcmd"] {
            assert!(text.contains(what), "{what} not in: {text}");
        }
        // Clearing has nothing to clear: the defaults hold no flag.
        flag.disarm().unwrap();
        assert!(!flag.is_armed().unwrap());
        assert_eq!(fs::read(dir.path().join("uboot.env")).unwrap(), before);
        // Given the defaults, it starts from them.
        let defaults = dir.path().join("defaults");
        fs::write(&defaults, "bootcmd=run distro_bootcmd\nbootdelay=2\n").unwrap();
        let BootFlag::Uboot { config, .. } = flag else {
            unreachable!()
        };
        let flag = BootFlag::Uboot {
            config,
            defaults: Some(defaults),
        };
        flag.arm().unwrap();
        assert!(flag.is_armed().unwrap());
        let BootFlag::Uboot { config, .. } = &flag else {
            unreachable!()
        };
        let env = read_uboot(config).unwrap().env.unwrap();
        assert_eq!(env.get("bootcmd"), Some("run distro_bootcmd"));
        assert_eq!(env.get("bootdelay"), Some("2"));
    }

    /// `chattr OP path`: as root, an immutable file or directory is the
    /// one way to make a write fail.
    fn chattr(op: &str, path: &Path) {
        let status = std::process::Command::new("chattr")
            .arg(op)
            .arg(path)
            .status()
            .expect("chattr is missing: apt-get install e2fsprogs");
        assert!(
            status.success(),
            "chattr {op} {} (needs root)",
            path.display()
        );
    }

    /// A write that fails names the file and what was expected, and leaves
    /// the boot loader's settings as they were.
    #[test]
    fn a_write_that_fails_names_the_file_and_keeps_the_settings() {
        let dir = tempfile::tempdir().unwrap();
        let flag = uboot(dir.path(), true);
        let area = dir.path().join("uboot.env");
        let before = fs::read(&area).unwrap();
        chattr("+i", &area);
        let err = flag.arm();
        chattr("-i", &area);
        let text = err.expect_err("wrote an immutable file").to_string();
        for what in [
            &format!("writing {} at 0x1000", area.display()),
            "a U-Boot environment copy of 0x1000 bytes, the older of the redundant pair",
            "expected a writable device or file of at least 0x2000 bytes",
        ] {
            assert!(text.contains(what), "{what:?} not in: {text}");
        }
        assert_eq!(fs::read(&area).unwrap(), before);

        let grub = dir.path().join("grub");
        fs::create_dir(&grub).unwrap();
        let file = grub.join("grubenv");
        let flag = BootFlag::GrubEnv { file: file.clone() };
        edit_grubenv(&file, |env| env.set("saved_entry", "system")).unwrap();
        let before = fs::read(&file).unwrap();
        chattr("+i", &grub);
        let err = flag.arm();
        chattr("-i", &grub);
        let text = err
            .expect_err("wrote into an immutable directory")
            .to_string();
        for what in [
            &format!(
                "{}: writing the GRUB environment block (1024 bytes",
                file.display()
            ),
            "then renamed over it",
            "the old block is unchanged",
        ] {
            assert!(text.contains(what), "{what:?} not in: {text}");
        }
        assert_eq!(fs::read(&file).unwrap(), before);
        // A variable that does not fit is refused naming the block.
        let text = edit_grubenv(&file, |env| env.set("big", &"x".repeat(2000)))
            .unwrap_err()
            .to_string();
        assert!(
            text.starts_with(&format!("{}: GRUB environment block: ", file.display())),
            "{text}"
        );
        assert_eq!(fs::read(&file).unwrap(), before);
    }

    #[test]
    fn a_grubenv_whose_directory_is_missing_is_refused_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("boot/grub");
        let flag = BootFlag::GrubEnv {
            file: missing.join("grubenv"),
        };
        let err = flag.arm().expect_err("armed into a missing directory");
        assert!(
            err.to_string()
                .contains(&format!("{}: the directory", missing.display())),
            "{err}"
        );
        assert!(!missing.exists(), "the directory was created");
    }

    #[test]
    fn an_immutable_one_shot_variable_is_replaced_and_deleted() {
        // efivarfs marks a variable immutable as soon as it is written.
        let dir = tempfile::tempdir().unwrap();
        let flag = BootFlag::SystemdBoot {
            efivars: dir.path().to_path_buf(),
            entry: "recovery.conf".into(),
            system: "system.conf".into(),
            esp: None,
        };
        let var = dir.path().join(efivar::LOADER_ENTRY_ONE_SHOT);
        let chattr = || {
            let status = std::process::Command::new("chattr")
                .arg("+i")
                .arg(&var)
                .status()
                .expect("chattr is missing: apt-get install e2fsprogs");
            assert!(status.success(), "chattr +i (needs root)");
        };
        flag.arm().unwrap();
        chattr();
        flag.arm().expect("a second request");
        chattr();
        flag.disarm().expect("a cancel");
        assert!(!var.exists());
    }
}
