//! The command line: `image-builder keygen` and `image-builder image`.

use crate::disk::{self, PartitionSpec};
use crate::image::{self, ImageRequest, Source};
use crate::initramfs::{self, InitramfsRequest};
use crate::keygen;
use crate::payload::Compression;
use crate::progress::human;
use formats::config::Config;
use lexopt::prelude::*;
use std::path::PathBuf;

const USAGE: &str = "\
usage:
  image-builder keygen --out PATH
      writes a minisign key pair: PATH.pub and PATH.key (unencrypted)
  image-builder image (--rootfs DIR | --from-tar FILE) --product P --version V
                      --key PATH.key --out DIR [--level N] [--threads N]
                      [--quiet | --json] [--allow-unsafe-paths]
      writes DIR/P-V.tar.zst, DIR/P-V.manifest, DIR/P-V.manifest.minisig;
      SOURCE_DATE_EPOCH sets the creation time for reproducible builds
  image-builder initramfs --recovery BIN --trusted-key K.pub [--trusted-key ...]
                          (--product P | --config FILE) [--module M.ko ...] --out FILE
      writes the recovery initramfs (zstd-compressed newc cpio)
  image-builder disk --out disk.img --part NAME:SIZE[:ext4[:DIR]] [--part ...]
      writes a GPT disk image; SIZE with K, M or G
";

/// Runs the command line and returns the exit code: 0 done, 1 failed,
/// 2 the command line is wrong.
pub fn main() -> i32 {
    match run() {
        Ok(()) => 0,
        Err(Failure::Usage(msg)) => {
            eprintln!("image-builder: {msg}\n{USAGE}");
            2
        }
        Err(Failure::Build(err)) => {
            eprintln!("image-builder: error: {err:#}");
            1
        }
    }
}

enum Failure {
    Usage(String),
    Build(anyhow::Error),
}

impl From<lexopt::Error> for Failure {
    fn from(e: lexopt::Error) -> Failure {
        Failure::Usage(e.to_string())
    }
}

fn run() -> Result<(), Failure> {
    let mut parser = lexopt::Parser::from_env();
    let command = match parser.next()? {
        Some(Value(cmd)) => cmd.string()?,
        Some(Long("help") | Short('h')) => {
            print!("{USAGE}");
            return Ok(());
        }
        _ => return Err(Failure::Usage("missing command".into())),
    };
    match command.as_str() {
        "keygen" => keygen_command(parser),
        "image" => image_command(parser),
        "initramfs" => initramfs_command(parser),
        "disk" => disk_command(parser),
        other => Err(Failure::Usage(format!("unknown command {other:?}"))),
    }
}

fn keygen_command(mut parser: lexopt::Parser) -> Result<(), Failure> {
    let mut out = None;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("out") => out = Some(PathBuf::from(parser.value()?)),
            other => return Err(other.unexpected().into()),
        }
    }
    let out = out.ok_or_else(|| Failure::Usage("keygen needs --out PATH".into()))?;
    let (pub_path, key_path) = keygen::keygen(&out).map_err(|e| Failure::Build(e.into()))?;
    println!(
        "wrote {} (public: give it to the recovery as a trusted key) and {} (secret, unencrypted: keep it safe)",
        pub_path.display(),
        key_path.display()
    );
    Ok(())
}

