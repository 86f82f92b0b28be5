//! The same tree and SOURCE_DATE_EPOCH give the same bytes: payload,
//! manifest and signature, whatever the number of compression threads.

use image_builder::image::{build, ImageRequest, Source};
use image_builder::payload::Compression;
use std::fs;
use std::path::Path;

/// The same tree, its files created in one order or the other: the image
/// must not depend on how the file system lists a directory.
fn make_tree(root: &Path, reverse: bool) {
    fs::create_dir_all(root.join("etc/sub")).unwrap();
    let mut order: Vec<usize> = (0..200).collect();
    if reverse {
        order.reverse();
    }
    for i in order {
        fs::write(
            root.join(format!("etc/f{i:03}")),
            format!("file {i}\n").repeat(i),
        )
        .unwrap();
    }
    fs::write(root.join("etc/sub/big"), vec![3u8; 2_000_000]).unwrap();
    std::os::unix::fs::symlink("f001", root.join("etc/link")).unwrap();
}

fn image(root: &Path, key: &Path, out: &Path, threads: u32) -> Vec<Vec<u8>> {
    let s = build(&ImageRequest {
        source: Source::Rootfs(root.to_path_buf()),
        product: "prod".into(),
        version: "1".into(),
        key: key.to_path_buf(),
        out_dir: out.to_path_buf(),
        compression: Compression { level: 5, threads },
        created: 1_700_000_000,
        allow_unsafe_paths: false,
        show_progress: false,
    })
    .unwrap();
    [s.payload_path, s.manifest_path, s.signature_path]
        .iter()
        .map(|p| fs::read(p).unwrap())
        .collect()
}

#[test]
fn two_builds_give_identical_bytes() {
    let work = tempfile::tempdir().unwrap();
    let (_, key) = image_builder::keygen::keygen(&work.path().join("k")).unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    make_tree(&a, false);
    make_tree(&b, true);
    // Give both trees the same times.
    for root in [&a, &b] {
        let status = std::process::Command::new("find")
            .arg(root)
            .args(["-exec", "touch", "-h", "-d", "@1600000000", "{}", "+"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    let first = image(&a, &key, &work.path().join("out1"), 1);
    let second = image(&b, &key, &work.path().join("out2"), 2);
    let names = ["payload", "manifest", "signature"];
    for ((x, y), name) in first.iter().zip(&second).zip(names) {
        assert!(x == y, "the {name} differs between two builds");
    }
    let third = image(&a, &key, &work.path().join("out3"), 1);
    assert_eq!(first, third);
}
