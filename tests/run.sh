#!/usr/bin/env bash
# tests/run.sh — THE test command.
#
#   bash tests/run.sh              install missing deps, build build/ and build-asan/, run
#                                  every meson test in both (unit, integration, sdk), a short
#                                  fuzz run if tests/fuzz/run.sh exists, print
#                                  "N passed, N failed" (product tests: the harness's own
#                                  self-test is reported on the line before, and fails the
#                                  run when it fails) and exit non-zero on any failure.
#   bash tests/run.sh --deps-only  only install the missing Debian packages (used by
#                                  scripts/demo.sh and bench/run.sh).
#
# Environment: FUZZ_SECONDS (default 10; 0 skips fuzzing), BB_SKIP_ASAN=1 (only build/),
# MESON_TEST_ARGS (extra args for `meson test`, e.g. "--suite integration").
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

log() { printf '==> %s\n' "$*" >&2; }

# Debian packages the build, the tests, the demo and the benchmark need.
DEB_PACKAGES=(meson ninja-build pkg-config gcc clang libevent-dev libssl-dev libyaml-dev
  libjson-c-dev libhiredis-dev libcmocka-dev libsqlite3-dev liblua5.4-dev python3 nodejs npm
  openssl curl wrk nginx-light redis-server haproxy libclang-rt-14-dev prometheus chromium
  systemd clang-format libnghttp2-dev nghttp2-client)

# A package counts as present when dpkg knows it, or (for tools that may come from elsewhere,
# such as NodeSource's nodejs which bundles npm) when its command is on PATH.
pkg_present() {
  local pkg=$1
  dpkg -s "$pkg" >/dev/null 2>&1 && return 0
  case $pkg in
    npm) command -v npm >/dev/null 2>&1 ;;
    nodejs) command -v node >/dev/null 2>&1 ;;
    python3) command -v python3 >/dev/null 2>&1 ;;
    nginx-light) command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] ;;
    *) return 1 ;;
  esac
}

install_deps() {
  local missing=() p
  for p in "${DEB_PACKAGES[@]}"; do
    pkg_present "$p" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing missing Debian packages: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || return 1
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    --no-install-recommends "${missing[@]}" >&2
}

if [ "${1:-}" = "--deps-only" ]; then
  install_deps
  exit $?
fi

install_deps || { log "dependency installation failed"; echo "0 passed, 1 failed"; exit 1; }

# npm ci in tests/sdk when node_modules is missing or older than the lock file.
SDK=tests/sdk
if [ -f "$SDK/package-lock.json" ]; then
  stamp="$SDK/node_modules/.bb-lock-sha"
  want=$(sha256sum "$SDK/package-lock.json" | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "npm ci in $SDK"
    if (cd "$SDK" && npm ci --no-audit --no-fund >&2); then
      echo "$want" >"$stamp"
    else
      log "npm ci failed (the SDK tests will fail and say why)"
    fi
  fi
fi

FAILED_EXTRA=0   # failures outside meson's test logs (build, fuzz)
PASSED_EXTRA=0

# setup_build DIR OPTIONS...: configure (or reconfigure with the same options) a build dir.
setup_build() {
  local dir=$1
  shift
  if [ -f "$dir/meson-private/coredata.dat" ]; then
    meson setup --reconfigure "$dir" "$@" >&2
  else
    rm -rf "$dir"
    meson setup "$dir" "$@" >&2
  fi
}

# run_build DIR TIMEOUT_MULTIPLIER OPTIONS...: build and run meson test; testlog.json is left
# in DIR/meson-logs for counting.
run_build() {
  local dir=$1 mult=$2
  shift 2
  rm -f "$dir/meson-logs/testlog.json"
  log "configure $dir ($*)"
  if ! setup_build "$dir" "$@"; then
    log "meson setup $dir failed"
    FAILED_EXTRA=$((FAILED_EXTRA + 1))
    return
  fi
  log "build $dir"
  if ! ninja -C "$dir" >&2; then
    log "build of $dir failed"
    FAILED_EXTRA=$((FAILED_EXTRA + 1))
    return
  fi
  log "test $dir"
  # shellcheck disable=SC2086
  meson test -C "$dir" --print-errorlogs --num-processes 2 --timeout-multiplier "$mult" \
    ${MESON_TEST_ARGS:-} >&2
  if [ ! -f "$dir/meson-logs/testlog.json" ]; then
    log "meson test in $dir produced no testlog.json"
    FAILED_EXTRA=$((FAILED_EXTRA + 1))
  fi
}

run_build build 1 -Dbuildtype=debugoptimized -Dwerror=true

if [ "${BB_SKIP_ASAN:-0}" != 1 ]; then
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_build build-asan 3 -Dbuildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false \
    -Dwerror=true
  unset ASAN_OPTIONS UBSAN_OPTIONS
fi

FUZZ_SECONDS=${FUZZ_SECONDS:-10}
if [ -f tests/fuzz/run.sh ] && [ "$FUZZ_SECONDS" != 0 ]; then
  log "fuzz for ${FUZZ_SECONDS}s per target (tests/fuzz/run.sh)"
  if FUZZ_SECONDS=$FUZZ_SECONDS bash tests/fuzz/run.sh "$FUZZ_SECONDS" >&2; then
    PASSED_EXTRA=$((PASSED_EXTRA + 1))
  else
    log "fuzzing failed"
    FAILED_EXTRA=$((FAILED_EXTRA + 1))
  fi
fi

# Count each meson test once (a TAP test counts as one), from both builds.
python3 - "$PASSED_EXTRA" "$FAILED_EXTRA" build/meson-logs/testlog.json \
  build-asan/meson-logs/testlog.json <<'EOF'
import json, os, sys
passed, failed = int(sys.argv[1]), int(sys.argv[2])
skipped = 0
harness = 0  # the integration harness's self-tests (suite 'harness'): not product tests
bad = []
for path in sys.argv[3:]:
    if not os.path.exists(path):
        continue
    build = path.split('/')[0]
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            t = json.loads(line)
            res = t.get('result')
            if res in ('OK', 'EXPECTEDFAIL') and ':harness / ' in t.get('name', ''):
                harness += 1
            elif res in ('OK', 'EXPECTEDFAIL'):
                passed += 1
            elif res == 'SKIP':
                skipped += 1
            else:
                failed += 1
                bad.append('%s: %s (%s)' % (build, t.get('name'), res))
for b in bad:
    print('FAILED ' + b)
if harness:
    print('harness self-tests: %d passed (not counted below)' % harness)
line = '%d passed, %d failed' % (passed, failed)
if skipped:
    line += ', %d skipped' % skipped
print(line)
sys.exit(1 if failed or passed == 0 else 0)
EOF
