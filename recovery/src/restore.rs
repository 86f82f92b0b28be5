//! The recovery's decisions about trial boots and restores, as pure
//! functions over the records on `cfg` ([`formats::trial`]), so that each
//! can be tested on the host; [`crate::update`] carries them out.
//!
//! - [`plan`]: what a boot does from what it [`Found`]: finish a pending
//!   restore (whatever the instruction), restore a system whose trial ran
//!   out, run the update, nothing, or stay when `update/touched` says the
//!   target is empty and nothing else can fill it.
//! - [`after_failure`]: an update that failed after the erase on its last
//!   attempt restores the last good image (when the instruction names one);
//!   so does [`after_attempts_used`], a last attempt cut off after its
//!   erase; one cut off before it (or after its success was recorded)
//!   never erases the intact system.
//! - [`update_failure`], [`unbounded_message`]: how a failed update ends;
//!   a record that bounds the retries and cannot be written stays.
//! - [`LEAVE_RESTORE`], [`end_restore`], [`run_steps`]: the order of the
//!   records on `cfg` on the way into a restore and out of it.
//! - [`count_restore`], [`after_restore_failure`], [`restore_stay_message`]:
//!   a restore's attempts are counted as an update's, and when they are
//!   used up (or the image to restore fails its checks, whatever an
//!   update [`Erased`] before) the recovery stays on the console saying
//!   what, why and what to do.
//! - [`after_counter_stop`]: a boot loader whose count of trial boots
//!   cannot be stopped would send every boot back to the recovery: stay
//!   on the console naming the file or variable to clear by hand.
//! - [`trial_after_install`]: the trial record a successful install
//!   leaves, and [`previous_version`], the version it replaced.
//! - [`finish_steps`]: the end of a successful install on `cfg`, and what
//!   a boot redoes of it after a cut ([`AttemptsUsed::Finished`]);
//!   [`LOCK_AND_BOOT`], the order of an untouched lock.

use crate::error::UpdateError;
use formats::bootflag::BootFlag;
use formats::config::Config;
use formats::instruction::Instruction;
use formats::result::{Outcome, UpdateResult};
use formats::trial::{Origin, PendingRestore, Touched, Trial};

/// What this boot of the recovery does, from what it found on `cfg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Restore (`record`: write `cfg:update/restore` first, so that a
    /// power cut during the restore leaves it to the next boot).
    Restore {
        pending: PendingRestore,
        record: bool,
    },
    /// Run the update the instruction asks for.
    Update,
    /// The instruction is there but cannot be read (an I/O error, a bad
    /// CRC) and no restore is pending: the update's failure path.
    BadInstruction(UpdateError),
    /// No instruction, nothing on trial.
    Nothing,
    /// No instruction, no pending restore, nothing on trial, but
    /// `cfg:update/touched` says the target was erased and not refilled:
    /// there is no system to boot. Stay on the console (the message says
    /// what to do).
    Empty(String),
    /// A trial with no instruction, but the boot loader has boots of it
    /// left (or stopped counting: confirmed): a one-shot flag left set by
    /// a power cut booted the recovery, not the end of the trial. Clear
    /// the flag and boot the system (the string says why).
    StaleFlag(String),
}

/// What a boot found on `cfg`, for [`plan`].
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    /// `cfg:update/restore`.
    pub pending: Option<&'a PendingRestore>,
    /// `cfg:update/instruction`: absent (`Ok(false)`), readable, or not.
    pub instruction: Result<bool, &'a UpdateError>,
    /// `cfg:update/trial`.
    pub trial: Option<&'a Trial>,
    /// `cfg:update/touched`.
    pub touched: Option<TouchedFound<'a>>,
}

/// `cfg:update/touched` as a boot found it, when the file is there: read,
/// or not (why). Its presence alone says the target was erased: one that
/// cannot be read counts as touched all the same.
pub type TouchedFound<'a> = Result<&'a Touched, &'a str>;

/// A pending restore comes first (it was decided on by an earlier boot,
/// which may have erased the system; an instruction left beside it, even
/// one that cannot be read, is only moved aside on the way); then the
/// instruction; a trial found with no instruction ran out only when the
/// boot loader says no boot of it is left (`trial_left`, asked only then:
/// Some(0), or unreadable); with boots left or no counting, the recovery
/// was booted by a stale one-shot flag (a power cut between removing the
/// instruction and clearing the flag), and the new system must not be
/// restored over. With none of them, a target recorded as erased holds
/// no system to reboot into.
pub fn plan(found: Found<'_>, trial_left: impl FnOnce() -> Result<Option<u64>, String>) -> Plan {
    match (found.pending, found.instruction, found.trial) {
        (Some(pending), _, _) => Plan::Restore {
            pending: pending.clone(),
            record: false,
        },
        (None, Err(e), _) => Plan::BadInstruction(e.clone()),
        (None, Ok(true), _) => Plan::Update,
        (None, Ok(false), Some(trial)) => match trial_left() {
            Ok(Some(0)) => Plan::Restore {
                pending: trial.expired(),
                record: true,
            },
            Err(e) => {
                let mut pending = trial.expired();
                pending.reason = format!(
                    "{} not confirmed (the boot loader's count of trial boots cannot be read: \
                     {e})",
                    trial.version
                );
                Plan::Restore {
                    pending,
                    record: true,
                }
            }
            Ok(Some(left)) => Plan::StaleFlag(format!(
                "{} is on trial with {left} boots left: the recovery was booted by a boot flag \
                 left set, not by the end of the trial; clearing it, not restoring",
                trial.version
            )),
            Ok(None) => Plan::StaleFlag(format!(
                "{} is on trial but the boot loader no longer counts (confirmed, its record not \
                 yet removed): clearing the boot flag, not restoring",
                trial.version
            )),
        },
        (None, Ok(false), None) => match found.touched {
            Some(touched) => Plan::Empty(empty_target_message(touched)),
            None => Plan::Nothing,
        },
    }
}

/// The console's message for a target that `cfg:update/touched` says was
/// erased, with nothing on `cfg` to refill it.
fn empty_target_message(touched: TouchedFound<'_>) -> String {
    let touched = match touched {
        Ok(touched) => touched,
        Err(why) => {
            return format!(
                "the system partition may hold no complete system: {touched_file} is there but \
                 cannot be read ({why}), and cfg holds no instruction, no pending restore and no \
                 trial to finish or undo an erase. Rebooting could boot an empty partition. Write \
                 an instruction for a good image (or {restore_file} naming the last good image) \
                 on cfg, then power-cycle; remove {touched_file} only if the system partition is \
                 known to hold a complete system",
                touched_file = formats::cfg::shown(formats::cfg::TOUCHED),
                restore_file = formats::cfg::shown(formats::cfg::RESTORE),
            );
        }
    };
    format!(
        "{target} holds no complete system: {touched_file} says it was erased to install {version} \
         ({manifest}), and cfg holds no instruction, no pending restore and no trial to finish \
         or undo that (one of them may have been unreadable: see the warnings above). Rebooting \
         would boot an empty partition. Write an instruction for a good image (or \
         {restore_file} naming the last good image) on cfg, then power-cycle; remove \
         {touched_file} only if {target} is known to hold a complete system",
        target = touched.target,
        version = touched.version,
        manifest = touched.manifest,
        touched_file = formats::cfg::shown(formats::cfg::TOUCHED),
        restore_file = formats::cfg::shown(formats::cfg::RESTORE),
    )
}

