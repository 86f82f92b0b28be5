//! The update agent of the running system: gets images onto the device,
//! admitted before their payload, downloaded resumably and verified, and
//! asks for their installation.
//!
//! - [`config`]: the agent's configuration file (`agent.conf`).
//! - [`flow`]: check, stage (admit, download, verify) and install: what
//!   the daemon and the one-shot commands call, whatever the source.
//! - [`feed`]: the static feed (`BASE/<product>/latest` and the files
//!   beside it), a [`source::Source`].
//! - [`storage`]: free space before a download, old images deleted after.
//! - [`http`]: a small blocking HTTP client over rustls: timeouts, user
//!   agent, bounded redirects and headers, which CAs to trust.
//! - [`daemon`]: `run`: poll, download in the download window, the
//!   round before the install, the lock when it fails.
//! - [`download`]: one file into a directory on `storage`, resumed by
//!   `Range` after a drop or a reboot, checked by size and BLAKE3.
//! - [`partial`]: the record kept beside a partial download.
//! - [`retry`]: attempts with capped exponential backoff.
//! - [`schedule`]: download and install windows (`daily 02:00-04:00`),
//!   pure: the time is passed in.
//! - [`outcome`]: the action record kept before the instruction, and the
//!   report of the update's outcome after the reboot.
//! - [`post_update`]: the command the new system runs once after a
//!   successful update.
//! - [`state`]: what the daemon is doing, kept for `status`.
//! - [`status`]: `status [--json]`: source, offer, staged image, warning
//!   flag, lock, the windows' next openings.
//! - [`source`]: the interface every update source implements (the
//!   static feed, hawkBit DDI) and the flow calls.
//! - [`cli`]: the command line.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod download;
pub mod feed;
pub mod flow;
pub mod http;
pub mod outcome;
pub mod partial;
pub mod post_update;
pub mod retry;
pub mod schedule;
pub mod source;
pub mod state;
pub mod status;
pub mod storage;
