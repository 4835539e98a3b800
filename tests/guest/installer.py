"""Build (and cache) an offline "OS installer" ISO for testing hvdesk's install flow.

Booted by BIOS (isolinux), the ISO starts the tiny guest (build.py) with
``hvdesk.install=1``.  A second initramfs archive carries a ready-made disk
image, which the guest's init copies to /dev/vda before printing
``installer_marker`` and powering off.  The installed disk holds an MBR, one
bootable FAT partition with syslinux and the same tiny guest, booting with
``hvdesk.installed=1`` so it prints ``installed_marker`` on ttyS0.

Everything is built on the host without root or loop devices, from Debian's
xorriso, isolinux, syslinux, syslinux-common, mtools, dosfstools and fdisk.
The result is cached as ``<cache>/installer-<key>/installer.iso``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .build import (
    _S_IFDIR,
    _S_IFREG,
    INSTALLED_MARKER,
    INSTALLER_MARKER,
    TinyGuest,
    _cache_root,
    _Cpio,
    ensure_tiny_guest,
)

# Bump whenever this file changes what ends up in the ISO.
BUILDER_VERSION = "1"

VOLUME_ID = "HVDESK_TEST_INSTALLER"
ISO_NAME = "installer.iso"

SECTOR = 512
PARTITION_START = 2048  # sectors: the usual 1 MiB alignment
PARTITION_MIB = 48
PARTITION_TYPE = "e"  # FAT16 (LBA); mkfs.fat picks FAT16 for this size

# tool -> Debian package, for the "please install" error.
TOOLS = {
    "xorriso": "xorriso",
    "sfdisk": "fdisk",
    "mkfs.fat": "dosfstools",
    "mcopy": "mtools",
    "syslinux": "syslinux",
}
# Boot loader files -> (candidate paths, Debian package).
SYSLINUX_FILES = {
    "isolinux.bin": (("/usr/lib/ISOLINUX/isolinux.bin",
                      "/usr/lib/syslinux/isolinux.bin"), "isolinux"),
    "ldlinux.c32": (("/usr/lib/syslinux/modules/bios/ldlinux.c32",
                     "/usr/lib/syslinux/ldlinux.c32"), "syslinux-common"),
    "mbr.bin": (("/usr/lib/syslinux/mbr/mbr.bin",
                 "/usr/lib/syslinux/mbr.bin"), "syslinux-common"),
}
DEBIAN_PACKAGES = sorted(set(TOOLS.values())
                         | {pkg for _, pkg in SYSLINUX_FILES.values()})


@dataclass(frozen=True)
class InstallerIso:
    path: Path
    installed_marker: str = INSTALLED_MARKER
    installer_marker: str = INSTALLER_MARKER


def ensure_installer_iso(cache_dir: Path | None = None) -> InstallerIso:
    """Return the cached installer ISO, building it first if there is none."""
    cache = _cache_root(cache_dir)
    guest = ensure_tiny_guest(cache)
    loaders = _find_syslinux_files()
    final = cache / f"installer-{_key(guest, loaders)}"
    if not (final / ISO_NAME).exists():
        _check_tools()
        _build(guest, loaders, cache, final)
    return InstallerIso(path=final / ISO_NAME)


def _key(guest: TinyGuest, loaders: dict[str, Path]) -> str:
    h = hashlib.sha256(BUILDER_VERSION.encode())
    for path in (guest.kernel, guest.initrd, *loaders.values()):
        h.update(path.read_bytes())
    h.update(guest.append.encode())
    return h.hexdigest()[:12]


def _find_syslinux_files() -> dict[str, Path]:
    found, missing = {}, set()
    for name, (candidates, package) in SYSLINUX_FILES.items():
        path = next((Path(c) for c in candidates if Path(c).exists()), None)
        if path is None:
            missing.add(package)
        else:
            found[name] = path
    if missing:
        raise RuntimeError(f"{', '.join(SYSLINUX_FILES)} not all found: the test "
                           f"installer ISO needs `apt-get install {' '.join(sorted(missing))}`")
    return found


def _check_tools() -> None:
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if missing:
        raise RuntimeError(f"the test installer ISO needs {', '.join(TOOLS)}: "
                           f"`apt-get install {' '.join(missing)}`")


def _run(argv: list[str], stdin: str | None = None) -> None:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed ({proc.returncode}): "
                           f"{proc.stderr.strip() or proc.stdout.strip()}")


# --- building -------------------------------------------------------------------

def _build(guest: TinyGuest, loaders: dict[str, Path], cache: Path, final: Path) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".build-installer-", dir=cache))
    stage.chmod(0o755)  # mkdtemp's 0700 would stick after the rename
    try:
        with tempfile.TemporaryDirectory(prefix="hvdesk-installer-") as work:
            work = Path(work)
            disk = _disk_image(guest, loaders["mbr.bin"], work)
            _iso(guest, loaders, _install_archive(disk), work / "iso", stage / ISO_NAME)
        _publish(stage, final)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _publish(stage: Path, final: Path) -> None:
    try:
        os.rename(stage, final)
    except OSError:
        # A concurrent build won the race; its result is equivalent.
        if not (final / ISO_NAME).exists():
            raise


def _syslinux_cfg(label: str, initrd: str, append: str) -> str:
    # No prompt, no timeout: boot straight away.
    return (f"DEFAULT {label}\nPROMPT 0\nTIMEOUT 0\n"
            f"LABEL {label}\n  KERNEL /vmlinuz\n  INITRD {initrd}\n  APPEND {append}\n")


def _disk_image(guest: TinyGuest, mbr: Path, work: Path) -> Path:
    """MBR + syslinux + one bootable FAT partition holding the tiny guest."""
    part = _fat_partition(guest, work)
    disk = work / "disk.img"
    start = PARTITION_START * SECTOR
    with disk.open("wb") as f:
        f.truncate(start + part.stat().st_size)
    # Partition table first: sfdisk may clear the boot code area it writes.
    _run(["sfdisk", "--no-reread", "--no-tell-kernel", str(disk)],
         stdin=f"label: dos\nstart={PARTITION_START}, type={PARTITION_TYPE}, bootable\n")
    with disk.open("r+b") as f:
        f.write(mbr.read_bytes()[:440])  # boot code only; the table follows it
        f.seek(start)
        with part.open("rb") as src:
            shutil.copyfileobj(src, f)
    return disk


def _fat_partition(guest: TinyGuest, work: Path) -> Path:
    part = work / "part.img"
    cfg = work / "syslinux.cfg"
    cfg.write_text(_syslinux_cfg("installed", "/initrd.gz",
                                 f"{guest.append} hvdesk.installed=1"))
    # -h: hidden sectors = the partition's offset, which the boot sector needs.
    _run(["mkfs.fat", "-C", "-h", str(PARTITION_START), "-n", "HVDESK",
          str(part), str(PARTITION_MIB * 1024)])
    _run(["mcopy", "-i", str(part), str(guest.kernel), str(guest.initrd),
          str(cfg), "::/"])
    _run(["syslinux", "--install", str(part)])
    return part


def _install_archive(disk: Path) -> bytes:
    """A gzipped cpio with /install/disk.img, loaded as a second initrd."""
    cpio = _Cpio()
    cpio.add("install", _S_IFDIR | 0o755)
    cpio.add("install/disk.img", _S_IFREG | 0o644, disk.read_bytes())
    return gzip.compress(cpio.finish(), compresslevel=6, mtime=0)


def _iso(guest: TinyGuest, loaders: dict[str, Path], install: bytes,
         root: Path, out: Path) -> None:
    boot = root / "isolinux"
    boot.mkdir(parents=True)
    for name in ("isolinux.bin", "ldlinux.c32"):
        shutil.copyfile(loaders[name], boot / name)
    (boot / "isolinux.cfg").write_text(_syslinux_cfg(
        "install", "/initrd.gz,/install.gz", f"{guest.append} hvdesk.install=1"))
    shutil.copyfile(guest.kernel, root / "vmlinuz")
    shutil.copyfile(guest.initrd, root / "initrd.gz")
    (root / "install.gz").write_bytes(install)
    _run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(out), "-V", VOLUME_ID,
          "-R", "-J", "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat",
          "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", str(root)])


def main() -> int:
    iso = ensure_installer_iso()
    print(f"iso:              {iso.path} ({iso.path.stat().st_size // 1024} KiB)")
    print(f"installer_marker: {iso.installer_marker}")
    print(f"installed_marker: {iso.installed_marker}")
    print(f"debian packages:  {' '.join(DEBIAN_PACKAGES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
