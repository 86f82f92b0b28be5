//! The agent's flow, whatever the source: what the daemon and the one-shot
//! commands call.
//!
//! - [`check`]: asks the source, with the installed version from `cfg`.
//! - [`stage`]: admits an offer before its payload (the manifest and
//!   signature, from a bundle's first bytes by a `Range` request or from
//!   two small files, through [`recovery::admission::admit_head`]), checks
//!   the free space, downloads with resume and retries, verifies the whole
//!   image with the recovery's engine, clears the warning flag and deletes
//!   old images. After the last failed attempt it sets the warning flag on
//!   `cfg` ([`formats::cfg::DownloadFailed`]).
//! - [`install`]: writes the instruction through `bootloader-glue`'s
//!   library, the same code as `bootloader-glue request`.

use crate::config::Config;
use crate::download::{self, DownloadError, Progress};
use crate::http::{Client, FetchError};
use crate::outcome;
use crate::retry::{self, Exhausted, Retryable};
use crate::source::{Artifact, CancelWatch, Check, Offer, Report, Source, SourceError};
use crate::storage::{self, Keep, StorageError};
use bootloader_glue::request::{self, RequestError, Requested};
use formats::bundle::{self, EXTENSION};
use formats::cfg::{shown, DownloadFailed, DOWNLOAD_FAILED, INSTRUCTION};
use formats::instruction::{Instruction, PartitionPath};
use formats::keyvalue::is_name;
use formats::manifest::{self, Manifest};
use recovery::admission::{self, AdmittedHead, HeadAdmission};
use recovery::source::ImageSource;
use recovery::{Stage, UpdateError};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// The largest bundle accepted from a server (its length is checked
/// against the signed manifest before the download).
pub const MAX_BUNDLE: u64 = 1 << 40;

/// An image on storage, downloaded and verified, ready to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    /// The source's name and its id of the offer.
    pub source: String,
    pub offer_id: String,
    /// The signed manifest.
    pub manifest: Manifest,
    /// The bundle, or the manifest (with its signature and payload beside it).
    pub image: PathBuf,
    /// Bytes fetched for the payload by this call (0 when it was on
    /// storage already).
    pub fetched: u64,
    /// Attempts it took.
    pub attempts: u32,
}

