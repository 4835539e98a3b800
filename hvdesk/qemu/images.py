"""Disk images through qemu-img: create, inspect, resize. Never guesses a format from a file name."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hvdesk.core.errors import DiskError, DiskInUseError, NotFoundError
from hvdesk.qemu.binaries import find_qemu_img

_LOCKED = re.compile(r'Failed to get (shared )?"\w+" lock')
# Formats QEMU writes and boots from; "raw" covers .img/.iso; the rest are other hypervisors' own.
KNOWN_FORMATS = ("qcow2", "raw", "vmdk", "vdi", "vhdx", "vpc", "qed", "qcow", "parallels", "dmg")


# Formats whose images may name a backing image (QEMU's generic COW formats).
COW_FORMATS = ("qcow2", "qed", "qcow", "vmdk")
MAX_CHAIN = 16  # backing images below one disk; deeper chains are refused, not followed
_PROTOCOL = re.compile(r"^(json:|[A-Za-z][A-Za-z0-9+.-]+:)")  # nbd://, http:, json:{...} (not a file)


@dataclass(frozen=True)
class ImageInfo:
    path: Path
    format: str
    virtual_size: int  # bytes the guest sees
    actual_size: int  # bytes used on the host
    backing_file: str | None = None  # as its header names it, resolved against the image's folder
    backing_format: str | None = None  # as its header names it (None: not said)
    data_file: str | None = None  # a qcow2 external data file
    extents: tuple[str, ...] = ()  # a VMDK's extent files, other than itself

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "virtual_size": self.virtual_size,
                "actual_size": self.actual_size, "backing_file": self.backing_file}


async def _run(*args: str) -> tuple[int, str, str]:
    import asyncio  # here: `list` and `info` read images without an event loop (see info_now)

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
    code, out, err = await _run(*_info_args(path, force_share))
    return _info_result(path, code, out, err)


def info_now(path: Path, fmt: str) -> ImageInfo:
    """Format and sizes of an image that a VM may be using, for showing only, without an event
    loop: a qcow2 or raw image of the `fmt` its VM declares is read from its header and the file
    system (well under a millisecond); any other is asked of qemu-img, with force-share."""
    quick = _sizes_from_header(path, fmt)
    if quick is not None:
        return ImageInfo(path=path, format=fmt, virtual_size=quick[0], actual_size=quick[1])
    args = _info_args(path, force_share=True)
    done = subprocess.run([str(find_qemu_img()), *args], stdin=subprocess.DEVNULL, capture_output=True, check=False)
    out, err = (done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))
    return _info_result(path, done.returncode, out, err)


def _info_args(path: Path, force_share: bool) -> list[str]:
    if not path.exists():
        raise NotFoundError(f"disk image {path} does not exist")
    if not path.is_file() and not path.is_block_device():
        raise DiskError(f"{path} is not a file")
    return ["info", "--output=json", *(["-U"] if force_share else []), str(path)]


def _info_result(path: Path, code: int, out: str, err: str) -> ImageInfo:
    if code != 0:
        raise _failure(path, "read", err)
    return _parse_info(path, json.loads(out))


def _sizes_from_header(path: Path, fmt: str) -> tuple[int, int] | None:
    """(virtual, allocated) bytes as `qemu-img info` reports them for a plain qcow2 or raw file;
    None where only qemu-img knows (other formats, block devices, a header that is not qcow2's)."""
    try:
        status = os.stat(path)
        if not stat.S_ISREG(status.st_mode):
            return None
        allocated = status.st_blocks * 512  # qemu-img's "actual-size" for a file
        if fmt == "raw":
            return status.st_size, allocated
        if fmt != "qcow2":
            return None
        with open(path, "rb") as handle:
            header = handle.read(32)
    except OSError:
        return None
    if len(header) < 32 or header[:4] != b"QFI\xfb":
        return None
    return struct.unpack(">Q", header[24:32])[0], allocated


def _parse_info(path: Path, data: dict[str, Any]) -> ImageInfo:  # qemu-img's JSON
    backing = data.get("backing-filename")
    if backing is not None and not _PROTOCOL.match(backing):
        backing = str(path.parent / backing) if not Path(backing).is_absolute() else backing
    specific = (data.get("format-specific") or {}).get("data") or {}
    extents = tuple(str(path.parent / e["filename"]) for e in specific.get("extents", [])
                    if isinstance(e, dict) and e.get("filename") and (path.parent / e["filename"]) != path)
    return ImageInfo(path=path, format=data["format"], virtual_size=int(data["virtual-size"]),
                     actual_size=int(data.get("actual-size", 0)), backing_file=backing,
                     backing_format=data.get("backing-filename-format"), data_file=specific.get("data-file"),
                     extents=extents)


async def backing_chain(path: Path) -> list[ImageInfo]:
    """The image and every image below it, top first. Headers are read one at a time (qemu-img
    never follows a chain by itself here), so a hostile header cannot make it open a network
    address or loop; each backing image is read in the format its parent's header declares."""
    layers = [await info(path)]  # the image itself must be free: DiskInUseError if a VM writes to it
    seen = {os.path.realpath(path)}
    while (backing := layers[-1].backing_file) is not None:
        above = layers[-1].path
        if _PROTOCOL.match(backing):
            raise DiskError(f"{above} is backed by {backing!r}, which is not a local file; hvdesk does not open it")
        if os.path.realpath(backing) in seen:
            raise DiskError(f"the backing chain of {path} loops back to {backing}")
        if len(layers) > MAX_CHAIN:
            raise DiskError(f"the backing chain of {path} is deeper than {MAX_CHAIN} images")
        seen.add(os.path.realpath(backing))
        try:
            layer = await info(Path(backing), force_share=True)  # read-only below: several VMs may share it
        except NotFoundError:
            raise NotFoundError(f"{above} is backed by {backing}, which does not exist") from None
        declared = layers[-1].backing_format
        if declared is not None and declared != layer.format:
            layer = dataclasses.replace(layer, format=declared, backing_file=None, backing_format=None)
        layers.append(layer)
    return layers


def unsupported_references(image: ImageInfo) -> str | None:
    """Why hvdesk will not attach `image` because of files it names besides a backing image, or None.
    A qcow2 external data file and VMDK extents outside the image's own folder are read as disk
    contents by QEMU: the way for a crafted image to show the guest a host file."""
    if image.data_file is not None:
        return (f"{image.path} keeps its data in an external file ({image.data_file}); "
                "hvdesk does not attach such images")
    for extent in image.extents:
        if Path(extent).parent != image.path.parent:
            return f"{image.path} reads part of its data from {extent}, outside its folder; hvdesk does not attach it"
    return None


def qcow2_data_file(path: Path) -> str | None:
    """The external data file a qcow2 header names (None: none, or not a qcow2 image). Read in
    Python, in well under a millisecond: a start re-checks every qcow2 disk this way."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(4096)
    except OSError:
        return None
    if len(header) < 104 or header[:4] != b"QFI\xfb" or struct.unpack(">I", header[4:8])[0] < 3:
        return None
    offset = struct.unpack(">I", header[100:104])[0]  # header_length: extensions follow it
    while offset + 8 <= len(header):
        kind, length = struct.unpack(">II", header[offset:offset + 8])
        if kind == 0:
            return None
        if kind == 0x44415441:  # "DATA": external data file name
            return header[offset + 8:offset + 8 + length].decode("utf-8", errors="replace")
        offset += 8 + (length + 7) // 8 * 8
    return None


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


def pinned_spec(path: Path, fmt: str, backing: list[tuple[Path, str]]) -> str:
    """A `json:` image name that opens exactly `path` in `fmt` over the images `backing` (top
    first, each with its format), as a VM's command line pins them: qemu-img then reads no
    backing image an image's header names."""
    layers = [(path, fmt), *backing]

    def node(i: int) -> dict[str, Any]:
        layer_path, layer_format = layers[i]
        spec: dict[str, Any] = {"driver": layer_format, "file": {"driver": "file", "filename": str(layer_path)}}
        if layer_format in COW_FORMATS:
            spec["backing"] = node(i + 1) if i + 1 < len(layers) else None
        return spec

    return "json:" + json.dumps(node(0))


def _new_private_file(path: Path) -> None:
    """Create `path` 0600 (refusing an existing file), so an image is never readable by others."""
    if not path.parent.is_dir():
        raise NotFoundError(f"folder {path.parent} does not exist")
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        raise DiskError(f"{path} already exists; not overwriting it") from None


async def create_overlay(path: Path, backing_name: str, backing_format: str, size_bytes: int) -> None:
    """A new qcow2 image over a backing image, whose header names it as `backing_name` (relative
    names are read from the overlay's folder). The backing image is not opened (`-u`): hvdesk pins
    chains itself, so nothing its header names is ever followed here."""
    _new_private_file(path)
    code, _, err = await _run("create", "-q", "-f", "qcow2", "-u", "-b", backing_name, "-F", backing_format,
                              str(path), str(size_bytes))
    if code != 0:
        path.unlink(missing_ok=True)
        raise _failure(path, "create", err)


_PERCENT = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")


async def convert(source: str, what: Path, target: Path, progress: Callable[[float], None] | None = None) -> None:
    """Copy the image `source` (a pinned_spec) into a new thin qcow2 file `target`, made 0600;
    `what` names the source in errors. `progress` hears qemu-img's percentage as it goes. A
    failure removes the half-made target."""
    import asyncio

    _new_private_file(target)
    proc = await asyncio.create_subprocess_exec(
        str(find_qemu_img()), "convert", "-p", "-O", "qcow2", source, str(target),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    errors = asyncio.ensure_future(proc.stderr.read())
    try:
        pending = b""
        while chunk := await proc.stdout.read(256):
            pending += chunk
            *done, pending = pending.split(b"\r")
            for match in (_PERCENT.search(piece) for piece in done):
                if match is not None and progress is not None:
                    progress(float(match.group(1)))
        code = await proc.wait()
        err = (await errors).decode(errors="replace")
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        errors.cancel()
        target.unlink(missing_ok=True)
        raise
    if code != 0:
        target.unlink(missing_ok=True)
        raise _failure(what, "copy", err.replace(source, str(what)))
QCOW2_MAGIC = b"QFI\xfb"


def is_qcow2(path: Path) -> bool:
    """The image's header says qcow2 (the content decides, never the file name)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == QCOW2_MAGIC
    except OSError:
        return False


async def convert_format(source: Path, target: Path, source_format: str, target_format: str = "qcow2") -> None:
    """Copy the single image `source` into a new image `target` in another format (0600, never over
    an existing file): a raw disk or NVRAM made qcow2 for snapshots."""
    if target.exists():
        raise DiskError(f"{target} already exists; not overwriting it")
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    code, _, err = await _run("convert", "-q", "-f", source_format, "-O", target_format, str(source), str(target))
    if code != 0:
        target.unlink(missing_ok=True)
        raise _failure(source, f"convert to {target_format}", err)


async def snapshot_tags(path: Path, *, force_share: bool = False) -> list[str]:
    """The tags of the image's internal snapshots (qcow2)."""
    code, out, err = await _run(*_info_args(path, force_share))
    if code != 0:
        raise _failure(path, "read", err)
    return [str(s.get("name")) for s in json.loads(out).get("snapshots", []) if isinstance(s, dict)]


async def snapshot(path: Path, action: str, tag: str) -> None:
    """qemu-img snapshot on a qcow2 image the caller has checked: `action` create, apply or delete."""
    flag = {"create": "-c", "apply": "-a", "delete": "-d"}[action]
    if tag.startswith("-"):
        raise ValueError(f"snapshot tag {tag!r} would read as an option")
    # Opened as QEMU opens a disk: qcow2 by declaration and without the backing file its header
    # names (a shared image's header could name any file, or a network address).
    image = "json:" + json.dumps({"driver": "qcow2", "file": {"driver": "file", "filename": str(path)},
                                  "backing": None})
    code, _, err = await _run("snapshot", flag, tag, image)
    if code != 0:
        raise _failure(path, f"{action} snapshot {tag} of", err)
