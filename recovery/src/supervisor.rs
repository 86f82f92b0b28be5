//! The recovery cannot hang: a supervisor thread beside PID 1's main flow
//! enforces a deadline for each long stage, and keeps the hardware
//! watchdog (`/dev/watchdog`, where the kernel has one) alive only while
//! the main flow makes progress.
//!
//! - **Deadlines** (`deadline-verify`, `-erase`, `-extract`, `-sync` in the
//!   recovery config): a fixed part plus a part per 100 MiB of the image
//!   ([`Deadline::limit`]). A stage past its deadline is handed to the
//!   handler PID 1 gave [`start`]: it records the failure of that stage
//!   (refused before the erase) and reboots.
//! - **Watchdog**: opened with the configured timeout and kept alive every
//!   second. In a stage that reads the payload (verification, extraction)
//!   every block and entry is progress ([`beat`]); when none comes for
//!   `watchdog-stall` seconds the supervisor stops keeping the watchdog
//!   alive, hands the hang to the handler (which records it), and the
//!   hardware resets the machine even if nothing else in PID 1 can run.
//!   Before a deliberate long wait (the console under the update lock)
//!   [`disarm`] stops it with the magic close.
//! - **The end**: once the update is over ([`leave`]), recording the
//!   outcome and rebooting get [`ending_limit`]; past it the supervisor
//!   reboots without sync ([`reboot_now`]), unless PID 1 stays on purpose
//!   ([`disarm`]).
//!
//! The outcome of the update is recorded once: by the main flow or by the
//! hang handler, whichever claims the end first ([`End::claim`]). A
//! handler that records on storage that hangs would hang with it: it
//! records on a thread of its own and waits for it only so long
//! ([`within`]), then reboots without syncing.
//!
//! The decision, which stage overran or stalled by how much, is the pure
//! function [`verdict`]. Outside PID 1 (the host commands, the tests)
//! nothing is started and every call here does nothing.

use crate::error::{Stage, UpdateError};
use formats::config::{Config, Deadline};
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{
    AtomicBool, AtomicU64, AtomicU8, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed,
};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where Linux exposes the first watchdog.
pub const DEVICE: &str = "/dev/watchdog";
/// How often the supervisor looks and keeps the watchdog alive.
const TICK: Duration = Duration::from_secs(1);

/// How the main flow hung.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hang {
    /// The stage ran past its deadline: the handler records it and reboots.
    Deadline,
    /// No progress for `watchdog-stall` seconds: the watchdog is no longer
    /// kept alive; the handler records it and the hardware resets.
    Stalled,
}

/// What the supervisor decided at one look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Fine,
    Overran {
        stage: Stage,
        limit: Duration,
        by: Duration,
    },
    Stalled {
        stage: Stage,
        quiet: Duration,
    },
    /// The update ended this long ago and PID 1 has neither rebooted nor
    /// stopped the watchdog (recording the outcome or the sync before the
    /// reboot hangs on the storage): the supervisor reboots without
    /// syncing, and the watchdog is no longer kept alive (nothing more is
    /// recorded).
    Overdue {
        waited: Duration,
    },
}

/// The deadline of each supervised stage; `None` for the short ones.
/// Verification is supervised as [`Stage::Payload`]; everything before it
/// (waiting for the disks, mounting, reading the instruction) as
/// [`Stage::Disks`], with `disk-wait` and two minutes.
pub fn deadline_of(config: &Config, stage: Stage) -> Option<Deadline> {
    match stage {
        Stage::Disks => Some(Deadline::new(config.disk_wait.saturating_add(120), 0)),
        Stage::Payload => Some(config.deadline_verify),
        Stage::Erase => Some(config.deadline_erase),
        Stage::Extract => Some(config.deadline_extract),
        Stage::Sync => Some(config.deadline_sync),
        _ => None,
    }
}

/// Stages in which the payload flows, so that a pause in progress is a
/// stall; the others wait on one long call (mkfs, syncfs) and only their
/// deadline applies.
fn reports_progress(stage: Stage) -> bool {
    matches!(stage, Stage::Payload | Stage::Extract)
}

/// How long the steps after the update (the result, the failure message's
/// `failure-delay`, the reboot) may take before the supervisor reboots
/// without sync and the watchdog is no longer kept alive.
pub fn ending_limit(config: &Config) -> Duration {
    Duration::from_secs(config.failure_delay.saturating_add(30))
}

