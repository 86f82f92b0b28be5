//! The systemd units in `agent/systemd/` agree with the program: each
//! `ExecStart=` is a command line the agent takes, and the paths they
//! wait for are the configuration's defaults.

use agent::cli::{Cli, Command};
use clap::Parser;
use std::path::Path;

fn unit(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The value of `key=` in the unit (the only such line).
fn value<'a>(text: &'a str, key: &str) -> &'a str {
    let mut found = text
        .lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='));
    let v = found.next().unwrap_or_else(|| panic!("no {key}="));
    assert!(found.next().is_none(), "{key}= twice");
    v
}

fn exec_start(text: &str) -> Command {
    let words: Vec<&str> = value(text, "ExecStart").split_whitespace().collect();
    assert_eq!(words[0], "/usr/bin/reimage-agent");
    Cli::try_parse_from(&words).unwrap().command
}

#[test]
fn the_units_run_commands_the_agent_takes_on_the_default_paths() {
    let defaults = agent::config::Config::default();
    let daemon = unit("reimage-agent.service");
    assert!(matches!(exec_start(&daemon), Command::Run(_)));
    let mounts = value(&daemon, "RequiresMountsFor");
    assert!(mounts.contains(&defaults.cfg.display().to_string()));
    let storage = defaults.storage_dir.parent().unwrap().display().to_string();
    assert!(mounts.split(' ').any(|m| m == storage), "{mounts}");
    assert_eq!(
        format!("/run/{}/state", value(&daemon, "RuntimeDirectory")),
        defaults.daemon.state_file.display().to_string()
    );
    assert_eq!(value(&daemon, "ConditionPathExists"), agent::config::PATH);

    let report = unit("reimage-agent-report.service");
    assert!(matches!(exec_start(&report), Command::Report(_)));
    assert_eq!(value(&report, "Type"), "oneshot");
    assert_eq!(
        Path::new(value(&report, "ConditionPathExists")),
        defaults.cfg.join(formats::cfg::ACTION)
    );
}

#[test]
fn the_timer_starts_a_download_that_writes_no_instruction() {
    let defaults = agent::config::Config::default();
    let service = unit("reimage-agent-download.service");
    assert!(matches!(exec_start(&service), Command::Download(_)));
    assert_eq!(value(&service, "Type"), "oneshot");
    assert_eq!(value(&service, "ConditionPathExists"), agent::config::PATH);
    let mounts = value(&service, "RequiresMountsFor");
    assert!(
        mounts.contains(&defaults.cfg.display().to_string()),
        "{mounts}"
    );

    let timer = unit("reimage-agent-download.timer");
    assert_eq!(value(&timer, "Unit"), "reimage-agent-download.service");
    assert!(!value(&timer, "OnCalendar").is_empty());
    assert_eq!(value(&timer, "WantedBy"), "timers.target");
}
