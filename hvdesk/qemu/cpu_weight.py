"""CPU shares for a VM's QEMU: the host's best mechanism, found once, and the VM put under it.

In order of preference:
- cgroup v2 with the cpu controller delegated to us: a child cgroup per VM, `hvdesk/<uuid>`, under
  our own cgroup, with cpu.weight;
- a writable cgroup v1 cpu hierarchy: `hvdesk/<uuid>` at its root, with cpu.shares;
- else nice on every QEMU thread (setpriority per thread id), which weighs threads, not VMs.
QEMU's process (all its threads, and those it starts later) moves into the VM's cgroup. A VM's
cgroup is removed once no task is left in it (after QEMU exits). Nothing is written outside the
cgroup root (/sys/fs/cgroup), and only under its `hvdesk` folders.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path

from hvdesk.core.errors import HvdeskError
from hvdesk.qemu.affinity import NotSupportedError

CGROUP_ROOT = Path("/sys/fs/cgroup")
FOLDER = "hvdesk"
_KEY = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
V2, V1, NICE = "cgroup v2", "cgroup v1", "nice"


@dataclass(frozen=True)
class Weights:
    """One share setting on each mechanism's scale (hvdesk.control.cpu computes them)."""

    weight: int  # cgroup v2 cpu.weight, 1..10000
    shares: int  # cgroup v1 cpu.shares, 2..262144
    nice: int  # -20..19


@dataclass(frozen=True)
class Mechanism:
    kind: str  # V2, V1 or NICE
    base: Path | None  # the cgroup under which `hvdesk/<uuid>` goes (None for nice)
    why: str  # how it was chosen, for people

    def describe(self, weights: Weights) -> str:
        if self.kind == V2:
            return f"cgroup v2 cpu.weight {weights.weight}"
        if self.kind == V1:
            return f"cgroup v1 cpu.shares {weights.shares}"
        return f"nice {weights.nice} on each QEMU thread"


