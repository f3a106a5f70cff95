#!/usr/bin/env bash
# bench/run.sh — busbar vs nginx proxy_pass vs direct, against the same bb-mock, in one run.
#
#   bash bench/run.sh
#
# Targets: direct (wrk → bb-mock), nginx (wrk → nginx proxy_pass, upstream keepalive → bb-mock),
# busbar (wrk → busbar → bb-mock). Scenarios: non-streaming and streaming chat completions, each
# at c=1 (wrk -t1) and c=64 (wrk -t2), --latency. Prints RPS, p50, p99 per target and scenario,
# RSS, and the ratios busbar/nginx RPS and busbar−direct p50/p99.
#
# Environment: BENCH_SECONDS (10) per measurement, BENCH_WARMUP (1) seconds of warm-up per
# target, BENCH_WORKERS (1) busbar workers = nginx worker_processes, BENCH_PIN (1): pin the
# server side (bb-mock + the proxy under test) to CPU 0 and wrk to CPU 1 with taskset, so both
# proxies get exactly the same placement; BENCH_PIN=0 leaves placement to the kernel.
# BENCH_GOVERNANCE (true): busbar meters every request (usage read, a ledger row written by
# the master, which shares CPU 0 here); false measures the pure proxy.
# BENCH_BASELINE=<git revision>: also build that revision (release, in a temporary worktree)
# and measure it as target "baseline" in the same run, beside the current tree ("busbar").
# BENCH_CLUSTER (1): also measure governed traffic with a virtual key, on one node
# (target "keys": admission in shared memory) and on a node in cluster mode (target "cluster":
# admission and settlement through a redis-server on loopback, also on CPU 0); 0 skips both.
# BENCH_TARGETS: measure only these targets (e.g. "keys cluster"); default all.
# BENCH_OBS (1): also measure two more busbar instances of the same config, one with
# observability all off (metrics: false, no access log, no traces) and one with metrics, the
# access log and OTLP traces (to a local collector) all on; prints their RPS ratio per scenario.
# Not part of the test suite.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SECONDS_PER=${BENCH_SECONDS:-10}
WARMUP=${BENCH_WARMUP:-1}
WORKERS=${BENCH_WORKERS:-1}
PIN=${BENCH_PIN:-1}

log() { printf '==> %s\n' "$*" >&2; }

bash tests/run.sh --deps-only

log "building build-release (-Dbuildtype=release)"
if [ -f build-release/meson-private/coredata.dat ]; then
  meson setup --reconfigure build-release -Dbuildtype=release >&2
else
  meson setup build-release -Dbuildtype=release >&2
fi
ninja -C build-release >&2

BUSBAR=build-release/master/busbar
BASELINE_BIN=
if [ -n "${BENCH_BASELINE:-}" ]; then
  BASE_DIR=$(mktemp -d /tmp/busbar-baseline.XXXXXX)
  log "building baseline ${BENCH_BASELINE} in $BASE_DIR"
  git worktree add --detach "$BASE_DIR/src" "$BENCH_BASELINE" >&2
  (cd "$BASE_DIR/src" && meson setup build -Dbuildtype=release -Dtests=false >&2 &&
    ninja -C build master/busbar >&2)
  BASELINE_BIN=$BASE_DIR/src/build/master/busbar
fi
MOCK=build-release/tests/mock/bb-mock
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

NCPU=$(nproc)
SRV_PIN=() WRK_PIN=()
if [ "$PIN" = 1 ] && command -v taskset >/dev/null && [ "$NCPU" -ge 2 ]; then
  SRV_PIN=(taskset -c 0)
  WRK_PIN=(taskset -c 1)
fi

