//! U-Boot's environment, as U-Boot, `fw_printenv` and `fw_setenv`
//! (libubootenv) keep it: a fixed-size area holding a CRC-32 (little
//! endian) of the data, for redundant environments a flags byte, then
//! `name=value\0` strings ending with an empty one. With two copies the one
//! with the newer flags counter is current, and a write goes to the other.
//!
//! No valid copy (a blank area, a bad CRC) means that U-Boot runs on the
//! default environment built into it, which no file here holds: see
//! [`UbootEnv::parse_defaults`] for the text that stands in for it.
//! [`read_area`] reads an area of one copy or a pair as U-Boot does, and
//! says where the next write goes.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UbootEnv {
    pub vars: Vec<(String, String)>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum UbootEnvError {
    #[error("the copy is {len} bytes, smaller than its header")]
    TooSmall { len: usize },
    #[error("CRC-32: the header says {said:08x}, the data gives {found:08x}")]
    BadCrc { said: u32, found: u32 },
    #[error("a variable is not name=value text")]
    BadVariable,
    #[error("the variables need {needed} bytes, the environment holds {size}")]
    TooLarge { needed: usize, size: usize },
    #[error("line {line}: expected name=value, as fw_printenv prints it")]
    BadDefaultsLine { line: usize },
}

/// One copy of the environment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub env: UbootEnv,
    /// The flags byte of a redundant copy.
    pub flags: Option<u8>,
}

fn header_len(redundant: bool) -> usize {
    if redundant {
        5
    } else {
        4
    }
}

impl UbootEnv {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, name: &str, value: &str) {
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value.to_string(),
            None => self.vars.push((name.to_string(), value.to_string())),
        }
    }

    pub fn unset(&mut self, name: &str) -> bool {
        let before = self.vars.len();
        self.vars.retain(|(n, _)| n != name);
        before != self.vars.len()
    }

    /// Reads a default environment as `fw_printenv` prints one (and as
    /// `fw_setenv -f` takes it): `name=value` lines; blank lines and lines
    /// starting with `#` are skipped.
    pub fn parse_defaults(text: &str) -> Result<UbootEnv, UbootEnvError> {
        let mut env = UbootEnv::default();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once('=') {
                Some((name, value)) if !name.is_empty() => env.set(name, value),
                _ => return Err(UbootEnvError::BadDefaultsLine { line: i + 1 }),
            }
        }
        Ok(env)
    }

    /// Reads one copy of `bytes.len()` bytes.
    pub fn parse_copy(bytes: &[u8], redundant: bool) -> Result<Copy, UbootEnvError> {
        let header = header_len(redundant);
        if bytes.len() <= header {
            return Err(UbootEnvError::TooSmall { len: bytes.len() });
        }
        let said = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
        let data = &bytes[header..];
        let found = crc32fast::hash(data);
        if said != found {
            return Err(UbootEnvError::BadCrc { said, found });
        }
        let mut vars = Vec::new();
        for item in data.split(|&b| b == 0) {
            if item.is_empty() {
                break;
            }
            let text = std::str::from_utf8(item).map_err(|_| UbootEnvError::BadVariable)?;
            let (name, value) = text.split_once('=').ok_or(UbootEnvError::BadVariable)?;
            vars.push((name.to_string(), value.to_string()));
        }
        Ok(Copy {
            env: UbootEnv { vars },
            flags: redundant.then_some(bytes[4]),
        })
    }

    /// One copy of `size` bytes; `flags` for a redundant copy.
    pub fn render_copy(&self, size: usize, flags: Option<u8>) -> Result<Vec<u8>, UbootEnvError> {
        let header = header_len(flags.is_some());
        let mut data = Vec::new();
        for (name, value) in &self.vars {
            if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
                return Err(UbootEnvError::BadVariable);
            }
            data.extend_from_slice(format!("{name}={value}\0").as_bytes());
        }
        data.push(0);
        let room = size.saturating_sub(header);
        if data.len() > room {
            return Err(UbootEnvError::TooLarge {
                needed: data.len() + header,
                size,
            });
        }
        data.resize(room, 0);
        let mut out = crc32fast::hash(&data).to_le_bytes().to_vec();
        if let Some(f) = flags {
            out.push(f);
        }
        out.extend_from_slice(&data);
        Ok(out)
    }
}

/// Where one copy of the environment is, as a line of libubootenv's
/// `fw_env.config`: `DEVICE OFFSET SIZE [SECTOR-SIZE [SECTORS]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub device: String,
    pub offset: u64,
    pub size: usize,
}

