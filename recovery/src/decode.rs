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
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

/// Largest decoded frame that is decoded in one piece; larger or unsized
/// frames switch the payload to streaming.
pub const MAX_FRAME: u64 = 16 << 20;
/// Blocks handed on in streaming mode.
const STREAM_BLOCK: usize = 1 << 20;

type Block = (u64, io::Result<Vec<u8>>);

/// One frame for a worker: its number, where it starts in the compressed
/// payload, its bytes and the size it says it decodes to.
struct Job {
    seq: u64,
    offset: u64,
    frame: Vec<u8>,
    size: usize,
}

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
///
/// No thread can wait forever on another: every channel is owned by the
/// threads that use it, so it closes when they return, and the reader of
/// the decoded stream raises a stop flag when it is dropped (after an
/// error, or when it stops reading early). The splitter and the workers
/// check the flag before each step and return; a thread blocked in a send
/// is released when its receivers are gone. An error in any thread reaches
/// `consume` as the error of the frame it belongs to, naming the frame and
/// where it starts in the compressed payload.
pub fn decode<R: Read + Send, T>(
    compressed: R,
    workers: usize,
    consume: impl FnOnce(&mut Decoded<'_>) -> T,
) -> T {
    let workers = workers.max(1);
    let (job_tx, job_rx) = sync_channel::<Job>(workers);
    let (out_tx, out_rx) = sync_channel::<Block>(workers * 2);
    // The workers share the job queue; the last one to return closes it,
    // which releases the splitter from a send on a full queue.
    let job_rx = Arc::new(Mutex::new(job_rx));
    let stop = AtomicBool::new(false);
    let (frames, blocks) = (Pool::new(workers * 2), Pool::new(workers * 3));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (jobs, out) = (Arc::clone(&job_rx), out_tx.clone());
            let (frames, blocks, stop) = (&frames, &blocks, &stop);
            scope.spawn(move || decode_frames(&jobs, out, frames, blocks, stop));
        }
        drop(job_rx);
        let (out, pool, stop) = (out_tx, &frames, &stop);
        scope.spawn(move || split(compressed, job_tx, out, pool, stop));
        let mut decoded = Decoded {
            pool: &blocks,
            blocks: out_rx,
            waiting: BTreeMap::new(),
            next: 0,
            block: Vec::new(),
            pos: 0,
            stop,
            failed: None,
        };
        consume(&mut decoded)
        // Dropping `decoded` raises the stop flag and closes the channel
        // of decoded blocks: every thread returns, and the scope joins.
    })
}

/// An error in frame `seq`, which starts at byte `offset` of the payload.
fn in_frame(seq: u64, offset: u64, e: impl std::fmt::Display, kind: io::ErrorKind) -> io::Error {
    io::Error::new(
        kind,
        format!("zstd frame {seq} (at byte {offset} of the compressed payload): {e}"),
    )
}

fn decode_frames(
    jobs: &Mutex<Receiver<Job>>,
    out: SyncSender<Block>,
    frames: &Pool,
    blocks: &Pool,
    stop: &AtomicBool,
) {
    let Ok(mut dctx) = zstd::bulk::Decompressor::new() else {
        return;
    };
    while !stop.load(Relaxed) {
        // Held while waiting: the sender closes the queue when it returns,
        // so the wait ends.
        let job = jobs.lock().map(|rx| rx.recv());
        let Ok(Ok(Job {
            seq,
            offset,
            frame,
            size,
        })) = job
        else {
            return;
        };
        if stop.load(Relaxed) {
            return;
        }
        let mut data = blocks.get(size);
        let result = dctx.decompress_to_buffer(&frame[..], &mut data);
        frames.put(frame);
        let result = match result {
            Ok(n) if n == size => Ok(data),
            Ok(n) => Err(in_frame(
                seq,
                offset,
                format!("its header says it holds {size} bytes, it held {n}"),
                io::ErrorKind::InvalidData,
            )),
            Err(e) => Err(in_frame(seq, offset, &e, e.kind())),
        };
        if out.send((seq, result)).is_err() {
            return;
        }
    }
}

