"""New-VM figures: ISO detection on a 5 GB ISO (it must not read the whole file), and wizard open to
VM created (no disk copy: a new thin disk), through the real wizard and engine, offscreen.

    .venv/bin/python -m bench.bench_wizard [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from bench.common import emit, private_library  # noqa: E402
from tests.unit.test_iso_detect import make_iso  # noqa: E402


def detection_times(folder: Path, runs: int) -> list[float]:
    from hvdesk.core.iso import detect

    iso = make_iso(folder / "ubuntu-24.04-desktop-amd64.iso", "Ubuntu 24.04 LTS amd64",
                   {"/.disk/info": b'Ubuntu 24.04 LTS "Noble Numbat" - Release amd64', "/casper/vmlinuz": b"k"})
    with open(iso, "r+b") as handle:
        handle.truncate(5 * 1024**3)  # a 5 GB image (sparse): reading it all would take seconds
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        assert detect(iso).preset.id == "ubuntu24.04"
        times.append(time.perf_counter() - start)
    return times


async def wizard_runs(folder: Path, runs: int) -> list[float]:
    from PySide6.QtWidgets import QWizard

    from hvdesk.engine.manager import Manager
    from hvdesk.engine.monitoring import Monitor
    from hvdesk.ui.main_window import MainWindow
    from hvdesk.ui.new_vm_wizard import NewVmWizard

    iso = make_iso(folder / "debian-12.8.0-amd64-netinst.iso", "Debian 12.8.0 amd64 n",
                   {"/.disk/info": b'Debian GNU/Linux 12.8.0 "Bookworm" - Official amd64 NETINST'})
    manager = Manager(watch=True)
    await manager.open()
    window = MainWindow(manager, Monitor(manager))
    window.show()
    times = []
    try:
        for n in range(runs):
            start = time.perf_counter()
            window.new_vm()
            (wizard,) = [w for w in window.findChildren(NewVmWizard) if w.isVisible()]
            wizard.media.iso.setText(str(iso))
            while not wizard.media.isComplete():
                await asyncio.sleep(0.002)
            wizard.next()
            wizard.names.name.setText(f"Debian {n}")
            for _ in range(3):
                wizard.next()
            wizard.summary.start.setChecked(False)
            wizard.button(QWizard.WizardButton.FinishButton).click()
            while not any(m.name == f"Debian {n}" for m in manager.machines()):
                await asyncio.sleep(0.002)
            times.append(time.perf_counter() - start)
            await asyncio.sleep(0.2)
    finally:
        window.close()
        await manager.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import qasync
    from PySide6.QtWidgets import QApplication

    with private_library() as (home, _):
        detection = detection_times(home, args.runs)
        app = QApplication(sys.argv[:1])
        app.setQuitOnLastWindowClosed(False)
        loop = qasync.QEventLoop(app)
        asyncio.set_event_loop(loop)
        with loop:
            wizard = loop.run_until_complete(wizard_runs(home, args.runs))
    figures = {"detect_5gb_s": detection, "wizard_to_created_s": wizard}
    emit([f"ISO detection, 5 GB ISO: first {detection[0] * 1000:.1f} ms, median "
          f"{statistics.median(detection) * 1000:.1f} ms (goal < 500 ms)",
          f"wizard open to VM created (ISO detected, defaults, new thin 20 GiB disk): median "
          f"{statistics.median(wizard) * 1000:.0f} ms, max {max(wizard) * 1000:.0f} ms (goal < 1 s)"],
         figures, args.json)


if __name__ == "__main__":
    main()
