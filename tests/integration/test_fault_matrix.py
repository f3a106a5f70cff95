#!/usr/bin/env python3
"""The fault matrix (issue 10): every scripted fault of bb-mock x {non-stream, stream} x
{same-protocol fallback, cross-protocol fallback} x the six fault-lane protocols, over raw HTTP.

Each case has its own pool [faulty lane (weight 10), healthy lane (weight 1)]: the faulty lane
speaks protocol P, so does the client; the healthy lane speaks P too (same) or another family
(cross: Anthropic, or OpenAI when P is Anthropic). What the client must get:
  * non-stream, every fault: 200 with the complete canonical answer from the healthy lane
    (chunkcut: a complete answer from either lane);
  * stream, a fault before the first content: the healthy lane's complete answer, ended with the
    dialect's proper end;
  * stream, a fault after content (cut=3, stall=3, malformed=3, inband=3): committed on the
    faulty lane, ended with the dialect's in-band error event, never its clean end, the text
    visibly partial; `nodone` (the finish reason was sent) ends cleanly and complete;
  * with `stream: {on_cut: continue}` (its own busbar): cut=3, stall=3, malformed=3 give ONE
    complete answer text, properly ended, the healthy lane having received a prefill.
In every case the mock's attempt log shows exactly one attempt on the faulty lane.

All cases run concurrently (a thread pool) against one busbar (one more for on_cut: continue);
TAP: one line per (protocol, mode, fallback kind), naming each failing case, then the clean
shutdown of both busbars and the mock. BB_TEST_FILTER=substr keeps the groups whose name
contains it (e.g. `gemini stream`)."""

import concurrent.futures
import json
import os
import shutil
import sys
import time
import traceback

from harness import (AWS_KEY, AWS_KEY_ENV, DIALECTS, PROVIDER_PROTOCOL, TEST_KEY_ENV, Ctx,
                     RawConn, TestFailure, _diag, dialect_answer, dialect_request, kill_all, lane,
                     mock_answer, pool, tail)

# What the client must see, per mode (None: the case is not run in that mode):
#   failover  the healthy lane's complete answer (stream: properly ended)
#   either    a complete, valid answer (properly ended) from either lane
#   partial   committed on the faulty lane; the dialect's error event, no clean end, partial text
#   complete  the faulty lane's own complete answer, properly ended
#   unfinished  committed on the faulty lane; the dialect's error event, no clean end
FAULTS = [
    # directive                  non-stream   stream
    ('status=500',               'failover',  'failover'),
    ('status=503;retry_after=1', 'failover',  'failover'),
    ('status=429;retry_after=2', 'failover',  'failover'),
    ('reset',                    'failover',  'failover'),
    ('noresponse',               'failover',  'failover'),
    ('slowfirst=3000',           'failover',  'failover'),
    ('slowbody=3000',            'failover',  None),        # streams: see slowfirst
    ('inband=0',                 'failover',  'failover'),
    ('malformed=0',              'failover',  'failover'),
    ('cut=0',                    'failover',  'failover'),
    ('stall=0',                  'failover',  'failover'),
    ('cut=3',                    'failover',  'partial'),
    ('stall=3',                  'failover',  'partial'),
    ('malformed=3',              'failover',  'partial'),
    ('inband=3',                 None,        'partial'),   # non-stream inband ignores N
    ('nodone',                   None,        'nodone'),    # non-stream: no such fault
    ('chunkcut',                 'either',    'either'),
    ('html',                     'failover',  'failover'),
    ('redirect=302',             'failover',  'failover'),
    ('redirect=307',             'failover',  'failover'),
    ('rawstatus=600',            'failover',  'failover'),
]
CONTINUE_FAULTS = ['cut=3', 'stall=3', 'malformed=3']
# `nodone` leaves out the stream's terminator. OpenAI's finish chunk and Anthropic's (and
# InvokeModel's) message_delta (the stop reason) come before it, so the final state is known and busbar must
# end the stream cleanly; Gemini's finishReason chunk, Bedrock's messageStop, Cohere's
# message-end and Responses' response.completed ARE the terminator, so without it the answer's
# final state is unknown: a cut (docs/reliability.md).
NODONE_KNOWN = ('openai', 'anthropic', 'bedrock_invoke')
KINDS = ('same', 'cross')
MODES = (('n', 'non-stream'), ('s', 'stream'), ('c', 'stream on_cut=continue'))
CLIENT_TIMEOUT = 8      # seconds per case (scaled); every expected outcome comes much sooner
THREADS = 48


