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
        compression: Compression { level: 5, threads },
        ..ImageRequest::fixture(Source::Rootfs(root.to_path_buf()), "prod", "1", key, out)
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

/// The mtime of each entry of a payload, by path.
fn mtimes(payload: &Path) -> std::collections::BTreeMap<String, u64> {
    let tar = zstd::decode_all(&fs::read(payload).unwrap()[..]).unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            (path, e.header().mtime().unwrap())
        })
        .collect()
}

/// `SOURCE_DATE_EPOCH` clamps every later mtime, as `tar --clamp-mtime`
/// does: touching a file of the tree after the epoch leaves the image
/// byte-identical; earlier mtimes are kept.
#[test]
fn source_date_epoch_clamps_later_mtimes() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let tree = dir.join("tree");
    make_tree(&tree, false);
    let set = |rel: &str, time: &str| {
        let status = std::process::Command::new("touch")
            .args(["-h", "-d", time])
            .arg(tree.join(rel))
            .status()
            .unwrap();
        assert!(status.success());
    };
    for (rel, time) in [
        ("", "@1600000000"),
        ("etc", "@1600000000"),
        ("etc/sub", "@1600000000"),
        ("etc/f001", "@1600000001"),
        ("etc/f002", "@1700001000"),
    ] {
        set(rel, time);
    }
    let bin = env!("CARGO_BIN_EXE_image-builder");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .current_dir(dir)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let image = |out: &str| {
        run(&[
            "image",
            "--rootfs",
            "tree",
            "--product",
            "p",
            "--version",
            "1",
            "--key",
            "k.key",
            "--quiet",
            "--out",
            out,
        ]);
        fs::read(dir.join(out).join("p-1.tar.zst")).unwrap()
    };
    run(&["keygen", "--out", "k"]);
    let first = image("a");
    set("etc/f002", "now");
    let second = image("b");
    assert!(
        first == second,
        "touching a file after the epoch changed the payload"
    );
    let mtimes = mtimes(&dir.join("b/p-1.tar.zst"));
    assert_eq!(
        mtimes["etc/f001"], 1_600_000_001,
        "an earlier mtime was changed"
    );
    assert_eq!(
        mtimes["etc/f002"], 1_700_000_000,
        "a later mtime was not clamped"
    );
    // Files written by make_tree now, after the epoch, are clamped too.
    assert_eq!(mtimes["etc/f100"], 1_700_000_000);
    assert_eq!(mtimes["./"], 1_600_000_000);
}
