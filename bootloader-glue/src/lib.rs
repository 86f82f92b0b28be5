//! `bootloader-glue`: what connects the running system, the boot loader and
//! the recovery. So far: asking for an update by writing the instruction,
//! and clearing the update lock.
//!
//! - [`cli`]: the command line.
//! - [`request`]: writes the update instruction on `cfg`, unless the update
//!   lock is set; clears the lock.

pub mod cli;
pub mod request;
