//! Archives that try to write outside the target: each is refused, before
//! anything is written, and nothing appears outside the target.

mod common;

use common::*;
use formats::manifest::Manifest;
use image_builder::image::Source;
use std::fs;
use std::path::{Path, PathBuf};
use tar::{EntryType, Header};

/// Appends an entry with exactly these bytes as its name and link name
/// (the tar crate's own setters refuse `..`), after optional PAX records.
fn raw(
    b: &mut tar::Builder<Vec<u8>>,
    name: &[u8],
    ty: EntryType,
    link: &[u8],
    data: &[u8],
    pax: &[(&str, &[u8])],
) {
    if !pax.is_empty() {
        b.append_pax_extensions(pax.iter().copied()).unwrap();
    }
    let mut h = Header::new_ustar();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(ty);
    h.set_mode(if ty == EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_size(data.len() as u64);
    h.set_mtime(1_600_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

struct Sandbox {
    work: tempfile::TempDir,
    outside: PathBuf,
    into: PathBuf,
    key: (PathBuf, PathBuf),
}

impl Sandbox {
    fn new() -> Sandbox {
        let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let outside = work.path().join("sandbox/outside");
        let into = work.path().join("sandbox/into");
        fs::create_dir_all(&outside).unwrap();
        fs::create_dir_all(&into).unwrap();
        fs::write(outside.join("secret"), "secret").unwrap();
        let key = keypair(work.path(), "k");
        Sandbox {
            work,
            outside,
            into,
            key,
        }
    }

    /// Nothing was written: the target is empty, the outside unchanged,
    /// and no `escape` file exists anywhere in the work directory.
    fn assert_untouched(&self, case: &str) {
        assert_eq!(
            listing(&self.into),
            vec![b"".to_vec()],
            "{case}: the target was written to"
        );
        assert_eq!(
            listing(&self.outside),
            vec![b"".to_vec(), b"secret".to_vec()],
            "{case}: outside changed"
        );
        let secret = &self.outside.join("secret");
        assert_eq!(fs::read_to_string(secret).unwrap(), "secret", "{case}");
        assert_eq!(fs::symlink_metadata(secret).unwrap().len(), 6, "{case}");
        for (path, _) in snapshot(self.work.path()) {
            assert!(
                !String::from_utf8_lossy(&path).contains("escape"),
                "{case}: {} appeared",
                String::from_utf8_lossy(&path)
            );
        }
    }

    fn apply(&self, manifest: &Path) -> std::process::Output {
        require_root("run recovery apply");
        recovery(&[
            &"apply",
            &"--manifest",
            &manifest,
            &"--trusted-key",
            &self.key.0,
            &"--into",
            &self.into,
        ])
    }
}

/// The hostile archives, each a valid tar that starts with the root.
/// Each with what the refusal must say.
fn cases(sandbox: &Sandbox) -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let outside = sandbox.outside.to_str().unwrap().as_bytes().to_vec();
    let absolute = format!("{}/abs-escape", sandbox.outside.display()).into_bytes();
    let secret = format!("{}/secret", sandbox.outside.display()).into_bytes();
    use EntryType::*;
    let build = |f: &dyn Fn(&mut tar::Builder<Vec<u8>>)| {
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, b"./", Directory, b"", b"", &[]);
        f(&mut b);
        b.into_inner().unwrap()
    };
    vec![
        (
            "dot-dot",
            "contains a `..` component",
            build(&|b| raw(b, b"../escape", Regular, b"", b"x", &[])),
        ),
        (
            "absolute",
            "absolute path",
            build(&|b| raw(b, &absolute, Regular, b"", b"x", &[])),
        ),
        (
            "nested dot-dot",
            "contains a `..` component",
            build(&|b| {
                raw(b, b"a/", Directory, b"", b"", &[]);
                raw(b, b"a/../../escape", Regular, b"", b"x", &[]);
            }),
        ),
        (
            "through an absolute symlink",
            "would be written through the symlink link",
            build(&|b| {
                raw(b, b"link", Symlink, &outside, b"", &[]);
                raw(b, b"link/escape", Regular, b"", b"x", &[]);
            }),
        ),
        (
            "through a relative symlink",
            "would be written through the symlink up",
            build(&|b| {
                raw(b, b"up", Symlink, b"../outside", b"", &[]);
                raw(b, b"up/escape", Regular, b"", b"x", &[]);
            }),
        ),
        (
            "hard link to an absolute path",
            "which is not an earlier file of the image",
            build(&|b| raw(b, b"escape-hl", Link, &secret, b"", &[])),
        ),
        (
            "hard link with dot-dot",
            "which is not an earlier file of the image",
            build(&|b| raw(b, b"escape-hl", Link, b"../outside/secret", b"", &[])),
        ),
        (
            "PAX path override",
            "../escape: contains a `..` component",
            build(&|b| {
                raw(
                    b,
                    b"innocent",
                    Regular,
                    b"",
                    b"x",
                    &[("path", b"../escape")],
                );
            }),
        ),
        (
            "PAX linkpath override",
            "hard link to ../outside/secret",
            build(&|b| {
                raw(b, b"innocent", Regular, b"", b"x", &[]);
                raw(
                    b,
                    b"escape-hl",
                    Link,
                    b"innocent",
                    b"",
                    &[("linkpath", b"../outside/secret")],
                );
            }),
        ),
        (
            "a file replacing a symlink",
            "dup: appears twice",
            build(&|b| {
                raw(b, b"dup", Symlink, &secret, b"", &[]);
                raw(b, b"dup", Regular, b"", b"escape", &[]);
            }),
        ),
    ]
}

#[test]
fn hostile_archives_made_with_from_tar_are_refused() {
    let sandbox = Sandbox::new();
    for (i, (case, says, tar)) in cases(&sandbox).into_iter().enumerate() {
        let tar_path = sandbox.work.path().join(format!("hostile-{i}.tar"));
        fs::write(&tar_path, tar).unwrap();
        // The builder refuses them unless told that this is a test image.
        let refused = image_builder::image::build(&image_builder::image::ImageRequest::fixture(
            Source::Tar(tar_path.clone()),
            "testprod",
            &format!("{i}"),
            &sandbox.key.1,
            &sandbox.work.path().join("refused"),
        ));
        assert!(
            matches!(refused, Err(image_builder::BuildError::UnsafePath(_))),
            "{case}: image-builder did not refuse it as unsafe: {:?}",
            refused.as_ref().err()
        );
        let image = build(
            Source::Tar(tar_path),
            &sandbox.key.1,
            &sandbox.work.path().join("images"),
            &format!("{i}"),
            true,
        );
        let out = sandbox.apply(&image.manifest_path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(7),
            "{case}: not refused as contents:\n{stderr}"
        );
        assert!(
            stderr.contains("error: contents:") && stderr.contains(says),
            "{case}: {stderr}"
        );
        sandbox.assert_untouched(case);
    }
}

/// The same tars as payloads exactly as written (the builder rewrites PAX
/// records into plain headers), signed with the trusted key.
#[test]
fn hostile_payloads_signed_by_a_trusted_key_are_refused() {
    let sandbox = Sandbox::new();
    let sk = image_builder::keygen::load_secret_key(&sandbox.key.1).unwrap();
    for (i, (case, says, tar)) in cases(&sandbox).into_iter().enumerate() {
        let dir = sandbox.work.path().join(format!("raw-{i}"));
        fs::create_dir(&dir).unwrap();
        let payload = zstd::encode_all(&tar[..], 3).unwrap();
        // Format 1 (no entry index): the tar itself is checked.
        let manifest = Manifest {
            format: 1,
            index_size: 0,
            product: "testprod".into(),
            version: "1".into(),
            payload: "testprod-1.tar.zst".into(),
            payload_size: payload.len() as u64,
            payload_blake3: *blake3::hash(&payload).as_bytes(),
            unpacked_size: 1,
            entries: 3,
            created: 0,
        };
        fs::write(dir.join(&manifest.payload), &payload).unwrap();
        let path = dir.join("testprod-1.manifest");
        fs::write(&path, manifest.render()).unwrap();
        let sig = minisign::sign(None, &sk, manifest.render().as_bytes(), None, None).unwrap();
        fs::write(recovery::source::signature_path(&path), sig.to_string()).unwrap();

        let out = sandbox.apply(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(7),
            "{case}: not refused as contents:\n{stderr}"
        );
        assert!(
            stderr.contains(says),
            "{case}: does not say {says:?}: {stderr}"
        );
        sandbox.assert_untouched(case);
    }
}

/// The extractor refuses them on its own too, without the scan before it.
#[test]
fn the_extractor_alone_refuses_them() {
    let sandbox = Sandbox::new();
    for (case, says, tar) in cases(&sandbox) {
        let progress = recovery::progress::Progress::new("test", 0);
        let result = recovery::extract::extract(&tar[..], &sandbox.into, "test", &progress, None);
        let err = result.expect_err(case).to_string();
        assert!(err.contains(says), "{case}: does not say {says:?}: {err}");
        // Entries before the hostile one may have been written (the scan
        // is what prevents that); nothing may be outside.
        for p in ["innocent", "a", "link", "up", "dup"] {
            let _ = fs::remove_file(sandbox.into.join(p));
            let _ = fs::remove_dir(sandbox.into.join(p));
        }
        sandbox.assert_untouched(case);
    }
}
