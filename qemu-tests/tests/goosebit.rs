//! A bundle is what a fleet server takes: gooseBit (the real server, from
//! PyPI, on 127.0.0.1) accepts `image-builder bundle`'s output on upload and
//! reads its version and hardware compatibility from the `sw-description`.

use image_builder::bundle::{self, BundleRequest};
use qemu_tests::goosebit::Server;
use qemu_tests::scenario::{sample_rootfs, Device, PRODUCT};
use std::process::Command;

#[test]
fn goosebit_accepts_a_bundle_on_upload() {
    let device = Device::new("1.0");
    let v2 = sample_rootfs(device.dir.path(), "2.0");
    let (_, key) = image_builder::keygen::keygen(&device.dir.path().join("k")).unwrap();
    let img = device.stage_with(PRODUCT, "2.0", &v2, &key, false);
    let b = bundle::build(&BundleRequest {
        manifest: img.manifest_path.clone(),
        out_dir: device.storage.join("updates"),
        hardware: vec!["1.0".into(), "1.1".into()],
    })
    .unwrap();

    let server = Server::start();
    // Not a bundle: refused, so the upload below is judged, not waved through.
    let refused = server.upload(&img.manifest_path);
    assert_eq!(refused.status, 422, "{}", refused.body);

    let uploaded = server.upload(&b.path);
    assert_eq!(uploaded.status, 200, "{}\n{}", uploaded.body, server.log());
    let id = uploaded.json()["id"].clone();
    let list = server.request("GET", "/api/v1/software", &[]).json();
    let software = &list["software"][0];
    assert_eq!(software["id"], id, "{list}");
    assert_eq!(software["version"], "2.0", "{list}");
    assert_eq!(software["name"], "demo-2.0.swu", "{list}");
    assert_eq!(software["size"], b.size, "{list}");
    let sha1 = Command::new("sha1sum").arg(&b.path).output().unwrap();
    let sha1 = String::from_utf8_lossy(&sha1.stdout);
    assert_eq!(
        software["hash"].as_str(),
        sha1.split_whitespace().next(),
        "{list}"
    );
    let compatibility: Vec<(String, String)> = software["compatibility"]
        .as_array()
        .expect("a compatibility list")
        .iter()
        .map(|c| {
            (
                c["model"].as_str().unwrap().to_string(),
                c["revision"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        compatibility,
        [
            ("demo".to_string(), "1.0".to_string()),
            ("demo".to_string(), "1.1".to_string())
        ]
    );
    // The same version and hardware again: gooseBit knows it already.
    let again = server.upload(&b.path);
    assert_eq!(again.status, 409, "{}", again.body);
}
