//! The layers of the data path that are ours: each wraps the reader below
//! and passes every byte through unchanged.

use crate::progress::Progress;
use std::io::{self, Read};

/// Hashes with BLAKE3 and counts what is read through it.
pub struct HashReader<R> {
    inner: R,
    hasher: blake3::Hasher,
    count: u64,
}

impl<R: Read> HashReader<R> {
    pub fn new(inner: R) -> Self {
        HashReader {
            inner,
            hasher: blake3::Hasher::new(),
            count: 0,
        }
    }

    /// Reads what is left, then returns the hash and size of everything.
    /// What it reads counts into `progress` as it goes, which is also the
    /// supervisor's sign of life: after an early decode error, reading a
    /// multi-GB rest on slow storage is not a stall.
    pub fn finish(mut self, progress: &Progress) -> io::Result<([u8; 32], u64)> {
        io::copy(
            &mut ProgressReader::new(&mut self, progress),
            &mut io::sink(),
        )?;
        Ok((*self.hasher.finalize().as_bytes(), self.count))
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Counts what is read through it into a [`Progress`].
pub struct ProgressReader<'p, R> {
    inner: R,
    progress: &'p Progress,
}

impl<'p, R: Read> ProgressReader<'p, R> {
    pub fn new(inner: R, progress: &'p Progress) -> Self {
        ProgressReader { inner, progress }
    }
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add_bytes(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_covers_every_byte_even_unread_ones() {
        let data = vec![7u8; 100_000];
        let mut r = HashReader::new(&data[..]);
        let mut first = [0u8; 10];
        r.read_exact(&mut first).unwrap();
        let progress = Progress::new("test", 0);
        let (hash, count) = r.finish(&progress).unwrap();
        assert_eq!(count, 100_000);
        assert_eq!(hash, *blake3::hash(&data).as_bytes());
        // The rest is read as progress (each block a beat).
        assert_eq!(progress.bytes(), 100_000 - 10);
    }

    #[test]
    fn progress_counts_bytes() {
        let progress = Progress::new("test", 0);
        let mut r = ProgressReader::new(&[1u8; 5000][..], &progress);
        io::copy(&mut r, &mut io::sink()).unwrap();
        assert_eq!(progress.bytes(), 5000);
    }
}
