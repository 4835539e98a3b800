#!/usr/bin/env bash
# The .deb from a bundle folder (packaging/hvdesk.spec's output), with dpkg-deb and no debhelper:
#   packaging/deb.sh BUNDLE_DIR MANPAGE VERSION OUT.deb
# The bundle goes to /usr/lib/hvdesk, the command to /usr/bin/hvdesk (a link: PyInstaller finds
# its files from the real path), the desktop entry, AppStream metainfo, icon, man page and
# copyright to /usr/share. Depends is what dpkg-shlibdeps finds the bundle's ELF files need from
# the system (the bundle leaves X11/xcb, Wayland, EGL/GL, fontconfig, GLib, D-Bus to it). No
# maintainer scripts: dpkg's file triggers refresh the menu and icon caches, and removal leaves
# nothing behind.
set -euo pipefail
(( $# == 4 )) || { echo "usage: $0 BUNDLE_DIR MANPAGE VERSION OUT.deb" >&2; exit 2; }
bundle=$1 manpage=$2 version=$3 out=$4
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
id=io.github.hvdesk

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/debian/hvdesk  # where dpkg-shlibdeps knows a package being built
share=$root/usr/share
install -d -m755 "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib" "$share/applications" "$share/metainfo" \
    "$share/icons/hicolor/scalable/apps" "$share/man/man1" "$share/doc/hvdesk"
cp -r "$bundle" "$root/usr/lib/hvdesk"
ln -s ../lib/hvdesk/hvdesk "$root/usr/bin/hvdesk"
install -m644 "$top/resources/desktop/$id.desktop" "$share/applications/"
install -m644 "$top/resources/desktop/$id.metainfo.xml" "$share/metainfo/"
install -m644 "$top/resources/icons/hvdesk.svg" "$share/icons/hicolor/scalable/apps/$id.svg"
gzip -9n < "$manpage" > "$share/man/man1/hvdesk.1.gz"
install -m644 "$here/debian/copyright" "$share/doc/hvdesk/copyright"
install -D -m644 "$here/debian/lintian-overrides" "$share/lintian/overrides/hvdesk"
date=$(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")
maintainer=${DEB_MAINTAINER:-The hvdesk developers <hvdesk@users.noreply.github.com>}
printf 'hvdesk (%s) unstable; urgency=medium\n\n  * Built from the hvdesk %s release (%s).\n\n -- %s  %s\n' \
    "$version" "$version" "$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo "source tarball")" \
    "$maintainer" "$date" | gzip -9n > "$share/doc/hvdesk/changelog.gz"

# Modes as Debian wants them: folders and programs 755, everything else (libraries too) 644.
find "$root" -type d -exec chmod 755 {} +
find "$root/usr" -type f -exec chmod 644 {} +
chmod 755 "$root/usr/lib/hvdesk/hvdesk"

elves=()
while IFS= read -r -d '' file; do
    [[ $(head -c4 "$file" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]] && elves+=("$file")
done < <(find "$root/usr/lib/hvdesk" -type f \( -name '*.so' -o -name '*.so.*' -o -name hvdesk \) -print0)
printf 'Source: hvdesk\n\nPackage: hvdesk\nArchitecture: amd64\n' > "$work/debian/control"
libdirs=()
while IFS= read -r dir; do libdirs+=("-l$dir"); done < <(printf '%s\n' "${elves[@]}" | xargs -n1 dirname | sort -u)
depends=$(cd "$work" && dpkg-shlibdeps -O "${libdirs[@]}" "${elves[@]}" 2>"$work/shlibdeps.log" \
          | sed -n 's/^shlibs:Depends=//p') || { cat "$work/shlibdeps.log" >&2; exit 1; }
grep -v "no dependency information found\|could avoid a useless dependency\|unresolvable reference to symbol\|other similar warnings" "$work/shlibdeps.log" >&2 || true
[[ -n $depends ]] || { echo "deb.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
rm "$work/debian/control"

cat > "$root/DEBIAN/control" <<EOF
Package: hvdesk
Version: $version
Architecture: amd64
Maintainer: $maintainer
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $depends
Recommends: qemu-system-x86, qemu-utils, ovmf, swtpm
Suggests: swtpm-tools, osinfo-db
Section: admin
Priority: optional
Homepage: https://github.com/hvdesk/hvdesk
Description: desktop manager for QEMU virtual machines
 hvdesk creates QEMU virtual machines, installs operating systems into them from
 ISO images, shows each VM's screen in a console window and graphs what every VM
 uses. VMs keep running when the window closes and are found again when it
 opens. Everything the app does is also a command: hvdesk list, start, stop,
 info and more.
 .
 This package carries hvdesk with its own Python and Qt (a PyInstaller bundle in
 /usr/lib/hvdesk); QEMU comes from the distribution.
EOF
(cd "$root" && find usr -type f -print0 | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
chmod 644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz "-z${XZ_LEVEL:-6}" --build "$root" "$out" >/dev/null
echo "deb.sh: $out (Depends: $depends)" >&2
