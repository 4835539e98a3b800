"""The VM's screen and keyboard through its VNC console (QEMU's server on the VM's private
socket, or on 127.0.0.1 with its VNC password: qemu/transport.py): for the console window,
`hvdesk screenshot` and `hvdesk send-keys`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from hvdesk.console import keys
from hvdesk.console.rfb import ConsoleEvents, RfbClient
from hvdesk.core.errors import ConsoleError, StateError
from hvdesk.engine.actions import Action, allows
from hvdesk.engine.machine import Machine
from hvdesk.engine.manager import Manager

KEY_GAP = 0.02  # between key combos, so the guest sees each one separately


def check_console(machine: Machine) -> None:
    if not allows(Action.TYPE, machine.state):  # the screen exists only while QEMU runs
        raise StateError(f"{machine.name!r} is {machine.state}: its screen exists only while it runs")
    if not machine.config.display.vnc or machine.config.display.vga == "none":
        raise StateError(f"{machine.name!r} has no console (its display is switched off in its settings)")


async def connect(machine: Machine, events: ConsoleEvents | None = None, *,
                  continuous: bool = True) -> RfbClient:
    """A connected RFB client for the VM's screen (the caller runs `client.run()`)."""
    check_console(machine)
    link = machine.transport
    if link.vnc.path is not None:
        client = RfbClient(events=events, continuous=continuous)
        await client.connect_unix(link.vnc.path)
        return client
    try:
        password = link.vnc_password()
    except OSError as exc:
        raise ConsoleError(f"cannot read the VNC password of {machine.name!r}: {exc.strerror or exc}") from None
    client = RfbClient(password=password, events=events, continuous=continuous)
    await client.connect_tcp(link.vnc.host, link.vnc.port)
    return client


@contextlib.asynccontextmanager
async def session(manager: Manager, name: str) -> AsyncIterator[RfbClient]:
    """Connected, with the whole screen received (and so the server's extensions known)."""
    machine = manager.get(name)
    await manager.refresh_state(machine)
    client = await connect(machine)
    reader = asyncio.ensure_future(client.run())
    try:
        await client.whole_screen()
        yield client
    finally:
        await client.close()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader


async def screenshot(manager: Manager, name: str) -> bytes:
    """The VM's screen as PNG bytes."""
    async with session(manager, name) as client:
        return client.screen.png()


async def send_keys(manager: Manager, name: str, combos: list[str]) -> int:
    """Press and release each combo ("ret", "ctrl-alt-delete"): modifiers down in order, up in
    reverse. Returns the number of combos sent."""
    plans = [[keys.key(part) for part in keys.combo(text)] for text in combos]
    async with session(manager, name) as client:
        for plan in plans:
            for scancode, keysym in plan:
                client.key(True, keysym, scancode)
            for scancode, keysym in reversed(plan):
                client.key(False, keysym, scancode)
            await client.flush()
            await asyncio.sleep(KEY_GAP)
    return len(plans)
