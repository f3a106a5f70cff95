#!/usr/bin/env python3
"""bench/bench.py — the benchmark driver (bench/run.sh builds build-release/ and runs this).

One run measures, against one bb-mock, side by side: direct (wrk → mock), nginx (proxy_pass
with upstream keepalive) and busbar in its default configuration (governance on) with
auth.mode none and with a virtual key (auth.mode keys), busbar without governance, a
translated pool (OpenAI in → Anthropic lane), routing policies (a pool routed by the Lua
script etc/policies/cheapest.lua and one by a loopback Unix-socket policy, beside the same
pool routed natively; docs/routing.md), and optionally cluster mode (Redis), the
observability cost (all on vs all off) and a baseline revision — in two placements:

  A  server side (mock + proxy + its master) on CPU 0, wrk on CPU 1
  B  mock and wrk on CPU 0, the proxy and its master on CPU 1

Per run: RPS, p50/p99, errors, and the proxy's CPU per request (its process tree's
utime + stime from /proc, divided by the requests wrk completed; per stream event for
streams). Then: the added latency over direct at c=1, the added time to first token, idle
RSS and the RSS of 1,000 concurrent slow streams. Prints one Markdown table with every figure
and the ratios the targets are stated in (docs/performance.md), and writes it to
bench/results/<date>.md.

Environment: BENCH_SECONDS (10) per measurement, BENCH_WARMUP (1), BENCH_WORKERS (1) busbar
workers = nginx worker_processes, BENCH_PLACEMENTS ("A B"), BENCH_PIN (1; 0 = no taskset),
BENCH_CLUSTER (1), BENCH_OBS (1), BENCH_POLICY (1), BENCH_ONLY (comma-separated target labels,
e.g. "native2,lua,socket": measure only those), BENCH_BASELINE (a git revision, built
separately by run.sh into $BENCH_BASELINE_BIN), BENCH_STREAM_WORDS (20), BENCH_STREAMS_HELD
(1000), BENCH_KEEP (keep the temp dir), BENCH_H2_CONNS (4) x BENCH_H2_STREAMS (16): the h2load
runs' connections and concurrent streams per connection, BENCH_ROUNDS (3): alternating runs
of each side of the paired ratios (busbar vs nginx, governance on vs off, observability on vs
off, the Lua and socket policies vs the native route), each side's median kept; also the
number of alternating c=1 runs of direct, nginx and busbar behind the latency figure,
BENCH_LATENCY_SECONDS (15) each.

HTTP/2: the same run also drives nginx (a second server block, `listen ... http2`: h2c with
prior knowledge) and busbar (its one plain listener, which takes h2c by the preface) with
h2load (nghttp2-client), non-stream and stream, after the HTTP/1.1 figures (which these runs
do not touch).
"""

import asyncio
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, 'build-release')
BUSBAR = os.path.join(REL, 'master', 'busbar')
BUSBARCTL = os.path.join(REL, 'ctl', 'busbarctl')
MOCK = os.path.join(REL, 'tests', 'mock', 'bb-mock')
POLICY_SERVER = os.path.join(REL, 'bench', 'bb-policy-server')
NGINX = shutil.which('nginx') or '/usr/sbin/nginx'

SECONDS = int(os.environ.get('BENCH_SECONDS', '10'))
WARMUP = int(os.environ.get('BENCH_WARMUP', '1'))
WORKERS = int(os.environ.get('BENCH_WORKERS', '1'))
PLACEMENTS = os.environ.get('BENCH_PLACEMENTS', 'A B').split()
PIN = os.environ.get('BENCH_PIN', '1') == '1' and (os.cpu_count() or 1) >= 2
CLUSTER = os.environ.get('BENCH_CLUSTER', '1') == '1' and shutil.which('redis-server')
OBS = os.environ.get('BENCH_OBS', '1') == '1'
POLICY = os.environ.get('BENCH_POLICY', '1') == '1'
ONLY = set(filter(None, os.environ.get('BENCH_ONLY', '').split(',')))  # these targets only
BASELINE_BIN = os.environ.get('BENCH_BASELINE_BIN', '')
STREAM_WORDS = int(os.environ.get('BENCH_STREAM_WORDS', '20'))
HELD = int(os.environ.get('BENCH_STREAMS_HELD', '1000'))
ROUNDS = int(os.environ.get('BENCH_ROUNDS', '3'))
# The ratios that compare two configurations on one 2-CPU box move by ±10 % between two runs of
# the same binary: their two sides are measured ROUNDS times, alternating (A B, B A, A B), and
# each side's median run (by RPS) is the figure; the rounds' RPS are printed beside it.
PAIRS = (('busbar', 'nginx'), ('busbar', 'nogov'), ('obs-on', 'obs-off'), ('lua', 'native2'),
         ('socket', 'native2'))
# The latency figure (added p50/p99 at c=1 over direct) wants >= 100k requests for a stable
# p99: its c=1 runs last BENCH_LATENCY_SECONDS (15), and busbar, nginx and direct are run
# ROUNDS times alternating like the pairs (the median by p99 is the figure, every run listed).
LAT_SECONDS = int(os.environ.get('BENCH_LATENCY_SECONDS', '15'))
LAT_TARGETS = ('direct', 'nginx', 'busbar')
H2_CONNS = int(os.environ.get('BENCH_H2_CONNS', '4'))
H2_STREAMS = int(os.environ.get('BENCH_H2_STREAMS', '16'))
CLK = os.sysconf('SC_CLK_TCK')

