"""A software TPM 2.0 (swtpm) per VM, for guests that require one (Windows 11). Its state lives
in the VM's folder; swtpm runs beside QEMU and ends when QEMU closes its socket (--terminate)."""

from __future__ import annotations

import asyncio
import os
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


# swtpm splits its option strings at every comma and has no escape for one (src/swtpm/options.c).
SWTPM_UNSAFE = ","
LOG_LINK = "tpm-logs"


def swtpm_argv(swtpm: Path, state_dir: Path | None, socket: Path, pidfile: Path, log: Path) -> list[str]:
    """swtpm's command line (without --tpmstate when `state_dir` is None: TPM_PATH gives it). A path
    swtpm cannot take is refused, naming it; `launch` keeps the VM's own folder out of the options."""
    for path in (state_dir, socket, pidfile, log):
        if path is not None and SWTPM_UNSAFE in str(path):
            raise QemuError(f"the VM's TPM cannot start: swtpm cannot take the path {path} because it contains "
                            f"{SWTPM_UNSAFE!r} (set HVDESK_RUNTIME_DIR to a folder without one)")
    state = ["--tpmstate", f"dir={state_dir},mode=0600"] if state_dir is not None else []
    return [str(swtpm), "socket", "--tpm2", *state, "--ctrl", f"type=unixio,path={socket},mode=0600",
            "--pid", f"file={pidfile}", "--log", f"file={log}", "--daemon", "--terminate"]


async def launch(state_dir: Path, socket: Path, pidfile: Path, log: Path) -> int:
    """Start swtpm for one VM; returns its pid once its socket is ready.

    The VM's folder may have a comma in its path, which swtpm's options cannot carry. Then the
    state dir, which swtpm opens by path for as long as it runs, goes in as TPM_PATH (read with no
    parsing; swtpm then makes its files 0640, inside the 0700 folder), and the log, opened once at
    start, through a link in the VM's private runtime dir. (Not `--log fd=`: swtpm 0.7 closes its
    stderr for it, the control socket then becomes fd 2 and daemonizing replaces it.)"""
    make_private_dir(state_dir)
    env: dict[str, str] | None = None
    state_arg: Path | None = state_dir  # on swtpm's command line
    if SWTPM_UNSAFE in str(state_dir):
        env, state_arg = {**os.environ, "TPM_PATH": str(state_dir)}, None
    if SWTPM_UNSAFE in str(log.parent):
        link = socket.with_name(LOG_LINK)
        try:
            link.unlink(missing_ok=True)
            link.symlink_to(log.parent, target_is_directory=True)
        except OSError as exc:
            raise QemuError(f"the VM's TPM cannot start: {exc}") from None
        log = link / log.name
    argv = swtpm_argv(find_swtpm(), state_arg, socket, pidfile, log)
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                start_new_session=True, umask=0o077, env=env)
    out, err = await proc.communicate()
    pid = read_pid(pidfile)
    if proc.returncode != 0 or pid is None or not socket.exists():
        message = (err or out).decode(errors="replace").strip() or log_tail(log)
        raise QemuError(f"the VM's TPM (swtpm) did not start: {message.splitlines()[-1] if message else ''}",
                        message)
    return pid
