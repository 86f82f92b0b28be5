//! The hawkBit DDI source (Eclipse hawkBit, gooseBit, any server of that
//! API): polls `/{tenant}/controller/v1/{controllerId}`, sends the
//! device's attributes (`configData`), follows `deploymentBase` and
//! `cancelAction` exactly as linked, and sends feedback on each action.
//!
//! - [`ddi`]: the JSON both ways, bounded and checked (no I/O).
//!
//! The token goes only to the configured server's host. Every link the
//! server gives is checked against that host and scheme (or the extra
//! hosts the configuration allows) before it is followed.

pub mod ddi;

use crate::http::{Authorization, Client, HttpConfig, HttpError, Method, Reply};
use crate::source::{self, Check, Offer, Report, Source, SourceError};
use ddi::{Execution, Finished, LinkPolicy};
use formats::keyvalue::is_name;
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How the device proves who it is.
#[derive(Clone, PartialEq, Eq)]
pub enum Token {
    /// `Authorization: TargetToken …`: this device's own token.
    Target(String),
    /// `Authorization: GatewayToken …`: the tenant's gateway token.
    Gateway(String),
}

impl std::fmt::Debug for Token {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::Target(_) => f.write_str("Target(secret)"),
            Token::Gateway(_) => f.write_str("Gateway(secret)"),
        }
    }
}

/// The longest token accepted in the configuration.
pub const MAX_TOKEN: usize = 256;

/// Where the server is and who the device is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `http(s)://host[:port]` of the server, with a path prefix if the
    /// server is mounted under one.
    pub server: String,
    /// hawkBit's tenant (`DEFAULT` on a single-tenant server).
    pub tenant: String,
    /// The device's controller id.
    pub controller_id: String,
    pub token: Option<Token>,
    /// Other `host[:port]`s that artifact links may point to.
    pub other_hosts: Vec<String>,
    /// The attributes sent in `configData` beside `sw_version`: gooseBit
    /// offers a bundle to a device whose `hw_boardname` and `hw_revision`
    /// match the bundle's hardware compatibility.
    pub attributes: Vec<(String, String)>,
    /// The polling interval when the server names none.
    pub poll: Duration,
}

impl Config {
    /// The `Authorization` header for the server, to give to the HTTP
    /// client that downloads the artifacts (hawkBit asks for the token
    /// there too; gooseBit with device authentication on as well).
    pub fn authorization(&self) -> Option<Authorization> {
        let (scheme, authority) = crate::http::origin_of(&self.server)?;
        let (scheme, authority) = (scheme.to_string(), authority.to_string());
        let value = match self.token.as_ref()? {
            Token::Target(t) => format!("TargetToken {t}"),
            Token::Gateway(t) => format!("GatewayToken {t}"),
        };
        Some(Authorization {
            scheme,
            authority,
            value,
        })
    }

    /// The controller's base URL, after checking the parts.
    fn base(&self) -> Result<String, String> {
        for (what, value) in [
            ("tenant", &self.tenant),
            ("controller id", &self.controller_id),
        ] {
            if !is_name(value) {
                return Err(format!(
                    "{what} {value:?}: expected 1 to 128 of A-Z a-z 0-9 . _ - +"
                ));
            }
        }
        if let Some(Token::Target(t) | Token::Gateway(t)) = &self.token {
            if t.is_empty() || t.len() > MAX_TOKEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "the token: expected 1 to {MAX_TOKEN} visible ASCII characters"
                ));
            }
        }
        for (key, value) in &self.attributes {
            if key.is_empty() || key.len() > 128 || value.len() > 256 || key == "sw_version" {
                return Err(format!(
                    "attribute {key:?}: expected a name of 1 to 128 bytes (not sw_version, \
                     which the agent sends itself) and a value of at most 256"
                ));
            }
        }
        let server = self.server.trim_end_matches('/');
        Ok(format!(
            "{server}/{}/controller/v1/{}",
            self.tenant, self.controller_id
        ))
    }
}

/// What identifies one `configData` sent: the BLAKE3 (hex) of the
/// controller's URL and the body, so that another server or controller id
/// hears it too.
fn fingerprint(base: &str, body: &str) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(base.as_bytes());
    hasher.update(b"\n");
    hasher.update(body.as_bytes());
    hasher.finalize().to_hex().to_string()
}