TMP = tempfile.mkdtemp(prefix='busbar-bench.')
PROCS = []


def log(msg):
    print('==> ' + msg, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def pin(cpu):
    return ['taskset', '-c', str(cpu)] if PIN and cpu is not None else []


def spawn(argv, cpu=None, env=None, **kw):
    p = subprocess.Popen(pin(cpu) + argv, env=dict(os.environ, **(env or {})),
                         start_new_session=True, **kw)
    PROCS.append(p)
    return p


def stop_all():
    for p in PROCS:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.time() + 5
    for p in PROCS:
        try:
            p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
    PROCS.clear()


def wait_http(port, path, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(('127.0.0.1', port), 0.5) as s:
                s.sendall(('GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
                           % path).encode())
                if s.recv(64).startswith(b'HTTP/1.1 200'):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


# ---- /proc ---------------------------------------------------------------------------------

def _ppids():
    out = {}
    for d in os.listdir('/proc'):
        if d.isdigit():
            try:
                s = open('/proc/%s/stat' % d).read()
                out[int(d)] = int(s[s.rfind(')') + 2:].split()[1])
            except OSError:
                pass
    return out


def tree(root):
    pp = _ppids()
    todo, pids = [root], []
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += [c for c, parent in pp.items() if parent == p]
    return pids


def cpu_seconds(root):
    """utime + stime of root and every descendant alive now (seconds)."""
    total = 0
    for p in tree(root):
        try:
            f = open('/proc/%d/stat' % p).read()
            f = f[f.rfind(')') + 2:].split()
            total += int(f[11]) + int(f[12])
        except OSError:
            pass
    return total / CLK


def rss_kib(root, field='VmRSS:'):
    total = 0
    for p in tree(root):
        try:
            path = '/proc/%d/smaps_rollup' % p if field == 'Pss:' else '/proc/%d/status' % p
            for line in open(path):
                if line.startswith(field):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


# ---- the servers ---------------------------------------------------------------------------

def start_mock(cpu):
    out = os.path.join(TMP, 'mock.out')
    p = spawn([MOCK, '--listen', '127.0.0.1:0'], cpu, stdout=open(out, 'w'),
              stderr=open(os.path.join(TMP, 'mock.err'), 'w'))
    for _ in range(200):
        m = re.search(r'^ready (\d+)', open(out).read(), re.M)
        if m:
            return int(m.group(1)), p
        time.sleep(0.025)
    raise SystemExit('bb-mock did not start')


def start_nginx(mock_port, cpu):
    port, h2port = free_port(), free_port()
    d = os.path.join(TMP, 'nginx')
    os.makedirs(d, exist_ok=True)
    user = 'user %s;' % os.environ.get('USER', 'root') if os.getuid() == 0 else ''
    if os.getuid() == 0:
        import grp
        import pwd
        pw = pwd.getpwuid(0)
        user = 'user %s %s;' % (pw.pw_name, grp.getgrgid(pw.pw_gid).gr_name)
    conf = os.path.join(d, 'nginx.conf')
    open(conf, 'w').write('''%s
worker_processes %d;
daemon off;
master_process on;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %s/body;
    proxy_temp_path %s/proxy;
    fastcgi_temp_path %s/fastcgi;
    uwsgi_temp_path %s/uwsgi;
    scgi_temp_path %s/scgi;
    keepalive_requests 1000000;
    upstream mock { server 127.0.0.1:%d; keepalive 128; }
    server {
        listen 127.0.0.1:%d;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }
    }
    server {
        listen 127.0.0.1:%d http2;
        http2_max_concurrent_streams 128;
        keepalive_requests 1000000;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }
    }
}
''' % (user, WORKERS, d, d, d, d, d, d, d, mock_port, port, h2port))
    p = spawn([NGINX, '-p', d, '-c', conf, '-e', os.path.join(d, 'error.log')], cpu,
              stderr=open(os.path.join(d, 'stderr'), 'w'))
    if not wait_http(port, '/_mock/health'):
        raise SystemExit('nginx did not start: %s' % open(os.path.join(d, 'stderr')).read())
    return port, p, h2port


# Routing policies (BENCH_POLICY): two priced lanes on the same mock, routed natively, by the
# shipped Lua script and by a Unix-socket policy that answers at once (bench/policy_server.c:
# the figure is busbar's cost plus one loopback round trip, not a policy's own thinking).
POLICY_LANES = '''
  pol-a: { provider: mock, upstream_model: bench-model, price: { input: 3, output: 15 } }
  pol-b: { provider: mock, upstream_model: bench-model, price: { input: 1, output: 2 } }'''
POLICY_POOLS = '''
  native2: { members: [ { target: pol-a }, { target: pol-b } ] }
  lua: { members: [ { target: pol-a }, { target: pol-b } ], route: script,
         policy: { script_file: "%s/etc/policies/cheapest.lua", timeout_ms: 50 } }
  sock: { members: [ { target: pol-a }, { target: pol-b } ], route: webhook,
          policy: { socket: "%s", timeout_ms: 50 } }'''
POLICY_SOCKET = os.path.join(TMP, 'policy.sock')


def busbar_yaml(name, port, mock_port, auth='none', gov=True, extra='', policies=False):
    state = os.path.join(TMP, name + '-state')
    os.makedirs(state, exist_ok=True)
    return '''listen: "127.0.0.1:%d"
workers: %d
state_dir: "%s"
admin: { socket: "%s/admin.sock" }
auth: { mode: %s }
governance: { enabled: %s }
log_level: warn
providers:
  mock: { protocol: openai, base_url: "http://127.0.0.1:%d", api_key_env: BENCH_UPSTREAM_KEY }
  mock-anthropic: { protocol: anthropic, base_url: "http://127.0.0.1:%d",
                    api_key_env: BENCH_UPSTREAM_KEY }
models:
  bench-lane: { provider: mock, upstream_model: bench-model }
  xlate-lane: { provider: mock-anthropic, upstream_model: bench-model }
  sbench-lane: { provider: mock, upstream_model: "bench-model;words=%d" }
  sxlate-lane: { provider: mock-anthropic, upstream_model: "bench-model;words=%d" }
  slow-lane: { provider: mock, upstream_model: "bench-model;words=100;delay=60" }%s
pools:
  bench: { members: [ { target: bench-lane, weight: 1 } ] }
  xlate: { members: [ { target: xlate-lane, weight: 1 } ] }
  stream-bench: { members: [ { target: sbench-lane, weight: 1 } ] }
  stream-xlate: { members: [ { target: sxlate-lane, weight: 1 } ] }
  slow: { members: [ { target: slow-lane, weight: 1 } ] }%s
%s
''' % (port, WORKERS, state, state, auth, 'true' if gov else 'false', mock_port, mock_port,
       STREAM_WORDS, STREAM_WORDS, POLICY_LANES if policies else '',
       POLICY_POOLS % (ROOT, POLICY_SOCKET) if policies else '', extra)


class Busbar:
    def __init__(self, name, mock_port, cpu, binary=BUSBAR, auth='none', gov=True, extra='',
                 policies=False):
        self.name, self.port = name, free_port()
        conf = os.path.join(TMP, name + '.yaml')
        open(conf, 'w').write(busbar_yaml(name, self.port, mock_port, auth, gov, extra,
                                          policies))
        self.admin = os.path.join(TMP, name + '-state', 'admin.sock')
        self.proc = spawn([binary, '-c', conf, '-p', os.path.join(ROOT, 'etc/providers.yaml')],
                          cpu, env={'BENCH_UPSTREAM_KEY': 'sk-bench'},
                          stderr=open(os.path.join(TMP, name + '.err'), 'w'))
        if not wait_http(self.port, '/healthz'):
            raise SystemExit('busbar %s did not start:\n%s' % (
                name, open(os.path.join(TMP, name + '.err')).read()[-2000:]))
        self.key = None
        if auth == 'keys':
            out = subprocess.run([BUSBARCTL, '--socket', self.admin, '--json', 'keys', 'create',
                                  '--name', 'bench'], capture_output=True, text=True, check=True)
            self.key = json.loads(out.stdout)['secret']
        time.sleep(0.3)
        self.idle_rss = rss_kib(self.proc.pid)
        self.idle_pss = rss_kib(self.proc.pid, 'Pss:')


# ---- load ------------------------------------------------------------------------------------

def wrk(port, model, stream, conns, seconds, cpu, key=None):
    script = os.path.join(ROOT, 'bench', 'chat_stream.lua' if stream else 'chat.lua')
    env = {'BENCH_MODEL': model}
    if key:
        env['BENCH_KEY'] = key
    threads = 1 if conns == 1 else 2
    argv = pin(cpu) + ['wrk', '-t%d' % threads, '-c%d' % conns, '-d%ds' % seconds, '--latency',
                       '-s', script, 'http://127.0.0.1:%d/v1/chat/completions' % port]
    p = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, **env))
    t = p.stdout
    r = {'rps': None, 'p50': None, 'p99': None, 'errors': 0, 'requests': 0}
    m = re.search(r'Requests/sec:\s+([\d.]+)', t)
    if m:
        r['rps'] = float(m.group(1))
    m = re.search(r'(\d+) requests in', t)
    if m:
        r['requests'] = int(m.group(1))
    for pct in ('50', '99'):
        m = re.search(r'^\s+%s(?:\.000)?%%\s+([\d.]+)(us|ms|s)$' % pct, t, re.M)
        if m:
            r['p' + pct] = float(m.group(1)) * {'us': 1, 'ms': 1e3, 's': 1e6}[m.group(2)]
    for rx in (r'Non-2xx or 3xx responses:\s+(\d+)',
               r'Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)'):
        m = re.search(rx, t)
        if m:
            r['errors'] += sum(int(x) for x in m.groups())
    return r


