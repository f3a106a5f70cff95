#!/usr/bin/env python3
"""Reliability engine (SPEC §5): shared circuit breakers with one half-open probe, Retry-After
honoured, auth hard-down without failover, context-length failover to a larger member,
on_exhausted reject, time-to-first-token deadline, in-band errors before the commit point,
a cut after the commit point across protocol families, and one breaker state seen by every
worker. Expected numbers come from the breaker settings each test configures."""

import json
import threading
import time

from harness import (RawConn, check, eq, lane, mock_answer, pool, provider, run, scaled,
                     wait_for)


def attempts_for(m, model):
    return [a for a in m.attempts() if a.get('model') == model]


def consecutive(n, base, maxc=None):
    return {'trip': {'mode': 'consecutive', 'consecutive_n': n},
            'base_cooldown_secs': base, 'max_cooldown_secs': maxc or base * 8}


def test_flapping_primary_recovers_through_one_probe(ctx):
    m = ctx.mock()
    flaky = 'flaky;status=503;fail_first=3'
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': {'flaky': lane('mock', flaky), 'good': lane('mock', 'good')},
        'pools': {'p': pool(('flaky', 1), ('good', 1), breaker=consecutive(2, 1))},
    }, workers=2)
    stop = time.monotonic() + scaled(4.5)
    statuses = []
    while time.monotonic() < stop:
        statuses.append(bb.chat('p').status)
        time.sleep(0.02)
    check(all(s == 200 for s in statuses), 'every client request answered 200: %s'
          % sorted(set(statuses)))
    fl = attempts_for(m, flaky)
    eq([a['status'] for a in fl[:4]], [503, 503, 503, 200],
       'flaky lane: two failures trip it, the first probe fails, the second closes it')
    # cooldowns: base 1 s (±10 %) after the trip, then doubled (2 s ±10 %) after the failed
    # probe; no attempt reached the lane in between (one probe across both workers)
    gap1 = fl[2]['t_ms'] - fl[1]['t_ms']
    gap2 = fl[3]['t_ms'] - fl[2]['t_ms']
    check(gap1 >= 900, 'first probe waited the base cooldown (%d ms)' % gap1)
    check(gap2 >= 1800, 'second probe waited the doubled cooldown (%d ms)' % gap2)
    st = bb.stats()['pools']['p']['members'][0]
    eq(st['state'], 'closed', 'flaky member closed again')


def test_retry_after_is_honoured(ctx):
    m = ctx.mock()
    limited = 'lim;status=429;retry_after=2'
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': {'lim': lane('mock', limited), 'good': lane('mock', 'good')},
        'pools': {'p': pool(('lim', 5), ('good', 1))},
    })
    for _ in range(12):
        r = bb.chat('p')
        eq(r.status, 200, 'served by the other member')
    eq(len(attempts_for(m, limited)), 1,
       'the 429 lane is not hammered: one attempt inside its Retry-After window')
    member = bb.stats()['pools']['p']['members'][0]
    check(member['cooldown_ms'] > 0, 'cooldown reported in /stats: %r' % member)


def test_auth_error_hard_down_no_failover(ctx):
    m = ctx.mock()
    bad = 'bad;status=401'
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': {'bad': lane('mock', bad), 'good': lane('mock', 'good')},
        'pools': {'p': pool(('bad', 10), ('good', 1))},
    })
    r = bb.chat('p')
    eq(r.status, 401, 'auth failure is not failed over')
    msg = r.json()['error']['message']
    check('credentials' in msg and 'bad' in msg, 'normalised message naming the lane: %r' % msg)
    eq(len(attempts_for(m, 'good')), 0, 'no failover on auth errors')
    bb.allow_log(r'hard down')
    r = bb.chat('p')
    eq(r.status, 200, 'the lane is hard down: the next request goes elsewhere')
    eq(len(attempts_for(m, bad)), 1, 'hard-down lane not tried again')


def test_context_length_fails_over_to_larger(ctx):
    m = ctx.mock()
    small = 'small;status=400;errcode=context_length_exceeded'
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': {'small': lane('mock', small, context_max=8000),
                   'smaller': lane('mock', 'smaller', context_max=4000),
                   'big': lane('mock', 'big', context_max=200000)},
        'pools': {'p': pool(('small', 10), ('smaller', 5), ('big', 1))},
    })
    r = bb.chat('p')
    eq(r.status, 200, 'served after a context-length error')
    eq(r.headers.get('x-busbar-lane'), 'big', 'only a larger member is tried')
    eq(len(attempts_for(m, 'smaller')), 0, 'the smaller member is skipped')
    eq(bb.stats()['pools']['p']['members'][0]['state'], 'closed',
       'a context-length error does not count against the lane')


