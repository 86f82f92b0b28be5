//! What the initramfs needs to know about an ELF file: its class,
//! byte order and machine, its interpreter (`PT_INTERP`: none means static)
//! and the libraries it asks for (`DT_NEEDED`, with `DT_RPATH` and
//! `DT_RUNPATH`). 32- and 64-bit, either byte order: the `object` crate
//! reads them. A parser: bytes in, no I/O.

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use object::{Endianness, FileKind};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    pub is_64: bool,
    pub big_endian: bool,
    /// `e_machine` (`EM_X86_64`, `EM_AARCH64`, …).
    pub machine: u16,
    /// The dynamic loader it names; `None` for a static executable.
    pub interpreter: Option<String>,
    pub needed: Vec<String>,
    /// Search paths from `DT_RPATH`, `:`-separated entries split.
    pub rpath: Vec<String>,
    pub runpath: Vec<String>,
}

impl ElfInfo {
    /// Whether the dynamic loader would load `other` into this program:
    /// same class, byte order and machine.
    pub fn compatible(&self, other: &ElfInfo) -> bool {
        (self.is_64, self.big_endian, self.machine)
            == (other.is_64, other.big_endian, other.machine)
    }
}

impl fmt::Display for ElfInfo {
    /// `64-bit little-endian ELF for machine 62`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-bit {}-endian ELF for machine {}",
            if self.is_64 { 64 } else { 32 },
            if self.big_endian { "big" } else { "little" },
            self.machine
        )
    }
}

/// Reads the facts above from an ELF file's bytes.
pub fn parse(data: &[u8]) -> Result<ElfInfo, String> {
    let parsed = match FileKind::parse(data) {
        Ok(FileKind::Elf32) => parse_as::<elf::FileHeader32<Endianness>>(data),
        Ok(FileKind::Elf64) => parse_as::<elf::FileHeader64<Endianness>>(data),
        _ => return Err("not an ELF file".into()),
    };
    parsed.map_err(|e| format!("a malformed ELF file: {e}"))
}

fn parse_as<H: FileHeader<Endian = Endianness>>(data: &[u8]) -> object::Result<ElfInfo> {
    let header = H::parse(data)?;
    let endian = header.endian()?;
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let mut interpreter = None;
    for ph in header.program_headers(endian, data)? {
        if let Some(path) = ph.interpreter(endian, data)? {
            interpreter = Some(text(path));
        }
    }
    let (mut needed, mut rpath, mut runpath) = (Vec::new(), Vec::new(), Vec::new());
    let sections = header.sections(endian, data)?;
    let table = sections.dynamic_table(endian, data)?;
    for d in &table {
        let tag @ (elf::DT_NEEDED | elf::DT_RPATH | elf::DT_RUNPATH) = d.tag else {
            continue;
        };
        let value = text(table.string(d)?);
        let paths = value.split(':').filter(|p| !p.is_empty()).map(String::from);
        match tag {
            elf::DT_NEEDED => needed.push(value.clone()),
            elf::DT_RPATH => rpath.extend(paths),
            _ => runpath.extend(paths),
        }
    }
    Ok(ElfInfo {
        is_64: header.is_class_64(),
        big_endian: header.is_big_endian(),
        machine: header.e_machine(endian),
        interpreter,
        needed,
        rpath,
        runpath,
    })
}

/// A minimal ELF executable (header, program headers, no sections) for
/// tests: a `PT_LOAD` and, with `interpreter`, a `PT_INTERP`.
#[cfg(test)]
pub(crate) fn craft(
    is_64: bool,
    big_endian: bool,
    machine: u16,
    interpreter: Option<&str>,
) -> Vec<u8> {
    let put = |out: &mut Vec<u8>, value: u64, size: usize| {
        let bytes = value.to_le_bytes();
        let mut field = bytes[..size].to_vec();
        if big_endian {
            field.reverse();
        }
        out.extend_from_slice(&field);
    };
    let word = if is_64 { 8 } else { 4 };
    let (ehsize, phentsize) = if is_64 { (64, 56) } else { (52, 32) };
    let phnum = 1 + usize::from(interpreter.is_some());
    let interp_at = ehsize + phnum * phentsize;
    let interp = interpreter.map(|i| format!("{i}\0")).unwrap_or_default();
    let total = (interp_at + interp.len()) as u64;
    let mut out = b"\x7fELF".to_vec();
    out.extend_from_slice(&[if is_64 { 2 } else { 1 }, if big_endian { 2 } else { 1 }, 1]);
    out.resize(16, 0);
    put(&mut out, 2, 2); // e_type: ET_EXEC
    put(&mut out, u64::from(machine), 2);
    put(&mut out, 1, 4); // e_version
    put(&mut out, 0x1000, word); // e_entry
    put(&mut out, ehsize as u64, word); // e_phoff
    put(&mut out, 0, word); // e_shoff
    put(&mut out, 0, 4); // e_flags
    put(&mut out, ehsize as u64, 2);
    put(&mut out, phentsize as u64, 2);
    put(&mut out, phnum as u64, 2);
    put(&mut out, if is_64 { 64 } else { 40 }, 2); // e_shentsize
    put(&mut out, 0, 2); // e_shnum
    put(&mut out, 0, 2); // e_shstrndx
    let segment = |out: &mut Vec<u8>, p_type: u32, offset: u64, size: u64| {
        put(out, u64::from(p_type), 4);
        if is_64 {
            put(out, 4, 4); // p_flags
        }
        for value in [offset, 0, 0, size, size] {
            put(out, value, word); // offset, vaddr, paddr, filesz, memsz
        }
        if !is_64 {
            put(out, 4, 4); // p_flags
        }
        put(out, 1, word); // p_align
    };
    segment(&mut out, elf::PT_LOAD, 0, total);
    if interpreter.is_some() {
        segment(
            &mut out,
            elf::PT_INTERP,
            interp_at as u64,
            interp.len() as u64,
        );
    }
    out.extend_from_slice(interp.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_all_four_classes_and_byte_orders() {
        for is_64 in [false, true] {
            for big_endian in [false, true] {
                for interpreter in [None, Some("/lib/ld-linux-armhf.so.3")] {
                    let data = craft(is_64, big_endian, elf::EM_ARM, interpreter);
                    let info = parse(&data)
                        .unwrap_or_else(|e| panic!("64-bit {is_64}, big-endian {big_endian}: {e}"));
                    assert_eq!((info.is_64, info.big_endian), (is_64, big_endian));
                    assert_eq!(info.machine, elf::EM_ARM);
                    assert_eq!(info.interpreter.as_deref(), interpreter);
                    assert!(info.needed.is_empty());
                }
            }
        }
    }

    #[test]
    fn reads_needed_libraries_of_a_real_program() {
        let ls = std::fs::read("/bin/ls").unwrap();
        let info = parse(&ls).unwrap();
        assert!(info.interpreter.is_some());
        assert!(
            info.needed.iter().any(|n| n.starts_with("libc.so")),
            "{info:?}"
        );
    }

    #[test]
    fn refuses_what_is_not_elf() {
        assert!(parse(b"#!/bin/sh\n").is_err());
        let mut truncated = craft(true, false, elf::EM_X86_64, Some("/lib/ld.so"));
        truncated.truncate(70);
        assert!(parse(&truncated).is_err());
    }
}
