#!/usr/bin/env python3
"""Smooth weighted round-robin (nginx's algorithm), one worker so the order is deterministic."""

from harness import eq, lane, pool, provider, run, swrr_sequence


def test_swrr_5_1_1(ctx):
    m = ctx.mock()
    names, weights = ['a', 'b', 'c'], [5, 1, 1]
    conf = {
        'providers': {'mock': provider(m)},
        'models': {n: lane('mock', 'up-' + n) for n in names},
        'pools': {'p': pool(*zip(names, weights))},
    }
    bb = ctx.busbar(conf, workers=1)
    n = 2 * sum(weights)
    want = [names[i] for i in swrr_sequence(weights, n)]
    eq(''.join(want[:7]), 'aabacaa', 'reference SWRR (test self-check)')
    got = []
    for _ in range(n):
        r = bb.chat('p')
        eq(r.status, 200, 'status (body %r)' % r.body[:200])
        got.append(r.headers.get('x-busbar-lane'))
    eq(got, want, 'x-busbar-lane sequence')
    eq([a['model'] for a in m.attempts()], ['up-' + x for x in want],
       'upstream models in arrival order at the mock')


def test_swrr_keepalive_and_equal_weights(ctx):
    """The order is a property of the worker, not the connection: one keep-alive connection
    and fresh connections interleaved see one sequence; equal weights alternate."""
    import http.client
    m = ctx.mock()
    conf = {
        'providers': {'mock': provider(m)},
        'models': {'x': lane('mock'), 'y': lane('mock'), 'z': lane('mock')},
        'pools': {'eq': pool(('x', 1), ('y', 1), ('z', 1)), 'two': pool(('x', 3), ('y', 2))},
    }
    bb = ctx.busbar(conf, workers=1)
    conn = http.client.HTTPConnection('127.0.0.1', bb.port, timeout=10)
    ctx.on_close(conn.close)
    for pname, names, weights in (('eq', ['x', 'y', 'z'], [1, 1, 1]),
                                  ('two', ['x', 'y'], [3, 2])):
        n = 2 * sum(weights)
        want = [names[i] for i in swrr_sequence(weights, n)]
        got = []
        for i in range(n):
            r = bb.chat(pname, conn=conn if i % 2 == 0 else None)
            eq(r.status, 200, 'status')
            got.append(r.headers.get('x-busbar-lane'))
        eq(got, want, 'x-busbar-lane sequence for pool %s' % pname)


if __name__ == '__main__':
    run([test_swrr_5_1_1, test_swrr_keepalive_and_equal_weights])
