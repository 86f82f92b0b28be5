//! Images signed with the standard `minisign` tool verify, and `minisign -V`
//! verifies what `image-builder` signs: a vendor can use either.

mod common;

use common::*;
use image_builder::image::Source;
use std::fs;
use std::process::Command;

fn small_image(
    work: &std::path::Path,
    key: &std::path::Path,
) -> image_builder::image::ImageSummary {
    let root = work.join("root");
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join("hello"), "hello\n").unwrap();
    build(Source::Rootfs(root), key, &work.join("out"), "1.0", false)
}

#[test]
fn minisign_verifies_what_image_builder_signs() {
    require_tool("minisign", "minisign");
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (pk, sk) = keypair(work.path(), "k");
    let image = small_image(work.path(), &sk);
    let out = Command::new("minisign")
        .arg("-V")
        .arg("-p")
        .arg(&pk)
        .arg("-m")
        .arg(&image.manifest_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "minisign -V: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And it refuses a changed manifest, so the check above means something.
    fs::write(&image.manifest_path, "format=1\n").unwrap();
    let out = Command::new("minisign")
        .arg("-V")
        .arg("-p")
        .arg(&pk)
        .arg("-m")
        .arg(&image.manifest_path)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "minisign accepted a changed manifest"
    );
}

#[test]
fn the_recovery_verifies_what_minisign_signs() {
    require_tool("minisign", "minisign");
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (our_pk, our_sk) = keypair(work.path(), "k");
    let image = small_image(work.path(), &our_sk);
    // A key made by minisign itself (-W: no password), signing in its
    // default (prehashed) mode, replacing image-builder's signature.
    let (mpk, msk) = (work.path().join("m.pub"), work.path().join("m.key"));
    let out = Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(&mpk)
        .arg("-s")
        .arg(&msk)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "minisign -G: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("minisign")
        .arg("-S")
        .arg("-s")
        .arg(&msk)
        .arg("-m")
        .arg(&image.manifest_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "minisign -S: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let verify = |key: &std::path::Path| {
        recovery(&[
            &"verify",
            &"--manifest",
            &image.manifest_path,
            &"--trusted-key",
            &key,
        ])
    };
    let out = verify(&mpk);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = verify(&our_pk);
    assert_eq!(
        out.status.code(),
        Some(4),
        "a signature by another key was accepted"
    );

    // minisign also signs with image-builder's secret key file.
    let out = Command::new("minisign")
        .arg("-S")
        .arg("-s")
        .arg(&our_sk)
        .arg("-m")
        .arg(&image.manifest_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "minisign -S with our key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = verify(&our_pk);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
