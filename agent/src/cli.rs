//! The command line: `reimage-agent download URL --into DIR`, for trying a
//! download by hand. Exit codes: 0 done, 1 the download failed, 2 bad
//! usage or setup.

use crate::download::{self, Request};
use crate::http::{Client, HttpConfig};
use crate::retry::Policy;
use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "reimage-agent",
    version,
    about = "The update agent: fetches images into storage, resumably and verified."
)]
pub struct Cli {
    /// Log only warnings and errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download one file into DIR: resumes a partial download, checks the
    /// size and BLAKE3 when given, retries with backoff.
    Download(DownloadArgs),
}

#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// http:// or https:// URL of the file.
    pub url: String,
    /// Directory to put the file in (on storage).
    #[arg(long, value_name = "DIR")]
    pub into: PathBuf,
    /// File name in DIR (default: the URL's last path segment).
    #[arg(long)]
    pub name: Option<String>,
    /// Expected size in bytes (from the signed manifest).
    #[arg(long)]
    pub size: Option<u64>,
    /// Expected BLAKE3, 64 lowercase hex digits (from the signed manifest).
    #[arg(long, value_name = "HEX")]
    pub blake3: Option<String>,
    /// Largest file accepted when --size is not given.
    #[arg(long, default_value_t = 16 << 30, value_name = "BYTES")]
    pub max_size: u64,
    #[command(flatten)]
    pub http: HttpArgs,
    /// Attempts in all.
    #[arg(long, default_value_t = Policy::default().attempts,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub attempts: u32,
    /// Wait after the first failed attempt, doubled after each further one.
    #[arg(long, default_value_t = Policy::default().first_wait.as_millis() as u64, value_name = "MS")]
    pub first_wait_ms: u64,
    /// Longest wait between attempts.
    #[arg(long, default_value_t = Policy::default().max_wait.as_millis() as u64, value_name = "MS")]
    pub max_wait_ms: u64,
}

#[derive(Debug, Args)]
pub struct HttpArgs {
    /// Trust the certificate authorities in this PEM file (repeatable).
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<PathBuf>,
    /// With --ca: trust only those, not Mozilla's roots as well.
    #[arg(long, requires = "ca")]
    pub ca_only: bool,
    /// Seconds to connect.
    #[arg(long, default_value_t = 15, value_name = "SECONDS")]
    pub connect_timeout: u64,
    /// Longest silence, in seconds, while waiting for data.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub read_timeout: u64,
}

impl HttpArgs {
    pub fn config(&self) -> HttpConfig {
        HttpConfig {
            connect_timeout: Duration::from_secs(self.connect_timeout),
            read_timeout: Duration::from_secs(self.read_timeout),
            ca_files: self.ca.clone(),
            webpki_roots: !self.ca_only,
            ..HttpConfig::default()
        }
    }
}

/// Parses the arguments, runs the command, returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    recovery::logger::init_as("reimage-agent", cli.quiet);
    match run(cli) {
        Ok(()) => 0,
        Err(Failure::Setup(e)) => {
            log::error!("{e:#}");
            2
        }
        Err(Failure::Download(e)) => {
            log::error!("{e}");
            1
        }
    }
}

enum Failure {
    Setup(anyhow::Error),
    Download(download::DownloadFailed),
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Download(args) => {
            let (client, request, policy) = prepare(&args).map_err(Failure::Setup)?;
            let done =
                download::with_retries(&client, &request, &policy, std::thread::sleep, &mut |_| {})
                    .map_err(Failure::Download)?;
            println!("{}", done.path.display());
            Ok(())
        }
    }
}

fn prepare(args: &DownloadArgs) -> anyhow::Result<(Client, Request, Policy)> {
    let blake3 = match &args.blake3 {
        Some(hex) => Some(
            formats::manifest::parse_hex32(hex)
                .with_context(|| format!("--blake3 {hex}: expected 64 lowercase hex digits"))?,
        ),
        None => None,
    };
    let name = match &args.name {
        Some(name) => name.clone(),
        None => {
            // The last segment of the path after `scheme://host`, if any.
            let path = args.url.split(['?', '#']).next().unwrap_or("");
            let after_host = path
                .split_once("://")
                .and_then(|(_, rest)| rest.split_once('/'))
                .map_or("", |(_, path)| path);
            let last = after_host.rsplit('/').next().unwrap_or("");
            if last.is_empty() {
                bail!(
                    "{}: no file name at the end of the URL; give --name",
                    args.url
                );
            }
            last.to_string()
        }
    };
    let client = Client::new(&args.http.config())?;
    let request = Request {
        url: args.url.clone(),
        dir: args.into.clone(),
        name,
        size: args.size,
        blake3,
        max_size: args.max_size,
    };
    let policy = Policy {
        attempts: args.attempts,
        first_wait: Duration::from_millis(args.first_wait_ms),
        max_wait: Duration::from_millis(args.max_wait_ms),
    };
    Ok((client, request, policy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_file_name_comes_from_the_url() {
        let cli = Cli::try_parse_from([
            "reimage-agent",
            "download",
            "http://127.0.0.1:1/a/acme-2.0.tar.zst?x=1",
            "--into",
            "/tmp/x",
        ])
        .unwrap();
        let Command::Download(args) = cli.command;
        let (_, request, policy) = prepare(&args).unwrap();
        assert_eq!(request.name, "acme-2.0.tar.zst");
        assert_eq!(policy.attempts, 10);
        let cli = Cli::try_parse_from(["reimage-agent", "download", "http://h/", "--into", "/x"])
            .unwrap();
        let Command::Download(args) = cli.command;
        assert!(prepare(&args).err().unwrap().to_string().contains("--name"));
        // No path at all: the host is not a file name.
        let cli =
            Cli::try_parse_from(["reimage-agent", "download", "http://h", "--into", "/x"]).unwrap();
        let Command::Download(args) = cli.command;
        assert!(prepare(&args).err().unwrap().to_string().contains("--name"));
        // --attempts 0 is a usage error that names the option.
        let err = Cli::try_parse_from([
            "reimage-agent",
            "download",
            "http://h/f",
            "--into",
            "/x",
            "--attempts",
            "0",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("--attempts"), "{err}");
    }

    #[test]
    fn ca_only_needs_a_ca() {
        assert!(Cli::try_parse_from([
            "reimage-agent",
            "download",
            "http://h/f",
            "--into",
            "/x",
            "--ca-only"
        ])
        .is_err());
    }
}
