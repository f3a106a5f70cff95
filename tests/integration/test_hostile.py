#!/usr/bin/env python3
"""Hostile peers (issue 9, SECURITY.md): each finding of the attack pass replayed as a hostile
client and as a hostile provider (a small stdlib server that lies about lengths, redirects to
the cloud metadata address, answers status 600, HTML with 200, gzip, floods of 100 Continue).
Every case asserts a bounded answer in the client's dialect, bounded worker memory and CPU,
and no worker death (the worker pids stay the same; the master never logs a respawn)."""

import json
import os
import re
import socket
import socketserver
import threading
import time

from harness import (RawConn, chat_body, check, eq, fail, free_port, lane, mock_answer, pool,
                     provider, providers_all, raw_exchange, request, rss_kib, run, scaled)

AWS_KEY_ENV = 'BB_TEST_AWS_KEY'
AWS_KEY = 'AKIDTEST:SECRETTEST'


# --------------------------------------------------------------------------------------------
# the hostile provider

OK_ANSWER = json.dumps({
    'id': 'chatcmpl-evil', 'object': 'chat.completion', 'created': 1, 'model': 'm',
    'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': 'evil says hi'},
                 'finish_reason': 'stop'}],
    'usage': {'prompt_tokens': 3, 'completion_tokens': 3, 'total_tokens': 6}}).encode()


class Hostile:
    """A stdlib HTTP/1.1 'provider' on 127.0.0.1 whose answer is set by .mode (see answer())."""

    def __init__(self, ctx):
        outer = self
        self.mode = 'ok'
        self.requests = []      # (request line, headers text) of each request seen
        self.sent = 0           # body bytes the last 'huge_length' answer pushed

        class H(socketserver.BaseRequestHandler):
            def handle(self):
                outer.serve(self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.srv = socketserver.ThreadingTCPServer(('127.0.0.1', 0), H)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        self.url = 'http://127.0.0.1:%d' % self.port
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        ctx.on_close(self.close)

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()

    def serve(self, sock):
        sock.settimeout(10)
        f = sock.makefile('rb')
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                head = b''
                n = 0
                while True:
                    h = f.readline()
                    if h in (b'\r\n', b'\n', b''):
                        break
                    head += h
                    if h.lower().startswith(b'content-length:'):
                        n = int(h.split(b':')[1])
                f.read(n)
                self.requests.append((line.decode('latin-1').strip(), head.decode('latin-1')))
                if not self.answer(sock):
                    return
        except OSError:
            return

    def answer(self, sock):
        """Send one answer; False to close the connection afterwards."""
        mode = self.mode
        def reply(status_line, ctype, body, extra=b''):
            sock.sendall(b'%s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n'
                         % (status_line, ctype, len(body), extra) + body)
        if mode == 'ok':
            reply(b'HTTP/1.1 200 OK', b'application/json', OK_ANSWER)
            return True
        if mode == 'continue_flood':
            sock.sendall(b'HTTP/1.1 100 Continue\r\n\r\n' * 5000)
            reply(b'HTTP/1.1 200 OK', b'application/json', OK_ANSWER)
            return True
        if mode == 'huge_length':
            sock.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n'
                         b'Content-Length: 2147483648\r\n\r\n{"id":"')
            chunk = b'a' * (1 << 20)
            self.sent = 0
            try:
                while self.sent < (2 << 30):
                    sock.sendall(chunk)
                    self.sent += len(chunk)
            except OSError:
                pass
            return False
        if mode == 'redirect':
            reply(b'HTTP/1.1 302 Found', b'text/plain', b'moved',
                  b'Location: http://169.254.169.254/latest/meta-data/\r\n')
            return True
        if mode == 'status600':
            reply(b'HTTP/1.1 600 Weird', b'application/json', OK_ANSWER)
            return True
        if mode == 'retry_after_huge':
            reply(b'HTTP/1.1 429 Too Many Requests', b'application/json',
                  b'{"error":{"message":"slow down","type":"rate_limit_error"}}',
                  b'Retry-After: 99999999999999999999\r\n')
            return True
        if mode == 'html200':
            reply(b'HTTP/1.1 200 OK', b'text/html', b'<html><body>Login</body></html>')
            return True
        if mode == 'gzip':
            import gzip
            reply(b'HTTP/1.1 200 OK', b'application/json', gzip.compress(OK_ANSWER),
                  b'Content-Encoding: gzip\r\n')
            return True
        fail('unknown hostile mode %r' % mode)


# --------------------------------------------------------------------------------------------
# setup

