//! The recovery OS: PID 1 of the recovery initramfs. One update, in the
//! order of the product brief, one function a step, each logged:
//!
//! 1. mount `/proc`, `/sys`, `/dev`, load the initramfs's kernel modules
//!    [`mount_pseudo_filesystems`], [`load_modules`]
//! 2. read the configuration                  [`read_config`]
//! 3. wait for the disks, read their GPTs     [`find_partitions`]
//! 4. mount `cfg`                             [`mount_cfg`]
//! 5. read the pending restore and the instruction (a pending restore
//!    comes first, even beside an unreadable instruction; none of them:
//!    reboot, unless a trial ran out, as the boot loader's counter says:
//!    then restore; a stray counter is stopped, or the console says how;
//!    a target left erased with nothing to fill it: stay)
//!    [`read_instruction`], [`restore`], [`clear_stray_trial_counter`]
//! 6. stop if the update lock is set; count the attempt  [`count_attempt`]
//!    (used up: restore an erased target, or finish an install whose
//!    removal was cut off [`finish_removal`], or lock and boot the intact
//!    system [`lock_untouched`])
//! 7. check the target partition (and the mkfs program)  [`check_target`]
//! 8. mount the image's partition             [`mount_image_partition`]
//! 9. verify the image, check it against the device  [`verify_image`]
//! 10. record that the target is touched, erase it (fresh file system)
//!     [`mark_touched`], [`erase_target`]
//! 11. mount it, extract, sync                [`extract_image`]
//! 12. record the result, start the trial, remove the instruction  [`finish`]
//! 13. unmount everything and reboot          [`run`]
//!
//! Any failure ends in [`fail`]: the result is written where possible, a
//! refusal before any erase (this boot's, or an earlier attempt's, as
//! `cfg:update/touched` says) disarms the instruction, the message stays
//! on the console for a few seconds, and the machine reboots; with the
//! update lock set it stays on the console instead. The last attempt of
//! an update that failed after the erase leaves a pending restore of the
//! last good image, which the next boot carries out ([`restore`]: the
//! same steps 7 to 11 on the restore image, its attempts counted; used
//! up, it stays on the console). The decisions are in [`crate::restore`]
//! (`restore.rs`); this module carries them out. PID 1 never returns and never
//! panics the kernel. Fault points ([`fault`]) stop it dead for the
//! power-cut tests.

use crate::admission::{self, Admission, Purpose};
use crate::erase;
use crate::error::{Stage, UpdateError};
use crate::extract::Extracted;
use crate::fault::{self, Point};
use crate::install;
use crate::keys;
use crate::logger;
use crate::mounts::{self, Mount};
use crate::partitions::{self, Disks, Partition};
use crate::policy;
use crate::progress::human;
use crate::restore::{self as decide, AttemptsUsed, Erased, Plan};
use crate::supervisor::{self, Hang};
use crate::verify::VerifiedImage;
use formats::bootflag::BootFlag;
use formats::cfg::{
    self, Attempts, Lock, ATTEMPTS, INSTALLED, INSTRUCTION, INSTRUCTION_FAILED,
    INSTRUCTION_REFUSED as REFUSED, LOCK, RECOVERY_LOG as LOG, RESTORE, RESULT, TOUCHED, TRIAL,
};
use formats::config::{self, Config};
use formats::instruction::Instruction;
use formats::result::{Installed, Outcome, UpdateResult};
use formats::store;
use formats::trial::{PendingRestore, Touched, Trial};
use nix::mount::MsFlags;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Where `cfg` is mounted (the fault point `hang-in-sync` freezes it).
pub(crate) const CFG_MOUNT: &str = "/run/cfg";
const IMAGE_MOUNT: &str = "/run/image";
const TARGET_MOUNT: &str = "/run/target";
const BOOTFLAG_MOUNT: &str = "/run/bootflag";

/// What one boot of the recovery knows, filled in step by step; the mounts
/// are undone when it is dropped.
struct Session {
    started: SystemTime,
    clock: Instant,
    config: Option<Config>,
    instruction: Option<Instruction>,
    version: String,
    /// `version` is the verified manifest's (not the instruction's path).
    verified: bool,
    attempt: u64,
    erased: Erased,
    /// A record that bounds the retries could not be written
    /// ([`decide::UpdateFailure::Unbounded`]).
    unbounded: bool,
    written: Option<Extracted>,
    /// The update lock was already set when this boot started.
    lock_found: bool,
    /// This boot restores the last good image (not an update).
    restoring: Option<PendingRestore>,
    /// Shared with the [`Snapshot`] the supervisor records a hang from.
    cfg: Option<Arc<Mount>>,
    /// Never unmounted: PID 1 reboots with them mounted.
    pseudo: Vec<Mount>,
}

/// What the supervisor's thread needs to record a hang of the main flow
/// with [`fail`], refreshed as each supervised stage starts ([`supervise`]).
struct Snapshot {
    started: SystemTime,
    clock: Instant,
    config: Option<Config>,
    instruction: Option<Instruction>,
    version: String,
    /// `version` is the verified manifest's (not the instruction's path).
    verified: bool,
    attempt: u64,
    erased: Erased,
    unbounded: bool,
    restoring: Option<PendingRestore>,
    cfg: Option<Arc<Mount>>,
}

impl Session {
    /// `e` is the failure to write a record that bounds the retries (the
    /// attempt count, a pending restore, the lock): marks it, for [`fail`]
    /// to stay on the console instead of rebooting into the same failure.
    fn unbounded(&mut self, e: UpdateError) -> UpdateError {
        self.unbounded = true;
        e
    }
}

static SNAPSHOT: Mutex<Option<Snapshot>> = Mutex::new(None);

/// Starts the supervised `stage` (its deadline, its progress) with what
/// the session knows now.
fn supervise(s: &Session, stage: Stage) {
    if let Ok(mut snapshot) = SNAPSHOT.lock() {
        *snapshot = Some(Snapshot {
            started: s.started,
            clock: s.clock,
            config: s.config.clone(),
            instruction: s.instruction.clone(),
            version: s.version.clone(),
            verified: s.verified,
            attempt: s.attempt,
            erased: s.erased,
            unbounded: s.unbounded,
            restoring: s.restoring.clone(),
            cfg: s.cfg.clone(),
        });
    }
    supervisor::enter(stage);
}

/// How long the hang handler waits for the failure to be recorded and
/// synced before it reboots without: on storage that stopped answering,
/// writing `update/result` or `sync()` blocks in the kernel for ever.
const RECORD_WAIT: Duration = Duration::from_secs(30);

