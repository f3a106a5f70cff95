#!/usr/bin/env python3
"""Programmable routing (SPEC §5.5, docs/routing.md): webhook, Unix-socket and Lua-script
policies that order, abstain and reject, and that can never block a request (timeouts,
garbage, unknown members, a closed connection, a dead server, a runaway script: on_error,
counted, circuit-broken); reload to a broken script; and the SSRF guard at connect time
(SPEC §9) for upstreams and webhooks alike, proven with a DNS stub the test controls
(BUSBAR_RESOLV_CONF) that resolves names to 169.254.169.254 and to blocked ranges."""

import http.server
import json
import os
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time

from harness import (SOURCE_ROOT, TEST_KEY_ENV, check, eq, free_port, lane, pool, provider, run,
                     scaled, spawn, validate, wait_for)

POLICIES = os.path.join(SOURCE_ROOT, 'etc', 'policies')


# --------------------------------------------------------------------------------------------
# a webhook the test drives

class Hook:
    """An HTTP/1.1 keep-alive webhook in a thread. answer(call) -> (status, body bytes) or
    None to hang until the test ends."""

    def __init__(self, ctx, answer):
        hook = self
        self.answer = answer
        self.calls = []
        self.connections = 0
        self.release = threading.Event()

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def setup(self):
                hook.connections += 1
                super().setup()

            def do_POST(self):
                n = int(self.headers.get('content-length', '0'))
                call = json.loads(self.rfile.read(n))
                hook.calls.append(call)
                got = hook.answer(call)
                if got is None:
                    hook.release.wait(30)
                    return
                status, body = got
                try:
                    self.send_response(status)
                    self.send_header('content-type', 'application/json')
                    self.send_header('content-length', str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
        self.srv.daemon_threads = True
        self.url = 'http://127.0.0.1:%d/route' % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, args=(0.05,), daemon=True).start()
        ctx.on_close(self.close)

    def close(self):
        self.release.set()
        self.srv.shutdown()
        self.srv.server_close()


def order(*names):
    return lambda call: (200, json.dumps({'order': list(names)}).encode())


def three_lanes(m, **kw):
    return {'a': lane('mock', 'a', **kw.get('a', {})), 'b': lane('mock', 'b', **kw.get('b', {})),
            'c': lane('mock', 'c', **kw.get('c', {}))}


def policy_pool(route, policy, members=(('a', 1), ('b', 1), ('c', 1)), **kw):
    return pool(*members, route=route, policy=policy, **kw)


def served(r):
    return r.headers.get('x-busbar-lane')


def outcomes(bb, p='p'):
    return bb.stats()['pools'][p]['policy']['outcomes']


# --------------------------------------------------------------------------------------------
# webhook

