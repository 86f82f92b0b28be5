//! Progress on the console: a log line every second with bytes, entries and
//! throughput, so that an operator sees the update move. Shared by the
//! reader that counts bytes and the code that counts entries, hence `&self`.

use std::cell::Cell;
use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_secs(1);

pub struct Progress {
    what: &'static str,
    total: u64,
    bytes: Cell<u64>,
    entries: Cell<u64>,
    start: Instant,
    last: Cell<Instant>,
}

impl Progress {
    /// Reports on `what` (a stage name), out of `total` bytes if known.
    pub fn new(what: &'static str, total: u64) -> Progress {
        let now = Instant::now();
        Progress {
            what,
            total,
            bytes: Cell::new(0),
            entries: Cell::new(0),
            start: now,
            last: Cell::new(now),
        }
    }

    pub fn add_bytes(&self, n: u64) {
        self.bytes.set(self.bytes.get() + n);
        self.tick();
    }

    pub fn add_entry(&self) {
        self.entries.set(self.entries.get() + 1);
        self.tick();
    }

    fn tick(&self) {
        if self.last.get().elapsed() >= EVERY {
            self.last.set(Instant::now());
            log::info!("{}", self.line());
        }
    }

    pub fn entries(&self) -> u64 {
        self.entries.get()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.get()
    }

    pub fn seconds(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// `extract: 12.3 MB of 45.6 MB (27%), 1234 entries, 56.7 MB/s`
    pub fn line(&self) -> String {
        let mb = |b: u64| b as f64 / 1e6;
        let bytes = self.bytes.get();
        let of = if self.total > 0 {
            format!(
                " of {:.1} MB ({:.0}%)",
                mb(self.total),
                100.0 * bytes as f64 / self.total as f64
            )
        } else {
            String::new()
        };
        format!(
            "{}: {:.1} MB{of}, {} entries, {:.1} MB/s",
            self.what,
            mb(bytes),
            self.entries.get(),
            mb(bytes) / self.seconds().max(0.001)
        )
    }
}