/// The supervisor's handler of a hung main flow (runs on its thread). If
/// the main flow claimed the end first, it records its own outcome and
/// this returns. Otherwise the failure is recorded as [`fail`] records any
/// other, then synced, on a thread of its own waited for at most
/// [`RECORD_WAIT`]; then, after a deadline, the machine reboots without
/// syncing again (a reboot that does not depend on the storage or on a
/// watchdog), or, after a stall, waits for the watchdog's reset.
fn on_hang(e: UpdateError, hang: Hang) {
    if !supervisor::END.claim(supervisor::Ender::Hang) {
        return;
    }
    let decided = Arc::new(Mutex::new(None));
    let shared = Arc::clone(&decided);
    let recorded = supervisor::within(RECORD_WAIT, move || {
        let after = record_hang(&e);
        nix::unistd::sync();
        if let Ok(mut slot) = shared.lock() {
            *slot = Some(after);
        }
    });
    // What the failure path decided holds for a hang too: a restore whose
    // attempts are used up (or the lock) stays on the console, here on
    // the supervisor's thread, the main flow being stuck.
    if let Some(After::Stay(why)) = decided.lock().ok().and_then(|mut a| a.take()) {
        stay(&why);
    }
    match hang {
        Hang::Deadline => {
            if !recorded {
                // Not through the log: its file is on the storage that hangs.
                eprintln!(
                    "recovery: error: recording the hang did not finish in {} s (the storage \
                     does not answer): rebooting without it",
                    RECORD_WAIT.as_secs()
                );
            }
            supervisor::reboot_now()
        }
        Hang::Stalled => {
            // Through the log: the console has it before the log file is
            // written, and if that blocks, this thread waits there instead.
            log::error!("waiting for the hardware watchdog to reset the machine");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
}

/// Records a hang from what the main flow's [`Snapshot`] knew; returns
/// what [`fail`] decided.
fn record_hang(e: &UpdateError) -> After {
    let snapshot = SNAPSHOT.lock().ok().and_then(|mut s| s.take());
    let Some(snap) = snapshot else {
        log::error!("{e}");
        return After::Reboot(Duration::ZERO);
    };
    let mut s = Session {
        started: snap.started,
        clock: snap.clock,
        config: snap.config,
        instruction: snap.instruction,
        version: snap.version,
        verified: snap.verified,
        attempt: snap.attempt,
        erased: snap.erased,
        unbounded: snap.unbounded,
        written: None,
        lock_found: false,
        restoring: snap.restoring,
        cfg: snap.cfg,
        pseudo: Vec::new(),
    };
    fail(&mut s, e)
}

/// The main flow is over, one way or the other: no deadline any more, and
/// it claims the recording of the outcome. If the hang handler claimed it
/// first, the handler records and reboots: the main flow stops here.
fn end_of_update() {
    supervisor::leave();
    if !supervisor::END.claim(supervisor::Ender::Main) {
        eprintln!("recovery: the update ended as its deadline fired: the hang is recorded");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// What PID 1 does once the update is over.
enum After {
    Reboot(Duration),
    /// Stay on the console (the update lock is set, or the last good
    /// image cannot be restored), saying why.
    Stay(String),
}

enum Done {
    /// No instruction: nothing to do.
    NothingToDo,
    Installed,
    /// The last good image is back.
    Restored,
    /// No instruction, but the boot loader's count of trial boots cannot
    /// be stopped: every boot would come back here (the message says
    /// what to clear by hand).
    CounterStuck(String),
    /// The target holds no complete system and nothing on `cfg` says how
    /// to fill it (the message says what to do).
    Empty(String),
    /// The attempts of an instruction were used up with the system
    /// untouched: the lock is set, the instruction moved aside.
    LockedUntouched,
}

/// PID 1's entry point.
pub fn run() -> ! {
    logger::init_pid1();
    std::panic::set_hook(Box::new(|info| {
        eprintln!("recovery: internal error: {info}; rebooting in 10 s");
        nix::unistd::sync();
        std::thread::sleep(Duration::from_secs(10));
        let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    }));
    let mut session = Session {
        started: SystemTime::now(),
        clock: Instant::now(),
        config: None,
        instruction: None,
        version: String::new(),
        verified: false,
        attempt: 0,
        erased: Erased::No,
        unbounded: false,
        written: None,
        lock_found: false,
        restoring: None,
        cfg: None,
        pseudo: Vec::new(),
    };
    log::info!("recovery {} starting", env!("CARGO_PKG_VERSION"));
    let updated = update(&mut session);
    end_of_update();
    // The snapshot's share of the cfg mount is let go.
    if let Ok(mut snapshot) = SNAPSHOT.lock() {
        *snapshot = None;
    }
    let after = match updated {
        Ok(Done::NothingToDo) => After::Reboot(Duration::ZERO),
        Ok(Done::Installed) => {
            log::info!(
                "done: {} installed in {:.1} s; rebooting into it",
                session.version,
                session.clock.elapsed().as_secs_f64()
            );
            fault::hit(Point::AfterRemoval);
            After::Reboot(Duration::ZERO)
        }
        Ok(Done::Restored) => {
            log::info!(
                "done: the last good image is restored in {:.1} s; rebooting into it",
                session.clock.elapsed().as_secs_f64()
            );
            After::Reboot(Duration::ZERO)
        }
        Ok(Done::CounterStuck(why)) => {
            log::error!("{why}");
            After::Stay("the boot loader's count of trial boots cannot be stopped".into())
        }
        Ok(Done::Empty(why)) => {
            log::error!("{why}");
            After::Stay(
                "the system partition holds no complete system; see the message above".into(),
            )
        }
        Ok(Done::LockedUntouched) => After::Reboot(Duration::from_secs(
            session.config.as_ref().map_or(5, |c| c.failure_delay),
        )),
        Err(e) => fail(&mut session, &e),
    };
    logger::detach_file();
    session.cfg = None;
    match after {
        // /proc, /sys and /dev stay mounted until the reboot: they hold
        // nothing to flush, and /dev/watchdog is still open.
        After::Reboot(delay) => reboot(delay),
        After::Stay(why) => stay(&why),
    }
}

fn update(s: &mut Session) -> Result<Done, UpdateError> {
    mount_pseudo_filesystems(s)?;
    load_modules();
    let config = read_config()?;
    s.config = Some(config.clone());
    supervisor::start(&config, on_hang);
    supervisor::enter(Stage::Disks);
    let disks = find_partitions(&config)?;
    mount_cfg(s, &disks)?;
    let cfg = PathBuf::from(CFG_MOUNT);
    let pending = read_pending_restore(&cfg);
    let found = read_instruction(&cfg);
    let trial_left = || {
        with_boot_flag(&config, |flag| flag.trial_left(Path::new(CFG_MOUNT)))
            .ok_or_else(|| format!("bootflag={}: not a boot loader setting", config.bootflag))?
            .map_err(|e| format!("{}: {e}", config.bootflag))
    };
    let (trial, touched) = (read_trial(&cfg), read_touched(&cfg));
    let on_cfg = decide::Found {
        pending: pending.as_ref(),
        instruction: found.as_ref().map(Option::is_some),
        trial: trial.as_ref(),
        touched: touched_found(&touched),
    };
    match decide::plan(on_cfg, trial_left) {
        Plan::Restore { pending, record } => {
            if record {
                cfg_step(&cfg, decide::Step::WritePending, &pending, 0)?;
            }
            return restore(s, &config, &disks, &cfg, pending);
        }
        Plan::BadInstruction(e) => return Err(e),
        Plan::Empty(why) => return Ok(Done::Empty(why)),
        Plan::Nothing => {
            if let Some(why) = clear_stray_trial_counter(&config) {
                return Ok(Done::CounterStuck(why));
            }
            log::info!("no update instruction on cfg: nothing to do; rebooting");
            return Ok(Done::NothingToDo);
        }
        Plan::StaleFlag(why) => {
            log::warn!("trial: {why}; rebooting into the system");
            clear_boot_flag(&config);
            return Ok(Done::NothingToDo);
        }
        Plan::Update => {}
    }
    let (instruction, raw) = found.ok().flatten().expect("planned an update");
    s.version = instruction.manifest.to_string();
    s.instruction = Some(instruction.clone());
    if cfg.join(LOCK).exists() {
        s.lock_found = true;
        return Err(UpdateError::new(
            Stage::Instruction,
            cfg::shown(LOCK),
            "the update lock is set after repeated failures: nothing is erased until an \
             operator clears it (bootloader-glue unlock)",
        ));
    }
    match count_attempt(s, &config, &cfg, &instruction, &raw)? {
        None => {}
        Some(AttemptsUsed::Restore(pending)) => {
            restore_next(&cfg, s.attempt, &pending).map_err(|e| s.unbounded(e))?;
            return restore(s, &config, &disks, &cfg, pending);
        }
        Some(AttemptsUsed::Finished { version }) => {
            s.version = version;
            finish_again(&config, &cfg, &instruction, &s.version)?;
            return Ok(Done::Installed);
        }
        Some(AttemptsUsed::LockAndBoot { reason }) => {
            lock_untouched(s, &config, &cfg, &reason)?;
            return Ok(Done::LockedUntouched);
        }
        Some(AttemptsUsed::LockAndStay) => return Err(lock_erased(s, &config, &cfg)),
    }
    fault::hit(Point::AfterInstruction);
    let target = check_target(&config, &instruction, &disks)?;
    let image_mount = mount_image_partition(&instruction, &disks)?;
    supervise(s, Stage::Payload);
    let image = verify_image(
        &config,
        &instruction,
        &cfg,
        image_mount.path(),
        target,
        Purpose::Update,
    )?;
    s.version = image.manifest.version.clone();
    s.verified = true;
    fault::hit(Point::AfterVerify);
    mark_touched(&cfg, &instruction, &image)?;
    s.erased = Erased::ByUpdate;
    supervise(s, Stage::Erase);
    erase_target(&config, target)?;
    fault::hit(Point::AfterErase);
    supervise(s, Stage::Extract);
    let written = extract_image(&image, target)?;
    end_of_update();
    s.written = Some(written);
    finish(
        s,
        &config,
        &cfg,
        &instruction,
        &image,
        Attempts::crc_of(&raw),
    )?;
    Ok(Done::Installed)
}

/// Reads `cfg:update/restore`; an unreadable one is named and skipped
/// (the records are written atomically: only a damaged `cfg` tears one).
fn read_pending_restore(cfg: &Path) -> Option<PendingRestore> {
    let bytes = std::fs::read(cfg.join(RESTORE)).ok()?;
    PendingRestore::parse(&bytes)
        .map_err(|e| log::warn!("{}: {e}; ignored", cfg::shown(RESTORE)))
        .ok()
}

/// Reads `cfg:update/touched`: None only when the file is not there. One
/// that is there but cannot be read (an I/O error, a bad CRC) still says
/// the target was erased ([`decide::TouchedFound`]): `Err` says why.
fn read_touched(cfg: &Path) -> Option<Result<Touched, String>> {
    let bytes = match std::fs::read(cfg.join(TOUCHED)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(e.to_string())),
        Ok(bytes) => bytes,
    };
    Some(Touched::parse(&bytes).map_err(|e| {
        log::warn!("{}: {e}; counted as touched", cfg::shown(TOUCHED));
        e.to_string()
    }))
}

/// [`read_touched`]'s answer as the decisions take it.
fn touched_found(touched: &Option<Result<Touched, String>>) -> Option<decide::TouchedFound<'_>> {
    touched.as_ref().map(|t| t.as_ref().map_err(String::as_str))
}

/// Reads `cfg:update/trial`, as [`read_pending_restore`].
fn read_trial(cfg: &Path) -> Option<Trial> {
    let bytes = std::fs::read(cfg.join(TRIAL)).ok()?;
    Trial::parse(&bytes)
        .map_err(|e| log::warn!("{}: {e}; ignored", cfg::shown(TRIAL)))
        .ok()
}

/// Restores the last good image: first what a power cut left undone of
/// the way in ([`finish_leaving`]) and the count of this attempt
/// ([`count_restore_attempt`]), then the update's own steps (the target,
/// the image's partition, every check of the image, the erase, the
/// extraction), with downgrades allowed (the image is older than what
/// failed). `cfg:update/restore` stays until it is done, so every boot
/// finishes what a power cut interrupted, up to `max-attempts` in a row.
fn restore(
    s: &mut Session,
    config: &Config,
    disks: &Disks,
    cfg: &Path,
    pending: PendingRestore,
) -> Result<Done, UpdateError> {
    log::warn!(
        "restore: {} ({}); restoring {} into {}",
        pending.reason,
        pending.stage,
        pending.image,
        pending.target
    );
    s.version = pending.failed.clone();
    s.restoring = Some(pending.clone());
    finish_leaving(config, cfg, &pending)?;
    let pending = count_restore_attempt(config, cfg, &pending)?;
    s.restoring = Some(pending.clone());
    let mut config = config.clone();
    config.downgrade = config::Downgrade::Allow;
    let instruction = Instruction {
        manifest: pending.image.clone(),
        target: pending.target.clone(),
        allow_downgrade: true,
        requested: 0,
        restore: None,
    };
    let target = check_target(&config, &instruction, disks)?;
    let image_mount = mount_image_partition(&instruction, disks)?;
    supervise(s, Stage::Payload);
    // The last good system, chosen by the device: never refused as the
    // version restored away (a record a cut or a later leave left behind).
    let image = verify_image(
        &config,
        &instruction,
        cfg,
        image_mount.path(),
        target,
        Purpose::Restore,
    )?;
    fault::hit(Point::RestoreAfterVerify);
    mark_touched(cfg, &instruction, &image)?;
    s.erased = Erased::ByRestore;
    supervise(s, Stage::Erase);
    erase_target(&config, target)?;
    fault::hit(Point::RestoreAfterErase);
    supervise(s, Stage::Extract);
    let written = extract_image(&image, target)?;
    end_of_update();
    s.written = Some(written);
    finish_restore(s, &config, cfg, &image, &pending)?;
    Ok(Done::Restored)
}

/// Counts this attempt of the restore in `cfg:update/restore` before
/// anything is erased ([`decide::count_restore`]); with the attempts used
/// up, the error that keeps the device on the console.
fn count_restore_attempt(
    config: &Config,
    cfg: &Path,
    pending: &PendingRestore,
) -> Result<PendingRestore, UpdateError> {
    let counted = decide::count_restore(config, pending)
        .map_err(|why| UpdateError::new(Stage::Instruction, cfg::shown(RESTORE), why))?;
    store::write_atomic(&cfg.join(RESTORE), counted.render().as_bytes())
        .map_err(|e| UpdateError::new(Stage::Finish, cfg::shown(RESTORE), e))?;
    log::info!(
        "restore: attempt {} of at most {}",
        counted.attempts,
        config.max_attempts
    );
    Ok(counted)
}

/// Takes what a power cut left undone of the way into this restore
/// ([`decide::resume_leaving`]): for an update's, the lock and the
/// instruction moved aside, before anything is erased.
fn finish_leaving(
    config: &Config,
    cfg: &Path,
    pending: &PendingRestore,
) -> Result<(), UpdateError> {
    let steps = decide::resume_leaving(
        pending,
        cfg.join(LOCK).exists(),
        cfg.join(INSTRUCTION).exists(),
    );
    if steps.is_empty() {
        return Ok(());
    }
    // The lock counts the update's attempts, as far as cfg still says.
    let attempts = std::fs::read_to_string(cfg.join(ATTEMPTS))
        .ok()
        .and_then(|text| Attempts::parse(&text).ok())
        .map_or(config.max_attempts, |a| a.count);
    decide::run_steps(&steps, |step| cfg_step(cfg, step, pending, attempts)).map_err(|(_, e)| e)?;
    log::warn!(
        "restore: finished what a power cut left undone after the restore was recorded: {steps:?}"
    );
    Ok(())
}

/// Records the restore (`outcome=restored`, the failed version and why,
/// the version restored) and the installed version, then moves a leftover
/// instruction aside and removes the trial and the pending restore
/// ([`decide::end_restore`]), and stops the boot loader's counting.
fn finish_restore(
    s: &Session,
    config: &Config,
    cfg: &Path,
    image: &VerifiedImage,
    pending: &PendingRestore,
) -> Result<(), UpdateError> {
    if let Err(e) = clear_touched(cfg) {
        log::warn!("{e}");
    }
    let write = |rel: &str, data: String| {
        store::write_atomic(&cfg.join(rel), data.as_bytes())
            .map_err(|e| UpdateError::new(Stage::Finish, cfg::shown(rel), e))
    };
    let restored = image.manifest.version.clone();
    let result = UpdateResult {
        stage: pending.stage.clone(),
        reason: pending.reason.clone(),
        restored: Some(restored.clone()),
        instruction: None,
        ..result_of(s, Outcome::Restored, None)
    };
    // The version restored away, refused until a newer one (issue 10).
    crate::admission::record_restored_away(cfg, &result)?;
    write(RESULT, result.render())?;
    let installed = Installed {
        product: image.manifest.product.clone(),
        version: restored.clone(),
    };
    write(INSTALLED, installed.render())?;
    // An instruction left by a cut inside `restore_next` is the failed
    // one: moved aside, or the next boot would be the recovery's again.
    let steps = decide::end_restore(cfg.join(INSTRUCTION).exists());
    decide::run_steps(&steps, |step| cfg_step(cfg, step, pending, s.attempt))
        .map_err(|(_, e)| e)?;
    with_boot_flag(config, |flag| {
        let stopped = flag.disarm_trial(Path::new(CFG_MOUNT));
        let when = decide::CounterStop::AfterRestore;
        match decide::after_counter_stop(&config.bootflag, when, &stopped) {
            decide::AfterCounter::Done => {}
            decide::AfterCounter::Warn(why) | decide::AfterCounter::Stay(why) => {
                log::warn!("{why}")
            }
        }
        clear_flag(config, flag);
    });
    log::info!(
        "finish: {restored} restored ({}); result written",
        pending.reason
    );
    Ok(())
}

/// A boot loader still counting trial boots with no trial on `cfg` (a
/// power cut between removing the trial and stopping the count, or a
/// count that could not be stopped after a restore) would boot the
/// recovery for ever: stop it. Returns the console's message when it
/// cannot be stopped and every boot would come back here
/// ([`decide::after_counter_stop`]).
fn clear_stray_trial_counter(config: &Config) -> Option<String> {
    with_boot_flag(config, |flag| {
        let cfg = Path::new(CFG_MOUNT);
        let Ok(Some(left)) = flag.trial_left(cfg) else {
            return None;
        };
        let stopped = flag.disarm_trial(cfg);
        let when = decide::CounterStop::Stray { left };
        match decide::after_counter_stop(&config.bootflag, when, &stopped) {
            decide::AfterCounter::Done => {
                log::warn!("trial: the boot loader counted with no trial on cfg: stopped");
                None
            }
            decide::AfterCounter::Warn(why) => {
                log::warn!("{why}");
                None
            }
            decide::AfterCounter::Stay(why) => Some(why),
        }
    })
    .flatten()
}

/// Starts the trial of the version just installed: the record on `cfg`,
/// then the boot loader's counter. Where the boot loader cannot count (or
/// the counter cannot be written), there is no trial: the record is
/// removed and the log says why.
fn start_trial(config: &Config, cfg: &Path, instruction: &Instruction, version: &str) {
    let installed = crate::policy::InstalledVersion::from_read(std::fs::read(cfg.join(INSTALLED)));
    let previous = decide::previous_version(
        read_trial(cfg).as_ref(),
        version,
        installed.known().map(|i| i.version.as_str()),
    );
    let trial = match decide::trial_after_install(config, instruction, version, &previous) {
        Ok(trial) => trial,
        Err(why) => {
            log::info!("trial: {why}");
            let _ = store::remove_durably(&cfg.join(TRIAL));
            return;
        }
    };
    if let Err(e) = store::write_atomic(&cfg.join(TRIAL), trial.render().as_bytes()) {
        log::warn!(
            "trial: cannot write {}: {e}; {version} is not on trial",
            cfg::shown(TRIAL)
        );
        return;
    }
    let armed = with_boot_flag(config, |flag| {
        flag.arm_trial(Path::new(CFG_MOUNT), trial.limit)
    });
    match armed {
        Some(Ok(())) => log::info!(
            "trial: {version} must confirm itself within {} boots (bootloader-glue confirm),              or {} is restored",
            trial.limit,
            trial.restore
        ),
        Some(Err(e)) => {
            log::warn!("trial: {e}; {version} is not on trial");
            let _ = store::remove_durably(&cfg.join(TRIAL));
        }
        None => {
            let _ = store::remove_durably(&cfg.join(TRIAL));
        }
    }
}

fn mount_pseudo_filesystems(s: &mut Session) -> Result<(), UpdateError> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    for (source, target, fstype, flags) in [
        ("proc", "/proc", "proc", flags),
        ("sysfs", "/sys", "sysfs", flags),
        ("devtmpfs", "/dev", "devtmpfs", MsFlags::MS_NOSUID),
    ] {
        match Mount::new(source, Path::new(target), fstype, flags) {
            Ok(m) => s.pseudo.push(m),
            // Already there (the kernel mounts devtmpfs itself on some builds).
            Err(nix::errno::Errno::EBUSY) => {}
            Err(e) => {
                return Err(UpdateError::new(
                    Stage::Setup,
                    target,
                    format!("cannot mount {fstype}: {e}"),
                ))
            }
        }
    }
    log::info!("setup: /proc, /sys and /dev mounted");
    Ok(())
}

/// Where `image-builder initramfs --module` puts kernel modules.
const MODULES: &str = "/lib/modules";

/// Loads the kernel modules the initramfs carries (for what the kernel
/// does not have built in: a disk driver, efivarfs). One that fails is
/// named and skipped: what needs it will say so.
fn load_modules() {
    let Ok(dir) = std::fs::read_dir(MODULES) else {
        return;
    };
    let mut modules: Vec<PathBuf> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ko"))
        .collect();
    modules.sort();
    let load = |module: &Path| {
        File::open(module)
            .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))
            .and_then(|f| nix::kmod::finit_module(&f, c"", nix::kmod::ModuleInitFlags::empty()))
    };
    // A module that needs another (softdog needs watchdog) fails with
    // ENOENT until that one is loaded: try again while a pass loads some.
    let mut done = Vec::new();
    loop {
        let before = modules.len();
        let mut waiting = Vec::new();
        for module in modules {
            match load(&module) {
                Err(nix::errno::Errno::ENOENT) => waiting.push(module),
                loaded => done.push((module, loaded)),
            }
        }
        modules = waiting;
        if modules.is_empty() || modules.len() == before {
            break;
        }
    }
    done.extend(
        modules
            .into_iter()
            .map(|m| (m, Err(nix::errno::Errno::ENOENT))),
    );
    for (module, loaded) in done {
        match loaded {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {
                log::info!("setup: module {} loaded", module.display())
            }
            // The module has nothing to drive on this machine (efivarfs
            // without EFI): not a problem until something needs it.
            Err(nix::errno::Errno::ENODEV) => {
                log::info!("setup: module {} has no device here", module.display())
            }
            Err(e) => log::warn!("setup: cannot load the module {}: {e}", module.display()),
        }
    }
}

