#!/bin/sh
# tests/run-unit.sh — run each unit test binary and print one summary line.
# Usage: run-unit.sh BIN...   (exit 1 if any binary fails)
passed=0; failed=0; failures=""
for t in "$@"; do
    if "$t" > "$t.log" 2>&1; then
        passed=$((passed + 1))
        echo "PASS ${t#${BUILD:-build}/tests/}"
    else
        failed=$((failed + 1))
        failures="$failures $t"
        echo "FAIL ${t#${BUILD:-build}/tests/}"
        sed 's/^/    /' "$t.log"
    fi
done
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