def fallback_protocol(p, kind):
    if kind == 'same':
        return p
    return 'openai' if p == 'anthropic' else 'anthropic'


class Case:
    def __init__(self, proto, kind, mode, i, directive, expect):
        if expect == 'nodone':
            expect = 'complete' if proto in NODONE_KNOWN else 'unfinished'
        self.proto, self.kind, self.mode, self.directive, self.expect = \
            proto, kind, mode, directive, expect
        tag = '%s_%s_%s_%d' % (proto, kind, mode, i)
        self.faulty = 'f_' + tag
        self.upstream = 'f-%s;%s' % (tag.replace('_', '-'), directive)
        self.pool = 'pl_' + tag
        fb = fallback_protocol(proto, kind)
        # a continuation case has a healthy lane of its own, to find its prefill
        self.healthy = 'okc_' + tag if mode == 'c' else 'ok_' + fb
        self.healthy_upstream = self.healthy.replace('_', '-')
        self.fb_protocol = fb
        self.client = proto   # the client's dialect: the faulty lane's
        self.group = '%s %s, %s-protocol fallback' % (proto, dict(MODES)[mode], kind)
        self.errors = []
        self.result = None

    def name(self):
        return '%s [%s]' % (self.directive, self.kind)


def make_cases():
    cases = []
    for p in DIALECTS:
        for kind in KINDS:
            for i, (d, ns, st) in enumerate(FAULTS):
                if ns:
                    cases.append(Case(p, kind, 'n', i, d, ns))
                if st:
                    cases.append(Case(p, kind, 's', i, d, st))
            for i, d in enumerate(CONTINUE_FAULTS):
                cases.append(Case(p, kind, 'c', i, d, 'continue'))
    return cases


def config(m, cases):
    providers, models, pools = {}, {}, {}
    for p in DIALECTS:
        prov = {'protocol': PROVIDER_PROTOCOL[p], 'base_url': m.base_url,
                'api_key_env': AWS_KEY_ENV if p == 'bedrock' else TEST_KEY_ENV}
        providers['p_' + p] = prov
    for c in cases:
        models[c.faulty] = lane('p_' + c.proto, c.upstream, attempt_timeout_ms=500)
        models[c.healthy] = lane('p_' + c.fb_protocol, c.healthy_upstream)
        kw = {'stream': {'on_cut': 'continue'}} if c.mode == 'c' else {}
        pools[c.pool] = pool((c.faulty, 10), (c.healthy, 1), **kw)
    return {'providers': providers, 'models': models, 'pools': pools,
            'limits': {'stream_idle_timeout_ms': 500}}


def send(bb, c):
    """One client request in the case's dialect → (status, headers, body, how it ended)."""
    stream = c.mode != 'n'
    path, body = dialect_request(c.client, c.pool, stream)
    conn = RawConn(bb.port, timeout=CLIENT_TIMEOUT)
    try:
        conn.send_request('POST', path, json.dumps(body))
        r = conn.response()
        if r is None:
            return None, {}, b'', 'closed before a response head'
        r.read()
        return r.status, r.headers, r.body, r.end
    finally:
        conn.close()


def run_case(bb, c):
    t0 = time.monotonic()
    try:
        c.result = send(bb, c)
    except OSError as e:
        c.result = (None, {}, b'', 'client error %r' % e)
    c.elapsed = time.monotonic() - t0