fn read_config() -> Result<Config, UpdateError> {
    let path = Path::new("/").join(config::PATH);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        UpdateError::new(Stage::Config, path.display(), format!("cannot read: {e}"))
    })?;
    let mut config =
        Config::parse(&text).map_err(|e| UpdateError::new(Stage::Config, path.display(), e))?;
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    for warning in config.apply_command_line(&cmdline) {
        log::warn!("{warning}");
    }
    fault::arm(&cmdline);
    log::info!(
        "config: product {}, targets {}, at most {} attempts, downgrades: {:?}",
        config.product,
        config.targets.join(","),
        config.max_attempts,
        config.downgrade
    );
    Ok(config)
}

fn find_partitions(config: &Config) -> Result<Disks, UpdateError> {
    let wait = Duration::from_secs(config.disk_wait);
    match partitions::wait_for(policy::CFG, wait) {
        Ok(disks) => {
            log::info!("disks: {}", disks.describe());
            Ok(disks)
        }
        Err(disks) => Err(UpdateError::new(
            Stage::Disks,
            "/sys/block",
            format!(
                "no partition named {} after {} s; seen: {}",
                policy::CFG,
                config.disk_wait,
                disks.describe()
            ),
        )),
    }
}

fn mount_ext4(partition: &Partition, at: &str, flags: MsFlags) -> Result<Mount, UpdateError> {
    if !mounts::kernel_supports("ext4") {
        return Err(UpdateError::new(
            Stage::Setup,
            "/proc/filesystems",
            "this kernel has no ext4 support: build it in (CONFIG_EXT4_FS=y)",
        ));
    }
    mount_as(partition, at, "ext4", flags)
}

