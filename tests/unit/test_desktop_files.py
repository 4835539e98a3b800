"""The desktop entry and AppStream metainfo that installers put in the menu and software centres
(resources/desktop/): valid by the freedesktop and AppStream validators (CI installs both), named
by the id the app gives Qt, and saying the version that is installed."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from hvdesk import DESKTOP_ID, __version__
from hvdesk.core.paths import resources_dir

DESKTOP = resources_dir() / "desktop"


def tool(name: str, package: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: install the Debian package {package} (packaging/bootstrap.sh test does)"
    return found


def test_the_desktop_entry_is_valid_and_named_by_the_apps_id():
    entry = DESKTOP / f"{DESKTOP_ID}.desktop"
    done = subprocess.run([tool("desktop-file-validate", "desktop-file-utils"), str(entry)],
                          capture_output=True, text=True)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr
    parsed = configparser.ConfigParser(interpolation=None)
    parsed.optionxform = str  # type: ignore[assignment, method-assign]  # keys are case-sensitive
    parsed.read(entry, encoding="utf-8")
    section = parsed["Desktop Entry"]
    assert section["Exec"].split()[0] == "hvdesk" and section["Icon"] == DESKTOP_ID
    assert (resources_dir() / "icons" / "hvdesk.svg").is_file()  # installed as the Icon name's hicolor SVG


@pytest.mark.parametrize("strict", [False, True])
def test_the_metainfo_is_valid_and_names_this_version(strict):
    metainfo = DESKTOP / f"{DESKTOP_ID}.metainfo.xml"
    args = ["validate", "--no-net", *(["--pedantic"] if strict else []), str(metainfo)]
    done = subprocess.run([tool("appstreamcli", "appstream"), *args], capture_output=True, text=True)
    if strict:  # pedantic notes are advice (e.g. a tag newer than this appstream); errors and warnings are not
        assert "E:" not in done.stdout and "W:" not in done.stdout, done.stdout
    else:
        assert done.returncode == 0, done.stdout + done.stderr
    root = ET.parse(metainfo).getroot()
    assert root.findtext("id") == DESKTOP_ID
    assert root.find("launchable").text == f"{DESKTOP_ID}.desktop"  # type: ignore[union-attr]
    assert root.find("releases/release").get("version") == __version__  # type: ignore[union-attr]
