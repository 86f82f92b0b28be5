//! `reimage-agent run`: the daemon. It polls the source at its interval,
//! downloads an offer when the download window opens, and when the
//! install window opens makes another round of attempts (the staged file
//! checked again, fetched again when it is gone or wrong) before it writes
//! the instruction. When that round fails, nothing is installed: the
//! update lock is set (the recovery's own, `formats::cfg::Lock`), which
//! switches the schedule off until `bootloader-glue unlock`.
//!
//! Deciding is apart from doing: [`decide`] is a pure function of the
//! time, the windows and what the agent knows; [`Daemon`] only carries out
//! its steps, with the clock passed in ([`Clock`]), so the tests run days
//! of schedule in milliseconds.

use crate::config::Config;
use crate::flow::{self, FlowError, Staged};
use crate::outcome::{self, PostUpdate};
use crate::post_update;
use crate::schedule::Window;
use crate::source::{Check, Mode, Offer, Report, Source};
use crate::state::{Doing, State};
use formats::cfg::{shown, Lock, INSTRUCTION, LOCK};
use formats::keyvalue::{KeyValueError, Pair};
use formats::units::utc;
use std::path::PathBuf;
use std::time::Duration;

/// The keys of the daemon's section of the agent's configuration.
pub const KEYS: &[&str] = &[
    "download-window",
    "install-window",
    "poll-interval",
    "post-update",
    "post-update-timeout",
    "reboot",
    "state-file",
];

/// What to do once the instruction is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reboot {
    /// Nothing: the next boot, whenever it comes, installs the update.
    No,
    /// Sync, then `reboot(2)` at once (a device without an init system
    /// that shuts down in order).
    Now,
    /// Run this command with `/bin/sh -c` (default `systemctl reboot`).
    Command(String),
}

/// The daemon's section of the agent's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    pub windows: Windows,
    /// How often to ask the source when it does not say (the feed, an
    /// unreachable server, an offer being worked on).
    pub poll_interval: Duration,
    /// The post-update command (`post-update=`) and how long it may run.
    pub post_update_command: Option<String>,
    pub post_update_timeout: Duration,
    pub reboot: Reboot,
    /// Where the daemon keeps its state for `reimage-agent status`.
    pub state_file: PathBuf,
}

impl Default for DaemonConfig {
    fn default() -> DaemonConfig {
        DaemonConfig {
            windows: Windows::default(),
            poll_interval: Duration::from_secs(3600),
            post_update_command: None,
            post_update_timeout: post_update::DEFAULT_TIMEOUT,
            reboot: Reboot::Command("systemctl reboot".into()),
            state_file: PathBuf::from("/run/reimage-agent/state"),
        }
    }
}

impl DaemonConfig {
    /// The post-update command, if one is configured.
    pub fn post_update(&self) -> Option<PostUpdate> {
        self.post_update_command.as_ref().map(|command| PostUpdate {
            command: command.clone(),
            timeout: self.post_update_timeout,
        })
    }

    /// Takes one of [`KEYS`] from the configuration file.
    pub fn set(&mut self, pair: &Pair<'_>) -> Result<(), KeyValueError> {
        let window = |pair: &Pair<'_>| {
            Window::parse(pair.key, pair.value).map_err(|e| pair.bad(&e.detail()))
        };
        match pair.key {
            "download-window" => self.windows.download = window(pair)?,
            "install-window" => self.windows.install = window(pair)?,
            "poll-interval" => self.poll_interval = crate::config::seconds(pair)?,
            "post-update" => {
                self.post_update_command =
                    (!pair.value.trim().is_empty()).then(|| pair.value.to_string())
            }
            "post-update-timeout" => self.post_update_timeout = crate::config::seconds(pair)?,
            "reboot" => {
                self.reboot = match pair.value {
                    "no" => Reboot::No,
                    "now" => Reboot::Now,
                    "" => return Err(pair.bad("expected no, now or a command")),
                    command => Reboot::Command(command.to_string()),
                }
            }
            "state-file" => {
                if !pair.value.starts_with('/') {
                    return Err(pair.bad("expected an absolute path"));
                }
                self.state_file = PathBuf::from(pair.value);
            }
            _ => unreachable!("only the daemon's KEYS come here"),
        }
        Ok(())
    }
}