/// A step on `cfg` on the way into or out of a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Write the pending restore (`cfg:update/restore`).
    WritePending,
    /// Set the update lock (`cfg:update/lock`).
    Lock,
    /// Move the instruction aside (`cfg:update/instruction.failed`).
    DisarmInstruction,
    /// Remove the trial (`cfg:update/trial`).
    RemoveTrial,
    /// Remove the pending restore.
    RemovePending,
}

/// The steps that leave a restore to the next boot, in this order: the
/// pending restore first (from then on every boot restores, whatever
/// follows), then the lock, then the instruction moved aside (never
/// before the restore is recorded: else a cut leaves an erased system
/// with nothing that brings the recovery back).
pub const LEAVE_RESTORE: [Step; 3] = [Step::WritePending, Step::Lock, Step::DisarmInstruction];

/// A step of the end of a successful install on `cfg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishStep {
    /// Write `cfg:update/result` (`success`, naming the instruction).
    WriteResult,
    /// Start the trial of the version installed.
    StartTrial,
    /// Write `cfg:update/installed`.
    WriteInstalled,
    /// Forget a version restored away that this one supersedes.
    ForgetRestoredAway,
    /// Remove `cfg:update/touched`: only now, with the success, the trial
    /// and the installed version recorded (a cut before leaves the target
    /// touched, never a complete system without its trial).
    ClearTouched,
    /// Remove the instruction and its count: the last step.
    RemoveInstruction,
}

/// The steps that end a successful install, in order. The install itself
/// (`result_written` false) takes them all. A boot that finds the attempts
/// used up with this instruction's success recorded
/// ([`AttemptsUsed::Finished`]) was cut off somewhere after the result:
/// it redoes the rest, each harmless to redo, except the trial, started
/// only when `trial` is not one of `version` (restarting it would reset
/// the boot loader's count).
pub fn finish_steps(result_written: bool, trial: Option<&Trial>, version: &str) -> Vec<FinishStep> {
    let start_trial = !result_written || !matches!(trial, Some(t) if t.version == version);
    [
        (!result_written).then_some(FinishStep::WriteResult),
        start_trial.then_some(FinishStep::StartTrial),
        Some(FinishStep::WriteInstalled),
        Some(FinishStep::ForgetRestoredAway),
        Some(FinishStep::ClearTouched),
        Some(FinishStep::RemoveInstruction),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The steps that end an update whose attempts are used up with nothing
/// erased ([`AttemptsUsed::LockAndBoot`]), in this order: the instruction
/// moved aside first, then the lock. The other order leaves, after a cut
/// between them, an instruction beside the lock, and the next boot stays
/// on the console over an intact system; this order leaves at worst a
/// disarmed instruction without the lock (nothing left to retry).
pub const LOCK_AND_BOOT: [Step; 2] = [Step::DisarmInstruction, Step::Lock];

/// The steps of [`LEAVE_RESTORE`] that a boot finding the pending restore
/// must still take before it restores: a power cut right after the
/// record was written (before the lock, or before the instruction was
/// moved aside) leaves them undone. An update's restore sets the lock (if
/// `lock` is not set yet) and moves the instruction aside (if one is
/// still there); a trial's has nothing more to do.
pub fn resume_leaving(pending: &PendingRestore, lock: bool, instruction: bool) -> Vec<Step> {
    match pending.origin {
        Origin::Trial => Vec::new(),
        Origin::Update => [
            (!lock).then_some(Step::Lock),
            instruction.then_some(Step::DisarmInstruction),
        ]
        .into_iter()
        .flatten()
        .collect(),
    }
}

/// The steps that end a restore once its result is recorded: an
/// instruction still on `cfg` (a cut inside [`LEAVE_RESTORE`]) is moved
/// aside first (else the boot loader sends the next boot back to the
/// recovery, which runs the failed update again), then the trial, and
/// the pending restore last.
pub fn end_restore(instruction: bool) -> Vec<Step> {
    let disarm = instruction.then_some(Step::DisarmInstruction);
    disarm
        .into_iter()
        .chain([Step::RemoveTrial, Step::RemovePending])
        .collect()
}

/// Runs `steps` in order with `run`, stopping at the first that fails:
/// returns it with its error.
pub fn run_steps<E>(
    steps: &[Step],
    mut run: impl FnMut(Step) -> Result<(), E>,
) -> Result<(), (Step, E)> {
    steps
        .iter()
        .try_for_each(|&step| run(step).map_err(|e| (step, e)))
}

/// Counts an attempt of the restore `pending` (the record to write before
/// anything is erased), or, with `max-attempts` of them begun in this
/// round and none finished (each was cut off: a power cut, a reset, a
/// panic), says so: the boot stays on the console.
pub fn count_restore(config: &Config, pending: &PendingRestore) -> Result<PendingRestore, String> {
    if pending.attempts >= config.max_attempts {
        let last = if pending.last_failure.is_empty() {
            "none recorded its failure (cut off by a power cut or a reset)".to_string()
        } else {
            format!("the last recorded: {}", pending.last_failure)
        };
        return Err(format!(
            "{} attempts of this restore did not finish (at most {}); {last}",
            pending.attempts, config.max_attempts
        ));
    }
    Ok(PendingRestore {
        attempts: pending.attempts + 1,
        ..pending.clone()
    })
}

/// What a failed attempt of a restore leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterRestore {
    /// Reboot: the next boot tries the restore again (attempts are left,
    /// and the failure came after this attempt's erase: the storage, a
    /// write, a hang may do better next time).
    Retry,
    /// Stay on the console: the attempts are used up, or the image to
    /// restore failed a check before the erase (missing, corrupt, not
    /// trusted: the same bytes fail the same way).
    Stay,
}

/// Which erase of the target this boot made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erased {
    No,
    /// The update's.
    ByUpdate,
    /// The restore's (this boot's attempt of it).
    ByRestore,
}

