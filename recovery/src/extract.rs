//! Writes the entries of a tar stream below a directory, and nowhere else.
//!
//! Every parent directory is opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` from the target's root, and every entry is created
//! relative to it without following a symlink, so that neither a hostile
//! path nor a symlink planted by an earlier entry can lead a write outside.
//! The checks of [`crate::scan`] run again on each entry as it is written.
//! With a signed entry index (format 2), each entry's header is compared
//! with its record first ([`formats::index::Matcher`]): a difference, a
//! missing or an extra entry stops the extraction, naming the entry and
//! the field.
//!
//! Metadata: numeric owner, mode with setuid/setgid/sticky (set after the
//! owner, which clears them), xattrs after the owner (which clears file
//! capabilities), then the times; directories last, deepest first, so that
//! writing into them does not change their times.

use crate::error::{Stage, UpdateError};
use crate::progress::Progress;
use crate::scan::{check, describe};
use formats::entry::{Entry, Kind};
use formats::entry_path::{display, normalize, split_parent, TreeCheck};
use formats::index::{Disagreement, Index};
use nix::errno::Errno;
use nix::fcntl::{openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, Mode,
    SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{
    fchown, fchownat, linkat, mkfifoat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags,
};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use xattr::FileExt;

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extracted {
    pub entries: u64,
    pub bytes: u64,
}

/// Extracts the tar stream `tar` into the directory `into`, each entry
/// matched with its record of `index` when there is one. `payload` names
/// the image in errors.
pub fn extract<R: Read>(
    tar: R,
    into: &Path,
    payload: &str,
    progress: &Progress,
    index: Option<&Index>,
) -> Result<Extracted, UpdateError> {
    let root = nix::fcntl::open(
        into,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        UpdateError::new(
            Stage::Extract,
            into.display(),
            format!("cannot open the target: {e}"),
        )
    })?;
    let mut writer = Writer {
        root,
        tree: TreeCheck::new(),
        parent: None,
        dirs: Vec::new(),
        buf: vec![0; 1 << 20],
        payload,
        bytes: 0,
        fresh: Known::for_new_files(),
    };
    let mut archive = tar::Archive::new(tar);
    let read_err = |e: std::io::Error| {
        UpdateError::new(
            Stage::Extract,
            payload,
            format!("cannot decode the payload: {e}"),
        )
    };
    let against_index = |d: Disagreement| against_index(Stage::Extract, payload, d);
    let mut matcher = index.map(Index::matcher);
    let mut entries = 0;
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let described = describe(&mut entry, payload)?;
        if let Some(matcher) = &mut matcher {
            matcher.check(&described).map_err(against_index)?;
        }
        writer.write(&described, &mut entry)?;
        entries += 1;
        progress.add_entry();
        crate::fault::hit(crate::fault::Point::AfterEntries(entries));
    }
    if let Some(matcher) = matcher {
        matcher.finish().map_err(against_index)?;
    }
    writer.finish_directories()?;
    Ok(Extracted {
        entries,
        bytes: writer.bytes,
    })
}

/// A tar that its signed entry index does not describe, found at `stage`
/// (by `recovery verify`, or while extracting).
pub fn against_index(stage: Stage, payload: &str, d: impl std::fmt::Display) -> UpdateError {
    UpdateError::new(
        stage,
        payload,
        format!("{d} (the image's builder wrote a tar that its signed index does not describe)"),
    )
}

struct Writer<'a> {
    root: OwnedFd,
    tree: TreeCheck,
    /// The directory the last entry went into, kept open for the next.
    parent: Option<(Vec<u8>, OwnedFd)>,
    /// Directories whose metadata is applied at the end.
    dirs: Vec<(Vec<u8>, Entry)>,
    buf: Vec<u8>,
    payload: &'a str,
    bytes: u64,
    /// What a file this process creates has before any change.
    fresh: Known,
}

const BENEATH: ResolveFlag = ResolveFlag::RESOLVE_BENEATH
    .union(ResolveFlag::RESOLVE_NO_SYMLINKS)
    .union(ResolveFlag::RESOLVE_NO_MAGICLINKS);

