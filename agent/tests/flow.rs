//! The agent's flow against the static feed on the fault-injecting test
//! server: the signature before the payload, the warning flag, free space
//! and old images, a corrupt bundle fetched again.

mod server;

use agent::config::{Config, FeedLayout};
use agent::feed::Feed;
use agent::flow::{self, AttemptError, FlowError};
use agent::http::{Client, HttpConfig};
use agent::retry::Policy;
use agent::source::{Check, Offer, Source};
use bootloader_glue::status::{records, Code};
use formats::cfg::{DownloadFailed, DOWNLOAD_FAILED, INSTALLED};
use recovery::Stage;
use server::{noise, Fault, Plan, Server};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

const PRODUCT: &str = "acme";

/// An image of 2.0 (three files and the bundle), signed by a trusted key
/// or by another one; the device's keys, recovery.conf, cfg and storage.
struct Fixture {
    dir: tempfile::TempDir,
    trusted: PathBuf,
    /// `(path on the server, bytes)` of the image's files.
    files: Vec<(String, Vec<u8>)>,
    bundle_len: u64,
    payload_len: u64,
}

impl Fixture {
    fn new(signed_by_trusted: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let tree = root.join("tree");
        fs::create_dir_all(&tree).unwrap();
        fs::write(tree.join("big"), noise(600_000, 7)).unwrap();
        fs::write(tree.join("hello"), "hello\n").unwrap();
        let (trusted, trusted_secret) =
            image_builder::keygen::keygen(&root.join("vendor")).unwrap();
        let (_, other_secret) = image_builder::keygen::keygen(&root.join("stranger")).unwrap();
        let key = if signed_by_trusted {
            trusted_secret
        } else {
            other_secret
        };
        let mut files = vec![(format!("/{PRODUCT}/latest"), b"2.0\n".to_vec())];
        files.extend(server::publish(
            &tree,
            PRODUCT,
            "2.0",
            key,
            &root.join("out"),
        ));
        fs::write(root.join("recovery.conf"), format!("product={PRODUCT}\n")).unwrap();
        fs::create_dir_all(root.join("cfg/update")).unwrap();
        fs::create_dir_all(root.join("storage")).unwrap();
        let len_of = |name: &str| {
            files
                .iter()
                .find(|(p, _)| p.ends_with(name))
                .unwrap()
                .1
                .len() as u64
        };
        let (bundle_len, payload_len) = (len_of(".swu"), len_of(".tar.zst"));
        assert!(
            payload_len > formats::bundle::HEAD_MAX as u64,
            "the test needs a payload larger than a bundle's head"
        );
        Fixture {
            dir,
            trusted,
            files,
            bundle_len,
            payload_len,
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn cfg(&self) -> PathBuf {
        self.root().join("cfg")
    }

    fn storage(&self) -> PathBuf {
        self.root().join("storage")
    }

    fn config(&self, server: &Server, layout: FeedLayout) -> Config {
        Config {
            feed: Some(format!("http://{}", server.addr())),
            feed_layout: layout,
            recovery_config: self.root().join("recovery.conf"),
            trusted_keys: vec![self.trusted.clone()],
            storage_dir: self.storage(),
            cfg: self.cfg(),
            retry: Policy {
                attempts: 10,
                first_wait: Duration::from_millis(1),
                max_wait: Duration::from_millis(2),
            },
            min_free: 0,
            read_timeout: Duration::from_secs(5),
            ..Config::default()
        }
    }

    fn server(&self, plan: Plan) -> Server {
        Server::start_files(self.files.clone(), plan)
    }

    /// Records `version` as the installed one on cfg.
    fn install(&self, version: &str) {
        let installed = formats::result::Installed {
            product: PRODUCT.into(),
            version: version.into(),
        };
        fs::write(self.cfg().join(INSTALLED), installed.render()).unwrap();
    }

    /// Puts files named `names` (their name their content) on storage.
    fn put(&self, names: &[&str]) {
        for name in names {
            fs::write(self.storage().join(name), name).unwrap();
        }
    }

    fn storage_names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.storage())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

fn feed(config: &Config) -> Feed {
    let client = Client::new(&HttpConfig {
        read_timeout: Duration::from_secs(5),
        ..HttpConfig::default()
    })
    .unwrap();
    Feed::new(
        client,
        config.feed.as_deref().unwrap(),
        PRODUCT,
        config.feed_layout,
    )
}

fn offer(config: &Config, source: &mut dyn Source) -> Offer {
    match flow::check(config, source).unwrap() {
        Check::Offer(offer) => offer,
        other => panic!("expected an offer, got {other:?}"),
    }
}

const BUNDLE: &str = "/acme/acme-2.0.swu";

#[test]
fn a_bundle_is_admitted_by_its_head_then_downloaded_and_verified() {
    let fx = Fixture::new(true);
    let server = fx.server(Plan::good());
    let config = fx.config(&server, FeedLayout::Bundle);
    let mut source = feed(&config);
    let offer = offer(&config, &mut source);
    assert_eq!(offer.version.as_deref(), Some("2.0"));
    let staged = flow::stage(&config, &mut source, &offer).unwrap();
    assert_eq!(staged.image, fx.storage().join("acme-2.0.swu"));
    assert_eq!(staged.manifest.version, "2.0");
    assert_eq!(staged.attempts, 1);
    assert_eq!(fs::metadata(&staged.image).unwrap().len(), fx.bundle_len);
    // The head (one Range request), then the whole bundle.
    assert_eq!(
        server.served_of(BUNDLE),
        formats::bundle::HEAD_MAX as u64 + fx.bundle_len
    );
    // A second stage finds it on storage and fetches no byte of it.
    let again = flow::stage(&config, &mut source, &offer).unwrap();
    assert_eq!(again.fetched, 0);
    assert_eq!(
        server.served_of(BUNDLE),
        2 * formats::bundle::HEAD_MAX as u64 + fx.bundle_len
    );
    // Installed now: the feed offers nothing.
    let installed = formats::result::Installed {
        product: PRODUCT.into(),
        version: "2.0".into(),
    };
    fs::write(fx.cfg().join(INSTALLED), installed.render()).unwrap();
    assert!(matches!(
        flow::check(&config, &mut source).unwrap(),
        Check::Nothing { .. }
    ));
}

#[test]
fn three_files_are_admitted_by_manifest_and_signature_then_the_payload_follows() {
    let fx = Fixture::new(true);
    let server = fx.server(Plan::good());
    let config = fx.config(&server, FeedLayout::Files);
    let mut source = feed(&config);
    let offer = offer(&config, &mut source);
    let staged = flow::stage(&config, &mut source, &offer).unwrap();
    assert_eq!(staged.image, fx.storage().join("acme-2.0.manifest"));
    assert_eq!(server.served_of("/acme/acme-2.0.tar.zst"), fx.payload_len);
    assert_eq!(
        fx.storage_names(),
        [
            "acme-2.0.manifest",
            "acme-2.0.manifest.minisig",
            "acme-2.0.tar.zst"
        ]
    );
}

#[test]
fn an_untrusted_signature_is_refused_before_a_byte_of_payload() {
    let fx = Fixture::new(false);
    let server = fx.server(Plan::good());
    let config = fx.config(&server, FeedLayout::Bundle);
    let mut source = feed(&config);
    let offer = offer(&config, &mut source);
    let err = flow::stage(&config, &mut source, &offer).unwrap_err();
    let refused = err
        .refused()
        .unwrap_or_else(|| panic!("not refused: {err}"));
    assert_eq!(refused.stage, Stage::Signature, "{err}");
    // One attempt, and only the head was served: no payload byte.
    assert_eq!(
        server.served_of(BUNDLE),
        formats::bundle::HEAD_MAX as u64,
        "{err}"
    );
    assert!(fx.storage_names().is_empty(), "{:?}", fx.storage_names());

    // The same with three files: the manifest and the signature only.
    let config = fx.config(&server, FeedLayout::Files);
    let mut source = feed(&config);
    let offer = self::offer(&config, &mut source);
    let err = flow::stage(&config, &mut source, &offer).unwrap_err();
    assert_eq!(
        err.refused().map(|e| e.stage),
        Some(Stage::Signature),
        "{err}"
    );
    assert_eq!(server.served_of("/acme/acme-2.0.tar.zst"), 0);
    assert!(server.served_of("/acme/acme-2.0.manifest") > 0);
}

#[test]
fn ten_failures_set_the_warning_flag_and_a_good_download_clears_it() {
    let fx = Fixture::new(true);
    // `latest` answers; every request after it fails.
    let broken = fx.server(Plan {
        first: vec![Fault::None],
        then: Fault::Status500,
    });
    let config = fx.config(&broken, FeedLayout::Bundle);
    let mut source = feed(&config);
    let offer = offer(&config, &mut source);
    let err = flow::stage(&config, &mut source, &offer).unwrap_err();
    let FlowError::Stage { failure, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(failure.errors.len(), 10, "{err}");
    assert!(matches!(failure.errors[9], AttemptError::Fetch { .. }));
    let record = fs::read(fx.cfg().join(DOWNLOAD_FAILED)).unwrap();
    let record = DownloadFailed::parse(&record).unwrap();
    assert_eq!(record.attempts, 10);
    assert!(record.reason.contains("HTTP 500"), "{}", record.reason);

    // What monitoring sees: WARNING (exit code 1) with the reason.
    let status = records(&fx.cfg());
    assert_eq!(status.code, Code::Warning, "{}", status.line());
    assert_eq!(status.code as i32, 1);
    assert!(
        status
            .line()
            .starts_with("WARNING: update download failed: "),
        "{}",
        status.line()
    );
    assert!(status.line().contains("HTTP 500"), "{}", status.line());
    assert!(
        status.json().contains("\"download_failed\":"),
        "{}",
        status.json()
    );

    // A later complete, verified download clears it.
    let good = fx.server(Plan::good());
    let config = fx.config(&good, FeedLayout::Bundle);
    let mut source = feed(&config);
    let offer = self::offer(&config, &mut source);
    flow::stage(&config, &mut source, &offer).unwrap();
    assert!(!fx.cfg().join(DOWNLOAD_FAILED).exists());
    let status = records(&fx.cfg());
    assert_eq!(status.code, Code::Ok, "{}", status.line());
}

#[test]
fn a_bundle_damaged_on_the_way_is_refused_and_fetched_again() {
    let fx = Fixture::new(true);
    // latest, head, then the bundle with a wrong byte in its payload.
    let server = fx.server(Plan::first(vec![
        Fault::None,
        Fault::None,
        Fault::WrongByte(fx.bundle_len / 2),
    ]));
    let config = fx.config(&server, FeedLayout::Bundle);
    let mut source = feed(&config);
    let offer = offer(&config, &mut source);
    let staged = flow::stage(&config, &mut source, &offer).unwrap();
    assert_eq!(staged.attempts, 2);
    assert_eq!(
        server.served_of(BUNDLE),
        formats::bundle::HEAD_MAX as u64 + 2 * fx.bundle_len
    );
    assert!(!fx.cfg().join(DOWNLOAD_FAILED).exists());
}

#[test]
fn too_little_free_space_is_refused_before_the_download_naming_dir_and_numbers() {
    let fx = Fixture::new(true);
    let server = fx.server(Plan::good());
    let mut config = fx.config(&server, FeedLayout::Bundle);
    config.min_free = u64::MAX / 4;
    let mut source = feed(&config);
    let offer = offer(&config, &mut source);
    let err = flow::stage(&config, &mut source, &offer)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not enough free space"), "{err}");
    assert!(err.contains(&fx.storage().display().to_string()), "{err}");
    assert!(err.contains(&fx.bundle_len.to_string()), "{err}");
    assert_eq!(server.served_of(BUNDLE), formats::bundle::HEAD_MAX as u64);
}

/// Stages 2.0 on a device with 1.0 installed, `names` in its storage
/// directory and `instruction` pending; returns the names left there.
fn stage_beside(
    names: &[&str],
    instruction: Option<formats::instruction::Instruction>,
) -> Vec<String> {
    let fx = Fixture::new(true);
    fx.install("1.0");
    fx.put(names);
    if let Some(instruction) = instruction {
        fs::write(
            fx.cfg().join(formats::cfg::INSTRUCTION),
            instruction.render(),
        )
        .unwrap();
    }
    let server = fx.server(Plan::good());
    let config = fx.config(&server, FeedLayout::Bundle);
    let mut source = feed(&config);
    let offer = offer(&config, &mut source);
    flow::stage(&config, &mut source, &offer).unwrap();
    fx.storage_names()
}

#[test]
fn old_images_are_deleted_after_a_download_but_not_the_installed_one() {
    let left = stage_beside(
        &[
            "acme-1.0.swu",
            "acme-1.5.swu",
            "acme-1.6.swu.part",
            "notes.txt",
        ],
        None,
    );
    assert_eq!(left, ["acme-1.0.swu", "acme-2.0.swu", "notes.txt"]);
}

#[test]
fn a_pending_instruction_keeps_its_image_and_its_restore_image() {
    use formats::instruction::{Instruction, PartitionPath};
    let instruction = Instruction {
        manifest: PartitionPath::parse("storage:updates/acme-1.5.swu").unwrap(),
        target: "system".into(),
        allow_downgrade: false,
        requested: 1_700_000_000,
        restore: PartitionPath::parse("storage:updates/acme-1.2.swu"),
    };
    let left = stage_beside(
        &[
            "acme-1.0.swu",
            "acme-1.2.swu",
            "acme-1.5.swu",
            "acme-1.6.swu",
        ],
        Some(instruction),
    );
    assert_eq!(
        left,
        [
            "acme-1.0.swu",
            "acme-1.2.swu",
            "acme-1.5.swu",
            "acme-2.0.swu"
        ]
    );
}

/// On trial, 1.5 is installed and 1.0's image is what the recovery
/// restores if 1.5 is not confirmed: the download of 2.0 deletes neither
/// (nor 1.0's signature and payload), only the other old image.
#[test]
fn old_images_are_deleted_but_never_the_image_a_restore_needs() {
    use formats::cfg::TRIAL;
    use formats::instruction::PartitionPath;
    use formats::trial::Trial;
    let fx = Fixture::new(true);
    fx.install("1.5");
    let restore = PartitionPath::parse("storage:updates/acme-1.0.manifest").unwrap();
    let trial = Trial::fixture("1.5", "1.0", restore);
    fs::write(fx.cfg().join(TRIAL), trial.render()).unwrap();
    fx.put(&[
        "acme-1.0.manifest",
        "acme-1.0.manifest.minisig",
        "acme-1.0.tar.zst",
        "acme-1.2.swu",
        "acme-1.5.swu",
    ]);
    let server = fx.server(Plan::good());
    let config = Config {
        keep: 1,
        ..fx.config(&server, FeedLayout::Bundle)
    };
    let mut source = feed(&config);
    let offer = offer(&config, &mut source);
    flow::stage(&config, &mut source, &offer).unwrap();
    assert_eq!(
        fx.storage_names(),
        [
            "acme-1.0.manifest",
            "acme-1.0.manifest.minisig",
            "acme-1.0.tar.zst",
            "acme-1.5.swu",
            "acme-2.0.swu"
        ]
    );
    // A trial record that cannot be read may name any image: none goes.
    fs::write(fx.cfg().join(TRIAL), "torn").unwrap();
    fs::write(fx.storage().join("acme-1.2.swu"), "x").unwrap();
    flow::stage(&config, &mut source, &offer).unwrap();
    assert!(fx.storage_names().contains(&"acme-1.2.swu".to_string()));
    // Nor an `update/installed` that cannot be read: the installed
    // version, whose image a restore needs, is unknown.
    fs::write(fx.cfg().join(TRIAL), trial.render()).unwrap();
    fs::write(fx.cfg().join(INSTALLED), "torn").unwrap();
    flow::stage(&config, &mut source, &offer).unwrap();
    assert!(fx.storage_names().contains(&"acme-1.2.swu".to_string()));
    assert!(fx.storage_names().contains(&"acme-1.5.swu".to_string()));
}

#[test]
fn a_server_that_ignores_range_still_gives_the_head_and_the_bundle() {
    let fx = Fixture::new(true);
    // latest, then the head asked by Range and answered 200 with the whole file.
    let server = fx.server(Plan::first(vec![Fault::None, Fault::IgnoreRange]));
    let config = fx.config(&server, FeedLayout::Bundle);
    let mut source = feed(&config);
    let offer = offer(&config, &mut source);
    let staged = flow::stage(&config, &mut source, &offer).unwrap();
    assert_eq!(fs::metadata(&staged.image).unwrap().len(), fx.bundle_len);
}

#[test]
fn a_hostile_latest_is_refused_by_check() {
    let mut fx = Fixture::new(true);
    fx.files[0].1 = b"../../../etc/passwd\n".to_vec();
    let server = fx.server(Plan::good());
    let config = fx.config(&server, FeedLayout::Bundle);
    let mut source = feed(&config);
    let err = flow::check(&config, &mut source).unwrap_err().to_string();
    assert!(
        err.contains("refused") && err.contains("expected one line with a version"),
        "{err}"
    );
    fx.files[0].1 = vec![b'1'; 4096];
    let server = fx.server(Plan::good());
    let config = fx.config(&server, FeedLayout::Bundle);
    let mut source = feed(&config);
    let err = flow::check(&config, &mut source).unwrap_err().to_string();
    assert!(err.contains("larger than the 256 bytes"), "{err}");
}

/// The trusted key's secret half, to sign a manifest of the test's own.
fn sign_as_vendor(fx: &Fixture, manifest: &[u8]) -> Vec<u8> {
    let (_, secret) = image_builder::keygen::key_paths(&fx.root().join("vendor"));
    let secret = image_builder::keygen::load_secret_key(&secret).unwrap();
    image_builder::sign::SigningKey::from_minisign(&secret)
        .sign(manifest, "test", "test")
        .into_bytes()
}

/// The offer of three files at `paths` on `server`, named as the server
/// names them (as a hawkBit server names the files a vendor uploaded).
fn offer_of(server: &Server, paths: &[&str]) -> Offer {
    Offer {
        id: "7".into(),
        version: Some("2.0".into()),
        artifacts: paths
            .iter()
            .map(|p| agent::source::Artifact {
                name: p.rsplit('/').next().unwrap().to_string(),
                url: server.url(p.trim_start_matches('/')),
                size: None,
            })
            .collect(),
        download: agent::source::Mode::Attempt,
        install: agent::source::Mode::Attempt,
        window_open: true,
    }
}

/// A signed 2.0 manifest that names 1.0's payload file: the agent would
/// have written 2.0's payload over 1.0's, the restore image. It is refused
/// before a byte of the payload is fetched or written.
#[test]
fn a_manifest_naming_another_versions_payload_is_refused_before_a_byte_is_written() {
    let mut fx = Fixture::new(true);
    fx.install("1.0");
    fx.put(&[
        "acme-1.0.manifest",
        "acme-1.0.manifest.minisig",
        "acme-1.0.tar.zst",
    ]);
    let bytes = |suffix: &str| {
        fx.files
            .iter()
            .find(|(p, _)| p.ends_with(suffix))
            .unwrap()
            .1
            .clone()
    };
    let mut manifest = formats::manifest::Manifest::parse(&bytes("2.0.manifest")).unwrap();
    manifest.payload = "acme-1.0.tar.zst".into();
    let manifest = manifest.render().into_bytes();
    let signature = sign_as_vendor(&fx, &manifest);
    let payload = bytes("2.0.tar.zst");
    fx.files.extend([
        ("/evil/acme-2.0.manifest".to_string(), manifest),
        ("/evil/acme-2.0.manifest.minisig".to_string(), signature),
        ("/evil/acme-1.0.tar.zst".to_string(), payload),
    ]);
    let server = fx.server(Plan::good());
    let config = fx.config(&server, FeedLayout::Files);
    let mut source = feed(&config);
    let offer = offer_of(
        &server,
        &[
            "/evil/acme-2.0.manifest",
            "/evil/acme-2.0.manifest.minisig",
            "/evil/acme-1.0.tar.zst",
        ],
    );
    let err = flow::stage(&config, &mut source, &offer).unwrap_err();
    let refused = err
        .refused()
        .unwrap_or_else(|| panic!("not refused: {err}"));
    assert_eq!(refused.stage, Stage::Manifest, "{err}");
    assert!(
        refused.reason.contains("expected acme-2.0.tar.zst"),
        "{err}"
    );
    assert_eq!(server.served_of("/evil/acme-1.0.tar.zst"), 0);
    assert_eq!(
        fs::read(fx.storage().join("acme-1.0.tar.zst")).unwrap(),
        b"acme-1.0.tar.zst",
        "1.0's payload was overwritten"
    );
    assert_eq!(
        fx.storage_names(),
        [
            "acme-1.0.manifest",
            "acme-1.0.manifest.minisig",
            "acme-1.0.tar.zst"
        ]
    );
}

/// 2.0 is on storage, verified; the server then offers another 2.0 (other
/// files, signed all the same) whose payload never arrives. The files on
/// storage stay the verified set: the new manifest does not replace the
/// old one beside the old payload. A later complete download replaces all
/// three together.
#[test]
fn a_failed_download_of_a_reoffered_version_keeps_the_verified_set() {
    let fx = Fixture::new(true);
    stage_files(&fx, &fx.server(Plan::good())).unwrap();
    let before = stored(&fx);
    let files = another_2_0(&fx);
    // latest, manifest, signature; then every request fails.
    let broken = Server::start_files(
        files.clone(),
        Plan {
            first: vec![Fault::None, Fault::None, Fault::None],
            then: Fault::Status500,
        },
    );
    stage_files(&fx, &broken).unwrap_err();
    assert!(
        before == stored(&fx),
        "the verified 2.0 on storage was changed"
    );
    let keys = recovery::keys::load(std::slice::from_ref(&fx.trusted)).unwrap();
    recovery::verify::verify(&fx.storage().join("acme-2.0.manifest"), &keys).unwrap();

    // The new 2.0, complete: all three replaced, nothing left aside.
    stage_files(&fx, &Server::start_files(files.clone(), Plan::good())).unwrap();
    let manifest = files
        .iter()
        .find(|(p, _)| p.ends_with(".manifest"))
        .unwrap();
    assert_eq!(
        fs::read(fx.storage().join("acme-2.0.manifest")).unwrap(),
        manifest.1
    );
    recovery::verify::verify(&fx.storage().join("acme-2.0.manifest"), &keys).unwrap();
    assert_eq!(
        fx.storage_names(),
        [
            "acme-2.0.manifest",
            "acme-2.0.manifest.minisig",
            "acme-2.0.tar.zst"
        ]
    );
}

/// Another 2.0 (other bytes in its tree, signed by the trusted key): the
/// files of the feed that offers it.
fn another_2_0(fx: &Fixture) -> Vec<(String, Vec<u8>)> {
    let tree = fx.root().join("tree-b");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("big"), noise(600_000, 9)).unwrap();
    let (_, secret) = image_builder::keygen::key_paths(&fx.root().join("vendor"));
    let mut files = vec![(format!("/{PRODUCT}/latest"), b"2.0\n".to_vec())];
    files.extend(server::publish(
        &tree,
        PRODUCT,
        "2.0",
        secret,
        &fx.root().join("out-b"),
    ));
    files
}

/// 2.0 is installed and its image on storage; the server offers a
/// rebuild of 2.0 (other bytes, signed all the same, as after a key
/// rotation). The installed version's image is what a restore comes from
/// and it verifies: it is kept, not replaced in place, and the rebuild's
/// payload is not fetched; the staged image is the one on storage.
#[test]
fn a_reoffered_installed_version_keeps_its_verified_set() {
    let fx = Fixture::new(true);
    stage_files(&fx, &fx.server(Plan::good())).unwrap();
    fx.install("2.0");
    let before = stored(&fx);
    let server = Server::start_files(another_2_0(&fx), Plan::good());
    // Offered again by a fleet server (a feed offers no installed version).
    let config = fx.config(&server, FeedLayout::Files);
    let offer = offer_of(
        &server,
        &[
            "/acme/acme-2.0.manifest",
            "/acme/acme-2.0.manifest.minisig",
            "/acme/acme-2.0.tar.zst",
        ],
    );
    let staged = flow::stage(&config, &mut feed(&config), &offer).unwrap();
    assert!(
        before == stored(&fx),
        "the installed 2.0's image was replaced"
    );
    assert_eq!(staged.fetched, 0);
    assert_eq!(server.served_of("/acme/acme-2.0.tar.zst"), 0);
    let (_, manifest) = before
        .iter()
        .find(|(n, _)| n == "acme-2.0.manifest")
        .unwrap();
    assert_eq!(
        staged.manifest,
        formats::manifest::Manifest::parse(manifest).unwrap()
    );
}

/// Checks the feed on `server` and stages its offer of three files.
fn stage_files(fx: &Fixture, server: &Server) -> Result<flow::Staged, FlowError> {
    let config = fx.config(server, FeedLayout::Files);
    let mut source = feed(&config);
    let offer = offer(&config, &mut source);
    flow::stage(&config, &mut source, &offer)
}

/// The files in the storage directory (not `.incoming`) with their bytes.
fn stored(fx: &Fixture) -> Vec<(String, Vec<u8>)> {
    fx.storage_names()
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .map(|n| {
            let bytes = fs::read(fx.storage().join(&n)).unwrap();
            (n, bytes)
        })
        .collect()
}
