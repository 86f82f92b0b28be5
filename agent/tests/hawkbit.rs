//! The hawkBit source against our fake DDI server (`server::ddi`), for what
//! gooseBit does not do: a GatewayToken, cancelAction while downloading
//! and after the instruction, skip and a closed maintenance window,
//! hostile answers. (The real-server tests are in
//! `qemu-tests/tests/goosebit.rs`.)

mod server;

use agent::download::{self, DownloadError, Request};
use agent::hawkbit::{Config, Hawkbit, Token};
use agent::http::{Client, HttpConfig};
use agent::source::{CancelWatch, Check, Mode, Offer, Report, Source, SourceError};
use server::ddi::{Call, State};
use server::{Fault, Plan, Server};
use std::time::Duration;

const NAME: &str = "demo-2.0.swu";

fn file() -> Vec<u8> {
    (0..400_000u32).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn deployment(
    download: &str,
    update: &str,
    window: Option<&str>,
    size: usize,
) -> serde_json::Value {
    let mut d = serde_json::json!({
        "id": "7",
        "deployment": {
            "download": download,
            "update": update,
            "chunks": [{
                "part": "os", "version": "2.0", "name": "demo",
                "artifacts": [{
                    "filename": NAME,
                    "size": size,
                    "hashes": {"sha1": "0000000000000000000000000000000000000000"},
                    "_links": {"download-http": {"href": format!("{{server}}/files/{NAME}")}},
                }],
            }],
        },
    });
    if let Some(w) = window {
        d["deployment"]["maintenanceWindow"] = w.into();
    }
    d
}

fn state(deployment: Option<serde_json::Value>) -> State {
    State {
        sleep: "00:00:30".into(),
        ask_config: true,
        deployment,
        ..State::default()
    }
}

fn config(server: &Server, token: Option<Token>) -> Config {
    Config {
        server: format!("http://{}", server.addr()),
        tenant: "DEFAULT".into(),
        controller_id: "dev-9".into(),
        token,
        other_hosts: vec![],
        attributes: vec![
            ("hw_boardname".into(), "demo".into()),
            ("hw_revision".into(), "1.0".into()),
        ],
        poll: Duration::from_secs(60),
    }
}

fn source(config: &Config) -> Hawkbit {
    Hawkbit::new(
        config.clone(),
        &HttpConfig {
            read_timeout: Duration::from_secs(5),
            ..HttpConfig::default()
        },
    )
    .unwrap()
}

/// A server that offers action 7, `forced`, of an artifact of `size` bytes.
fn forced(size: usize) -> State {
    state(Some(deployment("forced", "forced", None, size)))
}

/// A source for `server` and what its first check offers.
fn offered_by(server: &Server) -> (Hawkbit, Offer) {
    let mut hawkbit = source(&config(server, None));
    let offer = offered(hawkbit.check(Some("1.0")).unwrap());
    (hawkbit, offer)
}

fn offered(check: Check) -> Offer {
    match check {
        Check::Offer(o) => o,
        other => panic!("expected an offer: {other:?}"),
    }
}

/// Takes the offer: `proceeding` at once.
fn accept(source: &mut Hawkbit, id: &str) {
    let accepted = Report::Proceeding {
        what: "accepted".into(),
        percent: None,
    };
    source.report(id, &accepted).unwrap();
}

/// Answers the cancel of action 7; the call that carried the answer.
fn cancel_answer(source: &mut Hawkbit, server: &Server, accepted: bool, details: &str) -> Call {
    let answer = Report::Cancelled {
        accepted,
        details: details.into(),
    };
    source.report("7", &answer).unwrap();
    server.ddi().calls().last().unwrap().clone()
}

fn paths(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| format!("{} {}", c.method, c.path))
        .collect()
}

