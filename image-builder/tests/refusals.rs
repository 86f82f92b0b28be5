//! Input an image cannot hold faithfully is refused with the path named,
//! never skipped: a socket in the tree, a tar entry of a type a root file
//! system does not have, a name with a `..`.

use formats::entry as model;
use image_builder::image::{build, ImageRequest, Source};
use image_builder::BuildError;
use std::path::Path;

fn request(source: Source, key: &Path, out: &Path) -> ImageRequest {
    ImageRequest {
        created: 0,
        ..ImageRequest::fixture(source, "p", "1", key, out)
    }
}

#[test]
fn a_socket_is_refused_with_its_path() {
    let work = tempfile::tempdir().unwrap();
    let (_, key) = image_builder::keygen::keygen(&work.path().join("k")).unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(root.join("run")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(root.join("run/daemon.sock")).unwrap();
    let err = build(&request(
        Source::Rootfs(root),
        &key,
        &work.path().join("out"),
    ))
    .err()
    .expect("a tree with a socket was accepted");
    assert!(matches!(err, BuildError::Unrepresentable { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("run/daemon.sock") && text.contains("socket"),
        "{text}"
    );
    assert!(
        !work.path().join("out/p-1.manifest").exists(),
        "a manifest was written"
    );
}

#[test]
fn a_tar_entry_of_another_kind_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let (_, key) = image_builder::keygen::keygen(&work.path().join("k")).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path("label").unwrap();
    h.set_entry_type(tar::EntryType::new(b'V')); // a GNU volume header
    h.set_size(0);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
    let tar = work.path().join("in.tar");
    std::fs::write(&tar, b.into_inner().unwrap()).unwrap();
    let err = build(&request(Source::Tar(tar), &key, &work.path().join("out")))
        .err()
        .expect("a volume header was accepted");
    assert!(
        err.to_string().contains("is not one an image holds"),
        "{err}"
    );
}

/// Runs `image-builder image` on `source` (`--rootfs DIR` or `--from-tar
/// FILE`) and returns its message, which must be a refusal.
fn refused_by_the_binary(work: &Path, source: &[&std::ffi::OsStr]) -> String {
    let bin = env!("CARGO_BIN_EXE_image-builder");
    let key = work.join("k");
    if !work.join("k.key").exists() {
        image_builder::keygen::keygen(&key).unwrap();
    }
    let out = std::process::Command::new(bin)
        .arg("image")
        .args(source)
        .args(["--product", "p", "--version", "1", "--quiet", "--key"])
        .arg(work.join("k.key"))
        .arg("--out")
        .arg(work.join("out"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "not refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !work.join("out/p-1.manifest").exists(),
        "a manifest was written"
    );
    assert!(!work.join("out/p-1.tar.zst").exists(), "a payload was left");
    String::from_utf8(out.stderr).unwrap()
}

/// A tar with the root and `entry`, written without the builder's checks.
fn tar_with(work: &Path, entry: model::Entry) -> std::path::PathBuf {
    let mut b = tar::Builder::new(Vec::new());
    let root = model::Entry::new("./", model::Kind::Directory);
    model::append(&mut b, &root, std::io::empty()).unwrap();
    model::append(&mut b, &entry, std::io::empty()).unwrap();
    let path = work.join("in.tar");
    std::fs::write(&path, b.into_inner().unwrap()).unwrap();
    path
}

/// What the recovery refuses, the builder refuses first, naming the entry.
#[test]
fn the_builder_refuses_what_the_recovery_refuses() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let from_tar =
        |tar: &Path| refused_by_the_binary(work, &["--from-tar".as_ref(), tar.as_os_str()]);

    let long_target = model::Kind::Symlink(vec![b't'; 4096]);
    let tar = tar_with(work, model::Entry::new("entry", long_target));
    let text = from_tar(&tar);
    assert!(
        text.contains("in.tar: entry entry: link target must be 1 to 4095 bytes without NUL, found 4096 bytes"),
        "{text}"
    );
    assert_eq!(text.matches("link target").count(), 1, "said twice: {text}");

    let with_xattr = |name: String, value: Vec<u8>| {
        let mut entry = model::Entry::new("entry", model::Kind::File);
        entry.xattrs = vec![(name, value)];
        tar_with(work, entry)
    };
    let tar = with_xattr(format!("user.{}", "n".repeat(251)), b"v".to_vec());
    let text = from_tar(&tar);
    assert!(
        text.contains("entry entry: an extended attribute name is not 1 to 255 bytes of text"),
        "{text}"
    );

    let tar = with_xattr("user.big".into(), vec![0u8; 65537]);
    let text = from_tar(&tar);
    assert!(
        text.contains("extended attribute user.big is larger than 65536 bytes"),
        "{text}"
    );

    let root = work.join("root");
    std::fs::create_dir_all(root.join("run")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(root.join("run/daemon.sock")).unwrap();
    let text = refused_by_the_binary(work, &["--rootfs".as_ref(), root.as_os_str()]);
    assert!(
        text.contains("run/daemon.sock") && text.contains("socket"),
        "{text}"
    );
}
