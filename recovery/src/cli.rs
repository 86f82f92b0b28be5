//! The host modes, for pipelines that test an image and for benchmarks:
//! `recovery verify` checks an image; `recovery apply` checks it and writes
//! it into a directory, with one `syncfs` at the end. Lean on purpose (the
//! same binary is PID 1): `lexopt`, no CLI framework.

use crate::error::UpdateError;
use crate::install;
use crate::keys;
use crate::verify::{self, VerifiedImage};
use lexopt::prelude::*;
use std::path::{Path, PathBuf};

const VERSION: &str = concat!("recovery ", env!("CARGO_PKG_VERSION"));

const EXIT_CODES: &str = "\
exit codes:
  0  done (for --help and --version too)
  1  another failure (apply: not run as root)
  2  the command line is wrong
  3  the trusted keys     4  the signature       5  the manifest
  6  the payload's size or hash                  7  an entry of the payload
  8  writing into the directory or syncing it
";

const USAGE: &str = "\
usage:
  recovery verify --manifest M --trusted-key K.pub [--trusted-key K2.pub ...] [--json] [--quiet]
  recovery apply  --manifest M --trusted-key K.pub [...] --into DIR [--quiet]
  recovery --version
  recovery [COMMAND] --help
As PID 1 of the recovery initramfs it takes no arguments and runs one update.
";

const VERIFY_HELP: &str = "\
usage: recovery verify --manifest M --trusted-key K.pub [--trusted-key K2.pub ...] [--json] [--quiet]
Checks everything the recovery checks before it erases anything: the
manifest's signature by one of the trusted keys, the manifest, the
payload's size and BLAKE3, and every entry of the payload; for a format-2
image also what the recovery checks while it extracts: the payload
decoded and every tar header compared with the signed entry index.
Writes nothing.
  --manifest M         the image's manifest (the payload and M.minisig beside it),
                       or a bundle (P-V.swu) that holds all three
  --trusted-key K.pub  a minisign public key to trust; repeat for several
  --json               one JSON object on standard output: manifest, product,
                       version, payload, payload_size, payload_blake3,
                       unpacked_size, entries, created, key_id,
                       payload_present, verified, signed_by, and on failure
                       error: {stage, file, reason}
  --quiet              only warnings and errors on standard error
";

const APPLY_HELP: &str = "\
usage: recovery apply --manifest M --trusted-key K.pub [--trusted-key K2.pub ...] --into DIR [--quiet]
Verifies the image as `recovery verify` does, then writes it into DIR
(owners, modes, links, device nodes, xattrs) and syncs DIR's file system
once. Must run as root.
  --manifest M         the image's manifest (the payload and M.minisig beside it),
                       or a bundle (P-V.swu) that holds all three
  --trusted-key K.pub  a minisign public key to trust; repeat for several
  --into DIR           an existing directory, normally an empty file system
  --quiet              only warnings and errors on standard error
";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Command {
    Verify,
    Apply,
}

impl Command {
    fn name(self) -> &'static str {
        match self {
            Command::Verify => "verify",
            Command::Apply => "apply",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Command::Verify => VERIFY_HELP,
            Command::Apply => APPLY_HELP,
        }
    }
}

struct Args {
    command: Command,
    manifest: PathBuf,
    keys: Vec<PathBuf>,
    into: Option<PathBuf>,
    quiet: bool,
    json: bool,
}

/// What the command line asks for.
enum Parsed {
    Run(Args),
    /// Print this on standard output and exit 0.
    Print(String),
}

/// A command line that is wrong: the message, and the help to point at.
struct Usage {
    message: String,
    command: Option<Command>,
}

impl From<lexopt::Error> for Usage {
    fn from(e: lexopt::Error) -> Usage {
        Usage {
            message: e.to_string(),
            command: None,
        }
    }
}