fn image_command(mut parser: lexopt::Parser) -> Result<(), Failure> {
    let (mut source, mut product, mut version, mut key, mut out) = (None, None, None, None, None);
    let mut level = 12;
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let (mut quiet, mut json, mut allow_unsafe_paths) = (false, false, false);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("rootfs") => source = Some(Source::Rootfs(parser.value()?.into())),
            Long("from-tar") => source = Some(Source::Tar(parser.value()?.into())),
            Long("product") => product = Some(parser.value()?.string()?),
            Long("version") => version = Some(parser.value()?.string()?),
            Long("key") => key = Some(PathBuf::from(parser.value()?)),
            Long("out") => out = Some(PathBuf::from(parser.value()?)),
            Long("level") => level = parser.value()?.parse()?,
            Long("threads") => threads = parser.value()?.parse()?,
            Long("quiet") => quiet = true,
            Long("json") => json = true,
            Long("allow-unsafe-paths") => allow_unsafe_paths = true,
            other => return Err(other.unexpected().into()),
        }
    }
    if !(1..=22).contains(&level) {
        return Err(Failure::Usage(format!("--level {level}: expected 1 to 22")));
    }
    let created = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.parse().map_err(|_| {
            Failure::Usage(format!(
                "SOURCE_DATE_EPOCH={v:?}: expected seconds since 1970"
            ))
        })?,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let request = ImageRequest {
        source: need(source, "--rootfs DIR or --from-tar FILE")?,
        product: need(product, "--product P")?,
        version: need(version, "--version V")?,
        key: need(key, "--key PATH.key")?,
        out_dir: need(out, "--out DIR")?,
        compression: Compression {
            level,
            threads: threads.max(1),
        },
        created,
        allow_unsafe_paths,
        show_progress: !quiet && !json,
    };
    let s = image::build(&request).map_err(|e| Failure::Build(e.into()))?;
    let m = &s.manifest;
    let ratio = m.unpacked_size as f64 / m.payload_size.max(1) as f64;
    if json {
        println!(
            "{{\"product\":{},\"version\":{},\"manifest\":{},\"payload\":{},\"signature\":{},\
             \"payload_size\":{},\"payload_blake3\":\"{}\",\"unpacked_size\":{},\"entries\":{},\
             \"ratio\":{:.3},\"seconds\":{:.3}}}",
            json_str(&m.product),
            json_str(&m.version),
            json_str(&s.manifest_path.display().to_string()),
            json_str(&s.payload_path.display().to_string()),
            json_str(&s.signature_path.display().to_string()),
            m.payload_size,
            formats::manifest::hex(&m.payload_blake3),
            m.unpacked_size,
            m.entries,
            ratio,
            s.seconds
        );
    } else if !quiet {
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

fn initramfs_command(mut parser: lexopt::Parser) -> Result<(), Failure> {
    let (mut recovery, mut keys, mut product, mut config, mut out) =
        (None, Vec::new(), None, None, None);
    let mut modules = Vec::new();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("recovery") => recovery = Some(PathBuf::from(parser.value()?)),
            Long("trusted-key") => keys.push(PathBuf::from(parser.value()?)),
            Long("product") => product = Some(parser.value()?.string()?),
            Long("config") => config = Some(PathBuf::from(parser.value()?)),
            Long("module") => modules.push(PathBuf::from(parser.value()?)),
            Long("out") => out = Some(PathBuf::from(parser.value()?)),
            other => return Err(other.unexpected().into()),
        }
    }
    let config = match (product, config) {
        (Some(p), None) => Config::for_product(&p),
        (product, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Failure::Build(anyhow::anyhow!("{}: {e}", path.display())))?;
            let config = Config::parse(&text)
                .map_err(|e| Failure::Build(anyhow::anyhow!("{}: {e}", path.display())))?;
            if product.is_some_and(|p| p != config.product) {
                return Err(Failure::Usage(
                    "--product differs from the config's product".into(),
                ));
            }
            config
        }
        (None, None) => {
            return Err(Failure::Usage(
                "initramfs needs --product P or --config FILE".into(),
            ))
        }
    };
    let request = InitramfsRequest {
        recovery: need(recovery, "--recovery BIN")?,
        trusted_keys: keys,
        modules,
        config,
        out: need(out, "--out FILE")?,
    };
    let summary = initramfs::build(&request).map_err(|e| Failure::Build(e.into()))?;
    println!(
        "{}: {} in {} entries (recovery as /init, mke2fs and its libraries, config, {} key(s))",
        request.out.display(),
        human(summary.size),
        summary.files.len(),
        request.trusted_keys.len()
    );
    Ok(())
}

fn disk_command(mut parser: lexopt::Parser) -> Result<(), Failure> {
    let (mut out, mut layout) = (None, Vec::new());
    while let Some(arg) = parser.next()? {
        match arg {
            Long("out") => out = Some(PathBuf::from(parser.value()?)),
            Long("part") => {
                let spec = parser.value()?.string()?;
                layout.push(PartitionSpec::parse(&spec).map_err(Failure::Usage)?);
            }
            other => return Err(other.unexpected().into()),
        }
    }
    let out = need(out, "--out disk.img")?;
    if layout.is_empty() {
        return Err(Failure::Usage("disk needs at least one --part".into()));
    }
    let placed = disk::build(&out, &layout).map_err(|e| Failure::Build(e.into()))?;
    for p in placed {
        println!(
            "{}: {} at {} ({})",
            out.display(),
            p.name,
            p.offset,
            human(p.size)
        );
    }
    Ok(())
}

fn need<T>(value: Option<T>, what: &str) -> Result<T, Failure> {
    value.ok_or_else(|| Failure::Usage(format!("missing {what}")))
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(super::json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
