#!/usr/bin/env python3
"""Every scripted fault of the mock, streaming and non-streaming, through a pool of
[faulty OpenAI lane, healthy Anthropic lane] with an OpenAI client (SPEC §5, issue 4 tests):
the client gets the complete canonical answer (faults before the commit point fail over
invisibly) or, after the commit point, a stream that ends in an error event and no [DONE];
the mock's attempt log shows how many attempts each lane got."""

from harness import check, eq, lane, mock_answer, pool, provider, run


FAULTS = [
    # directive, fails before the commit point (→ failover), applies to streams only
    ('status=500', True, False),
    ('status=503;retry_after=1', True, False),
    ('status=429;retry_after=2', True, False),
    ('reset', True, False),
    ('noresponse', True, False),
    ('slowfirst=3000', True, False),
    ('inband=0', True, True),
    ('malformed=0', True, True),
    ('cut=0', True, True),
    ('stall=0', True, True),
    ('cut=3', False, True),
    ('stall=3', False, True),
    ('malformed=3', False, True),
    ('inband=3', False, True),
]


def make(ctx):
    m = ctx.mock()
    anthropic = {'protocol': 'anthropic', 'base_url': m.base_url, 'api_key_env': 'BB_TEST_KEY'}
    models = {'good': lane('anth', 'good')}
    pools = {}
    for i, (d, _, _) in enumerate(FAULTS):
        models['f%d' % i] = lane('mock', 'f%d;%s' % (i, d), attempt_timeout_ms=500)
        pools['p%d' % i] = pool(('f%d' % i, 10), ('good', 1))
    bb = ctx.busbar({'providers': {'mock': provider(m), 'anth': anthropic}, 'models': models,
                     'pools': pools, 'limits': {'stream_idle_timeout_ms': 500}})
    bb.allow_log(r'failed after the response started')
    return m, bb


def answer_of(body):
    import json
    text = ''
    for line in body.splitlines():
        if line.startswith('data: ') and line != 'data: [DONE]':
            ch = json.loads(line[6:])
            for c in ch.get('choices', []):
                text += (c.get('delta') or {}).get('content') or ''
    return text


def test_non_stream(ctx):
    m, bb = make(ctx)
    for i, (d, before, stream_only) in enumerate(FAULTS):
        if stream_only:
            continue
        r = bb.chat('p%d' % i)
        eq(r.status, 200, '%s: status' % d)
        eq(r.json()['choices'][0]['message']['content'], mock_answer(),
           '%s: the complete answer from the healthy lane' % d)
        eq(r.headers.get('x-busbar-lane'), 'good', '%s: served by the Anthropic lane' % d)
        eq(len([a for a in m.attempts() if a['model'].startswith('f%d;' % i)]), 1,
           '%s: the faulty lane got exactly one attempt' % d)


def test_stream(ctx):
    m, bb = make(ctx)
    for i, (d, before, _) in enumerate(FAULTS):
        c, r = bb.stream('p%d' % i)
        body = r.read().decode()
        eq(r.status, 200, '%s: status' % d)
        if before:
            eq(r.headers.get('x-busbar-lane'), 'good', '%s: failed over invisibly' % d)
            eq(answer_of(body), mock_answer(), '%s: one whole answer' % d)
            check(body.rstrip().endswith('data: [DONE]'), '%s: terminated' % d)
        else:
            eq(r.headers.get('x-busbar-lane'), 'f%d' % i, '%s: committed on the faulty lane' % d)
            check('"error"' in body, '%s: ends with an error event' % d)
            check('[DONE]' not in body, '%s: never looks complete' % d)
            check(answer_of(body) != mock_answer(), '%s: the answer is visibly partial' % d)
        eq(len([a for a in m.attempts() if a['model'].startswith('f%d;' % i)]), 1,
           '%s: one attempt on the faulty lane' % d)


if __name__ == '__main__':
    run([test_non_stream, test_stream])
