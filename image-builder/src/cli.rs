//! The command line: `keygen`, `image`, `bundle`, `info`, `initramfs` and `disk`,
//! defined with `clap` in [`args`] (which `build.rs` also reads to write
//! the man pages and shell completions).

pub mod args;

use crate::bundle;
use crate::disk::{self, PartitionSpec};
use crate::image::{self, ImageRequest, Source};
use crate::info;
use crate::initramfs::{self, InitramfsRequest};
use crate::keygen;
use crate::payload::Compression;
use crate::progress::human;
use anyhow::Context;
use args::{BundleArgs, Cli, Command, DiskArgs, ImageArgs, InfoArgs, InitramfsArgs, KeygenArgs};
use clap::{CommandFactory, Parser};
use formats::config::Config;
use formats::manifest::Manifest;

/// Runs the command line and returns the exit code: 0 done, 1 failed,
/// 2 the command line is wrong (or, for `info`, `recovery verify`'s codes).
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(a) => keygen_command(a),
        Command::Image(a) => image_command(a),
        Command::Bundle(a) => bundle_command(a),
        Command::Info(a) => return info_command(a),
        Command::Initramfs(a) => initramfs_command(a),
        Command::Disk(a) => disk_command(a),
    };
    match result {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("image-builder: error: {err:#}");
            1
        }
    }
}

/// Exits with clap's usage error (code 2, the subcommand's usage) for a
/// value clap cannot check itself.
fn usage_error(subcommand: &str, message: String) -> ! {
    let mut cli = Cli::command();
    cli.build();
    let mut cmd = cli
        .find_subcommand(subcommand)
        .cloned()
        .unwrap_or_else(Cli::command);
    cmd.error(clap::error::ErrorKind::ValueValidation, message)
        .exit()
}

fn keygen_command(a: KeygenArgs) -> anyhow::Result<()> {
    let (pub_path, key_path) = keygen::keygen(&a.out)?;
    println!(
        "wrote {} (public: give it to the recovery as a trusted key) and {} (secret, unencrypted: keep it safe)",
        pub_path.display(),
        key_path.display()
    );
    Ok(())
}

fn image_command(a: ImageArgs) -> anyhow::Result<()> {
    let created = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.parse().unwrap_or_else(|_| {
            usage_error(
                "image",
                format!("SOURCE_DATE_EPOCH={v:?}: expected seconds since 1970"),
            )
        }),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let source = match (a.rootfs, a.from_tar) {
        (Some(dir), _) => Source::Rootfs(dir),
        (None, Some(tar)) => Source::Tar(tar),
        (None, None) => unreachable!("clap requires --rootfs or --from-tar"),
    };
    if !a.force {
        refuse_overwrite(&a.out, &a.product, &a.version)?;
    }
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    let request = ImageRequest {
        source,
        product: a.product,
        version: a.version,
        key: a.key,
        out_dir: a.out,
        compression: Compression {
            level: a.level,
            threads,
        },
        created,
        allow_unsafe_paths: a.allow_unsafe_paths,
        show_progress: !a.quiet && !a.json,
    };
    let s = image::build_format(&request, a.format)?;
    let m = &s.manifest;
    let ratio = m.unpacked_size as f64 / m.payload_size.max(1) as f64;
    if a.json {
        let out = serde_json::json!({
            "product": m.product,
            "version": m.version,
            "manifest": s.manifest_path.display().to_string(),
            "payload": s.payload_path.display().to_string(),
            "signature": s.signature_path.display().to_string(),
            "payload_size": m.payload_size,
            "payload_blake3": formats::manifest::hex(&m.payload_blake3),
            "unpacked_size": m.unpacked_size,
            "entries": m.entries,
            "ratio": (ratio * 1000.0).round() / 1000.0,
            "seconds": (s.seconds * 1000.0).round() / 1000.0,
        });
        println!("{out}");
    } else if !a.quiet {
        println!(
            "{}: {} from {} in {} entries (ratio {:.2}), {:.1} s",
            s.payload_path.display(),
            human(m.payload_size),
            human(m.unpacked_size),
            m.entries,
            ratio,
            s.seconds
        );
    }
    Ok(())
}

/// Refuses to replace any file of an image already in `out` (without `--force`).
fn refuse_overwrite(out: &std::path::Path, product: &str, version: &str) -> anyhow::Result<()> {
    let existing: Vec<String> = Manifest::file_names(product, version)
        .iter()
        .map(|name| out.join(name))
        .filter(|p| p.symlink_metadata().is_ok())
        .map(|p| p.display().to_string())
        .collect();
    if existing.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "this version is already built: {} (pass --force to replace it)",
            existing.join(", ")
        )
    }
}

fn bundle_command(a: BundleArgs) -> anyhow::Result<()> {
    if !a.force {
        let text = std::fs::read(&a.image)
            .with_context(|| format!("{}: cannot read the manifest", a.image.display()))?;
        let m = Manifest::parse(&text)
            .with_context(|| format!("{}: not a manifest", a.image.display()))?;
        let path = a.out.join(bundle::file_name(&m.product, &m.version));
        if path.symlink_metadata().is_ok() {
            anyhow::bail!(
                "this version is already bundled: {} (pass --force to replace it)",
                path.display()
            );
        }
    }
    let s = bundle::build(&bundle::BundleRequest {
        manifest: a.image,
        out_dir: a.out,
        hardware: a.hardware,
    })?;
    println!(
        "{}: {} ({} {}, payload {})",
        s.path.display(),
        human(s.size),
        s.manifest.product,
        s.manifest.version,
        human(s.manifest.payload_size)
    );
    Ok(())
}

fn info_command(a: InfoArgs) -> i32 {
    let report = info::inspect(&a.manifest, &a.trusted_key);
    if a.json {
        println!("{}", report.info.to_json());
    } else {
        print!("{}", report.info.to_text());
    }
    report.exit_code()
}

fn initramfs_command(a: InitramfsArgs) -> anyhow::Result<()> {
    let config = match (a.product, a.config) {
        (Some(p), None) => Config::for_product(&p),
        (product, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("{}: cannot read the config", path.display()))?;
            let config =
                Config::parse(&text).with_context(|| format!("config {}", path.display()))?;
            if product.as_ref().is_some_and(|p| *p != config.product) {
                usage_error(
                    "initramfs",
                    format!(
                        "--product {:?} differs from the product {:?} in {}",
                        product.unwrap_or_default(),
                        config.product,
                        path.display()
                    ),
                );
            }
            config
        }
        (None, None) => unreachable!("clap requires --product or --config"),
    };
    let request = InitramfsRequest {
        recovery: a.recovery,
        trusted_keys: a.trusted_key,
        modules: a.module,
        config,
        sysroot: a.sysroot,
        out: a.out,
    };
    let summary = initramfs::build(&request)?;
    println!(
        "{}: {} in {} entries (recovery as /init, mke2fs and its libraries, config, {} key(s))",
        request.out.display(),
        human(summary.size),
        summary.files.len(),
        request.trusted_keys.len()
    );
    Ok(())
}

fn disk_command(a: DiskArgs) -> anyhow::Result<()> {
    let layout: Vec<PartitionSpec> = a
        .part
        .iter()
        .map(|spec| {
            PartitionSpec::parse(spec)
                .unwrap_or_else(|e| usage_error("disk", format!("--part {e}")))
        })
        .collect();
    let placed = disk::build(&a.out, &layout)?;
    for p in placed {
        println!(
            "{}: {} at {} ({})",
            a.out.display(),
            p.name,
            p.offset,
            human(p.size)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::args::Cli;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