def test_webhook_orders(ctx):
    m = ctx.mock()
    hook = Hook(ctx, order('c', 'a'))
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': three_lanes(m, c={'context_max': 8000, 'price': {'input': 1, 'output': 2}}),
        'pools': {'p': policy_pool('webhook', {'url': hook.url, 'timeout_ms': 2000})},
        'observability': {'access_log': ctx.path('access.log')},
    })
    for i in range(4):
        r = bb.chat('p', headers={'x-busbar-tier': 'gold', 'x-other': 'no'}, max_tokens=77)
        eq(r.status, 200, 'status')
        eq(served(r), 'c', 'the first member of the order served')
        eq(r.headers.get('x-busbar-route-policy'), 'webhook', 'x-busbar-route-policy')
        eq(r.headers.get('x-busbar-route-target'), 'c', 'x-busbar-route-target')
    eq(len(hook.calls), 4, 'one policy call per request')
    eq(hook.connections, 1, 'the webhook connection is kept alive and reused')
    call = hook.calls[0]
    req = call['request']
    eq(req['pool'], 'p', 'request.pool')
    eq(req['model'], 'p', 'request.model')
    eq(req['protocol'], 'openai', 'request.protocol')
    eq(req['stream'], False, 'request.stream')
    eq(req['max_output_tokens'], 77, 'request.max_output_tokens')
    check(req['input_tokens'] > 0, 'request.input_tokens is an estimate')
    eq(req['key'], None, 'no virtual key (auth none)')
    eq(req['headers'], {'x-busbar-tier': 'gold'}, 'only the x-busbar-* headers')
    check('body' not in req, 'no prompt without include_messages')
    names = [c['name'] for c in call['candidates']]
    eq(names, ['a', 'b', 'c'], 'candidates in pool order')
    c = call['candidates'][2]
    eq(c['provider'], 'mock', 'candidate provider')
    eq(c['protocol'], 'openai', 'candidate protocol')
    eq(c['context_max'], 8000, 'candidate context_max')
    eq(c['price'], {'input': 1, 'output': 2}, 'candidate price')
    eq(c['breaker'], 'closed', 'candidate breaker')
    for k in ('weight', 'latency_ms', 'ttft_ms', 'inflight', 'free_slots', 'headroom'):
        check(k in c, 'candidate has %s' % k)
    check(isinstance(call['candidates'][2]['latency_ms'], (int, float)) or
          call['candidates'][2]['latency_ms'] is None, 'latency_ms is a number or null')
    check(hook.calls[3]['candidates'][2]['latency_ms'] is not None,
          'the latency EWMA is known after c served')
    for k in ('time', 'budget_remaining_usd', 'rpm_remaining', 'tpm_remaining'):
        check(k in call['context'], 'context has %s' % k)
    eq(outcomes(bb)['order'], 4, '/stats counts the orders')
    text = bb.request('GET', '/metrics').text
    check('busbar_route_policy_total{pool="p",outcome="order"} 4' in text,
          'metrics count the outcome: %s' % [ln for ln in text.splitlines() if 'route_policy' in ln])
    wait_for(lambda: os.path.exists(ctx.path('access.log')) and
             open(ctx.path('access.log')).read().count('"route_policy":"webhook"') == 4, 5,
             'the access log to show the policy')
    line = json.loads(open(ctx.path('access.log')).read().splitlines()[0])
    eq(line.get('policy_outcome'), 'order', 'access log policy_outcome')


def test_webhook_order_demotes_never_drops(ctx):
    m = ctx.mock()
    hook = Hook(ctx, order('b'))
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': {'a': lane('mock', 'a;status=503'), 'b': lane('mock', 'b;status=503'),
                   'c': lane('mock', 'c')},
        'pools': {'p': policy_pool('webhook', {'url': hook.url, 'timeout_ms': 2000},
                                   breaker={'trip': {'mode': 'consecutive',
                                                     'consecutive_n': 100}})},
    })
    r = bb.chat('p')
    eq(r.status, 200, 'status')
    eq(served(r), 'c', 'the members the order left out were still tried')
    first = [a['model'] for a in m.attempts()][0]
    eq(first, 'b;status=503', 'the ordered member went first')
    eq(r.headers.get('x-busbar-route-target'), 'b', 'the target is what the policy chose')


def test_webhook_abstains(ctx):
    m = ctx.mock()
    hook = Hook(ctx, lambda call: (200, b'{"abstain": true}'))
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': three_lanes(m),
        'pools': {'p': policy_pool('webhook', {'url': hook.url, 'timeout_ms': 2000},
                                   members=(('a', 2), ('b', 1)))},
    })
    lanes = [served(bb.chat('p')) for _ in range(6)]
    eq(lanes, ['a', 'b', 'a', 'a', 'b', 'a'], 'the native weighted route (SWRR 2:1)')
    r = bb.chat('p')
    eq(r.headers.get('x-busbar-route-policy'), 'native', 'x-busbar-route-policy')
    eq(outcomes(bb)['abstain'], 7, 'abstentions counted')


def test_webhook_rejects_451(ctx):
    m = ctx.mock()
    hook = Hook(ctx, lambda call: (200, json.dumps({'reject': {
        'status': 451, 'message': 'not in this region'}}).encode()))
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': three_lanes(m),
        'pools': {'p': policy_pool('webhook', {'url': hook.url, 'timeout_ms': 2000})},
    })
    r = bb.chat('p')
    eq(r.status, 451, 'the policy status reaches the client')
    eq(r.json()['error']['message'], 'not in this region', 'OpenAI-shaped error with the message')
    eq(r.headers.get('x-busbar-route-policy'), 'webhook', 'x-busbar-route-policy')
    body = {'model': 'p', 'max_tokens': 10, 'messages': [{'role': 'user', 'content': 'hi'}]}
    r = bb.request('POST', '/v1/messages', body, headers={'anthropic-version': '2023-06-01'})
    eq(r.status, 451, 'Anthropic client: status')
    eq(r.json().get('type'), 'error', 'Anthropic-shaped error')
    eq(r.json()['error']['message'], 'not in this region', 'Anthropic error message')
    eq(m.attempts(), [], 'no upstream attempt for a rejected request')
    eq(outcomes(bb)['reject'], 2, 'rejections counted')


