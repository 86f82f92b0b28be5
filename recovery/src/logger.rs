//! Log lines on standard error, each prefixed with the program's name.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

struct Console;

impl Log for Console {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let prefix = match record.level() {
            Level::Error => "recovery: error: ",
            Level::Warn => "recovery: warning: ",
            _ => "recovery: ",
        };
        let _ = writeln!(std::io::stderr().lock(), "{prefix}{}", record.args());
    }

    fn flush(&self) {}
}

static CONSOLE: Console = Console;

/// Sends log lines to the console; `quiet` keeps only warnings and errors.
pub fn init(quiet: bool) {
    let _ = log::set_logger(&CONSOLE);
    log::set_max_level(if quiet {
        LevelFilter::Warn
    } else {
        LevelFilter::Info
    });
}
