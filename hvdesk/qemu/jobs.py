"""QMP commands that run as QEMU jobs (snapshot-save, snapshot-load, snapshot-delete: QEMU 6.0+):
start one, wait for it to conclude by polling query-jobs (events go to whichever session the app
holds; a poll works on any), dismiss it, and turn its error into ours."""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

from hvdesk.core.errors import QemuError
from hvdesk.qemu.qmp import QmpSession

POLL = (0.005, 0.01, 0.02, 0.05)  # seconds between looks: quick jobs end in a few ms, long ones poll at 50 ms
_serial = itertools.count(1)


def job_id(kind: str) -> str:
    """An id no other job of this or another hvdesk process has at the same time."""
    return f"hvdesk-{kind}-{os.getpid()}-{next(_serial)}"


async def run_job(session: QmpSession, command: str, arguments: dict[str, Any], *, timeout: float) -> None:
    """Run the job `command` (its `job-id` is added) and wait until it concludes; QemuError with
    QEMU's reason if it failed or did not finish within `timeout` seconds."""
    ident = job_id(command)
    await session.execute(command, {"job-id": ident, **arguments})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delays = itertools.chain(POLL, itertools.repeat(POLL[-1]))
    while True:
        jobs = await session.execute("query-jobs")
        job = next((j for j in jobs if isinstance(j, dict) and j.get("id") == ident), None)
        if job is None:  # dismissed by someone else: it concluded, how is unknown
            raise QemuError(f"QEMU's {command} job vanished before hvdesk saw it end")
        if job.get("status") == "concluded":
            await session.execute("job-dismiss", {"id": ident})
            if job.get("error"):
                raise QemuError(f"QEMU's {command} failed: {job['error']}")
            return
        if loop.time() >= deadline:
            raise QemuError(f"QEMU's {command} did not finish within {timeout:g} s (job {ident} is still "
                            f"{job.get('status')})")
        await asyncio.sleep(next(delays))
