"""The one table of which states allow which action, and the file locks between processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest

from hvdesk.core.errors import BusyError
from hvdesk.core.filelock import FileLock
from hvdesk.engine.actions import ALLOWED, Action, allows, refusal
from hvdesk.engine.states import VmState as S

SNAPSHOTS = (Action.SNAPSHOT_TAKE, Action.SNAPSHOT_RESTORE, Action.SNAPSHOT_DELETE)


def test_every_action_has_its_states_and_reads_in_a_sentence():
    assert set(ALLOWED) == set(Action)
    assert refusal(Action.START, "web", S.RUNNING) == "cannot start 'web': it is running"
    assert refusal(Action.DELETE, "web", S.PAUSED) == "cannot delete 'web': it is paused; stop it first"
    assert refusal(Action.CLONE, "web", S.RUNNING) == "cannot clone 'web': it is running; stop it first"
    assert refusal(Action.EDIT, "old", S.INACCESSIBLE, "vm.toml: memory_mib: expected int") == (
        "cannot change the settings of 'old': it is inaccessible (vm.toml: memory_mib: expected int)")


def test_snapshots_are_refused_while_paused_or_on_the_way_with_what_to_do():
    assert refusal(Action.SNAPSHOT_TAKE, "web", S.PAUSED) == (
        "cannot take a snapshot of 'web': it is paused; resume it first (or stop it)")
    assert refusal(Action.SNAPSHOT_RESTORE, "web", S.STOPPING).endswith("; wait until it has started or stopped")


@pytest.mark.parametrize("state, allowed", [
    (S.STOPPED, {Action.START, Action.DELETE, Action.EDIT, Action.EDIT_DISKS, Action.RESIZE_DISK, Action.CHANGE_CD,
                 Action.SHOW_LOG, Action.CLONE, *SNAPSHOTS}),
    (S.RUNNING, {Action.SHOW, Action.PAUSE, Action.SHUTDOWN, Action.STOP, Action.RESET, Action.EDIT,
                 Action.RESIZE_DISK, Action.CHANGE_CD, Action.SHOW_LOG, Action.SAMPLE, Action.TYPE,
                 Action.BALLOON, Action.PIN, Action.SHARES, Action.SAVE, *SNAPSHOTS}),
    (S.PAUSED, {Action.SHOW, Action.RESUME, Action.STOP, Action.RESET, Action.EDIT, Action.RESIZE_DISK,
                Action.CHANGE_CD, Action.SHOW_LOG, Action.SAMPLE, Action.TYPE, Action.BALLOON, Action.PIN,
                Action.SHARES, Action.SAVE}),
    # a saved guest resumes believing its disks and CD as they were: those wait
    (S.SAVED, {Action.START, Action.DELETE, Action.EDIT, Action.SHOW_LOG}),
    (S.INACCESSIBLE, {Action.DELETE}),
])
def test_what_each_state_allows(state, allowed):
    assert {a for a in Action if allows(a, state)} == allowed


async def test_a_held_lock_makes_the_next_one_wait_then_say_who_holds_it(tmp_path):
    path = tmp_path / ".hvdesk.lock"
    first = FileLock(path, "VM 'web'")
    assert first.try_acquire("start")
    second = FileLock(path, "VM 'web'")  # another open file: flock excludes it, even in one process
    assert not second.try_acquire("delete")
    started = time.monotonic()
    with pytest.raises(BusyError) as refused:
        await second.acquire("delete", timeout=0.3)
    assert time.monotonic() - started >= 0.3
    assert str(refused.value).startswith(f"VM 'web' is busy: hvdesk (pid {os.getpid()}) holds it (start, ")
    first.release()
    await second.acquire("delete", timeout=1)
    assert json.loads(path.read_text())["doing"] == "delete"
    second.release()


async def test_a_lock_dies_with_its_process(tmp_path):
    path = tmp_path / ".hvdesk.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from hvdesk.core.filelock import FileLock\n"
        f"assert FileLock(Path({str(path)!r}), 'x').try_acquire('holding'); print('held', flush=True); "
        "time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert not FileLock(path, "x").try_acquire()
        holder.kill()
        holder.wait()
        lock = FileLock(path, "x")
        await asyncio.wait_for(lock.acquire("after", timeout=5), 10)  # no stale lock after a kill -9
        lock.release()
    finally:
        holder.kill()
        holder.wait()
