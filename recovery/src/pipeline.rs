//! The one reader stack over a payload, for verification and extraction
//! alike: payload (a file, or its range of a bundle) → [`HashReader`] (BLAKE3) → [`ProgressReader`] →
//! [`decode`] (zstd, frames on every core) → the caller's reader of the
//! tar stream ([`crate::scan`] or [`crate::extract`]).
//!
//! The file is hashed to its end whatever the caller's reader did, so a
//! corrupt payload is reported as a hash mismatch rather than as whatever
//! it decoded into; [`Pass::stopped`] says where decoding stopped.
//!
//! Only the payload's first `body` bytes reach the decoder: in format 2
//! the entry index that ends it is hashed, not decoded. [`read_tail`] is
//! the pass of a format-2 verification: the payload hashed, its last bytes
//! (the index) kept, nothing decoded.

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
    /// The same pass with `f` applied to what the reader returned.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Pass<U> {
        Pass {
            tar: self.tar.map(f),
            blake3: self.blake3,
            size: self.size,
        }
    }

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
/// decoded stream of its first `body` bytes; fails only when the payload
/// cannot be read to its end. `payload` reads exactly the payload's bytes:
/// its own file, or its range of a bundle
/// ([`crate::source::PayloadSource::open`]).
pub fn pass<T>(
    payload: impl Read + Send,
    body: u64,
    progress: &Progress,
    read_tar: impl FnOnce(&mut Decoded<'_>) -> Result<T, UpdateError>,
) -> io::Result<Pass<T>> {
    let mut hashed = HashReader::new(payload);
    let counted = ProgressReader::new(&mut hashed, progress).take(body);
    let tar = decode::decode(counted, decode::workers(), read_tar);
    let (blake3, size) = hashed.finish(progress)?;
    Ok(Pass { tar, blake3, size })
}

/// Hashes the whole payload and returns its bytes after the first `body`
/// (at most `tail` of them): the entry index of a format-2 payload.
pub fn read_tail(
    payload: impl Read,
    body: u64,
    tail: u64,
    progress: &Progress,
) -> io::Result<Pass<Vec<u8>>> {
    let mut hashed = HashReader::new(payload);
    let mut counted = ProgressReader::new(&mut hashed, progress);
    // Large reads: the file is read at the speed of the storage.
    let mut buf = vec![0u8; 1 << 20];
    let mut skip = (&mut counted).take(body);
    loop {
        match skip.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let mut index = Vec::new();
    (&mut counted).take(tail).read_to_end(&mut index)?;
    let (blake3, size) = hashed.finish(progress)?;
    Ok(Pass {
        tar: Ok(index),
        blake3,
        size,
    })
}