impl Writer<'_> {
    fn fail(&self, path: &[u8], what: &str, err: impl std::fmt::Display) -> UpdateError {
        UpdateError::new(
            Stage::Extract,
            self.payload,
            format!("entry {}: {what}: {err}", display(path)),
        )
    }

    /// Opens a directory below the root without following any symlink.
    fn open_dir(&self, path: &[u8]) -> Result<OwnedFd, UpdateError> {
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .resolve(BENEATH);
        let target: &[u8] = if path.is_empty() { b"." } else { path };
        openat2(&self.root, target, how)
            .map_err(|e| self.fail(path, "cannot open the directory", e))
    }

    fn parent_fd(&mut self, parent: &[u8]) -> Result<&OwnedFd, UpdateError> {
        if self.parent.as_ref().map(|(p, _)| p.as_slice()) != Some(parent) {
            let fd = self.open_dir(parent)?;
            self.parent = Some((parent.to_vec(), fd));
        }
        Ok(&self.parent.as_ref().expect("just set").1)
    }

    fn write<R: Read>(&mut self, d: &Entry, data: &mut R) -> Result<(), UpdateError> {
        let path = check(d, &mut self.tree, self.payload)?;
        if path.is_empty() {
            self.dirs.push((path, d.clone()));
            return Ok(());
        }
        let (parent, name) = split_parent(&path);
        let (parent, name) = (parent.to_vec(), name.to_vec());
        let payload = self.payload;
        let fail = |what: &str, err: Errno| {
            UpdateError::new(
                Stage::Extract,
                payload,
                format!("entry {}: {what}: {err}", display(&path)),
            )
        };
        match &d.kind {
            Kind::Directory => {
                let dir = self.parent_fd(&parent)?;
                match mkdirat(dir, name.as_slice(), Mode::from_bits_truncate(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EEXIST) => {
                        let st = fstatat(dir, name.as_slice(), AtFlags::AT_SYMLINK_NOFOLLOW)
                            .map_err(|e| fail("cannot stat", e))?;
                        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
                            return Err(fail("exists and is not a directory", Errno::EEXIST));
                        }
                    }
                    Err(e) => return Err(fail("cannot create the directory", e)),
                }
                self.dirs.push((path.clone(), d.clone()));
            }
            Kind::File => {
                let created_mode = d.mode & 0o777;
                let fd = {
                    let dir = self.parent_fd(&parent)?;
                    replacing(dir, &name, |dir| {
                        nix::fcntl::openat(
                            dir,
                            name.as_slice(),
                            OFlag::O_WRONLY
                                | OFlag::O_CREAT
                                | OFlag::O_EXCL
                                | OFlag::O_NOFOLLOW
                                | OFlag::O_CLOEXEC,
                            Mode::from_bits_truncate(created_mode),
                        )
                    })
                    .map_err(|e| fail("cannot create the file", e))?
                };
                let mut file = File::from(fd);
                let mut remaining = d.size;
                while remaining > 0 {
                    let want = self
                        .buf
                        .len()
                        .min(remaining.try_into().unwrap_or(usize::MAX));
                    let n = data.read(&mut self.buf[..want]).map_err(|e| {
                        self.fail(&path, "cannot read its data from the payload", e)
                    })?;
                    if n == 0 {
                        return Err(self.fail(
                            &path,
                            "the payload ends inside its data",
                            "truncated",
                        ));
                    }
                    file.write_all(&self.buf[..n])
                        .map_err(|e| self.fail(&path, "cannot write", e))?;
                    remaining -= n as u64;
                }
                self.bytes += d.size;
                let known = Known {
                    mode: Some(created_mode & !self.fresh.umask),
                    ..self.fresh
                };
                apply_to_fd(&file, d, known).map_err(|(what, e)| fail(what, e))?;
            }
            Kind::Symlink(target) => {
                let dir = self.parent_fd(&parent)?;
                replacing(dir, &name, |dir| {
                    symlinkat(target.as_slice(), dir, name.as_slice())
                })
                .map_err(|e| fail("cannot create the symlink", e))?;
                apply_to_name(dir, &name, d, false).map_err(|(what, e)| fail(what, e))?;
            }
            Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } => {
                let kind = if matches!(d.kind, Kind::CharDevice { .. }) {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                let dev = makedev((*major).into(), (*minor).into());
                let dir = self.parent_fd(&parent)?;
                replacing(dir, &name, |dir| {
                    mknodat(
                        dir,
                        name.as_slice(),
                        kind,
                        Mode::from_bits_truncate(0o600),
                        dev,
                    )
                })
                .map_err(|e| fail("cannot create the device node", e))?;
                apply_to_name(dir, &name, d, true).map_err(|(what, e)| fail(what, e))?;
            }
            Kind::Fifo => {
                let dir = self.parent_fd(&parent)?;
                replacing(dir, &name, |dir| {
                    mkfifoat(dir, name.as_slice(), Mode::from_bits_truncate(0o600))
                })
                .map_err(|e| fail("cannot create the FIFO", e))?;
                apply_to_name(dir, &name, d, true).map_err(|(what, e)| fail(what, e))?;
            }
            Kind::HardLink(target) => {
                let target =
                    normalize(target).map_err(|e| self.fail(&path, "bad link target", e))?;
                let (tparent, tname) = split_parent(&target);
                let tdir = self.open_dir(tparent)?;
                let dir = self.parent_fd(&parent)?;
                replacing(dir, &name, |dir| {
                    linkat(&tdir, tname, dir, name.as_slice(), AtFlags::empty())
                })
                .map_err(|e| fail("cannot create the hard link", e))?;
            }
        }
        Ok(())
    }

    /// Applies the directories' metadata, deepest first.
    fn finish_directories(&mut self) -> Result<(), UpdateError> {
        self.parent = None;
        for (path, d) in std::mem::take(&mut self.dirs).iter().rev() {
            let fd = self.open_dir(path)?;
            apply_to_fd(&File::from(fd), d, Known::NOTHING)
                .map_err(|(what, e)| self.fail(path, what, e))?;
        }
        Ok(())
    }
}