def test_webhook_hangs_then_circuit_breaks(ctx):
    m = ctx.mock()
    hook = Hook(ctx, lambda call: None)
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': three_lanes(m),
        'pools': {'p': policy_pool('webhook', {'url': hook.url, 'timeout_ms': 100})},
    })
    bb.allow_log(r'routing policy failed')
    for i in range(5):
        t0 = time.monotonic()
        r = bb.chat('p')
        dt = time.monotonic() - t0
        eq(r.status, 200, 'served although the webhook hangs')
        eq(r.headers.get('x-busbar-route-policy'), 'fallback', 'x-busbar-route-policy')
        check(dt < scaled(1.0), 'the hung webhook held the request %.3fs (timeout 0.1s)' % dt)
    eq(outcomes(bb)['timeout'], 5, 'timeouts counted')
    # five failures in a row: the policy is skipped for a cooldown, costing nothing
    t0 = time.monotonic()
    for i in range(5):
        r = bb.chat('p')
        eq(r.headers.get('x-busbar-route-policy'), 'fallback', 'skipped policy: fallback')
    dt = time.monotonic() - t0
    check(dt < scaled(0.5), 'skipped calls cost nothing (5 requests took %.3fs)' % dt)
    st = bb.stats()['pools']['p']['policy']
    eq(st['outcomes']['skipped'], 5, 'skipped calls counted')
    eq(st['circuit'], 'open', 'the circuit is open')
    eq(len(hook.calls), 5, 'the circuit-broken webhook was not called')
    bb.wait_log(r'routing policy failed 5 times in a row', 5)


def test_webhook_garbage_falls_back_first(ctx):
    m = ctx.mock()
    hook = Hook(ctx, lambda call: (200, b'this is not json'))
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': three_lanes(m),
        'pools': {'p': policy_pool('webhook', {'url': hook.url, 'timeout_ms': 2000,
                                               'on_error': 'first'},
                                   members=(('b', 1), ('a', 5), ('c', 1)))},
    })
    for i in range(3):
        r = bb.chat('p')
        eq(r.status, 200, 'status')
        eq(served(r), 'b', 'on_error: first takes the configured order')
        eq(r.headers.get('x-busbar-route-policy'), 'fallback', 'x-busbar-route-policy')
    eq(outcomes(bb)['invalid'], 3, 'garbage counted as invalid')


def test_webhook_unknown_members(ctx):
    m = ctx.mock()
    hook = Hook(ctx, order('a', 'nonesuch'))
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': three_lanes(m),
        'pools': {'p': policy_pool('webhook', {'url': hook.url, 'timeout_ms': 2000},
                                   members=(('a', 1), ('b', 3)))},
    })
    lanes = [served(bb.chat('p')) for _ in range(4)]
    eq(lanes, ['b', 'a', 'b', 'b'], 'on_error: weighted (SWRR 1:3), the answer ignored')
    eq(outcomes(bb)['invalid'], 4, 'unknown members counted as invalid')
    r = bb.chat('p')
    eq(r.headers.get('x-busbar-route-policy'), 'fallback', 'x-busbar-route-policy')


def test_webhook_down_on_error_reject(ctx):
    m = ctx.mock()
    port = free_port()  # nothing listens there
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': three_lanes(m),
        'pools': {'p': policy_pool('webhook', {'url': 'http://127.0.0.1:%d/' % port,
                                               'on_error': 'reject'})},
    })
    bb.allow_log(r'routing policy failed')
    r = bb.chat('p')
    eq(r.status, 503, 'on_error: reject answers 503')
    eq(r.json()['error']['code'], 'routing_policy_failed', 'error code')
    eq(r.headers.get('x-busbar-route-policy'), 'fallback', 'x-busbar-route-policy')
    eq(m.attempts(), [], 'no upstream attempt')
    eq(outcomes(bb)['error'], 1, 'the dead webhook counted as an error')