def test_exhausted_rejects_with_retry_after(ctx):
    m = ctx.mock()
    down = 'down;status=503'
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': {'down': lane('mock', down)},
        'pools': {'p': pool(('down', 1), breaker=consecutive(1, 30))},
    })
    r = bb.chat('p')
    eq(r.status, 503, 'the upstream 503 is relayed')
    r = bb.chat('p')
    eq(r.status, 503, 'breaker open: rejected')
    eq(r.json()['error']['code'], 'no_capacity', 'busbar\'s own rejection')
    ra = int(r.headers.get('retry-after', '0'))
    check(27 <= ra <= 34, 'Retry-After is the cooldown end (30 s ±10 %%): %d' % ra)
    eq(len(attempts_for(m, down)), 1, 'no attempt while open')
    r = bb.request('GET', '/healthz')
    eq(r.status, 503, '/healthz reports no usable lane')


def test_slow_first_token_abandoned(ctx):
    m = ctx.mock()
    slow = 'slow;slowfirst=5000'
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': {'slow': lane('mock', slow, attempt_timeout_ms=400),
                   'good': lane('mock', 'good')},
        'pools': {'p': pool(('slow', 10), ('good', 1))},
    })
    t0 = time.monotonic()
    c, r = bb.stream('p')
    body = r.read().decode()
    dt = time.monotonic() - t0
    eq(r.status, 200, 'stream status')
    check('[DONE]' in body and 'Hello' in body, 'complete answer from the other lane')
    eq(r.headers.get('x-busbar-lane'), 'good', 'served by the healthy lane')
    check(dt < scaled(2.0), 'abandoned within the attempt deadline (%.2fs)' % dt)
    a = m.wait_attempts(lambda a: any(x['model'] == slow and x['outcome'] == 'aborted'
                                      for x in a), 5, 'the slow attempt cancelled')
    check(a, 'slow attempt aborted')


def test_inband_error_before_commit_fails_over(ctx):
    m = ctx.mock()
    early = 'early;inband=0'
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': {'early': lane('mock', early), 'good': lane('mock', 'good')},
        'pools': {'p': pool(('early', 10), ('good', 1))},
    })
    c, r = bb.stream('p')
    body = r.read().decode()
    eq(r.status, 200, 'stream status')
    eq(r.headers.get('x-busbar-lane'), 'good', 'failed over invisibly')
    check('error' not in body and '[DONE]' in body, 'the client saw only the good answer')


def test_cut_after_commit_across_protocols(ctx):
    m = ctx.mock()
    cut = 'cut;cut=3'
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': {'cut': lane('mock', cut), 'good': lane('mock', 'good')},
        'pools': {'p': pool(('cut', 10), ('good', 1))},
    })
    bb.allow_log(r'failed after the response started')
    c = RawConn(bb.port, timeout=10)
    ctx.on_close(c.close)
    c.send_request('POST', '/v1/messages', json.dumps(
        {'model': 'p', 'max_tokens': 100, 'stream': True,
         'messages': [{'role': 'user', 'content': 'hi'}]}).encode(),
        headers={'content-type': 'application/json', 'anthropic-version': '2023-06-01'})
    r = c.response()
    body = r.read().decode()
    eq(r.status, 200, 'anthropic stream committed')
    check('event: content_block_delta' in body, 'content arrived before the cut')
    check('event: error' in body, 'the cut ends with an Anthropic error event')
    check('message_stop' not in body, 'no message_stop: the answer does not look complete')


def test_breaker_shared_by_workers(ctx):
    m = ctx.mock()
    bad = 'bad;status=500'
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': {'bad': lane('mock', bad), 'good': lane('mock', 'good')},
        'pools': {'p': pool(('bad', 10), ('good', 1), breaker=consecutive(1, 60))},
    }, workers=2)
    eq(bb.chat('p').status, 200, 'the first request trips the lane and fails over')
    eq(len(attempts_for(m, bad)), 1, 'one attempt tripped it')
    results = []

    def client():
        for _ in range(15):
            results.append(bb.chat('p').status)  # a new connection each: both workers serve
    ts = [threading.Thread(target=client) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check(all(s == 200 for s in results), 'all answered: %s' % sorted(set(results)))
    eq(len(attempts_for(m, bad)), 1,
       'a lane tripped in one worker is skipped by every worker (60 requests, both workers)')


if __name__ == '__main__':
    run([test_flapping_primary_recovers_through_one_probe, test_retry_after_is_honoured,
         test_auth_error_hard_down_no_failover, test_context_length_fails_over_to_larger,
         test_exhausted_rejects_with_retry_after, test_slow_first_token_abandoned,
         test_inband_error_before_commit_fails_over, test_cut_after_commit_across_protocols,
         test_breaker_shared_by_workers])
