"""Recognising an installer ISO: read its volume id, a few marker files and its top-level layout
(pycdlib reads just those sectors, never the whole image), and match them against the OS presets'
patterns. The person can always override what is proposed; the reason says what was seen.

An image that cannot be read is never an error, only "not recognised" with the reason: whatever
pycdlib or the OS raises while reading it, and whatever asks for too much memory or time (iso_guard
bounds both). A path that does not exist, is not a file or cannot be opened is the user's to fix,
and stays an error."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, cast

import pycdlib
from pycdlib.dr import DirectoryRecord
from pycdlib.pycdlibexception import PyCdlibException

from hvdesk.core import osinfo_db
from hvdesk.core.errors import ConfigError, NotFoundError
from hvdesk.core.iso_guard import SECTOR, BoundedReader, describe_failure
from hvdesk.core.osinfo import OsPreset, learn, presets

MARKER_FILES = ("/.disk/info", "/.treeinfo", "/.alpine-release", "/arch/version")
LISTED_DIRS = ("/", "/sources", "/arch", "/boot", "/casper", "/isolinux")
MAX_MARKER = 64 * 1024
GENERIC = {"linux", "other"}  # tried only when no specific preset matched
ISO9660_MAGIC = b"CD001"  # every ISO 9660 volume descriptor, the first at sector 16


@dataclass(frozen=True)
class IsoFacts:
    volume_id: str
    disk_info: str
    treeinfo: str
    paths: tuple[str, ...]  # files and folders at the top levels, lower case

    def evidence(self, file_name: str) -> str:
        """What the presets' patterns are matched against, one fact per line."""
        return "\n".join([f"volume: {self.volume_id}", f"info: {self.disk_info}", f"treeinfo: {self.treeinfo}",
                          f"file: {file_name}", "file-list: " + " ".join(self.paths)])


@dataclass(frozen=True)
class Detection:
    preset: OsPreset
    reason: str


@dataclass(frozen=True)
class NotRecognised:
    reason: str  # one line: what was seen that matched nothing, or why the image could not be read


class _Facade(Protocol):
    """What we use of pycdlib's name spaces (its Rock Ridge, Joliet and ISO 9660 facades)."""

    def get_record(self, path: str, /) -> DirectoryRecord: ...

    def get_file_from_iso_fp(self, outfp: BinaryIO, path: str, /) -> None: ...

    def list_children(self, path: str, /) -> Iterator[DirectoryRecord | None]: ...


class _Spelling(Protocol):
    """How a facade spells a path (_as_is, _iso_name)."""

    def __call__(self, path: str, directory: bool = False) -> str: ...


class UnreadableIso(ConfigError):
    """The file opens, but its contents cannot be read as ISO 9660 (damaged, or not an ISO at all)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path} is not a readable ISO image: {reason}")
        self.reason = reason


def read_iso(path: Path) -> IsoFacts:
    """The facts detection needs. NotFoundError/ConfigError for the user's mistakes (no such file, a
    folder, no permission); UnreadableIso for anything wrong inside the image."""
    if not path.exists():
        raise NotFoundError(f"ISO image {path} does not exist")
    if not path.is_file():
        raise ConfigError(f"ISO image {path} is not a file")
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise ConfigError(f"ISO image {path} is not readable ({exc.strerror or exc})") from None
    with handle:
        reader = BoundedReader(handle)
        try:
            facts = _read_facts(reader) if _has_iso9660_descriptor(reader) else None
        except Exception as exc:  # anything at all: a damaged image must never crash detection
            raise UnreadableIso(path, describe_failure(exc)) from exc
    if facts is None:
        raise UnreadableIso(path, "it is not an ISO 9660 image (no volume descriptor at sector 16)")
    return facts


def _has_iso9660_descriptor(reader: BoundedReader) -> bool:
    reader.seek(16 * SECTOR)
    return reader.read(6)[1:6] == ISO9660_MAGIC


def _read_facts(reader: BoundedReader) -> IsoFacts:
    image = pycdlib.PyCdlib()
    image.open_fp(cast(BinaryIO, reader))  # pycdlib needs only read, seek and tell
    try:
        volume = image.pvd.volume_identifier.decode("ascii", errors="replace").strip(" \0")
        texts = {name: _read_text(image, name) for name in MARKER_FILES}
        paths = tuple(sorted({p for folder in LISTED_DIRS for p in _list(image, folder)}))
    finally:
        image.close()
    return IsoFacts(volume_id=volume, disk_info=texts["/.disk/info"].strip(), treeinfo=texts["/.treeinfo"],
                    paths=paths + tuple(name for name, text in texts.items() if text))


def detect(path: Path) -> Detection | NotRecognised:
    """The preset this ISO installs, with the reason; else why not (nothing matched, or the image could
    not be read). Raises only for the user's mistakes: no such file, not a file, no permission."""
    try:
        facts = read_iso(path)
    except UnreadableIso as exc:
        return NotRecognised(exc.reason)
    evidence = facts.evidence(path.name)
    specific = [p for p in presets().values() if p.id not in GENERIC]
    generic = [p for p in presets().values() if p.id in GENERIC]
    # Each preset lists its strongest clue first: try everyone's first clue, then everyone's second...
    for group in (specific, generic):
        if group is generic and (known := osinfo_db.lookup(facts.volume_id)) is not None:
            return Detection(learn(known), f"{known.label}: osinfo-db knows the ISO's volume id "
                                           f"{facts.volume_id!r}")
        for rank in range(max((len(p.patterns) for p in group), default=0)):
            for candidate in group:
                if rank < len(candidate.patterns) and (match := candidate.patterns[rank].search(evidence)):
                    return Detection(candidate, f"{candidate.label}: the ISO's {_what(match.group(0).strip())}")
    return NotRecognised(f"no known OS matches its volume id {facts.volume_id!r} or its files")


