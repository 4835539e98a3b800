"""The monitor on real guests: the numbers must be right (a busy vCPU near 100 %, allocated
memory visible, disk writes as throughput, balloon changes), survive restarts, and stay bounded."""

from __future__ import annotations

import asyncio

import pytest

from hvdesk.console.keys import keys_for_text
from hvdesk.engine import console
from hvdesk.engine.monitoring import Monitor
from hvdesk.monitor.ring import Ring
from hvdesk.monitor.series import VmReading, VmSeries
from tests.guest.build import ACK_PREFIX, SHELL_MARKER
from tests.integration.conftest import qmp_call, wait_for_serial

pytestmark = pytest.mark.qemu
MIB = 1024 * 1024


async def samples(monitor: Monitor, name: str, count: int, interval: float = 0.5) -> list:
    out = []
    await monitor.tick()
    for _ in range(count):
        await asyncio.sleep(interval)
        sample = (await monitor.tick()).get(name)
        if sample is not None:
            out.append(sample)
    return out


async def boot(manager, guest_request, tiny_guest, name: str, **fields):
    machine = await manager.create(guest_request(name, **fields))
    await manager.start(name)
    await wait_for_serial(machine.paths.serial_log, SHELL_MARKER)
    return machine


async def test_busy_and_idle_vcpus(manager, guest_request, tiny_guest):
    # Two vCPUs, the guest burns one (hvdesk.burn=0: until stopped); the other idles.
    busy_vm = await manager.create(guest_request("busy", cpus=2, append=tiny_guest.append + " hvdesk.burn=0"))
    idle_vm = await manager.create(guest_request("idle"))
    await manager.start("busy")
    await manager.start("idle")  # both boot at once
    # Past boot: the busy guest's burner runs (it says so last), the idle guest's init has said
    # all it says (the shell on tty1 and its ready line).
    await asyncio.gather(wait_for_serial(busy_vm.paths.serial_log, f"{ACK_PREFIX} burn 0"),
                         wait_for_serial(idle_vm.paths.serial_log, SHELL_MARKER),
                         wait_for_serial(idle_vm.paths.serial_log, tiny_guest.marker))
    monitor = Monitor(manager, interval=1.0)
    busy, idle = [], []
    await monitor.tick()
    for _ in range(5):
        await asyncio.sleep(1.0)
        got = await monitor.tick()
        busy.append(got["busy"])
        idle.append(got["idle"])
    # A shared 2-core CI machine may not give a TCG vCPU a whole core: the busy one must stand out.
    busiest = [max(s.vcpus) for s in busy]
    quietest = [min(s.vcpus) for s in busy]
    assert sorted(busiest)[len(busiest) // 2] > 50, busiest
    assert sorted(quietest)[len(quietest) // 2] < 25, quietest
    assert sorted(max(s.vcpus) for s in idle)[2] < 15, [s.vcpus for s in idle]
    assert all(s.cpu is not None and s.cpu >= max(s.vcpus) - 5 for s in busy)  # the process >= its vCPU


async def test_guest_allocation_shows_in_guest_and_host_memory(manager, guest_request, tiny_guest):
    machine = await boot(manager, guest_request, tiny_guest, "mem", memory_mib=384)
    monitor = Monitor(manager, interval=1.0)
    before = (await samples(monitor, "mem", 3, 1.0))[-1]
    assert before.guest_total is not None, "the guest's balloon driver reports its memory"
    await console.send_keys(manager, "mem", keys_for_text("dd if=/dev/zero of=/run/hvdesk-alloc/x bs=1M count=64\n"))
    for _ in range(30):  # dd runs at TCG speed, and the guest reports its stats once a second
        await asyncio.sleep(1.0)
        after = (await monitor.tick())["mem"]
        if after.guest_used - before.guest_used > 56 * MIB and after.rss - before.rss > 40 * MIB:
            break
    assert after.guest_used - before.guest_used > 56 * MIB, (before.guest_used, after.guest_used)
    assert after.rss - before.rss > 40 * MIB, (before.rss, after.rss)
    assert machine.config.memory_mib * MIB == after.balloon


async def test_disk_writes_show_as_throughput(manager, guest_request, tiny_guest):
    await boot(manager, guest_request, tiny_guest, "disk", disk_size=256 * MIB)
    monitor = Monitor(manager, interval=0.5)
    await monitor.tick()
    await console.send_keys(manager, "disk",
                            keys_for_text("dd if=/dev/zero of=/dev/vda bs=1M count=32 oflag=direct\n"))
    written, then = 0.0, monitor.series_of(manager.get("disk")).latest.time
    for _ in range(90):  # TCG writes slowly on a busy machine: up to 45 s
        await asyncio.sleep(0.5)
        sample = (await monitor.tick())["disk"]
        written += (sample.disk_write or 0) * (sample.time - then)  # rate x the real time between ticks
        then = sample.time
        if written >= 30 * MIB:
            break
    assert written >= 30 * MIB, f"only {written / MIB:.1f} MiB seen written"
    assert sample.network.startswith("not available")


async def test_balloon_change_shows_in_the_series(engines, guest_request, tiny_guest):
    manager = await engines(watch=True)
    machine = await boot(manager, guest_request, tiny_guest, "balloon", memory_mib=256)
    monitor = Monitor(manager, interval=0.5)
    await samples(monitor, "balloon", 1)
    await qmp_call(machine, "balloon", {"value": 192 * MIB})
    for _ in range(20):  # the BALLOON_CHANGE event reaches the watcher, the next tick records it
        await asyncio.sleep(0.25)
        await monitor.tick()
        if monitor.series_of(machine).latest.balloon == 192 * MIB:
            break
    assert machine.balloon == 192 * MIB
    values = monitor.series_of(machine).rings["balloon"].values()
    assert values[0] == 256 * MIB and values[-1] == 192 * MIB


async def test_rates_survive_a_restart(manager, guest_request):
    # No need to wait for the boot: the booting guest already runs up the CPU counter that the
    # new QEMU's starts below.
    machine = await manager.create(guest_request("again"))
    await manager.start("again")
    monitor = Monitor(manager, interval=0.5)
    await samples(monitor, "again", 2)
    await manager.stop("again", force=True, timeout=0)
    await manager.start("again")  # a new QEMU: its CPU counter starts from zero again
    after = await samples(monitor, "again", 3)
    cpus = [s.cpu for s in after if s.cpu is not None]
    assert cpus and all(0 <= c < 400 for c in cpus), cpus  # no negative rate, no spike
    assert len(monitor.series_of(machine).times) >= 5


def test_rings_stay_bounded():
    ring = Ring(5)
    for value in range(100):
        ring.append(value)
    assert list(ring.values()) == [95, 96, 97, 98, 99] and len(ring) == 5
    series = VmSeries(capacity=10)
    for t in range(1000):
        series.record(VmReading(time=float(t), pid=1, cpu_seconds=t * 0.5, vcpu_seconds=[t * 0.25]))
    assert len(series.times) == 10 and len(series.vcpu_rings[0]) == 10
    assert series.latest.cpu == pytest.approx(50.0) and series.latest.vcpus == [pytest.approx(25.0)]
    assert series.rings["guest_total"].latest() is None  # never reported: missing, not zero
