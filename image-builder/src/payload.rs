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
//! it back from the tar header. Before the payload is kept (and so before
//! anything is signed), it is read back from the file and checked as the
//! recovery will check it ([`check_written`]): the recovery checks only
//! the index before it erases, and trusts the tar to agree.
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
    let records: Option<Vec<_>> = index.then(|| {
        entries
            .iter()
            .map(|e| formats::entry::as_stored(&e.meta))
            .collect()
    });
    write_with_index(
        entries,
        spool,
        out,
        compression,
        records.as_deref(),
        progress,
    )
}

/// [`write`], with the records of the entry index given: the tests give
/// records that disagree with the entries, as a wrong builder would.
fn write_with_index(
    entries: &[Entry],
    spool: Option<&File>,
    out: &Path,
    compression: &Compression,
    records: Option<&[formats::entry::Entry]>,
    progress: &Progress,
) -> Result<PayloadSummary, BuildError> {
    let index = match records {
        Some(records) => formats::index::write_frame(records, compression.level)
            .ctx(out, "cannot write the entry index")?,
        None => Vec::new(),
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
    if records.is_some() {
        let body = hashed.count - index.len() as u64;
        check_written(file.file(), body, entries.len() as u64, out)?;
    }
    file.commit().ctx(out, "cannot sync the payload")?;
    Ok(PayloadSummary {
        size: hashed.count,
        blake3: *hashed.hasher.finalize().as_bytes(),
        index_size: index.len() as u64,
    })
}

/// Reads a format-2 payload back from `file` as the recovery reads it: the
/// entry index after the first `body` bytes, for `entries` entries
/// ([`formats::index::read_frame`]), then the tar before it, every frame
/// decoded ([`recovery::decode`]) and every header compared with its
/// record ([`formats::index::check_tar`], the recovery's comparison).
fn check_written(file: &File, body: u64, entries: u64, out: &Path) -> Result<(), BuildError> {
    let refuse = |reason: String| BuildError::SelfCheck {
        path: out.to_path_buf(),
        reason,
    };
    let mut reader = file;
    let mut frame = Vec::new();
    reader
        .seek(SeekFrom::Start(body))
        .and_then(|_| reader.read_to_end(&mut frame))
        .ctx(out, "cannot read the payload back")?;
    let index = formats::index::read_frame(&frame, entries).map_err(|e| refuse(e.to_string()))?;
    reader
        .seek(SeekFrom::Start(0))
        .ctx(out, "cannot read the payload back")?;
    let tar = reader.take(body);
    recovery::decode::decode(tar, recovery::decode::workers(), |decoded| {
        formats::index::check_tar(decoded, &index)
    })
    .map_err(|e| refuse(e.to_string()))?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use formats::entry::{as_stored, Entry as Meta, Kind};

    /// A root, a directory, a file with its data in `dir`, a symlink.
    fn entries(dir: &Path) -> Vec<Entry> {
        let data = dir.join("passwd");
        std::fs::write(&data, b"root\n").unwrap();
        let mut file = Meta::new("etc/passwd", Kind::File);
        file.size = 5;
        let meta = |m: Meta| Entry {
            meta: m,
            data: None,
        };
        vec![
            meta(Meta::new("", Kind::Directory)),
            meta(Meta::new("etc", Kind::Directory)),
            Entry {
                meta: file,
                data: Some(Data::Path(data)),
            },
            meta(Meta::new("etc/link", Kind::Symlink(b"passwd".to_vec()))),
        ]
    }

    fn build(dir: &Path, records: Option<&[Meta]>) -> Result<PayloadSummary, BuildError> {
        let compression = Compression {
            level: 1,
            threads: 2,
        };
        let out = dir.join("p.tar.zst");
        let entries = entries(dir);
        let progress = Progress::new(0, false);
        write_with_index(&entries, None, &out, &compression, records, &progress)
    }

    fn index_of(dir: &Path) -> Vec<Meta> {
        entries(dir).iter().map(|e| as_stored(&e.meta)).collect()
    }

    /// Only `passwd` (the data) is left in `dir`: no payload, no temp file.
    fn nothing_kept(dir: &Path) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["passwd"]);
    }

    #[test]
    fn a_payload_that_disagrees_with_its_index_is_refused_before_it_is_kept() {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path();
        let mut records = index_of(dir);
        records[2].mode = 0o4755;
        let err = build(dir, Some(&records)).unwrap_err();
        assert!(matches!(err, BuildError::SelfCheck { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(
                "entry etc/passwd: mode: the tar says 0644, the signed entry index says 4755"
            ),
            "{text}"
        );
        assert!(text.contains("nothing was signed"), "{text}");
        nothing_kept(dir);
        // A record the tar lacks; one record too few (the count is the
        // number of entries, as the manifest will say).
        let mut records = index_of(dir);
        records[3].kind = Kind::Symlink(b"group".to_vec());
        let text = build(dir, Some(&records)).unwrap_err().to_string();
        assert!(text.contains("entry etc/link: link target"), "{text}");
        let records = &index_of(dir)[..3];
        let text = build(dir, Some(records)).unwrap_err().to_string();
        assert!(
            text.contains("the entry index says it holds 3 records, the manifest says 4"),
            "{text}"
        );
        nothing_kept(dir);
    }

    #[test]
    fn a_payload_that_agrees_is_kept_and_reads_back() {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path();
        let summary = build(dir, Some(&index_of(dir))).unwrap();
        let payload = std::fs::read(dir.join("p.tar.zst")).unwrap();
        assert_eq!(payload.len() as u64, summary.size);
        let frame = &payload[payload.len() - summary.index_size as usize..];
        let index = formats::index::read_frame(frame, 4).unwrap();
        let body = &payload[..payload.len() - frame.len()];
        let tar = zstd::stream::decode_all(body).unwrap();
        assert_eq!(formats::index::check_tar(&tar[..], &index).unwrap(), 4);
        // Format 1: no index, nothing read back.
        let summary = build(dir, None).unwrap();
        assert_eq!(summary.index_size, 0);
    }
}