/// After the attempt `pending.attempts` of a restore failed, `erased`
/// saying which erase this boot made: only the restore's own erase makes
/// a retry worth it (an update's erase earlier in the same boot says
/// nothing about the restore image, which fails its checks the same way
/// on every boot).
pub fn after_restore_failure(
    config: &Config,
    pending: &PendingRestore,
    erased: Erased,
) -> AfterRestore {
    if erased == Erased::ByRestore && pending.attempts < config.max_attempts {
        AfterRestore::Retry
    } else {
        AfterRestore::Stay
    }
}

/// The console's message when a restore stays: what was being restored
/// and why, how many attempts failed, what failed last, and what the
/// operator does.
pub fn restore_stay_message(config: &Config, pending: &PendingRestore, e: &UpdateError) -> String {
    format!(
        "the last good image {image} cannot be restored: {file}: {why} ({stage} check). It was \
         being restored into {target} because {reason}; {attempts} attempt(s) of the restore \
         failed (at most {max} in a row). {target} may hold no complete system. Stage a good \
         image of the version to restore as {image} (or repair the disk that holds it), then \
         power-cycle: the restore starts again with {max} attempts",
        image = pending.image,
        file = e.file,
        why = e.reason,
        stage = e.stage,
        target = pending.target,
        reason = pending.reason,
        attempts = pending.attempts,
        max = config.max_attempts,
    )
}

/// How a failed update ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateFailure {
    /// The update lock is set: stay on the console.
    Locked,
    /// The target was not touched: the instruction is disarmed and the
    /// old system boots.
    Refused,
    /// The target was erased, by this attempt or an earlier one: the
    /// instruction stays (the attempt limit bounds the retries; the last
    /// one restores, see [`after_failure`]).
    Failed,
    /// The target was erased by an earlier attempt and this failure came
    /// before the attempt was counted (the instruction unreadable): a
    /// retry would never be counted and there is no system to boot: stay.
    Stranded,
    /// The target holds no complete system and a record that bounds the
    /// retries (the attempt count, a pending restore, the lock) could not
    /// be written: every reboot would come back and fail the same way, or
    /// erase again without end. Stay, naming the file
    /// ([`unbounded_message`]).
    Unbounded,
}

/// Decides from `lock` (the update lock set), `touched` (the target
/// erased by this attempt or, as `cfg:update/touched` says, an earlier
/// one), `attempt` (0: not counted yet) and `unbounded` (a record that
/// bounds the retries could not be written).
pub fn update_failure(lock: bool, touched: bool, attempt: u64, unbounded: bool) -> UpdateFailure {
    match (lock, touched, attempt, unbounded) {
        (true, _, _, _) => UpdateFailure::Locked,
        (false, false, _, _) => UpdateFailure::Refused,
        (false, true, _, true) => UpdateFailure::Unbounded,
        (false, true, 0, false) => UpdateFailure::Stranded,
        (false, true, _, false) => UpdateFailure::Failed,
    }
}

/// The console's message when `e`, the failure to write a record that
/// bounds the retries, keeps the device there.
pub fn unbounded_message(e: &UpdateError) -> String {
    format!(
        "cannot write {file}: {why}. That record bounds the retries (the attempt count, a \
         pending restore, the update lock): without it every reboot would come back here and \
         do the same, for ever. The system partition may hold no complete system. Repair cfg \
         (full, read-only or failing: fsck it, free space, or replace it), then power-cycle",
        file = e.file,
        why = e.reason
    )
}

/// After a failure of `version` in its attempt `attempt`: restore when
/// the system partition was erased, this was the last attempt, and the
/// instruction names a restore image. The reason names both the failure
/// and the attempt.
pub fn after_failure(
    config: &Config,
    instruction: Option<&Instruction>,
    version: &str,
    attempt: u64,
    erased: bool,
    e: &UpdateError,
) -> Option<PendingRestore> {
    let instruction = instruction?;
    let image = instruction.restore.clone()?;
    if !erased || attempt < config.max_attempts {
        return None;
    }
    Some(PendingRestore {
        failed: version.to_string(),
        stage: e.stage.to_string(),
        reason: format!(
            "{version} failed at {} on attempt {attempt} of {}: {}: {}",
            e.stage, config.max_attempts, e.file, e.reason
        ),
        image,
        target: instruction.target.clone(),
        origin: Origin::Update,
        attempts: 0,
        last_failure: String::new(),
    })
}

/// The version a failed update of `instruction` was writing, for the
/// records: the one this boot verified (`verified`), else the one an
/// earlier attempt verified before it erased the target (`touched`, when
/// it is of this manifest), else `unknown`: a manifest that was not
/// verified says nothing that can be trusted, not even its name.
pub fn failed_version(
    verified: Option<&str>,
    instruction: &Instruction,
    touched: Option<&Touched>,
) -> String {
    verified
        .map(str::to_string)
        .or_else(|| {
            touched
                .filter(|t| t.manifest == instruction.manifest)
                .map(|t| t.version.clone())
        })
        .unwrap_or_else(|| UNKNOWN.to_string())
}

/// The version of a failed update whose manifest was never verified.
pub const UNKNOWN: &str = "unknown";

/// What a boot does that finds the attempts of its instruction used up
/// ([`after_attempts_used`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptsUsed {
    /// The last attempt installed `version` and recorded its success, and
    /// was cut off before the end: redo the rest ([`finish_steps`]).
    Finished { version: String },
    /// No attempt left the target erased: the old system is intact. Set
    /// the lock, move the instruction aside and boot it (`reason`: for
    /// the result).
    LockAndBoot { reason: String },
    /// The target was erased and the instruction names an image: restore.
    Restore(PendingRestore),
    /// The target was erased and there is no image to restore: set the
    /// lock and stay on the console.
    LockAndStay,
}

