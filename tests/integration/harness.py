#!/usr/bin/env python3
"""
harness: the integration-test harness for busbar (Python 3 standard library only).

Every test script in this directory is a list of test functions handed to run(); each function
receives a fresh Ctx (its own temp dir, its own processes) and uses it to start bb-mock and
busbar, send requests and check what happened. run() prints TAP and exits non-zero on failure.

Guarantees:
  * every process started here is killed at the end of its test, at exit (atexit) and when the
    runner is interrupted (SIGTERM from `meson test` on timeout, SIGINT);
  * every wait is bounded and says what it was waiting for when it gives up;
  * a test FAILS when busbar's stderr contains [alert], [crit], or a sanitizer report
    (AddressSanitizer, LeakSanitizer, UBSan "runtime error:"), when busbar does not exit 0
    after the final SIGTERM, or when worker processes outlive their master.

Binary paths come from BUSBAR_BIN, BUSBARCTL_BIN, BB_MOCK_BIN (set by meson); without them the
harness falls back to <source root>/build/... so a script can be run by hand.

Environment knobs: BB_TEST_FILTER=substr (run matching tests only), BB_KEEP_TMP=1 (keep temp
dirs), BB_TIME_SCALE=N (multiply timing slack, e.g. for slow sanitizer builds).
"""

import atexit
import base64
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get('BB_SOURCE_ROOT') or os.path.dirname(os.path.dirname(HERE))


def _bin(var, rel):
    return os.environ.get(var) or os.path.join(SOURCE_ROOT, 'build', rel)


BUSBAR_BIN = _bin('BUSBAR_BIN', 'master/busbar')
BUSBARCTL_BIN = _bin('BUSBARCTL_BIN', 'ctl/busbarctl')
BB_MOCK_BIN = _bin('BB_MOCK_BIN', 'tests/mock/bb-mock')

# Timing slack multiplier: sanitizer builds are slower (tests/integration/meson.build sets 2).
TIME_SCALE = float(os.environ.get('BB_TIME_SCALE') or 1.0)

# Lines in busbar's stderr that fail a test.
FORBIDDEN_LOG = re.compile(r'\[alert\]|\[crit\]|AddressSanitizer|LeakSanitizer|runtime error:')
# Lines in the mock's stderr that fail a test (the mock's own log levels are its business).
FORBIDDEN_MOCK_LOG = re.compile(r'AddressSanitizer|LeakSanitizer|runtime error:')

TEST_KEY_ENV = 'BB_TEST_UPSTREAM_KEY'
TEST_KEY = 'sk-mock-test-0123456789'


# --------------------------------------------------------------------------------------------
# Seed recording for the request-path fuzzer (tests/fuzz/record_seeds.sh): with
# BB_RECORD_SEEDS=DIR, every byte a test sends to a busbar client port on a plain connection
# is kept, one file per connection (named by its content's hash), in DIR.

BUSBAR_PORTS = set()        # client ports of every busbar started here


def _install_seed_recorder(outdir):
    import hashlib
    os.makedirs(outdir, exist_ok=True)
    streams = {}            # id(socket) -> bytearray, for connections to a busbar port
    orig_connect, orig_send, orig_sendall, orig_close = (
        socket.socket.connect, socket.socket.send, socket.socket.sendall, socket.socket.close)

    def flush(key):
        data = streams.pop(key, None)
        if data:
            name = hashlib.sha1(bytes(data)).hexdigest()[:20]
            with open(os.path.join(outdir, name), 'wb') as f:
                f.write(bytes(data))

    def connect(self, addr):
        r = orig_connect(self, addr)
        if (isinstance(addr, tuple) and len(addr) >= 2 and addr[1] in BUSBAR_PORTS
                and not isinstance(self, ssl.SSLSocket)):
            streams[id(self)] = bytearray()
        return r

    def send(self, data, *a):
        n = orig_send(self, data, *a)
        if id(self) in streams and n > 0:
            streams[id(self)] += bytes(data)[:n]
        return n

    def sendall(self, data, *a):
        r = orig_sendall(self, data, *a)
        if id(self) in streams:
            streams[id(self)] += bytes(data)
        return r

    def close(self):
        flush(id(self))
        return orig_close(self)

    socket.socket.connect = connect
    socket.socket.send = send
    socket.socket.sendall = sendall
    socket.socket.close = close
    atexit.register(lambda: [flush(k) for k in list(streams)])


if os.environ.get('BB_RECORD_SEEDS'):
    _install_seed_recorder(os.environ['BB_RECORD_SEEDS'])


class TestFailure(AssertionError):
    pass


class TestSkip(Exception):
    """Raised by skip(): the test reports TAP "ok N - name # skip REASON"."""


def skip(reason):
    raise TestSkip(reason)


def fail(msg):
    raise TestFailure(msg)


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def eq(got, want, what):
    if got != want:
        raise TestFailure('%s: got %r, want %r' % (what, got, want))


def scaled(seconds):
    return seconds * TIME_SCALE


def wait_for(pred, timeout, what, interval=0.02):
    """Poll pred() until it returns a truthy value (returned) or timeout seconds pass."""
    deadline = time.monotonic() + scaled(timeout)
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
            last_exc = None
        except Exception as e:  # the thing polled may not be up yet
            last_exc = e
        if time.monotonic() >= deadline:
            extra = ' (last error: %r)' % (last_exc,) if last_exc else ''
            raise TestFailure('timed out after %.1fs waiting for %s%s'
                              % (scaled(timeout), what, extra))
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# Deterministic mock content (tests/mock/README.md): derive expectations, never hard-code.

def mock_words(n=8):
    return ['Hello'] + ['w%d' % i for i in range(2, n + 1)]


def mock_answer(n=8):
    return ' '.join(mock_words(n))


def mock_prompt_tokens(messages):
    n = 0
    for m in messages:
        c = m.get('content')
        if isinstance(c, str):
            n += len(c.split())
        elif isinstance(c, list):
            for part in c:
                if isinstance(part, dict) and isinstance(part.get('text'), str):
                    n += len(part['text'].split())
    return n


