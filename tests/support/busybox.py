"""A 2 MB test image that needs no registry: Debian's static busybox (busybox-static)."""

from __future__ import annotations

import io
import struct
import tarfile
from pathlib import Path

from tests.support.netns_cleanup import NetnsError

BUSYBOX = Path("/bin/busybox")


def elf_is_static(path: Path) -> bool:
    """No PT_INTERP program header: the binary runs in an image without a libc."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


def busybox_tar() -> bytes:
    """A 2 MB image file system: Debian's static busybox (busybox-static) with sh, httpd,
    sleep, nc and wget; `docker import` makes it an image without any registry."""
    if not BUSYBOX.exists() or not elf_is_static(BUSYBOX):
        raise NetnsError(f"{BUSYBOX} is missing or not static: apt-get install busybox-static "
                         "(bash .ci/provision installs it)")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for d in ("bin", "www", "tmp"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, "bin/busybox")
        for applet in ("sh", "httpd", "sleep", "nc", "wget", "cat", "echo"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    return out.getvalue()
