//! Every way an image can be wrong is refused before the first write, with
//! an exit code for the stage and a message naming what was expected.

mod common;

use common::*;
use image_builder::image::ImageSummary;
use std::fs;
use std::path::{Path, PathBuf};

struct Case {
    _work: tempfile::TempDir,
    image: ImageSummary,
    key: (PathBuf, PathBuf),
    into: PathBuf,
}

/// A small valid image, and a target directory holding one sentinel file.
fn setup() -> Case {
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (image, key, into) = small_image(work.path());
    Case {
        _work: work,
        image,
        key,
        into,
    }
}

/// Signs `manifest` anew with the secret key, as a vendor would.
fn resign(manifest: &Path, secret: &Path) {
    let sk = image_builder::keygen::load_secret_key(secret).unwrap();
    let text = fs::read(manifest).unwrap();
    let sig = minisign::sign(None, &sk, &text[..], Some("resigned"), None).unwrap();
    fs::write(recovery::source::signature_path(manifest), sig.to_string()).unwrap();
}

/// Runs `recovery apply` and checks the exit code, the message and that
/// the target is untouched.
fn assert_refused(case: &Case, keys: &[&Path], code: i32, message: &str) {
    require_root("run recovery apply");
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
        vec![&"apply", &"--manifest", &case.image.manifest_path];
    for k in keys {
        args.push(&"--trusted-key");
        args.push(k);
    }
    args.push(&"--into");
    args.push(&case.into);
    let out = recovery(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "wrong exit code; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains(message),
        "stderr does not say {message:?}:\n{stderr}"
    );
    assert_untouched(&case.into);
}

#[test]
fn a_good_image_applies() {
    let case = setup();
    apply_ok(&case.image.manifest_path, &case.key.0, &case.into);
    assert_eq!(
        fs::read_to_string(case.into.join("etc/version")).unwrap(),
        "2.0\n"
    );
}

#[test]
fn a_flipped_payload_byte_is_refused() {
    let case = setup();
    let mut payload = fs::read(&case.image.payload_path).unwrap();
    let middle = payload.len() / 2;
    payload[middle] ^= 0x01;
    fs::write(&case.image.payload_path, payload).unwrap();
    assert_refused(&case, &[&case.key.0], 6, "BLAKE3: the manifest says");
}

#[test]
fn a_truncated_payload_is_refused() {
    let case = setup();
    let payload = fs::read(&case.image.payload_path).unwrap();
    fs::write(&case.image.payload_path, &payload[..payload.len() - 100]).unwrap();
    assert_refused(&case, &[&case.key.0], 6, "size: the manifest says");
}

#[test]
fn a_missing_payload_is_refused() {
    let case = setup();
    fs::remove_file(&case.image.payload_path).unwrap();
    assert_refused(&case, &[&case.key.0], 6, "cannot open");
}

#[test]
fn an_edited_manifest_is_refused() {
    let case = setup();
    let text = fs::read_to_string(&case.image.manifest_path).unwrap();
    fs::write(
        &case.image.manifest_path,
        text.replace("version=2.0", "version=9.0"),
    )
    .unwrap();
    assert_refused(&case, &[&case.key.0], 4, "does not match the manifest");
}

#[test]
fn a_signature_by_an_untrusted_key_is_refused() {
    let case = setup();
    let other = keypair(case._work.path(), "other");
    assert_refused(&case, &[&other.0], 4, "which is not trusted");
}

#[test]
fn a_missing_signature_is_refused() {
    let case = setup();
    fs::remove_file(&case.image.signature_path).unwrap();
    assert_refused(&case, &[&case.key.0], 4, "cannot read the signature");
}

#[test]
fn an_unknown_manifest_format_is_refused() {
    let case = setup();
    let text = fs::read_to_string(&case.image.manifest_path).unwrap();
    fs::write(
        &case.image.manifest_path,
        text.replace("format=2", "format=3"),
    )
    .unwrap();
    resign(&case.image.manifest_path, &case.key.1);
    assert_refused(&case, &[&case.key.0], 5, "format version 3");
}

#[test]
fn a_wrong_payload_size_is_refused() {
    let case = setup();
    let text = fs::read_to_string(&case.image.manifest_path).unwrap();
    let size = case.image.manifest.payload_size;
    fs::write(
        &case.image.manifest_path,
        text.replace(
            &format!("payload-size={size}"),
            &format!("payload-size={}", size + 1),
        ),
    )
    .unwrap();
    resign(&case.image.manifest_path, &case.key.1);
    assert_refused(
        &case,
        &[&case.key.0],
        6,
        &format!("the manifest says {} bytes", size + 1),
    );
}

#[test]
fn a_wrong_entry_count_is_refused() {
    let case = setup();
    let text = fs::read_to_string(&case.image.manifest_path).unwrap();
    let entries = case.image.manifest.entries;
    fs::write(
        &case.image.manifest_path,
        text.replace(&format!("entries={entries}"), "entries=1"),
    )
    .unwrap();
    resign(&case.image.manifest_path, &case.key.1);
    // Format 2: the index's count is compared with it before any record
    // is read ("the entry index says it holds 4 records, the manifest
    // says 1 entries"); format 1: the decoded tar's.
    assert_refused(&case, &[&case.key.0], 7, "the manifest says 1");
}

#[test]
fn any_of_several_trusted_keys_will_do() {
    let case = setup();
    let old = keypair(case._work.path(), "old");
    let out = recovery(&[
        &"verify",
        &"--manifest",
        &case.image.manifest_path,
        &"--trusted-key",
        &old.0,
        &"--trusted-key",
        &case.key.0,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Storage that returns other bytes on the second read: what is written
/// must be what was verified, so the extraction checks the hash again.
#[test]
fn a_payload_that_changes_after_verification_fails_the_extraction() {
    let case = setup();
    let keys = recovery::keys::load(&[&case.key.0]).unwrap();
    let image = recovery::verify::verify(&case.image.manifest_path, &keys).unwrap();
    // Same size, one byte different, after the check.
    let mut payload = fs::read(&case.image.payload_path).unwrap();
    let last = payload.len() - 1;
    payload[last] ^= 0x01;
    fs::write(&case.image.payload_path, payload).unwrap();
    let err = recovery::install::install(&image, &case.into).unwrap_err();
    assert_eq!(err.stage, recovery::Stage::Extract, "{err}");
    assert!(err.reason.contains("not the verified"), "{err}");
}
