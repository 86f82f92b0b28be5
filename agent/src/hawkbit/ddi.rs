//! hawkBit DDI's JSON, both ways, with no I/O: what the server sends
//! (parsed with every size bounded, every id and link checked, unknown
//! fields ignored) and what the agent sends (`configData`, feedback).
//!
//! Everything here came over the network and is treated as hostile: a
//! link that points at another host or scheme than the configured server,
//! an id that could not be a path segment, a file name that is not a plain
//! name, a size past the limit, a duration that is not `HH:MM:SS`: each is
//! an error that names the field and what was expected.

use crate::source::Mode;
use formats::keyvalue::is_name;
use serde::Deserialize;
use std::time::Duration;
use thiserror::Error;

/// The largest JSON answer read from the server.
pub const MAX_JSON: u64 = 256 * 1024;
/// The most artifacts a deployment may name (all chunks together).
pub const MAX_ARTIFACTS: usize = 16;
/// The largest artifact accepted (the download engine's default bound).
pub const MAX_ARTIFACT_SIZE: u64 = 16 << 30;
/// The longest URL accepted in a link.
pub const MAX_URL: usize = 2048;
/// The longest version string accepted.
pub const MAX_VERSION: usize = 128;
/// The polling interval the server asks for is clamped to this range.
pub const MIN_SLEEP: Duration = Duration::from_secs(5);
pub const MAX_SLEEP: Duration = Duration::from_secs(24 * 3600);
/// The longest `details` entry sent (hawkBit keeps 512 characters).
pub const MAX_DETAIL: usize = 512;

/// A refusal: the field or answer, and why.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{what}: {reason}")]
pub struct DdiError {
    pub what: String,
    pub reason: String,
}

fn refuse(what: impl Into<String>, reason: impl Into<String>) -> DdiError {
    DdiError {
        what: what.into(),
        reason: reason.into(),
    }
}

/// Which links are followed: those on the configured server (same scheme,
/// host and port), and on the extra hosts the configuration allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPolicy {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]` of the configured server, lowercase.
    pub authority: String,
    /// Other `host[:port]`s links may point to (an artifact store),
    /// lowercase. Links to them use the server's scheme as well.
    pub other_hosts: Vec<String>,
}

impl LinkPolicy {
    /// The policy for a server URL (`https://host[:port]`, anything after
    /// the authority is ignored).
    pub fn for_server(server: &str, other_hosts: &[String]) -> Result<LinkPolicy, DdiError> {
        let (scheme, authority, _) = split_url(server)
            .ok_or_else(|| refuse("server", format!("{server:?} is not an http(s)://host URL")))?;
        Ok(LinkPolicy {
            scheme: scheme.to_string(),
            authority: authority.to_ascii_lowercase(),
            other_hosts: other_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        })
    }

    /// `url` if it may be followed; `what` names the link in the error.
    pub fn check(&self, what: &str, url: &str) -> Result<String, DdiError> {
        if url.len() > MAX_URL {
            return Err(refuse(what, format!("a link longer than {MAX_URL} bytes")));
        }
        if !url.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(refuse(
                what,
                format!("{url:?}: a link must be visible ASCII, without spaces"),
            ));
        }
        let (scheme, authority, _) = split_url(url)
            .ok_or_else(|| refuse(what, format!("{url:?} is not an http(s)://host/… URL")))?;
        if authority.contains('@') {
            return Err(refuse(what, format!("{url:?}: credentials in a link")));
        }
        if scheme != self.scheme {
            return Err(refuse(
                what,
                format!(
                    "{url:?}: the server is {}://, the link is {scheme}://",
                    self.scheme
                ),
            ));
        }
        let authority = authority.to_ascii_lowercase();
        if authority != self.authority && !self.other_hosts.contains(&authority) {
            return Err(refuse(
                what,
                format!(
                    "{url:?} points to {authority}, not to the configured server {} \
                     (allow it in the configuration if it is yours)",
                    self.authority
                ),
            ));
        }
        Ok(url.to_string())
    }
}

/// `(scheme, authority, rest)` of an `http(s)://authority…` URL.
fn split_url(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(end);
    (!authority.is_empty()).then_some((scheme, authority, rest))
}

