//! The static feed: updates published as plain files on any web server or
//! object store, nothing to run but the server. Under the feed's base URL:
//!
//! ```text
//! BASE/<product>/latest                     one line: the newest version
//! BASE/<product>/<product>-<version>.swu    the bundle (feed-layout=bundle)
//! BASE/<product>/<product>-<version>.manifest          or the three files
//! BASE/<product>/<product>-<version>.manifest.minisig  (feed-layout=files)
//! BASE/<product>/<product>-<version>.tar.zst
//! ```
//!
//! `latest` is network input: at most [`MAX_LATEST`] bytes, one line, a
//! plain name ([`parse_latest`]). What counts is the signed manifest,
//! checked by the flow before the payload is fetched.

use crate::config::FeedLayout;
use crate::http::Client;
use crate::source::{Artifact, Check, Mode, Offer, Report, Source, SourceError};
use formats::bundle::EXTENSION;
use formats::keyvalue::is_name;
use formats::manifest::Manifest;
use formats::version;
use std::cmp::Ordering;
use std::time::Duration;

/// The largest `latest` file accepted.
pub const MAX_LATEST: u64 = 256;

/// How long to wait before asking again when there is nothing new (the
/// schedule, where there is one, decides instead).
pub const POLL: Duration = Duration::from_secs(3600);

/// The name the feed goes by in logs and records.
pub const NAME: &str = "feed";

/// A static feed for one product.
pub struct Feed {
    client: Client,
    /// Without a trailing `/`.
    base: String,
    product: String,
    layout: FeedLayout,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("base", &self.base)
            .field("product", &self.product)
            .field("layout", &self.layout)
            .finish()
    }
}

/// The version in the text of a `latest` file: one line (a final newline
/// is optional, a `\r` before it too), a plain name.
pub fn parse_latest(bytes: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let line = text.strip_suffix('\n').unwrap_or(text);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if !is_name(line) {
        let shown: String = line.chars().take(80).collect();
        return Err(format!(
            "{shown:?}: expected one line with a version (1 to 128 of A-Z a-z 0-9 . _ - +)"
        ));
    }
    Ok(line)
}

impl Feed {
    /// `base` is an `http://` or `https://` URL (checked by the config);
    /// `product` a plain name (checked by the recovery's config).
    pub fn new(client: Client, base: &str, product: &str, layout: FeedLayout) -> Feed {
        Feed {
            client,
            base: base.trim_end_matches('/').to_string(),
            product: product.to_string(),
            layout,
        }
    }

    fn url(&self, file: &str) -> String {
        format!("{}/{}/{file}", self.base, self.product)
    }

    /// The files of a version, as this feed publishes them.
    pub fn artifacts(&self, version: &str) -> Vec<Artifact> {
        let stem = Manifest::file_stem(&self.product, version);
        let names = match self.layout {
            FeedLayout::Bundle => vec![format!("{stem}.{EXTENSION}")],
            FeedLayout::Files => Manifest::file_names(&self.product, version).to_vec(),
        };
        names
            .into_iter()
            .map(|name| Artifact {
                url: self.url(&name),
                name,
                size: None,
            })
            .collect()
    }
}

impl Source for Feed {
    fn name(&self) -> &str {
        NAME
    }

    fn check(&mut self, installed: Option<&str>) -> Result<Check, SourceError> {
        let url = self.url("latest");
        let bytes = self.client.get_small(&url, MAX_LATEST).map_err(|e| {
            if e.retryable() {
                SourceError::Unreachable {
                    source_name: NAME.into(),
                    reason: e.to_string(),
                }
            } else {
                SourceError::Refused {
                    source_name: NAME.into(),
                    what: url.clone(),
                    reason: e.to_string(),
                }
            }
        })?;
        let latest = parse_latest(&bytes).map_err(|reason| SourceError::Refused {
            source_name: NAME.into(),
            what: url.clone(),
            reason,
        })?;
        if let Some(installed) = installed {
            if version::compare(latest, installed) != Ordering::Greater {
                log::info!(
                    "{NAME}: {latest} is the newest, {installed} is installed: nothing to do"
                );
                return Ok(Check::Nothing { again_after: POLL });
            }
        }
        log::info!(
            "{NAME}: {} {latest} offered (installed: {})",
            self.product,
            installed.unwrap_or("unknown")
        );
        Ok(Check::Offer(Offer {
            id: latest.to_string(),
            version: Some(latest.to_string()),
            artifacts: self.artifacts(latest),
            download: Mode::Attempt,
            install: Mode::Attempt,
            window_open: true,
        }))
    }

    fn report(&mut self, offer_id: &str, report: &Report) -> Result<(), SourceError> {
        // A static feed has no way back: the log is the report.
        log::info!("{NAME}: {offer_id}: {report:?}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HttpConfig;

    #[test]
    fn latest_is_one_plain_line() {
        assert_eq!(parse_latest(b"2.0.1\n"), Ok("2.0.1"));
        assert_eq!(parse_latest(b"2.0.1"), Ok("2.0.1"));
        assert_eq!(parse_latest(b"2.0.1\r\n"), Ok("2.0.1"));
        for bad in [
            &b""[..],
            b"\n",
            b"2.0\n3.0\n",
            b"../../etc/passwd\n",
            b"2.0 \n",
            b"\xff\n",
            b"-rf\n",
        ] {
            assert!(parse_latest(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_files_of_a_version_are_named_from_product_and_version() {
        let client = Client::new(&HttpConfig::default()).unwrap();
        let feed = Feed::new(client, "https://u.example/feed/", "acme", FeedLayout::Files);
        let names: Vec<_> = feed.artifacts("2.0").into_iter().map(|a| a.url).collect();
        assert_eq!(
            names,
            [
                "https://u.example/feed/acme/acme-2.0.manifest",
                "https://u.example/feed/acme/acme-2.0.manifest.minisig",
                "https://u.example/feed/acme/acme-2.0.tar.zst"
            ]
        );
    }
}
