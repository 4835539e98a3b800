"""Sizes as people type them ("20G", "512M", "1.5GiB", "1073741824") and as we print them."""

from __future__ import annotations

import re

from hvdesk.core.errors import ConfigError

_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str, *, what: str = "size", default_unit: str = "") -> int:
    """Bytes from a size string; suffixes are binary (G = GiB) as in qemu-img.

    `default_unit` applies to bare numbers, e.g. "M" so that `--memory 512` means MiB.
    """
    match = _SIZE.match(str(text))
    if not match:
        raise ConfigError(
            f"invalid {what} {text!r}: use a number with an optional unit, e.g. 512M, 20G or 1.5T"
        )
    number, unit = match.groups()
    unit = unit.upper() or default_unit.upper()
    value = float(number) * _UNITS[unit]
    if value != int(value):
        raise ConfigError(f"invalid {what} {text!r}: not a whole number of bytes")
    return int(value)


def format_size(num_bytes: int) -> str:
    """Short human form: 512 MiB, 20 GiB, 1.5 GiB."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if num_bytes >= factor:
            value = num_bytes / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{num_bytes} B"