def _what(seen: str) -> str:
    kind, _, value = seen.partition(": ")
    names = {"volume": "volume id", "info": ".disk/info", "treeinfo": ".treeinfo", "file": "file name",
             "file-list": "layout"}
    return f"{names.get(kind, kind)} says {value[:80]!r}" if value else f"{names.get(kind, kind)} matches"


def _read_text(image: pycdlib.PyCdlib, name: str) -> str:
    """A small file's text, by its Rock Ridge, Joliet or plain ISO 9660 name; "" if absent."""
    for facade, spell in _facades(image):
        try:
            if facade.get_record(spell(name)).data_length > MAX_MARKER:
                return ""
            out = io.BytesIO()
            facade.get_file_from_iso_fp(out, spell(name))
            return out.getvalue().decode("utf-8", errors="replace")
        except (PyCdlibException, AttributeError, KeyError):
            continue
    return ""


def _list(image: pycdlib.PyCdlib, folder: str) -> set[str]:
    for facade, spell in _facades(image):
        try:
            children = facade.list_children(spell(folder, directory=True))
            return {f"{folder.rstrip('/')}/{_child_name(child)}".lower() for child in children
                    if child is not None and not child.is_dot() and not child.is_dotdot()}
        except (PyCdlibException, AttributeError, KeyError):
            continue
    return set()


def _as_is(path: str, directory: bool = False) -> str:
    return path


def _facades(image: pycdlib.PyCdlib) -> list[tuple[_Facade, _Spelling]]:
    """The name spaces the image has, best first, each with how it spells a path."""
    out: list[tuple[_Facade, _Spelling]] = []
    if image.has_rock_ridge():
        out.append((image.get_rock_ridge_facade(), _as_is))
    if image.has_joliet():
        out.append((image.get_joliet_facade(), _as_is))
    out.append((image.get_iso9660_facade(), _iso_name))
    return out


def _child_name(child: DirectoryRecord) -> str:
    if child.rock_ridge is not None and child.rock_ridge.name():
        return child.rock_ridge.name().decode("utf-8", errors="replace")
    return child.file_identifier().decode("utf-16-be" if b"\0" in child.file_identifier() else "ascii",
                                          errors="replace").split(";")[0].rstrip(".")


def _iso_name(path: str, directory: bool = False) -> str:
    """Plain ISO 9660 spelling: upper case, file versions, dots only before extensions."""
    if path == "/":
        return "/"
    parts = []
    names = path.strip("/").split("/")
    for index, part in enumerate(names):
        part = part.upper().lstrip(".").replace("-", "_") or "_"
        last = index == len(names) - 1
        if last and not directory:
            part = (part if "." in part else part + ".") + ";1"
        parts.append(part)
    return "/" + "/".join(parts)
