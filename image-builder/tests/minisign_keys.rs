//! Keys made by the `minisign` tool (Debian's `minisign` package): an
//! unencrypted secret key (`minisign -G -W`) signs, and the image verifies
//! with `minisign -V` and with the recovery's checks; a public key or an
//! encrypted secret key given as `--key` gets an error that says what to do.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_image-builder");

fn minisign(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new("minisign")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("minisign is not installed: apt-get install minisign (or run scripts/setup)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "minisign {args:?}: {out:?}");
    out
}

/// `DIR/NAME.pub` and `DIR/NAME.key` made by `minisign -G`.
fn minisign_keys(dir: &Path, name: &str, password: Option<&str>) -> (String, String) {
    let (p, s) = (
        dir.join(format!("{name}.pub")).display().to_string(),
        dir.join(format!("{name}.key")).display().to_string(),
    );
    match password {
        None => minisign(&["-G", "-W", "-p", &p, "-s", &s], ""),
        Some(pw) => minisign(&["-G", "-p", &p, "-s", &s], &format!("{pw}\n{pw}\n")),
    };
    (p, s)
}

fn image(dir: &Path, key: &str) -> Output {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), "gw\n").unwrap();
    Command::new(BIN)
        .args(["image", "--rootfs"])
        .arg(&root)
        .args([
            "--product",
            "acme",
            "--version",
            "2.0",
            "--key",
            key,
            "--out",
        ])
        .arg(dir.join("out"))
        .args(["--quiet", "--level", "1"])
        .env_remove("IMAGE_BUILDER_KEY_PASSWORD")
        .output()
        .unwrap()
}

#[test]
fn an_unencrypted_minisign_key_signs_and_both_tools_verify() {
    let work = tempfile::tempdir().unwrap();
    let (public, secret) = minisign_keys(work.path(), "vendor", None);
    let built = image(work.path(), &secret);
    assert!(built.status.success(), "{built:?}");
    let manifest = work.path().join("out/acme-2.0.manifest");
    let shown = manifest.display().to_string();
    let verified = minisign(&["-V", "-p", &public, "-m", &shown], "");
    assert!(String::from_utf8_lossy(&verified.stdout).contains("verified"));
    let keys = recovery::keys::load(&[&public]).unwrap();
    let image = recovery::verify::verify(&manifest, &keys).unwrap();
    assert_eq!(image.manifest.product, "acme");
    assert!(
        image.signed_by.ends_with("vendor.pub"),
        "{}",
        image.signed_by
    );
}

#[test]
fn a_public_key_as_key_is_named_as_such() {
    let work = tempfile::tempdir().unwrap();
    let (public, _) = minisign_keys(work.path(), "vendor", None);
    let out = image(work.path(), &public);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("this is a public key: pass the secret key (.key)"),
        "{err}"
    );
}

#[test]
fn an_encrypted_minisign_key_says_what_to_do() {
    let work = tempfile::tempdir().unwrap();
    let (_, secret) = minisign_keys(work.path(), "vendor", Some("pw"));
    let out = image(work.path(), &secret);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&secret) && err.contains("encrypted"), "{err}");
    assert!(
        err.contains("IMAGE_BUILDER_KEY_PASSWORD") && err.contains("minisign -G -W"),
        "{err}"
    );
    assert!(!work.path().join("out/acme-2.0.manifest").exists());
}
