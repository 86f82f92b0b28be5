//! A small blocking HTTP/1.1 client over rustls (ureq with the `ring`
//! provider): timeouts, a user agent, bounded redirects and headers, and
//! which certificate authorities to trust (Mozilla's roots, an extra CA
//! file of the vendor's, or only that file); credentials sent to one host
//! only; small JSON calls with a bounded answer for a fleet server's API.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

/// How the agent talks HTTP.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Time to set up the TCP connection (and per address tried).
    pub connect_timeout: Duration,
    /// Longest silence while waiting for an answer or for the next bytes of
    /// a body. A slow link is fine; a dead one ends the attempt.
    pub read_timeout: Duration,
    pub user_agent: String,
    /// PEM files of certificate authorities to trust.
    pub ca_files: Vec<PathBuf>,
    /// Whether Mozilla's roots (the `webpki-root-certs` crate) are trusted
    /// too. With no CA file they always are.
    pub webpki_roots: bool,
    /// Redirects followed before giving up.
    pub max_redirects: u32,
    /// An `Authorization` header for one server (a hawkBit token), sent
    /// with every request to that host and to no other (nor along a redirect).
    pub authorization: Option<Authorization>,
}

/// An `Authorization` header value and the one origin it is sent to: the
/// scheme (`https`: never over plain `http` to the same host) and the host
/// (`host[:port]`, as in the URL).
#[derive(Clone, PartialEq, Eq)]
pub struct Authorization {
    pub scheme: String,
    pub authority: String,
    pub value: String,
}

impl fmt::Debug for Authorization {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorization")
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .field("value", &"(secret)")
            .finish()
    }
}

/// The methods of a fleet server's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Post,
}

/// An API answer: the status and the whole (bounded) body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The longest status line plus headers accepted.
pub const MAX_HEADER_SIZE: usize = 16 * 1024;

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
            user_agent: format!("reimage-agent/{}", env!("CARGO_PKG_VERSION")),
            ca_files: Vec::new(),
            webpki_roots: true,
            max_redirects: 5,
            authorization: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum HttpError {
    #[error("trusted CA file {path}: {source}")]
    CaFile { path: PathBuf, source: io::Error },
    #[error("trusted CA file {path}: {reason}")]
    CaPem { path: PathBuf, reason: String },
    #[error("{url}: not an http:// or https:// URL with a host")]
    BadUrl { url: String },
    #[error("{host}: TLS: the server's certificate is not trusted: {cause}")]
    Untrusted { host: String, cause: String },
    #[error("{host}: TLS: {cause}")]
    Tls { host: String, cause: String },
    #[error("{url}: {what} timed out")]
    Timeout { url: String, what: String },
    #[error("{url}: more than {max} redirects")]
    TooManyRedirects { url: String, max: u32 },
    #[error("{url}: the answer's headers are larger than {MAX_HEADER_SIZE} bytes")]
    HeaderTooLarge { url: String },
    #[error("{url}: the answer's body is larger than {max} bytes")]
    BodyTooLarge { url: String, max: u64 },
    #[error("{url}: cancelled")]
    Cancelled { url: String },
    #[error("{url}: {cause}")]
    Transport { url: String, cause: String },
}

impl HttpError {
    /// Whether trying again later can help (a broken setup or a refused
    /// certificate will not mend itself within a round of attempts).
    pub fn retryable(&self) -> bool {
        !matches!(
            self,
            HttpError::CaFile { .. }
                | HttpError::CaPem { .. }
                | HttpError::BadUrl { .. }
                | HttpError::Untrusted { .. }
                | HttpError::TooManyRedirects { .. }
                | HttpError::Cancelled { .. }
        )
    }
}

/// An HTTP client; cheap to share, keeps no connection between requests
/// that a download would depend on.
pub struct Client {
    agent: ureq::Agent,
    max_redirects: u32,
    authorization: Option<Authorization>,
    cancelled: Arc<AtomicBool>,
}

