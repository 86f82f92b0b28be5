//! Writes the man pages (one per command and subcommand) and the shell
//! completions (bash, zsh, fish) of `bootloader-glue` from its clap
//! definitions, into `<target-dir>/<profile>/share/man/man1/` and
//! `<target-dir>/<profile>/share/completions/` (see docs/operations.md).

// The definitions are read here only to describe them: their fields are
// never read in this program.
#![allow(dead_code)]

use clap::CommandFactory;
use clap_complete::Shell;
use std::path::Path;

include!("src/cli/args.rs");

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=src/cli/args.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is <target-dir>/<profile>/build/<package>-<hash>/out.
    let profile = out
        .ancestors()
        .nth(3)
        .expect("OUT_DIR has a <target-dir>/<profile> above it");
    let man = profile.join("share/man/man1");
    let completions = profile.join("share/completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let mut cli = Cli::command();
    cli.build();
    write_man(&man, &cli, "bootloader-glue")?;
    for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("bootloader-glue-{}", sub.get_name());
        write_man(&man, sub, &name)?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cli, "bootloader-glue", &completions)?;
    }
    Ok(())
}

fn write_man(dir: &Path, cmd: &clap::Command, name: &str) -> std::io::Result<()> {
    // clap takes a command's name as a static string (without its
    // `string` feature); a build script may leak a few.
    let cmd = cmd
        .clone()
        .name(&*Box::leak(name.to_string().into_boxed_str()));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page)?;
    std::fs::write(dir.join(format!("{name}.1")), page)
}
