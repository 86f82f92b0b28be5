//! When the agent may download and when it may install: a window of time
//! that repeats every week, such as `daily 02:00-04:00` or
//! `Mon-Fri 22:00-02:00` (crossing midnight). Pure: the time is passed in
//! as seconds since 1970 (UTC), nothing here reads a clock.
//!
//! ```text
//! window = "always" | [days " "] HH:MM "-" HH:MM [" " zone]
//! days   = "daily" | day ["-" day] ("," day ["-" day])*     (Mon … Sun)
//! zone   = "UTC" | "UTC+HH:MM" | "UTC-HH:MM"                (default UTC)
//! ```
//!
//! The days name the day a window *opens*: `Fri 22:00-02:00` is open from
//! Friday 22:00 to Saturday 02:00. An end at or before the start means the
//! next day; `24:00` is the end of the day. The times are in UTC unless a
//! fixed offset is given (`UTC+01:00`); there are no time zones with
//! daylight saving, so a window stays put when the clocks change.

use std::fmt;
use thiserror::Error;

const DAY: i64 = 86_400;
const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// A parse error: the configuration key, its value and what was expected.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{key}={value:?}: {problem}; expected {EXPECTED}")]
pub struct ScheduleError {
    pub key: String,
    pub value: String,
    pub problem: String,
}

const EXPECTED: &str = "`always` or `[DAYS] HH:MM-HH:MM [UTC±HH:MM]`, \
    e.g. `daily 02:00-04:00` or `Mon-Fri 22:00-02:00 UTC+01:00`";

impl ScheduleError {
    /// What is wrong and what was expected, without the key and value
    /// (for a message that names them itself).
    pub fn detail(&self) -> String {
        format!("{}; expected {EXPECTED}", self.problem)
    }
}

/// A weekly window of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Open at any time (no schedule).
    Always,
    Weekly(Weekly),
}

/// Opens on the chosen days at `start` and stays open for `length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weekly {
    /// The days it opens on, Monday first.
    pub days: [bool; 7],
    /// Minutes after midnight (local to `offset`) at which it opens.
    pub start: u32,
    /// Minutes it stays open: 1 to 1440.
    pub length: u32,
    /// Seconds east of UTC of the times above.
    pub offset: i32,
}

/// One opening of a window: `[start, end)` in seconds since 1970.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opening {
    pub start: u64,
    pub end: u64,
}

impl Window {
    /// Parses the value of the configuration key `key` (named in errors).
    pub fn parse(key: &str, value: &str) -> Result<Window, ScheduleError> {
        let err = |problem: String| ScheduleError {
            key: key.to_string(),
            value: value.to_string(),
            problem,
        };
        let words: Vec<&str> = value.split_whitespace().collect();
        if words == ["always"] {
            return Ok(Window::Always);
        }
        let (days, times, zone) = match words.as_slice() {
            [times] => (None, *times, None),
            [first, second] if second.starts_with("UTC") => (None, *first, Some(*second)),
            [days, times] => (Some(*days), *times, None),
            [days, times, zone] => (Some(*days), *times, Some(*zone)),
            [] => return Err(err("the value is empty".into())),
            _ => return Err(err("too many words".into())),
        };
        let days = match days {
            None | Some("daily") => [true; 7],
            Some(days) => parse_days(days).map_err(err)?,
        };
        let (start, end) = times
            .split_once('-')
            .ok_or_else(|| err(format!("{times:?} is not a range HH:MM-HH:MM")))?;
        let start = parse_time(start, false).map_err(err)?;
        let end = parse_time(end, true).map_err(err)?;
        if start == end {
            return Err(err(format!(
                "{times:?} opens and closes at the same time (for a whole day write 00:00-24:00)"
            )));
        }
        let length = if end > start {
            end - start
        } else {
            end + 1440 - start
        };
        let offset = match zone {
            None => 0,
            Some(zone) => parse_zone(zone).map_err(err)?,
        };
        Ok(Window::Weekly(Weekly {
            days,
            start,
            length,
            offset,
        }))
    }

    /// The opening that `t` falls in, if the window is open at `t`. For
    /// [`Window::Always`] that is the rest of time.
    pub fn opening_at(&self, t: u64) -> Option<Opening> {
        match self {
            Window::Always => Some(Opening {
                start: 0,
                end: u64::MAX,
            }),
            Window::Weekly(w) => w.openings_from(t, -1).find(|o| o.start <= t && t < o.end),
        }
    }

