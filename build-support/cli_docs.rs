// The man pages and shell completions of a clap command line, written at
// build time. Shared by the build scripts of image-builder and
// bootloader-glue (each `include!`s this file), so that both write the
// same things to the same place (see docs/operations.md):
//
// - `<target-dir>/<profile>/share/man/man1/BIN.1` and `BIN-SUB.1`, one page
//   per command and subcommand;
// - `<target-dir>/<profile>/share/completions/` for bash, zsh and fish.

/// Writes the man pages and completions of `cmd`, the command line of `bin`.
fn write_cli_docs(mut cmd: clap::Command, bin: &str) -> std::io::Result<()> {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is <target-dir>/<profile>/build/<package>-<hash>/out.
    let profile = out
        .ancestors()
        .nth(3)
        .expect("OUT_DIR has a <target-dir>/<profile> above it");
    let man = profile.join("share/man/man1");
    let completions = profile.join("share/completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    clap_mangen::generate_to(cmd.clone(), &man)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd, bin, &completions)?;
    }
    Ok(())
}
