"""Shared fixtures: a private hvdesk home per test, and a flag to regenerate golden files."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--regenerate-golden", action="store_true",
                     help="rewrite tests/golden/* from the current code (review the diff!)")


@pytest.fixture
def regenerate(request: pytest.FixtureRequest) -> bool:
    return request.config.getoption("--regenerate-golden")


@pytest.fixture
def hv_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hvdesk library of its own, TCG forced, and a short private runtime dir (unix
    socket paths must stay under ~100 bytes, which pytest's tmp paths can exceed)."""
    home = tmp_path / "home"
    home.mkdir()
    runtime = Path(tempfile.mkdtemp(prefix="hvt-", dir="/tmp"))
    monkeypatch.setenv("HVDESK_HOME", str(home))
    monkeypatch.setenv("HVDESK_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("HVDESK_ACCEL", "tcg")
    monkeypatch.delenv("HVDESK_QEMU_DIR", raising=False)
    yield home
    import shutil
    shutil.rmtree(runtime, ignore_errors=True)
