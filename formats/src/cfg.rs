//! The `cfg` partition: every file the updater keeps there, in one place,
//! and the small records that have no module of their own (the attempt
//! count and the update lock). Every side (`recovery`, `bootloader-glue`,
//! the tests) names these files through this module, never by a literal.
//! See `docs/update-records.md`.

use crate::keyvalue::{self, one_line};

/// The update instruction ([`crate::instruction`]): written by the running
/// system, removed by the recovery once the new system is on disk.
pub const INSTRUCTION: &str = "update/instruction";
/// A refused instruction, moved aside so that the boot loader no longer
/// sees it and an operator can still read it.
pub const INSTRUCTION_REFUSED: &str = "update/instruction.refused";
/// An instruction cancelled on the running system (`bootloader-glue cancel`).
pub const INSTRUCTION_CANCELLED: &str = "update/instruction.cancelled";
/// An instruction whose attempts all failed after the erase, moved aside
/// when the recovery decided to restore the last good image instead.
pub const INSTRUCTION_FAILED: &str = "update/instruction.failed";
/// The new system on trial until it is confirmed ([`crate::trial::Trial`]).
pub const TRIAL: &str = "update/trial";
/// A restore decided on and not yet finished
/// ([`crate::trial::PendingRestore`]).
pub const RESTORE: &str = "update/restore";
/// The target partition was erased and holds no complete system yet
/// ([`crate::trial::Touched`]): written before every erase, removed once a
/// system is extracted and synced; a later refusal is then no refusal.
pub const TOUCHED: &str = "update/touched";
/// The result of the last update ([`crate::result::UpdateResult`]).
pub const RESULT: &str = "update/result";
/// The installed product and version ([`crate::result::Installed`]).
pub const INSTALLED: &str = "update/installed";
/// The recovery's count of attempts of the current instruction ([`Attempts`]).
pub const ATTEMPTS: &str = "update/attempts";
/// The update lock ([`Lock`]): set after repeated failures; while it is
/// there no instruction is written and the recovery erases nothing.
pub const LOCK: &str = "update/lock";
/// The agent's update in flight ([`crate::action::Action`]): written
/// before the instruction, removed once the outcome has been reported.
pub const ACTION: &str = "update/action";
/// The recovery's log, appended to on every boot of the recovery.
pub const RECOVERY_LOG: &str = "update/recovery.log";

/// The version the last restore took away ([`RestoredAwayRecord`]):
/// written by the recovery as it finishes a restore, removed once a newer
/// version is installed.
pub const RESTORED_AWAY: &str = "update/restored-away";
/// An operator's leave to install again a version the recovery restored
/// away ([`RetryRestored`]; `bootloader-glue request --retry-restored`).
pub const RETRY_RESTORED: &str = "update/retry-restored";

/// The warning flag of the update agent ([`DownloadFailed`]): set after the
/// last of a round of download attempts failed, cleared only by a
/// complete, verified download. `bootloader-glue status` reports it.
pub const DOWNLOAD_FAILED: &str = "update/download-failed";
/// What the update agent last sent a hawkBit server in `configData` (a
/// BLAKE3 in hex), so that each run does not send it again.
pub const CONFIG_DATA_SENT: &str = "update/config-data-sent";

/// How a file on `cfg` is named in messages: `cfg:update/lock`.
pub fn shown(rel: &str) -> String {
    format!("cfg:{rel}")
}

/// `cfg:update/attempts`: which instruction (the CRC-32 of its bytes) has
/// been tried how many times. One line: `CRC COUNT`, e.g. `1a2b3c4d 2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts {
    pub instruction_crc: u32,
    pub count: u64,
}

impl Attempts {
    /// The identity of an instruction, as the attempt record keeps it.
    pub fn crc_of(instruction: &[u8]) -> u32 {
        crc32fast::hash(instruction)
    }

    pub fn render(&self) -> String {
        format!("{:08x} {}\n", self.instruction_crc, self.count)
    }

