#!/bin/sh
# tests/fuzz/run.sh TARGET SEEDS WORK: runs one libFuzzer target for MERCATO_FUZZ_SECONDS
# (default 60) from the committed seeds (SEEDS is only read; new inputs go to WORK/corpus).
# A crash, leak, timeout or broken property exits non-zero and leaves the input in WORK/crashes/
# for tests/fuzz/corpus/<target>/ once it is fixed. Extra arguments go to libFuzzer.
set -eu
bin=$1 seeds=$2 work=$3
shift 3
mkdir -p "$work/corpus" "$work/crashes"
dict=$(dirname "$0")/$(basename "$bin").dict
set -- -max_total_time="${MERCATO_FUZZ_SECONDS:-60}" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
       -print_final_stats=1 -artifact_prefix="$work/crashes/" "$@"
[ -f "$dict" ] && set -- -dict="$dict" "$@"
exec "$bin" "$@" "$work/corpus" "$seeds"
