#!/usr/bin/env python3
"""Routing policies and exhaustion handling (SPEC §5.3–§5.5): cheapest, fastest (latency
EWMA), least_busy, usage (provider rate-limit headroom), session affinity, on_exhausted
fallback_pool / least_bad / queue, and the stream commit-point options hold_first_event and
prerelease_ms."""

import threading
import time

from harness import (TEST_KEY_ENV, RawConn, check, eq, lane, pool, provider, run, scaled,
                     wait_for)


def attempts_for(m, model):
    return [a for a in m.attempts() if a.get('model') == model]


def consecutive(n, base):
    return {'trip': {'mode': 'consecutive', 'consecutive_n': n},
            'base_cooldown_secs': base, 'max_cooldown_secs': base * 4}


def price(i, o):
    return {'input': i, 'output': o}


def test_cheapest_then_next_cheapest(ctx):
    m = ctx.mock()
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': {'pricey': lane('mock', 'pricey', price=price(3, 15)),
                   'cheap': lane('mock', 'cheap;status=503', price=price(0.15, 0.6)),
                   'mid': lane('mock', 'mid', price=price(1, 2))},
        'pools': {'p': pool(('pricey', 1), ('cheap', 1), ('mid', 1), route='cheapest')},
    })
    r = bb.chat('p')
    eq(r.status, 200, 'status')
    eq(r.headers.get('x-busbar-lane'), 'mid', 'the cheapest failed: the next cheapest served')
    eq(len(attempts_for(m, 'cheap;status=503')), 1, 'the cheapest was tried first')
    eq(len(attempts_for(m, 'pricey')), 0, 'the most expensive never tried')


def test_fastest_learns_latency(ctx):
    m = ctx.mock()
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': {'slow': lane('mock', 'slow;slowfirst=150'), 'fast': lane('mock', 'fast')},
        'pools': {'p': pool(('slow', 1), ('fast', 1), route='fastest')},
    })
    lanes = [bb.chat('p').headers.get('x-busbar-lane') for _ in range(8)]
    # unknown latency is explored first, then the EWMA keeps choosing the faster lane
    check('slow' in lanes[:2] and 'fast' in lanes[:2], 'both explored first: %s' % lanes)
    eq(lanes[2:], ['fast'] * 6, 'then the fastest lane only')


def test_least_busy(ctx, route='least_busy'):
    m = ctx.mock()
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': {'a': lane('mock', 'a;delay=300', max_concurrent=4),
                   'b': lane('mock', 'b', max_concurrent=4)},
        'pools': {'p': pool(('a', 1), ('b', 1), route=route)},
    })
    # two long streams hold slots on lane a (asked for by its lane name, outside the pool)
    held = [bb.stream('a') for _ in range(2)]
    for c, r in held:
        eq(r.status, 200, 'a held stream started')
    # a: 2 of 4 slots busy, b: none. Round-robin would alternate a, b, a, b; least_busy
    # sends every request to b while a stays busier.
    lanes = [bb.chat('p').headers.get('x-busbar-lane') for _ in range(4)]
    eq(lanes, ['b'] * 4, 'the pool picks the lane with the most free slots')
    for c, r in held:
        r.read()
    # idle again: a tie goes to the configured order
    eq(bb.chat('p').headers.get('x-busbar-lane'), 'a', 'tie: the first member')


def test_session_affinity(ctx):
    m = ctx.mock()
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': {'a': lane('mock', 'a'), 'b': lane('mock', 'b'), 'c': lane('mock', 'c')},
        'pools': {'p': pool(('a', 1), ('b', 1), ('c', 1),
                            affinity={'mode': 'session', 'header_name': 'x-session-id'})},
    })
    seen = {}
    for s in ('alice', 'bob', 'carol', 'dave', 'erin'):
        got = {bb.chat('p', headers={'x-session-id': s}).headers.get('x-busbar-lane')
               for _ in range(5)}
        eq(len(got), 1, 'session %s sticks to one lane: %s' % (s, got))
        seen[s] = got.pop()
    check(len(set(seen.values())) > 1, 'different sessions spread: %s' % seen)


