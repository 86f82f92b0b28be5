"""Minimal SWUpdate .swu writer: newc cpio ("070701"), sw-description first.

Usage as a module: make_swu(path, sw_description_text, [(name, bytes), ...])
"""
import sys


def _entry(name: str, data: bytes, ino: int, mode: int = 0o100644, mtime: int = 0) -> bytes:
    nameb = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, mtime, len(data), 0, 0, 0, 0, len(nameb), 0]
    hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
    out = hdr + nameb
    out += b"\0" * ((4 - len(out) % 4) % 4)
    out += data
    out += b"\0" * ((4 - len(data) % 4) % 4)
    return out


def make_swu(path: str, sw_description: str, files: list[tuple[str, bytes]]) -> int:
    blob = _entry("sw-description", sw_description.encode(), 1)
    for i, (name, data) in enumerate(files, start=2):
        blob += _entry(name, data, i)
    blob += _entry("TRAILER!!!", b"", 0, mode=0)
    blob += b"\0" * ((512 - len(blob) % 512) % 512)  # cpio pads to 512 like GNU cpio
    with open(path, "wb") as f:
        f.write(blob)
    return len(blob)


if __name__ == "__main__":
    desc = """software =
{
    version = "%s";
    description = "reimage test bundle";
    hardware-compatibility = [ "1.0" ];
    images: ( { filename = "payload.bin"; type = "raw"; device = "/dev/null"; } );
};
""" % (sys.argv[2] if len(sys.argv) > 2 else "2.0.0")
    n = make_swu(sys.argv[1], desc, [("payload.bin", b"hello reimage\n" * 100)])
    print(n)
