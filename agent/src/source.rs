//! Where updates come from: the one interface that every source (the
//! static feed, hawkBit DDI) implements and the agent's flow calls. The
//! flow never trusts what a source says: the version, product and sizes
//! that count are the ones in the signed manifest, checked before the
//! payload is fetched.

use crate::http::Canceller;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};
use thiserror::Error;

/// One file of an offer, as the source names it. Everything here came
/// over the network: checked before use (URL scheme, a plain file name,
/// sizes within limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// A plain file name (no `/`): the name on `storage`.
    pub name: String,
    /// http:// or https:// URL to fetch it from.
    pub url: String,
    /// The size the source claims, when it says one.
    pub size: Option<u64>,
}

/// What a fleet server says about downloading or installing an offer
/// (hawkBit's `skip`/`attempt`/`forced`); a static feed says `Attempt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Not now: download and verify at most, then wait.
    Skip,
    /// When the agent's own schedule allows.
    Attempt,
    /// Now, whatever the agent's schedule says.
    Forced,
}

/// An update a source offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The source's id for this offer (hawkBit's action id; the feed's
    /// version), kept on `cfg` until the outcome has been reported.
    pub id: String,
    /// The version the source says it offers; only a hint, the signed
    /// manifest decides.
    pub version: Option<String>,
    /// A bundle (one artifact), or manifest, signature and payload.
    pub artifacts: Vec<Artifact>,
    pub download: Mode,
    pub install: Mode,
    /// hawkBit's `maintenanceWindow`: `false` while it is `unavailable`
    /// (download and verify, then wait). `true` when the source has none.
    pub window_open: bool,
}

/// What a source answers when asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Nothing to do now; ask again after this long (the server's
    /// polling interval, or the agent's own).
    Nothing { again_after: Duration },
    /// An update to download (and later install).
    Offer(Offer),
    /// The server cancels the offer with this id.
    Cancel { id: String },
}

/// What the agent tells a source about an offer, at each stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Working on it: what, and how far when known.
    Proceeding { what: String, percent: Option<u8> },
    /// Downloaded and verified; waiting to install.
    Downloaded,
    /// Finished: `success` only from the new system after it has booted.
    Closed { success: bool, details: String },
    /// A cancel was honoured (or, with `accepted: false`, refused because
    /// the instruction is already written).
    Cancelled { accepted: bool, details: String },
}

#[derive(Debug, Error)]
pub enum SourceError {
    /// The server could not be reached or answered with an error; worth
    /// trying again later.
    #[error("{source_name}: {reason}")]
    Unreachable { source_name: String, reason: String },
    /// The server answered, but with something we refuse to act on.
    #[error("{source_name}: refused {what}: {reason}")]
    Refused {
        source_name: String,
        what: String,
        reason: String,
    },
}

/// A place updates come from.
pub trait Source: fmt::Debug {
    /// How the source is named in logs and records (`feed`, `hawkbit`).
    fn name(&self) -> &str;
    /// Asks whether there is an update; `installed` is the installed
    /// version from `cfg` (none on a device that never updated).
    fn check(&mut self, installed: Option<&str>) -> Result<Check, SourceError>;
    /// Tells the source how an offer is going. A source with no feedback
    /// channel (the static feed) only logs.
    fn report(&mut self, offer_id: &str, report: &Report) -> Result<(), SourceError>;
    /// Checks a downloaded artifact against what the source said about it
    /// beyond its size (hawkBit's sha1/sha256), after the flow has checked
    /// it against the signed manifest. A source that says nothing more
    /// (the static feed) has nothing to check.
    fn check_artifact(
        &self,
        _offer_id: &str,
        _name: &str,
        _path: &Path,
    ) -> Result<(), SourceError> {
        Ok(())
    }
}

/// Asks a source now and then, during a download, whether the offer is
/// cancelled (hawkBit's `cancelAction`), and stops the download's client
/// when it is: call [`CancelWatch::tick`] from the download's progress.
#[derive(Debug)]
pub struct CancelWatch {
    offer_id: String,
    canceller: Canceller,
    every: Duration,
    last: Instant,
    /// The source cancelled the offer (and the transfer was stopped).
    pub cancelled: bool,
}

impl CancelWatch {
    pub fn new(offer_id: &str, canceller: Canceller, every: Duration) -> CancelWatch {
        CancelWatch {
            offer_id: offer_id.to_string(),
            canceller,
            every,
            last: Instant::now(),
            cancelled: false,
        }
    }

    /// Polls the source if `every` has passed since the last time. A
    /// failed poll is logged and does not stop the download.
    pub fn tick(&mut self, source: &mut dyn Source, installed: Option<&str>) {
        if self.cancelled || self.last.elapsed() < self.every {
            return;
        }
        self.last = Instant::now();
        match source.check(installed) {
            Ok(Check::Cancel { id }) if id == self.offer_id => {
                log::info!(
                    "{}: offer {id} cancelled by the server: stopping the download",
                    source.name()
                );
                self.cancelled = true;
                self.canceller.cancel();
            }
            Ok(_) => {}
            Err(e) => log::warn!("{}: polling during the download: {e}", source.name()),
        }
    }
}