/// Reads the compressed stream and cuts it into frames for the workers,
/// or decodes it as a stream when its frames are not of that kind.
fn split<R: Read>(
    mut input: R,
    jobs: SyncSender<Job>,
    out: SyncSender<Block>,
    pool: &Pool,
    stop: &AtomicBool,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(2 * STREAM_BLOCK);
    let mut seq = 0u64;
    // Where `buf` starts in the compressed payload.
    let mut offset = 0u64;
    let mut eof = false;
    let fail = |seq: u64, offset: u64, e: io::Error| {
        let _ = out.send((seq, Err(in_frame(seq, offset, &e, e.kind()))));
    };
    let invalid = io::ErrorKind::InvalidData;
    loop {
        if stop.load(Relaxed) {
            return;
        }
        if buf.is_empty() {
            match fill(&mut input, &mut buf, STREAM_BLOCK) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => return fail(seq, offset, e),
            }
        }
        // The frame header (at most 18 bytes) says what the frame holds.
        while buf.len() < 18 && !eof {
            match fill(&mut input, &mut buf, STREAM_BLOCK) {
                Ok(0) => eof = true,
                Ok(_) => {}
                Err(e) => return fail(seq, offset, e),
            }
        }
        let size = match zstd::zstd_safe::get_frame_content_size(&buf) {
            Ok(Some(size)) if size <= MAX_FRAME => size as usize,
            // Unsized, large or not a plain frame: the rest is a stream.
            _ => return stream(buf.chain(input), seq, offset, &out, stop),
        };
        let whole = loop {
            if let Ok(n) = zstd::zstd_safe::find_frame_compressed_size(&buf) {
                break n;
            }
            if buf.len() as u64 > zstd::zstd_safe::compress_bound(MAX_FRAME as usize) as u64 + 1024
            {
                let e = io::Error::new(invalid, "it does not end where its header says");
                return fail(seq, offset, e);
            }
            if stop.load(Relaxed) {
                return;
            }
            match fill(&mut input, &mut buf, STREAM_BLOCK) {
                Ok(0) => {
                    let e = io::Error::new(invalid, "the payload ends inside it");
                    return fail(seq, offset, e);
                }
                Ok(_) => {}
                Err(e) => return fail(seq, offset, e),
            }
        };
        let mut frame = pool.get(whole);
        frame.extend_from_slice(&buf[..whole]);
        buf.drain(..whole);
        let job = Job {
            seq,
            offset,
            frame,
            size,
        };
        if jobs.send(job).is_err() {
            return;
        }
        seq += 1;
        offset += whole as u64;
    }
}

