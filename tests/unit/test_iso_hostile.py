"""OS detection against damaged and hostile ISOs: whatever is wrong inside the image, detect() answers
"not recognised" with a one-line reason, quickly and within bounded memory; never a crash or a hang.
Only the user's own mistakes (no such file, a folder, no permission) stay errors."""

from __future__ import annotations

import errno
import io
import struct
import time
import tracemalloc
from pathlib import Path

import pycdlib
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hvdesk.core import iso_guard
from hvdesk.core.iso import Detection, NotRecognised, detect
from tests.unit.test_iso_detect import make_iso

SECTOR = 2048
PVD = 16 * SECTOR  # the primary volume descriptor
PATH_TABLE_SIZE = PVD + 132  # both-endian 32-bit fields, as most in ISO 9660
L_PATH_TABLE = PVD + 140  # little-endian only
ROOT_RECORD = PVD + 156


def both_endian(value: int) -> bytes:
    return struct.pack("<L", value) + struct.pack(">L", value)


def debian_iso(folder: Path) -> Path:
    return make_iso(folder / "debian-12.8.0-amd64-netinst.iso", "Debian 12.8.0 amd64 n",
                    {"/.disk/info": b'Debian GNU/Linux 12.8.0 "Bookworm" - Official amd64 NETINST',
                     "/isolinux/isolinux.cfg": b"include menu.cfg", "/pool/main/a/apt/apt.deb": b"!<arch>"})


def windows_iso(folder: Path) -> Path:
    return make_iso(folder / "Win11_23H2_English_x64v2.iso", "CCCOMA_X64FRE", {
        "/sources/install.wim": b"MSWIM", "/setup.exe": b"MZ", "/boot/bcd": b"regf"}, rock_ridge=False, joliet=True)


def udf_iso(folder: Path) -> Path:
    """Like a Windows ISO: UDF, with ISO 9660 and Joliet bridges."""
    image = pycdlib.PyCdlib()
    image.new(interchange_level=3, vol_ident="CCCOMA_X64FRE", joliet=3, udf="2.60")
    image.add_directory("/SOURCES", joliet_path="/sources", udf_path="/sources")
    for iso_path, name, data in (("/SOURCES/INSTALL.WIM;1", "sources/install.wim", b"MSWIM"),
                                 ("/SETUP.EXE;1", "setup.exe", b"MZ")):
        image.add_fp(io.BytesIO(data), len(data), iso_path, joliet_path="/" + name, udf_path="/" + name)
    path = folder / "Win11_24H2_English_x64.iso"
    image.write(str(path))
    image.close()
    return path


def patched(source: Path, target: Path, changes: dict[int, bytes]) -> Path:
    data = bytearray(source.read_bytes())
    for offset, value in changes.items():
        data[offset:offset + len(value)] = value
    target.write_bytes(data)
    return target


def not_recognised(found: Detection | NotRecognised) -> str:
    assert isinstance(found, NotRecognised), found
    assert found.reason and "\n" not in found.reason and len(found.reason) < 200, found.reason
    return found.reason


def test_the_audits_one_byte_change_is_not_recognised_with_the_reason(tmp_path):
    iso = make_iso(tmp_path / "debian-12.8.0-amd64-netinst.iso", "Debian 12.8.0 amd64 n",
                   {"/.disk/info": b'Debian GNU/Linux 12.8.0 "Bookworm" - Official amd64 NETINST'})
    location = struct.unpack_from("<L", iso.read_bytes(), L_PATH_TABLE)[0]
    # The path table's last record (.disk's, after the root's 10 bytes) now names a directory of 0
    # characters: what follows is read as a record that runs past the table.
    bad = patched(iso, tmp_path / "bad.iso", {location * SECTOR + 10: b"\0"})
    with pytest.raises(struct.error):  # the audit's case: pycdlib itself fails with struct.error
        pycdlib.PyCdlib().open(str(bad))
    reason = not_recognised(detect(bad))
    assert reason.startswith("the ISO's path table is damaged (unpack_from requires a buffer of at least 8 bytes")