def test_webhook_include_messages(ctx):
    m = ctx.mock()
    hook = Hook(ctx, order('a'))
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': three_lanes(m),
        'pools': {'p': policy_pool('webhook', {'url': hook.url, 'timeout_ms': 2000,
                                               'include_messages': True})},
    })
    msgs = [{'role': 'user', 'content': 'line one\nline "two"'}]
    eq(bb.chat('p', messages=msgs).status, 200, 'status')
    eq(hook.calls[0]['request']['body']['messages'], msgs, 'the prompt, with include_messages')


# --------------------------------------------------------------------------------------------
# Unix socket

class SockPolicy:
    """A newline-delimited JSON policy server on a Unix socket. answer(call) -> bytes to send
    (then, when close is set, the connection is closed)."""

    def __init__(self, ctx, answer):
        self.path = ctx.path('policy.sock')
        self.answer = answer
        self.calls = []
        self.connections = 0
        sp = self

        class H(socketserver.StreamRequestHandler):
            def handle(self):
                sp.connections += 1
                for line in self.rfile:
                    call = json.loads(line)
                    sp.calls.append(call)
                    out, close = sp.answer(call)
                    self.wfile.write(out)
                    self.wfile.flush()
                    if close:
                        return

        self.srv = socketserver.ThreadingUnixStreamServer(self.path, H)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, args=(0.05,), daemon=True).start()
        ctx.on_close(self.close)

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def test_socket_orders_and_survives_close_mid_answer(ctx):
    m = ctx.mock()
    n = [0]

    def answer(call):
        n[0] += 1
        if n[0] == 2:  # half an answer, then the server closes the connection
            return b'{"order": ["b"', True
        return json.dumps({'order': ['c']}).encode() + b'\n', False

    sp = SockPolicy(ctx, answer)
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': three_lanes(m),
        'pools': {'p': policy_pool('webhook', {'socket': sp.path, 'timeout_ms': 2000},
                                   members=(('a', 1), ('b', 1), ('c', 1)))},
    })
    r = bb.chat('p')
    eq((r.status, served(r), r.headers.get('x-busbar-route-policy')), (200, 'c', 'socket'),
       'the socket policy ordered c')
    r = bb.chat('p')
    eq(r.status, 200, 'served although the policy closed mid-answer')
    eq(r.headers.get('x-busbar-route-policy'), 'fallback', 'closed mid-answer: fallback')
    for i in range(3):
        r = bb.chat('p')
        eq((served(r), r.headers.get('x-busbar-route-policy')), ('c', 'socket'),
           'reconnected: the policy orders again')
    eq(sp.connections, 2, 'one persistent connection, reopened once after the close')
    o = outcomes(bb)
    eq((o['order'], o['error']), (4, 1), 'outcomes')
    eq(sp.calls[0]['candidates'][0]['name'], 'a', 'the socket gets the same JSON')


# --------------------------------------------------------------------------------------------
# the shipped example webhook (etc/policies/webhook.py), over HTTP and over a Unix socket

def start_example(ctx, *args):
    out = ctx.path('example-%d.out' % len(args))
    p = spawn([sys.executable, os.path.join(POLICIES, 'webhook.py')] + list(args),
              stdout=open(out, 'w'), stderr=subprocess.STDOUT)
    ctx.on_close(p.kill)
    wait_for(lambda: 'ready ' in open(out).read(), 10, 'the example policy to start')
    return open(out).read().split('ready ', 1)[1].split()[0]


def test_shipped_example_webhook(ctx):
    m = ctx.mock()
    url = start_example(ctx, '--listen', '127.0.0.1:%d' % free_port(), '--block-region', 'xx')
    sock = ctx.path('example.sock')
    start_example(ctx, '--socket', sock)
    models = {'slow': lane('mock', 'slow;slowfirst=60'), 'fast': lane('mock', 'fast')}
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': models,
        'pools': {'h': pool(('slow', 1), ('fast', 1), route='webhook',
                            policy={'url': url + 'route', 'timeout_ms': 2000}),
                  's': pool(('slow', 1), ('fast', 1), route='webhook',
                            policy={'socket': sock, 'timeout_ms': 2000})},
    })
    for p in ('h', 's'):
        r = bb.chat(p)
        eq(r.headers.get('x-busbar-route-policy'), 'native', '%s: no latency yet: abstain' % p)
        served(bb.chat(p))  # both lanes have a latency reading after two weighted picks
        lanes = [served(bb.chat(p)) for _ in range(3)]
        eq(lanes, ['fast'] * 3, '%s: the fastest lane first' % p)
    r = bb.chat('h', headers={'x-busbar-region': 'xx'})
    eq(r.status, 451, 'the example rejects a blocked region')
    check('region xx' in r.json()['error']['message'], 'its message: %s' % r.text)


