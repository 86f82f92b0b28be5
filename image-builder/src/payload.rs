//! Writes entries as the payload: a tar, zstd-compressed, hashed with
//! BLAKE3 as it goes to the file. The stack of writers, top to bottom:
//! tar → [`FrameWriter`] (zstd, one frame per 8 MiB of tar, compressed on
//! several threads) → hash and count → file.
//!
//! Independent frames that record their size let the recovery decode on
//! several cores; each frame is compressed on one thread, so the output is
//! the same whatever the number of threads.
//!
//! In format 2 the payload ends with the entry index, in a skippable frame
//! ([`formats::index`]): one record per entry, as the recovery will read
//! it back from the tar header.
//!
//! Headers are those of the shared entry model ([`formats::entry::to_tar`]):
//! ustar with every field set from the entry and nothing from the build
//! machine; long names and extended attributes go in PAX records (`path`,
//! `linkpath`, `SCHILY.xattr.*`), which GNU tar reads too.

use crate::error::{BuildError, IoContext};
use crate::progress::Progress;
use crate::tree::{Data, Entry};
use formats::store::AtomicFile;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;
use std::thread::{Scope, ScopedJoinHandle};

pub struct Compression {
    pub level: i32,
    /// Compression threads, at least 1 (the output is the same for any count).
    pub threads: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadSummary {
    pub size: u64,
    pub blake3: [u8; 32],
    /// Bytes of the entry index at the end (0 without one).
    pub index_size: u64,
}

/// Writes the payload of `entries` to `out`, atomically: a build that
/// fails leaves no payload behind, and one that succeeds a synced file.
/// With `index` (format 2), the entry index ends it.
pub fn write(
    entries: &[Entry],
    spool: Option<&File>,
    out: &Path,
    compression: &Compression,
    index: bool,
    progress: &Progress,
) -> Result<PayloadSummary, BuildError> {
    let index = if index {
        let records: Vec<_> = entries
            .iter()
            .map(|e| formats::entry::as_stored(&e.meta))
            .collect();
        formats::index::write_frame(&records, compression.level)
            .ctx(out, "cannot write the entry index")?
    } else {
        Vec::new()
    };
    let file = AtomicFile::create(out).ctx(out, "cannot create the payload")?;
    let hashed = HashWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: blake3::Hasher::new(),
        count: 0,
    };
    let hashed = std::thread::scope(|scope| -> Result<_, BuildError> {
        let frames = FrameWriter::start(scope, hashed, compression);
        let mut tar = tar::Builder::new(frames);
        for entry in entries {
            append(&mut tar, entry, spool, progress)?;
        }
        let frames = tar.into_inner().ctx(out, "cannot write the payload")?;
        let mut hashed = frames.finish().ctx(out, "cannot write the payload")?;
        hashed
            .write_all(&index)
            .ctx(out, "cannot write the payload")?;
        Ok(hashed)
    })?;
    let file = hashed
        .inner
        .into_inner()
        .map_err(|e| e.into_error())
        .ctx(out, "cannot write the payload")?;
    file.commit().ctx(out, "cannot sync the payload")?;
    Ok(PayloadSummary {
        size: hashed.count,
        blake3: *hashed.hasher.finalize().as_bytes(),
        index_size: index.len() as u64,
    })
}

/// Decoded size of one frame of the payload.
pub const FRAME_SIZE: usize = 8 << 20;

type Job = (u64, Vec<u8>);

/// Compresses what is written into zstd frames of [`FRAME_SIZE`] bytes,
/// on `threads` threads, and writes them to `W` in order.
struct FrameWriter<'scope, W: Write + Send> {
    buf: Vec<u8>,
    seq: u64,
    jobs: Option<SyncSender<Job>>,
    writer: ScopedJoinHandle<'scope, io::Result<W>>,
}

