//! One file, fetched into a directory on `storage`, resumably and checked.
//!
//! The bytes go to `NAME.part`; beside it `NAME.part.state` (a
//! [`Partial`] record) says what they are and how many are synced. A
//! dropped connection or a reboot continues with `Range: bytes=N-`; an
//! answer that cannot be continued (200 to a Range request, a changed
//! `ETag`) starts over from zero. At the end the size and BLAKE3 are
//! checked, and only then is the file renamed into place; a mismatch
//! deletes it, so the next attempt starts from zero.
//!
//! The caller's size and hash (from the signed manifest) always win over
//! what the server says: the server can only make a download fail.

use crate::http::{Client, HttpError, Response};
use crate::partial::{self, Partial};
use crate::retry::{self, Exhausted, Policy, Retryable};
use formats::keyvalue::is_name;
use formats::store;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Bytes between two syncs of the partial file and its record: what a
/// power cut can cost at most.
pub const CHECKPOINT: u64 = 4 << 20;

/// What to fetch and where to put it.
#[derive(Debug, Clone)]
pub struct Request {
    pub url: String,
    /// The directory on `storage` the file goes into.
    pub dir: PathBuf,
    /// The file's name there (a plain name: no `/`).
    pub name: String,
    /// The expected size, from the signed manifest, when known.
    pub size: Option<u64>,
    /// The expected BLAKE3, from the signed manifest, when known.
    pub blake3: Option<[u8; 32]>,
    /// The largest file accepted when `size` is not known.
    pub max_size: u64,
}

/// How far a download is, for the log and for a fleet server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: u64,
    pub total: Option<u64>,
}

/// A finished, verified download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub path: PathBuf,
    pub size: u64,
    pub blake3: [u8; 32],
    /// Attempts it took (1 when the first one succeeded).
    pub attempts: u32,
    /// Where the last attempt started (0, or the bytes kept from before).
    pub resumed_from: u64,
    /// Bytes the last attempt received.
    pub fetched: u64,
    /// Times the last attempt threw its bytes away and started from zero.
    pub restarts: u32,
}

