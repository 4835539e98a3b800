"""What a VM may be called: safe as a folder name on every OS, readable in a list."""

from __future__ import annotations

import re

from hvdesk.core.errors import ConfigError

MAX_NAME_LENGTH = 64
_ALLOWED = re.compile(r"[A-Za-z0-9 ._-]+")  # used with fullmatch: `$` would let a final newline through
# Windows refuses these as file names whatever the extension.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


def validate_name(name: str) -> str:
    """Return the name unchanged if valid, else raise ConfigError saying what is wrong."""
    if not isinstance(name, str) or not name:
        raise ConfigError("invalid VM name: it is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise ConfigError(f"invalid VM name {name!r}: longer than {MAX_NAME_LENGTH} characters")
    if not _ALLOWED.fullmatch(name):
        bad = sorted({c for c in name if not _ALLOWED.fullmatch(c)})
        raise ConfigError(
            f"invalid VM name {name!r}: {''.join(bad)!r} not allowed "
            "(use letters, digits, space, '.', '_' and '-')"
        )
    if name[0] in ". ":
        raise ConfigError(f"invalid VM name {name!r}: must not start with '.' or a space")
    if name.endswith((" ", ".")):
        raise ConfigError(f"invalid VM name {name!r}: must not end with '.' or a space")
    if name.split(".")[0].lower() in _RESERVED:
        raise ConfigError(f"invalid VM name {name!r}: reserved by Windows")
    return name


def name_key(name: str) -> str:
    """Names are unique case-insensitively (folders on macOS and Windows are)."""
    return name.casefold()
