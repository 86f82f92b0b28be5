//! The entry checks before the erase: every entry meets the rules of the
//! shared entry model ([`formats::entry`]: its path stays inside the
//! target, its type is one a root file system holds, its names and
//! attributes fit the file system), and the totals match the manifest.
//! A format-2 image's entries are its signed entry index ([`check_index`]:
//! nothing decoded); a format-1 image's are read from the decoded payload
//! ([`scan`]). Neither writes anything; the extractor runs the same checks
//! again as it writes.

use crate::error::{Stage, UpdateError};
use crate::progress::Progress;
use formats::entry::{self, Entry, Kind, Reading};
use formats::entry_path::TreeCheck;
use formats::index::Index;
use std::io::Read;

/// Reads one tar entry of the payload into the shared entry model
/// ([`formats::entry`]). `payload` names the file in errors.
pub fn describe<R: Read>(entry: &mut tar::Entry<R>, payload: &str) -> Result<Entry, UpdateError> {
    entry::from_tar(entry, Reading::Payload)
        .map_err(|e| UpdateError::new(Stage::Contents, payload, e))
}

/// Runs every check of [`Entry::check`] on an entry, in archive order;
/// returns its path relative to the target.
pub fn check(entry: &Entry, tree: &mut TreeCheck, payload: &str) -> Result<Vec<u8>, UpdateError> {
    entry
        .check(tree)
        .map_err(|e| UpdateError::new(Stage::Contents, payload, e))
}

/// What the scan counted, to compare with the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub entries: u64,
    pub unpacked_size: u64,
}

impl Totals {
    /// Counts one checked entry: regular files' data make the unpacked
    /// size (hard links hold none).
    fn add(&mut self, entry: &Entry, progress: &Progress) {
        self.entries += 1;
        progress.add_entry();
        if entry.kind == Kind::File {
            self.unpacked_size += entry.size;
        }
    }
}

/// Runs every check of [`Entry::check`] on the records of a signed entry
/// index ([`formats::index`]), in order, as [`scan`] does on a decoded tar.
pub fn check_index(
    index: &Index,
    payload: &str,
    progress: &Progress,
) -> Result<Totals, UpdateError> {
    let mut tree = TreeCheck::new();
    let mut totals = Totals::default();
    for record in index.iter() {
        let record = record.map_err(|e| UpdateError::new(Stage::Contents, payload, e))?;
        check(&record, &mut tree, payload)?;
        totals.add(&record, progress);
    }
    Ok(totals)
}

/// Reads every entry of the tar stream without writing anything.
pub fn scan<R: Read>(tar: R, payload: &str, progress: &Progress) -> Result<Totals, UpdateError> {
    let mut archive = tar::Archive::new(tar);
    let read_err = |e: std::io::Error| {
        UpdateError::new(
            Stage::Contents,
            payload,
            format!("cannot decode the payload: {e}"),
        )
    };
    let mut tree = TreeCheck::new();
    let mut totals = Totals::default();
    // Large reads let zstd decode in large steps.
    let mut skip = vec![0u8; 1 << 20];
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let described = describe(&mut entry, payload)?;
        check(&described, &mut tree, payload)?;
        totals.add(&described, progress);
        // The data is skipped, but it must decode: zstd's checksum is
        // checked as the whole stream is read.
        while entry.read(&mut skip).map_err(read_err)? > 0 {}
    }
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload's tar: the root, then `entry`, as the builder would
    /// write them if it did not check them.
    fn tar(entry: Entry) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        entry::append(&mut b, &Entry::new("./", Kind::Directory), std::io::empty()).unwrap();
        entry::append(&mut b, &entry, std::io::empty()).unwrap();
        b.into_inner().unwrap()
    }

    fn refusal(tar: &[u8]) -> String {
        let progress = Progress::new("test", 0);
        scan(tar, "p.tar.zst", &progress).unwrap_err().to_string()
    }

    /// The limits of the shared model hold in the recovery's scan.
    #[test]
    fn the_scan_refuses_entries_beyond_the_limits() {
        let text = refusal(&tar(Entry::new("entry", Kind::Symlink(vec![b't'; 4096]))));
        assert!(
            text.contains("entry entry: link target must be 1 to 4095 bytes"),
            "{text}"
        );
        let mut xattr = Entry::new("entry", Kind::File);
        xattr.xattrs = vec![(format!("user.{}", "n".repeat(251)), b"v".to_vec())];
        let text = refusal(&tar(xattr));
        assert!(text.contains("not 1 to 255 bytes of text"), "{text}");
        let fifo = tar(Entry::new("entry", Kind::Fifo));
        let ok = scan(&fifo[..], "p", &Progress::new("test", 0));
        assert_eq!(ok.unwrap().entries, 2);
    }
}