#[derive(Debug, Error)]
pub enum DownloadError {
    #[error("download of {url}: {reason}")]
    BadRequest { url: String, reason: String },
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{url}: HTTP {status} {reason} (expected 200, or 206 to a Range request)")]
    Status {
        url: String,
        status: u16,
        reason: String,
    },
    #[error("{url}: {what}")]
    Protocol { url: String, what: String },
    #[error("{url}: the transfer stopped after byte {got} of {expected}: {cause}")]
    Cut {
        url: String,
        got: u64,
        expected: String,
        cause: String,
    },
    #[error("{path}: {what}: {source}")]
    Storage {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    #[error("{path}: {what}; deleted, the next attempt starts from zero")]
    Corrupt { path: PathBuf, what: String },
}

impl Retryable for DownloadError {
    fn retryable(&self) -> bool {
        match self {
            DownloadError::BadRequest { .. } | DownloadError::Storage { .. } => false,
            DownloadError::Http(e) => e.retryable(),
            // A missing file or a refusal stays so; a busy or broken
            // server may recover.
            DownloadError::Status { status, .. } => {
                !(400..500).contains(status) || matches!(status, 408 | 429)
            }
            DownloadError::Protocol { .. }
            | DownloadError::Cut { .. }
            | DownloadError::Corrupt { .. } => true,
        }
    }
}

/// Every attempt of a download failed.
pub type DownloadFailed = Exhausted<DownloadError>;

/// [`download`] with up to `policy.attempts` attempts and backoff.
pub fn with_retries(
    client: &Client,
    request: &Request,
    policy: &Policy,
    sleep: impl FnMut(Duration),
    progress: &mut dyn FnMut(Progress),
) -> Result<Downloaded, DownloadFailed> {
    retry::run(policy, sleep, |attempt| {
        if attempt > 1 {
            log::info!("{}: attempt {attempt} of {}", request.name, policy.attempts);
        }
        download(client, request, progress).map(|d| Downloaded {
            attempts: attempt,
            ..d
        })
    })
}

/// Throws a partial download away (its `.part` file and record), as when
/// the server cancelled the update; the finished file, if any, stays.
pub fn discard(request: &Request) -> Result<(), DownloadError> {
    let files = Files::of(request);
    store::remove_durably(&files.part).map_err(storage(&files.part, "deleting"))?;
    store::remove_durably(&files.state).map_err(storage(&files.state, "deleting"))?;
    Ok(())
}

/// Paths of one download.
struct Files {
    part: PathBuf,
    state: PathBuf,
    dest: PathBuf,
}

impl Files {
    fn of(request: &Request) -> Files {
        let at = |suffix: &str| request.dir.join(format!("{}{suffix}", request.name));
        Files {
            part: at(".part"),
            state: at(".part.state"),
            dest: at(""),
        }
    }
}

fn storage(path: &Path, what: &'static str) -> impl FnOnce(io::Error) -> DownloadError {
    let path = path.to_path_buf();
    move |source| DownloadError::Storage { path, what, source }
}

/// One attempt: resumes what is on disk, fetches the rest, verifies and
/// renames into place.
pub fn download(
    client: &Client,
    request: &Request,
    progress: &mut dyn FnMut(Progress),
) -> Result<Downloaded, DownloadError> {
    let url = &request.url;
    if !is_name(&request.name) {
        return Err(DownloadError::BadRequest {
            url: url.clone(),
            reason: format!("{:?} is not a plain file name", request.name),
        });
    }
    if !partial::is_keepable(url, partial::MAX_URL) {
        return Err(DownloadError::BadRequest {
            url: url.clone(),
            reason: format!(
                "a URL of at most {} visible ASCII characters",
                partial::MAX_URL
            ),
        });
    }
    let files = Files::of(request);
    fs::create_dir_all(&request.dir).map_err(storage(&request.dir, "creating the directory"))?;
    if let Some(done) = already_there(request, &files)? {
        return Ok(done);
    }
    let wanted = Partial {
        url: url.clone(),
        size: request.size,
        blake3: request.blake3,
        bytes: 0,
        etag: None,
        last_modified: None,
    };
    let (mut file, mut record) = resume_point(&files, wanted)?;
    let resumed_from = record.bytes;
    if resumed_from > 0 {
        log::info!(
            "{}: resuming at byte {resumed_from} from {url}",
            request.name
        );
    } else {
        log::info!("{}: downloading {url}", request.name);
    }
    let mut transfer = Transfer {
        client,
        request,
        files: &files,
        file: &mut file,
        record: &mut record,
        fetched: 0,
        restarts: 0,
        synced: resumed_from,
        progress,
    };
    transfer.fetch()?;
    let (fetched, restarts) = (transfer.fetched, transfer.restarts);
    let (size, blake3) = verify(request, &files)?;
    store::rename_durably(&files.part, &files.dest)
        .map_err(storage(&files.dest, "renaming the download into place"))?;
    store::remove_durably(&files.state).map_err(storage(&files.state, "removing"))?;
    log::info!(
        "{}: complete and verified, {size} bytes, blake3 {}",
        request.name,
        formats::manifest::hex(&blake3)
    );
    Ok(Downloaded {
        path: files.dest,
        size,
        blake3,
        attempts: 1,
        resumed_from,
        fetched,
        restarts,
    })
}

/// The finished file, if it is there already and matches the expected
/// size and hash (a second `download` of the same file fetches nothing).
fn already_there(request: &Request, files: &Files) -> Result<Option<Downloaded>, DownloadError> {
    let (Some(size), Some(expected)) = (request.size, request.blake3) else {
        return Ok(None);
    };
    match fs::metadata(&files.dest) {
        Ok(m) if m.len() == size => {}
        _ => return Ok(None),
    }
    if hash_file(&files.dest)? != expected {
        return Ok(None);
    }
    log::info!("{}: already downloaded and verified", request.name);
    Ok(Some(Downloaded {
        path: files.dest.clone(),
        size,
        blake3: expected,
        attempts: 1,
        resumed_from: size,
        fetched: 0,
        restarts: 0,
    }))
}

/// Opens `NAME.part` at the point to continue from: the bytes its record
/// says were synced, if the record is intact and describes this download;
/// otherwise empty, with a fresh record.
fn resume_point(files: &Files, wanted: Partial) -> Result<(File, Partial), DownloadError> {
    let mut bytes = Vec::new();
    let read = File::open(&files.state)
        .and_then(|f| f.take(partial::MAX_SIZE as u64 + 1).read_to_end(&mut bytes));
    let previous = match read {
        Ok(_) => match Partial::parse(&bytes) {
            Ok(p) => Some(p),
            Err(e) => {
                log::warn!("{}: {e}; starting over", files.state.display());
                None
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(storage(&files.state, "reading")(e)),
    };
    let on_disk = fs::metadata(&files.part).map(|m| m.len()).unwrap_or(0);
    let record = match previous {
        Some(p)
            if p.same_target(&wanted)
                && p.bytes <= on_disk
                && wanted.size.is_none_or(|size| p.bytes <= size) =>
        {
            p
        }
        Some(p) => {
            log::info!(
                "{}: the partial download is of something else or shorter than its record \
                 ({} of {on_disk} bytes from {}); starting over",
                files.part.display(),
                p.bytes,
                p.url
            );
            wanted
        }
        None => wanted,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&files.part)
        .map_err(storage(&files.part, "opening"))?;
    // Bytes past the record's count were never synced: they may be garbage.
    file.set_len(record.bytes)
        .map_err(storage(&files.part, "truncating"))?;
    file.seek(SeekFrom::End(0))
        .map_err(storage(&files.part, "seeking"))?;
    store::write_atomic(&files.state, record.render().as_bytes())
        .map_err(storage(&files.state, "writing"))?;
    Ok((file, record))
}

/// How an answer to a request for the bytes from `from` on can be used.
#[derive(Debug, PartialEq, Eq)]
enum Use {
    /// Its body continues the file.
    Continue,
    /// Its body is the whole file: throw away what is on disk and use it.
    FromZero(String),
    /// Useless: throw away what is on disk and ask again for everything.
    AskAgain(String),
}

/// Why an answer cannot be used at all.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// A status other than 200, 206 or (to a Range request) 416.
    Status,
    /// Headers that contradict the request or the manifest.
    Headers(String),
}

impl From<&str> for Refusal {
    fn from(what: &str) -> Refusal {
        Refusal::Headers(what.to_string())
    }
}

impl From<String> for Refusal {
    fn from(what: String) -> Refusal {
        Refusal::Headers(what)
    }
}

/// Judges an answer's status and headers against the request and the
/// record (a pure function: the rules of resuming, in one place).
fn judge(
    request: &Request,
    record: &Partial,
    status: u16,
    content_length: Option<u64>,
    content_range: Option<&str>,
    etag: Option<&str>,
    last_modified: Option<&str>,
) -> Result<Use, Refusal> {
    let from = record.bytes;
    let limit = request.size.unwrap_or(request.max_size);
    let whole_length = |len: Option<u64>| -> Result<(), String> {
        match (len, request.size) {
            (Some(len), Some(size)) if len != size => Err(format!(
                "Content-Length {len}, but the file is {size} bytes (from the manifest)"
            )),
            (Some(len), None) if len > request.max_size => Err(format!(
                "Content-Length {len}, more than the {} bytes allowed",
                request.max_size
            )),
            _ => Ok(()),
        }
    };
    match status {
        200 => {
            whole_length(content_length)?;
            if from == 0 {
                Ok(Use::Continue)
            } else {
                Ok(Use::FromZero(
                    "the server ignored the Range request (answered 200 with the whole file)"
                        .into(),
                ))
            }
        }
        206 if from > 0 => {
            let range = content_range.ok_or("206 without Content-Range")?;
            let (start, end, total) = parse_content_range(range).ok_or_else(|| {
                format!("Content-Range {range:?}: expected bytes START-END/TOTAL")
            })?;
            if let (Some(total), Some(size)) = (total, request.size) {
                if total != size {
                    return Err(format!(
                        "Content-Range {range:?}: the file is {size} bytes (from the manifest)"
                    )
                    .into());
                }
            }
            if start != from {
                return Err(
                    format!("Content-Range {range:?}: asked for bytes from {from} on").into(),
                );
            }
            if end >= limit || request.size.is_some_and(|size| end + 1 != size) {
                return Err(format!(
                    "Content-Range {range:?}: does not end at byte {}",
                    limit - 1
                )
                .into());
            }
            if content_length.is_some_and(|len| len != end + 1 - start) {
                return Err(format!(
                    "Content-Length {} does not match Content-Range {range:?}",
                    content_length.unwrap_or(0)
                )
                .into());
            }
            let changed = match (&record.etag, &record.last_modified) {
                (Some(old), _) if etag != Some(old.as_str()) => {
                    Some(format!("ETag was {old}, now {}", etag.unwrap_or("(none)")))
                }
                (None, Some(old)) if last_modified != Some(old.as_str()) => Some(format!(
                    "Last-Modified was {old}, now {}",
                    last_modified.unwrap_or("(none)")
                )),
                _ => None,
            };
            Ok(match changed {
                Some(why) => Use::AskAgain(format!("the file changed on the server: {why}")),
                None => Use::Continue,
            })
        }
        206 => Err("206 Partial Content to a request for the whole file".into()),
        416 if from > 0 => Ok(Use::AskAgain(
            "the server refused the range (416): the file may have changed".into(),
        )),
        _ => Err(Refusal::Status),
    }
}

/// `bytes START-END/TOTAL` (TOTAL may be `*`).
pub fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (start, end) = (number(start)?, number(end)?);
    let total = if total == "*" {
        None
    } else {
        Some(number(total)?)
    };
    (start <= end && total.is_none_or(|t| end < t)).then_some((start, end, total))
}

/// The state of one attempt's transfer.
struct Transfer<'a> {
    client: &'a Client,
    request: &'a Request,
    files: &'a Files,
    file: &'a mut File,
    record: &'a mut Partial,
    fetched: u64,
    restarts: u32,
    /// `record.bytes` at the last checkpoint.
    synced: u64,
    progress: &'a mut dyn FnMut(Progress),
}