/// Mounts `partition` as `fstype` on `at`.
fn mount_as(
    partition: &Partition,
    at: &str,
    fstype: &str,
    flags: MsFlags,
) -> Result<Mount, UpdateError> {
    Mount::new(
        &partition.device.to_string_lossy(),
        Path::new(at),
        fstype,
        flags,
    )
    .map_err(|e| {
        UpdateError::new(
            Stage::Disks,
            partition.device.display(),
            format!("cannot mount {} ({fstype}) on {at}: {e}", partition.name),
        )
    })
}

fn mount_cfg(s: &mut Session, disks: &Disks) -> Result<(), UpdateError> {
    let cfg = disks.find(policy::CFG).expect("waited for it");
    s.cfg = Some(Arc::new(mount_ext4(cfg, CFG_MOUNT, MsFlags::empty())?));
    let log_path = Path::new(CFG_MOUNT).join(LOG);
    let _ = std::fs::create_dir_all(log_path.parent().expect("has a parent"));
    if let Err(e) = logger::attach_file(&log_path) {
        log::warn!("cannot write the recovery log {}: {e}", log_path.display());
    }
    log::info!("cfg: {} mounted; log in cfg:{LOG}", cfg.device.display());
    Ok(())
}

fn read_instruction(cfg: &Path) -> Result<Option<(Instruction, Vec<u8>)>, UpdateError> {
    let path = cfg.join(INSTRUCTION);
    let raw = match std::fs::read(&path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(UpdateError::new(
                Stage::Instruction,
                cfg::shown(INSTRUCTION),
                e,
            ))
        }
    };
    let instruction = Instruction::parse(&raw)
        .map_err(|e| UpdateError::new(Stage::Instruction, cfg::shown(INSTRUCTION), e))?;
    log::info!(
        "instruction: install {} into {}",
        instruction.manifest,
        instruction.target
    );
    Ok(Some((instruction, raw)))
}

