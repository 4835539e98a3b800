"""The installer recipes that CI here cannot run (macOS, Windows) are checked here as far as this
machine can: every shell script parses and passes shellcheck, the plists parse, the workflow runs only
scripts that exist, and the Windows installer's recipe names files that exist, a fixed AppId and the
package's version. (Their real run is .github/workflows/installers.yml, on macOS and Windows runners.)"""

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
WINDOWS = ROOT / "packaging" / "windows"


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


def _iss_setup() -> dict[str, str]:
    iss = (WINDOWS / "hvdesk.iss").read_text()
    return dict(re.findall(r"^(\w+)=(.*)$", iss.split("[Setup]", 1)[1].split("\n[", 1)[0], re.MULTILINE))


def test_the_windows_job_builds_with_the_scripts_here():
    job = (ROOT / ".github" / "workflows" / "installers.yml").read_text().split("\n  windows:\n", 1)[1]
    for step in ("runs-on: windows-latest", 'python-version: "3.11"', "choco install innosetup",
                 "run: packaging/windows/build.ps1", "actions/upload-artifact"):
        assert step in job
    build = (WINDOWS / "build.ps1").read_text()
    named = set(re.findall(r"packaging/[\w/.-]+\.(?:spec|iss|py|sh)", build))
    assert {"packaging/hvdesk.spec", "packaging/windows/hvdesk.iss", "packaging/render_icon.py"} <= named
    assert all((ROOT / path).is_file() for path in named), named
    assert "iscc" in build.lower() and "--version" in build  # the installer, after a smoke test of the bundle


def test_the_windows_installer_has_a_fixed_app_id_and_the_package_version():
    from hvdesk import __version__

    setup, iss = _iss_setup(), (WINDOWS / "hvdesk.iss").read_text()
    # "{{" is Inno Setup's literal "{": the AppId is the GUID {122EE6CF-...}, fixed across versions.
    assert re.fullmatch(r"\{\{[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\}", setup["AppId"])
    assert setup["AppVersion"] == "{#AppVersion}" and __version__ not in iss  # passed in, never written here
    build = (WINDOWS / "build.ps1").read_text()
    assert '$version = (& $py -c "import hvdesk; print(hvdesk.__version__)").Trim()' in build
    assert '"/DAppVersion=$version"' in build


def test_the_windows_installer_names_files_that_exist():
    iss, build = (WINDOWS / "hvdesk.iss").read_text(), (WINDOWS / "build.ps1").read_text()
    passed = set(re.findall(r"/D(\w+)=", build))
    assert set(re.findall(r"\{#(\w+)\}", iss)) <= passed  # every value it is given, build.ps1 gives
    assert set(re.findall(r"^#ifndef (\w+)", iss, re.MULTILINE)) == passed  # and without one, iscc stops
    assert (WINDOWS / _iss_setup()["LicenseFile"].replace("\\", "/")).is_file()
    assert '"{#BundleDir}\\*"' in iss and "recursesubdirs" in iss  # the whole onedir bundle
    assert 'Name: "{group}\\hvdesk"; Filename: "{app}\\hvdesk.exe"' in iss  # the Start-menu shortcut
    assert "{uninstallexe}" in iss and "SetupIconFile={#IconFile}" in iss
