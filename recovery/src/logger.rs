//! Log lines go to the console (standard error), and as PID 1 also to the
//! kernel log (`/dev/kmsg`) and to the recovery log on `cfg`, which keeps
//! them across the reboot. Lines logged before `cfg` is mounted are kept in
//! memory and written when the log file is attached. In the log file every
//! line starts with when it was logged: the UTC time from the realtime
//! clock and the seconds since boot (the kernel log's clock),
//! `2026-11-24T01:26:26Z [    3.456] recovery: ...`
//! (`docs/update-records.md`).

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

struct Sinks {
    kmsg: Option<File>,
    file: Option<File>,
    /// Lines waiting for the log file.
    pending: Option<Vec<String>>,
}

struct Logger {
    sinks: Mutex<Sinks>,
    /// The program name that starts every line.
    name: OnceLock<&'static str>,
}

static LOGGER: Logger = Logger {
    sinks: Mutex::new(Sinks {
        kmsg: None,
        file: None,
        pending: None,
    }),
    name: OnceLock::new(),
};

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let name = self.name.get().copied().unwrap_or("recovery");
        let level = match record.level() {
            Level::Error => "error: ",
            Level::Warn => "warning: ",
            _ => "",
        };
        let line = format!("{name}: {level}{}\n", record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
        let Ok(mut sinks) = self.sinks.lock() else {
            return;
        };
        if let Some(kmsg) = &mut sinks.kmsg {
            // Level 7 (debug): kept in the kernel log, not printed on the
            // console a second time.
            let _ = kmsg.write_all(format!("<7>{line}").as_bytes());
        }
        if let Some(file) = &mut sinks.file {
            let _ = file.write_all(stamped(&stamp(), &line).as_bytes());
        } else if let Some(pending) = &mut sinks.pending {
            pending.push(stamped(&stamp(), &line));
        }
    }

    fn flush(&self) {
        if let Ok(mut sinks) = self.sinks.lock() {
            if let Some(file) = &mut sinks.file {
                let _ = file.sync_data();
            }
        }
    }
}

/// `text` (whole lines) with `stamp` at the start of every line, so that
/// the lines of a multi-line message are dated like any other.
fn stamped(stamp: &str, text: &str) -> String {
    text.lines().map(|l| format!("{stamp} {l}\n")).collect()
}

/// When a line was logged: `2026-11-24T01:26:26Z [    3.456]`.
fn stamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let boot = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map_or(0.0, |t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9);
    format!("{} [{boot:>9.3}]", formats::units::utc(now))
}

/// Sends log lines to the console; `quiet` keeps only warnings and errors.
pub fn init(quiet: bool) {
    init_as("recovery", quiet);
}

/// The same, for another program using the recovery's engine.
pub fn init_as(name: &'static str, quiet: bool) {
    let _ = LOGGER.name.set(name);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(if quiet {
        LevelFilter::Warn
    } else {
        LevelFilter::Info
    });
}

/// As PID 1: also to the kernel log, and keeps lines for the log file.
pub fn init_pid1() {
    init(false);
    if let Ok(mut sinks) = LOGGER.sinks.lock() {
        sinks.kmsg = OpenOptions::new().write(true).open("/dev/kmsg").ok();
        sinks.pending = Some(Vec::new());
    }
}

/// Largest log file kept; a larger one is moved to `NAME.1` first.
const MAX_LOG: u64 = 1 << 20;

/// Appends from now on to the log file at `path` (after what was logged
/// before), keeping one older file.
pub fn attach_file(path: &Path) -> std::io::Result<()> {
    if std::fs::metadata(path)
        .map(|m| m.len() > MAX_LOG)
        .unwrap_or(false)
    {
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        std::fs::rename(path, old)?;
    }
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let mut sinks = LOGGER
        .sinks
        .lock()
        .map_err(|_| std::io::Error::other("logger poisoned"))?;
    for line in sinks.pending.take().unwrap_or_default() {
        file.write_all(line.as_bytes())?;
    }
    sinks.file = Some(file);
    Ok(())
}

/// Stops writing to the log file (before its file system is unmounted).
pub fn detach_file() {
    if let Ok(mut sinks) = LOGGER.sinks.lock() {
        if let Some(file) = sinks.file.take() {
            let _ = file.sync_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of the log file, those logged before it was attached
    /// too, starts with the UTC time and the seconds since boot.
    #[test]
    fn every_line_in_the_log_file_is_stamped() {
        init(false);
        if let Ok(mut sinks) = LOGGER.sinks.lock() {
            sinks.pending = Some(Vec::new());
        }
        log::info!("before the file");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recovery.log");
        attach_file(&path).unwrap();
        log::warn!("in the file");
        log::error!("a message\nof three\nlines");
        detach_file();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        for (line, says) in lines.iter().zip([
            "recovery: before the file",
            "recovery: warning: in the file",
            "recovery: error: a message",
            "of three",
            "lines",
        ]) {
            let (time, rest) = line.split_once(' ').unwrap();
            assert_eq!(time.len(), 20, "{line}");
            assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{line}");
            let (boot, message) = rest.split_once("] ").unwrap();
            let boot = boot.strip_prefix('[').unwrap().trim();
            assert!(boot.parse::<f64>().unwrap() > 0.0, "{line}");
            assert_eq!(boot.split_once('.').unwrap().1.len(), 3, "{line}");
            assert_eq!(message, says);
        }
    }
}
