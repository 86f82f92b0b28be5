//! Confirming an update after the reboot. Before the instruction is
//! written, [`begin`] keeps an action record on `cfg` (source, offer, old
//! and new version, which result was there before). On the next start of
//! the agent, [`report`] reads `cfg:update/result`: when the recovery has
//! written a new one, that is this update's outcome, and the source hears
//! it: `Closed { success: true }` only from the new system, after it has
//! booted and read a success result; a refusal or failure with the
//! recovery's stage and reason. After a success the post-update command
//! runs first (once). The record is removed once the source has heard.
//!
//! The decision ([`judge`]) is pure; [`report`] does the reading,
//! running and writing around it.

use crate::post_update;
use crate::source::{Report, Source, SourceError};
use formats::action::Action;
use formats::cfg::{shown, ACTION, INSTRUCTION, RESULT, TRIAL};
use formats::result::{Outcome, UpdateResult};
use nix::fcntl::{Flock, FlockArg};
use std::io;
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum OutcomeError {
    #[error("{what}: {source}")]
    Io {
        path: String,
        /// What failed, the path and the stage: "locking cfg:update/ for
        /// the report".
        what: String,
        source: io::Error,
    },
    #[error("{path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("reporting the outcome of offer {offer} to {source_name}")]
    Report {
        source_name: String,
        offer: String,
        #[source]
        source: SourceError,
    },
}

/// An I/O error on `cfg:REL`: `verb` it, and for which stage (if any).
fn io_error(rel: &str, verb: &str, stage: &str) -> impl FnOnce(io::Error) -> OutcomeError {
    let path = shown(rel);
    let what = match stage {
        "" => format!("{verb} {path}"),
        stage => format!("{verb} {path} for {stage}"),
    };
    move |source| OutcomeError::Io { path, what, source }
}

/// What the records on `cfg` say about the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The instruction is still there: the recovery has not finished with
    /// it (the reboot has not happened yet, or it will try again); or the
    /// new system is on trial (`cfg:update/trial`): it is not kept until
    /// it confirms itself (`bootloader-glue confirm`), and the boot loader
    /// may still have the recovery restore the old one.
    Pending,
    /// The update is over: tell the source this.
    Closed { success: bool, details: String },
}

/// The outcome of `action`, given the bytes of `cfg:update/result` (if
/// any) and whether `cfg:update/instruction` or `cfg:update/trial` is
/// still there.
pub fn judge(action: &Action, result: Option<&[u8]>, pending: bool) -> Verdict {
    if pending {
        return Verdict::Pending;
    }
    let failure = |details: String| Verdict::Closed {
        success: false,
        details,
    };
    if !action.is_newer_result(result) {
        return failure(format!(
            "no result from the recovery for {} and no instruction on cfg: \
             the update was cancelled or never requested",
            action.new_version
        ));
    }
    let r = match UpdateResult::parse(result.unwrap_or_default()) {
        Ok(r) => r,
        Err(e) => return failure(format!("{}: unreadable: {e}", shown(RESULT))),
    };
    match r.outcome {
        // Confirmed: the new system ended its trial (bootloader-glue
        // confirm) before the report.
        Outcome::Success | Outcome::Confirmed if r.version == action.new_version => {
            Verdict::Closed {
                success: true,
                details: format!(
                    "{} installed and booted (from {}, attempt {}, {} entries)",
                    r.version,
                    if action.old_version.is_empty() {
                        "an unknown version"
                    } else {
                        &action.old_version
                    },
                    r.attempt,
                    r.entries
                ),
            }
        }
        Outcome::Success | Outcome::Confirmed => failure(format!(
            "the recovery installed {}, not {}",
            r.version, action.new_version
        )),
        Outcome::Restored => failure(format!(
            "restored {}: {}",
            r.restored.as_deref().unwrap_or("the last good image"),
            r.reason
        )),
        outcome => failure(format!(
            "{} {} at stage {}: {}",
            r.version,
            outcome.name(),
            r.stage,
            r.reason
        )),
    }
}

