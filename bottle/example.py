"""The bundled example agent's build context, made ready to build on this machine.

The image is FROM scratch, so its context needs a statically linked busybox: the
host's (Debian: busybox-static). The context is assembled once per content in the
cache root and renamed into place, so a build never sees half of it.
"""

from __future__ import annotations

import struct
from pathlib import Path

from bottle.errors import BottleError
from cache.store import Store

_PT_INTERP = 3
_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def is_static_elf(path: Path) -> bool:
    """An ELF executable with no program interpreter (so it runs in an empty image)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        endian = "<" if head[5] == 1 else ">"
        phoff, = struct.unpack_from(endian + "Q", head, 32)
        phentsize, phnum = struct.unpack_from(endian + "HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(
        struct.unpack_from(endian + "I", table, i * phentsize)[0] != _PT_INTERP
        for i in range(phnum)
    )


def find_static_busybox() -> Path:
    from bottle.tools._proc import which

    found = [which("busybox"), *_CANDIDATES]
    for c in found:
        if c and Path(c).is_file() and is_static_elf(Path(c)):
            return Path(c).resolve()
    raise BottleError(
        "the example agent needs a statically linked busybox: apt-get install busybox-static"
    )


def example_source() -> Path:
    """The example agent's files: shipped in the wheel as bottle_examples, or in a checkout."""
    try:
        import bottle_examples

        return Path(bottle_examples.__file__).parent / "agent"
    except ImportError:  # a checkout on sys.path (e.g. an editable install in compat mode)
        return Path(__file__).resolve().parent.parent / "examples" / "agent"


def example_context(store: Store, source: Path | None = None) -> Path:
    """`source` (Dockerfile, claude, .dockerignore) plus busybox, as a context dir (made
    once per content in the cache, checked on every use)."""
    source = source or example_source()
    files = {p.name: (p.read_bytes(), 0o644) for p in sorted(source.iterdir())
             if p.is_file() and p.name != "__init__.py"}
    files["busybox"] = (find_static_busybox().read_bytes(), 0o755)
    if "claude" in files:  # a wheel install may not keep the exec bit
        files["claude"] = (files["claude"][0], 0o755)
    return store.assembled("example", files)