/// The hawkBit source: one device's conversation with the server.
#[derive(Debug)]
pub struct Hawkbit {
    config: Config,
    base: String,
    links: LinkPolicy,
    client: Client,
    /// What the server last accepted in `configData` ([`fingerprint`]):
    /// sent again only when it changes or the server asks.
    sent_config: Option<String>,
    /// Where that is kept across runs ([`Hawkbit::remembering`]).
    sent_record: Option<PathBuf>,
    /// Cancel requests seen: the action they stop → their own id.
    cancels: HashMap<String, String>,
    /// Deployments seen: the action → its artifacts as the server described them.
    deployments: HashMap<String, Vec<ddi::Artifact>>,
    /// The last progress reported: (action, what, tenth), to send a
    /// `proceeding` per 10 % and not per block.
    last_progress: Option<(String, String, u8)>,
}

const NAME: &str = "hawkbit";

fn unreachable(reason: impl Into<String>) -> SourceError {
    SourceError::Unreachable {
        source_name: NAME.into(),
        reason: reason.into(),
    }
}

fn refused(what: impl Into<String>, reason: impl Into<String>) -> SourceError {
    SourceError::Refused {
        source_name: NAME.into(),
        what: what.into(),
        reason: reason.into(),
    }
}

fn from_ddi(e: ddi::DdiError) -> SourceError {
    refused(e.what, e.reason)
}

impl Hawkbit {
    /// Checks the configuration and makes the HTTP client (with the token
    /// for the server's host only).
    pub fn new(config: Config, http: &HttpConfig) -> Result<Hawkbit, SourceError> {
        let base = config.base().map_err(|e| refused("the configuration", e))?;
        let links =
            LinkPolicy::for_server(&config.server, &config.other_hosts).map_err(from_ddi)?;
        let client = Client::new(&HttpConfig {
            authorization: config.authorization(),
            ..http.clone()
        })
        .map_err(|e| refused("the configuration", e.to_string()))?;
        Ok(Hawkbit {
            config,
            base,
            links,
            client,
            sent_config: None,
            sent_record: None,
            cancels: HashMap::new(),
            deployments: HashMap::new(),
            last_progress: None,
        })
    }

    /// Keeps what `configData` sent in `record` (the agent's
    /// `cfg:update/config-data-sent`), so that each run of a one-shot
    /// command does not send it again: only a change (of the attributes,
    /// the installed version, the server or the controller id) or the
    /// server's asking sends it. A record that cannot be read or written
    /// only means one more `PUT` (logged).
    pub fn remembering(mut self, record: PathBuf) -> Hawkbit {
        self.sent_config = match std::fs::read_to_string(&record) {
            Ok(text) => Some(text.trim().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                log::warn!("{}: {e}; configData is sent again", record.display());
                None
            }
        };
        self.sent_record = Some(record);
        self
    }

    /// `/{tenant}/controller/v1/{controllerId}` on the server.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// One API call; anything but a 2xx is an error naming the status.
    fn call(
        &self,
        method: Method,
        what: &str,
        url: &str,
        body: Option<&str>,
    ) -> Result<Vec<u8>, SourceError> {
        let reply = self
            .client
            .call(method, url, body.map(str::as_bytes), ddi::MAX_JSON)
            .map_err(|e| match e {
                HttpError::BodyTooLarge { .. } => refused(what, e.to_string()),
                e if !e.retryable() => refused(what, e.to_string()),
                e => unreachable(format!("{what}: {e}")),
            })?;
        let Reply { status, body } = reply;
        match status {
            200..=299 => Ok(body),
            300..=399 => Err(refused(
                what,
                format!("{url}: HTTP {status}, a redirect (not followed on the API)"),
            )),
            401 | 403 => Err(refused(
                what,
                format!(
                    "{url}: HTTP {status}: the server refused the device's credentials ({})",
                    ddi::clip(&String::from_utf8_lossy(&body), 200)
                ),
            )),
            _ => Err(unreachable(format!(
                "{what}: {url}: HTTP {status}: {}",
                ddi::clip(&String::from_utf8_lossy(&body), 200)
            ))),
        }
    }

    fn poll(&self) -> Result<ddi::Poll, SourceError> {
        let body = self.call(Method::Get, "the poll", &self.base, None)?;
        ddi::parse_poll(&body, &self.links).map_err(from_ddi)
    }

