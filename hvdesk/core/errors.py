"""The one error hierarchy hvdesk raises for things a user can act on.

    HvdeskError                 anything the user should read (CLI exit 1, a dialog in the UI)
     +-- ConfigError            a VM configuration or argument is invalid (names the field)
     +-- NotFoundError          no such VM, file or binary
     |    +-- QemuMissingError  a QEMU binary is not installed (names the package)
     +-- StateError             the operation does not fit the VM's current state
     |    +-- BusyError         another hvdesk process is changing the VM (or the library) right now
     +-- DiskError              qemu-img failed, or an image cannot be used
     |    +-- DiskInUseError    another process holds the image's lock
     +-- QemuError              QEMU failed to start or stopped answering (carries the log tail)
     +-- ConsoleError           the VNC console failed: refused, closed, or the server sent bad data
"""

from __future__ import annotations


class HvdeskError(Exception):
    """Base class: the message is written for the user, in one line where possible."""


class ConfigError(HvdeskError):
    pass


class NotFoundError(HvdeskError):
    pass


class QemuMissingError(NotFoundError):
    pass


class StateError(HvdeskError):
    pass


class BusyError(StateError):
    pass


class DiskError(HvdeskError):
    pass


class DiskInUseError(DiskError):
    pass


class QemuError(HvdeskError):
    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail

    def __str__(self) -> str:
        text = super().__str__()
        if self.log_tail:
            return f"{text}\n--- QEMU log (last lines) ---\n{self.log_tail}"
        return text


class ConsoleError(HvdeskError):
    pass
