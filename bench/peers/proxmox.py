"""Proxmox VE's auto-ballooning (pvestatd), reimplemented.

Source: github.com/proxmox/pve-manager, `PVE/AutoBalloon.pm` (compute_alg1) and
`PVE/Service/pvestatd.pm` (auto_ballooning: every 10 s update cycle, target 80 % of the host's
memory, maxchange 100 MiB); the per-VM inputs come from qemu-server's `PVE/QemuServer.pm` vmstatus
(balloon_min = the VM's `balloon` setting, shares default 1000, balloon = QEMU's actual, freemem =
the guest's free memory from the balloon stats, MemFree: page cache not counted as free).

The rule, per cycle:
    goal = 80 % of host memory - host memory used       (bytes the VMs may grow by; < 0: shrink)
    |goal| <= 10 MiB: nothing. goal > 0: grow, first the VMs "with memory pressure" (freemem <=
    25 % of balloon_min, or balloon below balloon_min), all VMs if that made no progress.
    goal < 0: shrink, first the VMs "with enough free memory" (freemem > 25 % of balloon_min and
    balloon >= balloon_min), all VMs if that made no progress.
    Within a list, the change is split by shares above balloon_min: desired = balloon_min + (sum of
    (balloon - balloon_min) + goal) * shares / total shares, clamped to [balloon_min, maxmem], each VM
    moving at most 100 MiB toward it per cycle; repeated while some of the goal is left and VMs move.
The guest's own use is not consulted: only balloon_min protects a guest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.balloon_sim import GuestView, HostView

MIB = 1024 * 1024
TARGET = 0.80
MAXCHANGE = 100 * MIB
DEADBAND = 10 * MIB
DEFAULT_SHARES = 1000


@dataclass(frozen=True)
class _Vm:
    name: str
    balloon: int
    balloon_min: int
    maxmem: int
    shares: int


class ProxmoxPolicy:
    name = "Proxmox"

    def __init__(self, target: float = TARGET) -> None:
        self.target = target

    def step(self, host: HostView, guests: Sequence[GuestView]) -> Mapping[str, int]:
        goal = int(host.total * self.target - host.used)
        vms = {g.name: _Vm(g.name, g.actual, g.min_memory, g.memory_max, DEFAULT_SHARES) for g in guests}
        plenty = {g.name for g in guests if g.mem_free > 0.25 * g.min_memory and g.actual >= g.min_memory}
        res: dict[str, int] = {}
        if goal > DEADBAND:
            rest = _change(vms, res, [n for n in vms if n not in plenty], goal)
            if rest >= goal:
                _change(vms, res, list(vms), rest)
        elif goal < -DEADBAND:
            rest = _change(vms, res, [n for n in vms if n in plenty], goal)
            if rest <= goal:
                _change(vms, res, list(vms), rest)
        return {name: target for name, target in res.items() if target != vms[name].balloon}


def _change(vms: Mapping[str, _Vm], res: dict[str, int], ids: list[str], amount: int) -> int:
    """compute_alg1's change_func: move `amount` bytes (signed) between the VMs `ids`; returns the rest."""
    rest, repeat, progress = amount, True, True
    done: set[str] = set()
    while rest and repeat and progress:
        repeat = progress = False
        active = [n for n in ids if n not in done]
        alloc_old = sum(res.get(n, vms[n].balloon) - vms[n].balloon_min for n in active)
        shares_total = sum(vms[n].shares for n in active)
        alloc_new = alloc_old + rest
        changes = 0
        for name in active:
            vm = vms[name]
            desired = vm.balloon_min + int(alloc_new / shares_total * vm.shares)
            if desired > vm.maxmem or desired < vm.balloon_min:
                desired, repeat = min(vm.maxmem, max(vm.balloon_min, desired)), True
            if amount > 0 and desired > vm.balloon:
                balloon = min(desired, vm.balloon + MAXCHANGE)
            elif desired < vm.balloon:
                balloon = max(desired, vm.balloon - MAXCHANGE)
            else:
                done.add(name)
                continue
            if balloon != vm.balloon:
                change = balloon - res.get(name, vm.balloon)
                res[name] = balloon
                if change:
                    changes += change
                    progress = repeat = True
        rest -= changes
    return rest
