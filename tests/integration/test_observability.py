#!/usr/bin/env python3
"""Observability (SPEC §8): GET /metrics summed across workers and kept across a worker
respawn and a reload, checked by the real `promtool check metrics`; the admin token and
observability.metrics_listen; the per-key series cap; x-busbar-overhead-us; the access log
(fields, lanes tried, SIGUSR1 reopen) and that no log or export carries a secret or the prompt;
OTLP/HTTP JSON spans (OTLP JSON mapping, GenAI attribute names, W3C traceparent in and out);
the audit webhook against receivers that are slow, down and answering 500."""

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import (SOURCE_ROOT, TEST_KEY, check, eq, fail, free_port, lane, pool, provider,
                     request, run, scaled, wait_for)

ADMIN_TOKEN = 'admin-token-0123456789abcdef'
PROMPT = 'the secret prompt text ZEBRA-4471 never logged'


def promtool():
    p = shutil.which('promtool')
    check(p, 'promtool is missing (Debian package prometheus; tests/run.sh installs it)')
    return p


class Receiver:
    """A small HTTP receiver (OTLP collector or audit webhook): records JSON bodies of POSTs.
    mode: 'ok' (200), 'slow' (sleeps delay s, then 200), '500'."""

    def __init__(self, ctx, mode='ok', delay=0.0, keepalive=False):
        self.mode, self.delay = mode, delay
        self.bodies, self.headers, self.peers = [], [], []
        self.lock = threading.Lock()
        rec = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get('content-length') or 0)
                data = self.rfile.read(n)
                with rec.lock:
                    rec.bodies.append(data)
                    rec.headers.append(dict(self.headers))
                    rec.peers.append(self.client_address)
                if rec.mode == 'slow':
                    time.sleep(rec.delay)
                code = 500 if rec.mode == '500' else 200
                self.send_response(code)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', '2')
                self.end_headers()
                self.wfile.write(b'{}')

            def log_message(self, *a):
                pass

        if keepalive:  # HTTP/1.1: the connection stays open between POSTs
            H.protocol_version = 'HTTP/1.1'
        self.srv = ThreadingHTTPServer(('127.0.0.1', 0), H)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        ctx.on_close(self.close)

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()

    def json_bodies(self):
        with self.lock:
            return [json.loads(b) for b in self.bodies]

    def otlp_bodies(self, ctx):
        """The bodies as OTLP/JSON: protobuf ones decoded by the OpenTelemetry JS project's
        generated OTLP types (tests/sdk/otlp_decode.mjs)."""
        with self.lock:
            bodies = list(self.bodies)
            ctype = self.headers[0].get('Content-Type') if self.headers else None
        if ctype == 'application/json':
            return [json.loads(b) for b in bodies]
        eq(ctype, 'application/x-protobuf', 'OTLP content type')
        node = shutil.which('node')
        check(node, 'node is not installed: run `bash tests/run.sh` (it installs nodejs)')
        sdk = os.path.join(SOURCE_ROOT, 'tests', 'sdk')
        check(os.path.isdir(os.path.join(sdk, 'node_modules', '@opentelemetry',
                                         'otlp-transformer')),
              'tests/sdk/node_modules lacks @opentelemetry/otlp-transformer: run '
              '`npm ci --prefix tests/sdk`')
        files = []
        for i, b in enumerate(bodies):
            f = os.path.join(ctx.tmp, 'otlp-%d.pb' % i)
            with open(f, 'wb') as fh:
                fh.write(b)
            files.append(f)
        r = subprocess.run([node, os.path.join(sdk, 'otlp_decode.mjs')] + files, cwd=sdk,
                           capture_output=True, text=True, timeout=scaled(60))
        check(r.returncode == 0, 'otlp_decode.mjs failed: %s' % r.stderr[-2000:])
        return json.loads(r.stdout)