/// The two windows of the agent's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// When offers are downloaded (`download-window`).
    pub download: Window,
    /// When staged offers are installed (`install-window`).
    pub install: Window,
}

impl Default for Windows {
    /// No schedule: download and install as soon as offered.
    fn default() -> Windows {
        Windows {
            download: Window::Always,
            install: Window::Always,
        }
    }
}

/// What the daemon knows at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Situation<'a> {
    /// Seconds since 1970.
    pub now: u64,
    /// Whether `cfg:update/lock` is there.
    pub locked: bool,
    /// The offer from the last answer of the source, if any.
    pub offer: Option<&'a Offer>,
    /// Whether that offer is downloaded and verified.
    pub staged: bool,
    /// When the source is to be asked again.
    pub next_poll: u64,
    /// Whether an instruction is written and waits for the reboot.
    pub pending: bool,
    /// After a failed round of download attempts: not before this time
    /// (the next start of the download window).
    pub stage_again_after: u64,
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Ask the source.
    Poll,
    /// Download and verify the offer.
    Stage,
    /// The round before the install (check the staged file, fetch it again
    /// if needed), then the instruction.
    Install,
    /// Nothing until `until` (or until the next poll, which is no later).
    Wait { until: u64, why: String },
}

/// The next step. Polling comes first when it is due. Under the update
/// lock nothing is downloaded or installed. hawkBit's `forced` overrides
/// the agent's windows; `skip`, and an unavailable maintenance window for
/// the install, mean: download and verify, then wait.
pub fn decide(windows: &Windows, s: &Situation<'_>) -> Step {
    if s.now >= s.next_poll {
        return Step::Poll;
    }
    let wait = |until: u64, why: String| Step::Wait {
        until: until.min(s.next_poll),
        why,
    };
    let poll = || wait(s.next_poll, String::new());
    if s.locked {
        return wait(
            s.next_poll,
            "the update lock is set (cfg:update/lock): nothing is downloaded or installed \
             until an operator runs bootloader-glue unlock"
                .into(),
        );
    }
    if s.pending {
        return wait(
            s.next_poll,
            format!(
                "an update is requested ({}): the next boot installs it",
                shown(INSTRUCTION)
            ),
        );
    }
    let Some(offer) = s.offer else {
        return poll();
    };
    let version = offer.version.as_deref().unwrap_or("?");
    if !s.staged {
        if s.now < s.stage_again_after {
            return wait(
                s.stage_again_after,
                format!(
                    "{version} (offer {}): the last round of download attempts failed; \
                     the next round at {}",
                    offer.id,
                    utc(s.stage_again_after)
                ),
            );
        }
        return match offer.download {
            Mode::Forced => Step::Stage,
            Mode::Skip => wait(
                s.next_poll,
                format!(
                    "{version} (offer {}): the source says not to download yet",
                    offer.id
                ),
            ),
            Mode::Attempt => in_window(
                &windows.download,
                s.now,
                Step::Stage,
                wait,
                format!("{version} (offer {}): download window", offer.id),
            ),
        };
    }
    if !offer.window_open {
        return wait(
            s.next_poll,
            format!(
                "{version} (offer {}) is staged; the maintenance window is unavailable",
                offer.id
            ),
        );
    }
    match offer.install {
        Mode::Forced => Step::Install,
        Mode::Skip => wait(
            s.next_poll,
            format!(
                "{version} (offer {}) is staged; the source says not to install yet",
                offer.id
            ),
        ),
        Mode::Attempt => in_window(
            &windows.install,
            s.now,
            Step::Install,
            wait,
            format!("{version} (offer {}) is staged: install window", offer.id),
        ),
    }
}

/// `step` when `window` is open at `now`; otherwise a wait for it.
fn in_window(
    window: &Window,
    now: u64,
    step: Step,
    wait: impl Fn(u64, String) -> Step,
    what: String,
) -> Step {
    if window.is_open(now) {
        return step;
    }
    match window.next_open(now) {
        Some(at) => wait(at, format!("{what} {window} opens at {}", utc(at))),
        None => wait(u64::MAX, format!("{what} {window} never opens")),
    }
}

