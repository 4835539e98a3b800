"""A decision: what the policy wants done to one VM, why (a sentence), and the numbers it used."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# JSON-able values only: the CLI prints decisions with json.dumps, the UI shows them as text.
JsonValue = int | float | str | bool | None | Sequence["JsonValue"] | Mapping[str, "JsonValue"]


class Kind(enum.StrEnum):
    BALLOON = "balloon"  # target: bytes the guest may use
    PIN = "pin"  # target: {"vcpus": [[cpu ids] per vCPU], "emulator": [cpu ids]}; all CPUs means unpinned
    SHARES = "shares"  # target: {"cpu.weight": v2, "cpu.shares": v1, "nice": n}
    BUDGET = "budget"  # host-wide (vm ""): the memory budget cannot be met; target: the shortfall in bytes


@dataclass(frozen=True)
class Decision:
    time: float
    vm: str
    kind: Kind
    target: JsonValue
    reason: str
    inputs: Mapping[str, JsonValue] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "vm": self.vm, "kind": str(self.kind), "target": self.target,
                "reason": self.reason, "inputs": dict(self.inputs)}


def mib(value: float) -> str:
    """Bytes as a short MiB figure for reasons."""
    return f"{value / (1024 * 1024):.0f} MiB"