def scrape(bb, path='/metrics', port=None, headers=None):
    r = request(port or bb.port, 'GET', path, headers=headers)
    eq(r.status, 200, 'GET /metrics status (body %r)' % r.body[:200])
    check(r.headers.get('content-type', '').startswith('text/plain; version=0.0.4'),
          'metrics content type %r' % r.headers.get('content-type'))
    return r.text


def value(text, name, **labels):
    """The sample of name whose labels include labels; None when absent."""
    for ln in text.splitlines():
        if ln.startswith('#'):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', ln)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ''))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return None


def promtool_check(ctx, text):
    p = subprocess.run([promtool(), 'check', 'metrics'], input=text, capture_output=True,
                       text=True, timeout=scaled(30))
    eq(p.returncode, 0, 'promtool check metrics exit code (output %r)' % (p.stdout + p.stderr))


def failover_conf(m, **obs):
    return {
        'providers': {'mock': provider(m), 'anth': dict(provider(m), protocol='anthropic')},
        'models': {'bad': lane('mock', 'm;status=503'), 'good': lane('mock', 'm'),
                   'claude': lane('anth', 'c')},
        'pools': {'p': pool(('bad', 5), ('good', 1)), 'q': pool(('claude', 1))},
        'observability': obs,
    }


def test_metrics_summed_and_kept(ctx):
    """Two workers add into one set of counters: every scrape (whichever worker answers) sees
    them all; a killed worker's respawn and a reload keep them."""
    m = ctx.mock()
    conf = failover_conf(m)
    bb = ctx.busbar(conf, workers=2)
    n = 8
    for _ in range(n):
        r = bb.chat('p')
        eq(r.status, 200, 'chat status')
    eq(bb.chat('q').status, 200, 'translated chat status')
    texts = [scrape(bb) for _ in range(6)]
    for t in texts:
        eq(value(t, 'busbar_requests_total', pool='p', outcome='ok', ingress_protocol='openai'),
           n, 'requests_total{pool=p,outcome=ok} in every scrape')
    t = texts[-1]
    promtool_check(ctx, t)
    check(value(t, 'busbar_failovers_total', pool='p', reason='server_error') >= 1,
          'failovers_total{reason=server_error} counted')
    check(value(t, 'busbar_upstream_failures_total', pool='p', lane='bad',
                **{'class': 'server_error'}) >= 1, 'upstream_failures_total counted')
    eq(value(t, 'busbar_upstream_attempts_total', pool='p', lane='good'), n, 'attempts on good')
    eq(value(t, 'busbar_translations_total', **{'from': 'openai', 'to': 'anthropic'}), 1,
       'translations_total openai -> anthropic')
    eq(value(t, 'busbar_request_duration_seconds_count', pool='p'), n, 'duration count')
    eq(value(t, 'busbar_overhead_seconds_count', pool='p'), n, 'overhead count')
    eq(value(t, 'busbar_request_duration_seconds_bucket', pool='p', le='+Inf'), n,
       'duration +Inf bucket')
    check(value(t, 'busbar_tokens_total', lane='good', tier='output') > 0, 'output tokens')
    eq(value(t, 'busbar_workers'), 2, 'busbar_workers')
    check(value(t, 'busbar_lane_state', pool='p', lane='bad') is not None, 'lane_state series')
    for ln in t.splitlines():   # labels are configured names only
        for v in re.findall(r'(?:pool|lane)="([^"]*)"', ln):
            check(v in ('p', 'q', 'bad', 'good', 'claude', '_none'), 'label value %r' % v)

    victim = bb.workers()[0]
    os.kill(victim, signal.SIGKILL)
    bb.allow_log(r'worker .* (killed|signal)')
    bb.wait_workers(2, timeout=15, exclude=[victim])
    eq(value(scrape(bb), 'busbar_requests_total', pool='p', outcome='ok'), n,
       'requests_total after a worker respawn')

    conf2 = failover_conf(m)
    conf2['models']['extra'] = lane('mock', 'm')
    conf2['pools']['p'] = pool(('bad', 5), ('good', 1), ('extra', 1))
    full = dict(bb.conf)
    full.update(conf2)
    bb.write_config(full)
    old = set(bb.workers())
    bb.reload()
    bb.wait_workers(2, timeout=20, exclude=old)
    t = wait_for(lambda: (lambda s: s if value(s, 'busbar_upstream_attempts_total', pool='p',
                                               lane='extra') is not None else None)(scrape(bb)),
                 10, 'the reloaded configuration in /metrics')
    eq(value(t, 'busbar_requests_total', pool='p', outcome='ok'), n, 'requests_total after reload')
    eq(bb.chat('p').status, 200, 'chat after reload')
    eq(value(scrape(bb), 'busbar_requests_total', pool='p', outcome='ok'), n + 1,
       'requests_total counts on after reload')


