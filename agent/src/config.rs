//! The agent's configuration: `/etc/reimage/agent.conf`, in the project's
//! strict `key=value` style (one pair a line, every key known, no
//! duplicates, no comments; see `docs/agent.md`). The parser takes text
//! and does no I/O.
//!
//! The keys come in sections, one table each: [`CORE_KEYS`] here (the
//! source, storage, trust, attempts, retention); the schedule and the
//! hawkBit client add theirs by listing a table in [`SECTIONS`] and
//! handling its keys in [`Config::set`] (a field of their own type on
//! [`Config`]).

use crate::retry::Policy;
use formats::keyvalue::{self, KeyValueError, Pair};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Where the agent reads its configuration unless told otherwise.
pub const PATH: &str = "/etc/reimage/agent.conf";

/// The keys of the agent's own section.
pub const CORE_KEYS: &[&str] = &[
    "source",
    "feed",
    "feed-layout",
    "recovery-config",
    "trusted-keys",
    "ca",
    "ca-only",
    "storage-dir",
    "storage-partition",
    "cfg",
    "target",
    "bootloader",
    "attempts",
    "backoff",
    "keep",
    "min-free",
    "connect-timeout",
    "read-timeout",
];

/// Every section's keys: one strict parser over all of them.
pub const SECTIONS: &[&[&str]] = &[CORE_KEYS, crate::daemon::KEYS];

/// Where updates come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A static feed on a web server ([`crate::feed`]).
    Feed,
    /// A hawkBit DDI server.
    Hawkbit,
}

/// How a static feed publishes an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedLayout {
    /// One file, `P-V.swu`.
    Bundle,
    /// Three files: `P-V.manifest`, `P-V.manifest.minisig`, `P-V.tar.zst`.
    Files,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub source: SourceKind,
    /// The feed's base URL (`http://` or `https://`, no trailing `/`).
    pub feed: Option<String>,
    pub feed_layout: FeedLayout,
    /// The recovery's configuration (product, downgrade policy, targets):
    /// the same file `bootloader-glue request` reads.
    pub recovery_config: PathBuf,
    /// Trusted public keys: files, or directories whose `*.pub` count.
    pub trusted_keys: Vec<PathBuf>,
    /// Extra certificate authorities (PEM) for HTTPS.
    pub ca: Vec<PathBuf>,
    /// Trust only [`Config::ca`], not Mozilla's roots as well.
    pub ca_only: bool,
    /// The directory on the storage partition the images go into.
    pub storage_dir: PathBuf,
    /// The GPT name of the partition that holds [`Config::storage_dir`],
    /// for the instruction (`PARTITION:PATH`).
    pub storage_partition: String,
    /// Where the cfg partition is mounted.
    pub cfg: PathBuf,
    /// The GPT name of the partition an update installs into.
    pub target: String,
    /// The boot loader's flag, as `bootloader-glue request --bootloader`.
    pub bootloader: String,
    /// Attempts per download, and the waits between them.
    pub retry: Policy,
    /// Images kept on storage after a download (the newest; the installed
    /// and the staged one are kept whatever the count).
    pub keep: usize,
    /// Bytes that must stay free on storage after a download.
    pub min_free: u64,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// The daemon's section: windows, polling, post-update command, reboot.
    pub daemon: crate::daemon::DaemonConfig,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(transparent)]
    Field(#[from] KeyValueError),
    #[error("source={source_kind} needs {key}=")]
    Missing {
        source_kind: &'static str,
        key: &'static str,
    },
}

impl Default for Config {
    fn default() -> Config {
        Config {
            source: SourceKind::Feed,
            feed: None,
            feed_layout: FeedLayout::Bundle,
            recovery_config: PathBuf::from("/etc/reimage/recovery.conf"),
            trusted_keys: vec![PathBuf::from("/etc/reimage/keys")],
            ca: Vec::new(),
            ca_only: false,
            storage_dir: PathBuf::from("/storage/updates"),
            storage_partition: "storage".into(),
            cfg: PathBuf::from("/cfg"),
            target: "system".into(),
            bootloader: "grub".into(),
            retry: Policy::default(),
            keep: 2,
            min_free: 64 << 20,
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
            daemon: crate::daemon::DaemonConfig::default(),
        }
    }
}

fn all_keys() -> Vec<&'static str> {
    SECTIONS.iter().flat_map(|s| s.iter().copied()).collect()
}