impl<'scope, W: Write + Send + 'scope> FrameWriter<'scope, W> {
    fn start<'env>(scope: &'scope Scope<'scope, 'env>, out: W, c: &Compression) -> Self {
        let threads = c.threads.max(1) as usize;
        let (jobs, job_rx) = sync_channel::<Job>(threads);
        let (done_tx, done_rx) = sync_channel::<(u64, io::Result<Vec<u8>>)>(threads);
        let job_rx = std::sync::Arc::new(Mutex::new(job_rx));
        for _ in 0..threads {
            let (job_rx, done_tx, level) = (job_rx.clone(), done_tx.clone(), c.level);
            scope.spawn(move || compress_frames(&job_rx, &done_tx, level));
        }
        drop(done_tx);
        let writer = scope.spawn(move || write_in_order(out, done_rx));
        FrameWriter {
            buf: Vec::with_capacity(FRAME_SIZE),
            seq: 0,
            jobs: Some(jobs),
            writer,
        }
    }

    fn send_frame(&mut self) -> io::Result<()> {
        let frame = std::mem::replace(&mut self.buf, Vec::with_capacity(FRAME_SIZE));
        let jobs = self.jobs.as_ref().expect("open until finish");
        jobs.send((self.seq, frame))
            .map_err(|_| io::Error::other("the compression threads stopped"))?;
        self.seq += 1;
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() {
            self.send_frame()?;
        }
        self.jobs = None;
        self.writer
            .join()
            .map_err(|_| io::Error::other("the payload writer panicked"))?
    }
}

impl<'scope, W: Write + Send + 'scope> Write for FrameWriter<'scope, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(FRAME_SIZE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == FRAME_SIZE {
            self.send_frame()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn compress_frames(
    jobs: &Mutex<Receiver<Job>>,
    done: &SyncSender<(u64, io::Result<Vec<u8>>)>,
    level: i32,
) {
    let setup = || -> io::Result<zstd::bulk::Compressor<'static>> {
        let mut c = zstd::bulk::Compressor::new(level)?;
        c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
        c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(true))?;
        Ok(c)
    };
    let mut compressor = setup();
    loop {
        let job = jobs.lock().map(|rx| rx.recv());
        let Ok(Ok((seq, data))) = job else { return };
        let result = match &mut compressor {
            Ok(c) => c.compress(&data),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        if done.send((seq, result)).is_err() {
            return;
        }
    }
}

/// Writes the compressed frames in their order, whatever order they
/// finish in; returns the writer once every frame is written.
fn write_in_order<W: Write>(
    mut out: W,
    done: Receiver<(u64, io::Result<Vec<u8>>)>,
) -> io::Result<W> {
    let mut waiting = BTreeMap::new();
    let mut next = 0;
    for (seq, frame) in done {
        waiting.insert(seq, frame?);
        while let Some(frame) = waiting.remove(&next) {
            out.write_all(&frame)?;
            next += 1;
        }
    }
    if waiting.is_empty() {
        Ok(out)
    } else {
        Err(io::Error::other("a compressed frame was lost"))
    }
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    entry: &Entry,
    spool: Option<&File>,
    progress: &Progress,
) -> Result<(), BuildError> {
    let write_err = |e| BuildError::Io {
        path: String::from_utf8_lossy(&entry.meta.path)
            .into_owned()
            .into(),
        what: "cannot add to the payload",
        err: e,
    };
    let Some(data) = &entry.data else {
        return formats::entry::append(tar, &entry.meta, io::empty()).map_err(write_err);
    };
    let reader: Box<dyn Read + '_> = match data {
        Data::Path(path) => Box::new(File::open(path).ctx(path, "cannot read")?),
        Data::Spool { offset } => {
            let mut spool = spool.expect("spooled entries come with their spool");
            spool
                .seek(SeekFrom::Start(*offset))
                .ctx(Path::new("spool"), "cannot seek")?;
            Box::new(spool)
        }
    };
    let exact = Exact {
        inner: reader,
        remaining: entry.meta.size,
    };
    formats::entry::append(tar, &entry.meta, progress.reader(exact)).map_err(write_err)
}

/// Yields exactly `remaining` bytes of `inner`, or fails: a file that shrank
/// while the image was built must not leave a corrupt tar.
struct Exact<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(self.remaining.try_into().unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file became shorter while the image was being built",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Hashes and counts what passes through to the file.
pub(crate) struct HashWriter<W> {
    pub(crate) inner: W,
    pub(crate) hasher: blake3::Hasher,
    pub(crate) count: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