def test_metrics_token_and_listen(ctx):
    """With admin.token_env set, /metrics needs the token; metrics_listen moves /metrics off the
    data plane to the master's own listener."""
    m = ctx.mock()
    aport = free_port()
    conf = failover_conf(m)
    conf['admin'] = {'listen': '127.0.0.1:%d' % aport, 'token_env': 'BB_ADMIN_TOKEN',
                     'socket': ctx.path('busbar-admin.sock')}
    bb = ctx.busbar(conf, env={'BB_ADMIN_TOKEN': ADMIN_TOKEN})
    eq(bb.chat('p').status, 200, 'chat')
    r = bb.request('GET', '/metrics')
    eq(r.status, 401, '/metrics without the admin token')
    r = bb.request('GET', '/metrics', headers={'Authorization': 'Bearer wrong-token-xxxxxxxx'})
    eq(r.status, 401, '/metrics with a wrong token')
    t = scrape(bb, headers={'Authorization': 'Bearer ' + ADMIN_TOKEN})
    eq(value(t, 'busbar_requests_total', pool='p', outcome='ok'), 1, 'requests_total')

    mport = free_port()
    conf2 = failover_conf(m, metrics_listen='127.0.0.1:%d' % mport)
    bb2 = ctx.busbar(conf2, name='bb2')
    eq(bb2.chat('p').status, 200, 'chat')
    eq(bb2.request('GET', '/metrics').status, 404, 'data-plane /metrics with metrics_listen')
    t = wait_for(lambda: scrape(bb2, port=mport), 5, 'metrics on metrics_listen')
    eq(value(t, 'busbar_requests_total', pool='p', outcome='ok'), 1, 'metrics_listen counts')
    promtool_check(ctx, t)
    eq(request(mport, 'GET', '/status').status, 404, 'metrics_listen serves /metrics only')


def test_key_series_capped(ctx):
    """key_series_max: 2 with three keys: two per-key series, the third under key="_other"."""
    m = ctx.mock()
    conf = failover_conf(m, key_series_max=2)
    conf['auth'] = {'mode': 'keys'}
    conf['models']['good'] = lane('mock', 'm', price={'input': 1.0, 'output': 2.0})
    bb = ctx.busbar(conf)
    keys = []
    for i in range(3):
        p = bb.ctl('--json', 'keys', 'create', '--name', 'k%d' % i)
        eq(p.returncode, 0, 'keys create (%s)' % p.stderr[-300:])
        keys.append(json.loads(p.stdout))
    for k in keys:
        eq(bb.chat('p', headers={'Authorization': 'Bearer ' + k['secret']}).status, 200,
           'chat with a key')
    t = scrape(bb)
    series = re.findall(r'^busbar_key_spend_usd\{key="([^"]+)"\} (\S+)$', t, re.M)
    ids = [s for s, _ in series]
    eq(len(ids), 3, 'key series (two keys + _other): %r' % ids)
    check('_other' in ids, '_other series: %r' % ids)
    for s, v in series:
        check(float(v) > 0, 'spend of %s is %s' % (s, v))
    eq(sorted(x for x in ids if x != '_other'), sorted(k['id'] for k in keys[:2]),
       'the first two keys have their own series')
    promtool_check(ctx, t)


