// The command reference in docs/operations.md, checked against each
// program's real command line: every command's table row (`| `NAME` | … |`)
// must name exactly the options the program takes, no more and no fewer.
// Included (`include!`) by the CLI tests of recovery, image-builder and
// bootloader-glue, so the three check the one document the same way.

/// docs/operations.md, read from the workspace.
fn operations_doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operations.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The long options (`--name`) that the row of `command` names.
fn documented_options(doc: &str, command: &str) -> std::collections::BTreeSet<String> {
    let row = doc
        .lines()
        .find(|l| l.starts_with(&format!("| `{command}` |")))
        .unwrap_or_else(|| panic!("docs/operations.md has no row `| `{command}` | … |`"));
    row.split('`')
        .skip(3) // the command's own name
        .step_by(2) // inside backticks
        .filter_map(|code| code.split_whitespace().next())
        .filter(|word| word.starts_with("--"))
        .map(str::to_string)
        .collect()
}

/// Fails, naming both sides, unless the row of `command` names exactly
/// `options` (each `--name`, without the generated `--help`/`--version`).
fn assert_documented(doc: &str, command: &str, options: &[String]) {
    let actual: std::collections::BTreeSet<String> = options.iter().cloned().collect();
    let documented = documented_options(doc, command);
    let missing: Vec<_> = actual.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&actual).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/operations.md, row of {command}: not documented {missing:?}, \
         documented but not taken {stale:?}"
    );
}