impl Transfer<'_> {
    fn fetch(&mut self) -> Result<(), DownloadError> {
        let url = self.request.url.clone();
        let protocol = |what: String| DownloadError::Protocol {
            url: url.clone(),
            what,
        };
        // At most one request more: after a start over, from zero.
        for _ in 0..2 {
            if self.request.size == Some(self.record.bytes) {
                return Ok(());
            }
            let mut response = self.request_from(self.record.bytes)?;
            let judged = judge(
                self.request,
                self.record,
                response.status,
                response.content_length,
                response.content_range.as_deref(),
                response.etag.as_deref(),
                response.last_modified.as_deref(),
            );
            match judged {
                Err(Refusal::Status) => {
                    return Err(DownloadError::Status {
                        url: url.clone(),
                        status: response.status,
                        reason: reason_phrase(response.status).into(),
                    })
                }
                Err(Refusal::Headers(what)) => return Err(protocol(what)),
                Ok(Use::Continue) => {}
                Ok(Use::FromZero(why)) => self.start_over(&why)?,
                Ok(Use::AskAgain(why)) => {
                    self.start_over(&why)?;
                    continue;
                }
            }
            self.record.etag = response.etag.take();
            self.record.last_modified = response.last_modified.take();
            return self.copy(&mut response);
        }
        Err(protocol(
            "the file changed again while starting over".into(),
        ))
    }

    fn request_from(&self, from: u64) -> Result<Response, DownloadError> {
        Ok(self.client.get(&self.request.url, from)?)
    }

    fn start_over(&mut self, why: &str) -> Result<(), DownloadError> {
        log::warn!("{}: {why}; starting over from zero", self.request.name);
        self.restarts += 1;
        self.file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)).map(drop))
            .map_err(storage(&self.files.part, "truncating"))?;
        self.record.bytes = 0;
        self.record.etag = None;
        self.record.last_modified = None;
        self.synced = 0;
        self.checkpoint()
    }

    /// Syncs the bytes written so far, then records their count.
    fn checkpoint(&mut self) -> Result<(), DownloadError> {
        self.file
            .sync_data()
            .map_err(storage(&self.files.part, "syncing"))?;
        store::write_atomic(&self.files.state, self.record.render().as_bytes())
            .map_err(storage(&self.files.state, "writing"))?;
        self.synced = self.record.bytes;
        Ok(())
    }

    fn copy(&mut self, body: &mut impl Read) -> Result<(), DownloadError> {
        let limit = self.request.size.unwrap_or(self.request.max_size);
        let total = self.request.size;
        let mut buf = vec![0u8; 64 * 1024];
        let mut next_log = 0;
        loop {
            let room = limit - self.record.bytes;
            // One byte more than room: to notice a server that sends more.
            let want = (buf.len() as u64).min(room + 1) as usize;
            let n = match body.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Keep what arrived: the next attempt continues there.
                    self.checkpoint()?;
                    let cause = if e.kind() == io::ErrorKind::TimedOut {
                        format!("nothing arrived within the read timeout ({e})")
                    } else {
                        e.to_string()
                    };
                    return Err(self.cut(cause));
                }
            };
            if n as u64 > room {
                self.checkpoint()?;
                return Err(DownloadError::Protocol {
                    url: self.request.url.clone(),
                    what: format!("the server sent more than the expected {limit} bytes"),
                });
            }
            self.file
                .write_all(&buf[..n])
                .map_err(storage(&self.files.part, "writing"))?;
            self.record.bytes += n as u64;
            self.fetched += n as u64;
            if self.record.bytes - self.synced >= CHECKPOINT {
                self.checkpoint()?;
                (self.progress)(Progress {
                    done: self.record.bytes,
                    total,
                });
            }
            if self.record.bytes >= next_log {
                log_progress(&self.request.name, self.record.bytes, total);
                next_log = self.record.bytes + total.map_or(16 << 20, |t| (t / 10).max(1));
            }
        }
        self.checkpoint()?;
        (self.progress)(Progress {
            done: self.record.bytes,
            total,
        });
        if let Some(size) = self.request.size {
            if self.record.bytes < size {
                return Err(self.cut("the connection was closed".into()));
            }
        }
        Ok(())
    }

    fn cut(&self, cause: String) -> DownloadError {
        DownloadError::Cut {
            url: self.request.url.clone(),
            got: self.record.bytes,
            expected: self
                .request
                .size
                .map_or("an unknown size".into(), |s| s.to_string()),
            cause,
        }
    }
}