def start(ctx, limits=None, workers=2, hostile=None, env=None, **extra):
    """bb-mock for every protocol plus (optionally) a hostile provider; busbar in keys mode.
    Lanes: oa (OpenAI egress), an (Anthropic egress, so OpenAI ingress is translated), bad
    (the hostile provider). Pools: p -> oa, t -> an, q -> oa (for the pool-scoped key),
    h -> bad then oa (fails over), hx -> bad only."""
    m = ctx.mock()
    provs = providers_all(m, AWS_KEY_ENV)
    models = {'oa': lane('p_openai', 'm'), 'an': lane('p_anthropic', 'm'),
              'slow': lane('p_openai', 'm;slowfirst=1500')}
    pools = {'p': pool(('oa', 1)), 't': pool(('an', 1)), 'q': pool(('oa', 1)),
             's': pool(('slow', 1))}
    if hostile is not None:
        provs['evil'] = provider(hostile.url)
        models['bad'] = lane('evil', 'm')
        lenient = {'trip': {'mode': 'error_rate', 'min_requests': 1000}}
        pools['h'] = pool(('bad', 1000), ('oa', 1), breaker=lenient)   # bad first, then oa
        pools['hx'] = pool(('bad', 1), breaker=lenient)
    conf = {'auth': {'mode': 'keys'}, 'providers': provs, 'models': models, 'pools': pools,
            'limits': limits or {}}
    conf.update(extra)
    env = dict(env or {}, **{AWS_KEY_ENV: AWS_KEY})
    if os.environ.get('ASAN_OPTIONS'):
        # RSS is asserted: ASan's quarantine of freed memory (256 MiB) would hide the growth
        env['ASAN_OPTIONS'] = os.environ['ASAN_OPTIONS'] + ':quarantine_size_mb=8'
    bb = ctx.busbar(conf, workers=workers, env=env)
    bb.first_workers = sorted(bb.wait_workers(workers))
    bb.key = create_key(bb)
    return m, bb


def create_key(bb, *args, name='t'):
    p = bb.ctl('--json', 'keys', 'create', '--name', name, *args)
    eq(p.returncode, 0, 'keys create (stderr %r)' % p.stderr[-300:])
    return json.loads(p.stdout)['secret']


def auth(key):
    return {'Authorization': 'Bearer ' + key}


def no_worker_died(bb, what):
    eq(sorted(bb.workers()), bb.first_workers, 'worker pids after %s (a crash respawns)' % what)
    died = re.findall(r'.*worker \d+ \(slot \d+, generation \d+\).*', bb.log())
    check(not died, 'the master saw a worker die after %s: %r' % (what, died[:3]))
    r = bb.request('GET', '/healthz')
    eq(r.status, 200, '/healthz after %s' % what)


def hdr(r, name):
    for k, v in r.header_list:
        if k.lower() == name.lower():
            return v
    return None


def is_bedrock_error(r, status, exc):
    eq(r.status, status, 'status (body %r)' % r.body[:200])
    eq(hdr(r, 'x-amzn-ErrorType'), exc, 'x-amzn-ErrorType')
    j = json.loads(r.body)
    check(set(j) == {'message'}, 'Bedrock error shape {"message":...}: %r' % r.body[:200])


# --------------------------------------------------------------------------------------------
# finding 1: a keyless request overflowed the heap in the Bedrock route matcher

def test_bedrock_route_without_model(ctx):
    m, bb = start(ctx)
    body = b'{}'
    for target in ('/model/converse', '/model/converse-stream',
                   'http://127.0.0.1/model/converse', 'https://x/model/converse-stream'):
        for i in range(3):   # one is enough to crash; a few show the worker keeps serving
            r, c = raw_exchange(bb, b'POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s'
                       % (target.encode(), len(body), body))
            is_bedrock_error(r, 404, 'ResourceNotFoundException')
    no_worker_died(bb, 'POST /model/converse without a model')


# --------------------------------------------------------------------------------------------
# finding 2: client JSON member names went unchecked into x-busbar-dropped-fields

