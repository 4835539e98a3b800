"""What the operations on the library and on settings need of the engine: the Manager provides it.
A protocol, so library_ops and editing depend on this small surface rather than on the Manager
(which offers their operations to the faces: no import circle)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol

from hvdesk.core.storage import Library, VmEntry
from hvdesk.engine.actions import Action
from hvdesk.engine.machine import Machine


class Engine(Protocol):
    @property
    def library(self) -> Library: ...

    def machines(self) -> list[Machine]: ...

    def get(self, name: str) -> Machine: ...

    def operate(self, name: str, action: Action) -> AbstractAsyncContextManager[Machine]: ...

    async def command(self, machine: Machine, command: str, arguments: dict[str, Any] | None = None,
                      timeout: float = 10.0) -> Any: ...

    def holder_of(self, image: Path, exclude: Machine | None = None) -> str | None: ...

    def adopt(self, entry: VmEntry) -> Machine: ...

    def forget(self, machine: Machine) -> None: ...

    def moved(self, machine: Machine, folder: Path) -> None: ...

    def reload(self, machine: Machine) -> None: ...