#[test]
fn a_gateway_token_goes_with_every_call_and_config_data_only_when_it_changes() {
    let server = Server::start(file(), Plan::good()).with_ddi(State {
        auth: Some("GatewayToken gw-secret".into()),
        ..state(None)
    });
    let config = config(&server, Some(Token::Gateway("gw-secret".into())));
    let mut hawkbit = source(&config);
    match hawkbit.check(Some("1.0")).unwrap() {
        Check::Nothing { again_after } => assert_eq!(again_after, Duration::from_secs(30)),
        other => panic!("{other:?}"),
    }
    hawkbit.check(Some("1.0")).unwrap();
    hawkbit.check(Some("1.1")).unwrap();
    let calls = server.ddi().calls();
    assert_eq!(
        paths(&calls),
        [
            "GET ",
            "PUT /configData",
            "GET ",
            "GET ",
            "GET ",
            "PUT /configData",
            "GET "
        ]
    );
    assert!(calls
        .iter()
        .all(|c| c.authorization.as_deref() == Some("GatewayToken gw-secret")));
    assert_eq!(
        calls[1].json(),
        serde_json::json!({"mode": "merge", "data": {
            "hw_boardname": "demo", "hw_revision": "1.0", "sw_version": "1.0"}})
    );
    assert_eq!(calls[5].json()["data"]["sw_version"], "1.1");

    let wrong = config_with_token(&server, Token::Target("gw-secret".into()));
    let err = source(&wrong).check(Some("1.0")).unwrap_err();
    assert!(
        matches!(err, SourceError::Refused { .. }) && err.to_string().contains("HTTP 401"),
        "{err}"
    );
}

fn config_with_token(server: &Server, token: Token) -> Config {
    config(server, Some(token))
}

#[test]
fn skip_and_a_closed_window_are_offered_to_download_and_wait() {
    let f = file();
    let server = Server::start(f.clone(), Plan::good()).with_ddi(state(Some(deployment(
        "attempt",
        "skip",
        Some("unavailable"),
        f.len(),
    ))));
    let (mut hawkbit, offer) = offered_by(&server);
    assert_eq!(offer.id, "7");
    assert_eq!(
        (offer.download, offer.install, offer.window_open),
        (Mode::Attempt, Mode::Skip, false)
    );
    assert_eq!(
        offer.artifacts[0].url,
        format!("http://{}/files/{NAME}", server.addr())
    );
    assert_eq!(offer.artifacts[0].size, Some(f.len() as u64));
    // The link followed is the one given, query and all.
    let calls = server.ddi().calls();
    assert_eq!(calls.last().unwrap().path, "/deploymentBase/7");

    // forced / available: the other values map too.
    server
        .ddi()
        .set(|s| s.deployment = Some(deployment("forced", "attempt", Some("available"), 1)));
    let offer = offered(hawkbit.check(Some("1.0")).unwrap());
    assert_eq!(
        (offer.download, offer.install, offer.window_open),
        (Mode::Forced, Mode::Attempt, true)
    );
}

#[test]
fn a_wrong_sha1_from_the_server_is_refused_after_the_download() {
    let f = file();
    let server = Server::start(f.clone(), Plan::good()).with_ddi(forced(f.len()));
    let (hawkbit, offer) = offered_by(&server);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(NAME);
    std::fs::write(&path, &f).unwrap();
    let err = hawkbit.check_artifact(&offer.id, NAME, &path).unwrap_err();
    assert!(err.to_string().contains("sha1"), "{err}");
    assert!(hawkbit.check_artifact(&offer.id, "other", &path).is_ok());
}

