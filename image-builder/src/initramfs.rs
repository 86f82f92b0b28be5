//! The recovery initramfs: a zstd-compressed newc cpio with the static
//! `recovery` as `/init`, `mke2fs` and the shared libraries it needs
//! (resolved as the dynamic loader resolves them, in the build host's root
//! or in a sysroot with the device's userland), `/dev/console`
//! and `/dev/null` (without them the kernel gives PID 1 no standard
//! streams), the configuration, the trusted keys, and kernel modules the
//! recovery loads at its start (`/lib/modules/*.ko`).

use crate::cpio::CpioWriter;
use crate::elf;
use crate::error::{BuildError, IoContext};
use formats::config::{self, Config};
use formats::signature::TrustedKey;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

pub struct InitramfsRequest {
    pub recovery: PathBuf,
    pub trusted_keys: Vec<PathBuf>,
    /// Kernel modules (`.ko`) the recovery loads at its start, for what
    /// the kernel does not have built in.
    pub modules: Vec<PathBuf>,
    pub config: Config,
    /// Where mke2fs and its libraries come from: the build host when `None`.
    pub sysroot: Option<PathBuf>,
    pub out: PathBuf,
}

pub struct InitramfsSummary {
    pub size: u64,
    pub files: Vec<String>,
}

/// A root file system that mke2fs is taken from: the build host's `/` or a
/// vendor's sysroot. Paths are resolved inside it: a symlink, absolute or
/// relative, never leads out of it.
struct Root {
    dir: PathBuf,
}

/// Symlinks followed in one path before it is taken for a loop.
const MAX_SYMLINKS: usize = 40;

impl Root {
    /// The build host's file for `path` as the device sees it.
    fn resolve(&self, path: &str) -> io::Result<PathBuf> {
        let mut pending: Vec<OsString> = Path::new(path)
            .components()
            .rev()
            .map(|c| c.as_os_str().to_owned())
            .collect();
        let mut inside: Vec<OsString> = Vec::new();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            match part.to_str() {
                Some("/" | "." | "") => continue,
                Some("..") => {
                    inside.pop();
                    continue;
                }
                _ => {}
            }
            let here = self.host_path(&inside).join(&part);
            if !here.symlink_metadata()?.file_type().is_symlink() {
                inside.push(part);
                continue;
            }
            hops += 1;
            if hops > MAX_SYMLINKS {
                return Err(io::Error::other("too many levels of symbolic links"));
            }
            let target = std::fs::read_link(&here)?;
            if target.is_absolute() {
                inside.clear();
            }
            pending.extend(target.components().rev().map(|c| c.as_os_str().to_owned()));
        }
        Ok(self.host_path(&inside))
    }

    fn host_path(&self, inside: &[OsString]) -> PathBuf {
        inside.iter().fold(self.dir.clone(), |p, c| p.join(c))
    }

    /// `path` as an operator finds it on the build host.
    fn shown(&self, path: &str) -> String {
        self.dir
            .join(path.trim_start_matches('/'))
            .display()
            .to_string()
    }

    /// The file at `path` (resolved inside the root), if it is one.
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        let file = self.resolve(path).ok()?;
        file.is_file().then(|| std::fs::read(file).ok()).flatten()
    }

    /// Where the dynamic loader looks for libraries, after a program's own
    /// paths: `/etc/ld.so.conf` (glibc, with its `include`s),
    /// `/etc/ld-musl-*.path` (musl), then the built-in directories.
    fn library_dirs(&self, is_64: bool, musl: bool) -> Vec<String> {
        let mut dirs = Vec::new();
        self.ld_so_conf("/etc/ld.so.conf", &mut dirs, 0);
        for path in self.musl_path_files(musl) {
            if let Some(text) = self.read(&path) {
                let text = String::from_utf8_lossy(&text);
                dirs.extend(text.split([':', '\n']).map(str::trim).map(String::from));
            }
        }
        if is_64 {
            dirs.extend(["/lib64".into(), "/usr/lib64".into()]);
        }
        dirs.extend(["/lib".into(), "/usr/lib".into()]);
        let mut seen = BTreeSet::new();
        dirs.retain(|d| d.starts_with('/') && seen.insert(d.clone()));
        dirs
    }

    fn ld_so_conf(&self, path: &str, dirs: &mut Vec<String>, depth: usize) {
        let Some(text) = self.read(path).filter(|_| depth < 8) else {
            return;
        };
        for line in String::from_utf8_lossy(&text).lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if let Some(pattern) = line.strip_prefix("include ") {
                let pattern = pattern.trim();
                let base = Path::new(path).parent().unwrap_or(Path::new("/"));
                let pattern = base.join(pattern).to_string_lossy().into_owned();
                for file in self.glob(&pattern) {
                    self.ld_so_conf(&file, dirs, depth + 1);
                }
            } else if !line.starts_with("hwcap") {
                dirs.extend(
                    line.split([' ', '\t', ':', ','])
                        .filter(|d| !d.is_empty())
                        .map(String::from),
                );
            }
        }
    }

    /// The files a pattern with `*` in its last component names, sorted.
    fn glob(&self, pattern: &str) -> Vec<String> {
        let (dir, name) = pattern.rsplit_once('/').unwrap_or(("", pattern));
        let Some((prefix, suffix)) = name.split_once('*') else {
            return vec![pattern.to_string()];
        };
        let mut found: Vec<String> = self
            .resolve(dir)
            .and_then(std::fs::read_dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| {
                n.len() >= prefix.len() + suffix.len()
                    && n.starts_with(prefix)
                    && n.ends_with(suffix)
            })
            .map(|n| format!("{dir}/{n}"))
            .collect();
        found.sort();
        found
    }

    /// musl's loader configuration, for a program that musl's loader runs.
    fn musl_path_files(&self, musl: bool) -> Vec<String> {
        if musl {
            self.glob("/etc/ld-musl-*.path")
        } else {
            Vec::new()
        }
    }
}

