//! The host command line as an operator and a vendor's pipeline use it:
//! `--version` and `--help` everywhere, options a command does not take
//! refused by name, `verify --json` as valid JSON for any file name, and
//! `apply` refused up front when not root.

mod common;

use common::*;
use image_builder::image::{ImageSummary, Source};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_and_help_answer_everywhere() {
    let out = recovery(&[&"--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out).0,
        format!("recovery {}\n", env!("CARGO_PKG_VERSION"))
    );
    for (args, says) in [
        (&["--help"][..], "exit codes:"),
        (&["verify", "--help"][..], "--json"),
        (&["apply", "--help"][..], "--into DIR"),
        (&["apply", "-h"][..], "Must run as root"),
    ] {
        let args: Vec<&dyn AsRef<std::ffi::OsStr>> = args
            .iter()
            .map(|a| a as &dyn AsRef<std::ffi::OsStr>)
            .collect();
        let out = recovery(&args);
        assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
        assert!(text(&out).0.contains(says), "{:?}", text(&out));
    }
}

#[test]
fn options_a_command_does_not_take_are_refused_by_name() {
    for (args, says) in [
        (
            &["verify", "--manifest", "m", "--into", "d"][..],
            "verify does not take --into",
        ),
        (
            &["apply", "--manifest", "m", "--into", "d", "--json"][..],
            "apply does not take --json",
        ),
        (&["verify", "--manifest"][..], "--manifest"),
        (&[][..], "missing command"),
    ] {
        let args: Vec<&dyn AsRef<std::ffi::OsStr>> = args
            .iter()
            .map(|a| a as &dyn AsRef<std::ffi::OsStr>)
            .collect();
        let out = recovery(&args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

struct Image {
    work: tempfile::TempDir,
    summary: ImageSummary,
    key: (PathBuf, PathBuf),
}

fn image() -> Image {
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = work.path().join("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/version"), "2.0\n").unwrap();
    let key = keypair(work.path(), "k");
    let summary = build(
        Source::Rootfs(root),
        &key.1,
        &work.path().join("out"),
        "2.0",
        false,
    );
    Image { work, summary, key }
}

/// Runs `recovery verify --json` and parses its output with Python's
/// `json` module, which prints it back as canonical JSON for serde-free
/// checks here.
fn verify_json(manifest: &Path, key: &Path) -> (Option<i32>, serde_json::Value) {
    require_tool("python3", "python3");
    let out = recovery(&[
        &"verify",
        &"--json",
        &"--manifest",
        &manifest,
        &"--trusted-key",
        &key,
    ]);
    let (stdout, stderr) = text(&out);
    let mut python = Command::new("python3")
        .args([
            "-c",
            "import json,sys; print(json.dumps(json.load(sys.stdin)))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is missing: apt-get install python3");
    use std::io::Write;
    python
        .stdin
        .take()
        .unwrap()
        .write_all(stdout.as_bytes())
        .unwrap();
    let parsed = python.wait_with_output().unwrap();
    assert!(
        parsed.status.success(),
        "python's json refuses {stdout:?}: {}\nrecovery said: {stderr}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    (
        out.status.code(),
        serde_json::from_slice(&parsed.stdout).unwrap(),
    )
}

#[test]
fn verify_json_says_what_the_image_is_and_who_signed_it() {
    let img = image();
    let (code, v) = verify_json(&img.summary.manifest_path, &img.key.0);
    assert_eq!(code, Some(0), "{v}");
    let m = &img.summary.manifest;
    assert_eq!(v["product"], "testprod");
    assert_eq!(v["version"], "2.0");
    assert_eq!(v["payload"], m.payload.as_str());
    assert_eq!(v["payload_size"], m.payload_size);
    assert_eq!(
        v["payload_blake3"],
        formats::manifest::hex(&m.payload_blake3)
    );
    assert_eq!(v["unpacked_size"], m.unpacked_size);
    assert_eq!(v["entries"], m.entries);
    assert_eq!(v["created"], 1_700_000_000);
    assert_eq!(v["verified"], true);
    assert_eq!(v["signed_by"], img.key.0.display().to_string());
    let key = formats::signature::TrustedKey::parse("k", &fs::read_to_string(&img.key.0).unwrap())
        .unwrap();
    assert_eq!(v["key_id"], key.id.to_string());
    assert!(v["error"].is_null());
}

#[test]
fn verify_json_on_a_failure_names_stage_file_and_reason_for_any_file_name() {
    let img = image();
    // A directory name with a tab, a quote, a backslash and a control
    // character: the JSON must still be valid.
    let odd = img.work.path().join("odd\t\"\\\u{1}dir");
    fs::create_dir(&odd).unwrap();
    for f in [
        &img.summary.manifest_path,
        &img.summary.payload_path,
        &img.summary.signature_path,
    ] {
        fs::copy(f, odd.join(f.file_name().unwrap())).unwrap();
    }
    let payload = odd.join(img.summary.payload_path.file_name().unwrap());
    let mut bytes = fs::read(&payload).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs::write(&payload, bytes).unwrap();
    let manifest = odd.join(img.summary.manifest_path.file_name().unwrap());
    let (code, v) = verify_json(&manifest, &img.key.0);
    assert_eq!(code, Some(6), "{v}");
    assert_eq!(v["verified"], false);
    assert!(v["signed_by"].is_null());
    assert_eq!(v["version"], "2.0");
    assert_eq!(v["error"]["stage"], "payload");
    assert_eq!(v["error"]["file"], payload.display().to_string());
    assert!(
        v["error"]["reason"].as_str().unwrap().starts_with("BLAKE3"),
        "{v}"
    );
    // An untrusted key: the signature stage, the key id still named.
    let other = keypair(img.work.path(), "other");
    let (code, v) = verify_json(&manifest, &other.0);
    assert_eq!(code, Some(4), "{v}");
    assert_eq!(v["error"]["stage"], "signature");
    assert!(v["key_id"].is_string());
}

#[test]
fn apply_as_non_root_is_refused_before_any_check() {
    use std::os::unix::process::CommandExt;
    require_root("run the recovery as another user");
    let img = image();
    let into = img.work.path().join("into");
    fs::create_dir(&into).unwrap();
    let out = Command::new(recovery_bin())
        .args(["apply", "--manifest"])
        .arg(&img.summary.manifest_path)
        .arg("--trusted-key")
        .arg(&img.key.0)
        .arg("--into")
        .arg(&into)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("run as root"), "{stderr}");
    assert!(
        !stderr.contains("signature:"),
        "it verified first: {stderr}"
    );
    assert_eq!(fs::read_dir(&into).unwrap().count(), 0);
}

include!("../../build-support/doc_reference.rs");

/// The command reference in docs/operations.md names exactly the options
/// that `--help` names, and every exit code.
#[test]
fn the_operations_doc_matches_help() {
    let doc = operations_doc();
    for command in ["verify", "apply"] {
        let help = text(&recovery(&[&command, &"--help"])).0;
        let options: Vec<String> = help
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2)
            // Every command answers these; the reference names the others.
            .filter(|w| !["--help", "--version"].contains(w))
            .map(str::to_string)
            .collect();
        assert_documented(&doc, command, &options);
    }
    let help = text(&recovery(&[&"--help"])).0;
    let codes = help.split("exit codes:").nth(1).unwrap();
    for code in codes.split_whitespace().filter(|w| w.parse::<u8>().is_ok()) {
        assert!(
            doc.contains(&format!("\n| {code} |")),
            "docs/operations.md has no exit code {code}"
        );
    }
}