    /// `PUT configData` with the installed version and the attributes, when
    /// they changed since the last time or when `asked` (the link).
    fn send_config(
        &mut self,
        installed: Option<&str>,
        asked: Option<&str>,
    ) -> Result<(), SourceError> {
        let mut attributes = self.config.attributes.clone();
        if let Some(v) = installed {
            attributes.push(("sw_version".into(), v.into()));
        }
        let body = ddi::config_data(&attributes);
        let sent = fingerprint(&self.base, &body);
        if asked.is_none() && self.sent_config.as_ref() == Some(&sent) {
            return Ok(());
        }
        let default = format!("{}/configData", self.base);
        let url = asked.unwrap_or(&default).to_string();
        self.call(Method::Put, "configData", &url, Some(&body))?;
        log::info!(
            "hawkbit: sent the device's attributes (installed version {})",
            installed.unwrap_or("none")
        );
        // A server that links configData at every poll hears it every
        // time, but the record on cfg is rewritten only when it changes.
        let changed = self.sent_config.as_ref() != Some(&sent);
        if let Some(record) = self.sent_record.as_ref().filter(|_| changed) {
            if let Err(e) = formats::store::write_atomic(record, format!("{sent}\n").as_bytes()) {
                log::warn!("{}: {e}; configData will be sent again", record.display());
            }
        }
        self.sent_config = Some(sent);
        Ok(())
    }

    fn feedback(
        &self,
        url: &str,
        execution: Execution,
        finished: Finished,
        progress: Option<(u32, u32)>,
        details: &[String],
    ) -> Result<(), SourceError> {
        let body = ddi::feedback(execution, finished, progress, details);
        self.call(Method::Post, "feedback", url, Some(&body))
            .map(drop)
    }

    fn offer(&mut self, url: &str) -> Result<Check, SourceError> {
        let body = self.call(Method::Get, "deploymentBase", url, None)?;
        let Some(d) = ddi::parse_deployment(&body, &self.links).map_err(from_ddi)? else {
            return Ok(Check::Nothing {
                again_after: self.config.poll,
            });
        };
        log::info!(
            "hawkbit: action {} offers {} ({} file(s); download {:?}, update {:?}{})",
            d.id,
            d.version.as_deref().unwrap_or("an unnamed version"),
            d.artifacts.len(),
            d.download,
            d.update,
            if d.window_open {
                ""
            } else {
                ", maintenance window closed"
            }
        );
        let offer = Offer {
            id: d.id.clone(),
            version: d.version.clone(),
            artifacts: d
                .artifacts
                .iter()
                .map(|a| source::Artifact {
                    name: a.name.clone(),
                    url: a.url.clone(),
                    size: Some(a.size),
                })
                .collect(),
            download: d.download,
            install: d.update,
            window_open: d.window_open,
        };
        self.deployments.insert(d.id, d.artifacts);
        Ok(Check::Offer(offer))
    }
}

impl Source for Hawkbit {
    fn name(&self) -> &str {
        NAME
    }

    fn check(&mut self, installed: Option<&str>) -> Result<Check, SourceError> {
        let mut poll = self.poll()?;
        let asked = poll.config_data.clone();
        let before = self.sent_config.clone();
        self.send_config(installed, asked.as_deref())?;
        if asked.is_some() || before != self.sent_config {
            // What the server offers may depend on what it just learnt
            // (gooseBit offers nothing to a device it knows no hardware of).
            poll = self.poll()?;
        }
        if let Some(url) = poll.cancel {
            let body = self.call(Method::Get, "cancelAction", &url, None)?;
            let cancel = ddi::parse_cancel(&body).map_err(from_ddi)?;
            log::info!("hawkbit: the server cancels action {}", cancel.stop_id);
            self.cancels.insert(cancel.stop_id.clone(), cancel.id);
            return Ok(Check::Cancel { id: cancel.stop_id });
        }
        if let Some(url) = poll.deployment {
            return self.offer(&url);
        }
        Ok(Check::Nothing {
            again_after: poll.sleep.unwrap_or(self.config.poll),
        })
    }