# --------------------------------------------------------------------------------------------
# Lua scripts

def script(ctx, name, text):
    path = ctx.path(name)
    with open(path, 'w') as f:
        f.write(text)
    return path


def script_busbar(ctx, m, path, timeout_ms):
    """busbar with pool p of a, b, c routed by the script at path, on_error: first."""
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': three_lanes(m),
        'pools': {'p': policy_pool('script', {'script_file': path, 'timeout_ms': timeout_ms,
                                              'on_error': 'first'})},
    })
    bb.allow_log(r'routing policy failed')
    return bb


def test_script_routes_by_price(ctx):
    m = ctx.mock()
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': {'pricey': lane('mock', 'pricey', price={'input': 3, 'output': 15}),
                   'cheap': lane('mock', 'cheap;status=503', price={'input': 0.1, 'output': 0.4}),
                   'mid': lane('mock', 'mid', price={'input': 1, 'output': 2})},
        'pools': {'p': pool(('pricey', 5), ('cheap', 1), ('mid', 1), route='script',
                            policy={'script_file': os.path.join(POLICIES, 'cheapest.lua')})},
    })
    r = bb.chat('p')
    eq(r.status, 200, 'status')
    eq(served(r), 'mid', 'the cheapest failed over to the next cheapest')
    eq([a['model'] for a in m.attempts()], ['cheap;status=503', 'mid'], 'tried by price')
    eq(r.headers.get('x-busbar-route-policy'), 'script', 'x-busbar-route-policy')
    eq(r.headers.get('x-busbar-route-target'), 'cheap', 'x-busbar-route-target')
    r = bb.chat('p', headers={'x-busbar-tier': 'premium'})
    eq(r.headers.get('x-busbar-route-policy'), 'native', 'the script abstained for premium')
    eq(outcomes(bb)['order'], 1, 'order counted')


def test_script_infinite_loop_is_cut_off(ctx):
    m = ctx.mock()
    path = script(ctx, 'loop.lua', '''
calls = 0
function route(request, candidates, context)
  calls = calls + 1
  if calls > 1 then
    while true do pcall(function() while true do end end) end
  end
  return { order = { "b" } }
end
''')
    bb = script_busbar(ctx, m, path, 50)
    eq(served(bb.chat('p')), 'b', 'the first call routes')
    for i in range(3):
        t0 = time.monotonic()
        r = bb.chat('p')
        dt = time.monotonic() - t0
        eq((r.status, served(r)), (200, 'a'), 'the runaway script: served by on_error first')
        eq(r.headers.get('x-busbar-route-policy'), 'fallback', 'x-busbar-route-policy')
        check(dt < scaled(0.5), 'the script was cut off within its budget (%.3fs)' % dt)
    o = outcomes(bb)
    eq(o['order'] + o['error'] + o['timeout'], 4, 'outcomes %r' % o)
    check(o['error'] + o['timeout'] == 3, 'the cut-offs counted: %r' % o)
    bb.wait_log(r'request .*: routing policy of pool p: (error|timeout): script: '
                r'(instruction|time) budget exhausted', 5)


def test_script_unbounded_allocation_is_cut_off(ctx):
    m = ctx.mock()
    path = script(ctx, 'alloc.lua', '''
function route(request, candidates, context)
  local t = {}
  local s = "0123456789abcdef"
  for i = 1, 1e9 do t[i] = s .. i end
end
''')
    bb = script_busbar(ctx, m, path, 1000)
    for i in range(2):
        t0 = time.monotonic()
        r = bb.chat('p')
        dt = time.monotonic() - t0
        eq((r.status, served(r)), (200, 'a'), 'served by the fallback')
        check(dt < scaled(1.0), 'cut off in %.3fs' % dt)
    bb.wait_log(r'script: (memory limit reached|instruction budget exhausted)', 5)
    eq(outcomes(bb)['error'], 2, 'counted as errors')