def swrr_sequence(weights, n):
    """nginx smooth weighted round-robin: the index picked for each of n requests."""
    cur = [0] * len(weights)
    total = sum(weights)
    out = []
    for _ in range(n):
        best = None
        for i, w in enumerate(weights):
            cur[i] += w
            if best is None or cur[i] > cur[best]:
                best = i
        cur[best] -= total
        out.append(best)
    return out


# --------------------------------------------------------------------------------------------
# Processes: registry, /proc helpers, teardown that always runs.

_PROCS = []          # every Popen started here
_PROCS_LOCK = threading.Lock()


def _proc_table():
    """{pid: ppid} for every process visible in /proc."""
    table = {}
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % d, 'rb') as f:
                s = f.read().decode('latin-1')
        except OSError:
            continue
        rest = s[s.rfind(')') + 2:].split()
        if len(rest) >= 2:
            table[int(d)] = int(rest[1])
    return table


def proc_state(pid):
    """Single-letter state from /proc/PID/stat (R, S, T, Z, ...), None if gone."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            s = f.read().decode('latin-1')
    except OSError:
        return None
    return s[s.rfind(')') + 2:].split()[0]


def pid_alive(pid):
    st = proc_state(pid)
    return st is not None and st != 'Z'


def children(pid):
    return sorted(p for p, pp in _proc_table().items() if pp == pid and pid_alive(p))


def descendants(pid):
    table = _proc_table()
    out, todo = [], [pid]
    while todo:
        cur = todo.pop()
        for p, pp in table.items():
            if pp == cur:
                out.append(p)
                todo.append(p)
    return out


def rss_kib(pid):
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _kill_tree(p, sig=signal.SIGKILL):
    """Signal a Popen's whole tree: its descendants, its process group and itself."""
    pids = []
    if p.poll() is None:
        pids = descendants(p.pid)
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    try:
        os.killpg(p.pid, sig)  # started with start_new_session=True: pgid == pid
    except OSError:
        pass
    try:
        p.kill() if sig == signal.SIGKILL else p.send_signal(sig)
    except OSError:
        pass


def spawn(argv, **kw):
    """Popen in its own session (so the whole tree can be killed) and registered for cleanup."""
    kw.setdefault('start_new_session', True)
    kw.setdefault('stdin', subprocess.DEVNULL)
    p = subprocess.Popen(argv, **kw)
    with _PROCS_LOCK:
        _PROCS.append(p)
    return p


def kill_all():
    with _PROCS_LOCK:
        procs = list(_PROCS)
    for p in procs:
        _kill_tree(p)
    for p in procs:
        try:
            p.wait(timeout=5)
        except Exception:
            pass


atexit.register(kill_all)


def _on_signal(signum, frame):
    kill_all()
    print('# interrupted by signal %d; all processes killed' % signum, flush=True)
    os._exit(128 + signum)


for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_s, _on_signal)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def tail(path, n=40):
    try:
        with open(path, 'rb') as f:
            lines = f.read().decode('utf-8', 'replace').splitlines()
    except OSError:
        return '(no file %s)' % path
    return '\n'.join(lines[-n:])


# --------------------------------------------------------------------------------------------
# YAML writer (block style, enough for busbar configs; strings always double-quoted).

_PLAIN_KEY = re.compile(r'^[A-Za-z_][A-Za-z0-9_.\-]*$')


def _yscalar(v):
    if v is True:
        return 'true'
    if v is False:
        return 'false'
    if v is None:
        return 'null'
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def _ykey(k):
    return k if _PLAIN_KEY.match(k) else json.dumps(k)


def to_yaml(obj, indent=0):
    pad = ' ' * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict) and v:
                lines.append('%s%s:' % (pad, _ykey(k)))
                lines.append(to_yaml(v, indent + 2))
            elif isinstance(v, dict):
                lines.append('%s%s: {}' % (pad, _ykey(k)))
            elif isinstance(v, list) and v and any(isinstance(x, (dict, list)) for x in v):
                lines.append('%s%s:' % (pad, _ykey(k)))
                lines.append(to_yaml(v, indent + 2))
            elif isinstance(v, list):
                lines.append('%s%s: [%s]' % (pad, _ykey(k), ', '.join(_yscalar(x) for x in v)))
            else:
                lines.append('%s%s: %s' % (pad, _ykey(k), _yscalar(v)))
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, (dict, list)) and v:
                sub = to_yaml(v, indent + 2).split('\n')
                sub[0] = pad + '- ' + sub[0].lstrip()
                lines.extend(sub)
            else:
                lines.append('%s- %s' % (pad, _yscalar(v)))
    else:
        lines.append(pad + _yscalar(obj))
    return '\n'.join(lines)


def find_pos(text, needle, nth=1):
    """1-based (line, col) of the nth occurrence of needle in text."""
    idx = -1
    for _ in range(nth):
        idx = text.index(needle, idx + 1)
    line = text.count('\n', 0, idx) + 1
    col = idx - (text.rfind('\n', 0, idx) + 1) + 1
    return line, col


# --------------------------------------------------------------------------------------------
# HTTP: http.client for ordinary requests, a raw socket client for streams and odd input.

class Resp:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.header_list = headers            # [(name, value)] as received
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    @property
    def text(self):
        return self.body.decode('utf-8', 'replace')

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise TestFailure('response body is not JSON (status %d): %r'
                              % (self.status, self.body[:300]))

    def __repr__(self):
        return '<Resp %d %r>' % (self.status, self.body[:200])


def _enc(body):
    if body is None:
        return None
    if isinstance(body, (dict, list)):
        return json.dumps(body).encode()
    if isinstance(body, str):
        return body.encode()
    return body


def request(port, method, path, body=None, headers=None, timeout=10, conn=None, tls=None,
            host='127.0.0.1'):
    """One request; with conn (an http.client connection) it is sent on that keep-alive
    connection. Returns Resp."""
    own = conn is None
    if own:
        if tls is not None:
            conn = http.client.HTTPSConnection(host, port, timeout=scaled(timeout), context=tls)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=scaled(timeout))
    h = {'content-type': 'application/json'} if body is not None else {}
    h.update(headers or {})
    try:
        conn.request(method, path, body=_enc(body), headers=h)
        r = conn.getresponse()
        data = r.read()
        return Resp(r.status, r.reason, r.getheaders(), data)
    finally:
        if own:
            conn.close()


