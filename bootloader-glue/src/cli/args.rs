// The command line of `bootloader-glue`: clap definitions only. `build.rs`
// `include!`s this file to write the man pages and the shell completions,
// so it uses nothing but `clap` and `std` (and no inner doc comments).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Exit code of a usage error, for every subcommand: Nagios' UNKNOWN, so
/// that a monitoring system calling `status` wrongly never reads CRITICAL.
pub const USAGE_EXIT: i32 = 3;

/// Connects the running system, the boot loader and the recovery: asks for
/// an update, cancels it, reports its state to monitoring.
#[derive(Debug, Parser)]
#[command(name = "bootloader-glue", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Verifies the staged image, backs up cfg, writes the instruction and
    /// arms the boot loader
    Request(RequestArgs),
    /// The state of updates in one line, with Nagios plugin exit codes:
    /// 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
    Status(StatusArgs),
    /// Disarms a pending update (kept as cfg:update/instruction.cancelled)
    /// and clears the boot loader's flag
    Cancel(CancelArgs),
    /// Clears the update lock set after repeated failures
    Unlock(CfgArg),
    /// Ends the trial of a newly installed system that works: stops the
    /// boot loader's counting and records outcome=confirmed (run by the
    /// new system once it is up; nothing to do when nothing is on trial)
    Confirm(ConfirmArgs),
    /// Prints the grub.cfg fragment that boots the recovery while an
    /// update is pending
    GrubConfig(GrubConfigArgs),
    /// Prints the U-Boot boot script (the start of boot.scr) that boots
    /// the recovery while an update is pending
    UbootScript(UbootScriptArgs),
}

#[derive(Debug, Args)]
pub struct CfgArg {
    /// Where the cfg partition is mounted
    #[arg(long, value_name = "DIR", default_value = "/cfg")]
    pub cfg: PathBuf,
}

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The staged image's manifest or bundle (P-V.swu), on a partition named by its GPT name
    #[arg(long, value_name = "PARTITION:PATH")]
    pub manifest: String,
    /// The GPT name of the partition to install into
    #[arg(long, value_name = "PARTITION", default_value = "system")]
    pub target: String,
    /// Asks for a lower version than the installed one (where the
    /// recovery's downgrade policy lets the instruction decide)
    #[arg(long)]
    pub allow_downgrade: bool,
    /// The boot loader's flag: grub, grubenv:FILE, uboot[:FW_ENV_CONFIG],
    /// systemd-boot[:EFIVARS_DIR[:ENTRY[:SYSTEM_ENTRY[:ESP]]]] or none
    #[arg(long, value_name = "KIND", default_value = "grub")]
    pub bootloader: String,
    /// U-Boot's default environment (name=value lines, as fw_printenv
    /// prints them), to start from where the environment area holds no
    /// valid copy (as fw_setenv -f); only with --bootloader uboot
    #[arg(long, value_name = "FILE")]
    pub uboot_defaults: Option<PathBuf>,
    /// The image to restore if the update fails after the erase or is not
    /// confirmed [default: the installed version's image beside the new one]
    #[arg(long, value_name = "PARTITION:PATH", conflicts_with = "no_restore")]
    pub restore: Option<String>,
    /// Requests without an image to restore: a failed update cannot be
    /// undone (warned)
    #[arg(long)]
    pub no_restore: bool,
    /// Installs again the version the last restore took away
    /// (cfg:update/restored-away names it), which is otherwise refused so
    /// that an image that never confirms does not cycle; recorded as
    /// cfg:update/retry-restored for the recovery (and the agent) until
    /// that version is restored away again
    #[arg(long)]
    pub retry_restored: bool,
    /// Reboots once the update is requested
    #[arg(long)]
    pub reboot: bool,
    #[command(flatten)]
    pub cfg: CfgArg,
    /// The device's recovery configuration (product, targets, policy)
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/reimage/recovery.conf"
    )]
    pub config: PathBuf,
    /// A trusted public key (repeat for several); default: every
    /// /etc/reimage/keys/*.pub
    #[arg(long = "trusted-key", value_name = "KEY.pub")]
    pub trusted_keys: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One JSON object instead of the line
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub cfg: CfgArg,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The boot loader's flag to clear (as for request)
    #[arg(long, value_name = "KIND", default_value = "grub")]
    pub bootloader: String,
    #[command(flatten)]
    pub cfg: CfgArg,
}

#[derive(Debug, Args)]
pub struct ConfirmArgs {
    /// The boot loader that counts [default: the one the trial names]
    #[arg(long, value_name = "KIND")]
    pub bootloader: Option<String>,
    #[command(flatten)]
    pub cfg: CfgArg,
}

#[derive(Debug, Args)]
pub struct GrubConfigArgs {
    /// File system label of the partition holding the recovery's kernel
    /// and initramfs [default: recovery]
    #[arg(long, value_name = "LABEL")]
    pub recovery_label: Option<String>,
    /// File system label of the cfg partition [default: cfg]
    #[arg(long, value_name = "LABEL")]
    pub cfg_label: Option<String>,
    /// A GRUB environment block that holds the flag, where GRUB cannot
    /// read cfg
    #[arg(long, value_name = "LABEL:PATH")]
    pub grubenv: Option<String>,
    #[command(flatten)]
    pub entry: RecoveryEntryArgs,
}

#[derive(Debug, Args)]
pub struct UbootScriptArgs {
    /// GPT name of the partition holding the recovery's kernel and
    /// initramfs [default: recovery]
    #[arg(long, value_name = "NAME")]
    pub recovery_part: Option<String>,
    /// GPT name of the cfg partition [default: cfg]
    #[arg(long, value_name = "NAME")]
    pub cfg_part: Option<String>,
    /// GPT name of the raw partition holding the environment area's
    /// first copy (0x4000 bytes at its start) [default: ubootenv]
    #[arg(long, value_name = "NAME")]
    pub env_part: Option<String>,
    /// GPT name of the raw partition with the environment area's second
    /// copy (a redundant pair; without the partition, one copy)
    /// [default: ubootenv2]
    #[arg(long, value_name = "NAME")]
    pub env_part2: Option<String>,
    #[command(flatten)]
    pub entry: RecoveryEntryArgs,
}

/// How the boot loader starts the recovery.
#[derive(Debug, Args)]
pub struct RecoveryEntryArgs {
    /// The recovery's kernel on that partition [default: /vmlinuz]
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<String>,
    /// The recovery's initramfs [default: /initramfs.img]
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<String>,
    /// The recovery's kernel command line [default: console=ttyS0 panic=-1]
    #[arg(long, value_name = "TEXT")]
    pub cmdline: Option<String>,
}