/// The time, for the daemon: the system clock, or a fake one in tests.
pub trait Clock {
    /// Seconds since 1970.
    fn now(&self) -> u64;
    /// Returns at `t` (or as soon after as it can).
    fn sleep_until(&mut self, t: u64);
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn sleep_until(&mut self, t: u64) {
        // In slices, so that a clock set forward (NTP after boot) is seen.
        let left = t.saturating_sub(self.now()).min(60);
        std::thread::sleep(Duration::from_secs(left.max(1)));
    }
}

/// What one turn of the daemon did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    Polled,
    Staged,
    /// The round of download attempts failed (the warning flag is set).
    StageFailed,
    /// The round before the install failed: the update lock is set and no
    /// instruction was written.
    Locked,
    /// The instruction is written.
    Installed,
    /// Writing the instruction failed; tried again at the next poll.
    InstallFailed,
    /// The server cancelled the offer during the round before the install:
    /// the cancel is honoured, the offer dropped, no lock.
    Cancelled,
    Waited {
        until: u64,
    },
}

/// Whether a failed round right before the install sets the update lock:
/// every failure does, except a cancel by the server, which is honoured
/// like a cancel at a poll (docs/agent.md).
pub fn locks(e: &FlowError) -> bool {
    !matches!(e, FlowError::Cancelled { .. })
}

/// The daemon: what it knows, and the loop that carries out [`decide`].
pub struct Daemon<'a, C: Clock> {
    config: &'a Config,
    source: &'a mut dyn Source,
    pub clock: C,
    offer: Option<Offer>,
    staged: Option<Staged>,
    /// Offers refused for good (signature, product, version): never staged again.
    refused: Vec<String>,
    next_poll: u64,
    stage_again_after: u64,
    /// The reason of the last wait, logged once per change.
    last_why: String,
    /// Whether the state file could not be written (logged once).
    state_unwritable: bool,
}

