#!/usr/bin/env bash
# bench/run.sh — busbar vs nginx vs direct against one bb-mock, in one run (bench/bench.py).
#
#   bash bench/run.sh
#
# Installs what is missing (tests/run.sh --deps-only), builds build-release/
# (-Dbuildtype=release), optionally builds a baseline revision, and runs bench/bench.py, which
# prints one Markdown table with every figure (throughput, latency, CPU per request and per
# stream event, time to first token, memory) and writes it to bench/results/<date>.md.
#
# Environment (see bench/bench.py for all): BENCH_SECONDS (10) per measurement, BENCH_WORKERS
# (1), BENCH_PLACEMENTS ("A B"), BENCH_PIN (1), BENCH_CLUSTER (1), BENCH_OBS (1),
# BENCH_BASELINE=<git revision>: also build that revision (release, in a temporary worktree)
# and measure it as target "baseline" beside the current tree. Not part of the test suite.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

log() { printf '==> %s\n' "$*" >&2; }

bash tests/run.sh --deps-only

log "building build-release (-Dbuildtype=release)"
if [ -f build-release/meson-private/coredata.dat ]; then
  meson setup --reconfigure build-release -Dbuildtype=release >&2
else
  meson setup build-release -Dbuildtype=release >&2
fi
ninja -C build-release >&2

BASE_DIR=
cleanup() {
  if [ -n "$BASE_DIR" ]; then
    git worktree remove --force "$BASE_DIR/src" >/dev/null 2>&1 || true
    rm -rf "$BASE_DIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${BENCH_BASELINE:-}" ]; then
  BASE_DIR=$(mktemp -d /tmp/busbar-baseline.XXXXXX)
  log "building baseline ${BENCH_BASELINE} in $BASE_DIR"
  git worktree add --detach "$BASE_DIR/src" "$BENCH_BASELINE" >&2
  (cd "$BASE_DIR/src" && meson setup build -Dbuildtype=release -Dtests=false >&2 &&
    ninja -C build master/busbar >&2)
  export BENCH_BASELINE_BIN=$BASE_DIR/src/build/master/busbar
fi

python3 bench/bench.py
