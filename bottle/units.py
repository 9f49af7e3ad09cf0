"""Sizes and ages as users write them (`500M`, `20G`, `12h`, `30d`), and as we print them."""

from __future__ import annotations

import math
import re

from bottle.errors import BottleError

_SIZES = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_AGES = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$")
_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw]?)$")


def parse_size(text: str) -> int:
    """`500M` -> bytes. Negative, infinite and unknown amounts are refused."""
    m = _SIZE.match(text.strip().lower())
    value = float(m.group(1)) * _SIZES[m.group(2)] if m else math.nan
    if not math.isfinite(value) or value > 2**62:
        raise BottleError(f"bad size {text!r} (a whole amount such as 500M or 20G)")
    return int(value)


def parse_age(text: str) -> float:
    """`12h` -> seconds (a bare number is days). Negative or infinite ages are refused."""
    m = _AGE.match(text.strip().lower())
    value = float(m.group(1)) * _AGES[m.group(2) or "d"] if m else math.nan
    if not math.isfinite(value) or value > 100 * 365 * 86400:
        raise BottleError(f"bad age {text!r} (an amount such as 12h, 30d or 2w)")
    return value


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
