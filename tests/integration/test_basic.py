#!/usr/bin/env python3
"""The data plane's happy path: non-stream and stream through a pool, the model rewrite and the
upstream auth header as seen by the mock, /v1/models, /healthz, /stats."""

import json
import socket
import time

from harness import (TEST_KEY, chat_body, check, delta_text, eq, is_content_event, lane, mock_answer,
                     mock_prompt_tokens, pool, provider, run, scaled, swrr_sequence)

UPSTREAM = 'gpt-upstream-x'


def start(ctx, workers=1):
    m = ctx.mock()
    conf = {
        'providers': {'mock': provider(m)},
        'models': {
            'alpha': lane('mock', UPSTREAM, max_concurrent=7),
            'beta': lane('mock'),                                   # upstream_model = name
            'slow': lane('mock', 'm;delay=150;words=6'),
        },
        'pools': {
            'fast': pool(('alpha', 1)),
            'both': pool(('alpha', 2), ('beta', 1)),
        },
    }
    return m, ctx.busbar(conf, workers=workers)


def test_non_stream(ctx):
    m, bb = start(ctx)
    msgs = [{'role': 'system', 'content': 'you are terse'},
            {'role': 'user', 'content': 'count the words in this prompt please'}]
    r = bb.chat('fast', messages=msgs)
    eq(r.status, 200, 'status (body %r)' % r.body[:300])
    check(r.headers.get('content-type', '').startswith('application/json'),
          'content-type %r' % r.headers.get('content-type'))
    j = r.json()
    eq(j['choices'][0]['message']['content'], mock_answer(), 'answer text')
    eq(j['choices'][0]['message']['role'], 'assistant', 'role')
    pt = mock_prompt_tokens(msgs)
    eq(j['usage']['prompt_tokens'], pt, 'usage.prompt_tokens')
    eq(j['usage']['completion_tokens'], len(mock_answer().split()), 'usage.completion_tokens')
    eq(r.headers.get('x-busbar-lane'), 'alpha', 'x-busbar-lane')
    eq(r.headers.get('x-busbar-attempts'), '1', 'x-busbar-attempts')
    check(r.headers.get('x-request-id'), 'x-request-id missing')
    a = m.attempts()
    eq(len(a), 1, 'attempts at the mock')
    eq(a[0]['model'], UPSTREAM, 'model as received upstream (rewritten to upstream_model)')
    eq(a[0]['authorization'], 'Bearer ' + TEST_KEY, 'upstream Authorization header')
    eq(a[0]['path'], '/v1/chat/completions', 'upstream path')
    eq(a[0]['stream'], False, 'upstream stream flag')


def test_dropped_fields_header(ctx):
    """What a hop cannot carry is named in x-busbar-dropped-fields: fields the client's reader
    does not know, then what the egress writer (here Anthropic's) dropped, e.g. seed and
    frequency_penalty. A hop that carries everything sends no header."""
    m = ctx.mock()
    p = provider(m)
    p['protocol'] = 'anthropic'
    bb = ctx.busbar({'providers': {'mock': p}, 'models': {'claude': lane('mock', 'c-up')},
                     'pools': {'p': pool(('claude', 1))}})
    r = bb.chat('p', seed=7, frequency_penalty=0.5, logit_bias={'50256': -100}, temperature=0.5)
    eq(r.status, 200, 'status (body %r)' % r.body[:300])
    eq(r.headers.get('x-busbar-dropped-fields'), 'logit_bias,seed,frequency_penalty',
       'dropped fields: the reader\'s, then the writer\'s, in order')
    r = bb.chat('p', temperature=0.5)
    eq(r.status, 200, 'status')
    eq(r.headers.get('x-busbar-dropped-fields'), None, 'nothing dropped: no header')
    # a client's member name reaches a response header only when it cannot break out of it
    body = chat_body('p')
    body['x\r\nx-evil: 1'] = True
    body['a,b'] = 1
    r = bb.request('POST', '/v1/chat/completions', body)
    eq(r.status, 200, 'status')
    eq(r.headers.get('x-busbar-dropped-fields'), 'x%0D%0Ax-evil:%201,a%2Cb',
       'unsafe names are recorded %XX-encoded')
    eq(r.headers.get('x-evil'), None, 'no header injected')


