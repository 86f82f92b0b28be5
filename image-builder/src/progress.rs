//! A progress bar on standard error, drawn only when it is a terminal, so
//! that pipeline logs stay clean.

pub use formats::units::human;
use std::cell::Cell;
use std::io::{IsTerminal, Read};
use std::time::{Duration, Instant};

pub struct Progress {
    total: u64,
    done: Cell<u64>,
    start: Instant,
    last: Cell<Instant>,
    enabled: bool,
}

impl Progress {
    /// A bar for `total` bytes; drawn if `wanted` and stderr is a terminal.
    pub fn new(total: u64, wanted: bool) -> Progress {
        let now = Instant::now();
        Progress {
            total,
            done: Cell::new(0),
            start: now,
            last: Cell::new(now),
            enabled: wanted && std::io::stderr().is_terminal(),
        }
    }

    pub fn add(&self, bytes: u64) {
        self.done.set(self.done.get() + bytes);
        if self.enabled && self.last.get().elapsed() >= Duration::from_millis(200) {
            self.last.set(Instant::now());
            self.draw();
        }
    }

    fn draw(&self) {
        let done = self.done.get();
        let fraction = if self.total == 0 {
            1.0
        } else {
            done as f64 / self.total as f64
        };
        let filled = (fraction * 30.0) as usize;
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        eprint!(
            "\r[{}{}] {:3.0}% {} of {}, {:.1} MB/s ",
            "#".repeat(filled.min(30)),
            " ".repeat(30 - filled.min(30)),
            fraction * 100.0,
            human(done),
            human(self.total),
            done as f64 / 1e6 / secs
        );
    }

    /// Clears the bar so that the summary line starts clean.
    pub fn finish(&self) {
        if self.enabled {
            eprint!("\r{:79}\r", "");
        }
    }

    /// Wraps a reader so that what is read from it advances the bar.
    pub fn reader<R: Read>(&self, inner: R) -> Counted<'_, R> {
        Counted {
            inner,
            progress: self,
        }
    }
}

pub struct Counted<'p, R> {
    inner: R,
    progress: &'p Progress,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }
}
