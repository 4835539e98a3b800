"""Build (and cache) the tiny Linux guest that hvdesk's tests boot under QEMU.

The guest is Debian's cloud kernel plus an initramfs holding a static busybox,
a handful of virtio/ACPI modules and ``init.sh`` as /init.  Everything comes
from Debian packages fetched with ``apt-get download``; nothing is installed
on the host.  The result is cached under ``<cache>/guest-<key>/``.

Guest protocol (see init.sh):
  * ``READY_MARKER`` on ttyS0 once the guest is up.
  * ACPI power button -> ``POWEROFF_MARKER`` on ttyS0, then power off.
  * virtio-serial port ``CHANNEL_NAME``: one command per line, answered by
    ``ACK_PREFIX + " " + <command line>`` (or ``ERR_PREFIX ...`` on failure)
    on the port and on ttyS0.  Commands: ``alloc MIB``, ``free``,
    ``burn SECONDS`` (0 = until ``stop``), ``stop``, ``write MIB`` (to
    /dev/vda), ``echo TEXT``, ``poweroff``.
  * Kernel parameters ``hvdesk.alloc=MIB`` and ``hvdesk.burn=SECONDS`` run
    the same commands at boot (ACKed on ttyS0 only).
  * ``hvdesk.install=1``: copy /install/disk.img (from a second initramfs
    archive) to /dev/vda, print ``INSTALLER_MARKER``, power off;
    ``hvdesk.installed=1``: print ``INSTALLED_MARKER`` after ``READY_MARKER``.
    Used by installer.py's test installer ISO.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Bump whenever this file changes what ends up in the guest.
BUILDER_VERSION = "1"

KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"

READY_MARKER = "HVDESK-GUEST-READY"
POWEROFF_MARKER = "HVDESK-GUEST-POWEROFF"
SHELL_MARKER = "HVDESK-SHELL-READY"  # the shell on tty1 (the VGA console) reads the keyboard
ACK_PREFIX = "HVDESK-ACK"
ERR_PREFIX = "HVDESK-ERR"
CHANNEL_NAME = "org.hvdesk.guest.0"
INSTALLER_MARKER = "HVDESK-INSTALLER-DONE"
INSTALLED_MARKER = "HVDESK-INSTALLED-SYSTEM"

APPEND = "console=ttyS0 panic=-1 quiet"

# Modules the guest needs; their dependencies are added (and ordered) from
# each module's .modinfo, and modules built into the kernel are skipped.
REQUIRED_MODULES = (
    "virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
    "virtio_pci", "virtio_balloon", "virtio_console", "virtio_blk",
    "failover", "net_failover", "virtio_net", "evdev", "button",
)
OPTIONAL_MODULES = ("virtio_input", "virtio_rng")

INIT_TEMPLATE = Path(__file__).with_name("init.sh")
METADATA = "guest.json"


@dataclass(frozen=True)
class TinyGuest:
    kernel: Path
    initrd: Path
    append: str
    marker: str
    kernel_version: str


def ensure_tiny_guest(cache_dir: Path | None = None) -> TinyGuest:
    """Return the cached guest, building it first if there is none."""
    cache = _cache_root(cache_dir)
    recipe = _recipe_hash()
    cached = _newest_cached(cache, recipe)
    if cached is not None:
        return cached
    return _build(cache, recipe)


def _cache_root(cache_dir: Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("HVDESK_TEST_CACHE")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "hvdesk-tests"


def _recipe_hash() -> str:
    h = hashlib.sha256(BUILDER_VERSION.encode())
    h.update(INIT_TEMPLATE.read_bytes())
    return h.hexdigest()[:12]


def _newest_cached(cache: Path, recipe: str) -> TinyGuest | None:
    # Any finished build of this recipe will do: avoids asking apt for the
    # current kernel version on every run.  Directories only appear by an
    # atomic rename once complete, so the metadata file marks completeness.
    metas = sorted(cache.glob(f"guest-{recipe}-*/{METADATA}"),
                   key=lambda p: p.stat().st_mtime)
    return _load(metas[-1]) if metas else None


def _load(meta_path: Path) -> TinyGuest:
    meta = json.loads(meta_path.read_text())
    d = meta_path.parent
    return TinyGuest(kernel=d / "vmlinuz", initrd=d / "initrd.gz",
                     append=meta["append"], marker=meta["marker"],
                     kernel_version=meta["kernel_version"])


# --- building ---------------------------------------------------------------

def _build(cache: Path, recipe: str) -> TinyGuest:
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hvdesk-guest-") as work:
        work = Path(work)
        kernel_deb = _apt_download(_resolve_kernel_package(), work)
        busybox_deb = _apt_download(BUSYBOX_PACKAGE, work)
        kernel_id = f"{_deb_field(kernel_deb, 'Package')}={_deb_field(kernel_deb, 'Version')}"
        key = hashlib.sha256(kernel_id.encode()).hexdigest()[:12]
        final = cache / f"guest-{recipe}-{key}"

        stage = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
        stage.chmod(0o755)  # mkdtemp's 0700 would stick after the rename
        try:
            meta = _assemble(_extract(kernel_deb, work / "kernel"),
                             _extract(busybox_deb, work / "busybox"), stage)
            meta["kernel_package"] = kernel_id
            (stage / METADATA).write_text(json.dumps(meta, indent=2) + "\n")
            _publish(stage, final)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return _load(final / METADATA)


def _publish(stage: Path, final: Path) -> None:
    try:
        os.rename(stage, final)
    except OSError:
        # A concurrent build won the race; its result is equivalent.
        if not (final / METADATA).exists():
            raise


def _assemble(kroot: Path, bbroot: Path, out: Path) -> dict:
    moddir = _modules_dir(kroot)
    kernel_version = moddir.name
    vmlinuz = kroot / "boot" / f"vmlinuz-{kernel_version}"
    if not vmlinuz.exists():
        raise RuntimeError(f"{vmlinuz.name} missing from the kernel package")
    shutil.copyfile(vmlinuz, out / "vmlinuz")

    order, builtin = _module_order(moddir)
    busybox = (bbroot / "bin" / "busybox").read_bytes()
    init = _render_init(order)
    (out / "initrd.gz").write_bytes(_initramfs(busybox, init, order))
    return {"append": APPEND, "marker": READY_MARKER,
            "kernel_version": kernel_version,
            "modules": [name for name, _ in order], "builtin": builtin}


def _render_init(order: list[tuple[str, Path]]) -> str:
    values = {
        "@MODULES@": " ".join(name for name, _ in order),
        "@READY_MARKER@": READY_MARKER,
        "@POWEROFF_MARKER@": POWEROFF_MARKER,
        "@SHELL_MARKER@": SHELL_MARKER,
        "@ACK_PREFIX@": ACK_PREFIX,
        "@ERR_PREFIX@": ERR_PREFIX,
        "@CHANNEL_NAME@": CHANNEL_NAME,
        "@INSTALLER_MARKER@": INSTALLER_MARKER,
        "@INSTALLED_MARKER@": INSTALLED_MARKER,
    }
    text = INIT_TEMPLATE.read_text()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


# --- apt / dpkg ---------------------------------------------------------------

APT_HINT = "If a package was not found, run `apt-get update` first."


def _run(argv: list[str], cwd: Path | None = None, hint: str = "") -> str:
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise RuntimeError(
            f"{argv[0]} not found: the tiny test guest is built from Debian "
            "packages and needs apt-get, apt-cache and dpkg-deb "
            "(a Debian or Ubuntu host)") from None
    if proc.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(argv)}` failed ({proc.returncode}): "
            f"{proc.stderr.strip() or proc.stdout.strip()}\n{hint}".rstrip())
    return proc.stdout


def _resolve_kernel_package() -> str:
    out = _run(["apt-cache", "depends", KERNEL_METAPACKAGE], hint=APT_HINT)
    m = re.search(r"Depends:\s*(linux-image-\S+)", out)
    if not m:
        raise RuntimeError(
            f"cannot resolve {KERNEL_METAPACKAGE} to a kernel package "
            f"(apt-cache depends said: {out.strip()!r}); run `apt-get update`")
    return m.group(1)


def _apt_download(package: str, dest: Path) -> Path:
    before = set(dest.glob("*.deb"))
    _run(["apt-get", "download", "-q", package], cwd=dest, hint=APT_HINT)
    new = set(dest.glob("*.deb")) - before
    if len(new) != 1:
        raise RuntimeError(f"apt-get download {package} produced no .deb")
    return new.pop()


def _deb_field(deb: Path, field: str) -> str:
    return _run(["dpkg-deb", "-f", str(deb), field]).strip()


def _extract(deb: Path, dest: Path) -> Path:
    _run(["dpkg-deb", "-x", str(deb), str(dest)])
    return dest


# --- kernel modules -------------------------------------------------------------

def _modules_dir(kroot: Path) -> Path:
    dirs = [d for d in (kroot / "lib" / "modules").glob("*") if d.is_dir()]
    if len(dirs) != 1:
        raise RuntimeError(f"expected one lib/modules/<version> dir, got {dirs}")
    return dirs[0]


def _modname(path: Path) -> str:
    return path.name.split(".ko")[0].replace("-", "_")


def _module_order(moddir: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """Return ([(name, .ko path)] in load order, [builtin names asked for])."""
    files = {_modname(p): p for p in moddir.rglob("*.ko*")}
    builtin_list = moddir / "modules.builtin"
    builtin = {_modname(Path(line)) for line in
               (builtin_list.read_text().split() if builtin_list.exists() else ())}
    order: list[tuple[str, Path]] = []
    skipped: list[str] = []

    def visit(name: str, required: bool) -> None:
        if name in builtin:
            if name not in skipped:
                skipped.append(name)
            return
        if any(n == name for n, _ in order):
            return
        if name not in files:
            if required:
                raise RuntimeError(f"kernel module {name} not in {moddir}")
            return
        for dep in _modinfo(_ko_bytes(files[name])).get("depends", "").split(","):
            if dep:
                visit(dep.replace("-", "_"), True)
        order.append((name, files[name]))

    for name in REQUIRED_MODULES:
        visit(name, True)
    for name in OPTIONAL_MODULES:
        visit(name, False)
    return order, skipped


def _ko_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".ko"):
        return data
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    raise RuntimeError(
        f"{path.name}: unsupported module compression (only plain and .xz "
        "are handled; add a decompressor to tests/guest/build.py)")


def _modinfo(ko: bytes) -> dict[str, str]:
    """Key/value pairs of an ELF64 module's .modinfo section."""
    if ko[:6] != b"\x7fELF\x02\x01":
        raise RuntimeError("kernel module is not a little-endian ELF64 file")
    shoff, = struct.unpack_from("<Q", ko, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ko, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _, _, _, offset, size = struct.unpack_from(
            "<IIQQQQ", ko, shoff + i * shentsize)
        return name, offset, size

    strtab = section(shstrndx)[1]
    for i in range(shnum):
        name, offset, size = section(i)
        end = ko.index(b"\0", strtab + name)
        if ko[strtab + name:end] == b".modinfo":
            pairs = (f.split(b"=", 1) for f in ko[offset:offset + size].split(b"\0") if b"=" in f)
            return {k.decode(): v.decode() for k, v in pairs}
    return {}


# --- initramfs ------------------------------------------------------------------

_S_IFDIR, _S_IFREG, _S_IFLNK, _S_IFCHR = 0o040000, 0o100000, 0o120000, 0o020000

POWER_BUTTON_SCRIPT = f"""#!/bin/sh
echo {POWEROFF_MARKER} > /dev/ttyS0
poweroff -f
"""


def _initramfs(busybox: bytes, init: str, order: list[tuple[str, Path]]) -> bytes:
    cpio = _Cpio()
    for d in ("bin", "dev", "etc", "etc/acpi", "etc/acpi/PWRF", "lib",
              "lib/modules", "proc", "run", "sys", "tmp"):
        cpio.add(d, _S_IFDIR | 0o755)
    # The kernel opens /dev/console for init's stdio before devtmpfs is mounted.
    cpio.add("dev/console", _S_IFCHR | 0o600, rdev=(5, 1))
    cpio.add("bin/busybox", _S_IFREG | 0o755, busybox)
    cpio.add("bin/sh", _S_IFLNK | 0o777, b"busybox")
    cpio.add("init", _S_IFREG | 0o755, init.encode())
    # busybox acpid maps KEY_POWER to ./PWRF/00000080 under /etc/acpi.
    cpio.add("etc/acpi/PWRF/00000080", _S_IFREG | 0o755,
             POWER_BUTTON_SCRIPT.encode())
    for name, path in order:
        cpio.add(f"lib/modules/{name}.ko", _S_IFREG | 0o644, _ko_bytes(path))
    raw = cpio.finish()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        gz.write(raw)
    return buf.getvalue()


class _Cpio:
    """Minimal deterministic newc ("070701") cpio writer."""

    def __init__(self) -> None:
        self._out = bytearray()
        self._ino = 0

    def add(self, name: str, mode: int, data: bytes = b"",
            rdev: tuple[int, int] = (0, 0)) -> None:
        self._ino += 1
        nlink = 2 if (mode & 0o170000) == _S_IFDIR else 1
        fields = (self._ino, mode, 0, 0, nlink, 0, len(data),
                  0, 0, rdev[0], rdev[1], len(name) + 1, 0)
        self._out += b"070701" + b"".join(b"%08X" % f for f in fields)
        self._out += name.encode() + b"\0"
        self._pad()
        self._out += data
        self._pad()

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return bytes(self._out)

    def _pad(self) -> None:
        self._out += b"\0" * (-len(self._out) % 4)


def main() -> int:
    guest = ensure_tiny_guest()
    print(f"kernel:         {guest.kernel}")
    print(f"initrd:         {guest.initrd}")
    print(f"append:         {guest.append}")
    print(f"marker:         {guest.marker}")
    print(f"kernel_version: {guest.kernel_version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
