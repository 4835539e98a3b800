"""What every benchmark needs: a private, throw-away hvdesk library, and one way to print figures."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def private_library() -> Iterator[tuple[Path, Path]]:
    """(data dir, runtime dir) set in the environment (TCG forced), removed afterwards. The runtime
    dir is short: unix socket paths must stay under ~100 bytes."""
    home = Path(tempfile.mkdtemp(prefix="hvdesk-bench-"))
    rundir = Path(tempfile.mkdtemp(prefix="hvb-", dir="/tmp"))
    os.environ.update(HVDESK_HOME=str(home), HVDESK_RUNTIME_DIR=str(rundir), HVDESK_ACCEL="tcg")
    try:
        yield home, rundir
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(rundir, ignore_errors=True)


def emit(lines: list[str], figures: dict, as_json: bool) -> None:
    """The report for people (on stderr when JSON goes to stdout), and the figures as JSON."""
    print("\n".join(lines), file=sys.stderr if as_json else sys.stdout)
    if as_json:
        print(json.dumps(figures, indent=1))