fn check_target<'d>(
    config: &Config,
    instruction: &Instruction,
    disks: &'d Disks,
) -> Result<&'d Partition, UpdateError> {
    let target = policy::check_target(config, instruction, disks, &mounts::mounted_devices())?;
    // What the erase will need is checked now, while a refusal still
    // leaves the old system in place.
    let program = &config.mkfs[0];
    if erase::find_program(program).is_none() {
        return Err(UpdateError::new(
            Stage::Erase,
            program,
            format!(
                "the mkfs program is not in the initramfs (looked in {}); nothing was erased",
                erase::PATH.join(", ")
            ),
        ));
    }
    log::info!(
        "target: {} ({}, {})",
        target.name,
        target.device.display(),
        human(target.size)
    );
    Ok(target)
}

fn mount_image_partition(instruction: &Instruction, disks: &Disks) -> Result<Mount, UpdateError> {
    let name = &instruction.manifest.partition;
    let partition = disks.find(name).ok_or_else(|| {
        UpdateError::new(
            Stage::Disks,
            instruction.manifest.to_string(),
            format!("no partition named {name} (seen: {})", disks.describe()),
        )
    })?;
    let mount = mount_ext4(
        partition,
        IMAGE_MOUNT,
        MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
    )?;
    log::info!("image: {} mounted read-only", partition.device.display());
    Ok(mount)
}

/// Every check that can be made before the erase: the admission check
/// that `bootloader-glue request` made too, against the initramfs's keys,
/// for an update or a restore (`purpose`).
fn verify_image(
    config: &Config,
    instruction: &Instruction,
    cfg: &Path,
    image_root: &Path,
    target: &Partition,
    purpose: Purpose,
) -> Result<VerifiedImage, UpdateError> {
    let trusted_keys = keys::files_in(&Path::new("/").join(config::KEYS_DIR))?;
    let admitted = admission::admit(&Admission {
        config,
        instruction,
        manifest: &image_root.join(&instruction.manifest.path),
        trusted_keys: &trusted_keys,
        cfg,
        target,
        purpose,
    })?;
    Ok(admitted.image)
}

/// Counts this attempt of this instruction on `cfg`, before anything is
/// erased. Past the limit, the last attempt was cut off before it
/// recorded its failure or removed the instruction: returns what to do
/// about it ([`decide::after_attempts_used`]), with nothing written yet.
/// A counter that cannot be read (torn, garbage) counts as no attempt so
/// far; one that cannot be written stops here ([`Session::unbounded`]).
fn count_attempt(
    s: &mut Session,
    config: &Config,
    cfg: &Path,
    instruction: &Instruction,
    raw: &[u8],
) -> Result<Option<AttemptsUsed>, UpdateError> {
    let path = cfg.join(ATTEMPTS);
    let record = std::fs::read_to_string(&path).ok();
    let (previous, warning) = Attempts::previous(record.as_deref(), raw);
    if let Some(warning) = warning {
        log::warn!("{warning}");
    }
    if previous >= config.max_attempts {
        s.attempt = previous;
        let result = std::fs::read(cfg.join(RESULT))
            .ok()
            .and_then(|bytes| UpdateResult::parse(&bytes).ok());
        let touched = read_touched(cfg);
        let used = decide::after_attempts_used(
            config,
            instruction,
            touched_found(&touched),
            result.as_ref(),
            previous,
            Attempts::crc_of(raw),
        );
        if let AttemptsUsed::Restore(pending) = &used {
            log::error!("{}", pending.reason);
        }
        return Ok(Some(used));
    }
    let attempt = previous + 1;
    s.attempt = attempt;
    let record = Attempts {
        instruction_crc: Attempts::crc_of(raw),
        count: attempt,
    };
    store::write_atomic(&path, record.render().as_bytes())
        .map_err(|e| s.unbounded(UpdateError::new(Stage::Finish, cfg::shown(ATTEMPTS), e)))?;
    log::info!("attempt {attempt} of at most {}", config.max_attempts);
    Ok(None)
}

