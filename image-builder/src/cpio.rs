//! The newc cpio format that the kernel unpacks an initramfs from: the
//! archive's entries in order, each header through [`formats::newc`].

use formats::newc;
use std::io::{self, Write};

/// Writes newc entries; inode numbers count up from 1.
pub struct CpioWriter<W: Write> {
    out: W,
    written: u64,
    ino: u32,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            written: 0,
            ino: 0,
        }
    }

    fn raw(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        self.raw(newc::padding(self.written))
    }

    /// One entry: `mode` includes the file type bits; `rdev` is
    /// (major, minor) for device nodes.
    pub fn entry(
        &mut self,
        name: &str,
        mode: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> io::Result<()> {
        self.ino += 1;
        let header = newc::render_header(name, self.ino, mode, rdev, data.len() as u64)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.raw(&header)?;
        self.raw(data)?;
        self.pad()
    }

    pub fn dir(&mut self, name: &str) -> io::Result<()> {
        self.entry(name, 0o040755, (0, 0), &[])
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, 0o100000 | perm, (0, 0), data)
    }

    pub fn char_device(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(name, 0o020000 | perm, (major, minor), &[])
    }

    /// Writes the trailer and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry(newc::TRAILER, 0, (0, 0), &[])?;
        Ok(self.out)
    }
}

/// One entry of a newc archive, as [`read`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// The file type bits and the permissions.
    pub mode: u32,
    pub data: Vec<u8>,
}

/// Reads a newc archive (what [`CpioWriter`] writes) up to its trailer.
pub fn read(archive: &[u8]) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    let mut at = 0;
    let align = |n: usize| newc::align(n as u64) as usize;
    loop {
        let header = archive
            .get(at..at + newc::HEADER_LEN)
            .ok_or_else(|| format!("offset {at}: the archive ends inside a header"))?;
        let fields = newc::parse_fields(header).map_err(|e| format!("offset {at}: {e}"))?;
        let (mode, size, name_size) = (
            fields[newc::MODE],
            fields[newc::FILESIZE] as usize,
            fields[newc::NAMESIZE] as usize,
        );
        let name_at = at + newc::HEADER_LEN;
        let name = archive
            .get(name_at..name_at + name_size.saturating_sub(1))
            .ok_or_else(|| format!("offset {at}: the archive ends inside a name"))?;
        let name = String::from_utf8_lossy(name).into_owned();
        let data_at = align(name_at + name_size);
        let data = archive
            .get(data_at..data_at + size)
            .ok_or_else(|| format!("{name}: the archive ends inside its data"))?;
        if name == newc::TRAILER {
            return Ok(entries);
        }
        entries.push(Entry {
            name,
            mode,
            data: data.to_vec(),
        });
        at = align(data_at + size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_newc_and_aligned() {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("etc").unwrap();
        w.file("etc/x", 0o644, b"hello").unwrap();
        let out = w.finish().unwrap();
        assert!(out.starts_with(b"070701"));
        assert_eq!(out.len() % 4, 0);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("etc/x\0"));
        assert!(text.contains("hello"));
        assert!(text.contains("TRAILER!!!\0"));
        let entries = read(&out).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].name, "etc/x");
        assert_eq!(entries[1].mode, 0o100644);
        assert_eq!(entries[1].data, b"hello");
        assert!(read(&out[..out.len() - 20]).is_err());
    }
}