def chat_body(model, stream=False, messages=None, **extra):
    b = {'model': model,
         'messages': messages or [{'role': 'user', 'content': 'say hello to the test'}]}
    if stream:
        b['stream'] = True
    b.update(extra)
    return b


def check_error_shape(r, status, type_=None, code=None, what='error response'):
    """OpenAI-shaped error: {"error":{"message","type","code"}} with the given status."""
    eq(r.status, status, '%s status (body %r)' % (what, r.body[:300]))
    j = r.json()
    check(isinstance(j, dict) and isinstance(j.get('error'), dict),
          '%s: body is not {"error":{...}}: %r' % (what, r.body[:300]))
    e = j['error']
    check(isinstance(e.get('message'), str) and e['message'],
          '%s: error.message missing/empty: %r' % (what, e))
    check('type' in e, '%s: error.type missing: %r' % (what, e))
    check('code' in e, '%s: error.code missing: %r' % (what, e))
    if type_ is not None:
        eq(e.get('type'), type_, '%s error.type' % what)
    if code is not None:
        eq(e.get('code'), code, '%s error.code' % what)
    return e


class RawConn:
    """A plain (or TLS) socket with an HTTP/1.1 response reader that reports how a body ended:
    'complete' (Content-Length reached / last chunk), 'eof' (closed before that), 'reset'."""

    def __init__(self, port, host='127.0.0.1', timeout=10, tls=None, server_hostname=None):
        self.sock = socket.create_connection((host, port), timeout=scaled(timeout))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=server_hostname or host)
        self.buf = b''
        self.eof = False

    def settimeout(self, t):
        self.sock.settimeout(scaled(t))

    def send(self, data):
        self.sock.sendall(_enc(data))

    def send_request(self, method, path, body=None, headers=None, host='127.0.0.1'):
        body = _enc(body)
        lines = ['%s %s HTTP/1.1' % (method, path), 'Host: %s' % host]
        h = dict(headers or {})
        if body is not None:
            h.setdefault('Content-Type', 'application/json')
            if not any(k.lower() == 'transfer-encoding' for k in h):
                h.setdefault('Content-Length', str(len(body)))
        lines += ['%s: %s' % kv for kv in h.items()]
        self.send(('\r\n'.join(lines) + '\r\n\r\n').encode() + (body or b''))

    def _fill(self):
        if self.eof:
            return False
        d = self.sock.recv(65536)
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def read_until(self, delim):
        while delim not in self.buf:
            if not self._fill():
                return None
        i = self.buf.index(delim) + len(delim)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                return None
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_all(self):
        """Everything until the peer closes (or resets)."""
        try:
            while self._fill():
                pass
        except (ConnectionResetError, ssl.SSLError):
            pass
        out, self.buf = self.buf, b''
        return out

    def read_head(self):
        """(status, reason, [(name, value)]) or None if the connection closed first."""
        head = self.read_until(b'\r\n\r\n')
        if head is None:
            return None
        lines = head.decode('latin-1').split('\r\n')
        parts = lines[0].split(' ', 2)
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ''
        hdrs = []
        for ln in lines[1:]:
            if ln:
                k, _, v = ln.partition(':')
                hdrs.append((k.strip(), v.strip()))
        return status, reason, hdrs

    def response(self):
        """A StreamResp whose body has not been read yet (None if closed before a head)."""
        h = self.read_head()
        if h is None:
            return None
        return StreamResp(self, *h)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def raw_exchange(bb, data, timeout=5):
    """Send raw bytes to busbar on a fresh connection; returns (StreamResp with its body read,
    RawConn), the connection closed with the test."""
    c = RawConn(bb.port, timeout=timeout)
    bb.ctx.on_close(c.close)
    c.send(data)
    r = c.response()
    check(r is not None, 'connection closed without a response to %r' % data[:80])
    r.read()
    return r, c


class StreamResp:
    def __init__(self, conn, status, reason, headers):
        self.conn = conn
        self.status = status
        self.reason = reason
        self.header_list = headers
        self.headers = {k.lower(): v for k, v in headers}
        self.end = None       # 'complete' | 'eof' | 'reset' | 'timeout' once the body ended
        self.body = b''

    def pieces(self):
        """Yield (monotonic time, bytes) as body data arrives (chunked decoding done here)."""
        c = self.conn
        te = self.headers.get('transfer-encoding', '').lower()
        cl = self.headers.get('content-length')
        try:
            if 'chunked' in te:
                while True:
                    line = c.read_until(b'\r\n')
                    if line is None:
                        self.end = 'eof'
                        return
                    size = int(line.split(b';')[0].strip() or b'0', 16)
                    if size == 0:
                        c.read_until(b'\r\n')
                        self.end = 'complete'
                        return
                    data = c.read_exact(size + 2)
                    if data is None:
                        self.end = 'eof'
                        return
                    self.body += data[:-2]
                    yield time.monotonic(), data[:-2]
            elif cl is not None:
                left = int(cl)
                while left > 0:
                    if not c.buf and not c._fill():
                        self.end = 'eof'
                        return
                    d, c.buf = c.buf[:left], c.buf[left:]
                    left -= len(d)
                    self.body += d
                    yield time.monotonic(), d
                self.end = 'complete'
            else:  # until close
                while True:
                    if not c.buf and not c._fill():
                        self.end = 'complete'
                        return
                    d, c.buf = c.buf, b''
                    self.body += d
                    yield time.monotonic(), d
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            self.end = 'reset'
        except socket.timeout:
            self.end = 'timeout'

    def read(self):
        for _ in self.pieces():
            pass
        return self.body

    def json(self):
        return Resp(self.status, self.reason, self.header_list, self.read()).json()

    def events(self):
        """Yield SSE events (Event) as they arrive."""
        pending = b''
        data_lines, ev_type = [], None
        for t, piece in self.pieces():
            pending += piece
            while True:
                i = pending.find(b'\n')
                if i < 0:
                    break
                line, pending = pending[:i].rstrip(b'\r'), pending[i + 1:]
                if not line:
                    if data_lines or ev_type:
                        yield Event(t, '\n'.join(data_lines), ev_type)
                    data_lines, ev_type = [], None
                elif line.startswith(b':'):
                    continue
                else:
                    k, _, v = line.decode('utf-8', 'replace').partition(':')
                    if v.startswith(' '):
                        v = v[1:]
                    if k == 'data':
                        data_lines.append(v)
                    elif k == 'event':
                        ev_type = v
        if data_lines:  # an unterminated last event still counts as received
            yield Event(time.monotonic(), '\n'.join(data_lines), ev_type, terminated=False)