TMP=$(mktemp -d /tmp/busbar-bench.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
  done
  sleep 0.3
  for p in "${PIDS[@]}"; do
    kill -KILL "$p" 2>/dev/null || true
  done
  [ -n "${BENCH_KEEP:-}" ] || rm -rf "$TMP"
  if [ -n "${BASE_DIR:-}" ]; then
    git worktree remove --force "$BASE_DIR/src" >/dev/null 2>&1 || true
    rm -rf "$BASE_DIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() { # URL SECONDS
  local url=$1 deadline=$((SECONDS + $2))
  while [ $SECONDS -lt $deadline ]; do
    curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# RSS in KiB of a process and all its descendants; with a second argument "pss", the
# proportional set size (shared memory — busbar's shm state and usage ring, nginx's shared
# zones — counted once instead of once per process).
rss_tree() {
  python3 - "$1" "${2:-rss}" <<'EOF'
import os, sys
root = int(sys.argv[1])
pss = sys.argv[2] == 'pss'
table = {}
for d in os.listdir('/proc'):
    if d.isdigit():
        try:
            s = open('/proc/%s/stat' % d).read()
            table[int(d)] = int(s[s.rfind(')') + 2:].split()[1])
        except OSError:
            pass
todo, pids = [root], []
while todo:
    p = todo.pop()
    pids.append(p)
    todo += [c for c, pp in table.items() if pp == p]
total = 0
for p in pids:
    try:
        path, field = ('/proc/%d/smaps_rollup' % p, 'Pss:') if pss else ('/proc/%d/status' % p, 'VmRSS:')
        for line in open(path):
            if line.startswith(field):
                total += int(line.split()[1])
    except OSError:
        pass
print(total)
EOF
}

# --- bb-mock -------------------------------------------------------------------------------
"${SRV_PIN[@]}" "$MOCK" --listen 127.0.0.1:0 >"$TMP/mock.out" 2>"$TMP/mock.err" &
PIDS+=($!)
for _ in $(seq 100); do
  grep -q '^ready ' "$TMP/mock.out" 2>/dev/null && break
  sleep 0.05
done
MOCK_PORT=$(awk '/^ready /{print $2; exit}' "$TMP/mock.out")
[ -n "$MOCK_PORT" ] || { log "bb-mock did not start"; cat "$TMP/mock.err" >&2; exit 1; }
log "bb-mock on :$MOCK_PORT"

# --- nginx -----------------------------------------------------------------------------------
NGX_PORT=$(free_port)
mkdir -p "$TMP/nginx"
USER_LINE=""
[ "$(id -u)" -eq 0 ] && USER_LINE="user $(id -un) $(id -gn);"
cat >"$TMP/nginx/nginx.conf" <<EOF
$USER_LINE
worker_processes $WORKERS;
daemon off;
master_process on;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_requests 1000000;
    upstream mock {
        server 127.0.0.1:$MOCK_PORT;
        keepalive 128;
    }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }
    }
}
EOF
"${SRV_PIN[@]}" "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" \
  2>"$TMP/nginx/stderr" &
NGX_PID=$!
PIDS+=("$NGX_PID")

# --- busbar ----------------------------------------------------------------------------------
# busbar_conf PORT NAME [OBSERVABILITY-YAML]: the benchmark's busbar config.
busbar_conf() {
  mkdir -p "$TMP/$2-state"
  cat <<EOF
listen: "127.0.0.1:$1"
workers: $WORKERS
state_dir: "$TMP/$2-state"
admin:
  socket: "$TMP/$2-admin.sock"
auth:
  mode: none
governance:
  enabled: ${BENCH_GOVERNANCE:-true}
log_level: warn
providers:
  mock:
    protocol: openai
    base_url: "http://127.0.0.1:$MOCK_PORT"
    api_key_env: BENCH_UPSTREAM_KEY
  mock-anthropic:
    protocol: anthropic
    base_url: "http://127.0.0.1:$MOCK_PORT"
    api_key_env: BENCH_UPSTREAM_KEY
models:
  bench-lane:
    provider: mock
    upstream_model: bench-model
  xlate-lane:
    provider: mock-anthropic
    upstream_model: bench-model
pools:
  bench:
    members:
      - target: bench-lane
        weight: 1
  xlate:
    members:
      - target: xlate-lane
        weight: 1
${3:-}
EOF
}
BB_PORT=$(free_port)
busbar_conf "$BB_PORT" busbar >"$TMP/busbar.yaml"
PROVIDERS=etc/providers.yaml
if [ ! -f "$PROVIDERS" ]; then
  PROVIDERS=$TMP/providers.yaml
  printf 'unused:\n  protocol: openai\n  base_url: "http://127.0.0.1:9"\n' >"$PROVIDERS"
