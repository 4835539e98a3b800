#!/usr/bin/env bash
# CI's package stage (packaging/bootstrap.sh test runs it last): build every release file, install
# the .deb with apt, test the INSTALLED command (tests/package), then remove the package and check
# that no file of it is left and that the user's VMs are untouched.
#   packaging/test-deb.sh [PYTEST ARGS...]     (as root or with sudo; needs .venv from bootstrap.sh)
# BUILD=0 skips the build and tests the .deb already in dist/.
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }
if dpkg-query -W -f='${Status}' hvdesk 2>/dev/null | grep -q "install ok installed"; then
    echo "test-deb: hvdesk is already installed on this machine; remove it first" >&2
    exit 1
fi

SECONDS=0
if [[ ${BUILD:-1} != 0 ]]; then  # BUILD=0: test what dist/ holds (a build.sh run just before)
    # The same files as a release, packed faster (xz -1: the contents are what is tested here).
    LINTIAN=${LINTIAN:-0} XZ_LEVEL=${XZ_LEVEL:-1} packaging/build.sh
    echo "test-deb: build.sh took ${SECONDS}s" >&2
fi
deb=$(echo dist/hvdesk_*_amd64.deb)

work=$(mktemp -d)
cleanup() {
    dpkg-query -W -f='${Status}' hvdesk 2>/dev/null | grep -q "install ok installed" \
        && as_root apt-get remove -y -qq hvdesk >/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
start=$(date +%s.%N)
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "./$deb" >"$work/apt.log" 2>&1 \
    || { cat "$work/apt.log" >&2; exit 1; }
echo "test-deb: apt-get install took $(awk "BEGIN {print $(date +%s.%N) - $start}") s" >&2
dpkg -L hvdesk > "$work/files"

packaging/smoke-test.sh /usr/bin/hvdesk
HVDESK_INSTALLED=/usr/bin/hvdesk .venv/bin/python -m pytest -q -p no:cacheprovider tests/package "$@"

# A user's library made by the installed app, to find untouched after the removal.
home=$work/home
HVDESK_HOME=$home /usr/bin/hvdesk create kept --os debian12 --disk 16M >/dev/null
(cd "$home" && find . -type f -exec sha256sum {} + | sort) > "$work/home.before"

as_root env DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq hvdesk >/dev/null
left=()
while IFS= read -r path; do
    [[ $path == /. ]] && continue
    [[ -e $path || -L $path ]] || continue
    # A folder another package also owns (/usr/share/applications ...) stays, rightly.
    [[ -d $path && ! -L $path ]] && dpkg-query -S "$path" >/dev/null 2>&1 && continue
    left+=("$path")
done < "$work/files"
if (( ${#left[@]} )); then
    echo "test-deb: left behind after apt-get remove: ${left[*]}" >&2
    exit 1
fi
(cd "$home" && find . -type f -exec sha256sum {} + | sort) | diff "$work/home.before" - \
    || { echo "test-deb: the user's VM library changed with the removal" >&2; exit 1; }
echo "test-deb: removed cleanly ($(wc -l < "$work/files") paths checked); the user's library untouched; ${SECONDS}s in all" >&2
