"""Accelerator choice. The real probe runs in tests/integration/test_accel_probe.py; here the prober
is replaced only where the accelerator cannot exist on this Linux host (hvf on macOS, whpx on
Windows), and to count how often the cache lets the probe run."""

from pathlib import Path

import pytest

from hvdesk.core.errors import ConfigError
from hvdesk.qemu import accel, hostcache
from hvdesk.qemu.accel import ProbeResult

EMULATOR = Path("/usr/bin/qemu-system-x86_64")


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv("HVDESK_ACCEL", raising=False)


class FakeProber:
    """Stands in for another OS's accelerator, which cannot run on this Linux machine."""

    def __init__(self, ok: bool, detail: str = "") -> None:
        self.result, self.calls = ProbeResult(ok, detail), []

    def __call__(self, emulator, name):
        self.calls.append(name)
        return self.result


def test_env_beats_vm_setting(monkeypatch):
    monkeypatch.setenv("HVDESK_ACCEL", "tcg")
    choice = accel.choose("kvm", EMULATOR, None)
    assert (choice.name, choice.reason) == ("tcg", "set by HVDESK_ACCEL=tcg")


def test_vm_setting_beats_auto():
    choice = accel.choose("kvm", EMULATOR, None, prober=FakeProber(False))
    assert choice.name == "kvm" and "VM's settings" in choice.reason


def test_unknown_accelerator_is_refused(monkeypatch):
    monkeypatch.setenv("HVDESK_ACCEL", "xen")
    with pytest.raises(ConfigError, match="unknown accelerator 'xen'"):
        accel.choose("auto", EMULATOR, None)


def test_hvf_chosen_on_macos_when_a_guest_runs(tmp_path):
    prober = FakeProber(True, "a test guest ran")
    choice = accel.choose("auto", EMULATOR, tmp_path, platform_name="darwin", prober=prober)
    assert choice.name == "hvf" and prober.calls == ["hvf"]
    assert choice.describe().startswith("Hypervisor.framework:")


def test_whpx_that_cannot_run_a_guest_falls_back_to_tcg_with_the_reason(tmp_path):
    prober = FakeProber(False, "a test guest failed (WHPX: No accelerator found)")
    choice = accel.choose("auto", EMULATOR, tmp_path, platform_name="win32", prober=prober)
    assert choice.name == "tcg"
    assert choice.reason == ("Windows Hypervisor Platform not usable on this host: "
                             "a test guest failed (WHPX: No accelerator found)")


def test_probe_result_is_cached(tmp_path):
    prober = FakeProber(True, "ok")
    for _ in range(3):
        accel.choose("auto", EMULATOR, tmp_path, platform_name="darwin", prober=prober)
    assert prober.calls == ["hvf"]


def test_unknown_platform_gets_tcg():
    assert accel.choose("auto", EMULATOR, None, platform_name="sunos5").name == "tcg"


def test_results_of_the_old_real_mode_probe_are_not_reused(tmp_path):
    old_key = hostcache.binary_key(EMULATOR, "probe-hvf")  # what the real-mode-only probe stored
    hostcache.remembered(tmp_path, old_key, lambda: {"ok": True, "detail": "a test guest ran"})
    assert not accel.is_quick("auto", EMULATOR, tmp_path, platform_name="darwin")
    prober = FakeProber(False, "a test guest in long mode ran no faster than under TCG")
    choice = accel.choose("auto", EMULATOR, tmp_path, platform_name="darwin", prober=prober)
    assert choice.name == "tcg" and prober.calls == ["hvf"]
    assert accel.is_quick("auto", EMULATOR, tmp_path, platform_name="darwin")


@pytest.mark.parametrize("text", ["[]", "5", '"version"', '{"key": 5}'])
def test_a_cache_file_that_is_not_ours_only_costs_a_re_check(tmp_path, text):
    (tmp_path / hostcache.CACHE_FILE).write_text(text)
    assert not hostcache.known(tmp_path, "key")
    assert hostcache.remembered(tmp_path, "key", lambda: {"ok": True}) == {"ok": True}
    assert hostcache.known(tmp_path, "key")
