//! The update instruction, `cfg:update/instruction`: what the running
//! system asks the recovery to install. Written by `bootloader-glue` (or a
//! vendor's own tool), read by `recovery`. See `docs/update-records.md`.

use crate::entry_path;
use crate::keyvalue::{self, is_name, KeyValueError, SealError};
use thiserror::Error;

pub const FORMAT_VERSION: u64 = 1;

const KEYS: &[&str] = &[
    "format",
    "manifest",
    "target",
    "allow-downgrade",
    "requested",
    "restore",
];

/// A file on a partition named by its GPT partition name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPath {
    pub partition: String,
    /// Relative to the partition's root, without `..`.
    pub path: String,
}

impl std::fmt::Display for PartitionPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.partition, self.path)
    }
}

impl PartitionPath {
    /// Parses `PARTITION:PATH`.
    pub fn parse(s: &str) -> Option<PartitionPath> {
        let (partition, path) = s.split_once(':')?;
        if !is_name(partition) || path.is_empty() || path.starts_with('/') {
            return None;
        }
        let normal = entry_path::normalize(path.as_bytes()).ok()?;
        if normal.is_empty() {
            return None;
        }
        Some(PartitionPath {
            partition: partition.to_string(),
            path: String::from_utf8(normal).ok()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The image's manifest, e.g. `storage:updates/acme-gw-2.0.1.manifest`.
    pub manifest: PartitionPath,
    /// The GPT partition name of the partition to erase and fill.
    pub target: String,
    /// Asks to install a version lower than the installed one (honoured
    /// only where the recovery's downgrade policy lets the instruction decide).
    pub allow_downgrade: bool,
    /// When it was written, seconds since 1970.
    pub requested: u64,
    /// The installed version's image (manifest or bundle), restored if
    /// the update fails after the erase or is not confirmed; None when the
    /// request was made without one (`--no-restore`).
    pub restore: Option<PartitionPath>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum InstructionError {
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("format version {found}: this recovery reads format {FORMAT_VERSION} only")]
    UnsupportedFormat { found: String },
    #[error(transparent)]
    Field(#[from] KeyValueError),
}

impl Instruction {
    pub fn parse(bytes: &[u8]) -> Result<Instruction, InstructionError> {
        let body = keyvalue::unseal(bytes)?;
        if let Some(found) = body.lines().next().and_then(|l| l.strip_prefix("format=")) {
            if found != FORMAT_VERSION.to_string() {
                return Err(InstructionError::UnsupportedFormat {
                    found: found.to_string(),
                });
            }
        }
        let pairs = keyvalue::parse(body, KEYS)?;
        let get = |key| keyvalue::require(&pairs, key);
        get("format")?;
        let manifest = get("manifest")?;
        let path = |pair: &keyvalue::Pair<'_>| {
            PartitionPath::parse(pair.value)
                .ok_or_else(|| pair.bad("expected PARTITION:PATH, a relative path without `..`"))
        };
        let manifest = path(manifest)?;
        let restore = match pairs.iter().find(|p| p.key == "restore") {
            Some(pair) => Some(path(pair)?),
            None => None,
        };
        let target = get("target")?.as_name()?.to_string();
        let downgrade = get("allow-downgrade")?;
        let allow_downgrade = match downgrade.value {
            "yes" => true,
            "no" => false,
            _ => return Err(downgrade.bad("expected yes or no").into()),
        };
        Ok(Instruction {
            manifest,
            target,
            allow_downgrade,
            requested: get("requested")?.as_u64()?,
            restore,
        })
    }

    pub fn render(&self) -> String {
        let restore = self
            .restore
            .as_ref()
            .map_or(String::new(), |r| format!("restore={r}\n"));
        keyvalue::seal(&format!(
            "format={FORMAT_VERSION}\nmanifest={}\ntarget={}\nallow-downgrade={}\nrequested={}\n{restore}",
            self.manifest,
            self.target,
            if self.allow_downgrade { "yes" } else { "no" },
            self.requested
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Instruction {
        Instruction {
            manifest: PartitionPath::parse("storage:updates/acme-2.0.manifest").unwrap(),
            target: "system".into(),
            allow_downgrade: false,
            requested: 1_700_000_000,
            restore: None,
        }
    }

    #[test]
    fn round_trips() {
        assert_eq!(
            Instruction::parse(sample().render().as_bytes()),
            Ok(sample())
        );
        let with_restore = Instruction {
            restore: PartitionPath::parse("storage:updates/acme-1.0.manifest"),
            ..sample()
        };
        let text = with_restore.render();
        assert!(text.contains("\nrestore=storage:updates/acme-1.0.manifest\n"));
        assert_eq!(Instruction::parse(text.as_bytes()), Ok(with_restore));
        let body = keyvalue::unseal(text.as_bytes()).unwrap();
        let bad = keyvalue::seal(&body.replace("restore=storage:", "restore=storage:/"));
        let err = Instruction::parse(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("restore="), "{err}");
    }

    #[test]
    fn refuses_what_is_not_exactly_right() {
        let reseal = |text: String| keyvalue::seal(&text);
        let body = keyvalue::unseal(sample().render().as_bytes())
            .unwrap()
            .to_string();
        let cases = [
            (
                body.replace("target=system", "target=system\ntarget=cfg"),
                "second time",
            ),
            (body.clone() + "color=blue\n", "not one of"),
            (body.replace("requested=1700000000\n", ""), "missing key"),
            (
                body.replace("storage:updates", "storage:../updates"),
                "manifest=",
            ),
            (
                body.replace("storage:updates", "storage:/updates"),
                "manifest=",
            ),
            (
                body.replace("allow-downgrade=no", "allow-downgrade=maybe"),
                "yes or no",
            ),
            (body.replace("format=1", "format=7"), "format version 7"),
        ];
        for (text, says) in cases {
            let err = Instruction::parse(reseal(text.clone()).as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{text:?}: {err}");
        }
        let mangled = sample().render().replace("system", "systen");
        assert!(matches!(
            Instruction::parse(mangled.as_bytes()),
            Err(InstructionError::Seal(SealError::Mismatch { .. }))
        ));
    }

    #[test]
    fn errors_name_the_line() {
        let rendered = sample().render();
        let body = keyvalue::unseal(rendered.as_bytes()).unwrap();
        let text = keyvalue::seal(&body.replace("target=system", "target=a/b"));
        let err = Instruction::parse(text.as_bytes()).unwrap_err().to_string();
        assert!(err.starts_with("line 3: target="), "{err}");
    }
}
