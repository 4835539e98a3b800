"""A VM's snapshots as hvdesk records them: `snapshots.json` in the VM's folder, beside vm.toml.

The images hold the snapshots themselves (qcow2 internal snapshots, tagged `hvdesk-<id>`); this
file holds what the images cannot: the name a person gave, the description, the parent (the tree
is the parent links), whether the RAM was saved, which images hold it, and the VM's settings at
that moment. It is written atomically, and read as something a stranger may have written (a VM
folder can be shared): every field is checked, and a file that breaks a rule is refused whole,
naming the field, rather than half believed.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hvdesk.core import checks
from hvdesk.core.errors import ConfigError, NotFoundError
from hvdesk.core.names import name_key, validate_name
from hvdesk.core.storage import atomic_write, read_regular

SNAPSHOTS_FILE = "snapshots.json"
SNAPSHOT_DIR = "snapshots"  # thumbnails (<id>.png) and TPM state copies (<id>-tpm/)
SCHEMA = 1
TAG_PREFIX = "hvdesk-"  # + the id: the qcow2 tag, never the person's text
MAX_FILE = 8 * 1024 * 1024  # a larger snapshots.json is not ours
MAX_SNAPSHOTS = 500
MAX_DESCRIPTION = 4000
STATES = ("running", "stopped")  # the VM's state when it was taken: running ones hold the RAM too
NVRAM = "nvram"  # in `images`: the UEFI NVRAM (uefi-vars.fd) holds it too
_ID = re.compile(r"[0-9a-f]{16}")


def validate_snapshot_name(name: str) -> str:
    """The same rules as a VM's name (letters, digits, space, '.', '_', '-'; 1-64 characters)."""
    try:
        return validate_name(name)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("invalid VM name", "invalid snapshot name", 1)) from None


def check_description(text: str) -> str:
    if not isinstance(text, str):
        raise ConfigError("the description is not text")
    if len(text) > MAX_DESCRIPTION:
        raise ConfigError(f"the description is longer than {MAX_DESCRIPTION} characters")
    if "\0" in text or any("\ud800" <= c <= "\udfff" for c in text):
        raise ConfigError("the description holds a NUL or invalid Unicode")
    return text


def new_id() -> str:
    return secrets.token_hex(8)


@dataclass
class Snapshot:
    id: str
    name: str
    time: float  # seconds since the epoch
    state: str  # one of STATES
    config: dict[str, Any]  # VmConfig.to_dict() when it was taken (checked as a vm.toml is)
    images: list[str]  # the disks' paths as vm.toml names them, and NVRAM: what holds it
    parent: str | None = None  # the id of the snapshot it was taken after
    description: str = ""
    thumbnail: bool = False  # snapshots/<id>.png
    tpm: bool = False  # snapshots/<id>-tpm/: the TPM's state (a running one's is in its RAM state)

    @property
    def tag(self) -> str:
        return TAG_PREFIX + self.id

    @property
    def ram(self) -> bool:
        return self.state == "running"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "time": self.time, "state": self.state, "parent": self.parent,
                "description": self.description, "images": list(self.images), "thumbnail": self.thumbnail,
                "tpm": self.tpm, "config": self.config}


@dataclass
class SnapshotTree:
    snapshots: list[Snapshot] = field(default_factory=list)  # oldest first
    current: str | None = None  # the snapshot the VM's present state descends from

    def find(self, name: str) -> Snapshot:
        for snap in self.snapshots:
            if name_key(snap.name) == name_key(name):
                return snap
        raise NotFoundError(f"no snapshot named {name!r}")

    def by_id(self, snap_id: str | None) -> Snapshot | None:
        return next((s for s in self.snapshots if s.id == snap_id), None)

    def children(self, snap_id: str) -> list[Snapshot]:
        return [s for s in self.snapshots if s.parent == snap_id]

    def has_name(self, name: str) -> bool:
        return any(name_key(s.name) == name_key(name) for s in self.snapshots)

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "current": self.current, "snapshots": [s.to_json() for s in self.snapshots]}

    def without(self, snap: Snapshot) -> SnapshotTree:
        """The tree after deleting `snap`: its children hang from its parent, and if it was the
        current one, its parent is."""
        kept = []
        for other in self.snapshots:
            if other is snap:
                continue
            if other.parent == snap.id:
                other = Snapshot(**{**vars(other), "parent": snap.parent})
            kept.append(other)
        return SnapshotTree(kept, snap.parent if self.current == snap.id else self.current)