    /// Parses the record; `Err` says what is wrong with it, for a warning.
    pub fn parse(text: &str) -> Result<Attempts, String> {
        let (crc, count) = text
            .trim()
            .split_once(' ')
            .ok_or_else(|| format!("{:?} is not `INSTRUCTION-CRC COUNT`", one_line(text.trim())))?;
        let instruction_crc = u32::from_str_radix(crc, 16)
            .ok()
            .filter(|_| crc.len() == 8)
            .ok_or_else(|| format!("{crc:?} is not a CRC-32 of 8 hex digits"))?;
        let count = count
            .parse::<u64>()
            .map_err(|_| format!("{count:?} is not a count"))?;
        Ok(Attempts {
            instruction_crc,
            count,
        })
    }

    /// How many attempts of the instruction with these bytes were counted
    /// so far, given the record's text (if any). A record of another
    /// instruction counts as none; an unreadable one too, with a warning.
    pub fn previous(record: Option<&str>, instruction: &[u8]) -> (u64, Option<String>) {
        let Some(text) = record else {
            return (0, None);
        };
        match Attempts::parse(text) {
            Ok(a) if a.instruction_crc == Attempts::crc_of(instruction) => (a.count, None),
            Ok(_) => (0, None),
            Err(e) => (
                0,
                Some(format!("{}: {e}; counting from 0", shown(ATTEMPTS))),
            ),
        }
    }
}

/// `cfg:update/lock`: how many attempts had failed when it was set, and,
/// when the agent set it, why (`attempts=10` and `reason=…` lines; the
/// recovery's reason is in `update/result`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub attempts: u64,
    /// Empty when the recovery set it.
    pub reason: String,
}

impl Lock {
    pub fn render(&self) -> String {
        let mut text = format!("attempts={}\n", self.attempts);
        if !self.reason.is_empty() {
            text += &format!("reason={}\n", one_line(&self.reason));
        }
        text
    }

    /// Parses the record; `Err` says what is wrong with it. The lock holds
    /// whatever its contents: this is only for saying why.
    pub fn parse(text: &str) -> Result<Lock, keyvalue::KeyValueError> {
        let pairs = keyvalue::parse(text, &["attempts", "reason"])?;
        Ok(Lock {
            attempts: keyvalue::require(&pairs, "attempts")?.as_u64()?,
            reason: pairs
                .iter()
                .find(|p| p.key == "reason")
                .map_or(String::new(), |p| p.value.to_string()),
        })
    }
}

/// `cfg:update/download-failed`: what the agent could not download, after
/// how many attempts, when, and the last attempt's error. Sealed
/// `key=value` lines, like the other records on `cfg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadFailed {
    /// The image (`P-V`, or the source's name for it when the manifest
    /// was never read).
    pub image: String,
    pub attempts: u64,
    /// Seconds since 1970.
    pub at: u64,
    /// The last attempt's error, on one line.
    pub reason: String,
}

/// The longest reason kept: a record on `cfg` stays small.
pub const MAX_REASON: usize = 1024;

impl DownloadFailed {
    pub fn render(&self) -> String {
        let mut reason = one_line(&self.reason);
        if reason.len() > MAX_REASON {
            let mut end = MAX_REASON;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
            reason.push('…');
        }
        keyvalue::seal(&format!(
            "format=1\nimage={}\nattempts={}\nat={}\nreason={reason}\n",
            one_line(&self.image),
            self.attempts,
            self.at
        ))
    }

    pub fn parse(bytes: &[u8]) -> Result<DownloadFailed, String> {
        let pairs = sealed_pairs(bytes, &["format", "image", "attempts", "at", "reason"])?;
        let get = |key| keyvalue::require(&pairs, key).map_err(|e| e.to_string());
        Ok(DownloadFailed {
            image: get("image")?.value.to_string(),
            attempts: get("attempts")?.as_u64().map_err(|e| e.to_string())?,
            at: get("at")?.as_u64().map_err(|e| e.to_string())?,
            reason: get("reason")?.value.to_string(),
        })
    }
}

