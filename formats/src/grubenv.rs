//! GRUB's environment block, as `grub-editenv` and GRUB's `load_env` /
//! `save_env` read and write it: a file of a fixed size (1024 bytes by
//! default) that starts with `# GRUB Environment Block\n`, holds
//! `name=value\n` lines, and is padded with `#`.

use thiserror::Error;

pub const HEADER: &str = "# GRUB Environment Block\n";
pub const DEFAULT_SIZE: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrubEnv {
    vars: Vec<(String, String)>,
    size: usize,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum GrubEnvError {
    #[error("not a GRUB environment block: it does not start with {HEADER:?}")]
    NoHeader,
    #[error("line {line}: expected name=value")]
    BadLine { line: usize },
    #[error("the variables need {needed} bytes, the block holds {size}")]
    TooLarge { needed: usize, size: usize },
    #[error("{name}: names and values must not contain a newline, a backslash or, in names, `=`")]
    BadVariable { name: String },
}

impl Default for GrubEnv {
    fn default() -> GrubEnv {
        GrubEnv {
            vars: Vec::new(),
            size: DEFAULT_SIZE,
        }
    }
}

impl GrubEnv {
    pub fn parse(bytes: &[u8]) -> Result<GrubEnv, GrubEnvError> {
        let text = bytes
            .strip_prefix(HEADER.as_bytes())
            .ok_or(GrubEnvError::NoHeader)?;
        let mut vars = Vec::new();
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            // The padding: `#` to the end (and comment lines).
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            let line_text =
                std::str::from_utf8(line).map_err(|_| GrubEnvError::BadLine { line: i + 2 })?;
            let (name, value) = line_text
                .split_once('=')
                .ok_or(GrubEnvError::BadLine { line: i + 2 })?;
            vars.push((name.to_string(), value.to_string()));
        }
        Ok(GrubEnv {
            vars,
            size: bytes.len(),
        })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, name: &str, value: &str) -> Result<(), GrubEnvError> {
        let bad = |s: &str| s.contains(['\n', '\\']);
        if name.is_empty() || name.contains('=') || bad(name) || bad(value) {
            return Err(GrubEnvError::BadVariable {
                name: name.to_string(),
            });
        }
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value.to_string(),
            None => self.vars.push((name.to_string(), value.to_string())),
        }
        Ok(())
    }

    /// Removes a variable; returns whether it was there.
    pub fn unset(&mut self, name: &str) -> bool {
        let before = self.vars.len();
        self.vars.retain(|(n, _)| n != name);
        before != self.vars.len()
    }

    /// The block, exactly as large as it was read (or 1024 bytes).
    pub fn render(&self) -> Result<Vec<u8>, GrubEnvError> {
        let mut out = HEADER.as_bytes().to_vec();
        for (name, value) in &self.vars {
            out.extend_from_slice(format!("{name}={value}\n").as_bytes());
        }
        if out.len() > self.size {
            return Err(GrubEnvError::TooLarge {
                needed: out.len(),
                size: self.size,
            });
        }
        out.resize(self.size, b'#');
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_the_fixed_size() {
        let mut env = GrubEnv::default();
        env.set("reimage_update", "1").unwrap();
        env.set("saved_entry", "system").unwrap();
        let bytes = env.render().unwrap();
        assert_eq!(bytes.len(), 1024);
        assert!(
            bytes.starts_with(b"# GRUB Environment Block\nreimage_update=1\nsaved_entry=system\n#")
        );
        let back = GrubEnv::parse(&bytes).unwrap();
        assert_eq!(back.get("reimage_update"), Some("1"));
        let mut back = back;
        assert!(back.unset("reimage_update"));
        assert!(!back.unset("reimage_update"));
        assert_eq!(back.get("saved_entry"), Some("system"));
    }

    #[test]
    fn refuses_what_is_not_one() {
        assert_eq!(GrubEnv::parse(b"hello"), Err(GrubEnvError::NoHeader));
        let mut env = GrubEnv::default();
        assert!(env.set("a=b", "c").is_err());
        assert!(env.set("a", "line\nbreak").is_err());
        env.set("big", &"x".repeat(2000)).unwrap();
        assert!(matches!(env.render(), Err(GrubEnvError::TooLarge { .. })));
    }
}