/// Stops a client's transfers from another place (a fleet server's
/// cancel, seen by a poll during a download): the body being read fails
/// at its next read and every later request fails at once, not retried.
#[derive(Debug, Clone)]
pub struct Canceller(Arc<AtomicBool>);

impl Canceller {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for Client {
    /// Short, and without the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("authorization", &self.authorization)
            .finish_non_exhaustive()
    }
}

/// The parts of an answer a download looks at, and its body.
pub struct Response {
    pub status: u16,
    pub content_length: Option<u64>,
    pub content_range: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    body: ureq::BodyReader<'static>,
    cancelled: Arc<AtomicBool>,
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancelled.load(Ordering::SeqCst) {
            return Err(io::Error::other("cancelled"));
        }
        self.body.read(buf)
    }
}

impl Client {
    pub fn new(config: &HttpConfig) -> Result<Client, HttpError> {
        let mut roots: Vec<Certificate<'static>> = Vec::new();
        for path in &config.ca_files {
            roots.extend(read_ca_file(path)?);
        }
        if config.webpki_roots || config.ca_files.is_empty() {
            roots.extend(
                webpki_root_certs::TLS_SERVER_ROOT_CERTS
                    .iter()
                    .map(|der| Certificate::from_der(der.as_ref()).to_owned()),
            );
        }
        // ureq takes the process's provider; ring is the only one built in.
        // An error only says that one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&roots))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .user_agent(config.user_agent.as_str())
            .timeout_connect(Some(config.connect_timeout))
            .timeout_recv_response(Some(config.read_timeout))
            .timeout_per_read(Some(config.read_timeout))
            .max_redirects(config.max_redirects)
            .max_response_header_size(MAX_HEADER_SIZE)
            // Statuses are the caller's to judge (206, 200, 416, 5xx).
            .http_status_as_error(false)
            // No proxy from the environment: the device's config decides.
            .proxy(None)
            .build()
            .new_agent();
        Ok(Client {
            agent,
            max_redirects: config.max_redirects,
            authorization: config.authorization.clone(),
            cancelled: Arc::new(AtomicBool::new(false)),
        })
    }

    /// What stops this client's transfers.
    pub fn canceller(&self) -> Canceller {
        Canceller(self.cancelled.clone())
    }

    fn check_cancelled(&self, url: &str) -> Result<(), HttpError> {
        if self.cancelled.load(Ordering::SeqCst) {
            return Err(HttpError::Cancelled {
                url: url.to_string(),
            });
        }
        Ok(())
    }

    /// `GET url`, from byte `from` on (a `Range` request) when it is not 0.
    pub fn get(&self, url: &str, from: u64) -> Result<Response, HttpError> {
        self.get_range(url, from, None)
    }

    /// `GET url` for bytes `from` to `to` (inclusive; to the end when
    /// `None`): a `Range` request unless it is the whole file.
    pub fn get_range(&self, url: &str, from: u64, to: Option<u64>) -> Result<Response, HttpError> {
        self.check_cancelled(url)?;
        let host = host_of(url).ok_or_else(|| HttpError::BadUrl {
            url: url.to_string(),
        })?;
        let mut request = self.agent.get(url);
        if let Some(value) = self.authorization_for(url) {
            request = request.header("Authorization", value);
        }
        match to {
            Some(to) => request = request.header("Range", format!("bytes={from}-{to}")),
            None if from > 0 => request = request.header("Range", format!("bytes={from}-")),
            None => {}
        }
        let response = request
            .call()
            .map_err(|e| classify(e, url, host, self.max_redirects))?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_length = match header("content-length") {
            Some(v) => Some(v.trim().parse::<u64>().map_err(|_| HttpError::Transport {
                url: url.to_string(),
                cause: format!("Content-Length {v:?} is not a number"),
            })?),
            None => None,
        };
        Ok(Response {
            status: response.status().as_u16(),
            content_length,
            content_range: header("content-range"),
            etag: header("etag"),
            last_modified: header("last-modified"),
            body: response.into_body().into_reader(),
            cancelled: self.cancelled.clone(),
        })
    }

