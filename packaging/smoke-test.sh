#!/usr/bin/env bash
# A quick check that an hvdesk executable (a bundle, or the installed /usr/bin/hvdesk) runs:
# --version, a create that reads the OS presets (its data files), and the window painted offscreen.
#   packaging/smoke-test.sh PATH/TO/hvdesk
set -euo pipefail
hvdesk=$1
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
export HVDESK_HOME=$home HVDESK_RUNTIME_DIR=$home/run QT_QPA_PLATFORM=offscreen
"$hvdesk" --version | grep -q "^hvdesk " || { echo "smoke-test: $hvdesk --version failed" >&2; exit 1; }
"$hvdesk" create smoke --os debian12 | grep -q "Created 'smoke': debian12" \
    || { echo "smoke-test: $hvdesk create failed" >&2; exit 1; }
painted=$("$hvdesk" gui --smoke-test 2>"$home/gui.err") || { cat "$home/gui.err" >&2; exit 1; }
grep -q "^window painted" <<<"$painted" || { echo "smoke-test: no window painted: $painted" >&2; exit 1; }
echo "smoke-test: $hvdesk ok ($painted)" >&2