/// The attempts of an instruction were used up before this boot
/// (`previous`, the number counted, is at least `max-attempts`): the last
/// one was cut off (a power cut, a reset) before it recorded its failure
/// or removed the instruction. What it left on `cfg` says how far it got:
/// a `result` of success written by that last attempt (its `attempt` is
/// `previous`, its `instruction-crc` this instruction's, `instruction_crc`:
/// an older instruction's success on the same attempt is not this one's)
/// means the new system is complete and only the end of the install was
/// cut off, `update/touched` or not (it goes after the result): finish it.
/// Otherwise `touched` (`cfg:update/touched`, even unreadable: written
/// before each erase) says the target holds no complete system: restore
/// it when the instruction names an image, as after a failure on the last
/// attempt. Without it no attempt got as far as the erase, and the lock
/// stops a fourth without erasing an intact system just to restore it.
pub fn after_attempts_used(
    config: &Config,
    instruction: &Instruction,
    touched: Option<TouchedFound<'_>>,
    result: Option<&UpdateResult>,
    previous: u64,
    instruction_crc: u32,
) -> AttemptsUsed {
    // This instruction's last attempt recorded its success: the target is
    // complete (`update/touched` is removed only after the result, so it
    // may still be there); finish.
    if let Some(r) = result.filter(|r| {
        r.outcome == Outcome::Success
            && r.attempt == previous
            && r.instruction == Some(instruction_crc)
    }) {
        return AttemptsUsed::Finished {
            version: r.version.clone(),
        };
    }
    let Some(touched) = touched else {
        return AttemptsUsed::LockAndBoot {
            reason: format!(
                "{previous} attempts of the update to {} did not finish (at most {}), none as \
                 far as the erase: the update lock is set; the system partition was not touched",
                instruction.manifest, config.max_attempts
            ),
        };
    };
    let Some(image) = instruction.restore.clone() else {
        return AttemptsUsed::LockAndStay;
    };
    let version = failed_version(None, instruction, touched.ok());
    let what = if version == UNKNOWN {
        let by = match touched {
            Ok(t) => format!(
                "being written by {} of another instruction, {}",
                t.version, t.manifest
            ),
            Err(why) => format!(
                "{} cannot be read: {why}",
                formats::cfg::shown(formats::cfg::TOUCHED)
            ),
        };
        format!(
            "the update to {} (version unknown: the erased target was {by})",
            instruction.manifest
        )
    } else {
        version.clone()
    };
    AttemptsUsed::Restore(PendingRestore {
        failed: version,
        stage: "attempts".into(),
        reason: format!(
            "{what}: attempt {previous} of {} did not finish (cut off by a power cut or a \
             reset, after the erase)",
            config.max_attempts
        ),
        image,
        target: instruction.target.clone(),
        origin: Origin::Update,
        attempts: 0,
        last_failure: String::new(),
    })
}

/// Where the boot loader's count of trial boots is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterStop {
    /// At the end of a restore: the last good image is back. A count left
    /// running brings the next boot back to the recovery, which tries once
    /// more ([`CounterStop::Stray`]).
    AfterRestore,
    /// A count found running with no trial on `cfg`, `left` boots of it
    /// left: at 0 the boot loader sends every boot to the recovery.
    Stray { left: u64 },
}

/// What follows an attempt to stop the count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterCounter {
    /// Stopped (or the boot loader does not count here).
    Done,
    /// Not stopped, but rebooting is bounded: warn and go on.
    Warn(String),
    /// Not stopped, and every boot would come back here: stay on the
    /// console with this message.
    Stay(String),
}

/// Decides after `stopped` (the boot loader's `disarm_trial`), `bootflag`
/// being the recovery's setting (its files as the operator knows them).
pub fn after_counter_stop(
    bootflag: &str,
    when: CounterStop,
    stopped: &std::io::Result<()>,
) -> AfterCounter {
    let e = match stopped {
        Ok(()) => return AfterCounter::Done,
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => return AfterCounter::Done,
        Err(e) => e,
    };
    let by_hand = clear_counter_by_hand(bootflag);
    match when {
        CounterStop::AfterRestore => AfterCounter::Warn(format!(
            "trial: cannot stop the counting of the boot loader (bootflag={bootflag}): {e}; the \
             next boot comes back to the recovery, which tries once more, and if that fails \
             stays on the console. By hand: {by_hand}"
        )),
        CounterStop::Stray { left: 0 } => AfterCounter::Stay(format!(
            "the boot loader (bootflag={bootflag}) still counts trial boots with none left and \
             no trial on cfg, and its count cannot be stopped: {e}. Every boot would come back \
             to the recovery. By hand: {by_hand}; then power-cycle"
        )),
        CounterStop::Stray { left } => AfterCounter::Warn(format!(
            "trial: the boot loader (bootflag={bootflag}) counts trial boots with no trial on \
             cfg and its count cannot be stopped: {e}; {left} boots of the system are left \
             before it boots the recovery again. By hand: {by_hand}"
        )),
    }
}

/// How an operator stops the count of the boot loader `bootflag` by
/// hand: the file or variable, and the command.
pub fn clear_counter_by_hand(bootflag: &str) -> String {
    use formats::trial::{
        GRUB_COUNTER, GRUB_ENV_ON_CFG, LOADER_ENTRIES, UBOOT_BOOTCOUNT, UBOOT_UPGRADE_AVAILABLE,
    };
    match BootFlag::parse(bootflag) {
        Ok(BootFlag::Grub) => format!(
            "unset {GRUB_COUNTER} in the GRUB environment block cfg:{GRUB_ENV_ON_CFG} \
             (grub-editenv FILE unset {GRUB_COUNTER}), or replace that file"
        ),
        Ok(BootFlag::GrubEnv { file }) => format!(
            "unset {GRUB_COUNTER} in the GRUB environment block {} (grub-editenv FILE unset \
             {GRUB_COUNTER}), or replace that file",
            file.display()
        ),
        Ok(BootFlag::Uboot { config, .. }) => format!(
            "in U-Boot's environment (the area {} names) unset {UBOOT_UPGRADE_AVAILABLE} and set \
             {UBOOT_BOOTCOUNT}=0: at U-Boot's prompt `setenv {UBOOT_UPGRADE_AVAILABLE}; setenv \
             {UBOOT_BOOTCOUNT} 0; saveenv`, or fw_setenv",
            config.display()
        ),
        Ok(BootFlag::SystemdBoot { system, esp, .. }) => format!(
            "rename the system's entry {LOADER_ENTRIES}/{}+LEFT[-DONE].conf on the ESP{} back to \
             {system}",
            system.strip_suffix(".conf").unwrap_or(&system),
            esp.map_or(String::new(), |esp| format!(" ({})", esp.display()))
        ),
        Ok(BootFlag::None) => "nothing (bootflag=none counts nothing)".into(),
        Err(e) => format!("fix the recovery's bootflag setting: {e}"),
    }
}

/// The trial a successful install of `version` starts, or why there is
/// none: no trial boots configured, or no image to restore.
pub fn trial_after_install(
    config: &Config,
    instruction: &Instruction,
    version: &str,
    previous: &str,
) -> Result<Trial, &'static str> {
    if config.trial_boots == 0 {
        return Err("trial-boots=0: the new system is not on trial");
    }
    let restore = instruction
        .restore
        .clone()
        .ok_or("the instruction names no image to restore: the new system is not on trial")?;
    Ok(Trial {
        version: version.to_string(),
        previous: previous.to_string(),
        restore,
        target: instruction.target.clone(),
        limit: config.trial_boots,
        bootloader: config.bootflag.clone(),
    })
}