def test_script_sandbox(ctx):
    """What a script cannot reach; each probe's failure is a policy error."""
    m = ctx.mock()
    path = script(ctx, 'probe.lua', '''
local probes = {
  function() return io.open("/etc/passwd") end,
  function() return os.execute("true") end,
  function() return require("os") end,
  function() return load("return 1")() end,
  function() return debug.getinfo(1) end,
  function() return package.loaded end,
  function() return string.match("aaaa", "(a*)*b") end,
  function() return setmetatable({}, { __gc = function() while true do end end }) end,
  function() return string.rep("", 1 << 60) == "" and error("empty rep ran") end,
  function() return table.move({}, 1, 1 << 40, 2) end,
}
n = 0
function route(request, candidates, context)
  n = n + 1
  local ok = pcall(probes[n])
  if ok and n ~= 9 then return { order = { "c" } } end
  return { order = { "b" } }
end
''')
    bb = script_busbar(ctx, m, path, 1000)
    got = [served(bb.chat('p')) for _ in range(10)]
    # each probe fails inside the script (b); table.move's range busts the budget (a)
    eq(got, ['b'] * 9 + ['a'], 'sandbox probes')


def test_script_inputs_are_busbars_each_call(ctx):
    """The input tables are kept between calls (docs/routing.md), but what busbar puts in them
    is set again on every call: a script that vandalizes them, or a header one request sent,
    does not reach the next call."""
    m = ctx.mock()
    path = script(ctx, 'vandal.lua', '''
calls = 0
function route(request, candidates, context)
  calls = calls + 1
  local ok = #candidates == 3 and candidates[1].name == "a" and candidates[1].lane == "a"
    and candidates[2].provider == "mock" and type(candidates[3].weight) == "number"
    and request.model == "p" and request.pool == "p" and type(context.time) == "number"
    and request.headers["x-vandal"] == nil and request.body == nil
    and (calls == 1) == (request.headers["x-busbar-first"] == "yes")
  candidates[1].name, candidates[1].lane, candidates[2].provider = "x", "x", "x"
  candidates[3].weight, candidates[4] = "x", { name = "a" }
  request.model, request.pool, context.time, request.body = "x", "x", "x", "x"
  request.headers["x-vandal"] = "x"
  if not ok then
    return { reject = { status = 451, message = "call " .. calls .. " saw a previous call" } }
  end
  return { order = { "c" } }
end
''')
    bb = script_busbar(ctx, m, path, 1000)
    r = bb.chat('p', headers={'x-busbar-first': 'yes'})
    eq((r.status, served(r)), (200, 'c'), 'first call')
    for i in range(3):
        r = bb.chat('p')
        eq((r.status, served(r)), (200, 'c'), 'call %d sees busbar\'s values only: %s' % (
            i + 2, r.body[:200]))


def test_reload_to_broken_script(ctx):
    m = ctx.mock()
    path = script(ctx, 'route.lua', 'function route(r, c, x) return { order = { "c" } } end\n')
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': three_lanes(m),
        'pools': {'p': policy_pool('script', {'script_file': path})},
    })
    eq(served(bb.chat('p')), 'c', 'the script routes')
    with open(path, 'w') as f:
        f.write('function route(r, c, x)\n  return { order = { "a" }\nend\n')
    bb.allow_log(r'reload|script_file')
    res = bb.ctl('reload')
    check(res.returncode != 0, 'busbarctl reload fails: %s' % res.stdout)
    out = res.stdout + res.stderr
    check('%s.yaml:' % bb.name in out and 'policy.script_file' in out and
          "route.lua:3: '}' expected" in out, 'a located error naming the script: %s' % out)
    eq(served(bb.chat('p')), 'c', 'the old config (and its compiled script) keeps serving')
    with open(path, 'w') as f:
        f.write('function route(r, c, x) return { order = { "a" } } end\n')
    res = bb.ctl('reload')
    eq(res.returncode, 0, 'reload to a fixed script: %s' % (res.stdout + res.stderr))
    wait_for(lambda: served(bb.chat('p')) == 'a', 10, 'the new script to route')