/// Decodes the rest of the payload, from frame `seq` at byte `offset`, as
/// one stream on this thread.
fn stream<R: Read>(
    input: R,
    mut seq: u64,
    offset: u64,
    out: &SyncSender<Block>,
    stop: &AtomicBool,
) {
    let first = seq;
    let fail = |decoded: u64, e: io::Error| {
        let what =
            format!("{e} (the payload is decoded as a stream from here; {decoded} bytes decoded)");
        in_frame(first, offset, what, e.kind())
    };
    let mut decoder = match zstd::Decoder::new(input) {
        Ok(d) => d,
        Err(e) => {
            let _ = out.send((seq, Err(fail(0, e))));
            return;
        }
    };
    let mut decoded = 0u64;
    while !stop.load(Relaxed) {
        let mut block = Vec::with_capacity(STREAM_BLOCK);
        let result = match fill(&mut decoder, &mut block, STREAM_BLOCK) {
            Ok(_) => Ok(block),
            Err(e) => Err(fail(decoded, e)),
        };
        let last = match &result {
            Ok(block) if block.is_empty() => return,
            Ok(block) => {
                decoded += block.len() as u64;
                false
            }
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

/// The decoded stream, in order.
pub struct Decoded<'p> {
    pool: &'p Pool,
    blocks: Receiver<Block>,
    waiting: BTreeMap<u64, io::Result<Vec<u8>>>,
    next: u64,
    block: Vec<u8>,
    pos: usize,
    stop: &'p AtomicBool,
    /// The first error, given again to every later read.
    failed: Option<(io::ErrorKind, String)>,
}

impl Drop for Decoded<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

impl Read for Decoded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((kind, message)) = &self.failed {
            return Err(io::Error::new(*kind, message.clone()));
        }
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
                    Err(_) => {
                        break Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("zstd frame {} was lost while decoding", self.next),
                        ))
                    }
                }
            };
            let block = match result {
                Ok(block) => block,
                Err(e) => {
                    // Nothing after an error is of use: stop every thread now.
                    self.stop.store(true, Relaxed);
                    self.failed = Some((e.kind(), e.to_string()));
                    return Err(e);
                }
            };
            let used = std::mem::replace(&mut self.block, block);
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

    /// Runs `decoded` on a thread and fails unless it ends within 10 s.
    fn decoded_promptly(compressed: Vec<u8>, workers: usize) -> io::Result<Vec<u8>> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(decoded(&compressed, workers));
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the decoder hung: no answer within 10 s")
    }

    fn framed(input: &[u8], frame: usize) -> Vec<u8> {
        let mut compressed = Vec::new();
        for chunk in input.chunks(frame) {
            let mut c = zstd::bulk::Compressor::new(1).unwrap();
            c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
                .unwrap();
            compressed.extend(c.compress(chunk).unwrap());
        }
        compressed
    }

    #[test]
    fn an_error_in_an_early_frame_ends_every_thread() {
        let input = data(8_000_000);
        let compressed = framed(&input, 100_000);
        for workers in [1, 2, 4] {
            let mut flipped = compressed.clone();
            flipped[200] ^= 0x01;
            let err = decoded_promptly(flipped, workers).unwrap_err();
            assert!(err.to_string().contains("frame 0"), "{err}");
        }
    }

    #[test]
    fn a_consumer_that_stops_early_ends_every_thread() {
        let compressed = framed(&data(8_000_000), 100_000);
        for workers in [1, 2, 4] {
            assert_eq!(first_ten_promptly(compressed.clone(), workers), data(10));
        }
    }

    /// Reads only the first 10 decoded bytes, then stops; fails unless
    /// every thread has returned within 10 s.
    fn first_ten_promptly(compressed: Vec<u8>, workers: usize) -> Vec<u8> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let first = decode(&compressed[..], workers, |d| {
                let mut first = vec![0u8; 10];
                d.read_exact(&mut first).map(|_| first)
            });
            let _ = tx.send(first);
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the decoder hung after its reader stopped")
            .unwrap()
    }

    #[test]
    fn errors_name_the_frame_and_its_offset() {
        let input = data(1_000_000);
        let compressed = framed(&input, 100_000);
        let second = zstd::zstd_safe::find_frame_compressed_size(&compressed).unwrap();
        let third =
            second + zstd::zstd_safe::find_frame_compressed_size(&compressed[second..]).unwrap();
        let mut flipped = compressed.clone();
        // The last byte of the second frame: its checksum.
        flipped[third - 1] ^= 0x80;
        let err = decoded_promptly(flipped, 2).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "zstd frame 1 (at byte {second} of the compressed payload)"
            )),
            "{err}"
        );
    }

    #[test]
    fn a_stream_ends_every_thread_on_an_error_or_an_early_stop() {
        // One large frame without a size: decoded as a stream.
        let input = data(12_000_000);
        let mut enc = zstd::Encoder::new(Vec::new(), 1).unwrap();
        enc.include_checksum(true).unwrap();
        std::io::Write::write_all(&mut enc, &input).unwrap();
        let compressed = enc.finish().unwrap();
        let mut flipped = compressed.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x01;
        let err = decoded_promptly(flipped, 2).unwrap_err().to_string();
        assert!(err.contains("zstd frame 0 (at byte 0"), "{err}");
        assert!(err.contains("decoded as a stream"), "{err}");
        assert_eq!(first_ten_promptly(compressed, 2), data(10));
    }

    #[test]
    fn an_error_is_given_again_to_a_later_read() {
        let mut flipped = framed(&data(1_000_000), 100_000);
        flipped[300] ^= 0x01;
        decode(&flipped[..], 2, |d| {
            let mut out = Vec::new();
            let first = d.read_to_end(&mut out).unwrap_err().to_string();
            let again = d.read(&mut [0u8; 10]).unwrap_err().to_string();
            assert_eq!(first, again, "a later read must not look like the end");
        });
    }

    /// A format-2 payload ends with a skippable frame (the entry index).
    /// The recovery decodes only the frames before it, but a decoder
    /// given all of it passes over it too, in both modes.
    #[test]
    fn a_trailing_skippable_frame_is_passed_over() {
        let input = data(1_000_000);
        let skippable = formats::index::write_frame(&[], 1).unwrap();
        let mut framed_payload = framed(&input, 100_000);
        framed_payload.extend(&skippable);
        assert_eq!(decoded(&framed_payload, 2).unwrap(), input);
        let mut stream = zstd::encode_all(&input[..], 1).unwrap();
        stream.extend(&skippable);
        assert_eq!(decoded(&stream, 2).unwrap(), input);
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
