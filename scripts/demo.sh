#!/usr/bin/env bash
# scripts/demo.sh — THE demo command: busbar in front of the bundled mock provider.
#
#   bash scripts/demo.sh
#
# Installs missing Debian packages, builds build/, starts bb-mock on 127.0.0.1:9901 and
# busbar with etc/demo.yaml (providers: etc/providers.yaml) on 127.0.0.1:8080, shows a
# streamed answer with curl, then stays in the foreground until Ctrl-C and stops both.
# Both run in their own session (setsid), so Ctrl-C reaches only this script, which stops
# them with SIGTERM (busbar's graceful stop). A script killed outright (SIGKILL cannot be
# trapped) still stops them: a watchdog outside their sessions waits for this script to die.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

log() { printf '==> %s\n' "$*" >&2; }

bash tests/run.sh --deps-only

if [ ! -f build/meson-private/coredata.dat ]; then
  log "configuring build/"
  meson setup build -Dbuildtype=debugoptimized >&2
fi
log "building build/"
ninja -C build >&2

DEMO_DIR=$(mktemp -d /tmp/busbar-demo.XXXXXX)
MOCK_PID="" BB_PID=""
stop() {
  trap - EXIT INT TERM
  echo >&2
  log "stopping busbar and bb-mock"
  local p
  for p in $BB_PID $MOCK_PID; do
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in $BB_PID $MOCK_PID; do
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$DEMO_DIR"
}
trap stop EXIT
trap 'exit 0' INT TERM

for port in 9901 8080; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    log "port $port is already in use on 127.0.0.1: stop whatever listens there first"
    exit 1
  fi
done

log "starting bb-mock on 127.0.0.1:9901"
setsid build/tests/mock/bb-mock --listen 127.0.0.1:9901 >"$DEMO_DIR/mock.out" 2>"$DEMO_DIR/mock.err" &
MOCK_PID=$!
for _ in $(seq 100); do
  grep -q '^ready ' "$DEMO_DIR/mock.out" 2>/dev/null && break
  kill -0 "$MOCK_PID" 2>/dev/null || break
  sleep 0.05
done
grep -q '^ready ' "$DEMO_DIR/mock.out" || { log "bb-mock did not start:"; cat "$DEMO_DIR/mock.err" >&2; exit 1; }

log "starting busbar -c etc/demo.yaml -p etc/providers.yaml (log: stderr below)"
setsid build/master/busbar -c etc/demo.yaml -p etc/providers.yaml &
BB_PID=$!
# The watchdog: when this script is gone (even by SIGKILL), stop what it started.
SCRIPT_PID=$$
(
  trap '' INT HUP
  while kill -0 "$SCRIPT_PID" 2>/dev/null; do sleep 0.5; done
  kill -TERM "$BB_PID" "$MOCK_PID" 2>/dev/null
) </dev/null >/dev/null 2>&1 &
ready=0
for _ in $(seq 200); do
  if curl -fsS -o /dev/null --max-time 1 http://127.0.0.1:8080/healthz 2>/dev/null; then
    ready=1
    break
  fi
  kill -0 "$BB_PID" 2>/dev/null || break
  sleep 0.05
done
[ "$ready" = 1 ] || { log "busbar did not become ready on 127.0.0.1:8080"; exit 1; }

CMD="curl -N http://127.0.0.1:8080/v1/chat/completions -H 'content-type: application/json' -d '{\"model\":\"demo\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'"
cat <<EOT

busbar is serving on http://127.0.0.1:8080 (pool "demo" → bb-mock on 127.0.0.1:9901).
A streamed answer:

  $CMD

EOT
eval "${CMD/curl -N/curl -sS -N}"
cat <<EOT

Try also:
  curl -s http://127.0.0.1:8080/v1/models
  curl -s http://127.0.0.1:8080/stats
  curl -s http://127.0.0.1:8080/metrics
  build/ctl/busbarctl -c etc/demo.yaml status

busbar runs in the foreground; press Ctrl-C to stop busbar and bb-mock.
EOT
wait "$BB_PID"
