//! Images signed with the standard `minisign` tool verify, and `minisign -V`
//! verifies what `image-builder` signs: a vendor can use either.

mod common;

use common::*;
use image_builder::image::Source;
use std::fs;

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
    let (ok, err) = minisign(&[&"-V", &"-p", &pk, &"-m", &image.manifest_path]);
    assert!(ok, "minisign -V: {}", err);
    // And it refuses a changed manifest, so the check above means something.
    fs::write(&image.manifest_path, "format=1\n").unwrap();
    let (ok, _) = minisign(&[&"-V", &"-p", &pk, &"-m", &image.manifest_path]);
    assert!(!ok, "minisign accepted a changed manifest");
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
    let (ok, err) = minisign(&[&"-G", &"-W", &"-p", &mpk, &"-s", &msk]);
    assert!(ok, "minisign -G: {}", err);
    let (ok, err) = minisign(&[&"-S", &"-s", &msk, &"-m", &image.manifest_path]);
    assert!(ok, "minisign -S: {}", err);

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
    let (ok, err) = minisign(&[&"-S", &"-s", &our_sk, &"-m", &image.manifest_path]);
    assert!(ok, "minisign -S with our key: {}", err);
    let out = verify(&our_pk);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
