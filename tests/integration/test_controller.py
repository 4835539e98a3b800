"""The allocation controller on real guests, through `hvdesk agent` and `hvdesk decisions`: under a
pool, idle guests are ballooned toward their floor; a guest that then allocates past its balloon
gets memory back within a cycle or two, with no OOM kill in its serial log; a second controller
does not act while one does; the agent survives a `kill -9` of a VM; stopping the agent gives the
memory back."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hvdesk.control.cpu import nice_value
from hvdesk.qemu import cpu_weight
from tests.integration.conftest import wait_for_serial
from tests.integration.test_cli import guest_args, hv
from tests.integration.test_resources import allowed_list, qmp, vcpu_threads

pytestmark = pytest.mark.qemu
MIB = 1024 * 1024
POOL_MIB = 700
INTERVAL = 2  # seconds between control cycles (the agent samples every 2 s too)
OOM_SIGNS = ("Out of memory", "oom-kill", "invoked oom-killer")


async def poll(check, timeout: float, what: str, log: Path | None = None) -> None:
    """Await `check()` (a coroutine function) every half second until it is true; on a timeout,
    the agent's output (`log`) says what it decided."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            said = log.read_text()[-3000:] if log is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{said}")
        await asyncio.sleep(0.5)


async def balloon_mib(info: dict) -> int:
    return (await qmp(info, "query-balloon"))["actual"] // MIB


async def boot_two(guest) -> dict[str, dict]:
    infos = {}
    for name in ("a", "b"):
        created = hv("create", name, *guest_args(guest)[2:], "--memory", "512M")
        assert created.returncode == 0, created.stderr
        started = hv("start", name)
        assert started.returncode == 0, started.stderr
    for name in ("a", "b"):
        infos[name] = json.loads(hv("info", name, "--json").stdout)
        await wait_for_serial(Path(infos[name]["serial_log"]), guest.marker)
    return infos


def start_agent(home: Path) -> tuple[subprocess.Popen[str], Path]:
    out = home / "agent.out"
    agent = subprocess.Popen([sys.executable, "-m", "hvdesk", "agent", "--pool", str(POOL_MIB),
                              "--interval", str(INTERVAL), "--json"],
                             stdout=out.open("w"), stderr=subprocess.STDOUT, text=True)
    return agent, out


def stop_agent(agent: subprocess.Popen[str], out: Path) -> None:
    if agent.poll() is None:
        agent.send_signal(signal.SIGTERM)
    code = agent.wait(timeout=30)
    assert code == 0, out.read_text()