class Event:
    def __init__(self, t, data, event=None, terminated=True):
        self.t = t
        self.data = data
        self.event = event
        self.terminated = terminated

    def json(self):
        return json.loads(self.data)

    def __repr__(self):
        return '<Event %s %r>' % (self.event or '', self.data[:120])


def delta_text(events):
    """Concatenate choices[0].delta.content over OpenAI chunk events."""
    out = []
    for e in events:
        if e.data == '[DONE]':
            continue
        try:
            j = e.json()
        except ValueError:
            continue
        for ch in j.get('choices') or []:
            c = (ch.get('delta') or {}).get('content')
            if isinstance(c, str):
                out.append(c)
    return ''.join(out)


def is_content_event(e):
    """An OpenAI chunk carrying non-empty delta content."""
    if e.data == '[DONE]':
        return False
    try:
        j = e.json()
    except ValueError:
        return False
    return any((ch.get('delta') or {}).get('content') for ch in j.get('choices') or [])


# --------------------------------------------------------------------------------------------
# The seven client dialects over raw HTTP: build a request, decode an answer (no SDK involved).

DIALECTS = ('openai', 'responses', 'anthropic', 'gemini', 'bedrock', 'cohere', 'bedrock_invoke')
# busbar's provider protocol for each dialect
PROVIDER_PROTOCOL = {'openai': 'openai', 'responses': 'openai-responses',
                     'anthropic': 'anthropic', 'gemini': 'gemini', 'bedrock': 'bedrock',
                     'cohere': 'cohere', 'bedrock_invoke': 'bedrock-invoke'}
AWS_KEY_ENV = 'BB_TEST_AWS_KEY'
AWS_KEY = 'AKIDTEST:SECRETTEST'   # busbar's own Bedrock credential (it signs upstream)


def dialect_request(ingress, model, stream=False, max_out=None,
                    prompt='say hello to the test', **extra):
    """(path, body) of one request in the ingress dialect (Gemini streams use ?alt=sse)."""
    if ingress == 'openai':
        b = {'model': model, 'messages': [{'role': 'user', 'content': prompt}]}
        if stream:
            b['stream'] = True
        if max_out:
            b['max_tokens'] = max_out
        path = '/v1/chat/completions'
    elif ingress == 'responses':
        b = {'model': model, 'input': prompt}
        if stream:
            b['stream'] = True
        if max_out:
            b['max_output_tokens'] = max_out
        path = '/v1/responses'
    elif ingress == 'anthropic':
        b = {'model': model, 'max_tokens': max_out or 256,
             'messages': [{'role': 'user', 'content': prompt}]}
        if stream:
            b['stream'] = True
        path = '/v1/messages'
    elif ingress == 'gemini':
        b = {'contents': [{'role': 'user', 'parts': [{'text': prompt}]}]}
        if max_out:
            b['generationConfig'] = {'maxOutputTokens': max_out}
        path = '/v1beta/models/%s:%s' % (model, 'streamGenerateContent?alt=sse' if stream
                                         else 'generateContent')
    elif ingress == 'bedrock':
        b = {'messages': [{'role': 'user', 'content': [{'text': prompt}]}]}
        if max_out:
            b['inferenceConfig'] = {'maxTokens': max_out}
        path = '/model/%s/%s' % (model, 'converse-stream' if stream else 'converse')
    elif ingress == 'cohere':
        b = {'model': model, 'messages': [{'role': 'user', 'content': prompt}]}
        if stream:
            b['stream'] = True
        if max_out:
            b['max_tokens'] = max_out
        path = '/v2/chat'
    elif ingress == 'bedrock_invoke':
        b = {'anthropic_version': 'bedrock-2023-05-31', 'max_tokens': max_out or 256,
             'messages': [{'role': 'user', 'content': prompt}]}
        path = '/model/%s/%s' % (model, 'invoke-with-response-stream' if stream else 'invoke')
    else:
        fail('unknown ingress %r' % ingress)
    b.update(extra)
    return path, b


def sse_events(body):
    """[(event type or None, data text)] of an SSE body."""
    out = []
    for block in body.decode('utf-8', 'replace').replace('\r\n', '\n').split('\n\n'):
        ev, data = None, []
        for ln in block.split('\n'):
            if ln.startswith('event:'):
                ev = ln[6:].strip()
            elif ln.startswith('data:'):
                data.append(ln[5:].lstrip(' '))
        if ev or data:
            out.append((ev, '\n'.join(data)))
    return out


def eventstream_messages(body):
    """[(headers, payload bytes)] of an AWS event-stream body (string headers only); a
    truncated last message is left out."""
    out, i = [], 0
    while i + 12 <= len(body):
        total, hlen = struct.unpack('>II', body[i:i + 8])
        if total < 16 or i + total > len(body):
            break
        h = body[i + 12:i + 12 + hlen]
        hdrs, j = {}, 0
        while j < len(h):
            nl = h[j]
            name = h[j + 1:j + 1 + nl].decode()
            j += 1 + nl
            if h[j] != 7:
                break
            vl = struct.unpack('>H', h[j + 1:j + 3])[0]
            hdrs[name] = h[j + 3:j + 3 + vl].decode()
            j += 3 + vl
        out.append((hdrs, body[i + 12 + hlen:i + total - 4]))
        i += total
    return out


