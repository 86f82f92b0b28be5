//! The `reimage-agent` binary: help, version, and a download by hand.

mod server;

use server::{Fault, Plan, Server};
use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_reimage-agent"))
}

#[test]
fn help_and_version() {
    let out = agent().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("reimage-agent {}", env!("CARGO_PKG_VERSION"))
    );
    let out = agent().args(["download", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && help.contains("--blake3") && help.contains("--ca"),
        "{help}"
    );
    let out = agent().arg("download").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn download_by_hand_resumes_and_verifies() {
    let file: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let server = Server::start(file.clone(), Plan::first(vec![Fault::DropAfter(100_000)]));
    let dir = tempfile::tempdir().unwrap();
    let hash = blake3::hash(&file).to_hex().to_string();
    let out = agent()
        .args(["download", &server.url("acme-2.0.tar.zst"), "--into"])
        .arg(dir.path())
        .args([
            "--size",
            "300000",
            "--blake3",
            &hash,
            "--first-wait-ms",
            "1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let path = dir.path().join("acme-2.0.tar.zst");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        path.display().to_string()
    );
    assert_eq!(std::fs::read(&path).unwrap(), file);
    assert!(stderr.contains("resuming at byte 100000"), "{stderr}");
    assert_eq!(server.served(), 300_000);

    let wrong = "00".repeat(32);
    let out = agent()
        .args(["download", &server.url("other.bin"), "--into"])
        .arg(dir.path())
        .args([
            "--blake3",
            &wrong,
            "--attempts",
            "2",
            "--first-wait-ms",
            "1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("all 2 attempt(s) failed") && stderr.contains("corrupt download"),
        "{stderr}"
    );
}

#[test]
fn https_trusts_what_ca_names() {
    let pki = server::TestPki::new("reimage test CA");
    let file = b"payload over TLS".to_vec();
    let server = Server::start_tls(file.clone(), Plan::good(), &pki.server);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("vendor-ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let url = server.url("f.bin");

    let out = agent()
        .args(["download", &url, "--into"])
        .arg(dir.path())
        .arg("--ca")
        .arg(&ca)
        .arg("--ca-only")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(dir.path().join("f.bin")).unwrap(), file);

    let out = agent()
        .args(["download", &url, "--name", "g.bin", "--into"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&server.addr().to_string()) && stderr.contains("not trusted"),
        "{stderr}"
    );
    assert!(stderr.contains("gave up after 1 attempt(s)"), "{stderr}");
}
