#!/usr/bin/env bash
# hvdesk.app and hvdesk-VERSION-macos-ARCH.dmg in dist/, on macOS (a CI runner or a Mac):
#   packaging/macos/build-app.sh
# It needs python3 (3.11 or newer) and the Xcode command-line tools; QEMU itself is the user's
# (Homebrew: `brew install qemu`; the app looks in /opt/homebrew/bin and /usr/local/bin, since an
# app started from Finder does not get the shell's PATH). Signing and notarizing are done when
# their environment variables are set, and skipped (with a line saying so) when not:
#   HVDESK_CODESIGN_IDENTITY  "Developer ID Application: NAME (TEAMID)" in the keychain
#   HVDESK_NOTARY_PROFILE     a `xcrun notarytool store-credentials` profile name
set -euo pipefail
cd "$(dirname "$0")/../.."

[[ $(uname -s) == Darwin ]] || { echo "build-app.sh: this builds the macOS app; run it on macOS" >&2; exit 2; }
python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "build-app.sh: hvdesk needs Python 3.11 or newer (set PYTHON=...)" >&2; exit 1; }
pyinstaller=$(grep -o 'pyinstaller==[0-9.]*' packaging/build.sh)  # the same PyInstaller as Linux
step() { echo "build-app: $*" >&2; }

step "build venv, wheel"
rm -rf build/macos dist/macos
mkdir -p build/macos dist
venv=.venv-build-macos
[[ -x $venv/bin/python ]] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip build "$pyinstaller" pillow
"$venv/bin/python" -m build -q --wheel --outdir build/macos/wheel .
"$venv/bin/python" -m pip install -q --force-reinstall build/macos/wheel/hvdesk-*.whl
version=$("$venv/bin/python" -c 'import hvdesk; print(hvdesk.__version__)')
arch=$(uname -m)

step "icon, app bundle (PyInstaller)"
"$venv/bin/python" packaging/render_icon.py build/macos/hvdesk.png 1024
HVDESK_ICON=$PWD/build/macos/hvdesk.png "$venv/bin/pyinstaller" --noconfirm --log-level WARN \
    --distpath build/macos/dist --workpath build/macos/work packaging/macos/hvdesk-macos.spec
app=build/macos/dist/hvdesk.app

step "smoke test of the app's own binary"
packaging/smoke-test.sh "$app/Contents/MacOS/hvdesk"

if [[ -n ${HVDESK_CODESIGN_IDENTITY:-} ]]; then
    step "signing with $HVDESK_CODESIGN_IDENTITY (hardened runtime)"
    codesign --force --deep --timestamp --options runtime \
        --entitlements packaging/macos/entitlements.plist --sign "$HVDESK_CODESIGN_IDENTITY" "$app"
    codesign --verify --deep --strict --verbose=2 "$app"
else
    step "not signed (HVDESK_CODESIGN_IDENTITY is not set): Gatekeeper will ask users to allow it"
fi

step "disk image"
dmg=dist/hvdesk-$version-macos-$arch.dmg
staging=build/macos/dmg
mkdir -p "$staging"
cp -R "$app" "$staging/"
ln -s /Applications "$staging/Applications"  # drag the app onto it to install
hdiutil create -quiet -volname "hvdesk $version" -srcfolder "$staging" -ov -format UDZO "$dmg"
[[ -z ${HVDESK_CODESIGN_IDENTITY:-} ]] || codesign --timestamp --sign "$HVDESK_CODESIGN_IDENTITY" "$dmg"

if [[ -n ${HVDESK_NOTARY_PROFILE:-} && -n ${HVDESK_CODESIGN_IDENTITY:-} ]]; then
    step "notarizing (Apple's service; this waits for its verdict)"
    xcrun notarytool submit "$dmg" --keychain-profile "$HVDESK_NOTARY_PROFILE" --wait
    xcrun stapler staple "$dmg"
else
    step "not notarized (needs HVDESK_CODESIGN_IDENTITY and HVDESK_NOTARY_PROFILE)"
fi
ls -l "$dmg"