impl<'a, C: Clock> Daemon<'a, C> {
    pub fn new(config: &'a Config, source: &'a mut dyn Source, clock: C) -> Daemon<'a, C> {
        Daemon {
            config,
            source,
            clock,
            offer: None,
            staged: None,
            refused: Vec::new(),
            next_poll: 0,
            stage_again_after: 0,
            last_why: String::new(),
            state_unwritable: false,
        }
    }

    fn daemon(&self) -> &DaemonConfig {
        &self.config.daemon
    }

    /// Reports the outcome of the last update, if one is recorded on
    /// `cfg` (at the start, and at each poll while the source has not
    /// heard it). Failures are logged: the record stays for the next try.
    pub fn report_outcome(&mut self) {
        let post = self.daemon().post_update();
        if let Err(e) = outcome::report(&self.config.cfg, self.source, post.as_ref()) {
            log::warn!("{}", chain(&e));
        }
    }

    /// Runs turns for ever; after writing the instruction it reboots as
    /// configured (and, with `reboot=no`, waits for the boot that comes).
    /// Returns only when the reboot failed.
    pub fn run(&mut self) -> Result<(), String> {
        self.report_outcome();
        loop {
            if self.turn() == Turn::Installed {
                reboot(&self.daemon().reboot)?;
            }
        }
    }

    /// Decides one step and carries it out.
    pub fn turn(&mut self) -> Turn {
        let now = self.clock.now();
        let config = self.config;
        let cfg = &config.cfg;
        let situation = Situation {
            now,
            locked: cfg.join(LOCK).exists(),
            offer: self.offer.as_ref(),
            staged: self.staged.is_some(),
            next_poll: self.next_poll,
            pending: cfg.join(INSTRUCTION).exists(),
            stage_again_after: self.stage_again_after,
        };
        let step = decide(&config.daemon.windows, &situation);
        match step {
            Step::Poll => {
                self.save(now, Doing::Polling, None, "");
                self.poll(now);
                Turn::Polled
            }
            Step::Stage => {
                self.save(now, Doing::Downloading, None, "");
                self.stage(now)
            }
            Step::Install => {
                self.save(now, Doing::Installing, None, "");
                self.install()
            }
            Step::Wait { until, why } => {
                if why != self.last_why && !why.is_empty() {
                    log::info!("{why}");
                }
                self.save(now, Doing::Waiting, Some(until), &why);
                self.last_why = why;
                self.clock.sleep_until(until);
                Turn::Waited { until }
            }
        }
    }

    fn poll(&mut self, now: u64) {
        if outcome::current(&self.config.cfg).is_ok_and(|a| a.is_some()) {
            self.report_outcome();
        }
        self.next_poll = now + self.daemon().poll_interval.as_secs();
        match flow::check(self.config, self.source) {
            Ok(Check::Nothing { again_after }) => {
                if let Some(offer) = self.offer.take() {
                    log::info!("offer {} is no longer offered", offer.id);
                }
                self.staged = None;
                self.next_poll = now + again_after.as_secs().max(1);
            }
            Ok(Check::Offer(offer)) => {
                if self.refused.contains(&offer.id) {
                    self.offer = None;
                    return;
                }
                if self.offer.as_ref().is_none_or(|o| o.id != offer.id) {
                    log::info!(
                        "{}: offers {} (offer {})",
                        self.source.name(),
                        offer.version.as_deref().unwrap_or("an update"),
                        offer.id
                    );
                    self.staged = None;
                    self.stage_again_after = 0;
                }
                self.offer = Some(offer);
            }
            Ok(Check::Cancel { id }) => {
                let ours = self.offer.as_ref().is_some_and(|o| o.id == id);
                let accepted = !self.config.cfg.join(INSTRUCTION).exists();
                if ours && accepted {
                    self.offer = None;
                    self.staged = None;
                }
                let details = if accepted {
                    "cancelled before the instruction was written".to_string()
                } else {
                    "the instruction is written: the next boot installs the update".to_string()
                };
                log::info!(
                    "offer {id}: cancel {}: {details}",
                    if accepted { "honoured" } else { "refused" }
                );
                if let Err(e) = self
                    .source
                    .report(&id, &Report::Cancelled { accepted, details })
                {
                    log::warn!("{e}");
                }
            }
            Err(e) => log::warn!("asking {}: {}", self.source.name(), chain(&e)),
        }
    }

    fn stage(&mut self, now: u64) -> Turn {
        let Some(offer) = self.offer.clone() else {
            return Turn::StageFailed;
        };
        match flow::stage(self.config, self.source, &offer) {
            Ok(staged) => {
                self.staged = Some(staged);
                Turn::Staged
            }
            Err(e) => {
                log::error!("{}", chain(&e));
                if e.refused().is_some() {
                    // Reported as failed by the flow; the same offer never does.
                    self.refused.push(offer.id.clone());
                    self.offer = None;
                } else {
                    let after = self.clock.now().max(now);
                    self.stage_again_after = match offer.download {
                        Mode::Attempt => self.daemon().windows.download.next_start(after),
                        _ => None,
                    }
                    .filter(|&t| t > after)
                    .unwrap_or(after + self.daemon().poll_interval.as_secs());
                }
                Turn::StageFailed
            }
        }
    }

    /// The round before the install, then the instruction.
    fn install(&mut self) -> Turn {
        let Some(offer) = self.offer.clone() else {
            return Turn::InstallFailed;
        };
        log::info!(
            "offer {}: checking the staged image again before the install",
            offer.id
        );
        let staged = match flow::stage(self.config, self.source, &offer) {
            Ok(staged) => staged,
            Err(e) if locks(&e) => return self.lock(&offer, &e),
            Err(e) => {
                // The server cancelled the offer during this round; the
                // flow has acknowledged it and thrown the download away.
                log::info!("offer {}: {e}; nothing installed", offer.id);
                self.offer = None;
                self.staged = None;
                self.next_poll = self.clock.now() + self.daemon().poll_interval.as_secs();
                return Turn::Cancelled;
            }
        };
        let new = staged.manifest.version.clone();
        // flow::install keeps the action record (for the report after the
        // reboot) before it writes the instruction.
        match flow::install(self.config, self.source, &staged) {
            Ok(_) => {
                let report = Report::Proceeding {
                    what: format!("the instruction to install {new} is written; rebooting"),
                    percent: None,
                };
                if let Err(e) = self.source.report(&offer.id, &report) {
                    log::warn!("{e}");
                }
                Turn::Installed
            }
            Err(e) => {
                log::error!("{}", chain(&e));
                if e.refused_install().is_some() {
                    // Reported as failed by the flow; the same offer never does.
                    self.refused.push(offer.id.clone());
                    self.offer = None;
                }
                self.staged = None;
                self.next_poll = self.clock.now() + self.daemon().poll_interval.as_secs();
                Turn::InstallFailed
            }
        }
    }

    /// The round before the install failed: no instruction, the lock.
    fn lock(&mut self, offer: &Offer, e: &FlowError) -> Turn {
        let (attempts, last) = match e {
            FlowError::Stage { image, failure } => (
                failure.errors.len() as u64,
                format!(
                    "{image}: {}",
                    failure
                        .errors
                        .last()
                        .map_or(String::new(), |e| e.to_string())
                ),
            ),
            e => (0, chain(e)),
        };
        let reason = format!(
            "the round before the install of offer {} failed after {attempts} attempt(s): {last}",
            offer.id
        );
        let lock = Lock {
            attempts,
            reason: reason.clone(),
        };
        let path = self.config.cfg.join(LOCK);
        match formats::store::write_atomic(&path, lock.render().as_bytes()) {
            Ok(()) => log::error!(
                "{reason}; not installed; {} set: nothing is downloaded or installed until \
                 bootloader-glue unlock",
                shown(LOCK)
            ),
            Err(io) => log::error!(
                "{reason}; not installed; {}: cannot write: {io}",
                shown(LOCK)
            ),
        }
        let report = Report::Closed {
            success: false,
            details: format!("{reason}; the update lock is set"),
        };
        if let Err(e) = self.source.report(&offer.id, &report) {
            log::warn!("{e}");
        }
        self.offer = None;
        self.staged = None;
        Turn::Locked
    }

    /// Writes the state for `reimage-agent status`; a failure is logged once.
    fn save(&mut self, now: u64, doing: Doing, until: Option<u64>, why: &str) {
        let state = State {
            updated: now,
            source: self.source.name().to_string(),
            offer: self.offer.as_ref().map(|o| o.id.clone()),
            version: self.offer.as_ref().and_then(|o| o.version.clone()),
            staged: self.staged.as_ref().map(|s| s.image.display().to_string()),
            doing,
            until,
            why: why.to_string(),
        };
        let path = &self.config.daemon.state_file;
        match formats::store::write_atomic(path, state.render().as_bytes()) {
            Ok(()) => self.state_unwritable = false,
            Err(e) if !self.state_unwritable => {
                log::warn!("{}: cannot write the state for status: {e}", path.display());
                self.state_unwritable = true;
            }
            Err(_) => {}
        }
    }
}

