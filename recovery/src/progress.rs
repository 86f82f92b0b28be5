//! Progress on the console: a log line every second with bytes, entries and
//! throughput, so that an operator sees the update move. Shared between the
//! thread that reads and decompresses and the one that writes, hence atomics.

pub use formats::units::human;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_secs(1);

pub struct Progress {
    what: &'static str,
    total: u64,
    bytes: AtomicU64,
    entries: AtomicU64,
    start: Instant,
    /// Milliseconds after `start` of the last line.
    last_ms: AtomicU64,
}

impl Progress {
    /// Reports on `what` (a stage name), out of `total` bytes if known.
    pub fn new(what: &'static str, total: u64) -> Progress {
        Progress {
            what,
            total,
            bytes: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Relaxed);
        self.tick();
    }

    pub fn add_entry(&self) {
        self.entries.fetch_add(1, Relaxed);
        self.tick();
    }

    fn tick(&self) {
        crate::supervisor::beat();
        let now = self.start.elapsed().as_millis() as u64;
        let last = self.last_ms.load(Relaxed);
        if now >= last + EVERY.as_millis() as u64
            && self
                .last_ms
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            log::info!("{}", self.line());
        }
    }

    pub fn entries(&self) -> u64 {
        self.entries.load(Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }

    pub fn seconds(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// `extract: 12.3 MB of 45.6 MB (27%), 1234 entries, 56.7 MB/s`
    pub fn line(&self) -> String {
        let mb = |b: u64| b as f64 / 1e6;
        let bytes = self.bytes();
        let of = if self.total > 0 {
            format!(
                " of {} ({:.0}%)",
                human(self.total),
                100.0 * bytes as f64 / self.total as f64
            )
        } else {
            String::new()
        };
        format!(
            "{}: {}{of}, {} entries, {:.1} MB/s",
            self.what,
            human(bytes),
            self.entries(),
            mb(bytes) / self.seconds().max(0.001)
        )
    }
}
