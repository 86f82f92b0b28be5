//! `reimage-agent run`: the daemon. It polls the source at its interval,
//! downloads an offer when the download window opens, and when the
//! install window opens makes another round of attempts (the staged file
//! checked again, fetched again when it is gone or wrong) before it writes
//! the instruction. When that round fails, nothing is installed: the
//! update lock is set (the recovery's own, `formats::cfg::Lock`), which
//! switches the schedule off until `bootloader-glue unlock`.
//!
//! Deciding is apart from doing: [`decide`] is a pure function of the
//! time, the windows and what the agent knows; the loop only carries out
//! its steps, with the clock passed in, so the tests run days of schedule
//! in milliseconds.

use crate::schedule::Window;
use crate::source::{Mode, Offer};
use formats::units::utc;

/// The two windows of the agent's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// When offers are downloaded (`download-window`).
    pub download: Window,
    /// When staged offers are installed (`install-window`).
    pub install: Window,
}

impl Default for Windows {
    /// No schedule: download and install as soon as offered.
    fn default() -> Windows {
        Windows {
            download: Window::Always,
            install: Window::Always,
        }
    }
}

/// What the daemon knows at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Situation<'a> {
    /// Seconds since 1970.
    pub now: u64,
    /// Whether `cfg:update/lock` is there.
    pub locked: bool,
    /// The offer from the last answer of the source, if any.
    pub offer: Option<&'a Offer>,
    /// Whether that offer is downloaded and verified.
    pub staged: bool,
    /// When the source is to be asked again.
    pub next_poll: u64,
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Ask the source.
    Poll,
    /// Download and verify the offer.
    Stage,
    /// The round before the install (check the staged file, fetch it again
    /// if needed), then the instruction.
    Install,
    /// Nothing until `until` (or until the next poll, which is no later).
    Wait { until: u64, why: String },
}

/// The next step. Polling comes first when it is due. Under the update
/// lock nothing is downloaded or installed. hawkBit's `forced` overrides
/// the agent's windows; `skip`, and an unavailable maintenance window for
/// the install, mean: download and verify, then wait.
pub fn decide(windows: &Windows, s: &Situation<'_>) -> Step {
    if s.now >= s.next_poll {
        return Step::Poll;
    }
    let wait = |until: u64, why: String| Step::Wait {
        until: until.min(s.next_poll),
        why,
    };
    let poll = || wait(s.next_poll, String::new());
    if s.locked {
        return wait(
            s.next_poll,
            "the update lock is set (cfg:update/lock): nothing is downloaded or installed \
             until an operator runs bootloader-glue unlock"
                .into(),
        );
    }
    let Some(offer) = s.offer else {
        return poll();
    };
    let version = offer.version.as_deref().unwrap_or("?");
    if !s.staged {
        return match offer.download {
            Mode::Forced => Step::Stage,
            Mode::Skip => wait(
                s.next_poll,
                format!(
                    "{version} (offer {}): the source says not to download yet",
                    offer.id
                ),
            ),
            Mode::Attempt => in_window(
                &windows.download,
                s.now,
                Step::Stage,
                wait,
                format!("{version} (offer {}): download window", offer.id),
            ),
        };
    }
    if !offer.window_open {
        return wait(
            s.next_poll,
            format!(
                "{version} (offer {}) is staged; the maintenance window is unavailable",
                offer.id
            ),
        );
    }
    match offer.install {
        Mode::Forced => Step::Install,
        Mode::Skip => wait(
            s.next_poll,
            format!(
                "{version} (offer {}) is staged; the source says not to install yet",
                offer.id
            ),
        ),
        Mode::Attempt => in_window(
            &windows.install,
            s.now,
            Step::Install,
            wait,
            format!("{version} (offer {}) is staged: install window", offer.id),
        ),
    }
}

