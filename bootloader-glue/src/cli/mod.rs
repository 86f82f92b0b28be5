//! The command line of the running system's side: [`args`] defines it
//! (clap derive; also read by `build.rs` for the man pages and shell
//! completions), this module runs it.
//!
//! Exit codes: 0 done; 1 failed (the message says why); 3 a usage error,
//! for every subcommand ([`args::USAGE_EXIT`], Nagios' UNKNOWN); `status`
//! exits with its Nagios code.

pub mod args;

use crate::grub::GrubConfig;
use crate::request::{self, Request, Restore};
use crate::status;
use crate::uboot::UbootScript;
use args::{
    CancelArgs, Cli, Command, ConfirmArgs, GrubConfigArgs, RecoveryEntryArgs, RequestArgs,
    StatusArgs, UbootScriptArgs, USAGE_EXIT,
};
use clap::Parser;
use formats::bootflag::BootFlag;
use formats::cfg::{shown, INSTRUCTION_CANCELLED};
use formats::config::Config;
use formats::instruction::PartitionPath;
use std::path::{Path, PathBuf};

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version go to stdout and exit 0.
            let _ = e.print();
            return if e.use_stderr() { USAGE_EXIT } else { 0 };
        }
    };
    match run(cli.command) {
        Ok(code) => code,
        Err(Failure::Usage(msg)) => {
            eprintln!("bootloader-glue: {msg}\nFor more information, try '--help'.");
            USAGE_EXIT
        }
        Err(Failure::Failed(msg)) => {
            eprintln!("bootloader-glue: {msg}");
            1
        }
    }
}

enum Failure {
    /// A value clap cannot check by itself.
    Usage(String),
    Failed(String),
}

/// The message of an error and of each of its causes, each once.
pub fn message(e: impl std::error::Error + Send + Sync + 'static) -> String {
    format!("{:#}", anyhow::Error::new(e))
}

fn failed(e: impl std::error::Error + Send + Sync + 'static) -> Failure {
    Failure::Failed(message(e))
}

fn bootflag(setting: &str) -> Result<BootFlag, Failure> {
    BootFlag::parse(setting).map_err(|e| Failure::Usage(format!("--bootloader {e}")))
}

fn run(command: Command) -> Result<i32, Failure> {
    match command {
        Command::Request(a) => request_command(a),
        Command::Status(StatusArgs { json, cfg }) => {
            let s = status::status(&cfg.cfg);
            println!("{}", if json { s.json() } else { s.line() });
            Ok(s.code as i32)
        }
        Command::Cancel(CancelArgs { bootloader, cfg }) => {
            let flag = bootflag(&bootloader)?;
            let pending = request::cancel(&cfg.cfg, &flag).map_err(failed)?;
            let cleared = match flag {
                BootFlag::Grub | BootFlag::None => "",
                _ => "; the boot loader's flag is cleared",
            };
            if pending {
                println!(
                    "the pending update is cancelled (kept as {}){cleared}",
                    shown(INSTRUCTION_CANCELLED)
                );
            } else {
                println!("no update was pending{cleared}");
            }
            Ok(0)
        }
        Command::Unlock(cfg) => {
            let was = request::unlock(&cfg.cfg).map_err(failed)?;
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
        Command::Confirm(ConfirmArgs { bootloader, cfg }) => {
            let flag = bootloader.as_deref().map(bootflag).transpose()?;
            match crate::trial::confirm(&cfg.cfg, flag, now()).map_err(failed)? {
                Some(version) => println!(
                    "{version} confirmed: its trial is over, the boot loader no longer counts"
                ),
                None => println!("nothing is on trial"),
            }
            Ok(0)
        }
        Command::GrubConfig(a) => {
            print!("{}", grub_config(a)?.fragment());
            Ok(0)
        }
        Command::UbootScript(a) => {
            print!("{}", uboot_script(a).script());
            Ok(0)
        }
    }
}

/// Replaces a default with the option's value, if given.
fn set(field: &mut String, value: Option<String>) {
    if let Some(v) = value {
        *field = v;
    }
}

/// The recovery entry's options, over the defaults.
fn set_entry(
    entry: RecoveryEntryArgs,
    kernel: &mut String,
    initrd: &mut String,
    cmdline: &mut String,
) {
    set(kernel, entry.kernel);
    set(initrd, entry.initrd);
    set(cmdline, entry.cmdline);
}

fn uboot_script(a: UbootScriptArgs) -> UbootScript {
    let mut u = UbootScript::default();
    set(&mut u.recovery_part, a.recovery_part);
    set(&mut u.cfg_part, a.cfg_part);
    set(&mut u.env_part, a.env_part);
    set(&mut u.env_part2, a.env_part2);
    set_entry(a.entry, &mut u.kernel, &mut u.initrd, &mut u.cmdline);
    u
}

fn grub_config(a: GrubConfigArgs) -> Result<GrubConfig, Failure> {
    let mut g = GrubConfig::default();
    set(&mut g.recovery_label, a.recovery_label);
    set(&mut g.cfg_label, a.cfg_label);
    set_entry(a.entry, &mut g.kernel, &mut g.initrd, &mut g.cmdline);
    if let Some(value) = a.grubenv {
        let (label, path) = value
            .split_once(':')
            .ok_or_else(|| Failure::Usage(format!("--grubenv {value}: expected LABEL:PATH")))?;
        g.grubenv = Some((label.to_string(), path.to_string()));
    }
    Ok(g)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn default_keys() -> Vec<PathBuf> {
    // No directory: no keys, and request says that no key is trusted.
    recovery::keys::files_in(Path::new("/etc/reimage/keys")).unwrap_or_default()
}

fn request_command(a: RequestArgs) -> Result<i32, Failure> {
    let mut flag = bootflag(&a.bootloader)?;
    if let Some(file) = a.uboot_defaults {
        match &mut flag {
            BootFlag::Uboot { defaults, .. } => *defaults = Some(file),
            _ => {
                return Err(Failure::Usage(
                    "--uboot-defaults goes with --bootloader uboot[:FW_ENV_CONFIG] only".into(),
                ))
            }
        }
    }
    let manifest = PartitionPath::parse(&a.manifest).ok_or_else(|| {
        Failure::Usage(format!(
            "--manifest {}: expected PARTITION:PATH",
            a.manifest
        ))
    })?;
    let restore = match (&a.restore, a.no_restore) {
        (Some(image), _) => Restore::Given(PartitionPath::parse(image).ok_or_else(|| {
            Failure::Usage(format!("--restore {image}: expected PARTITION:PATH"))
        })?),
        (None, true) => Restore::Without,
        (None, false) => Restore::Find,
    };
    let text = std::fs::read_to_string(&a.config).map_err(|e| {
        Failure::Failed(format!(
            "{}: {e} (the device's recovery.conf; pass --config FILE)",
            a.config.display()
        ))
    })?;
    let config = Config::parse(&text)
        .map_err(|e| Failure::Failed(format!("{}: {}", a.config.display(), message(e))))?;
    let keys = if a.trusted_keys.is_empty() {
        default_keys()
    } else {
        a.trusted_keys
    };
    recovery::logger::init_as("bootloader-glue", false);
    let r = Request {
        cfg: a.cfg.cfg,
        manifest,
        target: a.target,
        allow_downgrade: a.allow_downgrade,
        config,
        trusted_keys: keys,
        flag,
        now: now(),
        restore,
        retry_restored: a.retry_restored,
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
        let Err(err) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
        return Err(Failure::Failed(format!("cannot reboot: {err}")));
    }
    Ok(0)
}