async def test_agent_under_a_pool(cli_home, tiny_guest):
    infos = await boot_two(tiny_guest)

    async def pool_holds() -> bool:
        sizes = [await balloon_mib(infos[n]) for n in ("a", "b")]
        return sum(sizes) <= POOL_MIB and all(s < 512 for s in sizes)

    agent, out = start_agent(cli_home)
    try:
        # 1. Idle guests (~30 MiB used) shrink toward their floor (256 MiB minimum) until the pool holds.
        await poll(pool_holds, timeout=60, what="the balloons to fit the pool", log=out)
        assert [await balloon_mib(infos[n]) >= 256 for n in ("a", "b")] == [True, True], "never below the floor"

        # 2. A second controller does not act while the agent does, and says who acts.
        second = hv("agent", "--once", "--pool", str(POOL_MIB))
        assert second.returncode == 1, second.stdout + second.stderr
        assert "not acting" in second.stdout and "acting as hvdesk agent" in second.stdout, second.stdout

        # 3. Guest a allocates more than its balloon leaves it (~350 MiB; 30 + 340 used): the
        # balloon's deflate-on-oom lets it through, and the controller gives it room within a cycle or two.
        shrunk = await balloon_mib(infos["a"])
        typed = hv("send-keys", "a", "--text",
                   "dd if=/dev/zero of=/run/hvdesk-alloc/x bs=1M count=340 && echo ALLOC-DONE-$((40+2)) >/dev/ttyS0\n")
        assert typed.returncode == 0, typed.stderr
        await wait_for_serial(Path(infos["a"]["serial_log"]), "ALLOC-DONE-42", timeout=120)
        done = time.monotonic()

        async def grown() -> bool:
            return await balloon_mib(infos["a"]) >= 370 + 64 - 8  # its use + the reserve (less rounding)
        await poll(grown, timeout=30, what="the controller to give guest a its memory back", log=out)
        reaction = time.monotonic() - done
        print(f"balloon of a: {shrunk} MiB before the allocation, grown {reaction:.1f} s after it finished")
        assert reaction <= 3 * INTERVAL + 4, f"took {reaction:.1f} s (cycle {INTERVAL} s, stats every 2 s)"
        serial = Path(infos["a"]["serial_log"]).read_text(errors="replace")
        assert not [sign for sign in OOM_SIGNS if sign in serial], serial[-2000:]
        await poll(pool_holds, timeout=30, what="b to shrink so that the pool holds again", log=out)
    finally:
        stop_agent(agent, out)

    # 4. Stopping the agent gives the VMs their memory back, and says so in their logs.
    async def both_full() -> bool:  # the guests deflate at their own pace
        return [await balloon_mib(infos[n]) for n in ("a", "b")] == [512, 512]
    await poll(both_full, timeout=30, what="the balloons to give back all memory")
    records = json.loads(hv("decisions", "a", "--json").stdout)
    assert records and {"time", "kind", "target", "reason"} <= set(records[0])
    assert [r["time"] for r in records] == sorted(r["time"] for r in records), "newest last"
    assert any(r["kind"] == "balloon" and r["target"] > shrunk * MIB for r in records), "a grew"
    assert records[-1]["target"] == 512 * MIB and "stops" in records[-1]["reason"], records[-1]
    shown = hv("decisions", "a")
    assert shown.returncode == 0 and "balloon" in shown.stdout and "Controller: none is acting now" in shown.stdout

    # 5. A new agent shrinks them again (a freed its memory: both idle); a kill -9 of b does not
    # end it, and a gets b's share.
    assert hv("send-keys", "a", "--text", "rm /run/hvdesk-alloc/x\n").returncode == 0
    agent, out = start_agent(cli_home)
    try:
        await poll(pool_holds, timeout=60, what="the balloons to fit the pool again", log=out)
        os.kill(int(infos["b"]["pid"]), signal.SIGKILL)

        async def a_has_all() -> bool:
            return await balloon_mib(infos["a"]) == 512
        await poll(a_has_all, timeout=40, what="a to get b's share after b was killed", log=out)
        await asyncio.sleep(2 * INTERVAL)
        assert agent.poll() is None, out.read_text()
    finally:
        stop_agent(agent, out)


async def test_agent_once_pins_dedicated_and_weighs_by_shares(cgroups, tiny_guest):
    """`modify --pin dedicated --shares 400`, then one cycle: the vCPU thread alone on a core (this
    host's two CPUs: core 1 for the vCPU, core 0 for QEMU's other threads), the weight 4096 in the
    cgroup v1 hierarchy this host has (the mechanism in use is what the test reads)."""
    mechanism = cgroups
    assert hv("create", "pinned", *guest_args(tiny_guest)).returncode == 0
    modified = hv("modify", "pinned", "--pin", "dedicated", "--shares", "400")
    assert modified.returncode == 0, modified.stderr
    assert hv("start", "pinned").returncode == 0
    info = json.loads(hv("info", "pinned", "--json").stdout)
    once = hv("agent", "--once", "--json")
    assert once.returncode == 0, once.stdout + once.stderr
    records = [json.loads(line) for line in once.stdout.splitlines() if line.startswith("{")]
    kinds = {r["kind"]: r for r in records}
    assert {"pin", "shares"} <= set(kinds) and all(r["applied"] for r in kinds.values()), once.stdout
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:  # dedicated needs two cores: one for the vCPU, one for housekeeping
        pid = int(info["pid"])
        vcpu = (await vcpu_threads(info))[0]
        placed = kinds["pin"]["target"]
        assert allowed_list(pid, vcpu) == ",".join(map(str, placed["vcpus"][0]))
        others = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != vcpu]
        assert {allowed_list(pid, t) for t in others} == {",".join(map(str, placed["emulator"]))}
        assert not set(placed["vcpus"][0]) & set(placed["emulator"])
    group = cpu_weight.group_of(mechanism, info["uuid"])
    if mechanism.kind == cpu_weight.V1:
        assert group is not None and (group / "cpu.shares").read_text().strip() == "4096"
    elif mechanism.kind == cpu_weight.V2:
        assert group is not None and (group / "cpu.weight").read_text().strip() == "400"
    else:
        assert os.getpriority(os.PRIO_PROCESS, int(info["pid"])) == nice_value(400)
    shown = hv("decisions", "pinned")
    assert "pinning dedicated" in shown.stdout and "400 shares" in shown.stdout, shown.stdout