def own_cgroups(text: str) -> dict[str, str]:
    """/proc/self/cgroup as {controller or "" for v2: path}."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                found[controller] = parts[2]
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _v2_base(root: Path, mine: dict[str, str]) -> Path | None:
    """Our own cgroup in the v2 hierarchy (all of /sys/fs/cgroup, or its `unified` mount on hybrid hosts)."""
    for mount in (root, root / "unified"):
        if (mount / "cgroup.controllers").is_file():
            return mount / mine.get("", "/").lstrip("/")
    return None


def _v1_mount(root: Path) -> Path | None:
    for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        if (root / name / "cpu.shares").is_file():
            return root / name
    return None


def detect(root: Path = CGROUP_ROOT, self_cgroup: str | None = None) -> Mechanism:
    """The mechanism this host allows us. `root` and `self_cgroup` (the text of /proc/self/cgroup)
    are for tests that describe another host."""
    mine = own_cgroups(_read(Path("/proc/self/cgroup")) if self_cgroup is None else self_cgroup)
    notes = []
    v2 = _v2_base(root, mine)
    if v2 is not None:
        controllers = _read(v2 / "cgroup.controllers").split()
        if "cpu" in controllers and os.access(v2 / "cgroup.subtree_control", os.W_OK):
            return Mechanism(V2, v2, f"cgroup v2's cpu controller is delegated to {v2}")
        notes.append(f"cgroup v2's cpu controller is not delegated to {v2}")
    v1 = _v1_mount(root)
    if v1 is not None:
        if os.access(v1, os.W_OK):
            return Mechanism(V1, v1, "; ".join([*notes, f"the cgroup v1 cpu hierarchy {v1} is writable"]))
        notes.append(f"the cgroup v1 cpu hierarchy {v1} is not writable")
    if not hasattr(os, "setpriority"):
        raise NotSupportedError("CPU shares are not supported on this OS yet (no cgroups and no per-thread nice)")
    notes.append("no cgroup to use")
    return Mechanism(NICE, None, "; ".join(notes))


def group_of(mechanism: Mechanism, key: str, root: Path = CGROUP_ROOT) -> Path | None:
    """The VM's cgroup under `mechanism` (None for nice). `key` is the VM's uuid."""
    if mechanism.base is None:
        return None
    if not _KEY.match(key):
        raise HvdeskError(f"{key!r} is not a VM uuid")
    group = mechanism.base / FOLDER / key
    if not group.resolve().is_relative_to(root.resolve()):
        raise HvdeskError(f"refusing to write to {group}: it is outside {root}")
    return group


def apply(mechanism: Mechanism, key: str, pid: int, weights: Weights, root: Path = CGROUP_ROOT) -> None:
    """Give the QEMU process `pid` (the VM `key`) `weights` by `mechanism`."""
    group = group_of(mechanism, key, root)
    try:
        if group is None:
            for tid in _threads(pid):
                os.setpriority(os.PRIO_PROCESS, tid, weights.nice)
            return
        assert mechanism.base is not None
        if mechanism.kind == V2:
            _enable_cpu(mechanism.base)
        group.parent.mkdir(mode=0o755, exist_ok=True)
        if mechanism.kind == V2:
            _enable_cpu(group.parent)
        prune(group.parent)
        group.mkdir(mode=0o755, exist_ok=True)
        if mechanism.kind == V2:
            (group / "cpu.weight").write_text(str(weights.weight))
        else:
            (group / "cpu.shares").write_text(str(weights.shares))
        (group / "cgroup.procs").write_text(str(pid))  # the whole process: every thread, now and later
    except ProcessLookupError:
        raise HvdeskError(f"QEMU (pid {pid}) is gone (did the VM just stop?)") from None
    except OSError as exc:
        where = exc.filename or group or f"pid {pid}"
        raise HvdeskError(f"cannot set CPU shares by {mechanism.kind} ({where}): {exc.strerror}") from None


def _enable_cpu(cgroup: Path) -> None:
    control = cgroup / "cgroup.subtree_control"
    if "cpu" not in _read(control).split():
        control.write_text("+cpu")


def _threads(pid: int) -> list[int]:
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None


def tasks(group: Path) -> list[int]:
    """The live tasks in a cgroup (threads, v1's `tasks`; else its processes)."""
    text = _read(group / "tasks") if (group / "tasks").is_file() else _read(group / "cgroup.procs")
    return [int(word) for word in text.split()]


def groups(key: str, root: Path = CGROUP_ROOT, self_cgroup: str | None = None) -> list[Path]:
    """Every existing cgroup of the VM `key`, under either hierarchy."""
    if not _KEY.match(key):
        return []
    mine = own_cgroups(_read(Path("/proc/self/cgroup")) if self_cgroup is None else self_cgroup)
    bases = [base for base in (_v2_base(root, mine), _v1_mount(root)) if base is not None]
    return [base / FOLDER / key for base in bases if (base / FOLDER / key).is_dir()]


def prune(folder: Path) -> None:
    """Remove the empty VM cgroups in `folder` (`hvdesk`): those of QEMUs that exited while no
    hvdesk was there to see it."""
    for group in folder.iterdir():
        if group.is_dir() and _KEY.match(group.name) and not tasks(group):
            try:
                group.rmdir()
            except OSError:
                pass  # a task moved in meanwhile, or another hvdesk removed it first


def release(key: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """Remove the VM's cgroups that no task is in any more (after its QEMU exited); returns those
    left because something still runs in them."""
    kept = []
    for group in groups(key, root):
        if tasks(group):
            kept.append(group)
            continue
        try:
            group.rmdir()
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):  # a task that was exiting as we read
                kept.append(group)
            elif exc.errno != errno.ENOENT:
                raise HvdeskError(f"cannot remove cgroup {group}: {exc.strerror}") from None
    return kept