def test_no_response_splitting(ctx):
    m, bb = start(ctx)
    fake = ('x\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n'
            '\r\nhi')
    bodies = [
        dict(chat_body('t'), **{'x\r\nSet-Cookie: pwned=1': 1}),
        dict(chat_body('t'), **{fake: 1}),
        dict(chat_body('t'), **{'x\nSet-Cookie: pwned=1': 1, 'y\rz': 2, 'nul\u0000': 3}),
        chat_body('t', messages=[{'role': 'user', 'content': [
            {'type': 'text', 'text': 'Hello there'},
            {'type': 'x\r\nSet-Cookie: pwned=1', 'text': 'x'}]}]),
    ]
    c = RawConn(bb.port, timeout=5)
    ctx.on_close(c.close)
    for i, b in enumerate(bodies):
        c.send_request('POST', '/v1/chat/completions', b, headers=auth(bb.key))
        r = c.response()
        check(r is not None, 'body %d: no response' % i)
        r.read()
        eq(r.status, 200, 'body %d status (%r)' % (i, r.body[:200]))
        names = [k.lower() for k, v in r.header_list]
        check('set-cookie' not in names, 'body %d: a Set-Cookie header was injected: %r'
              % (i, r.header_list))
        for k, v in r.header_list:
            check('\r' not in k + v and '\n' not in k + v, 'CR/LF in a header: %r' % ((k, v),))
        dropped = r.headers.get('x-busbar-dropped-fields')
        check(dropped and ('%0D' in dropped or '%0A' in dropped),
              'body %d: the dropped field is reported encoded: %r' % (i, dropped))
        eq(json.loads(r.body)['choices'][0]['message']['content'], mock_answer(),
           'body %d answer' % i)
    # the keep-alive connection is still in step: the next answer is a real one
    c.send_request('GET', '/healthz')
    r = c.response()
    r.read()
    eq(r.status, 200, 'healthz on the same connection')
    check(b'"ok"' in r.body or b'ok' in r.body, 'healthz body %r' % r.body)
    no_worker_died(bb, 'header injection attempts')


# --------------------------------------------------------------------------------------------
# finding 3: a client that pipelines and never reads grew a worker without bound

def worker_rss(bb):
    return {pid: rss_kib(pid) for pid in bb.workers()}


def rss_growth_mib(bb, base):
    return max(rss_kib(pid) - base.get(pid, 0) for pid in bb.workers()) / 1024.0


def test_pipelining_flood_bounded(ctx):
    m, bb = start(ctx, limits={'send_timeout_ms': 3000})
    base = worker_rss(bb)
    batch = b'GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n' * 2000
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # we read nothing
    s.connect(('127.0.0.1', bb.port))
    ctx.on_close(s.close)
    s.setblocking(False)
    sent, stalled, blocked, t0 = 0, None, False, time.monotonic()
    while time.monotonic() - t0 < scaled(8) and sent < (60 << 20):
        try:
            off = sent % len(batch)   # a partial send goes on where it stopped
            sent += s.send(batch[off:])
            stalled = None
        except BlockingIOError:
            stalled = stalled or time.monotonic()
            if time.monotonic() - stalled > 1.0:
                blocked = True   # busbar stopped reading us
                break
            time.sleep(0.01)
    growth = rss_growth_mib(bb, base)
    ctx.note('pipelined %.1f MiB of requests without reading; worker RSS growth %.1f MiB'
             % (sent / 1048576.0, growth))
    check(blocked, 'busbar kept reading pipelined requests (%d MiB) although the '
          'client read no answer' % (sent >> 20))
    check(growth < scaled(16), 'worker RSS grew %.1f MiB for a client that never reads' % growth)
    # the stalled client is dropped once it read nothing for send_timeout_ms
    bb.wait_log(r'limits\.send_timeout_ms: closed', timeout=10,
                what='busbar to drop the client that never reads')
    no_worker_died(bb, 'a pipelining flood')


# --------------------------------------------------------------------------------------------
# finding 4: the body was read (and 100 Continue sent) before the key was checked; the body
# timeout re-armed on every read

