//! The zstd layer of the data path. A payload is a sequence of zstd frames.
//! When its frames are small and say how much they hold, as `image-builder`
//! writes them (8 MiB of tar each), they are decoded on several threads at
//! once and handed on in order; any other zstd stream (one large frame, as
//! the `zstd` tool writes) is decoded as a stream on one thread.
//!
//! Threads: one reads and splits the compressed stream (and, below it, may
//! hash it), `workers` decode frames, and the caller's `consume` reads the
//! decoded stream.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

/// Largest decoded frame that is decoded in one piece; larger or unsized
/// frames switch the payload to streaming.
pub const MAX_FRAME: u64 = 16 << 20;
/// Blocks handed on in streaming mode.
const STREAM_BLOCK: usize = 1 << 20;

type Block = (u64, io::Result<Vec<u8>>);

/// Buffers handed back for reuse: allocating (and zeroing) megabytes per
/// frame costs more system time than the decoding itself.
struct Pool {
    give: SyncSender<Vec<u8>>,
    take: Mutex<Receiver<Vec<u8>>>,
}

impl Pool {
    fn new(depth: usize) -> Pool {
        let (give, take) = sync_channel(depth);
        Pool {
            give,
            take: Mutex::new(take),
        }
    }

    fn get(&self, capacity: usize) -> Vec<u8> {
        let mut v = self
            .take
            .lock()
            .ok()
            .and_then(|rx| rx.try_recv().ok())
            .unwrap_or_default();
        v.clear();
        v.reserve(capacity);
        v
    }

    fn put(&self, v: Vec<u8>) {
        let _ = self.give.try_send(v);
    }
}

/// Decoding threads: one a core.
pub fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Decodes the zstd stream `compressed` on background threads and runs
/// `consume` on the decoded bytes.
pub fn decode<R: Read + Send, T>(
    compressed: R,
    workers: usize,
    consume: impl FnOnce(&mut Decoded<'_>) -> T,
) -> T {
    let workers = workers.max(1);
    let (job_tx, job_rx) = sync_channel::<(u64, Vec<u8>, usize)>(workers);
    let (out_tx, out_rx) = sync_channel::<Block>(workers * 2);
    let job_rx = Mutex::new(job_rx);
    let (frames, blocks) = (Pool::new(workers * 2), Pool::new(workers * 3));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let out = out_tx.clone();
            let (jobs, frames, blocks) = (&job_rx, &frames, &blocks);
            scope.spawn(move || decode_frames(jobs, out, frames, blocks));
        }
        let out = out_tx;
        let pool = &frames;
        scope.spawn(move || split(compressed, job_tx, out, pool));
        let mut decoded = Decoded {
            pool: &blocks,
            blocks: out_rx,
            waiting: BTreeMap::new(),
            next: 0,
            block: Vec::new(),
            pos: 0,
        };
        consume(&mut decoded)
        // Dropping `decoded` closes the channel: every thread's next send
        // fails and it returns, and the scope joins them.
    })
}

fn decode_frames(
    jobs: &Mutex<Receiver<(u64, Vec<u8>, usize)>>,
    out: SyncSender<Block>,
    frames: &Pool,
    blocks: &Pool,
) {
    let Ok(mut dctx) = zstd::bulk::Decompressor::new() else {
        return;
    };
    loop {
        let job = jobs.lock().map(|rx| rx.recv());
        let Ok(Ok((seq, frame, size))) = job else {
            return;
        };
        let mut data = blocks.get(size);
        let result = dctx.decompress_to_buffer(&frame[..], &mut data);
        frames.put(frame);
        let result = result.and_then(|n| {
            if n == size {
                Ok(data)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a zstd frame said it holds {size} bytes and held {n}"),
                ))
            }
        });
        if out.send((seq, result)).is_err() {
            return;
        }
    }
}

