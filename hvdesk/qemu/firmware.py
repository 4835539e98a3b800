"""Finding UEFI firmware (OVMF) for x86_64 guests.

QEMU's firmware descriptors (/usr/share/qemu/firmware/*.json, the interop spec shipped by
distributions) say which file is what; the known per-distribution paths are the fallback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hvdesk.core.errors import NotFoundError

DESCRIPTOR_DIRS = ["/usr/share/qemu/firmware", "/etc/qemu/firmware", "/opt/homebrew/share/qemu/firmware",
                   "/usr/local/share/qemu/firmware"]
KNOWN_PAIRS = [
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),  # Debian 12, Ubuntu 22.04+
    ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),  # older Debian/Ubuntu
    ("/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"),  # Fedora
    ("/usr/share/edk2/x64/OVMF_CODE.4m.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd"),  # Arch
    ("/opt/homebrew/share/qemu/edk2-x86_64-code.fd", "/opt/homebrew/share/qemu/edk2-i386-vars.fd"),
    ("/usr/local/share/qemu/edk2-x86_64-code.fd", "/usr/local/share/qemu/edk2-i386-vars.fd"),
]
MACHINE_PREFIX = {"q35": "pc-q35", "pc": "pc-i440fx"}  # as descriptors name machine types
INSTALL_HINT = {
    "linux": "on Debian/Ubuntu: sudo apt install ovmf; on Fedora: sudo dnf install edk2-ovmf",
    "darwin": "brew install qemu (it ships edk2 firmware)",
}


@dataclass(frozen=True)
class UefiFirmware:
    code: Path  # read-only, shared
    vars_template: Path  # copied once into each VM's folder (its NVRAM)


def find_uefi(machine: str = "q35", secure_boot: bool = False) -> UefiFirmware:
    for firmware in _from_descriptors(machine, secure_boot):
        return firmware
    if not secure_boot:
        for code, vars_template in KNOWN_PAIRS:
            if Path(code).is_file() and Path(vars_template).is_file():
                return UefiFirmware(Path(code), Path(vars_template))
    hint = INSTALL_HINT.get(sys.platform, "install OVMF (edk2) firmware")
    raise NotFoundError(f"UEFI firmware (OVMF) not found ({hint})")


def _from_descriptors(machine: str, secure_boot: bool) -> Iterator[UefiFirmware]:
    files = sorted(p for d in DESCRIPTOR_DIRS if Path(d).is_dir() for p in Path(d).glob("*.json"))
    for path in files:
        try:
            desc = json.loads(path.read_text())
            mapping = desc["mapping"]
            if "uefi" not in desc["interface-types"] or mapping.get("device") != "flash":
                continue
            if mapping.get("mode", "split") != "split":
                continue
            targets = desc.get("targets", [])
            prefix = MACHINE_PREFIX.get(machine, machine)
            if not any(t["architecture"] == "x86_64" and any(m.startswith(prefix) for m in t["machines"])
                       for t in targets):
                continue
            features = set(desc.get("features", []))
            if ("secure-boot" in features) != secure_boot or "requires-smm" in features:
                continue
            code = Path(mapping["executable"]["filename"])
            vars_template = Path(mapping["nvram-template"]["filename"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a descriptor we cannot read is not ours to fix
        if code.is_file() and vars_template.is_file():
            yield UefiFirmware(code, vars_template)


async def new_nvram(template: Path, target: Path) -> None:
    """A VM's own UEFI NVRAM from the firmware's template, as qcow2: QEMU runs pflash from qcow2
    just as from raw, and only qcow2 can hold the VM's snapshots."""
    from hvdesk.qemu import images

    await images.convert_format(template, target, "raw", "qcow2")


def nvram_format(path: Path) -> str:
    """qcow2 or raw, as the NVRAM's header says (an older hvdesk wrote raw ones)."""
    from hvdesk.qemu import images

    return "qcow2" if images.is_qcow2(path) else "raw"
