#!/usr/bin/env bash
# Set up hvdesk from this checkout on Debian/Ubuntu, then run it:
#   packaging/bootstrap.sh app [HVDESK ARGS...]    the app (with no args: its help, until the GUI lands)
#   packaging/bootstrap.sh test [PYTEST ARGS...]   lint, the layer contracts, mypy and the whole test suite
# Installs what is missing from the distribution (with sudo when not root), creates .venv and
# installs hvdesk into it. Safe to run again: it only does what is still undone.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-app}
shift || true
case $mode in app|test) ;; *) echo "usage: $0 app|test [ARGS...]" >&2; exit 2 ;; esac

packages=(python3 python3-venv python3-pip qemu-system-x86 qemu-utils ovmf swtpm swtpm-tools osinfo-db)
# The tests build their tiny guest from Debian packages with apt-get download + dpkg-deb, test the
# console client against TigerVNC's server too, and take screenshots under Xvfb.
# The install-flow test builds an installer ISO offline (syslinux, a FAT disk image, xorriso).
# objdump (binutils) checks the accelerator probe's hand-assembled firmware. The desktop entry and
# AppStream metainfo are checked by the freedesktop and AppStream validators, the installer scripts
# by shellcheck.
[[ $mode == test ]] && packages+=(apt dpkg tigervnc-standalone-server tigervnc-tools xvfb xauth
                                  xorriso isolinux syslinux syslinux-common mtools dosfstools fdisk binutils
                                  desktop-file-utils appstream shellcheck)
# Qt's xcb and offscreen platforms (PySide6 wheels bring Qt, not these system libraries).
packages+=(libxkbcommon0 libxkbcommon-x11-0 libegl1 libgl1 libglib2.0-0 libfontconfig1 libfreetype6 libdbus-1-3
           libx11-6 libx11-xcb1 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-render-util0
           libxcb-render0 libxcb-shape0 libxcb-util1 libxcb-xkb1 libxcb-randr0 libxcb-xfixes0 fonts-dejavu-core)

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# apt-get download (the test guest) needs package lists even when nothing is missing.
lists_empty=$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' 2>/dev/null | head -1)
if (( ${#missing[@]} )) || [[ -z $lists_empty ]]; then
    echo "bootstrap: apt-get update${missing:+; installing ${missing[*]}}" >&2
    as_root apt-get update -qq
    (( ${#missing[@]} )) && as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "bootstrap: hvdesk needs Python 3.11 or newer ($python is $("$python" -V 2>&1)); set PYTHON=..." >&2
    exit 1
fi

extras=$([[ $mode == test ]] && echo "[test]" || echo "")
stamp=.venv/.hvdesk-installed$extras
if [[ ! -x .venv/bin/python ]]; then
    "$python" -m venv .venv
fi
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e ".$extras"
    touch "$stamp"
fi

if [[ $mode == app ]]; then
    exec .venv/bin/hvdesk "$@"
fi
.venv/bin/ruff check hvdesk tests bench
.venv/bin/lint-imports
.venv/bin/mypy  # the files and the strictness per package are in pyproject.toml
.venv/bin/python -m pytest -m "not installed_wheel and not deb" "$@"  # those two run in the stages below

# Windows reaches QEMU over 127.0.0.1 (QMP, and VNC with a password; hvdesk/qemu/transport.py). The
# same lifecycle and console tests again with that transport, here on Linux (~1 min; the CLI over
# tcp is in tests/integration/test_transport.py).
echo "bootstrap: lifecycle and console tests over tcp (HVDESK_TRANSPORT=tcp, Windows' transport)" >&2
HVDESK_TRANSPORT=tcp .venv/bin/python -m pytest -q -p no:cacheprovider -m "not installed_wheel and not deb" \
    tests/integration/test_lifecycle.py tests/integration/test_console.py

# Users install a package, not this checkout: build the wheel, install it (not editable) into a
# second venv, which has no Qt at all (the engine and CLI must work without it), and run the engine
# and CLI tests from a copy of tests/ outside the checkout, so `import hvdesk` finds the install.
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
rm -rf build  # setuptools reuses what an earlier build left there, even files removed since
.venv/bin/python -m pip wheel -q --no-deps -w "$wheels" .
wheel=$(echo "$wheels"/hvdesk-*.whl)
if [[ ! -f .venv-noqt/.hvdesk-wheel-deps || pyproject.toml -nt .venv-noqt/.hvdesk-wheel-deps ]]; then
    rm -rf .venv-noqt
    "$python" -m venv .venv-noqt
    .venv-noqt/bin/python -m pip install -q "${wheel}[test]"
    .venv-noqt/bin/python -m pip uninstall -q -y PySide6-Essentials shiboken6 pyqtgraph qasync pytest-qt
    touch .venv-noqt/.hvdesk-wheel-deps
fi
.venv-noqt/bin/python -m pip install -q --force-reinstall --no-deps "$wheel"
copy="$wheels/tree"
mkdir "$copy"
# pyproject.toml: pytest's settings; packaging/ and .github/: the scripts tests/unit checks (hvdesk
# itself comes from the wheel)
cp -r tests pyproject.toml packaging .github "$copy"/
echo "bootstrap: the installed wheel, without Qt: engine and CLI tests" >&2
cd "$copy"
# (The unit tests' fuzzing of pure logic ran against the same code in the first stage: not again;
# nor the balloon replay's, which tests bench/, not the package.)
HVDESK_SOURCE_TREE="$OLDPWD" "$OLDPWD/.venv-noqt/bin/python" -m pytest -q -p no:cacheprovider -m "not deb" \
    --ignore=tests/unit/test_config_fuzz.py --ignore=tests/unit/test_rfb_hostile.py \
    --ignore=tests/unit/test_iso_hostile.py --ignore=tests/unit/test_engine_qmp_faults.py \
    --ignore=tests/unit/test_balloon_replay.py \
    tests/unit tests/integration/test_cli.py tests/integration/test_installed_package.py \
    tests/integration/test_install.py

# What users install from a release: build.sh's wheel, tarball and .deb; the .deb installed with
# apt, its /usr/bin/hvdesk tested (tests/package), then removed, leaving nothing behind.
cd "$OLDPWD"
echo "bootstrap: the .deb, installed and removed: packaging/test-deb.sh" >&2
packaging/test-deb.sh