/// An id the server gave (an action id): a plain name of at most 64
/// characters, since it goes into URL paths and into records on `cfg`.
pub fn check_id(what: &str, id: &str) -> Result<String, DdiError> {
    if id.len() > 64 || !is_name(id) {
        return Err(refuse(
            what,
            format!(
                "id {:?}: expected 1 to 64 of A-Z a-z 0-9 . _ - +",
                clip(id, 80)
            ),
        ));
    }
    Ok(id.to_string())
}

/// `HH:MM:SS` (hawkBit's `config.polling.sleep`), clamped to
/// [`MIN_SLEEP`]..=[`MAX_SLEEP`].
pub fn parse_sleep(s: &str) -> Result<Duration, DdiError> {
    let bad = || {
        refuse(
            "config.polling.sleep",
            format!("{:?}: expected HH:MM:SS", clip(s, 40)),
        )
    };
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 3 {
        return Err(bad());
    }
    let mut secs = 0u64;
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = part.parse().map_err(|_| bad())?;
        if i > 0 && n > 59 {
            return Err(bad());
        }
        secs = secs * 60 + n;
    }
    Ok(Duration::from_secs(secs).clamp(MIN_SLEEP, MAX_SLEEP))
}

/// What the poll (`GET /{tenant}/controller/v1/{controllerId}`) says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Poll {
    /// The server's polling interval, clamped; none when it gave none.
    pub sleep: Option<Duration>,
    /// The server asks for the device's attributes (`configData`).
    pub config_data: Option<String>,
    /// An action to deploy: its link, to follow exactly as given.
    pub deployment: Option<String>,
    /// An action the server cancels: its link.
    pub cancel: Option<String>,
}

#[derive(Deserialize)]
struct RawPoll {
    #[serde(default)]
    config: Option<RawConfig>,
    #[serde(rename = "_links", default)]
    links: Option<RawLinks>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    polling: Option<RawPolling>,
}

#[derive(Deserialize)]
struct RawPolling {
    #[serde(default)]
    sleep: Option<String>,
}

#[derive(Deserialize)]
struct RawLinks {
    #[serde(rename = "configData", default)]
    config_data: Option<Href>,
    #[serde(rename = "deploymentBase", default)]
    deployment_base: Option<Href>,
    #[serde(rename = "cancelAction", default)]
    cancel_action: Option<Href>,
}

#[derive(Deserialize)]
struct Href {
    href: String,
}

fn json<'a, T: Deserialize<'a>>(what: &str, bytes: &'a [u8]) -> Result<T, DdiError> {
    if bytes.len() as u64 > MAX_JSON {
        return Err(refuse(what, format!("larger than {MAX_JSON} bytes")));
    }
    // Serde would read a struct from an array too: only an object is one.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(refuse(what, "not the expected JSON: expected an object"));
    }
    serde_json::from_slice(bytes).map_err(|e| refuse(what, format!("not the expected JSON: {e}")))
}

/// Parses the poll's answer.
pub fn parse_poll(bytes: &[u8], links: &LinkPolicy) -> Result<Poll, DdiError> {
    let raw: RawPoll = json("the poll's answer", bytes)?;
    let sleep = match raw.config.and_then(|c| c.polling).and_then(|p| p.sleep) {
        Some(s) => Some(parse_sleep(&s)?),
        None => None,
    };
    let mut poll = Poll {
        sleep,
        ..Poll::default()
    };
    if let Some(l) = raw.links {
        let check = |what: &str, h: Option<Href>| -> Result<Option<String>, DdiError> {
            h.map(|h| links.check(what, &h.href)).transpose()
        };
        poll.config_data = check("_links.configData", l.config_data)?;
        poll.deployment = check("_links.deploymentBase", l.deployment_base)?;
        poll.cancel = check("_links.cancelAction", l.cancel_action)?;
    }
    Ok(poll)
}

/// An id as hawkBit sends it (a string) or as some servers do (a number).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawId {
    Text(String),
    Number(u64),
}

impl RawId {
    fn checked(self, what: &str) -> Result<String, DdiError> {
        match self {
            RawId::Text(s) => check_id(what, &s),
            RawId::Number(n) => Ok(n.to_string()),
        }
    }
}

