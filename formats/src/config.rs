//! The recovery's configuration: `/etc/recovery.conf` in its initramfs,
//! written by `image-builder initramfs`, with the trusted keys beside it in
//! `/etc/recovery/keys/*.pub`. Any key can be overridden on the kernel
//! command line as `recovery.KEY=VALUE`, for tests and for a one-off boot.

use crate::keyvalue::{self, is_name, KeyValueError, Pair};
use thiserror::Error;

pub const PATH: &str = "etc/recovery.conf";
pub const KEYS_DIR: &str = "etc/recovery/keys";

const KEYS: &[&str] = &[
    "product",
    "targets",
    "max-attempts",
    "mkfs",
    "downgrade",
    "disk-wait",
    "failure-delay",
    "bootflag",
    "deadline-verify",
    "deadline-erase",
    "deadline-extract",
    "deadline-sync",
    "watchdog",
    "watchdog-stall",
    "trial-boots",
    "restore-image",
];

/// How long a stage of the recovery may take: a fixed part plus a part
/// for every 100 MiB of the image (its unpacked size), written
/// `SECONDS+SECONDS` (`300+120`: 300 s, and 120 s more per 100 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub fixed: u64,
    pub per_100mib: u64,
}

impl Deadline {
    pub const fn new(fixed: u64, per_100mib: u64) -> Deadline {
        Deadline { fixed, per_100mib }
    }

    /// The limit for an image of `unpacked` bytes, whole 100 MiB rounded
    /// up; saturates rather than overflows.
    pub fn limit(self, unpacked: u64) -> std::time::Duration {
        let hundreds = unpacked.div_ceil(100 << 20);
        let secs = self
            .fixed
            .saturating_add(self.per_100mib.saturating_mul(hundreds));
        std::time::Duration::from_secs(secs)
    }

    fn parse(pair: &Pair<'_>) -> Result<Deadline, KeyValueError> {
        let expected = "expected SECONDS+SECONDS (fixed, and per 100 MiB of the image)";
        let (fixed, per) = pair
            .value
            .split_once('+')
            .ok_or_else(|| pair.bad(expected))?;
        let number = |v: &str| {
            let canonical = !v.is_empty()
                && v.len() <= 9
                && v.bytes().all(|b| b.is_ascii_digit())
                && (v == "0" || !v.starts_with('0'));
            canonical.then(|| v.parse().ok()).flatten()
        };
        match (number(fixed), number(per)) {
            (Some(fixed), Some(per_100mib)) if fixed > 0 => Ok(Deadline { fixed, per_100mib }),
            _ => Err(pair.bad(expected)),
        }
    }
}

impl std::fmt::Display for Deadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}+{}", self.fixed, self.per_100mib)
    }
}

/// Whether an image older than the installed system may be installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Downgrade {
    Refuse,
    Allow,
    /// Only when the instruction says `allow-downgrade=yes`.
    Instruction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Images must be of this product.
    pub product: String,
    /// GPT partition names that an instruction may name as its target.
    pub targets: Vec<String>,
    /// Attempts of one instruction before the update lock is set.
    pub max_attempts: u64,
    /// The command that makes a fresh file system: words, with `{device}`
    /// and `{label}` replaced.
    pub mkfs: Vec<String>,
    pub downgrade: Downgrade,
    /// Seconds to wait for the disks to appear.
    pub disk_wait: u64,
    /// Seconds the failure message stays on the console before a reboot.
    pub failure_delay: u64,
    /// The boot loader flag the recovery clears after a success or a
    /// refusal: `grub` (the instruction is the flag), `none`,
    /// `grubenv:FILE`, `uboot[:FW_ENV_CONFIG]` or
    /// `systemd-boot[:EFIVARS_DIR[:ENTRY[:SYSTEM_ENTRY[:ESP]]]]`, where a FILE (or ESP) of the form
    /// `PARTITION:PATH` is on that partition (by GPT name, e.g. `cfg`).
    pub bootflag: String,
    /// Deadlines of the long stages: verification (the payload read,
    /// hashed, decoded and scanned), the erase (mkfs), the extraction, the
    /// final sync. A stage past its deadline is recorded as its failure
    /// (refused before the erase) and the recovery reboots.
    pub deadline_verify: Deadline,
    pub deadline_erase: Deadline,
    pub deadline_extract: Deadline,
    pub deadline_sync: Deadline,
    /// Seconds of the hardware watchdog's timeout, when `/dev/watchdog`
    /// exists; 0: the recovery leaves it alone.
    pub watchdog: u64,
    /// Seconds without progress (bytes or entries) in a stage that reads
    /// the payload before the recovery stops keeping the watchdog alive.
    pub watchdog_stall: u64,
    /// Boots a new system may take to confirm itself before the recovery
    /// restores the last good image (1 to [`crate::trial::MAX_BOOTS`]); 0:
    /// no trial.
    pub trial_boots: u64,
    /// Whether `bootloader-glue request` refuses an update when no image
    /// of the installed version is there to restore (`required`), or only
    /// warns (`optional`).
    pub restore_required: bool,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(transparent)]
    Field(#[from] KeyValueError),
}