def test_overhead_header(ctx):
    """x-busbar-overhead-us: present when on, absent when off, and busbar's own time only: an
    upstream that takes 300 ms does not show in it."""
    m = ctx.mock()
    conf = failover_conf(m, overhead_header=True)
    conf['models']['slow'] = lane('mock', 'm;slowfirst=300')
    conf['pools']['s'] = pool(('slow', 1))
    bb = ctx.busbar(conf)
    for model in ('q', 's'):
        t0 = time.monotonic()
        r = bb.chat(model)
        total_us = (time.monotonic() - t0) * 1e6
        eq(r.status, 200, 'status')
        h = r.headers.get('x-busbar-overhead-us')
        check(h is not None and h.isdigit(), 'x-busbar-overhead-us present: %r' % h)
        check(int(h) < total_us, 'overhead %s us smaller than the total %.0f us' % (h, total_us))
        if model == 's':
            check(total_us > 300000, 'the slow upstream took its time (%.0f us)' % total_us)
            check(int(h) < scaled(50000), 'upstream time excluded: overhead %s us' % h)
    bb2 = ctx.busbar(failover_conf(m, overhead_header=False), name='bb2')
    r = bb2.chat('q')
    eq(r.status, 200, 'status')
    check('x-busbar-overhead-us' not in r.headers, 'no x-busbar-overhead-us when off')


def test_access_log_and_no_secrets(ctx):
    """One JSON line per request with the lanes tried; SIGUSR1 reopens the file; no log and no
    export carries the provider key, the client key or the prompt."""
    m = ctx.mock()
    otlp, audit = Receiver(ctx), Receiver(ctx)
    logp = ctx.path('access.log')
    conf = failover_conf(m, access_log=logp,
                         otlp_endpoint='http://127.0.0.1:%d/v1/traces' % otlp.port,
                         request_log_webhook_url='http://127.0.0.1:%d/audit' % audit.port)
    conf['auth'] = {'mode': 'keys'}
    bb = ctx.busbar(conf, workers=2)
    p = bb.ctl('--json', 'keys', 'create', '--name', 'logtest')
    eq(p.returncode, 0, 'keys create')
    key = json.loads(p.stdout)
    auth = {'Authorization': 'Bearer ' + key['secret']}
    msgs = [{'role': 'user', 'content': PROMPT}]
    eq(bb.chat('p', messages=msgs, headers=auth).status, 200, 'failover chat')
    c, r = bb.stream('q', messages=msgs, headers=auth)
    r.read()
    eq(r.status, 200, 'stream status')
    eq(bb.chat('nope', messages=msgs, headers=auth).status, 404, 'unknown model')

    def lines():
        try:
            with open(logp) as f:
                return [json.loads(x) for x in f if x.strip()]
        except FileNotFoundError:
            return []
    ls = wait_for(lambda: (lambda x: x if len(x) >= 3 else None)(lines()), 5, '3 access log lines')
    first = next(x for x in ls if x['pool'] == 'p')
    for k in ('ts', 'request_id', 'key_id', 'ingress', 'pool', 'lanes', 'status', 'outcome',
              'tokens', 'cost_usd', 'latency_ms', 'overhead_us', 'continued', 'attempts'):
        check(k in first, 'access log field %s missing: %r' % (k, first))
    eq(first['key_id'], key['id'], 'key_id')
    eq(first['status'], 200, 'status')
    eq(first['outcome'], 'ok', 'outcome')
    eq([(x['lane'], x['result']) for x in first['lanes']], [('bad', 'failed'), ('good', 'ok')],
       'lanes tried with their outcome')
    eq(first['lanes'][0].get('class'), 'server_error', 'failure class of the first lane')
    eq(first['continued'], False, 'continued flag')
    check(first['tokens']['output'] > 0, 'tokens')
    stream = next(x for x in ls if x['pool'] == 'q')
    eq(stream['stream'], True, 'stream flag')
    check(stream['ttft_ms'] is not None, 'ttft_ms of a stream')
    eq(next(x for x in ls if x['pool'] == '_none')['status'], 404, 'unrouted request logged')

    os.rename(logp, logp + '.1')
    bb.kill(signal.SIGUSR1)
    bb.wait_log(r'log reopened')
    time.sleep(scaled(0.3))  # workers take SIGUSR1 from the master
    eq(bb.chat('p', messages=msgs, headers=auth).status, 200, 'chat after SIGUSR1')
    wait_for(lambda: os.path.exists(logp) and lines(), 5, 'a line in the reopened access log')

    wait_for(lambda: otlp.bodies and audit.bodies, 5, 'OTLP and audit exports')
    time.sleep(scaled(1.2))
    scraped = scrape(bb)
    blobs = {'access log': open(logp + '.1').read() + open(logp).read(), 'busbar log': bb.log(),
             'metrics': scraped,
             'otlp': b''.join(otlp.bodies).decode('latin-1'), 'audit': b''.join(audit.bodies).decode()}
    for what, text in blobs.items():
        for secret, name in ((TEST_KEY, 'provider key'), (key['secret'], 'client key'),
                             ('ZEBRA-4471', 'prompt text')):
            check(secret not in text, '%s found in the %s' % (name, what))