def test_validate_policy_errors(ctx):
    bad = script(ctx, 'bad.lua', 'function route(\n')
    noroute = script(ctx, 'noroute.lua', 'x = 1\n')
    conf = '''\
providers: { m: { protocol: openai, base_url: "http://127.0.0.1:9", api_key_env: %s } }
models: { a: { provider: m }, b: { provider: m } }
pools:
  p1: { members: [ { target: a } ], route: webhook }
  p2: { members: [ { target: a } ], route: weighted, policy: { url: "http://127.0.0.1:1/" } }
  p3: { members: [ { target: a } ], route: webhook,
        policy: { url: "http://127.0.0.1:1/", socket: /tmp/x.sock } }
  p4: { members: [ { target: a } ], route: webhook, policy: { url: "http://hook.example.com/" } }
  p5: { members: [ { target: a } ], route: script, policy: { script_file: %s } }
  p6: { members: [ { target: a } ], route: script, policy: { script_file: %s } }
  p7: { members: [ { target: a } ], route: script,
        policy: { script_file: %s, on_error: sometimes, timeout_ms: 0 } }
  p8: { members: [ { target: a } ], route: webhook,
        policy: { url: "http://169.254.169.254/" } }
security: { blocked_metadata_hosts: ["10.0.0.0/33"] }
''' % (TEST_KEY_ENV, bad, noroute, os.path.join(POLICIES, 'cheapest.lua'))
    cp = ctx.path('c.yaml')
    with open(cp, 'w') as f:
        f.write(conf)
    pp = ctx.path('p.yaml')
    with open(pp, 'w') as f:
        f.write('x: { protocol: openai, base_url: "http://127.0.0.1:9" }\n')
    p = validate(cp, pp)
    check(p.returncode != 0, 'busbar -t fails')
    want = [
        ('c.yaml:4:', 'route: webhook needs policy.url or policy.socket'),
        ('c.yaml:5:', 'a policy needs route: webhook or route: script'),
        ('c.yaml:7:', 'route: webhook needs one of url and socket'),
        ('c.yaml:8:', "host 'hook.example.com' is public and needs https://"),
        ('c.yaml:9:', "bad.lua:2: "),
        ('c.yaml:9:', "expected near <eof>"),
        ('c.yaml:10:', 'defines no function route(request, candidates, context)'),
        ('c.yaml:12:', "unknown on_error 'sometimes'"),
        ('c.yaml:12:', 'timeout_ms: must be at least 1'),
        ('c.yaml:14:', 'is a cloud metadata endpoint and is denied'),
        ('c.yaml:15:', "'10.0.0.0/33' is not a valid address or CIDR range"),
    ]
    for where, what in want:
        check(any(ln.startswith(cp) and where in ln and what in ln for ln in p.out.splitlines()),
              'missing error %s %s in:\n%s' % (where, what, p.out))


# --------------------------------------------------------------------------------------------
# SSRF at connect time

class DnsStub:
    """A UDP DNS server answering A queries from names (lowercase name -> IPv4), NXDOMAIN
    otherwise. evdns randomises the case of queried names: the question is echoed as sent."""

    def __init__(self, ctx, names):
        self.names = names
        self.queries = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(('127.0.0.1', 0))
        self.port = self.sock.getsockname()[1]
        self.conf = ctx.path('resolv.conf')
        with open(self.conf, 'w') as f:
            f.write('nameserver 127.0.0.1:%d\n' % self.port)
        self.stop = False
        threading.Thread(target=self.serve, daemon=True).start()
        ctx.on_close(self.close)

    def serve(self):
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(512)
            except OSError:
                return
            try:
                self.sock.sendto(self.answer(data), addr)
            except Exception:
                pass

    def answer(self, q):
        tid, flags, qd = struct.unpack('>HHH', q[:6])
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode())
            i += 1 + q[i]
        qtype = struct.unpack('>H', q[i + 1:i + 3])[0]
        question = q[12:i + 5]
        name = '.'.join(labels).lower()
        self.queries.append(name)
        ip = self.names.get(name)
        if ip is None or qtype != 1:
            return struct.pack('>HHHHHH', tid, 0x8183 if ip is None else 0x8180, 1, 0, 0, 0) + \
                question
        rr = struct.pack('>HHHIH', 0xc00c, 1, 1, 60, 4) + socket.inet_aton(ip)
        return struct.pack('>HHHHHH', tid, 0x8180, 1, 1, 0, 0) + question + rr

    def close(self):
        self.stop = True
        self.sock.close()


