"""swtpm's command line, read back the way swtpm reads its options (src/swtpm/options.c: the
string is cut at every comma, with no escape; each piece is name=value)."""

from pathlib import Path

import pytest

from hvdesk.core.errors import QemuError
from hvdesk.qemu.tpm import swtpm_argv


def swtpm_options(text: str) -> dict[str, str]:
    pieces = [p for p in text.split(",") if p]  # strtok_r: empty pieces vanish
    return dict(p.split("=", 1) if "=" in p else (p, "true") for p in pieces)


def test_every_option_reads_back_as_meant():
    run = Path("/run/u=1 'x' ü/6f1c2a50-0000-4000-8000-00000000c0de")
    argv = swtpm_argv(Path("/usr/bin/swtpm"), run / "tpm-state", run / "swtpm.sock", run / "swtpm.pid",
                      run / "tpm-logs" / "swtpm.log")
    options = {flag: swtpm_options(value) for flag, value in zip(argv, argv[1:]) if flag.startswith("--")
               and not value.startswith("--")}
    assert options == {
        "--tpmstate": {"dir": str(run / "tpm-state"), "mode": "0600"},
        "--ctrl": {"type": "unixio", "path": str(run / "swtpm.sock"), "mode": "0600"},
        "--pid": {"file": str(run / "swtpm.pid")},
        "--log": {"file": str(run / "tpm-logs" / "swtpm.log")},
    }


def test_a_comma_it_cannot_carry_is_named():
    run = Path("/run/a,b")
    with pytest.raises(QemuError, match=r"swtpm cannot take the path /run/a,b/swtpm.sock because it contains ','"):
        swtpm_argv(Path("/usr/bin/swtpm"), Path("/run/ok/tpm-state"), run / "swtpm.sock", Path("/run/ok/p"),
                   Path("/run/ok/log"))


def test_without_a_state_dir_the_state_comes_from_tpm_path():
    argv = swtpm_argv(Path("/usr/bin/swtpm"), None, Path("/r/s.sock"), Path("/r/p"), Path("/r/l"))
    assert "--tpmstate" not in argv and "--ctrl" in argv