def test_auth_before_body(ctx):
    m, bb = start(ctx, limits={'max_inbound_concurrent': 20, 'body_timeout_ms': 1500})
    # keyless heads announcing a body: 401 at once, no 100 Continue, connection closed
    for path, shape in (('/v1/chat/completions', 'openai'), ('/v1/messages', 'anthropic'),
                        ('/model/p/converse', 'bedrock')):
        c = RawConn(bb.port, timeout=3)
        ctx.on_close(c.close)
        c.send(b'POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n'
               b'Expect: 100-continue\r\nContent-Length: 1000000\r\n\r\n' % path.encode())
        try:
            r = c.response()
        except socket.timeout:
            fail('%s: no answer to a keyless head before its body was sent' % path)
        check(r is not None, '%s: connection closed without an answer' % path)
        eq(r.status, 401, '%s: status of a keyless head (no 100 Continue first)' % path)
        r.read()
        eq(r.headers.get('connection', '').lower(), 'close', '%s: Connection header' % path)
        j = json.loads(r.body)
        if shape == 'anthropic':
            eq(j.get('type'), 'error', '%s: Anthropic error shape' % path)
        elif shape == 'bedrock':
            check(set(j) == {'message'}, '%s: Bedrock error shape' % path)
        else:
            check('error' in j, '%s: OpenAI error shape' % path)
    # 30 keyless connections that never send their bodies hold no slot of 20
    held = []
    for _ in range(30):
        c = RawConn(bb.port, timeout=3)
        ctx.on_close(c.close)
        c.send(b'POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n'
               b'\r\n{')
        held.append(c)
    time.sleep(0.3)
    r = bb.chat('p', headers=auth(bb.key))
    eq(r.status, 200, 'a keyed request next to 30 keyless stalled bodies (body %r)'
       % r.body[:200])
    # a keyed body trickled a byte at a time: limits.body_timeout_ms bounds the whole body
    c = RawConn(bb.port, timeout=10)
    ctx.on_close(c.close)
    body = json.dumps(chat_body('p')).encode()
    c.send(b'POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n'
           b'Content-Length: %d\r\n\r\n' % (bb.key.encode(), len(body)))
    t0 = time.monotonic()
    got = None
    for b in body:
        try:
            c.send(bytes([b]))
        except OSError:
            break
        c.sock.settimeout(0.25)
        try:
            got = c.response()
            break
        except socket.timeout:
            pass
        if time.monotonic() - t0 > scaled(6):
            break
    elapsed = time.monotonic() - t0
    check(got is not None, 'a body trickled for %.1fs got no 408 (body_timeout_ms 1500)'
          % elapsed)
    eq(got.status, 408, 'trickled body status')
    check(elapsed < scaled(3.5), '408 only after %.1fs' % elapsed)
    no_worker_died(bb, 'keyless bodies')


# --------------------------------------------------------------------------------------------
# finding 5: quadratic parsing (client heads, upstream interim answers)

def cpu_secs(bb):
    """CPU seconds used so far by all of busbar's workers."""
    t = 0
    for pid in bb.workers():
        try:
            with open('/proc/%d/stat' % pid) as f:
                fields = f.read().rsplit(')', 1)[1].split()
            t += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return t / float(os.sysconf('SC_CLK_TCK'))


