"""The second line behind the accelerator probe (issue 9, item 13): a VM under a hardware
accelerator that shows no sign of progress gets a notice and can be restarted under TCG.

Two real cases: on this machine KVM with `-cpu qemu64` really accepts a guest and then spins in
the kernel's decompressor, printing nothing (what `-cpu host` does on other hosts of this kind);
and, for the watch's rules on any host, a guest under TCG that boots and then only burns its vCPU
(the watch is told to watch TCG there)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time

import pytest

from hvdesk.engine import boot_watch
from hvdesk.engine.boot_watch import BootWatch, WatchTimes, restart_under_tcg
from hvdesk.qemu import accel
from tests.guest.build import SHELL_MARKER
from tests.integration.conftest import wait_for_serial, wait_until

pytestmark = pytest.mark.qemu
QUICK = WatchTimes(settle=3.0, every=1.0, quiet=8.0, give_up=60.0)


async def idle_since(serial_log, ready_marker: str) -> float:
    """When (time.monotonic()) the guest printed its last boot line: the shell marker and the
    ready marker, in either order."""
    await wait_for_serial(serial_log, SHELL_MARKER)
    await wait_for_serial(serial_log, ready_marker)
    return time.monotonic()


async def test_a_busy_silent_guest_is_flagged_and_an_idle_one_is_not(engines, guest_request, tiny_guest):
    manager = await engines(watch=True)
    watch = BootWatch(manager, accelerators=("tcg",), times=QUICK)
    await manager.create(guest_request("spinner", append=tiny_guest.append + " hvdesk.burn=0"))
    await manager.create(guest_request("idler"))
    spinner, idler = await manager.start("spinner"), await manager.start("idler")
    idle_from = asyncio.ensure_future(idle_since(idler.paths.serial_log, tiny_guest.marker))
    await wait_until(lambda: watch.is_stalled(spinner), 45, "the spinning guest to be flagged")
    assert spinner.notice.startswith("No sign of progress under TCG: for ")
    assert "restarting under TCG" in spinner.notice
    # The idle guest's screen, serial and disks have been still since its last line; watched for
    # `quiet` and two more looks from then on (the spinner's verdict took most of that already).
    still_from = await idle_from
    await asyncio.sleep(max(0.0, still_from + QUICK.quiet + 2 * QUICK.every - time.monotonic()))
    assert not watch.is_stalled(idler) and idler.notice == ""

    await restart_under_tcg(manager, "spinner")
    assert spinner.state == "running" and spinner.config.accel == "tcg" and spinner.notice == ""
    assert not watch.is_stalled(spinner)


async def test_a_kvm_that_cannot_boot_linux_is_caught(engines, guest_request, tiny_guest, monkeypatch):
    if not os.path.exists("/dev/kvm"):
        pytest.skip("this host has no /dev/kvm at all: there is no hardware accelerator to catch")
    # -cpu qemu64 under this host's KVM: the guest is accepted, then the kernel spins silently.
    model = lambda name: "qemu64" if name == "kvm" else "max"  # noqa: E731
    monkeypatch.setattr(accel, "cpu_model", model)  # argv imports it from accel when it builds a command line
    monkeypatch.setenv("HVDESK_ACCEL", "kvm")
    manager = await engines(watch=True)
    # A kernel stuck under KVM shows nothing at all, and one that boots there prints within a second
    # or two: a shorter quiet time tells them apart as well.
    watch = BootWatch(manager, times=dataclasses.replace(QUICK, quiet=5.0))
    machine = await manager.create(guest_request("kvm"))
    try:
        await manager.start("kvm")
    except Exception as exc:  # a host where KVM refuses even to start it: nothing to watch
        pytest.fail(f"KVM with qemu64 was expected to start here: {exc}")
    assert machine.run.accel == "kvm" and boot_watch.HARDWARE == ("kvm", "hvf", "whpx")
    booted = asyncio.ensure_future(wait_for_serial(machine.paths.serial_log, tiny_guest.marker, timeout=60))
    await wait_until(lambda: watch.is_stalled(machine) or booted.done(), 60, "a verdict")
    if booted.done() and not watch.is_stalled(machine):
        booted.result()
        return  # a host whose KVM really boots it: nothing to catch, and nothing was flagged
    booted.cancel()
    assert machine.notice.startswith("No sign of progress under KVM")
    monkeypatch.setenv("HVDESK_ACCEL", "auto")  # the VM's own setting (tcg) decides from now on
    await restart_under_tcg(manager, "kvm")
    assert machine.run.accel == "tcg"
    await wait_for_serial(machine.paths.serial_log, tiny_guest.marker)