fi
BENCH_UPSTREAM_KEY=sk-bench "${SRV_PIN[@]}" "$BUSBAR" -c "$TMP/busbar.yaml" -p "$PROVIDERS" \
  2>"$TMP/busbar.err" &
BB_PID=$!
PIDS+=("$BB_PID")

if [ -n "$BASELINE_BIN" ]; then
  BASE_PORT=$(free_port)
  mkdir -p "$TMP/baseline-state"
  sed -e "s#127.0.0.1:$BB_PORT#127.0.0.1:$BASE_PORT#" -e "s#$TMP/busbar-state#$TMP/baseline-state#" \
    -e "s#$TMP/busbar-admin.sock#$TMP/baseline-admin.sock#" "$TMP/busbar.yaml" >"$TMP/baseline.yaml"
  BENCH_UPSTREAM_KEY=sk-bench "${SRV_PIN[@]}" "$BASELINE_BIN" -c "$TMP/baseline.yaml" \
    -p "$PROVIDERS" 2>"$TMP/baseline.err" &
  PIDS+=($!)
fi

TARGETS=()
wait_http "http://127.0.0.1:$MOCK_PORT/_mock/health" 10 && TARGETS+=("direct $MOCK_PORT")
if wait_http "http://127.0.0.1:$NGX_PORT/_mock/health" 10; then
  TARGETS+=("nginx $NGX_PORT")
else
  log "nginx did not start:"; cat "$TMP/nginx/stderr" "$TMP/nginx/error.log" >&2 || true
