//! The agent's directory on `storage`: free space before a download, and
//! the old images deleted after one.
//!
//! The files of an image are named from its signed manifest:
//! `P-V.swu` (a bundle), or `P-V.manifest`, `P-V.manifest.minisig` and
//! `P-V.tar.zst`; a download in progress adds `NAME.part` and
//! `NAME.part.state`. Only files named so, for this device's product, are
//! ever deleted ([`to_delete`], a pure function over the directory's names).
//! No other name is ever written: a manifest whose payload is not
//! [`manifest::Manifest::payload_name`] is refused before the download.
//!
//! Three files are fetched and checked in [`INCOMING`] first and move into
//! place together only once verified, so that a failed or cancelled
//! download never leaves a manifest beside a payload it does not describe.

use formats::bundle::EXTENSION;
use formats::keyvalue::is_name;
use formats::manifest;
use formats::version;
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("{dir}: not enough free space for the download: {needed} bytes to fetch and {min_free} to keep free, {free} free")]
    NoSpace {
        dir: PathBuf,
        needed: u64,
        min_free: u64,
        free: u64,
    },
    #[error("{path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
}

/// Bytes free for an unprivileged user in the file system of `dir`.
pub fn free_bytes(dir: &Path) -> Result<u64, StorageError> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(|e| StorageError::Io {
        path: dir.to_path_buf(),
        what: "statvfs",
        source: io::Error::from(e),
    })?;
    Ok((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

/// Checks that `needed` more bytes fit into `dir` with `min_free` to spare.
pub fn check_free(dir: &Path, needed: u64, min_free: u64) -> Result<(), StorageError> {
    let free = free_bytes(dir)?;
    if free < needed.saturating_add(min_free) {
        return Err(StorageError::NoSpace {
            dir: dir.to_path_buf(),
            needed,
            min_free,
            free,
        });
    }
    Ok(())
}

/// The subdirectory of the storage directory where an image of three
/// files is downloaded and verified before its files replace those of the
/// same version.
pub const INCOMING: &str = ".incoming";

/// The version of the image a file belongs to, when it is one of ours:
/// `P-V` + a known suffix (or the bundle's `.swu`), with or without
/// `.part` / `.part.state`, and with or without the `.tmp.PID.N` of a
/// temp file a power cut left ([`formats::store::temp_of`]).
pub fn version_of<'a>(product: &str, name: &'a str) -> Option<&'a str> {
    let name = formats::store::temp_of(name).map_or(name, |(file, _)| file);
    let name = name
        .strip_suffix(".part.state")
        .or_else(|| name.strip_suffix(".part"))
        .unwrap_or(name);
    let rest = name.strip_prefix(product)?.strip_prefix('-')?;
    let bundle = format!(".{EXTENSION}");
    let version = manifest::FILE_SUFFIXES
        .iter()
        .copied()
        .chain([bundle.as_str()])
        .find_map(|s| rest.strip_suffix(s))?;
    is_name(version).then_some(version)
}

/// What must stay, whatever the count.
#[derive(Debug, Clone, Default)]
pub struct Keep<'a> {
    /// The installed version (its image is what a restore would use).
    pub installed: Option<&'a str>,
    /// The version just staged.
    pub staged: Option<&'a str>,
    /// Versions whose files a pending instruction names.
    pub named: Vec<&'a str>,
    /// Images kept at most beyond those above: the newest first.
    pub count: usize,
}

/// The names in `files` to delete: files of this product's images other
/// than the ones to keep. The protected versions always stay; of the
/// others, the newest stay while fewer than `keep.count` images are kept.
/// Files that are not ours are never named.
pub fn to_delete(files: &[String], product: &str, keep: &Keep<'_>) -> Vec<String> {
    let versions: BTreeSet<&str> = files
        .iter()
        .filter_map(|f| version_of(product, f))
        .collect();
    let protected: BTreeSet<&str> = keep
        .installed
        .into_iter()
        .chain(keep.staged)
        .chain(keep.named.iter().copied())
        .collect();
    let mut others: Vec<&str> = versions
        .iter()
        .copied()
        .filter(|v| !protected.contains(v))
        .collect();
    // Newest first.
    others.sort_by(|a, b| version::compare(b, a));
    let kept_protected = versions.iter().filter(|v| protected.contains(*v)).count();
    let room = keep.count.saturating_sub(kept_protected);
    let doomed: BTreeSet<&str> = others.into_iter().skip(room).collect();
    files
        .iter()
        .filter(|f| version_of(product, f).is_some_and(|v| doomed.contains(v)))
        .cloned()
        .collect()
}

