//! systemd-boot's one-shot entry: the EFI variable `LoaderEntryOneShot` in
//! the systemd-boot vendor namespace, as Linux's efivarfs shows it: a file
//! holding a 32-bit attribute word (little endian), then the entry's name
//! in UTF-16LE ending with a NUL.

/// The file name of the variable in efivarfs.
pub const LOADER_ENTRY_ONE_SHOT: &str = "LoaderEntryOneShot-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

/// Non-volatile, boot service and runtime access.
pub const ATTRIBUTES: u32 = 0x7;

/// The efivarfs contents for a string variable.
pub fn render_string(value: &str) -> Vec<u8> {
    let mut out = ATTRIBUTES.to_le_bytes().to_vec();
    for unit in value.encode_utf16().chain([0]) {
        out.extend_from_slice(&unit.to_le_bytes());
    }
    out
}

/// The string in efivarfs contents, or None if it is not one.
pub fn parse_string(bytes: &[u8]) -> Option<String> {
    let data = bytes.get(4..)?;
    if data.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = data
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16(&units).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_in_efivarfs_layout() {
        let bytes = render_string("recovery.conf");
        assert_eq!(&bytes[..6], &[7, 0, 0, 0, b'r', 0]);
        assert_eq!(&bytes[bytes.len() - 2..], &[0, 0]);
        assert_eq!(parse_string(&bytes).as_deref(), Some("recovery.conf"));
        assert_eq!(parse_string(&[7, 0, 0]), None);
    }
}
