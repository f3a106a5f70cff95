#!/usr/bin/env python3
"""Stream faults after the commit point, and client disconnects.

* cut after commit: the upstream RSTs after N word chunks → the client stream ends (promptly)
  without [DONE]: never a truncated answer that looks complete.
* stall after commit: no event for stream_idle_timeout_ms → the same.
* client disconnect mid-stream: the upstream request is cancelled (the mock logs `aborted`
  promptly) and the lane's in-flight counter returns to 0.
"""

import time

from harness import (RawConn, chat_body, check, delta_text, eq, is_content_event, lane,
                     mock_words, pool, provider, run, scaled, wait_for)

IDLE_MS = 600


def start(ctx):
    m = ctx.mock()
    conf = {
        'providers': {'mock': provider(m)},
        'models': {
            'cut3': lane('mock', 'm;cut=3'),
            'stall2': lane('mock', 'm;stall=2'),
            'long': lane('mock', 'm;delay=200;words=60'),
            'nodone': lane('mock', 'm;nodone'),
            'good': lane('mock', 'm'),
        },
        # A healthy member exists, yet after the commit point there is no failover.
        'pools': {'pcut': pool(('cut3', 5), ('good', 1)),
                  'pstall': pool(('stall2', 5), ('good', 1))},
        'limits': {'stream_idle_timeout_ms': IDLE_MS},
    }
    return m, ctx.busbar(conf, workers=1)


def assert_truncated(ctx, r, evs, n_words, what):
    eq(r.status, 200, '%s: status' % what)
    check(not any(e.data == '[DONE]' for e in evs),
          '%s: client got [DONE] after an upstream failure' % what)
    text = delta_text(evs)
    want = ' '.join(mock_words(60)[:n_words])
    check(text == want, '%s: client got %r, want the %d words sent before the fault %r'
          % (what, text, n_words, want))
    errors = [e for e in evs if e.data != '[DONE]' and _has_error(e)]
    if not errors:
        ctx.note('%s: stream ended (%s) without an error event' % (what, r.end))


def _has_error(e):
    try:
        return 'error' in e.json()
    except ValueError:
        return False


def test_cut_after_commit_ends_without_done(ctx):
    m, bb = start(ctx)
    t0 = time.monotonic()
    c, r = bb.stream('pcut')
    evs = list(r.events())
    elapsed = time.monotonic() - t0
    assert_truncated(ctx, r, evs, 3, 'cut=3')
    check(elapsed < scaled(3.0), 'cut stream took %.2fs to end' % elapsed)
    eq(r.headers.get('x-busbar-lane'), 'cut3', 'x-busbar-lane')
    a = m.wait_attempts(lambda att: len(att) == 1 and att[0]['outcome'] != 'pending', 3,
                        'the cut attempt to finish')
    eq(len(a), 1, 'no failover after the commit point (attempts at the mock)')
    ctx.note('cut stream end: %s; events: %d' % (r.end, len(evs)))
    # The worker is fine afterwards.
    eq(bb.chat('good').status, 200, 'next request after a cut stream')


def test_stall_after_commit_ends_without_done(ctx):
    m, bb = start(ctx)
    t0 = time.monotonic()
    c, r = bb.stream('pstall', timeout=20)
    evs = list(r.events())
    elapsed = time.monotonic() - t0
    assert_truncated(ctx, r, evs, 2, 'stall=2')
    check(elapsed >= IDLE_MS / 1000.0 * 0.9,
          'stalled stream ended after %.2fs, before stream_idle_timeout_ms' % elapsed)
    check(elapsed < scaled(IDLE_MS / 1000.0 + 3.0),
          'stalled stream took %.2fs to end (idle timeout %d ms)' % (elapsed, IDLE_MS))
    m.wait_attempts(lambda att: att[0]['outcome'] == 'aborted', 3,
                    'the stalled upstream to be closed (aborted at the mock)')
    s = bb.stats()
    eq(s['lanes']['stall2']['inflight'], 0, 'lane inflight after the stall')


def test_missing_done_finishes_promptly(ctx):
    """Upstream completes the answer but omits [DONE] and closes: the client's stream must
    end promptly, not hang."""
    m, bb = start(ctx)
    t0 = time.monotonic()
    c, r = bb.stream('nodone', timeout=20)
    evs = list(r.events())
    elapsed = time.monotonic() - t0
    eq(r.status, 200, 'status')
    eq(delta_text(evs), ' '.join(mock_words(8)), 'answer text')
    check(elapsed < scaled(3.0), 'stream without [DONE] took %.2fs to end' % elapsed)
    ctx.note('nodone stream end: %s, last event %r' % (r.end, evs[-1] if evs else None))


def test_client_disconnect_cancels_upstream(ctx):
    m, bb = start(ctx)
    c, r = bb.stream('long')
    eq(r.status, 200, 'status')
    seen = 0
    for e in r.events():
        if is_content_event(e):
            seen += 1
            if seen == 2:
                break
    eq(seen, 2, 'content events before disconnecting')
    s = bb.stats()
    eq(s['lanes']['long']['inflight'], 1, 'lane inflight while streaming')
    t_close = time.monotonic()
    c.close()
    a = m.wait_attempts(lambda att: att and att[0]['outcome'] == 'aborted', 2,
                        'the upstream request to be aborted after the client left')
    took = time.monotonic() - t_close
    check(took < scaled(1.0), 'upstream aborted %.2fs after the client left' % took)
    eq(len(a), 1, 'attempts (no retry after a client disconnect)')
    # The mock would have needed 60 × 200 ms; it stopped long before.
    check(a[0]['end_ms'] - a[0]['t_ms'] < 60 * 200 / 2,
          'upstream ran %d ms: not cancelled' % (a[0]['end_ms'] - a[0]['t_ms']))
    wait_for(lambda: bb.stats()['lanes']['long']['inflight'] == 0, 3,
             'lane inflight to return to 0')
    eq(bb.chat('good').status, 200, 'next request after a client disconnect')


def test_disconnect_before_headers(ctx):
    """Client leaves while busbar waits for the upstream's response headers."""
    m = ctx.mock()
    conf = {
        'providers': {'mock': provider(m)},
        'models': {'slowfirst': lane('mock', 'm;slowfirst=3000'), 'good': lane('mock', 'm')},
        'pools': {'p': pool(('good', 1))},
    }
    bb = ctx.busbar(conf, workers=1)
    c = RawConn(bb.port)
    c.send_request('POST', '/v1/chat/completions', chat_body('slowfirst'))
    m.wait_attempts(lambda att: len(att) == 1, 3, 'the request to reach the mock')
    c.close()
    m.wait_attempts(lambda att: att[0]['outcome'] == 'aborted', 2,
                    'the upstream request to be aborted after the client left')
    wait_for(lambda: bb.stats()['lanes']['slowfirst']['inflight'] == 0, 3,
             'lane inflight to return to 0')
    eq(bb.chat('good').status, 200, 'next request')


if __name__ == '__main__':
    run([test_cut_after_commit_ends_without_done, test_stall_after_commit_ends_without_done,
         test_missing_done_finishes_promptly, test_client_disconnect_cancels_upstream,
         test_disconnect_before_headers])
