"""A software TPM 2.0 (swtpm) per VM, for guests that require one (Windows 11). Its state lives
in the VM's folder; swtpm runs beside QEMU and ends when QEMU closes its socket (--terminate)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from hvdesk.core.errors import NotFoundError, QemuError
from hvdesk.core.paths import make_private_dir
from hvdesk.qemu.process import log_tail, read_pid

INSTALL_HINT = "on Debian/Ubuntu: sudo apt install swtpm swtpm-tools; on Fedora: sudo dnf install swtpm"


def find_swtpm() -> Path:
    found = shutil.which("swtpm")
    if found is None:
        raise NotFoundError(f"this VM needs a TPM 2.0, but swtpm is not installed ({INSTALL_HINT})")
    return Path(found)


async def launch(state_dir: Path, socket: Path, pidfile: Path, log: Path) -> int:
    """Start swtpm for one VM; returns its pid once its socket is ready."""
    make_private_dir(state_dir)
    argv = [str(find_swtpm()), "socket", "--tpm2", "--tpmstate", f"dir={state_dir},mode=0600",
            "--ctrl", f"type=unixio,path={socket},mode=0600", "--pid", f"file={pidfile}",
            "--log", f"file={log}", "--daemon", "--terminate"]
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                start_new_session=True, umask=0o077)
    out, err = await proc.communicate()
    pid = read_pid(pidfile)
    if proc.returncode != 0 or pid is None or not socket.exists():
        message = (err or out).decode(errors="replace").strip() or log_tail(log)
        raise QemuError(f"the VM's TPM (swtpm) did not start: {message.splitlines()[-1] if message else ''}",
                        message)
    return pid
