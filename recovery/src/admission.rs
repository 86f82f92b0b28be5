//! The admission check: whether a staged image may be installed on this
//! device. One function, [`admit`], that the recovery (before the erase)
//! and `bootloader-glue request` (before the instruction is written) both
//! call, so that the running system never asks for what the recovery would
//! refuse: the trusted keys, every check of the image ([`crate::verify`]),
//! the installed version on `cfg`, then product, version and size against
//! the target ([`crate::policy`]).
//!
//! [`admit_head`] is the part of it that needs no payload and no target:
//! the signature, product and version. The agent calls it on a manifest
//! and signature fetched from a server (a bundle's first entries, or two
//! files), before it downloads a byte of the payload.
//!
//! Both refuse the version the last restore took away
//! ([`policy::RestoredAway`], read from `cfg` by [`restored_away_on`])
//! unless an operator allowed it again (`cfg:update/retry-restored`), or
//! the admission is a restore's ([`Purpose::Restore`]): a restore brings
//! back the last good system whatever that record says. The
//! recovery keeps that record here too: [`record_restored_away`] as a
//! restore finishes, [`forget_restored_away`] once a newer version is in.
//!
//! [`admit_restore`] admits the image a failed update would be restored
//! from, before `request` names it in the instruction.

use crate::error::{Stage, UpdateError};
use crate::keys;
use crate::partitions::Partition;
pub use crate::policy::Purpose;
use crate::policy::{self, InstalledVersion, RestoredAway};
use crate::source::ImageSource;
use crate::verify::{self, VerifiedImage};
use formats::cfg::{shown, RetryRestored, INSTALLED, RESTORED_AWAY, RESULT, RETRY_RESTORED};
use formats::config::Config;
use formats::instruction::Instruction;
use formats::manifest::Manifest;
use formats::result::UpdateResult;
use formats::store;
use std::path::{Path, PathBuf};

/// What the admission check is given.
pub struct Admission<'a> {
    /// The device's policy: product, downgrades.
    pub config: &'a Config,
    /// The instruction (or the request that would become one).
    pub instruction: &'a Instruction,
    /// The manifest's path where its partition is mounted here.
    pub manifest: &'a Path,
    /// The trusted public key files.
    pub trusted_keys: &'a [PathBuf],
    /// Where the `cfg` partition is mounted.
    pub cfg: &'a Path,
    /// The target partition, already checked ([`policy::check_target`]).
    pub target: &'a Partition,
    /// An update's admission or a restore's: a restore's image is never
    /// refused as the version restored away.
    pub purpose: Purpose,
}

/// An image that may be installed.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub image: VerifiedImage,
    pub installed: InstalledVersion,
    /// The restore that took this version away, when an operator's leave
    /// let it through ([`admit_retrying`] or `cfg:update/retry-restored`).
    pub retried: Option<RestoredAway>,
}

/// The installed version on the `cfg` partition mounted at `cfg`; an
/// unreadable record is logged as a warning.
pub fn installed_on(cfg: &Path) -> InstalledVersion {
    let installed = InstalledVersion::from_read(std::fs::read(cfg.join(INSTALLED)));
    if let Some(warning) = installed.warning() {
        log::warn!("{warning}");
    }
    installed
}

/// Reads a record on `cfg`: None when it is missing, or unreadable (then
/// `what` says what that means, in a warning).
fn read_record<T>(
    cfg: &Path,
    rel: &str,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
    what: &str,
) -> Option<T> {
    let bytes = match std::fs::read(cfg.join(rel)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            log::warn!("{}: cannot read: {e}; {what}", shown(rel));
            return None;
        }
    };
    parse(&bytes)
        .map_err(|e| log::warn!("{}: {e}; {what}", shown(rel)))
        .ok()
}

/// The version the last restore took away: `cfg:update/restored-away`
/// ([`RestoredAway::of_record`]), or, where that record is missing (or
/// unreadable, logged), an `outcome=restored` `cfg:update/result`
/// ([`RestoredAway::of_result`]): a recovery partition is not replaced by
/// an update, so a device may run a recovery that restores and writes no
/// record under a system whose `request` and agent read it. The recovery
/// that writes the record writes it before the result, so there the
/// fallback finds only what such a recovery left.
pub fn restored_away_on(cfg: &Path) -> Option<RestoredAway> {
    read_record(
        cfg,
        RESTORED_AWAY,
        RestoredAway::of_record,
        "the last result names the version restored away, if any",
    )
    .or_else(|| {
        read_record(
            cfg,
            RESULT,
            RestoredAway::of_result,
            "no version counts as restored away",
        )
        .flatten()
    })
}

