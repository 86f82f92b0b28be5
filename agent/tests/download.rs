//! Downloads against the fault-injecting test server: resume, restarts,
//! corruption, hostile answers, retries, timeouts, HTTPS trust.

mod server;

use agent::download::{self, DownloadError, Progress, Request};
use agent::http::{Client, HttpConfig};
use agent::partial::Partial;
use agent::retry::Policy;
use server::{Fault, Plan, Server, TestPki};
use std::fs;
use std::path::Path;
use std::time::Duration;

const LEN: usize = 1_000_000;

/// Bytes that differ everywhere, so a misplaced range shows.
fn content(len: usize) -> Vec<u8> {
    server::noise(len, 0x1234_5678)
}

fn client() -> Client {
    Client::new(&HttpConfig {
        read_timeout: Duration::from_secs(5),
        ..HttpConfig::default()
    })
    .unwrap()
}

fn request(server: &Server, dir: &Path, file: &[u8]) -> Request {
    Request {
        url: server.url("acme-2.0.tar.zst"),
        dir: dir.to_path_buf(),
        name: "acme-2.0.tar.zst".into(),
        size: Some(file.len() as u64),
        blake3: Some(*blake3::hash(file).as_bytes()),
        max_size: 1 << 30,
    }
}

fn fast() -> Policy {
    Policy {
        attempts: 10,
        first_wait: Duration::from_millis(1),
        max_wait: Duration::from_millis(5),
    }
}

fn retried(
    client: &Client,
    req: &Request,
) -> Result<download::Downloaded, download::DownloadFailed> {
    download::with_retries(client, req, &fast(), std::thread::sleep, &mut |_| {})
}

#[test]
fn a_dropped_connection_resumes_with_only_the_missing_bytes() {
    let file = content(LEN);
    let server = Server::start(file.clone(), Plan::first(vec![Fault::DropAfter(300_000)]));
    let dir = tempfile::tempdir().unwrap();
    let req = request(&server, dir.path(), &file);

    let err = download::download(&client(), &req, &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, DownloadError::Cut { got: 300_000, .. }),
        "{err}"
    );
    let part = dir.path().join("acme-2.0.tar.zst.part");
    assert_eq!(fs::metadata(&part).unwrap().len(), 300_000);
    let state = fs::read(dir.path().join("acme-2.0.tar.zst.part.state")).unwrap();
    let record = Partial::parse(&state).unwrap();
    assert_eq!(
        (record.bytes, record.etag.as_deref()),
        (300_000, Some("\"v1\""))
    );

    // A new client, as after a reboot: only the record on disk carries over.
    let mut seen = Vec::new();
    let done = download::download(&client(), &req, &mut |p| seen.push(p)).unwrap();
    assert_eq!(done.resumed_from, 300_000);
    assert_eq!(done.fetched, (LEN - 300_000) as u64);
    assert_eq!(server.served(), LEN as u64, "bytes served in all");
    assert_eq!(server.requests(), vec![None, Some(300_000)]);
    assert_eq!(fs::read(&done.path).unwrap(), file);
    assert!(!part.exists() && !dir.path().join("acme-2.0.tar.zst.part.state").exists());
    assert_eq!(
        seen.last(),
        Some(&Progress {
            done: LEN as u64,
            total: Some(LEN as u64)
        })
    );
}