def test_fallback_pool(ctx):
    m = ctx.mock()
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': {'bad': lane('mock', 'bad;status=503'), 'spare': lane('mock', 'spare')},
        'pools': {'main': pool(('bad', 1), breaker=consecutive(1, 60),
                               on_exhausted={'action': 'fallback_pool:backup'}),
                  'backup': pool(('spare', 1))},
    })
    eq(bb.chat('main').status, 200, 'first request: failed over into the fallback pool')
    r = bb.chat('main')
    eq(r.status, 200, 'main exhausted: served by the fallback pool')
    eq(r.headers.get('x-busbar-lane'), 'spare', 'fallback lane')
    eq(len(attempts_for(m, 'bad;status=503')), 1, 'the open lane was not retried')


def test_least_bad(ctx):
    m = ctx.mock()
    bad = 'bad;status=503;fail_first=1'
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': {'bad': lane('mock', bad)},
        'pools': {'p': pool(('bad', 1), breaker=consecutive(1, 60),
                            on_exhausted={'action': 'least_bad'})},
    })
    eq(bb.chat('p').status, 503, 'first failure relayed')
    eq(bb.chat('p').status, 200, 'least_bad still tries the open lane instead of rejecting')
    eq(len(attempts_for(m, bad)), 2, 'two attempts')


def test_queue_waits_for_cooldown(ctx):
    m = ctx.mock()
    flaky = 'flaky;status=503;fail_first=1'
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': {'flaky': lane('mock', flaky)},
        'pools': {'p': pool(('flaky', 1), breaker=consecutive(1, 1),
                            on_exhausted={'action': 'queue:4000'})},
    })
    eq(bb.chat('p').status, 503, 'first failure relayed')
    t0 = time.monotonic()
    r = bb.chat('p')
    dt = time.monotonic() - t0
    eq(r.status, 200, 'queued until the cooldown ended, then served by the probe')
    check(0.7 <= dt <= scaled(3.5), 'waited about the 1 s cooldown (%.2fs)' % dt)


def test_prerelease_widens_failover_window(ctx):
    m = ctx.mock()
    late = 'late;inband=2'
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': {'late': lane('mock', late), 'good': lane('mock', 'good')},
        'pools': {'p': pool(('late', 10), ('good', 1), stream={'prerelease_ms': 1500})},
    })
    c, r = bb.stream('p')
    body = r.read().decode()
    eq(r.headers.get('x-busbar-lane'), 'good', 'the in-band error inside the hold failed over')
    check('error' not in body and '[DONE]' in body, 'the client saw one clean answer')


def test_hold_first_event_off_commits_at_head(ctx):
    m = ctx.mock()
    early = 'early;inband=0'
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': {'early': lane('mock', early), 'good': lane('mock', 'good')},
        'pools': {'p': pool(('early', 10), ('good', 1), stream={'hold_first_event': False})},
    })
    c, r = bb.stream('p')
    body = r.read().decode()
    eq(r.headers.get('x-busbar-lane'), 'early', 'committed at the response head')
    check('"error"' in body and '[DONE]' not in body, 'the error reached the client: %r'
          % body[:300])


def test_failover_exclusions(ctx):
    m = ctx.mock()
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': {'a': lane('mock', 'a;status=503'), 'b': lane('mock', 'b')},
        'pools': {'p': pool(('a', 10), ('b', 1), failover={'exclusions': ['b']})},
    })
    r = bb.chat('p')
    eq(r.status, 503, 'b is never a failover target: the failure is relayed')
    eq(r.headers.get('x-busbar-attempts'), '1', 'one attempt')
    eq(len(attempts_for(m, 'b')), 0, 'b untouched')


# route: usage. bb-mock's ratelimit=R/L[/S] answers with the provider's rate-limit headers and
# counts down like a real quota: the n-th attempt of a model string reports R-(n-1) of L.

def served_by(bb, model):
    r = bb.chat(model)
    eq(r.status, 200, 'status of a request to %s' % model)
    return r.headers.get('x-busbar-lane')


