"""One-off resource commands on real guests, through the `hvdesk` command: the balloon target
reaches the guest, a pinned vCPU thread shows the host CPUs in /proc, and CPU shares 4:1 between two
busy guests on one host CPU give their vCPUs CPU time near 4:1. Bad input: one line, exit 1 (2 for
usage errors)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from hvdesk.qemu import cpu_weight
from hvdesk.qemu.qmp import QmpSession
from tests.integration.conftest import endpoint, wait_for_serial
from tests.integration.test_cli import guest_args, hv

pytestmark = pytest.mark.qemu
MIB = 1024 * 1024


async def qmp(info: dict, command: str, arguments: dict | None = None):
    session = QmpSession("test")
    await session.connect(endpoint(info["sockets"]["ctl"]))
    try:
        return await session.execute(command, arguments)
    finally:
        await session.close()


async def boot(guest, name: str, *extra: str) -> dict:
    done = hv("create", name, *guest_args(guest), *extra)
    assert done.returncode == 0, done.stderr
    done = hv("start", name)
    assert done.returncode == 0, done.stderr
    info = json.loads(hv("info", name, "--json").stdout)
    await wait_for_serial(Path(info["serial_log"]), guest.marker)
    return info


async def vcpu_threads(info: dict) -> list[int]:
    cpus = await qmp(info, "query-cpus-fast")
    return [c["thread-id"] for c in sorted(cpus, key=lambda c: c["cpu-index"])]


def allowed_list(pid: int, tid: int) -> str:
    for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no Cpus_allowed_list")


def cpu_seconds(pid: int, tid: int) -> float:
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def error_line(done) -> str:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


async def test_balloon_and_pin_and_bad_input(cli_home, tiny_guest):
    info = await boot(tiny_guest, "res", "--cpus", "2")
    assert (await qmp(info, "query-balloon"))["actual"] == 256 * MIB

    done = hv("balloon", "res", "192")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "'res' balloon target 192 MiB (reached 192 MiB)"
    assert (await qmp(info, "query-balloon"))["actual"] == 192 * MIB  # the guest's driver gave it up
    assert hv("balloon", "res", "256").returncode == 0
    assert (await qmp(info, "query-balloon"))["actual"] == 256 * MIB

    tids = await vcpu_threads(info)
    assert len(tids) == 2
    done = hv("pin", "res", "--vcpu", "1", "--host-cpus", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"'res' vCPU 1 (thread {tids[1]}) pinned to host CPU 1"
    assert allowed_list(info["pid"], tids[1]) == "1"
    assert allowed_list(info["pid"], tids[0]) == "0-1"  # just that thread
    assert hv("pin", "res", "--vcpu", "1", "--host-cpus", "0-1").returncode == 0
    assert allowed_list(info["pid"], tids[1]) == "0-1"

    top = max(os.sched_getaffinity(0))
    for args, message in [
        (["balloon", "res", "0"], "balloon target 0 MiB is outside 1–256 MiB ('res' has 256 MiB)"),
        (["balloon", "res", "257"], "balloon target 257 MiB is outside 1–256 MiB"),
        (["balloon", "ghost", "100"], "no VM named 'ghost'"),
        (["pin", "res", "--vcpu", "2", "--host-cpus", "0"], "'res' has no vCPU 2 (its vCPUs are 0–1)"),
        (["pin", "res", "--vcpu", "-1", "--host-cpus", "0"], "'res' has no vCPU -1"),
        (["pin", "res", "--vcpu", "0", "--host-cpus", str(top + 1)], f"CPU {top + 1} is not on this host"),
        (["pin", "res", "--vcpu", "0", "--host-cpus", "0-x"], "is not like 0-1,3"),
        (["shares", "res", "0"], "CPU shares 0 are outside 1–10000 (100 is normal)"),
        (["shares", "res", "20000"], "CPU shares 20000 are outside 1–10000"),
    ]:
        assert message in error_line(hv(*args)), args
    assert allowed_list(info["pid"], tids[0]) == "0-1"  # the refused pins changed nothing
    for args in (["balloon", "res", "lots"], ["pin", "res", "--host-cpus", "0"], ["pin", "res", "--vcpu", "0"],
                 ["shares", "res"], ["shares", "res", "1.5"]):
        assert hv(*args).returncode == 2, args

    assert hv("stop", "res", "--force", "--timeout", "0").returncode == 0
    for args in (["balloon", "res", "100"], ["pin", "res", "--vcpu", "0", "--host-cpus", "0"],
                 ["shares", "res", "100"]):
        assert "it is stopped" in error_line(hv(*args)), args


async def test_shares_4_to_1_on_one_cpu(cgroups, tiny_guest):
    mechanism = cgroups
    busy = ("--append", tiny_guest.append + " hvdesk.burn=0")  # the guest spins until stopped
    infos = {}
    for name in ("heavy", "light"):
        done = hv("create", name, *guest_args(tiny_guest)[:-2], *busy)
        assert done.returncode == 0, done.stderr
        assert hv("start", name).returncode == 0
        infos[name] = json.loads(hv("info", name, "--json").stdout)
    for info in infos.values():
        await wait_for_serial(Path(info["serial_log"]), tiny_guest.marker)
    host_cpu = str(max(os.sched_getaffinity(0)))
    tids = {}
    for name, info in infos.items():
        assert hv("pin", name, "--vcpu", "0", "--host-cpus", host_cpu).returncode == 0
        tids[name] = (await vcpu_threads(info))[0]
        assert allowed_list(info["pid"], tids[name]) == host_cpu
    done = hv("shares", "heavy", "400")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"'heavy' CPU weight 400 ({mechanism.describe(cpu_weight.Weights(400, 4096, -6))})"
    assert hv("shares", "light", "100").returncode == 0
    groups = {name: cpu_weight.groups(info["uuid"]) for name, info in infos.items()}
    if mechanism.kind == cpu_weight.V1:  # this test machine's case
        for name, shares in (("heavy", "4096"), ("light", "1024")):
            (group,) = groups[name]
            assert (group / "cpu.shares").read_text().strip() == shares
            assert str(infos[name]["pid"]) in (group / "cgroup.procs").read_text().split()
            assert str(tids[name]) in (group / "tasks").read_text().split()

    await asyncio.sleep(1.0)  # let the scheduler settle on the new weights
    before = {name: cpu_seconds(infos[name]["pid"], tid) for name, tid in tids.items()}
    start = time.monotonic()
    await asyncio.sleep(8.0)  # hundreds of scheduler periods of both spinning vCPUs: 4:1 shows well inside 2.5–6
    used = {name: cpu_seconds(infos[name]["pid"], tid) - before[name] for name, tid in tids.items()}
    elapsed = time.monotonic() - start
    ratio = used["heavy"] / max(used["light"], 0.01)
    print(f"\nshares 400:100 on host CPU {host_cpu} by {mechanism.kind}: vCPU time {used['heavy']:.2f} s : "
          f"{used['light']:.2f} s in {elapsed:.1f} s = {ratio:.2f}")
    assert used["heavy"] + used["light"] > 0.5 * elapsed, used  # both were busy on that CPU
    assert 2.5 <= ratio <= 6.0, used

    for name in infos:
        assert hv("stop", name, "--force", "--timeout", "0").returncode == 0
        for group in groups[name]:
            assert not group.exists(), f"{group} outlived {name}'s QEMU"
        assert cpu_weight.groups(infos[name]["uuid"]) == []
