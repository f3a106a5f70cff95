#!/usr/bin/env python3
"""Failover: a failing first member (503, 429 + Retry-After, reset, no response within the
attempt timeout, connection refused) is retried on the healthy second member; attempts are
counted from the mock's log; when every attempt fails the client gets the right error."""

import time

from harness import (check, check_error_shape, delta_text, eq, free_port, lane, mock_answer,
                     pool, provider, run, scaled)

ATTEMPT_TIMEOUT_MS = 400

# lane name → upstream model (directives for the mock) or None for the refused provider
BAD = {
    'bad503': 'm;status=503',
    'bad429': 'm;status=429;retry_after=1',
    'badreset': 'm;reset',
    'badnoresp': 'm;noresponse',
    'bad500': 'm;status=500',
    'bad502': 'm;status=502',
    'bad400': 'm;status=400',
    'reset2': 'm2;reset',
    'noresp2': 'm2;noresponse',
    'badconn': None,
}
GOOD_MODEL = 'm'


def start(ctx, pools):
    m = ctx.mock()
    dead = 'http://127.0.0.1:%d' % free_port()      # nothing listens there
    models = {'good': lane('mock', GOOD_MODEL)}
    for name, up in BAD.items():
        if up is None:
            models[name] = lane('dead', 'm', attempt_timeout_ms=ATTEMPT_TIMEOUT_MS)
        else:
            models[name] = lane('mock', up, attempt_timeout_ms=ATTEMPT_TIMEOUT_MS)
    conf = {
        'providers': {'mock': provider(m), 'dead': provider(dead)},
        'models': models,
        'pools': pools,
        'limits': {'upstream_connect_timeout_ms': 1000},
    }
    return m, ctx.busbar(conf, workers=1)


def one_bad_then_good(ctx, bad, stream=False):
    """Pool [bad ×5, good ×1]: SWRR picks bad first, failover must land on good."""
    m, bb = start(ctx, {'p': pool((bad, 5), ('good', 1))})
    m.reset()
    t0 = time.monotonic()
    if stream:
        c, r = bb.stream('p')
        evs = list(r.events())
        eq(r.status, 200, 'status')
        check(evs and evs[-1].data == '[DONE]', 'stream did not end with [DONE]: %r' % evs[-3:])
        eq(delta_text(evs), mock_answer(), 'streamed answer after failover')
    else:
        r = bb.chat('p')
        eq(r.status, 200, 'status (body %r)' % r.body[:300])
        eq(r.json()['choices'][0]['message']['content'], mock_answer(), 'answer after failover')
    elapsed = time.monotonic() - t0
    eq(r.headers.get('x-busbar-lane'), 'good', 'x-busbar-lane')
    eq(r.headers.get('x-busbar-attempts'), '2', 'x-busbar-attempts')
    upstream = BAD[bad]
    want_models = ([upstream] if upstream is not None else []) + [GOOD_MODEL]

    def settled(att):
        return len(att) >= len(want_models) and all(x['outcome'] != 'pending' for x in att)
    a = m.wait_attempts(settled, 5, 'the mock log to settle')
    eq([x['model'] for x in a], want_models, 'models tried, in order, at the mock')
    eq(a[-1]['status'], 200, 'status of the good attempt')
    eq(a[-1]['stream'], stream, 'stream flag of the good attempt')
    return m, bb, a, elapsed


def test_503_fails_over(ctx):
    m, bb, a, _ = one_bad_then_good(ctx, 'bad503')
    eq(a[0]['status'], 503, 'first attempt status')


def test_429_retry_after_fails_over(ctx):
    m, bb, a, elapsed = one_bad_then_good(ctx, 'bad429')
    eq(a[0]['status'], 429, 'first attempt status')
    check(elapsed < scaled(0.9), 'failover on 429 waited %.2fs (Retry-After must not delay '
          'the failover to another member)' % elapsed)


def test_reset_fails_over(ctx):
    m, bb, a, _ = one_bad_then_good(ctx, 'badreset')
    eq(a[0]['status'], 0, 'reset attempt sent no status')


def test_noresponse_times_out_and_fails_over(ctx):
    m, bb, a, elapsed = one_bad_then_good(ctx, 'badnoresp')
    check(elapsed >= ATTEMPT_TIMEOUT_MS / 1000.0 * 0.9,
          'answered after %.3fs, before the %d ms attempt timeout' % (elapsed,
                                                                      ATTEMPT_TIMEOUT_MS))
    check(elapsed < scaled(ATTEMPT_TIMEOUT_MS / 1000.0 + 2.0),
          'attempt timeout of %d ms took %.2fs' % (ATTEMPT_TIMEOUT_MS, elapsed))
    # The timed-out attempt's connection is closed by busbar: the mock sees it aborted.
    a = m.wait_attempts(lambda att: att[0]['outcome'] == 'aborted', 3,
                        'the timed-out attempt to be aborted at the mock')


