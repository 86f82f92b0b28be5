//! The command line of the running system's side.

use crate::grub::GrubConfig;
use crate::request::{self, Request};
use crate::status;
use formats::bootflag::BootFlag;
use formats::config::Config;
use formats::instruction::PartitionPath;
use lexopt::prelude::*;
use std::path::{Path, PathBuf};

const USAGE: &str = "\
usage:
  bootloader-glue request --manifest PARTITION:PATH [--target system] [--allow-downgrade]
                  [--bootloader grub|grubenv:FILE|uboot[:FW_ENV_CONFIG]|systemd-boot[:DIR[:ENTRY]]|none]
                  [--reboot] [--cfg DIR] [--config FILE] [--trusted-key K.pub ...]
      verifies the staged image, backs up cfg, writes the instruction, arms the boot loader
  bootloader-glue status [--json] [--cfg DIR]
      one line and a Nagios exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
  bootloader-glue cancel [--bootloader ...] [--cfg DIR]
  bootloader-glue unlock [--cfg DIR]
  bootloader-glue grub-config [--recovery-label LABEL] [--cfg-label LABEL] [--grubenv LABEL:PATH]
                              [--kernel PATH] [--initrd PATH] [--cmdline TEXT]
defaults: --cfg /cfg, --config /etc/reimage/recovery.conf, trusted keys /etc/reimage/keys/*.pub,
          --bootloader grub
";

pub fn main() -> i32 {
    match run() {
        Ok(code) => code,
        Err(Failure::Usage(msg)) => {
            eprint!("bootloader-glue: {msg}\n{USAGE}");
            2
        }
        Err(Failure::Failed(msg)) => {
            eprintln!("bootloader-glue: {msg}");
            1
        }
    }
}

enum Failure {
    Usage(String),
    Failed(String),
}

impl From<lexopt::Error> for Failure {
    fn from(e: lexopt::Error) -> Failure {
        Failure::Usage(e.to_string())
    }
}

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::Failed(e.to_string())
}

#[derive(Default)]
struct Args {
    cfg: Option<PathBuf>,
    manifest: Option<String>,
    target: Option<String>,
    allow_downgrade: bool,
    bootloader: Option<String>,
    reboot: bool,
    config: Option<PathBuf>,
    keys: Vec<PathBuf>,
    json: bool,
    grub: GrubConfig,
}

fn run() -> Result<i32, Failure> {
    let mut parser = lexopt::Parser::from_env();
    let command = match parser.next()? {
        Some(Value(v)) => v.string()?,
        Some(Long("help") | Short('h')) => {
            print!("{USAGE}");
            return Ok(0);
        }
        _ => return Err(Failure::Usage("missing command".into())),
    };
    let mut a = Args::default();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("cfg") => a.cfg = Some(parser.value()?.into()),
            Long("manifest") => a.manifest = Some(parser.value()?.string()?),
            Long("target") => a.target = Some(parser.value()?.string()?),
            Long("allow-downgrade") => a.allow_downgrade = true,
            Long("bootloader") => a.bootloader = Some(parser.value()?.string()?),
            Long("reboot") => a.reboot = true,
            Long("config") => a.config = Some(parser.value()?.into()),
            Long("trusted-key") => a.keys.push(parser.value()?.into()),
            Long("json") => a.json = true,
            Long("recovery-label") => a.grub.recovery_label = parser.value()?.string()?,
            Long("cfg-label") => a.grub.cfg_label = parser.value()?.string()?,
            Long("grubenv") => {
                let value = parser.value()?.string()?;
                let (label, path) = value.split_once(':').ok_or_else(|| {
                    Failure::Usage(format!("--grubenv {value}: expected LABEL:PATH"))
                })?;
                a.grub.grubenv = Some((label.to_string(), path.to_string()));
            }
            Long("kernel") => a.grub.kernel = parser.value()?.string()?,
            Long("initrd") => a.grub.initrd = parser.value()?.string()?,
            Long("cmdline") => a.grub.cmdline = parser.value()?.string()?,
            other => return Err(other.unexpected().into()),
        }
    }
    let cfg = a.cfg.clone().unwrap_or_else(|| PathBuf::from("/cfg"));
    let flag =
        BootFlag::parse(a.bootloader.as_deref().unwrap_or("grub")).map_err(Failure::Usage)?;
    match command.as_str() {
        "request" => request_command(&a, &cfg, flag),
        "status" => {
            let s = status::status(&cfg);
            println!("{}", if a.json { s.json() } else { s.line() });
            Ok(s.code as i32)
        }
        "cancel" => {
            let pending = request::cancel(&cfg, &flag).map_err(failed)?;
            println!(
                "{}",
                if pending {
                    "the pending update is cancelled (kept as cfg:update/instruction.cancelled)"
                } else {
                    "no update was pending; the boot loader flag is cleared"
                }
            );
            Ok(0)
        }
        "unlock" => {
            let was = request::unlock(&cfg).map_err(failed)?;
            println!(
                "{}",
                if was {
                    "the update lock is cleared: the next instruction gets its full attempts"
                } else {
                    "no update lock was set"
                }
            );
            Ok(0)
        }
        "grub-config" => {
            print!("{}", a.grub.fragment());
            Ok(0)
        }
        other => Err(Failure::Usage(format!("unknown command {other:?}"))),
    }
}

fn default_keys() -> Vec<PathBuf> {
    let mut keys: Vec<PathBuf> = std::fs::read_dir("/etc/reimage/keys")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "pub"))
                .collect()
        })
        .unwrap_or_default();
    keys.sort();
    keys
}

fn request_command(a: &Args, cfg: &Path, flag: BootFlag) -> Result<i32, Failure> {
    let manifest = a
        .manifest
        .as_deref()
        .ok_or_else(|| Failure::Usage("request needs --manifest PARTITION:PATH".into()))?;
    let manifest = PartitionPath::parse(manifest)
        .ok_or_else(|| Failure::Usage(format!("--manifest {manifest}: expected PARTITION:PATH")))?;
    let config_path = a
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("/etc/reimage/recovery.conf"));
    let text = std::fs::read_to_string(&config_path).map_err(|e| {
        failed(format!(
            "{}: {e} (the device's recovery.conf; pass --config FILE)",
            config_path.display()
        ))
    })?;
    let config =
        Config::parse(&text).map_err(|e| failed(format!("{}: {e}", config_path.display())))?;
    let keys = if a.keys.is_empty() {
        default_keys()
    } else {
        a.keys.clone()
    };
    recovery::logger::init_as("bootloader-glue", false);
    let r = Request {
        cfg: cfg.to_path_buf(),
        manifest,
        target: a.target.clone().unwrap_or_else(|| "system".into()),
        allow_downgrade: a.allow_downgrade,
        config,
        trusted_keys: keys,
        flag,
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let done = request::request(&r).map_err(failed)?;
    println!(
        "update to {} {} requested: cfg backed up to {}; the next boot installs it",
        done.product,
        done.version,
        done.backup.display()
    );
    if a.reboot {
        println!("rebooting");
        nix::unistd::sync();
        let err = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
        return Err(failed(format!("cannot reboot: {err:?}")));
    }
    Ok(0)
}