/// `step` when `window` is open at `now`; otherwise a wait for it.
fn in_window(
    window: &Window,
    now: u64,
    step: Step,
    wait: impl Fn(u64, String) -> Step,
    what: String,
) -> Step {
    if window.is_open(now) {
        return step;
    }
    match window.next_open(now) {
        Some(at) => wait(at, format!("{what} {window} opens at {}", utc(at))),
        None => wait(u64::MAX, format!("{what} {window} never opens")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Monday 2026-11-23 00:00:00 UTC.
    const MONDAY: u64 = 1_795_392_000;
    const H: u64 = 3600;

    fn windows() -> Windows {
        Windows {
            download: Window::parse("download-window", "daily 02:00-04:00").unwrap(),
            install: Window::parse("install-window", "daily 04:00-05:00").unwrap(),
        }
    }

    fn offer(download: Mode, install: Mode, window_open: bool) -> Offer {
        Offer {
            id: "42".into(),
            version: Some("2.0".into()),
            artifacts: vec![],
            download,
            install,
            window_open,
        }
    }

    fn at(now: u64, offer: Option<&Offer>, staged: bool, locked: bool) -> Situation<'_> {
        Situation {
            now,
            locked,
            offer,
            staged,
            next_poll: now + H / 2,
        }
    }

    fn wait_until(step: Step) -> u64 {
        match step {
            Step::Wait { until, .. } => until,
            step => panic!("{step:?}"),
        }
    }

    #[test]
    fn polling_comes_first_and_nothing_offered_waits_for_the_next_poll() {
        let w = windows();
        let mut s = at(MONDAY, None, false, false);
        assert_eq!(wait_until(decide(&w, &s)), MONDAY + H / 2);
        s.next_poll = MONDAY;
        assert_eq!(decide(&w, &s), Step::Poll);
    }

    #[test]
    fn the_download_waits_for_its_window_and_the_install_for_its_own() {
        let w = windows();
        let o = offer(Mode::Attempt, Mode::Attempt, true);
        // 01:00: the download window opens at 02:00; the poll is earlier.
        let step = decide(&w, &at(MONDAY + H, Some(&o), false, false));
        assert_eq!(wait_until(step), MONDAY + H + H / 2);
        let mut s = at(MONDAY + H, Some(&o), false, false);
        s.next_poll = MONDAY + 10 * H;
        let Step::Wait { until, why } = decide(&w, &s) else {
            panic!()
        };
        assert_eq!(until, MONDAY + 2 * H);
        assert_eq!(
            why,
            "2.0 (offer 42): download window daily 02:00-04:00 opens at 2026-11-23T02:00:00Z"
        );
        // 02:00: download.
        assert_eq!(
            decide(&w, &at(MONDAY + 2 * H, Some(&o), false, false)),
            Step::Stage
        );
        // Staged at 03:00: wait for 04:00, then install.
        let mut s = at(MONDAY + 3 * H, Some(&o), true, false);
        s.next_poll = MONDAY + 10 * H;
        assert_eq!(wait_until(decide(&w, &s)), MONDAY + 4 * H);
        assert_eq!(
            decide(&w, &at(MONDAY + 4 * H, Some(&o), true, false)),
            Step::Install
        );
        // Staged after the install window: the next day's.
        let mut s = at(MONDAY + 6 * H, Some(&o), true, false);
        s.next_poll = MONDAY + 100 * H;
        assert_eq!(wait_until(decide(&w, &s)), MONDAY + 28 * H);
    }

    #[test]
    fn forced_overrides_the_windows_but_not_the_maintenance_window() {
        let w = windows();
        let o = offer(Mode::Forced, Mode::Forced, true);
        let noon = MONDAY + 12 * H;
        assert_eq!(decide(&w, &at(noon, Some(&o), false, false)), Step::Stage);
        assert_eq!(decide(&w, &at(noon, Some(&o), true, false)), Step::Install);
        let closed = offer(Mode::Forced, Mode::Forced, false);
        // Downloading goes on in a closed maintenance window; installing waits.
        assert_eq!(
            decide(&w, &at(noon, Some(&closed), false, false)),
            Step::Stage
        );
        let Step::Wait { why, .. } = decide(&w, &at(noon, Some(&closed), true, false)) else {
            panic!()
        };
        assert!(why.contains("maintenance window is unavailable"), "{why}");
    }

    #[test]
    fn skip_stages_then_waits() {
        let w = Windows::default();
        let o = offer(Mode::Attempt, Mode::Skip, true);
        assert_eq!(decide(&w, &at(MONDAY, Some(&o), false, false)), Step::Stage);
        let Step::Wait { until, why } = decide(&w, &at(MONDAY, Some(&o), true, false)) else {
            panic!()
        };
        assert_eq!(until, MONDAY + H / 2);
        assert!(why.contains("not to install yet"), "{why}");
        let o = offer(Mode::Skip, Mode::Skip, true);
        let Step::Wait { why, .. } = decide(&w, &at(MONDAY, Some(&o), false, false)) else {
            panic!()
        };
        assert!(why.contains("not to download yet"), "{why}");
    }

    #[test]
    fn the_lock_stops_everything_but_polling() {
        let w = Windows::default();
        let o = offer(Mode::Forced, Mode::Forced, true);
        for staged in [false, true] {
            let Step::Wait { until, why } = decide(&w, &at(MONDAY, Some(&o), staged, true)) else {
                panic!()
            };
            assert_eq!(until, MONDAY + H / 2);
            assert!(why.contains("bootloader-glue unlock"), "{why}");
        }
        let mut s = at(MONDAY, Some(&o), false, true);
        s.next_poll = MONDAY;
        assert_eq!(decide(&w, &s), Step::Poll);
    }

    #[test]
    fn a_window_without_days_waits_for_the_next_poll() {
        let never = Window::Weekly(crate::schedule::Weekly {
            days: [false; 7],
            start: 0,
            length: 60,
            offset: 0,
        });
        let w = Windows {
            download: never,
            install: never,
        };
        let o = offer(Mode::Attempt, Mode::Attempt, true);
        let Step::Wait { until, why } = decide(&w, &at(MONDAY, Some(&o), false, false)) else {
            panic!()
        };
        assert_eq!(until, MONDAY + H / 2);
        assert!(why.ends_with("never opens"), "{why}");
    }
}