    pub fn is_open(&self, t: u64) -> bool {
        self.opening_at(t).is_some()
    }

    /// The first moment at or after `t` at which the window is open: `t`
    /// itself when it is open now. `None` only for a window with no day.
    pub fn next_open(&self, t: u64) -> Option<u64> {
        match self.opening_at(t) {
            Some(_) => Some(t),
            None => self.next_start(t),
        }
    }

    /// The first opening that starts after `t` (strictly): when a download
    /// that waits for "the start of its window" begins. For
    /// [`Window::Always`], `t` itself.
    pub fn next_start(&self, t: u64) -> Option<u64> {
        match self {
            Window::Always => Some(t),
            Window::Weekly(w) => w.openings_from(t, 0).map(|o| o.start).find(|&s| s > t),
        }
    }
}

impl Weekly {
    /// The openings of the days from `t`'s local day plus `first_day`
    /// on, for eight days and a bit: enough for any question within a week.
    fn openings_from(&self, t: u64, first_day: i64) -> impl Iterator<Item = Opening> + '_ {
        let t = i64::try_from(t).unwrap_or(i64::MAX / 2);
        let local_day = (t + i64::from(self.offset)).div_euclid(DAY);
        (local_day + first_day..=local_day + 8).filter_map(move |day| {
            // 1970-01-01 was a Thursday (index 3, Monday being 0).
            let weekday = (day + 3).rem_euclid(7) as usize;
            if !self.days[weekday] {
                return None;
            }
            let start = day * DAY + i64::from(self.start) * 60 - i64::from(self.offset);
            let end = start + i64::from(self.length) * 60;
            Some(Opening {
                start: u64::try_from(start).unwrap_or(0),
                end: u64::try_from(end).unwrap_or(0),
            })
        })
    }
}

fn parse_days(text: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    for part in text.split(',') {
        let (from, to) = match part.split_once('-') {
            Some((from, to)) => (day_index(from)?, day_index(to)?),
            None => {
                let d = day_index(part)?;
                (d, d)
            }
        };
        // A range may wrap over the end of the week: `Fri-Mon`.
        let mut d = from;
        loop {
            days[d] = true;
            if d == to {
                break;
            }
            d = (d + 1) % 7;
        }
    }
    Ok(days)
}

fn day_index(name: &str) -> Result<usize, String> {
    DAY_NAMES
        .iter()
        .position(|d| d.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            format!(
                "{name:?} is not a day (one of {} or `daily`)",
                DAY_NAMES.join(" ")
            )
        })
}

/// `HH:MM` as minutes after midnight; `24:00` only as an end.
fn parse_time(text: &str, is_end: bool) -> Result<u32, String> {
    let bad = || format!("{text:?} is not a time HH:MM (00:00 to 23:59, or 24:00 as an end)");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    match (h, m) {
        (24, 0) if is_end => Ok(1440),
        (0..=23, 0..=59) => Ok(h * 60 + m),
        _ => Err(bad()),
    }
}

/// `UTC`, `UTC+HH:MM` or `UTC-HH:MM` as seconds east of UTC.
fn parse_zone(text: &str) -> Result<i32, String> {
    let bad = || format!("{text:?} is not a zone UTC, UTC+HH:MM or UTC-HH:MM (at most 14:00)");
    let rest = text.strip_prefix("UTC").ok_or_else(bad)?;
    if rest.is_empty() {
        return Ok(0);
    }
    let (sign, hm) = match (rest.strip_prefix('+'), rest.strip_prefix('-')) {
        (Some(hm), _) => (1, hm),
        (_, Some(hm)) => (-1, hm),
        _ => return Err(bad()),
    };
    let minutes = parse_time(hm, false).map_err(|_| bad())?;
    if minutes > 14 * 60 {
        return Err(bad());
    }
    Ok(sign * minutes as i32 * 60)
}