def h2load(port, model, stream, seconds, cpu, key=None):
    """h2load (nghttp2-client): H2_CONNS connections x H2_STREAMS concurrent streams, h2c with
    prior knowledge, for seconds; the same request body as wrk's."""
    body = os.path.join(TMP, 'h2body-%s-%d.json' % (re.sub(r'\W', '_', model), stream))
    with open(body, 'w') as f:
        f.write(json.dumps({'model': model, 'stream': stream,
                            'messages': [{'role': 'user', 'content': 'hello benchmark'}]},
                           separators=(',', ':')))
    argv = pin(cpu) + ['h2load', '-t1', '-c%d' % H2_CONNS, '-m%d' % H2_STREAMS,
                       '-D%d' % seconds, '-d', body, '-H', 'content-type: application/json']
    if key:
        argv += ['-H', 'authorization: Bearer %s' % key]
    p = subprocess.run(argv + ['http://127.0.0.1:%d/v1/chat/completions' % port],
                       capture_output=True, text=True)
    t = p.stdout
    r = {'rps': None, 'p50': None, 'p99': None, 'errors': 0, 'requests': 0}
    m = re.search(r'finished in [\d.]+\w+, ([\d.]+) req/s', t)
    if m:
        r['rps'] = float(m.group(1))
    m = re.search(r'requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, '
                  r'(\d+) errored', t)
    if m:
        r['requests'] = int(m.group(2))
        r['errors'] = int(m.group(3)) + int(m.group(4))
    m = re.search(r'status codes: (\d+) 2xx', t)
    if m and r['requests']:  # answered, but not 2xx
        r['errors'] += max(0, r['requests'] - int(m.group(1)))
    m = re.search(r'^time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)', t, re.M)
    if m:  # h2load reports the mean, not percentiles: shown as p50
        r['p50'] = float(m.group(1)) * {'us': 1, 'ms': 1e3, 's': 1e6}[m.group(2)]
    if r['rps'] is None:
        log('h2load failed: %s %s' % (t[-500:], p.stderr[-500:]))
    return r