impl Config {
    /// Parses the text of `agent.conf`; every key not given keeps its
    /// default ([`Config::default`]).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let pairs = keyvalue::parse(text, &all_keys())?;
        let mut config = Config::default();
        for pair in &pairs {
            config.set(pair)?;
        }
        if config.source == SourceKind::Feed && config.feed.is_none() {
            return Err(ConfigError::Missing {
                source_kind: "feed",
                key: "feed",
            });
        }
        Ok(config)
    }

    fn set(&mut self, pair: &Pair<'_>) -> Result<(), KeyValueError> {
        match pair.key {
            "source" => {
                self.source = match pair.value {
                    "feed" => SourceKind::Feed,
                    "hawkbit" => SourceKind::Hawkbit,
                    _ => return Err(pair.bad("expected feed or hawkbit")),
                }
            }
            "feed" => {
                let url = pair.value.trim_end_matches('/');
                if crate::http::host_of(url).is_none()
                    || !crate::partial::is_keepable(url, crate::partial::MAX_URL)
                {
                    return Err(pair.bad("expected an http:// or https:// URL with a host"));
                }
                self.feed = Some(url.to_string());
            }
            "feed-layout" => {
                self.feed_layout = match pair.value {
                    "bundle" => FeedLayout::Bundle,
                    "files" => FeedLayout::Files,
                    _ => return Err(pair.bad("expected bundle or files")),
                }
            }
            "recovery-config" => self.recovery_config = absolute(pair)?,
            "trusted-keys" => self.trusted_keys = paths(pair, 1)?,
            "ca" => self.ca = paths(pair, 0)?,
            "ca-only" => self.ca_only = yes_no(pair)?,
            "storage-dir" => self.storage_dir = absolute(pair)?,
            "storage-partition" => self.storage_partition = pair.as_name()?.to_string(),
            "cfg" => self.cfg = absolute(pair)?,
            "target" => self.target = pair.as_name()?.to_string(),
            "bootloader" => {
                formats::bootflag::BootFlag::parse(pair.value).map_err(|e| pair.bad(&e))?;
                self.bootloader = pair.value.to_string();
            }
            "attempts" => {
                let n = pair.as_u64()?;
                self.retry.attempts = u32::try_from(n)
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| pair.bad("expected 1 to 4294967295"))?;
            }
            "backoff" => {
                let expected = "expected FIRST,MAX in seconds (the wait after the first failure, doubled up to MAX)";
                let (first, max) = pair
                    .value
                    .split_once(',')
                    .ok_or_else(|| pair.bad(expected))?;
                let number = |v: &str| {
                    let p = Pair { value: v, ..*pair };
                    p.as_u64().map_err(|_| pair.bad(expected))
                };
                let (first, max) = (number(first)?, number(max)?);
                if first > max {
                    return Err(pair.bad(expected));
                }
                self.retry.first_wait = Duration::from_secs(first);
                self.retry.max_wait = Duration::from_secs(max);
            }
            "keep" => {
                let n = pair.as_u64()?;
                self.keep = usize::try_from(n)
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| pair.bad("expected at least 1"))?;
            }
            "min-free" => self.min_free = size(pair)?,
            "connect-timeout" => self.connect_timeout = seconds(pair)?,
            "read-timeout" => self.read_timeout = seconds(pair)?,
            key if crate::daemon::KEYS.contains(&key) => self.daemon.set(pair)?,
            _ => unreachable!("keyvalue::parse admits only the sections' keys"),
        }
        Ok(())
    }

    /// The HTTP client's settings.
    pub fn http(&self) -> crate::http::HttpConfig {
        crate::http::HttpConfig {
            connect_timeout: self.connect_timeout,
            read_timeout: self.read_timeout,
            ca_files: self.ca.clone(),
            webpki_roots: !self.ca_only,
            ..crate::http::HttpConfig::default()
        }
    }

    /// The trusted key files: each file given, and the `*.pub` of each
    /// directory given.
    pub fn trusted_key_files(&self) -> Result<Vec<PathBuf>, recovery::UpdateError> {
        let mut files = Vec::new();
        for path in &self.trusted_keys {
            if path.is_dir() {
                files.extend(recovery::keys::files_in(path)?);
            } else {
                files.push(path.clone());
            }
        }
        Ok(files)
    }
}

fn absolute(pair: &Pair<'_>) -> Result<PathBuf, KeyValueError> {
    let path = Path::new(pair.value);
    if !path.is_absolute() || pair.value.contains(char::is_whitespace) {
        return Err(pair.bad("expected an absolute path"));
    }
    Ok(path.to_path_buf())
}

