//! The command line: the daemon `run`, the one-shot commands `check`,
//! `download`, `install` and `report` (for cron and timers; they read
//! `agent.conf`), `status`, and
//! `fetch URL --into DIR`, for trying a download by hand. Exit codes: 0
//! done (or nothing to do), 1 failed, 2 bad usage or setup.

use crate::config::{self, Config};
use crate::daemon::{self, Clock, Daemon, Reboot, SystemClock};
use crate::download::{self, Request};
use crate::flow::{self, FlowError};
use crate::http::{Client, HttpConfig};
use crate::outcome::{self, Reported};
use crate::retry::Policy;
use crate::source::{Check, Offer};
use crate::status::Status;
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
    /// Asks the source whether there is an update, and prints what it offers.
    Check(ConfigArg),
    /// Downloads the offered update into storage: admitted by its signed
    /// manifest first, then downloaded, verified; no instruction.
    Download(ConfigArg),
    /// Downloads the offered update if it is not staged yet, then asks for
    /// its installation (writes the instruction).
    Install(InstallArgs),
    /// The daemon: reports the last update's outcome, then polls the
    /// source, downloads in the download window and installs in the
    /// install window (after another round of attempts), and reboots.
    Run(ConfigArg),
    /// Reports the outcome of the last update to the source once the new
    /// system has booted (and runs the post-update command once).
    Report(ConfigArg),
    /// What the agent is doing: source, offer, staged image, warning flag,
    /// update lock, the windows' next openings.
    Status(StatusArgs),
    /// Downloads one file into DIR by hand: resumes a partial download,
    /// checks the size and BLAKE3 when given, retries with backoff.
    Fetch(FetchArgs),
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The agent's configuration.
    #[arg(long, value_name = "FILE", default_value = config::PATH)]
    pub config: PathBuf,
}

impl ConfigArg {
    /// Reads and parses the configuration file.
    pub fn load(&self) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(&self.config).with_context(|| {
            format!(
                "{}: the agent's configuration (pass --config FILE)",
                self.config.display()
            )
        })?;
        Config::parse(&text).with_context(|| format!("{}", self.config.display()))
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// One JSON object instead of lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Reboots once the update is requested.
    #[arg(long)]
    pub reboot: bool,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
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
        Err(Failure::Failed(e)) => {
            log::error!("{e:#}");
            1
        }
    }
}

enum Failure {
    /// Bad usage or setup: nothing was tried.
    Setup(anyhow::Error),
    Failed(anyhow::Error),
}

