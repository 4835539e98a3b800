"""The quick read path of `hvdesk list` and `hvdesk info`: the library and each VM's state, read
without an event loop, as fast as `virsh list` (asyncio's import alone would take longer; see
qemu/qmp_status.py). It decides as the watcher does (engine/observe.py), and like the watcher
tidies what a dead QEMU left behind; it changes nothing else. Every other command, and everything
that changes a VM, goes through the Manager."""

from __future__ import annotations

from hvdesk.core.errors import QemuError
from hvdesk.core.paths import vms_dir
from hvdesk.core.storage import Library
from hvdesk.engine import observe
from hvdesk.engine.machine import Machine
from hvdesk.engine.registry import Registry
from hvdesk.engine.states import VmState
from hvdesk.qemu import qmp_status

STATUS_TIMEOUT = 5.0  # seconds for a running QEMU to answer query-status (as the CLI's QMP sessions)


class Glance:
    def __init__(self, library: Library | None = None) -> None:
        self.registry = Registry(library or Library(vms_dir()))

    def open(self, *, inspect: bool) -> Glance:
        """Read the library (removing VMs whose creation was interrupted, as the Manager does);
        `inspect`: also read every VM's live state (else only `get()`'s VM is read)."""
        library = self.registry.library
        library.remove_abandoned()
        self.registry.replace_all({entry.folder: Machine(entry) for entry in library.scan()})
        self._inspect_all([m for m in self.registry.machines() if inspect or not m.entry.accessible])
        return self

    def machines(self) -> list[Machine]:
        return self.registry.machines()

    def get(self, name: str) -> Machine:
        """The VM named `name`, its state read now; NotFoundError names what is missing."""
        machine = self.registry.get(name)
        self.inspect(machine)
        return machine

    def inspect(self, machine: Machine) -> None:
        self._inspect_all([machine])

    def _inspect_all(self, machines: list[Machine]) -> None:
        """Each VM's state; the running QEMUs are asked at once, each in a thread of its own (a
        QEMU busy with its guest takes a few ms to answer, and one that hangs costs its timeout
        once, not once per VM)."""
        running = []
        for machine in machines:
            found = observe.read_state(machine, owner=False, busy_here=False)  # (no operation runs here)
            if found is None:
                running.append(machine)
            else:
                self.registry.set_state(machine, *found)
        answers: dict[int, tuple[VmState, str]] = {}
        if len(running) > 1:
            import threading

            def ask(i: int, machine: Machine) -> None:
                answers[i] = self._ask_qemu(machine)

            threads = [threading.Thread(target=ask, args=(i, m), daemon=True) for i, m in enumerate(running)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        for i, machine in enumerate(running):
            self.registry.set_state(machine, *(answers.get(i) or self._ask_qemu(machine)))

    def _ask_qemu(self, machine: Machine) -> tuple[VmState, str]:
        try:
            gone = observe.control_socket_gone(machine)
            if gone is not None:
                raise gone
            status = qmp_status.query_status(machine.transport.ctl, STATUS_TIMEOUT)
        except QemuError as exc:
            return VmState.RUNNING, f"QEMU is not answering: {exc}"
        return observe.state_of(machine, status)