/// Absolute paths separated by spaces; at least `min` of them.
fn paths(pair: &Pair<'_>, min: usize) -> Result<Vec<PathBuf>, KeyValueError> {
    let expected = if min == 0 {
        "expected absolute paths separated by spaces, or nothing"
    } else {
        "expected absolute paths separated by spaces"
    };
    let words: Vec<&str> = pair.value.split(' ').filter(|w| !w.is_empty()).collect();
    if words.len() < min || words.iter().any(|w| !w.starts_with('/')) {
        return Err(pair.bad(expected));
    }
    Ok(words.into_iter().map(PathBuf::from).collect())
}

fn yes_no(pair: &Pair<'_>) -> Result<bool, KeyValueError> {
    match pair.value {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(pair.bad("expected yes or no")),
    }
}

/// A number of seconds, at least 1.
pub(crate) fn seconds(pair: &Pair<'_>) -> Result<Duration, KeyValueError> {
    let n = pair.as_u64()?;
    if n == 0 {
        return Err(pair.bad("expected at least 1 second"));
    }
    Ok(Duration::from_secs(n))
}

/// Bytes, with an optional binary suffix `K`, `M` or `G`: `64M`.
fn size(pair: &Pair<'_>) -> Result<u64, KeyValueError> {
    let expected = "expected a size in bytes, or with K, M or G (binary): 64M";
    let v = pair.value;
    let (digits, shift) = match v.as_bytes().last() {
        Some(b'K') => (&v[..v.len() - 1], 10),
        Some(b'M') => (&v[..v.len() - 1], 20),
        Some(b'G') => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    let n = Pair {
        value: digits,
        ..*pair
    }
    .as_u64()
    .map_err(|_| pair.bad(expected))?;
    n.checked_mul(1 << shift).ok_or_else(|| pair.bad(expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_config_parses_with_defaults_for_the_rest() {
        let c = Config::parse("feed=https://updates.example/acme/\n").unwrap();
        assert_eq!(c.feed.as_deref(), Some("https://updates.example/acme"));
        assert_eq!(c.source, SourceKind::Feed);
        assert_eq!(c.retry.attempts, 10);
        assert_eq!(c.keep, 2);
        assert_eq!(c.storage_dir, PathBuf::from("/storage/updates"));
    }

    #[test]
    fn every_key_is_read() {
        let text = "source=feed\nfeed=http://10.0.0.1:8080/u\nfeed-layout=files\n\
            recovery-config=/etc/r.conf\ntrusted-keys=/k/a.pub /k/dir\nca=/etc/ca.pem\n\
            ca-only=yes\nstorage-dir=/data/u\nstorage-partition=data\ncfg=/mnt/cfg\n\
            target=system-b\nbootloader=none\nattempts=3\nbackoff=1,8\nkeep=4\n\
            min-free=1G\nconnect-timeout=5\nread-timeout=30\n";
        let c = Config::parse(text).unwrap();
        assert_eq!(c.feed_layout, FeedLayout::Files);
        assert_eq!(
            c.trusted_keys,
            vec![PathBuf::from("/k/a.pub"), PathBuf::from("/k/dir")]
        );
        assert!(c.ca_only);
        assert_eq!(c.retry.attempts, 3);
        assert_eq!(c.retry.first_wait, Duration::from_secs(1));
        assert_eq!(c.retry.max_wait, Duration::from_secs(8));
        assert_eq!(c.keep, 4);
        assert_eq!(c.min_free, 1 << 30);
        assert_eq!(c.read_timeout, Duration::from_secs(30));
        assert_eq!(c.target, "system-b");
        assert_eq!(c.storage_partition, "data");
    }

    #[test]
    fn bad_values_name_the_line_and_what_was_expected() {
        for (text, needle) in [
            ("feed=ftp://x/\n", "http://"),
            ("feed=http://h/\nsource=nfs\n", "feed or hawkbit"),
            ("feed=http://h/\nattempts=0\n", "expected 1"),
            ("feed=http://h/\nbackoff=9,1\n", "FIRST,MAX"),
            ("feed=http://h/\nmin-free=12T\n", "K, M or G"),
            ("feed=http://h/\nstorage-dir=updates\n", "absolute path"),
            ("feed=http://h/\nca-only=true\n", "yes or no"),
            ("feed=http://h/\nwindow=02:00\n", "not one of"),
            ("feed=http://h/\nbootloader=lilo\n", "bootloader"),
        ] {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
        let err = Config::parse("source=feed\n").unwrap_err().to_string();
        assert_eq!(err, "source=feed needs feed=");
        assert!(Config::parse("source=hawkbit\n").is_ok());
    }
}