/// `cfg:update/restored-away`: the version a restore took away (the one
/// that failed), the version restored in its place, why, when, and how
/// many restores in a row took this version away (`count`: 1 for the
/// first, +1 for each later restore while the record stands, so that no
/// two records of one version are alike, whatever the clock says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredAwayRecord {
    pub version: String,
    pub restored: String,
    pub reason: String,
    /// When the restore finished, seconds since 1970 (the device's clock:
    /// without an RTC, not unique).
    pub at: u64,
    pub count: u64,
}

impl RestoredAwayRecord {
    pub fn render(&self) -> String {
        keyvalue::seal(&format!(
            "format=1\nversion={}\nrestored={}\nreason={}\nat={}\ncount={}\n",
            one_line(&self.version),
            one_line(&self.restored),
            one_line(&self.reason),
            self.at,
            self.count
        ))
    }

    pub fn parse(bytes: &[u8]) -> Result<RestoredAwayRecord, String> {
        let pairs = sealed_pairs(
            bytes,
            &["format", "version", "restored", "reason", "at", "count"],
        )?;
        let get = |key| keyvalue::require(&pairs, key).map_err(|e| e.to_string());
        let number = |key| get(key)?.as_u64().map_err(|e| e.to_string());
        Ok(RestoredAwayRecord {
            version: get("version")?.value.to_string(),
            restored: get("restored")?.value.to_string(),
            reason: get("reason")?.value.to_string(),
            at: number("at")?,
            count: number("count")?,
        })
    }
}

/// The pairs of a sealed `format=1` record, `known` its keys.
fn sealed_pairs<'a>(bytes: &'a [u8], known: &[&str]) -> Result<Vec<keyvalue::Pair<'a>>, String> {
    let body = keyvalue::unseal(bytes).map_err(|e| e.to_string())?;
    let pairs = keyvalue::parse(body, known).map_err(|e| e.to_string())?;
    let format = keyvalue::require(&pairs, "format").map_err(|e| e.to_string())?;
    if format.value != "1" {
        return Err(format.bad("expected 1").to_string());
    }
    Ok(pairs)
}

/// `cfg:update/retry-restored`: the version restored away that an
/// operator allows again, and the restore it answers: `record` is the
/// BLAKE3 (hex) of the record that named the version restored away
/// (`update/restored-away`, or the `update/result` of a recovery that
/// writes no such record). A later restore of the same version writes
/// another record, which this leave does not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryRestored {
    pub version: String,
    /// BLAKE3 of the record's bytes, 64 lowercase hex digits.
    pub record: String,
}

impl RetryRestored {
    pub fn render(&self) -> String {
        keyvalue::seal(&format!(
            "format=1\nversion={}\nrecord={}\n",
            one_line(&self.version),
            one_line(&self.record)
        ))
    }

