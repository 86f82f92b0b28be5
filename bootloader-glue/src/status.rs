//! The state of updates on this device in one line, with the exit codes of
//! a Nagios plugin, so that monitoring can alert on a failed or stuck
//! update: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

use formats::cfg::{
    shown, DownloadFailed, Lock, DOWNLOAD_FAILED, INSTALLED, INSTRUCTION, LOCK, RESULT, TRIAL,
};
use formats::instruction::Instruction;
use formats::result::{Installed, Outcome, UpdateResult};
use recovery::policy::InstalledVersion;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl Code {
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Warning => "WARNING",
            Code::Critical => "CRITICAL",
            Code::Unknown => "UNKNOWN",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Status {
    pub code: Code,
    pub message: String,
    pub result: Option<UpdateResult>,
    pub installed: Option<Installed>,
    pub pending: Option<Instruction>,
    pub locked: bool,
    /// The installed version's image on storage, which a failed update
    /// is restored from (None: not there, or not looked for).
    pub restore_image: Option<String>,
    /// The agent's warning flag: the last round of download attempts
    /// failed, with the reason.
    pub download_failed: Option<String>,
}

impl Status {
    /// `CODE: message`, the plugin's one line, with the last result's
    /// performance data after `|` (Nagios plugin guidelines:
    /// `label=value[UOM]`): `attempt=1 duration=1.500s bytes=10B entries=3`.
    pub fn line(&self) -> String {
        // One line, and no `|` before the performance data: a reason that
        // names a file with a `|` or a newline must not cut the output.
        let message: String = self
            .message
            .chars()
            .map(|c| match c {
                '|' => '/',
                c if c.is_control() => ' ',
                c => c,
            })
            .collect();
        let mut line = format!("{}: {message}", self.code.name());
        if let Some(r) = &self.result {
            line += &format!(
                " | attempt={} duration={}.{:03}s bytes={}B entries={}",
                r.attempt,
                r.duration_ms / 1000,
                r.duration_ms % 1000,
                r.bytes,
                r.entries
            );
        }
        line
    }

    pub fn json(&self) -> String {
        let r = self.result.as_ref();
        serde_json::json!({
            "code": self.code as u8,
            "status": self.code.name(),
            "message": self.message,
            "locked": self.locked,
            "restore_image": self.restore_image,
            "download_failed": self.download_failed,
            "pending": self.pending.as_ref().map(|p| p.manifest.to_string()),
            "installed": self.installed.as_ref().map(|i| format!("{} {}", i.product, i.version)),
            "outcome": r.map(|r| r.outcome.name()),
            "version": r.map(|r| &r.version),
            "stage": r.map(|r| &r.stage),
            "reason": r.map(|r| &r.reason),
            "attempt": r.map(|r| r.attempt),
            "duration_ms": r.map(|r| r.duration_ms),
            "bytes": r.map(|r| r.bytes),
            "entries": r.map(|r| r.entries),
        })
        .to_string()
    }

    fn unknown(message: String) -> Status {
        Status {
            code: Code::Unknown,
            message,
            result: None,
            installed: None,
            pending: None,
            locked: false,
            restore_image: None,
            download_failed: None,
        }
    }

    /// Says whether the installed version's image is on the storage
    /// partition mounted at `storage` (as GPT partition `partition`).
    pub fn note_restore_image(&mut self, storage: &Path, partition: &str) {
        if self.code == Code::Unknown {
            return;
        }
        let Some(installed) = &self.installed else {
            return;
        };
        self.restore_image =
            crate::trial::restore_image_of(storage, partition, crate::trial::IMAGES_DIR, installed)
                .map(|p| p.to_string());
        self.message += &match &self.restore_image {
            Some(image) => format!("; restore image {image}"),
            None => format!("; no image of {} to restore", installed.version),
        };
    }
}

/// The state of updates on the cfg partition mounted at `cfg`: UNKNOWN
/// when nothing is mounted there (a missing, plain or empty directory
/// would only say what is not known).
pub fn status(cfg: &Path) -> Status {
    let expected = "expected the cfg partition mounted there (pass --cfg DIR)";
    if !cfg.is_dir() {
        return Status::unknown(format!("{} does not exist: {expected}", cfg.display()));
    }
    if !crate::mounts::is_mount_point(cfg) {
        return Status::unknown(format!(
            "{} is not a mount point: {expected}",
            cfg.display()
        ));
    }
    let empty = std::fs::read_dir(cfg)
        .map(|mut d| d.all(|e| e.is_ok_and(|e| e.file_name() == "lost+found")));
    let mut status = match empty {
        Ok(true) => Status::unknown(format!("{} is empty: {expected}", cfg.display())),
        Ok(false) => records(cfg),
        Err(e) => Status::unknown(format!("{}: {e}", cfg.display())),
    };
    // The staged images are on the partition named `storage`, where the
    // running system mounted it.
    let partition = "storage";
    if let Ok(storage) = crate::mounts::mount_point_of(&recovery::partitions::scan(), partition) {
        status.note_restore_image(&storage, partition);
    }
    status
}

/// Reads the records in the directory `cfg`.
pub fn records(cfg: &Path) -> Status {
    let read = |rel: &str| match std::fs::read(cfg.join(rel)) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", shown(rel))),
    };
    let result = match read(RESULT) {
        Ok(Some(bytes)) => match UpdateResult::parse(&bytes) {
            Ok(r) => Some(r),
            Err(e) => return Status::unknown(format!("{}: {e}", shown(RESULT))),
        },
        Ok(None) => None,
        Err(e) => return Status::unknown(e),
    };
    let installed = InstalledVersion::from_read(std::fs::read(cfg.join(INSTALLED)));
    // An instruction that is there but cannot be read (torn, mangled):
    // the boot loader boots the recovery on it all the same.
    let (pending, torn) = match read(INSTRUCTION) {
        Ok(Some(bytes)) => match Instruction::parse(&bytes) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e.to_string())),
        },
        Ok(None) => (None, None),
        Err(e) => return Status::unknown(e),
    };
    let locked = cfg.join(LOCK).exists();
    let on_trial = cfg.join(TRIAL).exists();
    let restored = result.as_ref().and_then(|r| {
        r.restored
            .as_ref()
            .filter(|_| r.outcome == Outcome::Restored)
            .map(|v| format!("restored {v}: {}", r.reason))
    });
    // Whether the version restored away may be installed again.
    let away = recovery::admission::restored_away_on(cfg).map_or(String::new(), |away| {
        if recovery::admission::allowed_again_on(cfg, &away) {
            format!(
                "; {} allowed again ({})",
                away.version,
                shown(formats::cfg::RETRY_RESTORED)
            )
        } else {
            format!(
                "; {} is refused until a newer version or bootloader-glue request \
                     --retry-restored",
                away.version
            )
        }
    });
    let download_failed = match read(DOWNLOAD_FAILED) {
        Ok(Some(bytes)) => Some(match DownloadFailed::parse(&bytes) {
            Ok(d) => format!("{} after {} attempt(s): {}", d.image, d.attempts, d.reason),
            Err(e) => format!("{} is there but unreadable ({e})", shown(DOWNLOAD_FAILED)),
        }),
        Ok(None) => None,
        Err(e) => Some(e),
    };
    let (code, message) = if let (true, Some(restored)) = (locked, &restored) {
        (
            Code::Critical,
            format!(
                "{restored}; the update lock is set: fix the image, then bootloader-glue \
                 unlock{away}"
            ),
        )
    } else if locked {
        // The agent says why in the lock; the recovery, in the result.
        let agents = std::fs::read_to_string(cfg.join(LOCK))
            .ok()
            .and_then(|text| Lock::parse(&text).ok())
            .filter(|lock| !lock.reason.is_empty());
        let why = match agents {
            Some(lock) => format!(": {}", lock.reason),
            None => result.as_ref().map_or(String::new(), |r| {
                format!(": {} failed at {}: {}", r.version, r.stage, r.reason)
            }),
        };
        (Code::Critical, format!("the update lock is set after repeated failures{why}; fix it, then bootloader-glue unlock"))
    } else if let Some(e) = torn {
        (
            Code::Critical,
            format!(
                "{} is there but unreadable ({e}): the next boot runs the recovery on it; \
                 request the update again or cancel it",
                shown(INSTRUCTION)
            ),
        )
    } else if let Some(p) = &pending {
        (
            Code::Warning,
            format!(
                "an update is pending: {} into {} (requested at {})",
                p.manifest, p.target, p.requested
            ),
        )
    } else {
        match &result {
            None => (
                Code::Ok,
                match &installed {
                    InstalledVersion::Known(i) => {
                        format!("{} {} installed; no update recorded", i.product, i.version)
                    }
                    _ => "no update recorded".to_string(),
                },
            ),
            Some(r) => match r.outcome {
                Outcome::Success | Outcome::Confirmed => (
                    Code::Ok,
                    format!(
                        "{} installed (attempt {}, {:.1} s, {} entries){}",
                        r.version,
                        r.attempt,
                        r.duration_ms as f64 / 1000.0,
                        r.entries,
                        if r.outcome == Outcome::Confirmed {
                            "; confirmed"
                        } else if on_trial {
                            "; on trial until it confirms itself (bootloader-glue confirm)"
                        } else {
                            ""
                        }
                    ),
                ),
                Outcome::Restored => (
                    Code::Critical,
                    format!(
                        "{}{away}",
                        restored
                            .clone()
                            .unwrap_or_else(|| format!("restored: {}", r.reason))
                    ),
                ),
                outcome => (
                    Code::Critical,
                    format!(
                        "the update to {} was {} at {}: {}",
                        r.version,
                        outcome.name(),
                        r.stage,
                        r.reason
                    ),
                ),
            },
        }
    };
    // The next update's version check needs the installed version.
    let (code, message) = match installed.warning() {
        Some(warning) if code == Code::Ok => (
            Code::Warning,
            format!("{message}; {warning}: the next update accepts any version"),
        ),
        _ => (code, message),
    };
    // The agent's warning flag: a failed download never hides a worse
    // state, and is never hidden by a better one.
    let (code, message) = match &download_failed {
        Some(why) if code == Code::Ok => (
            Code::Warning,
            format!("update download failed: {why}; {message}"),
        ),
        Some(why) => (code, format!("{message}; update download failed: {why}")),
        None => (code, message),
    };
    let installed = match installed {
        InstalledVersion::Known(i) => Some(i),
        _ => None,
    };
    Status {
        code,
        message,
        result,
        installed,
        pending,
        locked,
        restore_image: None,
        download_failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(outcome: Outcome) -> UpdateResult {
        UpdateResult {
            outcome,
            version: "2.0".into(),
            stage: if outcome == Outcome::Success {
                ""
            } else {
                "signature"
            }
            .into(),
            reason: if outcome == Outcome::Success {
                ""
            } else {
                "x.minisig: not trusted"
            }
            .into(),
            attempt: 1,
            started: 0,
            finished: 1,
            duration_ms: 1500,
            bytes: 10,
            entries: 3,
            restored: None,
            instruction: None,
        }
    }

    #[test]
    fn codes_follow_the_records() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path();
        std::fs::create_dir_all(cfg.join("update")).unwrap();
        let status = records;
        assert_eq!(status(cfg).code, Code::Ok);
        std::fs::write(cfg.join(RESULT), result(Outcome::Success).render()).unwrap();
        let s = status(cfg);
        assert_eq!(
            (s.code, s.line().as_str()),
            (
                Code::Ok,
                "OK: 2.0 installed (attempt 1, 1.5 s, 3 entries) \
                 | attempt=1 duration=1.500s bytes=10B entries=3"
            )
        );
        std::fs::write(cfg.join(RESULT), result(Outcome::Refused).render()).unwrap();
        let s = status(cfg);
        assert_eq!(s.code, Code::Critical);
        assert!(
            s.message
                .contains("refused at signature: x.minisig: not trusted"),
            "{}",
            s.message
        );
        std::fs::write(cfg.join(LOCK), "").unwrap();
        assert_eq!(status(cfg).code, Code::Critical);
        assert!(status(cfg).json().contains("\"locked\":true"));
        assert!(status(cfg).message.contains("2.0 failed at signature"));
        // A lock the agent set says why itself.
        let lock = Lock {
            attempts: 10,
            reason: "acme-2.0: the round before the install failed".into(),
        };
        std::fs::write(cfg.join(LOCK), lock.render()).unwrap();
        assert_eq!(
            status(cfg).line(),
            "CRITICAL: the update lock is set after repeated failures: acme-2.0: the round \
             before the install failed; fix it, then bootloader-glue unlock \
             | attempt=1 duration=1.500s bytes=10B entries=3"
        );
        std::fs::remove_file(cfg.join(LOCK)).unwrap();
        std::fs::write(cfg.join(RESULT), "format=1\noutc").unwrap();
        assert_eq!(status(cfg).code, Code::Unknown);
    }

    #[test]
    fn a_restore_is_critical_and_names_both_versions() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path();
        std::fs::create_dir_all(cfg.join("update")).unwrap();
        let restored = UpdateResult {
            outcome: Outcome::Restored,
            stage: "trial".into(),
            reason: "2.0 not confirmed after 3 boots".into(),
            restored: Some("1.0".into()),
            instruction: None,
            ..result(Outcome::Success)
        };
        recovery::admission::record_restored_away(cfg, &restored).unwrap();
        std::fs::write(cfg.join(RESULT), restored.render()).unwrap();
        let s = records(cfg);
        assert_eq!(s.code, Code::Critical);
        assert_eq!(
            s.message,
            "restored 1.0: 2.0 not confirmed after 3 boots; 2.0 is refused until a newer \
             version or bootloader-glue request --retry-restored"
        );
        // The operator's leave for that restore.
        let leave = recovery::admission::restored_away_on(cfg).unwrap().leave();
        std::fs::write(cfg.join(formats::cfg::RETRY_RESTORED), leave.render()).unwrap();
        assert_eq!(
            records(cfg).message,
            "restored 1.0: 2.0 not confirmed after 3 boots; 2.0 allowed again \
             (cfg:update/retry-restored)"
        );
        std::fs::remove_file(cfg.join(formats::cfg::RETRY_RESTORED)).unwrap();
        std::fs::write(cfg.join(LOCK), "").unwrap();
        let s = records(cfg);
        assert_eq!(s.code, Code::Critical);
        assert!(
            s.message.starts_with(
                "restored 1.0: 2.0 not confirmed after 3 boots; the update lock is set"
            ),
            "{}",
            s.message
        );
        std::fs::remove_file(cfg.join(LOCK)).unwrap();
        // On trial, then confirmed: OK, saying which.
        std::fs::write(cfg.join(RESULT), result(Outcome::Success).render()).unwrap();
        std::fs::write(cfg.join(TRIAL), "").unwrap();
        assert!(records(cfg)
            .message
            .contains("; on trial until it confirms itself"));
        std::fs::remove_file(cfg.join(TRIAL)).unwrap();
        std::fs::write(cfg.join(RESULT), result(Outcome::Confirmed).render()).unwrap();
        let s = records(cfg);
        assert_eq!(s.code, Code::Ok);
        assert!(s.message.ends_with("; confirmed"), "{}", s.message);
    }

    #[test]
    fn says_whether_the_restore_image_is_there() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("cfg");
        let storage = d.path().join("storage");
        std::fs::create_dir_all(cfg.join("update")).unwrap();
        std::fs::create_dir_all(storage.join("updates")).unwrap();
        let installed = Installed {
            product: "demo".into(),
            version: "1.0".into(),
        };
        std::fs::write(cfg.join(INSTALLED), installed.render()).unwrap();
        let mut s = records(&cfg);
        s.note_restore_image(&storage, "storage");
        assert!(
            s.message.ends_with("; no image of 1.0 to restore"),
            "{}",
            s.message
        );
        std::fs::write(storage.join("updates/demo-1.0.manifest"), "").unwrap();
        let mut s = records(&cfg);
        s.note_restore_image(&storage, "storage");
        assert!(
            s.message
                .ends_with("; restore image storage:updates/demo-1.0.manifest"),
            "{}",
            s.message
        );
        assert!(s
            .json()
            .contains(r#""restore_image":"storage:updates/demo-1.0.manifest""#));
    }

    #[test]
    fn the_line_has_one_pipe_and_no_newline_whatever_the_reason() {
        let mut r = result(Outcome::Refused);
        r.reason = "a|b\tc".into();
        let s = Status {
            code: Code::Critical,
            message: format!("the update failed: {}\nnext", r.reason),
            result: Some(r),
            ..Status::unknown("x".into())
        };
        let line = s.line();
        assert_eq!(line.matches('|').count(), 1, "{line}");
        assert!(!line.contains('\n') && !line.contains('\t'), "{line}");
        assert!(
            line.starts_with("CRITICAL: the update failed: a/b c next |"),
            "{line}"
        );
    }

    #[test]
    fn an_unreadable_installed_version_is_a_warning_not_ok() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path();
        std::fs::create_dir_all(cfg.join("update")).unwrap();
        std::fs::write(cfg.join(RESULT), result(Outcome::Success).render()).unwrap();
        std::fs::write(cfg.join(INSTALLED), "product=p\nver").unwrap();
        let s = records(cfg);
        assert_eq!(s.code, Code::Warning, "{}", s.message);
        assert!(
            s.message.contains("cfg:update/installed: ")
                && s.message.contains("the installed version is unknown"),
            "{}",
            s.message
        );
    }

    #[test]
    fn a_torn_instruction_is_critical() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path();
        std::fs::create_dir_all(cfg.join("update")).unwrap();
        let good = Instruction {
            manifest: formats::instruction::PartitionPath::parse("storage:u/p-2.manifest").unwrap(),
            target: "system".into(),
            allow_downgrade: false,
            requested: 1,
            restore: None,
        }
        .render();
        std::fs::write(cfg.join(INSTRUCTION), &good).unwrap();
        assert_eq!(records(cfg).code, Code::Warning);
        // Cut short, as by a power cut on a file system without the rename.
        std::fs::write(cfg.join(INSTRUCTION), &good[..good.len() / 2]).unwrap();
        let s = records(cfg);
        assert_eq!(s.code, Code::Critical, "{}", s.line());
        assert!(
            s.message
                .starts_with("cfg:update/instruction is there but unreadable"),
            "{}",
            s.message
        );
    }

    #[test]
    fn json_escapes_what_the_records_hold() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path();
        let mut r = result(Outcome::Refused);
        r.reason = "a\ttab, a \"quote\", a \\ and \u{1}".into();
        std::fs::create_dir_all(cfg.join("update")).unwrap();
        std::fs::write(cfg.join(RESULT), r.render()).unwrap();
        let json = records(cfg).json();
        assert!(
            json.contains(r#""reason":"a\ttab, a \"quote\", a \\ and \u0001""#),
            "{json}"
        );
    }

    #[test]
    fn the_agents_warning_flag_is_a_warning_and_never_hides_worse() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path();
        std::fs::create_dir_all(cfg.join("update")).unwrap();
        std::fs::write(cfg.join(RESULT), result(Outcome::Success).render()).unwrap();
        let flag = DownloadFailed {
            image: "p-3.0".into(),
            attempts: 10,
            at: 1,
            reason: "all 10 attempt(s) failed: HTTP 500".into(),
        };
        std::fs::write(cfg.join(DOWNLOAD_FAILED), flag.render()).unwrap();
        let s = records(cfg);
        assert_eq!(s.code, Code::Warning);
        assert!(
            s.line().starts_with(
                "WARNING: update download failed: p-3.0 after 10 attempt(s): all 10 attempt(s) failed: HTTP 500; 2.0 installed"
            ),
            "{}",
            s.line()
        );
        assert!(
            s.json().contains("\"download_failed\":\"p-3.0 after 10"),
            "{}",
            s.json()
        );
        std::fs::write(cfg.join(LOCK), "").unwrap();
        let s = records(cfg);
        assert_eq!(s.code, Code::Critical);
        assert!(s.message.ends_with("; update download failed: p-3.0 after 10 attempt(s): all 10 attempt(s) failed: HTTP 500"), "{}", s.message);
        std::fs::remove_file(cfg.join(LOCK)).unwrap();
        std::fs::write(cfg.join(DOWNLOAD_FAILED), "torn").unwrap();
        assert!(records(cfg)
            .message
            .contains("cfg:update/download-failed is there but unreadable"));
    }
}