impl Config {
    /// The defaults for a product: target `system`, 3 attempts, ext4.
    pub fn for_product(product: &str) -> Config {
        Config {
            product: product.to_string(),
            targets: vec!["system".into()],
            max_attempts: 3,
            mkfs: "mke2fs -t ext4 -F -q -L {label} {device}"
                .split(' ')
                .map(String::from)
                .collect(),
            downgrade: Downgrade::Refuse,
            disk_wait: 10,
            failure_delay: 5,
            bootflag: "grub".into(),
            deadline_verify: Deadline::new(300, 120),
            deadline_erase: Deadline::new(300, 60),
            deadline_extract: Deadline::new(600, 300),
            deadline_sync: Deadline::new(300, 120),
            watchdog: 60,
            watchdog_stall: 120,
            trial_boots: 3,
            restore_required: true,
        }
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let pairs = keyvalue::parse(text, KEYS)?;
        let product = keyvalue::require(&pairs, "product")?.as_name()?;
        let mut config = Config::for_product(product);
        for pair in &pairs {
            config.set(pair)?;
        }
        Ok(config)
    }

    fn set(&mut self, pair: &Pair<'_>) -> Result<(), KeyValueError> {
        match pair.key {
            "product" => self.product = pair.as_name()?.to_string(),
            "targets" => {
                let targets: Vec<String> = pair.value.split(',').map(String::from).collect();
                if targets.iter().any(|t| !is_name(t)) {
                    return Err(pair.bad("expected partition names separated by commas"));
                }
                self.targets = targets;
            }
            "max-attempts" => {
                let n = pair.as_u64()?;
                if n == 0 {
                    return Err(pair.bad("expected at least 1"));
                }
                self.max_attempts = n;
            }
            "mkfs" => {
                let words: Vec<String> = pair.value.split_whitespace().map(String::from).collect();
                if words.is_empty() || !words.iter().any(|w| w.contains("{device}")) {
                    return Err(pair.bad("expected a command with {device}"));
                }
                self.mkfs = words;
            }
            "downgrade" => {
                self.downgrade = match pair.value {
                    "refuse" => Downgrade::Refuse,
                    "allow" => Downgrade::Allow,
                    "instruction" => Downgrade::Instruction,
                    _ => return Err(pair.bad("expected refuse, allow or instruction")),
                }
            }
            "bootflag" => {
                crate::bootflag::BootFlag::parse(pair.value).map_err(|e| pair.bad(&e))?;
                self.bootflag = pair.value.to_string();
            }
            "deadline-verify" => self.deadline_verify = Deadline::parse(pair)?,
            "deadline-erase" => self.deadline_erase = Deadline::parse(pair)?,
            "deadline-extract" => self.deadline_extract = Deadline::parse(pair)?,
            "deadline-sync" => self.deadline_sync = Deadline::parse(pair)?,
            "watchdog" => self.watchdog = pair.as_u64()?,
            "watchdog-stall" => {
                let n = pair.as_u64()?;
                if n == 0 {
                    return Err(pair.bad("expected at least 1"));
                }
                self.watchdog_stall = n;
            }
            "trial-boots" => {
                let n = pair.as_u64()?;
                if n > crate::trial::MAX_BOOTS {
                    return Err(pair.bad("expected 0 (no trial) to 9"));
                }
                self.trial_boots = n;
            }
            "restore-image" => {
                self.restore_required = match pair.value {
                    "required" => true,
                    "optional" => false,
                    _ => return Err(pair.bad("expected required or optional")),
                }
            }
            "disk-wait" => self.disk_wait = pair.as_u64()?,
            "failure-delay" => self.failure_delay = pair.as_u64()?,
            _ => unreachable!("keyvalue::parse admits only KEYS"),
        }
        Ok(())
    }

    /// Applies the `recovery.KEY=VALUE` words of a kernel command line and
    /// returns a warning for each word it could not apply. A bad word is
    /// ignored rather than fatal: a typo in a boot entry must not keep the
    /// recovery from reporting.
    pub fn apply_command_line(&mut self, cmdline: &str) -> Vec<String> {
        let mut warnings = Vec::new();
        for token in cmdline.split_whitespace() {
            let Some(setting) = token.strip_prefix("recovery.") else {
                continue;
            };
            // Words for the recovery that are not configuration (fault
            // points in test builds) are read elsewhere.
            if setting.starts_with("fault=") {
                continue;
            }
            // Underscores stand for dashes in the key, not in the value.
            let (key, value) = setting.split_once('=').unwrap_or((setting, ""));
            let line = format!("{}={value}\n", key.replace('_', "-"));
            let applied = keyvalue::parse(&line, KEYS).and_then(|pairs| self.set(&pairs[0]));
            if let Err(error) = applied {
                warnings.push(format!("kernel command line: {token}: {error}; ignored"));
            }
        }
        warnings
    }

