#!/usr/bin/env bash
# Build every Linux release file of hvdesk into dist/:
#   hvdesk-VERSION-py3-none-any.whl, hvdesk-VERSION.tar.gz   (python -m build; twine check)
#   hvdesk-VERSION-linux-x86_64.tar.xz                        (the PyInstaller bundle, portable)
#   hvdesk_VERSION_amd64.deb                                  (the bundle as a Debian package)
# Usage: packaging/build.sh    (on Debian/Ubuntu; installs what it needs, with sudo when not root)
# The build venvs (.venv-build/) are kept between runs; the bundle and dist/ are always rebuilt from
# this checkout's wheel. The bundle is smoke-tested before it is packed.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS=0
step() { echo "build.sh [${SECONDS}s] $*" >&2; }

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }
# python3-venv: the build venvs; binutils: objdump (the spec's library pruning, PyInstaller);
# patchelf: the interpreter's build paths out of its modules; dpkg-dev: dpkg-shlibdeps (the .deb's Depends); the libraries the bundle's Qt links to must be
# installed for dpkg-shlibdeps to name their packages, and for the smoke test (offscreen) to run.
packages=(python3 python3-venv binutils patchelf dpkg-dev xz-utils gzip
          libxkbcommon0 libxkbcommon-x11-0 libegl1 libgl1 libglib2.0-0 libfontconfig1 libfreetype6 libdbus-1-3
          libx11-6 libx11-xcb1 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-render-util0
          libxcb-render0 libxcb-shape0 libxcb-util1 libxcb-xkb1 libxcb-randr0 libxcb-xfixes0 libxcb-glx0
          libxcb-shm0 libxcb-sync1 libwayland-client0 libwayland-cursor0 libwayland-egl1 fonts-dejavu-core)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if (( ${#missing[@]} )); then
    step "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Two venvs: the tools (build, twine) apart from the bundle's, so that nothing the tools need
# (cffi, keyring ...) ends up in the bundle. Recreated when the Python, PyInstaller's pin or
# pyproject.toml changes.
python=${PYTHON:-python3}
venvs=.venv-build
pyinstaller=pyinstaller==6.22.3
recipe="$("$python" -VV) $pyinstaller build twine"  # what the venvs are made of
for kind in tools bundle; do
    venv=$venvs/$kind
    if [[ ! -f $venv/.ready || $(< "$venv/.ready") != "$recipe" || pyproject.toml -nt $venv/.ready ]]; then
        step "creating $venv"
        rm -rf "$venv"
        "$python" -m venv "$venv"
        "$venv/bin/python" -m pip install -q --upgrade pip
        if [[ $kind == tools ]]; then
            "$venv/bin/python" -m pip install -q build twine
        else
            "$venv/bin/python" -m pip install -q "$pyinstaller"
        fi
        echo "$recipe" > "$venv/.ready"
    fi
done

rm -rf dist build  # never a stale file: setuptools reuses build/, and dist/ is what we ship
step "wheel and sdist"
$venvs/tools/bin/python -m build -o dist . >build.log 2>&1 || { cat build.log >&2; exit 1; }
rm build.log
$venvs/tools/bin/twine check --strict dist/*
wheel=$(echo dist/hvdesk-*-py3-none-any.whl)
version=$(basename "$wheel" | cut -d- -f2)

step "bundle $version (PyInstaller)"
$venvs/bundle/bin/python -m pip install -q "$wheel"  # its dependencies, pinned by pyproject.toml
$venvs/bundle/bin/python -m pip install -q --force-reinstall --no-deps "$wheel"  # this very build
$venvs/bundle/bin/pyinstaller --noconfirm --log-level WARN --distpath build/bundle --workpath build/pyinstaller \
    packaging/hvdesk.spec
bundle=build/bundle/hvdesk
# The interpreter's own libraries may come unstripped and with a RUNPATH to the folder it was
# built in (pyenv, self-built Pythons): strip them and drop that path. Not the wheels' libraries:
# they are stripped already, use $ORIGIN, and stripping auditwheel's patched ones breaks them.
for lib in "$bundle"/_internal/libpython3*.so* "$bundle"/_internal/python3*/lib-dynload/*.so; do
    runpath=$(patchelf --print-rpath "$lib")
    # shellcheck disable=SC2016  # a literal $ORIGIN
    [[ -n $runpath && $runpath != *'$ORIGIN'* ]] && patchelf --remove-rpath "$lib"
    strip --strip-unneeded "$lib"
done

step "smoke test of the bundle"
packaging/smoke-test.sh "$bundle/hvdesk"
# Every data file is there (the package's __init__ is compiled into the executable's archive).
diff <(cd resources && find . -type f ! -name '*.pyc' ! -name __init__.py | sort) \
     <(cd "$bundle/_internal/hvdesk/resources" && find . -type f | sort) \
    || { echo "build.sh: the bundle's data files differ from resources/" >&2; exit 1; }

step "portable tarball (in the background), man page and .deb"
# xz -6 (release files) packs ~160 MB in 2-3 minutes here; CI, which tests what is inside, asks for 1.
export XZ_LEVEL=${XZ_LEVEL:-6}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
tarball=dist/hvdesk-$version-linux-x86_64.tar.xz
# hvdesk-VERSION/ holds the bundle and COPYRIGHT (its components' licences, as in the .deb).
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
    --transform "s|^hvdesk/|hvdesk-$version/|;s|^hvdesk\$|hvdesk-$version|;s|^copyright\$|hvdesk-$version/COPYRIGHT|" \
    -cf - -C build/bundle hvdesk -C "$PWD/packaging/debian" copyright | xz -T0 "-$XZ_LEVEL" > "$tarball" &
packing=$!
$venvs/bundle/bin/python packaging/manpage.py build/hvdesk.1
packaging/deb.sh "$bundle" build/hvdesk.1 "$version" "dist/hvdesk_${version}_amd64.deb"
wait "$packing" || { echo "build.sh: the tarball failed" >&2; exit 1; }
step "smoke test of the unpacked tarball"
mkdir build/unpacked
tar -C build/unpacked -xJf "$tarball"
packaging/smoke-test.sh "build/unpacked/hvdesk-$version/hvdesk"
if command -v lintian >/dev/null && [[ ${LINTIAN:-1} != 0 ]]; then
    step "lintian"
    # Errors fail the build (packaging/debian/lintian-overrides says which do not apply and why);
    # warnings are printed (packaging/README.md lists the known ones).
    lintian --fail-on error "dist/hvdesk_${version}_amd64.deb" >&2
fi
step "done"
ls -l dist >&2
