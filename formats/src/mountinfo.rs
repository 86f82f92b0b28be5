//! `/proc/self/mountinfo`, as the kernel writes it (see `proc(5)`): one
//! mount a line,
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! ```
//!
//! mount id, parent id, `major:minor`, root, mount point, options, optional
//! fields up to `-`, file system type, source, super options. In paths the
//! kernel escapes space, tab, newline and backslash as `\040`, `\011`,
//! `\012` and `\134`; they are decoded here. Takes the text, does no I/O.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The device, `major:minor`.
    pub dev: String,
    /// The directory of the file system that is mounted (decoded).
    pub root: PathBuf,
    /// Where it is mounted (decoded).
    pub mount_point: PathBuf,
    pub fstype: String,
    /// The device or name it was mounted from (decoded).
    pub source: String,
}

/// Decodes the kernel's octal escapes (`\040` and the like); anything else
/// is kept as it is.
pub fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| {
            bytes[i] == b'\\' && d[0] <= b'3' && d.iter().all(|c| (b'0'..=b'7').contains(c))
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

fn path(field: &str) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape(field)))
}

/// Parses one line; `None` for a line that is not a mount.
pub fn parse_line(line: &str) -> Option<MountInfo> {
    let fields: Vec<&str> = line.split(' ').filter(|f| !f.is_empty()).collect();
    let separator = fields.iter().skip(6).position(|f| *f == "-")? + 6;
    let after = fields.get(separator + 1..separator + 3)?;
    Some(MountInfo {
        dev: fields.get(2)?.to_string(),
        root: path(fields.get(3)?),
        mount_point: path(fields.get(4)?),
        fstype: after[0].to_string(),
        source: String::from_utf8_lossy(&unescape(after[1])).into_owned(),
    })
}

/// Every mount in the text of a `mountinfo` file, in its order.
pub fn parse(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_line).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn reads_the_kernel_example() {
        let m = parse_line(
            "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue",
        )
        .unwrap();
        assert_eq!(m.dev, "98:0");
        assert_eq!(m.root, Path::new("/mnt1"));
        assert_eq!(m.mount_point, Path::new("/mnt2"));
        assert_eq!(m.fstype, "ext3");
        assert_eq!(m.source, "/dev/root");
    }

    #[test]
    fn decodes_escaped_mount_points() {
        let text = "\
22 1 259:2 / /run/my\\040disk rw shared:1 - ext4 /dev/nvme0n1p2 rw
23 1 259:3 / /a\\011b\\012c\\134d rw - ext4 /dev/nvme0n1p3 rw
24 1 259:4 / /not\\999octal\\ rw - ext4 /dev/x\\040y rw
garbage line
25 1 0:5 / /no/optional/fields rw - tmpfs tmpfs rw
";
        let mounts = parse(text);
        let points: Vec<&Path> = mounts.iter().map(|m| m.mount_point.as_path()).collect();
        assert_eq!(
            points,
            [
                Path::new("/run/my disk"),
                Path::new("/a\tb\nc\\d"),
                Path::new("/not\\999octal\\"),
                Path::new("/no/optional/fields"),
            ]
        );
        assert_eq!(mounts[2].source, "/dev/x y");
        assert_eq!(mounts[3].fstype, "tmpfs");
        assert_eq!(unescape("\\377"), [0xff]);
        assert_eq!(unescape("\\400"), b"\\400");
    }

    #[test]
    fn reads_this_machine() {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mounts = parse(&text);
        assert_eq!(mounts.len(), text.lines().count());
        assert!(mounts.iter().any(|m| m.mount_point == Path::new("/")));
    }
}