/// One file of a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// A plain file name.
    pub name: String,
    /// The link to fetch it by (`download`, else `download-http`), checked.
    pub url: String,
    pub size: u64,
    /// Lowercase hex digests the server gave (hawkBit gives sha1, md5 and
    /// sha256; gooseBit only sha1).
    pub sha1: Option<String>,
    pub sha256: Option<String>,
}

/// A deployment (`deploymentBase/{actionId}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub id: String,
    pub download: Mode,
    pub update: Mode,
    /// `maintenanceWindow`: false while it is `unavailable`.
    pub window_open: bool,
    /// The first chunk's version.
    pub version: Option<String>,
    pub artifacts: Vec<Artifact>,
}

#[derive(Deserialize)]
struct RawDeploymentBase {
    id: RawId,
    deployment: RawDeployment,
}

#[derive(Deserialize)]
struct RawDeployment {
    download: String,
    update: String,
    #[serde(rename = "maintenanceWindow", default)]
    maintenance_window: Option<String>,
    #[serde(default)]
    chunks: Vec<RawChunk>,
}

#[derive(Deserialize)]
struct RawChunk {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    artifacts: Vec<RawArtifact>,
}

#[derive(Deserialize)]
struct RawArtifact {
    filename: String,
    size: u64,
    #[serde(default)]
    hashes: Option<RawHashes>,
    #[serde(rename = "_links")]
    links: RawArtifactLinks,
}

#[derive(Deserialize)]
struct RawHashes {
    #[serde(default)]
    sha1: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
}

#[derive(Deserialize)]
struct RawArtifactLinks {
    #[serde(default)]
    download: Option<Href>,
    #[serde(rename = "download-http", default)]
    download_http: Option<Href>,
}

fn mode(what: &str, value: &str) -> Result<Mode, DdiError> {
    match value {
        "skip" => Ok(Mode::Skip),
        "attempt" => Ok(Mode::Attempt),
        "forced" => Ok(Mode::Forced),
        other => Err(refuse(
            what,
            format!("{:?}: expected skip, attempt or forced", clip(other, 40)),
        )),
    }
}

fn digest(what: &str, value: Option<String>, len: usize) -> Result<Option<String>, DdiError> {
    let Some(v) = value else { return Ok(None) };
    if v.len() != len || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refuse(
            what,
            format!("{:?}: expected {len} hex digits", clip(&v, 80)),
        ));
    }
    Ok(Some(v.to_ascii_lowercase()))
}