/// An error and its causes on one line: `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text += &format!(": {c}");
        cause = c.source();
    }
    text
}

/// Reboots as configured after the instruction is written.
pub fn reboot(how: &Reboot) -> Result<(), String> {
    match how {
        Reboot::No => {
            log::info!("reboot=no: the next boot installs the update");
            Ok(())
        }
        Reboot::Now => {
            log::info!("rebooting");
            nix::unistd::sync();
            let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
            Err(format!("cannot reboot: {e}"))
        }
        Reboot::Command(command) => {
            log::info!("rebooting: {command}");
            let status = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(command)
                .status()
                .map_err(|e| format!("reboot={command}: cannot start /bin/sh: {e}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("reboot={command}: {status}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_in_the_round_before_the_install_does_not_lock() {
        assert!(!locks(&FlowError::Cancelled { id: "7".into() }));
        assert!(locks(&FlowError::Setup("no keys".into())));
        assert!(locks(&FlowError::Offer {
            id: "7".into(),
            reason: "no bundle".into()
        }));
    }

    /// Monday 2026-11-23 00:00:00 UTC.
    const MONDAY: u64 = 1_795_392_000;
    const H: u64 = 3600;

    fn windows() -> Windows {
        Windows {
            download: Window::parse("download-window", "daily 02:00-04:00").unwrap(),
            install: Window::parse("install-window", "daily 04:00-05:00").unwrap(),
        }
    }

    fn offer(download: Mode, install: Mode, window_open: bool) -> Offer {
        Offer {
            id: "42".into(),
            version: Some("2.0".into()),
            artifacts: vec![],
            download,
            install,
            window_open,
        }
    }

    fn at(now: u64, offer: Option<&Offer>, staged: bool, locked: bool) -> Situation<'_> {
        Situation {
            now,
            locked,
            offer,
            staged,
            next_poll: now + H / 2,
            pending: false,
            stage_again_after: 0,
        }
    }

    fn wait_until(step: Step) -> u64 {
        match step {
            Step::Wait { until, .. } => until,
            step => panic!("{step:?}"),
        }
    }

    #[test]
    fn the_daemons_keys_are_read_from_the_agents_config() {
        let text = "feed=http://h/\npost-update-timeout=30\npost-update=/usr/bin/after --x\n\
            download-window=Mon-Fri 22:00-02:00\ninstall-window=daily 03:00-04:00 UTC+01:00\n\
            poll-interval=600\nreboot=now\nstate-file=/run/x/state\n";
        let c = Config::parse(text).unwrap().daemon;
        assert_eq!(
            c.windows.download.to_string(),
            "Mon,Tue,Wed,Thu,Fri 22:00-02:00"
        );
        assert_eq!(c.windows.install.to_string(), "daily 03:00-04:00 UTC+01:00");
        assert_eq!(c.poll_interval, Duration::from_secs(600));
        assert_eq!(
            c.post_update(),
            Some(PostUpdate {
                command: "/usr/bin/after --x".into(),
                timeout: Duration::from_secs(30)
            })
        );
        assert_eq!(c.reboot, Reboot::Now);
        assert_eq!(c.state_file, PathBuf::from("/run/x/state"));
        let defaults = Config::parse("feed=http://h/\n").unwrap().daemon;
        assert_eq!(defaults, DaemonConfig::default());
        assert_eq!(defaults.windows, Windows::default());
        assert_eq!(defaults.reboot, Reboot::Command("systemctl reboot".into()));
        let custom = Config::parse("feed=http://h/\nreboot=/sbin/reboot -f\n").unwrap();
        assert_eq!(
            custom.daemon.reboot,
            Reboot::Command("/sbin/reboot -f".into())
        );
        for (line, expected) in [
            (
                "install-window=Mon-Fir 02:00-04:00",
                "line 2: install-window=\"Mon-Fir 02:00-04:00\": \"Fir\" is not a day",
            ),
            (
                "download-window=",
                "the value is empty; expected `always` or",
            ),
            ("poll-interval=0", "expected at least 1 second"),
            ("post-update-timeout=x", "expected a decimal number"),
            ("reboot=", "expected no, now or a command"),
            ("state-file=run/state", "expected an absolute path"),
        ] {
            let e = Config::parse(&format!("feed=http://h/\n{line}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(expected), "{line}: {e}");
        }
    }

    #[test]
    fn polling_comes_first_and_nothing_offered_waits_for_the_next_poll() {
        let w = windows();
        let mut s = at(MONDAY, None, false, false);
        assert_eq!(wait_until(decide(&w, &s)), MONDAY + H / 2);
        s.next_poll = MONDAY;
        assert_eq!(decide(&w, &s), Step::Poll);
    }

    #[test]
    fn the_download_waits_for_its_window_and_the_install_for_its_own() {
        let w = windows();
        let o = offer(Mode::Attempt, Mode::Attempt, true);
        // 01:00: the download window opens at 02:00; the poll is earlier.
        let step = decide(&w, &at(MONDAY + H, Some(&o), false, false));
        assert_eq!(wait_until(step), MONDAY + H + H / 2);
        let mut s = at(MONDAY + H, Some(&o), false, false);
        s.next_poll = MONDAY + 10 * H;
        let Step::Wait { until, why } = decide(&w, &s) else {
            panic!()
        };
        assert_eq!(until, MONDAY + 2 * H);
        assert_eq!(
            why,
            "2.0 (offer 42): download window daily 02:00-04:00 opens at 2026-11-23T02:00:00Z"
        );
        // 02:00: download.
        assert_eq!(
            decide(&w, &at(MONDAY + 2 * H, Some(&o), false, false)),
            Step::Stage
        );
        // Staged at 03:00: wait for 04:00, then install.
        let mut s = at(MONDAY + 3 * H, Some(&o), true, false);
        s.next_poll = MONDAY + 10 * H;
        assert_eq!(wait_until(decide(&w, &s)), MONDAY + 4 * H);
        assert_eq!(
            decide(&w, &at(MONDAY + 4 * H, Some(&o), true, false)),
            Step::Install
        );
        // Staged after the install window: the next day's.
        let mut s = at(MONDAY + 6 * H, Some(&o), true, false);
        s.next_poll = MONDAY + 100 * H;
        assert_eq!(wait_until(decide(&w, &s)), MONDAY + 28 * H);
    }

    #[test]
    fn forced_overrides_the_windows_but_not_the_maintenance_window() {
        let w = windows();
        let o = offer(Mode::Forced, Mode::Forced, true);
        let noon = MONDAY + 12 * H;
        assert_eq!(decide(&w, &at(noon, Some(&o), false, false)), Step::Stage);
        assert_eq!(decide(&w, &at(noon, Some(&o), true, false)), Step::Install);
        let closed = offer(Mode::Forced, Mode::Forced, false);
        // Downloading goes on in a closed maintenance window; installing waits.
        assert_eq!(
            decide(&w, &at(noon, Some(&closed), false, false)),
            Step::Stage
        );
        let Step::Wait { why, .. } = decide(&w, &at(noon, Some(&closed), true, false)) else {
            panic!()
        };
        assert!(why.contains("maintenance window is unavailable"), "{why}");
    }

    #[test]
    fn skip_stages_then_waits() {
        let w = Windows::default();
        let o = offer(Mode::Attempt, Mode::Skip, true);
        assert_eq!(decide(&w, &at(MONDAY, Some(&o), false, false)), Step::Stage);
        let Step::Wait { until, why } = decide(&w, &at(MONDAY, Some(&o), true, false)) else {
            panic!()
        };
        assert_eq!(until, MONDAY + H / 2);
        assert!(why.contains("not to install yet"), "{why}");
        let o = offer(Mode::Skip, Mode::Skip, true);
        let Step::Wait { why, .. } = decide(&w, &at(MONDAY, Some(&o), false, false)) else {
            panic!()
        };
        assert!(why.contains("not to download yet"), "{why}");
    }

    #[test]
    fn the_lock_stops_everything_but_polling() {
        let w = Windows::default();
        let o = offer(Mode::Forced, Mode::Forced, true);
        for staged in [false, true] {
            let Step::Wait { until, why } = decide(&w, &at(MONDAY, Some(&o), staged, true)) else {
                panic!()
            };
            assert_eq!(until, MONDAY + H / 2);
            assert!(why.contains("bootloader-glue unlock"), "{why}");
        }
        let mut s = at(MONDAY, Some(&o), false, true);
        s.next_poll = MONDAY;
        assert_eq!(decide(&w, &s), Step::Poll);
    }

    #[test]
    fn a_pending_instruction_and_a_failed_round_wait() {
        let w = Windows::default();
        let o = offer(Mode::Forced, Mode::Forced, true);
        let mut s = at(MONDAY, Some(&o), true, false);
        s.pending = true;
        let Step::Wait { why, .. } = decide(&w, &s) else {
            panic!()
        };
        assert!(why.contains("the next boot installs it"), "{why}");
        let mut s = at(MONDAY, Some(&o), false, false);
        s.stage_again_after = MONDAY + H / 4;
        let Step::Wait { until, why } = decide(&w, &s) else {
            panic!()
        };
        assert_eq!(until, MONDAY + H / 4);
        assert!(
            why.contains("the next round at 2026-11-23T00:15:00Z"),
            "{why}"
        );
        s.now = MONDAY + H / 4;
        assert_eq!(decide(&w, &s), Step::Stage);
    }

    #[test]
    fn a_window_without_days_waits_for_the_next_poll() {
        let never = Window::Weekly(crate::schedule::Weekly {
            days: [false; 7],
            start: 0,
            length: 60,
            offset: 0,
        });
        let w = Windows {
            download: never,
            install: never,
        };
        let o = offer(Mode::Attempt, Mode::Attempt, true);
        let Step::Wait { until, why } = decide(&w, &at(MONDAY, Some(&o), false, false)) else {
            panic!()
        };
        assert_eq!(until, MONDAY + H / 2);
        assert!(why.ends_with("never opens"), "{why}");
    }
}