    /// The `Authorization` value for a request to `url`, if its scheme and
    /// host are the configured ones.
    fn authorization_for(&self, url: &str) -> Option<&str> {
        let (scheme, host) = origin_of(url)?;
        self.authorization
            .as_ref()
            .filter(|a| a.scheme.eq_ignore_ascii_case(scheme))
            .filter(|a| a.authority.eq_ignore_ascii_case(host))
            .map(|a| a.value.as_str())
    }

    /// A call to a fleet server's API: `json` as the body of a PUT or POST,
    /// `Accept: application/json`, no redirect followed (a 3xx is the
    /// caller's to refuse), and at most `max_body` bytes of answer read.
    pub fn call(
        &self,
        method: Method,
        url: &str,
        json: Option<&[u8]>,
        max_body: u64,
    ) -> Result<Reply, HttpError> {
        let host = host_of(url).ok_or_else(|| HttpError::BadUrl {
            url: url.to_string(),
        })?;
        let auth = self.authorization_for(url);
        let fail = |e| classify(e, url, host, 0);
        let response = match method {
            Method::Get => {
                let mut r = self.agent.get(url).header("Accept", "application/json");
                if let Some(value) = auth {
                    r = r.header("Authorization", value);
                }
                r.config().max_redirects(0).build().call()
            }
            Method::Put | Method::Post => {
                let mut r = if method == Method::Put {
                    self.agent.put(url)
                } else {
                    self.agent.post(url)
                };
                r = r
                    .header("Accept", "application/json")
                    .header("Content-Type", "application/json");
                if let Some(value) = auth {
                    r = r.header("Authorization", value);
                }
                r.config()
                    .max_redirects(0)
                    .build()
                    .send(json.unwrap_or_default())
            }
        }
        .map_err(fail)?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .with_config()
            .limit(max_body)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => HttpError::BodyTooLarge {
                    url: url.to_string(),
                    max: max_body,
                },
                other => fail(other),
            })?;
        Ok(Reply { status, body })
    }
}

/// Why a small file (a feed's `latest`, a manifest, a signature, a
/// bundle's head) could not be fetched.
#[derive(Debug, Error)]
pub enum FetchError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{url}: HTTP {status} (expected {expected})")]
    Status {
        url: String,
        status: u16,
        expected: &'static str,
    },
    #[error("{url}: larger than the {max} bytes accepted")]
    TooLarge { url: String, max: u64 },
    #[error("{url}: {what}")]
    Answer { url: String, what: String },
    #[error("{url}: reading the answer: {source}")]
    Read { url: String, source: io::Error },
}

impl FetchError {
    /// Whether trying again later can help.
    pub fn retryable(&self) -> bool {
        match self {
            FetchError::Http(e) => e.retryable(),
            FetchError::Status { status, .. } => {
                !(400..500).contains(status) || matches!(status, 408 | 429)
            }
            FetchError::TooLarge { .. } | FetchError::Answer { .. } => false,
            FetchError::Read { .. } => true,
        }
    }
}

/// Reads at most `max` bytes of a body; `Err(None)` when there are more.
fn read_at_most(body: &mut impl Read, max: u64) -> io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    body.take(max + 1).read_to_end(&mut out)?;
    Ok((out.len() as u64 <= max).then_some(out))
}

