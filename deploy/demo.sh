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
"$SANDBOX" up "$FED" --sites 3 --seed 42 --persons 8000
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
# issue 5: external validation of an AI tool's risk score at every site
heading "Validating a synthetic AI tool at 3 sites (site-c's scores deliberately over-predict)" \
    "deploy/synth/predictions.py ...; deploy/sandbox predictions FED site-a=preds-a.csv ..."
for s in a b c; do
    # site-c: predicted odds x3, log-odds stretched x1.8 (over-confident): badly calibrated
    case $s in c) distort="--miscalibrate 3 --spread 1.8" ;; *) distort="" ;; esac
    # shellcheck disable=SC2086
    python3 "$REPO/deploy/synth/predictions.py" --db "$FED/data/site-$s.sqlite" \
        --out "$DIR/preds-$s.csv" --seed 5 $distort
done
"$SANDBOX" predictions "$FED" site-a="$DIR/preds-a.csv" site-b="$DIR/preds-b.csv" \
    site-c="$DIR/preds-c.csv"
cat >"$DIR/validate-ai-tool.json" <<'JSON'
{"kind": "validate", "project": "demo", "dataset": "preds",
 "validate": {"thresholds": [0.1, 0.2, 0.3], "bins": 10, "by": ["sex"]}}
JSON
heading "AUC, confusion matrices at 3 thresholds and calibration, per site and pooled" \
    "sdefed query validate-ai-tool.json"
printf '   spec: %s\n\n' "$(tr -s ' \n' ' ' <"$DIR/validate-ai-tool.json")"
"$SDEFED" --config "$CONF" query "$DIR/validate-ai-tool.json" --format json >"$DIR/validate-result.json"
QID=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["query_id"])' \
    "$DIR/validate-result.json")
"$SDEFED" --config "$CONF" results "$QID" --format table
printf '\nWhat to look at: discrimination (AUC) is similar everywhere, so the pooled\n'
printf 'AUC looks fine; calibration is not. At site-a and site-b O/E (observed /\n'
printf 'expected events) is near 1 and the calibration slope near 1. At site-c O/E\n'
printf 'is about 0.5 (the tool predicts about twice the events that occur), CITL is\n'
printf 'strongly negative and the slope is well below 1 (over-confident scores): the\n'
printf 'tool needs recalibrating before use at site-c.\n'
# The HTML reports go to DEMO_OUT (default BUILD/demo) and outlive the
# demo's temporary files.
OUT="${DEMO_OUT:-$BUILD/demo}"
mkdir -p "$OUT"
REPORT="$OUT/sdefed-demo-validate.html"
heading "The same result as a self-contained HTML report" \
    "sdefed report $QID -o $REPORT --spec validate-ai-tool.json"
"$SDEFED" --config "$CONF" report "$QID" -o "$REPORT" --spec "$DIR/validate-ai-tool.json" --force
printf 'Wrote %s: open it in a browser; in the calibration plot site-c lies\n' "$REPORT"
printf 'far below the diagonal and its slope is about 0.5.\n'

# issue 6: a standing monitor catching a planted device safety signal
heading "Post-market surveillance: a standing MaxSPRT monitor on a new pacemaker's dislodgement rate" \
    "python3 deploy/demo_surveillance.py (plants the data, then sdefed query / monitor add / alerts / report)"
python3 "$REPO/deploy/demo_surveillance.py" --sdefed "$SDEFED" --config "$CONF" --data "$FED/data" \
    --report "$OUT/sdefed-demo-monitor.html"
heading "Tearing down"
