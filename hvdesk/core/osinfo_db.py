"""libosinfo's database (osinfo-db, /usr/share/osinfo), where installed: it knows the volume ids of
hundreds of installers, so ISOs that the bundled presets do not recognise can still be named, with
recommended resources. Without it, the bundled presets serve alone."""

from __future__ import annotations

import functools
import html
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from hvdesk.core.osinfo import OsPreset

SEARCH = ("/usr/share/osinfo", "/usr/local/share/osinfo", "/opt/homebrew/share/osinfo")
FAMILIES = {"linux": "linux", "winnt": "windows", "win9x": "windows", "freebsd": "bsd", "openbsd": "bsd",
            "netbsd": "bsd"}
MIB = 1024 * 1024
_VOLUME_ID = re.compile(r"<volume-id>(.*?)</volume-id>")


def database() -> Path | None:
    override = os.environ.get("HVDESK_OSINFO_DIR")
    for folder in ([override] if override else SEARCH):
        if folder and (Path(folder) / "os").is_dir():
            return Path(folder)
    return None


@functools.lru_cache(maxsize=4)
def _volume_patterns(root: Path) -> tuple[tuple[re.Pattern[str], Path], ...]:
    """(volume-id pattern, file) for every OS in the database; read once, as text (fast)."""
    found = []
    for path in sorted(root.glob("os/*/*.xml")):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for pattern in _VOLUME_ID.findall(text):
            try:
                found.append((re.compile(html.unescape(pattern)), path))
            except re.error:
                continue
    return tuple(found)


def lookup(volume_id: str) -> OsPreset | None:
    """The OS whose installer media has this volume id, as a preset; None if unknown or no database."""
    root = database()
    if root is None or not volume_id:
        return None
    for pattern, path in _volume_patterns(root):
        if pattern.match(volume_id):
            return _preset(path)
    return None


def _preset(path: Path) -> OsPreset | None:
    try:
        os_element = ET.parse(path).getroot().find("os")
    except (ET.ParseError, OSError):
        return None
    if os_element is None:
        return None

    def text(tag: str, default: str = "") -> str:
        for element in os_element.findall(tag):
            if not element.attrib:  # the untranslated one
                return (element.text or default).strip()
        return default

    def resource(level: str, tag: str) -> int | None:
        for arch in ("x86_64", "all"):
            value = os_element.find(f"resources[@arch='{arch}']/{level}/{tag}")
            if value is not None and value.text and value.text.strip().isdigit():
                return int(value.text)
        return None

    family = FAMILIES.get(text("family"), "other")
    ram = resource("recommended", "ram") or resource("minimum", "ram") or 1024 * MIB
    return OsPreset(id=text("short-id", path.stem), label=text("name", path.stem), family=family,
                    memory_mib=max(256, ram // MIB), min_memory_mib=(resource("minimum", "ram") or ram) // MIB,
                    cpus=max(1, min(2, resource("recommended", "n-cpus") or 2)),
                    disk_gib=max(8, (resource("recommended", "storage") or 20 * 1024**3) // 1024**3),
                    virtio=family == "linux")