def invoke_chunks(body):
    """[(event name, Messages event JSON)] of an InvokeModel stream body: each chunk's base64
    bytes decoded ('chunk'), exceptions as (':exception-type', payload JSON)."""
    out = []
    for h, p in eventstream_messages(body):
        if h.get(':message-type') == 'exception':
            out.append((h.get(':exception-type'), json.loads(p) if p else {}))
        else:
            out.append(('chunk', json.loads(base64.b64decode(json.loads(p)['bytes']))))
    return out


def eventstream(body):
    """[(':event-type', payload JSON)] of an AWS event-stream body."""
    return [(h.get(':event-type'), json.loads(p) if p else {})
            for h, p in eventstream_messages(body)]


class Answer:
    """What a client got, decoded from its dialect: text (the answer's text parts joined),
    clean (the stream ended with its dialect's proper end: OpenAI [DONE], Responses
    response.completed, Anthropic message_stop, Gemini a finishReason, Bedrock messageStop,
    Cohere message-end without error), error (an in-band error event / a non-stream error
    body), and problem (what could not be decoded, or None)."""

    def __init__(self):
        self.text, self.clean, self.error, self.problem = '', False, False, None

    def __repr__(self):
        return '<Answer %r clean=%s error=%s%s>' % (self.text[:80], self.clean, self.error,
                                                    ' problem=%s' % self.problem
                                                    if self.problem else '')


def _gemini_text(j):
    cands = j.get('candidates') or [{}]
    parts = (cands[0].get('content') or {}).get('parts') or []
    return ''.join(p.get('text', '') for p in parts if not p.get('thought'))


def dialect_answer(ingress, stream, body):
    """Decode a response body (bytes) in the ingress dialect → Answer."""
    a = Answer()
    try:
        if not stream:
            j = json.loads(body)
            if ingress == 'openai':
                a.text = j['choices'][0]['message']['content'] or ''
                a.clean = j['choices'][0].get('finish_reason') is not None
            elif ingress == 'responses':
                a.text = ''.join(c.get('text', '') for o in j['output'] if o['type'] == 'message'
                                 for c in o['content'])
                a.clean = j.get('status') == 'completed'
            elif ingress in ('anthropic', 'bedrock_invoke'):
                a.text = ''.join(c['text'] for c in j['content'] if c['type'] == 'text')
                a.clean = j.get('stop_reason') is not None
            elif ingress == 'gemini':
                a.text = _gemini_text(j)
                a.clean = bool((j.get('candidates') or [{}])[0].get('finishReason'))
            elif ingress == 'bedrock':
                a.text = ''.join(c.get('text', '') for c in j['output']['message']['content'])
                a.clean = bool(j.get('stopReason'))
            elif ingress == 'cohere':
                a.text = ''.join(c['text'] for c in j['message'].get('content') or []
                                 if c['type'] == 'text')
                a.clean = bool(j.get('finish_reason'))
            return a
        if ingress == 'bedrock':
            for h, p in eventstream_messages(body):
                if h.get(':message-type') == 'exception':
                    a.error = True
                    continue
                et, j = h.get(':event-type'), json.loads(p)
                if et == 'contentBlockDelta':
                    a.text += (j.get('delta') or {}).get('text', '')
                elif et == 'messageStop':
                    a.clean = True
            return a
        if ingress == 'bedrock_invoke':
            for ev, j in invoke_chunks(body):
                if ev != 'chunk':
                    a.error = True
                elif j.get('type') == 'content_block_delta' and j['delta'].get('type') == 'text_delta':
                    a.text += j['delta']['text']
                elif j.get('type') == 'message_stop':
                    a.clean = True
            return a
        for ev, data in sse_events(body):
            if data == '[DONE]':
                a.clean = ingress == 'openai'
                continue
            if not data:
                continue
            j = json.loads(data)
            t = j.get('type') if isinstance(j, dict) else None
            if ingress == 'openai':
                if 'error' in j:
                    a.error = True
                for c in j.get('choices') or []:
                    a.text += (c.get('delta') or {}).get('content') or ''
            elif ingress == 'responses':
                if t == 'response.output_text.delta':
                    a.text += j['delta']
                elif t == 'response.completed':
                    a.clean = True
                elif t in ('response.failed', 'error'):
                    a.error = True
            elif ingress == 'anthropic':
                if t == 'content_block_delta' and j['delta'].get('type') == 'text_delta':
                    a.text += j['delta']['text']
                elif t == 'message_stop':
                    a.clean = True
                elif t == 'error' or ev == 'error':
                    a.error = True
            elif ingress == 'gemini':
                if 'error' in j:
                    a.error = True
                    continue
                a.text += _gemini_text(j)
                if (j.get('candidates') or [{}])[0].get('finishReason'):
                    a.clean = True
            elif ingress == 'cohere':
                if t == 'content-delta':
                    a.text += j['delta']['message']['content'].get('text', '')
                elif t == 'message-end':
                    d = j.get('delta') or {}
                    if d.get('error') or d.get('finish_reason') == 'ERROR':
                        a.error = True
                    else:
                        a.clean = True
                elif t == 'error' or ev == 'error':
                    a.error = True
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, struct.error) as e:
        a.problem = 'undecodable %s %s answer (%r): %r' % (ingress, 'stream' if stream
                                                          else 'JSON', e, body[:300])
    return a


# --------------------------------------------------------------------------------------------
# bb-mock

