//! `--from-tar -` reads the tar from a pipe, as in `docker export c |
//! image-builder image --from-tar - …`: plain, gzip, xz, bzip2 or zstd, told
//! apart by their magic bytes, and the image is the one the directory gives.
//! Anything else is refused with the supported compressions named.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_image-builder");
const EPOCH: &str = "1700000000";

fn require_tool(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{tool}` is missing: install it with `apt-get install {package}` (scripts/setup does)"
    );
}

/// A tree with every kind a plain user can make, at fixed times.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("etc/deep/er")).unwrap();
    fs::write(root.join("etc/hostname"), "box\n").unwrap();
    fs::write(root.join("etc/deep/er/big"), vec![7u8; 3_000_000]).unwrap();
    fs::hard_link(root.join("etc/hostname"), root.join("etc/hostname.link")).unwrap();
    symlink("hostname", root.join("etc/name")).unwrap();
    symlink("n".repeat(300), root.join("etc/long-target")).unwrap();
    fs::write(root.join("etc").join("x".repeat(200)), "long name").unwrap();
    let status = Command::new("find")
        .arg(root)
        .args(["-exec", "touch", "-h", "-d", "@1600000000", "{}", "+"])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Runs `sh -c SCRIPT` (bash, with pipefail) with `$BIN` set.
fn sh(script: &str, dir: &Path) -> Output {
    Command::new("bash")
        .args(["-c", &format!("set -o pipefail; {script}")])
        .env("BIN", BIN)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

const IMAGE: &str = "--product p --version 1 --key k.key --quiet";

#[test]
fn every_compression_from_a_pipe_gives_the_image_of_the_directory() {
    for (tool, package) in [
        ("tar", "tar"),
        ("gzip", "gzip"),
        ("xz", "xz-utils"),
        ("bzip2", "bzip2"),
        ("zstd", "zstd"),
    ] {
        require_tool(tool, package);
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    make_tree(&dir.join("tree"));
    let out = sh(
        &format!("\"$BIN\" keygen --out k && \"$BIN\" image --rootfs tree {IMAGE} --out from-dir"),
        dir,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = fs::read(dir.join("from-dir/p-1.tar.zst")).unwrap();
    for (name, compress) in [
        ("plain", "cat"),
        ("gzip", "gzip -c"),
        ("xz", "xz -c"),
        ("bzip2", "bzip2 -c"),
        ("zstd", "zstd -c -q"),
    ] {
        let out = sh(
            &format!(
                "tar -C tree --numeric-owner --xattrs --xattrs-include='*' -cf - . \
                 | {compress} | \"$BIN\" image --from-tar - {IMAGE} --out {name}"
            ),
            dir,
        );
        assert!(
            out.status.success(),
            "{name} from a pipe: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = fs::read(dir.join(format!("{name}/p-1.tar.zst"))).unwrap();
        assert!(
            got == want,
            "{name} from a pipe: the payload differs from the directory's"
        );
        let manifests = [
            dir.join("from-dir/p-1.manifest"),
            dir.join(format!("{name}/p-1.manifest")),
        ];
        assert_eq!(
            fs::read(&manifests[0]).unwrap(),
            fs::read(&manifests[1]).unwrap(),
            "{name}: the manifest differs"
        );
    }
}

/// The message names the supported compressions and shows none of the
/// input's bytes.
fn refused(input: &[u8], dir: &Path) -> String {
    fs::write(dir.join("input"), input).unwrap();
    let out = sh(
        &format!("\"$BIN\" image --from-tar - {IMAGE} --out out < input"),
        dir,
    );
    assert_eq!(out.status.code(), Some(1), "the input was accepted");
    let stderr = String::from_utf8(out.stderr).expect("the message is not UTF-8");
    assert!(
        stderr
            .chars()
            .all(|c| c == '\n' || (' '..='~').contains(&c)),
        "the message holds raw bytes: {stderr:?}"
    );
    assert!(
        stderr.contains("a tar, plain or compressed with gzip, xz, bzip2 or zstd"),
        "{stderr}"
    );
    assert!(stderr.contains("standard input"), "{stderr}");
    assert!(!dir.join("out/p-1.manifest").exists());
    stderr
}

#[test]
fn an_input_that_is_no_tar_is_refused_naming_the_supported_compressions() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    assert!(sh("\"$BIN\" keygen --out k", dir).status.success());
    let mut junk: Vec<u8> = (0..2048u32).map(|i| (i * 7 + 3) as u8).collect();
    junk[0] = 0xc3;
    refused(&junk, dir);
    let lz4 = refused(&[0x04, 0x22, 0x4d, 0x18, 0x64, 0x40, 0xa7, 0xff], dir);
    assert!(lz4.contains("compressed with lz4"), "{lz4}");
    refused(b"", dir);
    // gzip of something that is not a tar.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &[0xffu8; 4096]).unwrap();
    let gz = refused(&gz.finish().unwrap(), dir);
    assert!(gz.contains("compressed with gzip, but"), "{gz}");
}

/// A tar cut short in a pipe is refused, the cause said once.
#[test]
fn a_truncated_tar_is_refused_with_its_cause_said_once() {
    require_tool("tar", "tar");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    make_tree(&dir.join("tree"));
    let out = sh(
        &format!(
            "\"$BIN\" keygen --out k && tar -C tree -cf - . | head -c 20000 \
             | \"$BIN\" image --from-tar - {IMAGE} --out out"
        ),
        dir,
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("standard input: cannot read the tar: unexpected EOF"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("unexpected EOF").count(),
        1,
        "said twice: {stderr}"
    );
    assert!(!dir.join("out/p-1.tar.zst").exists());
}
