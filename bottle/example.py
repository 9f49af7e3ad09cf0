"""The bundled example agent's build context, made ready to build on this machine.

The image is FROM scratch, so its context needs a statically linked busybox: the
host's (Debian: busybox-static). The context is assembled once per content in the
cache root and renamed into place, so a build never sees half of it.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from pathlib import Path

import xxhash

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
    found = [shutil.which("busybox"), *_CANDIDATES]
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
    """`source` (Dockerfile, claude, .dockerignore) plus busybox, as a context dir."""
    source = source or example_source()
    busybox = find_static_busybox()
    files = sorted(p for p in source.iterdir() if p.is_file() and p.name != "__init__.py")
    h = xxhash.xxh64()
    for p in [*files, busybox]:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    target = store.area("example-agent") / h.hexdigest()
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Assembled in the store's tmp area (swept if we are killed), then renamed in.
    store.area("tmp").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"example-agent.{os.getpid()}.",
                                 dir=store.area("tmp")))
    try:
        for p in files:
            shutil.copy2(p, work / p.name)
        shutil.copy2(busybox, work / "busybox")
        for exe in ("claude", "busybox"):  # a wheel install may not keep the exec bit
            os.chmod(work / exe, 0o755)
        os.rename(work, target)
    except FileExistsError:
        shutil.rmtree(work, ignore_errors=True)  # another process made the same one
    except OSError as err:
        shutil.rmtree(work, ignore_errors=True)
        if not target.is_dir():
            raise BottleError(f"cannot prepare the example agent context: {err}") from None
    return target