/// The last attempt installed the new system and recorded its success,
/// and was cut off before the end ([`decide::AttemptsUsed::Finished`]):
/// redoes the rest of [`finish`] (the trial if it has none, the installed
/// version, the version restored away, `update/touched`, the instruction
/// and its count, the boot flag).
fn finish_again(
    config: &Config,
    cfg: &Path,
    instruction: &Instruction,
    version: &str,
) -> Result<(), UpdateError> {
    log::warn!(
        "the last attempt recorded its success in {} and was cut off before removing the \
         instruction: finishing the install (redoing what it may not have done)",
        cfg::shown(RESULT)
    );
    let installed = Installed {
        product: config.product.clone(),
        version: version.to_string(),
    };
    end_install(config, cfg, instruction, &installed, None)
}

/// The attempts are used up and no attempt erased the target: records
/// why, moves the instruction aside, then sets the lock (the record that
/// stops a further attempt; [`decide::LOCK_AND_BOOT`]) and clears the
/// boot flag, for the untouched system to boot.
fn lock_untouched(
    s: &mut Session,
    config: &Config,
    cfg: &Path,
    reason: &str,
) -> Result<(), UpdateError> {
    let e = UpdateError::new(Stage::Instruction, cfg::shown(ATTEMPTS), reason);
    log::error!("{e}");
    let result = result_of(s, Outcome::Locked, Some(&e));
    if let Err(err) = store::write_atomic(&cfg.join(RESULT), result.render().as_bytes()) {
        log::error!("cannot write {}: {err}", cfg::shown(RESULT));
    }
    let attempts = s.attempt;
    // A lock that cannot be written after the instruction is moved aside
    // bounds nothing more: nothing is left to retry. Logged.
    decide::run_steps(&decide::LOCK_AND_BOOT, |step| match step {
        decide::Step::Lock => write_lock(cfg, attempts).or_else(|e| {
            log::error!("{e}");
            Ok(())
        }),
        _ => disarm_instruction(cfg),
    })
    .map_err(|(_, e)| e)?;
    clear_boot_flag(config);
    log::error!(
        "the instruction is disarmed (kept as {}); rebooting into the old system. Clear the \
         lock (bootloader-glue unlock) to allow updates again",
        cfg::shown(INSTRUCTION_FAILED)
    );
    Ok(())
}

/// The attempts are used up after an erase and there is no image to
/// restore: sets the lock; the error it returns keeps the device on the
/// console ([`decide::UpdateFailure::Locked`]).
fn lock_erased(s: &mut Session, config: &Config, cfg: &Path) -> UpdateError {
    if let Err(e) = write_lock(cfg, s.attempt) {
        return s.unbounded(e);
    }
    UpdateError::new(
        Stage::Instruction,
        cfg::shown(ATTEMPTS),
        format!(
            "{} attempts of this instruction failed (at most {}): the update lock is set",
            s.attempt, config.max_attempts
        ),
    )
}

/// Writes the update lock (`attempts`: how many had failed).
fn write_lock(cfg: &Path, attempts: u64) -> Result<(), UpdateError> {
    let lock = Lock {
        attempts,
        reason: String::new(),
    };
    store::write_atomic(&cfg.join(LOCK), lock.render().as_bytes())
        .map_err(|e| UpdateError::new(Stage::Finish, cfg::shown(LOCK), e))
}

/// Moves the instruction aside (`cfg:update/instruction.failed`); one
/// already gone is fine.
fn disarm_instruction(cfg: &Path) -> Result<(), UpdateError> {
    match store::rename_durably(&cfg.join(INSTRUCTION), &cfg.join(INSTRUCTION_FAILED)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        done => done,
    }
    .map_err(|e| UpdateError::new(Stage::Finish, cfg::shown(INSTRUCTION), e))
}

/// Removes the instruction, then the count of its attempts.
fn remove_instruction(cfg: &Path) -> Result<(), UpdateError> {
    store::remove_durably(&cfg.join(INSTRUCTION))
        .map_err(|e| UpdateError::new(Stage::Finish, cfg::shown(INSTRUCTION), e))?;
    let _ = store::remove_durably(&cfg.join(ATTEMPTS));
    Ok(())
}

/// Records on `cfg`, before the erase, that the target is about to hold
/// no complete system ([`Touched`]): a later attempt that fails before
/// its own erase is then a failure, not a refusal. Not written: nothing
/// is erased.
fn mark_touched(
    cfg: &Path,
    instruction: &Instruction,
    image: &VerifiedImage,
) -> Result<(), UpdateError> {
    let touched = Touched {
        target: instruction.target.clone(),
        version: image.manifest.version.clone(),
        manifest: instruction.manifest.clone(),
    };
    store::write_atomic(&cfg.join(TOUCHED), touched.render().as_bytes()).map_err(|e| {
        UpdateError::new(
            Stage::Erase,
            cfg::shown(TOUCHED),
            format!("cannot record that the target is about to be erased: {e}; nothing was erased"),
        )
    })
}

/// A complete system is on the target and recorded (result, trial,
/// installed): removes [`mark_touched`]'s record. One that cannot be
/// removed is an error before the instruction goes: left behind with no
/// instruction, it would keep a later boot with nothing to do on the
/// console over a complete system ([`decide::Plan::Empty`]).
fn clear_touched(cfg: &Path) -> Result<(), UpdateError> {
    store::remove_durably(&cfg.join(TOUCHED)).map_err(|e| {
        UpdateError::new(
            Stage::Finish,
            cfg::shown(TOUCHED),
            format!("cannot remove the record of the erase after a complete install: {e}"),
        )
    })
}

