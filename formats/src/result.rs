//! What the recovery leaves for the running system: the result of the last
//! update (`cfg:update/result`) and the installed version
//! (`cfg:update/installed`). See `docs/update-records.md`.

use crate::keyvalue::{self, one_line, KeyValueError, SealError};
use thiserror::Error;

pub const FORMAT_VERSION: u64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The new system is installed.
    Success,
    /// Refused before the system partition was touched: the old system runs.
    Refused,
    /// Failed after the erase; the instruction stays for another attempt.
    Failed,
    /// Failed too often: the update lock is set and the recovery stopped.
    Locked,
    /// The new system confirmed itself (`bootloader-glue confirm`): its
    /// trial is over.
    Confirmed,
    /// The last good image was restored: the new system was not
    /// confirmed in time, or the update failed after the erase on its
    /// last attempt (then the update lock is set too).
    Restored,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::Locked => "locked",
            Outcome::Confirmed => "confirmed",
            Outcome::Restored => "restored",
        }
    }

    fn parse(s: &str) -> Option<Outcome> {
        [
            Outcome::Success,
            Outcome::Refused,
            Outcome::Failed,
            Outcome::Locked,
            Outcome::Confirmed,
            Outcome::Restored,
        ]
        .into_iter()
        .find(|o| o.name() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateResult {
    pub outcome: Outcome,
    /// The version the instruction asked for (the manifest's, once read).
    pub version: String,
    /// The stage that failed, empty on success.
    pub stage: String,
    /// Why, in one line: which file, what was expected, what was found.
    pub reason: String,
    pub attempt: u64,
    /// Seconds since 1970.
    pub started: u64,
    pub finished: u64,
    pub duration_ms: u64,
    /// File bytes and entries written into the target.
    pub bytes: u64,
    pub entries: u64,
    /// With `outcome=restored`: the version restored (the key is absent
    /// otherwise).
    pub restored: Option<String>,
    /// The CRC-32 of the instruction this result is of (as
    /// `cfg:update/attempts` keeps it; the key `instruction-crc` is absent
    /// when the result is of no instruction, and in older records): a
    /// success is only that instruction's.
    pub instruction: Option<u32>,
}

const RESULT_KEYS: &[&str] = &[
    "format",
    "outcome",
    "version",
    "stage",
    "reason",
    "attempt",
    "started",
    "finished",
    "duration-ms",
    "bytes",
    "entries",
    "restored",
    "instruction-crc",
];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Field(#[from] KeyValueError),
}

impl UpdateResult {
    pub fn render(&self) -> String {
        let restored = self
            .restored
            .as_ref()
            .map_or(String::new(), |v| format!("restored={}\n", one_line(v)));
        let instruction = self
            .instruction
            .map_or(String::new(), |crc| format!("instruction-crc={crc:08x}\n"));
        keyvalue::seal(&format!(
            "format={FORMAT_VERSION}\noutcome={}\nversion={}\nstage={}\nreason={}\nattempt={}\n\
             started={}\nfinished={}\nduration-ms={}\nbytes={}\nentries={}\n{restored}{instruction}",
            self.outcome.name(),
            one_line(&self.version),
            one_line(&self.stage),
            one_line(&self.reason),
            self.attempt,
            self.started,
            self.finished,
            self.duration_ms,
            self.bytes,
            self.entries
        ))
    }

    pub fn parse(bytes: &[u8]) -> Result<UpdateResult, RecordError> {
        let body = keyvalue::unseal(bytes)?;
        let pairs = keyvalue::parse(body, RESULT_KEYS)?;
        let get = |key| keyvalue::require(&pairs, key);
        let format = get("format")?;
        if format.as_u64()? != FORMAT_VERSION {
            return Err(format.bad("expected format 1").into());
        }
        let outcome = get("outcome")?;
        Ok(UpdateResult {
            outcome: Outcome::parse(outcome.value).ok_or_else(|| {
                outcome.bad("expected success, refused, failed, locked, confirmed or restored")
            })?,
            version: get("version")?.value.to_string(),
            stage: get("stage")?.value.to_string(),
            reason: get("reason")?.value.to_string(),
            attempt: get("attempt")?.as_u64()?,
            started: get("started")?.as_u64()?,
            finished: get("finished")?.as_u64()?,
            duration_ms: get("duration-ms")?.as_u64()?,
            bytes: get("bytes")?.as_u64()?,
            entries: get("entries")?.as_u64()?,
            restored: pairs
                .iter()
                .find(|p| p.key == "restored")
                .map(|p| p.value.to_string()),
            instruction: match pairs.iter().find(|p| p.key == "instruction-crc") {
                None => None,
                Some(p) => Some(
                    u32::from_str_radix(p.value, 16)
                        .ok()
                        .filter(|_| p.value.len() == 8)
                        .ok_or_else(|| p.bad("expected a CRC-32 of 8 hex digits"))?,
                ),
            },
        })
    }
}

/// The product and version on the system partition, as last installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub product: String,
    pub version: String,
}

impl Installed {
    pub fn render(&self) -> String {
        keyvalue::seal(&format!(
            "format={FORMAT_VERSION}\nproduct={}\nversion={}\n",
            self.product, self.version
        ))
    }

    pub fn parse(bytes: &[u8]) -> Result<Installed, RecordError> {
        let body = keyvalue::unseal(bytes)?;
        let pairs = keyvalue::parse(body, &["format", "product", "version"])?;
        let get = |key| keyvalue::require(&pairs, key);
        get("format")?;
        Ok(Installed {
            product: get("product")?.as_name()?.to_string(),
            version: get("version")?.as_name()?.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_round_trip_on_one_line_each() {
        let r = UpdateResult {
            outcome: Outcome::Refused,
            version: "2.0".into(),
            stage: "signature".into(),
            reason: "storage:x.minisig: signed by key A,\nnot trusted".into(),
            attempt: 1,
            started: 10,
            finished: 12,
            duration_ms: 2000,
            bytes: 0,
            entries: 0,
            restored: None,
            instruction: None,
        };
        let parsed = UpdateResult::parse(r.render().as_bytes()).unwrap();
        assert_eq!(
            parsed.reason,
            "storage:x.minisig: signed by key A, not trusted"
        );
        assert_eq!(parsed.outcome, Outcome::Refused);
        assert!(UpdateResult::parse(&r.render().as_bytes()[..40]).is_err());
        let restored = UpdateResult {
            outcome: Outcome::Restored,
            stage: "trial".into(),
            reason: "2.0 not confirmed after 3 boots".into(),
            restored: Some("1.0".into()),
            instruction: None,
            ..r
        };
        let text = restored.render();
        assert!(text.contains("outcome=restored\n"), "{text}");
        assert!(text.contains("\nrestored=1.0\n"), "{text}");
        assert_eq!(UpdateResult::parse(text.as_bytes()), Ok(restored.clone()));
        // A success names its instruction; older records without the key parse.
        let of = UpdateResult {
            instruction: Some(0x0012_abcd),
            ..restored
        };
        let text = of.render();
        assert!(text.contains("\ninstruction-crc=0012abcd\n"), "{text}");
        assert_eq!(UpdateResult::parse(text.as_bytes()), Ok(of));
    }

    #[test]
    fn installed_round_trips() {
        let i = Installed {
            product: "acme".into(),
            version: "1.0".into(),
        };
        assert_eq!(Installed::parse(i.render().as_bytes()), Ok(i));
    }
}