def judge(c, attempts):
    """Fill c.errors from the client's result and the mock's attempts."""
    status, headers, body, end = c.result
    err = c.errors.append
    got_lane = headers.get('x-busbar-lane')
    want = mock_answer()
    ctx = '(%.1fs, lane %s, body %r)' % (c.elapsed, got_lane, body[:160])
    if status != 200:
        err('status %r, ended %s %s' % (status, end, ctx))
        return
    if end != 'complete':
        err('the response body ended by %s %s' % (end, ctx))
    a = dialect_answer(c.client, c.mode != 'n', body)
    if a.problem:
        err('%s (%.1fs, lane %s)' % (a.problem, c.elapsed, got_lane))
        return
    mine = [x for x in attempts if (x.get('model') or '').startswith(c.upstream.split(';')[0] + ';')]
    if len(mine) != 1:
        err('%d attempts on the faulty lane, want 1' % len(mine))
    if c.expect == 'failover':
        if got_lane != c.healthy:
            err('served by lane %s, want the healthy lane %s %s' % (got_lane, c.healthy, ctx))
    elif c.expect in ('partial', 'unfinished', 'complete', 'continue'):
        if got_lane != c.faulty:
            err('served by lane %s, want it committed on the faulty lane %s %s'
                % (got_lane, c.faulty, ctx))
    elif got_lane not in (c.faulty, c.healthy):
        err('served by lane %r %s' % (got_lane, ctx))
    if c.expect in ('partial', 'unfinished'):
        if not a.error:
            err('no in-band error event at the end %s' % ctx)
        if a.clean:
            err('ends with the clean terminator: a truncated answer that looks complete %s' % ctx)
        if not want.startswith(a.text) or (c.expect == 'partial' and a.text == want):
            err('text %r is not a visible part of the answer' % a.text)
        return
    if a.text != want:
        err('text %r, want the whole answer %r %s' % (a.text, want, ctx))
    if not a.clean:
        err('not properly ended in the %s dialect %s' % (c.client, ctx))
    if a.error:
        err('an error event in a complete answer %s' % ctx)
    if c.expect == 'continue':
        cont = [x for x in attempts if x.get('model') == c.healthy_upstream]
        if len(cont) != 1:
            err('%d attempts on the continuation lane %s, want 1' % (len(cont), c.healthy))
        elif not cont[0].get('prefill') or not want.startswith(cont[0]['prefill']):
            err('the continuation lane got prefill %r, want the text already sent'
                % cont[0].get('prefill'))


def start_busbar(ctx, m, cases, name):
    bb = ctx.busbar(config(m, cases), name=name, env={AWS_KEY_ENV: AWS_KEY})
    bb.allow_log(r'failed after the response started')
    return bb


def run_all(ctx, cases):
    """Run every case; returns {group: setup error} for groups that could not run."""
    m = ctx.mock()
    setup = {}
    main = [c for c in cases if c.mode != 'c']
    cont = [c for c in cases if c.mode == 'c']
    runs = []
    for name, cs in (('busbar', main), ('busbar-continue', cont)):
        if not cs:
            continue
        try:
            runs.append((start_busbar(ctx, m, cs, name), cs))
        except TestFailure as e:
            ctx.busbars[-1].expect_exit = None  # it exited by itself; its teardown is moot
            lines = str(e).splitlines()
            msg = '\n'.join(lines[:3] + (['...'] if len(lines) > 3 else []))
            for c in cs:
                setup[c.group] = '%s did not start: %s' % (name, msg)
    with concurrent.futures.ThreadPoolExecutor(THREADS) as ex:
        futs = [ex.submit(run_case, bb, c) for bb, cs in runs for c in cs]
        for f in futs:
            f.result()
    attempts = m.attempts()
    for _, cs in runs:
        for c in cs:
            try:
                judge(c, attempts)
            except Exception:
                c.errors.append('judging crashed:\n' + traceback.format_exc())
    return setup


def main():
    flt = os.environ.get('BB_TEST_FILTER')
    cases = [c for c in make_cases() if not flt or flt in c.group]
    groups = []
    for c in cases:
        if c.group not in groups:
            groups.append(c.group)
    print('1..%d' % (len(groups) + 1), flush=True)
    ctx = Ctx('fault_matrix')
    t0 = time.monotonic()
    n = failed = 0
    try:
        setup = run_all(ctx, cases)
    except Exception:
        setup = {g: 'setup crashed:\n' + traceback.format_exc() for g in groups}
    for g in groups:
        n += 1
        cs = [c for c in cases if c.group == g]
        bad = [c for c in cs if c.errors]
        if g in setup or bad:
            failed += 1
            print('not ok %d - %s (%d/%d cases failed)' % (n, g, len(bad) if g not in setup
                                                            else len(cs), len(cs)), flush=True)
            if g in setup:
                _diag(setup[g])
            for c in bad:
                _diag('%s: %s' % (c.name(), '; '.join(c.errors)))
        else:
            print('ok %d - %s (%d cases)' % (n, g, len(cs)), flush=True)
    try:
        problems = ctx.close()
    except Exception:
        problems = ['teardown crashed:\n' + traceback.format_exc()]
    n += 1
    if problems:
        failed += 1
        print('not ok %d - clean shutdown (%.1fs total)' % (n, time.monotonic() - t0))
        for p in problems:
            _diag('teardown: ' + p)
    else:
        print('ok %d - clean shutdown (%.1fs total)' % (n, time.monotonic() - t0))
    if failed:
        for b in ctx.busbars:
            _diag('--- %s log tail:\n%s' % (b.name, tail(b.stderr_path, 20)))
        _diag('temp dir kept: %s' % ctx.tmp)
    elif not os.environ.get('BB_KEEP_TMP'):
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    kill_all()
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