class Mock:
    def __init__(self, ctx, name='mock', port=0):
        self.ctx = ctx
        self.name = name
        self.log_path = ctx.path('%s.attempts.jsonl' % name)
        self.stderr_path = ctx.path('%s.stderr' % name)
        check(os.access(BB_MOCK_BIN, os.X_OK), 'bb-mock binary missing: %s' % BB_MOCK_BIN)
        self._errf = open(self.stderr_path, 'wb')
        self.proc = spawn([BB_MOCK_BIN, '--listen', '127.0.0.1:%d' % port, '--log', self.log_path,
                           '--name', name], stdout=subprocess.PIPE, stderr=self._errf)
        self.port = self._read_ready()
        self.base_url = 'http://127.0.0.1:%d' % self.port
        threading.Thread(target=self._drain_stdout, daemon=True).start()

    def _read_ready(self):
        deadline = time.monotonic() + scaled(10)
        fd = self.proc.stdout.fileno()
        buf = b''
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                d = os.read(fd, 4096)
                if not d:
                    break
                buf += d
                m = re.search(rb'^ready (\d+)\s*$', buf, re.M)
                if m:
                    return int(m.group(1))
            elif self.proc.poll() is not None:
                break
        fail('bb-mock did not print "ready PORT" (exit=%r, stdout=%r)\nstderr:\n%s'
             % (self.proc.poll(), buf[:300], tail(self.stderr_path)))

    def _drain_stdout(self):
        try:
            while self.proc.stdout.read(4096):
                pass
        except (OSError, ValueError):
            pass

    def attempts(self):
        r = request(self.port, 'GET', '/_mock/attempts')
        eq(r.status, 200, 'GET /_mock/attempts status')
        return r.json()['attempts']

    def reset(self):
        r = request(self.port, 'POST', '/_mock/reset', body=b'')
        check(r.status in (200, 204), 'POST /_mock/reset status %d' % r.status)

    def wait_attempts(self, pred, timeout, what):
        """Poll the attempt log until pred(attempts) is truthy; returns the attempts."""
        box = {}

        def probe():
            box['a'] = self.attempts()
            return pred(box['a'])
        try:
            wait_for(probe, timeout, what)
        except TestFailure as e:
            raise TestFailure('%s; attempts: %s' % (e, json.dumps(box.get('a'))[:1500]))
        return box['a']

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _kill_tree(self.proc)
                self.proc.wait(timeout=5)
        self._errf.close()


# --------------------------------------------------------------------------------------------
# busbar

def lane(provider, upstream_model=None, **kw):
    d = {'provider': provider}
    if upstream_model is not None:
        d['upstream_model'] = upstream_model
    d.update(kw)
    return d


def pool(*members, **kw):
    """pool(('a', 5), ('b', 1), failover={...})"""
    d = {'members': [{'target': t, 'weight': w} for t, w in members]}
    d.update(kw)
    return d


def provider(mock_or_url, key_env=TEST_KEY_ENV):
    url = mock_or_url.base_url if isinstance(mock_or_url, Mock) else mock_or_url
    return {'protocol': 'openai', 'base_url': url, 'api_key_env': key_env}


# busbar protocol name of each egress, by the short name tests use
PROTOCOLS = {'openai': 'openai', 'responses': 'openai-responses', 'anthropic': 'anthropic',
             'gemini': 'gemini', 'bedrock': 'bedrock', 'cohere': 'cohere',
             'bedrock_invoke': 'bedrock-invoke'}


def providers_all(mock, aws_key_env):
    """One provider per protocol on mock, named p_<short>; Bedrock's key from aws_key_env."""
    out = {}
    for short, proto in PROTOCOLS.items():
        p = dict(provider(mock), protocol=proto)
        if proto.startswith('bedrock'):
            p['api_key_env'] = aws_key_env
        out['p_' + short] = p
    return out