    pub fn parse(bytes: &[u8]) -> Result<RetryRestored, String> {
        let pairs = sealed_pairs(bytes, &["format", "version", "record"])?;
        let get = |key| keyvalue::require(&pairs, key).map_err(|e| e.to_string());
        let record = get("record")?;
        if crate::manifest::parse_hex32(record.value).is_none() {
            return Err(record
                .bad("expected a BLAKE3 of 64 lowercase hex digits")
                .to_string());
        }
        Ok(RetryRestored {
            version: get("version")?.value.to_string(),
            record: record.value.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_round_trip_with_or_without_a_reason() {
        let recovery = Lock {
            attempts: 3,
            reason: String::new(),
        };
        assert_eq!(recovery.render(), "attempts=3\n");
        assert_eq!(Lock::parse(&recovery.render()), Ok(recovery));
        let agent = Lock {
            attempts: 10,
            reason: "acme-2.0: the round before the install\nfailed".into(),
        };
        assert_eq!(
            agent.render(),
            "attempts=10\nreason=acme-2.0: the round before the install failed\n"
        );
        assert_eq!(Lock::parse(&agent.render()).unwrap().attempts, 10);
        assert!(Lock::parse("").is_err());
        assert!(Lock::parse("reason=x\n").is_err());
    }

    #[test]
    fn attempts_round_trip() {
        let a = Attempts {
            instruction_crc: 0x1a2b3c4d,
            count: 2,
        };
        assert_eq!(a.render(), "1a2b3c4d 2\n");
        assert_eq!(Attempts::parse(&a.render()), Ok(a));
    }

    #[test]
    fn attempts_of_another_instruction_or_unreadable_count_as_none() {
        let raw = b"format=1\n";
        let mine = Attempts {
            instruction_crc: Attempts::crc_of(raw),
            count: 3,
        }
        .render();
        assert_eq!(Attempts::previous(Some(&mine), raw), (3, None));
        assert_eq!(Attempts::previous(Some(&mine), b"other"), (0, None));
        assert_eq!(Attempts::previous(None, raw), (0, None));
        for bad in ["garbage\n", "1a2b3c4d x\n", "xyz 2\n", "1a2b 2\n", ""] {
            let (n, warning) = Attempts::previous(Some(bad), raw);
            assert_eq!(n, 0, "{bad:?}");
            assert!(warning.unwrap().starts_with("cfg:update/attempts: "));
        }
    }

    #[test]
    fn the_download_warning_round_trips_on_one_line_each() {
        let w = DownloadFailed {
            image: "acme-2.0".into(),
            attempts: 10,
            at: 1_700_000_000,
            reason: "all 10 attempt(s) failed:\n  attempt 1: HTTP 500".into(),
        };
        let text = w.render();
        assert!(text.contains("reason=all 10 attempt(s) failed:   attempt 1: HTTP 500\n"));
        let back = DownloadFailed::parse(text.as_bytes()).unwrap();
        assert_eq!(back.attempts, 10);
        assert_eq!(back.image, "acme-2.0");
        assert!(!back.reason.contains('\n'));
        assert!(DownloadFailed::parse(&text.as_bytes()[..20]).is_err());
        let long = DownloadFailed {
            reason: "é".repeat(MAX_REASON),
            ..w
        };
        let back = DownloadFailed::parse(long.render().as_bytes()).unwrap();
        assert!(back.reason.len() <= MAX_REASON + '…'.len_utf8());
    }

    #[test]
    fn the_leave_to_retry_a_restored_version_round_trips() {
        let r = RetryRestored {
            version: "2.0".into(),
            record: "0a".repeat(32),
        };
        assert_eq!(RetryRestored::parse(r.render().as_bytes()), Ok(r.clone()));
        assert!(RetryRestored::parse(&r.render().as_bytes()[..12]).is_err());
        assert!(RetryRestored::parse(b"version=2.0\n").is_err());
        // The leave of the earlier format (keyed on the restore's time)
        // allows nothing.
        let old = keyvalue::seal("format=1\nversion=2.0\nrestored-at=1700000000\n");
        assert!(RetryRestored::parse(old.as_bytes()).is_err());
        let short = RetryRestored {
            record: "0a".into(),
            ..r
        };
        let err = RetryRestored::parse(short.render().as_bytes()).unwrap_err();
        assert!(err.contains("64 lowercase hex digits"), "{err}");
    }

    #[test]
    fn the_version_restored_away_round_trips_on_one_line_each() {
        let r = RestoredAwayRecord {
            version: "2.0".into(),
            restored: "1.0".into(),
            reason: "2.0 not confirmed\nafter 3 boots".into(),
            at: 1_700_000_000,
            count: 2,
        };
        let back = RestoredAwayRecord::parse(r.render().as_bytes()).unwrap();
        assert_eq!(back.reason, "2.0 not confirmed after 3 boots");
        assert_eq!((back.version.as_str(), back.count), ("2.0", 2));
        assert!(RestoredAwayRecord::parse(&r.render().as_bytes()[..20]).is_err());
        let other = keyvalue::seal("format=2\nversion=2.0\n");
        assert!(RestoredAwayRecord::parse(other.as_bytes()).is_err());
    }
}
