//! What a path inside an image may be. Every entry must land inside the
//! target: no absolute paths, no `..`, no entry below a symlink, no hard link
//! to anything but an earlier entry of the image. The same checks run in
//! `image-builder` (refusing to make such an image) and in `recovery` (before
//! the first write, and again while writing).

use std::collections::HashMap;
use thiserror::Error;

/// Longest file name component ext4 (and most Linux file systems) accept.
pub const NAME_MAX: usize = 255;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PathError {
    #[error("{path}: absolute path (entries must be relative to the target)")]
    Absolute { path: String },
    #[error("{path}: contains a `..` component")]
    DotDot { path: String },
    #[error("{path}: contains a NUL byte")]
    Nul { path: String },
    #[error("{path}: a name is {len} bytes long, longer than {NAME_MAX}")]
    NameTooLong { path: String, len: usize },
    #[error("{path}: appears twice in the image")]
    Duplicate { path: String },
    #[error("{path}: would be written through the symlink {symlink}")]
    ThroughSymlink { path: String, symlink: String },
    #[error("{path}: its parent {parent} is not a directory")]
    ParentNotDirectory { path: String, parent: String },
    #[error("{path}: its parent directory {parent} has no entry before it")]
    MissingParent { path: String, parent: String },
    #[error("{path}: hard link to {target}, which is not an earlier file of the image")]
    HardLinkOutside { path: String, target: String },
    #[error("{path}: the root of the image must be a directory")]
    RootNotDirectory { path: String },
}

/// Shows a raw path in messages.
pub fn display(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

/// Turns a path as stored in a tar (`./etc/passwd`, `etc/`, `./`) into the
/// relative path it names (`etc/passwd`, `etc`, empty for the root), or says
/// why it could leave the target.
pub fn normalize(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    let path = || display(raw);
    if raw.contains(&0) {
        return Err(PathError::Nul { path: path() });
    }
    if raw.first() == Some(&b'/') {
        return Err(PathError::Absolute { path: path() });
    }
    let mut out = Vec::with_capacity(raw.len());
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => continue,
            b".." => return Err(PathError::DotDot { path: path() }),
            name if name.len() > NAME_MAX => {
                return Err(PathError::NameTooLong {
                    path: path(),
                    len: name.len(),
                })
            }
            name => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(name);
            }
        }
    }
    Ok(out)
}

/// Splits a normalized path into its parent (empty for the root) and name.
pub fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// The kind of an entry, as far as the path checks care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Directory,
    Symlink,
    /// A regular file, device node or FIFO.
    Other,
    /// A hard link to the earlier entry named by its link target.
    HardLink,
}

/// Checks a sequence of entries, in archive order, for everything that could
/// make one of them land outside the target.
#[derive(Debug, Default)]
pub struct TreeCheck {
    seen: HashMap<Vec<u8>, Kind>,
}

impl TreeCheck {
    pub fn new() -> TreeCheck {
        TreeCheck::default()
    }

    /// Checks one entry and returns its normalized path. `link` is the target
    /// of a hard link (symlink targets may point anywhere: they are never
    /// followed while writing).
    pub fn check(
        &mut self,
        raw: &[u8],
        kind: Kind,
        link: Option<&[u8]>,
    ) -> Result<Vec<u8>, PathError> {
        let path = normalize(raw)?;
        if path.is_empty() {
            if kind != Kind::Directory {
                return Err(PathError::RootNotDirectory { path: display(raw) });
            }
            if self.seen.insert(Vec::new(), Kind::Directory).is_some() {
                return Err(PathError::Duplicate { path: display(raw) });
            }
            return Ok(path);
        }
        let (parent, _) = split_parent(&path);
        if !parent.is_empty() {
            match self.seen.get(parent) {
                Some(Kind::Directory) => {}
                Some(Kind::Symlink) => {
                    return Err(PathError::ThroughSymlink {
                        path: display(raw),
                        symlink: display(parent),
                    })
                }
                Some(_) => {
                    return Err(PathError::ParentNotDirectory {
                        path: display(raw),
                        parent: display(parent),
                    })
                }
                None => {
                    return Err(PathError::MissingParent {
                        path: display(raw),
                        parent: display(parent),
                    })
                }
            }
        }
        if kind == Kind::HardLink {
            let target = link.unwrap_or_default();
            let outside = || PathError::HardLinkOutside {
                path: display(raw),
                target: display(target),
            };
            let target = normalize(target).map_err(|_| outside())?;
            match self.seen.get(&target) {
                Some(Kind::Other | Kind::Symlink | Kind::HardLink) => {}
                _ => return Err(outside()),
            }
        }
        if self.seen.contains_key(&path) {
            return Err(PathError::Duplicate { path: display(raw) });
        }
        self.seen.insert(path.clone(), kind);
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_the_usual_spellings() {
        assert_eq!(normalize(b"./etc/passwd").unwrap(), b"etc/passwd");
        assert_eq!(normalize(b"etc/").unwrap(), b"etc");
        assert_eq!(normalize(b"./").unwrap(), b"");
        assert_eq!(normalize(b"a//b/./c").unwrap(), b"a/b/c");
    }

    #[test]
    fn refuses_escapes() {
        assert!(matches!(
            normalize(b"/etc/passwd"),
            Err(PathError::Absolute { .. })
        ));
        assert!(matches!(normalize(b"../x"), Err(PathError::DotDot { .. })));
        assert!(matches!(
            normalize(b"a/../../x"),
            Err(PathError::DotDot { .. })
        ));
        assert!(matches!(normalize(b"a\0b"), Err(PathError::Nul { .. })));
        let long = [b'x'; 256];
        assert!(matches!(
            normalize(&long),
            Err(PathError::NameTooLong { len: 256, .. })
        ));
        assert!(normalize(&long[..255]).is_ok());
    }

    #[test]
    fn refuses_writes_through_symlinks_and_outside_links() {
        let mut t = TreeCheck::new();
        t.check(b"./", Kind::Directory, None).unwrap();
        t.check(b"./etc", Kind::Symlink, None).unwrap();
        assert!(matches!(
            t.check(b"./etc/passwd", Kind::Other, None),
            Err(PathError::ThroughSymlink { .. })
        ));
        t.check(b"./file", Kind::Other, None).unwrap();
        assert!(matches!(
            t.check(b"./file/x", Kind::Other, None),
            Err(PathError::ParentNotDirectory { .. })
        ));
        assert!(matches!(
            t.check(b"./nodir/x", Kind::Other, None),
            Err(PathError::MissingParent { .. })
        ));
        t.check(b"./ok", Kind::HardLink, Some(b"./file")).unwrap();
        for target in [&b"/etc/shadow"[..], b"../outside", b"./missing", b"./"] {
            assert!(
                matches!(
                    t.check(b"./bad", Kind::HardLink, Some(target)),
                    Err(PathError::HardLinkOutside { .. })
                ),
                "{target:?}"
            );
        }
        assert!(matches!(
            t.check(b"file", Kind::Other, None),
            Err(PathError::Duplicate { .. })
        ));
        assert!(matches!(
            TreeCheck::new().check(b".", Kind::Other, None),
            Err(PathError::RootNotDirectory { .. })
        ));
    }

    #[test]
    fn splits_parents() {
        assert_eq!(split_parent(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_parent(b"a"), (&b""[..], &b"a"[..]));
    }
}
