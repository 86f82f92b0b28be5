//! The state of updates on this device in one line, with the exit codes of
//! a Nagios plugin, so that monitoring can alert on a failed or stuck
//! update: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

use formats::cfg::{INSTALLED, INSTRUCTION, LOCK, RESULT};
use formats::instruction::Instruction;
use formats::result::{Installed, Outcome, UpdateResult};
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
}

impl Status {
    /// `CODE: message`, the plugin's one line.
    pub fn line(&self) -> String {
        format!("{}: {}", self.code.name(), self.message)
    }

    pub fn json(&self) -> String {
        let s = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
        let opt = |v: Option<String>| v.map_or("null".to_string(), |v| s(&v));
        let r = self.result.as_ref();
        format!(
            "{{\"code\":{},\"status\":{},\"message\":{},\"locked\":{},\"pending\":{},\"installed\":{},\
             \"outcome\":{},\"version\":{},\"stage\":{},\"reason\":{},\"attempt\":{}}}",
            self.code as u8,
            s(self.code.name()),
            s(&self.message),
            self.locked,
            opt(self.pending.as_ref().map(|p| p.manifest.to_string())),
            opt(self.installed.as_ref().map(|i| format!("{} {}", i.product, i.version))),
            opt(r.map(|r| r.outcome.name().to_string())),
            opt(r.map(|r| r.version.clone())),
            opt(r.map(|r| r.stage.clone())),
            opt(r.map(|r| r.reason.clone())),
            r.map_or("null".to_string(), |r| r.attempt.to_string())
        )
    }
}

/// Reads the records on `cfg` (mounted at `cfg`).
pub fn status(cfg: &Path) -> Status {
    let unknown = |message: String| Status {
        code: Code::Unknown,
        message,
        result: None,
        installed: None,
        pending: None,
        locked: false,
    };
    if !cfg.join("update").is_dir() && !cfg.is_dir() {
        return unknown(format!(
            "{}: cannot read the cfg partition there",
            cfg.display()
        ));
    }
    let read = |rel: &str| match std::fs::read(cfg.join(rel)) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cfg:{rel}: {e}")),
    };
    let result = match read(RESULT) {
        Ok(Some(bytes)) => match UpdateResult::parse(&bytes) {
            Ok(r) => Some(r),
            Err(e) => return unknown(format!("cfg:{RESULT}: {e}")),
        },
        Ok(None) => None,
        Err(e) => return unknown(e),
    };
    let installed = read(INSTALLED)
        .ok()
        .flatten()
        .and_then(|b| Installed::parse(&b).ok());
    let pending = read(INSTRUCTION)
        .ok()
        .flatten()
        .and_then(|b| Instruction::parse(&b).ok());
    let locked = cfg.join(LOCK).exists();
    let (code, message) = if locked {
        let why = result.as_ref().map_or(String::new(), |r| {
            format!(": {} failed at {}: {}", r.version, r.stage, r.reason)
        });
        (Code::Critical, format!("the update lock is set after repeated failures{why}; fix it, then bootloader-glue unlock"))
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
                    Some(i) => format!("{} {} installed; no update recorded", i.product, i.version),
                    None => "no update recorded".to_string(),
                },
            ),
            Some(r) => match r.outcome {
                Outcome::Success => (
                    Code::Ok,
                    format!(
                        "{} installed (attempt {}, {:.1} s, {} entries)",
                        r.version,
                        r.attempt,
                        r.duration_ms as f64 / 1000.0,
                        r.entries
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
    Status {
        code,
        message,
        result,
        installed,
        pending,
        locked,
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
        }
    }

    #[test]
    fn codes_follow_the_records() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path();
        std::fs::create_dir_all(cfg.join("update")).unwrap();
        assert_eq!(status(cfg).code, Code::Ok);
        std::fs::write(cfg.join(RESULT), result(Outcome::Success).render()).unwrap();
        let s = status(cfg);
        assert_eq!(
            (s.code, s.line().as_str()),
            (Code::Ok, "OK: 2.0 installed (attempt 1, 1.5 s, 3 entries)")
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
        std::fs::remove_file(cfg.join(LOCK)).unwrap();
        std::fs::write(cfg.join(RESULT), "format=1\noutc").unwrap();
        assert_eq!(status(cfg).code, Code::Unknown);
    }
}