/// Reads `fw_env.config`: one line per copy (two for a redundant
/// environment); `#` starts a comment; numbers decimal or `0x` hex.
pub fn parse_fw_env_config(text: &str) -> Result<Vec<Location>, String> {
    let number = |s: &str| match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let bad = || format!("fw_env.config line {}: expected DEVICE OFFSET SIZE", i + 1);
        if words.len() < 3 {
            return Err(bad());
        }
        out.push(Location {
            device: words[0].to_string(),
            offset: number(words[1]).ok_or_else(bad)?,
            size: number(words[2]).ok_or_else(bad)? as usize,
        });
    }
    match out.len() {
        1 | 2 => Ok(out),
        n => Err(format!("fw_env.config: {n} copies; expected 1 or 2")),
    }
}

/// Which of two redundant copies is current (0 or 1), as U-Boot
/// (`env_import_redund`) and libubootenv decide: a valid copy beats an
/// invalid one; of two valid ones the higher flags counter wins, except
/// that 0 follows 255 (the counter wrapped); equal counters: the first.
/// None when neither is valid: U-Boot then runs on its built-in defaults.
pub fn current(a: &Result<Copy, UbootEnvError>, b: &Result<Copy, UbootEnvError>) -> Option<usize> {
    match (a, b) {
        (Ok(a), Ok(b)) => {
            let (fa, fb) = (a.flags.unwrap_or(0), b.flags.unwrap_or(0));
            Some(match (fa, fb) {
                (255, 0) => 1,
                (0, 255) => 0,
                _ if fb > fa => 1,
                _ => 0,
            })
        }
        (Ok(_), Err(_)) => Some(0),
        (Err(_), Ok(_)) => Some(1),
        (Err(_), Err(_)) => None,
    }
}

/// What a reader makes of an area's copies, as U-Boot does: the current
/// environment, and where the next write goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Area {
    /// The current environment; None when no copy is valid (U-Boot runs
    /// on its built-in defaults).
    pub env: Option<UbootEnv>,
    /// The copy the next write goes to: the one not read (0 or 1).
    pub next: usize,
    /// The next write's flags byte, for a redundant pair: one ahead of the
    /// copy read.
    pub flags: Option<u8>,
    /// The copies that are not valid, and why.
    pub invalid: Vec<(usize, UbootEnvError)>,
}

