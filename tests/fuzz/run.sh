#!/bin/sh
# Build the libFuzzer targets with clang and run each for SECONDS (default 20) from its seed
# corpus. Fails on the first crash, leak, sanitizer report or timeout; the reproducer is left
# in build-fuzz/artifacts/. Run from anywhere inside the repository.
set -eu
secs=${1:-20}
root=$(cd "$(dirname "$0")/../.." && pwd)
build="$root/build-fuzz"
cd "$root"
if [ ! -d "$build" ]; then
    CC=clang meson setup "$build" -Dfuzz=true
else
    meson configure "$build" -Dfuzz=true
fi
targets="http sse jscan jdom url config request proto_openai proto_responses proto_anthropic proto_gemini proto_bedrock proto_cohere proto_bedrock_invoke"
ninja -C "$build" $(for t in $targets; do printf 'tests/fuzz/fuzz_%s ' "$t"; done)
mkdir -p "$build/artifacts"
status=0
for t in $targets; do
    seeds="$root/tests/fuzz/corpus/$t"
    mkdir -p "$seeds"
    work="$build/corpus-$t" # new inputs land here, the checked-in seeds stay untouched
    mkdir -p "$work"
    printf 'fuzz_%s: %ss ... ' "$t" "$secs"
    if "$build/tests/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -detect_leaks=1 -artifact_prefix="$build/artifacts/fuzz_$t-" -print_final_stats=1 \
        "$work" "$seeds" >"$build/fuzz_$t.log" 2>&1; then
        grep -E '^stat::number_of_executed_units' "$build/fuzz_$t.log" | awk '{print "ok,", $2, "runs"}'
    else
        echo "FAILED (see $build/fuzz_$t.log)"
        tail -n 30 "$build/fuzz_$t.log"
        status=1
    fi
done
exit $status
