"""One coroutine per command; each prints its result for people, or as JSON with --json.

A command imports what only it needs inside its handler: `list` and `info` run in a few ms, so the
heavy imports (numpy for the monitor, the RFB client and its DES, the ISO reader) would otherwise be
nearly all of their time. tests/integration/test_cli_imports.py keeps it so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from hvdesk.core.errors import ConfigError, NotFoundError
from hvdesk.core.units import format_approx, format_size
from hvdesk.engine.actions import Action, allows
from hvdesk.engine.manager import Manager

if TYPE_CHECKING:
    from hvdesk.monitor.series import VmSample

MIB = 1024 * 1024


async def run(args: argparse.Namespace) -> int:
    manager = Manager(watch=args.command == "agent")  # the agent follows VMs starting and stopping
    await manager.open(inspect=args.command in ("top", "agent"))
    try:
        return await HANDLERS[args.command](manager, args)
    finally:
        await manager.close()


async def cmd_create(manager: Manager, args: argparse.Namespace) -> int:
    from hvdesk.engine.library_ops import CreateRequest

    machine = await manager.create(CreateRequest(
        name=args.name, os=args.os, memory_mib=args.memory, cpus=args.cpus, disk_size=args.disk,
        attach_disk=args.attach_disk, iso=args.iso, kernel=args.kernel, initrd=args.initrd,
        append=args.append, firmware=args.firmware, machine=args.machine, notes=args.notes,
        allow_backing=args.allow_backing))
    config = machine.config
    if machine.notice:
        print(machine.notice)
    print(f"Created {config.name!r}: {config.os}, {format_size(config.memory_mib * MIB)}, "
          f"{config.cpus} vCPU{'s' if config.cpus > 1 else ''}, {len(config.disks)} disk(s), in {machine.entry.folder}")
    for disk in config.disks:
        if disk.backing:
            chain = " <- ".join(f"{b.path} ({b.format})" for b in reversed(disk.backing))
            print(f"  {disk.path} reads from its backing images: {chain} <- {disk.path} ({disk.format})")
    return 0


async def cmd_start(manager: Manager, args: argparse.Namespace) -> int:
    machine = manager.get(args.name)
    await manager.refresh_state(machine)
    resuming = str(machine.state) == "saved" and not args.discard_saved_state
    machine = await manager.start(args.name, paused=args.paused, discard_saved_state=args.discard_saved_state)
    run = machine.run
    accel = f"{run.accel.upper()}: {run.accel_reason}" if run else "?"
    what = "Resumed the saved state of" if resuming else "Started"
    print(f"{what} {machine.name!r} ({machine.state}, pid {machine.pid}; accelerator {accel})")
    return 0


async def cmd_save(manager: Manager, args: argparse.Namespace) -> int:
    from hvdesk.engine.savestate import Progress

    tty = sys.stdout.isatty()

    def show(step: Progress) -> None:
        if tty and step.total:
            print(f"\rSaving {args.name!r}: {format_approx(step.transferred)} of {format_approx(step.total)} "
                  f"of memory ({step.status}, {step.elapsed:.1f} s)\033[K", end="", flush=True)

    try:
        done = await manager.save(args.name, show if tty else None)
    finally:
        if tty:
            print("\r\033[K", end="", flush=True)
    print(f"Saved the state of {args.name!r} in {done.seconds:.1f} s ({format_approx(done.size)}, {done.path}); "
          f"it is {done.machine.state}: `hvdesk start {args.name}` resumes it")
    return 0


async def cmd_stop(manager: Manager, args: argparse.Namespace) -> int:
    machine = await manager.stop(args.name, force=args.force, timeout=args.timeout)
    print(f"{machine.name!r} is {machine.state}")
    return 0


def _simple(method: str) -> Callable[[Manager, argparse.Namespace], Awaitable[int]]:
    async def handler(manager: Manager, args: argparse.Namespace) -> int:
        machine = await getattr(manager, method)(args.name)
        print(f"{machine.name!r} is {machine.state}" + (" (reset)" if method == "reset" else ""))
        return 0
    return handler


async def cmd_stats(manager: Manager, args: argparse.Namespace) -> int:
    from hvdesk.engine.monitoring import Monitor

    machine = manager.get(args.name)
    await manager.refresh_state(machine)
    machine.require(Action.SAMPLE)
    monitor = Monitor(manager, interval=args.interval)
    await monitor.tick()  # the baseline: rates need two readings
    shown = 0
    while not args.count or shown < args.count:
        await asyncio.sleep(args.interval)
        await manager.refresh_state(machine)
        if not allows(Action.SAMPLE, machine.state):
            print(f"{machine.name!r} is {machine.state}", file=sys.stderr)
            return 1
        sample = (await monitor.tick()).get(machine.name)
        if sample is None:
            continue
        print(json.dumps(sample.to_json()) if args.json else stats_line(sample), flush=True)
        shown += 1
    return 0


def _size(value: float | None) -> str:
    return format_approx(int(value)) if value is not None else "-"


def _pct(value: float | None) -> str:
    return f"{value:5.1f}%" if value is not None else "    -"


def stats_line(sample: VmSample) -> str:
    vcpus = " ".join(_pct(v).strip() for v in sample.vcpus)
    return (f"cpu {_pct(sample.cpu)} [{vcpus}]  rss {_size(sample.rss)}  balloon {_size(sample.balloon)}  "
            f"guest used {_size(sample.guest_used)}/{_size(sample.guest_total)}  "
            f"disk r {_size(sample.disk_read)}/s w {_size(sample.disk_write)}/s")


async def cmd_top(manager: Manager, args: argparse.Namespace) -> int:
    from hvdesk.engine.monitoring import Monitor

    monitor = Monitor(manager, interval=args.interval)
    await monitor.tick()
    refreshes = 0
    clear = "\033[H\033[J" if sys.stdout.isatty() else ""
    while not args.count or refreshes < args.count:
        await asyncio.sleep(args.interval)
        await manager.refresh()
        samples = await monitor.tick()
        host = monitor.host.latest
        assert host is not None, "every tick samples the host"
        rows = [("NAME", "STATE", "CPU", "vCPUs", "RSS", "BALLOON", "GUEST USED", "DISK R/s", "DISK W/s")]
        for machine in manager.machines():
            sample = samples.get(machine.name)
            if sample is None:
                continue
            rows.append((machine.name, str(machine.state), _pct(sample.cpu).strip(),
                         " ".join(_pct(v).strip() for v in sample.vcpus), _size(sample.rss), _size(sample.balloon),
                         _size(sample.guest_used), _size(sample.disk_read), _size(sample.disk_write)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        print(clear + f"hvdesk top — host CPU {sum(host.cpu_per_core) / len(host.cpu_per_core):.0f}%, memory "
              f"{format_approx(host.memory_used)} used of {format_approx(host.memory_total)}, "
              f"{format_approx(host.committed)} given to {len(rows) - 1} running VM(s)")
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if len(rows) == 1:
            print("(no VM is running)")
        sys.stdout.flush()
        refreshes += 1
    return 0


async def cmd_screenshot(manager: Manager, args: argparse.Namespace) -> int:
    from hvdesk.engine import console

    png = await console.screenshot(manager, args.name)
    target = args.file.expanduser()
    if not target.parent.is_dir():
        raise NotFoundError(f"folder {target.parent} does not exist")
    target.write_bytes(png)
    print(f"Saved the screen of {args.name!r} to {target}")
    return 0


async def cmd_send_keys(manager: Manager, args: argparse.Namespace) -> int:
    from hvdesk.console import keys
    from hvdesk.engine import console

    combos = list(args.keys) + (keys.keys_for_text(args.text) if args.text else [])
    count = await console.send_keys(manager, args.name, combos)
    print(f"Sent {count} key{'s' if count != 1 else ''} to {args.name!r}")
    return 0


async def cmd_delete(manager: Manager, args: argparse.Namespace) -> int:
    result = await manager.delete(args.name, keep_disks=args.keep_disks)
    print(f"Deleted {args.name!r}")
    for path in result.kept:
        why = result.reasons.get(path)
        print(f"  kept {path}" + (f" ({why})" if why else ""))
    return 0


async def cmd_clone(manager: Manager, args: argparse.Namespace) -> int:
    tty = sys.stdout.isatty()
    shown = [-1]

    def progress(percent: float) -> None:
        if tty and int(percent) != shown[0]:
            shown[0] = int(percent)
            print(f"\rCloning {args.name!r} to {args.new_name!r}: {shown[0]:3d}%", end="", flush=True)

    try:
        done = await manager.clone(args.name, args.new_name, linked=args.linked, progress=progress,
                                   keep_macs=args.keep_macs)
    finally:
        if shown[0] >= 0:
            print()
    machine, source = done.machine, args.name
    if done.linked:
        how = f"linked, in {done.seconds:.2f} s"
    else:
        rate = f", {format_approx(int(done.copied / done.seconds))}/s" if done.seconds > 0 else ""
        how = f"full copy, {format_approx(done.copied)} in {done.seconds:.1f} s{rate}"
    print(f"Cloned {source!r} to {machine.name!r} ({how}) in {machine.entry.folder}")
    print(f"  MAC address{'es' if len(machine.config.nics) > 1 else ''}: "
          f"{', '.join(nic.mac for nic in machine.config.nics) or 'none (no network card)'}")
    for base in done.bases:
        print(f"  reads from the base image {base}")
    if done.linked:
        print(f"  {source!r} cannot be deleted while {machine.name!r} uses its disks")
    for note in done.notes:
        print(f"  note: {note}")
    return 0


async def cmd_modify(manager: Manager, args: argparse.Namespace) -> int:
    from hvdesk.cli import modify as options
    from hvdesk.engine.modify import modify

    try:
        done = await modify(manager, args.name, options.changes(args))
    except ConfigError as exc:
        raise options.in_option_words(exc) from None
    name = done.machine.name
    if not done.changed:
        print(f"{name!r}: nothing changed (it already had these settings)")
        return 0
    print(f"Changed {name!r}" + (f" ({done.machine.state})" if done.machine.state.active else "") + ":")
    for key, (old, new) in done.changed.items():
        when = (" (takes effect at next start)" if key in done.at_next_start else
                " (the allocation controller applies it while the VM runs)" if key in done.by_controller else "")
        print(f"  {options.flag_of(key)}: {options.shown(key, old)} -> {options.shown(key, new)}{when}")
    return 0


async def cmd_balloon(manager: Manager, args: argparse.Namespace) -> int:
    done = await manager.balloon(args.name, args.mib)
    reached = "reached" if done.actual_mib == done.target_mib else "not reached yet: the guest has"
    print(f"{args.name!r} balloon target {done.target_mib} MiB ({reached} {done.actual_mib} MiB)")
    return 0


async def cmd_pin(manager: Manager, args: argparse.Namespace) -> int:
    done = await manager.pin(args.name, args.vcpu, args.host_cpus)
    cpus = ",".join(str(cpu) for cpu in sorted(done.cpus))
    print(f"{args.name!r} vCPU {done.vcpu} (thread {done.thread}) pinned to host CPU {cpus}")
    return 0


async def cmd_shares(manager: Manager, args: argparse.Namespace) -> int:
    done = await manager.shares(args.name, args.shares)
    print(f"{args.name!r} CPU weight {done.shares} ({done.mechanism})")
    return 0


async def cmd_agent(manager: Manager, args: argparse.Namespace) -> int:
    from hvdesk.cli import control

    return await control.cmd_agent(manager, args)


async def cmd_decisions(manager: Manager, args: argparse.Namespace) -> int:
    from hvdesk.cli import control

    return await control.cmd_decisions(manager, args)


async def cmd_snapshot(manager: Manager, args: argparse.Namespace) -> int:
    from hvdesk.cli import snapshot

    return await snapshot.cmd_snapshot(manager, args)


HANDLERS = {
    "create": cmd_create, "start": cmd_start, "stop": cmd_stop, "save": cmd_save,
    "pause": _simple("pause"), "resume": _simple("resume"), "reset": _simple("reset"),
    "delete": cmd_delete, "screenshot": cmd_screenshot, "send-keys": cmd_send_keys,
    "stats": cmd_stats, "top": cmd_top, "balloon": cmd_balloon, "pin": cmd_pin, "shares": cmd_shares,
    "agent": cmd_agent, "decisions": cmd_decisions,
    "modify": cmd_modify, "clone": cmd_clone, "snapshot": cmd_snapshot,
}
