"""Guest-memory traces for the balloon replay: what each guest WANTS, per 10-second cycle.

SYNTHETIC, not recorded: each trace is generated from a seeded RNG, so a run is the same on every
machine and the three policies see exactly the same demand. The shapes follow what desktop and
server guests typically do (an idle floor with noise, cron bumps, a build job, allocation spikes, a
browser that grows until tabs are closed); the sizes are plausible, not measured.

A trace gives two series, in bytes:
    own    what the guest uses for itself (anonymous memory, kernel, tmpfs): it cannot be dropped;
           if the balloon leaves less than this, the guest is in OOM territory.
    cache  page cache the guest would like to keep but could drop at once (clean, cold file pages):
           it fills whatever the balloon leaves above `own`, up to this size. Dropping it costs
           nothing in this model (no refaults are simulated).

A scenario is a host (total memory; what the host uses outside the VMs, per cycle) and its VMs.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

MIB = 1024 * 1024
GIB = 1024 * MIB
CYCLE = 10.0  # seconds between policy runs (hvdesk's monitor, MOM's policy-engine-interval, pvestatd)
CYCLES_PER_MIN = int(60 / CYCLE)


@dataclass(frozen=True)
class Trace:
    name: str
    memory_max: int  # configured memory: the balloon's ceiling
    min_memory: int  # the admin's minimum (hvdesk min_memory, MOM balloon_min, Proxmox `balloon`)
    own: tuple[int, ...]
    cache: tuple[int, ...]
    shares: int = 100


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    host_total: int
    host_other: tuple[int, ...]  # host memory used outside the VMs, per cycle
    vms: tuple[Trace, ...]

    @property
    def cycles(self) -> int:
        return len(self.host_other)


def _minimum(memory_max: int) -> int:
    """The same minimum for every policy: a quarter of the configured memory, at least 256 MiB."""
    return max(256 * MIB, memory_max // 4)


def _walk(rng: random.Random, cycles: int, base: float, step: float, low: float, high: float) -> list[float]:
    """A bounded random walk in MiB: the noise of an idle system."""
    value, out = base, []
    for _ in range(cycles):
        value = min(high, max(low, value + rng.uniform(-step, step)))
        out.append(value)
    return out


def _trace(name: str, memory_max: int, own_mib: list[float], cache_mib: list[float]) -> Trace:
    return Trace(name, memory_max, _minimum(memory_max), tuple(int(v) * MIB for v in own_mib),
                 tuple(int(v) * MIB for v in cache_mib))


def idle_desktop(name: str, memory_max: int, cycles: int, seed: int) -> Trace:
    """A logged-in desktop nobody uses: ~700 MiB own use wandering ±40 MiB, a +60 MiB bump for 30 s
    every 5 minutes (indexer, update check), page cache growing slowly from 400 to 600 MiB."""
    rng = random.Random(seed)
    own = _walk(rng, cycles, 700, 8, 660, 740)
    for i in range(cycles):
        if i % (5 * CYCLES_PER_MIN) < 3 and i > 0:
            own[i] += 60
    cache = [400 + 200 * i / cycles for i in range(cycles)]
    return _trace(name, memory_max, own, cache)


def idle_server(name: str, memory_max: int, cycles: int, seed: int, base: float = 220) -> Trace:
    """A headless server at rest: `base` MiB own use ±10 MiB, a cron job of +40 MiB for one minute
    every 15 minutes, 150 MiB of page cache."""
    rng = random.Random(seed)
    own = _walk(rng, cycles, base, 2, base - 10, base + 10)
    for i in range(cycles):
        if i % (15 * CYCLES_PER_MIN) < CYCLES_PER_MIN and i > 0:
            own[i] += 40
    return _trace(name, memory_max, own, [150.0] * cycles)


def build_ramp(name: str, memory_max: int, cycles: int, seed: int) -> Trace:
    """A build job: 300 MiB at rest until minute 10, then own use ramps linearly to 70 % of the VM's
    memory by minute 30, holds until minute 40, falls back within 5 minutes; the page cache grows
    from 200 to 600 MiB as sources are read and stays there."""
    rng = random.Random(seed)
    top = 0.70 * memory_max / MIB
    own, cache = [], []
    for i in range(cycles):
        minute = i / CYCLES_PER_MIN
        if minute < 10:
            level = 300.0
        elif minute < 30:
            level = 300 + (top - 300) * (minute - 10) / 20
        elif minute < 40:
            level = top
        elif minute < 45:
            level = top - (top - 300) * (minute - 40) / 5
        else:
            level = 300.0
        own.append(level + rng.uniform(-10, 10))
        cache.append(200 + 400 * min(1.0, max(0.0, (minute - 10) / 20)))
    return _trace(name, memory_max, own, cache)


def spikes(name: str, memory_max: int, cycles: int, seed: int) -> Trace:
    """A service at 250 MiB that suddenly allocates +300 MiB (within one cycle) for 2 minutes, about
    every 12 minutes (seeded jitter ±3 min), first at minute 8; 100 MiB of page cache."""
    rng = random.Random(seed)
    own = _walk(rng, cycles, 250, 3, 235, 265)
    start = 8 * CYCLES_PER_MIN
    while start < cycles:
        for i in range(start, min(cycles, start + 2 * CYCLES_PER_MIN)):
            own[i] += 300
        start += (12 + rng.randint(-3, 3)) * CYCLES_PER_MIN
    return _trace(name, memory_max, own, [100.0] * cycles)


def browser_sawtooth(name: str, memory_max: int, cycles: int, seed: int) -> Trace:
    """A browser session: own use climbs from 500 MiB by ~2.5 MiB a cycle (tabs opened, caches
    grown) to about 950 MiB, then drops back to 500 MiB at once (tabs closed), a period of about
    18 minutes; 200 MiB of page cache."""
    rng = random.Random(seed)
    own, level = [], 500.0
    for _ in range(cycles):
        level += rng.uniform(0.5, 4.5)
        if level > 950:
            level = 500.0
        own.append(level)
    return _trace(name, memory_max, own, [200.0] * cycles)


def mixed(cycles: int = 60 * CYCLES_PER_MIN) -> Scenario:
    """Four VMs (6 GiB) on an 8 GiB host whose own processes use 768 MiB: 84 % used with every
    balloon deflated, so all policies have something to do from the start."""
    vms = (idle_desktop("desktop", 2 * GIB, cycles, 1), idle_server("server", GIB, cycles, 2),
           build_ramp("build", 2 * GIB, cycles, 3), spikes("spiky", GIB, cycles, 4))
    return Scenario("mixed", mixed.__doc__ or "", 8 * GIB, (768 * MIB,) * cycles, vms)


def host_pressure(cycles: int = 60 * CYCLES_PER_MIN) -> Scenario:
    """Six VMs (7 GiB) on an 8 GiB host whose own processes use 512 MiB (94 % with every balloon
    deflated), and from minute 20 to 35 a host process takes 1 GiB more (106 %)."""
    vms = (idle_desktop("desktop", 2 * GIB, cycles, 11), idle_server("server", GIB, cycles, 12),
           build_ramp("build", 1536 * MIB, cycles, 13), spikes("spiky", GIB, cycles, 14),
           browser_sawtooth("browser", GIB, cycles, 15),
           idle_server("small", 512 * MIB, cycles, 16, base=150))
    other = tuple((512 + (1024 if 20 * CYCLES_PER_MIN <= i < 35 * CYCLES_PER_MIN else 0)) * MIB
                  for i in range(cycles))
    return Scenario("pressure", host_pressure.__doc__ or "", 8 * GIB, other, vms)


SCENARIOS: dict[str, Callable[[int], Scenario]] = {"mixed": mixed, "pressure": host_pressure}
