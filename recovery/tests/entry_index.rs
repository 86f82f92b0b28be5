//! The signed entry index of format 2: checked before the erase instead
//! of a decode, compared with every tar header while extracting; format 1
//! still read the old way.

mod common;

use common::*;
use formats::entry::{self, Entry, Kind};
use formats::manifest::Manifest;
use image_builder::image::Source;
use recovery::Stage;
use std::fs;
use std::path::{Path, PathBuf};

/// A signed format-2 image whose tar holds `tar` and whose index holds
/// `index` (each as `from_tar` reads it), as a wrong builder could write it.
fn crafted(dir: &Path, secret: &Path, tar: &[Entry], index: &[Entry]) -> PathBuf {
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
    let mut payload = zstd::bulk::compress(&b.into_inner().unwrap(), 3).unwrap();
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
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (public, secret) = keypair(work.path(), "k");
    let keys = recovery::keys::load(std::slice::from_ref(&public)).unwrap();
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
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (public, secret) = keypair(work.path(), "k");
    let keys = recovery::keys::load(std::slice::from_ref(&public)).unwrap();
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
