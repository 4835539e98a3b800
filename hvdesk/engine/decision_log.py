"""The controller's decisions, kept per VM in its folder (`decisions.jsonl`, one JSON object a line,
newest last) so that `hvdesk decisions` and the app's Resources tab can show what was done and why,
whichever process did it. Host-wide decisions (a memory budget that cannot be met) go to the data
folder's `controller-decisions.jsonl`.

A log is capped: past MAX_BYTES it moves to `<name>.old` and a new one begins, so two logs' worth
are kept. Only the controller holding the control lock writes. A VM folder may come from someone
else, so reading checks every line and skips what is not a decision as written here.
"""

from __future__ import annotations

import json
import math
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hvdesk.control.decisions import Decision, Kind

VM_LOG = "decisions.jsonl"
HOST_LOG = "controller-decisions.jsonl"
MAX_BYTES = 256 * 1024
MAX_TEXT = 2000  # characters of a reason or error shown from a file
READ_LIMIT = 4 * MAX_BYTES  # never read more than this from a log (a hostile one may be huge)


def entry(decision: Decision, *, applied: bool, error: str, by: str, wall_now: float,
          mono_now: float) -> dict[str, Any]:
    """A decision as logged: its time on the wall clock (the policy's is monotonic), whether the
    actuator did it, and which controller decided."""
    record = decision.to_json()
    record["time"] = round(wall_now - (mono_now - decision.time), 3)
    record.update(applied=applied, by=by)
    if error:
        record["error"] = error
    return record


def append(path: Path, records: list[dict[str, Any]]) -> None:
    if not records:
        return
    try:
        if path.stat().st_size > MAX_BYTES:
            os.replace(path, path.with_name(path.name + ".old"))
    except FileNotFoundError:
        pass
    data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | _SAFE, 0o600)
    try:
        _require_regular(fd, path)
        os.write(fd, data)  # one write: a reader never sees half a batch's line
    finally:
        os.close(fd)


# No following a link out of the folder; no blocking on a FIFO someone put in its place.
_SAFE = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


def _require_regular(fd: int, path: Path) -> None:
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise OSError(f"{path} is not a regular file")


def read(path: Path, limit: int = 1000) -> list[dict[str, Any]]:
    """The last `limit` valid decisions of a log and its predecessor, oldest first."""
    records: list[dict[str, Any]] = []
    for part in (path.with_name(path.name + ".old"), path):
        records.extend(_valid(_lines(part)))
    return records[-limit:] if limit > 0 else []


def _lines(path: Path) -> Iterator[str]:
    try:
        fd = os.open(path, os.O_RDONLY | _SAFE)
    except OSError:
        return
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return
        size = os.fstat(fd).st_size
        os.lseek(fd, max(0, size - READ_LIMIT), os.SEEK_SET)
        data = os.read(fd, READ_LIMIT)
    finally:
        os.close(fd)
    yield from data.decode("utf-8", "replace").splitlines()


KINDS = frozenset(str(k) for k in Kind)


def _valid(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        when, kind, reason = record.get("time"), record.get("kind"), record.get("reason")
        if not (isinstance(when, (int, float)) and not isinstance(when, bool) and math.isfinite(when)):
            continue
        if kind not in KINDS or not isinstance(reason, str) or not isinstance(record.get("vm", ""), str):
            continue
        clean: dict[str, Any] = {
            "time": float(when), "vm": _printable(record.get("vm", ""), 200), "kind": kind,
            "target": record.get("target"), "reason": _printable(reason, MAX_TEXT),
            "applied": record.get("applied") is True, "by": _printable(str(record.get("by", "")), 200),
            "inputs": record.get("inputs") if isinstance(record.get("inputs"), dict) else {}}
        if isinstance(record.get("error"), str):
            clean["error"] = _printable(record["error"], MAX_TEXT)
        yield clean


_CONTROL = dict.fromkeys([*range(0x20), *range(0x7F, 0xA0)], "?")


def _printable(text: str, limit: int) -> str:
    """Text from a file as one safe line: no terminal escapes, no line breaks."""
    return text[:limit].translate(_CONTROL)


def describe(record: dict[str, Any]) -> str:
    """One line for people: local time, kind, target, reason (and the failure, if it failed)."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record["time"]))
    outcome = "" if record["applied"] else f" [not applied: {record.get('error', 'unknown')}]"
    return f"{stamp}  {record['kind']:<7} {target_text(record)}  {record['reason']}{outcome}"


def target_text(record: dict[str, Any]) -> str:
    target, kind = record["target"], record["kind"]
    if kind in (Kind.BALLOON, Kind.BUDGET) and isinstance(target, int) and not isinstance(target, bool):
        return f"{target // (1024 * 1024)} MiB"
    if kind == Kind.PIN and isinstance(target, dict):
        return f"vCPUs on {target.get('vcpus')}, emulator on {target.get('emulator')}"
    if kind == Kind.SHARES and isinstance(target, dict):
        return ", ".join(f"{k} {v}" for k, v in target.items())
    return json.dumps(target)[:200]