/// Reads the compressed stream and cuts it into frames for the workers,
/// or decodes it as a stream when its frames are not of that kind.
fn split<R: Read>(
    mut input: R,
    jobs: SyncSender<(u64, Vec<u8>, usize)>,
    out: SyncSender<Block>,
    pool: &Pool,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(2 * STREAM_BLOCK);
    let mut seq = 0u64;
    let mut eof = false;
    let fail = |seq: u64, e: io::Error| {
        let _ = out.send((seq, Err(e)));
    };
    loop {
        if buf.is_empty() {
            match fill(&mut input, &mut buf, STREAM_BLOCK) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => return fail(seq, e),
            }
        }
        // The frame header (at most 18 bytes) says what the frame holds.
        while buf.len() < 18 && !eof {
            match fill(&mut input, &mut buf, STREAM_BLOCK) {
                Ok(0) => eof = true,
                Ok(_) => {}
                Err(e) => return fail(seq, e),
            }
        }
        let size = match zstd::zstd_safe::get_frame_content_size(&buf) {
            Ok(Some(size)) if size <= MAX_FRAME => size as usize,
            // Unsized, large or not a plain frame: the rest is a stream.
            _ => return stream(buf.chain(input), seq, &out),
        };
        let whole = loop {
            if let Ok(n) = zstd::zstd_safe::find_frame_compressed_size(&buf) {
                break n;
            }
            if buf.len() as u64 > zstd::zstd_safe::compress_bound(MAX_FRAME as usize) as u64 + 1024
            {
                return fail(
                    seq,
                    invalid("a zstd frame does not end where its header says"),
                );
            }
            match fill(&mut input, &mut buf, STREAM_BLOCK) {
                Ok(0) => return fail(seq, invalid("the payload ends inside a zstd frame")),
                Ok(_) => {}
                Err(e) => return fail(seq, e),
            }
        };
        let mut frame = pool.get(whole);
        frame.extend_from_slice(&buf[..whole]);
        buf.drain(..whole);
        if jobs.send((seq, frame, size)).is_err() {
            return;
        }
        seq += 1;
    }
}

fn stream<R: Read>(input: R, mut seq: u64, out: &SyncSender<Block>) {
    let mut decoder = match zstd::Decoder::new(input) {
        Ok(d) => d,
        Err(e) => {
            let _ = out.send((seq, Err(e)));
            return;
        }
    };
    loop {
        let mut block = Vec::with_capacity(STREAM_BLOCK);
        let result = fill(&mut decoder, &mut block, STREAM_BLOCK).map(|_| block);
        let last = match &result {
            Ok(block) if block.is_empty() => return,
            Ok(_) => false,
            Err(_) => true,
        };
        if out.send((seq, result)).is_err() || last {
            return;
        }
        seq += 1;
    }
}

/// Appends up to `want` bytes read from `input`; returns how many.
fn fill<R: Read + ?Sized>(input: &mut R, buf: &mut Vec<u8>, want: usize) -> io::Result<usize> {
    let start = buf.len();
    buf.resize(start + want, 0);
    let mut got = 0;
    while got < want {
        match input.read(&mut buf[start + got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(start);
                return Err(e);
            }
        }
    }
    buf.truncate(start + got);
    Ok(got)
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The decoded stream, in order.
pub struct Decoded<'p> {
    pool: &'p Pool,
    blocks: Receiver<Block>,
    waiting: BTreeMap<u64, io::Result<Vec<u8>>>,
    next: u64,
    block: Vec<u8>,
    pos: usize,
}

impl Read for Decoded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.block.len() {
            let result = loop {
                if let Some(r) = self.waiting.remove(&self.next) {
                    break r;
                }
                match self.blocks.recv() {
                    Ok((seq, r)) => {
                        self.waiting.insert(seq, r);
                    }
                    // Every thread is done and nothing is missing: the end.
                    Err(_) if self.waiting.is_empty() => return Ok(0),
                    Err(_) => return Err(invalid("a part of the payload was lost while decoding")),
                }
            };
            let used = std::mem::replace(&mut self.block, result?);
            self.pool.put(used);
            self.pos = 0;
            self.next += 1;
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

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 / 7 % 251) as u8).collect()
    }

    fn decoded(compressed: &[u8], workers: usize) -> io::Result<Vec<u8>> {
        decode(compressed, workers, |d| {
            let mut out = Vec::new();
            d.read_to_end(&mut out).map(|_| out)
        })
    }

    #[test]
    fn small_frames_decode_in_order_on_several_threads() {
        let input = data(5_000_000);
        let mut compressed = Vec::new();
        for chunk in input.chunks(300_000) {
            compressed.extend(zstd::bulk::compress(chunk, 3).unwrap());
        }
        for workers in [1, 2, 4] {
            assert_eq!(decoded(&compressed, workers).unwrap(), input);
        }
    }

    #[test]
    fn a_stream_without_sizes_is_decoded_as_a_stream() {
        let input = data(3_000_000);
        let mut enc = zstd::Encoder::new(Vec::new(), 3).unwrap();
        std::io::Write::write_all(&mut enc, &input).unwrap();
        let compressed = enc.finish().unwrap();
        assert_eq!(decoded(&compressed, 2).unwrap(), input);
        assert_eq!(decoded(&[], 2).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn corruption_and_truncation_are_errors() {
        let input = data(2_000_000);
        let mut compressed = Vec::new();
        for chunk in input.chunks(500_000) {
            let mut c = zstd::bulk::Compressor::new(3).unwrap();
            c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
                .unwrap();
            compressed.extend(c.compress(chunk).unwrap());
        }
        let mut flipped = compressed.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x40;
        assert!(decoded(&flipped, 2).is_err());
        assert!(decoded(&compressed[..compressed.len() - 10], 2).is_err());
        assert!(decoded(b"this is not zstd at all", 2).is_err());
    }
}