impl fmt::Display for Window {
    /// The canonical form, which [`Window::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Window::Weekly(w) = self else {
            return f.write_str("always");
        };
        if w.days == [true; 7] {
            f.write_str("daily")?;
        } else {
            let names: Vec<&str> = (0..7)
                .filter(|&d| w.days[d])
                .map(|d| DAY_NAMES[d])
                .collect();
            f.write_str(&names.join(","))?;
        }
        let end = (w.start + w.length) % 1440;
        let end = if end == 0 && w.start + w.length == 1440 {
            1440
        } else {
            end
        };
        write!(
            f,
            " {:02}:{:02}-{:02}:{:02}",
            w.start / 60,
            w.start % 60,
            end / 60,
            end % 60
        )?;
        if w.offset != 0 {
            let sign = if w.offset < 0 { '-' } else { '+' };
            let m = w.offset.unsigned_abs() / 60;
            write!(f, " UTC{sign}{:02}:{:02}", m / 60, m % 60)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Monday 2026-11-23 00:00:00 UTC.
    const MONDAY: u64 = 1_795_392_000;
    const H: u64 = 3600;
    const M: u64 = 60;

    fn w(text: &str) -> Window {
        Window::parse("install-window", text).unwrap()
    }

    #[test]
    fn the_reference_monday_is_a_monday() {
        // 2026-11-23: 20780 days after 1970-01-01, a Thursday.
        assert_eq!(MONDAY, 20_780 * 86_400);
        assert_eq!((20_780 + 3) % 7, 0);
    }

    #[test]
    fn a_daily_window() {
        let daily = w("daily 02:00-04:00");
        assert!(!daily.is_open(MONDAY + H + 59 * M + 59));
        assert!(daily.is_open(MONDAY + 2 * H));
        assert!(daily.is_open(MONDAY + 4 * H - 1));
        assert!(!daily.is_open(MONDAY + 4 * H));
        assert_eq!(
            daily.opening_at(MONDAY + 3 * H),
            Some(Opening {
                start: MONDAY + 2 * H,
                end: MONDAY + 4 * H
            })
        );
        assert_eq!(daily.next_open(MONDAY + 3 * H), Some(MONDAY + 3 * H));
        assert_eq!(daily.next_open(MONDAY), Some(MONDAY + 2 * H));
        // After today's window: tomorrow's.
        assert_eq!(daily.next_open(MONDAY + 5 * H), Some(MONDAY + 26 * H));
        // The next start is strictly later, even inside a window.
        assert_eq!(daily.next_start(MONDAY + 2 * H), Some(MONDAY + 26 * H));
        assert_eq!(daily.next_start(MONDAY + H), Some(MONDAY + 2 * H));
        // Without `daily` it is the same window.
        assert_eq!(w("02:00-04:00"), daily);
    }

    #[test]
    fn a_window_across_midnight_belongs_to_the_day_it_opens() {
        let evenings = w("Mon-Fri 22:00-02:00");
        let day = 24 * H;
        // Monday 01:00: the window opened on Sunday, which is not chosen.
        assert!(!evenings.is_open(MONDAY + H));
        assert!(evenings.is_open(MONDAY + 22 * H));
        // Tuesday 01:30, still Monday's window.
        assert_eq!(
            evenings.opening_at(MONDAY + day + H + 30 * M),
            Some(Opening {
                start: MONDAY + 22 * H,
                end: MONDAY + day + 2 * H
            })
        );
        // Saturday 01:00: Friday's window; Saturday 22:00: closed.
        assert!(evenings.is_open(MONDAY + 5 * day + H));
        assert!(!evenings.is_open(MONDAY + 5 * day + 22 * H));
        // From Saturday 03:00 the next opening is Monday 22:00.
        assert_eq!(
            evenings.next_open(MONDAY + 5 * day + 3 * H),
            Some(MONDAY + 7 * day + 22 * H)
        );
    }

    #[test]
    fn day_lists_and_ranges_that_wrap() {
        let day = 24 * H;
        let weekend = w("Fri-Mon 00:00-24:00");
        let open: Vec<bool> = (0..7)
            .map(|d| weekend.is_open(MONDAY + d * day + H))
            .collect();
        assert_eq!(open, [true, false, false, false, true, true, true]);
        let list = w("mon,WED,Fri-Sat 12:00-13:00");
        let open: Vec<bool> = (0..7)
            .map(|d| list.is_open(MONDAY + d * day + 12 * H))
            .collect();
        assert_eq!(open, [true, false, true, false, true, true, false]);
        // A whole day ends at the next midnight.
        assert!(weekend.is_open(MONDAY + day - 1));
        assert!(!weekend.is_open(MONDAY + day));
    }

    #[test]
    fn a_fixed_offset_shifts_the_window() {
        // 02:00-04:00 at UTC+01:00 is 01:00-03:00 UTC.
        let cet = w("daily 02:00-04:00 UTC+01:00");
        assert!(cet.is_open(MONDAY + H));
        assert!(!cet.is_open(MONDAY + 3 * H));
        assert_eq!(cet.next_open(MONDAY), Some(MONDAY + H));
        // Monday 23:30 at UTC-05:00 is Tuesday 04:30 UTC: a Monday window.
        let west = w("Mon 23:00-24:00 UTC-05:00");
        assert!(west.is_open(MONDAY + 24 * H + 4 * H + 30 * M));
        assert!(!west.is_open(MONDAY + 23 * H + 30 * M));
        // Offsets without days, and UTC spelled out.
        assert_eq!(w("02:00-04:00 UTC"), w("daily 02:00-04:00"));
        assert_eq!(w("02:00-04:00 UTC+01:00"), w("daily 02:00-04:00 UTC+01:00"));
    }

    #[test]
    fn always_is_always_open() {
        let always = w("always");
        assert!(always.is_open(0));
        assert!(always.is_open(MONDAY));
        assert_eq!(always.next_open(MONDAY), Some(MONDAY));
        assert_eq!(always.next_start(MONDAY), Some(MONDAY));
    }

    #[test]
    fn near_the_start_of_time_nothing_wraps() {
        let daily = w("daily 02:00-04:00 UTC+14:00");
        // 1970-01-01 00:00 UTC is 14:00 local; the next opening is at
        // 02:00 local the next day, i.e. 12:00 UTC on 1970-01-01.
        assert_eq!(daily.next_open(0), Some(12 * H));
        assert!(!daily.is_open(0));
        let west = w("daily 22:00-02:00 UTC-10:00");
        // 1970-01-01 00:00 UTC is 14:00 on 12-31 local: closed.
        assert!(!west.is_open(0));
        assert_eq!(west.next_open(0), Some(8 * H));
    }

    #[test]
    fn it_prints_what_it_reads() {
        for text in [
            "always",
            "daily 02:00-04:00",
            "Mon,Tue,Wed,Thu,Fri 22:00-02:00",
            "Sat,Sun 00:00-24:00",
            "Mon 23:00-24:00 UTC-05:30",
            "daily 02:00-04:00 UTC+01:00",
        ] {
            assert_eq!(w(text).to_string(), text);
        }
        assert_eq!(
            w("Mon-Fri 22:00-02:00").to_string(),
            "Mon,Tue,Wed,Thu,Fri 22:00-02:00"
        );
    }

    #[test]
    fn errors_name_the_key_the_value_and_what_was_expected() {
        let cases = [
            ("", "the value is empty"),
            ("daily", "\"daily\" is not a range HH:MM-HH:MM"),
            ("Mon-Fir 02:00-04:00", "\"Fir\" is not a day"),
            ("daily 2:00-04:00", "\"2:00\" is not a time HH:MM"),
            ("daily 02:00-24:01", "\"24:01\" is not a time"),
            ("daily 24:00-02:00", "\"24:00\" is not a time"),
            ("daily 02:60-04:00", "\"02:60\" is not a time"),
            ("daily 02:00-02:00", "opens and closes at the same time"),
            ("daily 02:00-04:00 CET", "\"CET\" is not a zone"),
            ("daily 02:00-04:00 UTC+15:00", "\"UTC+15:00\" is not a zone"),
            ("daily 02:00-04:00 UTC*01:00", "is not a zone"),
            ("daily 02:00-04:00 UTC+1", "is not a zone"),
            ("daily 02:00-04:00 UTC extra", "too many words"),
            ("Mon,,Tue 02:00-04:00", "\"\" is not a day"),
            ("daily +2:00-04:00", "is not a time"),
            ("daily 02:00-04:00 UTCé", "is not a zone"),
        ];
        for (value, problem) in cases {
            let e = Window::parse("download-window", value).unwrap_err();
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("download-window={value:?}: ")),
                "{text}"
            );
            assert!(text.contains(problem), "{value:?}: {text}");
            assert!(text.contains("expected `always` or"), "{text}");
        }
    }

    #[test]
    fn every_minute_of_a_week_agrees_with_next_open() {
        // next_open(t) is t exactly when open; otherwise the first open
        // minute after t, and nothing in between is open.
        for text in [
            "Mon-Fri 22:00-02:00",
            "Sun 23:30-00:30 UTC+05:30",
            "Wed 10:00-10:01",
        ] {
            let win = w(text);
            let mut t = MONDAY;
            while t < MONDAY + 8 * 24 * H {
                let next = win.next_open(t).unwrap();
                assert_eq!(next == t, win.is_open(t), "{text} at {t}");
                assert!(win.is_open(next), "{text}: {next}");
                if next > t {
                    assert!(!win.is_open(next - 1), "{text}: {next}");
                }
                t += 7 * M;
            }
        }
    }
}