#[test]
fn after_a_power_cut_unsynced_bytes_are_cut_off_and_a_torn_record_starts_over() {
    let file = content(LEN);
    let plan = Plan::first(vec![Fault::DropAfter(300_000), Fault::DropAfter(100_000)]);
    let server = Server::start(file.clone(), plan);
    let dir = tempfile::tempdir().unwrap();
    let req = request(&server, dir.path(), &file);
    download::download(&client(), &req, &mut |_| {}).unwrap_err();
    // Bytes written after the last sync: garbage that the record does not count.
    let part = dir.path().join("acme-2.0.tar.zst.part");
    let mut f = fs::OpenOptions::new().append(true).open(&part).unwrap();
    std::io::Write::write_all(&mut f, &[0xee; 5000]).unwrap();
    drop(f);
    download::download(&client(), &req, &mut |_| {}).unwrap_err();
    assert_eq!(server.requests(), vec![None, Some(300_000)]);
    assert_eq!(fs::read(&part).unwrap(), file[..400_000]);

    // A torn record is not trusted: the download starts from zero.
    let state = dir.path().join("acme-2.0.tar.zst.part.state");
    let text = fs::read(&state).unwrap();
    fs::write(&state, &text[..text.len() - 4]).unwrap();
    let done = download::download(&client(), &req, &mut |_| {}).unwrap();
    assert_eq!(done.resumed_from, 0);
    assert_eq!(server.requests(), vec![None, Some(300_000), None]);
    assert_eq!(fs::read(&done.path).unwrap(), file);
}

#[test]
fn retries_resume_until_the_file_is_complete() {
    let file = content(LEN);
    let plan = Plan::first(vec![Fault::DropAfter(200_000), Fault::DropAfter(300_000)]);
    let server = Server::start(file.clone(), plan);
    let dir = tempfile::tempdir().unwrap();
    let done = retried(&client(), &request(&server, dir.path(), &file)).unwrap();
    assert_eq!(done.attempts, 3);
    assert_eq!(server.requests(), vec![None, Some(200_000), Some(500_000)]);
    assert_eq!(server.served(), LEN as u64);
    assert_eq!(fs::read(&done.path).unwrap(), file);
}

#[test]
fn a_corrupt_download_is_refused_and_fetched_again_from_zero() {
    let file = content(LEN);
    let server = Server::start(file.clone(), Plan::first(vec![Fault::WrongByte(654_321)]));
    let dir = tempfile::tempdir().unwrap();
    let req = request(&server, dir.path(), &file);

    let err = download::download(&client(), &req, &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, DownloadError::Corrupt { ref what, .. } if what.contains("BLAKE3")),
        "{err}"
    );
    assert!(!dir.path().join("acme-2.0.tar.zst").exists());
    assert!(!dir.path().join("acme-2.0.tar.zst.part").exists());

    let done = download::download(&client(), &req, &mut |_| {}).unwrap();
    assert_eq!(done.resumed_from, 0);
    assert_eq!(server.requests(), vec![None, None]);
    assert_eq!(server.served(), 2 * LEN as u64);
    assert_eq!(fs::read(&done.path).unwrap(), file);
}

#[test]
fn a_server_that_ignores_range_gives_the_right_file_and_a_counted_restart() {
    let file = content(LEN);
    let plan = Plan {
        first: vec![Fault::DropAfter(300_000)],
        then: Fault::IgnoreRange,
    };
    let server = Server::start(file.clone(), plan);
    let dir = tempfile::tempdir().unwrap();
    let done = retried(&client(), &request(&server, dir.path(), &file)).unwrap();
    assert_eq!((done.attempts, done.restarts), (2, 1));
    assert_eq!(done.fetched, LEN as u64);
    assert_eq!(server.requests(), vec![None, Some(300_000)]);
    assert_eq!(server.served(), 300_000 + LEN as u64);
    assert_eq!(fs::read(&done.path).unwrap(), file);
}

#[test]
fn a_changed_etag_starts_over() {
    let file = content(LEN);
    let plan = Plan::first(vec![Fault::DropAfter(300_000), Fault::NewEtag]);
    let server = Server::start(file.clone(), plan);
    let dir = tempfile::tempdir().unwrap();
    let done = retried(&client(), &request(&server, dir.path(), &file)).unwrap();
    assert_eq!((done.attempts, done.restarts), (2, 1));
    assert_eq!(server.requests(), vec![None, Some(300_000), None]);
    assert_eq!(fs::read(&done.path).unwrap(), file);
}