/// Parses a deployment; `Ok(None)` for gooseBit's `null` (nothing offered
/// any more).
pub fn parse_deployment(bytes: &[u8], links: &LinkPolicy) -> Result<Option<Deployment>, DdiError> {
    let what = "deploymentBase";
    if bytes.trim_ascii() == b"null" {
        return Ok(None);
    }
    let raw: RawDeploymentBase = json(what, bytes)?;
    let id = raw.id.checked("deploymentBase id")?;
    let d = raw.deployment;
    let download = mode("deployment.download", &d.download)?;
    let update = mode("deployment.update", &d.update)?;
    let window_open = match d.maintenance_window.as_deref() {
        None | Some("available") => true,
        Some("unavailable") => false,
        Some(other) => {
            return Err(refuse(
                "deployment.maintenanceWindow",
                format!("{:?}: expected available or unavailable", clip(other, 40)),
            ))
        }
    };
    let version = match d.chunks.first().and_then(|c| c.version.clone()) {
        Some(v) if v.len() > MAX_VERSION || !v.bytes().all(|b| b.is_ascii_graphic()) => {
            return Err(refuse(
                "chunks[0].version",
                format!("expected at most {MAX_VERSION} visible ASCII characters"),
            ))
        }
        v => v,
    };
    let count: usize = d.chunks.iter().map(|c| c.artifacts.len()).sum();
    if count == 0 || count > MAX_ARTIFACTS {
        return Err(refuse(
            what,
            format!("{count} artifacts: expected 1 to {MAX_ARTIFACTS}"),
        ));
    }
    let mut artifacts: Vec<Artifact> = Vec::with_capacity(count);
    for a in d.chunks.into_iter().flat_map(|c| c.artifacts) {
        let at = format!("artifact {:?}", clip(&a.filename, 80));
        if !is_name(&a.filename) {
            return Err(refuse(
                at,
                "the filename must be a plain name: 1 to 128 of A-Z a-z 0-9 . _ - +",
            ));
        }
        if artifacts.iter().any(|b| b.name == a.filename) {
            return Err(refuse(at, "named twice"));
        }
        if a.size > MAX_ARTIFACT_SIZE {
            return Err(refuse(
                at,
                format!("size {} is larger than {MAX_ARTIFACT_SIZE}", a.size),
            ));
        }
        let (sha1, sha256) = match a.hashes {
            Some(h) => (
                digest(&format!("{at} sha1"), h.sha1, 40)?,
                digest(&format!("{at} sha256"), h.sha256, 64)?,
            ),
            None => (None, None),
        };
        // `download` is the one on the server's own scheme; `download-http`
        // is hawkBit's plain-HTTP twin, used only when that is the scheme.
        let url = match (a.links.download, a.links.download_http) {
            (Some(h), other) => match links.check(&format!("{at} download"), &h.href) {
                Ok(url) => url,
                Err(e) => match other {
                    Some(h) => links.check(&format!("{at} download-http"), &h.href)?,
                    None => return Err(e),
                },
            },
            (None, Some(h)) => links.check(&format!("{at} download-http"), &h.href)?,
            (None, None) => return Err(refuse(at, "no download link")),
        };
        artifacts.push(Artifact {
            name: a.filename,
            url,
            size: a.size,
            sha1,
            sha256,
        });
    }
    Ok(Some(Deployment {
        id,
        download,
        update,
        window_open,
        version,
        artifacts,
    }))
}

/// A cancel request (`cancelAction/{id}`): its own id (for the feedback)
/// and the action it stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancel {
    pub id: String,
    pub stop_id: String,
}

#[derive(Deserialize)]
struct RawCancel {
    id: RawId,
    #[serde(rename = "cancelAction")]
    cancel_action: RawStop,
}

#[derive(Deserialize)]
struct RawStop {
    #[serde(rename = "stopId")]
    stop_id: RawId,
}

pub fn parse_cancel(bytes: &[u8]) -> Result<Cancel, DdiError> {
    let raw: RawCancel = json("cancelAction", bytes)?;
    Ok(Cancel {
        id: raw.id.checked("cancelAction id")?,
        stop_id: raw.cancel_action.stop_id.checked("cancelAction.stopId")?,
    })
}

/// `execution` of a feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Execution {
    Proceeding,
    Downloaded,
    Closed,
    Rejected,
}

/// `result.finished` of a feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    Success,
    Failure,
    None,
}

/// The body of a feedback POST. `progress` is `(cnt, of)`; details are
/// cut to [`MAX_DETAIL`] characters each.
pub fn feedback(
    execution: Execution,
    finished: Finished,
    progress: Option<(u32, u32)>,
    details: &[String],
) -> String {
    let execution = match execution {
        Execution::Proceeding => "proceeding",
        Execution::Downloaded => "downloaded",
        Execution::Closed => "closed",
        Execution::Rejected => "rejected",
    };
    let finished = match finished {
        Finished::Success => "success",
        Finished::Failure => "failure",
        Finished::None => "none",
    };
    let mut result = serde_json::Map::new();
    result.insert("finished".into(), finished.into());
    if let Some((cnt, of)) = progress {
        result.insert(
            "progress".into(),
            serde_json::json!({ "cnt": cnt, "of": of }),
        );
    }
    let details: Vec<String> = details.iter().map(|d| clip(d, MAX_DETAIL)).collect();
    serde_json::json!({
        "status": {
            "execution": execution,
            "result": result,
            "details": details,
        }
    })
    .to_string()
}

/// The body of `PUT configData`: the attributes, merged into what the
/// server keeps.
pub fn config_data(attributes: &[(String, String)]) -> String {
    let data: serde_json::Map<String, serde_json::Value> = attributes
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
        .collect();
    serde_json::json!({ "mode": "merge", "data": data }).to_string()
}

