"""Facts about the host's QEMU worth remembering between runs (its version, whether an
accelerator really runs guests): keyed by the binary's path, size and mtime and the host kernel,
so an upgrade of either asks again. A cache that cannot be read or written only costs a re-check."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Callable

CACHE_FILE = "qemu-host.json"
FORMAT = 1


def binary_key(binary: Path, topic: str) -> str:
    try:
        stat = binary.stat()
        identity = f"{binary}:{stat.st_size}:{int(stat.st_mtime)}"
    except OSError:
        identity = str(binary)
    return f"v{FORMAT}|{topic}|{identity}|{platform.release()}"


def known(cache_dir: Path | None, key: str) -> bool:
    """Whether `key` is already remembered (so asking costs no subprocess)."""
    try:
        return cache_dir is not None and key in json.loads((cache_dir / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return False


def remembered(cache_dir: Path | None, key: str, compute: Callable[[], dict]) -> dict:
    """The cached value for `key`, else `compute()` (stored for next time)."""
    cache_file = cache_dir / CACHE_FILE if cache_dir else None
    cached: dict = {}
    if cache_file is not None:
        try:
            cached = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            cached = {}
    if key in cached:
        return cached[key]
    value = compute()
    if cache_file is not None:
        cached[key] = value
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(f".{CACHE_FILE}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cached, indent=1))
            os.replace(tmp, cache_file)
        except OSError:
            pass
    return value
