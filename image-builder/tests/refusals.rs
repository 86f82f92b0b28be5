//! Input an image cannot hold faithfully is refused with the path named,
//! never skipped: a socket in the tree, a tar entry of a type a root file
//! system does not have, a name with a `..`.

use image_builder::image::{build, ImageRequest, Source};
use image_builder::payload::Compression;
use image_builder::BuildError;
use std::path::Path;

fn request(source: Source, key: &Path, out: &Path) -> ImageRequest {
    ImageRequest {
        source,
        product: "p".into(),
        version: "1".into(),
        key: key.to_path_buf(),
        out_dir: out.to_path_buf(),
        compression: Compression {
            level: 1,
            threads: 1,
        },
        created: 0,
        allow_unsafe_paths: false,
        show_progress: false,
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
        err.to_string()
            .contains("cannot be part of a root file system"),
        "{err}"
    );
}