fn erase_target(config: &Config, target: &Partition) -> Result<(), UpdateError> {
    let label = erase::ext4_label(&target.device).unwrap_or_else(|| target.name.clone());
    let command = config.mkfs_command(&target.device.to_string_lossy(), &label);
    log::info!("erase: {}", command.join(" "));
    if fault::is_armed(Point::MidErase) {
        erase::clobber_start(&target.device);
        fault::stop_dead(Point::MidErase);
    }
    let start = Instant::now();
    erase::make_filesystem(&command)
        .map_err(|e| UpdateError::new(Stage::Erase, target.device.display(), e))?;
    log::info!(
        "erase: fresh file system on {} (label {label}) ({:.1} s)",
        target.name,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn extract_image(image: &VerifiedImage, target: &Partition) -> Result<Extracted, UpdateError> {
    let mount = mount_ext4(target, TARGET_MOUNT, MsFlags::empty())?;
    install::install(image, mount.path())
}

fn now_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn result_of(s: &Session, outcome: Outcome, failure: Option<&UpdateError>) -> UpdateResult {
    let finished = SystemTime::now();
    UpdateResult {
        outcome,
        version: s.version.clone(),
        stage: failure.map_or(String::new(), |e| e.stage.to_string()),
        reason: failure.map_or(String::new(), |e| format!("{}: {}", e.file, e.reason)),
        attempt: s.attempt,
        started: now_secs(s.started),
        finished: now_secs(finished),
        duration_ms: s.clock.elapsed().as_millis() as u64,
        bytes: s.written.map_or(0, |w| w.bytes),
        entries: s.written.map_or(0, |w| w.entries),
        restored: None,
        instruction: None,
    }
}

/// Records success and the installed version, then removes the
/// instruction: only now, with the new system on disk and synced. The
/// result names the instruction (`instruction_crc`): a later
/// instruction's attempts never take it for their own success.
fn finish(
    s: &Session,
    config: &Config,
    cfg: &Path,
    instruction: &Instruction,
    image: &VerifiedImage,
    instruction_crc: u32,
) -> Result<(), UpdateError> {
    fault::hit(Point::HangInFinish);
    let result = UpdateResult {
        instruction: Some(instruction_crc),
        ..result_of(s, Outcome::Success, None)
    };
    let installed = Installed {
        product: image.manifest.product.clone(),
        version: image.manifest.version.clone(),
    };
    end_install(config, cfg, instruction, &installed, Some(&result))?;
    log::info!("finish: result written, instruction removed");
    Ok(())
}

/// The end of a successful install on `cfg`, [`decide::finish_steps`] in
/// order (`result`: the success to write; None when a cut-off last
/// attempt wrote it already), then the boot flag cleared.
fn end_install(
    config: &Config,
    cfg: &Path,
    instruction: &Instruction,
    installed: &Installed,
    result: Option<&UpdateResult>,
) -> Result<(), UpdateError> {
    use decide::FinishStep;
    let write = |rel: &str, data: String| {
        store::write_atomic(&cfg.join(rel), data.as_bytes())
            .map_err(|e| UpdateError::new(Stage::Finish, cfg::shown(rel), e))
    };
    let version = installed.version.as_str();
    // No result to write: an earlier boot wrote it (the finished path).
    let result_written = result.is_none();
    for step in decide::finish_steps(result_written, read_trial(cfg).as_ref(), version) {
        match step {
            FinishStep::WriteResult => {
                if let Some(result) = result {
                    write(RESULT, result.render())?;
                }
            }
            FinishStep::StartTrial => start_trial(config, cfg, instruction, version),
            FinishStep::WriteInstalled => write(INSTALLED, installed.render())?,
            // A version restored away that this one supersedes (issue 10).
            FinishStep::ForgetRestoredAway => crate::admission::forget_restored_away(cfg, version),
            FinishStep::ClearTouched => clear_touched(cfg)?,
            FinishStep::RemoveInstruction => {
                fault::hit(Point::BeforeRemoval);
                remove_instruction(cfg)?;
            }
        }
    }
    clear_boot_flag(config);
    Ok(())
}

/// Clears the boot loader's flag (after a success or a refusal, never
/// after a failure that the next boot retries). A failure here is logged,
/// not fatal: the instruction, the real trigger, is already gone.
fn clear_boot_flag(config: &Config) {
    with_boot_flag(config, |flag| clear_flag(config, flag));
}

fn clear_flag(config: &Config, flag: &BootFlag) {
    match flag.disarm() {
        Ok(()) if matches!(flag, BootFlag::Grub | BootFlag::None) => {}
        Ok(()) => log::info!("bootflag: {} cleared", config.bootflag),
        Err(e) => log::warn!("bootflag: cannot clear {}: {e}", config.bootflag),
    }
}

/// Runs `f` on the configured boot loader's flag with its files where
/// this recovery reaches them (None, logged, when the setting is bad).
fn with_boot_flag<T>(config: &Config, f: impl FnOnce(&BootFlag) -> T) -> Option<T> {
    // A file named `PARTITION:PATH` is on that partition (by GPT name):
    // `cfg` is mounted already; another is mounted (ext4, or the ESP's
    // vfat) for as long as needed.
    let mut _mounted = None;
    let mut locate = |p: &Path, fstype: &str| -> PathBuf {
        let Some((partition, rest)) = p.to_str().and_then(|s| s.split_once(':')) else {
            return p.to_path_buf();
        };
        if partition == policy::CFG {
            return Path::new(CFG_MOUNT).join(rest);
        }
        let mounted = match partitions::scan().find(partition) {
            Some(part) if fstype == "ext4" => mount_ext4(part, BOOTFLAG_MOUNT, MsFlags::empty()),
            Some(part) => mount_as(part, BOOTFLAG_MOUNT, fstype, MsFlags::empty()),
            None => {
                log::warn!("bootflag: no partition named {partition}");
                return p.to_path_buf();
            }
        };
        match mounted {
            Ok(m) => {
                _mounted = Some(m);
                Path::new(BOOTFLAG_MOUNT).join(rest)
            }
            Err(e) => {
                log::warn!("bootflag: {e}");
                p.to_path_buf()
            }
        }
    };
    // efivarfs, mounted for as long as the flag is used.
    let mut _efivarfs = None;
    let flag = match BootFlag::parse(&config.bootflag) {
        Ok(BootFlag::GrubEnv { file }) => BootFlag::GrubEnv {
            file: locate(&file, "ext4"),
        },
        Ok(BootFlag::Uboot { config, defaults }) => BootFlag::Uboot {
            config: locate(&config, "ext4"),
            defaults,
        },
        Ok(BootFlag::SystemdBoot {
            efivars,
            entry,
            system,
            esp,
        }) => {
            _efivarfs = Mount::new("efivarfs", &efivars, "efivarfs", MsFlags::empty()).ok();
            BootFlag::SystemdBoot {
                efivars,
                entry,
                system,
                esp: esp.map(|esp| locate(&esp, "vfat")),
            }
        }
        Ok(flag) => flag,
        Err(e) => {
            log::warn!("bootflag: {e}");
            return None;
        }
    };
    Some(f(&flag))
}

/// The failure path: says what happened everywhere it can, disarms a
/// refused instruction, and says whether to reboot or to stay.
fn fail(s: &mut Session, e: &UpdateError) -> After {
    log::error!("{e}");
    let delay = Duration::from_secs(s.config.as_ref().map_or(5, |c| c.failure_delay));
    if s.lock_found {
        // The result of the failure that set the lock stays as it is.
        log::error!(
            "the update lock (cfg:{LOCK}) is set: this recovery erases nothing until an \
             operator clears it (bootloader-glue unlock); see cfg:{} and cfg:{LOG}",
            RESULT
        );
        return After::Stay("the update lock is set; power-cycle after clearing it".into());
    }
    let Some(cfg) = s.cfg.as_ref().map(|m| m.path().to_path_buf()) else {
        log::error!("cfg is not mounted: no result can be recorded; rebooting");
        return After::Reboot(delay);
    };
    if let Some(pending) = s.restoring.clone() {
        return restore_failed(s, &cfg, &pending, e);
    }
    // Erased by this attempt or, as cfg says, by an earlier one.
    let erased_now = s.erased != Erased::No;
    let on_cfg = read_touched(&cfg);
    let touched = erased_now || on_cfg.is_some();
    let failure = decide::update_failure(cfg.join(LOCK).exists(), touched, s.attempt, s.unbounded);
    let outcome = match failure {
        decide::UpdateFailure::Locked => Outcome::Locked,
        decide::UpdateFailure::Refused => Outcome::Refused,
        decide::UpdateFailure::Failed
        | decide::UpdateFailure::Stranded
        | decide::UpdateFailure::Unbounded => Outcome::Failed,
    };
    if let (Outcome::Failed, Some(instruction)) = (outcome, &s.instruction) {
        // What was being written: verified now or before an earlier erase.
        let verified = s.verified.then_some(s.version.as_str());
        s.version = decide::failed_version(
            verified,
            instruction,
            on_cfg.as_ref().and_then(|t| t.as_ref().ok()),
        );
    }
    let result = result_of(s, outcome, Some(e));
    if let Err(err) = store::write_atomic(&cfg.join(RESULT), result.render().as_bytes()) {
        log::error!("cannot write cfg:{}: {err}", RESULT);
    }
    if touched && !erased_now {
        log::error!(
            "an earlier attempt erased the target ({} is there): it holds no complete system, so \
             this is a failure after the erase, not a refusal",
            cfg::shown(TOUCHED)
        );
    }
    match failure {
        decide::UpdateFailure::Unbounded => stay_unbounded(e),
        decide::UpdateFailure::Stranded => {
            log::error!(
                "the target holds no complete system and this failure came before an attempt \
                 could be counted: neither retrying nor booting the system can help. Fix what \
                 the message above names (cfg:{INSTRUCTION}), then power-cycle"
            );
            After::Stay(
                "the system partition holds no complete system; see the message above".into(),
            )
        }
        decide::UpdateFailure::Refused => {
            let from = cfg.join(INSTRUCTION);
            if from.exists() {
                match store::rename_durably(&from, &cfg.join(REFUSED)) {
                    Ok(()) => log::error!(
                        "refused: the system partition was not touched; the instruction is \
                         disarmed (kept as cfg:{REFUSED}); rebooting into the old system"
                    ),
                    Err(err) => log::error!("cannot disarm the instruction: {err}"),
                }
            }
            if let Some(config) = &s.config {
                clear_boot_flag(config);
            }
            After::Reboot(delay)
        }
        decide::UpdateFailure::Failed => {
            let pending = s.config.as_ref().and_then(|config| {
                decide::after_failure(
                    config,
                    s.instruction.as_ref(),
                    &s.version,
                    s.attempt,
                    touched,
                    e,
                )
            });
            match pending {
                Some(pending) => {
                    if let Err(err) = restore_next(&cfg, s.attempt, &pending) {
                        // The next boot would find the attempts used up and
                        // fail to record the restore the same way.
                        return stay_unbounded(&err);
                    }
                }
                None => log::error!(
                    "failed after the erase (attempt {}): the instruction stays, the next boot \
                     tries again",
                    s.attempt
                ),
            }
            After::Reboot(delay)
        }
        decide::UpdateFailure::Locked => {
            // As many as the lock says (this boot counted none of its own).
            let failed = std::fs::read_to_string(cfg.join(LOCK))
                .ok()
                .and_then(|text| Lock::parse(&text).ok())
                .map_or(s.attempt, |lock| lock.attempts);
            log::error!(
                "the update lock is set after {failed} failed attempts: no further attempt is \
                 made and nothing more is erased. The system partition may hold a partial \
                 system. Fix the image or the device, then clear the lock (bootloader-glue \
                 unlock) and reboot"
            );
            After::Stay("the update lock is set; power-cycle after clearing it".into())
        }
    }
}

/// The last attempt failed after the erase (or was cut off): leaves the
/// restore to the next boot ([`decide::LEAVE_RESTORE`]: `cfg:update/restore`
/// first, then the update lock, so that the failing image is not tried
/// again, then the instruction disarmed, kept as
/// `cfg:update/instruction.failed`), stopping at the first step that fails.
fn restore_next(cfg: &Path, attempts: u64, pending: &PendingRestore) -> Result<(), UpdateError> {
    decide::run_steps(&decide::LEAVE_RESTORE, |step| {
        cfg_step(cfg, step, pending, attempts)?;
        if step == decide::Step::WritePending {
            fault::hit(Point::RestoreRecorded);
        }
        Ok(())
    })
    .map_err(|(_, e)| e)?;
    log::error!(
        "attempt {attempts} was the last: the restore of {} is recorded, the update lock is set \
         and the instruction is disarmed (kept as {})",
        pending.image,
        cfg::shown(INSTRUCTION_FAILED)
    );
    Ok(())
}

/// Carries out one step on `cfg` of the way into or out of a restore
/// (`attempts`: for the lock).
fn cfg_step(
    cfg: &Path,
    step: decide::Step,
    pending: &PendingRestore,
    attempts: u64,
) -> Result<(), UpdateError> {
    use decide::Step;
    let (rel, done) = match step {
        Step::WritePending => (
            RESTORE,
            store::write_atomic(&cfg.join(RESTORE), pending.render().as_bytes()),
        ),
        Step::Lock => return write_lock(cfg, attempts),
        Step::DisarmInstruction => return disarm_instruction(cfg),
        Step::RemoveTrial => (TRIAL, store::remove_durably(&cfg.join(TRIAL))),
        Step::RemovePending => (RESTORE, store::remove_durably(&cfg.join(RESTORE))),
    };
    done.map_err(|e| UpdateError::new(Stage::Finish, cfg::shown(rel), e))
}

/// The restore itself failed: the result names the failure that led to
/// the restore and what the restore image failed. After this attempt's
/// erase with attempts left, the next boot tries again; else the device
/// stays on the console saying what, why, how often and what to do, and
/// the count starts a new round for the operator's power cycle
/// ([`decide::after_restore_failure`]). `cfg:update/restore` stays.
fn restore_failed(s: &Session, cfg: &Path, pending: &PendingRestore, e: &UpdateError) -> After {
    let result = UpdateResult {
        reason: format!(
            "cannot restore {} ({}): {}: {}",
            pending.image, pending.reason, e.file, e.reason
        ),
        attempt: pending.attempts,
        ..result_of(s, Outcome::Failed, Some(e))
    };
    if let Err(err) = store::write_atomic(&cfg.join(RESULT), result.render().as_bytes()) {
        log::error!("cannot write cfg:{}: {err}", RESULT);
    }
    let default = Config::for_product("");
    let config = s.config.as_ref().unwrap_or(&default);
    let after = decide::after_restore_failure(config, pending, s.erased);
    let record = PendingRestore {
        last_failure: format!("{}: {}: {}", e.stage, e.file, e.reason),
        attempts: match after {
            decide::AfterRestore::Retry => pending.attempts,
            decide::AfterRestore::Stay => 0,
        },
        ..pending.clone()
    };
    if let Err(err) = store::write_atomic(&cfg.join(RESTORE), record.render().as_bytes()) {
        log::error!("cannot write {}: {err}", cfg::shown(RESTORE));
    }
    match after {
        decide::AfterRestore::Retry => {
            log::error!(
                "the restore of {} failed on attempt {} of at most {} ({} check): rebooting to \
                 try again",
                pending.image,
                pending.attempts,
                config.max_attempts,
                e.stage
            );
            let delay = Duration::from_secs(config.failure_delay);
            After::Reboot(delay)
        }
        decide::AfterRestore::Stay => {
            log::error!("{}", decide::restore_stay_message(config, pending, e));
            After::Stay(
                "the last good image cannot be restored; power-cycle after staging it".into(),
            )
        }
    }
}

/// A record that bounds the retries cannot be written: says so, naming
/// the file ([`decide::unbounded_message`]); the device stays.
fn stay_unbounded(e: &UpdateError) -> After {
    log::error!("{}", decide::unbounded_message(e));
    After::Stay(format!(
        "{} cannot be written; see the message above",
        e.file
    ))
}

/// Stays on the console: an emergency shell if the initramfs has one,
/// else the machine waits with the message on screen.
fn stay(why: &str) -> ! {
    supervisor::disarm();
    nix::unistd::sync();
    if Path::new("/bin/sh").exists() {
        log::error!("starting an emergency shell");
        let _ = std::process::Command::new("/bin/sh").status();
    }
    log::error!("halted: {why}");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn reboot(delay: Duration) -> ! {
    std::thread::sleep(delay);
    nix::unistd::sync();
    supervisor::reboot_now()
}
