"""Where one VM's files live. Its own module, apart from the command-line builder (argv.py): every
command needs the paths, only a start needs the builder."""

from __future__ import annotations

from pathlib import Path


class VmPaths:
    """Where one VM's files live: its folder (disks, logs) and its private runtime dir (sockets).
    (A plain class: `hvdesk list` loads no dataclasses.)"""

    __slots__ = ("vm_dir", "run_dir")

    def __init__(self, vm_dir: Path, run_dir: Path) -> None:
        self.vm_dir = vm_dir
        self.run_dir = run_dir

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VmPaths) and (self.vm_dir, self.run_dir) == (other.vm_dir, other.run_dir)

    def __hash__(self) -> int:
        return hash((self.vm_dir, self.run_dir))

    def __repr__(self) -> str:
        return f"VmPaths(vm_dir={self.vm_dir!r}, run_dir={self.run_dir!r})"

    @property
    def qmp_socket(self) -> Path:  # the long-lived session: events, for the app watching the VM
        return self.run_dir / "qmp.sock"

    @property
    def ctl_socket(self) -> Path:  # short commands (CLI), so they never wait for the watcher
        return self.run_dir / "ctl.sock"

    @property
    def vnc_socket(self) -> Path:
        return self.run_dir / "vnc.sock"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "qemu.pid"

    @property
    def tpm_socket(self) -> Path:
        return self.run_dir / "swtpm.sock"

    @property
    def tpm_pidfile(self) -> Path:
        return self.run_dir / "swtpm.pid"

    @property
    def tpm_state(self) -> Path:
        return self.vm_dir / "tpm"

    @property
    def qemu_log(self) -> Path:
        return self.vm_dir / "logs" / "qemu.log"

    @property
    def serial_log(self) -> Path:
        return self.vm_dir / "logs" / "serial.log"

    @property
    def saved_state(self) -> Path:  # the guest's RAM and devices, as QEMU's migration wrote them
        return self.vm_dir / "saved-state.bin"

    @property
    def saved_state_info(self) -> Path:  # written last: its presence says the state file is complete
        return self.vm_dir / "saved-state.json"

    @property
    def saved_state_part(self) -> Path:  # a save under way (renamed to saved_state once complete)
        return self.vm_dir / ".saved-state.part"

    @property
    def uefi_vars(self) -> Path:
        return self.vm_dir / "uefi-vars.fd"

    def resolve(self, path: str) -> Path:
        """A path from vm.toml: relative ones live in the VM's folder. `~user` of a user this host
        does not have stays as written (so the file is reported missing), rather than raising."""
        try:
            candidate = Path(path).expanduser()
        except RuntimeError:
            candidate = Path(path)
        return candidate if candidate.is_absolute() else self.vm_dir / candidate