def test_connect_refused_fails_over(ctx):
    one_bad_then_good(ctx, 'badconn')


def test_stream_503_fails_over(ctx):
    one_bad_then_good(ctx, 'bad503', stream=True)


def test_stream_reset_fails_over(ctx):
    one_bad_then_good(ctx, 'badreset', stream=True)


def test_client_error_not_retried(ctx):
    """A 400 from upstream is the client's problem: relayed, never retried."""
    m, bb = start(ctx, {'p': pool(('bad400', 5), ('good', 1))})
    r = bb.chat('p')
    check_error_shape(r, 400, what='relayed 400')
    eq(r.headers.get('x-busbar-attempts'), '1', 'x-busbar-attempts')
    eq(len(m.attempts()), 1, 'attempts at the mock')


def test_all_fail_relays_last_http_error(ctx):
    m, bb = start(ctx, {'p': pool(('bad500', 5), ('bad503', 1))})
    r = bb.chat('p')
    a = m.attempts()
    eq([x['model'] for x in a], [BAD['bad500'], BAD['bad503']], 'attempts at the mock')
    e = check_error_shape(r, 503, what='all-fail response')
    eq(e.get('type'), 'server_error', 'relayed error type (the mock\'s 503 body)')
    eq(r.headers.get('x-busbar-attempts'), str(len(a)), 'x-busbar-attempts')


def test_max_hops_bounds_attempts(ctx):
    """max_hops: 1 → exactly 2 attempts out of 3 failing members; the last one's error wins."""
    m, bb = start(ctx, {'p': pool(('bad500', 3), ('bad502', 2), ('bad503', 1),
                                  failover={'max_hops': 1, 'timeout_secs': 30})})
    r = bb.chat('p')
    a = m.attempts()
    eq(len(a), 2, 'attempts at the mock with max_hops 1')
    eq(len({x['model'] for x in a}), 2, 'distinct members tried')
    eq(r.status, a[-1]['status'], 'status relayed = the last attempt\'s status')
    eq(r.headers.get('x-busbar-attempts'), '2', 'x-busbar-attempts')


def expect_gateway_error(r, status):
    e = check_error_shape(r, status, what='gateway error')
    return e


def test_all_reset_is_502(ctx):
    m, bb = start(ctx, {'p': pool(('badreset', 1), ('reset2', 1))})
    r = bb.chat('p')
    e = expect_gateway_error(r, 502)
    check('upstream_error' in (e.get('type'), e.get('code')),
          'type/code is not upstream_error: %r' % e)
    eq(len(m.attempts()), 2, 'attempts at the mock')
    eq(r.headers.get('x-busbar-attempts'), '2', 'x-busbar-attempts')


def test_all_refused_is_502(ctx):
    m, bb = start(ctx, {'p': pool(('badconn', 1))})
    r = bb.chat('p')
    e = expect_gateway_error(r, 502)
    check('upstream_error' in (e.get('type'), e.get('code')),
          'type/code is not upstream_error: %r' % e)
    eq(len(m.attempts()), 0, 'attempts at the mock')


def test_all_timeout_is_504(ctx):
    m, bb = start(ctx, {'p': pool(('badnoresp', 1), ('noresp2', 1))})
    t0 = time.monotonic()
    r = bb.chat('p', timeout=20)
    elapsed = time.monotonic() - t0
    expect_gateway_error(r, 504)
    eq(r.headers.get('x-busbar-attempts'), '2', 'x-busbar-attempts')
    check(elapsed < scaled(2 * ATTEMPT_TIMEOUT_MS / 1000.0 + 2.0),
          'two %d ms attempt timeouts took %.2fs' % (ATTEMPT_TIMEOUT_MS, elapsed))
    m.wait_attempts(lambda att: len(att) == 2 and all(x['outcome'] == 'aborted' for x in att),
                    3, 'both timed-out attempts aborted at the mock')
    s = bb.stats()
    for name in ('badnoresp', 'noresp2'):
        eq(s['lanes'][name]['inflight'], 0, 'lane %s inflight after timeouts' % name)
        eq(s['lanes'][name]['err'], 1, 'lane %s err' % name)


if __name__ == '__main__':
    run([test_503_fails_over, test_429_retry_after_fails_over, test_reset_fails_over,
         test_noresponse_times_out_and_fails_over, test_connect_refused_fails_over,
         test_stream_503_fails_over, test_stream_reset_fails_over, test_client_error_not_retried,
         test_all_fail_relays_last_http_error, test_max_hops_bounds_attempts,
         test_all_reset_is_502, test_all_refused_is_502, test_all_timeout_is_504])
