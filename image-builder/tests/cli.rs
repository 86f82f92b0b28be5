//! The command line as an operator meets it: `--help` and `--version`
//! everywhere, refused flags and values named, the man pages and shell
//! completions that `build.rs` writes, and no silent overwrite of an image.

use clap::CommandFactory;
use image_builder::cli::args::Cli;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_image-builder");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn subcommands() -> Vec<String> {
    Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect()
}

/// `<target-dir>/<profile>`, where the binary is.
fn profile_dir() -> PathBuf {
    Path::new(BIN).parent().unwrap().to_path_buf()
}

#[test]
fn every_command_answers_help_and_version() {
    let v = run(&["--version"]);
    assert!(v.status.success());
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        format!("image-builder {}", env!("CARGO_PKG_VERSION"))
    );
    let names = subcommands();
    assert_eq!(
        names,
        ["keygen", "image", "bundle", "info", "initramfs", "disk"]
    );
    for name in &names {
        let h = run(&[name, "--help"]);
        assert!(h.status.success(), "{name} --help: {}", stderr(&h));
        let text = String::from_utf8_lossy(&h.stdout);
        assert!(
            text.contains(&format!("Usage: image-builder {name}")),
            "{name} --help:\n{text}"
        );
    }
}

#[test]
fn flags_a_command_does_not_take_are_refused() {
    let o = run(&["keygen", "--out", "/nonexistent/k", "--json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("'--json'"), "{}", stderr(&o));
}

#[test]
fn a_bad_value_names_its_option() {
    let o = run(&[
        "image",
        "--rootfs",
        "/x",
        "--product",
        "p",
        "--version",
        "1",
        "--key",
        "k",
        "--out",
        "/o",
        "--threads",
        "abc",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--threads"), "{}", stderr(&o));
    let o = run(&["disk", "--out", "/nonexistent/d.img", "--part", "bad"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--part bad"), "{}", stderr(&o));
    assert!(stderr(&o).contains("image-builder disk"), "{}", stderr(&o));
}

#[test]
fn man_pages_and_completions_are_built() {
    let share = profile_dir().join("share");
    let page = |name: &str| {
        let path = share.join("man/man1").join(format!("{name}.1"));
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (build.rs writes it)", path.display()))
    };
    let main_page = page("image-builder");
    for shell_file in ["image-builder.bash", "_image-builder", "image-builder.fish"] {
        let path = share.join("completions").join(shell_file);
        assert!(path.is_file(), "{} is missing", path.display());
    }
    let bash = std::fs::read_to_string(share.join("completions/image-builder.bash")).unwrap();
    for name in subcommands() {
        assert!(main_page.contains(&name), "image-builder.1 lacks {name}");
        assert!(
            page(&format!("image-builder-{name}")).contains(&format!("image\\-builder\\-{name}")),
            "image-builder-{name}.1 does not name its command"
        );
        assert!(bash.contains(&name), "the bash completion lacks {name}");
    }
    assert!(bash.contains("--trusted-key") && bash.contains("--sysroot"));
}

#[test]
fn an_existing_version_is_not_overwritten_without_force() {
    let work = tempfile::tempdir().unwrap();
    let w = |p: &str| work.path().join(p).display().to_string();
    std::fs::create_dir_all(work.path().join("root/etc")).unwrap();
    std::fs::write(work.path().join("root/etc/x"), "x").unwrap();
    assert!(run(&["keygen", "--out", &w("k")]).status.success());
    let image = |extra: &[&str]| {
        let mut args = vec![
            "image",
            "--rootfs",
            &w("root"),
            "--product",
            "p",
            "--version",
            "1",
            "--key",
            &w("k.key"),
            "--out",
            &w("out"),
            "--quiet",
            "--level",
            "1",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        args.extend(extra.iter().map(|s| s.to_string()));
        Command::new(BIN).args(&args).output().unwrap()
    };
    assert!(image(&[]).status.success());
    let manifest = std::fs::read(work.path().join("out/p-1.manifest")).unwrap();
    std::fs::write(work.path().join("root/etc/x"), "changed").unwrap();
    let again = image(&[]);
    assert_eq!(again.status.code(), Some(1));
    let err = stderr(&again);
    assert!(
        err.contains(&w("out/p-1.manifest")) && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(work.path().join("out/p-1.manifest")).unwrap(),
        manifest,
        "the refused build changed the image"
    );
    assert!(image(&["--force"]).status.success());
    assert_ne!(
        std::fs::read(work.path().join("out/p-1.manifest")).unwrap(),
        manifest
    );
}

include!("../../build-support/doc_reference.rs");
include!("../../build-support/clap_options.rs");

#[test]
fn the_reference_in_operations_md_lists_every_option() {
    let doc = operations_doc();
    for sub in Cli::command().get_subcommands() {
        let name = sub.get_name();
        let options = clap_options(sub);
        assert_documented(&doc, name, &options);
        // Positional arguments are named in the row as they are in --help.
        for arg in sub.get_arguments().filter(|a| a.get_long().is_none()) {
            if let Some(names) = arg.get_value_names() {
                let shown = format!("`{}`", names[0]);
                assert!(
                    doc.contains(&format!("| `{name}` | {shown}")),
                    "the {name} row lacks {shown}"
                );
            }
        }
    }
}
