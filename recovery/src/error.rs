//! Every refusal and failure names its stage, the file it concerns and what
//! was expected against what was found: the operator at the console, the
//! recovery log and the result file all get the same sentence.

use std::fmt;
use thiserror::Error;

/// The steps of an update, in order, as named in messages and results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Mounting /proc, /sys, /dev.
    Setup,
    /// Reading the recovery's configuration.
    Config,
    /// Finding the disks and partitions.
    Disks,
    /// Reading the update instruction from `cfg`.
    Instruction,
    /// The target partition: allowed, present, not in use.
    Target,
    /// Loading the trusted keys.
    Keys,
    /// The manifest's signature.
    Signature,
    /// The manifest's fields.
    Manifest,
    /// The payload's size and hash.
    Payload,
    /// Product, version and size against the device.
    Policy,
    /// The entries inside the payload.
    Contents,
    /// Making a fresh file system on the target.
    Erase,
    /// Writing the entries.
    Extract,
    /// Flushing the written file system.
    Sync,
    /// Recording the result and removing the instruction.
    Finish,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Setup => "setup",
            Stage::Config => "config",
            Stage::Disks => "disks",
            Stage::Instruction => "instruction",
            Stage::Target => "target",
            Stage::Keys => "keys",
            Stage::Signature => "signature",
            Stage::Manifest => "manifest",
            Stage::Payload => "payload",
            Stage::Policy => "policy",
            Stage::Contents => "contents",
            Stage::Erase => "erase",
            Stage::Extract => "extract",
            Stage::Sync => "sync",
            Stage::Finish => "finish",
        }
    }

    /// The host commands' exit code for a failure in this stage.
    pub fn exit_code(self) -> i32 {
        match self {
            Stage::Keys => 3,
            Stage::Signature => 4,
            Stage::Manifest => 5,
            Stage::Payload => 6,
            Stage::Contents => 7,
            Stage::Extract | Stage::Sync => 8,
            _ => 1,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{stage}: {file}: {reason}")]
pub struct UpdateError {
    pub stage: Stage,
    pub file: String,
    pub reason: String,
}

impl UpdateError {
    pub fn new(stage: Stage, file: impl fmt::Display, reason: impl fmt::Display) -> UpdateError {
        UpdateError {
            stage,
            file: file.to_string(),
            reason: reason.to_string(),
        }
    }
}
