// The options of a clap command as docs/operations.md names them, for the
// CLI tests of image-builder and bootloader-glue (with doc_reference.rs).

/// The long options of a clap command, without the generated `--help`
/// and `--version` flags.
fn clap_options(cmd: &clap::Command) -> Vec<String> {
    cmd.get_arguments()
        .filter(|a| {
            !matches!(
                a.get_action(),
                clap::ArgAction::Help
                    | clap::ArgAction::HelpShort
                    | clap::ArgAction::HelpLong
                    | clap::ArgAction::Version
            )
        })
        .filter_map(|a| a.get_long())
        .map(|long| format!("--{long}"))
        .collect()
}

