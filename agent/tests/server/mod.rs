//! A fault-injecting HTTP/1.1 server for the agent's tests: serves one
//! file on 127.0.0.1 (a thread per connection, `Connection: close`),
//! optionally over TLS, with a planned fault per request. It counts the
//! body bytes it wrote, so tests can assert on what a download cost. It
//! stops when dropped.

#![allow(dead_code)] // each test file uses its own part of it

pub mod ddi;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

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
    file: Vec<u8>,
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
        Server::spawn(file, plan, None)
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
        Server::spawn(file, plan, Some(Arc::new(config)))
    }

    fn spawn(file: Vec<u8>, plan: Plan, tls: Option<Arc<rustls::ServerConfig>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            file,
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
    let range = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.eq_ignore_ascii_case("range") {
            return None;
        }
        let value = value.trim().strip_prefix("bytes=")?.strip_suffix('-')?;
        value.parse::<u64>().ok()
    });
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
    let len = s.file.len() as u64;
    let start = match range {
        Some(start) if fault != Fault::IgnoreRange => start,
        _ => 0,
    };
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
    let mut head = if start > 0 {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{len}\r\n",
            len - 1
        )
    } else {
        "HTTP/1.1 200 OK\r\n".to_string()
    };
    if fault != Fault::NoLength {
        head += &format!("Content-Length: {}\r\n", len - start);
    }
    if fault == Fault::HugeHeader {
        head += &format!("X-Filler: {}\r\n", "x".repeat(20 * 1024));
    }
    head += &format!(
        "ETag: {etag}\r\nLast-Modified: Tue, 24 Nov 2026 01:00:00 GMT\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes())?;
    let mut body = s.file[start as usize..].to_vec();
    if let Fault::WrongByte(at) = fault {
        if at >= start && at < len {
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