class Busbar:
    """One busbar master (plus its workers). conf is the config as a dict, without listen,
    state_dir, admin or auth, which are filled in (overridable)."""

    def __init__(self, ctx, conf, workers=1, env=None, start=True, providers_text=None,
                 name='busbar', client_tls=None):
        self.ctx = ctx
        self.client_tls = client_tls   # ssl.SSLContext for every request when busbar does TLS
        self.name = name
        self.port = free_port()
        BUSBAR_PORTS.add(self.port)
        self.state_dir = ctx.path('%s-state' % name)
        os.makedirs(self.state_dir, exist_ok=True)
        self.admin_socket = ctx.path('%s-admin.sock' % name)
        full = {'listen': '127.0.0.1:%d' % self.port, 'workers': workers,
                'state_dir': self.state_dir, 'admin': {'socket': self.admin_socket},
                'auth': {'mode': 'none'}, 'log_level': 'info'}
        lim = {'drain_timeout_secs': 5}
        lim.update(conf.get('limits') or {})
        full.update(conf)
        full['limits'] = lim
        self.conf = full
        self.config_path = ctx.path('%s.yaml' % name)
        self.providers_path = ctx.path('%s-providers.yaml' % name)
        self.stderr_path = ctx.path('%s.stderr' % name)
        self.write_config(full)
        write_providers_file(self.providers_path, providers_text)
        self.env = dict(os.environ)
        self.env[TEST_KEY_ENV] = TEST_KEY
        self.env.update(env or {})
        self.proc = None
        self.exit_code = None
        self.expect_exit = 0        # checked at teardown; None = don't care
        self.allowed = []           # regexes for forbidden lines that a test provoked on purpose
        self.known_workers = set()  # every worker pid seen, for the orphan check
        ctx.busbars.append(self)
        if start:
            self.start()

    # -- config
    def write_config(self, conf_or_text):
        text = conf_or_text if isinstance(conf_or_text, str) else to_yaml(conf_or_text) + '\n'
        tmp = self.config_path + '.tmp'
        with open(tmp, 'w') as f:
            f.write(text)
        os.replace(tmp, self.config_path)
        self.config_text = text
        return text

    def argv(self, *extra):
        return [BUSBAR_BIN, '-c', self.config_path, '-p', self.providers_path] + list(extra)

    # -- lifecycle
    def start(self, wait=True):
        check(os.access(BUSBAR_BIN, os.X_OK), 'busbar binary missing: %s' % BUSBAR_BIN)
        for attempt in range(3):
            self._errf = open(self.stderr_path, 'ab')
            self.proc = spawn(self.argv(), stdout=self._errf, stderr=self._errf, env=self.env)
            if not wait:
                return self
            try:
                self.wait_ready()
                return self
            except TestFailure:
                # Port raced with another test: pick a new one and retry.
                if self.proc.poll() is not None and 'in use' in tail(self.stderr_path, 10):
                    self.port = free_port()
                    BUSBAR_PORTS.add(self.port)
                    self.conf['listen'] = '127.0.0.1:%d' % self.port
                    self.write_config(self.conf)
                    continue
                raise
        fail('busbar could not bind a free port')

    def wait_ready(self, timeout=15):
        def ready():
            if self.proc.poll() is not None:
                raise TestFailure('busbar exited with %r before becoming ready; stderr:\n%s'
                                  % (self.proc.returncode, tail(self.stderr_path)))
            try:
                r = self.request('GET', '/healthz', timeout=2)
            except OSError:  # includes ssl.SSLError
                return False
            return r.status == 200
        deadline = time.monotonic() + scaled(timeout)
        while True:
            if ready():
                break
            if time.monotonic() > deadline:
                fail('busbar not ready (GET /healthz != 200) after %.0fs; stderr:\n%s'
                     % (scaled(timeout), tail(self.stderr_path)))
            time.sleep(0.02)
        self.workers()  # remember the first generation's pids
        return self

    @property
    def pid(self):
        return self.proc.pid

    def workers(self):
        """Worker pids right now (live children of the master)."""
        w = children(self.proc.pid) if self.proc and self.proc.poll() is None else []
        self.known_workers.update(w)
        return w

    def wait_workers(self, n, timeout=10, exclude=()):
        """Wait until exactly n live workers exist, none of them in exclude."""
        return wait_for(lambda: (lambda w: w if len(w) == n and not set(w) & set(exclude)
                                 else None)(self.workers()),
                        timeout, '%d workers (excluding %s)' % (n, sorted(exclude)))

    def kill(self, sig):
        """Send sig to the master."""
        self.proc.send_signal(sig)

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Signal the master (sig None: don't) and wait for it; returns its exit code (None on
        timeout)."""
        if self.proc is None:
            return None
        self.workers()
        if self.proc.poll() is None:
            if sig is not None:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=scaled(timeout or (self.conf['limits']
                                                          ['drain_timeout_secs'] + 10)))
            except subprocess.TimeoutExpired:
                return None
        self.exit_code = self.proc.returncode
        return self.exit_code

    def allow_log(self, regex):
        self.allowed.append(re.compile(regex))

    # -- log
    def log(self):
        try:
            with open(self.stderr_path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def wait_log(self, regex, timeout=10, what=None):
        rx = re.compile(regex)
        return wait_for(lambda: rx.search(self.log()), timeout,
                        what or 'busbar log line matching %r' % regex)

    def forbidden_lines(self):
        out = []
        for ln in self.log().splitlines():
            if FORBIDDEN_LOG.search(ln) and not any(a.search(ln) for a in self.allowed):
                out.append(ln)
        return out

    # -- data plane
    def request(self, method, path, body=None, **kw):
        kw.setdefault('tls', self.client_tls)
        return request(self.port, method, path, body=body, **kw)

    def chat(self, model, stream=False, messages=None, headers=None, timeout=10, conn=None,
             **extra):
        return self.request('POST', '/v1/chat/completions',
                            chat_body(model, stream, messages, **extra), headers=headers,
                            timeout=timeout, conn=conn)

    def stream(self, model, messages=None, timeout=10, headers=None, **extra):
        """Open a streaming chat request; returns (RawConn, StreamResp) with the body unread."""
        c = RawConn(self.port, timeout=timeout, tls=self.client_tls)
        self.ctx.on_close(c.close)
        c.send_request('POST', '/v1/chat/completions',
                       chat_body(model, True, messages, **extra), headers=headers)
        r = c.response()
        check(r is not None, 'busbar closed the connection without a response head')
        return c, r

    def stats(self):
        r = self.request('GET', '/stats')
        eq(r.status, 200, 'GET /stats status')
        return r.json()

    def ctl(self, *args, timeout=15, socket_path=None):
        return run_ctl(['--socket', socket_path or self.admin_socket] + list(args),
                       timeout=timeout)


def run_ctl(args, timeout=15):
    check(os.access(BUSBARCTL_BIN, os.X_OK), 'busbarctl binary missing: %s' % BUSBARCTL_BIN)
    try:
        return subprocess.run([BUSBARCTL_BIN] + list(args), capture_output=True, text=True,
                              timeout=scaled(timeout), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        fail('busbarctl %s did not finish within %.0fs' % (' '.join(args), scaled(timeout)))


def validate(config_path, providers_path, env=None, timeout=15):
    """busbar -t -c CONFIG -p PROVIDERS → CompletedProcess (stdout+stderr in .out)."""
    check(os.access(BUSBAR_BIN, os.X_OK), 'busbar binary missing: %s' % BUSBAR_BIN)
    e = dict(os.environ)
    e[TEST_KEY_ENV] = TEST_KEY
    e.update(env or {})
    try:
        p = subprocess.run([BUSBAR_BIN, '-t', '-c', config_path, '-p', providers_path],
                           capture_output=True, text=True, timeout=scaled(timeout), env=e,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        fail('busbar -t did not finish within %.0fs' % scaled(timeout))
    p.out = p.stdout + p.stderr
    return p


# The providers catalogue for tests: one unused, syntactically boring entry (tests declare
# the providers they use inline in the config). The repo's etc/providers.yaml is used instead
# when BB_TEST_PROVIDERS=catalogue.
PROVIDERS_MIN = """\
# providers catalogue for an integration test (name -> protocol, base_url): one unused entry.
unused-catalogue-entry:
  protocol: openai
  base_url: "http://127.0.0.1:9"
