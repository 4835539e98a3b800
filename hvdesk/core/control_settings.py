"""The allocation controller's global settings (`controller.toml` in the data folder): whether it
acts, how often, the memory budget it keeps (a share of the host's memory, or a pool the VMs'
balloons sum to) and the pin mode of VMs that ask for the default. Per-VM settings live in each
vm.toml's [resources] section."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path

from hvdesk.core.config import PIN_MODES, check_declared, declared, load_declared
from hvdesk.core.errors import ConfigError
from hvdesk.core.paths import data_dir
from hvdesk.core.storage import atomic_write

FILE = "controller.toml"
MIN_INTERVAL, MAX_INTERVAL = 2, 600  # seconds between control cycles


@dataclass
class ControlSettings:
    enabled: bool = True  # with a host target, the controller only shrinks VMs when the host runs short
    interval: int = declared(low=MIN_INTERVAL, high=MAX_INTERVAL, default=10)
    host_target_percent: int = declared(low=10, high=95, default=80)  # host memory use to stay under
    pool_mib: int = declared(low=0, high=4 * 1024 * 1024, default=0)  # the VMs' balloons together; 0: no pool
    default_pin: str = declared(choices=tuple(m for m in PIN_MODES if m != "default"), default="off")

    def validate(self) -> ControlSettings:
        check_declared(self)
        return self

    def budget_text(self) -> str:
        return (f"a pool of {self.pool_mib} MiB for all VMs" if self.pool_mib
                else f"host memory use under {self.host_target_percent} %")


def settings_path() -> Path:
    return data_dir() / FILE


def load(path: Path | None = None) -> ControlSettings:
    """The saved settings; the defaults when none were saved; ConfigError naming the setting when
    the file is not valid (the caller decides whether to go on with the defaults)."""
    path = path or settings_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ControlSettings()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        return load_declared(ControlSettings, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def save(settings: ControlSettings, path: Path | None = None) -> None:
    import tomli_w

    path = path or settings_path()
    settings.validate()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, tomli_w.dumps(dataclasses.asdict(settings)).encode("utf-8"))
