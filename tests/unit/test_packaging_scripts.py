"""The installer recipes that CI here cannot run (macOS) are checked here as far as this machine can:
every shell script parses and passes shellcheck, the plists parse, and the workflow runs only
scripts that exist. (Their real run is .github/workflows/installers.yml, on macOS runners.)"""

from __future__ import annotations

import plistlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "packaging").rglob("*.sh"))
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))



@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_script_parses_and_passes_shellcheck(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True).returncode == 0
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: install the Debian package shellcheck (bootstrap.sh test does)"
    done = subprocess.run([shellcheck, "-x", str(script)], capture_output=True, text=True, cwd=script.parent)
    assert done.returncode == 0, done.stdout


def test_the_plists_parse():
    for plist in (ROOT / "packaging").rglob("*.plist"):
        assert isinstance(plistlib.loads(plist.read_bytes()), dict), plist


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_run_scripts_that_exist_and_are_executable(workflow):
    text = workflow.read_text()
    scripts = re.findall(r"run:\s*(packaging/\S+)", text)
    assert scripts, f"{workflow.name} runs no script of packaging/"
    for script in scripts:
        path = ROOT / script
        assert path.is_file() and path.stat().st_mode & 0o111, f"{workflow.name}: {script} is missing or not executable"
    assert "\t" not in text  # YAML forbids tabs for indentation


@pytest.mark.parametrize("spec", sorted((ROOT / "packaging").rglob("*.spec")), ids=lambda p: p.name)
def test_the_pyinstaller_recipes_are_valid_python(spec):
    compile(spec.read_text(), str(spec), "exec")  # a SyntaxError fails the test
    assert "from hvdesk import" in spec.read_text()  # name and version come from the package
