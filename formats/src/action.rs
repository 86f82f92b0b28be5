//! The agent's update in flight (`cfg:update/action`): written before the
//! instruction, so that the new system, once booted, knows which offer of
//! which source to report on, from which version to which, and whether the
//! result on `cfg` is this update's. See `docs/update-records.md`.

use crate::keyvalue::{self, KeyValueError};
use crate::result::RecordError;

pub const FORMAT_VERSION: u64 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The source's name (`feed`, `hawkbit`).
    pub source: String,
    /// The source's id of the offer (hawkBit's action id).
    pub offer: String,
    /// The installed version when the update was asked for; empty when it
    /// was not known.
    pub old_version: String,
    /// The version being installed (the signed manifest's).
    pub new_version: String,
    /// The CRC-32 of `cfg:update/result` as it was when the record was
    /// written (`None`: there was none). A result with other bytes is this
    /// update's; without a clock, so a wrong clock cannot mislead it.
    pub result_before: Option<u32>,
    /// Whether the post-update command has run (it runs once).
    pub post_update_done: bool,
}

const KEYS: &[&str] = &[
    "format",
    "source",
    "offer",
    "old-version",
    "new-version",
    "result-before",
    "post-update",
];

impl Action {
    /// The identity of a result record, as `result_before` keeps it.
    pub fn crc_of(result: &[u8]) -> u32 {
        crc32fast::hash(result)
    }

    /// Whether `result` (the bytes of `cfg:update/result`, if any) was
    /// written after this record: by the recovery, for this update.
    pub fn is_newer_result(&self, result: Option<&[u8]>) -> bool {
        match result {
            None => false,
            Some(bytes) => self.result_before != Some(Action::crc_of(bytes)),
        }
    }

    pub fn render(&self) -> String {
        keyvalue::seal(&format!(
            "format={FORMAT_VERSION}\nsource={}\noffer={}\nold-version={}\nnew-version={}\n\
             result-before={}\npost-update={}\n",
            self.source,
            self.offer,
            self.old_version,
            self.new_version,
            self.result_before
                .map_or("none".to_string(), |crc| format!("{crc:08x}")),
            if self.post_update_done {
                "done"
            } else {
                "pending"
            },
        ))
    }

    pub fn parse(bytes: &[u8]) -> Result<Action, RecordError> {
        let body = keyvalue::unseal(bytes)?;
        let pairs = keyvalue::parse(body, KEYS)?;
        let get = |key| keyvalue::require(&pairs, key);
        let format = get("format")?;
        if format.as_u64()? != FORMAT_VERSION {
            return Err(format.bad("expected format 1").into());
        }
        let old = get("old-version")?;
        let old_version = if old.value.is_empty() {
            String::new()
        } else {
            old.as_name()?.to_string()
        };
        let before = get("result-before")?;
        let result_before = match before.value {
            "none" => None,
            hex if hex.len() == 8
                && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
            {
                Some(u32::from_str_radix(hex, 16).map_err(|_| bad_crc(before))?)
            }
            _ => return Err(bad_crc(before).into()),
        };
        let post = get("post-update")?;
        let post_update_done = match post.value {
            "done" => true,
            "pending" => false,
            _ => return Err(post.bad("expected done or pending").into()),
        };
        Ok(Action {
            source: get("source")?.as_name()?.to_string(),
            offer: get("offer")?.as_name()?.to_string(),
            old_version,
            new_version: get("new-version")?.as_name()?.to_string(),
            result_before,
            post_update_done,
        })
    }
}

fn bad_crc(pair: &keyvalue::Pair<'_>) -> KeyValueError {
    pair.bad("expected none or a CRC-32 of 8 lowercase hex digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action() -> Action {
        Action {
            source: "hawkbit".into(),
            offer: "42".into(),
            old_version: "1.0".into(),
            new_version: "2.0".into(),
            result_before: Some(0x1a2b3c4d),
            post_update_done: false,
        }
    }

    #[test]
    fn it_round_trips() {
        let a = action();
        let text = a.render();
        assert!(text.starts_with(
            "format=1\nsource=hawkbit\noffer=42\nold-version=1.0\nnew-version=2.0\n\
             result-before=1a2b3c4d\npost-update=pending\ncrc32="
        ));
        assert_eq!(Action::parse(text.as_bytes()), Ok(a.clone()));
        let b = Action {
            old_version: String::new(),
            result_before: None,
            post_update_done: true,
            ..a
        };
        assert_eq!(Action::parse(b.render().as_bytes()), Ok(b));
    }

    #[test]
    fn a_result_is_the_actions_when_it_changed_since() {
        let before = b"format=1\noutcome=success\n";
        let a = Action {
            result_before: Some(Action::crc_of(before)),
            ..action()
        };
        assert!(!a.is_newer_result(Some(before)));
        assert!(a.is_newer_result(Some(b"format=1\noutcome=refused\n")));
        assert!(!a.is_newer_result(None));
        let first = Action {
            result_before: None,
            ..action()
        };
        assert!(first.is_newer_result(Some(before)));
    }

    #[test]
    fn bad_records_are_refused_naming_the_line() {
        let good = action().render();
        let body = keyvalue::unseal(good.as_bytes()).unwrap();
        for (from, to, expected) in [
            ("offer=42", "offer=a b", "line 3: offer=\"a b\""),
            ("result-before=1a2b3c4d", "result-before=1A2B3C4D", "line 6"),
            ("result-before=1a2b3c4d", "result-before=", "line 6"),
            (
                "post-update=pending",
                "post-update=maybe",
                "expected done or pending",
            ),
            ("format=1", "format=2", "expected format 1"),
            ("new-version=2.0", "new-version=", "line 5"),
        ] {
            let text = keyvalue::seal(&body.replace(from, to));
            let e = Action::parse(text.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(expected), "{to}: {e}");
        }
        assert!(Action::parse(&good.as_bytes()[..good.len() - 3]).is_err());
    }
}