#[test]
fn a_cancel_while_downloading_stops_the_download_and_is_acknowledged() {
    // 16 MiB in about 2 s: the download reports progress every 4 MiB
    // (its checkpoint), and the watch polls from there.
    let f: Vec<u8> = (0..16 << 20).map(|i: u32| (i ^ (i >> 9)) as u8).collect();
    let slow = Fault::Slow {
        chunk: 128 * 1024,
        pause: Duration::from_millis(15),
    };
    let server = Server::start(f.clone(), Plan::always(slow)).with_ddi(forced(f.len()));
    let (mut hawkbit, offer) = offered_by(&server);
    accept(&mut hawkbit, &offer.id);

    let client = Client::new(&HttpConfig::default()).unwrap();
    let mut watch = CancelWatch::new(&offer.id, client.canceller(), Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let request = Request {
        url: offer.artifacts[0].url.clone(),
        dir: dir.path().to_path_buf(),
        name: NAME.into(),
        size: Some(f.len() as u64),
        blake3: Some(*blake3::hash(&f).as_bytes()),
        max_size: 1 << 30,
    };
    let policy = server::fast_retries();
    let failed =
        download::with_retries(&client, &request, &policy, std::thread::sleep, &mut |_| {
            // Polls before the cancel find the offer still there.
            watch.tick(&mut hawkbit, Some("1.0"));
            // The operator cancels while the bytes come in (the first
            // progress is at 4 MiB); the next poll sees it.
            server.ddi().set(|s| s.cancel = Some("7".into()));
            watch.tick(&mut hawkbit, Some("1.0"));
        })
        .unwrap_err();
    assert!(watch.cancelled);
    // The transfer stopped at once: one cut attempt, then no more requests.
    assert_eq!(failed.errors.len(), 2, "{failed}");
    assert!(
        matches!(
            failed.errors[1],
            DownloadError::Http(agent::http::HttpError::Cancelled { .. })
        ),
        "{failed}"
    );
    assert!(
        server.served() < f.len() as u64,
        "served {}",
        server.served()
    );
    assert_eq!(server.requests().len(), 1);

    let ack = cancel_answer(&mut hawkbit, &server, true, "cancelled while downloading");
    assert_eq!(ack.path, "/cancelAction/7/feedback");
    assert_eq!(ack.json()["status"]["execution"], "closed");
    assert_eq!(ack.json()["status"]["result"]["finished"], "success");
    assert_eq!(
        ack.json()["status"]["details"][0],
        "cancelled while downloading"
    );
    // The action is gone on the server.
    assert!(matches!(
        hawkbit.check(Some("1.0")).unwrap(),
        Check::Nothing { .. }
    ));
}

#[test]
fn a_cancel_once_the_instruction_is_written_is_rejected() {
    let server = Server::start(file(), Plan::good()).with_ddi(forced(1));
    let config = config(&server, None);
    let mut hawkbit = source(&config);
    offered(hawkbit.check(Some("1.0")).unwrap());
    server.ddi().set(|s| s.cancel = Some("7".into()));
    assert_eq!(
        hawkbit.check(Some("1.0")).unwrap(),
        Check::Cancel { id: "7".into() }
    );
    let answer = cancel_answer(
        &mut hawkbit,
        &server,
        false,
        "the update is already requested",
    );
    assert_eq!(answer.path, "/cancelAction/7/feedback");
    assert_eq!(answer.json()["status"]["execution"], "rejected");
    // The deployment is still there: the server was not told it ended.
    assert!(matches!(
        hawkbit.check(Some("1.0")).unwrap(),
        Check::Offer(_)
    ));
}

#[test]
fn feedback_follows_the_stages_with_progress_every_ten_percent() {
    let server = Server::start(file(), Plan::good()).with_ddi(forced(1));
    let (mut hawkbit, offer) = offered_by(&server);
    for p in [0u8, 3, 9, 10, 55, 56, 100] {
        hawkbit
            .report(
                &offer.id,
                &Report::Proceeding {
                    what: "downloading".into(),
                    percent: Some(p),
                },
            )
            .unwrap();
    }
    hawkbit.report(&offer.id, &Report::Downloaded).unwrap();
    hawkbit
        .report(
            &offer.id,
            &Report::Closed {
                success: false,
                details: "refused: signature".into(),
            },
        )
        .unwrap();
    let feedback: Vec<serde_json::Value> = server
        .ddi()
        .calls()
        .iter()
        .filter(|c| c.path == "/deploymentBase/7/feedback")
        .map(Call::json)
        .collect();
    let shown: Vec<String> = feedback
        .iter()
        .map(|f| format!("{} {}", f["status"]["execution"], f["status"]["details"][0]))
        .collect();
    assert_eq!(
        shown,
        [
            "\"proceeding\" \"downloading: Downloaded 0%\"",
            "\"proceeding\" \"downloading: Downloaded 10%\"",
            "\"proceeding\" \"downloading: Downloaded 55%\"",
            "\"proceeding\" \"downloading: Downloaded 100%\"",
            "\"downloaded\" \"downloaded and verified; waiting to install\"",
            "\"closed\" \"refused: signature\"",
        ]
    );
    assert_eq!(
        feedback[2]["status"]["result"]["progress"],
        serde_json::json!({"cnt": 55, "of": 100})
    );
    assert_eq!(feedback[5]["status"]["result"]["finished"], "failure");
}

#[test]
fn hostile_answers_are_refused_without_following_them() {
    let server = Server::start(file(), Plan::good()).with_ddi(state(None));
    let config = config(&server, None);
    let cases = [
        (
            r#"{"_links":{"deploymentBase":{"href":"http://169.254.169.254/latest/meta-data"}}}"#
                .to_string(),
            "not to the configured server",
        ),
        (
            format!(r#"{{"pad":"{}"}}"#, "x".repeat(300 * 1024)),
            "larger than",
        ),
        (
            r#"{"config":{"polling":{"sleep":"forever"}}}"#.to_string(),
            "HH:MM:SS",
        ),
        ("<html>".to_string(), "expected an object"),
    ];
    for (raw, expected) in cases {
        server.ddi().set(|s| {
            s.raw_poll = Some(raw.clone());
            s.ask_config = false;
        });
        let err = source(&config).check(Some("1.0")).unwrap_err();
        assert!(
            matches!(err, SourceError::Refused { .. }) && err.to_string().contains(expected),
            "{expected}: {err}"
        );
    }
    // Only polls were made: no link was followed.
    assert!(server
        .ddi()
        .calls()
        .iter()
        .all(|c| c.path.is_empty() || c.method == "PUT"));
}

/// A signed bundle of acme 2.0 (`big` bytes of noise) on the fake server,
/// offered as action 7 with the `hashes` made of it, and an agent.conf.
struct FlowFixture {
    dir: tempfile::TempDir,
    server: Server,
    path: String,
    bundle: Vec<u8>,
}

impl FlowFixture {
    fn new(big: usize, plan: Plan, hashes: fn(&[u8]) -> serde_json::Value) -> FlowFixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let tree = root.join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("big"), server::noise(big, 3)).unwrap();
        let (trusted, secret) = image_builder::keygen::keygen(&root.join("vendor")).unwrap();
        let files = server::publish(&tree, "acme", "2.0", secret, &root.join("out"));
        let (path, bundle) = files
            .iter()
            .find(|(p, _)| p.ends_with(".swu"))
            .unwrap()
            .clone();
        std::fs::write(root.join("recovery.conf"), "product=acme\n").unwrap();
        std::fs::write(root.join("trusted.pub"), std::fs::read(trusted).unwrap()).unwrap();
        std::fs::create_dir_all(root.join("cfg/update")).unwrap();
        std::fs::create_dir_all(root.join("storage")).unwrap();
        let mut d = deployment("forced", "forced", None, bundle.len());
        let artifact = &mut d["deployment"]["chunks"][0]["artifacts"][0];
        artifact["filename"] = "acme-2.0.swu".into();
        artifact["_links"] = serde_json::json!({"download": {"href": format!("{{server}}{path}")}});
        artifact["hashes"] = hashes(&bundle);
        let server = Server::start_files(files, plan).with_ddi(state(Some(d)));
        FlowFixture {
            dir,
            server,
            path,
            bundle,
        }
    }

    fn root(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn config(&self) -> agent::config::Config {
        let root = self.root();
        let mut config = agent::config::Config {
            source: agent::config::SourceKind::Hawkbit,
            recovery_config: root.join("recovery.conf"),
            trusted_keys: vec![root.join("trusted.pub")],
            storage_dir: root.join("storage"),
            cfg: root.join("cfg"),
            retry: server::fast_retries(),
            min_free: 0,
            read_timeout: Duration::from_secs(5),
            ..agent::config::Config::default()
        };
        config.hawkbit.server = Some(format!("http://{}", self.server.addr()));
        config.hawkbit.controller_id = Some("dev-9".into());
        config.hawkbit.poll = Duration::ZERO;
        config
    }
}

#[test]
fn the_flow_acknowledges_a_cancel_while_downloading_and_keeps_nothing() {
    use agent::flow::{self, FlowError};
    // Incompressible, so the bundle is larger than two progress steps.
    let slow = Fault::Slow {
        chunk: 256 * 1024,
        pause: Duration::from_millis(10),
    };
    let fx = FlowFixture::new(9 << 20, Plan::always(slow), |_| serde_json::json!({}));
    let (root, server, path, bundle) = (fx.root(), &fx.server, &fx.path, &fx.bundle);
    let config = fx.config();

    let mut source = flow::source(&config).unwrap();
    let offer = offered(flow::check(&config, source.as_mut()).unwrap());
    assert_eq!(offer.artifacts[0].name, "acme-2.0.swu");
    // The operator cancels once the device has taken the offer.
    server.ddi().set(|s| s.cancel = Some("7".into()));
    let err = flow::stage(&config, source.as_mut(), &offer).unwrap_err();
    assert!(
        matches!(err, FlowError::Cancelled { ref id } if id == "7"),
        "{err}"
    );

    assert!(
        server.served_of(path) < bundle.len() as u64,
        "the whole bundle was sent"
    );
    let left: Vec<_> = std::fs::read_dir(root.join("storage")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!root
        .join("cfg")
        .join(formats::cfg::DOWNLOAD_FAILED)
        .exists());
    let calls = server.ddi().calls();
    let ack = calls.last().unwrap();
    assert_eq!(ack.path, "/cancelAction/7/feedback");
    assert_eq!(ack.json()["status"]["execution"], "closed");
    assert_eq!(ack.json()["status"]["result"]["finished"], "success");
}

#[test]
fn the_flow_refuses_a_bundle_whose_sha1_is_not_the_servers() {
    use agent::flow;
    let zeros = |_: &[u8]| serde_json::json!({"sha1": "0".repeat(40)});
    let fx = FlowFixture::new(100_000, Plan::good(), zeros);
    let config = fx.config();
    let mut source = flow::source(&config).unwrap();
    let offer = offered(flow::check(&config, source.as_mut()).unwrap());
    let err = flow::stage(&config, source.as_mut(), &offer).unwrap_err();
    assert!(err.to_string().contains("sha1"), "{err}");
    let calls = fx.server.ddi().calls();
    let closed = calls.last().unwrap().json();
    assert_eq!(closed["status"]["execution"], "closed");
    assert_eq!(closed["status"]["result"]["finished"], "failure");
    assert!(closed["status"]["details"][0]
        .as_str()
        .unwrap()
        .contains("sha1"));
    // The right sha1 passes.
    let right = |b: &[u8]| serde_json::json!({ "sha1": ring_sha1(b) });
    let fx = FlowFixture::new(100_000, Plan::good(), right);
    let config = fx.config();
    let mut source = flow::source(&config).unwrap();
    let offer = offered(flow::check(&config, source.as_mut()).unwrap());
    flow::stage(&config, source.as_mut(), &offer).unwrap();
}

fn ring_sha1(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes);
    formats::manifest::hex(d.as_ref())
}

