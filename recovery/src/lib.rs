//! `recovery`: verifies a signed image and writes it into a file system.
//! As PID 1 of the recovery initramfs it runs one update ([`update`]); run
//! from a shell, its host modes check and apply images ([`cli`]).
//!
//! The data path, top to bottom, as a stack of readers built in one place
//! ([`pipeline`]): payload (a file, or a range of a bundle) → [`readers::HashReader`] (BLAKE3) →
//! [`readers::ProgressReader`] → [`decode`] (zstd, frames on several
//! threads) → tar → [`scan`] (verification, writes nothing) or [`extract`].
//! A format-2 payload is only hashed before the erase: its signed entry
//! index (its last bytes) is what [`scan::check_index`] checks, and what
//! [`extract`] compares every tar header with.
//!
//! - [`update`]: the recovery OS, step by step, as PID 1.
//! - [`restore`]: its decisions about trial boots and restoring the last
//!   good image.
//! - [`error`]: the stage, file and reason of every refusal.
//! - [`admission`]: whether a staged image may be installed here, one
//!   check for the recovery and `bootloader-glue request`.
//! - [`policy`]: the target and the image against the device.
//! - [`partitions`]: partitions found by GPT name.
//! - [`mounts`]: mounts as guards.
//! - [`erase`]: a fresh file system on the target.
//! - [`fault`]: fault points for the power-cut tests (feature `faults`).
//! - [`keys`]: the trusted public keys.
//! - [`source`]: where an image's manifest, signature and payload are:
//!   three files, or one bundle read in place.
//! - [`verify`]: signature, manifest, payload size and hash, and the check
//!   of every entry (from the entry index, or the decoded tar of a
//!   format-1 image): everything that is checked before the first write.
//! - [`scan`]: the entry checks that need the decoded payload.
//! - [`install`]: the extraction's data path, hashed again, and the sync.
//! - [`extract`]: writes the entries below a directory, never outside it.
//! - [`pipeline`]: the one reader stack over a payload, for both.
//! - [`readers`], [`decode`] and [`progress`]: the layers of the data path.
//! - [`writeback`]: flushes the target while extraction goes on.
//! - [`supervisor`]: stage deadlines and the hardware watchdog: PID 1
//!   cannot hang.
//! - [`info`]: what `verify --json` (and `image-builder info`) says of an image.
//! - [`cli`]: the host modes `recovery verify` and `recovery apply`.
//! - [`logger`]: log lines to the console, the kernel log and `cfg`.

pub mod admission;
pub mod cli;
pub mod decode;
pub mod erase;
pub mod error;
pub mod extract;
pub mod fault;
pub mod info;
pub mod install;
pub mod keys;
pub mod logger;
pub mod mounts;
pub mod partitions;
pub mod pipeline;
pub mod policy;
pub mod progress;
pub mod readers;
pub mod restore;
pub mod scan;
pub mod source;
pub mod supervisor;
pub mod update;
pub mod verify;
pub mod writeback;

pub use error::{Stage, UpdateError};
