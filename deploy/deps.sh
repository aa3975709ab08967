#!/bin/sh
# deploy/deps.sh — install the Debian 12 packages sdefed needs to build and test.
#
# Called by `make deps` (and so by `make demo` / `make check`) before building;
# `deps.sh fuzz` adds clang and its sanitizer/libFuzzer runtimes for `make fuzz`.
# `deps.sh reference` adds R and pROC, the independent reference the validate
# tests compare AUC / DeLong numbers with (they skip without it).
# `deps.sh browser` adds headless Chromium, which tests/integration/test_report.py
# uses to render an `sdefed report` and check the screenshot (it skips without it).
# It only runs apt-get when something is missing, so it is cheap to call often.
# Set SDEFED_NO_APT=1 to only report what is missing.
set -eu

PKGS="build-essential pkg-config libuv1-dev libssl-dev openssl libprotobuf-c-dev \
protobuf-c-compiler libsqlite3-dev sqlite3 libpq-dev libjansson-dev libinih-dev \
libcmocka-dev python3 xz-utils postgresql postgresql-contrib"
for group in "$@"; do
    case "$group" in
    fuzz) PKGS="$PKGS clang libclang-rt-14-dev" ;;
    reference) PKGS="$PKGS r-base-core r-cran-proc" ;;
    browser) PKGS="$PKGS chromium" ;;
    *) echo "deps.sh: unknown group '$group' (known: fuzz, reference, browser)" >&2; exit 2 ;;
    esac
done

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $p"
done

[ -z "$missing" ] && exit 0

echo "deps.sh: missing Debian packages:$missing" >&2
if [ "${SDEFED_NO_APT:-}" = 1 ]; then
    exit 1
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "deps.sh: run as root or install sudo" >&2; exit 1; }
    SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
