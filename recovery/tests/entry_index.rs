//! The signed entry index of format 2: checked before the erase instead
//! of a decode, compared with every tar header while extracting; format 1
//! still read the old way.

mod common;

use common::*;
use formats::entry::{self, Entry, Kind};
use formats::manifest::Manifest;
use formats::signature::TrustedKey;
use image_builder::image::Source;
use recovery::Stage;
use std::fs;
use std::path::{Path, PathBuf};

/// A signed format-2 image whose tar holds `tar` and whose index holds
/// `index` (each as `from_tar` reads it), as a wrong builder could write it.
fn crafted(dir: &Path, secret: &Path, tar: &[Entry], index: &[Entry]) -> PathBuf {
    crafted_with(dir, secret, tar, index, |_| {})
}

/// [`crafted`], with `mangle` applied to the compressed tar (one zstd
/// frame with a checksum) before it is hashed and signed.
fn crafted_with(
    dir: &Path,
    secret: &Path,
    tar: &[Entry],
    index: &[Entry],
    mangle: impl Fn(&mut Vec<u8>),
) -> PathBuf {
    let mut b = tar::Builder::new(Vec::new());
    for e in tar {
        let data = vec![b'x'; e.size as usize];
        // `append` writes the name it is given as the path: the records'
        // paths are as stored already.
        let mut stored = e.clone();
        if e.kind == Kind::Directory {
            stored.path = e.path.strip_suffix(b"/").unwrap_or(&e.path).to_vec();
            if stored.path == b"." {
                stored.path.clear();
            }
        }
        entry::append(&mut b, &stored, &data[..]).unwrap();
    }
    let mut c = zstd::bulk::Compressor::new(3).unwrap();
    c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
        .unwrap();
    let mut payload = c.compress(&b.into_inner().unwrap()).unwrap();
    mangle(&mut payload);
    let frame = formats::index::write_frame(index, 3).unwrap();
    payload.extend_from_slice(&frame);
    let manifest = Manifest {
        format: 2,
        product: "testprod".into(),
        version: "1".into(),
        payload: "testprod-1.tar.zst".into(),
        payload_size: payload.len() as u64,
        payload_blake3: *blake3::hash(&payload).as_bytes(),
        unpacked_size: index
            .iter()
            .filter(|e| e.kind == Kind::File)
            .map(|e| e.size)
            .sum(),
        entries: index.len() as u64,
        created: 0,
        index_size: frame.len() as u64,
    };
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(&manifest.payload), &payload).unwrap();
    let path = dir.join("testprod-1.manifest");
    fs::write(&path, manifest.render()).unwrap();
    let sk = image_builder::keygen::load_secret_key(secret).unwrap();
    let sig = minisign::sign(None, &sk, manifest.render().as_bytes(), None, None).unwrap();
    fs::write(recovery::source::signature_path(&path), sig.to_string()).unwrap();
    path
}

/// A work directory, a key pair in it, and the public key as trusted.
fn signer() -> (tempfile::TempDir, PathBuf, PathBuf, Vec<TrustedKey>) {
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (public, secret) = keypair(work.path(), "k");
    let keys = recovery::keys::load(std::slice::from_ref(&public)).unwrap();
    (work, public, secret, keys)
}

/// A small tree as the tar reader reads it: root, a directory, a file
/// with an attribute, a symlink, a device.
fn entries() -> Vec<Entry> {
    let mut file = Entry::new("etc/passwd", Kind::File);
    file.size = 5;
    file.mode = 0o640;
    file.uid = 1000;
    file.gid = 42;
    file.mtime = 1_600_000_000;
    file.xattrs = vec![("user.note".into(), b"v".to_vec())];
    vec![
        Entry::new("./", Kind::Directory),
        Entry::new("etc/", Kind::Directory),
        file,
        Entry::new("etc/link", Kind::Symlink(b"passwd".to_vec())),
        Entry::new("etc/null", Kind::CharDevice { major: 1, minor: 3 }),
    ]
}