def warm_up(bb, *lanes):
    """One direct request per lane: its provider's headroom lands in the lane's cell, which
    every pool using the lane reads."""
    for name in lanes:
        eq(served_by(bb, name), name, 'direct request to lane %s' % name)


def test_usage_follows_provider_headroom(ctx):
    m = ctx.mock()
    quota = {'low': 10, 'high': 14}  # remaining of 100 reported by each lane's first answer
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        'models': {n: lane('mock', '%s;ratelimit=%d/100' % (n, r)) for n, r in quota.items()},
        # low first: with no readings, weighted order would start there
        'pools': {'p': pool(('low', 1), ('high', 1), route='usage')},
    })
    warm_up(bb, 'low', 'high')
    last = dict(quota)  # what each lane's provider said last
    lanes = [served_by(bb, 'p') for _ in range(10)]
    ahead = quota['high'] - quota['low']
    eq(lanes[:ahead], ['high'] * ahead,
       'the lane with more headroom serves until its quota falls to the other one')
    for i, got in enumerate(lanes):
        top = max(last.values())
        check(last.get(got) == top, 'request %d went to %s, which reported %s of 100 while '
              'the best reported %d (%s; all: %s)' % (i + 1, got, last.get(got), top, last, lanes))
        last[got] -= 1  # its provider counts this request
    # once level they alternate: each answer leaves the other lane ahead
    check(all(sorted(lanes[i:i + 2]) == ['high', 'low'] for i in range(ahead, 10, 2)),
          'traffic moved back and forth once the readings met: %s' % lanes)


def test_usage_expired_reading_is_full_headroom(ctx):
    m = ctx.mock()
    bb = ctx.busbar({
        'providers': {'mock': provider(m)},
        # low's window resets in 1 s; high's in 60 s
        'models': {'low': lane('mock', 'low;ratelimit=1/100/1'),
                   'high': lane('mock', 'high;ratelimit=90/100')},
        'pools': {'p': pool(('low', 1), ('high', 1), route='usage')},
    })
    t0 = time.monotonic()
    warm_up(bb, 'low', 'high')
    eq(served_by(bb, 'p'), 'high', '1 of 100 left on low, 90 on high')
    # low's reading lasts until its reset (whole seconds, rounded up); after it, low counts as
    # full headroom (more than high's 0.9) and gets the next request
    wait_for(lambda: served_by(bb, 'p') == 'low', 5, "low's 1 s reading to expire",
             interval=0.1)
    dt = time.monotonic() - t0
    check(dt <= scaled(3), 'the 1 s reading expired late (%.2fs)' % dt)
    # that answer said 0 of 100 left: back to high
    eq(served_by(bb, 'p'), 'high', 'low reported an empty quota')


def test_usage_reads_anthropic_headers(ctx):
    m = ctx.mock()
    anth = {'protocol': 'anthropic', 'base_url': m.base_url, 'api_key_env': TEST_KEY_ENV}
    bb = ctx.busbar({
        'providers': {'anth': anth},
        'models': {'low': lane('anth', 'low;ratelimit=1/100'),
                   'high': lane('anth', 'high;ratelimit=90/100')},
        'pools': {'p': pool(('low', 1), ('high', 1), route='usage')},
    })
    warm_up(bb, 'low', 'high')
    lanes = [served_by(bb, 'p') for _ in range(5)]
    eq(lanes, ['high'] * 5, 'anthropic-ratelimit-* headers rank the lanes')
    got = [a for a in m.attempts() if a.get('protocol') == 'anthropic']
    eq(len(got), 7, 'every request reached the Anthropic route')


if __name__ == '__main__':
    run([test_cheapest_then_next_cheapest, test_fastest_learns_latency, test_least_busy,
         test_session_affinity, test_fallback_pool, test_least_bad, test_queue_waits_for_cooldown,
         test_prerelease_widens_failover_window, test_hold_first_event_off_commits_at_head,
         test_failover_exclusions, test_usage_follows_provider_headroom,
         test_usage_expired_reading_is_full_headroom, test_usage_reads_anthropic_headers])