def test_head_in_pieces_linear(ctx):
    """A 4 MB head (header_max_bytes raised to 8 MiB) in 1,000 reads of 4 KiB: scanned once,
    parsed once. Re-parsing the whole buffer on every read costs seconds of CPU."""
    m, bb = start(ctx, limits={'header_max_bytes': 8 << 20, 'header_timeout_ms': 30000})
    head = (b'GET /healthz HTTP/1.1\r\nHost: t\r\n'
            + b''.join(b'X-Pad-%d: %s\r\n' % (i, b'a' * 40000) for i in range(98)) + b'\r\n')
    s = socket.create_connection(('127.0.0.1', bb.port))
    ctx.on_close(s.close)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cpu0, t0 = cpu_secs(bb), time.monotonic()
    piece = 4096
    for i in range(0, len(head), piece):
        s.sendall(head[i:i + piece])
        time.sleep(0.001)   # one read per piece
    s.settimeout(10)
    got = s.recv(4096)
    cpu = cpu_secs(bb) - cpu0
    ctx.note('%d-byte head in %d pieces (%.1fs): %.2f CPU seconds in the workers'
             % (len(head), len(head) // piece, time.monotonic() - t0, cpu))
    check(got.startswith(b'HTTP/1.1 200'), 'answer %r' % got[:100])
    check(cpu < scaled(0.3), '%.2f CPU seconds to read one %d-byte head' % (cpu, len(head)))


def test_upstream_continue_flood(ctx):
    h = Hostile(ctx)
    m, bb = start(ctx, hostile=h)
    h.mode = 'continue_flood'
    cpu0 = cpu_secs(bb)
    r = bb.chat('h', headers=auth(bb.key))
    cpu = cpu_secs(bb) - cpu0
    ctx.note('5000 interim answers: %.2f CPU seconds' % cpu)
    eq(r.status, 200, 'status (body %r)' % r.body[:200])
    eq(r.headers.get('x-busbar-lane'), 'oa', 'a flood of 100 Continue fails the attempt over '
       'to the next lane')
    eq(r.json()['choices'][0]['message']['content'], mock_answer(), 'answer')
    check(cpu < scaled(0.5), '%.2f CPU seconds for one flooded attempt' % cpu)
    no_worker_died(bb, 'a flood of 100 Continue')


# --------------------------------------------------------------------------------------------
# finding 6: duplicate JSON keys were admitted as the last and forwarded with both

def post(bb, path, raw_body, key=None):
    h = auth(key) if key else {}
    h['Content-Type'] = 'application/json'
    return bb.request('POST', path, raw_body.encode(), headers=h)


def dialect_error(r, dialect, status, what):
    eq(r.status, status, '%s: status (body %r)' % (what, r.body[:300]))
    j = json.loads(r.body)
    if dialect == 'openai':
        check(isinstance(j.get('error'), dict) and 'message' in j['error'], '%s: OpenAI error '
              'shape %r' % (what, j))
    elif dialect == 'anthropic':
        check(j.get('type') == 'error' and 'message' in j.get('error', {}), '%s: Anthropic '
              'error shape %r' % (what, j))
    elif dialect == 'gemini':
        check(j.get('error', {}).get('code') == status, '%s: Gemini error shape %r' % (what, j))
    elif dialect == 'bedrock':
        check(set(j) == {'message'} and r.headers.get('x-amzn-errortype'),
              '%s: Bedrock error shape %r %r' % (what, j, r.headers))
    return j


def test_duplicate_keys_refused(ctx):
    m, bb = start(ctx)
    msgs = '"messages":[{"role":"user","content":"hi"}]'
    cases = [
        ('openai', '/v1/chat/completions',
         '{"model":"expensive","max_tokens":100000,%s,"model":"p","max_tokens":1}' % msgs),
        ('openai', '/v1/chat/completions', '{"model":"p",%s,"\\u006dodel":"q"}' % msgs),
        ('openai', '/v1/chat/completions', '{"model":"p",%s,"stream":false,"stream":true}' % msgs),
        ('openai', '/v1/chat/completions',
         '{"model":"p",%s,"temperature":0,"temperature":2}' % msgs),
        ('openai', '/v1/chat/completions', '{"model":"p",%s,"stream":true,'
         '"stream_options":{"include_usage":false,"include_usage":true}}' % msgs),
        ('anthropic', '/v1/messages',
         '{"model":"p","max_tokens":1,%s,"max_tokens":100000}' % msgs),
        ('gemini', '/v1beta/models/p:generateContent',
         '{"contents":[{"parts":[{"text":"hi"}]}],'
         '"generationConfig":{"maxOutputTokens":1,"maxOutputTokens":100000}}'),
        ('bedrock', '/model/p/converse',
         '{"messages":[{"role":"user","content":[{"text":"hi"}]}],'
         '"inferenceConfig":{"maxTokens":1,"maxTokens":100000}}'),
    ]
    for dialect, path, body in cases:
        j = dialect_error(post(bb, path, body, bb.key), dialect, 400, body[:60])
        check('duplicate member' in json.dumps(j), 'the error names the duplicate: %r' % j)
    eq(m.attempts(), [], 'no request with duplicate keys reached a provider')
    no_worker_died(bb, 'duplicate keys')


# --------------------------------------------------------------------------------------------
# finding 7: connection-level errors were always OpenAI-shaped; a closing 400 did not say so

def raw_error(bb, data, dialect, status, what, timeout=5):
    r, c = raw_exchange(bb, data, timeout=timeout)
    dialect_error(r, dialect, status, what)
    eq(r.headers.get('connection', '').lower(), 'close', '%s: Connection header' % what)
    return r


def test_connection_errors_in_dialect(ctx):
    m, bb = start(ctx, workers=1, limits={
        'request_body_max_bytes': 4096, 'header_max_bytes': 2048, 'header_timeout_ms': 500,
        'max_inbound_concurrent': 1})
    key = b'Authorization: Bearer %s\r\n' % bb.key.encode()
    routes = [('openai', b'/v1/chat/completions'), ('anthropic', b'/v1/messages'),
              ('gemini', b'/v1beta/models/p:generateContent'), ('bedrock', b'/model/p/converse'),
              ('bedrock', b'http://h/model/p/converse-stream?x=1')]
    for dialect, path in routes:
        raw_error(bb, b'POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: 99999\r\n\r\n' % path,
                  dialect, 413, '413 on %s' % path)
        raw_error(bb, b'POST %s HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n' % path,
                  dialect, 400, '400 on %s' % path)
        raw_error(bb, b'POST %s HTTP/1.1\r\nHost: t\r\nX: %s\r\n\r\n' % (path, b'a' * 4096),
                  dialect, 431, '431 on %s' % path)
        raw_error(bb, b'POST %s HTTP/1.1\r\nHost: t\r\n' % path, dialect, 408,
                  '408 on %s' % path)
        raw_error(bb, b'POST %s HTTP/1.1\r\nHost: t\r\n%sTransfer-Encoding: chunked\r\n\r\n'
                  b'zz\r\n' % (path, key), dialect, 400, 'bad chunked body on %s' % path)
    # 503 over max_inbound_concurrent, in the dialect of the refused request
    c = RawConn(bb.port, timeout=10)
    ctx.on_close(c.close)
    c.send_request('POST', '/v1/chat/completions', chat_body('s'), headers=auth(bb.key))
    m.wait_attempts(lambda a: len(a) == 1, 5, 'the slow request in flight')
    for dialect, path in routes[1:4]:
        r, _ = raw_exchange(bb, b'POST %s HTTP/1.1\r\nHost: t\r\n%sContent-Length: 2\r\n\r\n{}'
                   % (path, key))
        dialect_error(r, dialect, 503, '503 on %s' % path)
    r = c.response()
    r.read()
    eq(r.status, 200, 'the slow request')
    no_worker_died(bb, 'connection-level errors')


# --------------------------------------------------------------------------------------------
# finding 8: HEAD answers carried a body and desynchronised keep-alive clients

def test_head_has_no_body(ctx):
    m, bb = start(ctx)
    c = RawConn(bb.port, timeout=5)
    ctx.on_close(c.close)
    key = 'Authorization: Bearer %s\r\n' % bb.key
    cases = [('/healthz', 200, ''), ('/v1/models', 200, key), ('/v1/chat/completions', 405, key),
             ('/nope', 404, '')]
    for path, status, extra in cases:
        c.send('HEAD %s HTTP/1.1\r\nHost: t\r\n%s\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n'
               % (path, extra))
        st, reason, hdrs = c.read_head()
        eq(st, status, 'HEAD %s status' % path)
        h = {k.lower(): v for k, v in hdrs}
        check(int(h.get('content-length', '0')) > 0, 'HEAD %s: Content-Length of the GET answer '
              '(%r)' % (path, h))
        if status == 405:
            check('POST' in h.get('allow', ''), 'Allow on 405: %r' % h)
        r = c.response()   # the next bytes must be the GET's answer, not the HEAD's body
        check(r is not None, 'after HEAD %s: no answer to the pipelined GET' % path)
        r.read()
        eq((r.status, json.loads(r.body)), (200, {'status': 'ok'}),
           'the GET after HEAD %s (a HEAD body would show up here)' % path)
    no_worker_died(bb, 'HEAD requests')


# --------------------------------------------------------------------------------------------
# finding 9: a 20 MB prompt (under the 32 MiB body limit) got 400 "out of memory" when
# translated

def test_large_prompt_translated(ctx):
    m, bb = start(ctx, workers=1)
    prompt = ('lorem ipsum ' * (20 * 1024 * 1024 // 12))
    for pool_name, what in (('t', 'OpenAI -> Anthropic'), ('p', 'same protocol')):
        r = bb.chat(pool_name, messages=[{'role': 'user', 'content': prompt}],
                    headers=auth(bb.key), timeout=60)
        eq(r.status, 200, '%s with a %d MB prompt (body %r)' % (what, len(prompt) >> 20,
                                                               r.body[:300]))
        eq(r.json()['choices'][0]['message']['content'], mock_answer(), what)
    no_worker_died(bb, 'a 20 MB prompt')


# --------------------------------------------------------------------------------------------
# finding 10: max_tokens 1e999 got 429 on a key without limits; a huge Retry-After was
# converted double -> uint64 before capping (UBSan: the harness fails on "runtime error:")

def test_numeric_edges(ctx):
    h = Hostile(ctx)
    m, bb = start(ctx, hostile=h)
    for body in ('{"model":"p","messages":[{"role":"user","content":"hi"}],"max_tokens":1e999}',
                 '{"model":"p","messages":[{"role":"user","content":"hi"}],'
                 '"max_completion_tokens":18446744073709551616}'):
        for _ in range(3):   # the first one alone fits an empty window
            r = post(bb, '/v1/chat/completions', body, bb.key)
            check(r.status != 429, 'a key without limits got 429 for %s: %r' % (body[-40:],
                                                                             r.body[:200]))
    check(len(m.attempts()) == 6, 'the requests reached the provider (%d attempts)'
          % len(m.attempts()))
    h.mode = 'retry_after_huge'
    r = bb.chat('hx', headers=auth(bb.key))
    eq(r.status, 429, 'the provider\'s 429 (body %r)' % r.body[:200])
    no_worker_died(bb, 'numeric edge cases')


# --------------------------------------------------------------------------------------------
# finding 11: 40 idle TCP connections locked the admin API out; each refusal logged a warning

ADMIN_TOKEN = 'admin-token-0123456789abcdef'


def test_admin_api_not_locked_out(ctx):
    port = free_port()
    m, bb = start(ctx, workers=1, env={'BB_TEST_ADMIN_TOKEN': ADMIN_TOKEN},
                  admin={'socket': ctx.path('busbar-admin.sock'),
                         'listen': '127.0.0.1:%d' % port, 'token_env': 'BB_TEST_ADMIN_TOKEN'})
    held = []
    for round_ in range(3):
        for _ in range(100):   # idle connections that never send a byte
            s = socket.create_connection(('127.0.0.1', port))
            ctx.on_close(s.close)
            held.append(s)
        t0 = time.monotonic()
        try:
            r = request(port, 'GET', '/admin/keys',
                        headers={'Authorization': 'Bearer ' + ADMIN_TOKEN}, timeout=5)
        except OSError as e:
            fail('admin API next to %d idle connections: %r' % (len(held), e))
        eq(r.status, 200, 'admin API next to %d idle connections (round %d)'
           % (len(held), round_))
        check(time.monotonic() - t0 < scaled(1.5), 'the admin API answered only after %.1fs'
              % (time.monotonic() - t0))
    warnings = [ln for ln in bb.log().splitlines() if 'admin API' in ln and '[warn]' in ln]
    check(len(warnings) <= 3, '%d admin API warnings for 300 idle connections (rate-limited '
          'to one per 10 s): %r' % (len(warnings), warnings[:5]))
    no_worker_died(bb, 'an admin connection flood')


# --------------------------------------------------------------------------------------------
# finding 12: /stats showed every pool to every key; lower-case methods and HTTP/1.1 without
# Host were accepted; "p\u0000zzz" was routed to p; "stream":"true" passed on one path only

def test_information_and_strictness(ctx):
    m, bb = start(ctx)
    qkey = create_key(bb, '--pools', 'q', name='q-only')
    r = bb.request('GET', '/stats', headers=auth(qkey))
    eq(r.status, 200, '/stats for a key limited to q')
    st = r.json()
    eq(sorted(st['pools']), ['q'], 'pools a q-only key sees')
    eq(sorted(st['lanes']), ['oa'], 'lanes a q-only key sees (those of q)')
    st = bb.request('GET', '/stats', headers=auth(bb.key)).json()
    check({'p', 'q', 't'} <= set(st['pools']), 'an unrestricted key sees every pool: %r'
          % sorted(st['pools']))
    for data, what in ((b'get /healthz HTTP/1.1\r\nHost: t\r\n\r\n', 'lower-case method'),
                       (b'Get /healthz HTTP/1.1\r\nHost: t\r\n\r\n', 'mixed-case method'),
                       (b'GET /healthz HTTP/1.1\r\n\r\n', 'HTTP/1.1 without Host')):
        r, c = raw_exchange(bb, data)
        eq(r.status, 400, what)
    r, c = raw_exchange(bb, b'GET /healthz HTTP/1.0\r\n\r\n')
    eq(r.status, 200, 'HTTP/1.0 without Host is fine')
    for body, what in (
            ('{"model":"p\\u0000zzz","messages":[{"role":"user","content":"hi"}]}', 'NUL in model'),
            ('{"model":"p\\nx","messages":[{"role":"user","content":"hi"}]}', 'LF in model'),
            ('{"model":"p","stream":"true","messages":[{"role":"user","content":"hi"}]}',
             '"stream":"true" (same protocol)'),
            ('{"model":"t","stream":"true","messages":[{"role":"user","content":"hi"}]}',
             '"stream":"true" (translated)'),
            ('{"model":"p","stream":1,"messages":[{"role":"user","content":"hi"}]}',
             '"stream":1')):
        dialect_error(post(bb, '/v1/chat/completions', body, bb.key), 'openai', 400, what)
    for path in ('/model/p%00zzz/converse', '/v1beta/models/p%0a:generateContent'):
        r = post(bb, path, '{"messages":[{"role":"user","content":[{"text":"hi"}]}]}', bb.key)
        eq(r.status, 400, 'control byte in the model of %s (body %r)' % (path, r.body[:200]))
    r = post(bb, '/v1/chat/completions',
             '{"model":"p","stream":null,"messages":[{"role":"user","content":"hi"}]}', bb.key)
    eq(r.status, 200, '"stream":null is absent')
    eq(m.attempts()[-1:] and len(m.attempts()), 1, 'only the valid request reached the provider')
    no_worker_died(bb, 'strictness cases')


# --------------------------------------------------------------------------------------------
# the hostile provider: every lie ends in a bounded, dialect-correct answer

def test_hostile_provider(ctx):
    h = Hostile(ctx)
    m, bb = start(ctx, hostile=h, limits={'response_body_max_bytes': 4 << 20})
    base = worker_rss(bb)
    for mode in ('redirect', 'status600', 'html200', 'gzip'):
        h.mode = mode
        r = bb.chat('h', headers=auth(bb.key))
        eq(r.status, 200, '%s: answered by the next lane (body %r)' % (mode, r.body[:200]))
        eq(r.headers.get('x-busbar-lane'), 'oa', '%s: the lane that answered' % mode)
        eq(r.json()['choices'][0]['message']['content'], mock_answer(), '%s: answer' % mode)
        # with no other lane: an error in the client's dialect, never the provider's bytes
        r = bb.chat('hx', headers=auth(bb.key))
        j = dialect_error(r, 'openai', 502, '%s alone (OpenAI route)' % mode)
        check('evil says hi' not in r.text and 'Login' not in r.text, '%s: provider bytes '
              'relayed: %r' % (mode, r.body[:200]))
        r = post(bb, '/v1/messages', json.dumps({'model': 'hx', 'max_tokens': 16, 'messages': [
            {'role': 'user', 'content': 'hi'}]}), bb.key)
        dialect_error(r, 'anthropic', 502, '%s alone (Anthropic route)' % mode)
    check(not any('169.254' in line for line, _ in h.requests), 'a request went to the '
          'metadata address: %r' % h.requests)
    # a 2 GB Content-Length: held bytes stop at response_body_max_bytes, the request ends
    h.mode = 'huge_length'
    t0 = time.monotonic()
    r = bb.chat('hx', headers=auth(bb.key), timeout=30)
    dialect_error(r, 'openai', 502, '2 GB answer')
    check(time.monotonic() - t0 < scaled(10), 'the 2 GB answer took %.1fs to refuse'
          % (time.monotonic() - t0))
    growth = rss_growth_mib(bb, base)
    ctx.note('hostile provider: worker RSS growth %.1f MiB' % growth)
    check(growth < 48, 'worker RSS grew %.1f MiB for a 2 GB answer' % growth)
    no_worker_died(bb, 'a hostile provider')


# --------------------------------------------------------------------------------------------
# found by the request-path fuzzer: a client that left mid-request kept its slot of
# max_inbound_concurrent forever (n_active was only given back by a finished response)

def test_client_gone_gives_slot_back(ctx):
    m, bb = start(ctx, workers=1, limits={'max_inbound_concurrent': 3})
    for i in range(10):
        c = RawConn(bb.port, timeout=5)
        c.send(b'POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n'
               b'Content-Length: 500\r\n\r\n{"model":' % bb.key.encode())
        time.sleep(0.05)
        c.close()   # gone in the middle of its body
    c, r = None, None
    for i in range(3):   # and in the middle of a (slow) answer
        c = RawConn(bb.port, timeout=5)
        c.send_request('POST', '/v1/chat/completions', chat_body('s'), headers=auth(bb.key))
        m.wait_attempts(lambda a: len(a) == i + 1, 5, 'slow request %d upstream' % (i + 1))
        c.close()
    time.sleep(0.2)
    for i in range(4):
        r = bb.chat('p', headers=auth(bb.key))
        eq(r.status, 200, 'request %d after 13 clients left mid-request (body %r)'
           % (i, r.body[:200]))
    no_worker_died(bb, 'clients leaving mid-request')


TESTS = [
    test_bedrock_route_without_model,
    test_no_response_splitting,
    test_pipelining_flood_bounded,
    test_auth_before_body,
    test_head_in_pieces_linear,
    test_upstream_continue_flood,
    test_duplicate_keys_refused,
    test_connection_errors_in_dialect,
    test_head_has_no_body,
    test_large_prompt_translated,
    test_numeric_edges,
    test_admin_api_not_locked_out,
    test_information_and_strictness,
    test_hostile_provider,
    test_client_gone_gives_slot_back,
]

if __name__ == '__main__':
    run(TESTS)
