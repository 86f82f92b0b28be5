//! The admission check: whether a staged image may be installed on this
//! device. One function, [`admit`], that the recovery (before the erase)
//! and `bootloader-glue request` (before the instruction is written) both
//! call, so that the running system never asks for what the recovery would
//! refuse: the trusted keys, every check of the image ([`crate::verify`]),
//! the installed version on `cfg`, then product, version and size against
//! the target ([`crate::policy`]).

use crate::error::UpdateError;
use crate::keys;
use crate::partitions::Partition;
use crate::policy::{self, InstalledVersion};
use crate::verify::{self, VerifiedImage};
use formats::cfg::INSTALLED;
use formats::config::Config;
use formats::instruction::Instruction;
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
}

/// An image that may be installed.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub image: VerifiedImage,
    pub installed: InstalledVersion,
}

/// Runs the admission check. An unreadable `cfg:update/installed` is
/// logged as a warning, and refused where the downgrade policy needs it.
pub fn admit(a: &Admission<'_>) -> Result<Admitted, UpdateError> {
    let trusted = keys::load(a.trusted_keys)?;
    let image = verify::verify(a.manifest, &trusted)?;
    let installed = InstalledVersion::from_read(std::fs::read(a.cfg.join(INSTALLED)));
    if let Some(warning) = installed.warning() {
        log::warn!("{warning}");
    }
    policy::check_image(
        a.config,
        a.instruction,
        &image.manifest,
        &installed,
        a.target,
    )?;
    log::info!(
        "policy: product {}, version {} (installed: {}), fits {}",
        image.manifest.product,
        image.manifest.version,
        installed.known().map_or("unknown", |i| i.version.as_str()),
        a.target.name
    );
    Ok(Admitted { image, installed })
}
