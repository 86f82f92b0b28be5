//! `recovery`: verifies a signed image and writes it into a file system.
//!
//! The data path, top to bottom, as a stack of readers:
//! file → [`readers::HashReader`] (BLAKE3) → [`readers::ProgressReader`] →
//! [`decode`] (zstd, frames on several threads) → tar → [`scan`]
//! (verification, writes nothing) or [`extract`].
//!
//! - [`error`]: the stage, file and reason of every refusal.
//! - [`keys`]: the trusted public keys.
//! - [`verify`]: signature, manifest, payload size and hash, and the scan
//!   of every entry: everything that is checked before the first write.
//! - [`scan`]: the entry checks that need the decoded payload.
//! - [`extract`]: writes the entries below a directory, never outside it.
//! - [`readers`], [`decode`] and [`progress`]: the layers of the data path.
//! - [`writeback`]: flushes the target while extraction goes on.
//! - [`cli`]: the host modes `recovery verify` and `recovery apply`.
//! - [`logger`]: log lines to the console.

pub mod cli;
pub mod decode;
pub mod error;
pub mod extract;
pub mod keys;
pub mod logger;
pub mod progress;
pub mod readers;
pub mod scan;
pub mod verify;
pub mod writeback;

pub use error::{Stage, UpdateError};
