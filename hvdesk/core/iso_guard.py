"""Reading an untrusted ISO with bounded work, and saying in one line why it could not be read.

pycdlib parses the whole directory tree when it opens an image, and each structure it parses comes
from one read() of the image file. So its reads go through `BoundedReader`, which refuses:
- one structure larger than MAX_READ, more than MAX_TOTAL bytes in all, any read after the deadline;
- more than MAX_RECORDS directory records in all, or MAX_DIRECTORY in one (each record costs pycdlib
  ~20 µs and ~1 KB);
- directories whose records are far out of order: pycdlib sorts each directory's records as it reads
  them, re-walking every record after the insertion point, so a crafted directory of 50,000 records
  in reverse order took 5 minutes. Real images are written sorted (ECMA-119 9.3), give or take a few
  names that ECMA's padding rule orders differently from pycdlib's bytes, so they cost nothing here;
- UDF directories of very many entries: pycdlib copies the rest of the extent to parse each entry, so
  a crafted 4 MB directory of 100,000 entries took 7 s.
That bounds memory and time without slowing the images people have.
"""

from __future__ import annotations

import bisect
import struct
import time
import traceback
from typing import BinaryIO

from pycdlib.pycdlibexception import PyCdlibException

from hvdesk.core.units import format_size

MIB = 1024 * 1024
MAX_READ = 4 * MIB  # one directory or path table; a flat folder of 6,000 packages is ~1.5 MiB
MAX_TOTAL = 64 * MIB  # all the metadata read; 20,000 files with Rock Ridge and Joliet read 4.4 MiB
MAX_RECORDS = 200_000  # directory records in all (Joliet repeats each name): ~4 s and ~200 MB
MAX_DIRECTORY = 50_000  # records in one directory; a flat folder of 6,000 packages is the most seen
MAX_SHIFTS = 10_000_000  # records pycdlib re-walks while sorting directories: ~0.2 µs each
MAX_UDF_COPY = 16 * 1024**3  # bytes pycdlib copies to parse UDF directories (~0.5 s); 10,000 entries: 5 GB
DEADLINE_S = 10.0  # checked at each read; 20,000 files open in ~1.5 s here
SECTOR = 2048
MIN_RECORD = 33  # a directory record's fixed part; pycdlib cannot parse a shorter one
UDF_IDENTIFIER = 38  # a UDF File Identifier's fixed part

# Where in pycdlib a failure happened says which part of the image is damaged.
_PART_BY_FUNCTION = {
    "_parse_volume_descriptors": "volume descriptors are",
    "_parse_path_table": "path table is",
    "_walk_directories": "directory records are",
    "_iter_directory_records": "directory records are",
    "_link_file_record": "directory records are",
    "_follow_rock_ridge_ce_chain": "Rock Ridge entries are",
    "_check_and_parse_eltorito": "El Torito boot catalog is",
    "_link_eltorito": "El Torito boot catalog is",
    "_check_for_eltorito_boot_info_table": "El Torito boot catalog is",
    "_parse_udf_descriptors": "UDF descriptors are",
    "_walk_udf_directories": "UDF directories are",
}
_PART_BY_MODULE = {
    "pycdlib.headervd": "volume descriptors are",
    "pycdlib.path_table_record": "path table is",
    "pycdlib.dr": "directory records are",
    "pycdlib.rockridge": "Rock Ridge entries are",
    "pycdlib.eltorito": "El Torito boot catalog is",
    "pycdlib.udf": "UDF descriptors are",
    "pycdlib.isohybrid": "hybrid boot sectors (MBR/GPT) are",
    "pycdlib.dates": "dates are",
    "pycdlib.inode": "file records are",
}
_PART_BY_WORDS = {  # for what pycdlib raises from the top of its open (_open_fp), by its message
    "path table": "path table is", "directory record": "directory records are", "joliet": "Joliet records are",
    "el torito": "El Torito boot catalog is", "gpt": "hybrid boot sectors (MBR/GPT) are", "udf": "UDF descriptors are",
    "volume descriptor": "volume descriptors are", "vd": "volume descriptors are",
}


class ReadRefused(Exception):
    """Stops pycdlib's parse: the image asks for more than detection may spend. Not an OSError, so
    pycdlib's own `except OSError` cannot swallow it."""