/// What the supervisor sees at one look.
#[derive(Debug, Clone, Copy, Default)]
pub struct Look {
    /// The stage that runs, if any.
    pub stage: Option<Stage>,
    /// How long it has run.
    pub running: Duration,
    /// The image's unpacked size, 0 until known.
    pub unpacked: u64,
    /// How long ago the last progress was (or the stage started).
    pub quiet: Duration,
    /// The watchdog's stall limit; None without a watchdog.
    pub stall: Option<Duration>,
    /// How long ago the update ended, once it has.
    pub ended: Option<Duration>,
}

/// The decision, from what the supervisor sees.
pub fn verdict(config: &Config, look: &Look) -> Verdict {
    let Some(stage) = look.stage else {
        return match look.ended {
            Some(waited) if waited > ending_limit(config) => Verdict::Overdue { waited },
            _ => Verdict::Fine,
        };
    };
    let (running, unpacked, quiet, stall) = (look.running, look.unpacked, look.quiet, look.stall);
    if let Some(deadline) = deadline_of(config, stage) {
        let limit = deadline.limit(unpacked);
        if running > limit {
            return Verdict::Overran {
                stage,
                limit,
                by: running - limit,
            };
        }
    }
    match stall {
        Some(stall) if reports_progress(stage) && quiet > stall => {
            Verdict::Stalled { stage, quiet }
        }
        _ => Verdict::Fine,
    }
}

/// The message for a hang, as the handler records it.
pub fn describe(verdict: &Verdict) -> Option<(UpdateError, Hang)> {
    match *verdict {
        Verdict::Fine | Verdict::Overdue { .. } => None,
        Verdict::Overran { stage, limit, by } => Some((
            UpdateError::new(
                stage,
                "deadline",
                format!(
                    "the stage overran its deadline of {} s by {} s (deadline-* in the \
                     recovery config): hung, or the storage is far slower than expected",
                    limit.as_secs(),
                    by.as_secs()
                ),
            ),
            Hang::Deadline,
        )),
        Verdict::Stalled { stage, quiet } => Some((
            UpdateError::new(
                stage,
                "watchdog",
                format!(
                    "no progress for {} s (watchdog-stall): the recovery is hung; the \
                     hardware watchdog resets the machine",
                    quiet.as_secs()
                ),
            ),
            Hang::Stalled,
        )),
    }
}

/// Who records the update's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ender {
    /// PID 1's main flow (success, or the failure it returned).
    Main = 1,
    /// The supervisor's handler of a hang.
    Hang = 2,
}

/// The end of the update, claimed once: when a deadline fires just as the
/// main flow returns, only one of them writes `update/result`.
pub struct End(AtomicU8);

impl End {
    pub const fn new() -> End {
        End(AtomicU8::new(0))
    }

    /// Whether `who` records the outcome: the first to claim does (and
    /// may claim again), the other never.
    pub fn claim(&self, who: Ender) -> bool {
        match self.0.compare_exchange(0, who as u8, AcqRel, Acquire) {
            Ok(_) => true,
            Err(owner) => owner == who as u8,
        }
    }
}

impl Default for End {
    fn default() -> End {
        End::new()
    }
}

/// The end of this boot's update.
pub static END: End = End::new();