#[test]
fn a_tar_that_disagrees_with_its_index_fails_the_extraction_naming_the_field() {
    require_root("extract files with their owners and device nodes");
    let (work, _, secret, keys) = signer();
    type Change = Box<dyn Fn(&mut Vec<Entry>)>;
    let cases: Vec<(&str, &str, Change)> = vec![
        ("path", "entry etc/passwd: path: the tar says etc/passwd, the signed entry index says etc/shadow",
            Box::new(|t| t[2].path = b"etc/shadow".to_vec())),
        ("type", "entry etc/null: type: the tar says '3', the signed entry index says '6'",
            Box::new(|t| t[4].kind = Kind::Fifo)),
        ("link target", "entry etc/link: link target: the tar says passwd, the signed entry index says group",
            Box::new(|t| t[3].kind = Kind::Symlink(b"group".to_vec()))),
        ("device", "entry etc/null: device number: the tar says 1:3, the signed entry index says 1:5",
            Box::new(|t| t[4].kind = Kind::CharDevice { major: 1, minor: 5 })),
        ("mode", "entry etc/passwd: mode: the tar says 0640, the signed entry index says 4755",
            Box::new(|t| t[2].mode = 0o4755)),
        ("uid", "uid: the tar says 1000, the signed entry index says 0", Box::new(|t| t[2].uid = 0)),
        ("gid", "gid: the tar says 42, the signed entry index says 0", Box::new(|t| t[2].gid = 0)),
        ("mtime", "mtime: the tar says 1600000000, the signed entry index says 7",
            Box::new(|t| t[2].mtime = 7)),
        ("size", "size: the tar says 5, the signed entry index says 4", Box::new(|t| t[2].size = 4)),
        ("xattrs", "extended attributes: the tar says [user.note=76], the signed entry index says [user.note=77]",
            Box::new(|t| t[2].xattrs[0].1 = b"w".to_vec())),
        ("missing", "entry etc/extra: in the signed entry index but missing from the payload",
            Box::new(|t| t.push(Entry::new("etc/extra", Kind::Fifo)))),
        ("extra", "entry etc/null: in the payload but not in the signed entry index (4 records)",
            Box::new(|t| {
                t.pop();
            })),
    ];
    for (i, (field, says, change)) in cases.into_iter().enumerate() {
        let tar = entries();
        let mut index = tar.clone();
        change(&mut index);
        let manifest = crafted(&work.path().join(format!("img-{i}")), &secret, &tar, &index);
        // Before the erase the index is all that is checked: it passes.
        let image = recovery::verify::verify(&manifest, &keys)
            .unwrap_or_else(|e| panic!("{field}: the index alone is a good one: {e}"));
        assert!(image.index.is_some());
        let into = work.path().join(format!("into-{i}"));
        fs::create_dir(&into).unwrap();
        let err = recovery::install::install(&image, &into).unwrap_err();
        assert_eq!(err.stage, Stage::Extract, "{field}: {err}");
        let text = err.to_string();
        assert!(text.contains(says), "{field}: {text}");
        assert!(
            text.contains("its signed index does not describe"),
            "{field}: {text}"
        );
    }
    // The same tar and index agree: it installs.
    let manifest = crafted(&work.path().join("good"), &secret, &entries(), &entries());
    let image = recovery::verify::verify(&manifest, &keys).unwrap();
    let into = work.path().join("into-good");
    fs::create_dir(&into).unwrap();
    let written = recovery::install::install(&image, &into).unwrap();
    assert_eq!(written.entries, 5);
    assert_eq!(fs::read(into.join("etc/passwd")).unwrap(), b"xxxxx");
}

/// `recovery verify --manifest M --trusted-key K`: its exit code and
/// standard error.
fn verify_cli(manifest: &Path, key: &Path) -> (Option<i32>, String) {
    let out = recovery(&[&"verify", &"--manifest", &manifest, &"--trusted-key", &key]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr)
}

/// `recovery verify` (what a vendor's pipeline runs) decodes a format-2
/// payload and compares it with its index: a tar that disagrees, which
/// the recovery would find only after the erase, is refused there.
#[test]
fn recovery_verify_refuses_a_tar_that_disagrees_with_its_index() {
    let (work, public, secret, keys) = signer();
    let mut index = entries();
    index[2].uid = 0;
    let manifest = crafted(&work.path().join("img"), &secret, &entries(), &index);
    let (code, stderr) = verify_cli(&manifest, &public);
    assert_eq!(code, Some(Stage::Contents.exit_code()), "{stderr}");
    assert!(
        stderr.contains(
            "entry etc/passwd: uid: the tar says 1000, the signed entry index says 0 \
             (the image's builder wrote a tar that its signed index does not describe)"
        ),
        "{stderr}"
    );
    // The check of the index alone, as on a device, lets it pass.
    recovery::verify::verify(&manifest, &keys).unwrap();
    let err = recovery::verify::verify_full(&manifest, &keys).unwrap_err();
    assert_eq!(err.stage, Stage::Contents, "{err}");
    // The same in JSON, and from `image-builder info`.
    let out = recovery(&[
        &"verify",
        &"--manifest",
        &manifest,
        &"--trusted-key",
        &public,
        &"--json",
    ]);
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(json.contains("\"stage\":\"contents\""), "{json}");
    let report = image_builder::info::inspect(&manifest, std::slice::from_ref(&public));
    assert_eq!(report.exit_code(), Stage::Contents.exit_code());
    // An entry the tar lacks.
    let mut index = entries();
    index.push(Entry::new("etc/extra", Kind::Fifo));
    let manifest = crafted(&work.path().join("img2"), &secret, &entries(), &index);
    let err = recovery::verify::verify_full(&manifest, &keys).unwrap_err();
    assert!(
        err.reason
            .contains("entry etc/extra: in the signed entry index but missing from the payload"),
        "{err}"
    );
    // They agree: verified, decoded, and compared.
    let manifest = crafted(&work.path().join("good"), &secret, &entries(), &entries());
    let (code, stderr) = verify_cli(&manifest, &public);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("all 5 tar headers match the signed entry index"),
        "{stderr}"
    );
}

