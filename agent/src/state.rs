//! What the daemon is doing, for `reimage-agent status`: a small record
//! the daemon rewrites after each step (by default
//! `/run/reimage-agent/state`, on tmpfs: it means nothing after a reboot).
//! Strict `key=value` like the records on `cfg`; parsing takes bytes.

use formats::keyvalue::{self, one_line, KeyValueError};

/// What the daemon does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doing {
    Polling,
    Downloading,
    Installing,
    Waiting,
}

impl Doing {
    pub fn name(self) -> &'static str {
        match self {
            Doing::Polling => "polling",
            Doing::Downloading => "downloading",
            Doing::Installing => "installing",
            Doing::Waiting => "waiting",
        }
    }

    fn parse(s: &str) -> Option<Doing> {
        [
            Doing::Polling,
            Doing::Downloading,
            Doing::Installing,
            Doing::Waiting,
        ]
        .into_iter()
        .find(|d| d.name() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// When it was written, seconds since 1970.
    pub updated: u64,
    /// The source's name.
    pub source: String,
    /// The offer being worked on: its id and the version the source says.
    pub offer: Option<String>,
    pub version: Option<String>,
    /// The staged image (bundle or manifest) when the offer is staged.
    pub staged: Option<String>,
    pub doing: Doing,
    /// While waiting: until when (seconds since 1970) and why.
    pub until: Option<u64>,
    pub why: String,
}

const KEYS: &[&str] = &[
    "format", "updated", "source", "offer", "version", "staged", "doing", "until", "why",
];

impl State {
    pub fn render(&self) -> String {
        let opt = |v: &Option<String>| one_line(v.as_deref().unwrap_or(""));
        format!(
            "format=1\nupdated={}\nsource={}\noffer={}\nversion={}\nstaged={}\ndoing={}\n\
             until={}\nwhy={}\n",
            self.updated,
            one_line(&self.source),
            opt(&self.offer),
            opt(&self.version),
            opt(&self.staged),
            self.doing.name(),
            self.until.map_or(String::new(), |u| u.to_string()),
            one_line(&self.why),
        )
    }

    pub fn parse(bytes: &[u8]) -> Result<State, KeyValueError> {
        let text = std::str::from_utf8(bytes).map_err(|_| KeyValueError::NotAPair {
            line: 1,
            found: "(not UTF-8 text)".into(),
        })?;
        let pairs = keyvalue::parse(text, KEYS)?;
        let get = |key| keyvalue::require(&pairs, key);
        let format = get("format")?;
        if format.value != "1" {
            return Err(format.bad("expected format 1"));
        }
        let opt = |key| -> Result<Option<String>, KeyValueError> {
            let v = get(key)?.value;
            Ok((!v.is_empty()).then(|| v.to_string()))
        };
        let doing = get("doing")?;
        let until = get("until")?;
        Ok(State {
            updated: get("updated")?.as_u64()?,
            source: get("source")?.value.to_string(),
            offer: opt("offer")?,
            version: opt("version")?,
            staged: opt("staged")?,
            doing: Doing::parse(doing.value)
                .ok_or_else(|| doing.bad("expected polling, downloading, installing or waiting"))?,
            until: if until.value.is_empty() {
                None
            } else {
                Some(until.as_u64()?)
            },
            why: get("why")?.value.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_round_trips() {
        let s = State {
            updated: 100,
            source: "hawkbit".into(),
            offer: Some("42".into()),
            version: Some("2.0".into()),
            staged: Some("/storage/updates/acme-2.0.swu".into()),
            doing: Doing::Waiting,
            until: Some(200),
            why: "install window\nopens".into(),
        };
        let parsed = State::parse(s.render().as_bytes()).unwrap();
        assert_eq!(parsed.why, "install window opens");
        assert_eq!(parsed.until, Some(200));
        let idle = State {
            offer: None,
            version: None,
            staged: None,
            doing: Doing::Polling,
            until: None,
            why: String::new(),
            ..s
        };
        assert_eq!(State::parse(idle.render().as_bytes()), Ok(idle.clone()));
        let bad = idle.render().replace("doing=polling", "doing=dancing");
        let e = State::parse(bad.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("doing=\"dancing\""), "{e}");
    }
}
