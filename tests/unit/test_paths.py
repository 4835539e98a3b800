"""hvdesk's own XDG lookup on Linux (core/paths.py, kept to spare `hvdesk list` platformdirs' import)
must give the folders platformdirs gives, for every way the environment can be set."""

from __future__ import annotations

import sys

import platformdirs
import pytest

from hvdesk.core import paths


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="elsewhere hvdesk asks platformdirs itself")
@pytest.mark.parametrize("data_home, cache_home", [
    (None, None), ("/srv/data", "/srv/cache"), ("", ""), ("  ", " "), ("relative/data", "relative/cache"),
])
def test_user_folders_are_platformdirs_ones(monkeypatch, tmp_path, data_home, cache_home):
    monkeypatch.delenv("HVDESK_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for variable, value in (("XDG_DATA_HOME", data_home), ("XDG_CACHE_HOME", cache_home)):
        if value is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, value)
    assert paths.data_dir() == paths.Path(platformdirs.user_data_dir("hvdesk"))
    assert paths.cache_dir() == paths.Path(platformdirs.user_cache_dir("hvdesk"))
    assert paths.vms_dir().parent == paths.data_dir()


def test_the_runtime_key_is_sha256_whichever_module_computes_it():
    import hashlib

    from hvdesk.core.paths import sha256_hex

    for data in (b"", b"/home/u/.local/share/hvdesk", "/tmp/é".encode()):
        assert sha256_hex(data) == hashlib.sha256(data).hexdigest()


def test_without_uids_the_runtime_folder_is_per_profile_and_no_owner_is_compared(monkeypatch, tmp_path):
    """Windows has no os.getuid (mocked by removing it: Windows cannot run here). Its temp folder is
    already under the user's profile; the folder checks must not call getuid."""
    import tempfile

    monkeypatch.delenv("HVDESK_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delattr(paths.os, "getuid")
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    assert paths.runtime_base() == tmp_path / "hvdesk"
    assert paths.make_private_dir(tmp_path / "data" / "VMs").is_dir()
