//! The update agent of the running system: gets images onto the device.
//! This first slice downloads one file, resumably and verified.
//!
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
pub mod download;
pub mod hawkbit;
pub mod http;
pub mod partial;
pub mod retry;
pub mod source;