/// At most `max` characters of `s` (on a character boundary).
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LinkPolicy {
        LinkPolicy::for_server("http://127.0.0.1:8080", &[]).unwrap()
    }

    const BASE: &str = "http://127.0.0.1:8080/DEFAULT/controller/v1/dev-a";

    fn deployment(extra: &str, artifacts: &str) -> String {
        format!(
            r#"{{"id":"7","deployment":{{"download":"forced","update":"attempt"{extra},
            "chunks":[{{"part":"os","version":"2.0","name":"demo","artifacts":{artifacts}}}]}},
            "actionHistory":{{"status":"x","messages":["y"]}}}}"#
        )
    }

    fn one_artifact(name: &str, href: &str, size: &str) -> String {
        format!(
            r#"[{{"filename":"{name}","hashes":{{"sha1":"226a3be1049b00843acc80e1edf79fed0cc1ff2c",
            "md5":"x"}},"size":{size},"_links":{{"download":{{"href":"{href}"}}}}}}]"#
        )
    }

    #[test]
    fn a_goosebit_poll_is_read() {
        let poll = parse_poll(
            format!(
                r#"{{"config":{{"polling":{{"sleep":"00:01:30"}}}},"_links":{{"deploymentBase":
                {{"href":"{BASE}/deploymentBase/1"}},"unknown":{{"href":"ftp://x"}}}},"extra":1}}"#
            )
            .as_bytes(),
            &policy(),
        )
        .unwrap();
        assert_eq!(poll.sleep, Some(Duration::from_secs(90)));
        assert_eq!(
            poll.deployment.as_deref(),
            Some(&*format!("{BASE}/deploymentBase/1"))
        );
        assert_eq!(poll.config_data, None);
        let empty = parse_poll(
            br#"{"config":{"polling":{"sleep":"00:00:05"}},"_links":{}}"#,
            &policy(),
        )
        .unwrap();
        assert_eq!(
            empty,
            Poll {
                sleep: Some(MIN_SLEEP),
                ..Poll::default()
            }
        );
    }

    #[test]
    fn sleep_is_strict_and_clamped() {
        assert_eq!(parse_sleep("00:00:01").unwrap(), MIN_SLEEP);
        assert_eq!(parse_sleep("99:59:59").unwrap(), MAX_SLEEP);
        assert_eq!(parse_sleep("01:02:03").unwrap(), Duration::from_secs(3723));
        for bad in [
            "",
            "1:2",
            "00:60:00",
            "00:00:-1",
            "aa:bb:cc",
            "000:00:01",
            "00:00:01:00",
            "+1:00:00",
        ] {
            let err = parse_sleep(bad).unwrap_err();
            assert!(err.to_string().contains("HH:MM:SS"), "{bad}: {err}");
        }
    }

    #[test]
    fn links_elsewhere_are_refused() {
        for href in [
            "http://evil.example/DEFAULT/controller/v1/dev-a/deploymentBase/1",
            "https://127.0.0.1:8080/x",
            "http://127.0.0.1:8081/x",
            "http://user@127.0.0.1:8080/x",
            "file:///etc/passwd",
            "http://127.0.0.1:8080/a b",
            "/relative/deploymentBase/1",
        ] {
            let json = format!(r#"{{"_links":{{"deploymentBase":{{"href":"{href}"}}}}}}"#);
            let err = parse_poll(json.as_bytes(), &policy()).unwrap_err();
            assert!(err.what.contains("deploymentBase"), "{href}: {err}");
        }
        let long = format!(
            r#"{{"_links":{{"configData":{{"href":"{BASE}/{}"}}}}}}"#,
            "a".repeat(3000)
        );
        assert!(parse_poll(long.as_bytes(), &policy())
            .unwrap_err()
            .reason
            .contains("longer"));
        // A host the configuration allows, and the server's host in capitals.
        let allowed =
            LinkPolicy::for_server("http://127.0.0.1:8080", &["Cdn.Example".into()]).unwrap();
        allowed.check("x", "http://cdn.example/a").unwrap();
        policy().check("x", "HTTP://127.0.0.1:8080/a").unwrap_err();
        policy().check("x", "http://127.0.0.1:8080?c=1").unwrap();
    }

    #[test]
    fn hostile_json_is_refused_with_its_field_named() {
        let cases: Vec<(String, &str)> = vec![
            (String::from("not json"), "not the expected JSON"),
            (String::from("[]"), "not the expected JSON"),
            (
                format!("{{\"x\":\"{}\"}}", "a".repeat(300 * 1024)),
                "larger than",
            ),
            (
                String::from(r#"{"config":{"polling":{"sleep":5}}}"#),
                "not the expected JSON",
            ),
            (
                String::from(r#"{"config":{"polling":{"sleep":"5s"}}}"#),
                "HH:MM:SS",
            ),
            (
                String::from(r#"{"_links":{"deploymentBase":"x"}}"#),
                "not the expected JSON",
            ),
            ("[".repeat(10_000), "not the expected JSON"),
        ];
        for (json, expected) in cases {
            let err = parse_poll(json.as_bytes(), &policy()).unwrap_err();
            assert!(
                err.to_string().contains(expected),
                "{}: {err}",
                clip(&json, 60)
            );
        }
    }

    #[test]
    fn a_goosebit_deployment_is_read() {
        let href = format!("{BASE}/download");
        let d = parse_deployment(
            deployment("", &one_artifact("demo-2.0.swu", &href, "301056")).as_bytes(),
            &policy(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.id, "7");
        assert_eq!(
            (d.download, d.update, d.window_open),
            (Mode::Forced, Mode::Attempt, true)
        );
        assert_eq!(d.version.as_deref(), Some("2.0"));
        assert_eq!(
            d.artifacts,
            [Artifact {
                name: "demo-2.0.swu".into(),
                url: href,
                size: 301056,
                sha1: Some("226a3be1049b00843acc80e1edf79fed0cc1ff2c".into()),
                sha256: None,
            }]
        );
        assert_eq!(parse_deployment(b"null", &policy()).unwrap(), None);
        // A numeric id, the window closed, skip.
        let json = deployment(
            r#","maintenanceWindow":"unavailable""#,
            &one_artifact("a", &format!("{BASE}/a"), "1"),
        )
        .replace(r#""id":"7""#, r#""id":42"#)
        .replace(r#""download":"forced""#, r#""download":"skip""#);
        let d = parse_deployment(json.as_bytes(), &policy())
            .unwrap()
            .unwrap();
        assert_eq!(
            (d.id.as_str(), d.download, d.window_open),
            ("42", Mode::Skip, false)
        );
    }

    #[test]
    fn download_http_is_used_only_on_the_servers_scheme() {
        let https = LinkPolicy::for_server("https://hb.example", &[]).unwrap();
        let artifacts = r#"[{"filename":"a","size":1,"_links":{
            "download":{"href":"https://hb.example/a"},"download-http":{"href":"http://hb.example/a"}}}]"#;
        let d = parse_deployment(deployment("", artifacts).as_bytes(), &https)
            .unwrap()
            .unwrap();
        assert_eq!(d.artifacts[0].url, "https://hb.example/a");
        let http = LinkPolicy::for_server("http://hb.example", &[]).unwrap();
        let d = parse_deployment(deployment("", artifacts).as_bytes(), &http)
            .unwrap()
            .unwrap();
        assert_eq!(d.artifacts[0].url, "http://hb.example/a");
        let only_http = r#"[{"filename":"a","size":1,"_links":{"download-http":{"href":"http://hb.example/a"}}}]"#;
        let err = parse_deployment(deployment("", only_http).as_bytes(), &https).unwrap_err();
        assert!(
            err.reason.contains("https://, the link is http://"),
            "{err}"
        );
    }

    #[test]
    fn hostile_deployments_are_refused() {
        let ok = format!("{BASE}/download");
        let many: Vec<String> = (0..17)
            .map(|i| {
                format!(
                    r#"{{"filename":"f{i}","size":1,"_links":{{"download":{{"href":"{ok}"}}}}}}"#
                )
            })
            .collect();
        let cases: Vec<(String, &str)> = vec![
            (
                deployment("", &one_artifact("../etc/passwd", &ok, "1")),
                "plain name",
            ),
            (
                deployment("", &one_artifact(".hidden", &ok, "1")),
                "plain name",
            ),
            (
                deployment("", &one_artifact("a", &ok, "-1")),
                "not the expected JSON",
            ),
            (
                deployment("", &one_artifact("a", &ok, "99999999999999999999")),
                "not the expected JSON",
            ),
            (
                deployment("", &one_artifact("a", &ok, "17179869185")),
                "larger than",
            ),
            (
                deployment("", &one_artifact("a", "http://evil.example/a", "1")),
                "not to the configured server",
            ),
            (deployment("", "[]"), "0 artifacts"),
            (
                deployment("", &format!("[{}]", many.join(","))),
                "17 artifacts",
            ),
            (
                deployment(
                    r#","maintenanceWindow":"soon""#,
                    &one_artifact("a", &ok, "1"),
                ),
                "available or unavailable",
            ),
            (
                deployment("", &one_artifact("a", &ok, "1")).replace("attempt", "now"),
                "skip, attempt or forced",
            ),
            (
                deployment("", &one_artifact("a", &ok, "1")).replace(r#""7""#, r#""../7""#),
                "id",
            ),
            (
                deployment("", &one_artifact("a", &ok, "1"))
                    .replace(r#""7""#, &format!("\"{}\"", "7".repeat(65))),
                "id",
            ),
            (
                deployment("", &one_artifact("a", &ok, "1")).replace("226a3be1", "zz6a3be1"),
                "hex digits",
            ),
            (
                deployment("", &one_artifact("a", &ok, "1")).replace(
                    r#""version":"2.0""#,
                    &format!("\"version\":\"{}\"", "v".repeat(200)),
                ),
                "version",
            ),
            (
                deployment("", r#"[{"filename":"a","size":1,"_links":{}}]"#),
                "no download link",
            ),
            (
                deployment(
                    "",
                    &format!(
                        "[{0},{0}]",
                        one_artifact("a", &ok, "1").trim_matches(['[', ']'])
                    ),
                ),
                "named twice",
            ),
        ];
        for (json, expected) in cases {
            let err = parse_deployment(json.as_bytes(), &policy()).unwrap_err();
            assert!(err.to_string().contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn a_cancel_is_read() {
        let c = parse_cancel(br#"{"id":"9","cancelAction":{"stopId":"7"},"more":[]}"#).unwrap();
        assert_eq!(
            c,
            Cancel {
                id: "9".into(),
                stop_id: "7".into()
            }
        );
        let err = parse_cancel(br#"{"id":"9","cancelAction":{"stopId":"a/b"}}"#).unwrap_err();
        assert!(err.what.contains("stopId"), "{err}");
        assert!(parse_cancel(br#"{"id":"9"}"#).is_err());
    }

    #[test]
    fn what_is_sent_is_what_goosebit_and_hawkbit_expect() {
        let body = feedback(
            Execution::Proceeding,
            Finished::None,
            Some((40, 100)),
            &[
                "downloading demo-2.0.swu: Downloaded 40%".into(),
                "é".repeat(600),
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"]["execution"], "proceeding");
        assert_eq!(v["status"]["result"]["finished"], "none");
        assert_eq!(v["status"]["result"]["progress"]["cnt"], 40);
        assert_eq!(v["status"]["result"]["progress"]["of"], 100);
        assert_eq!(
            v["status"]["details"][1].as_str().unwrap().chars().count(),
            MAX_DETAIL + 1
        );
        let closed: serde_json::Value = serde_json::from_str(&feedback(
            Execution::Closed,
            Finished::Failure,
            None,
            &["refused \"x\"".into()],
        ))
        .unwrap();
        assert_eq!(
            closed["status"]["result"],
            serde_json::json!({"finished": "failure"})
        );
        assert_eq!(closed["status"]["details"][0], "refused \"x\"");
        let data: serde_json::Value = serde_json::from_str(&config_data(&[
            ("hw_boardname".into(), "demo".into()),
            ("sw_version".into(), "1.0\"".into()),
        ]))
        .unwrap();
        assert_eq!(
            data,
            serde_json::json!({"mode": "merge", "data": {"hw_boardname": "demo", "sw_version": "1.0\""}})
        );
    }
}
