//! The recovery is one static executable, fit to be PID 1 of an initramfs
//! that holds nothing else it could link against.

use std::process::Command;

#[test]
fn recovery_is_a_static_executable() {
    let bin = qemu_tests::artifacts::static_recovery().unwrap();
    let file = Command::new("file")
        .arg(&bin)
        .output()
        .expect("`file` is missing: apt-get install file");
    let file = String::from_utf8_lossy(&file.stdout);
    assert!(
        file.contains("statically linked") || file.contains("static-pie linked"),
        "file says: {file}"
    );
    let ldd = Command::new("ldd").arg(&bin).output().expect("run ldd");
    let ldd = format!(
        "{}{}",
        String::from_utf8_lossy(&ldd.stdout),
        String::from_utf8_lossy(&ldd.stderr)
    );
    assert!(
        ldd.contains("not a dynamic executable") || ldd.contains("statically linked"),
        "ldd says: {ldd}"
    );
    // It runs on its own: the usage message and exit code 2.
    let out = Command::new(&bin).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    // The size limit of issue 8: 1.5 MiB, for a recovery partition and an
    // initramfs that stay small.
    let size = std::fs::metadata(&bin).unwrap().len();
    println!("static recovery: {size} bytes at {}", bin.display());
    assert!(
        size <= 1536 * 1024,
        "the static recovery is {size} bytes, over the 1.5 MiB limit"
    );
}
