//! The formats that the pieces of the updater share, one module per file
//! format. Every parser here takes `&str` or `&[u8]` and does no I/O, so that
//! `recovery`, `bootloader-glue` and `image-builder` read each file the same
//! way and the parsers can be tested and fuzzed on their own.
//!
//! - [`cfg`]: every file the updater keeps on the `cfg` partition, and
//!   the attempt count and update lock records.
//! - [`keyvalue`]: the strict `key=value` text that every record is made
//!   of, and the CRC-32 line that seals the records on `cfg`.
//! - [`manifest`]: the signed description of an image.
//! - [`index`]: the signed entry index that ends a format-2 payload (one
//!   record per tar entry, checked before the erase instead of a decode).
//! - [`bundle`]: the single-file bundle (a newc cpio: `sw-description`,
//!   manifest, signature, payload), written and read through one layout.
//! - [`newc`]: the cpio headers of bundles and of the initramfs.
//! - [`image_info`]: what `verify --json` and `info --json` say about an
//!   image, one set of field names.
//! - [`signature`]: minisign public keys and signatures, and the check of a
//!   manifest against a set of trusted keys.
//! - [`entry_path`]: what a path inside an image may be, and the check that
//!   keeps every entry inside the target.
//! - [`entry`]: one entry of an image's tar (kinds, limits, the one
//!   check), and its mapping to and from tar headers (the caller's `tar`
//!   reader or builder does the I/O).
//! - [`instruction`]: the update instruction the running system writes.
//! - [`result`]: the result of an update and the installed version.
//! - [`action`]: the agent's update in flight, reported on after the reboot.
//! - [`config`]: the recovery's configuration, baked into its initramfs.
//! - [`version`]: comparing versions for the downgrade policy.
//! - [`bootflag`]: setting and clearing the boot loaders' flags (I/O).
//! - [`trial`]: trial boots and restores: the records on `cfg`, and each
//!   boot loader's counter of trial boots (I/O).
//! - [`units`]: sizes and UTC times as people read them.
//! - [`mountinfo`]: the kernel's table of mounts, escapes decoded.
//! - [`grubenv`], [`ubootenv`], [`efivar`]: the boot loaders' one-shot
//!   flags, in the formats their own tools read.
//! - [`store`]: atomic, durable writes of the records on `cfg` (with
//!   [`bootflag`] and [`fsflags`], the modules that do I/O).
//! - [`fsflags`]: clearing `chattr +i` (efivarfs marks variables
//!   immutable), through an ioctl.

pub mod action;
pub mod bootflag;
pub mod bundle;
pub mod cfg;
pub mod config;
pub mod efivar;
pub mod entry;
pub mod entry_path;
pub mod fsflags;
pub mod grubenv;
pub mod image_info;
pub mod index;
pub mod instruction;
pub mod keyvalue;
pub mod manifest;
pub mod mountinfo;
pub mod newc;
pub mod result;
pub mod signature;
pub mod store;
pub mod trial;
pub mod ubootenv;
pub mod units;
pub mod version;
