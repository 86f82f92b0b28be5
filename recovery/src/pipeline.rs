//! The one reader stack over a payload, for verification and extraction
//! alike: payload (a file, or its range of a bundle) → [`HashReader`] (BLAKE3) → [`ProgressReader`] →
//! [`decode`] (zstd, frames on every core) → the caller's reader of the
//! tar stream ([`crate::scan`] or [`crate::extract`]).
//!
//! The file is hashed to its end whatever the caller's reader did, so a
//! corrupt payload is reported as a hash mismatch rather than as whatever
//! it decoded into; [`Pass::stopped`] says where decoding stopped.

use crate::decode::{self, Decoded};
use crate::error::UpdateError;
use crate::progress::Progress;
use crate::readers::{HashReader, ProgressReader};
use std::io::{self, Read};

/// What one pass over a payload found.
pub struct Pass<T> {
    /// What the reader of the tar stream returned.
    pub tar: Result<T, UpdateError>,
    /// BLAKE3 of every byte of the payload.
    pub blake3: [u8; 32],
    /// Bytes read from the payload.
    pub size: u64,
}

impl<T> Pass<T> {
    /// Where the reader of the tar stream stopped with an error, for a
    /// message about a hash mismatch: empty when it did not.
    pub fn stopped(&self) -> String {
        match &self.tar {
            Ok(_) => String::new(),
            Err(e) => format!("; decoding stopped with: {}", e.reason),
        }
    }
}

/// Reads the payload once through the stack, with `read_tar` on the
/// decoded stream; fails only when the payload cannot be read to its end.
/// `payload` reads exactly the payload's bytes: its own file, or its
/// range of a bundle ([`crate::source::PayloadSource::open`]).
pub fn pass<T>(
    payload: impl Read + Send,
    progress: &Progress,
    read_tar: impl FnOnce(&mut Decoded<'_>) -> Result<T, UpdateError>,
) -> io::Result<Pass<T>> {
    let mut hashed = HashReader::new(payload);
    let counted = ProgressReader::new(&mut hashed, progress);
    let tar = decode::decode(counted, decode::workers(), read_tar);
    let (blake3, size) = hashed.finish(progress)?;
    Ok(Pass { tar, blake3, size })
}
