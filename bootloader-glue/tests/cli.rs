//! The command line as an operator and a monitoring system meet it: help
//! and version everywhere, usage errors exit 3 (Nagios UNKNOWN), `status`
//! never says OK when it cannot know, and the man pages and completions
//! that the build writes. Some tests mount tmpfs: run them as root.

mod common;

use bootloader_glue::cli::args::{Cli, USAGE_EXIT};
use clap::CommandFactory;
use common::Tmpfs;
use formats::cfg::{INSTRUCTION, LOCK, RESULT};
use formats::result::{Outcome, UpdateResult};
use nix::mount::MsFlags;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn glue(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bootloader-glue"))
        .args(args)
        .output()
        .expect("run bootloader-glue")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn subcommands() -> Vec<String> {
    Cli::command()
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect()
}

fn cfg_path(t: &Tmpfs) -> &str {
    t.path().to_str().unwrap()
}

#[test]
fn every_command_answers_help_and_version() {
    for args in [vec!["--help"], vec!["--version"], vec!["help"]] {
        let out = glue(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
    }
    assert!(text(&glue(&["--version"])).starts_with("bootloader-glue "));
    for sub in subcommands() {
        let out = glue(&[&sub, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{sub} --help: {}", text(&out));
        assert!(
            text(&out).contains(&format!("bootloader-glue {sub}")),
            "{}",
            text(&out)
        );
    }
}

#[test]
fn usage_errors_exit_3_for_every_command() {
    for args in [
        vec![],
        vec!["frobnicate"],
        vec!["status", "--manifest", "storage:x"],
        vec!["unlock", "--bootloader", "grub"],
        vec!["cancel", "--json"],
        vec!["confirm", "--json"],
        vec![
            "request",
            "--manifest",
            "s:x",
            "--restore",
            "s:y",
            "--no-restore",
        ],
        vec!["request", "--manifest", "s:x", "--restore", "no-colon"],
        vec!["request"],
        vec!["request", "--manifest", "no-colon"],
        vec!["request", "--manifest", "s:x", "--bootloader", "lilo"],
        vec!["request", "--manifest", "s:x", "--uboot-defaults", "d"],
        vec!["grub-config", "--grubenv", "no-colon"],
    ] {
        let out = glue(&args);
        assert_eq!(
            out.status.code(),
            Some(USAGE_EXIT),
            "{args:?}: {}",
            text(&out)
        );
    }
}

#[test]
fn unlock_and_cancel_name_a_missing_cfg() {
    for command in ["unlock", "cancel", "confirm"] {
        let out = glue(&[command, "--cfg", "/nonexistent"]);
        assert_eq!(out.status.code(), Some(1), "{command}: {}", text(&out));
        assert!(
            text(&out).contains("/nonexistent does not exist: expected the cfg partition"),
            "{command}: {}",
            text(&out)
        );
    }
}

#[test]
fn unlock_clears_the_lock_on_a_mounted_cfg() {
    let cfg = Tmpfs::new("size=1m", MsFlags::empty());
    std::fs::create_dir_all(cfg.path().join("update")).unwrap();
    std::fs::write(cfg.path().join(LOCK), "attempts=3\n").unwrap();
    let out = glue(&["unlock", "--cfg", cfg_path(&cfg)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("the update lock is cleared"));
    assert!(!cfg.path().join(LOCK).exists());
    assert!(text(&glue(&["unlock", "--cfg", cfg_path(&cfg)])).contains("no update lock was set"));
}

#[test]
fn cancel_says_it_clears_the_flag_not_that_it_arms_it() {
    let cfg = Tmpfs::new("size=1m", MsFlags::empty());
    let missing = cfg.path().join("fw_env.config");
    let bootloader = format!("uboot:{}", missing.display());
    let out = glue(&[
        "cancel",
        "--cfg",
        cfg_path(&cfg),
        "--bootloader",
        &bootloader,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("clearing the boot loader's flag: "), "{said}");
    assert!(!said.contains("arming"), "{said}");
    // The OS error once, though both the flag and its cause name the file.
    assert_eq!(
        said.matches("No such file or directory").count(),
        1,
        "{said}"
    );
}

fn status(cfg: &Path, json: bool) -> (i32, String) {
    let mut args = vec!["status", "--cfg", cfg.to_str().unwrap()];
    if json {
        args.push("--json");
    }
    let out = glue(&args);
    (out.status.code().unwrap(), text(&out))
}

#[test]
fn status_is_unknown_where_cfg_is_not_mounted_or_empty() {
    let (code, said) = status(Path::new("/nonexistent"), false);
    assert_eq!(code, 3, "{said}");
    assert!(
        said.starts_with("UNKNOWN: /nonexistent does not exist"),
        "{said}"
    );
    let plain = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(plain.path().join("update")).unwrap();
    let (code, said) = status(plain.path(), false);
    assert_eq!(code, 3, "{said}");
    assert!(said.contains("is not a mount point"), "{said}");
    let cfg = Tmpfs::new("size=1m", MsFlags::empty());
    let (code, said) = status(cfg.path(), false);
    assert_eq!(code, 3, "{said}");
    assert!(
        said.contains("is empty: expected the cfg partition mounted there"),
        "{said}"
    );
    std::fs::create_dir_all(cfg.path().join("update")).unwrap();
    let (code, said) = status(cfg.path(), false);
    assert_eq!((code, said.as_str()), (0, "OK: no update recorded\n"));
}

#[test]
fn status_of_a_torn_instruction_is_critical() {
    let cfg = Tmpfs::new("size=1m", MsFlags::empty());
    std::fs::create_dir_all(cfg.path().join("update")).unwrap();
    std::fs::write(
        cfg.path().join(INSTRUCTION),
        "format=1\nmanifest=storage:updates/p-2.manifest\ntar",
    )
    .unwrap();
    let (code, said) = status(cfg.path(), false);
    assert_eq!(code, 2, "{said}");
    assert!(
        said.starts_with("CRITICAL: cfg:update/instruction is there but unreadable"),
        "{said}"
    );
}

/// `--json` is JSON whatever a record holds: checked by Python's parser.
#[test]
fn status_json_is_valid_with_tabs_and_control_characters() {
    let cfg = Tmpfs::new("size=1m", MsFlags::empty());
    std::fs::create_dir_all(cfg.path().join("update")).unwrap();
    let result = UpdateResult {
        outcome: Outcome::Refused,
        version: "2.0\t\"beta\"".into(),
        stage: "signature".into(),
        reason: "x.minisig:\tnot \\ trusted \u{1}\u{1b}[31m \u{7f}".into(),
        attempt: 2,
        started: 0,
        finished: 1,
        duration_ms: 12_345,
        bytes: 123,
        entries: 456,
        restored: None,
        instruction: None,
    };
    std::fs::write(cfg.path().join(RESULT), result.render()).unwrap();
    let (code, line) = status(cfg.path(), false);
    assert_eq!(code, 2, "{line}");
    assert!(
        line.ends_with(" | attempt=2 duration=12.345s bytes=123B entries=456\n"),
        "{line}"
    );
    let mut glue = Command::new(env!("CARGO_BIN_EXE_bootloader-glue"))
        .args(["status", "--json", "--cfg", cfg_path(&cfg)])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let json = glue.stdout.take().unwrap();
    let python = Command::new("python3")
        .args([
            "-c",
            "import json,sys; d=json.load(sys.stdin); print(repr(d['reason']), d['code'], d['entries'])",
        ])
        .stdin(json)
        .output()
        .expect("python3 is missing: apt-get install python3");
    assert_eq!(glue.wait().unwrap().code(), Some(2));
    let parsed = String::from_utf8_lossy(&python.stdout);
    assert!(
        python.status.success(),
        "not JSON: {}",
        String::from_utf8_lossy(&python.stderr)
    );
    assert_eq!(
        parsed,
        "'x.minisig:\\tnot \\\\ trusted \\x01\\x1b[31m \\x7f' 2 456\n"
    );
}

/// The build writes a man page for the command and each subcommand and
/// the completions for bash, zsh and fish, next to the binary.
#[test]
fn man_pages_and_completions_cover_every_subcommand() {
    let profile: PathBuf = Path::new(env!("CARGO_BIN_EXE_bootloader-glue"))
        .parent()
        .unwrap()
        .to_path_buf();
    let man = profile.join("share/man/man1");
    let completions = profile.join("share/completions");
    let read =
        |p: PathBuf| std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let page = read(man.join("bootloader-glue.1"));
    let bash = read(completions.join("bootloader-glue.bash"));
    read(completions.join("_bootloader-glue"));
    read(completions.join("bootloader-glue.fish"));
    for sub in subcommands() {
        // roff writes a hyphen as `\-`.
        let roff = format!("bootloader\\-glue\\-{}(1)", sub.replace('-', "\\-"));
        assert!(
            page.contains(&roff),
            "bootloader-glue.1 does not name {roff}"
        );
        assert!(
            bash.contains(&sub),
            "the bash completion does not name {sub}"
        );
        let own = read(man.join(format!("bootloader-glue-{sub}.1")));
        assert!(own.contains(".TH bootloader-glue-"), "{sub}: {own}");
    }
}

include!("../../build-support/doc_reference.rs");
include!("../../build-support/clap_options.rs");

/// The table of flags in docs/operations.md is the command line's: each
/// subcommand's row names exactly the flags it takes.
#[test]
fn the_operations_guide_lists_every_flag() {
    let doc = operations_doc();
    for sub in Cli::command().get_subcommands() {
        let options = clap_options(sub);
        assert_documented(&doc, sub.get_name(), &options);
    }
}

/// `request --help` (and its man page) tells the operator how to install
/// again the version a restore took away, and where that is recorded.
#[test]
fn request_help_names_the_override_for_a_version_restored_away() {
    let out = glue(&["request", "--help"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let help = text(&out).split_whitespace().collect::<Vec<_>>().join(" ");
    for says in [
        "--retry-restored",
        "Installs again the version the last restore took away",
        "cfg:update/retry-restored",
        "--no-restore",
    ] {
        assert!(help.contains(says), "{says}: {help}");
    }
    let man = Path::new(env!("CARGO_BIN_EXE_bootloader-glue"))
        .parent()
        .unwrap()
        .join("share/man/man1/bootloader-glue-request.1");
    let page = std::fs::read_to_string(&man).unwrap();
    assert!(page.contains("retry\\-restored"), "{page}");
}
