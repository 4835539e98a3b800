"""Work started and not awaited: asyncio keeps only a weak reference to a task, so one nobody holds
can vanish mid-way, and its failure would go unseen. `spawn` holds each task until it ends and
logs a failure that nobody else retrieves."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)
_running: set[asyncio.Future[Any]] = set()


def spawn(work: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
    task = asyncio.ensure_future(work)
    _running.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Future[Any]) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("background task failed", exc_info=task.exception())


class LoopTask:
    """One long-running coroutine (a sampling or control loop) that can be started once and
    cancelled: `start(make)` runs `make()` unless it already runs; `stop()` cancels and waits."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(make())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
