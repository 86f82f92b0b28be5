//! A tree with every entry type and every piece of metadata a root file
//! system needs → image → `recovery apply` → the same tree.

mod common;

use common::*;
use image_builder::image::Source;
use nix::sys::stat::{makedev, mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

fn set(path: &Path, mode: u32, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
    if !fs::symlink_metadata(path).unwrap().file_type().is_symlink() {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }
}

fn mtime(path: &Path, secs: i64) {
    let t = TimeSpec::new(secs, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

/// An ACL granting user 1000 read access, in the kernel's xattr format.
fn acl() -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 6u16, u32::MAX),
        (0x02, 4, 1000),
        (0x04, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 4, u32::MAX),
    ] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

fn make_fixture(root: &Path) {
    use std::os::unix::ffi::OsStrExt;
    for dir in [
        "bin",
        "etc",
        "dev",
        "run",
        "tmp",
        "var/mail",
        "usr/share/deep",
    ] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    fs::write(root.join("etc/shadow"), "root:*:19000::::::\n").unwrap();
    set(&root.join("etc/shadow"), 0o640, 0, 42);
    fs::write(root.join("bin/su"), vec![0x7f; 5000]).unwrap();
    set(&root.join("bin/su"), 0o4755, 0, 0);
    fs::write(root.join("bin/wall"), b"wall").unwrap();
    set(&root.join("bin/wall"), 0o2755, 0, 5);
    fs::write(root.join("bin/ping"), b"ping").unwrap();
    // cap_net_raw+ep, version 2 capability xattr.
    let mut cap = 0x0200_0001u32.to_le_bytes().to_vec();
    cap.extend_from_slice(&(1u32 << 13).to_le_bytes());
    cap.extend_from_slice(&0u32.to_le_bytes());
    cap.extend_from_slice(&[0; 8]);
    xattr::set(root.join("bin/ping"), "security.capability", &cap).unwrap();
    xattr::set(
        root.join("bin/ping"),
        "security.selinux",
        b"system_u:object_r:ping_exec_t:s0\0",
    )
    .unwrap();
    fs::write(root.join("etc/acl-file"), b"acl").unwrap();
    xattr::set(root.join("etc/acl-file"), "system.posix_acl_access", &acl()).unwrap();
    xattr::set(
        root.join("var/mail"),
        "user.comment",
        b"a directory's xattr",
    )
    .unwrap();
    set(&root.join("var/mail"), 0o2775, 0, 8);
    set(&root.join("tmp"), 0o1777, 0, 0);
    symlink("su", root.join("bin/sh")).unwrap();
    symlink("/usr/share/zoneinfo/UTC", root.join("etc/localtime")).unwrap();
    xattr::set(
        root.join("bin/sh"),
        "security.selinux",
        b"system_u:object_r:bin_t:s0\0",
    )
    .unwrap();
    fs::write(root.join("bin/a"), b"linked").unwrap();
    fs::hard_link(root.join("bin/a"), root.join("bin/b")).unwrap();
    fs::hard_link(root.join("bin/a"), root.join("etc/c")).unwrap();
    mknod(
        &root.join("dev/null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )
    .unwrap();
    mknod(
        &root.join("dev/sda"),
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o660),
        makedev(8, 0),
    )
    .unwrap();
    set(&root.join("dev/sda"), 0o660, 0, 6);
    nix::unistd::mkfifo(&root.join("run/initctl"), Mode::from_bits_truncate(0o600)).unwrap();
    fs::write(root.join("etc/empty"), b"").unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 / 13) as u8).collect();
    fs::write(root.join("usr/share/big"), big).unwrap();
    // Names longer than a ustar header holds, a long symlink target, and
    // a name that is not UTF-8.
    let long = "n".repeat(150);
    fs::write(root.join("usr/share/deep").join(&long), b"long").unwrap();
    symlink(
        format!("/usr/share/deep/{long}"),
        root.join("usr/share/long-link"),
    )
    .unwrap();
    fs::write(
        root.join("etc")
            .join(std::ffi::OsStr::from_bytes(b"caf\xe9")),
        b"latin1",
    )
    .unwrap();
    fs::write(root.join("home-owned"), b"user file").unwrap();
    set(&root.join("home-owned"), 0o600, 1000, 1000);
    // Fixed times on everything, directories last.
    let snap = snapshot(root);
    for (i, rel) in snap.keys().rev().enumerate() {
        let p = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(std::ffi::OsStr::from_bytes(rel))
        };
        mtime(&p, 1_600_000_000 + i as i64 * 1000);
    }
}

#[test]
fn every_entry_type_and_metadata_survive_the_round_trip() {
    require_root("create device nodes, set owners and security xattrs");
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (fixture, into, out) = (
        work.path().join("fixture"),
        work.path().join("into"),
        work.path().join("out"),
    );
    fs::create_dir(&fixture).unwrap();
    fs::create_dir(&into).unwrap();
    make_fixture(&fixture);
    let (pk, sk) = keypair(work.path(), "k");
    let image = build(Source::Rootfs(fixture.clone()), &sk, &out, "1.0", false);

    apply_ok(&image.manifest_path, &pk, &into);
    let (want, got) = (snapshot(&fixture), snapshot(&into));
    for (path, node) in &want {
        assert_eq!(
            Some(node),
            got.get(path),
            "{} differs after the round trip",
            String::from_utf8_lossy(path)
        );
    }
    assert_eq!(want.len(), got.len(), "extra entries after the round trip");
    assert_eq!(
        want[&b"bin/ping".to_vec()].xattrs.len(),
        2,
        "the fixture lost its xattrs"
    );
}

#[test]
fn an_image_from_a_tar_round_trips_like_one_from_a_directory() {
    require_root("create device nodes and set owners");
    require_tool("tar", "tar");
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let fixture = work.path().join("fixture");
    fs::create_dir(&fixture).unwrap();
    make_fixture(&fixture);
    // As a build system or `docker export` would hand it over: GNU tar,
    // gzip, with xattrs.
    let tarball = work.path().join("rootfs.tar.gz");
    let status = std::process::Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-czf"])
        .arg(&tarball)
        .arg("-C")
        .arg(&fixture)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let (pk, sk) = keypair(work.path(), "k");
    let from_dir = build(
        Source::Rootfs(fixture.clone()),
        &sk,
        &work.path().join("a"),
        "1.0",
        false,
    );
    let from_tar = build(
        Source::Tar(tarball),
        &sk,
        &work.path().join("b"),
        "1.0",
        false,
    );
    assert_eq!(from_dir.manifest.entries, from_tar.manifest.entries);
    let into = work.path().join("into");
    fs::create_dir(&into).unwrap();
    apply_ok(&from_tar.manifest_path, &pk, &into);
    assert_eq!(snapshot(&fixture), snapshot(&into));
}
