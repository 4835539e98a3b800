"""The controller's parts that need no QEMU: its decision log (written by us, read as hostile),
its global settings file, the host topology read from a sysfs tree, and the agent's options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hvdesk.control.decisions import Decision, Kind
from hvdesk.core import control_settings
from hvdesk.core.control_settings import ControlSettings
from hvdesk.core.errors import ConfigError
from hvdesk.engine import decision_log
from hvdesk.qemu import affinity

MIB = 1024 * 1024


def logged(vm: str, kind: Kind, target: object, reason: str, at: float = 100.0) -> dict:
    decision = Decision(at, vm, kind, target, reason, {"floor": 256 * MIB})  # type: ignore[arg-type]
    return decision_log.entry(decision, applied=True, error="", by="test (pid 1)", wall_now=1_000_000.0,
                              mono_now=at + 5)


def test_log_round_trip_with_wall_clock_times_and_private_file(tmp_path: Path) -> None:
    path = tmp_path / decision_log.VM_LOG
    decision_log.append(path, [logged("a", Kind.BALLOON, 300 * MIB, "shrinks"),
                               logged("a", Kind.SHARES, {"cpu.weight": 400}, "heavier", at=101.0)])
    records = decision_log.read(path)
    assert [r["kind"] for r in records] == ["balloon", "shares"]
    assert records[0]["time"] == pytest.approx(1_000_000.0 - 5)  # decided 5 s before it was logged
    assert records[0]["applied"] and records[0]["by"] == "test (pid 1)"
    assert records[0]["inputs"] == {"floor": 256 * MIB}
    assert os.stat(path).st_mode & 0o777 == 0o600
    line = decision_log.describe(records[0])
    assert "balloon" in line and "300 MiB" in line and "shrinks" in line


def test_hostile_log_lines_are_skipped_or_made_harmless(tmp_path: Path) -> None:
    path = tmp_path / decision_log.VM_LOG
    good = json.dumps(logged("a", Kind.BALLOON, 300 * MIB, "ok"))
    path.write_text("\n".join([
        "not json", "[1, 2]", json.dumps({"time": "yesterday", "kind": "balloon", "reason": "x"}),
        json.dumps({"time": float("nan"), "kind": "balloon", "reason": "x"}) .replace("NaN", "1e999"),
        json.dumps({"time": 5, "kind": "format-disk", "reason": "x"}),
        json.dumps({"time": 5, "kind": "balloon", "reason": 7}),
        json.dumps({"time": True, "kind": "balloon", "reason": "x"}),
        json.dumps({"time": 6, "kind": "pin", "reason": "\x1b]0;owned\x07" + "y" * 5000, "vm": "\n",
                    "error": "\x1b[2J", "inputs": "not a table"}),
        good]))
    records = decision_log.read(path)
    assert len(records) == 2, records
    hostile = records[0]
    assert "\x1b" not in hostile["reason"] and len(hostile["reason"]) == decision_log.MAX_TEXT
    assert hostile["vm"] == "?" and hostile["error"] == "?[2J" and hostile["inputs"] == {}
    assert not hostile["applied"]  # not said: not believed
    assert records[1]["reason"] == "ok"


def test_log_is_capped_and_keeps_one_predecessor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decision_log, "MAX_BYTES", 2000)
    path = tmp_path / decision_log.VM_LOG
    for i in range(60):
        decision_log.append(path, [logged("a", Kind.BALLOON, i * MIB, f"step {i}", at=100.0 + i)])
    assert path.stat().st_size <= 2000 + 400
    assert path.with_name(path.name + ".old").exists()
    records = decision_log.read(path)
    assert records[-1]["reason"] == "step 59" and 5 < len(records) < 60
    assert decision_log.read(path, limit=3)[0]["reason"] == "step 57"


def test_log_refuses_to_follow_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    path = tmp_path / decision_log.VM_LOG
    path.symlink_to(victim)
    with pytest.raises(OSError):
        decision_log.append(path, [logged("a", Kind.BALLOON, MIB, "x")])
    assert victim.read_text() == "keep"
    assert decision_log.read(path) == []


def test_settings_defaults_round_trip_and_errors_name_the_setting(tmp_path: Path) -> None:
    path = tmp_path / control_settings.FILE
    assert control_settings.load(path) == ControlSettings()
    control_settings.save(ControlSettings(enabled=False, interval=20, pool_mib=2048, default_pin="balanced"), path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    loaded = control_settings.load(path)
    assert (loaded.enabled, loaded.interval, loaded.pool_mib, loaded.default_pin) == (False, 20, 2048, "balanced")
    assert "pool of 2048 MiB" in loaded.budget_text()
    for text, name in (("interval = 1", "interval"), ("host_target_percent = 99", "host_target_percent"),
                       ("default_pin = 'default'", "default_pin"), ("enabled = 'yes'", "enabled"),
                       ("pool = 5", "pool"), ("interval = [", "not valid TOML")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=name):
            control_settings.load(path)
    with pytest.raises(ConfigError, match="interval"):
        control_settings.save(ControlSettings(interval=0), path)


def test_topology_from_a_sysfs_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two packages, SMT pairs, one L3 per package, two NUMA nodes (a tree written here: this host
    has two plain CPUs)."""
    monkeypatch.setattr(affinity, "host_cpus", lambda: frozenset(range(4)))
    for cpu, (package, core, node) in enumerate([(0, 0, 0), (0, 0, 0), (1, 0, 1), (1, 0, 1)]):
        base = tmp_path / f"cpu{cpu}"
        (base / "topology").mkdir(parents=True)
        (base / "topology/physical_package_id").write_text(f"{package}\n")
        (base / "topology/core_id").write_text(f"{core}\n")
        (base / f"node{node}").mkdir()
        for index, (level, shared) in enumerate([(1, f"{cpu}"), (3, "0-1" if package == 0 else "2-3")]):
            (base / f"cache/index{index}").mkdir(parents=True)
            (base / f"cache/index{index}/level").write_text(f"{level}\n")
            (base / f"cache/index{index}/shared_cpu_list").write_text(f"{shared}\n")
    cpus = affinity.host_topology(tmp_path)
    assert [c.id for c in cpus] == [0, 1, 2, 3]
    assert cpus[0].core == cpus[1].core != cpus[2].core == cpus[3].core  # SMT siblings share a core
    assert [c.cache for c in cpus] == [0, 0, 2, 2] and [c.node for c in cpus] == [0, 0, 1, 1]
    plain = affinity.host_topology(tmp_path / "missing")  # nothing in sysfs: one core per CPU
    assert [c.core for c in plain] == [0, 1, 2, 3] and {c.node for c in plain} == {0}


@pytest.mark.parametrize("words, complaint", [
    (["--pool", "100", "--host-target", "70"], "not allowed with"),
    (["--pool", "8"], "pool 8 is outside"),
    (["--host-target", "99"], "host target 99 is outside"),
    (["--interval", "1"], "interval 1 is outside"),
    (["--interval", "ten"], "is not a whole number"),
])
def test_agent_options_are_checked(words: list[str], complaint: str) -> None:
    done = subprocess.run([sys.executable, "-m", "hvdesk", "agent", *words], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and complaint in done.stderr, done.stderr


def test_a_fifo_in_place_of_the_log_blocks_nothing(tmp_path: Path) -> None:
    path = tmp_path / decision_log.VM_LOG
    os.mkfifo(path)
    assert decision_log.read(path) == []  # would hang on open() without O_NONBLOCK
    with pytest.raises(OSError):
        decision_log.append(path, [logged("a", Kind.BALLOON, MIB, "x")])