"""


def write_providers_file(path, text=None):
    if text is None and os.environ.get('BB_TEST_PROVIDERS') == 'catalogue':
        shutil.copyfile(os.path.join(SOURCE_ROOT, 'etc', 'providers.yaml'), path)
        return
    with open(path, 'w') as f:
        f.write(text if text is not None else PROVIDERS_MIN)


# --------------------------------------------------------------------------------------------
# TLS material, generated with the openssl CLI at test time.

def make_certs(d):
    """CA1 → server (SAN 127.0.0.1, localhost) and client; CA2 → a foreign client.
    Returns {name: path}."""
    os.makedirs(d, exist_ok=True)
    p = lambda n: os.path.join(d, n)  # noqa: E731

    def ossl(*args):
        r = subprocess.run(['openssl'] + list(args), capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            fail('openssl %s failed: %s' % (' '.join(args), r.stderr[-800:]))

    def ca(name):
        ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
             '-nodes', '-keyout', p(name + '.key'), '-out', p(name + '.pem'), '-days', '2',
             '-subj', '/CN=busbar test %s' % name,
             '-addext', 'basicConstraints=critical,CA:TRUE',
             '-addext', 'keyUsage=critical,keyCertSign,cRLSign')

    def leaf(name, ca_name, cn, ext):
        ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
             '-keyout', p(name + '.key'), '-out', p(name + '.csr'), '-subj', '/CN=' + cn)
        with open(p(name + '.ext'), 'w') as f:
            f.write(ext)
        ossl('x509', '-req', '-in', p(name + '.csr'), '-CA', p(ca_name + '.pem'),
             '-CAkey', p(ca_name + '.key'), '-CAcreateserial', '-out', p(name + '.pem'),
             '-days', '2', '-extfile', p(name + '.ext'))

    ca('ca')
    ca('otherca')
    leaf('server', 'ca', 'localhost',
         'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'
         'keyUsage=critical,digitalSignature\n')
    leaf('client', 'ca', 'busbar-test-client',
         'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n')
    leaf('foreign', 'otherca', 'busbar-foreign-client',
         'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n')
    out = {n: p(n + '.pem') for n in ('ca', 'otherca', 'server', 'client', 'foreign')}
    out.update({n + '_key': p(n + '.key') for n in ('server', 'client', 'foreign')})
    return out


# --------------------------------------------------------------------------------------------
# Per-test context and the TAP runner.

class Ctx:
    def __init__(self, name):
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix='bbit-%s-' % re.sub(r'[^A-Za-z0-9]', '', name)[:20])
        self.busbars = []
        self.mocks = []
        self._closers = []
        self.notes = []

    def path(self, name):
        return os.path.join(self.tmp, name)

    def mock(self, name='mock', port=0):
        m = Mock(self, name, port)
        self.mocks.append(m)
        return m

    def busbar(self, conf, **kw):
        return Busbar(self, conf, **kw)

    def on_close(self, fn):
        self._closers.append(fn)

    def note(self, msg):
        """A diagnostic line printed with the TAP result."""
        self.notes.append(msg)

    def close(self):
        """Tear everything down; returns a list of problems that fail the test."""
        problems = []
        for fn in reversed(self._closers):
            try:
                fn()
            except Exception:
                pass
        for b in self.busbars:
            if b.proc is None:
                continue
            workers = set(b.known_workers) | set(descendants(b.proc.pid)
                                                  if b.proc.poll() is None else [])
            code = b.stop()
            if code is None:
                problems.append('%s (pid %d) did not exit within %.0fs of SIGTERM'
                                % (b.name, b.proc.pid,
                                   scaled(b.conf['limits']['drain_timeout_secs'] + 10)))
                _kill_tree(b.proc)
                b.proc.wait(timeout=5)
            elif b.expect_exit is not None and code != b.expect_exit:
                problems.append('%s exited with %r after SIGTERM, want %r'
                                % (b.name, code, b.expect_exit))
            try:
                wait_for(lambda: not [w for w in workers if pid_alive(w)], 5,
                         'workers to exit')
            except TestFailure:
                left = [w for w in workers if pid_alive(w)]
                problems.append('%s workers %s outlived the master' % (b.name, left))
            for w in workers:
                try:
                    os.kill(w, signal.SIGKILL)
                except OSError:
                    pass
            bad = b.forbidden_lines()
            if bad:
                problems.append('%s stderr has forbidden lines:\n%s'
                                % (b.name, '\n'.join(bad[:30])))
        for m in self.mocks:
            try:
                m.stop()
            except Exception as e:
                problems.append('stopping %s: %r' % (m.name, e))
            try:
                with open(m.stderr_path, 'rb') as f:
                    bad = [ln for ln in f.read().decode('utf-8', 'replace').splitlines()
                           if FORBIDDEN_MOCK_LOG.search(ln)]
                if bad:
                    problems.append('%s stderr has sanitizer reports:\n%s'
                                    % (m.name, '\n'.join(bad[:20])))
            except OSError:
                pass
        kill_all()
        return problems

    def diagnostics(self):
        out = []
        for b in self.busbars:
            out.append('--- %s stderr (%s), last lines:' % (b.name, b.stderr_path))
            out.append(tail(b.stderr_path, 30))
        for m in self.mocks:
            out.append('--- %s stderr, last lines:' % m.name)
            out.append(tail(m.stderr_path, 10))
        return '\n'.join(out)


def _diag(text):
    for ln in str(text).splitlines() or ['']:
        print('# ' + ln)


def run(tests):
    """Run test functions (each takes a Ctx) and print TAP; exit 1 if any failed."""
    flt = os.environ.get('BB_TEST_FILTER')
    if flt:
        tests = [t for t in tests if flt in t.__name__]
    print('1..%d' % len(tests), flush=True)
    failed = 0
    for i, fn in enumerate(tests, 1):
        name = fn.__name__[5:] if fn.__name__.startswith('test_') else fn.__name__
        ctx = Ctx(name)
        t0 = time.monotonic()
        err = None
        skipped = None
        try:
            fn(ctx)
        except TestSkip as e:
            skipped = str(e) or 'skipped'
        except TestFailure as e:
            err = 'FAILED: %s' % e
        except Exception:
            err = traceback.format_exc()
        try:
            problems = ctx.close()
        except Exception:
            problems = ['teardown crashed:\n' + traceback.format_exc()]
        dt = time.monotonic() - t0
        if err or problems:
            failed += 1
            print('not ok %d - %s (%.1fs)' % (i, name, dt), flush=True)
            if err:
                _diag(err)
            for p in problems:
                _diag('teardown: ' + p)
            for n in ctx.notes:
                _diag(n)
            _diag(ctx.diagnostics())
            _diag('temp dir kept: %s' % ctx.tmp)
        else:
            print('ok %d - %s (%.1fs)%s' % (i, name, dt, ' # skip %s' % skipped if skipped else ''),
                  flush=True)
            for n in ctx.notes:
                _diag(n)
            if not os.environ.get('BB_KEEP_TMP'):
                shutil.rmtree(ctx.tmp, ignore_errors=True)
        sys.stdout.flush()
    kill_all()
    sys.exit(1 if failed else 0)