/// A device that runs the one-shot commands from a timer starts a new
/// process each time: what `configData` sent is kept on cfg, so the
/// server hears the attributes once per change, not once per run.
#[test]
fn config_data_is_sent_once_per_change_across_one_shot_runs() {
    use agent::flow;
    let fx = FlowFixture::new(1000, Plan::good(), |_| serde_json::json!({}));
    fx.server.ddi().set(|s| {
        s.ask_config = false;
        s.deployment = None;
    });
    let puts = || {
        let calls = fx.server.ddi().calls();
        paths(&calls)
            .iter()
            .filter(|p| *p == "PUT /configData")
            .count()
    };
    let run = |config: &agent::config::Config| {
        let mut source = flow::source(config).unwrap();
        flow::check(config, source.as_mut()).unwrap();
    };
    let mut config = fx.config();
    run(&config);
    run(&config);
    assert_eq!(puts(), 1, "{:?}", paths(&fx.server.ddi().calls()));
    // A new installed version is a change: sent once more.
    let installed = formats::result::Installed {
        product: "acme".into(),
        version: "2.0".into(),
    };
    let cfg = fx.root().join("cfg");
    std::fs::write(cfg.join(formats::cfg::INSTALLED), installed.render()).unwrap();
    run(&config);
    run(&config);
    assert_eq!(puts(), 2);
    let sent = fx.server.ddi().calls();
    let last = sent.iter().rfind(|c| c.method == "PUT").unwrap();
    assert_eq!(last.json()["data"]["sw_version"], "2.0");
    // So is other hardware; and a server that asks always hears it.
    config.hawkbit.hardware = Some("2".into());
    run(&config);
    assert_eq!(puts(), 3);
    fx.server.ddi().set(|s| s.ask_config = true);
    run(&config);
    assert_eq!(puts(), 4);
    // ... but the record on cfg is not rewritten for it when nothing
    // changed (each write_atomic is a new inode).
    let record = cfg.join(formats::cfg::CONFIG_DATA_SENT);
    let inode = || std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&record).unwrap());
    let before = inode();
    fx.server.ddi().set(|s| s.ask_config = true);
    run(&config);
    assert_eq!(puts(), 5);
    assert_eq!(inode(), before, "the configData record was rewritten");
}