fn parse_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Parsed, Usage> {
    let mut parser = lexopt::Parser::from_args(args);
    let command = match parser.next()? {
        Some(Long("version") | Short('V')) => return Ok(Parsed::Print(format!("{VERSION}\n"))),
        Some(Long("help") | Short('h')) => {
            return Ok(Parsed::Print(format!("{VERSION}\n{USAGE}{EXIT_CODES}")))
        }
        Some(Value(v)) => match v.string()?.as_str() {
            "verify" => Command::Verify,
            "apply" => Command::Apply,
            other => {
                return Err(Usage {
                    message: format!("unknown command {other:?} (commands: verify, apply)"),
                    command: None,
                })
            }
        },
        Some(other) => return Err(other.unexpected().into()),
        None => {
            return Err(Usage {
                message: "missing command".into(),
                command: None,
            })
        }
    };
    let usage = |message: String| Usage {
        message,
        command: Some(command),
    };
    let (mut manifest, mut keys, mut into) = (None, Vec::new(), None);
    let (mut quiet, mut json) = (false, false);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("help") | Short('h') => {
                return Ok(Parsed::Print(format!("{}{EXIT_CODES}", command.help())))
            }
            Long("manifest") => manifest = Some(PathBuf::from(parser.value()?)),
            Long("trusted-key") => keys.push(PathBuf::from(parser.value()?)),
            Long("quiet") => quiet = true,
            Long("into") if command == Command::Apply => {
                into = Some(PathBuf::from(parser.value()?))
            }
            Long("json") if command == Command::Verify => json = true,
            Long(option) => {
                return Err(usage(format!(
                    "{} does not take --{option}",
                    command.name()
                )))
            }
            other => return Err(usage(other.unexpected().to_string())),
        }
    }
    let manifest = manifest.ok_or_else(|| usage("missing --manifest M".into()))?;
    if command == Command::Apply && into.is_none() {
        return Err(usage("apply needs --into DIR".into()));
    }
    Ok(Parsed::Run(Args {
        command,
        manifest,
        keys,
        into,
        quiet,
        json,
    }))
}

/// Runs a host command and returns its exit code.
pub fn main() -> i32 {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Print(text)) => {
            print!("{text}");
            return 0;
        }
        Err(e) => {
            let help = match e.command {
                Some(c) => format!("recovery {} --help", c.name()),
                None => "recovery --help".into(),
            };
            eprintln!("recovery: {}\n(see {help})", e.message);
            return 2;
        }
    };
    crate::logger::init(args.quiet || args.json);
    if args.command == Command::Apply && !nix::unistd::geteuid().is_root() {
        log::error!(
            "apply: run as root: writing a root file system sets owners, device nodes and \
             capabilities (nothing was checked or written)"
        );
        return 1;
    }
    let mut trusted = Vec::new();
    let result = keys::load(&args.keys).and_then(|keys| {
        trusted = keys;
        let image = match &args.into {
            Some(_) => verify::verify(&args.manifest, &trusted)?,
            None => verify::verify_full(&args.manifest, &trusted)?,
        };
        match &args.into {
            Some(dir) => apply(&image, dir),
            None => Ok(()),
        }
    });
    if args.json {
        println!(
            "{}",
            crate::info::describe(&args.manifest, &trusted, result.as_ref().map(|_| ())).to_json()
        );
    }
    match result {
        Ok(()) => {
            log::info!("{}: done", args.command.name());
            0
        }
        Err(e) => {
            log::error!("{e}");
            e.stage.exit_code()
        }
    }
}

/// Writes a verified image into `dir` and syncs its file system once.
pub fn apply(image: &VerifiedImage, dir: &Path) -> Result<(), UpdateError> {
    install::install(image, dir).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Stage;

    fn parse(args: &[&str]) -> Result<Parsed, Usage> {
        parse_args(args.iter().map(std::ffi::OsString::from))
    }

    #[test]
    fn options_a_command_does_not_take_are_refused_by_name() {
        for (args, says) in [
            (
                &["verify", "--manifest", "m", "--into", "d"][..],
                "verify does not take --into",
            ),
            (
                &["apply", "--manifest", "m", "--json"][..],
                "apply does not take --json",
            ),
            (&["verify", "--bogus"][..], "verify does not take --bogus"),
            (&["frobnicate"][..], "unknown command \"frobnicate\""),
            (&["apply", "--manifest", "m"][..], "apply needs --into DIR"),
        ] {
            match parse(args) {
                Err(e) => assert!(e.message.contains(says), "{args:?}: {}", e.message),
                Ok(_) => panic!("{args:?} was accepted"),
            }
        }
    }

    #[test]
    fn help_and_version() {
        let print = |args: &[&str]| match parse(args) {
            Ok(Parsed::Print(text)) => text,
            _ => panic!("{args:?} printed nothing"),
        };
        assert_eq!(print(&["--version"]), format!("{VERSION}\n"));
        assert!(print(&["--help"]).contains("recovery verify"));
        assert!(print(&["verify", "--help"]).contains("--json"));
        assert!(print(&["apply", "--manifest", "m", "--help"]).contains("--into DIR"));
        // The exit code table says what Stage::exit_code does.
        let table = print(&["--help"]);
        for (stage, says) in [
            (Stage::Keys, "the trusted keys"),
            (Stage::Signature, "the signature"),
            (Stage::Manifest, "the manifest"),
            (Stage::Payload, "the payload's size or hash"),
            (Stage::Contents, "an entry of the payload"),
            (Stage::Extract, "writing into the directory"),
            (Stage::Sync, "writing into the directory or syncing it"),
        ] {
            let line = format!("{}  {says}", stage.exit_code());
            assert!(table.contains(&line), "{line:?} not in\n{table}");
        }
    }
}