/// Records the version a finished restore took away (`result`, its
/// `outcome=restored` result, not yet written) in
/// `cfg:update/restored-away` ([`RestoredAway::record_after`]): first the
/// operator's leave is removed (it answered an earlier restore), then the
/// record is written atomically. The recovery calls it as it finishes a
/// restore, before the result. Nothing for a restore of the version that
/// failed. A cut between the two leaves the old record and no leave: the
/// restore runs again ([`Purpose::Restore`] is not refused by the record)
/// and writes the new one; the leave goes first so that no leave can
/// ever stand beside a record it was not given for.
pub fn record_restored_away(cfg: &Path, result: &UpdateResult) -> Result<(), UpdateError> {
    let previous = std::fs::read(cfg.join(RESTORED_AWAY)).ok();
    let Some(record) = RestoredAway::record_after(result, previous.as_deref()) else {
        return Ok(());
    };
    let step = |rel: &str, done: std::io::Result<()>| {
        done.map_err(|e| UpdateError::new(Stage::Finish, shown(rel), e))
    };
    step(
        RETRY_RESTORED,
        store::remove_durably(&cfg.join(RETRY_RESTORED)),
    )?;
    step(
        RESTORED_AWAY,
        store::write_atomic(&cfg.join(RESTORED_AWAY), record.render().as_bytes()),
    )?;
    log::info!(
        "{}: {} is refused until a newer version or an operator's leave",
        shown(RESTORED_AWAY),
        record.version
    );
    Ok(())
}

/// After `version` was installed: a version restored away that it
/// supersedes ([`RestoredAway::superseded_by`]) is admitted again, so its
/// record goes, then the operator's leave. The record first: a failure or
/// a cut in between leaves a leave without its record, which answers
/// nothing (it is keyed on that record's BLAKE3, and
/// [`record_restored_away`] removes it before it writes any other record),
/// where the other order would leave the record without its leave and
/// refuse the version the operator allowed. A failure is logged: a
/// record kept then refuses only updates to that older version, never a
/// restore ([`Purpose::Restore`]).
pub fn forget_restored_away(cfg: &Path, version: &str) {
    let Some(away) = read_record(cfg, RESTORED_AWAY, RestoredAway::of_record, "kept") else {
        return;
    };
    if !away.superseded_by(version) {
        return;
    }
    for rel in [RESTORED_AWAY, RETRY_RESTORED] {
        if let Err(e) = store::remove_durably(&cfg.join(rel)) {
            log::warn!("{}: cannot remove: {e}", shown(rel));
            return;
        }
    }
    log::info!(
        "{}: {} installed, {} is admitted again",
        shown(RESTORED_AWAY),
        version,
        away.version
    );
}

/// Whether `cfg:update/retry-restored` allows `away` again (an unreadable
/// one allows nothing).
pub fn allowed_again_on(cfg: &Path, away: &RestoredAway) -> bool {
    read_record(
        cfg,
        RETRY_RESTORED,
        RetryRestored::parse,
        "it allows nothing",
    )
    .is_some_and(|leave| away.allowed_by(&leave))
}

/// The version restored away and whether it is allowed again (`retry`:
/// the operator's leave given now, else the one on `cfg`).
fn restore_history(cfg: &Path, retry: bool) -> (Option<RestoredAway>, bool) {
    match restored_away_on(cfg) {
        Some(away) => {
            let allowed = retry || allowed_again_on(cfg, &away);
            (Some(away), allowed)
        }
        None => (None, false),
    }
}

/// What the admission before the payload is given.
pub struct HeadAdmission<'a> {
    /// The device's policy: product, downgrades.
    pub config: &'a Config,
    /// Whether the request would ask for a downgrade.
    pub allow_downgrade: bool,
    /// The manifest and signature as fetched; its `path` names where they
    /// came from (a URL) in messages, its `bundle` the bundle's entries.
    pub source: &'a ImageSource,
    /// The trusted public key files.
    pub trusted_keys: &'a [PathBuf],
    /// Where the `cfg` partition is mounted.
    pub cfg: &'a Path,
}

/// A manifest that may be downloaded: signed by a trusted key, of this
/// product, a version the policy allows.
#[derive(Debug, Clone)]
pub struct AdmittedHead {
    pub manifest: Manifest,
    pub installed: InstalledVersion,
    pub signed_by: String,
}

