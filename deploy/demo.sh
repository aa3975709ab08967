#!/bin/sh
# deploy/demo.sh — what `make demo` runs: a 3-site federation answering real queries.
#
# Brings up a sandbox (deploy/sandbox) in a temporary directory — a
# coordinator and three site agents, each over its own synthetic OMOP
# database — then asks it the questions in deploy/examples/ as an analyst
# would, prints the answers as tables, and always tears everything down.
# BUILD (default build) names the build directory holding bin/.
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in
    /*) ;;
    *) BUILD="$REPO/$BUILD" ;;
esac
export BUILD
SDEFED="$BUILD/bin/sdefed"
SANDBOX="$REPO/deploy/sandbox"
EXAMPLES="$REPO/deploy/examples"

for b in sdefed sdefed-agent sdefed-coordinator sdefed-synth; do
    if [ ! -x "$BUILD/bin/$b" ]; then
        echo "demo: $BUILD/bin/$b not found; run 'make' first" >&2
        exit 1
    fi
done

DIR=$(mktemp -d "${TMPDIR:-/tmp}/sdefed-demo.XXXXXX")
FED="$DIR/fed"
teardown() {
    status=$?
    trap - EXIT INT TERM HUP PIPE
    if [ -f "$FED/.sdefed-sandbox" ]; then
        "$SANDBOX" down "$FED" >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR"
    exit "$status"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

heading() {
    printf '\n== %s\n' "$1"
    if [ $# -gt 1 ]; then
        printf '   $ %s\n' "$2"
    fi
    printf '\n'
}

heading "Bringing up a federation: 1 coordinator + 3 sites on loopback (synthetic OMOP data)"
"$SANDBOX" up "$FED" --sites 3 --seed 42
CONF="$FED/client.conf"

heading "Which sites are connected?" "sdefed sites"
"$SDEFED" --config "$CONF" sites --format table

heading "What data does each site hold? (person counts rounded to 5)" \
    "sdefed query deploy/examples/catalog.json"
"$SDEFED" --config "$CONF" query "$EXAMPLES/catalog.json" --format table

heading "Celecoxib (drug 1118084 and descendants) users by sex" \
    "sdefed query deploy/examples/count-celecoxib-by-sex.json"
"$SDEFED" --config "$CONF" query "$EXAMPLES/count-celecoxib-by-sex.json" --format table

heading "Type 2 diabetes (condition 201826 and descendants) by sex and age band" \
    "sdefed query deploy/examples/count-t2dm-by-sex-age.json"
"$SDEFED" --config "$CONF" query "$EXAMPLES/count-t2dm-by-sex-age.json" --format table

# issue 3: the cohort language (index event, windows, not) and the summary kind
heading "GI bleed within a year after a first NSAID (none in the year before), by sex and 20-year age band" \
    "sdefed query deploy/examples/count-gi-bleed-after-nsaid.json"
"$SDEFED" --config "$CONF" query "$EXAMPLES/count-gi-bleed-after-nsaid.json" --format table
heading "HbA1c (latest within a year of a T2DM diagnosis): n, mean, sd, quartiles by sex" \
    "sdefed query deploy/examples/summary-hba1c-by-sex.json"
"$SDEFED" --config "$CONF" query "$EXAMPLES/summary-hba1c-by-sex.json" --format table

printf '\nCounts 1..9 are suppressed at each site and every other count is rounded to\n'
printf 'the nearest 5 before it leaves the site; a pooled value marked as a lower\n'
printf 'bound includes a site whose cell was suppressed.\n\n'
heading "Tearing down"
