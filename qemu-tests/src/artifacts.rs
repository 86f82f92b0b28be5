//! Builds what a guest boots. The static `recovery` is built for musl; where
//! the musl target or its C compiler is missing, for glibc with
//! `crt-static` (the brief's fallback that downloads nothing).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("qemu-tests lives in the workspace")
        .to_path_buf()
}

fn musl_available() -> bool {
    let target = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("x86_64-unknown-linux-musl"))
        .unwrap_or(false);
    let cc = Command::new("x86_64-linux-musl-gcc")
        .arg("--version")
        .output()
        .is_ok();
    target && cc
}

/// Builds the release `recovery` as one static executable and returns its
/// path. Its own target directory keeps it apart from the debug build.
pub fn static_recovery() -> Result<PathBuf, String> {
    let target_dir = workspace().join("target/static");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let (target, rustflags) = if musl_available() {
        ("x86_64-unknown-linux-musl", "")
    } else {
        ("x86_64-unknown-linux-gnu", "-C target-feature=+crt-static")
    };
    let status = Command::new(cargo)
        .current_dir(workspace())
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "recovery",
            "--target",
            target,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", rustflags)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the static recovery for {target} failed: run scripts/setup \
             (it installs musl-tools and the musl target)"
        ));
    }
    Ok(target_dir.join(target).join("release/recovery"))
}