    pub fn render(&self) -> String {
        format!(
            "product={}\ntargets={}\nmax-attempts={}\nmkfs={}\ndowngrade={}\ndisk-wait={}\nfailure-delay={}\nbootflag={}\n\
             deadline-verify={}\ndeadline-erase={}\ndeadline-extract={}\ndeadline-sync={}\n\
             watchdog={}\nwatchdog-stall={}\ntrial-boots={}\nrestore-image={}\n",
            self.product,
            self.targets.join(","),
            self.max_attempts,
            self.mkfs.join(" "),
            match self.downgrade {
                Downgrade::Refuse => "refuse",
                Downgrade::Allow => "allow",
                Downgrade::Instruction => "instruction",
            },
            self.disk_wait,
            self.failure_delay,
            self.bootflag,
            self.deadline_verify,
            self.deadline_erase,
            self.deadline_extract,
            self.deadline_sync,
            self.watchdog,
            self.watchdog_stall,
            self.trial_boots,
            if self.restore_required {
                "required"
            } else {
                "optional"
            },
        )
    }

    /// The mkfs command for a device, with its words filled in.
    pub fn mkfs_command(&self, device: &str, label: &str) -> Vec<String> {
        self.mkfs
            .iter()
            .map(|w| w.replace("{device}", device).replace("{label}", label))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_defaults() {
        let c = Config::for_product("acme");
        assert_eq!(Config::parse(&c.render()), Ok(c.clone()));
        assert_eq!(Config::parse("product=acme\n"), Ok(c));
    }

    #[test]
    fn the_command_line_overrides() {
        let mut c = Config::for_product("acme");
        let warnings = c.apply_command_line(
            "console=ttyS0 recovery.max_attempts=5 recovery.targets=system,alt recovery.fault=x \
             recovery.bootflag=uboot:cfg:fw_env.config quiet",
        );
        assert_eq!(c.bootflag, "uboot:cfg:fw_env.config");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.max_attempts, 5);
        assert_eq!(c.targets, vec!["system", "alt"]);
        let warnings = c.apply_command_line("recovery.colour=red recovery.max_attempts=0");
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].contains("recovery.colour=red"), "{warnings:?}");
        assert_eq!(c.max_attempts, 5, "a bad value is ignored");
    }

    #[test]
    fn deadlines_scale_with_the_image() {
        use std::time::Duration;
        let d = Deadline::new(300, 120);
        assert_eq!(d.limit(0), Duration::from_secs(300));
        assert_eq!(d.limit(1), Duration::from_secs(420), "a part counts whole");
        assert_eq!(d.limit(100 << 20), Duration::from_secs(420));
        assert_eq!(d.limit((100 << 20) + 1), Duration::from_secs(540));
        assert_eq!(d.limit(2 << 30), Duration::from_secs(300 + 21 * 120));
        assert_eq!(
            Deadline::new(u64::MAX, u64::MAX).limit(u64::MAX),
            Duration::from_secs(u64::MAX)
        );
        let c = Config::parse("product=a\ndeadline-extract=60+0\nwatchdog=0\n").unwrap();
        assert_eq!(c.deadline_extract, Deadline::new(60, 0));
        assert_eq!(c.watchdog, 0);
        assert_eq!(Config::parse(&c.render()), Ok(c));
        for bad in [
            "60",
            "+5",
            "0+5",
            "5+",
            "05+1",
            "1+x",
            "1+2+3",
            "9999999999+1",
        ] {
            let text = format!("product=a\ndeadline-sync={bad}\n");
            assert!(Config::parse(&text).is_err(), "{bad} was accepted");
        }
        let mut c = Config::for_product("a");
        let warnings =
            c.apply_command_line("recovery.deadline_extract=5+0 recovery.watchdog_stall=4");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            (c.deadline_extract, c.watchdog_stall),
            (Deadline::new(5, 0), 4)
        );
    }

    #[test]
    fn fills_in_mkfs() {
        let c = Config::for_product("acme");
        assert_eq!(
            c.mkfs_command("/dev/nvme0n1p4", "system").join(" "),
            "mke2fs -t ext4 -F -q -L system /dev/nvme0n1p4"
        );
        assert!(Config::parse("product=a\nmkfs=mke2fs\n").is_err());
    }

    #[test]
    fn trial_boots_and_the_restore_image() {
        let c = Config::parse("product=a\ntrial-boots=0\nrestore-image=optional\n").unwrap();
        assert_eq!((c.trial_boots, c.restore_required), (0, false));
        assert_eq!(Config::parse(&c.render()), Ok(c));
        for bad in ["trial-boots=10", "trial-boots=x", "restore-image=maybe"] {
            assert!(
                Config::parse(&format!("product=a\n{bad}\n")).is_err(),
                "{bad}"
            );
        }
    }
}