def test_body_forwarded_byte_for_byte(ctx):
    """Only the model value changes: the mock's body_bytes = client bytes − len(pool name) +
    len(upstream_model), with odd spacing and unknown fields preserved."""
    m, bb = start(ctx)
    body = ('{ "messages" : [ {"role":"user","content":"hi   there\\u00e9"} ],\n'
            '  "temperature": 0.25, "x_unknown_field": {"nested": [1, 2, {"a": null}]},\n'
            '  "model"  :  "fast" , "max_tokens": 17 }').encode()
    r = bb.request('POST', '/v1/chat/completions', body=body)
    eq(r.status, 200, 'status (body %r)' % r.body[:300])
    a = m.attempts()
    eq(len(a), 1, 'attempts')
    eq(a[0]['body_bytes'], len(body) - len('fast') + len(UPSTREAM), 'upstream body size')
    eq(a[0]['model'], UPSTREAM, 'upstream model')
    # A lane name used directly as the model: upstream_model defaults to the lane name.
    m.reset()
    r = bb.chat('beta')
    eq(r.status, 200, 'lane-as-model status')
    eq(r.headers.get('x-busbar-lane'), 'beta', 'x-busbar-lane for lane-as-model')
    eq(m.attempts()[0]['model'], 'beta', 'upstream model defaults to the lane name')


def test_request_ids_unique(ctx):
    m, bb = start(ctx)
    ids = set()
    for _ in range(5):
        r = bb.chat('fast')
        eq(r.status, 200, 'status')
        ids.add(r.headers.get('x-request-id'))
    eq(len(ids), 5, 'distinct x-request-id values over 5 requests')


def test_stream_incremental(ctx):
    """Frames are relayed as they come: with the mock pausing 150 ms between chunks the client
    sees them spread out over time, not in one burst at the end."""
    m, bb = start(ctx)
    t_sent = time.monotonic()
    c, r = bb.stream('slow', stream_options={'include_usage': True})
    eq(r.status, 200, 'status')
    check(r.headers.get('content-type', '').startswith('text/event-stream'),
          'content-type %r' % r.headers.get('content-type'))
    eq(r.headers.get('x-busbar-lane'), 'slow', 'x-busbar-lane')
    check(r.headers.get('x-request-id'), 'x-request-id missing')
    evs = list(r.events())
    eq(r.end, 'complete', 'how the stream ended')
    check(evs and evs[-1].data == '[DONE]', 'last event is not [DONE]: %r' % evs[-3:])
    eq(delta_text(evs), mock_answer(6), 'streamed text')
    content = [e for e in evs if is_content_event(e)]
    eq(len(content), 6, 'content chunks (one per word)')
    usage = [e.json()['usage'] for e in evs if e.data != '[DONE]' and e.json().get('usage')]
    check(usage and usage[-1]['completion_tokens'] == 6, 'final usage chunk: %r' % usage)
    # Chunk k (k=1..6) leaves the mock ~k*150 ms after the headers. Incremental relay means
    # the first content arrives long before the last, and the gaps are spread out.
    span = content[-1].t - content[0].t
    check(span >= 0.5 * 5 * 0.150, 'first-to-last content span %.3fs: frames were buffered'
          % span)
    gaps = [b.t - a.t for a, b in zip(content, content[1:])]
    check(sum(1 for g in gaps if g >= 0.05) >= 3,
          'chunks arrived in bursts, gaps %s' % ['%.3f' % g for g in gaps])
    check(content[0].t - t_sent < scaled(2.0), 'first content took %.2fs'
          % (content[0].t - t_sent))
    a = m.attempts()
    eq(a[0]['stream'], True, 'upstream saw stream:true')
    eq(a[0]['outcome'], 'ok', 'upstream outcome')