#[test]
fn ten_failures_are_all_reported() {
    let file = content(1000);
    let server = Server::start(file.clone(), Plan::always(Fault::Status500));
    let dir = tempfile::tempdir().unwrap();
    let err = retried(&client(), &request(&server, dir.path(), &file)).unwrap_err();
    assert_eq!(err.errors.len(), 10);
    assert_eq!(server.requests().len(), 10);
    let text = err.to_string();
    assert!(text.starts_with("all 10 attempt(s) failed:"), "{text}");
    for n in 1..=10 {
        assert!(text.contains(&format!("attempt {n}: ")), "{text}");
    }
    assert!(text.contains("HTTP 500 Internal Server Error"), "{text}");
    assert!(!dir.path().join("acme-2.0.tar.zst").exists());
}

#[test]
fn five_hundreds_then_success() {
    let file = content(1000);
    let plan = Plan::first(vec![Fault::Status500; 3]);
    let server = Server::start(file.clone(), plan);
    let dir = tempfile::tempdir().unwrap();
    let done = retried(&client(), &request(&server, dir.path(), &file)).unwrap();
    assert_eq!(done.attempts, 4);
    assert_eq!(fs::read(&done.path).unwrap(), file);
}

#[test]
fn the_manifest_size_wins_over_the_server() {
    // The server's file is longer than the signed size: its Content-Length
    // is refused before a byte is written.
    let file = content(1100);
    let server = Server::start(file.clone(), Plan::good());
    let dir = tempfile::tempdir().unwrap();
    let req = request(&server, dir.path(), &file[..1000]);
    let err = download::download(&client(), &req, &mut |_| {}).unwrap_err();
    assert!(
        err.to_string()
            .contains("Content-Length 1100, but the file is 1000 bytes"),
        "{err}"
    );
    assert_eq!(
        fs::metadata(dir.path().join("acme-2.0.tar.zst.part"))
            .unwrap()
            .len(),
        0
    );

    // Without a Content-Length, the extra bytes are noticed and not written.
    let server = Server::start(file.clone(), Plan::always(Fault::NoLength));
    let req = request(&server, dir.path(), &file[..1000]);
    let err = download::download(&client(), &req, &mut |_| {}).unwrap_err();
    assert!(
        err.to_string()
            .contains("more than the expected 1000 bytes"),
        "{err}"
    );
    assert!(
        fs::metadata(dir.path().join("acme-2.0.tar.zst.part"))
            .unwrap()
            .len()
            <= 1000
    );
}

#[test]
fn a_record_of_another_download_is_not_resumed() {
    let file = content(LEN);
    let server = Server::start(file.clone(), Plan::first(vec![Fault::DropAfter(300_000)]));
    let dir = tempfile::tempdir().unwrap();
    let req = request(&server, dir.path(), &file);
    download::download(&client(), &req, &mut |_| {}).unwrap_err();
    let other = Request {
        url: server.url("acme-2.0.tar.zst?mirror=2"),
        ..req
    };
    let done = download::download(&client(), &other, &mut |_| {}).unwrap();
    assert_eq!(done.resumed_from, 0);
    assert_eq!(server.requests(), vec![None, None]);
    assert_eq!(fs::read(&done.path).unwrap(), file);
    // Done already: nothing more is fetched.
    let again = download::download(&client(), &other, &mut |_| {}).unwrap();
    assert_eq!((again.fetched, server.requests().len()), (0, 2));
}

#[test]
fn redirects_are_followed_with_the_range_and_bounded() {
    let file = content(LEN);
    let plan = Plan::first(vec![Fault::DropAfter(300_000), Fault::Redirect]);
    let server = Server::start(file.clone(), plan);
    let dir = tempfile::tempdir().unwrap();
    let done = retried(&client(), &request(&server, dir.path(), &file)).unwrap();
    assert_eq!((done.attempts, done.resumed_from), (2, 300_000));
    assert_eq!(server.requests(), vec![None, Some(300_000), Some(300_000)]);
    assert_eq!(server.served(), LEN as u64);

    let server = Server::start(file.clone(), Plan::always(Fault::Redirect));
    let dir = tempfile::tempdir().unwrap();
    let err = retried(&client(), &request(&server, dir.path(), &file)).unwrap_err();
    assert_eq!(err.errors.len(), 1, "{err}");
    assert!(err.to_string().contains("more than 5 redirects"), "{err}");
    assert_eq!(server.requests().len(), 6);
}

