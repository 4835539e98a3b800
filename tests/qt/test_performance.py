"""The live graphs get the monitor's samples and draw them."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF

from hvdesk.ui.vm_list import CPU, SPARK_ROLE, USED
from tests.integration.conftest import wait_for_serial

pytestmark = pytest.mark.qemu


def test_performance_tab_list_columns_and_host_overview(window, run, until, guest_request, tiny_guest):
    machine = run(window.manager.create(guest_request("load", append=tiny_guest.append + " hvdesk.burn=0")))
    run(window.manager.start("load"))
    run(wait_for_serial(machine.paths.serial_log, tiny_guest.marker))
    window.select("load")
    window.tabs.setCurrentWidget(window.performance)
    pane = window.performance
    until(lambda: len(window.monitor.series_of(machine).times) >= 4, what="samples")
    until(lambda: pane.cpu.curves.get("total") is not None and len(pane.cpu.curves["total"].getData()[0]) >= 3,
          what="the CPU plot drawn")
    assert set(pane.cpu.curves) == {"total", "vCPU 0"}
    assert set(pane.memory.curves) == {"guest used", "balloon", "host RSS"}
    assert set(pane.disk.curves) == {"read", "write"}
    _, cpu = pane.cpu.curves["vCPU 0"].getData()
    assert np.nanmax(cpu) > 30  # the guest burns its vCPU
    assert "user-mode NAT" in pane.network.text()
    image = pane.cpu.grab().toImage()  # the curves are drawn: more than background and grid on its middle rows
    assert image.width() > 100
    assert len({image.pixel(x, y) for x in range(0, image.width(), 3)
                for y in range(image.height() // 3, image.height() * 2 // 3, 4)}) > 4

    model = window.filter_model
    row = next(r for r in range(model.rowCount()) if model.index(r, 0).data() == "load")
    assert model.index(row, CPU).data().endswith("%") and model.index(row, USED).data().endswith("MiB")
    assert len(model.index(row, CPU).data(SPARK_ROLE)) >= 3

    plot = pane.cpu  # hovering pauses the plot and shows the values under the pointer
    plot.scene().sigMouseMoved.emit(plot.getPlotItem().sceneBoundingRect().center())
    assert plot.paused and "s ago" in plot._readout.toPlainText()
    frozen = plot.curves["total"].getData()[0].copy()
    until(lambda: len(window.monitor.series_of(machine).times) >= 8, what="more samples")
    assert np.array_equal(plot.curves["total"].getData()[0], frozen)
    plot.scene().sigMouseMoved.emit(QPointF(-50, -50))  # the pointer leaves: the plot moves again
    assert not plot.paused

    window.actions_by_key["overview"].trigger()
    overview = window.overview
    until(lambda: "load" in overview.cpu.curves and "load" in overview.memory.curves, what="overview drawn")
    assert "given to 1 running VM" in overview.summary.text()
    overview.close()
