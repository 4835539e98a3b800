"""The one error hierarchy hvdesk raises for things a user can act on.

    HvdeskError                 anything the user should read (CLI exit 1, a dialog in the UI)
     +-- ConfigError            a VM configuration or argument is invalid (names the field)
     +-- NotFoundError          no such VM, file or binary
     |    +-- QemuMissingError  a QEMU binary is not installed (names the package)
     +-- StateError             the operation does not fit the VM's current state
     |    +-- BusyError         another hvdesk process is changing the VM (or the library) right now
     +-- DiskError              qemu-img failed, or an image cannot be used
     |    +-- DiskInUseError    another process holds the image's lock
     |    +-- BackingFileError  an image reads from backing files the person has not approved
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
    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail or message  # qemu-img's own reason, without the path


class DiskInUseError(DiskError):
    pass


class BackingFileError(DiskError):
    """Carries the chain, so a face can show it and ask before trying again with approval."""

    def __init__(self, message: str, chain: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.chain = chain  # (path, format), the disk's own image first


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


def user_message(error: BaseException) -> str | None:
    """What to tell the user about `error`: hvdesk's own errors as they are, and the system's
    (a read-only or full disk, a missing permission, a file removed under us) as one line naming
    the file. None for anything else: a bug, to be reported with its traceback."""
    if isinstance(error, HvdeskError):
        return str(error)
    if isinstance(error, OSError):
        what = error.strerror or str(error) or type(error).__name__
        if error.filename is None:
            return what
        where = f"{error.filename}" + (f" -> {error.filename2}" if error.filename2 is not None else "")
        return f"{what}: {where}"
    return None