def test_large_answer_slow_reader(ctx):
    """An answer much larger than the socket takes at once, to a client that reads it late and
    through a small receive buffer: busbar writes what the socket takes at once and must leave
    the rest to its write event (non-stream: the whole answer at the end; stream: each read's
    bytes). Every byte arrives."""
    m = ctx.mock()
    words = {False: 1000000, True: 40000}  # about 8 MB of JSON, 6 MB of events: more than a
    # socket takes (tcp_wmem at most 4 MB)
    bb = ctx.busbar({'providers': {'mock': provider(m)},
                     'models': {'big': lane('mock', 'm;words=%d' % words[False]),
                                'sbig': lane('mock', 'm;words=%d' % words[True])},
                     'pools': {'p': pool(('big', 1)), 'sp': pool(('sbig', 1))}})
    for stream in (False, True):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(scaled(20))
        s.connect(('127.0.0.1', bb.port))
        ctx.on_close(s.close)
        body = json.dumps(chat_body('sp' if stream else 'p', stream=stream)).encode()
        # keep-alive: the answer's end is its length (or last chunk), not a close
        s.sendall(b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n'
                  b'Content-Type: application/json\r\n'
                  b'Content-Length: %d\r\n\r\n' % len(body) + body)
        time.sleep(0.5)  # the answer is ready and the socket full before the client reads
        data = b''
        while b'\r\n\r\n' not in data:
            data += s.recv(1 << 16)
        head, _, rest = data.partition(b'\r\n\r\n')
        clen = [int(h.split(b':')[1]) for h in head.split(b'\r\n')
                if h.lower().startswith(b'content-length:')]
        while (len(rest) < clen[0]) if clen else not rest.endswith(b'0\r\n\r\n'):
            c = s.recv(1 << 16)  # a stall here (the timeout) is the bug this test is for
            check(c, 'the connection closed mid-answer')
            rest += c
        check(head.startswith(b'HTTP/1.1 200'), 'status line %r' % head[:40])
        if not stream:
            j = json.loads(rest)
            eq(len(j['choices'][0]['message']['content'].split()), words[stream],
               'words in the answer')
        else:
            check(rest.endswith(b'0\r\n\r\n'), 'the stream ends with its last chunk')
            check(b'data: [DONE]' in rest, 'the stream ends with [DONE]')
            eq(rest.count(b'"content":"') - rest.count(b'"content":""'), words[stream],
               'content events in the stream')


def test_models_list(ctx):
    m, bb = start(ctx)
    r = bb.request('GET', '/v1/models')
    eq(r.status, 200, 'status')
    j = r.json()
    eq(j.get('object'), 'list', 'object')
    ids = [d['id'] for d in j['data']]
    eq(ids, sorted(['fast', 'both']) + sorted(['alpha', 'beta', 'slow']),
       'ids: pools then lanes, each sorted')
    for d in j['data']:
        eq(d.get('object'), 'model', 'data[].object')
        eq(d.get('owned_by'), 'busbar', 'data[].owned_by')
        check(isinstance(d.get('created'), int), 'data[].created not an int: %r' % d)


def test_healthz(ctx):
    m, bb = start(ctx)
    r = bb.request('GET', '/healthz')
    eq(r.status, 200, 'status')
    eq(r.json(), {'status': 'ok'}, 'body')


def test_stats(ctx):
    m, bb = start(ctx)
    for _ in range(3):
        eq(bb.chat('both').status, 200, 'status')
    eq(bb.chat('fast').status, 200, 'status')
    s = bb.stats()
    eq(s.get('generation'), 1, 'generation')
    both = s['pools']['both']['members']
    eq([(x['lane'], x['weight']) for x in both], [('alpha', 2), ('beta', 1)],
       'pool both members (lane, weight)')
    # 'both' (weights 2,1) served 3 requests by SWRR; 'fast' served alpha once more.
    seq = swrr_sequence([2, 1], 3)
    n_alpha, n_beta = seq.count(0), seq.count(1)
    by_lane = {x['lane']: x for x in both}
    eq((by_lane['alpha']['ok'], by_lane['beta']['ok']), (n_alpha, n_beta),
       'pool member ok counts')
    eq((by_lane['alpha']['attempts'], by_lane['beta']['attempts']), (n_alpha, n_beta),
       'pool member attempts')
    for x in both:
        eq(x['inflight'], 0, 'member inflight')
        eq(x['err'], 0, 'member err')
    lanes = s['lanes']
    eq(sorted(lanes), ['alpha', 'beta', 'slow'], 'lanes in /stats')
    eq(lanes['alpha']['ok'], n_alpha + 1, 'lane alpha ok (pool both + pool fast)')
    eq(lanes['alpha']['attempts'], n_alpha + 1, 'lane alpha attempts')
    eq(lanes['beta']['ok'], n_beta, 'lane beta ok')
    eq(lanes['alpha']['max_concurrent'], 7, 'lane alpha max_concurrent')
    for name, x in lanes.items():
        eq(x['inflight'], 0, 'lane %s inflight' % name)
        eq(x['err'], 0, 'lane %s err' % name)
    ctx.note('stats: ' + json.dumps(s)[:400])


if __name__ == '__main__':
    run([test_non_stream, test_dropped_fields_header, test_body_forwarded_byte_for_byte, test_request_ids_unique,
         test_stream_incremental, test_large_answer_slow_reader, test_models_list, test_healthz,
         test_stats])