/// Reboots now, without syncing (`reboot(2)` does not sync): the way out
/// that depends on no storage.
pub fn reboot_now() -> ! {
    loop {
        let err = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
        eprintln!("recovery: reboot failed: {err:?}; retrying in 5 s");
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// Runs `job` on a thread of its own and waits for it at most `limit`:
/// whether it finished. A job stuck in the kernel (a write or a sync on
/// storage that no longer answers) is left behind.
pub fn within(limit: Duration, job: impl FnOnce() + Send + 'static) -> bool {
    let (done, finished) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("record".into())
        .spawn(move || {
            job();
            let _ = done.send(());
        });
    spawned.is_ok() && finished.recv_timeout(limit).is_ok()
}

struct Watch {
    stage: Option<Stage>,
    since: Instant,
    unpacked: u64,
    ended: Option<Instant>,
}

struct Supervisor {
    config: Config,
    base: Instant,
    /// Milliseconds after `base` of the last progress.
    beat_ms: AtomicU64,
    watch: Mutex<Watch>,
    dog: Mutex<Option<File>>,
    stall: Option<Duration>,
    /// PID 1 stays on the console on purpose ([`disarm`]): no reboot.
    staying: AtomicBool,
}

static SUPERVISOR: OnceLock<Supervisor> = OnceLock::new();

/// Starts the supervisor thread with `config`'s limits; opens the watchdog
/// if there is one and `config.watchdog` is not 0. `on_hang` runs on the
/// supervisor's thread; it returns only when it leaves the end to the main
/// flow (which claimed it first), and the supervisor then keeps watching.
pub fn start(config: &Config, on_hang: fn(UpdateError, Hang)) {
    let dog = if config.watchdog > 0 {
        open_watchdog(config.watchdog)
    } else {
        None
    };
    let stall = dog
        .as_ref()
        .map(|_| Duration::from_secs(config.watchdog_stall));
    let base = Instant::now();
    let supervisor = Supervisor {
        config: config.clone(),
        base,
        beat_ms: AtomicU64::new(0),
        watch: Mutex::new(Watch {
            stage: None,
            since: base,
            unpacked: 0,
            ended: None,
        }),
        dog: Mutex::new(dog),
        stall,
        staying: AtomicBool::new(false),
    };
    if SUPERVISOR.set(supervisor).is_err() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("supervisor".into())
        .spawn(move || watch(on_hang));
    if let Err(e) = spawned {
        log::error!("supervisor: cannot start its thread: {e}; no deadlines");
    }
}

fn open_watchdog(timeout: u64) -> Option<File> {
    let file = match File::options().write(true).open(DEVICE) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::info!("watchdog: {DEVICE} does not exist: deadlines only");
            return None;
        }
        Err(e) => {
            log::warn!("watchdog: cannot open {DEVICE}: {e}; deadlines only");
            return None;
        }
    };
    match set_timeout(&file, timeout) {
        Ok(granted) => log::info!("watchdog: {DEVICE} armed, timeout {granted} s"),
        Err(e) => {
            log::warn!("watchdog: {DEVICE} armed; cannot set its timeout to {timeout} s: {e}")
        }
    }
    Some(file)
}

nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, nix::libc::c_int);

/// `WDIOC_SETTIMEOUT`: returns the timeout the driver granted.
#[allow(unsafe_code)]
fn set_timeout(file: &File, seconds: u64) -> nix::Result<u64> {
    use std::os::fd::AsRawFd;
    let mut value = seconds.min(i32::MAX as u64) as nix::libc::c_int;
    // SAFETY: the fd is open for as long as `file` lives, and the ioctl
    // reads and writes exactly one c_int, which `value` is.
    unsafe { wdioc_settimeout(file.as_raw_fd(), &mut value) }?;
    Ok(value.max(0) as u64)
}

fn watch(on_hang: fn(UpdateError, Hang)) {
    let Some(s) = SUPERVISOR.get() else {
        return;
    };
    loop {
        let verdict = {
            let Ok(w) = s.watch.lock() else {
                return;
            };
            let now = s.base.elapsed();
            let beat = Duration::from_millis(s.beat_ms.load(Relaxed));
            let started = w.since.saturating_duration_since(s.base);
            let look = Look {
                stage: w.stage,
                running: w.since.elapsed(),
                unpacked: w.unpacked,
                quiet: now.saturating_sub(beat.max(started)),
                stall: s.stall,
                ended: w.ended.map(|e| e.elapsed()),
            };
            verdict(&s.config, &look)
        };
        match (&verdict, describe(&verdict)) {
            (Verdict::Fine, _) => pet(),
            (Verdict::Overdue { waited }, _) => {
                if !s.staying.load(Relaxed) {
                    // Not through the log: its file may be on the storage
                    // that hangs.
                    eprintln!(
                        "recovery: error: the update ended {} s ago and the recovery has not \
                         rebooted (the storage does not answer?): rebooting without sync",
                        waited.as_secs()
                    );
                    reboot_now();
                }
            }
            // From here the watchdog is no longer kept alive: if the
            // handler cannot finish either, the hardware resets.
            (_, Some((error, hang))) => on_hang(error, hang),
            (_, None) => {}
        }
        std::thread::sleep(TICK);
    }
}

fn pet() {
    if let Some(s) = SUPERVISOR.get() {
        if let Ok(mut dog) = s.dog.lock() {
            if let Some(file) = dog.as_mut() {
                let _ = file.write_all(b"\0");
            }
        }
    }
}

