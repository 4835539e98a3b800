"""`hvdesk agent` (the allocation controller, headless) and `hvdesk decisions` (what it did, and why)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from hvdesk.core import control_settings
from hvdesk.core.control_settings import ControlSettings
from hvdesk.core.errors import ConfigError
from hvdesk.engine import controller as control
from hvdesk.engine import decision_log
from hvdesk.engine.manager import Manager

if TYPE_CHECKING:
    from hvdesk.engine.monitoring import Monitor  # loaded by the agent only (numpy)

WARM_UP_TICKS = 6  # --once: monitor ticks at most, until every running VM has fresh guest stats
MONITOR_INTERVAL = 2.0  # seconds: samples for the controller's rates (it acts every --interval)


def settings_for(args: argparse.Namespace) -> ControlSettings:
    """The saved settings with this command line's overrides. The agent acts when it is asked to,
    whether or not the app's controller is switched on."""
    try:
        saved = control_settings.load()
    except ConfigError as exc:
        print(f"hvdesk: {exc}; using the default settings", file=sys.stderr)
        saved = ControlSettings()
    settings = dataclasses.replace(saved, enabled=True)
    if args.interval is not None:
        settings.interval = args.interval
    if args.pool is not None:
        settings.pool_mib = args.pool
    if args.host_target is not None:
        settings.host_target_percent, settings.pool_mib = args.host_target, 0
    return settings.validate()


async def cmd_agent(manager: Manager, args: argparse.Namespace) -> int:
    from hvdesk.engine.monitoring import Monitor

    settings = settings_for(args)
    monitor = Monitor(manager, interval=min(MONITOR_INTERVAL, float(settings.interval)))
    controller = control.Controller(manager, monitor, settings, who="hvdesk agent")
    controller.subscribe(_print_report(args.json))
    await monitor.tick()
    if args.once:
        await _warm_up(manager, monitor)
        report = await controller.cycle()
        controller.lock.release()  # one cycle: its balloons stay as decided
        return 0 if report.acting else 1
    print(f"hvdesk agent: every {settings.interval} s, keeping {settings.budget_text()}; "
          "Ctrl-C or SIGTERM ends it and gives the VMs their memory back", flush=True)
    monitor.start()
    controller.start()
    try:
        await _until_signalled()
    finally:
        await monitor.stop()
        await controller.stop()
    return 0


async def _warm_up(manager: Manager, monitor: Monitor) -> None:
    """Tick until each running VM has a sample with fresh guest stats (its driver reports once
    polling is on), so that one cycle has something to act on."""
    for _ in range(WARM_UP_TICKS):
        samples = await monitor.tick()
        if samples and all(s.guest_updated is not None and s.guest_used is not None for s in samples.values()):
            return
        await asyncio.sleep(monitor.interval)
        await manager.refresh()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C ends asyncio.run instead
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _print_report(as_json: bool) -> Callable[[control.CycleReport], None]:
    waiting = [""]

    def show(report: control.CycleReport) -> None:
        if not report.acting:
            if report.holder != waiting[0]:
                print(f"hvdesk agent: not acting: the controller is {report.holder}; trying again each cycle",
                      flush=True)
                waiting[0] = report.holder
            return
        waiting[0] = ""
        for record in report.decisions:
            print(json.dumps(record) if as_json else f"{record['vm'] or 'host'}: {decision_log.describe(record)}",
                  flush=True)
    return show


async def cmd_decisions(manager: Manager, args: argparse.Namespace) -> int:
    machine = manager.get(args.name)
    records = decision_log.read(control.log_path(machine.entry.folder), limit=args.limit)
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    if not records:
        print(f"No decisions about {machine.name!r} yet (the controller acts on running VMs: hvdesk agent, "
              "or the app with the controller on)")
    for record in records:
        print(decision_log.describe(record))
    holder = control.holder(manager)
    print(f"Controller: {holder if holder else 'none is acting now'}")
    return 0