def test_other_damage_names_the_part_that_is_damaged(tmp_path):
    iso = debian_iso(tmp_path)
    root_extent = struct.unpack_from("<L", iso.read_bytes(), ROOT_RECORD + 2)[0]
    bad = patched(iso, tmp_path / "bad.iso", {root_extent * SECTOR: b"\1"})  # "." is 1 byte long
    assert not_recognised(detect(bad)).startswith("the ISO's directory records are damaged (unpack_from requires")
    bad = patched(iso, tmp_path / "bad.iso", {root_extent * SECTOR + 34: b"\5"})  # ".." loses its Rock Ridge
    assert not_recognised(detect(bad)) == ("the ISO's directory records are damaged (Dot child does not have "
                                           "Rock Ridge; ISO is corrupt)")
    no_pvd = patched(iso, tmp_path / "no-pvd.iso", {PVD + 1: b"XXXXX"})
    assert not_recognised(detect(no_pvd)) == "it is not an ISO 9660 image (no volume descriptor at sector 16)"
    half = tmp_path / "half.iso"
    half.write_bytes(iso.read_bytes()[:PVD + 100])  # a download cut short
    assert not_recognised(detect(half)) == ("the ISO's volume descriptors are damaged (Failed to read entire "
                                            "volume descriptor)")


def test_huge_length_fields_in_a_5_gb_image_are_refused_without_reading_them(tmp_path):
    iso = debian_iso(tmp_path)
    cases = {"path table": {PATH_TABLE_SIZE: both_endian(0xF000_0000)},
             "root directory": {ROOT_RECORD + 10: both_endian(0xFFFF_F800)}}
    for what, changes in cases.items():
        bad = patched(iso, tmp_path / f"{what}.iso", changes)
        with open(bad, "r+b") as handle:  # sparse: a 4 GB read would succeed, and fill memory
            handle.truncate(5 * 1024**3)
        tracemalloc.start()
        start = time.perf_counter()
        try:
            reason = not_recognised(detect(bad))
            elapsed, (_, peak) = time.perf_counter() - start, tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert reason.startswith("the ISO is too costly to read: one of its structures claims"), (what, reason)
        assert elapsed < 2.0 and peak < 32 * 1024**2, (what, elapsed, peak)