def test_otlp_spans(ctx):
    """Spans with GenAI attributes in both OTLP/HTTP encodings: JSON per the OTLP JSON mapping,
    and protobuf (the default) decoded by the OpenTelemetry project's OTLP types; the
    client's traceparent is the parent; the upstream gets a traceparent of the same trace
    naming the attempt's span."""
    for proto in ('http/json', None):
        otlp_spans(ctx, proto)


def otlp_spans(ctx, proto):
    m = ctx.mock()
    otlp = Receiver(ctx)
    obs = {'otlp_endpoint': 'http://127.0.0.1:%d/v1/traces' % otlp.port}
    if proto:
        obs['otlp_protocol'] = proto
    conf = failover_conf(m, **obs)
    conf['models']['good']['price'] = {'input': 3, 'output': 15}  # busbar.cost_usd, a double
    bb = ctx.busbar(conf, name='bb-%s' % (proto or 'default').replace('/', '-'))
    trace, parent = '4bf92f3577b34da6a3ce929d0e0e4736', '00f067aa0ba902b7'
    m.reset()
    r = bb.chat('p', headers={'traceparent': '00-%s-%s-01' % (trace, parent)})
    eq(r.status, 200, 'chat')
    wait_for(lambda: otlp.bodies, 5, 'an OTLP export')
    spans = []
    eq(otlp.headers[0].get('Content-Type'),
       'application/json' if proto == 'http/json' else 'application/x-protobuf',
       'OTLP content type (%s)' % (proto or 'default'))
    for b in otlp.otlp_bodies(ctx):
        rs = b['resourceSpans']
        attrs = {a['key']: a['value'] for a in rs[0]['resource']['attributes']}
        eq(attrs['service.name'], {'stringValue': 'busbar'}, 'service.name')
        for ss in rs[0]['scopeSpans']:
            eq(ss['scope']['name'], 'busbar', 'scope name')
            spans += ss['spans']
    eq(len(spans), 3, 'one request span and two attempt spans: %r' % spans)
    for s in spans:
        eq(s['traceId'], trace, 'traceId (from the client traceparent)')
        check(re.fullmatch(r'[0-9a-f]{16}', s['spanId']), 'spanId hex: %r' % s['spanId'])
        check(re.fullmatch(r'\d+', s['startTimeUnixNano']) and
              re.fullmatch(r'\d+', s['endTimeUnixNano']), 'times as decimal strings')
        check(int(s['endTimeUnixNano']) >= int(s['startTimeUnixNano']), 'end >= start')
        for a in s['attributes']:
            (vk, vv), = a['value'].items()
            check(vk in ('stringValue', 'intValue', 'doubleValue', 'boolValue'), 'value %r' % a)
            if vk == 'intValue':
                check(isinstance(vv, str) and vv.isdigit(), 'intValue as a decimal string')
    root = next(s for s in spans if s['kind'] == 2)
    eq(root['parentSpanId'], parent, 'request span parent = the client span')
    eq(root['name'], 'chat p', 'request span name')
    kids = [s for s in spans if s['kind'] == 3]
    eq(len(kids), 2, 'client spans')
    eq(sorted(k['name'] for k in kids), ['chat m', 'chat m;status=503'], 'attempt span names')
    a = {x['key']: list(x['value'].values())[0] for x in root['attributes']}
    eq(a['gen_ai.operation.name'], 'chat', 'gen_ai.operation.name')
    eq(a['gen_ai.request.model'], 'p', 'gen_ai.request.model')
    eq(a['gen_ai.response.model'], 'm', 'gen_ai.response.model')
    eq(a['gen_ai.provider.name'], 'openai', 'gen_ai.provider.name')
    eq(a['gen_ai.system'], 'openai', 'gen_ai.system')
    check(int(a['gen_ai.usage.input_tokens']) > 0, 'gen_ai.usage.input_tokens')
    check(int(a['gen_ai.usage.output_tokens']) > 0, 'gen_ai.usage.output_tokens')
    eq(a['http.response.status_code'], '200', 'http.response.status_code')
    tin, tout = int(a['gen_ai.usage.input_tokens']), int(a['gen_ai.usage.output_tokens'])
    dbl = next(x['value'] for x in root['attributes'] if x['key'] == 'busbar.cost_usd')
    check(abs(float(dbl['doubleValue']) - (tin * 3 + tout * 15) / 1e6) < 1e-12,
          'busbar.cost_usd as a double: %r (tokens %d / %d)' % (dbl, tin, tout))
    for k in kids:
        eq(k['parentSpanId'], root['spanId'], 'attempt span parent = request span')
    ka = [{x['key']: list(x['value'].values())[0] for x in k['attributes']} for k in kids]
    eq(sorted(x['busbar.lane'] for x in ka), ['bad', 'good'], 'attempt lanes')
    bad = next(x for x in ka if x['busbar.lane'] == 'bad')
    eq(bad['error.type'], 'server_error', 'error.type of the failed attempt')
    failed = next(k for k in kids if 'error.type' in {x['key'] for x in k['attributes']})
    eq(failed['status']['code'], 2, 'error status code')
    eq(failed['status']['message'], 'server_error', 'error status message')
    check('status' not in root, 'the request span succeeded: %r' % root.get('status'))
    att = m.attempts()
    eq(len(att), 2, 'upstream attempts')
    for up in att:
        tp = up['headers'].get('traceparent')
        check(tp, 'traceparent sent upstream: %r' % up['headers'])
        tv, tt, ts, tf = tp.split('-')
        eq((tv, tt, tf), ('00', trace, '01'), 'upstream traceparent trace')
        check(ts in [k['spanId'] for k in kids], 'upstream parent id = the attempt span')

    if proto:
        return
    # an unreachable collector costs only a drop counter
    dead = free_port()
    bb2 = ctx.busbar(failover_conf(m, otlp_endpoint='http://127.0.0.1:%d/v1/traces' % dead),
                     name='bb2')
    bb2.allow_log(r'traces: a batch was dropped')
    for _ in range(5):
        eq(bb2.chat('q').status, 200, 'chat with the collector down')
    wait_for(lambda: (value(scrape(bb2), 'busbar_trace_spans_dropped_total') or 0) >= 10, 5,
             'dropped spans counted')