    fn report(&mut self, offer_id: &str, report: &Report) -> Result<(), SourceError> {
        let id = ddi::check_id("the action id", offer_id).map_err(from_ddi)?;
        let url = format!("{}/deploymentBase/{id}/feedback", self.base);
        match report {
            Report::Proceeding { what, percent } => {
                let tenth = percent.map_or(u8::MAX, |p| p.min(100) / 10);
                let now = (id.clone(), what.clone(), tenth);
                if self.last_progress.as_ref() == Some(&now) {
                    return Ok(());
                }
                let detail = match percent {
                    // gooseBit shows progress from this wording (SWUpdate's).
                    Some(p) => format!("{what}: Downloaded {}%", p.min(&100)),
                    None => what.clone(),
                };
                let progress = percent.map(|p| (u32::from(p.min(100)), 100));
                self.feedback(
                    &url,
                    Execution::Proceeding,
                    Finished::None,
                    progress,
                    &[detail],
                )?;
                self.last_progress = Some(now);
            }
            Report::Downloaded => self.feedback(
                &url,
                Execution::Downloaded,
                Finished::None,
                None,
                &["downloaded and verified; waiting to install".into()],
            )?,
            Report::Closed { success, details } => {
                let finished = if *success {
                    Finished::Success
                } else {
                    Finished::Failure
                };
                self.feedback(
                    &url,
                    Execution::Closed,
                    finished,
                    None,
                    std::slice::from_ref(details),
                )?;
                self.deployments.remove(&id);
            }
            Report::Cancelled { accepted, details } => {
                // hawkBit's cancel has its own id (usually the same number).
                let cancel = self.cancels.get(&id).cloned().unwrap_or_else(|| id.clone());
                let url = format!("{}/cancelAction/{cancel}/feedback", self.base);
                // Accepting is `closed`/`success` on the cancel action
                // (hawkBit ignores `canceled` there); refusing, `rejected`.
                let (execution, finished) = if *accepted {
                    (Execution::Closed, Finished::Success)
                } else {
                    (Execution::Rejected, Finished::None)
                };
                self.feedback(
                    &url,
                    execution,
                    finished,
                    None,
                    std::slice::from_ref(details),
                )?;
                self.cancels.remove(&id);
                if *accepted {
                    self.deployments.remove(&id);
                }
            }
        }
        Ok(())
    }

    fn check_artifact(&self, offer_id: &str, name: &str, path: &Path) -> Result<(), SourceError> {
        let Some(artifact) = self
            .deployments
            .get(offer_id)
            .and_then(|a| a.iter().find(|a| a.name == name))
        else {
            return Ok(());
        };
        let mut checks: Vec<(&str, &'static ring::digest::Algorithm, &str)> = Vec::new();
        if let Some(h) = &artifact.sha256 {
            checks.push(("sha256", &ring::digest::SHA256, h));
        }
        if let Some(h) = &artifact.sha1 {
            checks.push(("sha1", &ring::digest::SHA1_FOR_LEGACY_USE_ONLY, h));
        }
        if checks.is_empty() {
            return Ok(());
        }
        let fail = |e: std::io::Error| refused(format!("{}", path.display()), e.to_string());
        let mut file = File::open(path).map_err(fail)?;
        let mut contexts: Vec<ring::digest::Context> = checks
            .iter()
            .map(|(_, alg, _)| ring::digest::Context::new(alg))
            .collect();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).map_err(fail)?;
            if n == 0 {
                break;
            }
            for c in &mut contexts {
                c.update(&buf[..n]);
            }
        }
        for ((what, _, expected), c) in checks.iter().zip(contexts) {
            let got = formats::manifest::hex(c.finish().as_ref());
            if got != *expected {
                return Err(refused(
                    format!("{name} of action {offer_id}"),
                    format!("its {what} is {got}, the server said {expected}"),
                ));
            }
        }
        Ok(())
    }
}

/// The `hawkbit-*` keys of `agent.conf` (the agent's config has one field
/// of this type; its parser hands these keys to [`Settings::set`]).
pub const KEYS: &[&str] = &[
    "hawkbit-server",
    "hawkbit-tenant",
    "hawkbit-controller-id",
    "hawkbit-target-token",
    "hawkbit-gateway-token",
    "hawkbit-hardware",
    "hawkbit-allow-hosts",
    "hawkbit-poll",
];