impl Client {
    /// The whole of a small file (200 only), refused when it is larger
    /// than `max` bytes: by its `Content-Length`, or by reading one byte
    /// more than `max`.
    pub fn get_small(&self, url: &str, max: u64) -> Result<Vec<u8>, FetchError> {
        let mut response = self.get(url, 0)?;
        if response.status != 200 {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: response.status,
                expected: "200",
            });
        }
        let too_large = || FetchError::TooLarge {
            url: url.to_string(),
            max,
        };
        if response.content_length.is_some_and(|len| len > max) {
            return Err(too_large());
        }
        read_at_most(&mut response, max)
            .map_err(|source| FetchError::Read {
                url: url.to_string(),
                source,
            })?
            .ok_or_else(too_large)
    }

    /// The first `max` bytes of a file (all of it if it is shorter) by a
    /// `Range` request, and the file's whole length: from `Content-Range`
    /// (206), or `Content-Length` (a 200 from a server that ignores Range;
    /// only `max` bytes of it are read).
    pub fn get_head(&self, url: &str, max: u64) -> Result<(Vec<u8>, u64), FetchError> {
        let answer = |what: String| FetchError::Answer {
            url: url.to_string(),
            what,
        };
        let mut response = self.get_range(url, 0, Some(max.saturating_sub(1)))?;
        let (len, want) = match response.status {
            206 => {
                let range = response
                    .content_range
                    .as_deref()
                    .ok_or_else(|| answer("206 without Content-Range".into()))?;
                let (start, end, total) =
                    crate::download::parse_content_range(range).ok_or_else(|| {
                        answer(format!(
                            "Content-Range {range:?}: expected bytes START-END/TOTAL"
                        ))
                    })?;
                let total = total.ok_or_else(|| {
                    answer(format!(
                        "Content-Range {range:?}: the file's length is needed"
                    ))
                })?;
                if start != 0 || end + 1 != total.min(max) {
                    return Err(answer(format!(
                        "Content-Range {range:?}: asked for bytes 0-{}",
                        max - 1
                    )));
                }
                (total, end + 1)
            }
            200 => {
                let total = response.content_length.ok_or_else(|| {
                    answer(
                        "200 without Content-Length to a Range request: the length is needed"
                            .into(),
                    )
                })?;
                (total, total.min(max))
            }
            status => {
                return Err(FetchError::Status {
                    url: url.to_string(),
                    status,
                    expected: "206 or 200",
                })
            }
        };
        let mut head = Vec::new();
        (&mut response)
            .take(want)
            .read_to_end(&mut head)
            .map_err(|source| FetchError::Read {
                url: url.to_string(),
                source,
            })?;
        if (head.len() as u64) < want {
            return Err(FetchError::Read {
                url: url.to_string(),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the answer ended after {} of {want} bytes", head.len()),
                ),
            });
        }
        Ok((head, len))
    }
}

/// The host of an `http://` or `https://` URL, for messages.
pub fn host_of(url: &str) -> Option<&str> {
    origin_of(url).map(|(_, host)| host)
}

/// The scheme (`http` or `https`) and the host (`host[:port]`) of a URL.
pub fn origin_of(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = ["https", "http"]
        .into_iter()
        .find_map(|scheme| Some((scheme, url.strip_prefix(scheme)?.strip_prefix("://")?)))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    (!host.is_empty()).then_some((scheme, host))
}

fn read_ca_file(path: &PathBuf) -> Result<Vec<Certificate<'static>>, HttpError> {
    let pem = fs::read(path).map_err(|source| HttpError::CaFile {
        path: path.clone(),
        source,
    })?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(HttpError::CaPem {
                    path: path.clone(),
                    reason: e.to_string(),
                })
            }
        }
    }
    if certs.is_empty() {
        return Err(HttpError::CaPem {
            path: path.clone(),
            reason: "no CERTIFICATE block in it (expected PEM)".into(),
        });
    }
    Ok(certs)
}