/// `cfg:update/result` after 2.0 was restored away (1.0 back) at `finished`.
fn restored_away(finished: u64) -> String {
    formats::keyvalue::seal(&format!(
        "format=1\noutcome=restored\nversion=2.0\nstage=trial\nreason=2.0 not confirmed after 3 boots\nattempt=1\nstarted=1700000000\nfinished={finished}\nduration-ms=0\nbytes=0\nentries=0\nrestored=1.0\n"
    ))
}
/// Time that passes only when the daemon sleeps.
struct FakeClock(u64);

impl agent::daemon::Clock for FakeClock {
    fn now(&self) -> u64 {
        self.0
    }
    fn sleep_until(&mut self, t: u64) {
        self.0 = self.0.max(t);
    }
}

/// 2.0 was restored away on this device (not confirmed), and a later
/// request of another version was refused: the server offers 2.0 again, and the daemon refuses it before the download (the
/// head only), reports it to the server once, closed with the reason,
/// and does not report or fetch it again at the next polls.
#[test]
fn the_daemon_refuses_the_version_restored_away_before_the_download_and_says_so_once() {
    use agent::daemon::{Daemon, Reboot, Turn};
    use formats::result::Installed;
    let fx = FlowFixture::new(600_000, Plan::good(), |_| serde_json::json!({}));
    assert!(
        fx.bundle.len() > formats::bundle::HEAD_MAX,
        "a bundle larger than its head"
    );
    let cfg = fx.root().join("cfg");
    let installed = Installed {
        product: "acme".into(),
        version: "1.0".into(),
    };
    std::fs::write(cfg.join(formats::cfg::INSTALLED), installed.render()).unwrap();
    // Restored away (the record), then a request of another version
    // refused (the last result): the record still stands.
    let restore =
        formats::result::UpdateResult::parse(restored_away(1_700_000_100).as_bytes()).unwrap();
    recovery::admission::record_restored_away(&cfg, &restore).unwrap();
    let refused = formats::result::UpdateResult {
        outcome: formats::result::Outcome::Refused,
        version: "2.1".into(),
        restored: None,
        instruction: None,
        ..restore
    };
    std::fs::write(cfg.join(formats::cfg::RESULT), refused.render()).unwrap();
    let mut config = fx.config();
    config.daemon.reboot = Reboot::No;
    config.daemon.poll_interval = Duration::from_secs(60);
    config.daemon.state_file = fx.root().join("state");
    let mut source = agent::flow::source(&config).unwrap();
    let mut daemon = Daemon::new(&config, source.as_mut(), FakeClock(1_800_000_000));
    let turns: Vec<Turn> = (0..12).map(|_| daemon.turn()).collect();
    assert_eq!(
        turns.iter().filter(|t| **t == Turn::StageFailed).count(),
        1,
        "{turns:?}"
    );
    assert!(
        turns.iter().filter(|t| **t == Turn::Polled).count() > 2,
        "{turns:?}"
    );
    assert!(!turns.contains(&Turn::Installed), "{turns:?}");
    // The head only: not a byte of the payload.
    assert_eq!(
        fx.server.served_of(&fx.path),
        formats::bundle::HEAD_MAX as u64
    );
    let closed: Vec<serde_json::Value> = fx
        .server
        .ddi()
        .calls()
        .iter()
        .filter(|c| c.path == "/deploymentBase/7/feedback")
        .map(Call::json)
        .filter(|f| f["status"]["execution"] == "closed")
        .collect();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0]["status"]["result"]["finished"], "failure");
    let details = closed[0]["status"]["details"][0].as_str().unwrap();
    assert!(
        details.starts_with("refused: policy: ")
            && details.contains(
                ": version: 2.0 was restored away on 2023-11-14T22:15:00Z (1.0 restored): \
                 2.0 not confirmed after 3 boots; a newer version is admitted, or an operator \
                 installs 2.0 again with `bootloader-glue request --retry-restored`"
            ),
        "{details}"
    );
    assert!(!cfg.join(formats::cfg::INSTRUCTION).exists());
    assert!(std::fs::read_dir(fx.root().join("storage"))
        .unwrap()
        .next()
        .is_none());
}
