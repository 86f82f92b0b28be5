//! A bundle (`P-V.swu`) given to `recovery verify/apply --manifest`: told
//! by its first bytes, read in place (nothing unpacked beside it), and
//! refused at the same stages as the three files.

mod common;

use common::*;
use image_builder::bundle::{self, BundleRequest};
use std::fs;
use std::path::{Path, PathBuf};

struct Case {
    work: tempfile::TempDir,
    /// The bundle, alone in its directory.
    bundle: PathBuf,
    key: (PathBuf, PathBuf),
    into: PathBuf,
}

fn setup() -> Case {
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (image, key, into) = small_image(work.path());
    let s = bundle::build(&BundleRequest {
        manifest: image.manifest_path,
        out_dir: work.path().join("bundles"),
        hardware: vec!["1.0".into()],
    })
    .unwrap();
    Case {
        bundle: s.path,
        work,
        key,
        into,
    }
}

/// Runs `recovery COMMAND` (`verify --json`, `verify` or `apply --into`).
fn run(command: &str, image: &Path, key: &Path, into: &Path) -> (Option<i32>, String, String) {
    if command == "apply" {
        require_root("run recovery apply");
    }
    let (command, json) = match command {
        "verify --json" => ("verify", true),
        other => (other, false),
    };
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
        vec![&command, &"--manifest", &image, &"--trusted-key", &key];
    if command == "apply" {
        args.push(&"--into");
        args.push(&into);
    } else if json {
        args.push(&"--json");
    }
    let out = recovery(&args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bundle_verifies_and_applies_in_place() {
    require_root("apply an image (owners, device nodes)");
    let case = setup();
    // Told by its magic, not its name.
    let renamed = case.work.path().join("bundles/staged-image");
    fs::copy(&case.bundle, &renamed).unwrap();
    for image in [&case.bundle, &renamed] {
        let (code, _, stderr) = run("verify", image, &case.key.0, &case.into);
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stderr.contains("read in place"), "{stderr}");
        let (code, stdout, stderr) = run("verify --json", image, &case.key.0, &case.into);
        assert_eq!(code, Some(0), "{stderr}");
        let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(json["product"], "testprod", "{stdout}");
        assert_eq!(json["version"], "2.0", "{stdout}");
        assert!(json["error"].is_null(), "{stdout}");
    }
    apply_ok(&case.bundle, &case.key.0, &case.into);
    assert_eq!(
        fs::read_to_string(case.into.join("etc/version")).unwrap(),
        "2.0\n"
    );
    assert_eq!(
        fs::read(case.into.join("data")).unwrap(),
        vec![42u8; 200_000]
    );
    // Nothing was unpacked beside the bundle.
    let mut beside: Vec<_> = fs::read_dir(case.work.path().join("bundles"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    beside.sort();
    assert_eq!(beside, ["staged-image", "testprod-2.0.swu"]);
}

#[test]
fn a_corrupt_payload_inside_a_bundle_is_refused_at_the_payload_stage() {
    let case = setup();
    let mut b = fs::read(&case.bundle).unwrap();
    let layout = formats::bundle::parse_head(&b, b.len() as u64).unwrap();
    b[(layout.payload.offset + layout.payload.size / 2) as usize] ^= 1;
    fs::write(&case.bundle, b).unwrap();
    let (code, _, stderr) = run("apply", &case.bundle, &case.key.0, &case.into);
    assert_eq!(code, Some(6), "{stderr}");
    assert!(stderr.contains("BLAKE3: the manifest says"), "{stderr}");
    assert!(
        stderr.contains("testprod-2.0.swu:testprod-2.0.tar.zst"),
        "the message names the bundle's entry: {stderr}"
    );
    assert_untouched(&case.into);
}

#[test]
fn a_bundle_signed_by_an_untrusted_key_is_refused_at_the_signature_stage() {
    let case = setup();
    let other = keypair(case.work.path(), "other");
    let (code, _, stderr) = run("apply", &case.bundle, &other.0, &case.into);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("which is not trusted"), "{stderr}");
    assert!(
        stderr.contains("testprod-2.0.swu:testprod-2.0.manifest.minisig"),
        "{stderr}"
    );
    assert_untouched(&case.into);
}

#[test]
fn a_truncated_bundle_is_refused_at_the_manifest_stage() {
    let case = setup();
    let b = fs::read(&case.bundle).unwrap();
    fs::write(&case.bundle, &b[..b.len() - 1024]).unwrap();
    let (code, _, stderr) = run("apply", &case.bundle, &case.key.0, &case.into);
    assert_eq!(code, Some(5), "{stderr}");
    assert!(stderr.contains("not a valid bundle"), "{stderr}");
    assert_untouched(&case.into);
}