/// Names what went wrong, with the host for TLS errors.
fn classify(e: ureq::Error, url: &str, host: &str, max_redirects: u32) -> HttpError {
    let url_s = url.to_string();
    match e {
        ureq::Error::BadUri(_) => HttpError::BadUrl { url: url_s },
        ureq::Error::Timeout(t) => HttpError::Timeout {
            url: url_s,
            what: t.to_string(),
        },
        ureq::Error::TooManyRedirects => HttpError::TooManyRedirects {
            url: url_s,
            max: max_redirects,
        },
        ureq::Error::LargeResponseHeader(..) => HttpError::HeaderTooLarge { url: url_s },
        ureq::Error::Rustls(e) => tls_error(host, &e),
        ureq::Error::Io(io) => match io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(e) => tls_error(host, e),
            None => HttpError::Transport {
                url: url_s,
                cause: io.to_string(),
            },
        },
        other => HttpError::Transport {
            url: url_s,
            cause: other.to_string(),
        },
    }
}

fn tls_error(host: &str, e: &rustls::Error) -> HttpError {
    match e {
        rustls::Error::InvalidCertificate(cause) => HttpError::Untrusted {
            host: host.to_string(),
            cause: explain(cause),
        },
        other => HttpError::Tls {
            host: host.to_string(),
            cause: other.to_string(),
        },
    }
}

/// The certificate error's name, and what it means for an operator.
fn explain(cause: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    let meaning = match cause {
        E::UnknownIssuer => "not signed by a trusted CA (give the vendor's CA with --ca)",
        E::Expired | E::ExpiredContext { .. } => "expired (or the device's clock is wrong)",
        E::NotValidYet | E::NotValidYetContext { .. } => {
            "not valid yet (or the device's clock is wrong)"
        }
        E::NotValidForName | E::NotValidForNameContext { .. } => "issued for another host name",
        E::Revoked => "revoked",
        E::BadSignature => "its signature does not verify",
        _ => "refused",
    };
    let name = format!("{cause:?}");
    let name = name.split([' ', '{', '(']).next().unwrap_or("");
    format!("{name}: {meaning}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_named_for_messages() {
        assert_eq!(
            host_of("https://u.example:8443/a/b?c"),
            Some("u.example:8443")
        );
        assert_eq!(host_of("http://user@127.0.0.1/x"), Some("127.0.0.1"));
        assert_eq!(host_of("ftp://x/y"), None);
        assert_eq!(host_of("https:///y"), None);
    }

    #[test]
    fn the_authorization_goes_only_to_the_servers_scheme_and_host() {
        let client = Client::new(&HttpConfig {
            authorization: Some(Authorization {
                scheme: "https".into(),
                authority: "hawkbit.example:8443".into(),
                value: "TargetToken secret".into(),
            }),
            ..HttpConfig::default()
        })
        .unwrap();
        let sent = |url| client.authorization_for(url);
        assert_eq!(
            sent("https://hawkbit.example:8443/DEFAULT/controller/v1/x"),
            Some("TargetToken secret")
        );
        assert_eq!(
            sent("https://HAWKBIT.example:8443/a"),
            Some("TargetToken secret")
        );
        assert_eq!(sent("http://hawkbit.example:8443/a"), None, "plain http");
        assert_eq!(sent("https://hawkbit.example/a"), None, "another port");
        assert_eq!(sent("https://cdn.example:8443/a"), None, "another host");
        assert_eq!(origin_of("http://h:80/x"), Some(("http", "h:80")));
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ca.pem");
        let config = HttpConfig {
            ca_files: vec![missing.clone()],
            ..HttpConfig::default()
        };
        let err = Client::new(&config).err().unwrap().to_string();
        assert!(err.contains("ca.pem"), "{err}");
        fs::write(&missing, "not pem\n").unwrap();
        let err = Client::new(&config).err().unwrap().to_string();
        assert!(err.contains("no CERTIFICATE"), "{err}");
    }

    #[test]
    fn a_bad_url_is_refused_before_any_connection() {
        let client = Client::new(&HttpConfig::default()).unwrap();
        let err = client.get("ftp://x/y", 0).err().unwrap();
        assert!(matches!(err, HttpError::BadUrl { .. }), "{err}");
        assert!(!err.retryable());
    }
}
