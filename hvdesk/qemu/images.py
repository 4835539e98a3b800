"""Disk images through qemu-img: create, inspect, resize. Never guesses a format from a file name."""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from hvdesk.core.errors import DiskError, DiskInUseError, NotFoundError
from hvdesk.qemu.binaries import find_qemu_img

_LOCKED = re.compile(r'Failed to get (shared )?"\w+" lock')
# Formats QEMU writes and boots from; "raw" covers .img/.iso; the rest are other hypervisors' own.
KNOWN_FORMATS = ("qcow2", "raw", "vmdk", "vdi", "vhdx", "vpc", "qed", "qcow", "parallels", "dmg")


@dataclass(frozen=True)
class ImageInfo:
    path: Path
    format: str
    virtual_size: int  # bytes the guest sees
    actual_size: int  # bytes used on the host
    backing_file: str | None = None

    def to_json(self) -> dict:
        return {"path": str(self.path), "format": self.format, "virtual_size": self.virtual_size,
                "actual_size": self.actual_size, "backing_file": self.backing_file}


async def _run(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(find_qemu_img()), *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


def _failure(path: Path, action: str, stderr: str) -> DiskError:
    message = " ".join(stderr.replace("qemu-img: ", "").replace(f"{path}: ", "").split())
    if _LOCKED.search(stderr):
        return DiskInUseError(f"disk image {path} is in use by another process (a running VM?): "
                              "stop it first or choose another image")
    return DiskError(f"cannot {action} {path}: {message}", message)


async def create(path: Path, size_bytes: int, fmt: str = "qcow2") -> ImageInfo:
    """A new thin image, private to the user; refuses to overwrite an existing file."""
    if size_bytes < 1024 * 1024:
        raise DiskError(f"disk size {size_bytes} B is too small (at least 1 MiB)")
    if path.exists():
        raise DiskError(f"{path} already exists; not overwriting it")
    if not path.parent.is_dir():
        raise NotFoundError(f"folder {path.parent} does not exist")
    # Create the file 0600 first so the image is never readable by others, not even for a moment.
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    code, _, err = await _run("create", "-q", "-f", fmt, str(path), str(size_bytes))
    if code != 0:
        path.unlink(missing_ok=True)
        raise _failure(path, "create", err)
    return await info(path)


async def info(path: Path, *, force_share: bool = False) -> ImageInfo:
    """Format and sizes as qemu-img detects them; DiskInUseError if a running QEMU holds its lock.

    `force_share` reads an image that a running VM holds (for display only: never to attach it).
    """
    if not path.exists():
        raise NotFoundError(f"disk image {path} does not exist")
    if not path.is_file() and not path.is_block_device():
        raise DiskError(f"{path} is not a file")
    code, out, err = await _run("info", "--output=json", *(["-U"] if force_share else []), str(path))
    if code != 0:
        raise _failure(path, "read", err)
    data = json.loads(out)
    return ImageInfo(path=path, format=data["format"], virtual_size=int(data["virtual-size"]),
                     actual_size=int(data.get("actual-size", 0)),
                     backing_file=data.get("full-backing-filename") or data.get("backing-filename"))


async def resize(path: Path, new_size_bytes: int) -> ImageInfo:
    """Grow an image (shrinking loses data, so it is refused)."""
    current = await info(path)
    if new_size_bytes < current.virtual_size:
        raise DiskError(f"cannot shrink {path} from {current.virtual_size} to {new_size_bytes} bytes; "
                        "shrinking would destroy data")
    if new_size_bytes == current.virtual_size:
        return current
    code, _, err = await _run("resize", "-f", current.format, str(path), str(new_size_bytes))
    if code != 0:
        raise _failure(path, "resize", err)
    return await info(path)