/// Checks the finished `NAME.part` against the expected size and hash;
/// deletes it (and its record) when it does not match.
fn verify(request: &Request, files: &Files) -> Result<(u64, [u8; 32]), DownloadError> {
    let size = fs::metadata(&files.part)
        .map_err(storage(&files.part, "reading"))?
        .len();
    let hash = hash_file(&files.part)?;
    let wrong = match (request.size, request.blake3) {
        (Some(expected), _) if size != expected => {
            Some(format!("{size} bytes, expected {expected}"))
        }
        (_, Some(expected)) if hash != expected => Some(format!(
            "BLAKE3 {}, expected {}",
            formats::manifest::hex(&hash),
            formats::manifest::hex(&expected)
        )),
        _ => None,
    };
    if let Some(what) = wrong {
        store::remove_durably(&files.part).map_err(storage(&files.part, "deleting"))?;
        store::remove_durably(&files.state).map_err(storage(&files.state, "deleting"))?;
        log::warn!("{}: corrupt download: {what}", request.name);
        return Err(DownloadError::Corrupt {
            path: files.part.clone(),
            what: format!("corrupt download: {what}"),
        });
    }
    Ok((size, hash))
}

fn hash_file(path: &Path) -> Result<[u8; 32], DownloadError> {
    let file = File::open(path).map_err(storage(path, "opening"))?;
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(file)
        .map_err(storage(path, "reading"))?;
    Ok(*hasher.finalize().as_bytes())
}