def measure_h2(target, port, model, stream, cpu_wrk, proxy_pid, key=None):
    h2load(port, model, stream, WARMUP, cpu_wrk, key)
    c0 = cpu_seconds(proxy_pid)
    r = h2load(port, model, stream, SECONDS, cpu_wrk, key)
    c1 = cpu_seconds(proxy_pid)
    r['cpu_us'] = (c1 - c0) * 1e6 / r['requests'] if r['requests'] else None
    log('%-12s %-9s %dx%-3d %8s rps  mean %7s µs  cpu %s µs/req' % (
        target, 'stream' if stream else 'nonstream', H2_CONNS, H2_STREAMS, fmt(r['rps']),
        fmt(r['p50']), fmt(r['cpu_us'], 1)))
    return r


def events_per_stream(port, model, key=None):
    """Client-visible SSE events of one stream through port (for CPU per event)."""
    body = json.dumps({'model': model, 'stream': True,
                       'messages': [{'role': 'user', 'content': 'hello benchmark'}]})
    h = 'Authorization: Bearer %s\r\n' % key if key else ''
    with socket.create_connection(('127.0.0.1', port), 5) as s:
        s.sendall(('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: '
                   'application/json\r\nContent-Length: %d\r\nConnection: close\r\n%s\r\n%s'
                   % (len(body), h, body)).encode())
        data = b''
        while True:
            c = s.recv(65536)
            if not c:
                break
            data += c
    return max(1, data.count(b'data: '))


def measure(target, port, model, stream, conns, cpu_wrk, proxy_pid, key=None):
    """One wrk run with the proxy's CPU time over it."""
    wrk(port, model, stream, 4, WARMUP, cpu_wrk, key)
    secs = LAT_SECONDS if conns == 1 and not stream and target in LAT_TARGETS else SECONDS
    c0 = cpu_seconds(proxy_pid) if proxy_pid else 0
    r = wrk(port, model, stream, conns, secs, cpu_wrk, key)
    c1 = cpu_seconds(proxy_pid) if proxy_pid else 0
    r['cpu_us'] = (c1 - c0) * 1e6 / r['requests'] if proxy_pid and r['requests'] else None
    log('%-12s %-9s c=%-3d %8s rps  p50 %7s µs  p99 %7s µs  cpu %s µs/req' % (
        target, 'stream' if stream else 'nonstream', conns, fmt(r['rps']), fmt(r['p50']),
        fmt(r['p99']), fmt(r['cpu_us'], 1)))
    return r


