//! The harness that proves the recovery on a real kernel. So far: building
//! the static `recovery` that an initramfs runs as PID 1.
//!
//! - [`artifacts`]: the static recovery binary.

pub mod artifacts;