def test_ssrf_name_resolving_to_metadata_refused(ctx):
    m = ctx.mock()
    dns = DnsStub(ctx, {'llm.internal': '127.0.0.1', 'evil.internal': '169.254.169.254',
                        'inner.internal': '127.0.0.2', 'metadata': '127.0.0.1'})
    bb = ctx.busbar({
        'providers': {
            'good': provider('http://llm.internal:%d' % m.port),
            'evil': provider('http://evil.internal:%d' % m.port),
            'inner': provider('http://inner.internal:%d' % m.port),
            'meta': provider('http://metadata:%d' % m.port)},
        'models': {'good': lane('good', 'g'), 'evil': lane('evil', 'e'),
                   'inner': lane('inner', 'i'), 'meta': lane('meta', 'm')},
        'pools': {'p': pool(('evil', 1), ('good', 1), route='webhook',
                            policy={'url': 'http://evil.internal:%d/' % m.port,
                                    'on_error': 'first'})},
        'security': {'blocked_metadata_hosts': ['127.0.0.2/32'],
                     'allow_metadata_hosts': ['metadata']},
    }, env={'BUSBAR_RESOLV_CONF': dns.conf})
    bb.allow_log(r'refused to connect|routing policy failed')
    r = bb.chat('good')
    eq(r.status, 200, 'a name resolving to loopback connects (through the stub)')
    check('llm.internal' in dns.queries, 'the name went through the DNS stub: %r' % dns.queries)
    r = bb.chat('evil')
    eq(r.status, 502, 'a name resolving to 169.254.169.254 is refused')
    check('SSRF' in r.json()['error']['message'], 'the error says why: %s' % r.text)
    bb.wait_log(r'upstream evil: refused to connect: evil.internal resolved to 169.254.169.254, '
                r'a cloud metadata address', 5)
    r = bb.chat('inner')
    eq(r.status, 502, 'a name resolving into a blocked range is refused')
    bb.wait_log(r'inner.internal resolved to 127.0.0.2, in a range denied by '
                r'security.blocked_metadata_hosts', 5)
    r = bb.chat('meta')
    eq(r.status, 200, 'allow_metadata_hosts lets the operator\'s "metadata" host through')
    # the pool: its webhook resolves to the metadata address too (refused: on_error first),
    # then its first member does (fatal: no failover to the good member)
    r = bb.chat('p')
    eq(r.status, 502, 'fatal: no failover after an SSRF refusal')
    eq(r.headers.get('x-busbar-attempts'), '1', 'one attempt')
    bb.wait_log(r'upstream p: refused to connect: evil.internal resolved to 169.254.169.254', 5)
    eq(outcomes(bb)['error'], 1, 'the refused webhook is a policy error')
    models = [a['model'] for a in m.attempts()]
    eq(sorted(models), ['g', 'm'], 'no request reached a refused address: %r' % models)
    # at connect time too, an allowed name goes where a denied range would stop another name
    bb2 = ctx.busbar({
        'providers': {'good': provider('http://llm.internal:%d' % m.port),
                      'meta': provider('http://metadata:%d' % m.port)},
        'models': {'good': lane('good', 'g2'), 'meta': lane('meta', 'm2')},
        'pools': {},
        'security': {'blocked_metadata_hosts': ['127.0.0.1/32'],
                     'allow_metadata_hosts': ['metadata']},
    }, env={'BUSBAR_RESOLV_CONF': dns.conf}, name='busbar2',
        providers_text='unused: { protocol: openai, base_url: "http://10.1.1.1" }\n')
    bb2.allow_log(r'refused to connect')
    eq(bb2.chat('meta').status, 200, 'the allowed name connects to 127.0.0.1')
    eq(bb2.chat('good').status, 502, 'another name resolving to the denied 127.0.0.1 does not')
    bb2.wait_log(r'llm.internal resolved to 127.0.0.1, in a range denied', 5)


if __name__ == '__main__':
    run([test_webhook_orders, test_webhook_order_demotes_never_drops, test_webhook_abstains,
         test_webhook_rejects_451, test_webhook_hangs_then_circuit_breaks,
         test_webhook_garbage_falls_back_first, test_webhook_unknown_members,
         test_webhook_down_on_error_reject, test_webhook_include_messages,
         test_socket_orders_and_survives_close_mid_answer, test_shipped_example_webhook,
         test_script_routes_by_price,
         test_script_infinite_loop_is_cut_off, test_script_unbounded_allocation_is_cut_off,
         test_script_sandbox, test_script_inputs_are_busbars_each_call,
         test_reload_to_broken_script, test_validate_policy_errors,
         test_ssrf_name_resolving_to_metadata_refused])
