"""The json: image names that make qemu-img read exactly a VM's pinned chain (full clones)."""

from __future__ import annotations

import json
from pathlib import Path

from hvdesk.qemu.images import pinned_spec


def test_the_chain_is_spelled_out_and_ends_in_no_backing():
    spec = pinned_spec(Path("/vm/disk0.qcow2"), "qcow2",
                       [(Path("/vm/base.qcow2"), "qcow2"), (Path("/b/a,b.img"), "raw")])
    assert spec.startswith("json:")
    assert json.loads(spec[5:]) == {
        "driver": "qcow2", "file": {"driver": "file", "filename": "/vm/disk0.qcow2"},
        "backing": {"driver": "qcow2", "file": {"driver": "file", "filename": "/vm/base.qcow2"},
                    "backing": {"driver": "raw", "file": {"driver": "file", "filename": "/b/a,b.img"}}}}


def test_an_image_without_backing_images_opens_none():
    # null, not absent: qemu-img would otherwise open whatever backing file the header names
    assert json.loads(pinned_spec(Path("/vm/d.qcow2"), "qcow2", [])[5:])["backing"] is None
    assert "backing" not in json.loads(pinned_spec(Path("/vm/d.img"), "raw", [])[5:])
