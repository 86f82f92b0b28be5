//! Writes the target's dirty pages back while extraction goes on, so that
//! the final `syncfs` has little left to do: a thread calls `syncfs` every
//! few hundred milliseconds until the work is done. Disk and CPU then work
//! at the same time instead of one after the other.

use std::fs::File;
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::Duration;

const EVERY: Duration = Duration::from_millis(300);

/// Runs `work` while a thread flushes the file system of `target`.
pub fn while_running<T>(target: &File, work: impl FnOnce() -> T) -> T {
    let (stop, stopped) = channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || loop {
            match stopped.recv_timeout(EVERY) {
                Err(RecvTimeoutError::Timeout) => {
                    // Errors surface in the final, checked syncfs.
                    let _ = nix::unistd::syncfs(target);
                }
                _ => return,
            }
        });
        let result = work();
        drop(stop);
        result
    })
}
