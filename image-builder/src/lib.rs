//! `image-builder`: makes what the recovery consumes.
//!
//! - [`keygen`]: a minisign key pair for signing images.
//! - [`tree`]: the entries of a root file system, as the image will hold them.
//! - [`rootfs`] and [`from_tar`]: read a tree from a directory or a tar.
//! - [`payload`]: writes the entries as tar → zstd → hash → file.
//! - [`sign`]: deterministic minisign signatures.
//! - [`image`]: payload, manifest and signature together.
//! - [`bundle`]: the three files of an image in one `P-V.swu`.
//! - [`info`]: what an image holds and whether it verifies.
//! - [`initramfs`] and [`cpio`]: the recovery initramfs.
//! - [`elf`]: class, loader and libraries of an ELF file (with `object`).
//! - [`disk`]: GPT disk images for tests and demos.
//! - [`progress`]: the progress bar on a terminal.
//! - [`error`]: what failed, with the file and the entry named.
//! - [`cli`]: the command line (clap; `build.rs` makes man pages and completions).

pub mod bundle;
pub mod cli;
pub mod cpio;
pub mod disk;
pub mod elf;
pub mod error;
pub mod from_tar;
pub mod image;
pub mod info;
pub mod initramfs;
pub mod keygen;
pub mod payload;
pub mod progress;
pub mod rootfs;
pub mod sign;
pub mod tree;

pub use error::BuildError;