/// Keeps the action record on `cfg` (at `cfg_root`), right before the
/// instruction is written. It remembers which result is there now, so
/// that the next one is known to be this update's.
pub fn begin(
    cfg_root: &Path,
    source: &str,
    offer: &str,
    old_version: &str,
    new_version: &str,
) -> Result<Action, OutcomeError> {
    let names = [
        ("source", source),
        ("offer", offer),
        ("new version", new_version),
    ];
    for (what, name) in names {
        if !formats::keyvalue::is_name(name) {
            return Err(OutcomeError::Unreadable {
                path: shown(ACTION),
                reason: format!(
                    "the {what} {name:?} cannot be recorded: expected 1 to 128 of A-Z a-z 0-9 . _ - +"
                ),
            });
        }
    }
    // Under the lock that report holds: a report running now (the
    // daemon's, or the report unit's) cannot remove this record.
    let dir = cfg_root.join(UPDATE_DIR);
    std::fs::create_dir_all(&dir).map_err(io_error(
        UPDATE_DIR,
        "creating",
        "the start of an update",
    ))?;
    let _lock = lock(cfg_root, "the start of an update")?;
    let before = read(cfg_root, RESULT)?;
    let action = Action {
        source: source.to_string(),
        offer: offer.to_string(),
        old_version: old_version.to_string(),
        new_version: new_version.to_string(),
        result_before: before.as_deref().map(Action::crc_of),
        post_update_done: false,
    };
    write(cfg_root, &action)?;
    Ok(action)
}

/// Removes the action record `action` (what [`begin`] returned): the
/// instruction could not be written, so there is nothing to confirm. A
/// record that is no longer that one (another update began meanwhile)
/// stays.
pub fn abandon(cfg_root: &Path, action: &Action) -> Result<(), OutcomeError> {
    let _lock = lock(cfg_root, "abandoning the update")?;
    remove_if_unchanged(cfg_root, action, "abandoning the update")
}

/// Under the lock: removes the action record if its bytes are still
/// those of `action`.
fn remove_if_unchanged(cfg_root: &Path, action: &Action, stage: &str) -> Result<(), OutcomeError> {
    let expected = action.render();
    match read(cfg_root, ACTION)? {
        Some(bytes) if bytes == expected.as_bytes() => {
            formats::store::remove_durably(&cfg_root.join(ACTION))
                .map_err(io_error(ACTION, "removing", stage))
        }
        Some(_) => {
            log::warn!(
                "{}: another update's record now ({stage}: the record of {} {} was \
                 replaced): left in place",
                shown(ACTION),
                action.source,
                action.offer
            );
            Ok(())
        }
        None => Ok(()),
    }
}

/// The action record, if there is one.
pub fn current(cfg_root: &Path) -> Result<Option<Action>, OutcomeError> {
    match read(cfg_root, ACTION)? {
        None => Ok(None),
        Some(bytes) => Action::parse(&bytes)
            .map(Some)
            .map_err(|e| OutcomeError::Unreadable {
                path: shown(ACTION),
                reason: e.to_string(),
            }),
    }
}

/// The post-update command and how long it may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostUpdate {
    pub command: String,
    pub timeout: Duration,
}

/// What [`report`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// No action record: nothing to confirm.
    Nothing,
    /// The instruction is still pending; the record stays.
    Pending,
    /// The source heard the outcome (or, when the record names another
    /// source than the configured one, it was only logged); the record is
    /// gone.
    Closed { success: bool, details: String },
}