def read(folder: Path) -> SnapshotTree:
    """The VM's snapshots; none if it has no snapshots.json. ConfigError names what is wrong."""
    path = folder / SNAPSHOTS_FILE
    try:
        raw = read_regular(path, MAX_FILE + 1)
    except FileNotFoundError:
        return SnapshotTree()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    if len(raw) > MAX_FILE:
        raise ConfigError(f"{path}: larger than {MAX_FILE // (1024 * 1024)} MiB; not a file hvdesk wrote")
    try:
        return parse(json.loads(raw.decode("utf-8")))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        where = str(exc) if isinstance(exc, ConfigError) else f"not valid JSON ({exc})"
        raise ConfigError(f"{path}: {where}") from None


def write(folder: Path, tree: SnapshotTree) -> None:
    atomic_write(folder / SNAPSHOTS_FILE, json.dumps(tree.to_json(), indent=1).encode("utf-8"))


def parse(data: Any) -> SnapshotTree:
    """A tree from JSON data, every value checked (ConfigError naming the field)."""
    if not isinstance(data, dict):
        raise ConfigError("expected an object")
    if data.get("schema") != SCHEMA:
        raise ConfigError(f"schema: expected {SCHEMA}, found {data.get('schema')!r}")
    items = data.get("snapshots")
    if not isinstance(items, list) or len(items) > MAX_SNAPSHOTS:
        raise ConfigError(f"snapshots: expected a list of at most {MAX_SNAPSHOTS}")
    snapshots = [_snapshot(item, f"snapshots[{i}]") for i, item in enumerate(items)]
    tree = SnapshotTree(snapshots, data.get("current"))
    _check_tree(tree)
    return tree


def _get(item: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = item.get(key)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ConfigError(f"{where}.{key}: missing or of the wrong type")
    return value


def _snapshot(item: Any, where: str) -> Snapshot:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected an object")
    known = {"id", "name", "time", "state", "parent", "description", "images", "thumbnail", "tpm", "config"}
    if set(item) - known:
        raise ConfigError(f"{where}: unknown field {sorted(set(item) - known, key=str)[0]!r}")
    snap_id, parent = _get(item, "id", str, where), item.get("parent")
    for key, value in (("id", snap_id), ("parent", parent)):
        if (value is not None or key == "id") and not (isinstance(value, str) and _ID.fullmatch(value)):
            raise ConfigError(f"{where}.{key}: not an id hvdesk makes")
    try:
        name = validate_snapshot_name(_get(item, "name", str, where))
        description = check_description(item.get("description", ""))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    state = _get(item, "state", str, where)
    if state not in STATES:
        raise ConfigError(f"{where}.state: {state!r} is not one of {', '.join(STATES)}")
    when = float(_get(item, "time", (int, float), where))
    if not math.isfinite(when) or when < 0:
        raise ConfigError(f"{where}.time: not a time")
    return Snapshot(id=snap_id, name=name, time=when, state=state, config=_config(item, where),
                    images=_images(item, where), parent=parent, description=description,
                    thumbnail=item.get("thumbnail") is True, tpm=item.get("tpm") is True)


def _images(item: dict[str, Any], where: str) -> list[str]:
    images: list[str] = _get(item, "images", list, where)
    for i, image in enumerate(images):
        try:
            if not isinstance(image, str):
                raise ValueError("not text")
            checks.path(image)
        except ValueError as exc:
            raise ConfigError(f"{where}.images[{i}]: {exc}") from None
    return images


def _config(item: dict[str, Any], where: str) -> dict[str, Any]:
    from hvdesk.core.config import VmConfig  # a vm.toml's rules, for the settings a restore saves

    config: dict[str, Any] = _get(item, "config", dict, where)
    try:
        VmConfig.from_dict(config)
    except ConfigError as exc:
        raise ConfigError(f"{where}.config: {exc}") from None
    return config


def _check_tree(tree: SnapshotTree) -> None:
    ids = [s.id for s in tree.snapshots]
    if len(set(ids)) != len(ids):
        raise ConfigError("snapshots: two snapshots share an id")
    names = [name_key(s.name) for s in tree.snapshots]
    if len(set(names)) != len(names):
        raise ConfigError("snapshots: two snapshots share a name")
    known = set(ids)
    if tree.current is not None and tree.current not in known:
        raise ConfigError("current: names no snapshot")
    for snap in tree.snapshots:
        if snap.parent is not None and snap.parent not in known:
            raise ConfigError(f"snapshot {snap.name!r}: its parent is not in the file")
        seen, node = {snap.id}, snap
        while node.parent is not None:  # every chain of parents ends at a root
            if node.parent in seen:
                raise ConfigError(f"snapshot {snap.name!r}: its parents loop")
            seen.add(node.parent)
            parent = tree.by_id(node.parent)
            assert parent is not None
            node = parent
