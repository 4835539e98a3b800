"""Machine ▸ Save State: the guest's memory and devices written to its folder, QEMU ended; the
next Start resumes it. The engine reports how much of the RAM is written (shown as a percentage),
and a cancelled save lets the guest run on as it was (engine/savestate.py)."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

from hvdesk.engine.manager import Manager
from hvdesk.engine.savestate import Progress, SaveResult
from hvdesk.ui.progress import ProgressTask, Report
from hvdesk.ui.tasks import TaskRunner

MIB = 1024 * 1024


def progress_line(progress: Progress) -> tuple[float | None, str]:
    """(percent, or None before QEMU knows the RAM's size; the line under the label)."""
    if progress.total <= 0:
        return None, "Preparing…"
    done = min(progress.transferred, progress.total)
    return 100.0 * done / progress.total, f"{done / MIB:.0f} of {progress.total / MIB:.0f} MiB written"


def save_state(parent: QWidget, manager: Manager, runner: TaskRunner, name: str) -> ProgressTask:
    async def work(report: Report) -> SaveResult:
        return await manager.save(name, progress=lambda p: report(*progress_line(p)))

    return ProgressTask(parent, runner, f"Saving the state of {name}…", work, title=f"Cannot save {name}",
                        cancellable=True)
