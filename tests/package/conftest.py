"""Fixtures for the installed-package tests (tests/package): the tiny guest, as the integration
tests build it."""

from __future__ import annotations

import pytest

from tests.guest.build import TinyGuest, ensure_tiny_guest


@pytest.fixture(scope="session")
def tiny_guest() -> TinyGuest:
    return ensure_tiny_guest()  # fails (never skips) if the guest cannot be built
