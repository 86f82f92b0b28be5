//! `image-builder info`: what an image holds and whether it verifies, as
//! text and as JSON that a standard parser (Python's `json`) reads, even
//! with control characters in a value.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_image-builder");

/// Builds `p-1` into `DIR/out` signed by `DIR/k.key`; returns the manifest.
fn built_image(dir: &Path) -> PathBuf {
    image_builder::keygen::keygen(&dir.join("k")).unwrap();
    std::fs::create_dir_all(dir.join("root/etc")).unwrap();
    std::fs::write(dir.join("root/etc/x"), "x".repeat(1000)).unwrap();
    let out = Command::new(BIN)
        .args([
            "image",
            "--product",
            "p",
            "--version",
            "1",
            "--quiet",
            "--level",
            "1",
        ])
        .arg("--rootfs")
        .arg(dir.join("root"))
        .arg("--key")
        .arg(dir.join("k.key"))
        .arg("--out")
        .arg(dir.join("out"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    dir.join("out/p-1.manifest")
}

fn info(manifest: &Path, keys: &[&Path], json: bool) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("info").arg(manifest);
    for k in keys {
        cmd.arg("--trusted-key").arg(k);
    }
    if json {
        cmd.arg("--json");
    }
    cmd.output().unwrap()
}

/// Parses `json` with Python's `json` module and prints `field` of it, as
/// `repr` (so that a control character shows as an escape).
fn python_field(json: &[u8], expr: &str) -> String {
    let mut child = Command::new("python3")
        .args([
            "-c",
            &format!("import json, sys; d = json.load(sys.stdin); print(repr({expr}))"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is not installed: apt-get install python3");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), json).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python's json refused {}: {}",
        String::from_utf8_lossy(json),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn shows_the_image_and_verifies_it_with_a_trusted_key() {
    let work = tempfile::tempdir().unwrap();
    let manifest = built_image(work.path());
    let key = work.path().join("k.pub");
    let o = info(&manifest, &[&key], true);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let field = |expr: &str| python_field(&o.stdout, expr);
    assert_eq!(field("d['product']"), "'p'");
    assert_eq!(field("d['version']"), "'1'");
    assert_eq!(field("d['payload']"), "'p-1.tar.zst'");
    assert_eq!(field("d['entries']"), "3");
    assert_eq!(field("d['unpacked_size']"), "1000");
    assert_eq!(field("d['created']"), "1700000000");
    assert_eq!(field("d['verified']"), "True");
    assert_eq!(field("d['error']"), "None");
    assert_eq!(field("len(d['payload_blake3'])"), "64");
    let pub_text = std::fs::read_to_string(&key).unwrap();
    let id = formats::signature::TrustedKey::parse("k", &pub_text)
        .unwrap()
        .id;
    assert_eq!(field("d['key_id']"), format!("'{id}'"));
    assert_eq!(field("d['signed_by']"), format!("'{}'", key.display()));

    let text = info(&manifest, &[&key], false);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("2023-11-14T22:13:20Z"), "{text}");
    assert!(text.contains(&format!("key {id}")), "{text}");
    assert!(text.contains("verified:     good"), "{text}");

    // Without keys: shown, not verified, not an error.
    let o = info(&manifest, &[], true);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(python_field(&o.stdout, "d['verified']"), "False");
}

#[test]
fn a_corrupt_payload_fails_in_the_payload_stage() {
    let work = tempfile::tempdir().unwrap();
    let manifest = built_image(work.path());
    let payload = work.path().join("out/p-1.tar.zst");
    let mut bytes = std::fs::read(&payload).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&payload, bytes).unwrap();
    let o = info(&manifest, &[&work.path().join("k.pub")], true);
    assert_eq!(o.status.code(), Some(6), "{o:?}");
    assert_eq!(python_field(&o.stdout, "d['verified']"), "False");
    assert_eq!(python_field(&o.stdout, "d['error']['stage']"), "'payload'");
    assert!(python_field(&o.stdout, "d['error']['file']").ends_with("p-1.tar.zst'"));
}

#[test]
fn without_the_payload_only_the_signature_is_checked() {
    let work = tempfile::tempdir().unwrap();
    let manifest = built_image(work.path());
    std::fs::remove_file(work.path().join("out/p-1.tar.zst")).unwrap();
    let o = info(&manifest, &[&work.path().join("k.pub")], true);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(python_field(&o.stdout, "d['payload_present']"), "False");
    assert_eq!(python_field(&o.stdout, "d['verified']"), "True");
    // A changed manifest fails the signature.
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("entries=3", "entries=4")).unwrap();
    let o = info(&manifest, &[&work.path().join("k.pub")], true);
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    assert_eq!(
        python_field(&o.stdout, "d['error']['stage']"),
        "'signature'"
    );
}

#[test]
fn control_characters_in_values_still_give_valid_json() {
    let work = tempfile::tempdir().unwrap();
    built_image(work.path());
    // A key file and a directory whose names hold a tab, a newline, a
    // quote and an escape character: they appear in `signed_by` and `manifest`.
    let odd = work.path().join("odd\tdir\n\"\x1b");
    std::fs::create_dir(&odd).unwrap();
    for f in ["p-1.manifest", "p-1.manifest.minisig", "p-1.tar.zst"] {
        std::fs::copy(work.path().join("out").join(f), odd.join(f)).unwrap();
    }
    let key = odd.join("key\u{1}.pub");
    std::fs::copy(work.path().join("k.pub"), &key).unwrap();
    let o = info(&odd.join("p-1.manifest"), &[&key], true);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(python_field(&o.stdout, "d['manifest']").contains("odd\\tdir\\n\"\\x1b"));
    assert!(python_field(&o.stdout, "d['signed_by']").contains("key\\x01.pub"));
}
