//! `reimage-agent status [--json]`: what the agent is doing and what
//! stands in its way, from its configuration, the records on `cfg` (the
//! update lock, the warning flag, the update in flight) and the daemon's
//! state file. Reading is apart from printing: [`Status::text`] and
//! [`Status::json`] are pure.

use crate::config::{Config, SourceKind};
use crate::daemon::Windows;
use crate::state::State;
use formats::action::Action;
use formats::cfg::{shown, DownloadFailed, Lock, ACTION, DOWNLOAD_FAILED, LOCK};
use formats::units::utc;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Seconds since 1970, when this was gathered.
    pub now: u64,
    /// `feed` or `hawkbit`, and where.
    pub source: String,
    pub windows: Windows,
    /// The daemon's state (`None`: no daemon has written one).
    pub daemon: Option<State>,
    /// The warning flag, if set (or what is wrong with its record).
    pub warning: Option<Result<DownloadFailed, String>>,
    /// The update lock, if set; its reason when the agent set it.
    pub lock: Option<String>,
    /// The update in flight, awaiting the report after the reboot.
    pub action: Option<Result<Action, String>>,
}

impl Status {
    /// Reads what there is to read; nothing here fails, a record that
    /// cannot be read is shown as such.
    pub fn gather(config: &Config, now: u64) -> Status {
        let read = |path: &Path| std::fs::read(path).ok();
        let cfg = &config.cfg;
        let source = match config.source {
            SourceKind::Feed => format!("feed {}", config.feed.as_deref().unwrap_or("?")),
            SourceKind::Hawkbit => "hawkbit".to_string(),
        };
        let daemon = read(&config.daemon.state_file).and_then(|b| State::parse(&b).ok());
        let warning = read(&cfg.join(DOWNLOAD_FAILED)).map(|b| {
            DownloadFailed::parse(&b).map_err(|e| format!("{}: {e}", shown(DOWNLOAD_FAILED)))
        });
        let lock = read(&cfg.join(LOCK)).map(|b| {
            std::str::from_utf8(&b)
                .ok()
                .and_then(|t| Lock::parse(t).ok())
                .map_or(String::new(), |l| l.reason)
        });
        let action = read(&cfg.join(ACTION))
            .map(|b| Action::parse(&b).map_err(|e| format!("{}: {e}", shown(ACTION))));
        Status {
            now,
            source,
            windows: config.daemon.windows,
            daemon,
            warning,
            lock,
            action,
        }
    }

    fn next(&self, window: &crate::schedule::Window) -> String {
        match window.next_open(self.now) {
            Some(t) if t == self.now => "open now".to_string(),
            Some(t) => format!("opens {}", utc(t)),
            None => "never opens".to_string(),
        }
    }

    /// Lines for people: `key: value`.
    pub fn text(&self) -> String {
        let mut out = format!("source: {}\n", self.source);
        match &self.daemon {
            None => out += "daemon: no state (not running?)\n",
            Some(d) => {
                out += &format!("daemon: {} (at {})", d.doing.name(), utc(d.updated));
                if let Some(until) = d.until {
                    out += &format!(" until {}", utc(until));
                }
                if !d.why.is_empty() {
                    out += &format!(": {}", d.why);
                }
                out += "\n";
                if let Some(offer) = &d.offer {
                    out += &format!(
                        "offer: {offer} ({})\n",
                        d.version.as_deref().unwrap_or("version not said")
                    );
                }
                if let Some(staged) = &d.staged {
                    out += &format!("staged: {staged}\n");
                }
            }
        }
        out += &format!(
            "download window: {} ({})\n",
            self.windows.download,
            self.next(&self.windows.download)
        );
        out += &format!(
            "install window: {} ({})\n",
            self.windows.install,
            self.next(&self.windows.install)
        );
        match &self.warning {
            None => {}
            Some(Ok(w)) => {
                out += &format!(
                    "WARNING: update download failed: {} after {} attempts at {}: {}\n",
                    w.image,
                    w.attempts,
                    utc(w.at),
                    w.reason
                )
            }
            Some(Err(e)) => out += &format!("WARNING: update download failed ({e})\n"),
        }
        match &self.lock {
            None => {}
            Some(reason) if reason.is_empty() => {
                out += "LOCKED: the update lock is set after repeated failures (see bootloader-glue status); nothing is downloaded or installed until bootloader-glue unlock\n"
            }
            Some(reason) => {
                out += &format!(
                    "LOCKED: {reason}; nothing is downloaded or installed until bootloader-glue unlock\n"
                )
            }
        }
        match &self.action {
            None => {}
            Some(Ok(a)) => {
                out += &format!(
                    "in flight: {} -> {} (offer {} of {}), reported after the reboot\n",
                    if a.old_version.is_empty() {
                        "?"
                    } else {
                        &a.old_version
                    },
                    a.new_version,
                    a.offer,
                    a.source
                )
            }
            Some(Err(e)) => out += &format!("in flight: unreadable ({e})\n"),
        }
        out
    }