/// The main flow enters `stage` (its deadline starts now).
pub fn enter(stage: Stage) {
    if let Some(s) = SUPERVISOR.get() {
        if let Ok(mut w) = s.watch.lock() {
            w.stage = Some(stage);
            w.since = Instant::now();
            w.ended = None;
        }
        match deadline_of(&s.config, stage) {
            Some(Deadline {
                fixed,
                per_100mib: 0,
            }) => log::info!("deadline: {stage}: {fixed} s"),
            Some(d) => log::info!(
                "deadline: {stage}: {} s + {} s per 100 MiB of the image",
                d.fixed,
                d.per_100mib
            ),
            None => {}
        }
    }
}

/// The image's unpacked size, once the manifest says it: the current and
/// later stages' deadlines grow with it.
pub fn image_size(unpacked: u64) {
    if let Some(s) = SUPERVISOR.get() {
        if let Ok(mut w) = s.watch.lock() {
            w.unpacked = unpacked;
        }
    }
}

/// Progress in the main flow (a block read, an entry written).
pub fn beat() {
    if let Some(s) = SUPERVISOR.get() {
        s.beat_ms
            .store(s.base.elapsed().as_millis() as u64, Relaxed);
    }
}

/// The update is over: no deadline, and the watchdog is kept alive for
/// [`ending_limit`], long enough to record the outcome and reboot.
pub fn leave() {
    if let Some(s) = SUPERVISOR.get() {
        if let Ok(mut w) = s.watch.lock() {
            w.stage = None;
            w.ended = Some(Instant::now());
        }
    }
}