def ttft(port, model, n=2000):
    """Median time (µs) from sending a stream request to its first content event."""
    body = json.dumps({'model': model, 'stream': True,
                       'messages': [{'role': 'user', 'content': 'hello benchmark'}]}).encode()
    req = (b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
           b'Content-Length: %d\r\n\r\n' % len(body)) + body
    s = socket.create_connection(('127.0.0.1', port), 5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        s.sendall(req)
        buf = b''
        first = None
        while not buf.endswith(b'0\r\n\r\n'):
            c = s.recv(65536)
            if not c:
                raise SystemExit('ttft: connection closed')
            buf += c
            if first is None and b'"content":"Hello"' in buf:
                first = time.perf_counter()
        times.append((first or time.perf_counter()) - t0)
    s.close()
    times.sort()
    return times[len(times) // 2] * 1e6


async def _hold(port, n, model, ready, release):
    body = json.dumps({'model': model, 'stream': True,
                       'messages': [{'role': 'user', 'content': 'hello'}]}).encode()
    req = (b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
           b'Content-Length: %d\r\n\r\n' % len(body)) + body

    async def one():
        r, w = await asyncio.open_connection('127.0.0.1', port)
        w.write(req)
        await w.drain()
        got = b''
        while b'data: ' not in got:
            got += await r.read(4096)
        ready.append(1)
        await release.wait()
        w.close()
    await asyncio.gather(*[one() for _ in range(n)], return_exceptions=True)


def held_streams_rss(bb, n):
    """RSS of bb's tree before and while n slow streams are open (KiB)."""
    before = rss_kib(bb.proc.pid)
    ready = []

    async def run():
        release = asyncio.Event()
        task = asyncio.ensure_future(_hold(bb.port, n, 'slow', ready, release))
        end = time.time() + 30
        while len(ready) < n and time.time() < end:
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        during = rss_kib(bb.proc.pid)
        release.set()
        await task
        return during
    during = asyncio.run(run())
    return before, during, len(ready)


def fmt(v, nd=0):
    if v is None:
        return '-'
    return ('%.' + str(nd) + 'f') % v


# ---- the run ---------------------------------------------------------------------------------

def placement(name):
    """(cpu for the mock, cpu for the proxy, cpu for wrk)"""
    return (0, 0, 1) if name == 'A' else (0, 1, 0)


def run_placement(pl, out):
    cpu_mock, cpu_proxy, cpu_wrk = placement(pl)
    log('placement %s: mock on CPU %d, proxy on CPU %d, wrk on CPU %d' % (pl, cpu_mock,
                                                                         cpu_proxy, cpu_wrk))
    mock_port, _ = start_mock(cpu_mock)
    ngx_port, ngx, ngx_h2port = start_nginx(mock_port, cpu_proxy)
    if POLICY:
        if os.path.exists(POLICY_SOCKET):
            os.unlink(POLICY_SOCKET)
        # the policy service is the proxy's loopback sidecar: on the proxy's CPU (in B the
        # other CPU runs wrk and the mock, and a cross-CPU wake-up of an idle vCPU is tens of
        # µs on this VM, which would be the hypervisor's figure, not the policy's)
        spawn([POLICY_SERVER, POLICY_SOCKET, '{"order":["pol-b","pol-a"]}'], cpu_proxy,
              stdout=subprocess.DEVNULL)
        for _ in range(200):
            if os.path.exists(POLICY_SOCKET):
                break
            time.sleep(0.025)
    bbs = {'busbar': Busbar('busbar', mock_port, cpu_proxy, policies=POLICY),
           'keys': Busbar('keys', mock_port, cpu_proxy, auth='keys'),
           'nogov': Busbar('nogov', mock_port, cpu_proxy, gov=False)}
    if pl == 'A':
        if CLUSTER:
            rport = free_port()
            spawn(['redis-server', '--bind', '127.0.0.1', '--port', str(rport), '--save', '',
                   '--appendonly', 'no', '--dir', TMP], cpu_proxy,
                  stdout=subprocess.DEVNULL)
            time.sleep(0.3)
            bbs['cluster'] = Busbar('cluster', mock_port, cpu_proxy, auth='keys',
                                    extra='cluster: { redis_url: "redis://127.0.0.1:%d/0", '
                                          'node_id: bench }' % rport)
        if OBS:
            col = start_collector(cpu_wrk)
            bbs['obs-off'] = Busbar('obs-off', mock_port, cpu_proxy,
                                    extra='observability: { metrics: false }')
            bbs['obs-on'] = Busbar('obs-on', mock_port, cpu_proxy, extra='''observability:
  metrics: true
  access_log: "%s/access.log"
  otlp_endpoint: "http://127.0.0.1:%d/v1/traces"''' % (TMP, col))
        if BASELINE_BIN:
            bbs['baseline'] = Busbar('baseline', mock_port, cpu_proxy, binary=BASELINE_BIN)
    # (label, port, model, key, pid, conns measured)
    targets = [('direct', mock_port, 'bench-model', None, None, (1, 64)),
               ('nginx', ngx_port, 'bench-model', None, ngx.pid, (1, 64)),
               ('busbar', bbs['busbar'].port, 'bench', None, bbs['busbar'].proc.pid, (1, 64)),
               ('keys', bbs['keys'].port, 'bench', bbs['keys'].key, bbs['keys'].proc.pid,
                (1, 64)),
               ('nogov', bbs['nogov'].port, 'bench', None, bbs['nogov'].proc.pid, (64,)),
               ('xlate', bbs['busbar'].port, 'xlate', None, bbs['busbar'].proc.pid, (64,))]
    for name in ('cluster', 'obs-off', 'obs-on', 'baseline'):
        if name in bbs:
            b = bbs[name]
            targets.append((name, b.port, 'bench', b.key, b.proc.pid, (64,)))
    if POLICY:
        b = bbs['busbar']
        for label, pool in (('native2', 'native2'), ('lua', 'lua'), ('socket', 'sock')):
            targets.append((label, b.port, pool, None, b.proc.pid, (1, 64)))
    if ONLY:
        targets = [t for t in targets if t[0] in ONLY]
    for label, port, model, key, pid, conns_list in targets:
        for stream in (False,) if label in POLICY_TARGETS else (False, True):
            for conns in conns_list:
                r = measure(label, port, stream_model(model, stream, label), stream, conns,
                            cpu_wrk, pid, key)
                out['runs'][(pl, label, 'stream' if stream else 'nonstream', conns)] = r
        if label in ('direct', 'nginx', 'busbar', 'keys') and not ONLY:
            out['events'][(pl, label)] = events_per_stream(port, stream_model(model, True,
                                                                              label), key)
    paired_rounds(pl, out, {t[0]: t for t in targets}, cpu_wrk)
    # HTTP/2 (h2load), after every HTTP/1.1 figure: nginx's http2 server block, busbar's one
    # listener
    for label, port, model, pid in (('nginx-h2', ngx_h2port, 'bench-model', ngx.pid),
                                    ('busbar-h2', bbs['busbar'].port, 'bench',
                                     bbs['busbar'].proc.pid)):
        if ONLY and label not in ONLY:
            continue
        for stream in (False, True):
            r = measure_h2(label, port, stream_model(model, stream, label.split('-')[0]), stream,
                           cpu_wrk, pid)
            out['runs'][(pl, label, 'stream' if stream else 'nonstream',
                         H2_CONNS * H2_STREAMS)] = r
    if pl == 'A' and not ONLY:
        # alternating rounds, each side's median: one round moved by ±20 µs on this VM
        rounds = {'direct': [], 'busbar': []}
        for _ in range(ROUNDS):
            rounds['direct'].append(ttft(mock_port, stream_model('bench-model', True, 'direct')))
            rounds['busbar'].append(ttft(bbs['busbar'].port,
                                         stream_model('bench', True, 'busbar')))
        out['ttft'] = {k: sorted(v)[len(v) // 2] for k, v in rounds.items()}
        out['ttft_rounds'] = rounds
        b = bbs['busbar']
        out['idle'] = {'busbar': (b.idle_rss, b.idle_pss), 'keys': (bbs['keys'].idle_rss,
                                                                    bbs['keys'].idle_pss)}
        out['held'] = held_streams_rss(b, HELD)
        out['after_load'] = {'busbar': (rss_kib(b.proc.pid), rss_kib(b.proc.pid, 'Pss:')),
                             'nginx': (rss_kib(ngx.pid), rss_kib(ngx.pid, 'Pss:'))}
    stop_all()


def paired_rounds(pl, out, tmap, cpu_wrk):
    """Measure each PAIRS side at c=64 ROUNDS times in all, alternating the order, and keep each
    side's median run (its 'rounds' lists every run's RPS). The main loop's run is round one."""
    rounds = {}
    for a, b in PAIRS:
        if a not in tmap or b not in tmap:
            continue
        for mode in ('nonstream', 'stream'):
            ka, kb = (pl, a, mode, 64), (pl, b, mode, 64)
            if ka not in out['runs'] or kb not in out['runs']:
                continue
            for k in (ka, kb):
                rounds.setdefault(k, [out['runs'][k]])
            for i in range(1, ROUNDS):
                for k in ((kb, ka) if i % 2 else (ka, kb)):
                    if len(rounds[k]) > i:  # measured already, as a side of another pair
                        continue
                    t = tmap[k[1]]
                    stream = mode == 'stream'
                    rounds[k].append(measure(k[1], t[1], stream_model(t[2], stream, k[1]),
                                             stream, 64, cpu_wrk, t[4], t[3]))
    for k, runs in rounds.items():
        med = dict(sorted(runs, key=lambda r: r.get('rps') or 0)[len(runs) // 2])
        med['rounds'] = [r.get('rps') for r in runs]
        out['runs'][k] = med
    if pl != 'A':
        return
    # the latency figure: c=1 non-stream, alternating, median by p99
    lat = {}
    for i in range(1, ROUNDS):
        order = LAT_TARGETS if i % 2 == 0 else LAT_TARGETS[::-1]
        for label in order:
            k = (pl, label, 'nonstream', 1)
            if label not in tmap or k not in out['runs']:
                continue
            t = tmap[label]
            lat.setdefault(k, [out['runs'][k]]).append(
                measure(label, t[1], stream_model(t[2], False, label), False, 1, cpu_wrk, t[4],
                        t[3]))
    for k, runs in lat.items():
        med = dict(sorted(runs, key=lambda r: r.get('p99') or 0)[len(runs) // 2])
        med['lat_rounds'] = [(r.get('p50'), r.get('p99'), r.get('requests')) for r in runs]
        out['runs'][k] = med


def stream_model(model, stream, label):
    """The model a target streams: the mock's answer is STREAM_WORDS words for streams."""
    if not stream:
        return model
    if label in ('direct', 'nginx'):
        return 'bench-model;words=%d' % STREAM_WORDS
    return 'stream-' + model


POLICY_TARGETS = ('native2', 'lua', 'socket')

def start_collector(cpu):
    """The OTLP receiver of obs-on: an nginx that reads each POST and answers 200 (cheaper
    than a Python server on wrk's CPU, so the figure is busbar's cost). Its port."""
    port = free_port()
    d = os.path.join(TMP, 'collector')
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, 'nginx.conf')
    open(conf, 'w').write('''worker_processes 1;
daemon off;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %s/body;
    client_max_body_size 64m;
    client_body_buffer_size 16m;
    server {
        listen 127.0.0.1:%d;
        location / { return 200 '{}'; }
    }
}
''' % (d, d, d, port))
    p = spawn([NGINX, '-p', d, '-c', conf, '-e', os.path.join(d, 'error.log')], cpu,
              stderr=open(os.path.join(d, 'stderr'), 'w'))
    if not wait_http(port, '/'):
        raise SystemExit('the OTLP collector (nginx) did not start: %s'
                         % open(os.path.join(d, 'stderr')).read())
    return port


def ratio(a, b, nd=2):
    return '%.*fx' % (nd, a / b) if a and b else '-'


def report(out):
    R = out['runs']
    L = []
    host = platform.node()
    cpu = ''
    try:
        cpu = re.search(r'model name\s*:\s*(.*)', open('/proc/cpuinfo').read()).group(1)
    except (OSError, AttributeError):
        pass
    L.append('# busbar benchmark, %s' % out['date'])
    L.append('')
    L.append('Machine: %s, %d CPUs (%s), Linux %s. Release build, %d busbar worker(s) = nginx '
             'worker_processes; %d s per measurement; pinned: %s. Streams: %d words '
             '(%s client events).' % (host, os.cpu_count(), cpu, platform.release(), WORKERS,
                                      SECONDS, 'yes' if PIN else 'no', STREAM_WORDS,
                                      out['events'].get(('A', 'busbar'), '?')))
    L.append('')
    L.append('Placement A: mock + proxy + master on CPU 0, wrk on CPU 1. Placement B: mock + '
             'wrk on CPU 0, proxy + master on CPU 1. busbar = the default configuration '
             '(governance on, auth.mode none); keys = governance on with a virtual key; nogov '
             '= governance.enabled false; xlate = OpenAI in, Anthropic lane.')
    L.append('')
    L.append('| placement | target | scenario | conns | RPS | vs nginx | p50 µs | p99 µs | '
             'errors | proxy CPU µs/req | µs/event |')
    L.append('|---|---|---|---|---|---|---|---|---|---|---|')
    for (pl, label, mode, conns), r in sorted(R.items(), key=lambda kv: (
            kv[0][0], kv[0][2], kv[0][3], ORDER.index(kv[0][1]) if kv[0][1] in ORDER else 99)):
        h2 = label.endswith('-h2')
        n = R.get((pl, 'nginx-h2' if h2 else 'nginx', mode, conns), {})
        ev = out['events'].get((pl, label)) or out['events'].get((pl, 'busbar'))
        per_ev = (r['cpu_us'] / ev) if mode == 'stream' and r.get('cpu_us') and ev else None
        L.append('| %s | %s | %s | %d | %s | %s | %s | %s | %d | %s | %s |' % (
            pl, label, mode, conns, fmt(r['rps']),
            ratio(r['rps'], n.get('rps')) if label not in ('nginx', 'nginx-h2') else '',
            fmt(r['p50']),
            fmt(r['p99']), r['errors'], fmt(r.get('cpu_us'), 1), fmt(per_ev, 2)))
    L.append('')
    L.append('Targets (issue 12) at c=64:')
    L.append('')
    L.append('| figure | placement A | placement B | target |')
    L.append('|---|---|---|---|')

    def rr(pl, a, b, mode, c=64):
        x, y = R.get((pl, a, mode, c), {}), R.get((pl, b, mode, c), {})
        return ratio(x.get('rps'), y.get('rps'))
    for label, a, b, mode, tgt in (
            ('non-stream, default (auth none) / nginx', 'busbar', 'nginx', 'nonstream', '≥ 0.85×'),
            ('non-stream, default (virtual key) / nginx', 'keys', 'nginx', 'nonstream', '≥ 0.85×'),
            ('stream, default (auth none) / nginx', 'busbar', 'nginx', 'stream', '≥ 0.80×'),
            ('stream, default (virtual key) / nginx', 'keys', 'nginx', 'stream', '≥ 0.80×'),
            ('non-stream translated / nginx', 'xlate', 'nginx', 'nonstream', '≥ 0.65×'),
            ('stream translated / nginx', 'xlate', 'nginx', 'stream', '≥ 0.65×'),
            ('HTTP/2 non-stream (h2load), busbar / nginx', 'busbar-h2', 'nginx-h2', 'nonstream',
             '≥ 0.80×'),
            ('HTTP/2 stream (h2load), busbar / nginx', 'busbar-h2', 'nginx-h2', 'stream',
             '≥ 0.80×'),
            ('non-stream governance on / off', 'busbar', 'nogov', 'nonstream', '≥ 0.90×'),
            ('stream governance on / off', 'busbar', 'nogov', 'stream', '≥ 0.90×'),
            ('non-stream cluster / keys', 'cluster', 'keys', 'nonstream', '(report)'),
            ('non-stream observability all on / all off', 'obs-on', 'obs-off', 'nonstream',
             '≥ 0.95×'),
            ('stream observability all on / all off', 'obs-on', 'obs-off', 'stream', '≥ 0.95×'),
            ('non-stream this tree / baseline', 'busbar', 'baseline', 'nonstream', '(report)'),
            ('stream this tree / baseline', 'busbar', 'baseline', 'stream', '(report)')):
        a_, b_ = rr('A', a, b, mode), rr('B', a, b, mode)
        if a_ != '-' or b_ != '-':
            L.append('| %s | %s | %s | %s |' % (label, a_, b_, tgt))
    paired = ['%s %s %s: %s' % (k[0], k[1], k[2], ' / '.join(fmt(x) for x in r['rounds']))
              for k, r in sorted(R.items()) if r.get('rounds')]
    if paired:
        L.append('')
        L.append('Paired figures (%s): each side is the median of %d runs, alternating with '
                 'the other side; RPS of every run, c=64: %s.' % (
                     ', '.join('%s vs %s' % p for p in PAIRS), ROUNDS, '; '.join(paired)))
        L.append('')
    for pl in PLACEMENTS:
        bs, ns = R.get((pl, 'busbar', 'stream', 64), {}), R.get((pl, 'nginx', 'stream', 64), {})
        eb, en = out['events'].get((pl, 'busbar')), out['events'].get((pl, 'nginx'))
        if bs.get('cpu_us') and ns.get('cpu_us') and eb and en:
            L.append('| stream CPU µs per relayed event, busbar / nginx (placement %s) | %s | | '
                     'near nginx |' % (pl, '%.2f / %.2f' % (bs['cpu_us'] / eb,
                                                             ns['cpu_us'] / en)))
    L.append('')
    b1, d1 = R.get(('A', 'busbar', 'nonstream', 1), {}), R.get(('A', 'direct', 'nonstream', 1), {})
    if b1.get('p50') is not None and d1.get('p50') is not None:
        L.append('Latency at c=1 (placement A, %s requests): busbar adds %.0f µs p50 (target ≤ '
                 '30) and %.0f µs p99 (target ≤ 60) over direct; nginx adds %.0f / %.0f µs.' % (
                     b1['requests'], b1['p50'] - d1['p50'], b1['p99'] - d1['p99'],
                     R[('A', 'nginx', 'nonstream', 1)]['p50'] - d1['p50'],
                     R[('A', 'nginx', 'nonstream', 1)]['p99'] - d1['p99']))
        lr = ['%s %s' % (lbl, ', '.join('%s/%s µs (%s req)' % (fmt(a), fmt(b), c)
                                         for a, b, c in R[('A', lbl, 'nonstream', 1)]['lat_rounds']))
              for lbl in LAT_TARGETS if R.get(('A', lbl, 'nonstream', 1), {}).get('lat_rounds')]
        if lr:
            L.append('Each c=1 run, p50/p99 (the figure above takes each target\'s median run by '
                     'p99): %s.' % '; '.join(lr))
    for pl in PLACEMENTS:
        n1, n64 = R.get((pl, 'native2', 'nonstream', 1), {}), R.get((pl, 'native2', 'nonstream',
                                                                         64), {})
        for label, what, tgt in (('lua', 'Lua script', '≤ 5 µs per request'),
                                 ('socket', 'Unix-socket policy', '≤ 50 µs at p50')):
            r1, r64 = R.get((pl, label, 'nonstream', 1), {}), R.get((pl, label, 'nonstream', 64),
                                                                    {})
            if r1.get('p50') is None or n1.get('p50') is None:
                continue
            cpu = (r64['cpu_us'] - n64['cpu_us']) if r64.get('cpu_us') and n64.get('cpu_us') \
                else None
            L.append('Routing policy, %s (placement %s, against the same pool routed natively): '
                     '+%.0f µs p50 and +%.0f µs p99 at c=1, +%s µs CPU per request at c=64, '
                     '%s RPS at c=64 (target %s).' % (
                         what, pl, r1['p50'] - n1['p50'], r1['p99'] - n1['p99'], fmt(cpu, 1),
                         ratio(r64.get('rps'), n64.get('rps')), tgt))
    if 'ttft' in out:
        L.append('Time to first token (median of 2,000 sequential streams; %d alternating rounds, '
                 'each side\'s median round): direct %.0f µs, busbar %.0f µs: +%.0f µs '
                 '(target ≤ 100). Rounds: direct %s, busbar %s µs.' % (
                     len(out['ttft_rounds']['direct']), out['ttft']['direct'],
                     out['ttft']['busbar'], out['ttft']['busbar'] - out['ttft']['direct'],
                     ' / '.join('%.0f' % x for x in out['ttft_rounds']['direct']),
                     ' / '.join('%.0f' % x for x in out['ttft_rounds']['busbar'])))
    if 'idle' in out:
        L.append('Idle RSS, master + %d worker(s): %.1f MiB (auth none), %.1f MiB (virtual keys); '
                 'PSS %.1f MiB (target ≤ 8 MiB RSS).' % (
                     WORKERS, out['idle']['busbar'][0] / 1024, out['idle']['keys'][0] / 1024,
                     out['idle']['busbar'][1] / 1024))
    if 'held' in out:
        before, during, n = out['held']
        L.append('%d concurrent slow streams held open: RSS %.1f → %.1f MiB, %.1f MiB per 1,000 '
                 'streams (target ≤ 12).' % (n, before / 1024, during / 1024,
                                              (during - before) / 1024 * 1000 / max(n, 1)))
    if 'after_load' in out:
        a = out['after_load']
        L.append('After the load: busbar RSS %.1f MiB (PSS %.1f), nginx RSS %.1f MiB (PSS %.1f).'
                 % (a['busbar'][0] / 1024, a['busbar'][1] / 1024, a['nginx'][0] / 1024,
                    a['nginx'][1] / 1024))
    return '\n'.join(L) + '\n'


ORDER = ['direct', 'nginx', 'busbar', 'keys', 'nogov', 'xlate', 'cluster', 'obs-off', 'obs-on',
         'baseline', 'nginx-h2', 'busbar-h2', 'native2', 'lua', 'socket']


def main():
    lim = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lim[1], lim[1]))
    out = {'runs': {}, 'events': {}, 'date': datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}
    try:
        for pl in PLACEMENTS:
            run_placement(pl, out)
    finally:
        stop_all()
        if not os.environ.get('BENCH_KEEP'):
            shutil.rmtree(TMP, ignore_errors=True)
        else:
            log('kept %s' % TMP)
    text = report(out)
    print(text)
    d = os.path.join(ROOT, 'bench', 'results')
    os.makedirs(d, exist_ok=True)
    # a partial run (BENCH_ONLY) does not replace the day's full table
    path = os.path.join(d, '%s%s.md' % (out['date'].split()[0],
                                        '-' + '-'.join(sorted(ONLY)) if ONLY else ''))
    open(path, 'w').write(text)
    log('written to %s' % os.path.relpath(path, ROOT))
    micro = os.path.join(REL, 'bench', 'bb-micro')
    if os.access(micro, os.X_OK):
        subprocess.run([micro])
    gov = os.path.join(REL, 'bench', 'bb-gov-bench')
    if os.access(gov, os.X_OK):
        subprocess.run([gov, '200000', '512'])


if __name__ == '__main__':
    main()