/// The admission check before the payload: the signature, the manifest's
/// fields, for a bundle its payload entry against the manifest, then the
/// product and version ([`policy::check_release`]). The same rules as
/// [`admit`], which adds the payload and the target.
pub fn admit_head(a: &HeadAdmission<'_>) -> Result<AdmittedHead, UpdateError> {
    let trusted = keys::load(a.trusted_keys)?;
    let signed_by = verify::check_signature(a.source, &trusted)?;
    let manifest = Manifest::parse(&a.source.manifest)
        .map_err(|e| UpdateError::new(Stage::Manifest, a.source.manifest_shown(), e))?;
    if a.source.bundle.is_some() {
        let payload = a.source.payload(&manifest)?;
        if payload.size != manifest.payload_size {
            return Err(UpdateError::new(
                Stage::Payload,
                payload.shown(),
                format!(
                    "size: the manifest says {} bytes, the bundle's entry has {}",
                    manifest.payload_size, payload.size
                ),
            ));
        }
    }
    let installed = installed_on(a.cfg);
    let (away, allowed) = restore_history(a.cfg, false);
    policy::check_release(
        a.config,
        a.allow_downgrade,
        &manifest,
        &installed,
        away.as_ref().filter(|_| !allowed),
        &a.source.manifest_shown(),
    )?;
    log::info!(
        "admitted before download: {} {} (installed: {}), signed by {signed_by}",
        manifest.product,
        manifest.version,
        installed.known().map_or("unknown", |i| i.version.as_str()),
    );
    Ok(AdmittedHead {
        manifest,
        installed,
        signed_by,
    })
}

/// Runs the admission check. An unreadable `cfg:update/installed` is
/// logged as a warning, and refused where the downgrade policy needs it.
/// For an update ([`Purpose::Update`]) the version restored away is
/// refused unless `cfg:update/retry-restored` allows it again.
pub fn admit(a: &Admission<'_>) -> Result<Admitted, UpdateError> {
    admit_retrying(a, false)
}

/// [`admit`], where `retry_restored` is an operator's leave given now
/// (`request --retry-restored`) to install the version restored away;
/// the caller records it ([`RestoredAway::leave`]) for the recovery.
pub fn admit_retrying(a: &Admission<'_>, retry_restored: bool) -> Result<Admitted, UpdateError> {
    let trusted = keys::load(a.trusted_keys)?;
    let image = verify::verify(a.manifest, &trusted)?;
    let installed = installed_on(a.cfg);
    let (away, allowed) = restore_history(a.cfg, retry_restored);
    policy::check_image(
        a.config,
        a.instruction,
        &image.manifest,
        &installed,
        a.purpose.refused(away.as_ref(), allowed),
        a.target,
    )?;
    let retried =
        away.filter(|away| a.purpose == Purpose::Update && away.is(&image.manifest.version));
    if let Some(away) = &retried {
        log::warn!(
            "policy: {} was restored away ({}); installed again on an operator's leave",
            away.version,
            away.reason
        );
    }
    log::info!(
        "policy: product {}, version {} (installed: {}), fits {}",
        image.manifest.product,
        image.manifest.version,
        installed.known().map_or("unknown", |i| i.version.as_str()),
        a.target.name
    );
    Ok(Admitted {
        image,
        installed,
        retried,
    })
}

/// Admits the image a failed update would be restored from, before the
/// instruction names it: every check of the image, as for an update
/// ([`verify::verify`]: signature by a trusted key, manifest, payload
/// size and BLAKE3, every entry), then this product and the installed
/// version ([`policy::check_restore_image`]). The full check costs one
/// read of the image; in return a restore image that rotted is found
/// while an operator can still stage it again, not after the erase. Like
/// every restore's admission it never refuses the version restored away
/// ([`Purpose::Restore`]). The recovery admits it again ([`admit`], for a
/// [`Purpose::Restore`]) before it erases for a restore.
pub fn admit_restore(
    config: &Config,
    image: &Path,
    trusted_keys: &[PathBuf],
    cfg: &Path,
) -> Result<VerifiedImage, UpdateError> {
    let trusted = keys::load(trusted_keys)?;
    let verified = verify::verify(image, &trusted)?;
    let installed = installed_on(cfg);
    policy::check_restore_image(
        config,
        &verified.manifest,
        &installed,
        &image.display().to_string(),
    )?;
    Ok(verified)
}
