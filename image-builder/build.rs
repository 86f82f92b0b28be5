//! Writes the man pages and shell completions from the command line's
//! definition (`src/cli/args.rs`) into `<target-dir>/<profile>/share/`:
//! `man/man1/image-builder*.1` (one page per command and subcommand) and
//! `completions/` (bash, zsh, fish).

use clap::CommandFactory;
use clap_complete::Shell;
use std::path::PathBuf;

#[allow(dead_code)]
mod args {
    include!("src/cli/args.rs");
}

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=src/cli/args.rs");
    println!("cargo:rerun-if-changed=build.rs");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is <target-dir>/<profile>/build/<crate>-<hash>/out.
    let profile_dir = out_dir
        .ancestors()
        .nth(3)
        .expect("OUT_DIR is 3 levels below the profile directory");
    let share = profile_dir.join("share");
    let man = share.join("man/man1");
    let completions = share.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let mut cmd = args::Cli::command();
    clap_mangen::generate_to(cmd.clone(), &man)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "image-builder", &completions)?;
    }
    Ok(())
}
