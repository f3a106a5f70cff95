#!/usr/bin/env python3
"""Bad input: each case gets its OpenAI-shaped error, then a normal request on the same
(single) worker still works, and the worker never restarts."""

import json
import socket
import time

from harness import (RawConn, Resp, chat_body, check, check_error_shape, eq, fail, lane,
                     mock_answer, pool, provider, raw_exchange, run, scaled, wait_for)

BODY_MAX = 4096
HEADER_MAX = 4096
HEADER_TIMEOUT_MS = 600
BODY_TIMEOUT_MS = 600
KEEPALIVE_MS = 1000


def start(ctx, **limits):
    m = ctx.mock()
    lim = {'request_body_max_bytes': BODY_MAX, 'header_max_bytes': HEADER_MAX,
           'header_timeout_ms': HEADER_TIMEOUT_MS, 'body_timeout_ms': BODY_TIMEOUT_MS,
           'keepalive_timeout_ms': KEEPALIVE_MS}
    lim.update(limits)
    conf = {
        'providers': {'mock': provider(m)},
        'models': {'good': lane('mock', 'm'), 'slow': lane('mock', 'm;slowfirst=1500')},
        'pools': {'p': pool(('good', 1))},
        'limits': lim,
    }
    bb = ctx.busbar(conf, workers=1)
    w = bb.workers()
    eq(len(w), 1, 'worker processes')
    bb.worker_pid = w[0]
    return m, bb


def still_serving(bb, what):
    r = bb.chat('p')
    eq(r.status, 200, 'normal request after %s (body %r)' % (what, r.body[:200]))
    eq(r.json()['choices'][0]['message']['content'], mock_answer(), 'answer after %s' % what)
    eq(bb.workers(), [bb.worker_pid], 'worker pids after %s (a crash respawns)' % what)


def closed_by_server(c, within=3.0):
    c.settimeout(within)
    try:
        rest = c.read_all()
    except socket.timeout:
        return False
    return c.eof or rest == b''


def as_resp(r):
    return Resp(r.status, r.reason, r.header_list, r.body)


def post_raw(body, extra_headers=''):
    if isinstance(body, str):
        body = body.encode()
    return (b'POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n'
            + extra_headers.encode() + b'Content-Length: %d\r\n\r\n' % len(body) + body)


# -- JSON-level errors -------------------------------------------------------------------------

def test_json_errors(ctx):
    m, bb = start(ctx)
    cases = [
        ('malformed JSON', b'{"model": "p", "messages": [', 400, 'invalid_request_error', None),
        ('not an object', b'[1, 2, 3]', 400, 'invalid_request_error', None),
        ('empty body', b'', 400, 'invalid_request_error', None),
        ('binary garbage', bytes(range(256)) * 2, 400, 'invalid_request_error', None),
        ('missing model', json.dumps({'messages': [{'role': 'user', 'content': 'x'}]}),
         400, 'invalid_request_error', None),
        ('model not a string', json.dumps({'model': 5, 'messages': []}), 400,
         'invalid_request_error', None),
        ('unknown model', json.dumps(chat_body('no-such-pool')), 404, None, 'model_not_found'),
    ]
    for what, body, status, type_, code in cases:
        r = bb.request('POST', '/v1/chat/completions', body=body)
        check_error_shape(r, status, type_=type_, code=code, what=what)
        still_serving(bb, what)
    eq(len(m.attempts()), len(cases), 'only the normal requests reached the mock')


def test_deep_nesting_no_crash(ctx):
    m, bb = start(ctx, request_body_max_bytes=1 << 20)
    body = '{"model":"p","messages":[{"role":"user","content":"x"}],"x":' + '[' * 3000 + \
        ']' * 3000 + '}'
    r = bb.request('POST', '/v1/chat/completions', body=body)
    check(r.status < 500, 'deeply nested JSON → %d %r' % (r.status, r.body[:200]))
    ctx.note('deep nesting → %d' % r.status)
    still_serving(bb, 'deep nesting')


# -- HTTP-level errors -------------------------------------------------------------------------