/// A file for the archive: its path there (relative) and its contents.
type ArchiveFile = (String, Vec<u8>);

/// `program` (a path inside `root`), its ELF interpreter and every library
/// it needs, directly or through another, found as the dynamic loader
/// finds them (`DT_RPATH`, `DT_RUNPATH`, the loader's configuration, the
/// built-in directories; a library of another class, byte order or machine
/// is passed over). Each lands at the path the loader will look at.
fn program_with_libraries(
    root: &Root,
    program: &str,
    archive_name: &str,
) -> Result<(elf::ElfInfo, Vec<ArchiveFile>), BuildError> {
    let fail = |path: &str, reason: String| BuildError::Unrepresentable {
        path: root.shown(path),
        reason,
    };
    let data = root
        .read(program)
        .ok_or_else(|| fail(program, "cannot read it".into()))?;
    let info = elf::parse(&data).map_err(|e| fail(program, e))?;
    let mut files = vec![(archive_name.to_string(), data)];
    let mut provided = BTreeSet::new();
    let musl = info
        .interpreter
        .as_ref()
        .is_some_and(|i| i.contains("/ld-musl-"));
    if let Some(interpreter) = &info.interpreter {
        let data = root.read(interpreter).ok_or_else(|| {
            fail(
                interpreter,
                format!("{program} names it as its ELF interpreter, but it is not there"),
            )
        })?;
        files.push((interpreter.trim_start_matches('/').to_string(), data));
        if let Some(name) = Path::new(interpreter).file_name() {
            provided.insert(name.to_string_lossy().into_owned());
        }
    }
    let system_dirs = root.library_dirs(info.is_64, musl);
    // (library name, the path of the object that needs it, its ELF facts)
    let mut queue: Vec<(String, String, elf::ElfInfo)> = info
        .needed
        .iter()
        .map(|n| (n.clone(), program.to_string(), info.clone()))
        .collect();
    while let Some((name, needed_by, by)) = queue.pop() {
        if !provided.insert(name.clone()) {
            continue;
        }
        let origin = Path::new(&needed_by)
            .parent()
            .map_or("/".into(), |p| p.display().to_string());
        let own = if by.runpath.is_empty() {
            &by.rpath
        } else {
            &by.runpath
        };
        let dirs: Vec<String> = own
            .iter()
            .map(|d| d.replace("${ORIGIN}", &origin).replace("$ORIGIN", &origin))
            .chain(system_dirs.iter().cloned())
            .collect();
        let found = dirs.iter().find_map(|dir| {
            let path = format!("{}/{name}", dir.trim_end_matches('/'));
            let data = root.read(&path)?;
            let lib = elf::parse(&data).ok().filter(|lib| lib.compatible(&info))?;
            Some((path, data, lib))
        });
        let Some((path, data, lib)) = found else {
            return Err(fail(
                &needed_by,
                format!(
                    "needs {name}, which is in none of {} under {} (for {info})",
                    dirs.join(", "),
                    root.dir.display()
                ),
            ));
        };
        queue.extend(
            lib.needed
                .iter()
                .map(|n| (n.clone(), path.clone(), lib.clone())),
        );
        files.push((path.trim_start_matches('/').to_string(), data));
    }
    for path in root.musl_path_files(musl) {
        if let Some(data) = root.read(&path) {
            files.push((path.trim_start_matches('/').to_string(), data));
        }
    }
    Ok((info, files))
}