/// One attempt's error, in a round of attempts.
#[derive(Debug, Error)]
pub enum AttemptError {
    #[error("fetching the image's {what}: {source}")]
    Fetch {
        what: &'static str,
        source: FetchError,
    },
    #[error("refused before the download: {0}")]
    Refused(UpdateError),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error(transparent)]
    Space(#[from] StorageError),
    #[error("the downloaded image: {0}")]
    Verify(UpdateError),
    #[error("{path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("moving {from} to {to}: {source}")]
    Move {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
}

impl Retryable for AttemptError {
    fn retryable(&self) -> bool {
        match self {
            AttemptError::Fetch { source, .. } => source.retryable(),
            AttemptError::Download(e) => e.retryable(),
            // Bytes damaged on the way: the file was deleted, fetch again.
            AttemptError::Verify(e) => e.stage == Stage::Payload,
            AttemptError::Refused(_)
            | AttemptError::Space(_)
            | AttemptError::Io { .. }
            | AttemptError::Move { .. } => false,
        }
    }
}

#[derive(Debug, Error)]
pub enum FlowError {
    /// Something on this device is wrong (a config file, the keys, the
    /// HTTP setup); nothing was fetched.
    #[error("setup: {0}")]
    Setup(String),
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The offer itself is unusable (names, URLs, which files).
    #[error("offer {id}: {reason}")]
    Offer { id: String, reason: String },
    /// The round of attempts ended without a verified image; the warning
    /// flag is set.
    #[error("{image}: {failure}")]
    Stage {
        image: String,
        failure: Exhausted<AttemptError>,
    },
    #[error("requesting the update")]
    Install(#[from] RequestError),
    /// The server cancelled the offer while it was being downloaded; the
    /// partial download is gone and the cancel acknowledged.
    #[error("offer {id}: cancelled by the server while downloading")]
    Cancelled { id: String },
    /// The record of the update in flight could not be written.
    #[error(transparent)]
    Outcome(#[from] crate::outcome::OutcomeError),
}

/// How often a download asks a fleet server whether its offer was
/// cancelled, at most (or the poll interval, if shorter); the download's
/// progress, where it asks, comes every 4 MiB.
pub const CANCEL_POLL: Duration = Duration::from_secs(60);

impl FlowError {
    /// Whether the image was refused (signature, product, version): the
    /// same offer will never do; report it as a failure.
    pub fn refused(&self) -> Option<&UpdateError> {
        match self {
            FlowError::Stage { failure, .. } => match failure.errors.last() {
                Some(AttemptError::Refused(e)) => Some(e),
                _ => None,
            },
            _ => None,
        }
    }

    /// Why `request` refused the staged image (the admission: signature,
    /// product, version, the version restored away) or its restore image
    /// (missing, or failing a check), if it did: the same offer will not
    /// do either; [`install`] reports it as a failure.
    pub fn refused_install(&self) -> Option<String> {
        match self {
            FlowError::Install(e @ (RequestError::Image(_) | RequestError::NoRestore(_))) => {
                let mut text = e.to_string();
                let mut cause = std::error::Error::source(e);
                while let Some(c) = cause {
                    text += &format!(": {c}");
                    cause = c.source();
                }
                Some(text)
            }
            _ => None,
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The installed version on `cfg`, `None` when unknown (logged).
pub fn installed_version(config: &Config) -> Option<String> {
    admission::installed_on(&config.cfg)
        .known()
        .map(|i| i.version.clone())
}

/// Asks the source whether there is an update for the installed version.
pub fn check(config: &Config, source: &mut dyn Source) -> Result<Check, FlowError> {
    let installed = installed_version(config);
    Ok(source.check(installed.as_deref())?)
}

/// The recovery's configuration (product, downgrade policy, targets).
pub fn recovery_config(config: &Config) -> Result<formats::config::Config, FlowError> {
    let path = &config.recovery_config;
    let text = fs::read_to_string(path).map_err(|e| {
        FlowError::Setup(format!(
            "{}: {e} (the device's recovery.conf; set recovery-config=)",
            path.display()
        ))
    })?;
    formats::config::Config::parse(&text)
        .map_err(|e| FlowError::Setup(format!("{}: {e}", path.display())))
}

/// The source the config names.
pub fn source(config: &Config) -> Result<Box<dyn Source>, FlowError> {
    match config.source {
        crate::config::SourceKind::Feed => {
            let recovery = recovery_config(config)?;
            let base = config
                .feed
                .as_deref()
                .ok_or_else(|| FlowError::Setup("source=feed needs feed=".into()))?;
            Ok(Box::new(crate::feed::Feed::new(
                client(config)?,
                base,
                &recovery.product,
                config.feed_layout,
            )))
        }
        crate::config::SourceKind::Hawkbit => {
            let recovery = recovery_config(config)?;
            let settings = config
                .hawkbit
                .source_config(&recovery.product)
                .map_err(FlowError::Setup)?;
            let hawkbit = crate::hawkbit::Hawkbit::new(settings, &config.http())
                .map_err(|e| FlowError::Setup(e.to_string()))?
                .remembering(config.cfg.join(formats::cfg::CONFIG_DATA_SENT));
            Ok(Box::new(hawkbit))
        }
    }
}

/// The HTTP client for the config.
pub fn client(config: &Config) -> Result<Client, FlowError> {
    Client::new(&config.http()).map_err(|e| FlowError::Setup(e.to_string()))
}

/// Which files of an offer hold the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    Bundle(Artifact),
    Files {
        manifest: Artifact,
        signature: Artifact,
        /// Every artifact: the payload is the one the manifest names.
        all: Vec<Artifact>,
    },
}

/// Checks what a source offers (names, URLs) and finds the image's files:
/// one `.swu` bundle, or a `.manifest` with its `.minisig`.
pub fn layout(offer: &Offer) -> Result<Layout, FlowError> {
    let bad = |reason: String| FlowError::Offer {
        id: offer.id.clone(),
        reason,
    };
    if offer.artifacts.is_empty() {
        return Err(bad("no files offered".into()));
    }
    for a in &offer.artifacts {
        if !is_name(&a.name) {
            return Err(bad(format!(
                "file name {:?}: expected a plain name (A-Z a-z 0-9 . _ - +)",
                a.name
            )));
        }
        if crate::http::host_of(&a.url).is_none()
            || !crate::partial::is_keepable(&a.url, crate::partial::MAX_URL)
        {
            return Err(bad(format!(
                "{}: URL {:?}: expected http:// or https:// with a host, visible ASCII",
                a.name, a.url
            )));
        }
    }
    let bundle = format!(".{EXTENSION}");
    let bundles: Vec<&Artifact> = offer
        .artifacts
        .iter()
        .filter(|a| a.name.ends_with(&bundle))
        .collect();
    let manifests: Vec<&Artifact> = offer
        .artifacts
        .iter()
        .filter(|a| a.name.ends_with(".manifest"))
        .collect();
    match (bundles.as_slice(), manifests.as_slice()) {
        ([b], []) => Ok(Layout::Bundle((*b).clone())),
        ([], [m]) => {
            let sig_name = format!("{}.minisig", m.name);
            let signature = offer
                .artifacts
                .iter()
                .find(|a| a.name == sig_name)
                .ok_or_else(|| bad(format!("{}: no {sig_name} offered beside it", m.name)))?;
            Ok(Layout::Files {
                manifest: (*m).clone(),
                signature: signature.clone(),
                all: offer.artifacts.clone(),
            })
        }
        _ => Err(bad(format!(
            "expected one bundle (*.{EXTENSION}) or one *.manifest with its .minisig and payload; offered: {}",
            offer
                .artifacts
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// What was fetched before the payload: enough to admit the image, and
/// where its payload (or the whole bundle) is.
struct Head {
    source: ImageSource,
    /// The bundle's whole length, for a bundle.
    bundle_len: Option<u64>,
}

fn fetch_head(client: &Client, layout: &Layout) -> Result<Head, AttemptError> {
    match layout {
        Layout::Bundle(a) => {
            let fetch = |what| move |source| AttemptError::Fetch { what, source };
            let (head, len) = client
                .get_head(&a.url, bundle::HEAD_MAX as u64)
                .map_err(fetch("first bytes (the bundle's head)"))?;
            let answer = |what: String| AttemptError::Fetch {
                what: "first bytes (the bundle's head)",
                source: FetchError::Answer {
                    url: a.url.clone(),
                    what,
                },
            };
            if len > MAX_BUNDLE || a.size.is_some_and(|s| s != len) {
                return Err(answer(format!(
                    "{len} bytes long, the source said {} (at most {MAX_BUNDLE})",
                    a.size.map_or("nothing".into(), |s| s.to_string())
                )));
            }
            let layout = bundle::parse_head(&head, len)
                .map_err(|e| answer(format!("not a valid bundle: {e}")))?;
            let signature = String::from_utf8(head[layout.signature.range()].to_vec())
                .map_err(|_| "the signature entry is not UTF-8 text".to_string());
            Ok(Head {
                source: ImageSource {
                    path: PathBuf::from(&a.url),
                    manifest: head[layout.manifest.range()].to_vec(),
                    signature,
                    bundle: Some(layout),
                },
                bundle_len: Some(len),
            })
        }
        Layout::Files {
            manifest: m,
            signature: s,
            ..
        } => {
            let manifest = client
                .get_small(&m.url, manifest::MAX_SIZE as u64)
                .map_err(|source| AttemptError::Fetch {
                    what: "manifest",
                    source,
                })?;
            let signature = client
                .get_small(&s.url, bundle::MAX_SIGNATURE)
                .map_err(|source| AttemptError::Fetch {
                    what: "signature",
                    source,
                })?;
            Ok(Head {
                source: ImageSource {
                    path: PathBuf::from(&m.url),
                    manifest,
                    signature: String::from_utf8(signature)
                        .map_err(|_| "the signature is not UTF-8 text".to_string()),
                    bundle: None,
                },
                bundle_len: None,
            })
        }
    }
}

/// The image's names on storage, from the signed manifest.
fn image_path(config: &Config, manifest: &Manifest, is_bundle: bool) -> PathBuf {
    let (product, version) = (&manifest.product, &manifest.version);
    let name = if is_bundle {
        format!("{}.{EXTENSION}", Manifest::file_stem(product, version))
    } else {
        Manifest::manifest_name(product, version)
    };
    config.storage_dir.join(name)
}

/// The file the download fetches: the bundle, or the payload.
fn download_request(
    config: &Config,
    layout: &Layout,
    head: &Head,
    manifest: &Manifest,
) -> Result<download::Request, AttemptError> {
    Ok(match (layout, head.bundle_len) {
        (Layout::Bundle(a), Some(len)) => {
            let b = head
                .source
                .bundle
                .as_ref()
                .expect("a bundle's head has a layout");
            // The length follows from the signed manifest: the payload's
            // end, the trailer, and the padding to a block.
            let end = b.payload.offset + manifest.payload_size;
            let most = b.trailer_offset() + bundle::TRAILER_LEN as u64 + 3 + bundle::BLOCK;
            if len < end || len > most {
                return Err(AttemptError::Refused(UpdateError::new(
                    Stage::Manifest,
                    &a.url,
                    format!(
                        "{len} bytes long; the payload the manifest describes ends at byte {end}"
                    ),
                )));
            }
            let name = image_path(config, manifest, true);
            download::Request {
                url: a.url.clone(),
                dir: config.storage_dir.clone(),
                name: file_name(&name),
                size: Some(len),
                blake3: None,
                max_size: len,
            }
        }
        (Layout::Files { all, .. }, _) => {
            // The payload is stored under its name in the signed manifest:
            // only the name of this version's payload will do, so that no
            // manifest can make the agent overwrite another version's
            // file (the installed version's image is the restore image).
            let expected = Manifest::payload_name(&manifest.product, &manifest.version);
            if manifest.payload != expected {
                return Err(AttemptError::Refused(UpdateError::new(
                    Stage::Manifest,
                    head.source.manifest_shown(),
                    format!(
                        "the manifest names the payload {}: expected {expected}, the name of \
                         {} {}'s payload",
                        manifest.payload, manifest.product, manifest.version
                    ),
                )));
            }
            let payload = all
                .iter()
                .find(|a| a.name == manifest.payload)
                .ok_or_else(|| {
                    AttemptError::Refused(UpdateError::new(
                        Stage::Manifest,
                        head.source.manifest_shown(),
                        format!(
                            "the manifest names the payload {}, which is not offered",
                            manifest.payload
                        ),
                    ))
                })?;
            download::Request {
                url: payload.url.clone(),
                dir: incoming_dir(config),
                name: manifest.payload.clone(),
                size: Some(manifest.payload_size),
                blake3: Some(manifest.payload_blake3),
                max_size: manifest.payload_size,
            }
        }
        (Layout::Bundle(_), None) => unreachable!("a bundle's head has its length"),
    })
}

/// Where an image of three files is fetched and verified before it
/// replaces the files of its version ([`storage::INCOMING`]).
fn incoming_dir(config: &Config) -> PathBuf {
    config.storage_dir.join(storage::INCOMING)
}

/// Where [`move_into_place`] keeps the files of the version it replaces
/// until the new set is complete: `.incoming/replaced/`.
const REPLACED: &str = "replaced";

/// The renames that move a verified image of three files from
/// [`incoming_dir`] (`incoming`, its manifest there) to `image`
/// (`P-V.manifest` on storage), in order: the old files that are there
/// go aside into `.incoming/replaced/`, the manifest first; then the new
/// payload, signature and manifest, the manifest last. So at every
/// moment, on storage there is no manifest, or one beside the payload and
/// signature it describes; and while there is none, the old set is whole
/// in `replaced/` ([`put_back_replaced`] puts it back).
fn move_steps(incoming: &Path, image: &Path, payload: &str) -> Vec<(PathBuf, PathBuf)> {
    let dir = image.parent().unwrap_or(Path::new("."));
    let aside = incoming.parent().unwrap_or(Path::new(".")).join(REPLACED);
    let names = [
        file_name(image),
        file_name(&recovery::source::signature_path(image)),
        payload.to_string(),
    ];
    let mut steps: Vec<(PathBuf, PathBuf)> = names
        .iter()
        .filter(|n| dir.join(n).exists())
        .map(|n| (dir.join(n), aside.join(n)))
        .collect();
    steps.extend(
        names
            .iter()
            .rev()
            .map(|n| (incoming.with_file_name(n), dir.join(n))),
    );
    steps
}

/// Moves a verified image of three files into place ([`move_steps`]),
/// then deletes the old set. A rename that fails names both paths; what
/// it leaves is put back by the next run's [`put_back_replaced`].
fn move_into_place(incoming: &Path, image: &Path, payload: &str) -> Result<(), AttemptError> {
    let inc = incoming.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(inc.join(REPLACED)).map_err(io(&inc.join(REPLACED), "creating"))?;
    for (from, to) in move_steps(incoming, image, payload) {
        rename(&from, &to)?;
    }
    fs::remove_dir_all(inc.join(REPLACED)).map_err(io(&inc.join(REPLACED), "deleting"))?;
    // Gone when empty; what else is there is pruned with the old images.
    let _ = fs::remove_dir(inc);
    Ok(())
}

fn rename(from: &Path, to: &Path) -> Result<(), AttemptError> {
    formats::store::rename_durably(from, to).map_err(|source| AttemptError::Move {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
        source,
    })
}

/// After a power cut in [`move_into_place`]: when the new set did not
/// arrive whole (its manifest is not on storage), the old set in
/// `.incoming/replaced/` goes back in place (the manifest last); when it
/// did, the old set is deleted. Run at the start of each staging.
fn put_back_replaced(storage_dir: &Path) -> Result<(), AttemptError> {
    let aside = storage_dir.join(storage::INCOMING).join(REPLACED);
    let mut names: Vec<String> = match fs::read_dir(&aside) {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(&aside, "listing")(e)),
    };
    // The manifest last.
    names.sort_by_key(|n| n.ends_with(".manifest"));
    let complete = names
        .iter()
        .filter(|n| n.ends_with(".manifest"))
        .all(|n| storage_dir.join(n).exists());
    if !complete {
        for name in &names {
            rename(&aside.join(name), &storage_dir.join(name))?;
        }
        log::warn!(
            "{}: put back in place after an interrupted replacement ({})",
            storage_dir.display(),
            names.join(", ")
        );
    }
    fs::remove_dir_all(&aside).map_err(io(&aside, "deleting"))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Bytes still to fetch: the size less what is on storage already.
fn still_needed(request: &download::Request) -> u64 {
    let size = request.size.unwrap_or(request.max_size);
    let have = [request.name.clone(), format!("{}.part", request.name)]
        .iter()
        .filter_map(|n| fs::metadata(request.dir.join(n)).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
    size.saturating_sub(have)
}

fn io(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> AttemptError {
    let path = path.to_path_buf();
    move |source| AttemptError::Io { path, what, source }
}

/// The state of a round of attempts.
struct Round<'a> {
    config: &'a Config,
    client: &'a Client,
    keys: &'a [PathBuf],
    recovery: &'a formats::config::Config,
    layout: &'a Layout,
    /// Admitted on an earlier attempt: not fetched again.
    admitted: Option<(Head, AdmittedHead)>,
}

impl Round<'_> {
    fn attempt(
        &mut self,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(Manifest, PathBuf, u64), AttemptError> {
        if self.admitted.is_none() {
            let head = fetch_head(self.client, self.layout)?;
            let admitted = admission::admit_head(&HeadAdmission {
                config: self.recovery,
                allow_downgrade: false,
                source: &head.source,
                trusted_keys: self.keys,
                cfg: &self.config.cfg,
            })
            .map_err(AttemptError::Refused)?;
            self.admitted = Some((head, admitted));
        }
        let (head, admitted) = self.admitted.as_ref().expect("admitted above");
        let manifest = &admitted.manifest;
        let is_bundle = head.bundle_len.is_some();
        let image = image_path(self.config, manifest, is_bundle);
        if let Some(there) = self.already_staged(&image, manifest) {
            return Ok((there, image, 0));
        }
        let request = download_request(self.config, self.layout, head, manifest)?;
        storage::check_free(
            &self.config.storage_dir,
            still_needed(&request),
            self.config.min_free,
        )?;
        // A bundle is one file, renamed into place whole once downloaded.
        // Three files are fetched into `incoming` and replace those of the
        // version on storage (a re-offered version) only once verified.
        let checked = if is_bundle {
            image.clone()
        } else {
            // The admitted manifest and signature go beside the payload.
            let checked = incoming_dir(self.config).join(file_name(&image));
            let sig = recovery::source::signature_path(&checked);
            let signature = head.source.signature.as_deref().unwrap_or_default();
            formats::store::write_atomic(&checked, &head.source.manifest)
                .map_err(io(&checked, "writing"))?;
            formats::store::write_atomic(&sig, signature.as_bytes())
                .map_err(io(&sig, "writing"))?;
            checked
        };
        let done = download::download(self.client, &request, progress)?;
        match self.verify(&checked, manifest) {
            Ok(()) if is_bundle => Ok((manifest.clone(), image, done.fetched)),
            Ok(()) => {
                move_into_place(&checked, &image, &manifest.payload)?;
                Ok((manifest.clone(), image, done.fetched))
            }
            Err(e) => {
                // The next attempt starts from zero.
                formats::store::remove_durably(&done.path).map_err(io(&done.path, "deleting"))?;
                Err(e)
            }
        }
    }

    /// Every check of the image on storage, by the recovery's engine, and
    /// the same manifest as the one admitted.
    fn verify(&self, image: &Path, admitted: &Manifest) -> Result<(), AttemptError> {
        let keys = recovery::keys::load(self.keys).map_err(AttemptError::Verify)?;
        let verified = recovery::verify::verify(image, &keys).map_err(AttemptError::Verify)?;
        if verified.manifest != *admitted {
            return Err(AttemptError::Verify(UpdateError::new(
                Stage::Manifest,
                image.display(),
                "not the manifest admitted before the download (the file changed on the server)",
            )));
        }
        Ok(())
    }

    /// The manifest of the image on storage already, complete and
    /// verified: the one admitted; or, for a version whose image is
    /// needed ([`needed_versions`]: the installed one, a restore's, the
    /// instruction's), any set of that version that verifies (a rebuild
    /// re-signed after a key rotation is not a reason to replace the
    /// image a restore comes from, in place).
    fn already_staged(&self, image: &Path, manifest: &Manifest) -> Option<Manifest> {
        let payload_there = if image.extension().is_some_and(|e| e == EXTENSION) {
            image.exists()
        } else {
            image
                .parent()
                .is_some_and(|d| d.join(&manifest.payload).exists())
        };
        if !payload_there {
            return None;
        }
        let e = match self.verify(image, manifest) {
            Ok(()) => {
                log::info!("{}: on storage already, verified", image.display());
                return Some(manifest.clone());
            }
            Err(e) => e,
        };
        let needed = needed_versions(self.config, &manifest.product)
            .map_or(true, |v| v.contains(&manifest.version));
        if needed {
            let keys = recovery::keys::load(self.keys).ok()?;
            if let Ok(there) = recovery::verify::verify(image, &keys) {
                let m = there.manifest;
                if m.product == manifest.product && m.version == manifest.version {
                    log::warn!(
                        "{}: {} {} on storage is needed (installed, a restore's or the \
                         instruction's image) and verifies: kept, not replaced by the one \
                         offered ({e})",
                        image.display(),
                        m.product,
                        m.version
                    );
                    return Some(m);
                }
            }
        }
        log::info!(
            "{}: on storage but not usable ({e}); downloading",
            image.display()
        );
        None
    }
}

/// Admits, downloads and verifies an offer's image into storage. Reports
/// progress and `Downloaded` to the source; a refused image is reported
/// `Closed` with `success: false`. A failed round sets the warning flag.
pub fn stage(config: &Config, source: &mut dyn Source, offer: &Offer) -> Result<Staged, FlowError> {
    let layout = layout(offer)?;
    check_storage_dir(config)?;
    // What a power cut in an earlier replacement left aside.
    put_back_replaced(&config.storage_dir).map_err(|e| FlowError::Setup(e.to_string()))?;
    let recovery = recovery_config(config)?;
    let keys = config
        .trusted_key_files()
        .map_err(|e| FlowError::Setup(format!("trusted keys: {e}")))?;
    let client = client(config)?;
    let image_hint = offer
        .version
        .as_ref()
        .map_or_else(|| offer.id.clone(), |v| format!("{} {v}", recovery.product));
    log::info!(
        "{}: staging {image_hint} (offer {})",
        source.name(),
        offer.id
    );
    let mut round = Round {
        config,
        client: &client,
        keys: &keys,
        recovery: &recovery,
        layout: &layout,
        admitted: None,
    };
    let source_name = source.name().to_string();
    let mut last_percent = None;
    // Only a fleet server cancels; a feed is not polled during a download.
    let mut watch = (config.source == crate::config::SourceKind::Hawkbit).then(|| {
        let every = config.hawkbit.poll.min(CANCEL_POLL);
        CancelWatch::new(&offer.id, client.canceller(), every)
    });
    let installed = installed_version(config);
    let result = retry::run(&config.retry, std::thread::sleep, |attempt| {
        let mut progress = |p: Progress| {
            if let Some(w) = watch.as_mut() {
                w.tick(source, installed.as_deref());
            }
            let Some(total) = p.total.filter(|&t| t > 0) else {
                return;
            };
            let percent = (p.done.saturating_mul(100) / total).min(100) as u8;
            if progress_due(last_percent, percent) {
                last_percent = Some(percent);
                tell(
                    source,
                    &offer.id,
                    &Report::Proceeding {
                        what: "downloading".into(),
                        percent: Some(percent),
                    },
                );
            }
        };
        round
            .attempt(&mut progress)
            .map(|(manifest, image, fetched)| (manifest, image, fetched, attempt))
    });
    let image_name = round.admitted.as_ref().map_or(image_hint, |(_, a)| {
        Manifest::file_stem(&a.manifest.product, &a.manifest.version)
    });
    if watch.as_ref().is_some_and(|w| w.cancelled) {
        return cancelled(config, source, offer, &round, result.is_ok());
    }
    match result {
        Ok((manifest, image, fetched, attempts)) => {
            // What the server said of the file beyond its size (hawkBit's
            // sha1/sha256) must hold too; the signed manifest held already.
            if let Layout::Bundle(a) = &layout {
                if let Err(e) = source.check_artifact(&offer.id, &a.name, &image) {
                    let details = format!("refused: {e}");
                    tell(
                        source,
                        &offer.id,
                        &Report::Closed {
                            success: false,
                            details,
                        },
                    );
                    return Err(FlowError::Source(e));
                }
            }
            clear_warning(config);
            prune(config, &recovery.product, &manifest.version);
            tell(source, &offer.id, &Report::Downloaded);
            log::info!(
                "{}: staged, verified ({fetched} bytes fetched, {attempts} attempt(s))",
                image.display()
            );
            Ok(Staged {
                source: source_name,
                offer_id: offer.id.clone(),
                manifest,
                image,
                fetched,
                attempts,
            })
        }
        Err(failure) => {
            let reason = failure
                .errors
                .last()
                .map_or(String::new(), |e| e.to_string());
            set_warning(config, &image_name, failure.errors.len() as u64, &reason);
            let report = match failure.errors.last() {
                Some(AttemptError::Refused(e)) => Report::Closed {
                    success: false,
                    details: format!("refused: {e}"),
                },
                _ => Report::Proceeding {
                    what: format!("download failed: {reason}"),
                    percent: None,
                },
            };
            tell(source, &offer.id, &report);
            Err(FlowError::Stage {
                image: image_name,
                failure,
            })
        }
    }
}

/// The storage directory must be there: the agent never creates it, so
/// that an unmounted storage partition does not fill the root file system.
fn check_storage_dir(config: &Config) -> Result<(), FlowError> {
    let dir = &config.storage_dir;
    if dir.is_dir() {
        return Ok(());
    }
    Err(FlowError::Setup(format!(
        "{}: not a directory: expected it on the mounted storage partition \
         (create it there once, or set storage-dir=)",
        dir.display()
    )))
}

/// After the server cancelled the offer during the download: the partial
/// download is thrown away (unless it finished first) and the cancel
/// acknowledged; no warning flag, nothing installed.
fn cancelled(
    config: &Config,
    source: &mut dyn Source,
    offer: &Offer,
    round: &Round<'_>,
    finished: bool,
) -> Result<Staged, FlowError> {
    if let Some((head, admitted)) = &round.admitted {
        if let Ok(request) = download_request(config, round.layout, head, &admitted.manifest) {
            if let Err(e) = download::discard(&request) {
                log::warn!("{e}");
            }
        }
    }
    let details = if finished {
        "cancelled by the server; the downloaded image is kept but not installed"
    } else {
        "cancelled by the server while downloading; the partial download is deleted"
    };
    log::info!("{}: offer {}: {details}", source.name(), offer.id);
    tell(
        source,
        &offer.id,
        &Report::Cancelled {
            accepted: true,
            details: details.into(),
        },
    );
    Err(FlowError::Cancelled {
        id: offer.id.clone(),
    })
}

/// Reports to the source; a failure to report is logged, not fatal.
fn tell(source: &mut dyn Source, offer_id: &str, report: &Report) {
    if let Err(e) = source.report(offer_id, report) {
        log::warn!("reporting to {}: {e}", source.name());
    }
}

/// Sets the warning flag (`cfg:update/download-failed`).
fn set_warning(config: &Config, image: &str, attempts: u64, reason: &str) {
    let record = DownloadFailed {
        image: image.to_string(),
        attempts,
        at: now(),
        reason: reason.to_string(),
    };
    let path = config.cfg.join(DOWNLOAD_FAILED);
    match formats::store::write_atomic(&path, record.render().as_bytes()) {
        Ok(()) => log::warn!(
            "{}: set: update download failed: {reason}",
            shown(DOWNLOAD_FAILED)
        ),
        Err(e) => log::error!("{}: cannot write: {e}", path.display()),
    }
}

/// Clears the warning flag after a complete, verified download.
fn clear_warning(config: &Config) {
    let path = config.cfg.join(DOWNLOAD_FAILED);
    if path.exists() {
        match formats::store::remove_durably(&path) {
            Ok(()) => log::info!("{}: cleared", shown(DOWNLOAD_FAILED)),
            Err(e) => log::error!("{}: cannot remove: {e}", path.display()),
        }
    }
}

/// The versions of `product` whose images on storage are needed: the
/// installed one, what a pending instruction names and every image a
/// restore may come from ([`bootloader_glue::trial::restore_images`]).
/// An error when the records cannot be read (`update/installed` among
/// them): any version may be needed then.
fn needed_versions(config: &Config, product: &str) -> Result<Vec<String>, String> {
    let manifest: Option<String> = fs::read(config.cfg.join(INSTRUCTION))
        .ok()
        .and_then(|raw| Instruction::parse(&raw).ok())
        .and_then(|i| {
            Some(
                Path::new(&i.manifest.path)
                    .file_name()?
                    .to_str()?
                    .to_string(),
            )
        });
    let restore = bootloader_glue::trial::restore_images(&config.cfg, &config.storage_dir)?;
    Ok(installed_version(config)
        .into_iter()
        .chain(
            manifest
                .iter()
                .chain(&restore)
                .filter_map(|name| storage::version_of(product, name))
                .map(str::to_string),
        )
        .collect())
}

/// Deletes old images; keeps the staged one and the needed ones
/// ([`needed_versions`]). Failures are logged: the image is staged all
/// the same; when the records cannot be read, nothing is deleted.
fn prune(config: &Config, product: &str, staged: &str) {
    let needed = match needed_versions(config, product) {
        Ok(versions) => versions,
        Err(e) => {
            log::warn!("old images not deleted: the images a restore may need are unknown: {e}");
            return;
        }
    };
    let keep = Keep {
        installed: None,
        staged: Some(staged),
        named: needed.iter().map(String::as_str).collect(),
        count: config.keep,
    };
    if let Err(e) = storage::prune(&config.storage_dir, product, &keep) {
        log::warn!("deleting old images: {e}");
    }
    // What an earlier download left in `incoming`, of another version.
    let incoming = incoming_dir(config);
    let only_staged = Keep {
        installed: None,
        staged: Some(staged),
        named: Vec::new(),
        count: 0,
    };
    if incoming.is_dir() {
        if let Err(e) = storage::prune(&incoming, product, &only_staged) {
            log::warn!("deleting old downloads: {e}");
        }
    }
}

/// Writes the instruction for a staged image, through `bootloader-glue`'s
/// `request` (which verifies the image once more, backs up `cfg`, writes
/// the instruction and arms the boot loader). The storage partition must
/// be mounted where [`Config::storage_dir`] is. A refusal
/// ([`FlowError::refused_install`]) is reported to `source` as `Closed`
/// with `success: false`, as a refusal before the download is.
pub fn install(
    config: &Config,
    source: &mut dyn Source,
    staged: &Staged,
) -> Result<Requested, FlowError> {
    install_request(config, staged).inspect_err(|e| {
        if let Some(why) = e.refused_install() {
            let report = Report::Closed {
                success: false,
                details: format!("refused: {why}"),
            };
            tell(source, &staged.offer_id, &report);
        }
    })
}

/// [`install`] but for the report of a refusal.
fn install_request(config: &Config, staged: &Staged) -> Result<Requested, FlowError> {
    request::check_cfg(&config.cfg)?;
    let recovery = recovery_config(config)?;
    let trusted_keys = config
        .trusted_key_files()
        .map_err(|e| FlowError::Setup(format!("trusted keys: {e}")))?;
    let flag = formats::bootflag::BootFlag::parse(&config.bootloader)
        .map_err(|e| FlowError::Setup(format!("bootloader={}: {e}", config.bootloader)))?;
    let manifest = partition_path(config, &staged.image)?;
    let r = request::Request {
        cfg: config.cfg.clone(),
        manifest,
        target: config.target.clone(),
        allow_downgrade: false,
        config: recovery,
        trusted_keys,
        flag,
        now: now(),
        // The installed version's image, beside the new one: the agent's
        // retention keeps it (`prune`), and request refuses without it
        // unless the recovery's config says `restore-image=optional`.
        restore: request::Restore::Find,
        // The version the last restore took away is refused here as
        // before the download; only an operator allows it again.
        retry_restored: false,
    };
    // Kept before the instruction, for the report after the reboot.
    let old = installed_version(config).unwrap_or_default();
    let action = outcome::begin(
        &config.cfg,
        &staged.source,
        &staged.offer_id,
        &old,
        &staged.manifest.version,
    )?;
    let done = request::request(&r).inspect_err(|_| {
        if let Err(e) = outcome::abandon(&config.cfg, &action) {
            log::error!("{e}");
        }
    })?;
    log::info!(
        "update to {} {} requested (offer {} from {})",
        done.product,
        done.version,
        staged.offer_id,
        staged.source
    );
    Ok(done)
}

/// The staged image as the instruction names it: `PARTITION:PATH` on the
/// storage partition, where that partition is mounted.
fn partition_path(config: &Config, image: &Path) -> Result<PartitionPath, FlowError> {
    let disks = recovery::partitions::scan();
    let mount = bootloader_glue::mounts::mount_point_of(&disks, &config.storage_partition)
        .map_err(|e| {
            FlowError::Setup(format!(
                "storage-partition={}: {e}",
                config.storage_partition
            ))
        })?;
    let relative = image.strip_prefix(&mount).map_err(|_| {
        FlowError::Setup(format!(
            "{} is not on the partition {} (mounted at {}): check storage-dir= and storage-partition=",
            image.display(),
            config.storage_partition,
            mount.display()
        ))
    })?;
    let text = format!("{}:{}", config.storage_partition, relative.display());
    PartitionPath::parse(&text).ok_or_else(|| {
        FlowError::Setup(format!(
            "{text}: not a PARTITION:PATH the instruction can name"
        ))
    })
}

/// Whether a download's progress at `percent` is reported, `last` the
/// last one reported: every 10 %, and the end (100 %) always, so that a
/// server showing the progress does not stay at 97 %.
fn progress_due(last: Option<u8>, percent: u8) -> bool {
    last.is_none_or(|l| percent >= l.saturating_add(10) || (percent == 100 && l < 100))
}

#[cfg(test)]
mod tests {
    /// A power cut after any number of the renames that replace a set of
    /// three files, then the next run: storage has the old set whole or
    /// the new set whole, never a version without its manifest.
    #[test]
    fn a_cut_while_replacing_a_set_leaves_the_old_set_or_the_new_one() {
        let names = [
            "acme-2.0.manifest",
            "acme-2.0.manifest.minisig",
            "acme-2.0.tar.zst",
        ];
        let set = |dir: &Path| -> Vec<(String, String)> {
            let mut files: Vec<(String, String)> = fs::read_dir(dir)
                .unwrap()
                .filter_map(|e| {
                    let e = e.unwrap();
                    e.file_type().unwrap().is_file().then(|| {
                        let name = e.file_name().into_string().unwrap();
                        (name, fs::read_to_string(e.path()).unwrap())
                    })
                })
                .collect();
            files.sort();
            files
        };
        let with = |tag: &str| -> Vec<(String, String)> {
            names
                .iter()
                .map(|n| (n.to_string(), format!("{tag} {n}")))
                .collect()
        };
        let steps_of = |storage: &Path| {
            let incoming = storage.join(storage::INCOMING).join(names[0]);
            move_steps(&incoming, &storage.join(names[0]), names[2])
        };
        let count = {
            let dir = tempfile::tempdir().unwrap();
            for n in names {
                fs::write(dir.path().join(n), "").unwrap();
            }
            steps_of(dir.path()).len()
        };
        assert_eq!(count, 6, "three aside, three into place");
        for done in 0..=count {
            let dir = tempfile::tempdir().unwrap();
            let storage = dir.path();
            let incoming = storage.join(storage::INCOMING);
            fs::create_dir_all(incoming.join(REPLACED)).unwrap();
            for (name, text) in with("old") {
                fs::write(storage.join(name), text).unwrap();
            }
            for (name, text) in with("new") {
                fs::write(incoming.join(name), text).unwrap();
            }
            // The cut: only the first `done` renames happened.
            for (from, to) in steps_of(storage).into_iter().take(done) {
                fs::rename(from, to).unwrap();
            }
            put_back_replaced(storage).unwrap();
            let expected = if done == count {
                with("new")
            } else {
                with("old")
            };
            assert_eq!(set(storage), expected, "a cut after {done} renames");
            assert!(!incoming.join(REPLACED).exists());
        }
        // Uninterrupted: the new set, nothing aside.
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path();
        let incoming = storage.join(storage::INCOMING);
        fs::create_dir_all(&incoming).unwrap();
        for (name, text) in with("old") {
            fs::write(storage.join(name), text).unwrap();
        }
        for (name, text) in with("new") {
            fs::write(incoming.join(name), text).unwrap();
        }
        move_into_place(&incoming.join(names[0]), &storage.join(names[0]), names[2]).unwrap();
        assert_eq!(set(storage), with("new"));
        assert!(!incoming.exists());
        // A rename that fails names both paths.
        fs::create_dir_all(&incoming).unwrap();
        let e = move_into_place(&incoming.join(names[0]), &storage.join(names[0]), names[2])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "moving {} to {}: ",
                incoming.join(names[2]).display(),
                storage.join(names[2]).display()
            )),
            "{e}"
        );
        // ... and the next run puts back what it had moved aside.
        put_back_replaced(storage).unwrap();
        assert_eq!(set(storage), with("new"));
    }

    #[test]
    fn progress_is_reported_every_ten_percent_and_at_the_end() {
        use super::progress_due;
        assert!(progress_due(None, 3));
        assert!(!progress_due(Some(3), 12));
        assert!(progress_due(Some(3), 13));
        assert!(progress_due(Some(97), 100));
        assert!(!progress_due(Some(100), 100));
    }

    use super::*;
    use crate::source::Mode;

    fn offer(names: &[&str]) -> Offer {
        Offer {
            id: "7".into(),
            version: Some("2.0".into()),
            artifacts: names
                .iter()
                .map(|n| Artifact {
                    name: n.to_string(),
                    url: format!("http://127.0.0.1:1/acme/{n}"),
                    size: None,
                })
                .collect(),
            download: Mode::Attempt,
            install: Mode::Attempt,
            window_open: true,
        }
    }

    #[test]
    fn an_offer_is_one_bundle_or_a_manifest_with_its_signature() {
        assert!(matches!(
            layout(&offer(&["acme-2.0.swu"])).unwrap(),
            Layout::Bundle(_)
        ));
        assert!(matches!(
            layout(&offer(&[
                "acme-2.0.manifest",
                "acme-2.0.manifest.minisig",
                "acme-2.0.tar.zst"
            ]))
            .unwrap(),
            Layout::Files { .. }
        ));
        for (names, needle) in [
            (&[][..], "no files"),
            (&["a.swu", "b.swu"][..], "expected one bundle"),
            (
                &["acme-2.0.manifest", "acme-2.0.tar.zst"][..],
                "no acme-2.0.manifest.minisig",
            ),
            (&["../x.swu"][..], "plain name"),
            (&["notes.txt"][..], "expected one bundle"),
        ] {
            let err = layout(&offer(names)).unwrap_err().to_string();
            assert!(err.contains(needle), "{names:?}: {err}");
        }
        let mut bad_url = offer(&["acme-2.0.swu"]);
        bad_url.artifacts[0].url = "file:///etc/shadow".into();
        let err = layout(&bad_url).unwrap_err().to_string();
        assert!(err.contains("http://"), "{err}");
    }

    #[test]
    fn the_storage_directory_is_never_created() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            storage_dir: dir.path().join("updates"),
            ..Config::default()
        };
        let err = check_storage_dir(&config).unwrap_err().to_string();
        assert!(err.contains("updates: not a directory"), "{err}");
        assert!(!config.storage_dir.exists());
        fs::create_dir(&config.storage_dir).unwrap();
        check_storage_dir(&config).unwrap();
    }

    #[test]
    fn a_request_refusing_the_image_or_its_restore_image_is_a_refusal_with_its_reason() {
        let image = FlowError::Install(RequestError::Image(UpdateError::new(
            Stage::Policy,
            "storage:updates/acme-2.0.swu",
            "version: 2.0 was restored away",
        )));
        assert_eq!(
            image.refused_install().as_deref(),
            Some(
                "the staged image: policy: storage:updates/acme-2.0.swu: version: 2.0 was \
                 restored away"
            )
        );
        let restore = FlowError::Install(RequestError::NoRestore(
            "restore image /storage/acme-1.0.swu: signature: x: a failed update could not be \
             undone"
                .into(),
        ));
        assert!(restore
            .refused_install()
            .unwrap()
            .starts_with("restore image /storage/acme-1.0.swu: signature: "));
        // Not a refusal of the image: the lock, cfg, the boot loader.
        let locked = FlowError::Install(RequestError::Locked {
            path: "/cfg/update/lock".into(),
        });
        assert_eq!(locked.refused_install(), None);
        assert_eq!(FlowError::Setup("x".into()).refused_install(), None);
    }

    #[test]
    fn only_damage_on_the_way_is_worth_another_attempt() {
        let e = |stage| UpdateError::new(stage, "f", "r");
        assert!(AttemptError::Verify(e(Stage::Payload)).retryable());
        assert!(!AttemptError::Verify(e(Stage::Contents)).retryable());
        assert!(!AttemptError::Refused(e(Stage::Signature)).retryable());
    }
}
