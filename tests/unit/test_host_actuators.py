"""The host-side actuators' pure parts: host CPU lists, and which CPU-shares mechanism a host
allows. Detection runs against fake /sys/fs/cgroup trees in tmp_path: a host with cgroup v2's cpu
controller delegated cannot be made on the test machine (its v2 hierarchy has no cpu controller)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hvdesk.core.errors import ConfigError, HvdeskError
from hvdesk.qemu import cpu_weight
from hvdesk.qemu.affinity import format_cpu_list, parse_cpu_list

UUID = "0b7d5a0e-3f7e-4c0a-9d6e-2a1b3c4d5e6f"


@pytest.mark.parametrize("text, cpus", [
    ("1", {1}), ("0-1", {0, 1}), ("0-1,3", {0, 1, 3}), (" 2 , 0 ", {0, 2}), ("3-3", {3}),
])
def test_cpu_lists(text, cpus):
    assert parse_cpu_list(text, range(4)) == frozenset(cpus)


@pytest.mark.parametrize("text, message", [
    ("", "is not like 0-1,3"), ("a", "is not like 0-1,3"), ("1-", "is not like 0-1,3"),
    ("-1", "is not like 0-1,3"), ("1,,2", "is not like 0-1,3"), ("3-1", "range 3-1 runs backwards"),
    ("4", "CPU 4 is not on this host (it has 0-3)"), ("2-9", "CPU 4-9 is not on this host (it has 0-3)"),
    ("99999999", "CPU 99999999 is not on this host"),
])
def test_bad_cpu_lists(text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_cpu_list(text, range(4))


def test_format_cpu_list():
    assert format_cpu_list([5, 0, 1, 2]) == "0-2,5"
    assert format_cpu_list([3]) == "3"
    assert format_cpu_list([]) == ""


def _files(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_pure_v2_with_cpu_delegated_uses_cpu_weight(tmp_path):
    root = _files(tmp_path, {"cgroup.controllers": "cpuset cpu io memory pids",
                             "user.slice/app.scope/cgroup.controllers": "cpu memory pids",
                             "user.slice/app.scope/cgroup.subtree_control": ""})
    found = cpu_weight.detect(root, "0::/user.slice/app.scope\n")
    assert (found.kind, found.base) == (cpu_weight.V2, root / "user.slice/app.scope")
    weights = cpu_weight.Weights(400, 4096, -6)
    assert found.describe(weights) == "cgroup v2 cpu.weight 400"
    assert cpu_weight.group_of(found, UUID, root) == root / "user.slice/app.scope/hvdesk" / UUID


def test_v2_without_cpu_falls_to_v1_then_nice(tmp_path):
    # This machine's layout: hybrid, v2 at unified/ without the cpu controller, v1 cpu writable.
    root = _files(tmp_path, {"unified/cgroup.controllers": "", "cpu/cpu.shares": "1024"})
    found = cpu_weight.detect(root, "1:cpu:/\n0::/\n")
    assert (found.kind, found.base) == (cpu_weight.V1, root / "cpu")
    assert "not delegated" in found.why and "writable" in found.why
    assert found.describe(cpu_weight.Weights(400, 4096, -6)) == "cgroup v1 cpu.shares 4096"
    (root / "cpu/cpu.shares").unlink()  # no v1 cpu hierarchy either
    found = cpu_weight.detect(root, "0::/\n")
    assert (found.kind, found.base) == (cpu_weight.NICE, None)
    assert found.describe(cpu_weight.Weights(25, 256, 6)) == "nice 6 on each QEMU thread"


def test_v1_combined_cpu_cpuacct_mount(tmp_path):
    root = _files(tmp_path, {"cpu,cpuacct/cpu.shares": "1024"})
    assert cpu_weight.detect(root, "").base == root / "cpu,cpuacct"


def test_groups_stay_under_the_root(tmp_path):
    found = cpu_weight.Mechanism(cpu_weight.V1, tmp_path / "cpu", "")
    with pytest.raises(HvdeskError, match="not a VM uuid"):
        cpu_weight.group_of(found, "../../etc", tmp_path)
    outside = cpu_weight.Mechanism(cpu_weight.V1, tmp_path.parent, "")
    with pytest.raises(HvdeskError, match="outside"):
        cpu_weight.group_of(outside, UUID, tmp_path)


def test_release_keeps_a_group_with_tasks(tmp_path):
    root = _files(tmp_path, {"cpu/cpu.shares": "1024", f"cpu/hvdesk/{UUID}/tasks": "4242\n"})
    assert cpu_weight.release(UUID, root) == [root / "cpu/hvdesk" / UUID]
    (root / f"cpu/hvdesk/{UUID}/tasks").unlink()  # a real cgroup's files go with rmdir; these do not
    assert cpu_weight.release(UUID, root) == []
    assert not (root / "cpu/hvdesk" / UUID).exists()
