//! `scripts/release`, the one command that builds what a vendor ships:
//! the static binaries and the recovery initramfs for a kernel's modules,
//! by the same static recipe the harness boots.

use qemu_tests::artifacts;
use std::path::Path;
use std::process::Command;

fn sh(script: &str, dir: &Path) -> String {
    let out = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn release_builds_what_a_vendor_ships() {
    for (tool, package) in [("cpio", "cpio"), ("zstd", "zstd"), ("file", "file")] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .status()
            .is_ok_and(|s| s.success());
        assert!(found, "`{tool}` is missing: apt-get install {package}");
    }
    let work = tempfile::tempdir().unwrap();
    let modules = work.path().join("modules");
    std::fs::create_dir(&modules).unwrap();
    std::fs::copy(
        artifacts::efivarfs_module().unwrap(),
        modules.join("efivarfs.ko"),
    )
    .unwrap();
    let (key, _) = image_builder::keygen::keygen(&work.path().join("vendor")).unwrap();
    let out = work.path().join("dist");
    let release = || {
        Command::new(artifacts::workspace().join("scripts/release"))
            .arg("--out")
            .arg(&out)
            .arg("--trusted-key")
            .arg(&key)
            .args(["--product", "acme-gw", "--kernel-modules"])
            .arg(&modules)
            .output()
            .unwrap()
    };
    let run = release();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "scripts/release failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // It says what it wrote, and wrote it.
    for name in [
        "recovery",
        "bootloader-glue",
        "image-builder",
        "recovery.initramfs",
        "SHA256SUMS",
    ] {
        assert!(stdout.contains(name), "{name} not named:\n{stdout}");
        assert!(out.join(name).is_file(), "{name} not written");
    }
    sh("sha256sum --quiet -c SHA256SUMS", &out);
    for bin in ["recovery", "bootloader-glue", "image-builder"] {
        let file = sh(&format!("file {bin}"), &out);
        assert!(
            file.contains("statically linked") || file.contains("static-pie linked"),
            "{file}"
        );
    }
    // The same recipe as the harness's: the same bytes.
    assert_eq!(
        std::fs::read(out.join("recovery")).unwrap(),
        std::fs::read(artifacts::static_recovery().unwrap()).unwrap(),
        "the release's recovery differs from the harness's static build"
    );
    let listing = sh("zstd -dc recovery.initramfs | cpio -it --quiet", &out);
    for entry in [
        "init",
        "lib/modules/efivarfs.ko",
        "etc/recovery.conf",
        "sbin/mke2fs",
    ] {
        assert!(
            listing.lines().any(|l| l == entry),
            "{entry} not in the initramfs:\n{listing}"
        );
    }
    assert!(
        listing.lines().any(|l| l.starts_with("etc/recovery/keys/")),
        "no key in the initramfs:\n{listing}"
    );
    // A whole module tree is refused with what to do instead.
    std::fs::write(modules.join("modules.dep"), "").unwrap();
    let refused = release();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("a whole module tree"));
}
