//! `bootloader-glue`: what connects the running system, the boot loader and
//! the recovery.
//!
//! - [`request`]: asks for an update: verifies the staged image with the
//!   recovery's own engine, backs up `cfg`, writes the instruction, arms
//!   the boot loader; clears the update lock.
//! - [`status`]: the last result, the lock and a pending instruction, as
//!   one line and a Nagios plugin exit code.
//! - [`trial`]: the image a failed update is restored from, and
//!   `confirm`, which ends a new system's trial.
//! - [`backup`]: the copy of `cfg`'s configuration kept in `storage`.
//! - [`grub`]: the `grub.cfg` fragment that boots the recovery.
//! - [`mounts`]: where the running system mounted a partition.
//! - [`cli`]: the command line: its clap definitions in [`cli::args`]
//!   (also read by `build.rs` for the man pages and shell completions),
//!   and the exit codes.

pub mod backup;
pub mod cli;
pub mod grub;
pub mod mounts;
pub mod request;
pub mod status;
pub mod trial;
