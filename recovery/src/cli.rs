//! The host modes, for pipelines that test an image and for benchmarks:
//! `recovery verify` checks an image; `recovery apply` checks it and writes
//! it into a directory, with one `syncfs` at the end.

use crate::error::UpdateError;
use crate::install;
use crate::keys;
use crate::verify::{self, VerifiedImage};
use lexopt::prelude::*;
use std::path::{Path, PathBuf};

const USAGE: &str = "\
usage:
  recovery verify --manifest M --trusted-key K.pub [--trusted-key K2.pub ...]
  recovery apply  --manifest M --trusted-key K.pub [...] --into DIR [--quiet]
exit codes: 0 done, 2 command line, 3 keys, 4 signature, 5 manifest,
            6 payload size or hash, 7 an entry of the payload, 8 writing
";

struct Args {
    command: String,
    manifest: PathBuf,
    keys: Vec<PathBuf>,
    into: Option<PathBuf>,
    quiet: bool,
}

fn parse_args() -> Result<Args, lexopt::Error> {
    let mut parser = lexopt::Parser::from_env();
    let command = match parser.next()? {
        Some(Value(v)) => v.string()?,
        Some(other) => return Err(other.unexpected()),
        None => return Err("missing command".into()),
    };
    let (mut manifest, mut keys, mut into, mut quiet) = (None, Vec::new(), None, false);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("manifest") => manifest = Some(PathBuf::from(parser.value()?)),
            Long("trusted-key") => keys.push(PathBuf::from(parser.value()?)),
            Long("into") if command == "apply" => into = Some(PathBuf::from(parser.value()?)),
            Long("quiet") => quiet = true,
            other => return Err(other.unexpected()),
        }
    }
    if command != "verify" && command != "apply" {
        return Err(format!("unknown command {command:?}").into());
    }
    let manifest = manifest.ok_or("missing --manifest M")?;
    if command == "apply" && into.is_none() {
        return Err("apply needs --into DIR".into());
    }
    Ok(Args {
        command,
        manifest,
        keys,
        into,
        quiet,
    })
}

/// Runs a host command and returns its exit code.
pub fn main() -> i32 {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("recovery: {e}\n{USAGE}");
            return 2;
        }
    };
    crate::logger::init(args.quiet);
    let result = keys::load(&args.keys).and_then(|keys| {
        let image = verify::verify(&args.manifest, &keys)?;
        match &args.into {
            Some(dir) => apply(&image, dir),
            None => Ok(()),
        }
    });
    match result {
        Ok(()) => {
            log::info!("{}: done", args.command);
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
