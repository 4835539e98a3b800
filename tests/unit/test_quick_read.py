"""`hvdesk list` and `info` read without an event loop (engine/glance.py, qemu/qmp_status.py). What
they report must be what the engine's own way (the Manager, over qemu.qmp) reports, in every state
and for every way a QEMU can misbehave; a fake QMP server plays QEMU (tests/fakes), because a real
one cannot be made to refuse, hang or send garbage on demand. The path against real QEMU and real
images is covered by tests/integration/test_cli*.py."""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hvdesk.core.errors import DiskError, NotFoundError, QemuError
from hvdesk.engine import describe
from hvdesk.engine.glance import Glance
from hvdesk.engine.manager import Manager
from hvdesk.engine.states import IO_ERROR, VmState
from hvdesk.qemu import images, qmp_status
from hvdesk.qemu.binaries import find_qemu_img
from tests.fakes.fake_qemu import FakeQemu
from tests.fakes.qmp_server import Answer, Garbage, Hang, Hangup, Refuse, Send, status_reply
from tests.unit.conftest import VM_NAME

NAME = VM_NAME


@pytest.fixture
async def qemu(vm) -> AsyncIterator[FakeQemu]:
    fake = FakeQemu(vm)
    yield fake
    await fake.close()


async def both_ways(name: str = NAME) -> tuple[tuple[VmState, str], tuple[VmState, str]]:
    """(state, reason) as the Manager reads it, and as the quick path reads it. The quick path
    blocks, so it runs in a thread while this loop serves the fake QEMU."""
    manager = Manager()
    await manager.open()
    try:
        machine = manager.get(name)
        engine = (machine.state, machine.reason)
    finally:
        await manager.close()
    quick = await asyncio.to_thread(lambda: Glance().open(inspect=True).get(name))
    return engine, (quick.state, quick.reason)


@pytest.mark.parametrize("status, started_by, expected", [
    ("running", None, (VmState.RUNNING, "")),
    ("paused", None, (VmState.PAUSED, "")),
    ("io-error", None, (VmState.PAUSED, IO_ERROR)),
    ("guest-panicked", None, (VmState.PAUSED, "QEMU reports guest-panicked")),
    ("suspended", None, (VmState.PAUSED, "QEMU reports suspended")),
    ("shutdown", None, (VmState.STOPPING, "")),
    ("prelaunch", "start", (VmState.STARTING, "")),  # another hvdesk is about to resume it
    ("prelaunch", "start --paused", (VmState.PAUSED, "")),
    ("prelaunch", None, (VmState.PAUSED, "QEMU reports prelaunch")),  # no start of ours launched it
])
async def test_the_quick_read_agrees_with_the_engine_on_every_status(qemu, status, started_by, expected):
    qemu.server.set_status(status)
    await qemu.start(started_by=started_by)  # None: no start of hvdesk's is under way
    engine, quick = await both_ways()
    assert quick == engine
    assert quick[0] == expected[0] and quick[1].startswith(expected[1])


async def test_events_before_the_answer_are_skipped(qemu):
    qemu.server.behave("query-status", Answer(status_reply("paused"), events_before=[("STOP", {}), ("RESUME", {})]))
    await qemu.start()
    engine, quick = await both_ways()
    assert quick == engine == (VmState.PAUSED, "")


@pytest.mark.parametrize("behaviour, says", [
    (Refuse("not now"), "QEMU refused query-status: not now"),
    (Hangup(), "QEMU closed the connection"),
    (Hangup(b'{"return": {"status": '), "QEMU closed the connection in the middle of a message"),
    (Garbage(b"x" * (qmp_status.MAX_LINE + 10)), "QEMU sent an over-long QMP message"),
    (Garbage(b"\x00\xffgarbage\n"), "QEMU sent a QMP message that is not JSON"),
    (Send({"retrun": {}}), "does not speak QMP (it sent a message that is neither an answer nor an event)"),
    (Send({"return": {"status": 7}}), "gave a malformed query-status answer"),
    (Garbage(b"[1, 2]\n"), "QEMU sent a QMP message that is not a JSON object"),
], ids=["refused", "closed", "closed mid-reply", "endless line", "garbage", "not a reply", "malformed status",
        "not an object"])
async def test_a_misbehaving_qemu_shows_running_with_why(qemu, behaviour, says):
    qemu.server.behave("query-status", behaviour)
    await qemu.start()
    quick = await asyncio.to_thread(lambda: Glance().open(inspect=True).get(NAME))
    assert quick.state == VmState.RUNNING
    assert quick.reason.startswith("QEMU is not answering: ") and says in quick.reason, quick.reason


