"""What users install is what is tested: in CI's last stage (packaging/bootstrap.sh) hvdesk is a
wheel installed into a venv of its own, and the tests run from a copy outside the checkout, with
HVDESK_SOURCE_TREE naming the checkout. There these tests check that the hvdesk under test is that
install and that it carries every data file of the checkout; the checkout's own stage deselects
them (marker installed_wheel)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import hvdesk
from hvdesk.core.paths import resources_dir

SOURCE = os.environ.get("HVDESK_SOURCE_TREE")
pytestmark = pytest.mark.installed_wheel  # deselected in the checkout's stage, never skipped


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def test_the_hvdesk_under_test_is_the_installed_one():
    assert SOURCE is not None, "HVDESK_SOURCE_TREE must name the checkout (packaging/bootstrap.sh sets it)"
    package = Path(hvdesk.__file__).resolve().parent
    assert package != (Path(SOURCE) / "hvdesk").resolve(), f"testing the checkout ({package}), not the install"
    assert package.parent.name == "site-packages", package
    assert not list(package.parent.glob("__editable__*hvdesk*"))  # a wheel, not an editable install


def test_every_data_file_of_the_checkout_is_installed():
    assert SOURCE is not None
    installed = resources_dir()
    assert installed.is_relative_to(Path(hvdesk.__file__).resolve().parent), installed
    missing = files_under(Path(SOURCE) / "resources") - files_under(installed)
    assert not missing, f"not in the installed package: {sorted(missing)}"


def test_the_installed_command_creates_a_vm_from_its_presets(cli_home, tmp_path):
    """The bug that shipped: every `create` of a non-editable install died looking for presets.toml."""
    done = subprocess.run([Path(sys.executable).with_name("hvdesk"), "create", "plain", "--os", "debian12"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Created 'plain': debian12" in done.stdout
