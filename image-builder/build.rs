//! Writes the man pages and shell completions from the command line's
//! definition (`src/cli/args.rs`) into `<target-dir>/<profile>/share/`
//! (`build-support/cli_docs.rs`, shared with bootloader-glue).

use clap::CommandFactory;

#[allow(dead_code)]
mod args {
    include!("src/cli/args.rs");
}

include!("../build-support/cli_docs.rs");

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=src/cli/args.rs");
    println!("cargo:rerun-if-changed=../build-support/cli_docs.rs");
    write_cli_docs(args::Cli::command(), "image-builder")
}
