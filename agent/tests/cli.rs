//! The `reimage-agent` binary: help, version, a download by hand, the
//! one-shot commands against a feed, and the operations guide's table.

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
    let out = agent().args(["fetch", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && help.contains("--blake3") && help.contains("--ca"),
        "{help}"
    );
    let out = agent().arg("fetch").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    // The one-shot commands need their configuration.
    let out = agent()
        .args(["download", "--config", "/nonexistent/agent.conf"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/agent.conf: the agent's configuration"),
        "{stderr}"
    );
}

#[test]
fn download_by_hand_resumes_and_verifies() {
    let file: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let server = Server::start(file.clone(), Plan::first(vec![Fault::DropAfter(100_000)]));
    let dir = tempfile::tempdir().unwrap();
    let hash = blake3::hash(&file).to_hex().to_string();
    let out = agent()
        .args(["fetch", &server.url("acme-2.0.tar.zst"), "--into"])
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
        .args(["fetch", &server.url("other.bin"), "--into"])
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
        .args(["fetch", &url, "--into"])
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
        .args(["fetch", &url, "--name", "g.bin", "--into"])
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

/// A feed with `latest` and a bundle of 2.0, the device's files, and an
/// `agent.conf` that names them.
struct Device {
    dir: tempfile::TempDir,
    server: Server,
}

impl Device {
    fn new() -> Device {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let tree = root.join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("hello"), "hello\n").unwrap();
        let (public, secret) = image_builder::keygen::keygen(&root.join("vendor")).unwrap();
        let mut files = vec![("/acme/latest".into(), b"2.0\n".to_vec())];
        // The bundle only: the feed's default layout.
        files.extend(
            server::publish(&tree, "acme", "2.0", secret, &root.join("out"))
                .into_iter()
                .take(1),
        );
        let server = Server::start_files(files, Plan::good());
        std::fs::write(root.join("recovery.conf"), "product=acme\n").unwrap();
        std::fs::create_dir_all(root.join("cfg/update")).unwrap();
        let conf = format!(
            "feed=http://{}\nrecovery-config={}\ntrusted-keys={}\nstorage-dir={}\ncfg={}\n\
             backoff=0,0\nmin-free=0\n",
            server.addr(),
            root.join("recovery.conf").display(),
            public.display(),
            root.join("storage").display(),
            root.join("cfg").display(),
        );
        std::fs::write(root.join("agent.conf"), conf).unwrap();
        Device { dir, server }
    }

    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = agent()
            .args(args)
            .arg("--config")
            .arg(self.dir.path().join("agent.conf"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[test]
fn check_download_and_install_from_a_feed() {
    let device = Device::new();
    let (code, out, err) = device.run(&["check"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("offered: 2.0 (offer 2.0)\n  acme-2.0.swu http://"),
        "{out}"
    );
    assert_eq!(device.server.served_of("/acme/acme-2.0.swu"), 0);

    // No storage directory (the partition not mounted): a setup error.
    let (code, _, err) = device.run(&["download"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("storage: not a directory"), "{err}");
    std::fs::create_dir(device.dir.path().join("storage")).unwrap();

    let (code, out, err) = device.run(&["download"]);
    assert_eq!(code, Some(0), "{err}");
    let staged = device.dir.path().join("storage/acme-2.0.swu");
    assert!(out.ends_with(&format!("{}\n", staged.display())), "{out}");
    assert!(staged.exists());
    assert!(err.contains("staged, verified"), "{err}");

    // The cfg here is a plain directory, not the mounted partition: the
    // image is staged already, and the request is refused, naming cfg.
    let (code, _, err) = device.run(&["install"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("on storage already, verified"), "{err}");
    assert!(err.contains("is not a mount point"), "{err}");
}

include!("../../build-support/doc_reference.rs");
include!("../../build-support/clap_options.rs");

/// The table of flags in docs/operations.md is the command line's: each
/// subcommand's row (`reimage-agent NAME`) names exactly the flags it takes.
#[test]
fn the_operations_guide_lists_every_flag() {
    use clap::CommandFactory;
    let doc = operations_doc();
    let mut cli = agent::cli::Cli::command();
    cli.build();
    // `build` adds clap's own `help` subcommand; it has no row.
    for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
        let options = clap_options(sub);
        assert_documented(&doc, &format!("reimage-agent {}", sub.get_name()), &options);
    }
}

/// `report` after the reboot: the outcome the recovery left for the
/// update in flight, with the post-update command run once; `status`.
#[test]
fn report_and_status_after_the_reboot() {
    let device = Device::new();
    let root = device.dir.path();
    let cfg = root.join("cfg");
    let (code, out, err) = device.run(&["report"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "nothing to report: no update in flight\n");

    // As if this agent had asked for 2.0 and the recovery installed it.
    agent::outcome::begin(&cfg, "feed", "2.0", "1.0", "2.0").unwrap();
    let (_, out, _) = device.run(&["status"]);
    assert!(
        out.contains("in flight: 1.0 -> 2.0 (offer 2.0 of feed)"),
        "{out}"
    );
    let result = formats::result::UpdateResult {
        outcome: formats::result::Outcome::Success,
        version: "2.0".into(),
        stage: String::new(),
        reason: String::new(),
        attempt: 1,
        started: 1,
        finished: 2,
        duration_ms: 1000,
        bytes: 6,
        entries: 2,
        restored: None,
        instruction: None,
    };
    std::fs::write(cfg.join(formats::cfg::RESULT), result.render()).unwrap();
    let seen = root.join("post-update.seen");
    let conf = root.join("agent.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text += &format!(
        "post-update=echo \"$REIMAGE_OLD_VERSION $REIMAGE_NEW_VERSION\" >> {}\n",
        seen.display()
    );
    std::fs::write(&conf, text).unwrap();
    let (code, out, err) = device.run(&["report"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        "reported success: 2.0 installed and booted (from 1.0, attempt 1, 2 entries)\n"
    );
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), "1.0 2.0\n");
    assert!(!cfg.join(formats::cfg::ACTION).exists());

    let (code, out, err) = device.run(&["status", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["in_flight"], serde_json::Value::Null);
    assert_eq!(json["locked"], false);
    assert_eq!(json["install_window"]["window"], "always");
    assert!(json["source"]
        .as_str()
        .unwrap()
        .starts_with("feed http://127.0.0.1:"));
}
