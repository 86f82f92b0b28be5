//! The layers of the data path that are ours: each wraps the reader below
//! and passes every byte through unchanged.

use crate::progress::Progress;
use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

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
    pub fn finish(mut self) -> io::Result<([u8; 32], u64)> {
        io::copy(&mut self, &mut io::sink())?;
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

/// Size of the blocks a [`ReadAhead`] hands over.
const BLOCK: usize = 1 << 20;
/// Blocks in flight between the two threads.
const DEPTH: usize = 4;

/// Runs `inner` (e.g. file → zstd) on a thread of its own, a few blocks
/// ahead of `consume`, so that decompression and writing use two cores, as
/// `zstd -dc | tar -x` does. Stops when `consume` returns.
pub fn read_ahead<R: Read + Send, T>(inner: R, consume: impl FnOnce(&mut ReadAhead) -> T) -> T {
    let (full_tx, full_rx) = sync_channel::<io::Result<Vec<u8>>>(DEPTH);
    let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(DEPTH + 2);
    std::thread::scope(|scope| {
        scope.spawn(move || produce(inner, full_tx, empty_rx));
        let mut reader = ReadAhead {
            full: full_rx,
            empty: empty_tx,
            block: Vec::new(),
            pos: 0,
            done: false,
        };
        consume(&mut reader)
        // Dropping the reader drops the receiver: the producer's next send
        // fails and it returns, and the scope joins it.
    })
}

fn produce<R: Read>(mut inner: R, full: SyncSender<io::Result<Vec<u8>>>, empty: Receiver<Vec<u8>>) {
    loop {
        let mut block = empty
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BLOCK));
        block.resize(BLOCK, 0);
        let mut filled = 0;
        let result = loop {
            match inner.read(&mut block[filled..]) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    filled += n;
                    if filled == BLOCK {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        block.truncate(filled);
        let last = filled == 0 || result.is_err();
        let message = match result {
            Ok(()) => Ok(block),
            Err(e) => Err(e),
        };
        if full.send(message).is_err() || last {
            return;
        }
    }
}

/// The consuming end of [`read_ahead`].
pub struct ReadAhead {
    full: Receiver<io::Result<Vec<u8>>>,
    empty: SyncSender<Vec<u8>>,
    block: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.block.len() {
            if self.done {
                return Ok(0);
            }
            let next = self.full.recv().map_err(|_| {
                io::Error::new(io::ErrorKind::BrokenPipe, "the reading thread stopped")
            })??;
            if next.is_empty() {
                self.done = true;
            }
            let old = std::mem::replace(&mut self.block, next);
            let _ = self.empty.try_send(old);
            self.pos = 0;
        }
        let n = buf.len().min(self.block.len() - self.pos);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
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
        let (hash, count) = r.finish().unwrap();
        assert_eq!(count, 100_000);
        assert_eq!(hash, *blake3::hash(&data).as_bytes());
    }

    #[test]
    fn read_ahead_passes_every_byte_in_order() {
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        read_ahead(&data[..], |r| r.read_to_end(&mut out)).unwrap();
        assert_eq!(out, data);
        // A consumer that stops early does not hang the producer.
        let first = read_ahead(&data[..], |r| {
            let mut b = [0u8; 10];
            r.read_exact(&mut b).map(|_| b)
        });
        assert_eq!(first.unwrap(), data[..10]);
    }

    #[test]
    fn read_ahead_passes_errors_on() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let err = read_ahead(Failing, |r| r.read_to_end(&mut Vec::new())).unwrap_err();
        assert_eq!(err.to_string(), "disk on fire");
    }

    #[test]
    fn progress_counts_bytes() {
        let progress = Progress::new("test", 0);
        let mut r = ProgressReader::new(&[1u8; 5000][..], &progress);
        io::copy(&mut r, &mut io::sink()).unwrap();
        assert_eq!(progress.bytes(), 5000);
    }
}