def test_export_keepalive(ctx):
    """Under load, batches of spans go out as they fill, one after another on one kept-alive
    connection (a connection per POST would be a TLS handshake per batch)."""
    m = ctx.mock()
    col = Receiver(ctx, keepalive=True)
    bb = ctx.busbar(failover_conf(m, otlp_endpoint='http://127.0.0.1:%d/v1/traces' % col.port))
    import http.client
    conn = http.client.HTTPConnection('127.0.0.1', bb.port, timeout=scaled(10))
    for _ in range(150):  # two or three spans each (the bad lane's breaker opens): 300+
        eq(bb.chat('p', conn=conn).status, 200, 'chat')
    conn.close()
    wait_for(lambda: (value(scrape(bb), 'busbar_trace_spans_exported_total') or 0) >= 300, 10,
             'every span exported')
    posts = len(col.bodies)
    check(posts >= 3, 'spans went out in several batches as they filled: %d POSTs' % posts)
    peers = set(col.peers)
    check(len(peers) == 1, '%d POSTs came on %d connections (%r)' % (posts, len(peers), peers))


def test_audit_webhook(ctx):
    """Records arrive batched; a slow receiver bounds what is in flight (the rest is dropped and
    counted, requests stay fast); a receiver that is down or answers 500 only costs drops."""
    m = ctx.mock()
    ok = Receiver(ctx)
    bb = ctx.busbar(failover_conf(m, request_log_webhook_url='http://127.0.0.1:%d/a' % ok.port))
    for _ in range(3):
        eq(bb.chat('p').status, 200, 'chat')
    wait_for(lambda: sum(len(b) for b in ok.json_bodies()) >= 3, 5, '3 audit records')
    recs = [r for b in ok.json_bodies() for r in b]
    eq(recs[0]['pool'], 'p', 'record pool')
    eq([x['lane'] for x in recs[0]['lanes']][-1], 'good', 'record lanes')
    wait_for(lambda: value(scrape(bb), 'busbar_audit_records_sent_total') == 3, 5, 'sent count')

    slow = Receiver(ctx, 'slow', delay=8.0)
    bb2 = ctx.busbar(failover_conf(m, request_log_webhook_url='http://127.0.0.1:%d/a' % slow.port),
                     name='bb2')
    t0 = time.monotonic()
    n = 1200  # batches of 64 go out at once, but only one POST may be in flight; the queue
    conn = None  # holds 1024 records: beyond that they are dropped and counted
    import http.client
    conn = http.client.HTTPConnection('127.0.0.1', bb2.port, timeout=scaled(10))
    for _ in range(n):
        eq(bb2.chat('q', conn=conn).status, 200, 'chat with a slow webhook')
    conn.close()
    took = time.monotonic() - t0
    check(len(slow.bodies) <= 1, 'at most one POST in flight per worker: %d' % len(slow.bodies))
    check(took < scaled(8), 'requests are not held by a slow webhook (%.1fs)' % took)
    dropped = wait_for(lambda: value(scrape(bb2), 'busbar_audit_records_dropped_total'), 5,
                       'dropped records counted under saturation')
    check(dropped >= n - 64 - 1024, 'dropped %r of %d under saturation' % (dropped, n))

    for mode in ('down', '500'):
        if mode == 'down':
            url = 'http://127.0.0.1:%d/a' % free_port()
        else:
            url = 'http://127.0.0.1:%d/a' % Receiver(ctx, '500').port
        b = ctx.busbar(failover_conf(m, request_log_webhook_url=url), name='bb-' + mode)
        b.allow_log(r'audit webhook: a batch was dropped')
        for _ in range(3):
            eq(b.chat('q').status, 200, 'chat with the webhook %s' % mode)
        wait_for(lambda: (value(scrape(b), 'busbar_audit_records_dropped_total') or 0) >= 3, 5,
                 'dropped records counted (webhook %s)' % mode)
        eq(value(scrape(b), 'busbar_audit_records_sent_total'), 0, 'nothing sent (%s)' % mode)


if __name__ == '__main__':
    run([test_metrics_summed_and_kept, test_metrics_token_and_listen, test_key_series_capped,
         test_overhead_header, test_access_log_and_no_secrets, test_otlp_spans, test_export_keepalive,
         test_audit_webhook])
