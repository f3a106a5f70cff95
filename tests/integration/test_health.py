#!/usr/bin/env python3
"""Active health probes (providers.*.health: { mode: active, interval_secs }): a provider that
stops answering is taken out of rotation by the probe alone, before any request fails on it,
and comes back by itself when it answers again."""

from harness import check, eq, lane, pool, provider, run, wait_for


def test_probe_takes_provider_out_and_back(ctx):
    m1 = ctx.mock('primary')
    m2 = ctx.mock('secondary')
    p1 = provider(m1)
    p1['health'] = {'mode': 'active', 'interval_secs': 1}
    bb = ctx.busbar({
        'providers': {'one': p1, 'two': provider(m2)},
        'models': {'a': lane('one', 'a'), 'b': lane('two', 'b')},
        'pools': {'p': pool(('a', 10), ('b', 1))},
    }, workers=2)
    bb.allow_log(r'failed its probe')
    eq(bb.chat('p').headers.get('x-busbar-lane'), 'a', 'primary serves while healthy')
    port = m1.port
    m1.stop()
    wait_for(lambda: bb.stats()['lanes']['a']['state'] == 'open', 6,
             'the probe takes lane a down')
    before = len(m2.attempts())
    for _ in range(5):
        r = bb.chat('p')
        eq(r.status, 200, 'answered')
        eq(r.headers.get('x-busbar-lane'), 'b', 'served by the healthy provider')
        eq(r.headers.get('x-busbar-attempts'), '1', 'no failed attempt on the probed-down lane')
    eq(len(m2.attempts()) - before, 5, 'secondary served them')
    m3 = ctx.mock('primary-again', port=port)
    wait_for(lambda: bb.stats()['lanes']['a']['state'] == 'closed', 6,
             'the probe brings lane a back')
    eq(bb.chat('p').headers.get('x-busbar-lane'), 'a', 'primary serves again')
    check(any(a.get('path') == '/v1/chat/completions' for a in m3.attempts()),
          'the revived provider got the request')


if __name__ == '__main__':
    run([test_probe_takes_provider_out_and_back])