#[test]
fn a_huge_header_is_refused() {
    let file = content(1000);
    let server = Server::start(file.clone(), Plan::always(Fault::HugeHeader));
    let dir = tempfile::tempdir().unwrap();
    let err = download::download(&client(), &request(&server, dir.path(), &file), &mut |_| {})
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("headers are larger than 16384 bytes"),
        "{err}"
    );
}

#[test]
fn a_slow_link_is_fine_a_dead_one_times_out() {
    let file = content(64 * 1024);
    let slow = Fault::Slow {
        chunk: 8 * 1024,
        pause: Duration::from_millis(20),
    };
    let server = Server::start(file.clone(), Plan::always(slow));
    let dir = tempfile::tempdir().unwrap();
    let done =
        download::download(&client(), &request(&server, dir.path(), &file), &mut |_| {}).unwrap();
    assert_eq!(fs::read(&done.path).unwrap(), file);

    let stalled = Fault::Slow {
        chunk: 8 * 1024,
        pause: Duration::from_millis(1500),
    };
    let server = Server::start(file.clone(), Plan::always(stalled));
    let impatient = Client::new(&HttpConfig {
        read_timeout: Duration::from_millis(300),
        ..HttpConfig::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = download::download(
        &impatient,
        &request(&server, dir.path(), &file),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, DownloadError::Cut { got: 8192, .. }), "{err}");
    assert!(
        err.to_string().contains("timed out") || err.to_string().contains("imeout"),
        "{err}"
    );
}

#[test]
fn https_with_a_ca_the_agent_is_told_to_trust() {
    let pki = TestPki::new("reimage test CA");
    let file = content(200_000);
    let plan = Plan::first(vec![Fault::DropAfter(50_000)]);
    let server = Server::start_tls(file.clone(), plan, &pki.server);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    fs::write(&ca, &pki.ca_pem).unwrap();
    let client = Client::new(&HttpConfig {
        ca_files: vec![ca],
        webpki_roots: false,
        ..HttpConfig::default()
    })
    .unwrap();
    let store = dir.path().join("updates");
    let done = retried(&client, &request(&server, &store, &file)).unwrap();
    assert_eq!(done.attempts, 2);
    assert_eq!(server.requests(), vec![None, Some(50_000)]);
    assert_eq!(fs::read(&done.path).unwrap(), file);
}

#[test]
fn an_untrusted_certificate_is_refused_naming_the_host_and_the_cause() {
    let pki = TestPki::new("reimage test CA");
    let stranger = TestPki::new("some other CA");
    let file = content(1000);
    let server = Server::start_tls(file.clone(), Plan::good(), &pki.server);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("other-ca.pem");
    fs::write(&ca, &stranger.ca_pem).unwrap();
    let host = server.addr().to_string();
    for config in [
        HttpConfig::default(),
        HttpConfig {
            ca_files: vec![ca.clone()],
            webpki_roots: false,
            ..HttpConfig::default()
        },
    ] {
        let client = Client::new(&config).unwrap();
        let err = retried(&client, &request(&server, dir.path(), &file)).unwrap_err();
        let text = err.to_string();
        assert_eq!(
            err.errors.len(),
            1,
            "a refused certificate is not retried: {text}"
        );
        assert!(text.contains(&host), "{text}");
        assert!(
            text.contains("not trusted") && text.contains("UnknownIssuer"),
            "{text}"
        );
    }
    assert_eq!(server.served(), 0);
}