def test_body_too_large_413(ctx):
    m, bb = start(ctx)
    big = json.dumps(chat_body('p', messages=[{'role': 'user', 'content': 'x' * (BODY_MAX * 2)}]))
    r = bb.request('POST', '/v1/chat/completions', body=big)
    check_error_shape(r, 413, what='Content-Length over the limit')
    still_serving(bb, '413 (Content-Length)')
    # Chunked: the size is only known while reading.
    raw = big.encode()
    chunks = b''.join(b'%x\r\n%s\r\n' % (len(raw[i:i + 1000]), raw[i:i + 1000])
                      for i in range(0, len(raw), 1000)) + b'0\r\n\r\n'
    r, c = raw_exchange(bb, b'POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n'
                        b'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n'
                        + chunks)
    check_error_shape(as_resp(r), 413, what='chunked body over the limit')
    still_serving(bb, '413 (chunked)')
    # Just under the limit is fine.
    pad = BODY_MAX - len(json.dumps(chat_body('p', messages=[{'role': 'user', 'content': ''}])))
    ok = chat_body('p', messages=[{'role': 'user', 'content': 'y' * (pad - 1)}])
    check(len(json.dumps(ok)) < BODY_MAX, 'test self-check: body under the limit')
    r = bb.request('POST', '/v1/chat/completions', body=ok)
    eq(r.status, 200, 'body just under request_body_max_bytes')


def test_method_and_path(ctx):
    m, bb = start(ctx)
    for method, path, status in (('GET', '/v1/chat/completions', 405),
                                 ('PUT', '/v1/chat/completions', 405),
                                 ('POST', '/v1/models', 405),
                                 ('DELETE', '/healthz', 405),
                                 ('GET', '/v1/nope', 404),
                                 ('POST', '/nothing/here', 404),
                                 ('GET', '/', 404)):
        body = chat_body('p') if method in ('POST', 'PUT') else None
        r = bb.request(method, path, body=body)
        check_error_shape(r, status, what='%s %s' % (method, path))
        still_serving(bb, '%s %s' % (method, path))
    eq(len(m.attempts()), 7, 'only the normal requests reached the mock')


def test_slowloris_408(ctx):
    m, bb = start(ctx)
    c = RawConn(bb.port, timeout=10)
    ctx.on_close(c.close)
    t0 = time.monotonic()
    head = b'POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nX-Drip: '
    c.send(head[:20])
    # Drip one byte every 100 ms: activity never stops, but the head never completes.
    c.sock.settimeout(0.1)
    got = b''
    i = 20
    while time.monotonic() - t0 < scaled(HEADER_TIMEOUT_MS / 1000.0 + 3.0):
        try:
            c.send(head[i:i + 1] if i < len(head) else b'a')
            i += 1
        except (BrokenPipeError, ConnectionResetError):
            break
        try:
            d = c.sock.recv(65536)
            if not d:
                break
            got += d
            if b'\r\n\r\n' in got:
                break
        except socket.timeout:
            pass
        except ConnectionResetError:
            break
    elapsed = time.monotonic() - t0
    check(got.startswith(b'HTTP/1.1 408'), 'slow-loris answer after %.2fs: %r' % (elapsed,
                                                                                  got[:200]))
    check(elapsed >= HEADER_TIMEOUT_MS / 1000.0 * 0.9,
          '408 after %.2fs, before header_timeout_ms' % elapsed)
    c.sock.settimeout(scaled(3))
    check(closed_by_server(c), 'connection not closed after the 408')
    still_serving(bb, 'slow-loris')


def test_body_timeout_408(ctx):
    m, bb = start(ctx)
    c = RawConn(bb.port, timeout=10)
    ctx.on_close(c.close)
    t0 = time.monotonic()
    c.send(b'POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n'
           b'Content-Length: 200\r\n\r\n{"model":"p",')
    c.settimeout(BODY_TIMEOUT_MS / 1000.0 + 5)
    r = c.response()
    elapsed = time.monotonic() - t0
    check(r is not None, 'connection closed without a 408 for a stalled body')
    r.read()
    check_error_shape(as_resp(r), 408, what='stalled body')
    check(elapsed >= BODY_TIMEOUT_MS / 1000.0 * 0.9, '408 after %.2fs, before body_timeout_ms'
          % elapsed)
    check(closed_by_server(c), 'connection not closed after the 408')
    still_serving(bb, 'stalled body')