/// Deletes the old images in `dir` ([`to_delete`]); returns what it
/// deleted. A file that cannot be deleted is an error naming it.
pub fn prune(dir: &Path, product: &str, keep: &Keep<'_>) -> Result<Vec<PathBuf>, StorageError> {
    let io_error = |path: &Path, what| {
        let path = path.to_path_buf();
        move |source| StorageError::Io { path, what, source }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir, "listing"))? {
        let entry = entry.map_err(io_error(dir, "listing"))?;
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if let (true, Ok(name)) = (is_file, entry.file_name().into_string()) {
            files.push(name);
        }
    }
    files.sort();
    let mut deleted = Vec::new();
    for name in to_delete(&files, product, keep) {
        let path = dir.join(&name);
        formats::store::remove_durably(&path).map_err(io_error(&path, "deleting"))?;
        log::info!("{}: deleted (an old image)", path.display());
        deleted.push(path);
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Installed 1.0, staged 2.0, two images kept.
    fn usual() -> Keep<'static> {
        Keep {
            installed: Some("1.0"),
            staged: Some("2.0"),
            named: vec![],
            count: 2,
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_our_names_have_a_version() {
        assert_eq!(version_of("acme", "acme-2.0.swu"), Some("2.0"));
        assert_eq!(version_of("acme", "acme-2.0.manifest.minisig"), Some("2.0"));
        assert_eq!(
            version_of("acme", "acme-2.0.tar.zst.part.state"),
            Some("2.0")
        );
        assert_eq!(version_of("acme", "acme-2.0.swu.part"), Some("2.0"));
        assert_eq!(
            version_of("acme", "acme-2.0.tar.zst.part.state.tmp.812.0"),
            Some("2.0")
        );
        assert_eq!(version_of("acme", "acme-2.0.manifest.tmp.1.3"), Some("2.0"));
        for other in [
            "acme-2.0.txt",
            "other-2.0.swu",
            "acme.swu",
            "acme-.swu",
            "notes",
            "acme-2.0.swu.bak",
            "acme-x/y.swu",
            "acme-2.0.swu.tmp.1",
            "acme-2.0.txt.tmp.1.2",
        ] {
            assert_eq!(version_of("acme", other), None, "{other}");
        }
    }

    #[test]
    fn keeps_the_protected_and_the_newest_up_to_the_count() {
        let files = names(&[
            "acme-1.0.swu",
            "acme-1.1.manifest",
            "acme-1.1.manifest.minisig",
            "acme-1.1.tar.zst",
            "acme-1.2.swu",
            "acme-1.10.swu.part",
            "acme-1.10.swu.part.state",
            "acme-2.0.swu",
            "lost+found",
            "operator-notes.txt",
            "other-0.1.swu",
        ]);
        let keep = usual();
        assert_eq!(
            to_delete(&files, "acme", &keep),
            names(&[
                "acme-1.1.manifest",
                "acme-1.1.manifest.minisig",
                "acme-1.1.tar.zst",
                "acme-1.2.swu",
                "acme-1.10.swu.part",
                "acme-1.10.swu.part.state",
            ])
        );
        // A larger count keeps the newest others (1.10 > 1.2 > 1.1).
        let keep3 = Keep {
            count: 3,
            ..keep.clone()
        };
        let deleted = to_delete(&files, "acme", &keep3);
        assert!(!deleted.iter().any(|f| f.starts_with("acme-1.10")));
        assert!(deleted.contains(&"acme-1.2.swu".to_string()));
        // What an instruction names stays whatever the count.
        let named = Keep {
            named: vec!["1.1"],
            ..keep
        };
        let deleted = to_delete(&files, "acme", &named);
        assert!(!deleted.iter().any(|f| f.starts_with("acme-1.1.")));
        assert!(!deleted.iter().any(|f| !f.starts_with("acme-")));
    }

    #[test]
    fn prunes_a_directory_and_leaves_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "acme-1.0.swu",
            "acme-1.5.swu",
            "acme-2.0.swu",
            "keep-me.swu",
        ] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        std::fs::create_dir(dir.path().join("acme-0.9.swu")).unwrap();
        let keep = usual();
        let deleted = prune(dir.path(), "acme", &keep).unwrap();
        assert_eq!(deleted, vec![dir.path().join("acme-1.5.swu")]);
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "acme-0.9.swu",
                "acme-1.0.swu",
                "acme-2.0.swu",
                "keep-me.swu"
            ]
        );
    }

    #[test]
    fn free_space_is_checked_with_numbers_and_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        check_free(dir.path(), 1, 0).unwrap();
        let err = check_free(dir.path(), u64::MAX / 2, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        assert!(err.contains("not enough free space"), "{err}");
        assert!(err.contains(&(u64::MAX / 2).to_string()), "{err}");
    }
}
