//! A corrupt payload is refused promptly, whatever byte is wrong: one byte
//! flipped at a time at more than 50 offsets of a multi-frame payload (the
//! first frame, around every frame boundary, every zstd frame header and
//! checksum, the last frame), each run with a deadline. A decoder that
//! hangs fails the test with the offset named instead of hanging it.
//!
//! Every offset goes through `recovery::verify` in-process; a subset
//! through the `recovery apply` binary (refused, nothing written); and a
//! subset through `install` on an image verified before the flip (the
//! extraction's own data path, stage `extract`).

mod common;

use common::*;
use image_builder::image::Source;
use recovery::verify::VerifiedImage;
use recovery::Stage;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long one refusal may take (a clean one takes well under a second).
const PROMPTLY: Duration = Duration::from_secs(10);

/// 80 MB of files (10 frames: more than the decoder holds in flight, as
/// in the Debian image of the report) of pseudo-random bytes from a
/// 4-letter alphabet: three quarters compress away, so the payload stays
/// small and the zstd frames have real blocks to corrupt.
fn tree(root: &Path) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..20 {
        let dir = root.join(format!("d{}", i % 3));
        fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..4_000_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                b'a' + (state & 0x03) as u8
            })
            .collect();
        fs::write(dir.join(format!("f{i}")), data).unwrap();
    }
}

/// Where each zstd frame starts, and its length.
fn frames(payload: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < payload.len() {
        let n = zstd::zstd_safe::find_frame_compressed_size(&payload[at..]).unwrap();
        out.push((at, n));
        at += n;
    }
    out
}