/// Where mke2fs is looked for, in the root it is taken from.
const MKE2FS_PATHS: [&str; 4] = [
    "/usr/sbin/mke2fs",
    "/sbin/mke2fs",
    "/usr/bin/mke2fs",
    "/bin/mke2fs",
];

/// The recovery must be a static executable: it is PID 1, with no loader.
fn check_static(path: &Path, data: &[u8]) -> Result<elf::ElfInfo, BuildError> {
    let bad = |reason: String| BuildError::Unrepresentable {
        path: path.display().to_string(),
        reason,
    };
    let info = elf::parse(data)
        .map_err(|e| bad(format!("{e}: expected the static recovery executable")))?;
    match &info.interpreter {
        None => Ok(info),
        Some(loader) => Err(bad(format!(
            "is dynamically linked (its loader: {loader}): PID 1 of the initramfs must be \
             static (build it for x86_64-unknown-linux-musl, or with +crt-static)"
        ))),
    }
}

pub fn build(req: &InitramfsRequest) -> Result<InitramfsSummary, BuildError> {
    let recovery =
        std::fs::read(&req.recovery).ctx(&req.recovery, "cannot read the recovery binary")?;
    let recovery_elf = check_static(&req.recovery, &recovery)?;
    let mut keys = Vec::new();
    for path in &req.trusted_keys {
        let text = std::fs::read_to_string(path).ctx(path, "cannot read the trusted key")?;
        TrustedKey::parse(&path.display().to_string(), &text).map_err(|e| BuildError::Key {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        keys.push(text);
    }
    if keys.is_empty() {
        return Err(BuildError::Usage(
            "an initramfs needs at least one --trusted-key".into(),
        ));
    }
    let root = Root {
        dir: req.sysroot.clone().unwrap_or_else(|| PathBuf::from("/")),
    };
    let mke2fs = MKE2FS_PATHS
        .into_iter()
        .find(|p| root.resolve(p).is_ok_and(|f| f.is_file()))
        .ok_or_else(|| {
            BuildError::Usage(match &req.sysroot {
                None => "mke2fs is not installed on this host: apt-get install e2fsprogs".into(),
                Some(dir) => format!(
                    "--sysroot {}: no mke2fs in {} inside it (install e2fsprogs in the sysroot)",
                    dir.display(),
                    MKE2FS_PATHS.join(", ")
                ),
            })
        })?;

    // Every file: (path in the archive, mode, contents).
    let mut files: Vec<(String, u32, Vec<u8>)> = vec![("init".into(), 0o755, recovery)];
    let (mke2fs_elf, program_files) = program_with_libraries(&root, mke2fs, "sbin/mke2fs")?;
    if !mke2fs_elf.compatible(&recovery_elf) {
        return Err(BuildError::Unrepresentable {
            path: root.shown(mke2fs),
            reason: format!(
                "is a {mke2fs_elf}, but the recovery {} is a {recovery_elf}: \
                 take both for the device's architecture",
                req.recovery.display()
            ),
        });
    }
    files.extend(
        program_files
            .into_iter()
            .map(|(name, data)| (name, 0o755, data)),
    );
    if let Some(conf) = root.read("/etc/mke2fs.conf") {
        files.push(("etc/mke2fs.conf".into(), 0o644, conf));
    }
    for module in &req.modules {
        let name = module
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".ko"))
            .ok_or_else(|| {
                BuildError::Usage(format!(
                    "--module {}: expected a .ko file",
                    module.display()
                ))
            })?;
        let data = std::fs::read(module).ctx(module, "cannot read the module")?;
        files.push((format!("lib/modules/{name}"), 0o644, data));
    }
    files.push((config::PATH.into(), 0o644, req.config.render().into_bytes()));
    for (i, key) in keys.into_iter().enumerate() {
        files.push((
            format!("{}/key{i}.pub", config::KEYS_DIR),
            0o644,
            key.into_bytes(),
        ));
    }
    files.sort();

    let mut dirs: BTreeSet<String> = ["dev", "proc", "sys", "run", "tmp"]
        .map(String::from)
        .into();
    for (name, _, _) in &files {
        let mut parent = Path::new(name).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(p.to_string_lossy().into_owned());
            parent = p.parent();
        }
    }
    let mut cpio = CpioWriter::new(Vec::new());
    let io = |e| BuildError::Io {
        path: req.out.clone(),
        what: "cannot write the initramfs",
        err: e,
    };
    for dir in &dirs {
        cpio.dir(dir).map_err(io)?;
    }
    cpio.char_device("dev/console", 0o600, 5, 1).map_err(io)?;
    cpio.char_device("dev/null", 0o666, 1, 3).map_err(io)?;
    for (name, mode, data) in &files {
        cpio.file(name, *mode, data).map_err(io)?;
    }
    let archive = cpio.finish().map_err(io)?;
    // Level 19 keeps the window at 8 MiB, within what the kernel decodes.
    let compressed = zstd::bulk::compress(&archive, 19).map_err(io)?;
    std::fs::write(&req.out, &compressed).ctx(&req.out, "cannot write the initramfs")?;
    let mut listed: Vec<String> = dirs.into_iter().collect();
    listed.extend(["dev/console".to_string(), "dev/null".to_string()]);
    listed.extend(files.into_iter().map(|(n, _, _)| n));
    Ok(InitramfsSummary {
        size: compressed.len() as u64,
        files: listed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::elf::{EM_AARCH64, EM_ARM, EM_PPC, EM_X86_64};
    use std::os::unix::fs::symlink;

    #[test]
    fn the_recovery_must_be_static_in_every_elf_class() {
        for (is_64, big_endian, machine) in [
            (false, false, EM_ARM),
            (false, true, EM_PPC),
            (true, false, EM_X86_64),
            (true, true, EM_AARCH64),
        ] {
            let path = Path::new("recovery");
            let static_exe = elf::craft(is_64, big_endian, machine, None);
            let info = check_static(path, &static_exe).unwrap();
            assert_eq!(
                (info.is_64, info.big_endian, info.machine),
                (is_64, big_endian, machine)
            );
            let dynamic = elf::craft(is_64, big_endian, machine, Some("/lib/ld.so.1"));
            let err = check_static(path, &dynamic).unwrap_err().to_string();
            assert!(
                err.contains("dynamically linked") && err.contains("/lib/ld.so.1"),
                "{err}"
            );
        }
        let err = check_static(Path::new("x"), b"#!/bin/sh\n").unwrap_err();
        assert!(err.to_string().contains("not an ELF file"), "{err}");
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root {
            dir: dir.path().to_path_buf(),
        };
        std::fs::create_dir_all(dir.path().join("usr/lib")).unwrap();
        std::fs::write(dir.path().join("usr/lib/a"), "inside").unwrap();
        symlink("/usr/lib", dir.path().join("lib")).unwrap();
        symlink("../../../../../usr/lib/a", dir.path().join("usr/lib/up")).unwrap();
        symlink("loop", dir.path().join("loop")).unwrap();
        for path in ["/lib/a", "/lib/up", "/usr/lib/../lib/a", "/../../lib/a"] {
            assert_eq!(root.read(path).as_deref(), Some(&b"inside"[..]), "{path}");
        }
        assert!(root.read("/loop").is_none());
        assert!(root.read("/lib/missing").is_none());
    }

    /// The files of a newc archive the initramfs writer made, by name.
    fn unpack(initramfs: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
        let archive = zstd::decode_all(std::fs::File::open(initramfs).unwrap()).unwrap();
        crate::cpio::read(&archive)
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.data))
            .collect()
    }

    /// The host's mke2fs and its libraries (as `ldd` finds them), copied
    /// into a usr-merged sysroot laid out unlike the host: libraries in
    /// `/usr/lib/<triplet>` behind an absolute `/lib` symlink, real names
    /// behind soname symlinks, the loader behind `/lib64 -> usr/lib64`.
    fn host_sysroot(dir: &Path) -> Vec<String> {
        let ldd = std::process::Command::new("ldd")
            .arg("/usr/sbin/mke2fs")
            .output()
            .expect("ldd is missing: apt-get install libc-bin");
        let text = String::from_utf8(ldd.stdout).unwrap();
        let libdir = dir.join("usr/lib/x86_64-linux-gnu");
        for d in ["usr/sbin", "usr/lib64", "etc/ld.so.conf.d"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::create_dir_all(&libdir).unwrap();
        std::fs::copy("/usr/sbin/mke2fs", dir.join("usr/sbin/mke2fs"))
            .expect("/usr/sbin/mke2fs: apt-get install e2fsprogs");
        symlink("usr/sbin", dir.join("sbin")).unwrap();
        symlink("/usr/lib", dir.join("lib")).unwrap();
        symlink("usr/lib64", dir.join("lib64")).unwrap();
        std::fs::write(
            dir.join("etc/ld.so.conf"),
            "include /etc/ld.so.conf.d/*.conf\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("etc/ld.so.conf.d/x86_64-linux-gnu.conf"),
            "# multiarch\n/usr/lib/x86_64-linux-gnu\n",
        )
        .unwrap();
        let mut sonames = Vec::new();
        for line in text.lines() {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            let Some(path) = path.filter(|p| p.starts_with('/')) else {
                continue;
            };
            let real = std::fs::canonicalize(path).unwrap();
            let real_name = real.file_name().unwrap().to_str().unwrap().to_string();
            let soname = Path::new(path)
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            std::fs::copy(&real, libdir.join(&real_name)).unwrap();
            if soname != real_name {
                symlink(&real_name, libdir.join(&soname)).unwrap();
            }
            if path.starts_with("/lib64/") {
                symlink(
                    format!("../lib/x86_64-linux-gnu/{real_name}"),
                    dir.join("usr/lib64").join(&soname),
                )
                .unwrap();
            } else {
                sonames.push(soname);
            }
        }
        sonames
    }

    fn request(work: &Path, sysroot: &Path) -> InitramfsRequest {
        let recovery = work.join("recovery");
        std::fs::write(&recovery, elf::craft(true, false, EM_X86_64, None)).unwrap();
        let pair = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let key = work.join("k.pub");
        std::fs::write(&key, pair.pk.to_box().unwrap().to_string()).unwrap();
        InitramfsRequest {
            recovery,
            trusted_keys: vec![key],
            modules: vec![],
            config: Config::for_product("p"),
            sysroot: Some(sysroot.to_path_buf()),
            out: work.join("initramfs.img"),
        }
    }

    #[test]
    fn mke2fs_and_its_libraries_come_from_the_sysroot() {
        let work = tempfile::tempdir().unwrap();
        let sysroot = work.path().join("sysroot");
        let sonames = host_sysroot(&sysroot);
        assert!(
            sonames.iter().any(|s| s.starts_with("libext2fs")),
            "{sonames:?}"
        );
        // Marks the sysroot's copy, so the host's cannot pass for it.
        let ext2fs =
            std::fs::canonicalize(sysroot.join("usr/lib/x86_64-linux-gnu/libext2fs.so.2")).unwrap();
        let mut marked = std::fs::read(&ext2fs).unwrap();
        marked.extend_from_slice(b"FROM-THE-SYSROOT");
        std::fs::write(&ext2fs, &marked).unwrap();
        std::fs::write(sysroot.join("etc/mke2fs.conf"), "[defaults]\n# sysroot\n").unwrap();

        let req = request(work.path(), &sysroot);
        build(&req).unwrap();
        let files = unpack(&req.out);
        assert_eq!(
            files["sbin/mke2fs"],
            std::fs::read("/usr/sbin/mke2fs").unwrap()
        );
        assert_eq!(files["usr/lib/x86_64-linux-gnu/libext2fs.so.2"], marked);
        for soname in &sonames {
            let name = format!("usr/lib/x86_64-linux-gnu/{soname}");
            assert!(
                files.contains_key(&name),
                "{name} missing: {:?}",
                files.keys()
            );
        }
        assert!(
            files.contains_key("lib64/ld-linux-x86-64.so.2"),
            "{:?}",
            files.keys()
        );
        assert_eq!(files["etc/mke2fs.conf"], b"[defaults]\n# sysroot\n");
        assert!(
            !files.keys().any(|n| n.starts_with("lib/x86_64-linux-gnu/")),
            "a library came from the host's path: {:?}",
            files.keys()
        );
    }

    #[test]
    fn a_library_missing_from_the_sysroot_is_named() {
        let work = tempfile::tempdir().unwrap();
        let sysroot = work.path().join("sysroot");
        host_sysroot(&sysroot);
        std::fs::remove_file(sysroot.join("usr/lib/x86_64-linux-gnu/libcom_err.so.2")).unwrap();
        let err = build(&request(work.path(), &sysroot))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("needs libcom_err.so.2"), "{err}");
        assert!(err.contains(&sysroot.display().to_string()), "{err}");
    }

    #[test]
    fn a_recovery_for_another_machine_is_refused() {
        let work = tempfile::tempdir().unwrap();
        let sysroot = work.path().join("sysroot");
        host_sysroot(&sysroot);
        let req = request(work.path(), &sysroot);
        std::fs::write(&req.recovery, elf::craft(true, false, EM_AARCH64, None)).unwrap();
        let err = build(&req).err().unwrap().to_string();
        assert!(
            err.contains("mke2fs") && err.contains("machine 183"),
            "{err}"
        );
    }
}