/// Runs `create`; if the name exists (and is not a directory), removes it
/// and runs `create` again, as tar does.
fn replacing<T>(
    dir: &OwnedFd,
    name: &[u8],
    create: impl Fn(&OwnedFd) -> nix::Result<T>,
) -> nix::Result<T> {
    match create(dir) {
        Err(Errno::EEXIST) => {
            unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)?;
            create(dir)
        }
        other => other,
    }
}

type MetaError = (&'static str, Errno);

fn times(d: &Entry) -> TimeSpec {
    TimeSpec::new(d.mtime.min(i64::MAX as u64) as i64, 0)
}

/// What an inode is known to have already, so that the calls that would
/// change nothing are left out (two system calls a file, thousands an image).
#[derive(Debug, Clone, Copy)]
struct Known {
    owner: Option<(u32, u32)>,
    mode: Option<u32>,
    umask: u32,
}

impl Known {
    const NOTHING: Known = Known {
        owner: None,
        mode: None,
        umask: 0o777,
    };

    /// The owner and umask that this process's new files get.
    fn for_new_files() -> Known {
        let umask = nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
        nix::sys::stat::umask(umask);
        Known {
            owner: Some((
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            )),
            mode: None,
            umask: umask.bits(),
        }
    }
}

/// Owner, mode, xattrs and times of an open file or directory.
fn apply_to_fd(file: &File, d: &Entry, known: Known) -> Result<(), MetaError> {
    let chown = known.owner != Some((d.uid, d.gid));
    if chown {
        fchown(file, Some(Uid::from_raw(d.uid)), Some(Gid::from_raw(d.gid)))
            .map_err(|e| ("cannot set the owner", e))?;
    }
    // A change of owner clears setuid and setgid: the mode comes after.
    if chown || known.mode != Some(d.mode) {
        fchmod(file, Mode::from_bits_truncate(d.mode)).map_err(|e| ("cannot set the mode", e))?;
    }
    for (name, value) in &d.xattrs {
        file.set_xattr(name, value)
            .map_err(|e| ("cannot set an extended attribute", errno_of(&e)))?;
    }
    futimens(file, &times(d), &times(d)).map_err(|e| ("cannot set the times", e))
}

/// Owner, mode (not for symlinks), xattrs and times of a node that cannot
/// be opened safely (a symlink, a device, a FIFO).
fn apply_to_name(dir: &OwnedFd, name: &[u8], d: &Entry, set_mode: bool) -> Result<(), MetaError> {
    fchownat(
        dir,
        name,
        Some(Uid::from_raw(d.uid)),
        Some(Gid::from_raw(d.gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| ("cannot set the owner", e))?;
    if set_mode {
        // The node was just created by us in a directory opened without
        // following symlinks, so following is safe (and NOFOLLOW is not
        // supported for fchmodat on older kernels).
        fchmodat(
            dir,
            name,
            Mode::from_bits_truncate(d.mode),
            FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| ("cannot set the mode", e))?;
    }
    if !d.xattrs.is_empty() {
        // l*xattr on the name through the directory's descriptor.
        let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
        path.extend_from_slice(name);
        let path = std::ffi::OsStr::from_bytes(&path);
        for (attr, value) in &d.xattrs {
            xattr::set(path, attr, value)
                .map_err(|e| ("cannot set an extended attribute", errno_of(&e)))?;
        }
    }
    utimensat(
        dir,
        name,
        &times(d),
        &times(d),
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| ("cannot set the times", e))
}

fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(0))
}