/// Stops the watchdog with the magic close ('V', then close), before a
/// deliberate wait that must end neither in a reset nor in the reboot of
/// an overdue end.
pub fn disarm() {
    if let Some(s) = SUPERVISOR.get() {
        s.staying.store(true, Relaxed);
        if let Ok(mut dog) = s.dog.lock() {
            if let Some(mut file) = dog.take() {
                match file.write_all(b"V") {
                    Ok(()) => log::info!("watchdog: stopped (magic close)"),
                    Err(e) => log::warn!("watchdog: cannot stop it: {e}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn config() -> Config {
        let mut c = Config::for_product("a");
        c.deadline_verify = Deadline::new(100, 10);
        c.deadline_erase = Deadline::new(50, 0);
        c.deadline_extract = Deadline::new(200, 20);
        c.deadline_sync = Deadline::new(30, 5);
        c
    }

    #[test]
    fn each_long_stage_has_its_deadline() {
        let c = config();
        assert_eq!(deadline_of(&c, Stage::Payload), Some(c.deadline_verify));
        assert_eq!(deadline_of(&c, Stage::Erase), Some(c.deadline_erase));
        assert_eq!(deadline_of(&c, Stage::Extract), Some(c.deadline_extract));
        assert_eq!(deadline_of(&c, Stage::Sync), Some(c.deadline_sync));
        assert_eq!(deadline_of(&c, Stage::Finish), None);
    }

    #[test]
    fn a_stage_past_its_deadline_scaled_by_the_image_overran() {
        let c = config();
        let mib = |n: u64| n << 20;
        let v = |stage, running, unpacked| {
            let look = Look {
                stage: Some(stage),
                running,
                unpacked,
                ..Look::default()
            };
            verdict(&c, &look)
        };
        assert_eq!(v(Stage::Payload, S(100), 0), Verdict::Fine);
        assert_eq!(
            v(Stage::Payload, S(101), 0),
            Verdict::Overran {
                stage: Stage::Payload,
                limit: S(100),
                by: S(1)
            }
        );
        // 250 MiB: three hundreds.
        assert_eq!(v(Stage::Extract, S(260), mib(250)), Verdict::Fine);
        assert_eq!(
            v(Stage::Extract, S(275), mib(250)),
            Verdict::Overran {
                stage: Stage::Extract,
                limit: S(260),
                by: S(15)
            }
        );
        assert_eq!(v(Stage::Erase, S(51), mib(1000)), v(Stage::Erase, S(51), 0));
        assert_eq!(v(Stage::Finish, S(10_000), 0), Verdict::Fine);
        let idle = Look {
            running: S(10_000),
            quiet: S(10_000),
            stall: Some(S(1)),
            ..Look::default()
        };
        assert_eq!(verdict(&c, &idle), Verdict::Fine);
        // Before verification: disk-wait and two minutes.
        assert_eq!(v(Stage::Disks, S(130), 0), Verdict::Fine);
        assert!(matches!(
            v(Stage::Disks, S(131), 0),
            Verdict::Overran { .. }
        ));
    }

    #[test]
    fn no_progress_is_a_stall_only_with_a_watchdog_and_only_where_data_flows() {
        let c = config();
        let v = |stage, quiet, stall| {
            let look = Look {
                stage: Some(stage),
                running: S(10),
                quiet,
                stall,
                ..Look::default()
            };
            verdict(&c, &look)
        };
        assert_eq!(v(Stage::Extract, S(30), Some(S(30))), Verdict::Fine);
        assert_eq!(
            v(Stage::Extract, S(31), Some(S(30))),
            Verdict::Stalled {
                stage: Stage::Extract,
                quiet: S(31)
            }
        );
        assert!(matches!(
            v(Stage::Payload, S(31), Some(S(30))),
            Verdict::Stalled { .. }
        ));
        assert_eq!(v(Stage::Extract, S(31), None), Verdict::Fine, "no watchdog");
        assert_eq!(v(Stage::Erase, S(31), Some(S(30))), Verdict::Fine, "mkfs");
        assert_eq!(v(Stage::Sync, S(31), Some(S(30))), Verdict::Fine, "syncfs");
    }

    #[test]
    fn after_the_update_the_watchdog_is_kept_alive_only_so_long() {
        let c = config();
        let ended = |waited| Look {
            ended: Some(waited),
            ..Look::default()
        };
        assert_eq!(ending_limit(&c), S(35));
        assert_eq!(verdict(&c, &ended(S(35))), Verdict::Fine);
        assert_eq!(
            verdict(&c, &ended(S(36))),
            Verdict::Overdue { waited: S(36) }
        );
        assert_eq!(describe(&Verdict::Overdue { waited: S(66) }), None);
    }

    #[test]
    fn a_hang_is_described_with_its_stage_and_numbers() {
        let (e, hang) = describe(&Verdict::Overran {
            stage: Stage::Extract,
            limit: S(260),
            by: S(15),
        })
        .unwrap();
        assert_eq!((e.stage, hang), (Stage::Extract, Hang::Deadline));
        assert!(e.reason.contains("deadline of 260 s by 15 s"), "{e}");
        let (e, hang) = describe(&Verdict::Stalled {
            stage: Stage::Payload,
            quiet: S(31),
        })
        .unwrap();
        assert_eq!((e.stage, hang), (Stage::Payload, Hang::Stalled));
        assert!(e.reason.contains("no progress for 31 s"), "{e}");
        assert_eq!(describe(&Verdict::Fine), None);
    }

    #[test]
    fn the_end_is_recorded_by_whoever_claims_it_first() {
        let end = End::new();
        assert!(end.claim(Ender::Main));
        assert!(end.claim(Ender::Main), "the main flow claims again");
        assert!(!end.claim(Ender::Hang));
        let end = End::new();
        assert!(end.claim(Ender::Hang));
        assert!(!end.claim(Ender::Main));
        // Racing: exactly one wins.
        for _ in 0..100 {
            let end = std::sync::Arc::new(End::new());
            let racers: Vec<_> = [Ender::Main, Ender::Hang]
                .into_iter()
                .map(|who| {
                    let end = end.clone();
                    std::thread::spawn(move || end.claim(who))
                })
                .collect();
            let won: Vec<bool> = racers.into_iter().map(|r| r.join().unwrap()).collect();
            assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
        }
    }

    #[test]
    fn a_job_stuck_for_ever_is_waited_for_only_so_long() {
        let start = Instant::now();
        // A job that never returns, like a write to storage that hangs.
        let (_keep, never) = std::sync::mpsc::channel::<()>();
        assert!(!within(Duration::from_millis(300), move || {
            let _ = never.recv();
        }));
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        assert!(within(S(5), || {}));
    }

    #[test]
    fn outside_pid_1_nothing_runs() {
        // Never started in the tests: every call is a no-op.
        enter(Stage::Extract);
        image_size(1);
        beat();
        leave();
        disarm();
        assert!(SUPERVISOR.get().is_none());
    }
}