/// Confirms the action on `cfg`, if any, to `source`. A source that
/// cannot be reached leaves the record for the next try; the post-update
/// command has run by then and does not run again.
pub fn report(
    cfg_root: &Path,
    source: &mut dyn Source,
    post_update: Option<&PostUpdate>,
) -> Result<Reported, OutcomeError> {
    // One report at a time on this cfg (the report unit and the daemon
    // may start together): the second waits, then finds the record gone
    // or with the post-update command done.
    if !cfg_root.join(UPDATE_DIR).is_dir() {
        return Ok(Reported::Nothing);
    }
    let _lock = lock(cfg_root, "the report")?;
    let Some(mut action) = current(cfg_root)? else {
        return Ok(Reported::Nothing);
    };
    let pending = cfg_root.join(INSTRUCTION).exists() || cfg_root.join(TRIAL).exists();
    let result = read(cfg_root, RESULT)?;
    let (success, mut details) = match judge(&action, result.as_deref(), pending) {
        Verdict::Pending => {
            log::info!(
                "update to {} (offer {} of {}): the instruction is still pending, or the \
                 new system on trial",
                action.new_version,
                action.offer,
                action.source
            );
            return Ok(Reported::Pending);
        }
        Verdict::Closed { success, details } => (success, details),
    };
    if success && !action.post_update_done {
        // Recorded before it runs: a command that reboots the system, or a
        // power cut while it runs, does not make it run at every boot.
        action.post_update_done = true;
        write(cfg_root, &action)?;
        if let Some(post) = post_update {
            log::info!("running the post-update command {:?}", post.command);
            match post_update::run(
                &post.command,
                &action.old_version,
                &action.new_version,
                post.timeout,
            ) {
                Ok(()) => log::info!("the post-update command succeeded"),
                Err(e) => {
                    log::error!("{e}");
                    details += &format!("; {e}");
                }
            }
        }
    }
    if action.source == source.name() {
        let report = Report::Closed {
            success,
            details: details.clone(),
        };
        source
            .report(&action.offer, &report)
            .map_err(|e| OutcomeError::Report {
                source_name: action.source.clone(),
                offer: action.offer.clone(),
                source: e,
            })?;
        log::info!(
            "reported to {}: offer {} closed, {}: {details}",
            action.source,
            action.offer,
            if success { "success" } else { "failure" }
        );
    } else {
        log::warn!(
            "{}: offer {} of {}, but the configured source is {}: not reported ({details})",
            shown(ACTION),
            action.offer,
            action.source,
            source.name()
        );
    }
    remove_if_unchanged(cfg_root, &action, "the report")?;
    Ok(Reported::Closed { success, details })
}

/// The directory of the action record, whose `flock` is [`lock`]'s.
const UPDATE_DIR: &str = "update/";

/// The action record's lock, taken by [`begin`], [`abandon`] and
/// [`report`]: an exclusive `flock` on the directory of the record
/// (`cfg:update/`), held until the returned file is dropped; waits while
/// another holds it. `stage` names who takes it, for the error.
fn lock(cfg_root: &Path, stage: &str) -> Result<Flock<std::fs::File>, OutcomeError> {
    debug_assert_eq!(Path::new(ACTION).parent(), Some(Path::new(UPDATE_DIR)));
    let dir = std::fs::File::open(cfg_root.join(UPDATE_DIR)).map_err(io_error(
        UPDATE_DIR,
        "opening (to lock)",
        stage,
    ))?;
    Flock::lock(dir, FlockArg::LockExclusive)
        .map_err(|(_, errno)| io_error(UPDATE_DIR, "locking", stage)(io::Error::from(errno)))
}

fn read(cfg_root: &Path, rel: &str) -> Result<Option<Vec<u8>>, OutcomeError> {
    match std::fs::read(cfg_root.join(rel)) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(rel, "reading", "")(e)),
    }
}