/// The offsets to corrupt: more than 50, sorted, no duplicates. Every
/// frame's header, middle and checksum; more of the first two and the
/// last.
fn offsets(frames: &[(usize, usize)]) -> Vec<usize> {
    let mut out = vec![0, 100];
    for (i, &(start, len)) in frames.iter().enumerate() {
        let thorough = i < 2 || i == frames.len() - 1;
        // The frame header: magic, descriptor, window, content size.
        out.extend([start, start + 1, start + 4, start + 5]);
        // Inside; the checksum (the last 4 bytes); the end of the
        // previous frame.
        out.extend([start + len / 2, start + len - 1, start + len - 4]);
        if start > 0 {
            out.push(start - 6);
        }
        if thorough {
            out.extend([start + 2, start + 3, start + 9, start + 13]);
            out.extend([start + len / 4, start + 3 * len / 4]);
            out.extend([start + len - 2, start + len - 3, start + len - 5]);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Flips one byte of the file in place, and back when dropped.
struct Flip {
    file: fs::File,
    offset: u64,
    byte: u8,
}

impl Flip {
    fn new(path: &Path, offset: usize, original: u8) -> Flip {
        let mut file = fs::OpenOptions::new().write(true).open(path).unwrap();
        let flip = Flip {
            file: file.try_clone().unwrap(),
            offset: offset as u64,
            byte: original,
        };
        file.seek(SeekFrom::Start(offset as u64)).unwrap();
        file.write_all(&[original ^ 0x20]).unwrap();
        flip
    }
}

impl Drop for Flip {
    fn drop(&mut self) {
        self.file.seek(SeekFrom::Start(self.offset)).unwrap();
        self.file.write_all(&[self.byte]).unwrap();
    }
}

/// Runs `f` on a thread; fails the test naming `what` unless it returns
/// within [`PROMPTLY`]. (A hung thread is left behind: the test fails.)
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PROMPTLY)
        .unwrap_or_else(|_| panic!("{what}: no answer within {PROMPTLY:?}: the data path hangs"))
}

/// Runs the binary with a deadline, killing it when it overruns.
fn apply_within(what: &str, manifest: &Path, key: &Path, into: &Path) -> (i32, String) {
    let mut child = Command::new(recovery_bin())
        .arg("apply")
        .arg("--manifest")
        .arg(manifest)
        .arg("--trusted-key")
        .arg(key)
        .arg("--into")
        .arg(into)
        .arg("--quiet")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > PROMPTLY {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: recovery apply still running after {PROMPTLY:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    (status.code().unwrap_or(-1), stderr)
}

struct Case {
    _work: tempfile::TempDir,
    dir: PathBuf,
    image: VerifiedImage,
    key: PathBuf,
    payload: Vec<u8>,
}

fn setup() -> Case {
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = work.path().join("root");
    tree(&root);
    let (public, secret) = keypair(work.path(), "k");
    let built = build(
        Source::Rootfs(root),
        &secret,
        &work.path().join("out"),
        "1.0",
        false,
    );
    let keys = recovery::keys::load(std::slice::from_ref(&public)).unwrap();
    let image = recovery::verify::verify(&built.manifest_path, &keys).expect("the clean image");
    let payload = fs::read(&image.payload.path).unwrap();
    Case {
        dir: work.path().to_path_buf(),
        _work: work,
        image,
        key: public,
        payload,
    }
}

#[test]
fn a_byte_flipped_anywhere_in_the_payload_is_refused_promptly() {
    require_root("extract files with their owners");
    let start = Instant::now();
    let case = setup();
    let frames = frames(&case.payload);
    assert!(
        frames.len() >= 10,
        "the test image should have 10 or more frames, has {}",
        frames.len()
    );
    let offsets = offsets(&frames);
    assert!(offsets.len() >= 50, "only {} offsets", offsets.len());
    eprintln!(
        "{} frames, {} bytes; {} offsets; image built in {:.1} s",
        frames.len(),
        case.payload.len(),
        offsets.len(),
        start.elapsed().as_secs_f64()
    );
    let keys = recovery::keys::load(std::slice::from_ref(&case.key)).unwrap();
    let into = case.dir.join("into");
    let mut spent = [Duration::ZERO; 3];
    for (i, &offset) in offsets.iter().enumerate() {
        let what = format!("byte {offset} flipped");
        let _flip = Flip::new(&case.image.payload.path, offset, case.payload[offset]);

        // Verification, in-process: the hash objects (a format-2 payload
        // is not decoded before the erase; its index is read once the hash
        // matches).
        let t = Instant::now();
        let (manifest, keys2) = (case.image.manifest_path.clone(), keys.clone());
        let err = within(&what, move || recovery::verify::verify(&manifest, &keys2))
            .map(|_| ())
            .expect_err(&what);
        assert_eq!(err.stage, Stage::Payload, "{what}: {err}");
        assert!(err.reason.contains("BLAKE3"), "{what}: {err}");

        spent[0] += t.elapsed();
        let t = Instant::now();
        // The binary, for every fourth offset: refused, nothing written.
        if i % 4 == 1 {
            fs::create_dir(&into).unwrap();
            let (code, stderr) = apply_within(&what, &case.image.manifest_path, &case.key, &into);
            assert_eq!(code, Stage::Payload.exit_code(), "{what}: {stderr}");
            assert!(stderr.contains("payload: "), "{what}: {stderr}");
            assert_eq!(
                fs::read_dir(&into).unwrap().count(),
                0,
                "{what}: written into the target"
            );
            fs::remove_dir(&into).unwrap();
        }

        spent[1] += t.elapsed();
        let t = Instant::now();
        // The extraction's own path (storage that changed after the
        // verification), for every fourth offset: an error of stage
        // extract, promptly.
        if i % 4 == 0 {
            fs::create_dir(&into).unwrap();
            let (image, dir) = (case.image.clone(), into.clone());
            let err = within(&what, move || recovery::install::install(&image, &dir))
                .map(|_| ())
                .expect_err(&what);
            assert_eq!(err.stage, Stage::Extract, "{what}: {err}");
            assert!(err.reason.contains("different data"), "{what}: {err}");
            fs::remove_dir_all(&into).unwrap();
        }
        spent[2] += t.elapsed();
    }
    eprintln!(
        "verify {:?}, apply {:?}, install {:?}",
        spent[0], spent[1], spent[2]
    );
    eprintln!("sweep done in {:.1} s", start.elapsed().as_secs_f64());
}

#[test]
fn a_decoding_error_names_the_frame_and_its_offset() {
    let case = setup();
    let frames = frames(&case.payload);
    let (start, len) = frames[2];
    // The checksum of the third frame: only the decoder can see it.
    let offset = start + len - 2;
    let _flip = Flip::new(&case.image.payload.path, offset, case.payload[offset]);
    // The extraction decodes (the verification of a format-2 image does
    // not): its hash mismatch says where decoding stopped.
    let into = case.dir.join("into");
    fs::create_dir(&into).unwrap();
    let image = case.image.clone();
    let err = within("checksum", move || {
        recovery::install::install(&image, &into)
    })
    .map(|_| ())
    .expect_err("a corrupt checksum");
    let expected = format!("zstd frame 2 (at byte {start} of the compressed payload)");
    assert!(err.reason.contains(&expected), "{err}");
}