/// The version an install of `version` replaced: from a trial of this
/// same version already on `cfg` (a retry after a power cut, when
/// `update/installed` may already name the new version), else the
/// installed one, else `unknown`.
pub fn previous_version(
    existing: Option<&Trial>,
    version: &str,
    installed: Option<&str>,
) -> String {
    existing
        .filter(|t| t.version == version)
        .map(|t| t.previous.clone())
        .or_else(|| installed.map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Stage;
    use formats::instruction::PartitionPath;

    fn instruction(restore: bool) -> Instruction {
        Instruction {
            manifest: PartitionPath::parse("storage:updates/demo-2.0.manifest").unwrap(),
            target: "system".into(),
            allow_downgrade: false,
            requested: 1,
            restore: restore
                .then(|| PartitionPath::parse("storage:updates/demo-1.0.manifest"))
                .flatten(),
        }
    }

    fn trial() -> Trial {
        trial_after_install(
            &Config::for_product("demo"),
            &instruction(true),
            "2.0",
            "1.0",
        )
        .unwrap()
    }

    /// What a boot found: `instruction` there and readable or absent.
    fn found<'a>(
        pending: Option<&'a PendingRestore>,
        instruction: bool,
        trial: Option<&'a Trial>,
    ) -> Found<'a> {
        Found {
            pending,
            instruction: Ok(instruction),
            trial,
            touched: None,
        }
    }

    /// A boot loader that says no trial boot is left.
    fn none_left() -> Result<Option<u64>, String> {
        Ok(Some(0))
    }

    #[test]
    fn a_pending_restore_comes_first_then_the_instruction_then_the_trial() {
        let pending = trial().expired();
        let unasked = || -> Result<Option<u64>, String> { panic!("the counter is not asked") };
        assert_eq!(
            plan(found(Some(&pending), true, Some(&trial())), unasked),
            Plan::Restore {
                pending: pending.clone(),
                record: false
            }
        );
        assert_eq!(
            plan(found(None, true, Some(&trial())), unasked),
            Plan::Update
        );
        assert_eq!(
            plan(found(None, false, Some(&trial())), none_left),
            Plan::Restore {
                pending,
                record: true
            }
        );
        assert_eq!(plan(found(None, false, None), unasked), Plan::Nothing);
    }

    #[test]
    fn a_trial_is_restored_only_when_the_boot_loader_has_no_boot_of_it_left() {
        // A power cut between removing the instruction and clearing a
        // grubenv/U-Boot flag boots the recovery with boots left: 2.0 has
        // not even booted once, and must not be restored over.
        let t = trial();
        match plan(found(None, false, Some(&t)), || Ok(Some(2))) {
            Plan::StaleFlag(why) => assert!(why.contains("2 boots left"), "{why}"),
            other => panic!("boots left: {other:?}"),
        }
        // Confirmed (the counting stopped), the record not yet removed.
        assert!(matches!(
            plan(found(None, false, Some(&t)), || Ok(None)),
            Plan::StaleFlag(_)
        ));
        // A counter that cannot be read: the trial cannot be shown to go
        // on; restore, saying why.
        match plan(found(None, false, Some(&t)), || {
            Err("grubenv: bad magic".into())
        }) {
            Plan::Restore { pending, record } => {
                assert!(record);
                assert_eq!(pending.image, t.restore);
                assert!(pending.reason.contains("bad magic"), "{}", pending.reason);
            }
            other => panic!("unreadable: {other:?}"),
        }
    }

    #[test]
    fn a_restore_is_recorded_before_the_lock_and_before_the_instruction_is_moved() {
        assert_eq!(
            LEAVE_RESTORE,
            [Step::WritePending, Step::Lock, Step::DisarmInstruction]
        );
        // The pending restore cannot be written: nothing after it runs
        // (the instruction stays, so the next boot is back here).
        let mut ran = Vec::new();
        let done = run_steps(&LEAVE_RESTORE, |step| {
            ran.push(step);
            if step == Step::WritePending {
                Err("no space")
            } else {
                Ok(())
            }
        });
        assert_eq!(done, Err((Step::WritePending, "no space")));
        assert_eq!(ran, [Step::WritePending]);
        let mut ran = Vec::new();
        run_steps(&LEAVE_RESTORE, |step| {
            ran.push(step);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(ran, LEAVE_RESTORE);
    }

    #[test]
    fn a_success_cut_off_before_its_trial_is_finished_with_its_trial() {
        use FinishStep::*;
        // The install: all of it, touched removed only after the success,
        // the trial and the installed version are recorded.
        assert_eq!(
            finish_steps(false, None, "2.0"),
            [
                WriteResult,
                StartTrial,
                WriteInstalled,
                ForgetRestoredAway,
                ClearTouched,
                RemoveInstruction
            ]
        );
        // Cut after the result, before the trial: the next boot starts it
        // (else 2.0 boots with no trial and installed still says 1.0).
        let redo = finish_steps(true, None, "2.0");
        assert_eq!(
            redo,
            [
                StartTrial,
                WriteInstalled,
                ForgetRestoredAway,
                ClearTouched,
                RemoveInstruction
            ]
        );
        let mut older = trial();
        older.version = "1.5".into();
        assert_eq!(finish_steps(true, Some(&older), "2.0"), redo);
        // Its trial already started: not restarted (the count would reset).
        let started = trial();
        assert_eq!(started.version, "2.0");
        assert!(!finish_steps(true, Some(&started), "2.0").contains(&StartTrial));
    }

    #[test]
    fn a_last_attempt_cut_off_after_its_success_with_touched_left_finishes() {
        // Attempt 3 of 3 recorded its success and was cut off before it
        // removed update/touched: the complete 2.0 is finished (its trial
        // started), never locked and booted without a trial, nor restored.
        let config = Config::for_product("demo");
        let erased = touched("storage:updates/demo-2.0.manifest");
        assert_eq!(
            after_attempts_used(
                &config,
                &instruction(true),
                Some(Ok(&erased)),
                Some(&result(Outcome::Success, 3)),
                3,
                CRC
            ),
            AttemptsUsed::Finished {
                version: "2.0".into()
            }
        );
        // update/touched goes only after the result and the trial.
        let steps = finish_steps(false, None, "2.0");
        let at = |s| steps.iter().position(|&x| x == s).unwrap();
        assert!(at(FinishStep::ClearTouched) > at(FinishStep::WriteResult));
        assert!(at(FinishStep::ClearTouched) > at(FinishStep::StartTrial));
        assert!(at(FinishStep::ClearTouched) < at(FinishStep::RemoveInstruction));
    }

    #[test]
    fn attempts_used_up_without_an_erase_disarm_the_instruction_before_the_lock() {
        let order: Vec<Step> = LOCK_AND_BOOT.to_vec();
        assert_eq!(order, [Step::DisarmInstruction, Step::Lock]);
        // A cut after the first step: no instruction is left beside the
        // lock (which would keep the next boot on the console).
        let mut done = Vec::new();
        let cut = run_steps(&LOCK_AND_BOOT, |step| {
            done.push(step);
            if done.len() == 1 {
                Err("cut")
            } else {
                Ok(())
            }
        });
        assert_eq!(cut, Err((Step::DisarmInstruction, "cut")));
        assert!(!done.contains(&Step::Lock));
        // The restore's own order is not this one, on purpose.
        assert_eq!(
            LEAVE_RESTORE,
            [Step::WritePending, Step::Lock, Step::DisarmInstruction]
        );
    }

    #[test]
    fn a_cut_after_an_updates_restore_was_recorded_leaves_the_lock_to_the_next_boot() {
        let config = Config::for_product("demo");
        let e = UpdateError::new(Stage::Extract, "storage:x.tar.zst", "no space");
        let update = after_failure(&config, Some(&instruction(true)), "2.0", 3, true, &e).unwrap();
        assert_eq!(update.origin, Origin::Update);
        let erased = touched("storage:updates/demo-2.0.manifest");
        let AttemptsUsed::Restore(cut) =
            after_attempts_used(&config, &instruction(true), Some(Ok(&erased)), None, 3, CRC)
        else {
            panic!("touched, with an image: restore")
        };
        assert_eq!(cut.origin, Origin::Update);
        // Cut right after the record: neither the lock nor the move.
        assert_eq!(
            resume_leaving(&update, false, true),
            [Step::Lock, Step::DisarmInstruction]
        );
        assert_eq!(
            resume_leaving(&update, true, true),
            [Step::DisarmInstruction]
        );
        assert_eq!(resume_leaving(&update, true, false), []);
        // A trial's restore sets no lock: the update itself succeeded.
        assert_eq!(resume_leaving(&trial().expired(), false, false), []);
    }

    #[test]
    fn a_finished_restore_moves_a_leftover_instruction_aside_before_its_record_goes() {
        assert_eq!(
            end_restore(true),
            [
                Step::DisarmInstruction,
                Step::RemoveTrial,
                Step::RemovePending
            ]
        );
        assert_eq!(end_restore(false), [Step::RemoveTrial, Step::RemovePending]);
    }

    fn touched(manifest: &str) -> Touched {
        Touched {
            target: "system".into(),
            version: "2.0".into(),
            manifest: PartitionPath::parse(manifest).unwrap(),
        }
    }

    #[test]
    fn a_last_attempt_cut_off_after_the_erase_restores_when_the_instruction_names_an_image() {
        let config = Config::for_product("demo");
        let erased = touched("storage:updates/demo-2.0.manifest");
        assert_eq!(
            after_attempts_used(
                &config,
                &instruction(false),
                Some(Ok(&erased)),
                None,
                3,
                CRC
            ),
            AttemptsUsed::LockAndStay,
            "no image: only the lock"
        );
        let AttemptsUsed::Restore(p) =
            after_attempts_used(&config, &instruction(true), Some(Ok(&erased)), None, 3, CRC)
        else {
            panic!("touched, with an image: restore")
        };
        assert_eq!(p.image.to_string(), "storage:updates/demo-1.0.manifest");
        // The version the cut attempt verified before its erase, not the
        // manifest's path.
        assert_eq!((p.target.as_str(), p.failed.as_str()), ("system", "2.0"));
        assert_eq!(
            p.reason,
            "2.0: attempt 3 of 3 did not finish (cut off by a power cut or a reset, after the \
             erase)"
        );
        // The target was erased for another instruction: this one's
        // version is not known, and it says so.
        let other = touched("storage:updates/demo-1.5.manifest");
        let AttemptsUsed::Restore(p) =
            after_attempts_used(&config, &instruction(true), Some(Ok(&other)), None, 3, CRC)
        else {
            panic!("touched, with an image: restore")
        };
        assert_eq!(p.failed, "unknown");
        assert!(
            p.reason
                .starts_with("the update to storage:updates/demo-2.0.manifest (version unknown: "),
            "{}",
            p.reason
        );
    }

    fn result(outcome: Outcome, attempt: u64) -> UpdateResult {
        UpdateResult {
            outcome,
            version: "2.0".into(),
            stage: String::new(),
            reason: String::new(),
            attempt,
            started: 0,
            finished: 0,
            duration_ms: 0,
            bytes: 0,
            entries: 0,
            restored: None,
            instruction: Some(CRC),
        }
    }

    /// The identity of the instruction of the tests' results.
    const CRC: u32 = 0x1234_5678;

    #[test]
    fn an_older_instructions_success_on_the_same_attempt_does_not_finish_this_one() {
        let config = Config::for_product("demo");
        // Instruction A succeeded on attempt 3; instruction B's three
        // attempts were all cut off before their erase: A's success is
        // not B's, whose intact old system is locked and booted, and B's
        // instruction is not removed as finished.
        let of_a = UpdateResult {
            instruction: Some(0x0bad_0bad),
            ..result(Outcome::Success, 3)
        };
        let of_neither = UpdateResult {
            instruction: None,
            ..result(Outcome::Success, 3)
        };
        for earlier in [of_a, of_neither] {
            assert!(
                matches!(
                    after_attempts_used(&config, &instruction(true), None, Some(&earlier), 3, CRC),
                    AttemptsUsed::LockAndBoot { .. }
                ),
                "{earlier:?}"
            );
        }
    }

    #[test]
    fn attempts_used_up_without_an_erase_never_erase_the_intact_system() {
        let config = Config::for_product("demo");
        // Attempt 3 of 3 installed 2.0 and recorded its success; the power
        // went before the instruction was removed: finish, do not erase
        // the complete 2.0 to restore 1.0.
        let done = result(Outcome::Success, 3);
        assert_eq!(
            after_attempts_used(&config, &instruction(true), None, Some(&done), 3, CRC),
            AttemptsUsed::Finished {
                version: "2.0".into()
            }
        );
        // Three attempts all cut off before their erase (no touched): the
        // old system is intact; lock, and boot it, image or not.
        for (ins, earlier) in [
            (instruction(true), None),
            (instruction(false), None),
            // An earlier install's success (another attempt number), or
            // the failure of this instruction's attempt 3.
            (instruction(true), Some(result(Outcome::Success, 1))),
            (instruction(true), Some(result(Outcome::Failed, 3))),
        ] {
            match after_attempts_used(&config, &ins, None, earlier.as_ref(), 3, CRC) {
                AttemptsUsed::LockAndBoot { reason } => assert_eq!(
                    reason,
                    "3 attempts of the update to storage:updates/demo-2.0.manifest did not \
                     finish (at most 3), none as far as the erase: the update lock is set; the \
                     system partition was not touched"
                ),
                other => panic!("{earlier:?}: {other:?}"),
            }
        }
        // A success of an earlier attempt, but the target erased again
        // since (touched): the success is not this target's content: restore.
        let erased = touched("storage:updates/demo-2.0.manifest");
        assert!(matches!(
            after_attempts_used(
                &config,
                &instruction(true),
                Some(Ok(&erased)),
                Some(&result(Outcome::Success, 2)),
                3,
                CRC
            ),
            AttemptsUsed::Restore(_)
        ));
    }

    #[test]
    fn a_failed_update_names_the_version_verified_now_or_before_the_erase() {
        let ins = instruction(true);
        let erased = touched("storage:updates/demo-2.0.manifest");
        assert_eq!(failed_version(Some("2.1"), &ins, Some(&erased)), "2.1");
        assert_eq!(failed_version(None, &ins, Some(&erased)), "2.0");
        assert_eq!(failed_version(None, &ins, None), "unknown");
    }

    #[test]
    fn only_the_last_attempt_after_the_erase_with_an_image_restores() {
        let config = Config::for_product("demo");
        let e = UpdateError::new(Stage::Extract, "storage:x.tar.zst", "no space");
        let with = instruction(true);
        let decide = |ins: Option<&Instruction>, attempt, erased| {
            after_failure(&config, ins, "2.0", attempt, erased, &e)
        };
        assert_eq!(decide(Some(&with), 2, true), None, "attempts are left");
        assert_eq!(decide(Some(&with), 3, false), None, "nothing was erased");
        assert_eq!(decide(Some(&instruction(false)), 3, true), None, "no image");
        assert_eq!(decide(None, 3, true), None);
        let p = decide(Some(&with), 3, true).unwrap();
        assert_eq!(p.image.to_string(), "storage:updates/demo-1.0.manifest");
        assert_eq!(p.stage, "extract");
        assert_eq!(
            p.reason,
            "2.0 failed at extract on attempt 3 of 3: storage:x.tar.zst: no space"
        );
    }

    #[test]
    fn a_restore_counts_its_attempts_and_stops_when_they_are_used_up() {
        let config = Config::for_product("demo");
        let mut pending = trial().expired();
        for n in 1..=3 {
            pending = count_restore(&config, &pending).unwrap();
            assert_eq!(pending.attempts, n);
        }
        // Three attempts begun, none finished: the fourth boot stays.
        let why = count_restore(&config, &pending).unwrap_err();
        assert_eq!(
            why,
            "3 attempts of this restore did not finish (at most 3); none recorded its failure \
             (cut off by a power cut or a reset)"
        );
        pending.last_failure = "extract: deadline".into();
        let why = count_restore(&config, &pending).unwrap_err();
        assert!(
            why.ends_with("the last recorded: extract: deadline"),
            "{why}"
        );
    }

    #[test]
    fn a_failed_restore_retries_after_its_erase_until_the_attempts_are_used_up() {
        let config = Config::for_product("demo");
        let attempt = |n| PendingRestore {
            attempts: n,
            ..trial().expired()
        };
        // A hang or a write error after the erase: try again, up to 3.
        assert_eq!(
            after_restore_failure(&config, &attempt(1), Erased::ByRestore),
            AfterRestore::Retry
        );
        assert_eq!(
            after_restore_failure(&config, &attempt(2), Erased::ByRestore),
            AfterRestore::Retry
        );
        assert_eq!(
            after_restore_failure(&config, &attempt(3), Erased::ByRestore),
            AfterRestore::Stay
        );
        // The image fails its checks (or the count was used up): stay now.
        assert_eq!(
            after_restore_failure(&config, &attempt(1), Erased::No),
            AfterRestore::Stay
        );
        let e = UpdateError::new(Stage::Extract, "/run/target", "deadline of 600 s passed");
        let message = restore_stay_message(&config, &attempt(3), &e);
        for part in [
            "the last good image storage:updates/demo-1.0.manifest cannot be restored: \
             /run/target: deadline of 600 s passed (extract check)",
            "being restored into system because 2.0 not confirmed after 3 boots",
            "3 attempt(s) of the restore failed (at most 3 in a row)",
            "then power-cycle",
        ] {
            assert!(message.contains(part), "{part}: {message}");
        }
    }

    #[test]
    fn a_refusal_after_an_earlier_attempt_erased_the_target_is_a_failure() {
        assert_eq!(
            update_failure(false, false, 2, false),
            UpdateFailure::Refused
        );
        // Attempt 1 erased and failed; attempt 2 is refused (a signature,
        // the product): the target is empty, so not "untouched, reboot".
        assert_eq!(update_failure(false, true, 2, false), UpdateFailure::Failed);
        assert_eq!(
            update_failure(false, true, 0, false),
            UpdateFailure::Stranded
        );
        assert_eq!(update_failure(true, true, 3, false), UpdateFailure::Locked);
        // On the last attempt that failure restores.
        let config = Config::for_product("demo");
        let e = UpdateError::new(Stage::Signature, "storage:x.minisig", "not trusted");
        assert!(after_failure(&config, Some(&instruction(true)), "2.0", 3, true, &e).is_some());
    }

    #[test]
    fn a_record_that_bounds_the_retries_and_cannot_be_written_stays_on_the_console() {
        // The count of attempt 2 (or the pending restore, or the lock)
        // cannot be written after an erase: a reboot would be an attempt
        // that is never counted, or a restore never recorded, every boot.
        assert_eq!(
            update_failure(false, true, 2, true),
            UpdateFailure::Unbounded
        );
        assert_eq!(
            update_failure(false, true, 0, true),
            UpdateFailure::Unbounded
        );
        // Untouched: refused as before (the old system boots); the lock
        // found: stays as before.
        assert_eq!(
            update_failure(false, false, 1, true),
            UpdateFailure::Refused
        );
        assert_eq!(update_failure(true, true, 1, true), UpdateFailure::Locked);
        let e = UpdateError::new(
            Stage::Finish,
            "cfg:update/attempts",
            "Read-only file system",
        );
        let message = unbounded_message(&e);
        for part in [
            "cannot write cfg:update/attempts: Read-only file system",
            "bounds the retries",
            "Repair cfg",
            "then power-cycle",
        ] {
            assert!(message.contains(part), "{part}: {message}");
        }
    }

    #[test]
    fn an_updates_erase_does_not_make_a_failed_restore_retry() {
        // The used-up path erased nothing of the restore's: a restore image
        // that fails its checks fails them on every boot: stay now.
        let config = Config::for_product("demo");
        let pending = PendingRestore {
            attempts: 1,
            ..trial().expired()
        };
        assert_eq!(
            after_restore_failure(&config, &pending, Erased::ByUpdate),
            AfterRestore::Stay
        );
        assert_eq!(
            after_restore_failure(&config, &pending, Erased::ByRestore),
            AfterRestore::Retry
        );
    }

    #[test]
    fn an_unreadable_instruction_does_not_block_a_pending_restore() {
        let pending = trial().expired();
        let e = UpdateError::new(Stage::Instruction, "cfg:update/instruction", "bad CRC");
        let unasked = || -> Result<Option<u64>, String> { panic!("the counter is not asked") };
        let unreadable = Found {
            pending: None,
            instruction: Err(&e),
            trial: None,
            touched: None,
        };
        let beside = Found {
            pending: Some(&pending),
            ..unreadable
        };
        assert_eq!(
            plan(beside, unasked),
            Plan::Restore {
                pending: pending.clone(),
                record: false
            }
        );
        // An update's restore moves it aside before anything is erased, a
        // trial's at its end.
        let update = PendingRestore {
            origin: Origin::Update,
            ..pending.clone()
        };
        assert_eq!(
            resume_leaving(&update, true, true),
            [Step::DisarmInstruction]
        );
        assert_eq!(end_restore(true)[0], Step::DisarmInstruction);
        // Nothing pending: the update's failure path, as before.
        assert_eq!(plan(unreadable, unasked), Plan::BadInstruction(e.clone()));
    }

    #[test]
    fn an_unreadable_touched_record_still_says_the_target_was_erased() {
        let config = Config::for_product("demo");
        let bad = Err("bad CRC");
        // Nothing else on cfg: stay, never reboot into what may be empty.
        let on_cfg = Found {
            touched: Some(bad),
            ..found(None, false, None)
        };
        match plan(on_cfg, || panic!("the counter is not asked")) {
            Plan::Empty(m) => assert!(m.contains("cannot be read (bad CRC)"), "{m}"),
            other => panic!("{other:?}"),
        }
        // Attempts used up: erased, so restore (or lock and stay), never
        // "untouched, lock and boot".
        let AttemptsUsed::Restore(pending) =
            after_attempts_used(&config, &instruction(true), Some(bad), None, 3, CRC)
        else {
            panic!("an unreadable touched record is touched")
        };
        assert_eq!(pending.failed, UNKNOWN);
        assert!(
            pending
                .reason
                .contains("cfg:update/touched cannot be read: bad CRC"),
            "{}",
            pending.reason
        );
        assert_eq!(
            after_attempts_used(&config, &instruction(false), Some(bad), None, 3, CRC),
            AttemptsUsed::LockAndStay
        );
    }

    #[test]
    fn an_erased_target_with_nothing_to_fill_it_stays_on_the_console() {
        let erased = touched("storage:updates/demo-2.0.manifest");
        let on_cfg = Found {
            touched: Some(Ok(&erased)),
            ..found(None, false, None)
        };
        match plan(on_cfg, || panic!("the counter is not asked")) {
            Plan::Empty(m) => {
                for part in [
                    "system holds no complete system: cfg:update/touched says it was erased to \
                     install 2.0 (storage:updates/demo-2.0.manifest)",
                    "no instruction, no pending restore and no trial",
                    "Write an instruction for a good image (or cfg:update/restore",
                    "then power-cycle",
                ] {
                    assert!(m.contains(part), "{part}: {m}");
                }
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_count_that_cannot_be_stopped_stays_only_where_every_boot_comes_back() {
        let denied = || -> std::io::Result<()> { Err(std::io::Error::other("Is a directory")) };
        let grub = |when| after_counter_stop("grub", when, &denied());
        assert_eq!(
            after_counter_stop("grub", CounterStop::Stray { left: 0 }, &Ok(())),
            AfterCounter::Done
        );
        let unsupported = Err(std::io::Error::from(std::io::ErrorKind::Unsupported));
        assert_eq!(
            after_counter_stop("none", CounterStop::AfterRestore, &unsupported),
            AfterCounter::Done
        );
        // After a restore: the next boot of the recovery tries once more.
        match grub(CounterStop::AfterRestore) {
            AfterCounter::Warn(w) => assert!(w.contains("tries once more"), "{w}"),
            other => panic!("{other:?}"),
        }
        // Boots of the system are left: they come first.
        assert!(matches!(
            grub(CounterStop::Stray { left: 2 }),
            AfterCounter::Warn(_)
        ));
        // None left: rebooting would come back here for ever.
        match grub(CounterStop::Stray { left: 0 }) {
            AfterCounter::Stay(m) => {
                for part in [
                    "the boot loader (bootflag=grub) still counts trial boots",
                    "cannot be stopped: Is a directory",
                    "unset reimage_trial in the GRUB environment block cfg:grubenv",
                    "then power-cycle",
                ] {
                    assert!(m.contains(part), "{part}: {m}");
                }
            }
            other => panic!("{other:?}"),
        }
        // Each boot loader's file or variable is named.
        assert!(clear_counter_by_hand("grubenv:esp:/EFI/grubenv").contains("esp:/EFI/grubenv"));
        let uboot = clear_counter_by_hand("uboot:cfg:fw_env.config");
        assert!(
            uboot.contains("cfg:fw_env.config") && uboot.contains("setenv upgrade_available"),
            "{uboot}"
        );
        let sd = clear_counter_by_hand(
            "systemd-boot:/sys/firmware/efi/efivars:recovery.conf:system.conf:esp:",
        );
        assert!(
            sd.contains("loader/entries/system+LEFT[-DONE].conf")
                && sd.contains("back to system.conf"),
            "{sd}"
        );
    }

    #[test]
    fn a_retried_install_keeps_the_version_it_replaced() {
        let t = trial();
        assert_eq!(previous_version(Some(&t), "2.0", Some("2.0")), "1.0");
        assert_eq!(previous_version(Some(&t), "3.0", Some("2.0")), "2.0");
        assert_eq!(previous_version(None, "2.0", Some("1.0")), "1.0");
        assert_eq!(previous_version(None, "2.0", None), "unknown");
    }

    #[test]
    fn a_trial_needs_boots_and_an_image() {
        let t = trial();
        assert_eq!((t.limit, t.bootloader.as_str()), (3, "grub"));
        assert_eq!(t.restore.to_string(), "storage:updates/demo-1.0.manifest");
        let mut config = Config::for_product("demo");
        assert!(trial_after_install(&config, &instruction(false), "2.0", "1.0").is_err());
        config.trial_boots = 0;
        assert!(trial_after_install(&config, &instruction(true), "2.0", "1.0").is_err());
    }
}