/// Reads an area of one copy (`copies.len() == 1`) or of a redundant pair
/// (2): the newest valid copy of the pair ([`current`]) is the
/// environment, and the next write goes to the other, the older one, so
/// that a power cut in the middle of it leaves the newest intact. A pair
/// whose copies are both invalid as redundant copies is read in the
/// older single-copy layout from its first copy (CRC-32 and data, no flags
/// byte: what the area held before it had a second copy), and the next
/// write goes to the second copy.
pub fn read_area(copies: &[&[u8]]) -> Area {
    let redundant = copies.len() == 2;
    let parsed: Vec<_> = copies
        .iter()
        .map(|c| UbootEnv::parse_copy(c, redundant))
        .collect();
    let invalid = parsed
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.as_ref().err().map(|e| (i, e.clone())))
        .collect();
    let found = if redundant {
        current(&parsed[0], &parsed[1])
    } else {
        parsed[0].is_ok().then_some(0)
    };
    match found {
        Some(i) => {
            let copy = parsed[i].clone().expect("the current copy is valid");
            Area {
                env: Some(copy.env),
                next: if redundant { 1 - i } else { 0 },
                flags: copy.flags.map(|f| f.wrapping_add(1)),
                invalid,
            }
        }
        None => {
            let single = copies
                .first()
                .filter(|_| redundant)
                .and_then(|c| UbootEnv::parse_copy(c, false).ok());
            Area {
                next: usize::from(single.is_some()),
                env: single.map(|c| c.env),
                flags: redundant.then_some(1),
                invalid,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_copies_round_trip_with_their_crc() {
        let mut env = UbootEnv::default();
        env.set("bootcmd", "run distro_bootcmd");
        env.set("reimage_update", "1");
        let bytes = env.render_copy(4096, None).unwrap();
        assert_eq!(bytes.len(), 4096);
        let copy = UbootEnv::parse_copy(&bytes, false).unwrap();
        assert_eq!(copy.env, env);
        let mut broken = bytes.clone();
        broken[10] ^= 1;
        assert!(matches!(
            UbootEnv::parse_copy(&broken, false),
            Err(UbootEnvError::BadCrc { .. })
        ));
    }

    #[test]
    fn reads_fw_env_config() {
        let locations = parse_fw_env_config(
            "# comment\n/dev/mmcblk0 0x3f8000 0x4000\n/dev/mmcblk0 4177920 16384 # b\n",
        )
        .unwrap();
        assert_eq!(locations[0].offset, 0x3f8000);
        assert_eq!(locations[1].size, 16384);
        assert!(parse_fw_env_config("/dev/x 0x10\n").is_err());
    }

    #[test]
    fn the_newer_redundant_copy_is_current() {
        let env = UbootEnv::default();
        let copy = |f| UbootEnv::parse_copy(&env.render_copy(256, Some(f)).unwrap(), true);
        assert_eq!(current(&copy(1), &copy(2)), Some(1));
        assert_eq!(current(&copy(2), &copy(1)), Some(0));
        assert_eq!(current(&copy(255), &copy(0)), Some(1));
        assert_eq!(current(&copy(0), &copy(255)), Some(0));
        // Not only one ahead: the higher counter wins, as in U-Boot.
        assert_eq!(current(&copy(1), &copy(5)), Some(1));
        assert_eq!(current(&copy(9), &copy(3)), Some(0));
        assert_eq!(current(&copy(4), &copy(4)), Some(0));
        assert_eq!(current(&Err(UbootEnvError::BadVariable), &copy(7)), Some(1));
        assert_eq!(current(&copy(7), &Err(UbootEnvError::BadVariable)), Some(0));
        let bad = || Err(UbootEnvError::TooSmall { len: 0 });
        assert_eq!(current(&bad(), &bad()), None);
    }

    #[test]
    fn a_pair_reads_its_newest_valid_copy_and_writes_the_other() {
        let mut env = UbootEnv::default();
        env.set("bootcount", "1");
        let older = env.render_copy(256, Some(4)).unwrap();
        env.set("bootcount", "2");
        let newer = env.render_copy(256, Some(5)).unwrap();
        let area = read_area(&[&older, &newer]);
        assert_eq!(area.env.unwrap().get("bootcount"), Some("2"));
        assert_eq!((area.next, area.flags), (0, Some(6)));
        // The newer copy torn (a cut in the middle of its write): the
        // older one is read, and the next write goes over the torn one.
        let mut torn = newer.clone();
        torn[100] ^= 0xff;
        let area = read_area(&[&older, &torn]);
        assert_eq!(area.env.unwrap().get("bootcount"), Some("1"));
        assert_eq!((area.next, area.flags), (1, Some(5)));
        assert!(matches!(
            area.invalid[..],
            [(1, UbootEnvError::BadCrc { .. })]
        ));
    }

    /// An area that had one copy (the layout before the pair) is read
    /// from its first copy, and the next write goes to the second, which
    /// from then on is the newest.
    #[test]
    fn a_pair_whose_first_copy_is_in_the_single_layout_is_read() {
        let mut env = UbootEnv::default();
        env.set("upgrade_available", "1");
        let single = env.render_copy(256, None).unwrap();
        let blank = vec![0u8; 256];
        let area = read_area(&[&single, &blank]);
        assert_eq!(area.env.as_ref(), Some(&env));
        assert_eq!((area.next, area.flags), (1, Some(1)));
        let second = env.render_copy(256, area.flags).unwrap();
        let area = read_area(&[&single, &second]);
        assert_eq!(area.env.as_ref(), Some(&env));
        assert_eq!((area.next, area.flags), (0, Some(2)));
        // Neither: U-Boot's defaults; the first write goes to the first.
        let area = read_area(&[&blank, &blank]);
        assert_eq!((area.env, area.next, area.flags), (None, 0, Some(1)));
        assert_eq!(area.invalid.len(), 2);
        // One copy in the single layout is read as it always was.
        let area = read_area(&[&single]);
        assert_eq!((area.env, area.next, area.flags), (Some(env), 0, None));
    }

    #[test]
    fn defaults_read_as_fw_printenv_prints_them() {
        let env = UbootEnv::parse_defaults(
            "bootcmd=run distro_bootcmd; echo a=b\n\n# comment\nbootdelay=2\nempty=\n",
        )
        .unwrap();
        assert_eq!(env.get("bootcmd"), Some("run distro_bootcmd; echo a=b"));
        assert_eq!(env.get("bootdelay"), Some("2"));
        assert_eq!(env.get("empty"), Some(""));
        assert_eq!(
            UbootEnv::parse_defaults("bootdelay=2\nno equals sign\n"),
            Err(UbootEnvError::BadDefaultsLine { line: 2 })
        );
        assert!(UbootEnv::parse_defaults("=x\n").is_err());
    }
}
