"""What the app shows of the allocation controller (no Qt): who acts, how much memory the balloons
hold back, the balloon targets over time (this controller's, or another's from its decision log)."""

from __future__ import annotations

import math
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hvdesk.control.decisions import Kind
from hvdesk.control.inputs import MIB
from hvdesk.core.units import format_approx
from hvdesk.engine.actions import Action, allows
from hvdesk.engine.controller import Controller, Target, holder
from hvdesk.engine.manager import Manager

if TYPE_CHECKING:
    from hvdesk.engine.monitoring import Monitor


_HOLDER = re.compile(r"hvdesk \(pid (\d+)\) holds it \(acting as (.+), \d+ s so far\)")


def who_acts(holder_text: str) -> str:
    """The controller a lock holder's text names, short: "hvdesk agent (pid 4242)"."""
    found = _HOLDER.fullmatch(holder_text)
    return f"{found.group(2)} (pid {found.group(1)})" if found else holder_text


@dataclass(frozen=True)
class GivenBack:
    """Host memory the running VMs' balloons hold back from their guests now."""

    bytes: int
    vms: int  # VMs whose balloon is below their configured memory
    per_vm: dict[str, int] = field(default_factory=dict)  # VM name -> bytes


def given_back(manager: Manager, monitor: Monitor) -> GivenBack:
    """Configured memory minus the balloon's actual size, summed over the running VMs with a balloon,
    from the monitor's latest samples (whoever set the balloons)."""
    per_vm: dict[str, int] = {}
    for machine in manager.machines():
        if machine.pid is None or machine.entry.config is None or not machine.config.balloon.enabled \
                or not allows(Action.BALLOON, machine.state):
            continue
        series = monitor.series.get(machine.entry.folder)
        sample = series.latest if series is not None else None
        if sample is None or sample.balloon is None:
            continue
        per_vm[machine.name] = max(0, machine.config.memory_mib * MIB - sample.balloon)
    return GivenBack(sum(per_vm.values()), sum(1 for v in per_vm.values() if v > 0), per_vm)


@dataclass(frozen=True)
class Status:
    """Who acts as the controller, as one controller sees it."""

    state: str  # "acting" (this one), "other" (another process), "off", "waiting" (no cycle yet)
    who: str  # the other controller ("hvdesk agent (pid 4242)"), when state is "other"

    def text(self) -> str:
        if self.state == "acting":
            return "acting (this app)"
        if self.state == "other":
            return f"{self.who} acts"
        if self.state == "off":
            return "off"
        return "starting"


def status(controller: Controller, other: str | None = None) -> Status:
    """Whether `controller` acts, another does (`other`: holder() asked by the caller, for a
    controller switched off), or none."""
    if controller.acting:
        return Status("acting", "")
    last = controller.last
    if controller.settings.enabled and last is not None and not last.acting and last.holder != "switched off":
        return Status("other", who_acts(last.holder))
    if other:
        return Status("other", who_acts(other))
    return Status("off" if not controller.settings.enabled else "waiting", "")


def status_line(state: Status, back: GivenBack) -> str:
    """For the main window: "Controller: acting (this app) — given back 1.2 GiB from 3 VMs"."""
    text = f"Controller: {state.text()}"
    if back.vms:
        text += f" — given back {format_approx(back.bytes)} from {back.vms} VM{'s' if back.vms != 1 else ''}"
    return text


def targets_from_log(records: list[dict[str, object]], wall_now: float, mono_now: float) -> list[Target]:
    """The balloon targets of a VM's decision log (applied ones, oldest first), on the monotonic
    clock: what another controller set, for the same graph."""
    found = []
    for record in records:
        target, when = record.get("target"), record.get("time")
        if record.get("kind") != Kind.BALLOON or not record.get("applied") or not isinstance(when, float) \
                or not isinstance(target, int) or isinstance(target, bool):
            continue
        inputs = record.get("inputs")
        floor = inputs.get("floor") if isinstance(inputs, dict) else None
        found.append(Target(mono_now - (wall_now - when), target,
                            floor if isinstance(floor, int) and not isinstance(floor, bool) else None))
    return found


def latest_floor(targets: list[Target] | deque[Target]) -> int | None:
    """The floor of the newest target that had one."""
    return next((t.floor for t in reversed(targets) if t.floor is not None), None)


class StatusWatch:
    """`status()` of a controller for views refreshed often: while it is switched off, who else
    acts is asked of the lock file at most every `every` seconds."""

    def __init__(self, controller: Controller, every: float = 5.0) -> None:
        self.controller, self.every = controller, every
        self._other = ""
        self._asked = -math.inf

    def __call__(self) -> Status:
        if self.controller.settings.enabled or self.controller.acting:
            self._asked = -math.inf  # ask at once the next time it is switched off
            return status(self.controller)
        now = time.monotonic()
        if now - self._asked >= self.every:
            self._asked = now
            self._other = holder(self.controller.manager)
        return status(self.controller, self._other)
