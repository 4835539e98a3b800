"""Each CLI command imports only what it needs (issue 10): `list` and `info` do a few ms of work, so
an import of numpy, the ISO reader, the console's DES or Qt would be most of their time. A
regression test on what is imported, not on timing: the machine is shared and timing is noisy."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.integration.test_cli import guest_args, hv

# Runs the CLI as the `hvdesk` script does, then reports every module the process imported.
PROBE = ("import json, sys\n"
         "from hvdesk.launcher import main\n"
         "code = main(sys.argv[1:])\n"
         "print('MODULES ' + json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
         "sys.exit(code)\n")
NEVER = ("numpy", "pycdlib", "Cryptodome", "PySide6", "shiboken6", "pyqtgraph", "qasync",
         "hvdesk.ui", "hvdesk.monitor", "hvdesk.engine.monitoring", "hvdesk.console", "hvdesk.engine.console",
         "hvdesk.core.iso")
QMP = ("qemu.qmp", "hvdesk.qemu.qmp_client")
EVENT_LOOP = ("asyncio", "hvdesk.engine.manager")  # `list` and `info` read without one (cli/reading.py)
READING = (["list"], ["list", "--json"], ["info", "vm"], ["info", "vm", "--json"])
# What a `list` of unchanged VMs does without (core/digests.py, cli/reading.py): most of its time once.
LIST_SPARES = ("tomllib", "dataclasses", "inspect", "argparse", "hashlib", "_hashlib", "shutil",
               "hvdesk.core.config", "hvdesk.cli.parser")


def imported_by(*args: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stderr.splitlines() if line.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """Which of `names` (packages count with their submodules) are among `modules`."""
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


@pytest.mark.qemu
def test_commands_on_stopped_vms_import_no_heavy_module(cli_home):
    modules = imported_by("create", "plain", "--disk", "64M")
    assert loaded(modules, NEVER + QMP) == []
    assert hv("create", "other", "--memory", "128").returncode == 0
    for args in (["list"], ["list", "--json"], ["info", "plain"], ["info", "plain", "--json"]):
        modules = imported_by(*args)
        assert loaded(modules, NEVER + QMP + EVENT_LOOP) == [], args
        if sys.platform == "linux":  # /proc tells whether a QEMU runs; psutil's import would cost more
            assert "psutil" not in modules, args
    assert loaded(imported_by("delete", "other"), NEVER + QMP) == []


@pytest.mark.qemu
def test_a_list_of_unchanged_vms_reads_no_config(cli_home, tiny_guest):
    assert hv("create", "plain", "--disk", "64M").returncode == 0
    assert hv("create", "vm", *guest_args(tiny_guest)).returncode == 0
    assert hv("start", "vm").returncode == 0
    try:
        assert hv("list").returncode == 0  # reads every vm.toml once, and remembers
        for args in (["list"], ["list", "--json"]):
            assert loaded(imported_by(*args), LIST_SPARES) == [], args
        config = cli_home / "VMs" / "plain" / "vm.toml"
        config.write_text(config.read_text() + "# edited by hand\n")  # read again, then remembered again
        modules = imported_by("list")
        assert "hvdesk.core.config" in modules and "argparse" not in modules
        assert loaded(imported_by("list"), LIST_SPARES) == []
    finally:
        hv("stop", "vm", "--force", "--timeout", "0")


@pytest.mark.qemu
def test_commands_on_a_running_vm_import_qmp_but_nothing_heavier(cli_home, tiny_guest):
    assert hv("create", "vm", *guest_args(tiny_guest)).returncode == 0
    for args in (["start", "vm", "--paused"], *READING, ["resume", "vm"], *READING, ["pause", "vm"],
                 ["reset", "vm"], ["stop", "vm", "--force", "--timeout", "0"]):
        modules = imported_by(*args)
        assert loaded(modules, NEVER) == [], args
        if args in READING:  # they ask QEMU its state over a plain socket: no event loop, no qemu.qmp
            assert loaded(modules, QMP + EVENT_LOOP) == [], args
            assert "hvdesk.qemu.qmp_status" in modules, args
        else:
            assert "qemu.qmp" in modules, args  # each one asks QEMU


@pytest.mark.skipif(sys.platform != "linux", reason="counts threads in /proc")
def test_numpy_gets_one_blas_thread_unless_the_user_chose():
    probe = ("import os, hvdesk.monitor.ring\n"
             "print(os.environ.get('OPENBLAS_NUM_THREADS'), len(os.listdir('/proc/self/task')))")
    chosen = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in chosen}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split() == ["1", "1"]  # one thread: the interpreter's own
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          env={**env, "OPENBLAS_NUM_THREADS": "2"})
    assert done.stdout.split()[0] == "2"