class BoundedReader:
    """The image's file as pycdlib sees it (read, seek, tell), within the budgets above."""

    def __init__(self, raw: BinaryIO, seconds: float | None = None) -> None:
        self.raw = raw
        self.total = self.records = self.shifts = self.udf_copied = 0
        self.seconds = DEADLINE_S if seconds is None else seconds
        self.deadline = time.monotonic() + self.seconds

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            raise ReadRefused("something in it asked to read the whole image")
        if size > MAX_READ:
            raise ReadRefused(f"one of its structures claims {format_size(size)} "
                              f"(at most {format_size(MAX_READ)} is read)")
        self.total += size
        if self.total > MAX_TOTAL:
            raise ReadRefused(f"its structures add up to more than {format_size(MAX_TOTAL)}")
        if time.monotonic() > self.deadline:
            raise ReadRefused(f"reading it took longer than {self.seconds:g} s")
        data = self.raw.read(size)
        self._count_records(data)
        self.udf_copied += udf_identifier_copies(data)
        if self.udf_copied > MAX_UDF_COPY:
            raise ReadRefused("its UDF directories have too many entries to read")
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def _count_records(self, data: bytes) -> None:
        """Read `data` as pycdlib would read a directory's extent: any read may be one."""
        count, shifts = directory_records(data, MAX_SHIFTS - self.shifts)
        self.records, self.shifts = self.records + count, self.shifts + shifts
        if count > MAX_DIRECTORY:
            raise ReadRefused(f"a directory has more than {MAX_DIRECTORY:,} records")
        if self.records > MAX_RECORDS:
            raise ReadRefused(f"it has more than {MAX_RECORDS:,} directory records")
        if self.shifts > MAX_SHIFTS:
            raise ReadRefused("its directory records are far out of order (ISO 9660 keeps them sorted)")


def directory_records(data: bytes, shift_budget: int) -> tuple[int, int]:
    """(records, shifts) if `data` is a directory's extent, walked as pycdlib walks it (a zero length
    byte pads to the next sector; it stops where pycdlib would fail). Shifts are the records pycdlib
    re-walks to sort each one in: the records already seen whose sort key is not smaller. Counting
    stops once shifts exceed `shift_budget`. Data that is not a directory gives few records or none."""
    keys: list[bytes] = []  # sorted, as pycdlib's children are
    shifts, offset = 0, 0
    while offset < len(data) and shifts <= shift_budget:
        length = data[offset]
        if length == 0:
            offset += SECTOR - offset % SECTOR
            continue
        if length < MIN_RECORD or offset + length > len(data):
            break
        name = data[offset + 33:offset + 33 + data[offset + 32]][:length - 33]
        key = name if name in (b"\0", b"\1") else b"\xff" + name  # pycdlib's DirectoryRecord sort key
        if keys and key <= keys[-1]:
            index = bisect.bisect_left(keys, key)
            shifts += len(keys) - index
            keys.insert(index, key)
        else:
            keys.append(key)
        offset += length
    return len(keys), shifts


def udf_identifier_copies(data: bytes) -> int:
    """The bytes pycdlib copies to parse `data` as a UDF directory's File Identifiers (each one takes
    `data[offset:]`); 0 if `data` does not start with one (tag 257), as pycdlib requires."""
    copied, offset = 0, 0
    while offset + UDF_IDENTIFIER <= len(data) and data[offset:offset + 2] == b"\x01\x01":
        copied += len(data) - offset
        end = UDF_IDENTIFIER + struct.unpack_from("<H", data, offset + 36)[0] + data[offset + 19]
        offset += end + -end % 4  # lengths of implementation use and name, padded to 4 bytes
    return copied


def describe_failure(exc: BaseException) -> str:
    """One line for the user: which part of the image is damaged, and pycdlib's or the OS's words."""
    if isinstance(exc, ReadRefused):
        return f"the ISO is too costly to read: {exc}"
    if isinstance(exc, OSError):
        return f"reading the ISO failed ({exc.strerror or exc})"
    if isinstance(exc, RecursionError):
        detail = "nested too deeply"
    elif isinstance(exc, MemoryError):
        detail = "a size in it is too large for this machine's memory"
    elif isinstance(exc, (PyCdlibException, struct.error)):
        detail = _one_line(str(exc)) or type(exc).__name__  # written to be read
    else:
        detail = _one_line(f"{type(exc).__name__}: {exc}")  # "KeyError: 36" rather than a bare "36"
    return f"the ISO's {_damaged_part(exc)} damaged ({detail})"


def _damaged_part(exc: BaseException) -> str:
    """From the innermost pycdlib frame outwards: the first that names a part of the image."""
    frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)]
    for frame in reversed(frames):
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("pycdlib"):
            continue
        part = _PART_BY_FUNCTION.get(frame.f_code.co_name) or _PART_BY_MODULE.get(module)
        if part:
            return part
    words = set(str(exc).lower().replace("-", " ").split())
    for keywords, part in _PART_BY_WORDS.items():
        if set(keywords.split()) <= words:
            return part
    return "structures are"


def _one_line(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