impl From<FlowError> for Failure {
    fn from(e: FlowError) -> Failure {
        match e {
            FlowError::Setup(_) => Failure::Setup(e.into()),
            e => Failure::Failed(e.into()),
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Fetch(args) => {
            let (client, request, policy) = prepare(&args).map_err(Failure::Setup)?;
            let done =
                download::with_retries(&client, &request, &policy, std::thread::sleep, &mut |_| {})
                    .map_err(|e| Failure::Failed(e.into()))?;
            println!("{}", done.path.display());
            Ok(())
        }
        Command::Check(args) => {
            let config = args.load().map_err(Failure::Setup)?;
            let mut source = flow::source(&config)?;
            match flow::check(&config, source.as_mut())? {
                Check::Offer(offer) => print_offer(&offer),
                Check::Nothing { .. } => println!("nothing to do: no newer update offered"),
                Check::Cancel { id } => println!("the source cancels offer {id}"),
            }
            Ok(())
        }
        Command::Download(args) => {
            let config = args.load().map_err(Failure::Setup)?;
            let mut source = flow::source(&config)?;
            let Some(offer) = offered(&config, source.as_mut())? else {
                return Ok(());
            };
            let staged = flow::stage(&config, source.as_mut(), &offer)?;
            println!("{}", staged.image.display());
            Ok(())
        }
        Command::Install(args) => {
            let config = args.config.load().map_err(Failure::Setup)?;
            let mut source = flow::source(&config)?;
            let Some(offer) = offered(&config, source.as_mut())? else {
                return Ok(());
            };
            let staged = flow::stage(&config, source.as_mut(), &offer)?;
            let done = flow::install(&config, source.as_mut(), &staged)?;
            println!(
                "update to {} {} requested: cfg backed up to {}; the next boot installs it",
                done.product,
                done.version,
                done.backup.display()
            );
            if args.reboot {
                println!("rebooting");
                daemon::reboot(&Reboot::Now).map_err(|e| Failure::Failed(anyhow::anyhow!(e)))?;
            }
            Ok(())
        }
        Command::Run(args) => {
            let config = args.load().map_err(Failure::Setup)?;
            let mut source = flow::source(&config)?;
            log::info!(
                "running: source {}, download window {}, install window {}",
                source.name(),
                config.daemon.windows.download,
                config.daemon.windows.install
            );
            let mut daemon = Daemon::new(&config, source.as_mut(), SystemClock);
            daemon
                .run()
                .map_err(|e| Failure::Failed(anyhow::anyhow!(e)))
        }
        Command::Report(args) => {
            let config = args.load().map_err(Failure::Setup)?;
            let mut source = flow::source(&config)?;
            let post = config.daemon.post_update();
            match outcome::report(&config.cfg, source.as_mut(), post.as_ref())
                .map_err(|e| Failure::Failed(e.into()))?
            {
                Reported::Nothing => println!("nothing to report: no update in flight"),
                Reported::Pending => {
                    println!("nothing to report yet: the instruction is pending, the next boot installs the update")
                }
                Reported::Closed { success, details } => println!(
                    "reported {}: {details}",
                    if success { "success" } else { "failure" }
                ),
            }
            Ok(())
        }
        Command::Status(args) => {
            let config = args.config.load().map_err(Failure::Setup)?;
            let status = Status::gather(&config, SystemClock.now());
            if args.json {
                println!("{}", status.json());
            } else {
                print!("{}", status.text());
            }
            Ok(())
        }
    }
}

/// The offer, if the source has one; `None` (printed) otherwise.
fn offered(
    config: &Config,
    source: &mut dyn crate::source::Source,
) -> Result<Option<Offer>, Failure> {
    match flow::check(config, source)? {
        Check::Offer(offer) => {
            print_offer(&offer);
            Ok(Some(offer))
        }
        Check::Nothing { .. } => {
            println!("nothing to do: no newer update offered");
            Ok(None)
        }
        Check::Cancel { id } => {
            println!("nothing to do: the source cancels offer {id}");
            Ok(None)
        }
    }
}

fn print_offer(offer: &Offer) {
    println!(
        "offered: {} (offer {})",
        offer.version.as_deref().unwrap_or("an unnamed version"),
        offer.id
    );
    for a in &offer.artifacts {
        println!("  {} {}", a.name, a.url);
    }
}

fn prepare(args: &FetchArgs) -> anyhow::Result<(Client, Request, Policy)> {
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
            "fetch",
            "http://127.0.0.1:1/a/acme-2.0.tar.zst?x=1",
            "--into",
            "/tmp/x",
        ])
        .unwrap();
        let Command::Fetch(args) = cli.command else {
            panic!("fetch")
        };
        let (_, request, policy) = prepare(&args).unwrap();
        assert_eq!(request.name, "acme-2.0.tar.zst");
        assert_eq!(policy.attempts, 10);
        let cli =
            Cli::try_parse_from(["reimage-agent", "fetch", "http://h/", "--into", "/x"]).unwrap();
        let Command::Fetch(args) = cli.command else {
            panic!("fetch")
        };
        assert!(prepare(&args).err().unwrap().to_string().contains("--name"));
        // No path at all: the host is not a file name.
        let cli =
            Cli::try_parse_from(["reimage-agent", "fetch", "http://h", "--into", "/x"]).unwrap();
        let Command::Fetch(args) = cli.command else {
            panic!("fetch")
        };
        assert!(prepare(&args).err().unwrap().to_string().contains("--name"));
        // --attempts 0 is a usage error that names the option.
        let err = Cli::try_parse_from([
            "reimage-agent",
            "fetch",
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
            "fetch",
            "http://h/f",
            "--into",
            "/x",
            "--ca-only"
        ])
        .is_err());
    }
}
