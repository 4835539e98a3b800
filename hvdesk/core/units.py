"""Sizes as people type them ("20G", "512M", "1.5GiB", "4096B") and as we print them."""

from __future__ import annotations

import re

from hvdesk.core.errors import ConfigError

_UNITS = {"B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
# A number, then nothing (the caller's default unit), B (bytes), or K/M/G/T with an optional B or iB.
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(?:([KMGT])(?:I?B)?|(B))?\s*", re.IGNORECASE | re.ASCII)


def parse_size(text: str, *, what: str = "size", default_unit: str = "B") -> int:
    """Bytes from a size string; suffixes are binary (G = GiB) as in qemu-img, and B is bytes.

    `default_unit` applies to bare numbers only, e.g. "M" so that `--memory 512` means MiB while
    `--memory 512B` means 512 bytes.
    """
    match = _SIZE.fullmatch(str(text))
    if not match:
        raise ConfigError(
            f"invalid {what} {text!r}: use a number with an optional unit, e.g. 512M, 20G or 1.5T"
        )
    from fractions import Fraction  # (with decimal) only for sizes typed in: `list` prints sizes, parses none

    number, multiple, byte = match.groups()
    unit = (multiple or byte or default_unit or "B").upper()
    value = Fraction(number) * _UNITS[unit]  # exact: a float would round sizes past 2**53
    if value.denominator != 1:
        raise ConfigError(f"invalid {what} {text!r}: not a whole number of bytes")
    return int(value)


_BINARY = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))


def format_size(num_bytes: int) -> str:
    """A size someone chose (memory, a disk's size), exactly: 512 MiB, 20 GiB, 1.5 GiB, and
    4194303 MiB rather than a "4.0 TiB" it is not. The largest unit that shows it whole or to one
    exact decimal."""
    for unit, factor in _BINARY:
        if num_bytes >= factor and (num_bytes * 10) % factor == 0:
            tenths = num_bytes * 10 // factor  # exact, in integers
            return f"{tenths // 10} {unit}" if tenths % 10 == 0 else f"{tenths // 10}.{tenths % 10} {unit}"
    return f"{num_bytes} B"


def format_approx(num_bytes: float) -> str:
    """A measured amount (memory in use, a disk's allocation), to one decimal: 1.3 GiB."""
    for unit, factor in _BINARY:
        if num_bytes >= factor:
            value = num_bytes / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{num_bytes:.0f} B"
