//! The formats that the pieces of the updater share, one module per file
//! format. Every parser here takes `&str` or `&[u8]` and does no I/O, so that
//! `recovery`, `bootloader-glue` and `image-builder` read each file the same
//! way and the parsers can be tested and fuzzed on their own.
//!
//! - [`keyvalue`]: the strict `key=value` text that the manifest (and later
//!   the instruction and the result) are made of.
//! - [`manifest`]: the signed description of an image.
//! - [`signature`]: minisign public keys and signatures, and the check of a
//!   manifest against a set of trusted keys.
//! - [`entry_path`]: what a path inside an image may be, and the check that
//!   keeps every entry inside the target.

pub mod entry_path;
pub mod keyvalue;
pub mod manifest;
pub mod signature;
