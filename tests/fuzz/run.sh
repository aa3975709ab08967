#!/bin/sh
# tests/fuzz/run.sh — run each libFuzzer target for a bounded time.
# Usage: run.sh BUILD_DIR SECONDS TARGET...
# Corpus: tests/fuzz/corpus/<name>/ (seeds, read-only) plus a scratch copy in
# BUILD_DIR/corpus/<name>/ that grows; dictionary tests/fuzz/<name>.dict if any.
set -eu
dir=$1; secs=$2; shift 2
failed=0; passed=0
for t in "$@"; do
    name=${t#fuzz_}
    work="$dir/corpus/$name"
    mkdir -p "$work"
    set -- "$dir/fuzz/$t" -max_total_time="$secs" -max_len=4096 -print_final_stats=1 -artifact_prefix="$dir/$t-" "$work"
    [ -d "tests/fuzz/corpus/$name" ] && set -- "$@" "tests/fuzz/corpus/$name"
    [ -f "tests/fuzz/$name.dict" ] && set -- "$@" -dict="tests/fuzz/$name.dict"
    echo "== fuzz $t (${secs}s)"
    if "$@" > "$dir/$t.log" 2>&1; then
        passed=$((passed + 1))
        grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$dir/$t.log" | sed 's/^/    /'
    else
        failed=$((failed + 1))
        tail -40 "$dir/$t.log"
    fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
