"""The real smolvm parser, for checking argv without running anything.

The `smolmachines` wheel ships smolvm as `smol/smol-vmm`. With `--help` placed just
before the `--` separator (or at the end), an argv the parser rejects exits 2 and one
it accepts prints help and exits 0. More parsers (other versions' smol-vmm) can be
named in $SMOLVM_PARSERS, separated by the path separator.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

from bottle.tools.smolvm import Dialect


def parsers() -> list[Path]:
    found: list[Path] = []
    spec = importlib.util.find_spec("smol")
    if spec and spec.submodule_search_locations:
        binary = Path(next(iter(spec.submodule_search_locations))) / "smol-vmm"
        if binary.is_file():
            found.append(binary)
    found += [Path(p) for p in os.environ.get("SMOLVM_PARSERS", "").split(os.pathsep) if p]
    return found


def dialect_of(parser: Path) -> Dialect:
    r = subprocess.run([str(parser), "--version"], capture_output=True, text=True, timeout=60)
    return Dialect.parse(r.stdout)


def check(parser: Path, argv: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    """Run `argv` (starting with "smolvm") through the real parser in help mode."""
    args = list(argv[1:])
    at = args.index("--") if "--" in args else len(args)
    args.insert(at, "--help")
    env = {**os.environ, "HOME": str(tmp), "XDG_DATA_HOME": str(tmp), "XDG_CACHE_HOME": str(tmp)}
    return subprocess.run([str(parser), *args], capture_output=True, text=True, timeout=60,
                          env=env)