fi
# --- governed targets: a virtual key on one node (keys), and on a node in cluster mode -------
CLUSTER=${BENCH_CLUSTER:-1}
KEYS_PORT=0 CL_PORT=0 KEYS_SECRET="" CL_SECRET=""
if [ "$CLUSTER" = 1 ]; then
  REDIS_PORT=$(free_port)
  mkdir -p "$TMP/redis"
  "${SRV_PIN[@]}" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' \
    --appendonly no --dir "$TMP/redis" --logfile "$TMP/redis/redis.log" --daemonize no &
  PIDS+=($!)
  for flavour in keys cluster; do
    port=$(free_port)
    mkdir -p "$TMP/$flavour-state"
    sed -e "s|^listen: .*|listen: \"127.0.0.1:$port\"|" \
      -e "s|^state_dir: .*|state_dir: \"$TMP/$flavour-state\"|" \
      -e "s|^  socket: .*|  socket: \"$TMP/$flavour-admin.sock\"|" \
      -e "s|^  mode: none|  mode: keys|" -e "s|^  enabled: .*|  enabled: true|" \
      "$TMP/busbar.yaml" >"$TMP/$flavour.yaml"
    [ "$flavour" = cluster ] && printf 'cluster:\n  redis_url: "redis://127.0.0.1:%s/0"\n  node_id: bench\n' \
      "$REDIS_PORT" >>"$TMP/$flavour.yaml"
    BENCH_UPSTREAM_KEY=sk-bench "${SRV_PIN[@]}" "$BUSBAR" -c "$TMP/$flavour.yaml" \
      -p "$PROVIDERS" 2>"$TMP/$flavour.err" &
    PIDS+=($!)
    if wait_http "http://127.0.0.1:$port/healthz" 15; then
      secret=$(build-release/ctl/busbarctl --socket "$TMP/$flavour-admin.sock" --json keys \
        create --name bench | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
      if [ "$flavour" = keys ]; then KEYS_PORT=$port KEYS_SECRET=$secret
      else CL_PORT=$port CL_SECRET=$secret; fi
    else
      log "busbar ($flavour) did not become ready:"; tail -20 "$TMP/$flavour.err" >&2 || true
    fi
  done
fi

# Observability off vs on: two more instances, measured like busbar (BENCH_OBS=1).
OBS_TARGETS=()
if [ "${BENCH_OBS:-1}" = 1 ]; then
  COL_PORT=$(free_port)
  # the collector runs beside wrk, not on the server's CPU: its own cost is not busbar's
  "${WRK_PIN[@]}" python3 -c '
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
' "$COL_PORT" >"$TMP/collector.log" 2>&1 &
  PIDS+=($!)
  OFF_PORT=$(free_port)
  ON_PORT=$(free_port)
  busbar_conf "$OFF_PORT" obs-off "observability: { metrics: false }" >"$TMP/obs-off.yaml"
  busbar_conf "$ON_PORT" obs-on "observability:
  metrics: true
  access_log: \"$TMP/access.log\"
  otlp_endpoint: \"http://127.0.0.1:$COL_PORT/v1/traces\"" >"$TMP/obs-on.yaml"
  for n in obs-off obs-on; do
    BENCH_UPSTREAM_KEY=sk-bench "${SRV_PIN[@]}" "$BUSBAR" -c "$TMP/$n.yaml" -p "$PROVIDERS" \
      2>"$TMP/$n.err" &
    PIDS+=($!)
  done
  if wait_http "http://127.0.0.1:$OFF_PORT/healthz" 15 &&
    wait_http "http://127.0.0.1:$ON_PORT/healthz" 15; then
    OBS_TARGETS+=("obs-off $OFF_PORT" "obs-on $ON_PORT")
  else
    log "the observability instances did not start:"
    tail -5 "$TMP/obs-off.err" "$TMP/obs-on.err" >&2 || true
  fi
fi

BB_IDLE_RSS=0
if wait_http "http://127.0.0.1:$BB_PORT/healthz" 15; then
  TARGETS+=("busbar $BB_PORT" "xlate $BB_PORT")
  sleep 0.5
  BB_IDLE_RSS=$(rss_tree "$BB_PID")
else
  log "busbar did not become ready:"; tail -20 "$TMP/busbar.err" >&2 || true
fi

if [ -n "$BASELINE_BIN" ]; then
  if wait_http "http://127.0.0.1:$BASE_PORT/healthz" 15; then
    TARGETS+=("baseline $BASE_PORT")
  else
    log "baseline did not become ready:"; tail -20 "$TMP/baseline.err" >&2 || true
  fi
fi
[ "$KEYS_PORT" != 0 ] && TARGETS+=("keys $KEYS_PORT")
[ "$CL_PORT" != 0 ] && TARGETS+=("cluster $CL_PORT")

RESULTS=$TMP/results.txt
: >"$RESULTS"
for t in "${TARGETS[@]}" "${OBS_TARGETS[@]}"; do
  read -r name port <<<"$t"
  if [ -n "${BENCH_TARGETS:-}" ] && [[ " $BENCH_TARGETS " != *" $name "* ]]; then
    continue
  fi
  model=bench
  [ "$name" = direct ] && model=bench-model
  [ "$name" = xlate ] && model=xlate # OpenAI in, Anthropic out (translated both ways)
  export BENCH_KEY=""
  [ "$name" = keys ] && BENCH_KEY=$KEYS_SECRET
  [ "$name" = cluster ] && BENCH_KEY=$CL_SECRET
  [ -n "$BENCH_KEY" ] || unset BENCH_KEY
  for mode in nonstream stream; do
    script=bench/chat.lua
    [ "$mode" = stream ] && script=bench/chat_stream.lua
    url="http://127.0.0.1:$port/v1/chat/completions"
    BENCH_MODEL=$model "${WRK_PIN[@]}" wrk -t1 -c4 -d"${WARMUP}s" -s "$script" "$url" \
      >/dev/null 2>&1 || true
    for conns in 1 64; do
      threads=1
      [ "$conns" -gt 1 ] && threads=2
      log "wrk $name $mode c=$conns (${SECONDS_PER}s)"
      out=$TMP/wrk-$name-$mode-$conns.txt
      BENCH_MODEL=$model "${WRK_PIN[@]}" wrk -t"$threads" -c"$conns" -d"${SECONDS_PER}s" \
        --latency -s "$script" "$url" >"$out" 2>&1 || true
      printf '%s %s %s %s\n' "$name" "$mode" "$conns" "$out" >>"$RESULTS"
    done
  done
done

BB_LOAD_RSS=0 NGX_RSS=0
kill -0 "$BB_PID" 2>/dev/null && BB_LOAD_RSS=$(rss_tree "$BB_PID")
kill -0 "$NGX_PID" 2>/dev/null && NGX_RSS=$(rss_tree "$NGX_PID")
BB_LOAD_PSS=0 NGX_PSS=0
kill -0 "$BB_PID" 2>/dev/null && BB_LOAD_PSS=$(rss_tree "$BB_PID" pss)
kill -0 "$NGX_PID" 2>/dev/null && NGX_PSS=$(rss_tree "$NGX_PID" pss)

python3 - "$RESULTS" "$BB_IDLE_RSS" "$BB_LOAD_RSS" "$NGX_RSS" "$WORKERS" "${#SRV_PIN[@]}" \
  "$BB_LOAD_PSS" "$NGX_PSS" "${BENCH_GOVERNANCE:-true}" <<'EOF'
import re, sys
results, bb_idle, bb_load, ngx_rss, workers, pinned, bb_pss, ngx_pss, gov = sys.argv[1:10]

def us(v):
    m = re.match(r'([\d.]+)(us|ms|s)$', v)
    return float(m.group(1)) * {'us': 1, 'ms': 1e3, 's': 1e6}[m.group(2)] if m else None

rows = {}
for line in open(results):
    name, mode, conns, path = line.split()
    text = open(path).read()
    r = {'rps': None, 'p50': None, 'p99': None, 'errors': 0}
    m = re.search(r'Requests/sec:\s+([\d.]+)', text)
    if m:
        r['rps'] = float(m.group(1))
    for pct in ('50', '99'):
        m = re.search(r'^\s+%s(?:\.000)?%%\s+(\S+)' % pct, text, re.M)
        if m:
            r['p' + pct] = us(m.group(1))
    for rx in (r'Non-2xx or 3xx responses:\s+(\d+)',
               r'Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)'):
        m = re.search(rx, text)
        if m:
            r['errors'] += sum(int(x) for x in m.groups())
    if r['rps'] is None:
        r['note'] = text.strip().splitlines()[-1][:60] if text.strip() else 'no output'
    rows[(name, mode, int(conns))] = r

def f(v, unit=''):
    if v is None:
        return '-'
    return ('%.0f' % v) + unit

print()
print('busbar benchmark — same bb-mock, %s worker(s) each; server side %s' %
      (workers, 'pinned to CPU 0, wrk to CPU 1' if pinned != '0' else 'unpinned'))
print('%-10s %-7s %5s %10s %10s %10s %7s' % ('scenario', 'target', 'conns', 'RPS', 'p50 µs',
                                             'p99 µs', 'errors'))
for mode in ('nonstream', 'stream'):
    for conns in (1, 64):
        for name in ('direct', 'nginx', 'busbar', 'baseline', 'xlate', 'keys', 'cluster'):
            r = rows.get((name, mode, conns))
            if r is None and name in ('baseline', 'keys', 'cluster'):
                continue  # not measured in this run
            if r is None:
                print('%-10s %-7s %5d %10s' % (mode, name, conns, 'n/a'))
                continue
            print('%-10s %-7s %5d %10s %10s %10s %7d %s' % (
                mode, name, conns, f(r['rps']), f(r['p50']), f(r['p99']), r['errors'],
                r.get('note', '')))
print()
print('%-10s %5s %14s %20s %20s' % ('scenario', 'conns', 'busbar/nginx', 'busbar-direct p50',
                                    'busbar-direct p99'))
for mode in ('nonstream', 'stream'):
    for conns in (1, 64):
        b, n, d = (rows.get((x, mode, conns)) or {} for x in ('busbar', 'nginx', 'direct'))
        ratio = (b['rps'] / n['rps']) if b.get('rps') and n.get('rps') else None
        dp50 = (b['p50'] - d['p50']) if b.get('p50') is not None and d.get('p50') is not None \
            else None
        dp99 = (b['p99'] - d['p99']) if b.get('p99') is not None and d.get('p99') is not None \
            else None
        print('%-10s %5d %14s %20s %20s' % (mode, conns,
                                            '%.2fx' % ratio if ratio else '-',
                                            f(dp50, ' µs'), f(dp99, ' µs')))
if any(k[0] == 'baseline' for k in rows):
    print()
    print('%-10s %5s %16s %16s' % ('scenario', 'conns', 'baseline/nginx', 'busbar/baseline'))
    for mode in ('nonstream', 'stream'):
        for conns in (1, 64):
            b, n, z = (rows.get((x, mode, conns)) or {} for x in ('busbar', 'nginx', 'baseline'))
            print('%-10s %5d %16s %16s' % (mode, conns,
                  '%.2fx' % (z['rps'] / n['rps']) if z.get('rps') and n.get('rps') else '-',
                  '%.3fx' % (b['rps'] / z['rps']) if b.get('rps') and z.get('rps') else '-'))
print()
print('translated (OpenAI in -> Anthropic out) vs same protocol, added latency over direct:')
for mode in ('nonstream', 'stream'):
    for conns in (1, 64):
        x, b, d = (rows.get((k, mode, conns)) or {} for k in ('xlate', 'busbar', 'direct'))
        if all(v.get('p99') is not None for v in (x, b, d)):
            xa, ba = x['p99'] - d['p99'], b['p99'] - d['p99']
            print('%-10s %5d  xlate p99 +%s  same p99 +%s  ratio %s  RPS vs same %s' % (
                mode, conns, f(xa, ' µs'), f(ba, ' µs'),
                '%.2fx' % (xa / ba) if ba > 0 else '-',
                '%.2fx' % (x['rps'] / b['rps']) if x.get('rps') and b.get('rps') else '-'))
if any(k[0] == 'cluster' for k in rows):
    print()
    print('governed (a virtual key): one node (keys) vs cluster mode (Redis on loopback, one '
          'round trip at admission, one at settlement):')
    for mode in ('nonstream', 'stream'):
        for conns in (1, 64):
            k, c = (rows.get((x, mode, conns)) or {} for x in ('keys', 'cluster'))
            if k.get('rps') and c.get('rps') and k.get('p99') is not None and \
                    c.get('p99') is not None:
                print('%-10s %5d  RPS keys %s cluster %s (%.2fx)  p50 +%s  p99 +%s' % (
                    mode, conns, f(k['rps']), f(c['rps']), c['rps'] / k['rps'],
                    f(c['p50'] - k['p50'], ' µs'), f(c['p99'] - k['p99'], ' µs')))
print()
print('RSS: busbar idle %s KiB, busbar after load %s KiB (master + workers); nginx after load '
      '%s KiB (master + workers)' % (bb_idle, bb_load, ngx_rss))
print('PSS after load (shared memory counted once): busbar %s KiB, nginx %s KiB'
      % (bb_pss, ngx_pss))
print('busbar governance.enabled: %s (%s)' % (gov, 'every request metered: usage parsed, one '
      'ledger row written by the master' if gov == 'true' else 'no metering, no ledger'))
if any(k[0] == 'obs-on' for k in rows):
    print()
    print('observability: metrics + access log + OTLP traces all on vs all off (same config, '
          'same run):')
    for mode in ('nonstream', 'stream'):
        for conns in (1, 64):
            on, off = (rows.get((k, mode, conns)) or {} for k in ('obs-on', 'obs-off'))
            if on.get('rps') and off.get('rps'):
                print('%-10s %5d  off %8.0f RPS  on %8.0f RPS  on/off %.3f  p99 off %s on %s' % (
                    mode, conns, off['rps'], on['rps'], on['rps'] / off['rps'],
                    f(off['p99'], ' µs'), f(on['p99'], ' µs')))
EOF

# Hot-path microbenchmarks (breaker check, failover decision).
if [ -x build-release/bench/bb-micro ]; then
  echo
  build-release/bench/bb-micro
fi
