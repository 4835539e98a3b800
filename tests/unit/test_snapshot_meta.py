"""snapshots.json as hvdesk reads it: every field checked (a VM folder may be shared), the tree's
links sound, a deletion re-hangs the children; and the snapshot thumbnail."""

from __future__ import annotations

import json
import zlib

import pytest

from hvdesk.console.thumbnail import read_ppm, shrink, thumbnail
from hvdesk.core import snapshot_meta as meta
from hvdesk.core.config import VmConfig
from hvdesk.core.errors import ConfigError, ConsoleError, NotFoundError

CONFIG = VmConfig(name="web", uuid="6f1c2a50-0000-4000-8000-00000000c0de").to_dict()


def snap(snap_id: str, name: str, parent: str | None = None, **fields) -> dict:
    return {"id": snap_id, "name": name, "time": 1.5, "state": "stopped", "parent": parent, "description": "",
            "images": ["disk0.qcow2"], "thumbnail": False, "tpm": False, "config": CONFIG, **fields}


A, B, C, D = (c * 16 for c in "abcd")


def tree(*snaps: dict, current: str | None = None) -> dict:
    return {"schema": meta.SCHEMA, "current": current, "snapshots": list(snaps)}


def test_a_tree_round_trips_through_its_file(tmp_path):
    written = meta.parse(tree(snap(A, "base"), snap(B, "live", A, state="running", description="x\ny"),
                              current=B))
    meta.write(tmp_path, written)
    assert oct((tmp_path / meta.SNAPSHOTS_FILE).stat().st_mode & 0o777) == "0o600"
    read = meta.read(tmp_path)
    assert read == written and read.find("LIVE").ram and read.find("live").tag == "hvdesk-" + B
    assert meta.read(tmp_path / "nowhere") == meta.SnapshotTree()


def test_deleting_the_middle_of_a_branch_rehangs_its_children_on_its_parent():
    # base -> mid -> (left, right); mid is current
    full = meta.parse(tree(snap(A, "base"), snap(B, "mid", A), snap(C, "left", B), snap(D, "right", B), current=B))
    after = full.without(full.find("mid"))
    assert [(s.name, s.parent) for s in after.snapshots] == [("base", None), ("left", A), ("right", A)]
    assert after.current == A  # the current one's parent takes its place
    assert full.without(full.find("left")).current == B


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(schema=2), "schema: expected 1"),
    (lambda d: d["snapshots"][0].update(id="../../etc"), "snapshots[0].id: not an id hvdesk makes"),
    (lambda d: d["snapshots"][0].update(name="a/b"), "invalid snapshot name 'a/b'"),
    (lambda d: d["snapshots"][0].update(name=""), "invalid snapshot name: it is empty"),
    (lambda d: d["snapshots"][0].update(state="weird"), "state: 'weird' is not one of"),
    (lambda d: d["snapshots"][0].update(time=float("nan")), "time: not a time"),
    (lambda d: d["snapshots"][0].update(time=True), "time: missing or of the wrong type"),
    (lambda d: d["snapshots"][0].update(images=["a\nb"]), "images[0]: 'a\\nb' contains a line break"),
    (lambda d: d["snapshots"][0].update(images=[7]), "images[0]: not text"),
    (lambda d: d["snapshots"][0].update(extra=1), "unknown field 'extra'"),
    (lambda d: d["snapshots"][0]["config"].update(memory_mib="lots"), "snapshots[0].config: memory_mib: expected"),
    (lambda d: d["snapshots"][0]["config"].update(disks=[{"path": "x", "format": "nbd"}]),
     "config: disks[0].format: 'nbd' is not one of"),
    (lambda d: d["snapshots"][0].update(description="\0"), "NUL"),
    (lambda d: d["snapshots"][1].update(parent=C), "its parent is not in the file"),
    (lambda d: d["snapshots"][0].update(parent=B), "its parents loop"),
    (lambda d: d["snapshots"][1].update(name="BASE"), "two snapshots share a name"),
    (lambda d: d["snapshots"][1].update(id=A, parent=None), "two snapshots share an id"),
    (lambda d: d.update(current=C), "current: names no snapshot"),
    (lambda d: d.update(snapshots={}), "snapshots: expected a list"),
])
def test_a_hostile_or_broken_file_is_refused_naming_the_field(change, message):
    data = json.loads(json.dumps(tree(snap(A, "base"), snap(B, "live", A), current=B)))
    change(data)
    with pytest.raises(ConfigError, match=None) as refused:
        meta.parse(data)
    assert message in str(refused.value)


def test_garbage_and_huge_files_are_refused_with_the_path(tmp_path):
    (tmp_path / meta.SNAPSHOTS_FILE).write_bytes(b"\xff{")
    with pytest.raises(ConfigError, match="snapshots.json: not valid JSON"):
        meta.read(tmp_path)
    (tmp_path / meta.SNAPSHOTS_FILE).write_bytes(b" " * (meta.MAX_FILE + 1))
    with pytest.raises(ConfigError, match="larger than 8 MiB"):
        meta.read(tmp_path)


def test_names_follow_the_vm_name_rules_and_match_ignoring_case():
    assert meta.validate_snapshot_name("before update 1.2") == "before update 1.2"
    for bad in ("-x\n", " lead", "a" * 65, "x;rm -rf"):
        with pytest.raises(ConfigError, match="invalid snapshot name"):
            meta.validate_snapshot_name(bad)
    with pytest.raises(NotFoundError, match="no snapshot named 'other'"):
        meta.parse(tree(snap(A, "base"))).find("other")
    with pytest.raises(ConfigError, match="longer than"):
        meta.check_description("x" * (meta.MAX_DESCRIPTION + 1))


def ppm(width: int, height: int, pixel) -> bytes:
    body = bytes(c for y in range(height) for x in range(width) for c in pixel(x, y))
    return f"P6\n{width} {height}\n255\n".encode() + body


def test_a_thumbnail_averages_the_screen_into_a_small_png():
    # a 720x400 text screen: white stripes on black, every third column
    screen = ppm(720, 400, lambda x, y: (255, 255, 255) if x % 3 == 0 else (0, 0, 0))
    width, height, rgb = shrink(*read_ppm(screen), 240)
    assert (width, height) == (240, 133)
    assert set(rgb) == {85}  # each thumbnail pixel covers one white and two black columns: grey, not lost
    png = thumbnail(screen)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[16:24] == (240).to_bytes(4, "big") + (133).to_bytes(4, "big")
    idat = png[png.index(b"IDAT") + 4:png.index(b"IEND") - 8]
    assert len(zlib.decompress(idat)) == 133 * (1 + 240 * 3)
    small = ppm(100, 50, lambda x, y: (1, 2, 3))
    assert shrink(*read_ppm(small), 240) == (100, 50, bytes([1, 2, 3]) * 5000)  # never scaled up


@pytest.mark.parametrize("data", [b"P5\n1 1\n255\n\0", b"P6\n99999 1\n255\n", b"P6\n2 2\n255\n\0\0\0", b"P6 x"])
def test_a_bad_screen_dump_is_an_error_not_a_crash(data):
    with pytest.raises(ConsoleError):
        thumbnail(data)
