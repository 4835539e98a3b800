"""Facts about the host's QEMU worth remembering between runs (its version, whether an
accelerator really runs guests): keyed by the binary's path, size and mtime and the host kernel,
so an upgrade of either asks again. A cache that cannot be read or written only costs a re-check."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

CACHE_FILE = "qemu-host.json"
FORMAT = 1


def kernel_release() -> str:
    """platform.release(), without the platform module's import where os.uname() says it (POSIX)."""
    if hasattr(os, "uname"):
        return os.uname().release
    import platform

    return platform.release()


def binary_key(binary: Path, topic: str) -> str:
    try:
        stat = binary.stat()
        identity = f"{binary}:{stat.st_size}:{int(stat.st_mtime)}"
    except OSError:
        identity = str(binary)
    return f"v{FORMAT}|{topic}|{identity}|{kernel_release()}"


def known(cache_dir: Path | None, key: str) -> bool:
    """Whether `key` is already remembered (so asking costs no subprocess)."""
    return cache_dir is not None and isinstance(_entries(cache_dir / CACHE_FILE).get(key), dict)


def remembered(cache_dir: Path | None, key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The cached value for `key`, else `compute()` (stored for next time)."""
    if cache_dir is None:
        return compute()
    cache_file = cache_dir / CACHE_FILE
    cached = _entries(cache_file)
    entry = cached.get(key)
    if isinstance(entry, dict):
        return entry
    value = compute()
    cached[key] = value
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(f".{CACHE_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cached, indent=1))
        os.replace(tmp, cache_file)
    except OSError:
        pass
    return value


def _entries(cache_file: Path) -> dict[str, Any]:
    """The file's entries; none if it is missing, unreadable, or not the JSON object this module writes."""
    try:
        data = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
