//! Asking for an update: the instruction, written atomically on the `cfg`
//! partition (mounted at `cfg_root` on the running system).

use formats::instruction::{self, Instruction};
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Set by the recovery after repeated failures; no instruction is written
/// while it is there.
pub const LOCK: &str = "update/lock";

#[derive(Debug, Error)]
pub enum RequestError {
    #[error("{path}: the update lock is set after repeated failures; clear it (bootloader-glue unlock) before asking again")]
    Locked { path: PathBuf },
    #[error("{path}: cannot write the instruction: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// The recovery's count of attempts of the current instruction.
pub const ATTEMPTS: &str = "update/attempts";

/// Clears the update lock (and the attempt count, so that the next
/// instruction gets its full number of attempts). Returns whether a lock
/// was set.
pub fn unlock(cfg_root: &Path) -> Result<bool, RequestError> {
    let lock = cfg_root.join(LOCK);
    let was_set = lock.exists();
    for path in [lock, cfg_root.join(ATTEMPTS)] {
        formats::store::remove_durably(&path)
            .map_err(|source| RequestError::Write { path, source })?;
    }
    Ok(was_set)
}

/// Writes `instruction` as `cfg_root/update/instruction`.
pub fn write_instruction(cfg_root: &Path, instruction: &Instruction) -> Result<(), RequestError> {
    let lock = cfg_root.join(LOCK);
    if lock.exists() {
        return Err(RequestError::Locked { path: lock });
    }
    let path = cfg_root.join(instruction::PATH);
    formats::store::write_atomic(&path, instruction.render().as_bytes())
        .map_err(|source| RequestError::Write { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use formats::instruction::PartitionPath;

    #[test]
    fn writes_unless_locked() {
        let dir = std::env::temp_dir().join(format!("glue-request-{}", std::process::id()));
        let ins = Instruction {
            manifest: PartitionPath::parse("storage:updates/p-1.manifest").unwrap(),
            target: "system".into(),
            allow_downgrade: false,
            requested: 1,
        };
        write_instruction(&dir, &ins).unwrap();
        let written = std::fs::read(dir.join(instruction::PATH)).unwrap();
        assert_eq!(Instruction::parse(&written).unwrap(), ins);
        std::fs::write(dir.join(LOCK), "").unwrap();
        assert!(matches!(
            write_instruction(&dir, &ins),
            Err(RequestError::Locked { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
