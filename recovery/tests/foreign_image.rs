//! An image made with GNU tar, zstd, b3sum and minisign by the recipe in
//! docs/image-format.md applies: the format is documented well enough for
//! another tool to produce it. The recipe is read from the document itself.

mod common;

use common::*;
use std::fs;
use std::process::Command;

fn recipe() -> String {
    let doc = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/image-format.md"
    ))
    .expect("docs/image-format.md");
    let start = doc
        .find("<!-- recipe:begin -->")
        .expect("recipe:begin marker");
    let end = doc.find("<!-- recipe:end -->").expect("recipe:end marker");
    let block = &doc[start..end];
    let code = block.split("```sh\n").nth(1).expect("a ```sh block");
    code.split("```").next().unwrap().to_string()
}

#[test]
fn an_image_made_by_the_documented_recipe_applies() {
    for (tool, package) in [
        ("minisign", "minisign"),
        ("b3sum", "b3sum"),
        ("zstd", "zstd"),
        ("tar", "tar"),
    ] {
        require_tool(tool, package);
    }
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = work.path().join("root");
    fs::create_dir_all(root.join("etc/sub")).unwrap();
    fs::write(root.join("etc/version"), "3.1\n").unwrap();
    fs::write(root.join("etc/sub/data"), vec![9u8; 100_000]).unwrap();
    fs::hard_link(root.join("etc/version"), root.join("etc/version-link")).unwrap();
    std::os::unix::fs::symlink("version", root.join("etc/current")).unwrap();
    let (pk, sk) = keypair(work.path(), "k");
    let out = work.path().join("out");
    fs::create_dir(&out).unwrap();

    let status = Command::new("sh")
        .arg("-c")
        .arg(recipe())
        .env("ROOTFS", &root)
        .env("OUT", &out)
        .env("PRODUCT", "foreign")
        .env("VERSION", "3.1")
        .env("KEY", &sk)
        .status()
        .unwrap();
    assert!(status.success(), "the recipe failed");

    let into = work.path().join("into");
    fs::create_dir(&into).unwrap();
    let manifest = out.join("foreign-3.1.manifest");
    apply_ok(&manifest, &pk, &into);
    assert_eq!(snapshot(&root), snapshot(&into));
}