async def test_a_qemu_that_never_answers_is_given_up_on_at_the_timeout(qemu):
    qemu.server.behave("query-status", Hang())
    await qemu.start()
    start = asyncio.get_running_loop().time()
    with pytest.raises(QemuError, match=r"did not answer within 0.5 s$"):
        await asyncio.to_thread(qmp_status.query_status, qemu.paths.ctl_socket, 0.5)
    assert 0.5 <= asyncio.get_running_loop().time() - start < 3


async def test_a_greeting_that_is_not_qmp_is_refused(qemu):
    qemu.server.greeting = {"hello": "world"}
    await qemu.start()
    with pytest.raises(QemuError, match=r"does not speak QMP \(its greeting is not QMP's\)"):
        await asyncio.to_thread(qmp_status.query_status, qemu.paths.ctl_socket, 2)


async def test_a_gone_control_socket_is_reported_as_the_engine_reports_it(qemu):
    await qemu.start()
    qemu.paths.ctl_socket.unlink()
    engine, quick = await both_ways()
    assert quick == engine
    assert "its control socket" in quick[1] and "is gone" in quick[1]


async def test_a_killed_qemu_is_aborted_and_tidied_as_the_engine_would(qemu):
    await qemu.start()
    await qemu.crash()
    quick = await asyncio.to_thread(lambda: Glance().open(inspect=True).get(NAME))
    assert quick.state == VmState.ABORTED and f"pid {qemu.pid}" in quick.reason
    assert not qemu.paths.run_dir.exists()  # tidied, as the Manager tidies
    engine, again = await both_ways()
    assert again == engine == (VmState.ABORTED, quick.reason)


async def test_stopped_inaccessible_and_missing_vms(vm, hv_home):
    assert Glance().open(inspect=True).get(NAME).state == VmState.STOPPED
    broken = vm.entry.folder.parent / "broken"
    broken.mkdir()
    (broken / "vm.toml").write_text("name = [")
    glance = Glance().open(inspect=False)
    assert [(m.name, m.state) for m in glance.machines()] == [("broken", VmState.INACCESSIBLE), (NAME, VmState.STOPPED)]
    with pytest.raises(NotFoundError, match="no VM named 'nope'"):
        glance.get("nope")


# -- disk sizes without qemu-img ------------------------------------------------------------------

def qemu_img_info(path: Path) -> images.ImageInfo:
    out = subprocess.run([str(find_qemu_img()), "info", "--output=json", str(path)], capture_output=True,
                         check=True, text=True).stdout
    return images._parse_info(path, json.loads(out))


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
def test_header_sizes_match_qemu_img(tmp_path, fmt):
    path = tmp_path / f"disk.{fmt}"
    subprocess.run([str(find_qemu_img()), "create", "-q", "-f", fmt, str(path), "1G"], check=True)
    with open(path, "r+b") as handle:  # some data, so the allocated size is not the bare minimum
        handle.seek(1 << 20 if fmt == "raw" else 0, 2 if fmt == "qcow2" else 0)
        handle.write(b"x" * 300_000)
    expected = qemu_img_info(path)
    got = images.info_now(path, fmt)
    assert (got.virtual_size, got.actual_size) == (expected.virtual_size, expected.actual_size)
    assert got.virtual_size == (1 << 30 if fmt == "qcow2" else expected.virtual_size)


def test_other_formats_and_mislabelled_images_are_asked_of_qemu_img(tmp_path):
    vdi = tmp_path / "disk.vdi"
    subprocess.run([str(find_qemu_img()), "create", "-q", "-f", "vdi", str(vdi), "64M"], check=True)
    assert images.info_now(vdi, "vdi").virtual_size == 64 << 20
    raw_called_qcow2 = tmp_path / "raw.img"
    raw_called_qcow2.write_bytes(b"\0" * 4096)
    got = images.info_now(raw_called_qcow2, "qcow2")  # its header is not qcow2's: qemu-img says what it is
    assert (got.format, got.virtual_size) == ("raw", 4096)
    fake = tmp_path / "fake.qcow2"
    fake.write_bytes(b"QFI\xfb" + struct.pack(">I", 3) + b"\0" * 8)  # a header cut short
    with pytest.raises(DiskError):
        images.info_now(fake, "qcow2")
    with pytest.raises(NotFoundError):
        images.info_now(tmp_path / "missing.qcow2", "qcow2")


async def test_info_reports_the_same_sizes_both_ways(vm, hv_home):
    manager = Manager()
    await manager.open()
    try:
        from hvdesk.engine import editing

        await editing.add_new_disk(manager, NAME, 64 << 20)
        machine = manager.get(NAME)
        slow = await describe.details(machine)
    finally:
        await manager.close()
    quick = describe.details_now(Glance().open(inspect=False).get(NAME))
    assert quick == slow
    assert quick["disks"][0]["virtual_size"] == 64 << 20