/// A signed payload whose frame does not decode (its checksum is wrong,
/// and the manifest pins those bytes): `recovery verify` decodes it and
/// refuses it.
#[test]
fn recovery_verify_refuses_a_signed_frame_that_does_not_decode() {
    let (work, _, secret, keys) = signer();
    let flip_checksum = |p: &mut Vec<u8>| {
        let last = p.len() - 1;
        p[last] ^= 0x01;
    };
    let dir = work.path().join("img");
    let manifest = crafted_with(&dir, &secret, &entries(), &entries(), flip_checksum);
    recovery::verify::verify(&manifest, &keys).unwrap();
    let err = recovery::verify::verify_full(&manifest, &keys).unwrap_err();
    assert_eq!(err.stage, Stage::Contents, "{err}");
    assert!(err.reason.contains("cannot decode the payload"), "{err}");
}

#[test]
fn a_corrupted_index_is_a_hash_mismatch_before_the_erase() {
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (built, (public, _), into) = small_image(work.path());
    assert_eq!(built.manifest.format, 2);
    assert!(built.manifest.index_size > 8);
    let mut payload = fs::read(&built.payload_path).unwrap();
    // A byte of the index's records (past its 8-byte frame header).
    let at = payload.len() - built.manifest.index_size as usize + 12;
    payload[at] ^= 0x01;
    fs::write(&built.payload_path, &payload).unwrap();
    let keys = recovery::keys::load(std::slice::from_ref(&public)).unwrap();
    let err = recovery::verify::verify(&built.manifest_path, &keys).unwrap_err();
    assert_eq!(err.stage, Stage::Payload, "{err}");
    assert!(err.reason.contains("BLAKE3"), "{err}");
    let out = recovery(&[
        &"apply",
        &"--manifest",
        &built.manifest_path,
        &"--trusted-key",
        &public,
        &"--into",
        &into,
    ]);
    assert_eq!(out.status.code(), Some(Stage::Payload.exit_code()));
    assert_untouched(&into);
}

#[test]
fn a_signed_index_that_breaks_the_rules_is_refused_before_the_erase() {
    let (work, _, secret, keys) = signer();
    let mut index = entries();
    index[2].path = b"../etc/passwd".to_vec();
    let manifest = crafted(&work.path().join("img"), &secret, &entries(), &index);
    let err = recovery::verify::verify(&manifest, &keys).unwrap_err();
    assert_eq!(err.stage, Stage::Contents, "{err}");
    assert!(err.reason.contains("contains a `..` component"), "{err}");
}

#[test]
fn a_format_1_image_still_installs() {
    require_root("extract files with their owners");
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = work.path().join("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/version"), "1.0\n").unwrap();
    let (public, secret) = keypair(work.path(), "k");
    let out = work.path().join("out");
    let built = build_format(Source::Rootfs(root), &secret, &out, "1.0", false, 1);
    let text = fs::read_to_string(&built.manifest_path).unwrap();
    assert!(
        text.starts_with("format=1\n") && !text.contains("index-size"),
        "{text}"
    );
    let keys = recovery::keys::load(std::slice::from_ref(&public)).unwrap();
    let image = recovery::verify::verify(&built.manifest_path, &keys).unwrap();
    assert!(image.index.is_none(), "format 1 has no index");
    let into = work.path().join("into");
    fs::create_dir(&into).unwrap();
    apply_ok(&built.manifest_path, &public, &into);
    assert_eq!(fs::read(into.join("etc/version")).unwrap(), b"1.0\n");
}