def test_garbage_and_oversized_heads(ctx):
    m, bb = start(ctx)
    cases = [
        ('garbage request line', b'GARBAGE\r\n\r\n'),
        ('binary request line', b'\x00\x01\x02\xff\xfe\r\n\r\n'),
        ('bad Content-Length', b'POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n'
                               b'Content-Length: abc\r\n\r\n{}'),
        ('negative Content-Length', b'POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n'
                                    b'Content-Length: -5\r\n\r\n{}'),
        ('two Content-Lengths', b'POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n'
                                b'Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}'),
        ('bad chunk size', b'POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n'
                           b'Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n'),
        ('header without colon', b'GET /healthz HTTP/1.1\r\nHost: t\r\nNoColonHere\r\n\r\n'),
        ('oversized header', b'GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: '
                             + b'a' * (HEADER_MAX * 4) + b'\r\n\r\n'),
        # (the HTTP/2 connection preface is h2c by prior knowledge: test_http2.py)
    ]
    for what, data in cases:
        c = RawConn(bb.port, timeout=5)
        ctx.on_close(c.close)
        try:
            c.send(data)
            r = c.response()
        except (ConnectionResetError, BrokenPipeError) as e:
            fail('%s: %r before an HTTP error response (no lingering close?)' % (what, e))
        if r is None:
            fail('%s: connection closed without an HTTP error response' % what)
        r.read()
        check(400 <= r.status < 500 or r.status == 505, '%s → %d, want a 4xx' % (what, r.status))
        check(closed_by_server(c), '%s: connection not closed after the error' % what)
        ctx.note('%s → %d' % (what, r.status))
        still_serving(bb, what)


def test_keepalive_pipelining_and_chunked(ctx):
    """Valid but less common HTTP/1.1: pipelined requests, a chunked request body."""
    m, bb = start(ctx)
    one = json.dumps(chat_body('p')).encode()
    c = RawConn(bb.port, timeout=5)
    ctx.on_close(c.close)
    c.send(post_raw(one) + post_raw(one) + b'GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n')
    for i in range(3):
        r = c.response()
        check(r is not None, 'pipelined response %d missing' % (i + 1))
        r.read()
        eq(r.status, 200, 'pipelined response %d status' % (i + 1))
    chunks = b'%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n' % (10, one[:10], len(one) - 10, one[10:])
    c.send(b'POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n'
           b'Transfer-Encoding: chunked\r\n\r\n' + chunks)
    r = c.response()
    r.read()
    eq(r.status, 200, 'chunked request body status')
    eq(json.loads(r.body)['choices'][0]['message']['content'], mock_answer(), 'chunked answer')
    still_serving(bb, 'pipelining')


def test_idle_keepalive_closed(ctx):
    m, bb = start(ctx)
    c = RawConn(bb.port, timeout=5)
    ctx.on_close(c.close)
    c.send(b'GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n')
    r = c.response()
    r.read()
    eq(r.status, 200, 'status')
    t0 = time.monotonic()
    check(closed_by_server(c, within=scaled(KEEPALIVE_MS / 1000.0 + 3)),
          'idle keep-alive connection not closed')
    elapsed = time.monotonic() - t0
    check(elapsed >= KEEPALIVE_MS / 1000.0 * 0.8, 'idle connection closed after %.2fs, before '
          'keepalive_timeout_ms' % elapsed)


def test_over_max_inbound_concurrent_503(ctx):
    LIMIT = 2
    m, bb = start(ctx, max_inbound_concurrent=LIMIT)
    held = []
    for _ in range(LIMIT):
        c = RawConn(bb.port, timeout=10)
        ctx.on_close(c.close)
        c.send_request('POST', '/v1/chat/completions', chat_body('slow'))
        held.append(c)
    m.wait_attempts(lambda a: len(a) == LIMIT, 5, '%d slow requests in flight' % LIMIT)
    t0 = time.monotonic()
    try:
        r = bb.chat('p')
    except (ConnectionResetError, BrokenPipeError) as e:
        fail('request over max_inbound_concurrent: connection error %r instead of a 503' % e)
    check_error_shape(r, 503, what='request over max_inbound_concurrent')
    check(time.monotonic() - t0 < scaled(1.0), 'the 503 was not immediate')
    for c in held:
        r = c.response()
        check(r is not None, 'held request lost')
        r.read()
        eq(r.status, 200, 'held request status')
    wait_for(lambda: bb.chat('p').status == 200, 3, 'serving again under the limit')
    eq(bb.workers(), [bb.worker_pid], 'worker pids')


if __name__ == '__main__':
    run([test_json_errors, test_deep_nesting_no_crash, test_body_too_large_413,
         test_method_and_path, test_slowloris_408, test_body_timeout_408,
         test_garbage_and_oversized_heads, test_keepalive_pipelining_and_chunked,
         test_idle_keepalive_closed, test_over_max_inbound_concurrent_503])
