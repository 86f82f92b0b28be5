//! `bootloader-glue`: what connects the running system, the boot loader and
//! the recovery. So far: asking for an update by writing the instruction.
//!
//! - [`request`]: writes the update instruction on `cfg`, unless the update
//!   lock is set.

pub mod request;