fn log_progress(name: &str, done: u64, total: Option<u64>) {
    match total {
        Some(t) if t > 0 => log::info!("{name}: {done} of {t} bytes ({}%)", done * 100 / t),
        _ => log::info!("{name}: {done} bytes"),
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(size: Option<u64>) -> Request {
        Request {
            url: "http://h/f".into(),
            dir: PathBuf::from("/nonexistent"),
            name: "f".into(),
            size,
            blake3: None,
            max_size: 1000,
        }
    }

    fn record(bytes: u64, etag: Option<&str>) -> Partial {
        Partial {
            url: "http://h/f".into(),
            size: Some(100),
            blake3: None,
            bytes,
            etag: etag.map(str::to_string),
            last_modified: None,
        }
    }

    #[test]
    fn content_ranges_are_parsed_strictly() {
        assert_eq!(
            parse_content_range("bytes 10-99/100"),
            Some((10, 99, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 10-99/*"), Some((10, 99, None)));
        for bad in [
            "bytes 10-9/100",
            "bytes 10-100/100",
            "10-99/100",
            "bytes -5/100",
            "bytes 1-2",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_resume_needs_a_matching_206() {
        let r = request(Some(100));
        let ok = judge(
            &r,
            &record(40, Some("\"a\"")),
            206,
            Some(60),
            Some("bytes 40-99/100"),
            Some("\"a\""),
            None,
        );
        assert_eq!(ok, Ok(Use::Continue));
        for (range, len) in [
            ("bytes 41-99/100", Some(59)),
            ("bytes 40-98/100", Some(59)),
            ("bytes 40-99/101", Some(60)),
            ("bytes 40-99/100", Some(61)),
        ] {
            let got = judge(&r, &record(40, None), 206, len, Some(range), None, None);
            assert!(got.is_err(), "{range} {len:?} accepted");
        }
        assert!(judge(&r, &record(40, None), 206, None, None, None, None).is_err());
    }

    #[test]
    fn a_200_or_a_changed_file_starts_over() {
        let r = request(Some(100));
        assert!(matches!(
            judge(&r, &record(40, None), 200, Some(100), None, None, None),
            Ok(Use::FromZero(_))
        ));
        let changed = judge(
            &r,
            &record(40, Some("\"a\"")),
            206,
            Some(60),
            Some("bytes 40-99/100"),
            Some("\"b\""),
            None,
        );
        assert!(
            matches!(changed, Ok(Use::AskAgain(ref why)) if why.contains("ETag")),
            "{changed:?}"
        );
        assert!(matches!(
            judge(&r, &record(40, None), 416, None, None, None, None),
            Ok(Use::AskAgain(_))
        ));
    }

    #[test]
    fn the_manifest_size_wins_over_the_server() {
        let r = request(Some(100));
        let wrong = judge(&r, &record(0, None), 200, Some(101), None, None, None);
        assert!(matches!(wrong, Err(Refusal::Headers(ref w)) if w.contains("from the manifest")));
        let unknown = request(None);
        assert!(judge(
            &unknown,
            &record(0, None),
            200,
            Some(1001),
            None,
            None,
            None
        )
        .is_err());
        assert_eq!(
            judge(&unknown, &record(0, None), 200, None, None, None, None),
            Ok(Use::Continue)
        );
        assert_eq!(
            judge(&r, &record(0, None), 500, None, None, None, None),
            Err(Refusal::Status)
        );
    }

    #[test]
    fn only_lasting_errors_stop_the_attempts() {
        let status = |status| DownloadError::Status {
            url: "u".into(),
            status,
            reason: String::new(),
        };
        assert!(status(500).retryable() && status(503).retryable() && status(429).retryable());
        assert!(!status(404).retryable() && !status(403).retryable());
    }
}