def crafted_directory_iso(path: Path, names: list[bytes]) -> Path:
    """A valid ISO whose root directory is replaced by one extent holding `names` (files) in the order
    given: what a hostile image can do, since pycdlib sorts every directory as it reads it."""
    image = pycdlib.PyCdlib()
    image.new(interchange_level=3, vol_ident="CRAFTED")
    image.write(str(path))
    image.close()
    data = bytearray(path.read_bytes())
    root = len(data) // SECTOR

    def record(extent: int, length: int, flags: int, name: bytes) -> bytes:
        body = (both_endian(extent) + both_endian(length) + bytes(7) + bytes([flags, 0, 0])
                + struct.pack("<H", 1) + struct.pack(">H", 1) + bytes([len(name)]) + name)
        padded = body + (b"\0" if len(name) % 2 == 0 else b"")
        return bytes([2 + len(padded), 0]) + padded

    sectors, current = [], b""
    for item in [record(root, 0, 2, b"\0"), record(root, 0, 2, b"\1")] + [record(0, 0, 0, n) for n in names]:
        if len(current) + len(item) > SECTOR:
            sectors.append(current.ljust(SECTOR, b"\0"))
            current = b""
        current += item
    extent = b"".join(sectors) + current.ljust(SECTOR, b"\0")
    data += record(root, len(extent), 2, b"\0") + extent[34:]  # "." says how long the directory is
    data[ROOT_RECORD:ROOT_RECORD + 34] = record(root, len(extent), 2, b"\0")
    data[PVD + 80:PVD + 88] = both_endian(len(data) // SECTOR)  # the volume's size
    for field, endian in ((PVD + 140, "<"), (PVD + 148, ">")):  # the path tables' root entries
        table = struct.unpack_from(endian + "L", data, field)[0]
        struct.pack_into(endian + "L", data, table * SECTOR + 2, root)
    path.write_bytes(data)
    return path


def test_a_directory_far_out_of_order_is_refused_at_once(tmp_path):
    # pycdlib re-walks the records after each insertion point: 20,000 records in reverse order took
    # it ~40 s (50,000: 5 minutes). Sorted, as images are written, they are read.
    names = [f"F{i:07}.;1".encode() for i in range(20_000)]
    hostile = crafted_directory_iso(tmp_path / "reversed.iso", names[::-1])
    start = time.perf_counter()
    reason = not_recognised(detect(hostile))
    assert reason == ("the ISO is too costly to read: its directory records are far out of order "
                      "(ISO 9660 keeps them sorted)")
    assert time.perf_counter() - start < 1.0
    sorted_ = crafted_directory_iso(tmp_path / "sorted.iso", names)
    assert not_recognised(detect(sorted_)) == "no known OS matches its volume id 'CRAFTED' or its files"


def crafted_udf_directory_iso(folder: Path, entries: int) -> Path:
    """A UDF image whose root directory holds `entries` parent File Identifiers (valid, repeated)."""
    path = udf_iso(folder)
    image = pycdlib.PyCdlib()
    image.open(str(path))
    root, part_start = image.udf_root, image.udf_main_descs.partitions[0].part_start_location
    entry_extent, (extent,) = root.orig_extent_loc, root.alloc_descs
    image.close()
    data = bytearray(path.read_bytes())
    new_block = len(data) // SECTOR - part_start

    def tag(ident: int) -> bytes:  # no CRC (length 0); the checksum covers the tag itself
        raw = bytearray(struct.pack("<HHBBHHHL", ident, 2, 0, 0, 0, 0, 0, new_block))
        raw[4] = sum(raw) % 256
        return bytes(raw)
    parents = (tag(257) + struct.pack("<HBB16sH", 1, 0x8, 0, bytes(16), 0) + b"\0\0") * entries
    entry = entry_extent * SECTOR  # the root's File Entry: its allocation points at the new extent
    at = data.find(struct.pack("<LL", extent.extent_length, extent.log_block_num), entry, entry + SECTOR)
    struct.pack_into("<LL", data, at, len(parents), new_block)
    struct.pack_into("<HH", data, entry + 8, 0, 0)  # the entry's CRC: none
    data[entry + 4] = (sum(data[entry:entry + 4]) + sum(data[entry + 5:entry + 16])) % 256
    path.write_bytes(data + parents + bytes(-len(parents) % SECTOR))
    return path


def test_a_udf_directory_of_very_many_entries_is_refused_at_once(tmp_path):
    # pycdlib copies the rest of the extent for each entry: 100,000 of them (4 MB) took it 7 s.
    assert isinstance(detect(udf_iso(tmp_path)), Detection)  # the image as written is read
    hostile = crafted_udf_directory_iso(tmp_path, 100_000)
    start = time.perf_counter()
    assert not_recognised(detect(hostile)) == ("the ISO is too costly to read: its UDF directories have too "
                                               "many entries to read")
    assert time.perf_counter() - start < 1.0
    assert isinstance(detect(crafted_udf_directory_iso(tmp_path, 1000)), Detection)  # fewer are read


def test_too_many_records_are_refused(tmp_path, monkeypatch):
    big = crafted_directory_iso(tmp_path / "big.iso", [f"F{i:07}.;1".encode() for i in range(1000)])
    monkeypatch.setattr(iso_guard, "MAX_DIRECTORY", 1000)
    assert not_recognised(detect(big)) == "the ISO is too costly to read: a directory has more than 1,000 records"
    monkeypatch.setattr(iso_guard, "MAX_DIRECTORY", 50_000)
    monkeypatch.setattr(iso_guard, "MAX_RECORDS", 500)
    assert not_recognised(detect(big)) == "the ISO is too costly to read: it has more than 500 directory records"


def test_reading_past_the_deadline_stops(tmp_path, monkeypatch):
    monkeypatch.setattr(iso_guard, "DEADLINE_S", 0.0)
    reason = not_recognised(detect(debian_iso(tmp_path)))
    assert reason == "the ISO is too costly to read: reading it took longer than 0 s"


@pytest.mark.parametrize("exc, reason", [
    (OSError(errno.EIO, "Input/output error"), "reading the ISO failed (Input/output error)"),
    (RecursionError("maximum recursion depth exceeded"), "the ISO's structures are damaged (nested too deeply)"),
    (MemoryError(), "the ISO's structures are damaged (a size in it is too large for this machine's memory)"),
    (KeyError(36), "the ISO's structures are damaged (KeyError: 36)"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
     "the ISO's structures are damaged (UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in position 0: "
     "invalid start byte)"),
])
def test_every_kind_of_failure_has_a_readable_reason(tmp_path, monkeypatch, exc, reason):
    def fail(*_args):
        raise exc
    monkeypatch.setattr(pycdlib.PyCdlib, "open_fp", fail)
    assert not_recognised(detect(debian_iso(tmp_path))) == reason


# Fuzzing: mutations of small valid images, aimed at the volume descriptors (sectors 16-19) one time in
# four, else at what follows them (path tables, directory records, Rock Ridge and Joliet entries).
OFFSET = st.tuples(st.integers(0, 3).map(lambda n: n == 0), st.integers(min_value=0, max_value=2**20))
MUTATION = st.one_of(
    st.tuples(st.just("flip"), OFFSET, st.integers(0, 7)),
    st.tuples(st.just("byte"), OFFSET, st.sampled_from([0, 1, 0x20, 0x7F, 0x80, 0xFF]) | st.integers(0, 255)),
    st.tuples(st.just("run"), OFFSET, st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("field"), OFFSET, st.sampled_from([0, 1, 0x7FFF_FFFF, 0xFFFF_FFFF]) | st.integers(0, 2**32 - 1)),
    st.tuples(st.just("truncate"), OFFSET, st.just(0)),
)


def mutate(data: bytes, mutations: list[tuple]) -> bytes:
    out = bytearray(data)
    for kind, (descriptors, raw), value in mutations:
        start = PVD if descriptors else PVD + 2 * SECTOR
        if len(out) <= start:
            break
        offset = start + raw % (min(len(out) - start, 4 * SECTOR) if descriptors else len(out) - start)
        if kind == "flip":
            out[offset] ^= 1 << value
        elif kind == "byte":
            out[offset] = value
        elif kind == "run":
            out[offset:offset + len(value)] = value
        elif kind == "field":  # a both-endian length or location, so pycdlib's own checks pass
            out[offset:offset + 8] = both_endian(value)
        else:
            del out[offset:]
    return bytes(out)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("images")
    return {"debian": debian_iso(folder).read_bytes(), "windows": windows_iso(folder).read_bytes(),
            "udf": udf_iso(folder).read_bytes()}


@settings(max_examples=600, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=st.sampled_from(["debian", "windows", "udf"]), mutations=st.lists(MUTATION, min_size=1, max_size=4))
def test_fuzz_mutated_images_are_recognised_or_not_with_a_reason(images, tmp_path, base, mutations):
    path = tmp_path / "mutated.iso"
    path.write_bytes(mutate(images[base], mutations))
    found = detect(path)  # within hypothesis's deadline (2 s); typically a few ms
    if isinstance(found, NotRecognised):
        event(not_recognised(found).split(" (")[0])  # what was hit: --hypothesis-show-statistics
    else:
        assert isinstance(found, Detection) and found.reason
        event(f"recognised as {found.preset.id}")
