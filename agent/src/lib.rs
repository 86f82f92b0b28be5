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
//! - [`download`]: one file into a directory on `storage`, resumed by
//!   `Range` after a drop or a reboot, checked by size and BLAKE3.
//! - [`partial`]: the record kept beside a partial download.
//! - [`retry`]: attempts with capped exponential backoff.
//! - [`source`]: the interface every update source implements (the
//!   static feed, hawkBit DDI) and the flow calls.
//! - [`hawkbit`]: the hawkBit DDI source (hawkBit, gooseBit).
//! - [`cli`]: the command line.

pub mod cli;
pub mod config;
pub mod download;
pub mod feed;
pub mod flow;
pub mod hawkbit;
pub mod http;
pub mod partial;
pub mod retry;
pub mod source;
pub mod storage;