fn write(cfg_root: &Path, action: &Action) -> Result<(), OutcomeError> {
    formats::store::write_atomic(&cfg_root.join(ACTION), action.render().as_bytes())
        .map_err(io_error(ACTION, "writing", ""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Check;

    /// A source that records what it is told, and can be unreachable.
    #[derive(Debug, Default)]
    struct Recording {
        name: &'static str,
        reports: Vec<(String, Report)>,
        unreachable: bool,
    }

    impl Source for Recording {
        fn name(&self) -> &str {
            self.name
        }
        fn check(&mut self, _: Option<&str>) -> Result<crate::source::Check, SourceError> {
            Ok(Check::Nothing {
                again_after: Duration::from_secs(60),
            })
        }
        fn report(&mut self, offer_id: &str, report: &Report) -> Result<(), SourceError> {
            if self.unreachable {
                return Err(SourceError::Unreachable {
                    source_name: self.name.into(),
                    reason: "connection refused".into(),
                });
            }
            self.reports.push((offer_id.to_string(), report.clone()));
            Ok(())
        }
    }

    fn hawkbit() -> Recording {
        Recording {
            name: "hawkbit",
            ..Recording::default()
        }
    }

    fn result(outcome: Outcome, version: &str) -> String {
        UpdateResult {
            outcome,
            version: version.into(),
            stage: if outcome == Outcome::Success {
                String::new()
            } else {
                "signature".into()
            },
            reason: if outcome == Outcome::Success {
                String::new()
            } else {
                "signed by an untrusted key".into()
            },
            attempt: 1,
            started: 10,
            finished: 20,
            duration_ms: 10_000,
            bytes: 100,
            entries: 7,
            restored: (outcome == Outcome::Restored).then(|| "1.0".into()),
            instruction: None,
        }
        .render()
    }

    /// A cfg directory with `update/` and, optionally, a result already.
    fn cfg(previous: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("update")).unwrap();
        if let Some(text) = previous {
            std::fs::write(dir.path().join(RESULT), text).unwrap();
        }
        dir
    }

    /// A cfg on which the agent began an update from `old` to 2.0 and the
    /// recovery then left a result with `outcome`.
    fn after_recovery(outcome: Outcome, old: &str) -> tempfile::TempDir {
        let dir = cfg(None);
        begin(dir.path(), "hawkbit", "42", old, "2.0").unwrap();
        std::fs::write(dir.path().join(RESULT), result(outcome, "2.0")).unwrap();
        dir
    }

    fn post(command: String) -> PostUpdate {
        PostUpdate {
            command,
            timeout: post_update::DEFAULT_TIMEOUT,
        }
    }

    fn action(before: Option<&str>) -> Action {
        Action {
            source: "hawkbit".into(),
            offer: "42".into(),
            old_version: "1.0".into(),
            new_version: "2.0".into(),
            result_before: before.map(|t| Action::crc_of(t.as_bytes())),
            post_update_done: false,
        }
    }

    #[test]
    fn judge_waits_for_the_recovery_and_reads_only_a_new_result() {
        let old = result(Outcome::Success, "1.0");
        let a = action(Some(&old));
        let new = result(Outcome::Success, "2.0");
        assert_eq!(judge(&a, Some(new.as_bytes()), true), Verdict::Pending);
        // Confirmed by the new system before the report: a success too.
        let confirmed = result(Outcome::Confirmed, "2.0");
        assert_eq!(
            judge(&a, Some(confirmed.as_bytes()), false),
            Verdict::Closed {
                success: true,
                details: "2.0 installed and booted (from 1.0, attempt 1, 7 entries)".into()
            }
        );
        assert_eq!(judge(&a, Some(old.as_bytes()), true), Verdict::Pending);
        assert_eq!(
            judge(&a, Some(new.as_bytes()), false),
            Verdict::Closed {
                success: true,
                details: "2.0 installed and booted (from 1.0, attempt 1, 7 entries)".into()
            }
        );
        // The old result and no instruction: cancelled, not a success.
        let Verdict::Closed { success, details } = judge(&a, Some(old.as_bytes()), false) else {
            panic!()
        };
        assert!(!success);
        assert!(
            details.contains("cancelled or never requested"),
            "{details}"
        );
        let Verdict::Closed { success, .. } = judge(&action(None), None, false) else {
            panic!()
        };
        assert!(!success);
    }

    #[test]
    fn judge_reports_the_recoverys_stage_and_reason() {
        let a = action(None);
        for outcome in [Outcome::Refused, Outcome::Failed, Outcome::Locked] {
            let r = result(outcome, "2.0");
            assert_eq!(
                judge(&a, Some(r.as_bytes()), false),
                Verdict::Closed {
                    success: false,
                    details: format!(
                        "2.0 {} at stage signature: signed by an untrusted key",
                        outcome.name()
                    )
                }
            );
        }
        // A restore: the new system was not confirmed; the old one is back.
        let r = result(Outcome::Restored, "2.0");
        assert_eq!(
            judge(&a, Some(r.as_bytes()), false),
            Verdict::Closed {
                success: false,
                details: "restored 1.0: signed by an untrusted key".into()
            }
        );
        let other = result(Outcome::Success, "3.0");
        assert_eq!(
            judge(&a, Some(other.as_bytes()), false),
            Verdict::Closed {
                success: false,
                details: "the recovery installed 3.0, not 2.0".into()
            }
        );
        let Verdict::Closed { success, details } = judge(&a, Some(b"garbage"), false) else {
            panic!()
        };
        assert!(!success);
        assert!(
            details.starts_with("cfg:update/result: unreadable: "),
            "{details}"
        );
    }

    /// The whole cycle on a temp cfg: the record before the instruction,
    /// nothing reported while it is pending, success (with the
    /// post-update command) once the recovery's result is there.
    #[test]
    fn success_is_reported_only_after_the_new_system_read_its_result() {
        let old = result(Outcome::Success, "1.0");
        let dir = cfg(Some(&old));
        let cfg = dir.path();
        let mut source = hawkbit();
        assert_eq!(report(cfg, &mut source, None).unwrap(), Reported::Nothing);

        let a = begin(cfg, "hawkbit", "42", "1.0", "2.0").unwrap();
        assert_eq!(a, action(Some(&old)));
        std::fs::write(cfg.join(INSTRUCTION), "the instruction").unwrap();
        // Before the reboot: nothing is said, and the record stays.
        assert_eq!(report(cfg, &mut source, None).unwrap(), Reported::Pending);
        assert!(source.reports.is_empty());
        assert!(cfg.join(ACTION).exists());

        // The recovery installs 2.0: the instruction goes, a result comes.
        std::fs::remove_file(cfg.join(INSTRUCTION)).unwrap();
        std::fs::write(cfg.join(RESULT), result(Outcome::Success, "2.0")).unwrap();
        // On trial until it confirms itself: still nothing said.
        std::fs::write(cfg.join(TRIAL), "the trial").unwrap();
        assert_eq!(report(cfg, &mut source, None).unwrap(), Reported::Pending);
        assert!(source.reports.is_empty());
        std::fs::remove_file(cfg.join(TRIAL)).unwrap();
        let seen = cfg.join("post-update.seen");
        let post = post(format!(
            "echo \"$REIMAGE_OLD_VERSION $REIMAGE_NEW_VERSION\" >> '{}'",
            seen.display()
        ));
        let reported = report(cfg, &mut source, Some(&post)).unwrap();
        let details = "2.0 installed and booted (from 1.0, attempt 1, 7 entries)".to_string();
        assert_eq!(
            reported,
            Reported::Closed {
                success: true,
                details: details.clone()
            }
        );
        assert_eq!(
            source.reports,
            [(
                "42".to_string(),
                Report::Closed {
                    success: true,
                    details
                }
            )]
        );
        assert_eq!(std::fs::read_to_string(&seen).unwrap(), "1.0 2.0\n");
        assert!(!cfg.join(ACTION).exists());
        // The next start has nothing to say, and the command does not run again.
        assert_eq!(
            report(cfg, &mut source, Some(&post)).unwrap(),
            Reported::Nothing
        );
        assert_eq!(std::fs::read_to_string(&seen).unwrap(), "1.0 2.0\n");
    }

    #[test]
    fn an_unreachable_source_keeps_the_record_and_the_command_runs_once() {
        let dir = after_recovery(Outcome::Success, "");
        let cfg = dir.path();
        let count = cfg.join("count");
        let post = post(format!("echo run >> '{}'; exit 4", count.display()));
        let mut source = Recording {
            unreachable: true,
            ..hawkbit()
        };
        let e = report(cfg, &mut source, Some(&post)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "reporting the outcome of offer 42 to hawkbit"
        );
        assert!(current(cfg).unwrap().unwrap().post_update_done);
        source.unreachable = false;
        let Reported::Closed { success, details } = report(cfg, &mut source, Some(&post)).unwrap()
        else {
            panic!()
        };
        // The command's failure does not make the update a failure.
        assert!(success);
        assert!(details.contains("from an unknown version"), "{details}");
        assert_eq!(std::fs::read_to_string(&count).unwrap(), "run\n");
        assert_eq!(source.reports.len(), 1);
        assert!(!cfg.join(ACTION).exists());
    }

    /// `reimage-agent report` from its systemd unit and from the daemon
    /// at once: the post-update command runs once, the source hears once.
    #[test]
    fn two_reports_at_once_run_the_command_once() {
        let dir = after_recovery(Outcome::Success, "1.0");
        let cfg = dir.path();
        let count = cfg.join("count");
        let post = post(format!("echo run >> '{}'; sleep 0.5", count.display()));
        let start = std::sync::Barrier::new(2);
        let outcomes: Vec<(Reported, usize)> = std::thread::scope(|s| {
            let reporters: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut source = hawkbit();
                        start.wait();
                        let reported = report(cfg, &mut source, Some(&post)).unwrap();
                        (reported, source.reports.len())
                    })
                })
                .collect();
            reporters.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert_eq!(std::fs::read_to_string(&count).unwrap(), "run\n");
        let heard: usize = outcomes.iter().map(|(_, n)| n).sum();
        assert_eq!(heard, 1, "{outcomes:?}");
        assert!(
            outcomes.iter().any(|(r, _)| *r == Reported::Nothing),
            "{outcomes:?}"
        );
    }

    /// The record says the command has run before it runs: a command
    /// that reboots, or a power cut while it runs, does not make it run
    /// at every boot.
    #[test]
    fn the_command_is_recorded_as_done_before_it_runs() {
        let dir = after_recovery(Outcome::Success, "1.0");
        let cfg = dir.path();
        let seen = cfg.join("action.seen");
        let post = post(format!(
            "cp '{}' '{}'",
            cfg.join(ACTION).display(),
            seen.display()
        ));
        report(cfg, &mut hawkbit(), Some(&post)).unwrap();
        let seen = std::fs::read(&seen).expect("the command ran");
        assert!(Action::parse(&seen).unwrap().post_update_done);
        assert!(
            String::from_utf8(seen)
                .unwrap()
                .contains("\npost-update=done\n"),
            "the record while the command ran"
        );
    }

    /// begin, abandon and report share one lock, and abandon removes only
    /// the record it was given: an update that began meanwhile (the
    /// daemon's install while the report unit abandons) keeps its record.
    #[test]
    fn abandon_leaves_another_updates_record_and_begin_waits_for_the_lock() {
        let dir = cfg(None);
        let cfg = dir.path();
        let first = begin(cfg, "hawkbit", "42", "1.0", "2.0").unwrap();
        let second = begin(cfg, "hawkbit", "43", "1.0", "3.0").unwrap();
        abandon(cfg, &first).unwrap();
        assert_eq!(current(cfg).unwrap(), Some(second.clone()));
        abandon(cfg, &second).unwrap();
        assert_eq!(current(cfg).unwrap(), None);

        // While a report holds the lock, begin waits.
        let held = lock(cfg, "the test").unwrap();
        std::thread::scope(|s| {
            let waiting = s.spawn(|| begin(cfg, "hawkbit", "44", "1.0", "4.0").unwrap());
            std::thread::sleep(Duration::from_millis(300));
            assert!(
                !cfg.join(ACTION).exists(),
                "begin wrote the record while the lock was held"
            );
            drop(held);
            waiting.join().unwrap();
        });
        assert_eq!(current(cfg).unwrap().unwrap().offer, "44");
    }

    /// An I/O error names what failed, the path and the stage.
    #[test]
    fn io_errors_name_the_stage() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path();
        let e = abandon(cfg, &action(None)).unwrap_err().to_string();
        assert!(
            e.starts_with("opening (to lock) cfg:update/ for abandoning the update: "),
            "{e}"
        );
        std::fs::write(cfg.join("update"), "a file").unwrap();
        let e = begin(cfg, "hawkbit", "42", "1.0", "2.0")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("creating cfg:update/ for the start of an update: "),
            "{e}"
        );
    }

    #[test]
    fn a_refusal_is_reported_with_the_stage_and_no_command_runs() {
        let dir = after_recovery(Outcome::Refused, "1.0");
        let cfg = dir.path();
        let ran = cfg.join("ran");
        let post = post(format!("touch '{}'", ran.display()));
        let mut source = hawkbit();
        report(cfg, &mut source, Some(&post)).unwrap();
        assert_eq!(
            source.reports,
            [(
                "42".to_string(),
                Report::Closed {
                    success: false,
                    details: "2.0 refused at stage signature: signed by an untrusted key".into()
                }
            )]
        );
        assert!(!ran.exists());
    }

    #[test]
    fn a_record_of_another_source_is_dropped_unreported() {
        let dir = after_recovery(Outcome::Success, "1.0");
        let cfg = dir.path();
        let mut feed = Recording {
            name: "feed",
            ..Recording::default()
        };
        let Reported::Closed { success: true, .. } = report(cfg, &mut feed, None).unwrap() else {
            panic!()
        };
        assert!(feed.reports.is_empty());
        assert!(!cfg.join(ACTION).exists());
        // An unreadable record is an error naming it.
        std::fs::write(cfg.join(ACTION), "junk").unwrap();
        let e = report(cfg, &mut feed, None).unwrap_err().to_string();
        assert!(e.starts_with("cfg:update/action: "), "{e}");
    }
}
