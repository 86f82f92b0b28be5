//! The daemon with a fake clock against the static feed on the
//! fault-injecting test server: it downloads when the download window
//! opens, waits for the install window, and when the round right before
//! the install fails it sets the update lock and writes no instruction.

mod server;

use agent::config::Config;
use agent::daemon::{Clock, Daemon, Reboot, Turn};
use agent::retry::Policy;
use agent::schedule::Window;
use bootloader_glue::status::{records, Code};
use formats::cfg::{Lock, ACTION, DOWNLOAD_FAILED, INSTRUCTION, LOCK};
use server::{noise, Plan, Server};
use std::fs;
use std::time::Duration;

/// Monday 2026-11-23 00:00:00 UTC.
const MONDAY: u64 = 1_795_392_000;
const H: u64 = 3600;

/// Time that passes only when the daemon sleeps.
#[derive(Debug)]
struct FakeClock {
    now: u64,
}

impl Clock for FakeClock {
    fn now(&self) -> u64 {
        self.now
    }
    fn sleep_until(&mut self, t: u64) {
        self.now = self.now.max(t);
    }
}

/// Turns until `done` says stop (at most `max`), with the time of each.
fn turns_until(
    daemon: &mut Daemon<'_, FakeClock>,
    max: usize,
    done: impl Fn(&Turn) -> bool,
) -> Vec<(u64, Turn)> {
    let mut seen = Vec::new();
    for _ in 0..max {
        let turn = daemon.turn();
        seen.push((daemon.clock.now, turn.clone()));
        if done(&turn) {
            return seen;
        }
    }
    panic!("no end after {max} turns: {seen:?}");
}

#[test]
fn a_failure_right_before_the_install_window_sets_the_lock_and_writes_no_instruction() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let tree = root.join("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("big"), noise(300_000, 3)).unwrap();
    let (public, secret) = image_builder::keygen::keygen(&root.join("vendor")).unwrap();
    let mut files = vec![("/acme/latest".to_string(), b"2.0\n".to_vec())];
    files.extend(server::publish(
        &tree,
        "acme",
        "2.0",
        secret,
        &root.join("out"),
    ));
    fs::write(root.join("recovery.conf"), "product=acme\n").unwrap();
    let cfg = root.join("cfg");
    fs::create_dir_all(cfg.join("update")).unwrap();
    let storage = root.join("storage");
    fs::create_dir_all(&storage).unwrap();
    let server = Server::start_files(files, Plan::good());

    let mut config = Config {
        feed: Some(format!("http://{}", server.addr())),
        recovery_config: root.join("recovery.conf"),
        trusted_keys: vec![public],
        storage_dir: storage.clone(),
        cfg: cfg.clone(),
        retry: Policy {
            attempts: 3,
            first_wait: Duration::from_millis(1),
            max_wait: Duration::from_millis(2),
        },
        min_free: 0,
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(5),
        ..Config::default()
    };
    config.daemon.windows.download = Window::parse("download-window", "daily 02:00-03:00").unwrap();
    config.daemon.windows.install = Window::parse("install-window", "daily 04:00-05:00").unwrap();
    config.daemon.poll_interval = Duration::from_secs(600);
    config.daemon.reboot = Reboot::No;
    config.daemon.state_file = root.join("state");

    let mut source = agent::flow::source(&config).unwrap();
    let clock = FakeClock { now: MONDAY + H };
    let mut daemon = Daemon::new(&config, source.as_mut(), clock);

    // 01:00: offered, but the download waits for 02:00.
    let seen = turns_until(&mut daemon, 50, |t| *t == Turn::Staged);
    let (staged_at, _) = *seen.last().unwrap();
    assert_eq!(staged_at, MONDAY + 2 * H, "{seen:?}");
    assert!(
        !seen
            .iter()
            .any(|(t, turn)| *turn == Turn::Staged && *t < MONDAY + 2 * H),
        "{seen:?}"
    );
    let image = storage.join("acme-2.0.swu");
    assert!(image.exists());
    let state = fs::read_to_string(root.join("state")).unwrap();
    assert!(state.contains("doing=downloading"), "{state}");

    // The staged file goes, and so does the server: the round right
    // before the install cannot get the image again.
    fs::remove_file(&image).unwrap();
    drop(server);
    let seen = turns_until(&mut daemon, 100, |t| *t == Turn::Locked);
    let (locked_at, _) = *seen.last().unwrap();
    assert_eq!(locked_at, MONDAY + 4 * H, "{seen:?}");
    assert!(!seen.iter().any(|(_, t)| *t == Turn::Installed), "{seen:?}");

    // No instruction, no action record; the lock says why; the warning
    // flag is set; bootloader-glue status is CRITICAL with the reason.
    assert!(!cfg.join(INSTRUCTION).exists());
    assert!(!cfg.join(ACTION).exists());
    assert!(cfg.join(DOWNLOAD_FAILED).exists());
    let lock = Lock::parse(&fs::read_to_string(cfg.join(LOCK)).unwrap()).unwrap();
    assert_eq!(lock.attempts, 3);
    assert!(
        lock.reason
            .starts_with("the round before the install of offer 2.0 failed after 3 attempt(s): "),
        "{}",
        lock.reason
    );
    let status = records(&cfg);
    assert_eq!(status.code, Code::Critical);
    assert!(status.message.contains(&lock.reason), "{}", status.message);

    // Under the lock the schedule is off: polls and waits, nothing else,
    // through the next day's windows.
    let mut later = Vec::new();
    while daemon.clock.now < MONDAY + 30 * H {
        later.push(daemon.turn());
        assert!(later.len() < 1000, "{later:?}");
    }
    assert!(
        later
            .iter()
            .all(|t| matches!(t, Turn::Polled | Turn::Waited { .. })),
        "{later:?}"
    );
    let state = fs::read_to_string(root.join("state")).unwrap();
    assert!(state.contains("bootloader-glue unlock"), "{state}");
}