/// The hawkBit section of `agent.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub server: Option<String>,
    pub tenant: String,
    pub controller_id: Option<String>,
    pub token: Option<Token>,
    /// `hw_revision`; `hw_boardname` is the product.
    pub hardware: Option<String>,
    pub allow_hosts: Vec<String>,
    pub poll: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            server: None,
            tenant: "DEFAULT".into(),
            controller_id: None,
            token: None,
            hardware: None,
            allow_hosts: Vec::new(),
            poll: Duration::from_secs(300),
        }
    }
}

impl Settings {
    /// Takes one `hawkbit-*` pair.
    pub fn set(
        &mut self,
        pair: &formats::keyvalue::Pair<'_>,
    ) -> Result<(), formats::keyvalue::KeyValueError> {
        let v = pair.value;
        let token = |v: &str| {
            if v.is_empty() || v.len() > MAX_TOKEN || !v.bytes().all(|b| b.is_ascii_graphic()) {
                Err(pair.bad(&format!(
                    "expected 1 to {MAX_TOKEN} visible ASCII characters"
                )))
            } else {
                Ok(v.to_string())
            }
        };
        match pair.key {
            "hawkbit-server" => {
                let url = v.trim_end_matches('/');
                LinkPolicy::for_server(url, &[])
                    .map_err(|_| pair.bad("expected an http:// or https:// URL with a host"))?;
                if !crate::partial::is_keepable(url, ddi::MAX_URL) {
                    return Err(pair.bad("expected a URL of visible ASCII characters"));
                }
                self.server = Some(url.to_string());
            }
            "hawkbit-tenant" => self.tenant = pair.as_name()?.to_string(),
            "hawkbit-controller-id" => {
                let id = pair.as_name()?;
                ddi::check_id("hawkbit-controller-id", id).map_err(|e| pair.bad(&e.reason))?;
                self.controller_id = Some(id.to_string());
            }
            "hawkbit-target-token" => self.token = Some(Token::Target(token(v)?)),
            "hawkbit-gateway-token" => self.token = Some(Token::Gateway(token(v)?)),
            "hawkbit-hardware" => self.hardware = Some(pair.as_name()?.to_string()),
            "hawkbit-allow-hosts" => {
                let hosts: Vec<&str> = v.split(' ').filter(|w| !w.is_empty()).collect();
                if hosts.iter().any(|h| {
                    h.contains(['/', '@', '?', '#']) || !h.bytes().all(|b| b.is_ascii_graphic())
                }) {
                    return Err(pair.bad("expected host[:port]s separated by spaces"));
                }
                self.allow_hosts = hosts.into_iter().map(str::to_string).collect();
            }
            "hawkbit-poll" => {
                let n = pair.as_u64()?;
                if !(5..=86_400).contains(&n) {
                    return Err(pair.bad("expected 5 to 86400 seconds"));
                }
                self.poll = Duration::from_secs(n);
            }
            _ => unreachable!("only the keys of hawkbit::KEYS come here"),
        }
        Ok(())
    }

    /// What `source=hawkbit` needs and is missing, if anything.
    pub fn missing(&self) -> Option<&'static str> {
        if self.server.is_none() {
            Some("hawkbit-server")
        } else if self.controller_id.is_none() {
            Some("hawkbit-controller-id")
        } else {
            None
        }
    }

    /// The `Authorization` header for the server (see [`Config::authorization`]).
    pub fn authorization(&self) -> Option<Authorization> {
        Config {
            server: self.server.clone()?,
            tenant: String::new(),
            controller_id: String::new(),
            token: self.token.clone(),
            other_hosts: Vec::new(),
            attributes: Vec::new(),
            poll: self.poll,
        }
        .authorization()
    }

    /// The source's configuration for a device of `product`.
    pub fn source_config(&self, product: &str) -> Result<Config, String> {
        if let Some(key) = self.missing() {
            return Err(format!("source=hawkbit needs {key}="));
        }
        let mut attributes = vec![("hw_boardname".to_string(), product.to_string())];
        if let Some(revision) = &self.hardware {
            attributes.push(("hw_revision".into(), revision.clone()));
        }
        Ok(Config {
            server: self.server.clone().unwrap_or_default(),
            tenant: self.tenant.clone(),
            controller_id: self.controller_id.clone().unwrap_or_default(),
            token: self.token.clone(),
            other_hosts: self.allow_hosts.clone(),
            attributes,
            poll: self.poll,
        })
    }
}
