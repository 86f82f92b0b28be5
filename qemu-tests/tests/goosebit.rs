//! A bundle is what a fleet server takes: gooseBit (the real server, from
//! PyPI, on 127.0.0.1) accepts `image-builder bundle`'s output on upload and
//! reads its version and hardware compatibility from the `sw-description`.

use image_builder::bundle::{self, BundleRequest};
use qemu_tests::goosebit::Server;
use qemu_tests::scenario::{sample_rootfs, Device, PRODUCT};
use std::process::Command;

#[test]
fn goosebit_accepts_a_bundle_on_upload() {
    let device = Device::new("1.0");
    let v2 = sample_rootfs(device.dir.path(), "2.0");
    let (_, key) = image_builder::keygen::keygen(&device.dir.path().join("k")).unwrap();
    let img = device.stage_with(PRODUCT, "2.0", &v2, &key, false);
    let b = bundle::build(&BundleRequest {
        manifest: img.manifest_path.clone(),
        out_dir: device.storage.join("updates"),
        hardware: vec!["1.0".into(), "1.1".into()],
    })
    .unwrap();

    let server = Server::start();
    // Not a bundle: refused, so the upload below is judged, not waved through.
    let refused = server.upload(&img.manifest_path);
    assert_eq!(refused.status, 422, "{}", refused.body);

    let uploaded = server.upload(&b.path);
    assert_eq!(uploaded.status, 200, "{}\n{}", uploaded.body, server.log());
    let id = uploaded.json()["id"].clone();
    let list = server.request("GET", "/api/v1/software", &[]).json();
    let software = &list["software"][0];
    assert_eq!(software["id"], id, "{list}");
    assert_eq!(software["version"], "2.0", "{list}");
    assert_eq!(software["name"], "demo-2.0.swu", "{list}");
    assert_eq!(software["size"], b.size, "{list}");
    let sha1 = Command::new("sha1sum").arg(&b.path).output().unwrap();
    let sha1 = String::from_utf8_lossy(&sha1.stdout);
    assert_eq!(
        software["hash"].as_str(),
        sha1.split_whitespace().next(),
        "{list}"
    );
    let compatibility: Vec<(String, String)> = software["compatibility"]
        .as_array()
        .expect("a compatibility list")
        .iter()
        .map(|c| {
            (
                c["model"].as_str().unwrap().to_string(),
                c["revision"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        compatibility,
        [
            ("demo".to_string(), "1.0".to_string()),
            ("demo".to_string(), "1.1".to_string())
        ]
    );
    // The same version and hardware again: gooseBit knows it already.
    let again = server.upload(&b.path);
    assert_eq!(again.status, 409, "{}", again.body);
}

// The agent's hawkBit source against the real gooseBit: it registers, is
// offered the uploaded bundle, downloads and verifies it, reports at each
// stage, and gooseBit's own state (its REST API) shows what it reported.

mod agent_on_goosebit {
    use agent::download::{self, Request};
    use agent::hawkbit::{Config, Hawkbit, Token};
    use agent::http::{Client, HttpConfig};
    use agent::retry::Policy;
    use agent::source::{Check, Mode, Offer, Report, Source, SourceError};
    use formats::signature::TrustedKey;
    use image_builder::bundle::{self, BundleRequest, BundleSummary};
    use qemu_tests::goosebit::Server;
    use qemu_tests::scenario::{sample_rootfs, Device, PRODUCT};
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    /// A signed 2.0 bundle for hardware revision 1.0, and the public key
    /// of the key that signed it.
    fn bundle_2_0(device: &Device, key_name: &str) -> (BundleSummary, PathBuf) {
        let v2 = sample_rootfs(device.dir.path(), "2.0");
        let (key_pub, key) =
            image_builder::keygen::keygen(&device.dir.path().join(key_name)).unwrap();
        let img = device.stage_with(PRODUCT, "2.0", &v2, &key, false);
        let b = bundle::build(&BundleRequest {
            manifest: img.manifest_path.clone(),
            out_dir: device.dir.path().join("out"),
            hardware: vec!["1.0".into()],
        })
        .unwrap();
        (b, key_pub)
    }

    fn config(server: &Server, id: &str, token: Option<Token>) -> Config {
        Config {
            server: server.base.clone(),
            tenant: "DEFAULT".into(),
            controller_id: id.into(),
            token,
            other_hosts: vec![],
            attributes: vec![
                ("hw_boardname".into(), PRODUCT.into()),
                ("hw_revision".into(), "1.0".into()),
            ],
            poll: Duration::from_secs(60),
        }
    }

    fn source(config: &Config) -> Hawkbit {
        Hawkbit::new(config.clone(), &HttpConfig::default()).unwrap()
    }

    fn offered(check: Check) -> Offer {
        match check {
            Check::Offer(offer) => offer,
            other => panic!("expected an offer, got {other:?}"),
        }
    }

    /// Downloads the offer's one artifact as the flow does (size from the
    /// offer, BLAKE3 of what the vendor built), reporting progress, then
    /// checks it against gooseBit's sha1.
    fn fetch(
        source: &mut Hawkbit,
        config: &Config,
        offer: &Offer,
        built: &Path,
        into: &Path,
    ) -> PathBuf {
        assert_eq!(offer.artifacts.len(), 1, "{offer:?}");
        let artifact = &offer.artifacts[0];
        let client = Client::new(&HttpConfig {
            authorization: config.authorization(),
            ..HttpConfig::default()
        })
        .unwrap();
        let bytes = std::fs::read(built).unwrap();
        let request = Request {
            url: artifact.url.clone(),
            dir: into.to_path_buf(),
            name: artifact.name.clone(),
            size: artifact.size,
            blake3: Some(*blake3::hash(&bytes).as_bytes()),
            max_size: 1 << 30,
        };
        let policy = Policy {
            attempts: 3,
            first_wait: Duration::from_millis(10),
            max_wait: Duration::from_millis(10),
        };
        let mut failed = None;
        let done =
            download::with_retries(&client, &request, &policy, std::thread::sleep, &mut |p| {
                let percent = p.total.map(|t| (p.done * 100 / t.max(1)) as u8);
                if let Err(e) = source.report(
                    &offer.id,
                    &Report::Proceeding {
                        what: format!("downloading {}", artifact.name),
                        percent,
                    },
                ) {
                    failed = Some(e);
                }
            })
            .unwrap_or_else(|e| panic!("download: {e}"));
        assert!(failed.is_none(), "progress report: {failed:?}");
        source
            .check_artifact(&offer.id, &artifact.name, &done.path)
            .unwrap_or_else(|e| panic!("gooseBit's sha1: {e}"));
        done.path
    }

    /// Takes the offer: `proceeding` at once (it holds the cluster slot).
    fn accept(source: &mut Hawkbit, id: &str) {
        let accepted = Report::Proceeding {
            what: "accepted".into(),
            percent: None,
        };
        source.report(id, &accepted).unwrap();
    }

    fn verify(path: &Path, key_pub: &Path) -> Result<String, String> {
        let key =
            TrustedKey::parse("vendor.pub", &std::fs::read_to_string(key_pub).unwrap()).unwrap();
        recovery::verify::verify(path, &[key])
            .map(|v| v.manifest.version)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_agent_registers_downloads_verifies_and_reports_to_goosebit() {
        let device = Device::new("1.0");
        let (b, key_pub) = bundle_2_0(&device, "vendor");
        let server = Server::start();
        let software = server.roll_out(&b.path);
        let config = config(&server, "dev-1", None);
        let mut hawkbit = source(&config);

        // The first poll registers the device (configData with the
        // installed version and hardware), and the offer follows at once.
        let offer = offered(hawkbit.check(Some("1.0")).unwrap());
        let dev = server.device("dev-1");
        assert_eq!(dev["hardware"]["model"], PRODUCT, "{dev}");
        assert_eq!(dev["hardware"]["revision"], "1.0", "{dev}");
        assert_eq!(dev["sw_version"], "1.0", "{dev}");
        assert_eq!(offer.id, software.to_string());
        assert_eq!(offer.version.as_deref(), Some("2.0"));
        assert_eq!(
            (offer.download, offer.install, offer.window_open),
            (Mode::Forced, Mode::Forced, true)
        );
        assert_eq!(offer.artifacts[0].name, "demo-2.0.swu");
        assert_eq!(offer.artifacts[0].size, Some(b.size));

        accept(&mut hawkbit, &offer.id);
        assert_eq!(server.device("dev-1")["last_state"], "Running");
        let into = device.storage.join("updates");
        let path = fetch(&mut hawkbit, &config, &offer, &b.path, &into);
        assert_eq!(verify(&path, &key_pub), Ok("2.0".to_string()));
        hawkbit.report(&offer.id, &Report::Downloaded).unwrap();
        let (log, progress) = server.device_log("dev-1");
        assert!(
            log.contains("downloading demo-2.0.swu: Downloaded 100%"),
            "{log}"
        );
        assert!(log.contains("downloaded and verified"), "{log}");
        assert_eq!(progress, Some(100), "{log}");
        assert_eq!(server.device("dev-1")["last_state"], "Running");

        // After the reboot, the new system (a new agent: nothing kept but
        // the action id on cfg) reports success.
        let mut after = source(&config);
        after
            .report(
                &offer.id,
                &Report::Closed {
                    success: true,
                    details: "2.0 booted and confirmed".into(),
                },
            )
            .unwrap();
        assert!(
            matches!(after.check(Some("2.0")).unwrap(), Check::Nothing { .. }),
            "offered again after success"
        );
        let dev = server.device("dev-1");
        assert_eq!(dev["last_state"], "Finished", "{dev}");
        assert_eq!(dev["sw_version"], "2.0", "{dev}");
        let (log, _) = server.device_log("dev-1");
        assert!(log.contains("2.0 booted and confirmed"), "{log}");
        let rollouts = server.request("GET", "/api/v1/rollouts", &[]).json();
        assert_eq!(rollouts["rollouts"][0]["success_count"], 1, "{rollouts}");
        assert_eq!(rollouts["rollouts"][0]["failure_count"], 0, "{rollouts}");
    }

    #[test]
    fn a_refused_image_is_reported_as_closed_failure_with_its_reason() {
        let device = Device::new("1.0");
        let (b, _) = bundle_2_0(&device, "stranger");
        let (trusted_pub, _) =
            image_builder::keygen::keygen(&device.dir.path().join("vendor")).unwrap();
        let server = Server::start();
        server.roll_out(&b.path);
        let config = config(&server, "dev-2", None);
        let mut hawkbit = source(&config);
        let offer = offered(hawkbit.check(Some("1.0")).unwrap());
        accept(&mut hawkbit, &offer.id);
        let path = fetch(
            &mut hawkbit,
            &config,
            &offer,
            &b.path,
            &device.storage.join("updates"),
        );
        let reason = verify(&path, &trusted_pub).expect_err("signed by a stranger");
        hawkbit
            .report(
                &offer.id,
                &Report::Closed {
                    success: false,
                    details: reason.clone(),
                },
            )
            .unwrap();

        let dev = server.device("dev-2");
        assert_eq!(dev["last_state"], "Error", "{dev}");
        assert_eq!(dev["sw_version"], "1.0", "{dev}");
        let (log, _) = server.device_log("dev-2");
        assert!(log.contains(&reason), "{log}\nwithout: {reason}");
        assert!(reason.contains("signature"), "{reason}");
        let rollouts = server.request("GET", "/api/v1/rollouts", &[]).json();
        assert_eq!(rollouts["rollouts"][0]["failure_count"], 1, "{rollouts}");
        // A device in Error is offered nothing until an operator forces it.
        assert!(matches!(
            hawkbit.check(Some("1.0")).unwrap(),
            Check::Nothing { .. }
        ));
    }

    #[test]
    fn with_a_cluster_limit_of_one_the_second_device_waits_for_the_first() {
        let device = Device::new("1.0");
        let (b, _) = bundle_2_0(&device, "vendor");
        let server = Server::start_with("max_concurrent_updates: 1\n");
        server.roll_out(&b.path);
        let (c1, c2) = (
            config(&server, "node-1", None),
            config(&server, "node-2", None),
        );
        let (mut node1, mut node2) = (source(&c1), source(&c2));
        // node-2 registers before anyone updates: nothing holds a slot yet.
        let offer = offered(node1.check(Some("1.0")).unwrap());
        accept(&mut node1, &offer.id);
        assert_eq!(server.device("node-1")["last_state"], "Running");

        let held = |node: &mut Hawkbit, stage: &str| match node.check(Some("1.0")).unwrap() {
            Check::Nothing { .. } => {}
            other => panic!("node-2 offered while node-1 is {stage}: {other:?}"),
        };
        held(&mut node2, "proceeding");
        fetch(&mut node1, &c1, &offer, &b.path, &device.storage.join("n1"));
        node1.report(&offer.id, &Report::Downloaded).unwrap();
        held(&mut node2, "downloaded");
        node1
            .report(
                &offer.id,
                &Report::Closed {
                    success: true,
                    details: "2.0 booted".into(),
                },
            )
            .unwrap();
        let second = offered(node2.check(Some("1.0")).unwrap());
        assert_eq!(second.id, offer.id);
        assert_eq!(server.device("node-2")["last_state"], "Registered");
    }

    #[test]
    fn target_tokens_are_checked_by_goosebit_in_strict_mode() {
        let device = Device::new("1.0");
        let (b, _) = bundle_2_0(&device, "vendor");
        let server = Server::start_with("device_auth:\n  enable: true\n  mode: strict\n");
        server.roll_out(&b.path);
        let made = server.put_json(
            "/api/v1/devices",
            &serde_json::json!({"devices": ["dev-t"], "auth_token": "s3cret-token-of-dev-t"}),
        );
        assert_eq!(made.status, 200, "{}", made.body);

        let wrong = config(
            &server,
            "dev-t",
            Some(Token::Target("not-the-token".into())),
        );
        match source(&wrong).check(Some("1.0")) {
            Err(e @ SourceError::Refused { .. }) => {
                assert!(e.to_string().contains("HTTP 401"), "{e}")
            }
            other => panic!("a wrong token must be refused: {other:?}"),
        }
        let right = config(
            &server,
            "dev-t",
            Some(Token::Target("s3cret-token-of-dev-t".into())),
        );
        let mut hawkbit = source(&right);
        let offer = offered(hawkbit.check(Some("1.0")).unwrap());
        // The download needs the token too (it goes to gooseBit's host).
        let path = fetch(
            &mut hawkbit,
            &right,
            &offer,
            &b.path,
            &device.storage.join("updates"),
        );
        assert_eq!(std::fs::metadata(path).unwrap().len(), b.size);
    }

    #[test]
    fn the_agents_flow_stages_a_bundle_from_goosebit() {
        use agent::config::{Config as AgentConfig, SourceKind};
        use agent::flow;
        let device = Device::new("1.0");
        let (b, key_pub) = bundle_2_0(&device, "vendor");
        let server = Server::start();
        server.roll_out(&b.path);
        let recovery_conf = device.dir.path().join("recovery.conf");
        std::fs::write(&recovery_conf, format!("product={PRODUCT}\n")).unwrap();
        let mut config = AgentConfig {
            source: SourceKind::Hawkbit,
            recovery_config: recovery_conf,
            trusted_keys: vec![key_pub],
            storage_dir: device.storage.join("updates"),
            cfg: device.cfg.clone(),
            min_free: 0,
            ..AgentConfig::default()
        };
        config.hawkbit.server = Some(server.base.clone());
        config.hawkbit.controller_id = Some("dev-f".into());
        config.hawkbit.hardware = Some("1.0".into());

        let mut source = flow::source(&config).unwrap();
        let offer = offered(flow::check(&config, source.as_mut()).unwrap());
        let dev = server.device("dev-f");
        assert_eq!(dev["sw_version"], "1.0", "{dev}");
        assert_eq!(dev["hardware"]["revision"], "1.0", "{dev}");
        let staged = flow::stage(&config, source.as_mut(), &offer)
            .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
        assert_eq!(staged.manifest.version, "2.0");
        assert_eq!(std::fs::metadata(&staged.image).unwrap().len(), b.size);
        let dev = server.device("dev-f");
        assert_eq!(dev["last_state"], "Running", "{dev}");
        let (log, progress) = server.device_log("dev-f");
        assert!(log.contains("Downloaded 100%"), "{log}");
        assert!(log.contains("downloaded and verified"), "{log}");
        assert_eq!(progress, Some(100), "{log}");
    }
}
