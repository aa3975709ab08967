#!/bin/sh
# deploy/debian/build-deb.sh — `make deb`: three Debian packages with dpkg-deb.
#
#   sdefed-agent        the SDE side: daemon, unit, /etc/sdefed/agent.conf
#   sdefed-coordinator  the federation operator: daemon, unit,
#                       /etc/sdefed/coordinator.conf, /usr/share/sdefed/pki
#   sdefed-cli          analysts: the sdefed program and example specs
# Three packages, because they go to three different places: an SDE must
# not have to carry the coordinator (less code inside the trust boundary),
# and an analyst's laptop needs neither daemon nor a system user.
#
# Files come from `make install DESTDIR=stage PREFIX=/usr`; runtime
# dependencies are the Debian packages owning the shared libraries each
# binary links (ldd + dpkg -S). Output: $BUILD/deb/*.deb.
set -eu

BUILD=${BUILD:-build}
VERSION=${SDEFED_VERSION:-0.1.0-1}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
cd "$REPO"
case "$BUILD" in
    /*) ;;
    *) BUILD=$REPO/$BUILD ;;
esac
ARCH=$(dpkg --print-architecture)
OUT=$BUILD/deb
WORK=$BUILD/deb-work
rm -rf "$WORK"
mkdir -p "$OUT" "$WORK"
STAGE=$WORK/stage
make --no-print-directory BUILD="$BUILD" install DESTDIR="$STAGE" PREFIX=/usr \
    UNITDIR=/lib/systemd/system >/dev/null

# Debian packages providing the libraries a binary links.
deps_of() {
    ldd "$1" | awk '/=> \//{print $3}' | while read -r lib; do
        real=$(readlink -f "$lib")
        dpkg -S "$lib" 2>/dev/null || dpkg -S "$real" 2>/dev/null || true
    done | cut -d: -f1 | sort -u | grep -v '^libc6$' | tr '\n' ' '
}

deps_field() {
    pkgs="libc6 $(deps_of "$1")"
    out=""
    for p in $pkgs; do
        v=$(dpkg-query -W -f '${Version}' "$p" 2>/dev/null | sed 's/-[^-]*$//' || true)
        if [ -n "$v" ]; then
            out="${out:+$out, }$p (>= $v)"
        else
            out="${out:+$out, }$p"
        fi
    done
    echo "$out"
}

# copy PKG PATH...: copy staged files into the package root.
copy() {
    pkg=$1
    shift
    for f in "$@"; do
        mkdir -p "$WORK/$pkg/$(dirname "$f")"
        cp -a "$STAGE/$f" "$WORK/$pkg/$f"
    done
}

control() {
    pkg=$1 bin=$2 desc=$3 long=$4
    mkdir -p "$WORK/$pkg/DEBIAN"
    size=$(du -sk --exclude=DEBIAN "$WORK/$pkg" | cut -f1)
    {
        echo "Package: $pkg"
        echo "Version: $VERSION"
        echo "Architecture: $ARCH"
        echo "Maintainer: sdefed developers <sdefed@localhost>"
        echo "Installed-Size: $size"
        echo "Depends: $(deps_field "$bin")${5:+, $5}"
        echo "Section: net"
        echo "Priority: optional"
        echo "Homepage: https://example.org/sdefed"
        echo "Description: $desc"
        printf '%s\n' "$long" | fold -s -w 72 | sed 's/^/ /'
    } >"$WORK/$pkg/DEBIAN/control"
}

docs() {
    pkg=$1
    mkdir -p "$WORK/$pkg/usr/share/doc/$pkg"
    cp LICENSE "$WORK/$pkg/usr/share/doc/$pkg/copyright"
    cp deploy/README.md "$WORK/$pkg/usr/share/doc/$pkg/README.md"
}

daemon_pkg() {
    pkg=$1 conf=$2
    copy "$pkg" "usr/sbin/$pkg" "usr/share/man/man8/$pkg.8" "lib/systemd/system/$pkg.service"
    mkdir -p "$WORK/$pkg/etc/sdefed" "$WORK/$pkg/usr/share/doc/$pkg/examples"
    cp "deploy/examples/$conf" "$WORK/$pkg/etc/sdefed/$conf"
    chmod 0640 "$WORK/$pkg/etc/sdefed/$conf"
    cp "deploy/examples/$conf" "$WORK/$pkg/usr/share/doc/$pkg/examples/$conf"
    docs "$pkg"
    mkdir -p "$WORK/$pkg/DEBIAN"
    echo "/etc/sdefed/$conf" >"$WORK/$pkg/DEBIAN/conffiles"
    for s in postinst prerm postrm; do
        install -m 0755 "$HERE/$s" "$WORK/$pkg/DEBIAN/$s"
    done
}

daemon_pkg sdefed-agent agent.conf
control sdefed-agent "$STAGE/usr/sbin/sdefed-agent" \
    "sdefed agent: federated queries inside a Secure Data Environment" \
    "Runs inside an SDE next to its OMOP CDM data, dials out to the federation's coordinator over mutual TLS 1.3 and answers structured queries with disclosure-controlled aggregates only. Raw rows never leave the SDE." \
    "adduser | passwd"

daemon_pkg sdefed-coordinator coordinator.conf
copy sdefed-coordinator usr/share/sdefed/pki
control sdefed-coordinator "$STAGE/usr/sbin/sdefed-coordinator" \
    "sdefed coordinator: fans federated queries out to SDE agents" \
    "Accepts sdefed agents and analysts on one mutual-TLS port, authenticates them by certificate against its registry, fans queries out with a deadline, pools and stores the answers. Includes the federation PKI script (/usr/share/sdefed/pki)." \
    "adduser | passwd, openssl"

copy sdefed-cli usr/bin/sdefed usr/share/man/man1/sdefed.1
mkdir -p "$WORK/sdefed-cli/usr/share/doc/sdefed-cli/examples"
cp deploy/examples/client.conf deploy/examples/*.json "$WORK/sdefed-cli/usr/share/doc/sdefed-cli/examples/"
docs sdefed-cli
control sdefed-cli "$STAGE/usr/bin/sdefed" \
    "sdefed: ask federated questions of many Secure Data Environments" \
    "The analyst's command-line client: submits a JSON query spec to the coordinator and prints per-site and pooled disclosure-controlled results as a table, JSON or CSV." ""

for pkg in sdefed-agent sdefed-coordinator sdefed-cli; do
    find "$WORK/$pkg" -type d -exec chmod 0755 {} +
    dpkg-deb --root-owner-group -Zxz --build "$WORK/$pkg" "$OUT/${pkg}_${VERSION}_$ARCH.deb" >/dev/null
    echo "deb: $OUT/${pkg}_${VERSION}_$ARCH.deb"
done
rm -rf "$WORK"