    /// One JSON object; absent things are `null`.
    pub fn json(&self) -> String {
        let d = self.daemon.as_ref();
        let window = |w: &crate::schedule::Window| {
            serde_json::json!({
                "window": w.to_string(),
                "open": w.is_open(self.now),
                "next_open": w.next_open(self.now),
            })
        };
        serde_json::json!({
            "now": self.now,
            "source": self.source,
            "daemon": d.map(|d| d.doing.name()),
            "daemon_updated": d.map(|d| d.updated),
            "waiting_until": d.and_then(|d| d.until),
            "why": d.map(|d| &d.why),
            "offer": d.and_then(|d| d.offer.as_ref()),
            "offer_version": d.and_then(|d| d.version.as_ref()),
            "staged": d.and_then(|d| d.staged.as_ref()),
            "download_window": window(&self.windows.download),
            "install_window": window(&self.windows.install),
            "warning": self.warning.as_ref().map(|w| match w {
                Ok(w) => format!("update download failed: {}: {}", w.image, w.reason),
                Err(e) => format!("update download failed ({e})"),
            }),
            "locked": self.lock.is_some(),
            "lock_reason": self.lock.as_ref().filter(|r| !r.is_empty()),
            "in_flight": self.action.as_ref().map(|a| match a {
                Ok(a) => serde_json::json!({
                    "source": a.source,
                    "offer": a.offer,
                    "old_version": a.old_version,
                    "new_version": a.new_version,
                }),
                Err(e) => serde_json::json!({ "error": e }),
            }),
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Doing;

    /// Monday 2026-11-23 00:00:00 UTC.
    const MONDAY: u64 = 1_795_392_000;

    #[test]
    fn it_gathers_the_records_and_says_what_stands_in_the_way() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("cfg");
        std::fs::create_dir_all(cfg.join("update")).unwrap();
        let state_file = dir.path().join("state");
        let text = format!(
            "feed=http://h/u\ncfg={}\nstate-file={}\ndownload-window=daily 02:00-04:00\n",
            cfg.display(),
            state_file.display()
        );
        let config = Config::parse(&text).unwrap();

        let quiet = Status::gather(&config, MONDAY);
        assert_eq!(
            quiet.text(),
            "source: feed http://h/u\ndaemon: no state (not running?)\n\
             download window: daily 02:00-04:00 (opens 2026-11-23T02:00:00Z)\n\
             install window: always (open now)\n"
        );

        let state = State {
            updated: MONDAY,
            source: "feed".into(),
            offer: Some("2.0".into()),
            version: Some("2.0".into()),
            staged: Some("/storage/updates/acme-2.0.swu".into()),
            doing: Doing::Waiting,
            until: Some(MONDAY + 60),
            why: "waiting for the install window".into(),
        };
        std::fs::write(&state_file, state.render()).unwrap();
        let warning = DownloadFailed {
            image: "acme-2.0".into(),
            attempts: 10,
            at: MONDAY,
            reason: "HTTP 500".into(),
        };
        std::fs::write(cfg.join(DOWNLOAD_FAILED), warning.render()).unwrap();
        let lock = Lock {
            attempts: 10,
            reason: "the round before the install failed".into(),
        };
        std::fs::write(cfg.join(LOCK), lock.render()).unwrap();
        crate::outcome::begin(&cfg, "feed", "2.0", "1.0", "2.0").unwrap();

        let s = Status::gather(&config, MONDAY + 3 * 3600);
        let text = s.text();
        for line in [
            "daemon: waiting (at 2026-11-23T00:00:00Z) until 2026-11-23T00:01:00Z: waiting for the install window\n",
            "offer: 2.0 (2.0)\n",
            "staged: /storage/updates/acme-2.0.swu\n",
            "download window: daily 02:00-04:00 (open now)\n",
            "WARNING: update download failed: acme-2.0 after 10 attempts at 2026-11-23T00:00:00Z: HTTP 500\n",
            "LOCKED: the round before the install failed; nothing is downloaded or installed until bootloader-glue unlock\n",
            "in flight: 1.0 -> 2.0 (offer 2.0 of feed), reported after the reboot\n",
        ] {
            assert!(text.contains(line), "{line:?} not in:\n{text}");
        }
        let json: serde_json::Value = serde_json::from_str(&s.json()).unwrap();
        assert_eq!(json["daemon"], "waiting");
        assert_eq!(json["staged"], "/storage/updates/acme-2.0.swu");
        assert_eq!(json["locked"], true);
        assert_eq!(json["lock_reason"], "the round before the install failed");
        assert_eq!(
            json["warning"],
            "update download failed: acme-2.0: HTTP 500"
        );
        assert_eq!(json["download_window"]["open"], true);
        assert_eq!(json["install_window"]["next_open"], MONDAY + 3 * 3600);
        assert_eq!(json["in_flight"]["new_version"], "2.0");

        // A lock the recovery set has no reason of its own.
        std::fs::write(cfg.join(LOCK), "attempts=3\n").unwrap();
        let s = Status::gather(&config, MONDAY);
        assert!(s
            .text()
            .contains("LOCKED: the update lock is set after repeated failures"));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&s.json()).unwrap()["lock_reason"],
            serde_json::Value::Null
        );
    }
}
