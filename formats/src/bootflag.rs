//! The boot loaders' flags that send the next boot to the recovery: set by
//! `bootloader-glue request`, cleared by the recovery after success or
//! refusal and by `bootloader-glue cancel`. I/O on top of the formats of
//! [`crate::grubenv`], [`crate::ubootenv`] and [`crate::efivar`].
//!
//! - `grub`: the instruction file itself is the flag (GRUB's config tests
//!   for it); nothing more to set.
//! - `grubenv:FILE`: `reimage_update=1` in a GRUB environment block.
//! - `uboot:FW_ENV_CONFIG`: `reimage_update=1` in U-Boot's environment
//!   (single or redundant), located by a libubootenv `fw_env.config`.
//! - `systemd-boot:EFIVARS_DIR[:ENTRY]`: `LoaderEntryOneShot` = ENTRY
//!   (default `recovery.conf`) in efivarfs.
//! - `none`: no flag.

use crate::efivar;
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
    GrubEnv { file: PathBuf },
    Uboot { config: PathBuf },
    SystemdBoot { efivars: PathBuf, entry: String },
    None,
}

impl BootFlag {
    /// Parses `grub`, `grubenv:FILE`, `uboot:FW_ENV_CONFIG`,
    /// `systemd-boot[:EFIVARS_DIR[:ENTRY]]` or `none`.
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
            },
            ("systemd-boot", rest) => {
                let (dir, entry) = rest.split_once(':').unwrap_or((rest, ""));
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
                }
            }
            _ => {
                return Err(format!(
                    "{s:?}: expected grub, grubenv:FILE, uboot[:FW_ENV_CONFIG], \
                     systemd-boot[:EFIVARS_DIR[:ENTRY]] or none"
                ))
            }
        })
    }

    /// Sends the next boot to the recovery.
    pub fn arm(&self) -> io::Result<()> {
        match self {
            BootFlag::Grub | BootFlag::None => Ok(()),
            BootFlag::GrubEnv { file } => edit_grubenv(file, |env| env.set(FLAG, "1").map(|_| ())),
            BootFlag::Uboot { config } => edit_uboot(config, |env| env.set(FLAG, "1")),
            BootFlag::SystemdBoot { efivars, entry } => {
                let path = efivars.join(efivar::LOADER_ENTRY_ONE_SHOT);
                // efivarfs marks variables immutable; a new one is written whole.
                let _ = fs::remove_file(&path);
                fs::write(path, efivar::render_string(entry))
            }
        }
    }

    /// Clears the flag (nothing to do if it is not set).
    pub fn disarm(&self) -> io::Result<()> {
        match self {
            BootFlag::Grub | BootFlag::None => Ok(()),
            BootFlag::GrubEnv { file } => edit_grubenv(file, |env| {
                env.unset(FLAG);
                Ok(())
            }),
            BootFlag::Uboot { config } => edit_uboot(config, |env| {
                env.unset(FLAG);
            }),
            BootFlag::SystemdBoot { efivars, .. } => {
                match fs::remove_file(efivars.join(efivar::LOADER_ENTRY_ONE_SHOT)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                }
            }
        }
    }

    /// Whether the flag is set (`Grub`: never, the instruction is the flag).
    pub fn is_armed(&self) -> io::Result<bool> {
        Ok(match self {
            BootFlag::Grub | BootFlag::None => false,
            BootFlag::GrubEnv { file } => read_grubenv(file)?.get(FLAG) == Some("1"),
            BootFlag::Uboot { config } => read_uboot(config)?.0.get(FLAG) == Some("1"),
            BootFlag::SystemdBoot { efivars, .. } => {
                efivars.join(efivar::LOADER_ENTRY_ONE_SHOT).exists()
            }
        })
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn read_grubenv(file: &Path) -> io::Result<GrubEnv> {
    match fs::read(file) {
        Ok(bytes) => GrubEnv::parse(&bytes).map_err(invalid),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(GrubEnv::default()),
        Err(e) => Err(e),
    }
}

fn edit_grubenv(
    file: &Path,
    edit: impl FnOnce(&mut GrubEnv) -> Result<(), crate::grubenv::GrubEnvError>,
) -> io::Result<()> {
    let mut env = read_grubenv(file)?;
    edit(&mut env).map_err(invalid)?;
    crate::store::write_atomic(file, &env.render().map_err(invalid)?)
}

/// The current environment, and where to write the next one (with its
/// flags byte for a redundant environment).
fn read_uboot(config: &Path) -> io::Result<(UbootEnv, ubootenv::Location, Option<u8>)> {
    let text = fs::read_to_string(config)?;
    let locations = ubootenv::parse_fw_env_config(&text).map_err(invalid)?;
    let read = |l: &ubootenv::Location| -> io::Result<Vec<u8>> {
        let mut f = fs::File::open(&l.device)?;
        f.seek(SeekFrom::Start(l.offset))?;
        let mut buf = vec![0; l.size];
        f.read_exact(&mut buf)?;
        Ok(buf)
    };
    let redundant = locations.len() == 2;
    let copies: Vec<_> = locations
        .iter()
        .map(|l| read(l).map(|b| UbootEnv::parse_copy(&b, redundant)))
        .collect::<io::Result<_>>()?;
    if !redundant {
        // A copy that does not check out is an empty environment, as for
        // fw_printenv without a default.
        let env = copies[0].clone().map(|c| c.env).unwrap_or_default();
        return Ok((env, locations[0].clone(), None));
    }
    match ubootenv::current(&copies[0], &copies[1]) {
        Some(i) => {
            let copy = copies[i].clone().expect("current is valid");
            let next = locations[1 - i].clone();
            Ok((
                copy.env,
                next,
                Some(copy.flags.unwrap_or(0).wrapping_add(1)),
            ))
        }
        None => Ok((UbootEnv::default(), locations[0].clone(), Some(1))),
    }
}

fn edit_uboot(config: &Path, edit: impl FnOnce(&mut UbootEnv)) -> io::Result<()> {
    let (mut env, location, flags) = read_uboot(config)?;
    edit(&mut env);
    let bytes = env.render_copy(location.size, flags).map_err(invalid)?;
    let mut f = OpenOptions::new().write(true).open(&location.device)?;
    f.seek(SeekFrom::Start(location.offset))?;
    f.write_all(&bytes)?;
    f.sync_all()
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
                config: "/etc/fw_env.config".into()
            })
        );
        assert!(matches!(
            BootFlag::parse("systemd-boot"),
            Ok(BootFlag::SystemdBoot { entry, .. }) if entry == "recovery.conf"
        ));
        assert!(BootFlag::parse("lilo").is_err());
        assert!(BootFlag::parse("grubenv:").is_err());
    }

    #[test]
    fn arms_and_disarms_each_kind() {
        let dir = std::env::temp_dir().join(format!("bootflag-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let env_file = dir.join("uboot.env");
        fs::write(&env_file, vec![0u8; 8192]).unwrap();
        fs::write(
            dir.join("fw_env.config"),
            format!(
                "{} 0x0 0x1000\n{} 0x1000 0x1000\n",
                env_file.display(),
                env_file.display()
            ),
        )
        .unwrap();
        let flags = [
            BootFlag::GrubEnv {
                file: dir.join("grubenv"),
            },
            BootFlag::Uboot {
                config: dir.join("fw_env.config"),
            },
            BootFlag::SystemdBoot {
                efivars: dir.clone(),
                entry: "recovery.conf".into(),
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
        fs::remove_dir_all(&dir).unwrap();
    }
}
