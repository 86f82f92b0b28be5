//! The harness that proves the recovery on a real kernel: it builds what a
//! guest boots, boots it in QEMU, and reads the disk it leaves.
//!
//! - [`artifacts`]: the static recovery, the Debian kernel, the initramfs.
//! - [`cycle`]: the full cycle through OVMF and GRUB, three boots.
//! - [`scenario`]: a device's disk: sample systems, staged images, the
//!   instruction, the reference GPT layout.
//! - [`vm`]: boots QEMU with a timeout and keeps the serial console.
//! - [`inspect`]: reads partitions and files of a disk image from the host.
//! - [`goosebit`]: a real gooseBit server (PyPI) on 127.0.0.1, for the
//!   tests of bundles and the agent.
//! - [`demo`]: the README's first command: one update, shown as it happens.

pub mod artifacts;
pub mod cycle;
pub mod demo;
pub mod goosebit;
pub mod inspect;
pub mod scenario;
pub mod vm;
