//! A fault-injecting HTTP/1.1 server for the agent's tests: serves one
//! file at any path (or several files, each at its path) on 127.0.0.1 (a thread per connection, `Connection: close`),
//! optionally over TLS, with a planned fault per request. It counts the
//! body bytes it wrote, so tests can assert on what a download cost. It
//! stops when dropped.

#![allow(dead_code)] // each test file uses its own part of it

pub mod ddi;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Bytes that differ everywhere (and do not compress), so a misplaced
/// range shows.
pub fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Ten attempts with waits of a millisecond or two.
pub fn fast_retries() -> agent::retry::Policy {
    agent::retry::Policy {
        attempts: 10,
        first_wait: std::time::Duration::from_millis(1),
        max_wait: std::time::Duration::from_millis(2),
    }
}

/// An image of `product` `version` built from `tree` and signed with
/// `key`, into `out`: its three files and its bundle, as a feed
/// publishes them: `(/<product>/<file name>, bytes)`, the bundle first.
pub fn publish(
    tree: &std::path::Path,
    product: &str,
    version: &str,
    key: std::path::PathBuf,
    out: &std::path::Path,
) -> Vec<(String, Vec<u8>)> {
    let summary = image_builder::image::build(&image_builder::image::ImageRequest::fixture(
        image_builder::image::Source::Rootfs(tree.to_path_buf()),
        product,
        version,
        &key,
        out,
    ))
    .unwrap();
    let bundle = image_builder::bundle::build(&image_builder::bundle::BundleRequest {
        manifest: summary.manifest_path.clone(),
        out_dir: out.to_path_buf(),
        hardware: vec![],
    })
    .unwrap();
    [
        &bundle.path,
        &summary.manifest_path,
        &summary.signature_path,
        &summary.payload_path,
    ]
    .into_iter()
    .map(|path| {
        let name = path.file_name().unwrap().to_str().unwrap();
        (format!("/{product}/{name}"), std::fs::read(path).unwrap())
    })
    .collect()
}

/// What the server does to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Serve correctly, with Range support.
    None,
    /// Close the connection after this many body bytes.
    DropAfter(u64),
    /// Answer 500 Internal Server Error.
    Status500,
    /// Write the body in chunks of this size with a pause after each.
    Slow { chunk: usize, pause: Duration },
    /// Serve the byte at this file offset wrong.
    WrongByte(u64),
    /// Answer 200 with the whole file to a Range request.
    IgnoreRange,
    /// Give this answer a new ETag (as if the file had been replaced).
    NewEtag,
    /// Send no Content-Length: the end of the body is the end of the connection.
    NoLength,
    /// Answer 302 Found, pointing at another path of the same file.
    Redirect,
    /// Send a 20 KiB header line.
    HugeHeader,
}

/// The faults of the first requests, in order; `then` for all later ones.
#[derive(Debug, Clone)]
pub struct Plan {
    pub first: Vec<Fault>,
    pub then: Fault,
}

impl Plan {
    pub fn good() -> Plan {
        Plan::first(vec![])
    }

    pub fn first(first: Vec<Fault>) -> Plan {
        Plan {
            first,
            then: Fault::None,
        }
    }

    pub fn always(fault: Fault) -> Plan {
        Plan {
            first: vec![],
            then: fault,
        }
    }
}

/// A certificate and key for the server to present.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key_pkcs8: Vec<u8>,
}

struct Shared {
    /// `(path, bytes)`; one file with the path `*` is served at any path.
    files: Vec<(String, Vec<u8>)>,
    served_by_path: Mutex<HashMap<String, u64>>,
    plan: Plan,
    served: AtomicU64,
    requests: Mutex<Vec<Option<u64>>>,
    stop: AtomicBool,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// A fake hawkBit DDI API beside the file ([`ddi`]).
    api: OnceLock<Arc<ddi::Api>>,
}

pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(file: Vec<u8>, plan: Plan) -> Server {
        Server::spawn(vec![("*".into(), file)], plan, None)
    }

    /// Serves each file at its path (`/acme/latest`); other paths get 404.
    pub fn start_files(files: Vec<(String, Vec<u8>)>, plan: Plan) -> Server {
        Server::spawn(files, plan, None)
    }

    pub fn start_tls(file: Vec<u8>, plan: Plan, identity: &Identity) -> Server {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                identity.chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_pkcs8.clone())),
            )
            .unwrap();
        Server::spawn(vec![("*".into(), file)], plan, Some(Arc::new(config)))
    }

    fn spawn(
        files: Vec<(String, Vec<u8>)>,
        plan: Plan,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            files,
            served_by_path: Mutex::new(HashMap::new()),
            plan,
            served: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            tls,
            api: OnceLock::new(),
        });
        let s = shared.clone();
        let accept = thread::spawn(move || {
            let mut workers = Vec::new();
            for stream in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let s = s.clone();
                workers.push(thread::spawn(move || {
                    let _ = connection(&s, stream);
                }));
            }
            for w in workers {
                let _ = w.join();
            }
        });
        Server {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    pub fn url(&self, name: &str) -> String {
        let scheme = if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}/{name}", self.addr)
    }

    /// Serves a fake hawkBit DDI API under `/DEFAULT/controller/v1/` as
    /// well; the file stays at every other path (the artifact's link).
    pub fn with_ddi(self, state: ddi::State) -> Server {
        let api = Arc::new(ddi::Api::new(state));
        let _ = api.server.set(format!("http://{}", self.addr));
        let _ = self.shared.api.set(api);
        self
    }

    /// The fake DDI API (after [`Server::with_ddi`]).
    pub fn ddi(&self) -> Arc<ddi::Api> {
        self.shared.api.get().expect("started with_ddi").clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Body bytes written to clients, all requests together.
    pub fn served(&self) -> u64 {
        self.shared.served.load(Ordering::SeqCst)
    }

    /// Body bytes written for one path (`/acme/latest`).
    pub fn served_of(&self, path: &str) -> u64 {
        let by_path = self.shared.served_by_path.lock().unwrap();
        by_path.get(path).copied().unwrap_or(0)
    }

    /// The `Range: bytes=N-` start of each request (None: no Range).
    pub fn requests(&self) -> Vec<Option<u64>> {
        self.shared.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop up.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn connection(s: &Shared, tcp: TcpStream) -> io::Result<()> {
    // Bounded: a stuck client cannot keep a test waiting.
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
    match &s.tls {
        None => {
            let mut stream = tcp;
            let keep_going = respond(s, &mut stream)?;
            if !keep_going {
                // An abrupt end, as when a link drops.
                let _ = stream.shutdown(Shutdown::Both);
            }
            Ok(())
        }
        Some(config) => {
            let conn = rustls::ServerConnection::new(config.clone()).map_err(io::Error::other)?;
            let mut stream = rustls::StreamOwned::new(conn, tcp);
            if respond(s, &mut stream)? {
                stream.conn.send_close_notify();
                stream.flush()?;
            }
            Ok(())
        }
    }
}

/// Reads one request and answers it; false when the answer was cut short.
fn respond(s: &Shared, stream: &mut (impl Read + Write)) -> io::Result<bool> {
    let head = read_head(stream)?;
    if s.stop.load(Ordering::SeqCst) {
        return Ok(false);
    }
    if let Some(api) = s.api.get() {
        if api.respond(&head, stream)? {
            return Ok(true);
        }
    }
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("/")
        .to_string();
    let ranges = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.eq_ignore_ascii_case("range") {
            return None;
        }
        let (start, end) = value.trim().strip_prefix("bytes=")?.split_once('-')?;
        let end = if end.is_empty() {
            None
        } else {
            Some(end.parse::<u64>().ok()?)
        };
        Some((start.parse::<u64>().ok()?, end))
    });
    let range = ranges.map(|(start, _)| start);
    let file = match s.files.as_slice() {
        [(any, file)] if any == "*" => file,
        files => match files.iter().find(|(p, _)| *p == path) {
            Some((_, file)) => file,
            None => {
                s.requests.lock().unwrap().push(range);
                stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )?;
                return Ok(true);
            }
        },
    };
    let index = {
        let mut requests = s.requests.lock().unwrap();
        requests.push(range);
        requests.len() - 1
    };
    let fault = s.plan.first.get(index).unwrap_or(&s.plan.then).clone();
    if fault == Fault::Status500 {
        stream.write_all(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 6\r\nConnection: close\r\n\r\nbroken",
        )?;
        return Ok(true);
    }
    if fault == Fault::Redirect {
        write!(
            stream,
            "HTTP/1.1 302 Found\r\nLocation: /moved/{index}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(true);
    }
    let len = file.len() as u64;
    let (start, last) = match ranges {
        Some((start, end)) if fault != Fault::IgnoreRange => (
            start,
            end.map_or(len.saturating_sub(1), |e| e.min(len.saturating_sub(1))),
        ),
        _ => (0, len.saturating_sub(1)),
    };
    let partial = ranges.is_some() && fault != Fault::IgnoreRange;
    if start >= len && start > 0 {
        write!(
            stream,
            "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(true);
    }
    let etag = if fault == Fault::NewEtag {
        format!("\"v{}\"", index + 100)
    } else {
        "\"v1\"".to_string()
    };
    // A range from 0 to the end is answered 200, as most servers do.
    let whole = start == 0 && last + 1 == len;
    let mut head = if partial && !whole {
        format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{last}/{len}\r\n")
    } else {
        "HTTP/1.1 200 OK\r\n".to_string()
    };
    let end = if len == 0 { 0 } else { last + 1 };
    if fault != Fault::NoLength {
        head += &format!("Content-Length: {}\r\n", end - start);
    }
    if fault == Fault::HugeHeader {
        head += &format!("X-Filler: {}\r\n", "x".repeat(20 * 1024));
    }
    head += &format!(
        "ETag: {etag}\r\nLast-Modified: Tue, 24 Nov 2026 01:00:00 GMT\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes())?;
    let mut body = file[start as usize..end as usize].to_vec();
    if let Fault::WrongByte(at) = fault {
        if at >= start && at < end {
            body[(at - start) as usize] ^= 0x55;
        }
    }
    let (limit, chunk, pause) = match fault {
        Fault::DropAfter(n) => (n.min(body.len() as u64) as usize, 64 * 1024, None),
        Fault::Slow { chunk, pause } => (body.len(), chunk, Some(pause)),
        _ => (body.len(), 64 * 1024, None),
    };
    for piece in body[..limit].chunks(chunk) {
        if s.stop.load(Ordering::SeqCst) {
            return Ok(false);
        }
        stream.write_all(piece)?;
        stream.flush()?;
        s.served.fetch_add(piece.len() as u64, Ordering::SeqCst);
        *s.served_by_path
            .lock()
            .unwrap()
            .entry(path.clone())
            .or_default() += piece.len() as u64;
        if let Some(pause) = pause {
            thread::sleep(pause);
        }
    }
    Ok(limit == body.len())
}

fn read_head(stream: &mut impl Read) -> io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(io::Error::other("request head too large"));
        }
        if stream.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// A test CA and a certificate for 127.0.0.1 signed by it.
pub struct TestPki {
    pub ca_pem: String,
    pub server: Identity,
}

impl TestPki {
    pub fn new(ca_name: &str) -> TestPki {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, ca_name);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "127.0.0.1");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        TestPki {
            ca_pem: ca_cert.pem(),
            server: Identity {
                chain: vec![cert.der().clone()],
                key_pkcs8: key.serialize_der(),
            },
        }
    }
}
