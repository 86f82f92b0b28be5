// The command line's definition, and nothing else: `build.rs` includes this
// file to write the man pages and shell completions, so it may use only
// `clap` and `std`. (Plain comments: an included file takes no `//!`.)

use clap::{ArgGroup, Args, Parser, Subcommand};
use std::path::PathBuf;

/// Makes signed update images, the recovery initramfs and test disks.
#[derive(Debug, Parser)]
#[command(name = "image-builder", version)]
#[command(
    after_help = "Exit codes: 0 done, 1 failed (the message names the file), \
                        2 the command line is wrong."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Keygen(KeygenArgs),
    Image(ImageArgs),
    Bundle(BundleArgs),
    Info(InfoArgs),
    Initramfs(InitramfsArgs),
    Disk(DiskArgs),
}

/// Writes a minisign key pair: PATH.pub and PATH.key (unencrypted).
///
/// Neither file is overwritten. Keys made by `minisign -G -W` work as well.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the key pair, without extension.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
}

/// Writes a signed image: DIR/P-V.tar.zst, DIR/P-V.manifest and
/// DIR/P-V.manifest.minisig.
///
/// SOURCE_DATE_EPOCH sets the creation time, for reproducible builds.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["rootfs", "from_tar"])))]
pub struct ImageArgs {
    /// The root file system, as a directory.
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// The root file system, as a plain, gzip, xz, bzip2 or zstd tar; `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub from_tar: Option<PathBuf>,
    /// The product name the recovery checks against its own.
    #[arg(long, value_name = "P")]
    pub product: String,
    /// The image's version.
    #[arg(long, value_name = "V")]
    pub version: String,
    /// The minisign secret key (.key) that signs the manifest.
    #[arg(long, value_name = "PATH.key")]
    pub key: PathBuf,
    /// The output directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The zstd compression level.
    #[arg(long, value_name = "N", default_value_t = 12,
          value_parser = clap::value_parser!(i32).range(1..=22))]
    pub level: i32,
    /// Compression threads (the output is the same for any count); default: one per core.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,
    /// Print nothing but errors.
    #[arg(long, conflicts_with = "json")]
    pub quiet: bool,
    /// Print one JSON object: paths, sizes, hash, entries, ratio, seconds.
    #[arg(long)]
    pub json: bool,
    /// Replace an image of the same product and version already in the output directory.
    #[arg(long)]
    pub force: bool,
    /// Let entries that leave the target into the image: only for test
    /// images that prove the recovery refuses them.
    #[arg(long)]
    pub allow_unsafe_paths: bool,
    /// The manifest format: 2 ends the payload with the signed entry
    /// index; 1 is the old format, for recoveries that read no other.
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=2))]
    pub format: u64,
}

/// Writes DIR/P-V.swu: the image's manifest, signature and payload in one
/// file (an uncompressed newc cpio whose first entry is an SWUpdate-style
/// sw-description, which gooseBit and hawkBit accept on upload).
///
/// The payload is checked against the manifest's size and BLAKE3 on the
/// way; the same image gives the same bytes.
#[derive(Debug, Args)]
pub struct BundleArgs {
    /// The image's manifest; its .minisig and payload are beside it.
    #[arg(long, value_name = "DIR/P-V.manifest")]
    pub image: PathBuf,
    /// The output directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A hardware revision the bundle is compatible with (repeat for
    /// several): sw-description's software.<product>.hardware-compatibility.
    #[arg(long, value_name = "REV")]
    pub hardware: Vec<String>,
    /// Replace a bundle of the same product and version already in the output directory.
    #[arg(long)]
    pub force: bool,
}

/// Shows what an image holds and, given trusted keys, whether it verifies.
///
/// Product, version, sizes, entries, creation time and the signing key's id.
/// With --trusted-key, the signature is checked, and if the payload is beside
/// the manifest, its size, BLAKE3 and every entry too (the recovery's checks).
/// Exit codes when a check fails are those of `recovery verify`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The image's manifest (P-V.manifest), or its bundle (P-V.swu).
    #[arg(value_name = "IMAGE.manifest")]
    pub manifest: PathBuf,
    /// A minisign public key to verify against (repeat for several).
    #[arg(long, value_name = "K.pub")]
    pub trusted_key: Vec<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Writes the recovery initramfs (a zstd-compressed newc cpio).
///
/// It holds the static recovery as /init, mke2fs and the libraries it needs,
/// the recovery's configuration and the trusted keys.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("product_or_config").required(true).multiple(true)
                .args(["product", "config"])))]
pub struct InitramfsArgs {
    /// The static recovery executable.
    #[arg(long, value_name = "BIN")]
    pub recovery: PathBuf,
    /// A minisign public key the recovery trusts (repeat for key rotation).
    #[arg(long, value_name = "K.pub", required = true)]
    pub trusted_key: Vec<PathBuf>,
    /// The product name (with the default configuration).
    #[arg(long, value_name = "P")]
    pub product: Option<String>,
    /// The recovery's configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A kernel module (.ko) the recovery loads at its start (repeatable).
    #[arg(long, value_name = "M.ko")]
    pub module: Vec<PathBuf>,
    /// Take mke2fs, its libraries and the ELF interpreter from this root
    /// file system (the device's userland) instead of the build host.
    #[arg(long, value_name = "DIR")]
    pub sysroot: Option<PathBuf>,
    /// The initramfs file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Writes a GPT disk image for tests and demos.
#[derive(Debug, Args)]
pub struct DiskArgs {
    /// The disk image file to write.
    #[arg(long, value_name = "disk.img")]
    pub out: PathBuf,
    /// A partition, NAME:SIZE[:ext4|fat|raw[:DIR]], SIZE with K, M or G (repeatable).
    #[arg(long, value_name = "SPEC", required = true)]
    pub part: Vec<String>,
}
